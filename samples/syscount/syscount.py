#!/usr/bin/python3
"""Prints the syscount sample's counts like bcc's syscount: the top
syscalls by name, and the top processes.

usage: syscount.py [--socket PATH] [--top N] [--json]
"""
import argparse
import json
import os
import re
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from bpfgraft_client import BpfgraftError, Client  # noqa: E402

UNISTD = "/usr/include/x86_64-linux-gnu/asm/unistd_64.h"


def syscall_names():
    names = {}
    try:
        with open(UNISTD) as f:
            for line in f:
                m = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
                if m:
                    names[int(m.group(2))] = m.group(1)
    except OSError:
        pass
    return names


def read_counts(c, name):
    out = {}
    for e in c.call("map.dump", map=name)["entries"]:
        out[struct.unpack("<I", e["key"])[0]] = struct.unpack("<Q", e["value"])[0]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", help="control socket (default $BPFGRAFT_SOCKET or the default)")
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--json", action="store_true", help="every count, by syscall name, as JSON")
    args = ap.parse_args()
    names = syscall_names()
    try:
        with Client(args.socket) as c:
            counts = read_counts(c, "counts")
            pids = read_counts(c, "pid_counts")
    except BpfgraftError as e:
        print(f"syscount: {e}", file=sys.stderr)
        return 1
    if args.json:
        json.dump({"syscalls": {names.get(nr, str(nr)): n for nr, n in counts.items()},
                   "pids": {str(p): n for p, n in pids.items()}}, sys.stdout, indent=1, sort_keys=True)
        print()
        return 0
    print(f"{'SYSCALL':<22} {'COUNT':>8}")
    for nr, n in sorted(counts.items(), key=lambda kv: -kv[1])[:args.top]:
        print(f"{names.get(nr, f'[{nr}]'):<22} {n:>8}")
    print()
    print(f"{'PID':<8} {'COMM':<16} {'COUNT':>8}")
    for pid, n in sorted(pids.items(), key=lambda kv: -kv[1])[:args.top]:
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:
            comm = "[exited]"
        print(f"{pid:<8} {comm:<16} {n:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
