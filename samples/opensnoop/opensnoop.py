#!/usr/bin/python3
"""Prints the open()/openat() calls the opensnoop sample sees, like bcc's
opensnoop: PID COMM FD ERR PATH.

usage: opensnoop.py [--socket PATH] [--count N] [--pid PID]
"""
import argparse
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from bpfgraft_client import BpfgraftError, Client  # noqa: E402

EVENT = struct.Struct("<IIii16s256s")   # struct event: pid, tid, ret, flags, comm, fname


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--socket", help="control socket (default $BPFGRAFT_SOCKET or the default)")
    ap.add_argument("--count", type=int, default=0, help="stop after N events (0: until ^C)")
    ap.add_argument("--pid", type=int, default=0, help="only this process")
    args = ap.parse_args()
    try:
        with Client(args.socket) as c:
            events_map = c.call("map.show", map="events")["id"]
            print(f"{'PID':<7} {'COMM':<16} {'FD':>3} {'ERR':>3} PATH", flush=True)
            seen = 0
            for ev in c.events(topics=["ringbuf"]):
                if ev.get("map") != events_map or len(ev["data"]) < EVENT.size:
                    continue
                pid, _tid, ret, _flags, comm, fname = EVENT.unpack_from(ev["data"])
                if args.pid and pid != args.pid:
                    continue
                fd, err = (ret, 0) if ret >= 0 else (-1, -ret)
                comm = comm.split(b"\0", 1)[0].decode(errors="replace")
                path = fname.split(b"\0", 1)[0].decode(errors="replace")
                print(f"{pid:<7} {comm:<16} {fd:>3} {err:>3} {path}", flush=True)
                seen += 1
                if args.count and seen >= args.count:
                    break
    except BpfgraftError as e:
        print(f"opensnoop: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
