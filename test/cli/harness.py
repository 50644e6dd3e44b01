"""Shared plumbing of the CLI/client integration tests: a real bpfgraftd on
a socket in a temporary directory, the CLI runner and assertion counting.

Every test script: `with Server(args) as srv: ...; sys.exit(report())`.
The server is killed and the directory removed on the way out, even on an
exception; PR_SET_PDEATHSIG kills it too if the test itself is killed.

Kernel facts (test/facts/facts.h): needs() says whether this machine has
them, skip() records a part it cannot run, require() skips the whole test.
report() exits 77 (ctest: skipped) when something was skipped and nothing
failed: a test that could not check everything never passes.
"""
import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

_passed = 0
_failed = 0
_skipped = 0
SKIPPED = 77   # exit status ctest counts as skipped (SKIP_RETURN_CODE)


def check(cond, what, detail=""):
    """Records and prints one assertion."""
    global _passed, _failed
    if cond:
        _passed += 1
        print(f"ok   - {what}", flush=True)
    else:
        _failed += 1
        print(f"FAIL - {what}" + (f"\n       {detail}" if detail else ""), flush=True)
    return cond


def check_eq(got, want, what):
    return check(got == want, what, f"got {got!r}, want {want!r}")


def skip(what):
    """Records and prints a part this machine cannot run, and why."""
    global _skipped
    _skipped += 1
    print(f"SKIP - {what}", flush=True)


def needs(*facts):
    """None when this machine has every fact, else why not (test-needs)."""
    tool = os.environ.get("BPFGRAFT_TEST_NEEDS") or shutil.which("test-needs")
    if not tool:
        raise RuntimeError("test-needs not found: run under ctest, or set BPFGRAFT_TEST_NEEDS "
                           "to build/test-bin/test-needs")
    r = subprocess.run([tool, *facts], capture_output=True, text=True)
    if r.returncode == SKIPPED:
        return r.stdout.strip().removeprefix("SKIP: ")
    if r.returncode:
        raise RuntimeError(f"test-needs {' '.join(facts)}: {r.stderr.strip()}")
    return None


def require(*facts):
    """Ends the test as skipped when this machine lacks one of facts."""
    why = needs(*facts)
    if why:
        skip(why)
        sys.exit(report())


def report():
    print(f"\n{_passed} passed, {_failed} failed" + (f", {_skipped} skipped" if _skipped else ""), flush=True)
    if _failed:
        return 1
    if _skipped:
        return SKIPPED
    return 0 if _passed else 1


