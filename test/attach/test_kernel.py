"""Mixed objects (object.load kernel): samples/connlat's uprobe on libc's
connect runs in the victim, its raw tracepoint at TCP's move to SYN_SENT
runs in the kernel, and both write the same kernel maps (a hash through
bpf(), mmapped arrays). N known connects to a local listener must be
counted N times on both sides. Every kernel object made is gone after
unload."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, check_eq, report, require, tcp_listener  # noqa: E402


def kernel_progs(name):
    """Ids of the kernel's programs named name (bpftool names them from BTF)."""
    r = subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True, text=True)
    return [p["id"] for p in json.loads(r.stdout or "[]") if p.get("name") in (name, name[:15])]


def kernel_progs_left(name, among=None):
    """kernel_progs(name) (those among ids, if given) still there 10 s
    after their unload at the latest: the kernel frees a program once its
    last reference is gone, after an RCU grace period."""
    end = time.monotonic() + 10
    while True:
        left = [i for i in kernel_progs(name) if among is None or i in among]
        if not left or time.monotonic() > end:
            return left
        time.sleep(0.2)


def counts(srv):
    rc, doc, err = srv.cli_json("map", "dump", "counts")
    got = {e["formatted"]["key"]: e["formatted"]["value"] for e in (doc or {}).get("entries", [])}
    return [got.get(i) for i in range(3)]


def hist_total(srv):
    rc, doc, err = srv.cli_json("map", "dump", "hist")
    return sum(e["formatted"]["value"] for e in (doc or {}).get("entries", []))


def connects(victim, n):
    victim.stdin.write(f"{n}\n")
    victim.stdin.flush()
    return victim.stdout.readline().split()


def listing(srv):
    rc, progs, _ = srv.cli_json("prog", "list")
    runs = {p["name"]: p["runs"] for p in progs or []}
    rc, maps, _ = srv.cli_json("map", "list")
    kernel = {m["name"]: m["kernel"] for m in maps or []}
    return runs, kernel


def check_modes(srv, args):
    rc, _, err = srv.cli("load", "--kernel=sometimes", "--name", "bad", args.obj)
    check(rc != 0 and "kernel 'sometimes'" in err, "--kernel=sometimes is refused, naming it", err)
    rc, _, err = srv.cli("load", "--kernel=never", "--name", "usonly", args.obj)
    check_eq(rc, 0, f"--kernel=never loads the userspace part ({err.strip()})")
    rc, progs, _ = srv.cli_json("prog", "list")
    never = [p for p in progs or [] if p["object"] != progs[0]["object"]]
    check(sorted((p["name"], p["runs"]) for p in never) ==
          [("connect_enter", "userspace"), ("tcp_connect_enter", "nowhere")],
          "--kernel=never: the raw tracepoint runs nowhere, the uprobe in userspace", repr(never))
    rc, maps, _ = srv.cli_json("map", "list")
    check(all(not m["kernel"] for m in maps or [] if m["object"] != progs[0]["object"]),
          "--kernel=never: its maps are bpfgraft's", repr(maps))
    srv.cli("unload", never[0]["object"] if never else 0)


def pinned_counts(pin):
    """The u64 values of a pinned array, by bpftool (no BTF: byte lists)."""
    r = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", pin], capture_output=True, text=True)
    le = lambda b: int.from_bytes(bytes(int(x, 16) for x in b), "little")   # noqa: E731
    got = {le(e["key"]): le(e["value"]) for e in json.loads(r.stdout or "[]")}
    return [got.get(i) for i in range(3)]


