#!/usr/bin/python3
"""Lists bpfgraftd's maps, then dumps one of them.

usage: list_and_dump.py [--socket PATH] MAP      (MAP: name or id)

Keys and values are shown as integers when they are 4 or 8 bytes, else hex.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from bpfgraft_client import BpfgraftError, Client  # noqa: E402


def show(b):
    if len(b) in (4, 8):
        return str(int.from_bytes(b, "little"))
    return b.hex(" ")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", help="control socket (default $BPFGRAFT_SOCKET or the default)")
    ap.add_argument("map", help="map name or id")
    args = ap.parse_args()
    ref = int(args.map) if args.map.isdigit() else args.map
    try:
        with Client(args.socket) as c:
            maps = c.call("map.list")
            print(f"{'ID':<4} {'NAME':<16} {'TYPE':<14} {'KEY':>4} {'VALUE':>6} {'ENTRIES':>8}")
            for m in maps:
                print(f"{m['id']:<4} {m['name']:<16} {m['type']:<14} {m['key_size']:>4} "
                      f"{m['value_size']:>6} {m['max_entries']:>8}")
            dump = c.call("map.dump", map=ref)
            print(f"\nmap {args.map}: {len(dump['entries'])} entries"
                  f"{' (truncated)' if dump['truncated'] else ''}")
            for e in dump["entries"]:
                if "values" in e:
                    vals = ", ".join(show(v) for v in e["values"])
                    print(f"  {show(e['key'])}: [{vals}]")
                else:
                    print(f"  {show(e['key'])}: {show(e['value'])}")
    except (BpfgraftError, ConnectionError) as e:
        print(f"list_and_dump: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
