#!/usr/bin/python3
"""scripts/bpfgraft_client.py against a real bpfgraftd: calls and errors,
map round trips crossed with the CLI, map.fd (mmap and header check), 20
concurrent clients, and the list_and_dump example."""
import mmap
import os
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, check_eq, parse_args, report  # noqa: E402

REGION_MAGIC = 0x50414d4746504221   # "!BPFGMAP", maps/FORMAT.md
BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_ARRAY = 1, 2


def main():
    args = parse_args()
    from bpfgraft_client import BpfgraftError, Client

    try:
        Client("/nonexistent/sock.sock")
        check(False, "connecting to a missing socket raises")
    except ConnectionError as e:
        check("/nonexistent/sock.sock" in str(e), "connecting to a missing socket raises, naming it")

    with Server(args) as srv:
        c = srv.client()
        st = c.call("server.status")
        check(st["pid"] == srv.proc.pid and st["clients"] == 1, "call server.status", repr(st))

        with open(args.obj, "rb") as f:
            data = f.read()
        obj = c.call("object.load", data=data, name="fromdata")
        check(obj["name"] == "fromdata" and len(obj["maps"]) == 5, "object.load with bytes", repr(obj))
        maps = {m["name"]: m["id"] for m in obj["maps"]}

        try:
            c.call("map.lookup", map="counts", key=(99).to_bytes(4, "little"))
            check(False, "lookup of a missing key raises")
        except BpfgraftError as e:
            check(e.code == 7 and e.name == "not_found" and "not_found" in str(e),
                  "lookup of a missing key raises BpfgraftError(7, not_found, ...)", repr(e))
        try:
            c.call("no.such.method")
            check(False, "unknown method raises")
        except BpfgraftError as e:
            check_eq((e.code, e.name), (3, "no_such_method"), "unknown method: no_such_method")
        try:
            c.call("map.show", map="counts", bogus=1)
            check(False, "unknown parameter raises")
        except BpfgraftError as e:
            check_eq(e.code, 4, "unknown parameter: invalid_params")

        # Round trips, crossed with the CLI.
        k, v = (41).to_bytes(4, "little"), (1 << 40).to_bytes(8, "little")
        check_eq(c.call("map.update", map="counts", key=k, value=v), True, "map.update returns true")
        check_eq(c.call("map.lookup", map=maps["counts"], key=k), {"key": k, "value": v},
                 "map.lookup returns what map.update stored")
        rc, out, _ = srv.cli("map", "lookup", "counts", "41")
        check_eq(out.strip(), f"key: 41  value: {1 << 40}", "the CLI sees the client's update")
        rc, _, _ = srv.cli("map", "update", "counts", "42", "4242")
        check_eq(c.call("map.lookup", map="counts", key=(42).to_bytes(4, "little"))["value"],
                 (4242).to_bytes(8, "little"), "the client sees the CLI's update")
        try:
            c.call("map.update", map="counts", key=k, value=v, flags=1)
            check(False, "flags=1 on a present key raises")
        except BpfgraftError as e:
            check_eq(e.name, "exists", "map.update flags=1 on a present key: exists")
        check_eq(c.call("map.delete", map="counts", key=k), True, "map.delete returns true")
        rc, _, err = srv.cli("map", "lookup", "counts", "41")
        check(rc == 1 and "(not_found)" in err, "the CLI sees the client's delete", err)
        dump = c.call("map.dump", map="counts")
        check_eq(dump, {"entries": [{"key": (42).to_bytes(4, "little"),
                                      "value": (4242).to_bytes(8, "little")}], "truncated": False},
                 "map.dump has exactly the remaining entry")
        cfgv = b"x" * 8 + bytes(8)
        c.call("map.update", map="cfg", key=(3).to_bytes(4, "little"), value=cfgv)
        check_eq(c.call("map.lookup", map="cfg", key=(3).to_bytes(4, "little"))["value"], cfgv,
                 "array map round trip")

        # map.fd: an mmap-able memfd with the region header of maps/FORMAT.md
        for name, mtype in (("counts", BPF_MAP_TYPE_HASH), ("cfg", BPF_MAP_TYPE_ARRAY)):
            fd, info = c.map_fd_info(name)
            try:
                size = os.fstat(fd).st_size
                with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ) as m:
                    magic, version, hdr_size, typ, ks, vs, maxe = struct.unpack_from("<QIIIIII", m, 0)
                    mname = m[64:80].split(b"\0")[0].decode()
                check(magic == REGION_MAGIC and version == 5 and hdr_size == 4096,
                      f"map.fd {name}: region magic, version 5", f"{magic:#x} {version} {hdr_size}")
                check((typ, ks, vs, maxe, mname) == (mtype, info["key_size"], info["value_size"],
                                                     info["max_entries"], name),
                      f"map.fd {name}: header type/sizes/name match map.show",
                      repr((typ, ks, vs, maxe, mname, info)))
                check(info["name"] == name and info["id"] == maps[name],
                      f"map.fd {name}: the answer is map.show's")
            finally:
                os.close(fd)
        fd = c.map_fd(maps["counts"])
        check(isinstance(fd, int) and fd >= 0, "map_fd returns an fd")
        os.close(fd)
        check_eq(c.call("server.status")["maps"], 5, "the connection stays usable after map.fd")
        c.close()

        # 20 clients at once, each 50 updates + 50 lookups of its own keys
        # and lookups of a shared key (all answered correctly).
        N, M = 20, 50
        errors = []
        shared_key = (7777).to_bytes(4, "little")
        with srv.client() as c0:
            c0.call("map.update", map="counts", key=shared_key, value=(31337).to_bytes(8, "little"))
        barrier = threading.Barrier(N)

        def worker(t):
            try:
                with srv.client(timeout=60) as cl:
                    barrier.wait()
                    for i in range(M):
                        key = (100000 + t * 1000 + i).to_bytes(4, "little")
                        val = (t << 32 | i * 7).to_bytes(8, "little")
                        if cl.call("map.update", map=maps["counts"], key=key, value=val) is not True:
                            errors.append(f"client {t}: update {i} did not return true")
                        got = cl.call("map.lookup", map=maps["counts"], key=key)
                        if got != {"key": key, "value": val}:
                            errors.append(f"client {t}: lookup {i} got {got!r}")
                        if i % 10 == 0:
                            sv = cl.call("map.lookup", map="counts", key=shared_key)["value"]
                            if sv != (31337).to_bytes(8, "little"):
                                errors.append(f"client {t}: shared key got {sv!r}")
            except Exception as e:   # noqa: BLE001 - reported as a failed check
                errors.append(f"client {t}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(N)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(120)
        check(not any(th.is_alive() for th in threads), f"{N} concurrent clients finish")
        check(not errors, f"{N} clients x {M} update+lookup: every answer correct",
              "; ".join(errors[:5]))
        with srv.client() as c2:
            dump = c2.call("map.dump", map="counts")
            want = {(100000 + t * 1000 + i).to_bytes(4, "little"): (t << 32 | i * 7).to_bytes(8, "little")
                    for t in range(N) for i in range(M)}
            want[shared_key] = (31337).to_bytes(8, "little")
            want[(42).to_bytes(4, "little")] = (4242).to_bytes(8, "little")
            got = {e["key"]: e["value"] for e in dump["entries"]}
            check(got == want and not dump["truncated"],
                  f"after the run the map holds exactly the {len(want)} entries written",
                  f"{len(got)} entries")

        # events(): subscribing answers true and the stream is a generator
        # (no target runs here, so no event arrives; see the report).
        with srv.client(timeout=0.5) as ce:
            gen = ce.events(["target"])
            try:
                next(gen)
                check(False, "no event arrives without targets")
            except TimeoutError:
                check(True, "events(): subscribed, waits for notifications")
            except OSError as e:
                check(isinstance(e, TimeoutError), "events(): waits", repr(e))

        # The example script.
        script = os.path.join(args.scripts, "examples", "list_and_dump.py")
        r = subprocess.run([sys.executable, script, "--socket", srv.socket, "counts"],
                           capture_output=True, text=True, timeout=30)
        lines = r.stdout.splitlines()
        check(r.returncode == 0 and lines[0].split()[:2] == ["ID", "NAME"]
              and any(l.split()[1:3] == ["flows", "hash"] for l in lines)
              and "  42: 4242" in lines and "  7777: 31337" in lines
              and f"map counts: {len(want)} entries" in r.stdout,
              "examples/list_and_dump.py lists maps and dumps counts as ints", r.stdout[:500] + r.stderr)
        r = subprocess.run([sys.executable, script, "--socket", srv.socket, "flows"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 0 and "map flows: 0 entries" in r.stdout, "list_and_dump of an empty map",
              r.stdout + r.stderr)
        r = subprocess.run([sys.executable, script, "--socket", srv.socket, "nope"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode == 1 and "(not_found)" in r.stderr, "list_and_dump of a missing map", r.stderr)
        check(srv.alive(), "the server is still running")
    return report()


if __name__ == "__main__":
    sys.exit(main())
