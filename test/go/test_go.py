"""Go and Rust targets (issue 16) against a real bpfgraftd.

Go: a pure Go victim (no cgo: no libc in the process; Go's own fs base
per M, its SA_ONSTACK signal handlers and async preemption), built
plain and stripped (-ldflags=-s -w: the function found through
.gopclntab). Goroutines over many OS threads call main.probed from deep
recursion that grows and copies their stacks while the probe runs, with
the GC at GOGC=1 and checkmarks on. Checked: the uretprobe refused up
front naming why (and the process untouched), the uprobe's exact count,
Go's nine argument registers as pt_regs (each call's, and their sum), a
hash map keyed by pid_tgid exact for goroutines locked to threads;
syscall tracepoints (every syscall site of the binary rewritten, no
Syscall User Dispatch): getppid/openat/close sys_enter and getppid
sys_exit counts exact and equal to `strace -c -f`'s over a round, over
rounds with the GC, preemption and stack growth going on; detach
leaving the text equal to the files, the process's normal exit, and
`bpfgraft start` of each.

Rust: rustc -O std threads: uprobe and uretprobe exact, the same hash
map, getppid/openat/close tracepoint counts equal to `strace -c -f`'s
over a round.

cgo (test/stacks' victim, glibc mapped): syscall tracepoints refused,
naming the library whose syscalls would be missed without dispatch.

`bpfgraft run` with Debian's libbpf-tools: opensnoop against both (one
line for each open), funclatency against Rust (exact) and against Go
(its uretprobe refused, naming Go, the process unharmed)."""
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import (Server, Strace, check, check_eq, counts, finish, parse_probe_args, report, skip,  # noqa: E402
                     text_matches_file, zero_counts)

GOROUTINES, CALLS = 8, 300
SLOTS = 8   # go.bpf.c: counts
ENTRIES, RETURNS, WRONG, GETPPID, OPENAT, CLOSE, ARGSUM, GETPPID_EXIT = range(SLOTS)
SYSCALL_PROGS = ["go_getppid", "go_openat", "go_close", "go_getppid_exit"]
GO_ENV = dict(os.environ, GODEBUG="clobberfree=1,gccheckmark=1", GOGC="1")
TOOLS = "/usr/sbin"


class Victim:
    """go_victim.go or rust_victim.rs: rounds on stdin lines."""

    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.pid = self.proc.pid
        self.ready = self.proc.stdout.readline().strip() == "ready"

    def round(self):
        """The round's fields, with its threads as {tid: calls}."""
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        f["tids"] = {int(t): int(c) for t, c in (x.split(":") for x in f.get("tids", "").split(",") if x)}
        return f

    def quit(self):
        """The exit status after "quit" (killed after 30 s)."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                pass
        finish(self.proc, 30)
        return self.proc.returncode


def by_thread(cl, pid):
    out = {}
    for e in cl.call("map.dump", map="by_thread")["entries"]:
        key = struct.unpack("<Q", e["key"])[0]
        if key >> 32 == pid:
            out[key & 0xffffffff] = struct.unpack("<Q", e["value"])[0]
    return out


def clear_threads(cl):
    for e in cl.call("map.dump", map="by_thread")["entries"]:
        cl.call("map.delete", map="by_thread", key=e["key"])


def attached(cl, pid):
    return any(t["pid"] == pid for t in cl.call("target.list"))


def go_syscalls(srv, cl, v, name):
    """Syscall tracepoints in a Go process: its sites rewritten, counts
    exact and equal to strace's, over three rounds."""
    traced = strace_round(srv, v, name)
    cl.call("target.attach", pid=v.pid, object="go", programs=SYSCALL_PROGS)
    t = [t for t in cl.call("target.list") if t["pid"] == v.pid][0]
    check(t.get("syscall_programs") == len(SYSCALL_PROGS) and t.get("syscall_sites", 0) > 0,
          f"{name}: syscall tracepoints attached, the binary's syscall sites rewritten",
          f"{t.get('syscall_programs')} programs, {t.get('syscall_sites')} sites")
    for k in range(3):
        f = exact_round(cl, v, f"{name} (syscalls, round {k + 1})", GOROUTINES, False, traced if k == 0 else None)
        check_eq(counts(cl, SLOTS)[GETPPID_EXIT], int(f.get("calls", -1)),
                 f"{name} (syscalls, round {k + 1}): the sys_exit tracepoint of getppid counted each call")
        check_eq(int(f.get("moved", -1)), GOROUTINES, f"{name} (syscalls, round {k + 1}): every goroutine's stack moved")


