"""A tool's system-wide syscall tracepoint (pid -1) reaches the processes
started after the tool began, as under the kernel (issue 14): Debian's
bpftrace under `bpfgraft run` counts `getppid()` per pid, and
- a process started after it is counted exactly, from its first call;
- a process caught at exec that exec's another program (`sh -c 'exec
  python3 ...'`) is caught again and counted exactly;
- a process running before the tool is left alone (no payload);
- a process of another mount namespace is not caught (the exec marks are
  on the mounts of bpfgraftd's namespace), nor nsenter, which gets there;
- when the tool ends, the processes it brought in are detached (no
  payload thread) and run on.
A uprobe with pid -1 on a library catches a process started later that
maps it (counted exactly from its first call), and lets one that does not
go without a payload. When a tool with a pid -1 uprobe in 50 processes
ends, they are all detached while the server answers other requests.
The test runs in a mount namespace of its own (unshare -m), so the server
catches its processes and none of the rest of the machine."""
import argparse
import mmap
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))   # bpfgraft_client, for srv.client()
from harness import Server, check, check_eq, interrupt_bpftrace, report, require  # noqa: E402

TRACEFS = "/sys/kernel/tracing"
CALLS = "import os, sys; n = int(sys.argv[1]); [os.getppid() for _ in range(n)]; print(os.getpid(), flush=True)"


def payload_mapped(pid):
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any("/memfd:bpfgraft-payload" in line for line in f)
    except OSError:
        return False


def wait_attached(tool, deadline_s):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and tool.poll() is None:
        line = tool.stdout.readline()
        if line.startswith("Attaching"):
            return True
    return False


def pid_of_run(argv):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and r.stdout.split(), f"{argv[0]} ran", r.stderr[-300:])
    return int(r.stdout.split()[-1]) if r.returncode == 0 and r.stdout.split() else None


