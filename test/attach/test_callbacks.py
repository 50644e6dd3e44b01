"""End to end: bpf_loop, bpf_for_each_map_elem (array and hash),
bpf_strncmp, bpf_get_func_arg in a uprobe and bpf_get_func_ret in a
uretprobe, inside a victim that calls probe_me(x, name) for x = 0..N-1, on
each engine; every sum is exact. Then bpf_spin_lock: four threads update two
plain counters under a value's lock, exactly."""
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, check_eq, end_victim, parse_probe_args, report  # noqa: E402

N = 1000
NAMES = ["calls", "alpha names", "argument sum", "return sum", "bpf_loop results", "array elements visited",
         "hash key sums", "loop index sums"]


def want():
    hash_sums = sum(m * (m + 1) // 2 for m in (min(x, 7) for x in range(N)))
    return [N, N // 2, N * (N - 1) // 2, N * (N - 1), 5 * N, 4 * N, hash_sums, 10 * N]


def u64(cl, m, k):
    return struct.unpack("<Q", cl.call("map.lookup", map=m, key=struct.pack("<I", k))["value"])[0]


def run(cl, args, engine):
    cl.call("object.load", path=os.path.abspath(args.obj), name="callbacks")
    v = subprocess.Popen([os.path.join(args.test_bin, "callbacks-victim"), str(N)], stdout=subprocess.PIPE, text=True)
    try:
        check_eq(v.stdout.readline().strip(), "ready", f"{engine}: victim ready")
        cl.call("target.attach", pid=v.pid, object="callbacks", programs=["probe_entry", "probe_return"],
                target=":probe_me", engine=engine)
        v.send_signal(10)  # SIGUSR1
        check_eq(v.stdout.readline().strip(), "done", f"{engine}: victim made its calls")
        got = [u64(cl, "results", k) for k in range(len(NAMES))]
        for name, g, w in zip(NAMES, got, want()):
            check_eq(g, w, f"{engine}: {name}")
        check_eq([u64(cl, "arr", k) for k in range(4)], [N * (k + 1) for k in range(4)],
                 f"{engine}: the array callback wrote every value in place")
    finally:
        end_victim(cl, v, "callbacks")


def run_spinlock(cl, args, engine, n=20000, threads=4):
    cl.call("object.load", path=os.path.abspath(args.spinlock_obj), name="spinlock")
    v = subprocess.Popen([os.path.join(args.test_bin, "callbacks-victim"), str(n), str(threads)],
                         stdout=subprocess.PIPE, text=True)
    try:
        check_eq(v.stdout.readline().strip(), "ready", f"{engine}: threaded victim ready")
        cl.call("target.attach", pid=v.pid, object="spinlock", programs=["probe_locked"], target=":probe_me",
                engine=engine)
        v.send_signal(10)  # SIGUSR1
        check_eq(v.stdout.readline().strip(), "done", f"{engine}: {threads} threads made their calls")
        value = cl.call("map.lookup", map="locked", key=struct.pack("<I", 0))["value"]
        a, lock, b = struct.unpack("<QIxxxxQ", value)
        check_eq((a, b), (n * threads, 2 * n * threads), f"{engine}: counters under bpf_spin_lock are exact")
        check_eq(lock, 0, f"{engine}: the lock is free after the run")
    finally:
        end_victim(cl, v, "spinlock")


def main():
    args = parse_probe_args("--test-bin", "--spinlock-obj")
    with Server(args) as srv:
        cl = srv.client()
        for engine in ("interp", "x86", "llvm"):
            run(cl, args, engine)
            run_spinlock(cl, args, engine)
        check(srv.alive(), "the server survived")


if __name__ == "__main__":
    main()
    raise SystemExit(report())
