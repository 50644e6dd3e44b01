"""Programs of one object attached together with --engine llvm are compiled
as one LLVM batch (one module, one codegen run) and shipped in one code
memfd, each program at its own entry (PROG_CODE entry_off).

A victim gets four programs of count.bpf.o at :probed_add (entry, return,
tid map update, a second entry counter): the listing says llvm, the
process maps the code four times (each program maps its own view, so
unloading one never unmaps another's) from one memfd, the jit cache holds
one entry (the batch), and every program counts exactly the victim's
calls. A second victim attaches from the cached batch; with the x86 engine
each program has a memfd of its own; a program the cache holds alone
comes from there and the rest form a batch. There is no request that
unloads one program of a batch while the others stay (target.detach is
per process, a binary-wide detach removes its whole set), so the test
checks the separate mappings instead."""
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import check, check_eq, counts, parse_probe_args, report, zero_counts  # noqa: E402
from test_attach import Victim, attach, engines_of  # noqa: E402

PROGS = ["add_entry", "add_return", "add_tid", "lib_entry"]


def code_inodes(pid):
    """The inode of every mapping of bpfgraft's code memfds in pid."""
    with open(f"/proc/{pid}/maps") as f:
        return [int(line.split()[4]) for line in f if "bpfgraft-code" in line]


def cache_entries(srv):
    cache = os.path.join(srv.dir, "jitcache")
    return sorted(n for n in os.listdir(cache) if n.endswith(".jit")) if os.path.isdir(cache) else []


def clear_tids(cl):
    for e in cl.call("map.dump", map="tids")["entries"]:
        cl.call("map.delete", map="tids", key=e["key"])


def run_exact(cl, v, progs, what):
    """Every program counts the victim's calls: entries (key 0), returns
    (1), lib_entry here (3), and add_tid's map holds the calling threads."""
    zero_counts(cl)
    clear_tids(cl)
    check(v.quiesce(), f"{what}: the victim's threads stop before")
    c0 = v.get("calls")
    v.set("go", 1)
    time.sleep(0.3)
    deadline = time.monotonic() + 20  # a loaded machine may not run the threads that soon
    while v.get("calls") == c0 and time.monotonic() < deadline:
        time.sleep(0.005)
    check(v.quiesce(), f"{what}: the victim's threads stop")
    calls = v.get("calls") - c0
    m = counts(cl)
    check(calls > 0, f"{what}: the victim called the probed function", str(calls))
    want = [calls if "add_entry" in progs else 0, calls if "add_return" in progs else 0, 0,
            calls if "lib_entry" in progs else 0]
    check_eq(m, want, f"{what}: each program counted the {calls} calls")
    tids = [struct.unpack("<I", e["key"])[0] for e in cl.call("map.dump", map="tids")["entries"]]
    host = {int(t) for t in os.listdir(f"/proc/{v.pid}/task")}
    if "add_tid" in progs:
        check(tids and set(tids) <= host, f"{what}: add_tid recorded the calling threads", f"{tids} of {host}")
    check_eq(v.get("bad_results"), 0, f"{what}: the victim saw no wrong result")


def attached(srv, cl, victim, progs, engine, what):
    """A fresh victim with progs attached; (victim, code memfd inodes)."""
    v = Victim(victim, srv.dir, 4)
    attach(cl, v.pid, progs, ":probed_add", engine)
    check_eq(engines_of(cl, v.pid), [engine], f"{what}: the listing says {engine}")
    return v, code_inodes(v.pid)


def main():
    args = parse_probe_args("--test-bin")
    from harness import Server
    with Server(args) as srv:
        cl = srv.client()
        cl.call("object.load", path=os.path.abspath(args.obj), name="count")
        victim = os.path.join(args.test_bin, "attach-victim-pie")

        v, inodes = attached(srv, cl, victim, PROGS, "llvm", "batch")
        try:
            check_eq(len(inodes), len(PROGS), "batch: each program maps the code itself")
            check_eq(len(set(inodes)), 1, "batch: one code memfd serves every program")
            check_eq(len(cache_entries(srv)), 1, "batch: the jit cache holds one entry, the batch")
            run_exact(cl, v, PROGS, "batch")
            cl.call("target.detach", pid=v.pid)
            check(v.alive(), "batch: victim alive after the detach")
        finally:
            v.stop()

        v, inodes = attached(srv, cl, victim, PROGS, "llvm", "cached batch")
        try:
            check_eq((len(inodes), len(set(inodes))), (len(PROGS), 1), "cached batch: one memfd, four mappings")
            check_eq(len(cache_entries(srv)), 1, "cached batch: no new cache entry (a hit)")
            run_exact(cl, v, PROGS, "cached batch")
            cl.call("target.detach", pid=v.pid)
        finally:
            v.stop()

        # the x86 engine: a memfd a program (what the inode check tells apart)
        v, inodes = attached(srv, cl, victim, PROGS, "x86", "x86")
        try:
            check_eq((len(inodes), len(set(inodes))), (len(PROGS), len(PROGS)), "x86: a code memfd per program")
            run_exact(cl, v, PROGS, "x86")
            cl.call("target.detach", pid=v.pid)
        finally:
            v.stop()

        # a program the cache holds alone comes from there; the others batch
        v, inodes = attached(srv, cl, victim, ["add_return"], "llvm", "alone")
        try:
            check_eq(len(inodes), 1, "alone: one mapping")
            check_eq(len(cache_entries(srv)), 2, "alone: its own cache entry")
            cl.call("target.detach", pid=v.pid)
        finally:
            v.stop()
        mixed = ["add_entry", "add_return", "add_tid"]
        v, inodes = attached(srv, cl, victim, mixed, "llvm", "mixed")
        try:
            check_eq((len(inodes), len(set(inodes))), (3, 2), "mixed: add_return from its entry, a batch of two")
            check_eq(len(cache_entries(srv)), 3, "mixed: the batch of two stored")
            run_exact(cl, v, mixed, "mixed")
            cl.call("target.detach", pid=v.pid)
            check(v.alive(), "mixed: victim alive")
        finally:
            v.stop()
    return report()


if __name__ == "__main__":
    sys.exit(main())