def parse_args():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--obj", required=True, help="test/cli/progs/cli_maps.bpf.o")
    ap.add_argument("--other-obj", required=True, help="an object with global data")
    ap.add_argument("--scripts", required=True, help="the scripts/ folder")
    a = ap.parse_args()
    for k in ("bin_dir", "obj", "other_obj", "scripts"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    sys.path.insert(0, a.scripts)
    return a


def parse_probe_args(*required, optional=()):
    """The options of the attach/stacks tests: --bin-dir, --obj and --scripts
    (put on sys.path) plus the required and optional ("" by default) options
    named; nothing made absolute."""
    ap = argparse.ArgumentParser()
    for name in ("--bin-dir", *required, "--obj", "--scripts"):
        ap.add_argument(name, required=True)
    for name in optional:
        ap.add_argument(name, default="")
    a = ap.parse_args()
    sys.path.insert(0, a.scripts)
    return a


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG


def finish(p, timeout):
    """p's (stdout, stderr) once it ended; killed after timeout seconds."""
    try:
        return p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()


BPFTRACE_ATTACHED = "__BPFTRACE_NOTIFY_PROBES_ATTACHED"


def start_bpftrace(argv):
    """bpftrace (argv may start with a runner such as `bpfgraft run --`) in a
    session of its own, told to say on stderr when every probe is attached
    (bpftrace's own runtime-test hook)."""
    env = dict(os.environ, **{BPFTRACE_ATTACHED: "1"})
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def wait_bpftrace_attached(tool, deadline_s):
    """(attached, stderr read so far) once bpftrace said every probe is
    attached. Its "Attaching N probes" line and a USDT semaphore come
    before the programs are bound to the probes, so neither will do."""
    end, seen = time.monotonic() + deadline_s, ""
    while time.monotonic() < end and tool.poll() is None:
        if select.select([tool.stderr], [], [], 0.2)[0]:
            line = tool.stderr.readline()
            if line.strip() == BPFTRACE_ATTACHED:
                return True, seen
            seen += line
    return False, seen


def _bpftrace_pids(session):
    """The bpftrace processes of session (a tool started by start_bpftrace)."""
    pids = []
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except (OSError, ValueError):
            continue
        comm, rest = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if comm == "bpftrace" and int(rest[3]) == session:
            pids.append(int(d))
    return pids


def _polling(pid):
    try:
        with open(f"/proc/{pid}/wchan") as f:
            return f.read().strip() == "do_epoll_wait"
    except OSError:
        return False


def interrupt_bpftrace(tool, deadline_s=30):
    """SIGINT to bpftrace, as Ctrl-C, once it waits in its event loop:
    bpftrace 0.17 notices a SIGINT only when it interrupts that loop's
    epoll_wait (one arriving before, or between two waits, is lost and it
    runs on), so it is sent while bpftrace sits in epoll_wait, and again
    while it still does. Returns when tool ended or at the deadline."""
    start = time.monotonic()
    sent_at = 0.0
    while tool.poll() is None and time.monotonic() < start + deadline_s:
        for pid in _bpftrace_pids(tool.pid):
            if _polling(pid) and time.monotonic() - sent_at > 1:
                os.kill(pid, signal.SIGINT)
                sent_at = time.monotonic()
        if not sent_at and time.monotonic() > start + 10:
            tool.send_signal(signal.SIGINT)   # never seen polling: as before
            sent_at = time.monotonic()
        time.sleep(0.02)


class Strace:
    """strace -c -f -p TID... around some work: its per-syscall call counts."""

    def __init__(self, tids, tmp):
        self.path = os.path.join(tmp, f"strace-{tids[0]}.txt")
        self.p = subprocess.Popen(["strace", "-c", "-f", "-o", self.path] + [f"-p{t}" for t in tids],
                                  stderr=subprocess.PIPE, text=True)
        self.attached = all("attached" in self.p.stderr.readline() for _ in tids)

    def counts(self):
        self.p.send_signal(signal.SIGINT)
        finish(self.p, 30)
        with open(self.path) as f:
            return {m.group(2): int(m.group(1)) for m in
                    (re.match(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", l) for l in f) if m}


def _own_bytes(dev, inode, off, n):
    """The bytes this (test) process sees at offset off of the file
    (dev, inode), read from its own mapping of it; None if it maps none."""
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) < 6 or (parts[3], parts[4]) != (dev, inode):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            moff = int(parts[2], 16)
            if moff <= off and off + n <= moff + (hi - lo):
                with open("/proc/self/mem", "rb") as mem:
                    mem.seek(lo + off - moff)
                    return mem.read(n)
    return None


def _kernel_breakpoints_only(got, want, own):
    """Whether every byte where got differs from the file is a kernel
    uprobe's: one registered without a pid filter (another test's, e.g.
    bpftrace on libc's connect) puts its int3 in every process mapping
    the file, this test's own included, which bpfgraft never patches."""
    return own is not None and len(own) == len(got) and \
        all(g == o == 0xCC for g, w, o in zip(got, want, own) if g != w)


def text_matches_file(pid, in_root=False):
    """Every executable file mapping of pid equals the file's bytes (with
    in_root, the file as the process sees it: through /proc/PID/root),
    but for kernel uprobes' int3s that this process sees too."""
    mismatches = []
    with open(f"/proc/{pid}/maps") as f:
        maps = f.read().splitlines()
    with open(f"/proc/{pid}/mem", "rb") as mem:
        for line in maps:
            parts = line.split()
            if len(parts) < 6 or "x" not in parts[1] or not parts[5].startswith("/"):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            off = int(parts[2], 16)
            try:
                with open(f"/proc/{pid}/root{parts[5]}" if in_root else parts[5], "rb") as fil:
                    fil.seek(off)
                    want = fil.read(hi - lo)
            except OSError:
                continue
            mem.seek(lo)
            got = mem.read(len(want))
            if got != want and not _kernel_breakpoints_only(got, want, _own_bytes(parts[3], parts[4], off, len(got))):
                mismatches.append(parts[5])
    return mismatches


def wait_until(cond, timeout=30, step=0.02):
    """cond()'s value once it is true, or its last value at the timeout: a
    check after something asynchronous (a tick, a thread, a process's
    start or end) waits for it instead of a fixed time, returning as soon
    as it holds (a loaded 2-CPU machine running ASan builds beside)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(step)


def _threads(pid):
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def task_states(pid):
    """The state letter of each of pid's threads (R, S, D, T, t, Z...)."""
    out = []
    for tid in _threads(pid):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                out.append(f.read().rsplit(")", 1)[1].split()[0])
        except (OSError, IndexError):
            pass
    return out


def wait_threads(pid, n, timeout=30):
    """True once pid has n threads or more (a victim past its start: the
    dynamic loader done, its handlers and threads made)."""
    return bool(wait_until(lambda: len(_threads(pid)) >= n, timeout))


def wait_stopped(pid, timeout=30):
    """True once every thread of pid is stopped (SIGSTOP delivered)."""
    return bool(wait_until(lambda: (lambda st: bool(st) and all(s in "Tt" for s in st))(task_states(pid)),
                           timeout))


def wait_zombie(pid, timeout=30):
    """True once pid has exited and waits to be reaped."""
    return bool(wait_until(lambda: task_states(pid)[:1] == ["Z"], timeout))


def wait_handler(pid, sig, timeout=30):
    """True once pid catches sig (its handler installed: sending it earlier
    would kill a process still starting)."""
    def caught():
        try:
            with open(f"/proc/{pid}/status") as f:
                mask = next(int(l.split()[1], 16) for l in f if l.startswith("SigCgt:"))
        except (OSError, StopIteration, ValueError):
            return False
        return bool(mask & (1 << (int(sig) - 1)))
    return bool(wait_until(caught, timeout))


def wait_mapped(pid, name, timeout=30):
    """True once pid maps a file whose path contains name (a library the
    dynamic loader maps before main: an attach to it needs it there)."""
    def mapped():
        try:
            with open(f"/proc/{pid}/maps") as f:
                return any(name in l for l in f)
        except OSError:
            return False
    return bool(wait_until(mapped, timeout))


def wait_exe(pid, path, timeout=30):
    """True once pid runs path (a wrapper such as unshare exec'd it)."""
    def runs():
        try:
            return os.path.realpath(os.readlink(f"/proc/{pid}/exe")) == os.path.realpath(path)
        except OSError:
            return False
    return bool(wait_until(runs, timeout))


def counts(cl, keys=4):
    """The first `keys` u64 slots of the test programs' array map "counts"."""
    out = []
    for k in range(keys):
        r = cl.call("map.lookup", map="counts", key=struct.pack("<I", k))
        out.append(struct.unpack("<Q", r["value"])[0])
    return out


def zero_counts(cl, keys=4):
    """Sets the first `keys` slots of the "counts" map back to 0."""
    for k in range(keys):
        cl.call("map.update", map="counts", key=struct.pack("<I", k), value=b"\0" * 8)


def end_victim(cl, v, object_name):
    """Kills victim process v, waits (20 s at most) until the server no longer
    lists it, then unloads the object named object_name."""
    v.kill()
    v.wait()
    deadline = time.monotonic() + 20
    while any(t["pid"] == v.pid for t in cl.call("target.list")) and time.monotonic() < deadline:
        time.sleep(0.05)
    for o in cl.call("object.list"):
        if o["name"] == object_name:
            cl.call("object.unload", id=o["id"])


class CtlFields:
    """A victim's control page: little-endian int64 fields named by the
    subclass's FIELDS, in self.mm; "go" starts the workload, "active"
    counts the threads inside it."""
    FIELDS = []

    def get(self, name):
        return struct.unpack_from("<q", self.mm, 8 * self.FIELDS.index(name))[0]

    def set(self, name, v):
        struct.pack_into("<q", self.mm, 8 * self.FIELDS.index(name), v)

    def quiesce(self):
        """Stops the workload; True once no thread is inside it."""
        self.set("go", 0)
        deadline = time.monotonic() + 10
        while self.get("active") != 0 and time.monotonic() < deadline:
            time.sleep(0.0005)
        return self.get("active") == 0


def ensure_libbpf_tools(*tools):
    """Installs Debian's libbpf-tools (apt) unless each of tools (names in
    /usr/sbin) is there already: whether the install succeeded or was not
    needed."""
    if all(os.access(os.path.join("/usr/sbin", t), os.X_OK) for t in tools):
        return True
    r = subprocess.run(["apt-get", "install", "-y", "-q", "libbpf-tools"], capture_output=True, text=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return r.returncode == 0


TRACEFS = "/sys/kernel/tracing"
_TRACEFS_USERS = "/run/bpfgraft-tests-tracefs"   # a lock file: "mounted" flag, then user pids


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


@contextlib.contextmanager
def _tracefs_users():
    """The users file, locked: (fd, mounted-by-tests, live user pids). A
    file unlinked by its last user while we waited for it is taken again."""
    while True:
        fd = os.open(_TRACEFS_USERS, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            break
        os.close(fd)
    try:
        words = os.pread(fd, 4096, 0).split()
        mounted = bool(words) and words[0] == b"mounted"
        users = [int(w) for w in words[1:] if w.isdigit() and _pid_alive(int(w))]
        yield fd, mounted, users
    finally:
        os.close(fd)


def _tracefs_write(fd, mounted, users):
    os.ftruncate(fd, 0)
    os.pwrite(fd, " ".join(["mounted" if mounted else "found", *map(str, users)]).encode(), 0)


@contextlib.contextmanager
def tracefs():
    """tracefs on /sys/kernel/tracing for the block (a kernel-side run of a
    tool needs it): mounted here if absent, unmounted when the last test
    process using it leaves, never under another test running beside this
    one. Raises when it cannot be mounted."""
    with _tracefs_users() as (fd, mounted, users):
        if not os.path.exists(os.path.join(TRACEFS, "events")):
            subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS], check=True)
            mounted = True
        _tracefs_write(fd, mounted, users + [os.getpid()])
    try:
        yield TRACEFS
    finally:
        with _tracefs_users() as (fd, mounted, users):
            users = [u for u in users if u != os.getpid()]
            if users:
                _tracefs_write(fd, mounted, users)
            else:
                if mounted:
                    subprocess.run(["umount", TRACEFS], check=False)
                os.unlink(_TRACEFS_USERS)


def tcp_listener():
    """A socket on 127.0.0.1 (any port) whose connections are accepted and
    closed by a daemon thread: a peer for a workload of connect()s."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1024)

    def accept_all():
        while True:
            try:
                c, _ = ls.accept()
                c.close()
            except OSError:
                return
    threading.Thread(target=accept_all, daemon=True).start()
    return ls


class Server:
    def __init__(self, args, extra_args=(), catch_new=False):
        self.args = args
        # tests run side by side on one machine: a server catching every new
        # process (a tool's system-wide syscall tracepoint) would inject into
        # the other tests' processes; catch_new=True only in a mount
        # namespace of the test's own (unshare -m: the marks are per mount)
        self.extra_args = list(extra_args) + ([] if catch_new else ["--catch-new-processes=off"])
        self.bpfgraftd = os.path.join(args.bin_dir, "bpfgraftd")
        self.cli_bin = os.path.join(args.bin_dir, "bpfgraft")
        self.dir = None
        self.proc = None

    def __enter__(self):
        self.dir = tempfile.mkdtemp(prefix="bpfgraft-test-")
        self.socket = os.path.join(self.dir, "control.sock")
        self.log_path = os.path.join(self.dir, "bpfgraftd.log")
        self.log = open(self.log_path, "wb")
        return self.start_again()

    def start_again(self):
        """Starts bpfgraftd (again, after the last one was killed) on the
        same socket and state directory; self once it answers."""
        self.proc = subprocess.Popen(
            [self.bpfgraftd, "--socket", self.socket, "--foreground",
             "--cache-dir", os.path.join(self.dir, "jitcache"), "--state-dir", self.dir] + self.extra_args,
            stdout=self.log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bpfgraftd exited with {self.proc.returncode}: {self.log_text()}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.socket)
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("bpfgraftd did not open its socket within 15 s")

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, etype, exc, tb):
        if etype is not None:
            traceback.print_exception(etype, exc, tb)
            check(False, f"test body raised {etype.__name__}: {exc}")
        if self.proc is not None:
            crashed = self.proc.poll() is not None
            if not crashed:
                self.proc.terminate()
                finish(self.proc, 10)
            if crashed or _failed:
                print("---- bpfgraftd log (tail) ----\n" + self.log_text()[-4000:])
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return True   # the failure is counted; report() sets the exit status

    # -- the CLI -----------------------------------------------------------

    def cli(self, *argv, json_out=False, env=None, timeout=30):
        """Runs bpfgraft against this server: (rc, stdout, stderr)."""
        cmd = [self.cli_bin, "--socket", self.socket] + (["--json"] if json_out else [])
        r = subprocess.run(cmd + [str(a) for a in argv], capture_output=True, text=True,
                           timeout=timeout, env=env)
        return r.returncode, r.stdout, r.stderr

    def cli_attach(self, pid, *argv, deadline_s=30):
        """`bpfgraft attach pid ...`, again while the answer is bpfgraft's
        "try again later" (a thread in uninterruptible sleep: a process
        still paging itself in on a loaded machine): (rc, stdout, stderr)."""
        end = time.monotonic() + deadline_s
        while True:
            rc, out, err = self.cli("attach", pid, *argv)
            if rc == 0 or "try again later" not in err or time.monotonic() > end:
                return rc, out, err
            time.sleep(0.2)

    def cli_json(self, *argv):
        """Runs with --json; returns (rc, parsed stdout or None, stderr)."""
        rc, out, err = self.cli(*argv, json_out=True)
        try:
            doc = json.loads(out) if out.strip() else None
        except ValueError as e:
            check(False, f"--json {' '.join(map(str, argv))} prints valid JSON", f"{e}: {out!r}")
            doc = None
        return rc, doc, err

    def client(self, timeout=30):
        from bpfgraft_client import Client
        return Client(self.socket, timeout=timeout)
