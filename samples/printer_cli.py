"""What the samples' Python printers (bashreadline.py, opensnoop.py,
funclatency.py) share: the --socket option, the connection with its error
handling, and the loop over a ring buffer map's records.

A printer finds this module by putting samples/ on sys.path (from the
source tree); installed, it sits next to the printers. It finds
bpfgraft_client the same way: scripts/ in the source tree, the Python
directory of an install.
"""
import argparse
import itertools
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from bpfgraft_client import BpfgraftError, Client  # noqa: E402


def parser(doc):
    """An argument parser described by the first line of doc, with --socket."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--socket", help="control socket (default $BPFGRAFT_SOCKET or the default)")
    return ap


def periodic_parser(doc):
    """parser(doc) with --interval and --count, for a printer that reports
    every interval seconds."""
    ap = parser(doc)
    ap.add_argument("--interval", type=float, default=5, help="seconds between reports (default 5)")
    ap.add_argument("--count", type=int, default=0, help="reports to print, 0 for no end (default)")
    return ap


def run_periodic(name, a, report):
    """run() calling report(client) every a.interval seconds, a.count
    times (0: until interrupted)."""
    def body(c):
        n = 0
        while not a.count or n < a.count:
            time.sleep(a.interval)
            report(c)
            n += 1
    return run(name, a.socket, body)


def run(name, socket, body):
    """Calls body(client) connected to socket: 1 after a bpfgraft error
    (printed as `name: error`), 0 otherwise, ^C included."""
    try:
        with Client(socket) as c:
            body(c)
    except BpfgraftError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def ringbuf_records(c, map_name, record):
    """Each ring buffer event of map map_name unpacked with the struct.Struct
    record, shorter events skipped; endless. The map is looked up at once,
    the subscription made when the first record is asked for."""
    map_id = c.call("map.show", map=map_name)["id"]
    return (record.unpack_from(ev["data"]) for ev in c.events(topics=["ringbuf"])
            if ev.get("map") == map_id and len(ev["data"]) >= record.size)


def first(items, count):
    """The first count items, or all of them for count 0."""
    return itertools.islice(items, count) if count else items


def c_string(raw):
    """A NUL-terminated byte field as text."""
    return raw.split(b"\0", 1)[0].decode(errors="replace")
