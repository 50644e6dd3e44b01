"""Syscall hooks end to end against a real bpfgraftd: opensnoop sees a
victim's opens with paths and results, syscount counts exactly, threads
created after the attach are hooked, detach restores the process, and a
stress victim (file I/O, threads, fork, exec, signals, sleeps) behaves the
same hooked and unhooked with syscall counts that match `strace -c -f`.

The fast path: after a warm-up the hot getppid() site in libc is
rewritten (a jmp to a stub reaching the payload without a signal),
target.list counts it, the counts stay exact through it, and detach puts
the original code back (/proc/PID/mem equals the file again).

--only denyopen runs the bpf_override_return check alone."""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, check_eq, report, text_matches_file, wait_until  # noqa: E402

NR = {}
with open("/usr/include/x86_64-linux-gnu/asm/unistd_64.h") as f:
    for line in f:
        m = re.match(r"#define __NR_(\w+)\s+(\d+)", line)
        if m:
            NR[m.group(1)] = int(m.group(2))

# Syscalls of the stress victim's rounds made only by the process itself
# (not by the dynamic loader, nor by its fork/exec children, which run
# unhooked): their counts must match strace's exactly.
STRESS_SYSCALLS = ["getppid", "clone", "clone3", "fsync", "pwrite64", "ftruncate", "unlink", "kill",
                   "rt_sigreturn", "clock_nanosleep", "wait4"]


def counts(srv, name):
    rc, doc, _ = srv.cli_json("map", "dump", name)
    return {e["formatted"]["key"]: e["formatted"]["value"] for e in (doc or {}).get("entries", [])}


