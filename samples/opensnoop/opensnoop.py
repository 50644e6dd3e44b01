#!/usr/bin/python3
"""Prints the open()/openat() calls the opensnoop sample sees, like bcc's
opensnoop: PID COMM FD ERR PATH.

usage: opensnoop.py [--socket PATH] [--count N] [--pid PID]
"""
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import printer_cli  # noqa: E402

EVENT = struct.Struct("<IIii16s256s")   # struct event: pid, tid, ret, flags, comm, fname


def print_opens(c, count, only_pid):
    records = printer_cli.ringbuf_records(c, "events", EVENT)
    print(f"{'PID':<7} {'COMM':<16} {'FD':>3} {'ERR':>3} PATH", flush=True)
    wanted = (r for r in records if not only_pid or r[0] == only_pid)
    for pid, _tid, ret, _flags, comm, fname in printer_cli.first(wanted, count):
        fd, err = (ret, 0) if ret >= 0 else (-1, -ret)
        print(f"{pid:<7} {printer_cli.c_string(comm):<16} {fd:>3} {err:>3} {printer_cli.c_string(fname)}",
              flush=True)


def main():
    ap = printer_cli.parser(__doc__)
    ap.add_argument("--count", type=int, default=0, help="stop after N events (0: until ^C)")
    ap.add_argument("--pid", type=int, default=0, help="only this process")
    args = ap.parse_args()
    return printer_cli.run("opensnoop", args.socket, lambda c: print_opens(c, args.count, args.pid))


if __name__ == "__main__":
    sys.exit(main())
