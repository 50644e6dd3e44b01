"""Statistics (stats.set; server/README.md, "Statistics"): a program's
run_cnt equals the calls 4 threads made while stats were on, run_time_ns
grows only while they are on (both frozen when off, zero before); a
hook's hits are its misses plus the runs it made; a hash map's entries are
its distinct keys; a ring buffer nobody reads loses exactly the records
its program could not reserve. The CLI's stats command, prog show, ps and
map show print them."""
import os
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, check_eq, counts, parse_probe_args, report, zero_counts  # noqa: E402
from test_attach import Victim  # noqa: E402

THREADS = 4
RING_BYTES = 4096  # small_rb in stats.bpf.c
RECORD_BYTES = 16  # an 8-byte record and its 8-byte header


def prog(cl, name):
    return cl.call("prog.show", prog=name)


def run_window(v, seconds):
    """Lets the victim's threads call for a while, then stops them: the
    calls made, or None if they did not stop."""
    c0 = v.get("calls")
    v.set("go", 1)
    time.sleep(seconds)
    deadline = time.monotonic() + 20  # a loaded machine may not run the threads that soon
    while v.get("calls") == c0 and time.monotonic() < deadline:
        time.sleep(0.01)
    return v.get("calls") - c0 if v.quiesce() else None


def check_run_counts(srv, cl, v):
    """run_cnt exact over 4 threads, run_time_ns only while enabled."""
    cl.call("target.attach", pid=v.pid, object="stats", programs=["add_entry", "add_tid"], target=":probed_add")
    calls = run_window(v, 0.2)
    p = prog(cl, "add_entry")
    check(calls and p["run_cnt"] == 0 and p["run_time_ns"] == 0,
          "stats off (the default): run_cnt and run_time_ns stay 0", f"{calls} calls, {p}")
    check_eq(cl.call("server.status")["stats_enabled"], False, "server.status: stats_enabled false by default")

    check_eq(cl.call("stats.set", enabled=True), {"enabled": True}, "stats.set enabled: true")
    check_eq(cl.call("server.status")["stats_enabled"], True, "server.status: stats_enabled true")
    zero_counts(cl)
    calls = run_window(v, 0.3)
    p, c = prog(cl, "add_entry"), counts(cl)
    check(calls and p["run_cnt"] == calls == c[0],
          f"run_cnt equals the calls {THREADS} threads made while enabled", f"{calls} calls, counted {c[0]}, {p}")
    check(p["run_time_ns"] > 0, "run_time_ns grows while enabled", repr(p))
    check_eq(p["targets"], [{"pid": v.pid, "run_cnt": p["run_cnt"], "run_time_ns": p["run_time_ns"]}],
             "prog.show targets: the one process, its counters")
    listed = [e for e in cl.call("prog.list") if e["name"] == "add_entry"]
    check(listed and listed[0]["run_cnt"] == p["run_cnt"] and "targets" not in listed[0],
          "prog.list: the same run_cnt, no per-target list", repr(listed))

    rc, out, _ = srv.cli("prog", "show", "add_entry")
    want = f"run_time_ns {p['run_time_ns']} run_cnt {p['run_cnt']}"
    check(rc == 0 and want in out.splitlines() and f"  pid {v.pid} {want}" in out.splitlines()
          and "kind: uprobe" in out, "bpfgraft prog show: bpftool's run_time_ns/run_cnt line, per process", out)

    m = cl.call("map.show", map="tids")
    check_eq(m["entries"], THREADS, "map.show entries: one tids key per thread")
    check("lost" not in m, "map.show: no lost for a hash map", repr(m))
    check_eq(cl.call("map.show", map="counts")["entries"], 4, "map.show entries of an array: max_entries")

    rc, out, _ = srv.cli("stats", "disable")
    check(rc == 0, "bpfgraft stats disable", out)
    rc, out, _ = srv.cli("stats", "status")
    check(rc == 0 and out.strip() == "stats disabled", "bpfgraft stats status: disabled", out)
    calls = run_window(v, 0.2)
    q = prog(cl, "add_entry")
    check(calls and q["run_cnt"] == p["run_cnt"] and q["run_time_ns"] == p["run_time_ns"],
          "disabled: run_cnt and run_time_ns frozen while the threads call on", f"{calls} calls, {p} then {q}")
    cl.call("target.detach", pid=v.pid)


def ring_counts(cl):
    """fill_ring's own count: [records submitted, reserves refused]."""
    return [struct.unpack("<Q", cl.call("map.lookup", map="ring_counts", key=struct.pack("<I", k))["value"])[0]
            for k in range(2)]


