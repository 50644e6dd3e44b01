"""USDT and attach cookies (issue 14), against usdt-victim (probes usdtv:tick
with a semaphore it checks, usdtv:tock, plain functions probe_a/probe_b):
- cookies: one uprobe program attached at probe_a with cookies 7 and 11
  and at probe_b with cookie 9 counts each attachment under its own
  cookie, exactly, on every engine (the same cookie twice: exists);
- libbpf under `bpfgraft run`: usdt-tool attaches tick and tock with
  bpf_program__attach_usdt; every hit and argument value is exact, the
  tick semaphore is 1 in the victim while attached and 0 after, and the
  victim fires no tick while it is 0;
- native: SEC("usdt") through target.attach on every engine, exact;
- bpftrace's usdt: probes under the kernel and under `bpfgraft run` print
  the same exact counts, sums and keyed maps."""
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import (Server, check, check_eq, interrupt_bpftrace, needs, parse_probe_args, report,  # noqa: E402
                     start_bpftrace, wait_bpftrace_attached)

N = 500
MASK = (1 << 64) - 1


class Victim:
    def __init__(self, test_bin):
        self.path = os.path.abspath(os.path.join(test_bin, "usdt-victim"))
        self.p = subprocess.Popen([self.path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        check_eq(self.p.stdout.readline().strip(), "ready", "usdt-victim is ready")
        self.pid = self.p.pid

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def run(self, n):
        """The ticks the victim fired (its semaphore said yes)."""
        return int(self.ask(f"run {n}").split()[1])

    def sem(self):
        return int(self.ask("sem").split()[1])

    def close(self):
        self.p.kill()
        self.p.wait()


def wait_gone(cl, pid):
    deadline = time.monotonic() + 20
    while any(t["pid"] == pid for t in cl.call("target.list")) and time.monotonic() < deadline:
        time.sleep(0.05)


def unload(cl, name):
    for o in cl.call("object.list"):
        if o["name"] == name:
            cl.call("object.unload", id=o["id"])


def want_results(n, usdt_cookie=0):
    """results[] of usdt.bpf.c after n ticks and n tocks."""
    return [n, n * (n - 1) // 2, 3 * n * (n - 1) // 2, (n + 1) // 2, n, sum(x + 1000 for x in range(n)),
            (-5 * n) & MASK, 0, n * usdt_cookie]


def cookies(srv, cl, args, engine):
    cl.call("object.load", path=os.path.abspath(args.obj), name="cookies")
    v = Victim(args.test_bin)
    try:
        cl.call("target.attach", pid=v.pid, object="cookies", programs=["count_cookie"], target=":probe_a",
                engine=engine, cookie=7)
        rc, _, err = srv.cli("attach", v.pid, "cookies", "count_cookie", "--target", ":probe_b", "--engine", engine,
                             "--cookie", str((1 << 63) | 9))
        check_eq((rc, err), (0, ""), f"{engine}: bpfgraft attach --cookie")
        rc, _, err = srv.cli("attach", v.pid, "cookies", "count_cookie", "--target", ":probe_a", "--engine", engine,
                             "--cookie", "11")
        check_eq((rc, err), (0, ""), f"{engine}: the same program at probe_a again, with another cookie")
        rc, _, err = srv.cli("attach", v.pid, "cookies", "count_cookie", "--target", ":probe_a", "--cookie", "7")
        check(rc != 0 and "(exists)" in err, f"{engine}: and again with the same cookie: refused (exists)", err)
        hooks = [h for t in cl.call("target.list") if t["pid"] == v.pid for h in t["hooks"]]
        check_eq(sorted(h["cookie"] for h in hooks), [7, 11, (1 << 63) | 9],
                 f"{engine}: target.list shows the three cookies")
        v.run(N)
        got = [struct.unpack("<Q", cl.call("map.lookup", map="by_cookie", key=struct.pack("<I", k))["value"])[0]
               for k in range(16)]
        want = [0] * 16
        want[7], want[9], want[11] = N, 2 * N, N
        check_eq(got, want, f"{engine}: one program at two sites, twice at one, counts under each attachment's cookie")
    finally:
        v.close()
    wait_gone(cl, v.pid)
    unload(cl, "cookies")


class Tool:
    """usdt-tool on the victim, under the kernel (runner None) or bpfgraft."""

    def __init__(self, args, v, runner=None):
        argv = [os.path.join(args.test_bin, "usdt-tool"), os.path.abspath(args.obj), str(v.pid), v.path]
        self.p = subprocess.Popen((runner or []) + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.ready = self.p.stdout.readline().strip() == "attached"

    def ask(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def results(self):
        words = self.ask("dump").split()
        return [int(w) for w in words[1:]] if words[:1] == ["results"] else words

    def close(self):
        try:
            out, err = self.p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            out, err = self.p.communicate()
        return self.p.returncode, err


def libbpf_usdt(args, v, what, runner=None):
    """usdt-tool's round on victim v: semaphore and exact results."""
    check_eq((v.sem(), v.run(N)), (0, 0), f"{what}: no tick fires before the tool (semaphore 0)")
    tool = Tool(args, v, runner)
    if not check(tool.ready, f"{what}: usdt-tool attached tick and tock"):
        print(tool.close())
        return
    check_eq(v.sem(), 1, f"{what}: the tick semaphore is 1 in the victim while attached")
    check_eq(v.run(N), N, f"{what}: the victim fired every tick")
    check_eq(tool.results(), want_results(N), f"{what}: hits and argument values are exact")
    check_eq(tool.ask("detach"), "detached", f"{what}: the tool detached")
    check_eq(v.sem(), 0, f"{what}: the semaphore is 0 again after detach")
    check_eq(v.run(N), 0, f"{what}: no tick after detach")
    check_eq(tool.results(), want_results(N), f"{what}: nothing counted after detach")
    rc, err = tool.close()
    check_eq(rc, 0, f"{what}: usdt-tool exits 0", )
    if rc:
        print(err)


def tool_mode(srv, args):
    v = Victim(args.test_bin)
    try:
        if not needs("root", "bpf-tracing"):
            libbpf_usdt(args, v, "kernel")
        rc, _, err = srv.cli("attach", v.pid)
        check_eq((rc, err), (0, ""), "the victim joins bpfgraft")
        runner = [srv.cli_bin, "--socket", srv.socket, "run", "--"]
        libbpf_usdt(args, v, "bpfgraft run", runner)
        check_eq(v.sem(), 0, "the semaphore stays 0 after the tool ended")
        tool = Tool(args, v, runner)
        check(tool.ready and v.sem() == 1, "bpfgraft run: a second tool attaches, semaphore 1")
        check_eq(tool.close()[0], 0, "bpfgraft run: the tool ends without detaching")
        check_eq(v.sem(), 0, "bpfgraft run: its end put the semaphore back to 0")
    finally:
        v.close()


def native(srv, cl, args, engine):
    """SEC("usdt") through target.attach: the server reads the notes."""
    cl.call("object.load", path=os.path.abspath(args.obj), name="native")
    v = Victim(args.test_bin)
    try:
        check_eq((v.sem(), v.run(N)), (0, 0), f"native {engine}: no tick before the attach")
        cl.call("target.attach", pid=v.pid, object="native", programs=["tick"], target=f"{v.path}:usdtv:tick",
                engine=engine, cookie=5)
        rc, _, err = srv.cli("attach", v.pid, "native", "tock", "--target", f"{v.path}:usdtv:tock", "--engine", engine)
        check_eq((rc, err), (0, ""), f"native {engine}: bpfgraft attach of a usdt program")
        check_eq(v.sem(), 1, f"native {engine}: the tick semaphore is 1 while attached")
        check_eq(v.run(N), N, f"native {engine}: the victim fired every tick")
        got = [struct.unpack("<Q", cl.call("map.lookup", map="results", key=struct.pack("<I", k))["value"])[0]
               for k in range(9)]
        check_eq(got, want_results(N, 5), f"native {engine}: hits, argument values and bpf_usdt_cookie are exact")
        cl.call("target.detach", pid=v.pid)
        check_eq((v.sem(), v.run(N)), (0, 0), f"native {engine}: semaphore 0 and no tick after detach")
    finally:
        v.close()
    wait_gone(cl, v.pid)
    unload(cl, "native")


def bpftrace_usdt(srv, args, v, runner):
    """bpftrace's usdt: probes (under runner, or the kernel) during one
    round of the victim: {map line: value}, the victim's ticks."""
    script = (f"usdt:{v.path}:usdtv:tick {{ @ticks = count(); @x = sum(arg0); @name[str(arg2)] = count(); }} "
              f"usdt:{v.path}:usdtv:tock {{ @tocks = count(); @v = sum(arg0); @c[arg1] = count(); }}")
    tool = start_bpftrace(runner + ["bpftrace", "-p", str(v.pid), "-e", script])
    attached, early_err = wait_bpftrace_attached(tool, 60)
    deadline = time.monotonic() + 30
    while attached and time.monotonic() < deadline and tool.poll() is None and v.sem() != 1:
        time.sleep(0.1)   # under bpfgraft, the semaphore is set as the site is placed
    ticks = v.run(N) if attached and v.sem() == 1 else None
    interrupt_bpftrace(tool)
    try:
        out, err = tool.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(tool.pid, signal.SIGKILL)
        out, err = tool.communicate()
        err += "\n(test: bpftrace did not end within 30 s of SIGINTs sent while it polled; killed)"
    err = early_err + err + f"\n(test: every probe attached: {attached})"
    maps = dict(m.groups() for m in re.finditer(r"^(@[\w\[\]-]+): (-?\d+)$", out, re.M))
    return maps, ticks, err


def bpftrace(srv, args):
    if needs("root", "bpf-tracing") or not shutil.which("bpftrace"):
        check(False, "bpftrace and kernel tracing are available")
        return
    want = {"@ticks": str(N), "@x": str(N * (N - 1) // 2), "@name[alpha]": str((N + 1) // 2),
            "@name[beta]": str(N // 2), "@tocks": str(N), "@v": str(sum(x + 1000 for x in range(N))),
            "@c[-5]": str(N)}
    got = {}
    for side in ("kernel", "bpfgraft run"):
        v = Victim(args.test_bin)
        try:
            if side == "kernel":
                got[side] = bpftrace_usdt(srv, args, v, [])
            else:
                srv.cli("attach", v.pid)
                got[side] = bpftrace_usdt(srv, args, v, [srv.cli_bin, "--socket", srv.socket, "run", "--"])
            maps, ticks, err = got[side]
            check_eq(ticks, N, f"bpftrace {side}: the victim fired every tick while bpftrace ran")
            check(maps == want, f"bpftrace {side}: usdt counts, sums and keyed maps are exact",
                  f"got {maps!r}, want {want!r}; stderr: {err[-600:]}")
            check_eq(v.sem(), 0, f"bpftrace {side}: the semaphore is 0 after bpftrace ended")
        finally:
            v.close()
    check_eq(got["bpfgraft run"][0], got["kernel"][0], "bpftrace: bpfgraft's maps equal the kernel's")


def bpftrace_child(srv, args):
    """bpftrace -c CMD with usdt probes: bpftrace stops its child at the end
    of its execve, attaches, then lets it go; the kernel's probes are in
    place before its first instruction, and so are bpfgraft's (the child
    is parked there until bpftrace lets go): every hit from its start is
    counted, at adjacent sites too, and the child runs to its end."""
    if needs("root", "bpf-tracing") or not shutil.which("bpftrace"):
        check(False, "bpftrace and kernel tracing are available")
        return
    path = os.path.join(args.test_bin, "usdt-victim")
    script = (f"usdt:{path}:usdtv:first {{ @first = count(); @a = sum(arg0); }} "
              f"usdt:{path}:usdtv:second {{ @second = count(); @b = sum(arg0); }}")
    want = {"@first": "3", "@a": "3", "@second": "3", "@b": "6"}
    for side, runner in (("kernel", []), ("bpfgraft run", [srv.cli_bin, "--socket", srv.socket, "run", "--"])):
        r = subprocess.run(runner + ["bpftrace", "-e", script, "-c", f"{path} --start"], capture_output=True,
                           text=True, timeout=120)
        maps = dict(m.groups() for m in re.finditer(r"^(@\w+): (-?\d+)$", r.stdout, re.M))
        check(maps == want, f"bpftrace -c {side}: the child's usdt hits from its start are all counted",
              f"got {maps!r}, want {want!r}; stderr: {r.stderr[-600:]}")
        check("started" in r.stdout.split(), f"bpftrace -c {side}: the child ran to its end", r.stdout[-300:])
    cl, deadline = srv.client(), time.monotonic() + 10
    while cl.call("target.list") and time.monotonic() < deadline:
        time.sleep(0.1)   # the tool's own target goes once its payload connection closes
    check_eq(cl.call("target.list"), [], "bpftrace -c: no target is left after bpftrace ended")


def bpftrace_list(srv, args):
    """bpftrace -l lists a binary's uprobes and usdt probes under bpfgraft
    run as under the kernel (it reads the ELF file and tracefs itself)."""
    if needs("root", "bpf-tracing") or not shutil.which("bpftrace"):
        check(False, "bpftrace and kernel tracing are available")
        return
    path = os.path.join(args.test_bin, "usdt-victim")
    for kind, want in (("usdt", [f"usdt:{path}:usdtv:{n}" for n in ("tick", "tock", "first", "second")]),
                       ("uprobe", [f"uprobe:{path}:{n}" for n in ("probe_a", "probe_b", "main")])):
        got = {}
        for side, runner in (("kernel", []), ("bpfgraft run", [srv.cli_bin, "--socket", srv.socket, "run", "--"])):
            r = subprocess.run(runner + ["bpftrace", "-l", f"{kind}:{path}:*"], capture_output=True, text=True,
                               timeout=120)
            got[side] = sorted(r.stdout.split())
            check(all(w in got[side] for w in want), f"bpftrace -l {kind} {side}: lists the victim's probes",
                  f"got {got[side]!r}; stderr: {r.stderr[-300:]}")
        check_eq(got["bpfgraft run"], got["kernel"], f"bpftrace -l {kind}: bpfgraft run lists what the kernel does")


def main():
    args = parse_probe_args("--test-bin")
    with Server(args) as srv:
        cl = srv.client()
        for engine in ("interp", "x86", "llvm"):
            cookies(srv, cl, args, engine)
            native(srv, cl, args, engine)
        tool_mode(srv, args)
        bpftrace(srv, args)
        bpftrace_child(srv, args)
        bpftrace_list(srv, args)
        check(srv.alive(), "the server survived")


if __name__ == "__main__":
    main()
    raise SystemExit(report())
