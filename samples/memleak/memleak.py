#!/usr/bin/python3
"""Prints the memleak sample's outstanding allocations by stack, like bcc's memleak -p.

usage: memleak.py [--socket PATH] [--interval S] [--count N] [--top N]

Every interval seconds: the allocations the sample saw (malloc, calloc,
realloc, posix_memalign) and no free of yet, grouped by the user stack
that made them (map `allocs`, stacks in `stack_traces`, symbolized by
bpfgraftd), the stacks holding the most bytes first.
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import printer_cli  # noqa: E402

ALLOC = struct.Struct("<Qq")   # struct alloc_info: size, stack id


def outstanding(c):
    """[(bytes, allocations, frames)] by stack, most bytes first."""
    by_stack = {}
    for e in c.call("map.dump", map="allocs")["entries"]:
        size, sid = ALLOC.unpack_from(e["value"])
        total, n = by_stack.get(sid, (0, 0))
        by_stack[sid] = (total + size, n + 1)
    frames = {struct.unpack("<I", e["key"])[0]: e.get("frames", [])
              for e in c.call("map.dump", map="stack_traces")["entries"]}
    rows = [(total, n, frames.get(sid, []) if sid >= 0 else [f"[stack id error {sid}]"])
            for sid, (total, n) in by_stack.items()]
    return sorted(rows, key=lambda r: r[0], reverse=True)


def print_top(c, top):
    rows = outstanding(c)
    print(f"[{time.strftime('%H:%M:%S')}] Top {min(top, len(rows))} stacks with outstanding allocations:")
    for total, n, frames in rows[:top]:
        print(f"\t{total} bytes in {n} allocations from stack")
        for f in frames:
            print(f"\t\t{f}")


def main():
    ap = printer_cli.periodic_parser(__doc__)
    ap.add_argument("--top", type=int, default=10, help="stacks per report (default 10)")
    a = ap.parse_args()
    return printer_cli.run_periodic("memleak", a, lambda c: print_top(c, a.top))


if __name__ == "__main__":
    sys.exit(main())