def refuse_uretprobe(cl, v, target, name, attached_before=False):
    """A uretprobe on Go code is refused before anything is changed."""
    from bpfgraft_client import BpfgraftError  # on sys.path once the options are parsed
    try:
        cl.call("target.attach", pid=v.pid, object="go", programs=["go_return"], target=target)
        refused = ""
    except BpfgraftError as e:
        refused = str(e)
    check("Go code" in refused and "uretprobe" in refused, f"{name}: a uretprobe on a Go function is refused, naming why",
          refused or "attached")
    if attached_before:
        check_eq([h["kind"] for h in hooks_of(cl, v.pid)], ["uprobe"], f"{name}: after the refusal only the uprobe is in")
    else:
        check(not attached(cl, v.pid) and text_matches_file(v.pid) == [],
              f"{name}: after the refusal the process is not attached and its text equals its file")


def strace_round(srv, v, name):
    """One round, unattached, under strace -c -f: its syscall counts (-p
    of the process attaches each of its threads)."""
    st = Strace([v.pid], srv.dir)
    check(st.attached, f"{name}: strace -f attached to the process's threads")
    v.round()
    return st.counts()


def exact_round(cl, v, name, threads, expect_ret, traced=None, syscalls=True):
    """One round with the probes attached: every count exact, the syscall
    tracepoints' equal to traced (strace's over an unattached round)."""
    zero_counts(cl, SLOTS)
    clear_threads(cl)
    f = v.round()
    time.sleep(0.1)
    c = counts(cl, SLOTS)
    n = int(f.get("calls", -1))
    check_eq(n, threads * CALLS, f"{name}: the round made every call")
    check_eq(c[:WRONG + 1], [n, n if expect_ret else 0, 0],
             f"{name}: uprobe{' and uretprobe' if expect_ret else ''} exact, every argument as passed")
    check_eq(c[ARGSUM], int(f.get("sum", -1)), f"{name}: the arguments read from pt_regs sum to what was passed")
    if syscalls:
        check_eq(c[GETPPID:CLOSE + 1], [n, n, n], f"{name}: getppid, openat and close tracepoints: one each a call")
    if traced is not None:
        check_eq(c[GETPPID:CLOSE + 1], [traced.get(s, 0) for s in ("getppid", "openat", "close")],
                 f"{name}: tracepoint counts equal strace -c -f's over a round")
    mine = by_thread(cl, v.pid)
    check(f["tids"] and all(mine.get(t) == c for t, c in f["tids"].items()),
          f"{name}: the hash map keyed by pid_tgid counted each pinned thread's calls exactly",
          f"{f['tids']} vs {mine}")
    check_eq(sum(mine.values()), n, f"{name}: the hash map's counts over all threads add up to every call")
    return f


def test_go(srv, cl, path, name):
    v = Victim([path, str(GOROUTINES), str(CALLS)], GO_ENV)
    try:
        if not check(v.ready, f"{name}: started"):
            return
        refuse_uretprobe(cl, v, ":main.probed", name)
        cl.call("target.attach", pid=v.pid, object="go", programs=["go_entry"], target=":main.probed")
        threads = len(os.listdir(f"/proc/{v.pid}/task"))
        check(True, f"{name}: uprobe on main.probed attached ({threads} threads)")
        f = exact_round(cl, v, f"{name} (round 1)", GOROUTINES, False, syscalls=False)
        check_eq(int(f.get("moved", -1)), GOROUTINES, f"{name}: every goroutine's stack was copied while probed")
        check(len(f["tids"]) == GOROUTINES // 2, f"{name}: half the goroutines ran on threads of their own",
              repr(f["tids"]))
        for k in range(2):
            exact_round(cl, v, f"{name} (round {k + 2})", GOROUTINES, False, syscalls=False)
        refuse_uretprobe(cl, v, ":main.probed", f"{name} attached", attached_before=True)
        check_eq(int(v.round().get("calls", -1)), GOROUTINES * CALLS, f"{name}: the process runs on after the refusal")
        go_syscalls(srv, cl, v, name)
        cl.call("target.detach", pid=v.pid)
        check_eq(text_matches_file(v.pid), [], f"{name}: after detach the text equals the file")
        zero_counts(cl, SLOTS)
        f = v.round()
        check(int(f.get("calls", -1)) == GOROUTINES * CALLS and counts(cl, SLOTS) == [0] * SLOTS,
              f"{name}: after detach it runs on and nothing counts")
    finally:
        check_eq(v.quit(), 0, f"{name}: the process exits normally")


