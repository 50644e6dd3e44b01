#!/usr/bin/python3
"""bpfgraft CLI against a real bpfgraftd: every command, text and --json
output, typed key/value parsing and printing, errors and exit statuses."""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, check_eq, parse_args, report, wait_mapped  # noqa: E402


def u32(n):
    return n.to_bytes(4, "little").hex()


def u64(n):
    return n.to_bytes(8, "little").hex()


PS_HEADER = ["PID", "COMM", "HOOKS", "PROGS", "ENGINE", "HITS", "MISSES", "DROPPED", "ATTACHED", "LAST-STOP", "PAYLOAD",
             "PLACED"]
DURATION = re.compile(r"^(\d+us|\d+\.\dms|\d+ms|\d+s|\d+m\d\ds|\d+h\d\dm|\d+d\d\dh)$")


def check_ps(srv, obj_id):
    """ps on a process with two programs at one address: the table and the
    --json fields (attach time as wall-clock time)."""
    sleeper = subprocess.Popen(["sleep", "120"])
    try:
        wait_mapped(sleeper.pid, "libc.so.6")   # past its dynamic loader: malloc's library is there
        rc, _, err = srv.cli("attach", sleeper.pid, obj_id, "count_call", "count_cpu", "--target",
                             "libc.so.6:malloc")
        check_eq(rc, 0, f"attach two programs at libc's malloc in a sleep ({err.strip()})")
        rc, doc, _ = srv.cli_json("ps")
        t = (doc or [{}])[0]
        now_ms = time.time() * 1000
        check(rc == 0 and abs(now_ms - t.get("attached_at_ms", 0)) < 60000 and "attached_ms" not in t,
              "ps --json: attached_at_ms is wall-clock time, within a minute of now", repr(t))
        check(t.get("comm") == "sleep" and t.get("syscall_programs") == 0 and len(t.get("hooks", [])) == 2
              and len({h["address"] for h in t["hooks"]}) == 1,
              "ps --json: comm, syscall_programs, one hook entry per program", repr(t))
        rc, out, _ = srv.cli("ps")
        lines = out.splitlines()
        row = lines[1].split() if len(lines) == 2 else []
        check(rc == 0 and lines[0].split() == PS_HEADER and len(row) == len(PS_HEADER),
              "ps (text): a header and one row per process", out)
        if len(row) == len(PS_HEADER):
            check(row[:4] == [str(sleeper.pid), "sleep", "1", "2"] and row[4] == t["hooks"][0]["engine"]
                  and row[5] == "0" and row[6] == "0" and row[7] == "0",
                  "ps (text): pid, comm, 1 hooked address, 2 programs, engine, hits (stats off), misses, dropped",
                  out)
            check(DURATION.match(row[8]) and DURATION.match(row[9]) and row[8][-1] == "s" and row[8][-2:] != "us",
                  "ps (text): attached for and last stop as durations (ms/s)", out)
            check_eq(row[10], hex(t["payload"]), "ps (text): the payload address in hex")
            placed = {"uprobe": "jmp", "uprobe (short jmp)": "short", "uprobe (trap)": "trap"}[t["hooks"][0]["kind"]]
            check_eq(row[11], placed, "ps (text): how the hooks are placed, as target.list's kind says")
        rc, _, err = srv.cli("detach", sleeper.pid)
        check_eq(rc, 0, f"detach the sleep ({err.strip()})")
    finally:
        sleeper.kill()
        sleeper.wait()


