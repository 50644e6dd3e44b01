"""Unwinders through uretprobes (issue 21): while a uretprobe's trampoline
stands in a frame's return address, everything that walks the stack must
still get through it — C++ exceptions on libgcc's and on LLVM's unwinder
(one, three and rethrown through uretprobed frames), glibc's backtrace(),
libunwind's unw_backtrace() and gdb's bt. Each run makes 100,000 calls
with an entry uprobe and uretprobes attached and requires: the process
exits 0, the uretprobes counted exactly the normal returns, every throw
was caught, target.list counts the frames exceptions dropped, and detach
restores the text."""
import ctypes
import os
import re
import resource
import signal
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import (Server, check, check_eq, counts, finish, parse_probe_args, report, skip,  # noqa: E402
                     text_matches_file, zero_counts)

HITS = 100000
THROWS = HITS // 3           # i % 3 == 0 for i in [1, HITS]
RUN_TIMEOUT = 60             # seconds a victim may take before it is killed
GDB_TIMEOUT = 60

ENTRY, RETURN = "add_entry", "add_return"   # count.bpf.c: counts[0] entries, counts[1] returns

_victims = []   # every victim started; killed on the way out, whatever happened


def _child_setup():
    """Every process the test starts dies with it and leaves no core."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class Victim:
    """A process that prints "ready", waits for a line, does its work,
    prints one line and exits after another line (or EOF)."""

    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, preexec_fn=_child_setup)
        _victims.append(self)
        self.pid = self.proc.pid
        self.watchdog = threading.Timer(RUN_TIMEOUT, self.kill)
        self.watchdog.start()
        self.ready = self.proc.stdout.readline().strip() == "ready"

    def go(self, word="go"):
        try:
            self.proc.stdin.write(word + "\n")
            self.proc.stdin.flush()
        except OSError:
            pass

    def result(self):
        """The result line; "" when the process died (or the watchdog
        killed it) first."""
        return self.proc.stdout.readline().strip()

    def end(self):
        """(exit status, stderr) once the process ended."""
        self.watchdog.cancel()
        _, err = finish(self.proc, 30)
        return self.proc.returncode, err or ""

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()

    def cleanup(self):
        self.watchdog.cancel()
        self.kill()
        try:
            self.proc.communicate(timeout=10)
        except (subprocess.TimeoutExpired, ValueError, OSError):
            pass


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def num(f, key):
    return int(f.get(key, -1))


def exit_text(rc):
    if rc is not None and rc < 0:
        return f"killed by {signal.Signals(-rc).name}"
    return f"exit {rc}"


def uretprobe_addresses(cl, pid):
    return {h["address"] for t in cl.call("target.list") if t["pid"] == pid for h in t["hooks"]
            if h["kind"] == "uretprobe"}


# ---- frames dropped by exceptions ----
# The payload counts, per hook, the frames an exception (or longjmp) left
# without returning through the uretprobe's trampoline; target.list shows
# the count on each uretprobe hook entry. A frame is counted when its
# thread next passes a uretprobe of the same stack (the victims' last call
# returns normally, so the counts have settled when they report).
DROPPED_FIELD = "dropped"


def check_dropped(cl, pid, addresses, want, what):
    """addresses: function -> its hook address (uretprobe entries of
    target.list); want: function -> the number of exceptions that crossed
    its frame. Must run before detach."""
    hooks = [h for t in cl.call("target.list") if t["pid"] == pid for h in t["hooks"] if h["kind"] == "uretprobe"]
    for func, n in want.items():
        entry = next((h for h in hooks if h["address"] == addresses.get(func)), None)
        got = entry.get(DROPPED_FIELD) if entry is not None else "no uretprobe hook in target.list"
        check_eq(got, n, f"{what}: target.list counts {n} frames of {func} left by exceptions "
                         f"(hook field '{DROPPED_FIELD}')")
# ---- end of the dropped-frames assumption ----


def probed_run(cl, argv, probes, what, dropped, during=None):
    """Runs argv with each (function, programs) of probes attached; during
    (when given) runs while the victim works, before its result line is
    read. dropped: function -> exceptions that crossed its frame, checked
    in target.list. Returns (fields, counts, during's result)."""
    v = Victim(argv)
    try:
        check(v.ready, f"{what}: victim ready")
        zero_counts(cl)
        addresses = {}
        for func, progs in probes:
            before = uretprobe_addresses(cl, v.pid)
            cl.call("target.attach", pid=v.pid, object="count", programs=progs, target=f":{func}")
            new = uretprobe_addresses(cl, v.pid) - before
            addresses[func] = new.pop() if len(new) == 1 else None
        v.go()
        extra = during(v) if during else None
        line = v.result()
        got = counts(cl, 4)
        # no result line: the process died (it may not be reaped yet)
        alive = bool(line) and v.proc.poll() is None
        if alive:
            check_dropped(cl, v.pid, addresses, dropped, what)
            cl.call("target.detach", pid=v.pid)
            check_eq(text_matches_file(v.pid), [], f"{what}: text equals the files after detach")
        rc, err = v.end()
        check(alive and rc == 0, f"{what}: the process ran its {HITS} iterations unharmed ({exit_text(rc)})",
              (f"stdout: {line!r}\n       stderr: " + "\n       ".join(err.strip().splitlines()[-6:])))
        return fields(line), got, extra
    finally:
        v.cleanup()


def plain_run(argv):
    """The victim's result line without probes, and its exit status."""
    v = Victim(argv)
    try:
        v.go()
        line = v.result()
        rc, _ = v.end()
        return fields(line), rc
    finally:
        v.cleanup()


# mode -> (probes, the normal-return fields the uretprobes count, the
# exceptions that cross each uretprobed frame)
CXX_MODES = {
    # middle -> inner, inner throws
    "one": ([("middle", [ENTRY, RETURN])], ["normal_returns"], {"middle": "throws"}),
    # f1 -> f2 -> f3 -> thrower: uretprobes on all three frames
    "three": ([("f1", [ENTRY, RETURN]), ("f2", [RETURN]), ("f3", [RETURN])],
              ["normal_returns", "f2_returns", "f3_returns"], {"f1": "throws", "f2": "throws", "f3": "throws"}),
    # rethrow_middle catches, counts and rethrows what inner threw: the
    # first exception crosses inner's frame, the rethrown one middle's
    "rethrow": ([("rethrow_middle", [ENTRY, RETURN]), ("inner", [RETURN])], ["normal_returns", "inner_returns"],
                {"rethrow_middle": "rethrows", "inner": "throws"}),
}


def test_cxx(cl, victim, variant, unwinder):
    for mode, (probes, returns, crossing) in CXX_MODES.items():
        what = f"{variant}/{mode}"
        base, rc = plain_run([victim, mode, str(HITS)])
        check(rc == 0 and num(base, "throws") == THROWS and num(base, "caught") == THROWS
              and base.get("unwinder") == unwinder,
              f"{what} unprobed: {THROWS} throws caught, _Unwind_RaiseException from {unwinder}", repr(base))
        f, got, _ = probed_run(cl, [victim, mode, str(HITS)], probes, what,
                               {func: num(base, key) for func, key in crossing.items()})
        want_returns = sum(num(base, k) for k in returns)
        if f:   # (without its result line, the process died: failed above)
            check_eq(num(f, "calls"), HITS, f"{what}: the victim made {HITS} calls")
            check_eq((num(f, "throws"), num(f, "caught")), (THROWS, THROWS), f"{what}: every throw was caught")
            check_eq(f.get("unwinder"), unwinder, f"{what}: exceptions ran on {unwinder}")
        check_eq(got[0], HITS, f"{what}: the entry uprobe counted every call")
        check_eq(got[1], want_returns,
                 f"{what}: the uretprobes counted the normal returns exactly ({' + '.join(returns)})")


def test_backtrace(cl, victim, libunwind):
    what = "backtrace"
    f, got, _ = probed_run(cl, [victim, "bt", str(HITS)], [("bt_probed", [ENTRY, RETURN])], what, {"bt_probed": 0})
    check_eq(num(f, "calls"), HITS, f"{what}: the victim made {HITS} calls")
    check_eq(got[:2], [HITS, HITS], f"{what}: uprobe and uretprobe counted every call exactly")
    # the trampoline is one frame of its own (bt_victim.c), every other
    # frame is the unprobed walk's
    check(num(f, "mismatches") == 0 and num(f, "depth") == num(f, "ref_depth") > 2 and num(f, "tramp") == 1,
          f"{what}: glibc backtrace() inside the uretprobed function sees the unprobed frames "
          "and the trampoline", repr(f))
    if libunwind:
        check(num(f, "unw_mismatches") == 0 and num(f, "unw_depth") == num(f, "unw_ref_depth") > 2
              and num(f, "unw_tramp") == 1,
              f"{what}: libunwind's unw_backtrace() inside the uretprobed function sees the unprobed frames "
              "and the trampoline", repr(f))
    else:
        skip("backtrace: libunwind's unw_backtrace() (bt-victim was built without libunwind-dev)")


def gdb_bt(gdb, v):
    """gdb's bt at a breakpoint in gdb_leaf, called by the uretprobed
    gdb_probed; then the victim is told to finish."""
    try:
        r = subprocess.run([gdb, "-nx", "-batch", "-p", str(v.pid), "-ex", "set debuginfod enabled off",
                            "-ex", "break gdb_leaf", "-ex", "continue", "-ex", "bt", "-ex", "delete", "-ex", "detach"],
                           capture_output=True, text=True, timeout=GDB_TIMEOUT, stdin=subprocess.DEVNULL,
                           preexec_fn=_child_setup)
        out = r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        out = f"gdb timed out after {GDB_TIMEOUT} s: {e.stdout or ''}"
    if v.proc.poll() is None:
        os.kill(v.pid, signal.SIGUSR1)   # the victim makes its last HITS calls and reports
    return out


def test_gdb(cl, victim, gdb):
    what = "gdb"
    f, got, out = probed_run(cl, [victim, "gdb", str(HITS)], [("gdb_probed", [ENTRY, RETURN])], what,
                             {"gdb_probed": 0}, during=lambda v: gdb_bt(gdb, v))
    bt = [ln for ln in (out or "").splitlines() if re.match(r"#\d+\s", ln)]
    check(bool(bt) and re.search(r"\bgdb_leaf\b", bt[0]) and any(re.search(r"\bmain \(", ln) for ln in bt),
          f"{what}: bt at a breakpoint under the uretprobed frame reaches main",
          "gdb printed:\n       " + "\n       ".join((out or "").strip().splitlines()[-12:]))
    calls = num(f, "calls")
    check(calls >= HITS and num(f, "normal_returns") == calls and num(f, "leaf_calls") == calls,
          f"{what}: the victim went on after gdb detached and made its {HITS} more calls", repr(f))
    check_eq(got[:2], [calls, calls], f"{what}: uprobe and uretprobe counted every call exactly")


def unwind_pages(pid):
    """The start addresses of pid's mappings of bpfgraft's unwind page."""
    with open(f"/proc/{pid}/maps") as f:
        return [line.split("-")[0] for line in f if "/memfd:bpfgraft-unwind" in line]


def test_reattach(cl, victim, gdb_file_dir):
    """Detach and attach again: the unwind page stays (the unwinders keep
    pointers into it), the next payload adopts it instead of mapping
    another, and exceptions go on crossing uretprobed frames."""
    what = "reattach"
    v = Victim([victim, "one", str(HITS)])
    try:
        check(v.ready, f"{what}: victim ready")
        pages, rounds = [], []
        for word in ("go", "again"):
            zero_counts(cl)
            cl.call("target.attach", pid=v.pid, object="count", programs=[ENTRY, RETURN], target=":middle")
            v.go(word)
            f = fields(v.result())
            rounds.append((num(f, "caught"), counts(cl, 2)))
            pages.append(unwind_pages(v.pid))
            gdb_file = os.path.exists(os.path.join(gdb_file_dir, f"unwind-{v.pid}.elf"))
            cl.call("target.detach", pid=v.pid)
            check(gdb_file and not os.path.exists(os.path.join(gdb_file_dir, f"unwind-{v.pid}.elf")),
                  f"{what}: gdb's file exists while attached, not after detach")
            check_eq(text_matches_file(v.pid), [], f"{what}: text equals the files after detach")
        want = (THROWS, [HITS, HITS - THROWS])
        check_eq(rounds, [want, want], f"{what}: both rounds caught every throw and counted exactly")
        check(len(pages[0]) == 2 and pages[0] == pages[1] == unwind_pages(v.pid),
              f"{what}: one unwind page (rw and r-x), adopted by the second payload", repr(pages))
        v.go("quit")
        rc, _ = v.end()
        check_eq(rc, 0, f"{what}: exit status")
    finally:
        v.cleanup()


def symbol_address(binary, name):
    """name's address in binary's symbol table, as "0x..." (nm)."""
    out = subprocess.run(["nm", binary], capture_output=True, text=True).stdout
    return next((f"0x{line.split()[0]}" for line in out.splitlines() if line.split()[-1:] == [name]), None)


def test_static(cl, victim):
    """A static executable: libgcc's unwinder is inside it and registered
    with through its symbols. Stripped, it cannot be found: a uretprobe is
    refused up front, naming why, and the process goes on unharmed."""
    what = "g++ -static/one"
    probes, returns, crossing = CXX_MODES["one"]
    f, got, _ = probed_run(cl, [victim, "one", str(HITS)], probes, what, {"middle": THROWS})
    check_eq((num(f, "throws"), num(f, "caught")), (THROWS, THROWS), f"{what}: every throw was caught")
    check_eq(got[:2], [HITS, HITS - THROWS], f"{what}: entry and uretprobe counted calls and normal returns exactly")
    what = "g++ -static, stripped"
    stripped, address = victim + "-stripped", symbol_address(victim, "middle")
    from bpfgraft_client import BpfgraftError  # on sys.path once the options are parsed
    v = Victim([stripped, "one", str(HITS)])
    try:
        check(v.ready, f"{what}: victim ready")
        try:
            cl.call("target.attach", pid=v.pid, object="count", programs=[RETURN], target=address)
            refused = ""
        except BpfgraftError as e:
            refused = str(e)
        check(".gcc_except_table" in refused and "refused" in refused,
              f"{what}: a uretprobe is refused, naming why", refused or "attached")
        v.go()
        f = fields(v.result())
        check_eq(num(f, "caught"), THROWS, f"{what}: the process ran unharmed")
        check_eq(text_matches_file(v.pid), [], f"{what}: text equals the files")
        rc, _ = v.end()
        check_eq(rc, 0, f"{what}: exit status")
    finally:
        v.cleanup()


def main():
    args = parse_probe_args("--bt-victim", optional=("--cxx-victim-gcc", "--cxx-victim-llvm", "--cxx-victim-static",
                                                      "--cxx-victim-llvm-missing", "--libunwind", "--gdb"))
    try:
        with Server(args) as srv:
            cl = srv.client()
            cl.call("object.load", path=os.path.abspath(args.obj), name="count")
            if args.cxx_victim_gcc:
                test_cxx(cl, args.cxx_victim_gcc, "g++", "libgcc_s.so.1")
            else:
                skip("g++/libstdc++ victim: the project's C++ compiler is not g++")
            if args.cxx_victim_gcc:
                test_reattach(cl, args.cxx_victim_gcc, srv.dir)
            if args.cxx_victim_static:
                test_static(cl, args.cxx_victim_static)
            else:
                skip("g++ -static victim: no static libstdc++ at build time")
            if args.cxx_victim_llvm:
                test_cxx(cl, args.cxx_victim_llvm, "clang++/libc++", "libunwind.so.1")
            else:
                skip(f"clang++/libc++/LLVM libunwind victim: {args.cxx_victim_llvm_missing or 'not built'}")
            test_backtrace(cl, args.bt_victim, args.libunwind in ("1", "ON", "TRUE", "true"))
            if args.gdb:
                test_gdb(cl, args.bt_victim, args.gdb)
            else:
                skip("gdb: not installed at build time (scripts/setup.sh installs it)")
    finally:
        for v in _victims:
            v.cleanup()
    sys.exit(report())


if __name__ == "__main__":
    main()