def sigsys_caught(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigCgt:"):
                return bool(int(line.split()[1], 16) & (1 << (signal.SIGSYS - 1)))
    return False


class Victim:
    """sys_victim with its output collected in a file."""

    def __init__(self, binary, paths, tmp):
        self.out_path = os.path.join(tmp, f"victim-{time.monotonic_ns()}.out")
        self.out = open(self.out_path, "w")
        self.p = subprocess.Popen([binary] + paths, stdout=self.out, stderr=subprocess.STDOUT)
        self.pid = self.p.pid
        self.wait_for("ready")

    def text(self):
        with open(self.out_path) as f:
            return f.read()

    def wait_for(self, what, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if what in self.text():
                return True
            time.sleep(0.02)
        return False

    def close(self):
        self.p.kill()
        self.p.wait()
        self.out.close()


def test_denyopen(srv, args, tmp):
    victim_bin = os.path.join(args.test_bin, "sys-victim")
    rc, _, err = srv.cli("load", os.path.join(args.bpf_dir, "denyopen.bpf.o"))
    if not check_eq(rc, 0, f"load the denyopen sample ({err.strip()})"):
        return
    denied = "/etc/bpfgraft-denied"   # the sample's default path
    allowed = os.path.join(tmp, "allowed")
    open(allowed, "w").close()
    created = not os.path.exists(denied)
    if created:
        open(denied, "w").close()
    v = Victim(victim_bin, [denied, allowed], tmp)
    try:
        check(v.wait_for(f"main {denied} 0 0"), "denyopen: the victim opens the path before the attach")
        rc, _, err = srv.cli("attach", v.pid, "denyopen")
        check_eq(rc, 0, f"denyopen: attach ({err.strip()})")
        mark = len(v.text())
        time.sleep(0.5)
        # an open every 20 ms: a loaded machine makes fewer in 0.5 s
        wait_until(lambda: f"main {denied} -1 13" in v.text()[mark:] and f"main {allowed} 0 0" in v.text()[mark:])
        after = v.text()[mark:]
        check(f"main {denied} -1 13" in after, "denyopen: opening the denied path fails with EACCES", after[-300:])
        check(f"main {allowed} 0 0" in after and f"main {denied} 0 0" not in after,
              "denyopen: other paths still open, the denied one never does", after[-300:])
        srv.cli("detach", v.pid)
        mark = len(v.text())
        time.sleep(0.3)
        wait_until(lambda: f"main {denied} 0 0" in v.text()[mark:])
        check(f"main {denied} 0 0" in v.text()[mark:], "denyopen: after detach the path opens again")
    finally:
        v.close()
        if created:
            os.unlink(denied)


def test_hooks(srv, args, tmp):
    victim_bin = os.path.join(args.test_bin, "sys-victim")
    samples = os.path.join(args.source_dir, "samples")
    for name in ("opensnoop", "syscount"):
        rc, _, err = srv.cli("load", os.path.join(args.bpf_dir, f"{name}.bpf.o"))
        check_eq(rc, 0, f"load the {name} sample ({err.strip()})")
    present = os.path.join(tmp, "present")
    missing = os.path.join(tmp, "missing")
    open(present, "w").close()
    v = Victim(victim_bin, [present, missing], tmp)
    try:
        rc, _, err = srv.cli("attach", v.pid, "opensnoop")
        check_eq(rc, 0, f"opensnoop: attach ({err.strip()})")
        r = subprocess.run([sys.executable, os.path.join(samples, "opensnoop", "opensnoop.py"), "--socket", srv.socket,
                            "--count", "6", "--pid", str(v.pid)], capture_output=True, text=True, timeout=30)
        print(r.stdout)
        rows = [l.split() for l in r.stdout.splitlines()[1:]]
        check(r.stdout.startswith("PID") and "PATH" in r.stdout.splitlines()[0], "opensnoop: bcc-style header")
        ok = [x for x in rows if len(x) == 5 and x[4] == present and int(x[2]) >= 0 and x[3] == "0"]
        bad = [x for x in rows if len(x) == 5 and x[4] == missing and x[2] == "-1" and x[3] == "2"]
        check(len(ok) >= 2 and len(bad) >= 2,
              "opensnoop: successful opens with their fd, failed ones with ENOENT, with paths", r.stdout)
        check(all(x[0] == str(v.pid) and x[1] == "sys-victim" for x in rows), "opensnoop: pid and comm of the victim")

        rc, _, err = srv.cli("attach", v.pid, "syscount")
        check_eq(rc, 0, f"syscount: attach raw_syscalls/sys_enter too ({err.strip()})")
        before = counts(srv, "counts")
        v.p.send_signal(signal.SIGUSR2)
        check(v.wait_for("burst 1000"), "syscount: the victim made its burst")
        time.sleep(0.1)
        after = counts(srv, "counts")
        check_eq(after.get(NR["getppid"], 0) - before.get(NR["getppid"], 0), 1000,
                 "syscount: exactly the 1000 getppid() of the burst")
        # A signal that lands while the thread runs a program (a loaded
        # machine can preempt it there) makes its handler's rt_sigreturn a
        # recursion miss, as under the kernel: give it three signals.
        for _ in range(2):
            if after.get(NR["rt_sigreturn"], 0) > before.get(NR["rt_sigreturn"], 0):
                break
            bursts = v.text().count("burst 1000")
            v.p.send_signal(signal.SIGUSR2)
            deadline = time.monotonic() + 10
            while v.text().count("burst 1000") == bursts and time.monotonic() < deadline:
                time.sleep(0.02)
            time.sleep(0.1)
            after = counts(srv, "counts")
        check(after.get(NR["rt_sigreturn"], 0) > before.get(NR["rt_sigreturn"], 0),
              "syscount: the signal handler's rt_sigreturn is seen (and works)")
        r = subprocess.run([sys.executable, os.path.join(samples, "syscount", "syscount.py"), "--socket", srv.socket],
                           capture_output=True, text=True, timeout=30)
        print(r.stdout)
        check("getppid" in r.stdout and "openat" in r.stdout, "syscount: printed with syscall names")

        # a thread created after the attach is hooked from its first syscall:
        # over a second, the map counts every open the victim printed, the
        # new thread's included. Each count is read between two reads of the
        # output; each thread may hold one open it made and has not printed.
        v.p.send_signal(signal.SIGUSR1)
        check(v.wait_for(f"thread {present} 0 0"), "threads: a new thread runs")
        w1 = [opens_printed(v), counts(srv, "counts").get(NR["openat"], 0), opens_printed(v)]
        time.sleep(1.0)
        w2 = [opens_printed(v), counts(srv, "counts").get(NR["openat"], 0), opens_printed(v)]
        got, least, most = w2[1] - w1[1], sum(w2[0].values()) - sum(w1[2].values()) - 2, \
            sum(w2[2].values()) - sum(w1[0].values()) + 2
        check(w2[0]["thread"] > w1[2]["thread"] and least <= got <= most,
              f"threads: the new thread's opens are counted ({got} counted, {least}-{most} printed)")
        check(counts(srv, "counts").get(NR["clone3"], 0) >= 1, "threads: its clone3 was seen")

        # detach
        check(sigsys_caught(v.pid), "detach: SIGSYS is caught while attached")
        rc, _, err = srv.cli("detach", v.pid)
        check_eq(rc, 0, f"detach ({err.strip()})")
        c1 = counts(srv, "counts")
        mark = len(v.text())
        time.sleep(0.5)
        wait_until(lambda: f"main {present} 0 0" in v.text()[mark:])  # it opens on (slower on a loaded machine)
        c2 = counts(srv, "counts")
        check(c1 == c2 and len(c1) > 0, "detach: the counts stop")
        check(f"main {present} 0 0" in v.text()[mark:] and v.p.poll() is None, "detach: the victim runs on")
        check(not sigsys_caught(v.pid), "detach: the SIGSYS action is the victim's own again")
        v.p.send_signal(signal.SIGUSR1)
        time.sleep(0.3)
        check(v.p.poll() is None, "detach: signals and new threads still work")
    finally:
        v.close()


GETPPID_SITE = bytes([0xb8, NR["getppid"], 0, 0, 0, 0x0f, 0x05])   # mov $nr,%eax; syscall


def libc_site(pid):
    """(address, file bytes) of libc's getppid() syscall site in pid, found
    in the file and mapped through /proc/PID/maps; None if not unique."""
    with open(f"/proc/{pid}/maps") as f:
        maps = [l.split() for l in f.read().splitlines()]
    libc = [m for m in maps if len(m) >= 6 and os.path.basename(m[5]).startswith("libc.so")]
    if not libc:
        return None
    with open(libc[0][5], "rb") as f:
        data = f.read()
    off = data.find(GETPPID_SITE)
    if off < 0 or data.find(GETPPID_SITE, off + 1) >= 0:
        return None
    for m in libc:
        lo, hi = (int(x, 16) for x in m[0].split("-"))
        moff = int(m[2], 16)
        if "x" in m[1] and moff <= off < moff + (hi - lo):
            return lo + off - moff, libc[0][5], moff, lo, hi
    return None


def opens_printed(v):
    """The opens the victim has printed so far, by its main loop and threads."""
    lines = v.text().splitlines()
    return {who: sum(1 for l in lines if l.startswith(who + " ")) for who in ("main", "thread")}


def read_mem(pid, addr, n):
    with open(f"/proc/{pid}/mem", "rb") as mem:
        mem.seek(addr)
        return mem.read(n)


def syscall_sites(srv, pid):
    with srv.client() as cl:
        for t in cl.call("target.list"):
            if t.get("pid") == pid:
                return t.get("syscall_sites")
    return None


def wait_after(v, mark, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if what in v.text()[mark:]:
            return True
        time.sleep(0.02)
    return False


def test_fastpath(srv, args, tmp):
    victim_bin = os.path.join(args.test_bin, "sys-victim")
    if srv.cli("map", "show", "counts")[0] != 0:   # test_hooks may have loaded it
        rc, _, err = srv.cli("load", os.path.join(args.bpf_dir, "syscount.bpf.o"))
        check_eq(rc, 0, f"fastpath: load syscount ({err.strip()})")
    present = os.path.join(tmp, "present")
    open(present, "w").close()
    v = Victim(victim_bin, [present, os.path.join(tmp, "missing")], tmp)
    try:
        site = libc_site(v.pid)
        if not check(site is not None, "fastpath: libc has one `mov $110,%eax; syscall` (getppid) site"):
            return
        addr, path = site[:2]
        check_eq(read_mem(v.pid, addr, 7), GETPPID_SITE, "fastpath: the site is unpatched before the attach")
        rc, _, err = srv.cli("attach", v.pid, "syscount")
        check_eq(rc, 0, f"fastpath: attach syscount ({err.strip()})")
        # warm-up: the first getppid() goes through SIGSYS, which reports the site
        v.p.send_signal(signal.SIGUSR2)
        check(v.wait_for("burst 1000"), "fastpath: warm-up burst")
        deadline = time.monotonic() + 20   # reported by the SIGSYS, rewritten by the server after it
        while time.monotonic() < deadline and read_mem(v.pid, addr, 1) != b"\xe9":
            time.sleep(0.05)
        code = read_mem(v.pid, addr, 7)
        check(code[0] == 0xe9 and code[5:] == GETPPID_SITE[5:],
              "fastpath: the getppid site is rewritten to a jmp (the syscall bytes after it stay)", code.hex())
        n = syscall_sites(srv, v.pid)
        check(isinstance(n, int) and n >= 1, "fastpath: target.list reports rewritten syscall_sites", repr(n))
        for burst in (2, 3):
            before = counts(srv, "counts")
            mark = len(v.text())
            v.p.send_signal(signal.SIGUSR2)
            check(wait_after(v, mark, "burst 1000"), f"fastpath: burst {burst} done")
            time.sleep(0.2)
            after = counts(srv, "counts")
            check_eq(after.get(NR["getppid"], 0) - before.get(NR["getppid"], 0), 1000,
                     f"fastpath: burst {burst} through the rewritten site counts exactly 1000 getppid()")
        check(f"main {present} 0 0" in v.text() and v.p.poll() is None, "fastpath: the victim runs on")
        rc, _, err = srv.cli("detach", v.pid)
        check_eq(rc, 0, f"fastpath: detach ({err.strip()})")
        check_eq(read_mem(v.pid, addr, 7), GETPPID_SITE, "fastpath: detach restores the site")
        check(path not in text_matches_file(v.pid), "fastpath: libc's text equals the file after detach")
        mark = len(v.text())
        v.p.send_signal(signal.SIGUSR2)
        check(wait_after(v, mark, "burst 1000") and v.p.poll() is None, "fastpath: getppid() works after detach")
    finally:
        v.close()


def run_stress(cmd, timeout):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def test_stress(srv, args, tmp):
    stress = os.path.join(args.test_bin, "stress-victim")
    secs = str(args.stress_seconds)
    rc, plain, err = run_stress([stress, secs, tmp], args.stress_seconds * 3 + 30)
    check_eq(rc, 0, f"stress: unhooked run ({err.strip()[-200:]})")
    check(f"done {args.stress_seconds * 10} rounds" in plain, "stress: unhooked run completes")

    rc, doc, _ = srv.cli_json("object", "list")
    if "syscount" not in repr(doc):
        rc, _, err = srv.cli("load", os.path.join(args.bpf_dir, "syscount.bpf.o"))
        check_eq(rc, 0, f"stress: load syscount ({err.strip()})")
    before = counts(srv, "counts")
    rc, hooked, err = run_stress([srv.cli_bin, "--socket", srv.socket, "start", "syscount", "--", stress, secs, tmp],
                                 args.stress_seconds * 3 + 60)
    check_eq(rc, 0, f"stress: hooked run under `bpfgraft start` ({err.strip()[-300:]})")
    check_eq(hooked, plain, "stress: hooked output identical to the unhooked one")
    after = counts(srv, "counts")
    got = {k: v - before.get(k, 0) for k, v in after.items()}

    st = os.path.join(tmp, "strace.txt")
    rc, _, err = run_stress(["strace", "-c", "-f", "-o", st, stress, secs, tmp], args.stress_seconds * 5 + 60)
    check_eq(rc, 0, f"stress: run under strace -c -f ({err.strip()[-200:]})")
    want = {}
    with open(st) as f:
        for line in f:
            p = line.split()
            if len(p) >= 5 and p[-1] in NR and p[3].isdigit():
                want[p[-1]] = int(p[3])
    bad = []
    for name in STRESS_SYSCALLS:
        w, g = want.get(name, 0), got.get(NR[name], 0)
        print(f"       {name:<16} strace {w:>6}  bpfgraft {g:>6}")
        if w != g:
            bad.append(f"{name}: strace {w}, bpfgraft {g}")
    check(not bad and want.get("getppid", 0) > 0, "stress: per-syscall counts match strace -c -f", "; ".join(bad))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--test-bin", required=True)
    ap.add_argument("--bpf-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--stress-seconds", type=int, default=10)
    ap.add_argument("--only", choices=["hooks", "stress", "denyopen", "fastpath"])
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(args.source_dir, "scripts"))
    tmp = tempfile.mkdtemp(prefix="bpfgraft-sys-")
    try:
        with Server(args) as srv:
            if args.only in (None, "hooks"):
                test_hooks(srv, args, tmp)
            if args.only in (None, "stress"):
                test_stress(srv, args, tmp)
            if args.only == "denyopen":
                test_denyopen(srv, args, tmp)
            if args.only in (None, "hooks", "fastpath"):
                test_fastpath(srv, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(report())


if __name__ == "__main__":
    main()
