"""End to end: an object with a bloom filter, an LPM trie and a hash of maps
(slots filled by the object's .values) runs in a uprobe inside a victim
that calls probe_me(x) for x = 0..N-1, on each engine; every count is
exact. Then the CLI dumps the trie and the map-in-map, and the server
checks inner maps stored through map.update against the template."""
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, check_eq, end_victim, parse_probe_args, report  # noqa: E402

N = 1000


def u64(cl, m, k):
    return struct.unpack("<Q", cl.call("map.lookup", map=m, key=struct.pack("<I", k))["value"])[0]


def main():
    args = parse_probe_args("--test-bin")
    from bpfgraft_client import BpfgraftError

    with Server(args) as srv:
        cl = srv.client()
        for engine in ("interp", "x86", "llvm"):
            cl.call("object.load", path=os.path.abspath(args.obj), name="maptypes")
            v = subprocess.Popen([os.path.join(args.test_bin, "maptypes-victim"), str(N)], stdout=subprocess.PIPE,
                                 text=True)
            try:
                check_eq(v.stdout.readline().strip(), "ready", f"{engine}: victim ready")
                cl.call("target.attach", pid=v.pid, object="maptypes", programs=["probe_me"], target=":probe_me",
                        engine=engine)
                v.send_signal(10)  # SIGUSR1
                check_eq(v.stdout.readline().strip(), "done", f"{engine}: victim made its calls")
                got = [u64(cl, "results", k) for k in range(6)]
                want = [N // 2 - 1, N, 3 * N // 4, N // 4, N, N]
                check_eq(got, want, f"{engine}: bloom hits, LPM longest prefixes (/8 /16 /24), empty slot, calls")
                check_eq([u64(cl, "cls0", 0), u64(cl, "cls1", 0)], [N // 2, N // 2],
                         f"{engine}: hash of maps: inner maps reached by slot")
                if engine == "interp":
                    rc, doc, err = srv.cli_json("map", "dump", "routes")
                    check_eq(rc, 0, f"map dump routes ({err.strip()})")
                    entries = doc if isinstance(doc, list) else (doc or {}).get("entries", [])
                    check(len(entries) == 3, "map dump: the trie's three prefixes", str(doc)[:400])
                    rc, out, err = srv.cli("map", "dump", "by_class")
                    check_eq(rc, 0, f"map dump by_class ({err.strip()})")
                    ids = {m["name"]: m["id"] for m in cl.call("map.list")}
                    slot0 = cl.call("map.lookup", map="by_class", key=struct.pack("<I", 0))["value"]
                    check_eq(struct.unpack("<I", slot0)[0], ids["cls0"], "slot 0 holds cls0's id")
                    try:
                        cl.call("map.update", map="by_class", key=struct.pack("<I", 2),
                                value=struct.pack("<I", ids["results"]))
                        check(False, "an inner map not matching the template is refused")
                    except BpfgraftError as e:
                        check("template" in e.message, "a mismatching inner map is refused, naming the template",
                              e.message)
                    cl.call("map.update", map="by_class", key=struct.pack("<I", 2),
                            value=struct.pack("<I", ids["cls1"]))
                    rc, out, err = srv.cli("map", "dump", "seen")
                    check(rc != 0 and "no keys" in err, "map dump of a bloom filter says it has no keys", err)
            finally:
                end_victim(cl, v, "maptypes")
        check(srv.alive(), "the server survived")


if __name__ == "__main__":
    main()
    raise SystemExit(report())
