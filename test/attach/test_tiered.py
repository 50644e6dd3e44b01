"""The tiered engine (--engine tiered): the attach goes through on the x86
JIT's code, the server then compiles the LLVM code and the payload swaps
it in (BPFG_PMSG_PROG_SWAP) while threads call the probed function.

Per round: the server is stopped (SIGSTOP) as soon as the attach is
answered, so the victim's threads run on the x86 code first; the victim's
maps show the x86 code mapped alone (one bpfgraft-code mapping a
program). Then the server goes on, the listing turns to llvm while the
threads keep calling, the LLVM code is mapped beside the x86 code (kept
until the program is unloaded), and the entry and return counts equal
the victim's calls exactly, as they do with --engine llvm. A server
killed and started again adopts the target with its programs on llvm,
and one killed before it sent the llvm code does the swap after the
restart, from the target's record."""
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import check, check_eq, counts, parse_probe_args, report, zero_counts  # noqa: E402
from test_attach import Victim, attach, engines_of  # noqa: E402

PROGS = ["add_entry", "add_return"]


def code_mappings(pid):
    """How many mappings of bpfgraft's code memfds the process has."""
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for line in f if "bpfgraft-code" in line)


def drop_jit_cache(srv):
    """Empties the server's compiled-code cache (its *.jit entries), so the
    next swap waits for a real LLVM compile (ms), not a cache hit (us): the
    test's SIGSTOP then lands before it."""
    cache = os.path.join(srv.dir, "jitcache")
    for name in os.listdir(cache) if os.path.isdir(cache) else []:
        if name.endswith(".jit"):
            os.unlink(os.path.join(cache, name))


