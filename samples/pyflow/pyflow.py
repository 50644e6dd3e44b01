#!/usr/bin/python3
"""Prints the pyflow sample's Python function calls like bcc's ucalls -L.

usage: pyflow.py [--socket PATH] [--interval S] [--count N] [--top N] [--json]

Reads the `calls` map the sample fills inside python3.11 processes (file,
function, first line; calls; the latency of the calls whose entry was
seen) and prints one line per function, most called first. --json prints
the rows as a JSON list instead (for scripts and tests).
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import printer_cli  # noqa: E402

NAME_LEN = 64
KEY = struct.Struct(f"<{NAME_LEN}s{NAME_LEN}s")  # struct fkey
VALUE = struct.Struct("<QQQQI4x")                 # struct fstat


def rows(c):
    """[{file, function, line, calls, timed, avg_us, max_us}], most calls first."""
    out = []
    for e in c.call("map.dump", map="calls")["entries"]:
        file, func = KEY.unpack_from(e["key"])
        calls, timed, total, top, line = VALUE.unpack_from(e["value"])
        out.append({"file": printer_cli.c_string(file), "function": printer_cli.c_string(func), "line": line,
                    "calls": calls, "timed": timed, "avg_us": total / timed / 1000 if timed else None,
                    "max_us": top / 1000 if timed else None, "raw_key": e["key"].hex()})
    return sorted(out, key=lambda r: (-r["calls"], r["file"], r["function"]))


def report(c, top, as_json):
    found = rows(c)[:top] if top else rows(c)
    if as_json:
        print(json.dumps(found))
        return
    print(f"{'FILE:LINE':<40} {'FUNCTION':<24} {'CALLS':>8} {'AVG us':>10} {'MAX us':>10}")
    for r in found:
        where = f"{r['file']}:{r['line'] or '?'}"
        avg = f"{r['avg_us']:.1f}" if r["timed"] else "-"
        peak = f"{r['max_us']:.1f}" if r["timed"] else "-"
        print(f"{where[-40:]:<40} {r['function'][:24]:<24} {r['calls']:>8} {avg:>10} {peak:>10}")
    print()


def main():
    ap = printer_cli.periodic_parser(__doc__)
    ap.add_argument("--top", type=int, default=0, help="only the N most called functions")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    return printer_cli.run_periodic("pyflow", a, lambda c: report(c, a.top, a.json))


if __name__ == "__main__":
    sys.exit(main())