def test_cgo_refused(srv, cl, path):
    """A cgo process (test/stacks' victim: glibc mapped) gets no syscall
    tracepoints: libc's syscalls would be missed without dispatch."""
    from bpfgraft_client import BpfgraftError
    p = subprocess.Popen([path, "10"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if not check(p.stdout.readline().strip() == "ready", "cgo: started"):
            return
        try:
            cl.call("target.attach", pid=p.pid, object="go", programs=["go_getppid"])
            refused = ""
        except BpfgraftError as e:
            refused = str(e)
        check("syscall tracepoints in Go process" in refused and "cgo" in refused and ".so" in refused,
              "cgo: syscall tracepoints refused, naming the library whose syscalls would be missed",
              refused or "attached")
        check(not any(t["pid"] == p.pid and t.get("syscall_programs") for t in cl.call("target.list")),
              "cgo: after the refusal no syscall program is in the process")
        if attached(cl, p.pid):
            cl.call("target.detach", pid=p.pid)
        check_eq(text_matches_file(p.pid), [], "cgo: after the refusal and detach the text equals the file")
        p.stdin.write("go\n")
        p.stdin.flush()
        check(p.stdout.readline().startswith("calls=80 "), "cgo: the process runs on")
        p.stdin.write("end\n")
        p.stdin.flush()
    finally:
        finish(p, 30)
    check_eq(p.returncode, 0, "cgo: the process exits normally")


def test_go_start(srv, cl, path, name):
    """bpfgraft start: the uprobe and a syscall tracepoint (every site
    rewritten) in place before the Go runtime starts."""
    zero_counts(cl, SLOTS)
    clear_threads(cl)
    r = subprocess.run([srv.cli_bin, "--socket", srv.socket, "start", "--target", ":main.probed", "go", "go_entry",
                        "go_getppid", "--",
                        path, str(GOROUTINES), str(CALLS), "once"], capture_output=True, text=True, timeout=120,
                       env=GO_ENV)
    f = dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)
    n = GOROUTINES * CALLS
    check(r.returncode == 0 and f.get("calls") == str(n), f"{name}: bpfgraft start runs it to its end",
          (r.stdout + r.stderr)[-400:])
    c = counts(cl, SLOTS)
    check_eq((c[ENTRIES], c[WRONG], c[ARGSUM], c[GETPPID]), (n, 0, int(f.get("sum", -1)), n),
             f"{name} under bpfgraft start: every call and getppid() counted, the arguments as passed")


def test_rust(srv, cl, path):
    threads = 4
    v = Victim([path, str(threads), str(CALLS)])
    try:
        if not check(v.ready, "rust: started"):
            return
        traced = strace_round(srv, v, "rust")
        cl.call("target.attach", pid=v.pid, object="go",
                programs=["rust_entry", "go_return", "go_getppid", "go_openat", "go_close"], target=":probed")
        exact_round(cl, v, "rust (round 1)", threads, True, traced)
        exact_round(cl, v, "rust (round 2)", threads, True)
        cl.call("target.detach", pid=v.pid)
        check_eq(text_matches_file(v.pid), [], "rust: after detach the text equals the file")
    finally:
        check_eq(v.quit(), 0, "rust: the process exits normally")


def hooks_of(cl, pid):
    return [h for t in cl.call("target.list") if t["pid"] == pid for h in t.get("hooks", [])]


def hooked(cl, pid):
    """Has a tool's uprobe or syscall tracepoint reached pid yet?"""
    return any(t["pid"] == pid and (t.get("hooks") or t.get("syscall_programs")) for t in cl.call("target.list"))


def tool_round(srv, cl, v, argv, what):
    """Runs a libbpf tool under bpfgraft run while v makes one round once
    its hooks are in (or 20 s passed): (round fields, tool's rc, stdout,
    stderr)."""
    tool = subprocess.Popen([srv.cli_bin, "--socket", srv.socket, "run", "--"] + argv,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not hooked(cl, v.pid) and tool.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1)   # the tool attaches its programs one by one
    # (its -d counts from its start: long enough for a round on a loaded machine)
    f = v.round()
    out, err = finish(tool, 60)
    print(f"---- {what} ----\n{out[-1200:]}{err[-600:]}")
    return f, tool.returncode, out, err


def histogram_total(out):
    return sum(int(l.split(":")[1].split("|")[0]) for l in out.splitlines() if "->" in l and ":" in l)


def test_tools(srv, cl, go_path, rust_path):
    if not all(os.access(os.path.join(TOOLS, t), os.X_OK) for t in ("opensnoop", "funclatency")):
        skip("no libbpf-tools (scripts/setup.sh installs it): opensnoop and funclatency not run")
        return
    for name, path, env in (("go", go_path, GO_ENV), ("rust", rust_path, None)):
        if not path:
            continue
        v = Victim([path, "2", "50"], env)
        try:
            cl.call("target.attach", pid=v.pid)
            f, rc, out, _ = tool_round(srv, cl, v, [f"{TOOLS}/opensnoop", "-p", str(v.pid), "-d", "8"],
                                       f"opensnoop {name}")
            lines = [l for l in out.splitlines() if "/dev/null" in l and l.split()[0] == str(v.pid)]
            check(rc == 0 and len(lines) == int(f.get("calls", -1)) == 100,
                  f"opensnoop under bpfgraft run: one line for each of the {name} victim's 100 opens",
                  f"rc {rc}, {len(lines)} lines")
            if name == "rust":
                f, rc, out, _ = tool_round(srv, cl, v, [f"{TOOLS}/funclatency", "-p", str(v.pid), "-d", "8",
                                                        ":probed"], "funclatency rust")
                check(rc == 0 and histogram_total(out) == int(f.get("calls", -1)) == 100,
                      "funclatency under bpfgraft run: the Rust function's 100 calls in its histogram",
                      f"rc {rc}, {histogram_total(out)} counted")
            else:
                r = subprocess.run([srv.cli_bin, "--socket", srv.socket, "run", "--", f"{TOOLS}/funclatency",
                                    "-p", str(v.pid), "-d", "1", ":main.probed"],
                                   capture_output=True, text=True, timeout=60)
                check(r.returncode != 0 and "Go code" in r.stderr + r.stdout,
                      "funclatency (a uretprobe) on a Go function: refused, naming Go", (r.stdout + r.stderr)[-400:])
                check_eq(int(v.round().get("calls", -1)), 100, "go: the process runs on after funclatency's refusal")
            cl.call("target.detach", pid=v.pid)
            check_eq(text_matches_file(v.pid), [], f"{name}: after the tools the text equals the file")
        finally:
            check_eq(v.quit(), 0, f"{name}: the process exits normally after the tools")


def main():
    args = parse_probe_args("--test-bin")
    bins = {n: os.path.abspath(os.path.join(args.test_bin, n)) for n in ("go-victim-pure", "go-victim-stripped", "rust-victim")}
    with Server(args) as srv:
        cl = srv.client()
        cl.call("object.load", path=os.path.abspath(args.obj), name="go")
        for name in ("go-victim-pure", "go-victim-stripped"):
            if os.path.exists(bins[name]):
                test_go(srv, cl, bins[name], name)
                test_go_start(srv, cl, bins[name], name)
            else:
                skip(f"{name}: no Go toolchain at build time (scripts/setup.sh installs golang-go)")
        cgo = os.path.join(os.path.abspath(args.test_bin), "go-victim")   # test/stacks'
        if os.path.exists(cgo):
            test_cgo_refused(srv, cl, cgo)
        rust = bins["rust-victim"] if os.path.exists(bins["rust-victim"]) else ""
        if rust:
            test_rust(srv, cl, rust)
        else:
            skip("rust: no rustc at build time (scripts/setup.sh installs rustc)")
        test_tools(srv, cl, bins["go-victim-pure"] if os.path.exists(bins["go-victim-pure"]) else "", rust)
    return report()


if __name__ == "__main__":
    sys.exit(main())
