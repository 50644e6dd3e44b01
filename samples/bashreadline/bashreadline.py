#!/usr/bin/python3
"""Prints every line bash reads, like bcc's bashreadline, from the ring
buffer records of the bashreadline sample.

usage: bashreadline.py [--socket PATH] [--count N]
"""
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import printer_cli  # noqa: E402

EVENT = struct.Struct("<I16s80s")   # struct line_event: pid, comm, line


def print_lines(c, count):
    records = printer_cli.ringbuf_records(c, "lines", EVENT)
    print(f"{'TIME':<9} {'PID':<7} COMMAND", flush=True)
    for pid, _comm, line in printer_cli.first(records, count):
        print(f"{time.strftime('%H:%M:%S'):<9} {pid:<7} {printer_cli.c_string(line)}", flush=True)


def main():
    ap = printer_cli.parser(__doc__)
    ap.add_argument("--count", type=int, default=0, help="stop after N lines (0: until ^C)")
    args = ap.parse_args()
    return printer_cli.run("bashreadline", args.socket, lambda c: print_lines(c, args.count))


if __name__ == "__main__":
    sys.exit(main())
