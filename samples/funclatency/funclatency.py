#!/usr/bin/python3
"""Prints the funclatency sample's histogram like bcc's funclatency.

usage: funclatency.py [--socket PATH] [--map NAME] [--interval S] [--count N]

Reads the log2 histogram (array map `hist`, slot = floor(log2(ns)); slot
32 holds the total ns) the sample's uretprobe fills inside the target,
every interval seconds.
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import printer_cli  # noqa: E402


def print_log2_hist(counts, unit="nsecs"):
    """bcc's print_log2_hist: one line per power of two up to the last non-empty slot."""
    last = max((i for i, c in enumerate(counts) if c), default=-1)
    if last < 0:
        print("(no calls recorded)")
        return
    top = max(counts)
    width = 40
    print(f"{unit:>24} : count     distribution")
    for i in range(last + 1):
        # the sample's slot i holds latencies in [2^i, 2^(i+1))
        low = 0 if i == 0 else 1 << i
        high = (1 << (i + 1)) - 1
        stars = int(counts[i] * width / top) if top else 0
        print(f"{low:>10} -> {high:<10} : {counts[i]:<8} |{'*' * stars:<{width}}|")


MAX_SLOTS = 32  # the sample's: slot MAX_SLOTS is the sum, not a bucket


def read_hist(c, name):
    counts = []
    for e in c.call("map.dump", map=name)["entries"]:
        key = struct.unpack("<I", e["key"])[0]
        value = struct.unpack("<Q", e["value"])[0]
        if key >= MAX_SLOTS:
            continue
        while len(counts) <= key:
            counts.append(0)
        counts[key] = value
    return counts


def print_hists(c, name, interval, count):
    n = 0
    while True:
        if count != 1 or n:
            time.sleep(interval)
        print_log2_hist(read_hist(c, name))
        n += 1
        if count and n >= count:
            break
        print()


def main():
    ap = printer_cli.parser(__doc__)
    ap.add_argument("--map", default="hist")
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--count", type=int, default=1, help="how many histograms (0: until ^C)")
    args = ap.parse_args()
    return printer_cli.run("funclatency", args.socket,
                           lambda c: print_hists(c, args.map, args.interval, args.count))


if __name__ == "__main__":
    sys.exit(main())