def wait_linked(srv, deadline_s):
    """bpftrace says "Attaching" before it attaches: waits for its link."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        rc, doc, _ = srv.cli_json("tools")
        if rc == 0 and any(t.get("links") for t in doc or []):
            return True
        time.sleep(0.05)
    return False


def listed(srv, pid):
    rc, doc, _ = srv.cli_json("ps")
    return rc != 0 or any(t.get("pid") == pid for t in doc or [])


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def start_tool(srv, script):
    """bpftrace -e script under `bpfgraft run`, in a session of its own."""
    prefix = [srv.cli_bin, "--socket", srv.socket, "run", "--"]
    return subprocess.Popen(prefix + ["bpftrace", "-e", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def end_tool(tool):
    """Interrupts bpftrace: its map {pid: count} and its stderr."""
    interrupt_bpftrace(tool)
    out, err = tool.communicate(timeout=30)
    return {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"^@\[(\d+)\]: (\d+)$", out, re.M)}, err


def kill_tool(tool):
    if tool.poll() is None:
        os.killpg(tool.pid, signal.SIGKILL)   # bpfgraft run and bpftrace, its child
        tool.wait()


def wait_released(srv, pid, nthreads):
    """Waits until pid is no target and has its own threads only."""
    deadline = time.monotonic() + 15
    while (listed(srv, pid) or threads(pid) > nthreads) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not listed(srv, pid) and threads(pid) == nthreads


def traced(srv, other_ns):
    """Runs the tool and the processes; {what: (pid, want)} and the maps."""
    before = subprocess.Popen(["sleep", "120"])
    tool = start_tool(srv, "tracepoint:syscalls:sys_enter_getppid { @[pid] = count(); }")
    long = None
    try:
        check(wait_attached(tool, 60) and wait_linked(srv, 30), "bpftrace attached its system-wide tracepoint")
        pids = {
            "a process started after the tool": (pid_of_run([sys.executable, "-c", CALLS, "37"]), 37),
            # dash calls getppid() once itself (for $PPID), then exec's python
            "a caught process that exec's another program": (
                pid_of_run(["sh", "-c", f'exec {sys.executable} -c "{CALLS}" 23']), 1 + 23),
            # nsenter itself is left alone (setns() into a mount namespace
            # needs a single-threaded process), its python is in the other one
            "a process of another mount namespace": (
                pid_of_run(["nsenter", f"--mount={other_ns}", "--", sys.executable, "-c", CALLS, "11"]), None),
        }
        long = subprocess.Popen([sys.executable, "-c", CALLS + "; sys.stdin.read()", "5"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        pids["a process still running when the tool ends"] = (int(long.stdout.readline()), 5)
        check(payload_mapped(long.pid), "the running process caught at exec has the payload")
        check(not payload_mapped(before.pid), "a process running before the tool is left alone")
        maps, err = end_tool(tool)
        for what, (pid, want) in pids.items():
            check(pid is not None and maps.get(pid) == want,
                  f"{what}: " + (f"counted {want} times" if want else "not caught"),
                  f"pid {pid}: {maps.get(pid)}; stderr: {err[-300:]}")
        # its image stays mapped, inert, as after any detach of syscall hooks
        # (payload/README.md): a SIGSYS handler frame may still be on a stack
        check(wait_released(srv, long.pid, 1),
              "after the tool ends, the process it brought in is detached: not a target, no payload thread")
        check(long.poll() is None, "and that process runs on")
    finally:
        kill_tool(tool)
        for p in (before, long):
            if p and p.poll() is None:
                p.kill()
                p.wait()


class LibVictim:
    """A copy of attach-victim-pie with a private copy of its library (LD_LIBRARY_PATH
    over its RUNPATH): one thread calls lib_probed_mul() while go is set,
    counting its calls in the control file."""
    GO, ACTIVE, LIB_CALLS = 0, 8, 24

    def __init__(self, exe, libdir, ctl_path):
        with open(ctl_path, "wb") as f:
            f.write(bytes(4096))
        self.ctl_file = open(ctl_path, "r+b")
        self.ctl = mmap.mmap(self.ctl_file.fileno(), 4096)
        self.proc = subprocess.Popen([exe, ctl_path, "1"],
                                     env=dict(os.environ, LD_LIBRARY_PATH=libdir))
        self.pid = self.proc.pid

    def field(self, off, value=None):
        if value is not None:
            self.ctl[off:off + 8] = struct.pack("<q", value)
        return struct.unpack("<q", self.ctl[off:off + 8])[0]

    def run(self, calls):
        """Lets it call until it made at least calls; the exact count."""
        self.field(self.GO, 1)
        deadline = time.monotonic() + 30
        while self.field(self.LIB_CALLS) < calls and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.01)
        self.field(self.GO, 0)
        while self.field(self.ACTIVE) and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.field(self.LIB_CALLS)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.ctl.close()
        self.ctl_file.close()


def library(srv, test_bin):
    """A uprobe with pid -1 on a library: a process started later that maps
    it is caught at exec and counted from its first call; one that does not
    map it is let go at its entry point without a payload."""
    tmp = tempfile.mkdtemp(prefix="syswide-lib-")
    lib = os.path.join(tmp, "libattachvictim.so")
    shutil.copy2(os.path.join(test_bin, "libattachvictim.so"), lib)
    # a copy of the executable too: other tests' pid -1 probes on theirs
    # (restart_execwatch) must not catch it first
    exe = os.path.join(tmp, "lib-victim")
    shutil.copy2(os.path.join(test_bin, "attach-victim-pie"), exe)
    tool = start_tool(srv, f"uprobe:{lib}:lib_probed_mul {{ @[pid] = count(); }}")
    v, other = None, None
    try:
        check(wait_attached(tool, 60) and wait_linked(srv, 30), "bpftrace attached its uprobe on the library")
        v = LibVictim(exe, tmp, os.path.join(tmp, "ctl"))
        other = subprocess.Popen(["sleep", "60"])
        made = v.run(2000)
        check(made >= 2000 and v.proc.poll() is None, "the victim started after the tool ran", str(made))
        check(payload_mapped(v.pid), "the process that maps the library has the payload")
        check(not payload_mapped(other.pid), "a process started meanwhile that does not map it has none")
        maps, err = end_tool(tool)
        check_eq(maps.get(v.pid), made, "every call of the library function counted, from the first " + err[-200:])
        check(wait_released(srv, v.pid, 2) and v.proc.poll() is None,
              "after the tool ends the victim is detached (its two threads left) and runs on")
    finally:
        kill_tool(tool)
        for p in (v, other):
            if isinstance(p, LibVictim):
                p.stop()
            elif p and p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def tool_reach(srv):
    """Processes the running tools' links are attached in (tool.list)."""
    rc, doc, _ = srv.cli_json("tools")
    return {p for t in doc or [] for link in t.get("links", []) for p in link.get("attached", [])}


