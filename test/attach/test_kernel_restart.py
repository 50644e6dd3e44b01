"""Kernel programs of mixed objects outlive bpfgraftd: samples/connlat's
raw tracepoint (kernel) and uprobe (userspace, in the victim) keep counting
into their shared kernel maps across a SIGKILL of bpfgraftd (its kernel
programs, links and maps are pinned under /sys/fs/bpf/bpfgraft/); the
restarted server lists the kernel program again and dumps the same maps;
unload removes the pins and the kernel program, and nothing of the test is
left under bpffs."""
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

PIN_ROOT = "/sys/fs/bpf/bpfgraft"


def kernel_progs(name):
    r = subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True, text=True)
    return [p["id"] for p in json.loads(r.stdout or "[]") if p.get("name") == name]


def pinned_counts(pin):
    """The u64 values of the pinned `counts` array (bpftool, byte lists)."""
    r = subprocess.run(["bpftool", "-j", "map", "dump", "pinned", pin], capture_output=True, text=True)
    le = lambda b: int.from_bytes(bytes(int(x, 16) for x in b), "little")   # noqa: E731
    got = {le(e["key"]): le(e["value"]) for e in json.loads(r.stdout or "[]")}
    return [got.get(i) for i in range(2)]


def counts(srv):
    rc, doc, _ = srv.cli_json("map", "dump", "counts")
    got = {e["formatted"]["key"]: e["formatted"]["value"] for e in (doc or {}).get("entries", [])}
    return [got.get(i) for i in range(2)]


def connects(victim, n):
    victim.stdin.write(f"{n}\n")
    victim.stdin.flush()
    return victim.stdout.readline().split()


def wait_adopted(srv, pid):
    end = time.monotonic() + 15
    while time.monotonic() < end:
        rc, targets, _ = srv.cli_json("ps")
        if any(t.get("pid") == pid for t in targets or []):
            return True
        time.sleep(0.1)
    return False


def runs(srv):
    rc, progs, _ = srv.cli_json("prog", "list")
    return {p["name"]: p["runs"] for p in progs or []}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--obj", required=True, help="connlat.bpf.o")
    args = ap.parse_args()
    require("root", "bpf-tracing")
    ls = tcp_listener()
    port = ls.getsockname()[1]
    pin_ns = None
    with Server(args) as srv:
        victim = subprocess.Popen([os.path.join(args.bin_dir, "connlat-victim"), str(port)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            check_eq(victim.stdout.readline().strip(), "ready", "the victim is ready")
            rc, out, err = srv.cli_json("load", args.obj)
            check_eq(rc, 0, f"load connlat ({err.strip()})")
            st = os.stat(os.path.join(srv.dir, "restart", "maps"))
            pin_ns = os.path.join(PIN_ROOT, f"{st.st_dev:x}-{st.st_ino:x}")
            pin = os.path.join(pin_ns, str((out or {}).get("id")))
            have = sorted(os.listdir(pin)) if os.path.isdir(pin) else []
            check_eq(have, ["link_0", "map_counts", "map_hist", "map_start", "prog_tcp_connect_enter"],
                     f"the kernel program, its link and the kernel maps it uses are pinned in {pin}")
            rc, _, err = srv.cli("attach", victim.pid, "connlat")
            check_eq(rc, 0, f"attach the uprobe ({err.strip()})")
            check_eq(connects(victim, 20), ["done", "20", "failed", "0"], "20 connects")
            check_eq(counts(srv), [20, 20], "20 on both sides")

            srv.proc.kill()
            srv.proc.wait()
            check_eq(connects(victim, 15), ["done", "15", "failed", "0"], "15 connects with bpfgraftd killed (-9)")
            check(len(kernel_progs("tcp_connect_enter")) >= 1, "the kernel program is still attached")
            check_eq(pinned_counts(os.path.join(pin, "map_counts")), [35, 35],
                     "both sides counted them into the pinned map (35)")

            srv.start_again()  # raises if it does not answer
            check(wait_adopted(srv, victim.pid), "the victim is adopted again")
            check_eq(runs(srv), {"connect_enter": "userspace", "tcp_connect_enter": "kernel"},
                     "prog list after the restart: the raw tracepoint runs in the kernel again")
            check_eq(counts(srv), [35, 35], "map dump after the restart reads the kernel's maps (35)")
            check_eq(connects(victim, 10), ["done", "10", "failed", "0"], "10 more connects")
            check_eq(counts(srv), [45, 45], "45 on both sides")
            rc, _, err = srv.cli("detach", victim.pid)
            check_eq(rc, 0, f"detach ({err.strip()})")
            before = kernel_progs("tcp_connect_enter")
            rc, _, err = srv.cli("unload", (out or {}).get("id"))
            check_eq(rc, 0, f"unload ({err.strip()})")
            check(not os.path.exists(pin_ns), f"unload removed the pins ({pin_ns} is gone)")
            end = time.monotonic() + 10
            while time.monotonic() < end and set(before) & set(kernel_progs("tcp_connect_enter")):
                time.sleep(0.2)
            check_eq(sorted(set(before) & set(kernel_progs("tcp_connect_enter"))), [],
                     "and the kernel program is gone")

            # a stop for good (shutdown --detach) ends the kernel part too
            rc, out, err = srv.cli_json("load", args.obj)
            check(rc == 0 and os.path.isdir(os.path.join(pin_ns, str((out or {}).get("id")))),
                  f"loaded again: pinned ({err.strip()})")
            before = kernel_progs("tcp_connect_enter")
            rc, _, err = srv.cli("shutdown", "--detach")
            check_eq(rc, 0, f"shutdown --detach ({err.strip()})")
            srv.proc.wait(timeout=20)
            check(not os.path.exists(pin_ns), "shutdown --detach removed the pins")
            end = time.monotonic() + 10
            while time.monotonic() < end and set(before) & set(kernel_progs("tcp_connect_enter")):
                time.sleep(0.2)
            check_eq(sorted(set(before) & set(kernel_progs("tcp_connect_enter"))), [],
                     "and the kernel program ended with the server")
            srv.start_again()
        finally:
            victim.kill()
            victim.wait()
            ls.close()
            if pin_ns and os.path.exists(pin_ns):
                shutil.rmtree(pin_ns, ignore_errors=True)   # bpffs: unlink and rmdir work
    return report()


if __name__ == "__main__":
    sys.exit(main())