def check_ring_lost(cl, v):
    """Every reserve the ring refused is one lost record."""
    cl.call("stats.set", enabled=True)
    cl.call("target.attach", pid=v.pid, object="stats", programs=["fill_ring"], target=":probed_add")
    calls = run_window(v, 0.3)
    c, m = ring_counts(cl), cl.call("map.show", map="small_rb")
    check(calls and c[0] + c[1] == calls, "every call submitted a record or was refused one", f"{calls} calls, {c}")
    check(m["lost"] == c[1] > 0, "map.show lost: exactly the reserves refused, the ring full",
          f"lost {m.get('lost')}, refused {c[1]}")
    # the producer stops one record short of consumer_pos + size
    check_eq(c[0], RING_BYTES // RECORD_BYTES - 1, "records submitted: what fits in a ring nobody reads")
    check_eq(prog(cl, "fill_ring")["run_cnt"], calls, "fill_ring: run_cnt equals the calls")
    cl.call("target.detach", pid=v.pid)


def stop_sleeping(proc):
    """SIGSTOPs the recursing victim where it sleeps between calls (no frame
    of recurse on its stack): True once it is."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        os.kill(proc.pid, signal.SIGSTOP)
        while open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "T":
            time.sleep(0.001)
        nr = open(f"/proc/{proc.pid}/syscall").read().split()[0]
        if nr in ("35", "230"):  # nanosleep, clock_nanosleep
            return True
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.002)
    return False


def hook_of(cl, pid):
    hooks = [h for t in cl.call("target.list") if t["pid"] == pid for h in t["hooks"]]
    return hooks[0] if hooks else {}


def check_hits(srv, cl, test_bin):
    """A uretprobe on a function recursing deeper than the shadow stack:
    every entry while enabled is a hit; each either runs (its return is
    counted) or misses."""
    rv = subprocess.Popen([os.path.join(test_bin, "recurse-victim")])
    try:
        time.sleep(0.2)
        cl.call("stats.set", enabled=False)
        cl.call("target.attach", pid=rv.pid, object="stats", programs=["add_return"], target=":recurse")
        time.sleep(0.2)
        check(stop_sleeping(rv), "the recursing victim stopped between calls")
        h0 = hook_of(cl, rv.pid)
        check_eq(h0.get("hits"), 0, "target.list hits: none while stats are off")
        zero_counts(cl)
        cl.call("stats.set", enabled=True)
        os.kill(rv.pid, signal.SIGCONT)
        time.sleep(0.5)
        deadline = time.monotonic() + 20  # a loaded machine recurses less in 0.5 s: let it run on
        while True:
            stopped = stop_sleeping(rv)
            h = hook_of(cl, rv.pid)
            if not stopped or (h.get("hits", 0) >= 40 and h.get("misses", 0) > h0.get("misses", 0)) \
                    or time.monotonic() > deadline:
                break
            os.kill(rv.pid, signal.SIGCONT)
            time.sleep(0.2)
        check(stopped, "the recursing victim stopped between calls again")
        h, returns = hook_of(cl, rv.pid), counts(cl)[1]
        misses = h.get("misses", 0) - h0.get("misses", 0)
        check(h.get("hits", 0) >= 40 and misses > 0 and h["hits"] == misses + returns,
              "target.list: hits = misses + returns traced (8 of every 40 entries miss)",
              f"hits {h.get('hits')} misses {misses} returns {returns}")
        rc, out, _ = srv.cli("ps")
        row = [line.split() for line in out.splitlines() if line.split()[:1] == [str(rv.pid)]]
        header = out.splitlines()[0].split() if out else []
        check(rc == 0 and row and "HITS" in header and row[0][header.index("HITS")] == str(h["hits"]),
              "bpfgraft ps: the HITS column", out)
        os.kill(rv.pid, signal.SIGCONT)
        cl.call("target.detach", pid=rv.pid)
    finally:
        rv.kill()
        rv.wait()


def check_cli_switch(srv):
    rc, out, _ = srv.cli("stats", "enable")
    check(rc == 0 and "enabled: true" in out, "bpfgraft stats enable", out)
    rc, out, _ = srv.cli("stats", "status")
    check(rc == 0 and out.strip() == "stats enabled", "bpfgraft stats status: enabled", out)
    rc, _, err = srv.cli("stats", "bogus")
    check(rc != 0 and "stats enable|disable|status" in err, "bpfgraft stats with a bad subcommand: usage", err)


def main():
    args = parse_probe_args("--test-bin")
    with Server(args) as srv:
        cl = srv.client()
        cl.call("object.load", path=os.path.abspath(args.obj), name="stats")
        v = Victim(os.path.join(args.test_bin, "attach-victim-pie"), srv.dir, THREADS)
        try:
            check_run_counts(srv, cl, v)
            check_ring_lost(cl, v)
        finally:
            v.stop()
        check_hits(srv, cl, args.test_bin)
        check_cli_switch(srv)
        check_eq(cl.call("stats.set", enabled=False), {"enabled": False}, "stats.set enabled: false")


if __name__ == "__main__":
    main()
    raise SystemExit(report())
