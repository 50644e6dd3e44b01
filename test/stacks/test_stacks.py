"""Probes on any stack (payload/README.md, "Stack budget"): uprobes and
uretprobes hit where the target has little stack left — a signal handler
on an 8 KiB alternate stack, a ucontext fiber with a 16 KiB stack, a
thread with a 16 KiB stack, goroutines — with exact counts and the process
unharmed; and the deepest write a probe makes below the probed call's
stack pointer stays within the documented budget."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import (Server, check, check_eq, counts, finish, parse_probe_args, report,  # noqa: E402
                     text_matches_file, zero_counts)

BUDGET = 160   # bytes below the probed function's sp (payload/README.md)
HITS = 10000


class Victim:
    """A process that waits for a line, does its work, prints one line and
    waits for another before it exits."""

    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.pid = self.proc.pid
        self.ready = self.proc.stdout.readline().strip() == "ready"

    def run(self):
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def end(self):
        out, _ = finish(self.proc, 30)
        return self.proc.returncode, out


def fields(line):
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def probed_run(cl, argv, target, progs, what, env=None, engine="llvm", more=()):
    """Runs argv once with progs attached to target (and each (progs,
    target) of more); returns (fields, counts)."""
    v = Victim(argv, env)
    check(v.ready, f"{what}: victim ready")
    zero_counts(cl)
    for p, t in [(progs, target)] + list(more):
        cl.call("target.attach", pid=v.pid, object="count", programs=p, target=t, engine=engine)
    line = v.run()
    got = counts(cl, 4)
    alive = v.proc.poll() is None
    if alive:
        cl.call("target.detach", pid=v.pid)
        check_eq(text_matches_file(v.pid), [], f"{what}: text equals the files after detach")
    rc, rest = v.end()
    check(alive and rc == 0, f"{what}: the process is unharmed (exit {rc})", line + rest)
    return fields(line), got


def test_small_stacks(cl, victim):
    for mode in ("sigalt", "fiber", "thread"):
        for engine in ("llvm", "interp"):
            what = f"{mode}/{engine}"
            f, got = probed_run(cl, [victim, mode, str(HITS)], ":stack_probed", ["add_entry", "add_return"], what,
                                engine=engine)
            check_eq(int(f.get("calls", -1)), HITS, f"{what}: the victim made {HITS} calls")
            check_eq(got[:2], [HITS, HITS], f"{what}: uprobe and uretprobe counted every call exactly")


def test_nested(cl, victim):
    """A probe's program signals its thread; the handler, running on the
    handler stack, calls a second probed function."""
    for engine in ("llvm", "interp"):
        what = f"nested/{engine}"
        f, got = probed_run(cl, [victim, "nested", str(HITS)], ":stack_probed", ["add_signal_thread"], what,
                            engine=engine, more=[(["lib_entry"], ":nested_probed")])
        check_eq((int(f.get("calls", -1)), int(f.get("nested", -1))), (HITS, HITS),
                 f"{what}: every probe hit signalled the thread once")
        check_eq((got[0], got[3]), (HITS, HITS), f"{what}: outer and nested probes counted exactly")


def test_depth(cl, victim):
    v = Victim([victim, "depth", "50"])
    base = fields(v.run())
    v.end()
    check_eq(int(base.get("depth", -1)), 8, "unprobed: a call writes only its return address below sp")
    for progs in (["add_entry"], ["add_entry", "add_return"]):
        what = "+".join(progs)
        f, got = probed_run(cl, [victim, "depth", "200"], ":depth_probed", progs, f"depth {what}")
        depth, calls = int(f.get("depth", -1)), int(f.get("calls", -1))
        check_eq(got[0], calls, f"depth {what}: every measured call was probed")
        print(f"     deepest write below the probed call's sp: {depth} bytes (budget {BUDGET})")
        check(8 < depth <= BUDGET, f"depth {what}: a probe writes at most {BUDGET} bytes of the target's stack",
              f"{depth} bytes")


def test_go(cl, go_victim):
    env = dict(os.environ, GODEBUG="clobberfree=1,gccheckmark=1", GOGC="1")
    base = Victim([go_victim, "20000"], env)
    plain = fields(base.run())
    base.end()
    f, got = probed_run(cl, [go_victim, "20000"], ":main.probed", ["add_entry"], "go", env=env)
    check(plain.get("calls") == "160000" and f == plain, "go: goroutines compute what they compute unprobed",
          f"{f} vs {plain}")
    check_eq(got[0], 160000, "go: the uprobe counted every call from 8 goroutines exactly")
    test_go_uretprobe(cl, go_victim, env)


def test_go_uretprobe(cl, go_victim, env):
    """Go's stack walker cannot be told about a replaced return address:
    a uretprobe on Go code is refused up front, naming why, and the
    process is left as it was."""
    from bpfgraft_client import BpfgraftError  # on sys.path once the options are parsed
    v = Victim([go_victim, "2000"], env)
    check(v.ready, "go uretprobe: victim ready")
    try:
        cl.call("target.attach", pid=v.pid, object="count", programs=["add_return"], target=":main.probed")
        refused = ""
    except BpfgraftError as e:
        refused = str(e)
    check("Go code" in refused and "uretprobe" in refused, "go: a uretprobe on a Go function is refused, naming why",
          refused or "attached")
    line = v.run()
    check(fields(line).get("calls") == "16000", "go uretprobe: the goroutines ran unharmed", line)
    alive = v.proc.poll() is None
    if alive:  # the refused attach took its payload back: nothing to detach
        check_eq(text_matches_file(v.pid), [], "go uretprobe: text equals the files")
        check(all(t["pid"] != v.pid for t in cl.call("target.list")), "go uretprobe: the process is not attached")
    rc, _ = v.end()
    check(alive and rc == 0, f"go uretprobe: the process exits normally (exit {rc})")


def main():
    args = parse_probe_args("--victim", optional=("--go-victim",))
    with Server(args) as srv:
        cl = srv.client()
        cl.call("object.load", path=os.path.abspath(args.obj), name="count")
        test_depth(cl, args.victim)
        test_small_stacks(cl, args.victim)
        test_nested(cl, args.victim)
        if args.go_victim:
            test_go(cl, args.go_victim)
        else:
            check(False, "go: a Go victim to probe", "no Go toolchain at build time (scripts/setup.sh installs golang-go)")
    sys.exit(report())


if __name__ == "__main__":
    main()
