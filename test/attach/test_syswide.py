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
The test runs in a mount namespace of its own (unshare -m), so the server
catches its processes and none of the rest of the machine."""
import argparse
import os
import re
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
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


def traced(srv, other_ns):
    """Runs the tool and the processes; {what: (pid, want)} and the maps."""
    before = subprocess.Popen(["sleep", "120"])
    prefix = [srv.cli_bin, "--socket", srv.socket, "run", "--"]
    tool = subprocess.Popen(prefix + ["bpftrace", "-e", "tracepoint:syscalls:sys_enter_getppid { @[pid] = count(); }"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
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
        interrupt_bpftrace(tool)
        out, err = tool.communicate(timeout=30)
        maps = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"^@\[(\d+)\]: (\d+)$", out, re.M)}
        for what, (pid, want) in pids.items():
            check(pid is not None and maps.get(pid) == want,
                  f"{what}: " + (f"counted {want} times" if want else "not caught"),
                  f"pid {pid}: {maps.get(pid)}; stderr: {err[-300:]}")
        deadline = time.monotonic() + 15
        while (listed(srv, long.pid) or threads(long.pid) > 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        # its image stays mapped, inert, as after any detach of syscall hooks
        # (payload/README.md): a SIGSYS handler frame may still be on a stack
        check(not listed(srv, long.pid) and threads(long.pid) == 1,
              "after the tool ends, the process it brought in is detached: not a target, no payload thread")
        check(long.poll() is None, "and that process runs on")
    finally:
        if tool.poll() is None:
            os.killpg(tool.pid, signal.SIGKILL)   # bpfgraft run and bpftrace, its child
            tool.wait()
        for p in (before, long):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
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
    sys.exit(report())


if __name__ == "__main__":
    main()
