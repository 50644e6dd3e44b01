#!/usr/bin/python3
"""The audit log (bpfgraftd --audit-log, here the default beside the state
directory): one JSON line for every state-changing call, in order, with
who, the identifying parameters, the target process and the result; none
for reads; `bpfgraft audit [--since]` prints them; a log that cannot be
written fails the call."""
import json
import os
import struct
import subprocess
import sys
import time

from harness import Server, check, check_eq, parse_args, report, wait_mapped


def audit_lines(srv):
    with open(os.path.join(srv.dir, "audit.log")) as f:
        return [json.loads(line) for line in f]


def reads(c, maps=True):
    c.call("server.status")
    c.call("object.list")
    c.call("prog.list")
    c.call("map.list")
    if maps:
        c.call("map.show", map="counts")
        c.call("map.dump", map="counts")
    c.call("target.list")
    c.call("api.info")
    c.call("events.subscribe", topics=["target"])
    c.call("events.unsubscribe")
    c.call("audit.read")


def changes(args, c, victim):
    """Every state-changing call made, as (method, identifying params, result)."""
    key = struct.pack("<I", 3)
    with open(args.obj, "rb") as f:
        obj = c.call("object.load", data=f.read(), name="audited")
    reads(c)
    c.call("map.update", map="counts", key=key, value=struct.pack("<Q", 9))
    c.call("map.delete", map="counts", key=key)
    try:
        c.call("map.delete", map="counts", key=key)
    except Exception as e:   # not_found: failures are audited too
        check_eq(getattr(e, "name", ""), "not_found", "second delete fails")
    c.call("map.push", map="jobs", value=struct.pack("<I", 5))
    c.call("map.pop", map="jobs")
    c.call("target.attach", pid=victim.pid, object="audited", programs=["count_call"], target="libc.so.6:malloc")
    c.call("target.detach", pid=victim.pid)
    c.call("object.unload", id=obj["id"])
    return [("object.load", {"name": "audited"}, "ok"),
            ("map.update", {"map": "counts", "key": "hex:" + key.hex()}, "ok"),
            ("map.delete", {"map": "counts", "key": "hex:" + key.hex()}, "ok"),
            ("map.delete", {"map": "counts"}, "not_found"),
            ("map.push", {"map": "jobs"}, "ok"),
            ("map.pop", {"map": "jobs"}, "ok"),
            ("target.attach", {"pid": victim.pid, "object": "audited"}, "ok"),
            ("target.detach", {"pid": victim.pid}, "ok"),
            ("object.unload", {"id": obj["id"]}, "ok")]


def check_lines(lines, want, victim):
    check_eq([(l["method"], l["result"]) for l in lines], [(m, r) for m, _, r in want],
             "one audit line per state-changing call, in order, none for the reads between them")
    for line, (method, params, _) in zip(lines, want):
        got = {k: line["params"].get(k) for k in params}
        check_eq(got, params, f"{method}: the identifying parameters")
        check(line["who"] == {"uid": 0, "pid": os.getpid()} and line["time"].endswith("Z")
              and abs(line["time_ms"] / 1000 - time.time()) < 120, f"{method}: who and when", repr(line))
        if "pid" in params:
            check_eq(line.get("target"), {"pid": victim.pid, "comm": "sleep"}, f"{method}: target pid and comm")
    check(lines[0]["params"].get("data", "").startswith("<"), "object bytes are logged by size, not content",
          repr(lines[0]["params"]))
    check("error" in lines[3] and "error" not in lines[2], "a failed call's line carries the error message")


def check_cli(srv, lines):
    rc, out, err = srv.cli("audit")
    check(rc == 0 and [json.loads(l) for l in out.splitlines()] == lines, "bpfgraft audit prints the log", err)
    rc, out, _ = srv.cli("audit", "--since", "1h")
    check(rc == 0 and len(out.splitlines()) == len(lines), "audit --since 1h: every line")
    time.sleep(1.2)
    rc, out, _ = srv.cli("audit", "--since", "1s")
    check(rc == 0 and out == "", "audit --since 1s after a quiet second: nothing", out)
    rc, _, err = srv.cli("audit", "--since", "soon")
    check(rc == 2 and "--since needs a time" in err, "audit --since with a bad time: usage error", err)


def check_write_failure(args):
    with Server(args, ["--audit-log", "/dev/full"]) as srv, srv.client() as c:
        check(c.call("server.status")["pid"] == srv.proc.pid, "/dev/full audit log: reads still answer")
        try:
            c.call("map.list")
            c.call("object.load", path=args.obj)
            check(False, "/dev/full audit log: a state-changing call fails")
        except Exception as e:
            check(getattr(e, "name", "") == "internal_error" and "could not be written" in str(e),
                  "/dev/full audit log: a state-changing call fails, naming the log", str(e))


def main():
    args = parse_args()
    with Server(args) as srv, srv.client() as c:
        victim = subprocess.Popen(["sleep", "60"])
        try:
            wait_mapped(victim.pid, "libc.so.6")   # past its dynamic loader: malloc's library is there
            reads(c, maps=False)
            want = changes(args, c, victim)
            reads(c, maps=False)
        finally:
            victim.kill()
            victim.wait()
        lines = audit_lines(srv)
        check_lines(lines, want, victim)
        check_cli(srv, lines)
    check_write_failure(args)
    return report()


if __name__ == "__main__":
    sys.exit(main())
