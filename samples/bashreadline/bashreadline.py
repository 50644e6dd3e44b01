#!/usr/bin/python3
"""Prints every line bash reads, like bcc's bashreadline, from the ring
buffer records of the bashreadline sample.

usage: bashreadline.py [--socket PATH] [--count N]
"""
import argparse
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from bpfgraft_client import BpfgraftError, Client  # noqa: E402

EVENT = struct.Struct("<I16s80s")   # struct line_event: pid, comm, line


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", help="control socket (default $BPFGRAFT_SOCKET or the default)")
    ap.add_argument("--count", type=int, default=0, help="stop after N lines (0: until ^C)")
    args = ap.parse_args()
    try:
        with Client(args.socket) as c:
            lines_map = c.call("map.show", map="lines")["id"]
            print(f"{'TIME':<9} {'PID':<7} COMMAND", flush=True)
            seen = 0
            for ev in c.events(topics=["ringbuf"]):
                if ev.get("map") != lines_map or len(ev["data"]) < EVENT.size:
                    continue
                pid, _comm, line = EVENT.unpack_from(ev["data"])
                text = line.split(b"\0", 1)[0].decode(errors="replace")
                print(f"{time.strftime('%H:%M:%S'):<9} {pid:<7} {text}", flush=True)
                seen += 1
                if args.count and seen >= args.count:
                    break
    except BpfgraftError as e:
        print(f"bashreadline: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