def check_adopt(srv, args, port):
    """A pinned kernel array adopted as `counts`: connlat loaded after it
    counts into that very map (read back through the pin)."""
    pin = f"/sys/fs/bpf/bpfg_test_kernel_{os.getpid()}"
    r = subprocess.run(["bpftool", "map", "create", pin, "type", "array", "key", "4", "value", "8", "entries", "3",
                        "name", "counts", "flags", "1024"], capture_output=True, text=True)
    check_eq(r.returncode, 0, f"bpftool pins a kernel array ({r.stderr.strip()})")
    try:
        rc, _, err = srv.cli("map", "adopt", "/sys/fs/bpf/bpfg_no_such_pin", "--name", "counts")
        check(rc != 0 and "No such file" in err, "adopting a missing pin fails naming it", err)
        rc, _, err = srv.cli("map", "adopt", pin, "--name", "counts")
        check_eq(rc, 0, f"map adopt {pin} --name counts ({err.strip()})")
        rc, _, err = srv.cli("load", "--name", "adopter", args.obj)
        check_eq(rc, 0, f"connlat loads with the adopted counts map ({err.strip()})")
        victim = subprocess.Popen([os.path.join(args.bin_dir, "connlat-victim"), str(port)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            victim.stdout.readline()
            rc, _, err = srv.cli("attach", victim.pid, "adopter")
            check_eq(rc, 0, f"attach ({err.strip()})")
            check_eq(connects(victim, 20), ["done", "20", "failed", "0"], "20 connects")
            check_eq(pinned_counts(pin)[:2], [20, 20], "both sides counted into the pinned map")
            srv.cli("detach", victim.pid)
        finally:
            victim.kill()
            victim.wait()
    finally:
        rc, objs, _ = srv.cli_json("prog", "list")
        for obj in {p["object"] for p in objs or [] if p["name"] == "connect_enter"}:
            srv.cli("unload", obj)
        rc, maps, _ = srv.cli_json("map", "list")
        for obj in {m["object"] for m in maps or [] if m["name"] == "counts"}:
            srv.cli("unload", obj)
        os.unlink(pin)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--obj", required=True, help="connlat.bpf.o")
    args = ap.parse_args()
    require("root", "bpf-tracing")

    with Server(args) as srv:
        st = os.stat(os.path.join(srv.dir, "restart", "maps"))
        pins = f"/sys/fs/bpf/bpfgraft/{st.st_dev:x}-{st.st_ino:x}"  # server/README.md, "Pins"
        rc, out, err = srv.cli("load", args.obj)
        check_eq(rc, 0, f"load connlat, one object with both sides ({err.strip()})")
        runs, kernel = listing(srv)
        check_eq(runs, {"connect_enter": "userspace", "tcp_connect_enter": "kernel"}, "prog list: where each runs")
        check_eq(kernel, {"start": True, "counts": True, "hist": True}, "map list: every map is the kernel's")
        kids = kernel_progs("tcp_connect_enter")
        check(len(kids) >= 1, "the raw tracepoint is a kernel program", repr(kids))
        check_modes(srv, args)

        ls = tcp_listener()
        port = ls.getsockname()[1]
        victim = subprocess.Popen([os.path.join(args.bin_dir, "connlat-victim"), str(port)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            check_eq(victim.stdout.readline().strip(), "ready", "the victim is ready")
            rc, _, err = srv.cli("attach", victim.pid, "connlat")
            check_eq(rc, 0, f"attach the uprobe to the victim ({err.strip()})")
            check_eq(connects(victim, 50), ["done", "50", "failed", "0"], "50 connects")
            check_eq(counts(srv)[:2], [50, 50], "50 seen by the uprobe, 50 matched by the kernel program")
            check(counts(srv)[2] > 0, "the delays add up to more than 0 ns", repr(counts(srv)))
            check_eq(hist_total(srv), 50, "the kernel's histogram holds the 50")
            check_eq(srv.cli("stats", "enable")[0], 0, "stats enable")
            k0 = srv.cli_json("prog", "show", "tcp_connect_enter")[1] or {}
            check_eq(connects(victim, 30), ["done", "30", "failed", "0"], "30 more connects")
            check_eq(counts(srv)[:2], [80, 80], "80 on both sides")
            k1 = srv.cli_json("prog", "show", "tcp_connect_enter")[1] or {}
            u1 = srv.cli_json("prog", "show", "connect_enter")[1] or {}
            check_eq(srv.cli("stats", "disable")[0], 0, "stats disable")
            check(k1.get("run_cnt", 0) - k0.get("run_cnt", 0) >= 30 and
                  k1.get("run_time_ns", 0) > k0.get("run_time_ns", 0),
                  "stats: the kernel program's run_cnt and run_time_ns (bpf_prog_info) grew with the 30 connects "
                  "(and any other of the machine's)", f"{k0} then {k1}")
            check_eq(u1.get("run_cnt"), 30, "stats: the uprobe's run_cnt in the victim is the 30 connects")
            rc, _, err = srv.cli("detach", victim.pid)
            check_eq(rc, 0, f"detach ({err.strip()})")
            check_eq(connects(victim, 10), ["done", "10", "failed", "0"], "10 connects after detach")
            check_eq(counts(srv)[:2], [80, 80], "counted by neither side after detach")
        finally:
            victim.kill()
            victim.wait()
            ls.close()
        rc, progs, _ = srv.cli_json("prog", "list")
        obj = next((p["object"] for p in progs or [] if p["name"] == "tcp_connect_enter"), None)
        rc, _, err = srv.cli("unload", obj)
        check_eq(rc, 0, f"unload ({err.strip()})")
        check_eq(kernel_progs_left("tcp_connect_enter", kids), [],
                 "the kernel program and its link are gone after unload")
        ls = tcp_listener()
        try:
            check_adopt(srv, args, ls.getsockname()[1])
        finally:
            ls.close()
        check_eq(kernel_progs_left("tcp_connect_enter"), [], "no kernel program of the test is left")
        check(not os.path.exists(pins), "and no pin")
    shutil.rmtree(pins, ignore_errors=True)  # a failure midway leaves them for a restart that never comes
    return report()


if __name__ == "__main__":
    sys.exit(main())
