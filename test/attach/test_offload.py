"""bpfgraftd --offload-kernel-uprobes: an unmodified bpftrace, started
normally, attaches a kernel uprobe to libc's connect; in the victim
bpfgraft manages the uprobe is served in userspace (the kernel's int3
replaced by the hook's jmp), its program writing bpftrace's own kernel
map; stopping bpfgraftd hands it back (the int3 again). Every connect is
counted exactly once across the three phases. A program the offload
cannot run (bpftrace's printf: a perf buffer) stays in the kernel and
prints every line."""
import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import (Server, check, check_eq, finish, interrupt_bpftrace, report, require, skip,  # noqa: E402
                     start_bpftrace, tcp_listener, wait_bpftrace_attached)

LIBC = "/lib/x86_64-linux-gnu/libc.so.6"


def connects(victim, n):
    victim.stdin.write(f"{n}\n")
    victim.stdin.flush()
    return victim.stdout.readline().split()


def connect_byte(pid):
    """The first byte of connect in pid, and the file's byte there."""
    out = subprocess.run(["nm", "-D", LIBC], capture_output=True, text=True).stdout
    sym = next(int(line.split()[0], 16) for line in out.splitlines() if line.split()[-1].startswith("connect@"))
    with open(LIBC, "rb") as f:   # a shared library's symbols are file offsets in its first segment
        f.seek(sym)
        file_byte = f.read(1)[0]
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            off = int(parts[2], 16)
            if len(parts) > 5 and os.path.realpath(parts[5]) == os.path.realpath(LIBC) and off <= sym < off + hi - lo:
                with open(f"/proc/{pid}/mem", "rb") as m:
                    m.seek(lo + sym - off)
                    return m.read(1)[0], file_byte
    return None, file_byte


def hooks_of(srv, pid):
    rc, targets, _ = srv.cli_json("ps")
    return next((len(t.get("hooks") or []) for t in targets or [] if t.get("pid") == pid), None)


def wait_for(cond, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def bpftrace(victim, body):
    tool = start_bpftrace(["bpftrace", "-e", f"uprobe:{LIBC}:connect /pid == {victim.pid}/ {{ {body} }}"])
    attached, err = wait_bpftrace_attached(tool, 60)
    check(attached, "bpftrace attached its kernel uprobe", err)
    return tool


def check_counted(srv, victim):
    tool = bpftrace(victim, "@n++;")
    check_eq(connects(victim, 10), ["done", "10", "failed", "0"], "10 connects under the kernel's uprobe")
    check(wait_for(lambda: hooks_of(srv, victim.pid) == 1, 20), "the uprobe is served in the victim (one hook)",
          srv.log_text()[-2000:])
    now, file_byte = connect_byte(victim.pid)
    check(now not in (0xcc, file_byte), f"the kernel's int3 is replaced by the hook (0x{now or 0:02x})")
    check_eq(connects(victim, 100), ["done", "100", "failed", "0"], "100 connects while offloaded")
    stop_and_count(srv, victim, tool, [10, 100])


def stop_and_count(srv, victim, tool, before):
    """bpfgraftd stops (the uprobe handed back), 7 connects follow, and
    bpftrace must have counted each connect once: the connects before, + 7."""
    srv.proc.terminate()
    finish(srv.proc, 20)
    check_eq(connect_byte(victim.pid)[0], 0xcc, "bpfgraftd stopped: the kernel's int3 is back")
    check_eq(connects(victim, 7), ["done", "7", "failed", "0"], "7 connects after the hand-back")
    interrupt_bpftrace(tool)
    out, err = finish(tool, 30)
    parts = " + ".join(str(n) for n in before + [7])
    check(f"@n: {sum(before) + 7}" in out, f"bpftrace counted every connect once ({parts})", out + err)


def offload_progs(srv):
    """Ids of the server's programs: only the offload's in these tests."""
    rc, progs, _ = srv.cli_json("prog", "list")
    return sorted(p["id"] for p in progs or [])


def check_restart(srv, victim):
    """A kill -9 of bpfgraftd while offloaded: the copy in the victim counts
    on alone, the next bpfgraftd serves it on under the same program ids,
    and its stop hands the uprobe back: every connect counted once."""
    tool = bpftrace(victim, "@n++;")
    check_eq(connects(victim, 10), ["done", "10", "failed", "0"], "10 connects under the kernel's uprobe")
    check(wait_for(lambda: hooks_of(srv, victim.pid) == 1, 20), "the uprobe is served in the victim",
          srv.log_text()[-2000:])
    ids = offload_progs(srv)
    check_eq(connects(victim, 100), ["done", "100", "failed", "0"], "100 connects while offloaded")
    srv.proc.kill()
    srv.proc.wait()
    now, file_byte = connect_byte(victim.pid)
    check(now not in (0xcc, file_byte), f"bpfgraftd killed (-9): the hook stays in the victim (0x{now or 0:02x})")
    check_eq(connects(victim, 20), ["done", "20", "failed", "0"], "20 connects while no bpfgraftd runs")
    srv.start_again()
    check(wait_for(lambda: offload_progs(srv) == ids and "served on" in srv.log_text(), 20),
          f"the next bpfgraftd serves the copy on under its program ids {ids}", srv.log_text()[-2000:])
    check_eq(hooks_of(srv, victim.pid), 1, "still one hook in the victim")
    check_eq(connects(victim, 30), ["done", "30", "failed", "0"], "30 connects after the restart")
    stop_and_count(srv, victim, tool, [10, 100, 20, 30])


def check_stays(srv, victim):
    tool = bpftrace(victim, 'printf("c\\n");')
    check(wait_for(lambda: "stays in the kernel" in srv.log_text(), 20), "a perf-buffer program stays in the kernel",
          srv.log_text()[-2000:])
    check_eq(hooks_of(srv, victim.pid), 0, "nothing was hooked in the victim for it")
    check_eq(connects(victim, 20), ["done", "20", "failed", "0"], "20 connects")
    time.sleep(0.5)
    interrupt_bpftrace(tool)
    out, err = finish(tool, 30)
    check_eq(out.count("c\n"), 20, "bpftrace printed a line for each connect")


def with_victim(args, srv_args, body):
    ls = tcp_listener()
    victim = subprocess.Popen([os.path.join(args.bin_dir, "connlat-victim"), str(ls.getsockname()[1])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        check_eq(victim.stdout.readline().strip(), "ready", "the victim is ready")
        with Server(args, srv_args) as srv:
            rc, _, err = srv.cli("attach", victim.pid)
            check_eq(rc, 0, f"bpfgraft manages the victim ({err.strip()})")
            body(srv, victim)
        check(victim.poll() is None, "the victim is unharmed")
    finally:
        victim.kill()
        victim.wait()
        ls.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    args = ap.parse_args()
    require("root", "bpf-tracing")
    if not shutil.which("bpftrace"):
        skip("bpftrace is not installed")
        return report()
    with_victim(args, ["--offload-kernel-uprobes"], lambda srv, v: check_counted(srv, v))
    with_victim(args, ["--offload-kernel-uprobes"], lambda srv, v: check_stays(srv, v))
    with_victim(args, ["--offload-kernel-uprobes"], lambda srv, v: check_restart(srv, v))
    return report()


if __name__ == "__main__":
    sys.exit(main())