def targets(srv):
    rc, doc, _ = srv.cli_json("ps")
    return {t.get("pid") for t in doc or []}


def mass_release(srv, test_bin, n=50):
    """A tool's uprobe with pid -1 on a binary n processes run (a private
    copy): when the tool ends, its program leaves them and they are
    detached in slices from the server's tick, the server answering other
    requests in between (done in the tool's end, 150 processes kept it
    from answering for ~30 s)."""
    tmp = tempfile.mkdtemp(prefix="syswide-mass-")
    vic = os.path.join(tmp, "mass-victim")
    shutil.copy2(os.path.join(test_bin, "callbacks-victim"), vic)
    procs = [subprocess.Popen([vic, "1", "1"], stdout=subprocess.PIPE, text=True) for _ in range(n)]
    tool = None
    try:
        check(all(p.stdout.readline().strip() == "ready" for p in procs), f"{n} processes of the binary run")
        tool = start_tool(srv, f"uprobe:{vic}:probe_me {{ @ = count(); }}")
        check(wait_attached(tool, 60), "bpftrace attached its uprobe")
        pids = {p.pid for p in procs}
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not pids <= tool_reach(srv):
            time.sleep(0.2)
        check(pids <= tool_reach(srv), f"the probe is in all {n}")
        answers, done = [], threading.Event()

        def ask():   # server.status every 20 ms, timed, from the tool's end on
            with srv.client(timeout=120) as cl:
                while not done.is_set():
                    t0 = time.monotonic()
                    cl.call("server.status")
                    answers.append(time.monotonic() - t0)
                    time.sleep(0.02)
        asker = threading.Thread(target=ask)
        start = time.monotonic()
        asker.start()
        end_tool(tool)
        while pids & targets(srv) and time.monotonic() - start < 240:
            time.sleep(0.05)
        took = time.monotonic() - start
        done.set()
        asker.join()
        longest = max(answers, default=took)
        check(not pids & targets(srv), f"all {n} processes are detached after the tool ends",
              f"{took:.1f} s")
        print(f"# detaching {n} processes took {took:.1f} s; the longest server.status answer meanwhile {longest:.2f} s")
        check(longest < max(0.25, took / 3), "the server answered other requests meanwhile (the longest answer well "
              "under the whole release)", f"longest {longest:.2f} s of {took:.1f} s")
        check(all(p.poll() is None for p in procs), "and they run on")
    finally:
        if tool:
            kill_tool(tool)
        for p in procs:
            p.kill()
            p.wait()
            p.stdout.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--test-bin", required=True)
    args = ap.parse_args()
    if os.environ.get("BPFGRAFT_SYSWIDE_NS") != "1":
        os.environ["BPFGRAFT_SYSWIDE_NS"] = "1"
        os.environ["BPFGRAFT_SYSWIDE_OTHER_NS"] = f"/proc/{os.getppid()}/ns/mnt"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", sys.executable, *sys.argv])
    require("root", "bpf-tracing")
    check(subprocess.run(["which", "bpftrace"], capture_output=True).returncode == 0, "bpftrace is installed")
    other_ns = os.environ["BPFGRAFT_SYSWIDE_OTHER_NS"]
    check(os.readlink(other_ns) != os.readlink("/proc/self/ns/mnt"), "the test runs in a mount namespace of its own")
    if not os.path.exists(os.path.join(TRACEFS, "events")):   # in our namespace only
        check(subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS]).returncode == 0, "tracefs mounted")
    with Server(args, catch_new=True) as srv:
        traced(srv, other_ns)
        library(srv, args.test_bin)
        mass_release(srv, args.test_bin)
    sys.exit(report())


if __name__ == "__main__":
    main()
