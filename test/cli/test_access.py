#!/usr/bin/python3
"""Roles (bpfgraftd --access FILE): clients run as unprivileged uids call
one method of each class (read: server.status, operate: map.update, admin:
server.shutdown with a bad argument, so an allowed call fails on the
argument instead of stopping the server); each role is allowed its classes
and refused the others with `forbidden` naming the role needed. Also: a
role through a supplementary group, a peer the file does not name, root,
the CLI's message, SIGHUP reloads (a bad file keeps the old roles), a bad
file refused at start."""
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time

from harness import Server, check, check_eq, parse_args, report

READER, OPERATOR, ADMIN_GROUP, STRANGER, GROUP_ADMIN = 60001, 60002, 60100, 60004, 60005
CLASSES = {"read": ("server.status", {}),
           "operate": ("map.update", {"map": "counts", "key": struct.pack("<I", 7), "value": bytes(8)}),
           "admin": ("server.shutdown", {"bogus": 1})}
ROLES = ["read", "operate", "admin"]

PROBE = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
uid, groups = int(sys.argv[3]), [int(g) for g in sys.argv[4].split(",") if g]
os.setgroups(groups); os.setgid(uid); os.setuid(uid)
from bpfgraft_client import Client, BpfgraftError
calls = json.loads(sys.argv[5])
out = {}
with Client(sys.argv[2], timeout=20) as c:
    for cls, (method, params) in calls.items():
        params = {k: bytes.fromhex(v[4:]) if isinstance(v, str) and v.startswith("hex:") else v
                  for k, v in params.items()}
        try:
            c.call(method, **params)
            out[cls] = ["ok", ""]
        except BpfgraftError as e:
            out[cls] = [e.name, e.message]
print(json.dumps(out))
"""


def probe(args, srv, uid, groups=()):
    """{class: [result name, message]} of the CLASSES calls made as uid."""
    calls = {cls: (m, {k: "hex:" + v.hex() if isinstance(v, bytes) else v for k, v in p.items()})
             for cls, (m, p) in CLASSES.items()}
    r = subprocess.run([sys.executable, "-c", PROBE, args.scripts, srv.socket, str(uid),
                        ",".join(map(str, groups)), json.dumps(calls)],
                       capture_output=True, text=True, timeout=60)
    try:
        return json.loads(r.stdout)
    except ValueError:
        check(False, f"probe as uid {uid} ran", r.stdout + r.stderr)
        return {}


def allowed(result):
    return result[0] != "forbidden"


def check_role(args, srv, who, uid, role, groups=()):
    got = probe(args, srv, uid, groups)
    have = ROLES.index(role) if role else -1
    for cls in CLASSES:
        r = got.get(cls, ["missing", ""])
        if ROLES.index(cls) <= have:
            check(allowed(r), f"{who}: {cls} call allowed", repr(r))
        else:
            want = f"needs role {cls}; uid {uid} has {role or 'no role'}"
            check(r[0] == "forbidden" and want in r[1], f"{who}: {cls} call forbidden naming role {cls}",
                  repr(r))


def write_conf(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o644)


def check_bad_file(srv_bin, d):
    bad = os.path.join(d, "bad.conf")
    write_conf(bad, "read uid:60001\nsuperuser uid:1\n")
    r = subprocess.run([srv_bin, "--foreground", "--access", bad, "--socket", os.path.join(d, "x.sock")],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "bad.conf:2: unknown role 'superuser'" in r.stdout + r.stderr,
          "a bad access file: the server refuses to start, naming file, line and role", r.stdout + r.stderr)
    for text, want in (("read uid:60001 targets:uid:5\n", "bad.conf:1: targets: restricts operate lines only"),
                       ("operate uid:60002 targets:cgroup:rel\n", "bad.conf:1: 'targets:cgroup:rel': want targets:"),
                       ("operate targets:uid:7\n", "bad.conf:1: role operate names nobody")):
        write_conf(bad, text)
        r = subprocess.run([srv_bin, "--foreground", "--access", bad, "--socket", os.path.join(d, "x.sock")],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and want in r.stdout + r.stderr, f"a bad targets: line refused: {want}",
              r.stdout + r.stderr)


def main():
    args = parse_args()
    d = tempfile.mkdtemp(prefix="bpfgraft-access-")
    os.chmod(d, 0o755)
    conf = os.path.join(d, "access.conf")
    write_conf(conf, f"# roles of the test\nread uid:{READER}\noperate uid:{OPERATOR}  # operators\n"
               f"admin gid:{ADMIN_GROUP}\n")
    with Server(args, ["--access", conf, "--socket-mode", "0666"]) as srv:
        os.chmod(srv.dir, 0o755)
        with srv.client() as c:
            c.call("object.load", path=args.obj)
        check_role(args, srv, "read role (uid)", READER, "read")
        check_role(args, srv, "operate role (uid)", OPERATOR, "operate")
        check_role(args, srv, "admin role (supplementary group)", GROUP_ADMIN, "admin", groups=[ADMIN_GROUP])
        check_role(args, srv, "a peer the file does not name", STRANGER, None)
        with srv.client() as c:
            check_eq(c.call("server.status")["pid"], srv.proc.pid, "root is admin whatever the file says")
            v = c.call("map.lookup", map="counts", key=struct.pack("<I", 7))["value"]
            check_eq(v, bytes(8), "the operate role's map.update took effect")

        with open(os.path.join(srv.dir, "audit.log")) as f:
            refused = [l for l in map(json.loads, f) if l["who"]["uid"] == READER and l["method"] == "map.update"]
        check(len(refused) == 1 and refused[0]["result"] == "forbidden" and "needs role operate" in refused[0]["error"],
              "a forbidden state-changing call is audited as forbidden", repr(refused))

        env = dict(os.environ)
        r = subprocess.run([sys.executable, "-c",
                            f"import os; os.setgid({READER}); os.setuid({READER}); "
                            f"os.execv({srv.cli_bin!r}, ['bpfgraft', '--socket', {srv.socket!r}, 'detach', '1'])"],
                           capture_output=True, text=True, timeout=30, env=env)
        check(r.returncode == 1 and "target.detach needs role operate" in r.stderr and "(forbidden)" in r.stderr,
              "the CLI prints the forbidden error with the role needed", r.stderr)

        write_conf(conf, f"read uid:{STRANGER}\n")
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "access reloaded" not in srv.log_text():
            time.sleep(0.05)
        check_role(args, srv, "after SIGHUP: the newly named peer", STRANGER, "read")
        check_role(args, srv, "after SIGHUP: the peer no longer named", OPERATOR, None)
        write_conf(conf, "operate nobody-such-user-xyz\n")
        srv.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "not reloaded" not in srv.log_text():
            time.sleep(0.05)
        check("not reloaded, the old roles stay" in srv.log_text(), "SIGHUP with a bad file: logged")
        check_role(args, srv, "after a bad SIGHUP: roles kept", STRANGER, "read")
        check_bad_file(srv.bpfgraftd, d)
    for f in os.listdir(d):
        os.unlink(os.path.join(d, f))
    os.rmdir(d)
    return report()


if __name__ == "__main__":
    sys.exit(main())