def wait_engines(cl, pid, want, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        eng = engines_of(cl, pid)
        if eng == want:
            return eng
        time.sleep(0.01)
    return engines_of(cl, pid)


def exact(cl, v, calls0, what):
    """Counts since zero: entries and returns equal the victim's calls."""
    check(v.quiesce(), f"{what}: the victim's threads stop")
    calls = v.get("calls") - calls0
    m = counts(cl)
    check(calls > 0, f"{what}: the victim called the probed function", str(calls))
    check_eq([m[0], m[1], m[2]], [calls, calls, 0], f"{what}: entries and returns equal the {calls} calls")
    check_eq(v.get("bad_results"), 0, f"{what}: the victim saw no wrong result")
    return m


def tiered_round(srv, cl, v):
    """One attach with the server stopped at its reply; True if the x86
    code alone was mapped then (the swap had not begun)."""
    zero_counts(cl)
    calls0 = v.get("calls")
    drop_jit_cache(srv)
    attach(cl, v.pid, PROGS, ":probed_add", "tiered")
    os.kill(srv.proc.pid, signal.SIGSTOP)
    try:
        before = code_mappings(v.pid)
        v.set("go", 1)
        time.sleep(0.2)  # the threads run on the x86 code
        deadline = time.monotonic() + 20  # a loaded machine may not run them that soon
        while v.get("calls") == calls0 and time.monotonic() < deadline:
            time.sleep(0.005)
        on_x86 = v.get("calls") - calls0
    finally:
        os.kill(srv.proc.pid, signal.SIGCONT)
    eng = wait_engines(cl, v.pid, ["llvm"])
    at_switch = v.get("calls")
    check_eq(eng, ["llvm"], "tiered: the listing turns to llvm while the threads call")
    deadline = time.monotonic() + 20
    while v.get("calls") == at_switch and time.monotonic() < deadline:
        time.sleep(0.005)
    check(v.get("calls") > at_switch, "tiered: the threads go on calling after the switch")
    check(on_x86 > 0, "tiered: calls ran before the switch", str(on_x86))
    after = code_mappings(v.pid)
    exact(cl, v, calls0, "tiered across the switch")
    if before == len(PROGS):
        check_eq(after, 2 * len(PROGS), "tiered: the llvm code is mapped beside the x86 code it replaced")
    return before == len(PROGS)


def main():
    args = parse_probe_args("--test-bin")
    from harness import Server
    with Server(args) as srv:
        cl = srv.client()
        cl.call("object.load", path=os.path.abspath(args.obj), name="count")
        victim = os.path.join(args.test_bin, "attach-victim-pie")

        # the engine is refused by name only if unknown: "tiered" is one
        v = Victim(victim, srv.dir, 4)
        try:
            seen_x86 = False
            for round_ in range(3):  # a round whose swap began before the stop proves nothing about x86
                seen_x86 = tiered_round(srv, cl, v)
                cl.call("target.detach", pid=v.pid)
                if seen_x86:
                    break
                v.stop()
                v = Victim(victim, srv.dir, 4)
            check(seen_x86, "tiered: a round ran on the x86 code alone before the swap")
            check(v.alive(), "tiered: victim alive")
        finally:
            v.stop()

        # --engine llvm, same programs: the same counts
        v = Victim(victim, srv.dir, 4)
        try:
            zero_counts(cl)
            calls0 = v.get("calls")
            attach(cl, v.pid, PROGS, ":probed_add", "llvm")
            check_eq(engines_of(cl, v.pid), ["llvm"], "llvm: the listing says llvm at once")
            v.set("go", 1)
            time.sleep(0.3)
            exact(cl, v, calls0, "llvm")
            cl.call("target.detach", pid=v.pid)
        finally:
            v.stop()

        # the CLI: `bpfgraft attach --engine tiered`, then `ps --json`
        v = Victim(victim, srv.dir, 1)
        try:
            rc, out, err = srv.cli_attach(v.pid, "count", "add_entry", "--target", ":probed_add", "--engine", "tiered")
            check(rc == 0, "cli: attach --engine tiered", out + err)
            wait_engines(cl, v.pid, ["llvm"])
            rc, ps, err = srv.cli_json("ps")
            mine = [t for t in ps or [] if t["pid"] == v.pid]
            check(rc == 0 and len(mine) == 1 and [h["engine"] for h in mine[0]["hooks"]] == ["llvm"],
                  "cli: ps --json reports llvm once switched", repr(ps) + err)
            cl.call("target.detach", pid=v.pid)
        finally:
            v.stop()

        # a server killed (-9) after the swap: the one started again adopts
        # the target with its programs on llvm, and they keep counting
        v = Victim(victim, srv.dir, 4)
        try:
            zero_counts(cl)
            calls0 = v.get("calls")
            attach(cl, v.pid, PROGS, ":probed_add", "tiered")
            check_eq(wait_engines(cl, v.pid, ["llvm"]), ["llvm"], "restart: switched before the kill")
            srv.proc.kill()
            srv.proc.wait()
            srv.start_again()
            cl = srv.client()
            check_eq(wait_engines(cl, v.pid, ["llvm"], timeout=30), ["llvm"],
                     "restart: the adopted target's programs run on llvm")
            v.set("go", 1)
            time.sleep(0.3)
            exact(cl, v, calls0, "restart")
            cl.call("target.detach", pid=v.pid)
        finally:
            v.stop()

        # a server killed (-9) while it owed the llvm code (stopped at the
        # attach's reply): the one started again finds the debt in the
        # target's record and does the swap; the counts stay exact
        owed = False
        for round_ in range(3):
            v = Victim(victim, srv.dir, 4)
            try:
                zero_counts(cl)
                calls0 = v.get("calls")
                drop_jit_cache(srv)
                attach(cl, v.pid, PROGS, ":probed_add", "tiered")
                os.kill(srv.proc.pid, signal.SIGSTOP)
                owed = code_mappings(v.pid) == len(PROGS)
                srv.proc.kill()
                srv.proc.wait()
                v.set("go", 1)  # on x86 code while no server runs
                time.sleep(0.2)
                srv.start_again()
                cl = srv.client()
                if owed:
                    check_eq(wait_engines(cl, v.pid, ["llvm"], timeout=30), ["llvm"],
                             "owed swap: the restarted server switches the programs to llvm")
                    check_eq(code_mappings(v.pid), 2 * len(PROGS), "owed swap: llvm code beside the x86 code")
                    time.sleep(0.2)
                    exact(cl, v, calls0, "owed swap across the restart")
                else:
                    wait_engines(cl, v.pid, ["llvm"], timeout=30)
                cl.call("target.detach", pid=v.pid)
            finally:
                v.stop()
            if owed:
                break
        check(owed, "owed swap: a round killed the server before its swap")
    return report()


if __name__ == "__main__":
    sys.exit(main())
