#!/usr/bin/python3
"""Prints the stackcount sample's counts of distinct stacks, like bcc's stackcount -p.

usage: stackcount.py [--socket PATH] [--interval S] [--count N] [--top N]

Every interval seconds: each user stack that reached the probed function
(map `sc_counts`, stacks in `sc_stacks`, symbolized by bpfgraftd), its
frames innermost first and its hits below them, the most frequent last as
bcc prints them.
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import printer_cli  # noqa: E402


def stacks(c):
    """[(hits, frames)] by stack, fewest hits first."""
    frames = {struct.unpack("<I", e["key"])[0]: e.get("frames", [])
              for e in c.call("map.dump", map="sc_stacks")["entries"]}
    rows = []
    for e in c.call("map.dump", map="sc_counts")["entries"]:
        sid, = struct.unpack("<q", e["key"])
        hits, = struct.unpack("<Q", e["value"][:8])
        rows.append((hits, frames.get(sid, []) if sid >= 0 else [f"[stack id error {sid}]"]))
    return sorted(rows, key=lambda r: r[0])


def print_stacks(c, top):
    rows = stacks(c)[-top:] if top else stacks(c)
    print(f"[{time.strftime('%H:%M:%S')}] {len(rows)} stacks:")
    for hits, frames in rows:
        for f in frames:
            print(f"  {f}")
        print(f"    {hits}\n")


def main():
    ap = printer_cli.periodic_parser(__doc__)
    ap.add_argument("--top", type=int, default=0, help="only the N most frequent stacks (default: all)")
    a = ap.parse_args()
    return printer_cli.run_periodic("stackcount", a, lambda c: print_stacks(c, a.top))


if __name__ == "__main__":
    sys.exit(main())