def main():
    args = parse_args()
    cli_bin = os.path.join(args.bin_dir, "bpfgraft")

    # Usage errors and a missing server, before any server runs.
    for argv in ([], ["bogus"], ["map"], ["map", "lookup", "x"], ["unload", "x"],
                 ["map", "frob", "x"], ["map", "lookup", "m", "1", "--exist"]):
        r = subprocess.run([cli_bin, "--socket", "/nonexistent/sock"] + argv, capture_output=True,
                           text=True)
        check_eq(r.returncode, 2, f"usage error exits 2: bpfgraft {' '.join(argv)}")
    r = subprocess.run([cli_bin, "--socket", "/nonexistent/dir/x.sock", "status"],
                       capture_output=True, text=True)
    check(r.returncode == 1 and "/nonexistent/dir/x.sock" in r.stderr and "bpfgraftd" in r.stderr,
          "no server: exit 1 with a message naming the socket", r.stderr)
    r = subprocess.run([cli_bin, "status"], capture_output=True, text=True,
                       env=dict(os.environ, BPFGRAFT_SOCKET="/nonexistent/env.sock"))
    check("/nonexistent/env.sock" in r.stderr, "BPFGRAFT_SOCKET names the socket", r.stderr)

    with Server(args) as srv:
        # status
        rc, out, _ = srv.cli("status")
        check(rc == 0 and f"pid: {srv.proc.pid}" in out and "version:" in out,
              "status (text) shows the server pid and version", out)
        rc, st, _ = srv.cli_json("status")
        check(rc == 0 and st["pid"] == srv.proc.pid and st["socket"] == srv.socket
              and st["objects"] == 0, "status --json: pid, socket, no objects", repr(st))
        r = subprocess.run([cli_bin, "status"], capture_output=True, text=True,
                           env=dict(os.environ, BPFGRAFT_SOCKET=srv.socket))
        check(r.returncode == 0 and "version:" in r.stdout, "status via $BPFGRAFT_SOCKET")

        # load: a relative path is sent absolute
        objdir, objname = os.path.split(args.obj)
        r = subprocess.run([cli_bin, "--socket", srv.socket, "--json", "load", objname],
                           capture_output=True, text=True, cwd=objdir)
        import json
        obj = json.loads(r.stdout) if r.returncode == 0 else {}
        check(r.returncode == 0 and obj.get("path") == os.path.abspath(args.obj),
              "load of a relative path sends it absolute", r.stdout + r.stderr)
        check_eq(sorted(m["name"] for m in obj.get("maps", [])), ["cfg", "counts", "flows", "jobs", "pcpu"],
                 "load --json lists the object's maps")
        check_eq(sorted(p["name"] for p in obj.get("programs", [])), ["count_call", "count_cpu", "count_flow", "push_job"],
                 "load --json lists the object's programs")
        obj_id = obj.get("id")
        rc, out, _ = srv.cli("load", args.other_obj, "--name", "other")
        check(rc == 0 and out.startswith("object ") and " other " in out.splitlines()[0]
              and "map " in out and "prog " in out, "load --name (text)", out)
        other_id = int(out.split()[1]) if rc == 0 else None

        # map list / show
        rc, maps, _ = srv.cli_json("map", "list")
        byname = {m["name"]: m for m in maps or [] if m["object"] == obj_id or m["name"].startswith("other.")}
        check(rc == 0 and {"flows", "cfg", "counts", "other.data"} <= set(byname),
              "map list --json has every map", repr(maps))
        flows, cfg, counts = byname["flows"], byname["cfg"], byname["counts"]
        check(flows["key_size"] == 16 and flows["value_size"] == 16 and flows["type"] == "hash",
              "flows: hash, 16-byte struct key and value")
        rc, out, _ = srv.cli("map", "list")
        lines = out.splitlines()
        check(rc == 0 and lines[0].split()[:3] == ["ID", "NAME", "TYPE"]
              and any(l.split()[1:3] == ["cfg", "array"] for l in lines[1:]),
              "map list (text) is a table", out)
        rc, out, _ = srv.cli("map", "show", "flows")
        check(rc == 0 and "key_size: 16" in out and "name: flows" in out, "map show (text)", out)
        rc, m, _ = srv.cli_json("map", "show", str(cfg["id"]))
        check(rc == 0 and m["name"] == "cfg" and m["max_entries"] == 4, "map show by id --json")

        # struct key/value: hex in, typed out
        key = u32(1234) + b"bash".ljust(12, b"\0").hex()
        val = u64(77) + (-5 & 0xffffffff).to_bytes(4, "little").hex() + "0a0b0c0d"
        rc, out, err = srv.cli("map", "update", "flows", "hex:" + key, "hex:" + val)
        check_eq((rc, out), (0, ""), "update flows with hex: key and value")
        rc, out, err = srv.cli("map", "lookup", "flows", "hex:" + key)
        check_eq(out.strip(), 'key: {"pid": 1234, "comm": "bash"}  value: '
                 '{"count": 77, "delta": -5, "tag": [10, 11, 12, 13]}',
                 "lookup flows prints the struct key and value by BTF")
        spaced = " ".join("0x" + key[i:i + 2] for i in range(0, len(key), 2))
        rc, e, _ = srv.cli_json("map", "lookup", "flows", spaced)
        check(rc == 0 and e["key"] == key and e["value"] == val
              and e["formatted"]["value"] == {"count": 77, "delta": -5, "tag": [10, 11, 12, 13]}
              and e["formatted"]["key"] == {"pid": 1234, "comm": "bash"},
              "lookup --json with a space-separated byte key: raw hex and formatted", repr(e))
        rc, _, err = srv.cli("map", "update", "flows", "hex:" + key[:-2], "hex:" + val)
        check(rc == 2 and "15 bytes given, 16 expected" in err, "a short hex key is a usage error", err)
        rc, _, err = srv.cli("map", "update", "flows", "pid", "hex:" + val)
        check(rc == 2 and "struct" in err and "hex:" in err,
              "a struct key that is not hex is a usage error naming the way out", err)

        # array of struct with char[] label, bitfields and an enum
        cfgval = b"hi".ljust(8, b"\0").hex() + "0300" + "2b" + "00" + u32(7)
        rc, _, _ = srv.cli("map", "update", "cfg", "2", "hex:" + cfgval)
        check_eq(rc, 0, "update cfg[2] (int key, hex value)")
        rc, out, _ = srv.cli("map", "dump", "cfg")
        want = ('key: 2  value: {"label": "hi", "level": 3, "flags_lo": 3, "flags_hi": 5, '
                '"mode": "MODE_AUTO"}')
        check(rc == 0 and want in out.splitlines() and "Found 4 elements" in out,
              "dump cfg: char array as string, bitfields, enum name", out)
        rc, d, _ = srv.cli_json("map", "dump", "cfg")
        check(rc == 0 and len(d["entries"]) == 4 and d["truncated"] is False
              and d["entries"][0]["formatted"]["value"]["mode"] == "MODE_OFF",
              "dump cfg --json: 4 entries, formatted values", repr(d)[:300])

        # int key/value: decimal, hex, one arg per byte, flags
        cid = str(counts["id"])
        rc, _, _ = srv.cli("map", "update", cid, "5", "123")
        check_eq(rc, 0, "update counts 5 123")
        rc, out, _ = srv.cli("map", "lookup", cid, "0x5")
        check_eq(out.strip(), "key: 5  value: 123", "lookup counts 0x5 (hex int key)")
        rc, out, _ = srv.cli("map", "update", cid, *"0x07 0x00 0x00 0x00".split(),
                             *"0x2a 0 0 0 0 0 0 0".split()[:1], "0")
        check(rc != 0, "bytes mixed with a short value do not parse as a key", out)
        rc, _, err = srv.cli("map", "update", cid, *"0x07 0x00 0x00 0x00".split(),
                             *("0x2a 0x00 0x00 0x00 0x00 0x00 0x00 0x00".split()))
        rc2, e, _ = srv.cli_json("map", "lookup", cid, "7")
        check(rc == 0 and rc2 == 0 and e["formatted"] == {"key": 7, "value": 42},
              "update with one 0x.. argument per byte (bpftool style)", err + repr(e))
        rc, _, err = srv.cli("map", "update", cid, "5", "1", "--noexist")
        check(rc == 1 and err.strip().endswith("(exists)"), "--noexist on a present key: exists", err)
        rc, _, err = srv.cli("map", "update", cid, "9", "1", "--exist")
        check(rc == 1 and err.strip().endswith("(not_found)"), "--exist on a missing key: not_found", err)
        rc, _, _ = srv.cli("map", "update", cid, "9", "18446744073709551615", "--noexist")
        rc2, out, _ = srv.cli("map", "lookup", cid, "9")
        check(rc == 0 and out.strip() == "key: 9  value: 18446744073709551615",
              "--noexist on a missing key; u64 max round trip", out)
        rc, _, err = srv.cli("map", "update", cid, "4294967296", "1")
        check(rc == 2 and "4-byte" in err, "key out of u32 range is a usage error", err)
        rc, _, err = srv.cli("map", "update", cid, "abc", "1")
        check_eq(rc, 2, "non-numeric int key is a usage error")
        rc, out, err = srv.cli("map", "delete", cid, "9")
        check_eq((rc, out), (0, ""), "delete counts 9")
        rc, out, err = srv.cli("map", "lookup", cid, "9")
        check(rc == 1 and out == "" and err.startswith("bpfgraft: ") and err.strip().endswith("(not_found)"),
              "lookup of a deleted key: 'bpfgraft: ... (not_found)', exit 1", err)
        rc, doc, err = srv.cli_json("map", "delete", cid, "9")
        check(rc == 1 and doc["error"]["code"] == 7 and doc["error"]["name"] == "not_found",
              "--json error document on stdout", repr(doc))
        rc, d, _ = srv.cli_json("map", "dump", cid)
        got = {(x["formatted"]["key"], x["formatted"]["value"]) for x in d["entries"]}
        check_eq(got, {(5, 123), (7, 42)}, "dump counts --json has exactly the entries written")
        rc, out, _ = srv.cli("map", "dump", cid)
        check(rc == 0 and sorted(out.splitlines()[:-1]) == ["key: 5  value: 123", "key: 7  value: 42"]
              and out.splitlines()[-1] == "Found 2 elements", "dump counts (text)", out)

        # per-CPU: one value given, stored for every CPU; each CPU shown
        rc, pc, _ = srv.cli_json("map", "show", "pcpu")
        ncpu = pc["percpu_slots"]
        check(rc == 0 and ncpu >= 1 and pc["value_size"] == 4, "pcpu: per-CPU array of u32", repr(pc))
        rc, _, err = srv.cli("map", "update", "pcpu", "1", "77")
        check_eq(rc, 0, "update of a per-CPU map with one value")
        rc, e, _ = srv.cli_json("map", "lookup", "pcpu", "1")
        check(rc == 0 and e["formatted"] == {"key": 1, "values": [77] * ncpu}
              and e["values"] == ["4d000000"] * ncpu, "per-CPU lookup --json: every CPU's value", repr(e))
        rc, out, _ = srv.cli("map", "lookup", "pcpu", "1")
        check_eq(out.splitlines(), ["key: 1"] + [f"  cpu{i}: 77" for i in range(ncpu)],
                 "per-CPU lookup (text): one line per CPU")

        # queue: nothing to dump, pop of an empty queue
        rc, _, err = srv.cli("map", "pop", "jobs")
        check(rc == 1 and err.strip().endswith("(not_found)"), "pop of an empty queue: not_found", err)
        rc, _, err = srv.cli("map", "dump", "jobs")
        check(rc == 1 and err.strip().endswith("(unsupported)"), "dump of a queue: unsupported", err)

        # ambiguity: the other object has a "counts" too
        rc, _, err = srv.cli("map", "dump", "counts")
        rc, _, err = srv.cli("map", "lookup", "counts", "5")
        check(rc == 1 and "(invalid_params)" in err and "ambiguous" in err,
              "a map name shared by two objects is refused as ambiguous", err)
        rc, out, _ = srv.cli("map", "lookup", str(counts["id"]), "5")
        check_eq(out.strip(), "key: 5  value: 123", "lookup by id then works")

        # global data: DATASEC values
        rc, out, _ = srv.cli("map", "dump", "other.data")
        check(rc == 0 and '{"data_bias": 5}' in out, "dump .data prints its variables by name", out)
        rc, d, _ = srv.cli_json("map", "dump", "other.rodata")
        check(rc == 0 and d["entries"][0]["formatted"]["value"] == {"rodata_mul": 3},
              "dump .rodata --json", repr(d))

        # programs
        rc, progs, _ = srv.cli_json("prog", "list")
        mine = {p["name"]: p for p in progs or [] if p["object"] == obj_id}
        check(rc == 0 and set(mine) == {"count_flow", "count_call", "count_cpu", "push_job"}, "prog list --json", repr(progs))
        rc, out, _ = srv.cli("prog", "list")
        check(rc == 0 and out.splitlines()[0].split()[:2] == ["ID", "NAME"] and "count_call" in out,
              "prog list (text)", out)
        rc, out, _ = srv.cli("prog", "show", "count_call")
        check(rc == 0 and "kind: uprobe" in out and "license: GPL" in out, "prog show (text)", out)
        rc, out, _ = srv.cli("prog", "dump", str(mine["count_call"]["id"]))
        lines = out.splitlines()
        # lddw takes two slots but prints as one line
        check(rc == 0 and lines[0].startswith("0: ") and 0 < len(lines) <= mine["count_call"]["insns"]
              and lines[-1] == f"{mine['count_call']['insns'] - 1}: exit",
              "prog dump prints one instruction a line, ending in exit", out)
        rc, d, _ = srv.cli_json("prog", "dump", "count_call")
        check(rc == 0 and len(bytes.fromhex(d["insns"])) == 8 * mine["count_call"]["insns"],
              "prog dump --json: insns as hex, 8 bytes each")
        rc, _, err = srv.cli("prog", "show", "nope")
        check(rc == 1 and err.strip().endswith("(not_found)"), "prog show of a missing prog", err)

        # api
        rc, out, _ = srv.cli("api")
        check(rc == 0 and "api level 1" in out and "map.lookup {map: " in out and "not_found" in out,
              "api (text)", out[:400])
        rc, api, _ = srv.cli_json("api")
        names = {m["name"] for m in api["methods"]}
        need = {"api.info", "server.status", "object.load", "object.list", "object.unload",
                "object.btf", "prog.list", "prog.show", "prog.dump", "map.list", "map.show",
                "map.lookup", "map.update", "map.delete", "map.dump", "map.pop", "map.fd",
                "target.attach", "target.detach", "target.list", "events.subscribe",
                "events.unsubscribe"}
        check(rc == 0 and api["api_level"] == 1 and need <= names, "api --json lists every method",
              repr(need - names))
        check_eq({e["code"]: e["name"] for e in api["errors"]},
                 {1: "parse_error", 2: "invalid_request", 3: "no_such_method", 4: "invalid_params",
                  5: "too_large", 6: "permission_denied", 7: "not_found", 8: "exists",
                  9: "bad_object", 10: "verifier_rejected", 11: "target_error",
                  12: "internal_error", 13: "unsupported", 14: "busy", 15: "forbidden"},
                 "api --json error table matches PROTOCOL.md")

        # targets
        rc, ps, _ = srv.cli_json("ps")
        check(rc == 0 and ps == [], "ps --json: no targets", repr(ps))
        rc, _, err = srv.cli("detach", "1")
        check(rc == 1 and "(not_found)" in err, "detach of a process not attached", err)
        rc, _, err = srv.cli("attach", str(os.getpid()), "nope")
        check(rc == 1 and "(" in err and err.startswith("bpfgraft: "), "attach of a missing object fails", err)
        check_ps(srv, obj_id)

        # events/trace run until SIGINT and exit 0
        for argv in (["events"], ["trace"], ["--json", "events", "--topic", "target"]):
            p = subprocess.Popen([cli_bin, "--socket", srv.socket] + argv,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 20   # a CLI starting on a loaded machine
            subscribed = False
            while time.monotonic() < deadline and not subscribed:
                rc, st, _ = srv.cli_json("status")
                subscribed = st and st["clients"] >= 2
                time.sleep(0.05)
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
            check(subscribed and p.returncode == 0,
                  f"{' '.join(argv)}: stays connected, exits 0 on SIGINT", f"rc {p.returncode} {err}")
        rc, _, err = srv.cli("events", "--topic", "bogus")
        check(rc == 1 and "(invalid_params)" in err, "events with an unknown topic", err)

        # bad objects through the CLI
        rc, _, err = srv.cli("load", "/etc/hostname")
        check(rc == 1 and err.strip().endswith("(bad_object)"), "load of a non-ELF: bad_object", err)
        rc, _, err = srv.cli("load", os.path.join(srv.dir, "missing.o"))
        check(rc == 1 and "(not_found)" in err, "load of a missing file: not_found", err)

        # load falls back to sending the bytes when the server cannot open
        # the path: here the file lives on a tmpfs mounted in a private
        # mount namespace of the CLI only (gone when the namespace ends).
        priv = os.path.join(srv.dir, "priv")
        os.mkdir(priv)
        hidden = os.path.join(priv, "hidden.bpf.o")
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            'mount -t tmpfs none "$1" && cp "$2" "$3" && exec "$4" --socket "$5" --json load "$3"',
                            "sh", priv, args.obj, hidden, cli_bin, srv.socket],
                           capture_output=True, text=True, timeout=30)
        try:
            hid = json.loads(r.stdout)
        except ValueError:
            hid = {}
        check(r.returncode == 0 and hid.get("name") == "hidden" and len(hid.get("maps", [])) == 5
              and not os.path.exists(hidden),
              "load of a path the server cannot see falls back to the bytes", r.stdout + r.stderr)
        if hid.get("id"):
            srv.cli("unload", hid["id"])

        # unload
        rc, out, _ = srv.cli("unload", str(other_id))
        check_eq((rc, out), (0, ""), "unload the other object")
        rc, maps, _ = srv.cli_json("map", "list")
        check(rc == 0 and not any(m["name"].startswith("other.") for m in maps),
              "its maps are gone", repr(maps))
        rc, out, err = srv.cli("map", "lookup", "counts", "5")
        check_eq(out.strip() + err, "key: 5  value: 123", "'counts' is unambiguous again")
        rc, _, err = srv.cli("unload", str(other_id))
        check(rc == 1 and "(not_found)" in err, "unloading it again: not_found", err)
        check(srv.alive(), "the server is still running")
    return report()


if __name__ == "__main__":
    sys.exit(main())
