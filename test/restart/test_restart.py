#!/usr/bin/env python3
"""bpfgraftd restarts (issue 13; server/README.md "Restarts").

  crash    SIGKILL while programs run: the targets keep counting, a new
           server re-adopts them (ps, map dump with every increment made
           meanwhile), attaches again to the same functions, detaches
           leaving the text equal to the files and no payload mapping
  loop     --kills SIGKILLs in a row at random moments (during attach,
           detach, load, map updates, idle) while several targets run
           uprobes, uretprobes and syscall hooks; after each restart every
           target is alive and listed and counters are exact
  graceful SIGTERM + start, and `bpfgraft shutdown`: zero lost increments;
           `shutdown --detach` detaches everything
  takeover bpfgraftd --takeover three times while targets count and a
           client connects every 20 ms: always served, counters exact
  stress   --kills / 2 SIGKILLs at random instants of attaching and detaching
           a 4-thread process calling the probed function in a tight loop
           (payload, stubs, patches, Syscall User Dispatch): it never dies
  syscalls syscall programs: counted exactly across kill -9 + restart (also
           while no server runs), re-armed after the payload went inert (twice)
  abi      a payload of another ABI (simulated): listed as other-abi-N, attach
           refused, detach restores its code
  patching SIGKILL at every write of the int3-first code patch (a jmp
           crossing a page, attach and detach) under 4 calling threads:
           the target lives, the patch is finished, counts exact, detach
           restores the file's bytes
  failed   a payload whose first connection failed stays mapped; the next
           attach removes it and maps the only payload
  timers   a `bpfgraft run` tool's timer (bpftrace interval:) ticks on
           while no server runs (kill -9, restart)
  tickets  maps a `bpfgraft run` tool lays out in its map tickets: listed by
           the id the tool sees, kept across kill -9, files gone at its end;
           a burst of 40 creates in a row, each in a sized ticket and working
  toolsdown three tools (maps, no programs) end while no server runs: the
           restarted server ends them after their wait and serves on
  execwatch a tool's exec watch (pid -1 uprobe on a binary) survives kill -9
           + restart: a process started after it is counted exactly
  layout   map regions of layout 3 at restart: arrays converted with their
           data, an object with a hash map refused naming both versions
  attachsteps SIGKILL of the tracer after each ptrace request and memory
           write of attaching (every step of the injection, every third of
           the server's part): the process lives and runs; detached, attached
  syssites SIGKILL after each write of rewriting syscall sites (stub, jmp)
           and of restoring them, under threads making syscalls: the
           process lives, getppid() bursts counted exactly, detach restores
  signals  SIGKILL at every 13th ptrace step of attaching syscount to a
           process receiving queued real-time signals, writing to a pipe and
           calling getppid() through dispatch: no signal, byte or call lost
  reinject a payload of an older ABI (simulated) whose record the state
           directory holds is replaced by re-injection: counts exact over
           the whole run, also with the server killed at each step of it
  reinjectgo a pure Go process's syscall hooks (every site rewritten, no
           dispatch) under a server of an older ABI are re-injected: its
           getppid() calls counted exactly over the whole run, also with
           the server killed after each step of it; detach leaves its text
  orphan   a payload whose server stays away past --orphan-grace goes inert
           (programs stop, the process runs on); a server with its record
           re-arms it (counting exactly again); a fresh server with an
           empty state directory lists it (inert) and detaches it
"""
import argparse
import mmap
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import shutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
import harness  # noqa: E402
from harness import check, check_eq, report, text_matches_file  # noqa: E402

CTL_GO, CTL_ACTIVE, CTL_CALLS, CTL_LIB, CTL_BAD = 0, 8, 16, 24, 32
HERE = os.path.dirname(os.path.abspath(__file__))


class Daemon:
    """bpfgraftd on one socket and state directory, restartable."""

    def __init__(self, a, d, extra=()):
        # no catching of every new process (harness.Server says why)
        self.a, self.dir, self.extra = a, d, list(extra) + ["--catch-new-processes=off"]
        self.socket = os.path.join(d, "control.sock")
        self.state = os.path.join(d, "state")
        self.proc = None
        self.starts = 0

    def start(self, extra=()):
        self.starts += 1
        log = open(os.path.join(self.dir, f"bpfgraftd.{self.starts}.log"), "wb")
        self.proc = subprocess.Popen(
            [os.path.join(self.a.bin_dir, "bpfgraftd"), "--socket", self.socket, "--foreground",
             "--state-dir", self.state, "--cache-dir", os.path.join(self.dir, "jit")] + self.extra + list(extra),
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=harness._die_with_parent)
        log.close()
        deadline = time.monotonic() + 30  # its start (LLVM, objects reloaded) took 15 s at load 16 on 2 cores
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bpfgraftd exited with {self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.connect(self.socket)
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("bpfgraftd did not open its socket")

    def log(self):
        with open(os.path.join(self.dir, f"bpfgraftd.{self.starts}.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def cli(self, *argv, timeout=60):
        r = subprocess.run([os.path.join(self.a.bin_dir, "bpfgraft"), "--socket", self.socket] +
                           [str(x) for x in argv], capture_output=True, text=True, timeout=timeout)
        return r.returncode, r.stdout, r.stderr

    def client(self):
        from bpfgraft_client import Client
        return Client(self.socket, timeout=60)


class Victim:
    """attach-victim-pie: threads calling probed_add and lib_probed_mul,
    counting their calls in a shared control page."""

    def __init__(self, a, d, n, threads=2, exe="attach-victim-pie"):
        self.ctl_path = os.path.join(d, f"ctl{n}")
        with open(self.ctl_path, "wb") as f:
            f.write(b"\0" * 4096)
        self.proc = subprocess.Popen([os.path.join(a.test_bin, exe), self.ctl_path, str(threads)],
                                     preexec_fn=harness._die_with_parent)
        self.pid = self.proc.pid
        f = open(self.ctl_path, "r+b")
        self.ctl = mmap.mmap(f.fileno(), 4096)
        f.close()
        # past its start (its library mapped, its threads made): an attach
        # to lib_probed_mul needs the library there
        harness.wait_threads(self.pid, threads + 1)

    def get(self, off):
        return struct.unpack_from("<q", self.ctl, off)[0]

    def go(self, on):
        struct.pack_into("<q", self.ctl, CTL_GO, 1 if on else 0)
        if not on:
            deadline = time.monotonic() + 30
            while self.get(CTL_ACTIVE) and time.monotonic() < deadline:
                time.sleep(0.001)

    def alive(self):
        return self.proc.poll() is None

    def death(self):
        """How the process ended, for a failure message."""
        rc = self.proc.poll()
        if rc is None:
            return "still runs"
        return f"died of {signal.Signals(-rc).name}" if rc < 0 else f"exited with {rc}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def read_text(path):
    """What a child wrote to path so far, read through a file description
    of our own: seeking the one the child writes through would move its
    next write (to the start, over what it printed)."""
    with open(path) as f:
        return f.read()


def payload_mappings(pid):
    with open(f"/proc/{pid}/maps") as f:
        return [l for l in f.read().splitlines() if "bpfgraft-payload" in l]


def wait_listed(d, pids, timeout=30):
    """target.list once every pid is in it (or the last answer)."""
    deadline = time.monotonic() + timeout
    got = {}
    while time.monotonic() < deadline:
        try:
            with d.client() as cl:
                got = {t["pid"]: t for t in cl.call("target.list")}
        except Exception:
            got = {}
        if all(p in got for p in pids):
            return got
        time.sleep(0.05)
    return got


def counts(d, keys=4):
    with d.client() as cl:
        return harness.counts(cl, keys)


def check_exact(d, victims, what):
    """With the workload stopped, the map equals the victims' own counts."""
    for v in victims:
        v.go(False)
    c = counts(d)
    calls = sum(v.get(CTL_CALLS) for v in victims)
    lib = sum(v.get(CTL_LIB) for v in victims)
    ok = check(c[0] == calls and c[1] == calls and c[3] == lib, f"{what}: counters exact",
               f"map {c}, victims made {calls} calls and {lib} lib calls")
    for v in victims:
        v.go(True)
    return ok


def detach_all(d, victims, what, keeps_payload=()):
    for v in victims:
        rc, out, err = d.cli("detach", v.pid)
        check_eq(rc, 0, f"{what}: detach {v.pid} ({err.strip()})")
    for v in victims:
        if not check(v.alive(), f"{what}: process {v.pid} alive after detach"):
            print(d.log()[-3000:])
            continue
        check_eq(text_matches_file(v.pid), [], f"{what}: process {v.pid}: text equals its files")
        if v.pid in keeps_payload:
            continue  # syscall hooks: the payload stays mapped by design (PROTOCOL.md, target.detach)
        deadline = time.monotonic() + 20
        while payload_mappings(v.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        check_eq(payload_mappings(v.pid), [], f"{what}: process {v.pid}: no payload mapping left")


def attach_counting(d, a, v):
    rc, _, err = d.cli("attach", v.pid, "count", "add_entry", "add_return", "--target", ":probed_add")
    check_eq(rc, 0, f"attach add_entry/add_return to {v.pid} ({err.strip()})")
    rc, _, err = d.cli("attach", v.pid, "count", "lib_entry", "--target",
                       "libattachvictim.so:lib_probed_mul")
    check_eq(rc, 0, f"attach lib_entry to {v.pid} ({err.strip()})")


def part_crash(a, d):
    d.start()
    rc, _, err = d.cli("load", a.obj)
    check_eq(rc, 0, f"load ({err.strip()})")
    victims = [Victim(a, d.dir, i) for i in range(2)]
    try:
        for v in victims:
            attach_counting(d, a, v)
            v.go(True)
        rc, _, err = d.cli("stats", "enable")
        check_eq(rc, 0, f"crash: stats enable ({err.strip()})")
        time.sleep(0.3)
        d.stop(signal.SIGKILL)
        before = sum(v.get(CTL_CALLS) for v in victims)
        check(harness.wait_until(lambda: sum(v.get(CTL_CALLS) for v in victims) > before),
              "crash: targets run on without a server")
        d.start()
        listed = wait_listed(d, [v.pid for v in victims])
        for v in victims:
            t = listed.get(v.pid)
            check(t is not None and len(t["hooks"]) == 3, f"crash: {v.pid} re-adopted with its 3 hooks",
                  f"{t}")
        check_exact(d, victims, "crash")
        rc, out, _ = d.cli("stats", "status")
        check(rc == 0 and out.strip() == "stats enabled", "crash: the restarted server keeps stats enabled", out)
        with d.client() as cl:
            runs = [cl.call("prog.show", prog="add_entry")["run_cnt"]]
            harness.wait_until(lambda: cl.call("prog.show", prog="add_entry")["run_cnt"] > runs[0], step=0.05)
            runs.append(cl.call("prog.show", prog="add_entry")["run_cnt"])
        check(runs[1] > runs[0], "crash: run_cnt grows after the restart (the payloads' switch is on)", repr(runs))
        rc, out, err = d.cli("map", "dump", "counts")
        check(rc == 0 and "key" in out, "crash: map dump works after the restart", err)
        # a new attach to the same function joins its hook
        rc, _, err = d.cli("attach", victims[0].pid, "count", "add_tid", "--target", ":probed_add")
        check_eq(rc, 0, f"crash: attach again to the same function ({err.strip()})")
        detach_all(d, victims, "crash")
    finally:
        for v in victims:
            v.kill()
        d.stop(signal.SIGTERM)


def part_graceful(a, d):
    d.start()
    d.cli("load", a.obj)
    victims = [Victim(a, d.dir, 10 + i) for i in range(2)]
    try:
        for v in victims:
            attach_counting(d, a, v)
            v.go(True)
        d.cli("stats", "enable")
        for i in range(3):
            d.stop(signal.SIGTERM)
            d.start()
            wait_listed(d, [v.pid for v in victims])
            check_exact(d, victims, f"SIGTERM + start {i + 1}")
        rc, out, _ = d.cli("stats", "status")
        check(rc == 0 and out.strip() == "stats enabled", "SIGTERM + start: stats stay enabled", out)
        rc, _, _ = d.cli("shutdown")
        check_eq(rc, 0, "bpfgraft shutdown")
        d.proc.wait(timeout=20)
        d.start()
        wait_listed(d, [v.pid for v in victims])
        check_exact(d, victims, "shutdown + start")
        rc, _, err = d.cli("shutdown", "--detach")
        check_eq(rc, 0, f"bpfgraft shutdown --detach ({err.strip()})")
        d.proc.wait(timeout=30)
        for v in victims:
            check(v.alive(), f"shutdown --detach: {v.pid} alive")
            check_eq(text_matches_file(v.pid), [], f"shutdown --detach: {v.pid} text equals its files")
            check_eq(payload_mappings(v.pid), [], f"shutdown --detach: {v.pid} has no payload mapping")
        d.start()
        with d.client() as cl:
            check_eq(cl.call("target.list"), [], "after shutdown --detach a new server has no target")
            check_eq(cl.call("server.status")["stats_enabled"], False, "... stats off (the state is forgotten)")
            check_eq(cl.call("object.list"), [], "... and no object")
    finally:
        for v in victims:
            v.kill()
        d.stop(signal.SIGTERM)


class Poller:
    """A client connecting anew every 20 ms while the daemon is replaced:
    every request must be answered, none wait more than a second."""

    def __init__(self, d):
        import threading
        self.d, self.stop, self.fails, self.worst, self.n = d, False, [], 0.0, 0
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop:
            t0 = time.monotonic()
            try:
                with self.d.client() as cl:
                    cl.call("target.list")
                self.n += 1
            except Exception as e:  # refused, reset: recorded
                self.fails.append(repr(e))
            self.worst = max(self.worst, time.monotonic() - t0)
            time.sleep(0.02)

    def finish(self):
        self.stop = True
        self.thread.join(timeout=30)


def part_takeover(a, d):
    """bpfgraftd --takeover three times while targets count: clients are
    served throughout, counters exact, the old daemon leaves everything."""
    d.start()
    rc, _, err = d.cli("load", a.obj)
    check_eq(rc, 0, f"takeover: load ({err.strip()})")
    victims = [Victim(a, d.dir, 50 + i) for i in range(2)]
    poller = None
    try:
        for v in victims:
            attach_counting(d, a, v)
            v.go(True)
        poller = Poller(d)
        for i in range(3):
            time.sleep(0.3)
            old = d.proc
            quiet = d.client()  # accepted by the old daemon; its request comes after the handover
            quiet.call("server.status")
            d.starts += 1
            log = open(os.path.join(d.dir, f"bpfgraftd.{d.starts}.log"), "wb")
            d.proc = subprocess.Popen(
                [os.path.join(a.bin_dir, "bpfgraftd"), "--socket", d.socket, "--foreground", "--state-dir", d.state,
                 "--cache-dir", os.path.join(d.dir, "jit"), "--takeover", "--catch-new-processes=off"],
                stdout=log, stderr=subprocess.STDOUT, preexec_fn=harness._die_with_parent)
            log.close()
            try:
                old.wait(timeout=15)
            except subprocess.TimeoutExpired:
                check(False, f"takeover {i + 1}: the old daemon exits")
                old.kill()
            check_eq(old.returncode, 0, f"takeover {i + 1}: the old daemon exits cleanly")
            try:
                quiet.call("server.status")
                quiet_ok = "answered"
            except Exception as e:  # reset, closed: the handover dropped it
                quiet_ok = repr(e)
            quiet.close()
            check_eq(quiet_ok, "answered", f"takeover {i + 1}: a connection the old daemon accepted is served on")
            check(d.proc.poll() is None, f"takeover {i + 1}: the new daemon runs", d.log()[-2000:])
            listed = wait_listed(d, [v.pid for v in victims])
            check(all(len(listed.get(v.pid, {}).get("hooks", [])) == 3 for v in victims),
                  f"takeover {i + 1}: every target adopted with its hooks", f"{listed}")
            ok, detail = exact(d, object_map(d, "count", "counts"), victims)
            check(ok, f"takeover {i + 1}: counters exact (no increment lost)", detail)
            check("took over from pid" in d.log(), f"takeover {i + 1}: the new daemon says it took over")
        poller.finish()
        check(poller.n > 20 and not poller.fails, "takeover: a client connecting every 20 ms is always served",
              f"{poller.n} answered, failures {poller.fails[:3]}")
        check(poller.worst < 1.0, f"takeover: no request waited a second (longest {poller.worst * 1000:.0f} ms)")
        print(f"takeover: {poller.n} requests answered, longest {poller.worst * 1000:.0f} ms")
        detach_all(d, victims, "takeover")
    finally:
        if poller:
            poller.finish()
        for v in victims:
            v.kill()
        d.stop(signal.SIGTERM)


def map_u64(d, map_id, key):
    with d.client() as cl:
        r = cl.call("map.lookup", map=map_id, key=struct.pack("<I", key))
    return struct.unpack("<Q", r["value"])[0]


def exact(d, map_id, victims):
    """(ok, detail): with the workload stopped, map map_id equals the
    victims' own counts."""
    for v in victims:
        v.go(False)
    c = [map_u64(d, map_id, k) for k in range(4)]
    calls = sum(v.get(CTL_CALLS) for v in victims)
    lib = sum(v.get(CTL_LIB) for v in victims)
    for v in victims:
        v.go(True)
    return c[0] == calls and c[1] == calls and c[3] == lib, f"map {c}, victims made {calls} calls, {lib} lib calls"


def object_map(d, obj_name, map_name):
    with d.client() as cl:
        for o in cl.call("object.list"):
            if o["name"] == obj_name:
                return next(m["id"] for m in o["maps"] if m["name"] == map_name)
    return None


class RunTool:
    """A `bpfgraft run` tool kept running across restarts: bpf_tool.py (a
    map created through the server on each "create", updated and read
    locally) or skel-opensnoop (its ring buffer printed)."""

    def __init__(self, d, argv, name, env=None):
        self.name = name
        self.out_path = os.path.join(d.dir, f"{name}.out")
        self.err_path = os.path.join(d.dir, f"{name}.err")
        self.out, self.err = open(self.out_path, "w"), open(self.err_path, "w")
        self.proc = subprocess.Popen([os.path.join(d.a.bin_dir, "bpfgraft"), "--socket", d.socket, "run", "--"] + argv,
                                     stdin=subprocess.PIPE, stdout=self.out, stderr=self.err, text=True,
                                     preexec_fn=harness._die_with_parent, env=env)
        self.seen = 0

    def lines(self):
        return read_text(self.out_path).splitlines()

    def stderr(self):
        return read_text(self.err_path)

    def ask(self, cmd, timeout=30):
        """Sends one command to bpf_tool.py; its answer line."""
        n = len(self.lines())
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.lines()
            if len(got) > n:
                return got[n]
            time.sleep(0.01)
        return None

    def pid(self, d):
        """The tool's pid (bpfgraft run's child), from tool.list."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with d.client() as cl:
                for t in cl.call("tool.list"):
                    if t["name"].startswith(f"tool:{self.name[:15]}:"):
                        return t["pid"]
            time.sleep(0.05)
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            harness.finish(self.proc, 10)
        self.out.close()
        self.err.close()


def wait_tools_running(d, pids, timeout=30):
    """tool.list once every tool pid is there and adopted (state running)."""
    deadline = time.monotonic() + timeout
    got = {}
    while time.monotonic() < deadline:
        try:
            with d.client() as cl:
                got = {t["pid"]: t.get("state") for t in cl.call("tool.list")}
        except Exception:
            got = {}
        if all(got.get(p) == "running" for p in pids):
            return got
        time.sleep(0.05)
    return got


def tool_while_down(a, d, bt, i):
    """With no server: bpf_tool's MAP_CREATE fails with ENOTCONN, its map
    works locally. Returns the failures (text)."""
    bad = []
    r = bt.ask("create")
    if r != "create ERR 107":
        bad.append(f"kill {i + 1}: create with no server answered {r!r}, not ENOTCONN")
    r = bt.ask(f"update {i + 1}")
    if r != f"update OK {i + 1}":
        bad.append(f"kill {i + 1}: a local map update with no server answered {r!r}")
    return bad


def tool_after_restart(d, bt, i):
    """Adopted again: MAP_CREATE works, the first map kept what was
    written while no server ran."""
    r = bt.ask("create")
    if r != "create OK":
        return [f"kill {i + 1}: create after the restart answered {r!r}"]
    r = bt.ask("lookup")
    return [] if r == f"lookup OK {i + 1}" else [f"kill {i + 1}: lookup after the restart answered {r!r}"]


def churn_action(d, a, kind, churn, i):
    """The request a SIGKILL interrupts (a CLI process), or None (idle)."""
    cli = [os.path.join(a.bin_dir, "bpfgraft"), "--socket", d.socket]
    if kind == "tool":  # a tool starting (tool.start) and ending
        p = subprocess.Popen(cli + ["run", "--", sys.executable, os.path.join(HERE, "bpf_tool.py")],
                             stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        p.stdin.write("create\n")
        p.stdin.close()
        return p
    argv = {"attach": ["attach", churn.pid, "churn", "add_entry", "--target", ":probed_add"],
            "detach": ["detach", churn.pid],
            "load": ["load", a.obj, "--name", f"extra{i}"],
            "update": ["map", "update", "churn_counts", "2", str(i)]}.get(kind)
    if not argv:
        return None
    return subprocess.Popen(cli + [str(x) for x in argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def part_loop(a, d):
    """SIGKILL at random moments, a.kills times in a row."""
    d.start()
    d.cli("load", a.obj)
    rc, _, err = d.cli("load", a.obj, "--name", "churn")
    check_eq(rc, 0, f"loop: load churn ({err.strip()})")
    rc, _, err = d.cli("load", a.syscount)
    check_eq(rc, 0, f"loop: load syscount ({err.strip()})")
    main_map = object_map(d, "count", "counts")
    victims = [Victim(a, d.dir, 30 + i) for i in range(3)]
    churn = Victim(a, d.dir, 39)
    sysv_path = os.path.join(d.dir, "sysv.out")
    sysv_out = open(sysv_path, "w")
    sysv = subprocess.Popen([os.path.join(a.test_bin, "sys-victim"), "/etc/hostname"], stdout=sysv_out,
                            preexec_fn=harness._die_with_parent)
    rng = random.Random(os.environ.get("BPFGRAFT_RESTART_SEED", "13"))
    tools = []
    try:
        for v in victims:
            attach_counting(d, a, v)
            v.go(True)
        churn.go(True)
        rc, _, err = d.cli("attach", sysv.pid, "syscount")
        check_eq(rc, 0, f"loop: attach syscount to sys-victim ({err.strip()})")
        snoop = RunTool(d, [a.opensnoop, "-p", str(sysv.pid)], "skel-opensnoop")
        bt = RunTool(d, [sys.executable, os.path.join(HERE, "bpf_tool.py")], "python3")
        tools = [snoop, bt]
        check_eq(bt.ask("create"), "create OK", "loop: the bpf_tool under bpfgraft run creates a map")
        deadline = time.monotonic() + 60
        while not snoop.lines() and snoop.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)  # its header: its links are attached everywhere
        check(snoop.lines() != [], "loop: opensnoop under bpfgraft run started", snoop.stderr()[-500:])
        tool_pids = [t.pid(d) for t in tools]
        check(None not in tool_pids, "loop: both tools listed by tool.list", f"{tool_pids}")
        time.sleep(0.5)
        opens0 = sum(1 for l in read_text(sysv_path).splitlines() if "/etc/hostname" in l)
        pids = [v.pid for v in victims] + [sysv.pid] + tool_pids
        failures, tool_bad, snoop_seen = 0, [], len(snoop.lines())
        t0 = time.monotonic()
        for i in range(a.kills):
            kind = rng.choice(["idle", "attach", "detach", "load", "update", "tool"])
            p = churn_action(d, a, kind, churn, i)
            time.sleep(rng.uniform(0, 0.12))
            d.stop(signal.SIGKILL)
            if p:
                p.wait(timeout=30)
            if i % 5 == 0:
                tool_bad += tool_while_down(a, d, bt, i)
            d.start()
            listed = wait_listed(d, pids)
            states = wait_tools_running(d, tool_pids)
            if not all(states.get(t) == "running" for t in tool_pids):
                tool_bad.append(f"kill {i + 1} during {kind}: tools not adopted again: {states}")
            if i % 5 == 0:
                tool_bad += tool_after_restart(d, bt, i)
            n = len(snoop.lines())
            if n <= snoop_seen:
                tool_bad.append(f"kill {i + 1}: opensnoop printed nothing since the previous restart")
            snoop_seen = n
            if not churn.alive():
                # a server killed while the target's threads are ptrace-stopped
                # (remote syscalls run at the injector's rescue code: the
                # thread restores itself, injector/remote.c) must not kill it
                failures += 1
                check(False, f"loop: kill {i + 1} during {kind}: the process attached or detached survives",
                      f"it {churn.death()} (server killed inside a ptrace stop)")
                churn = Victim(a, d.dir, 40 + i)
                churn.go(True)
            alive = all(v.alive() for v in victims) and sysv.poll() is None
            ok, detail = exact(d, main_map, victims) if alive else (False, "a target died")
            ok = ok and all(pid in listed for pid in pids)
            if not ok:
                failures += 1
                check(False, f"loop: kill {i + 1} during {kind}", f"{detail}; listed {sorted(listed)}")
            if kind == "load":
                d.cli("unload", f"extra{i}")
        check_eq(failures, 0, f"loop: {a.kills} SIGKILLs in {time.monotonic() - t0:.0f} s: every target alive, "
                 "listed and counted exactly after each restart")
        check_eq(tool_bad, [], "loop: the running tools were adopted again after each restart; with no server "
                 "a MAP_CREATE failed with ENOTCONN while the map worked locally, after it worked again")
        check("bpfgraftd is not running" in bt.stderr() and "ENOTCONN" in bt.stderr(),
              "loop: the tool was told on its stderr why its request failed", bt.stderr()[-500:])
        check(all(t.proc.poll() is None for t in tools), "loop: both tools still run",
              " / ".join(f"{t.name}: rc {t.proc.poll()}, stderr {t.stderr()[-400:]!r}" for t in tools))
        opens = sum(1 for l in read_text(sysv_path).splitlines() if "/etc/hostname" in l) - opens0
        snooped = [l.split() for l in snoop.lines()[1:]]
        ok = all(len(w) == 5 and w[0] == str(sysv.pid) and w[4] == "/etc/hostname" and w[2] != "-1" for w in snooped)
        check(ok and abs(len(snooped) - opens) <= 60,
              f"loop: opensnoop printed every open of sys-victim across the restarts ({len(snooped)} lines, "
              f"{opens} opens after it started)", f"{snooped[:2]} {snooped[-2:]}")
        def tools_left():
            with d.client() as cl:
                return sorted(t["pid"] for t in cl.call("tool.list"))
        # tools started in the churn and ended meanwhile: gone once their 3 s wait runs out
        harness.wait_until(lambda: tools_left() == sorted(tool_pids), step=0.1)
        left = tools_left()
        check_eq(left, sorted(tool_pids), "loop: tool.list holds only the running tools")
        for t in tools:  # their programs leave every process
            t.stop()
        lines = [l for l in read_text(sysv_path).splitlines() if "/etc/hostname" in l]
        check(lines and all(l.split()[2] != "-1" for l in lines[-20:]),
              "loop: the syscall-hooked process opens its file as before", f"{lines[-3:]}")
        with d.client() as cl:
            t = {x["pid"]: x for x in cl.call("target.list")}
        check(t.get(sysv.pid, {}).get("syscall_programs", 0) >= 1, "loop: its syscall program is still attached")
        sysv_victim = type("V", (), {"pid": sysv.pid, "alive": lambda self: sysv.poll() is None})()
        d.cli("detach", churn.pid)
        check_eq(text_matches_file(churn.pid), [], "loop: churn target's text equals its files")
        # opensnoop's syscall tracepoints put Syscall User Dispatch in every
        # attached process: their payloads stay mapped by design
        detach_all(d, victims + [sysv_victim], "loop", keeps_payload=[v.pid for v in victims] + [sysv.pid])
    finally:
        for t in tools:
            t.stop()
        for v in victims + [churn]:
            v.kill()
        sysv.kill()
        sysv.wait()
        sysv_out.close()
        d.stop(signal.SIGTERM)


def timed_cli(d, argvs):
    """Runs the CLI commands in turn in a child shell (one process to
    interrupt), each whatever the last one answered; returns the Popen."""
    bpfgraft = os.path.join(d.a.bin_dir, "bpfgraft")
    script = "; ".join(" ".join([bpfgraft, "--socket", d.socket] + [str(x) for x in argv]) for argv in argvs)
    with open(os.path.join(d.dir, "cli.log"), "a") as log:
        return subprocess.Popen(["sh", "-c", script], stdout=log, stderr=log)


def part_stress(a, d):
    """SIGKILL of the server at random instants of attaching (payload,
    uprobe stubs and patches, Syscall User Dispatch on every thread) and
    detaching a 4-thread process that calls the probed function in a tight
    loop: it never dies, keeps running, and ends with its text equal to
    its files."""
    d.start()
    for obj in (a.obj, a.syscount):
        rc, _, err = d.cli("load", obj)
        check_eq(rc, 0, f"stress: load {os.path.basename(obj)} ({err.strip()})")
    v = Victim(a, d.dir, 60, threads=4)
    attach = [["attach", v.pid, "syscount"], ["attach", v.pid, "count", "add_entry", "add_return", "--target",
                                                 ":probed_add"]]
    rng = random.Random(os.environ.get("BPFGRAFT_RESTART_SEED", "13"))
    try:
        v.go(True)
        timed_cli(d, attach).wait(timeout=120)  # compiles the programs
        span = 0.2
        for argvs in ([["detach", v.pid]], attach):  # how long each takes now
            t0 = time.monotonic()
            timed_cli(d, argvs).wait(timeout=120)
            span = max(span, (time.monotonic() - t0) * 1.2)
        bad = []
        for i in range(max(1, a.kills // 2)):
            what = "detach" if i % 2 == 0 else "attach"  # the commands answer "exists" / "not_found" if need be
            p = timed_cli(d, [["detach", v.pid]] if what == "detach" else attach)
            delay = rng.uniform(0, span)
            time.sleep(delay)
            d.stop(signal.SIGKILL)
            p.wait(timeout=60)
            if not v.alive():
                bad.append(f"kill {i + 1}, {delay * 1000:.0f} ms into the {what}: the process {v.death()}")
                break
            d.start()
            if not calls_on(v):
                bad.append(f"kill {i + 1}, {delay * 1000:.0f} ms into the {what}: its threads stopped calling")
        check_eq(bad, [], f"stress: {a.kills // 2} SIGKILLs during attach and detach: the process lives and runs")
        if v.alive():
            wait_listed(d, [v.pid])  # adopted, unless the last kill came before the payload ran
            d.cli("detach", v.pid)
            check_eq(text_matches_file(v.pid), [], "stress: its text equals its files at the end")
    finally:
        v.kill()
        d.stop(signal.SIGTERM)


PATCH_STEPS = 6  # bpfg_text_poke on a page-crossing jmp: journal, int3, tail x2, first byte, journal cleared


def symbol_addr(pid, exe, name):
    """Runtime address of name (a symbol of the PIE exe) in process pid."""
    out = subprocess.run(["nm", "--defined-only", exe], capture_output=True, text=True, check=True).stdout
    vaddr = next(int(l.split()[0], 16) for l in out.splitlines() if l.split()[-1] == name)
    with open(f"/proc/{pid}/maps") as f:
        base = next(int(l.split("-")[0], 16) for l in f if l.split()[5:] == [os.path.realpath(exe)]
                    and int(l.split()[2], 16) == 0)
    return base + vaddr


def mem_byte(pid, addr):
    with open(f"/proc/{pid}/mem", "rb") as m:
        m.seek(addr)
        return m.read(1)[0]


def patch_killed(a, d, v, k, site):
    """One server, killed by its own test hook after write k of the patch
    protocol (attach: 1..6, detach: 7..12); what the dead window leaves."""
    os.environ["BPFGRAFT_TEST_PATCH_STOP"] = str(k)
    try:
        d.start()
    finally:
        del os.environ["BPFGRAFT_TEST_PATCH_STOP"]
    rc, _, err = d.cli("attach", v.pid, "count", "add_entry", "--target", ":crossing_add")
    if k > PATCH_STEPS:
        check_eq(rc, 0, f"patching {k}: attach ({err.strip()})")
        d.cli("detach", v.pid)
    try:
        d.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass
    died = d.proc.returncode
    d.proc = None
    check_eq(died, -signal.SIGKILL, f"patching {k}: the server killed itself at the step")
    first = mem_byte(v.pid, site)
    step = (k - 1) % PATCH_STEPS + 1
    if 2 <= step <= 4:
        check_eq(first, 0xcc, f"patching {k}: the site starts with the protocol's int3 while no server runs")
    calls = v.get(CTL_CALLS)
    time.sleep(0.3)  # 4 threads meet the half-written site
    check(v.alive() and (v.get(CTL_CALLS) > calls or calls_on(v)),
          f"patching {k}: the target runs on through the dead window", v.death())


def part_patching(a, d):
    """kill -9 of the server at every write of the int3-first protocol
    (BPFGRAFT_TEST_PATCH_STOP) on a jmp that crosses a page, attaching and
    detaching, under 4 threads calling the function: the target never
    dies, the restarted server finishes the patch, counts after
    re-adoption are exact, and detach restores the file's bytes."""
    exe = os.path.join(a.test_bin, "patch-victim")
    v = Victim(a, d.dir, 70, threads=4, exe="patch-victim")
    try:
        site = symbol_addr(v.pid, exe, "crossing_add")
        check_eq(site // 4096 != (site + 4) // 4096, True, "patching: the jmp site crosses a page boundary")
        d.start()
        rc, _, err = d.cli("load", a.obj)
        check_eq(rc, 0, f"patching: load ({err.strip()})")
        d.stop(signal.SIGTERM)
        v.go(True)
        for k in range(1, 2 * PATCH_STEPS + 1):
            patch_killed(a, d, v, k, site)
            d.start()
            listed = wait_listed(d, [v.pid])
            check(v.pid in listed, f"patching {k}: re-adopted", f"{listed}")
            hooks = len(listed.get(v.pid, {}).get("hooks", []))
            check_eq(v.get(CTL_BAD), 0, f"patching {k}: crossing_add always returned the right sum")
            if k <= PATCH_STEPS:  # killed attaching: the jmp finished, the hook counts
                check_eq(hooks, 1, f"patching {k}: re-adopted with its hook, the patch finished")
                v.go(False)
                c0, calls0 = counts(d)[0], v.get(CTL_CALLS)
                v.go(True)
                time.sleep(0.3)
                calls_on(v)  # a loaded machine may not run the threads that soon
                v.go(False)
                c1, calls1 = counts(d)[0], v.get(CTL_CALLS)
                v.go(True)
                check(calls1 > calls0 and c1 - c0 == calls1 - calls0, f"patching {k}: counts exact after re-adoption",
                      f"map {c0} -> {c1}, calls {calls0} -> {calls1}")
            else:  # killed detaching: the file's bytes are back; detach again ends it
                check_eq(text_matches_file(v.pid), [], f"patching {k}: the restore was finished at adoption")
            rc, _, err = d.cli("detach", v.pid)
            check_eq(rc, 0, f"patching {k}: detach ({err.strip()})")
            check_eq(text_matches_file(v.pid), [], f"patching {k}: detach restored the file's bytes")
            check(v.alive(), f"patching {k}: the target lives", v.death())
            d.stop(signal.SIGTERM)
    finally:
        v.kill()
        d.stop(signal.SIGTERM)


def payload_images(pid):
    """Start addresses of the payload images pid maps."""
    with open(f"/proc/{pid}/maps") as f:
        return [l.split("-")[0] for l in f if "/memfd:bpfgraft-payload" in l and l.split()[2] == "00000000"]


def part_failed(a, d):
    """A payload whose first connection failed (bpfgraft-inject with a
    socket nobody listens on) stays mapped; the next attach removes it and
    maps the only payload, which counts exactly; detach leaves none."""
    d.start()
    rc, _, err = d.cli("load", a.obj)
    check_eq(rc, 0, f"failed: load ({err.strip()})")
    v = Victim(a, d.dir, 80)
    try:
        threads = len(os.listdir(f"/proc/{v.pid}/task"))
        payload = os.path.join(a.bin_dir, "..", "lib", "bpfgraft-payload.so")
        r = subprocess.run([a.inject, str(v.pid), "--payload", payload, "--socket", f"@bpfgraft-nobody-{os.getpid()}"],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode != 0 and "payload state 3" in r.stdout, "failed: the payload's first connection fails",
              r.stdout + r.stderr)
        deadline = time.monotonic() + 20
        while len(os.listdir(f"/proc/{v.pid}/task")) > threads and time.monotonic() < deadline:
            time.sleep(0.02)  # its thread ends
        check_eq(len(payload_images(v.pid)), 1, "failed: its payload stays mapped")
        attach_counting(d, a, v)
        check_eq(len(payload_images(v.pid)), 1, "failed: the attach maps one payload, not a second beside it")
        check("1 payload(s) whose first connection had failed" in d.log(), "failed: the server says it removed it")
        v.go(True)
        time.sleep(0.2)
        check_exact(d, [v], "failed")
        detach_all(d, [v], "failed")
    finally:
        v.kill()
        d.stop(signal.SIGTERM)
    late_payload(a, d)


def late_payload(a, d):
    """A payload that connects after its attach gave up (a 1 ms wait:
    BPFGRAFT_TEST_CONNECT_TIMEOUT_MS, tests only; a loaded machine took
    over 5 s) is adopted when it reconnects (100 ms later); an attach
    meanwhile is answered busy (the CLI says so and tries again), never a
    second payload beside it (its dispatch and handlers took the first
    one's thread for the target's: the process died)."""
    os.environ["BPFGRAFT_TEST_CONNECT_TIMEOUT_MS"] = "1"
    try:
        d.start()
    finally:
        del os.environ["BPFGRAFT_TEST_CONNECT_TIMEOUT_MS"]
    v = Victim(a, d.dir, 81)
    try:
        attach = ["attach", v.pid, "count", "add_entry", "--target", ":probed_add"]
        rc, _, err = d.cli(*attach)
        check(rc != 0 and "did not connect within 1 ms" in err, "late: an attach waiting 1 ms gives up", err)
        rc, _, err = d.cli(*attach)
        check_eq(rc, 0, f"late: the late payload is adopted and the next attach goes through ({err.strip()})")
        check("has not connected yet" in err and "retrying" in err,
              "late: that attach was answered busy until the adoption (the CLI said why)", err)
        check_eq(len(payload_images(v.pid)), 1, "late: one payload in the process, never a second beside it")
        v.go(True)
        time.sleep(0.3)
        check(v.alive() and calls_on(v), "late: the process runs on, probed", v.death())
        rc, _, err = d.cli("detach", v.pid)
        check_eq(rc, 0, f"late: detach ({err.strip()})")
        check_eq(text_matches_file(v.pid), [], "late: detach left the files' bytes")
    finally:
        v.kill()
        d.stop(signal.SIGTERM)


def bpftrace_tool(d, program):
    """bpftrace -e program under bpfgraft run, told to say on stderr when
    every probe is attached (harness.start_bpftrace says why its
    "Attaching" line will not do)."""
    env = dict(os.environ, **{harness.BPFTRACE_ATTACHED: "1"})
    return RunTool(d, ["bpftrace", "-e", program], "bpftrace", env=env)


def bpftrace_attached(tool, timeout=60):
    """True once the bpftrace of bpftrace_tool said every probe is attached."""
    harness.wait_until(lambda: harness.BPFTRACE_ATTACHED in tool.stderr() or tool.proc.poll() is not None,
                       timeout, step=0.05)
    return harness.BPFTRACE_ATTACHED in tool.stderr()


def printed_count(tool, name):
    m = re.search(rf"^@{name}: (\d+)$", read_text(tool.out_path), re.M)
    return int(m.group(1)) if m else None


def part_timers(a, d):
    """A timer program of a `bpfgraft run` tool (bpftrace's interval:)
    ticks on while no server runs (kill -9, a new server 3 s later): over
    the 4.5 s run it counts the ticks of a timer that never stopped (one
    that stopped while the server was away would count at most a third)."""
    if not shutil.which("bpftrace"):
        harness.skip("timers: bpftrace is not installed")
        return
    d.start()
    tool = bpftrace_tool(d, "interval:ms:50 { @ticks = count(); } interval:ms:4500 { exit(); }")
    try:
        check(bpftrace_attached(tool), "timers: bpftrace started under bpfgraft", tool.stderr()[-500:])
        time.sleep(0.5)
        d.stop(signal.SIGKILL)
        time.sleep(3)
        d.start()
        harness.finish(tool.proc, 60)
        check_eq(tool.proc.returncode, 0, "timers: bpftrace exits by its own timer (exit() from interval:)")
        n = printed_count(tool, "ticks")
        check(n is not None and n >= 54, f"timers: ticks counted while no server ran ({n} of ~90)",
              read_text(tool.out_path)[-500:])
    finally:
        tool.stop()
        d.stop(signal.SIGTERM)


def listed_maps(d, ids, timeout=20):
    """The ids among ids map.list shows, waiting up to timeout for all
    (a map made in a ticket is registered after the tool's call returns)."""
    deadline = time.monotonic() + timeout
    while True:
        with d.client() as cl:
            got = {m["id"] for m in cl.call("map.list")} & set(ids)
        if got == set(ids) or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def tool_map_id(bt, what, entries=1):
    """Creates a map in bpf_tool; its id as the tool sees it."""
    check_eq(bt.ask(f"create {entries}"), "create OK", f"tickets: {what}: the tool creates a map")
    r = bt.ask("id") or ""
    check(r.startswith("id ") and r[3:].isdigit(), f"tickets: {what}: the tool reads its map's id", r)
    return int(r[3:]) if r[3:].isdigit() else -1


def state_map_files(d):
    # Daemon.start returns once the socket accepts: the server may still be
    # making its state directory (the kernel queues the connection)
    maps = os.path.join(d.state, "restart", "maps")
    deadline = time.monotonic() + 10
    while not os.path.isdir(maps) and time.monotonic() < deadline:
        time.sleep(0.01)
    return set(os.listdir(maps))


PREPARED_SIZE = 1 << 20  # payload tool_priv.h, TICKET_PREPARED_SIZE


def tickets_prepared(d, bt, ids):
    """Tickets the payload thread prepared ahead (sized, mapped): the maps
    made in them keep the prepared size, the server and the tool share
    their data; a map too big for one is laid out as before. Appends the
    big map's id to ids."""
    maps = os.path.join(d.state, "restart", "maps")
    sizes = {i: os.path.getsize(os.path.join(maps, str(i))) for i in ids}
    prepared = [n for n, i in enumerate(ids) if sizes[i] == PREPARED_SIZE]
    check(len(prepared) >= 2, "tickets: maps were made in prepared tickets", f"sizes {sizes}")
    n = prepared[-1] if prepared else 0
    check_eq(bt.ask(f"update 43 {n}"), "update OK 43", "tickets: a map of a prepared ticket written by the tool")
    check_eq(map_u64(d, ids[n], 0), 43, "tickets: the server reads a prepared ticket's map")
    ids.append(tool_map_id(bt, "a map bigger than a prepared ticket", 1 << 18))  # 2 MiB of values
    check_eq(listed_maps(d, ids), set(ids), "tickets: the big map is listed too")
    size = os.path.getsize(os.path.join(maps, str(ids[-1])))
    check(PREPARED_SIZE < size < PREPARED_SIZE * 3, "tickets: the big map's file is its region's size", size)
    check_eq(bt.ask(f"update 44 {len(ids) - 1}"), "update OK 44", "tickets: the big map written by the tool")
    check_eq(map_u64(d, ids[-1], 0), 44, "tickets: the server reads the big map")


def tickets_burst(d, bt, ids, n=40):
    """A tight loop of creates (five batches of tickets, faster than the
    payload thread prepares them): every one succeeds, in a ticket the server
    sized (each map's file has the prepared size, also those the tool had to
    map itself), with ascending ids; each map works in the tool and in the
    server. Appends the maps' ids to ids."""
    r = (bt.ask(f"burst {n}") or "").split()
    check(r[:2] == ["burst", "OK"] and len(r) == n + 2, f"tickets: {n} creates in a row, each map written", r[:4])
    got = [int(x) for x in r[2:] if x.isdigit()]
    check(got == sorted(set(got)) and len(got) == n and got[0] > max(ids), "tickets: the burst's ids ascend", got)
    check_eq(listed_maps(d, got), set(got), "tickets: every map of the burst is listed")
    maps = os.path.join(d.state, "restart", "maps")
    sizes = {i: os.path.getsize(os.path.join(maps, str(i))) for i in got}
    check(all(v == PREPARED_SIZE for v in sizes.values()), "tickets: the burst's maps are in sized tickets", sizes)
    vals = [map_u64(d, i, 0) for i in got]
    check_eq(vals, [1000 + k for k in range(n)], "tickets: the server reads each map of the burst")
    ids += got


def part_tickets(a, d):
    """Maps a `bpfgraft run` tool makes in its map tickets (no round trip):
    listed by the server with the id the tool sees, across kill -9 (also
    one made just before it) with their data; a create with no server
    fails with ENOTCONN as without tickets; when the tool ends, no region
    file of it (maps or unused tickets) stays in the state directory."""
    d.start()
    before = state_map_files(d)
    bt = RunTool(d, [sys.executable, os.path.join(HERE, "bpf_tool.py")], "python3")
    try:
        ids = [tool_map_id(bt, "first map")]
        check_eq(bt.ask("update 41"), "update OK 41", "tickets: the first map written by the tool")
        ids += [tool_map_id(bt, f"map {i + 2}") for i in range(9)]  # past one batch of tickets
        check_eq(len(set(ids)), len(ids), f"tickets: ten maps, ten ids {ids}")
        check_eq(listed_maps(d, ids), set(ids), "tickets: map.list lists every map by the tool's id")
        check_eq(map_u64(d, ids[0], 0), 41, "tickets: the server reads what the tool wrote")
        tickets_prepared(d, bt, ids)
        tickets_burst(d, bt, ids)
        pid = bt.pid(d)
        ids.append(tool_map_id(bt, "map made just before kill -9"))
        d.stop(signal.SIGKILL)
        check_eq(bt.ask("create"), "create ERR 107", "tickets: with no server a create fails with ENOTCONN")
        d.start()
        got = wait_tools_running(d, [pid], timeout=30)
        check_eq(got.get(pid), "running", "tickets: the tool is adopted by the new server")
        ids.append(tool_map_id(bt, "map made after the restart"))
        listed = listed_maps(d, ids)
        check(listed == set(ids), "tickets: after kill -9 every map is listed by its id",
              f"missing {sorted(set(ids) - listed)}; {d.log()[-1500:]}")
        check_eq(map_u64(d, ids[0], 0), 41, "tickets: the first map kept its data across the restart")
        check_eq(bt.ask("lookup"), "lookup OK 41", "tickets: the tool reads it too")
        bt.proc.stdin.close()  # bpf_tool.py ends at the end of its input
        bt.proc.wait(timeout=20)
        deadline = time.monotonic() + 10
        while state_map_files(d) != before and time.monotonic() < deadline:
            time.sleep(0.05)
        check_eq(state_map_files(d) - before, set(), "tickets: the ended tool left no region file")
    finally:
        bt.stop()
        d.stop(signal.SIGTERM)


def part_toolsdown(a, d):
    """Three tools (maps, no programs) that end while no server runs: the
    restarted server ends each once its wait runs out, and serves on. An
    empty id list once made realloc free the retired list and keep the
    pointer: the third ended tool killed bpfgraftd (a double free)."""
    d.start()
    tools = [RunTool(d, [sys.executable, os.path.join(HERE, "bpf_tool.py")], f"python3-{i}") for i in range(3)]
    try:
        for i, bt in enumerate(tools):
            check_eq(bt.ask("create"), "create OK", f"toolsdown: tool {i + 1} creates a map")
        d.stop(signal.SIGKILL)
        for bt in tools:
            bt.proc.stdin.close()  # bpf_tool.py ends at the end of its input
            bt.proc.wait(timeout=20)
        d.start()
        left, deadline = None, time.monotonic() + 20  # each restored tool waits 3 s for its process
        while left != [] and d.proc.poll() is None and time.monotonic() < deadline:
            try:
                with d.client() as cl:
                    left = cl.call("tool.list")
            except (OSError, ConnectionError):
                pass
            time.sleep(0.1)
        check(d.proc.poll() is None, "toolsdown: the server runs on after the three tools ended", d.log()[-1500:])
        check_eq(left, [], "toolsdown: the three ended tools are gone from tool.list")
    finally:
        for bt in tools:
            bt.stop()
        d.stop(signal.SIGTERM)


def part_execwatch(a, d):
    """An exec watch of a `bpfgraft run` tool (a pid -1 uprobe on a binary)
    across kill -9 + restart: a process of that binary started after the
    restart is caught at exec and every call it makes is counted."""
    if not shutil.which("bpftrace"):
        harness.skip("execwatch: bpftrace is not installed")
        return
    # a private copy (its RUNPATH finds the library): the watch catches
    # every process exec'ing the binary, another test's victims too
    exe = os.path.join(d.dir, "attach-victim-pie")
    shutil.copy2(os.path.join(a.test_bin, "attach-victim-pie"), exe)
    d.start()
    tool = bpftrace_tool(d, f"uprobe:{exe}:probed_add {{ @calls = count(); }}")
    v = None
    try:
        check(bpftrace_attached(tool), "execwatch: bpftrace attached", tool.stderr()[-500:])
        pid = tool.pid(d)
        d.stop(signal.SIGKILL)
        d.start()
        got = wait_tools_running(d, [pid], timeout=30)
        check_eq(got.get(pid), "running", "execwatch: the tool is adopted by the new server")
        # one thread: bpftrace's count() is a per-cpu map whose `+= 1` is not
        # atomic, and under bpfgraft two threads may share a cpu's slot
        v = Victim(a, d.dir, 90, threads=1, exe=exe)  # started after the restart
        v.go(True)
        time.sleep(0.5)
        harness.wait_until(lambda: v.get(CTL_CALLS) > 0)  # a loaded machine may not run it that soon
        v.go(False)
        calls = v.get(CTL_CALLS)
        harness.interrupt_bpftrace(tool.proc)
        harness.finish(tool.proc, 30)
        n = printed_count(tool, "calls")
        check(calls > 0 and n == calls, "execwatch: a process started after the restart caught at exec, "
              "every call counted", f"bpftrace counted {n}, the process made {calls}")
        check(v.alive(), "execwatch: the process lives", v.death())
    finally:
        if v:
            v.kill()
        tool.stop()
        d.stop(signal.SIGTERM)


def set_layout(d, version):
    """Writes version into the header of every map region file (+8)."""
    mdir = os.path.join(d.state, "restart", "maps")
    for name in os.listdir(mdir):
        with open(os.path.join(mdir, name), "r+b") as f:
            f.seek(8)
            f.write(struct.pack("<I", version))
    return sorted(os.listdir(mdir))


def part_layout(a, d):
    """Map regions of layout 3 (before the contended-hash stripes) found
    by a layout-5 server at restart: an object whose maps are all arrays
    is restored with its data (the regions converted); one with a hash map
    is refused, the log naming both versions, and its regions are kept."""
    spin = os.path.join(os.path.dirname(a.obj), "spinlock.bpf.o")
    d.start()
    for obj in (spin, a.obj):
        rc, _, err = d.cli("load", obj)
        check_eq(rc, 0, f"layout: load {os.path.basename(obj)} ({err.strip()})")
    value = struct.pack("<QQQ", 7, 0, 9)
    with d.client() as cl:
        cl.call("map.update", map="locked", key=struct.pack("<I", 0), value=value)
    d.stop(signal.SIGTERM)
    files = set_layout(d, 3)
    d.start()
    log = d.log()
    with d.client() as cl:
        names = [o["name"] for o in cl.call("object.list")]
        check_eq(names, ["spinlock"], "layout: the object of arrays only is restored, the one with a hash is not")
        got = cl.call("map.lookup", map="locked", key=struct.pack("<I", 0))["value"] if names else b""
    check_eq(got, value, "layout: the converted array keeps its data")
    check("layout version 3, this build reads 5" in log, "layout: the refusal names both layout versions",
          log[-1500:])
    check_eq(sorted(os.listdir(os.path.join(d.state, "restart", "maps"))), files,
             "layout: no region file is removed (the refused object's data is kept)")
    d.stop(signal.SIGTERM)


class SysVictim:
    """sys-victim: opens a file every 20 ms; SIGUSR2 makes exactly 1000
    getppid() calls (printed "burst 1000" after them)."""

    def __init__(self, d):
        self.path = os.path.join(d.dir, "sysv-bursts.out")
        self.out = open(self.path, "w")
        self.proc = subprocess.Popen([os.path.join(d.a.test_bin, "sys-victim"), "/etc/hostname"], stdout=self.out,
                                     preexec_fn=harness._die_with_parent)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 30  # its SIGUSR1/2 handlers are in once it says so (a loaded machine)
        while "ready" not in read_text(self.path) and time.monotonic() < deadline and self.proc.poll() is None:
            time.sleep(0.01)

    def burst(self):
        """Makes 1000 getppid() calls; True once they are done."""
        n = read_text(self.path).count("burst 1000")
        os.kill(self.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if read_text(self.path).count("burst 1000") > n:
                return True
            time.sleep(0.02)
        return False

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.out.close()


def getppid_count(d):
    """syscount's count of getppid (x86-64 110) so far; 0 before the first."""
    return syscall_count(d, 110)


def syscall_count(d, nr):
    """syscount's count of syscall nr so far; 0 before the first."""
    try:
        with d.client() as cl:
            r = cl.call("map.lookup", map="counts", key=struct.pack("<I", nr))
        return struct.unpack("<Q", r["value"])[0]
    except Exception as e:  # no such key yet
        if "not_found" in str(e) or "ENOENT" in str(e) or "no such" in str(e).lower():
            return 0
        raise


def inert_and_rearmed(d, v, c, what):
    """kill -9, past the grace period (v's payload inert: its syscall
    programs dropped), a burst not counted, a restart re-arms it, a burst
    counted exactly. Returns the count."""
    d.stop(signal.SIGKILL)
    time.sleep(1.5)
    check(v.burst(), f"syscalls: {what}: the inert process makes its calls")
    d.start()
    t = wait_listed(d, [v.pid]).get(v.pid, {})
    got = getppid_count(d)
    check_eq(got - c, 0, f"syscalls: {what}: while inert its calls were not counted")
    check(t.get("state") == "attached" and t.get("syscall_programs", 0) == 1,
          f"syscalls: {what}: adopted with its record: re-armed, its syscall program listed", f"{t}")
    check(v.burst() and getppid_count(d) == got + 1000, f"syscalls: {what}: re-armed: a burst of 1000 counted exactly",
          f"{got} -> {getppid_count(d)}")
    return got + 1000


def part_syscalls(a, d):
    """Syscall programs across restarts: counting goes on exactly through a
    kill -9 and restart (also while no server runs); a payload that went
    inert gets them back from a server with its record, twice."""
    d.start(["--orphan-grace", "120"])  # the first victim never goes inert, however slow a restart
    rc, _, err = d.cli("load", a.syscount)
    check_eq(rc, 0, f"syscalls: load syscount ({err.strip()})")
    v, w = SysVictim(d), None
    try:
        time.sleep(0.1)
        rc, _, err = d.cli("attach", v.pid, "syscount")
        check_eq(rc, 0, f"syscalls: attach syscount ({err.strip()})")
        c0 = getppid_count(d)
        check(v.burst() and getppid_count(d) == c0 + 1000, "syscalls: a burst of 1000 getppid() counted exactly")
        d.stop(signal.SIGKILL)
        check(v.burst(), "syscalls: the process makes its calls with no server")
        d.start()
        wait_listed(d, [v.pid])
        check(v.burst(), "syscalls: and after the restart")
        got = getppid_count(d)
        check_eq(got - c0, 3000, "syscalls: kill -9 + restart: every call counted, also with no server, none twice")
        d.stop(signal.SIGTERM)
        d.extra = ["--orphan-grace", "0.5"]  # given to the payloads of the attaches from now on
        d.start()
        w = SysVictim(d)
        time.sleep(0.1)
        rc, _, err = d.cli("attach", w.pid, "syscount")
        check_eq(rc, 0, f"syscalls: attach syscount to a second process ({err.strip()})")
        got = inert_and_rearmed(d, w, getppid_count(d), "inert once")
        inert_and_rearmed(d, w, got, "inert again")
        for x in (v, w):
            rc, _, err = d.cli("detach", x.pid)
            check_eq(rc, 0, f"syscalls: detach {x.pid} ({err.strip()})")
            check(x.proc.poll() is None and x.burst(), f"syscalls: {x.pid} runs on after detach")
            check_eq(text_matches_file(x.pid), [], f"syscalls: {x.pid}: its text equals its files")
    finally:
        for x in (v, w):
            if x:
                x.stop()
        d.stop(signal.SIGTERM)


def calls_on(v, timeout=20):
    """True once v's threads make calls again (within timeout)."""
    c = v.get(CTL_CALLS)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if v.get(CTL_CALLS) > c:
            return True
        time.sleep(0.01)
    return False


def inject_killed(a, v, k):
    """bpfgraft-inject killed after its kth ptrace request or memory write
    into v: 1 if it was, 0 if it finished first, with v checked."""
    payload = os.path.join(a.bin_dir, "..", "lib", "bpfgraft-payload.so")
    env = dict(os.environ, BPFGRAFT_TEST_PTRACE_STOP=str(k))
    r = subprocess.run([a.inject, str(v.pid), "--payload", payload, "--socket", f"@bpfgraft-nobody-{os.getpid()}"],
                       env=env, capture_output=True, text=True, timeout=60)
    v.go(True)
    ok = v.alive() and calls_on(v) and v.get(CTL_BAD) == 0
    if not ok:
        check(False, f"attachsteps: injector killed at step {k}: the target lives and runs",
              f"it {v.death()}, bad results {v.get(CTL_BAD)}")
    return (r.returncode == -signal.SIGKILL, ok)


def attach_killed(a, d, v, k):
    """A server killed after its kth ptrace request or memory write, while
    attaching syscount and a uprobe/uretprobe pair to v; False once the
    attach finished before step k."""
    os.environ["BPFGRAFT_TEST_PTRACE_STOP"] = str(k)
    try:
        d.start()
    finally:
        del os.environ["BPFGRAFT_TEST_PTRACE_STOP"]
    d.cli("attach", v.pid, "syscount")
    d.cli("attach", v.pid, "count", "add_entry", "add_return", "--target", ":probed_add")
    killed = wait_died(d) == -signal.SIGKILL  # waited for only after the last step
    v.go(True)
    ok = v.alive() and calls_on(v) and v.get(CTL_BAD) == 0
    check(ok, f"attachsteps: server killed at step {k} of the attach: the target lives and runs",
          f"it {v.death()}, bad results {v.get(CTL_BAD)}")
    return killed


def part_attachsteps(a, d):
    """kill -9 of the tracer after each of its ptrace requests and memory
    writes (BPFGRAFT_TEST_PTRACE_STOP) while attaching to a 4-thread process
    calling the probed function: every step of the payload's injection
    (bpfgraft-inject, the injector the server runs), every third step of the
    server's attach after it (stops, Syscall User Dispatch on each thread,
    stub pages, patches; offset by the seed), the process alternately
    calling and sleeping. The process lives and runs on; a new server
    detaches it leaving the files' bytes, and attaches again."""
    v, k, steps = Victim(a, d.dir, 90, threads=4), 1, 0
    try:
        while True:  # every injection step: 20 leftover payloads per process at most
            if k % 20 == 0:
                v.kill()
                v = Victim(a, d.dir, 90 + k, threads=4)
            v.go(k % 2 == 0)
            killed, ok = inject_killed(a, v, k)
            if not ok:
                v.kill()
                v = Victim(a, d.dir, 90 + k, threads=4)
            if not killed:
                break
            steps, k = steps + 1, k + 1
        check(steps > 100, f"attachsteps: the injector was killed at each of its {steps} steps")
        v.kill()
        d.start()
        for obj in (a.obj, a.syscount):
            rc, _, err = d.cli("load", obj)
            check_eq(rc, 0, f"attachsteps: load {os.path.basename(obj)} ({err.strip()})")
        d.stop(signal.SIGTERM)
        k = steps + 1 + int(os.environ.get("BPFGRAFT_RESTART_SEED", "13")) % 3
        for i in range(1000):
            v = Victim(a, d.dir, 200 + i, threads=4)
            v.go(i % 2 == 0)
            if not attach_killed(a, d, v, k):
                break
            if i % 4 == 0:  # what a dead server left: adopted, detached, attached again
                d.start()
                if len(os.listdir(f"/proc/{v.pid}/task")) > 5:  # a payload thread: it reconnects (every 100 ms)
                    wait_listed(d, [v.pid])
                rc, _, err = d.cli("detach", v.pid)
                check(rc == 0 or "not attached" in err, f"attachsteps {k}: detach ({err.strip()})")
                check_eq(text_matches_file(v.pid), [], f"attachsteps {k}: detach left the files' bytes")
                rc, _, err = d.cli("attach", v.pid, "syscount")
                check_eq(rc, 0, f"attachsteps {k}: attached again ({err.strip()})")
                check(v.alive() and calls_on(v), f"attachsteps {k}: the process runs on", v.death())
                d.stop(signal.SIGTERM)
            v.kill()
            k += 3
        check(i > 20, f"attachsteps: the server was killed at {i} steps of the attach after the injection")
    finally:
        v.kill()
        d.stop(signal.SIGTERM)


SYSSITE_WRITES = 6  # syscall-site rewrites killed after each of the first 6 writes (stub, jmp, stub, jmp, ...)


def start_killed_at(d, k, extra=()):
    """A server that SIGKILLs itself after its kth code write."""
    os.environ["BPFGRAFT_TEST_PATCH_STOP"] = str(k)
    try:
        d.start(extra)
    finally:
        del os.environ["BPFGRAFT_TEST_PATCH_STOP"]


def wait_died(d, timeout=10):
    """The server's exit status once it is gone (None if it still runs)."""
    try:
        d.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    rc = d.proc.poll()
    if rc is None:
        d.stop(signal.SIGKILL)
    d.proc = None
    return rc


def syssite_killed(a, d, k):
    """Server killed after write k of rewriting the syscall sites of a
    3-thread sys-victim (its threads open a file every 20 ms, its main loop
    makes the bursts): the process lives, every getppid() is counted once,
    detach restores the files' bytes. Returns the process, left attached."""
    start_killed_at(d, k)
    v = SysVictim(d)
    time.sleep(0.1)
    for _ in range(2):
        os.kill(v.pid, signal.SIGUSR1)  # threads making syscalls while the sites are written
    c0 = getppid_count(d)  # earlier processes' calls
    rc, _, err = d.cli("attach", v.pid, "syscount")
    check_eq(rc, 0, f"syssites {k}: attach syscount ({err.strip()})")
    bursts = sum(v.burst() for _ in range(3))  # its sites are reported and rewritten: the kth write kills
    died = wait_died(d)
    check_eq(died, -signal.SIGKILL, f"syssites {k}: the server killed itself at the write")
    bursts += v.burst()  # no server: the half-rewritten sites run
    check(v.proc.poll() is None and bursts == 4, f"syssites {k}: the process lives and makes its calls",
          f"rc {v.proc.poll()}, {bursts} bursts")
    d.start()
    listed = wait_listed(d, [v.pid])
    bursts += v.burst()
    check(v.pid in listed, f"syssites {k}: re-adopted", f"{sorted(listed)}")
    check_eq(getppid_count(d) - c0, 1000 * bursts, f"syssites {k}: every getppid() counted exactly once")
    opens = [l for l in read_text(v.path).splitlines() if "/etc/hostname" in l]
    check(opens and all(l.split()[2] == "0" for l in opens), f"syssites {k}: every open succeeded", f"{opens[-3:]}")
    return v


def part_syssites(a, d):
    """kill -9 of the server after each write of a syscall-site rewrite
    (stub, then the jmp, one write within a page) and of its restore at
    detach, under threads making syscalls: the process lives, counts stay
    exact, detach leaves the files' bytes."""
    d.start()
    rc, _, err = d.cli("load", a.syscount)
    check_eq(rc, 0, f"syssites: load syscount ({err.strip()})")
    d.stop(signal.SIGTERM)
    for k in range(1, SYSSITE_WRITES + 1):
        v = syssite_killed(a, d, k)
        try:
            j = k - (SYSSITE_WRITES - 2)  # two sites whole by write 4: restores killed after write 1, 2
            if j > 0:  # finished by the next detach
                d.stop(signal.SIGTERM)
                start_killed_at(d, j)
                # a server lists the process once its payload reconnects:
                # a detach before that is answered "not attached"
                wait_listed(d, [v.pid])
                d.cli("detach", v.pid)
                check_eq(wait_died(d), -signal.SIGKILL, f"syssites {k}: killed at restore write {j} at detach")
                check(v.burst(), f"syssites {k}: the process runs on after a detach killed halfway")
                d.start()
                wait_listed(d, [v.pid])
            rc, _, err = d.cli("detach", v.pid)
            check_eq(rc, 0, f"syssites {k}: detach ({err.strip()})")
            check_eq(text_matches_file(v.pid), [], f"syssites {k}: detach restored the files' bytes")
            check(v.proc.poll() is None and v.burst(), f"syssites {k}: it runs on after detach")
        finally:
            v.stop()
            d.stop(signal.SIGTERM)


class SignalVictim:
    """signal-victim: real-time signals queued by a sender process, writes
    of one byte to a pipe and getppid() calls from two threads, all counted
    by the process itself (signal_victim.c)."""

    def __init__(self, d, *argv):
        self.proc = subprocess.Popen([os.path.join(d.a.test_bin, "signal-victim"), *argv], stdout=subprocess.PIPE,
                                     text=True, preexec_fn=harness._die_with_parent)
        self.pid = self.proc.pid
        self.ready = self.proc.stdout.readline().startswith("ready")

    def report(self):
        """The counts once its sender stopped and every signal and byte had
        time to arrive: a dict, or {} if it died."""
        if self.proc.poll() is not None:
            return {}
        os.kill(self.pid, signal.SIGUSR2)
        line = self.proc.stdout.readline()  # up to 20 s: a lost signal or byte is waited for first
        return dict(kv.split("=") for kv in line.split()[1:]) if line.startswith("report") else {}

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def signals_killed(a, d, k):
    """A server killed after its kth ptrace request or memory write while
    attaching syscount to a signal-victim (then rewriting the syscall sites
    the payload reports): True if it was killed. The process lives, and no
    signal, syscall or written byte went missing."""
    # 1 ms between seizing and interrupting each thread: signals arriving
    # meanwhile stop it in their delivery (about 20 of the sender's)
    os.environ.update(BPFGRAFT_TEST_PTRACE_STOP=str(k), BPFGRAFT_TEST_SEIZE_WAIT_US="1000")
    try:
        d.start()
    finally:
        del os.environ["BPFGRAFT_TEST_PTRACE_STOP"], os.environ["BPFGRAFT_TEST_SEIZE_WAIT_US"]
    v = SignalVictim(d)
    try:
        check(v.ready, f"signals {k}: the process started")
        threads = len(os.listdir(f"/proc/{v.pid}/task"))
        d.cli("attach", v.pid, "syscount")
        killed = wait_died(d) == -signal.SIGKILL  # waited for only after the last step
        time.sleep(0.2)  # it runs on with no server
        d.start()
        if len(os.listdir(f"/proc/{v.pid}/task")) > threads:  # a payload thread: it reconnects (every 100 ms)
            wait_listed(d, [v.pid])
        rc, _, err = d.cli("detach", v.pid)
        check(rc == 0 or "not attached" in err, f"signals {k}: detach ({err.strip()})")
        r = v.report()
        check(r and r["sent"] == r["received"] and int(r["sent"]) > 0,
              f"signals {k}: the process lives, every queued signal was delivered", f"{r}")
        check(r and r["written"] == r["read"] and r["badwrite"] == "0",
              f"signals {k}: every write(2) wrote its byte", f"{r}")
        check(r and r["badppid"] == "0", f"signals {k}: no getppid() skipped", f"{r}")
        check_eq(text_matches_file(v.pid), [], f"signals {k}: detach left the files' bytes")
        return killed
    finally:
        v.stop()
        d.stop(signal.SIGTERM)


SIGNAL_STEP = 13  # ptrace steps between two kills: every stop of the attach and the rewrite is met


def part_signals(a, d):
    """kill -9 of the server at every SIGNAL_STEPth ptrace request or memory
    write of attaching syscount (payload, Syscall User Dispatch on every
    thread, stub pages, site rewrites) to a process receiving a stream of
    queued real-time signals and making write(2)/getppid() calls through
    dispatch: a thread stopped in a signal's delivery must not lose it
    when the tracer dies (injector/README.md, "Surviving the tracer")."""
    d.start()
    rc, _, err = d.cli("load", a.syscount)
    check_eq(rc, 0, f"signals: load syscount ({err.strip()})")
    d.stop(signal.SIGTERM)
    kills = 0
    for i in range(a.kills):
        if not signals_killed(a, d, 1 + i * SIGNAL_STEP):
            break
        kills += 1
    check(kills >= 20, f"signals: the server was killed at {kills} steps of the attach")


OTHER_ABI_PAYLOAD = r"""
import ctypes, os, socket, struct, sys
lib = ctypes.CDLL(sys.argv[2])
addr = ctypes.cast(lib.lib_probed_mul, ctypes.c_void_p).value
with open("/proc/self/mem", "r+b", buffering=0) as m:  # the jmp a payload of another version placed
    m.seek(addr)
    m.write(b"\xe9\x00\x00\x00\x00")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect("\0bpfgraft-payload:" + sys.argv[1])
hello = struct.pack("<IIQQQQQII", os.getpid(), 99, 7, 0x10000, 0, 0, 0, 0, 1)  # pid, ABI 99, token, base, ...
s.sendall(struct.pack("<IHHIi", 16 + len(hello), 1, 1, 0, 0) + hello)  # HELLO, BPFG_HELLO_F_RECONNECT
print("ready", flush=True)
sys.stdin.read()
"""


def part_abi(a, d):
    """A payload of another ABI version reconnecting (simulated: a process
    with a patched function saying HELLO with ABI 99): listed with a state
    that says so, attaches refused, detach restores its code."""
    d.start()
    lib = os.path.join(a.test_bin, "libattachvictim.so")
    p = subprocess.Popen([sys.executable, "-c", OTHER_ABI_PAYLOAD, d.socket, lib], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, preexec_fn=harness._die_with_parent)
    try:
        check_eq(p.stdout.readline().strip(), "ready", "abi: the process patched its code and said HELLO")
        check(text_matches_file(p.pid) != [], "abi: its text differs from its file")
        t = wait_listed(d, [p.pid]).get(p.pid, {})
        check_eq(t.get("state"), "other-abi-99", "abi: listed with state other-abi-99")
        rc, out, _ = d.cli("ps")
        row = next((l.split() for l in out.splitlines() if l.split()[:1] == [str(p.pid)]), [])
        check(rc == 0 and row[-1:] == ["other-abi-99"], "abi: bpfgraft ps shows the state", out)
        rc, _, err = d.cli("load", a.obj)
        check_eq(rc, 0, f"abi: load ({err.strip()})")
        rc, _, err = d.cli("attach", p.pid, "count", "add_entry", "--target", f"{lib}:lib_probed_mul")
        check(rc != 0 and "ABI 99" in err, "abi: an attach is refused, naming the ABI", err)
        rc, _, err = d.cli("detach", p.pid)
        check_eq(rc, 0, f"abi: detach ({err.strip()})")
        check_eq(text_matches_file(p.pid), [], "abi: after detach its text equals its file")
        check(p.poll() is None, "abi: the process runs on")
        with d.client() as cl:
            check(all(x["pid"] != p.pid for x in cl.call("target.list")), "abi: no longer listed")
    finally:
        p.kill()
        p.wait()
        d.stop(signal.SIGTERM)


def start_old_abi(a, d):
    """A server of payload ABI 2, as a previous version (simulated: this
    server told to speak ABI 2, injecting the payload built to say ABI 2)."""
    os.environ["BPFGRAFT_TEST_PAYLOAD_ABI"] = "2"
    try:
        d.start(["--payload", os.path.join(a.test_bin, "bpfgraft-payload-abi2.so")])
    finally:
        del os.environ["BPFGRAFT_TEST_PAYLOAD_ABI"]


def start_reinject_killed(d, k):
    """A server that SIGKILLs itself after step k of a re-injection, which
    it may reach before its socket is polled once (the re-injection starts
    as it listens): that death is the one wanted, for wait_died."""
    os.environ["BPFGRAFT_TEST_REINJECT_STOP"] = str(k)
    try:
        d.start()
    except RuntimeError:
        if d.proc is None or d.proc.returncode != -signal.SIGKILL:
            raise
    finally:
        del os.environ["BPFGRAFT_TEST_REINJECT_STOP"]


def old_abi_victim(a, d, n):
    """A 4-thread process counted (uprobe, uretprobe, uprobe in a library)
    by a server of payload ABI 2 that is then killed, counting on; with
    the map's counts before it started."""
    start_old_abi(a, d)
    c0 = counts(d)
    v = Victim(a, d.dir, n, threads=4)
    attach_counting(d, a, v)
    v.go(True)
    time.sleep(0.2)
    d.stop(signal.SIGKILL)
    time.sleep(0.2)
    return v, c0


def exact_since(d, v, c0, what):
    """With v's workload stopped, the map grew by v's own counts since c0."""
    v.go(False)
    c = counts(d)
    calls, lib = v.get(CTL_CALLS), v.get(CTL_LIB)
    check(calls > 0 and c[0] - c0[0] == calls and c[1] - c0[1] == calls and c[3] - c0[3] == lib,
          f"{what}: counts exact over the whole run", f"map {c0} -> {c}, {calls} calls, {lib} lib calls")
    v.go(True)


def reinjected(d, v, what):
    """v listed as re-injected with its 3 hooks; the old payload still mapped."""
    t = wait_listed(d, [v.pid]).get(v.pid, {})
    check(t.get("adopted") == "reinjected" and t.get("state") == "attached" and len(t.get("hooks", [])) == 3,
          f"{what}: listed as re-injected, attached, with its 3 hooks", f"{t}")
    check_eq(len(payload_images(v.pid)), 2, f"{what}: two payloads mapped (the old one stays)")


def detach_reinjected(d, v, what, images=1):
    """detach: the text equals its files, the old payload stays (and the
    one a re-injection killed halfway left)."""
    detach_all(d, [v], what, keeps_payload=[v.pid])
    check_eq(len(payload_images(v.pid)), images, f"{what}: the payload(s) left before it stay mapped, no other")
    check(v.alive() and calls_on(v), f"{what}: the process runs on", v.death())


def file_offset(binary, name):
    """The file offset of symbol name in binary (a uprobe's offset)."""
    out = subprocess.run(["nm", "--defined-only", binary], capture_output=True, text=True, check=True).stdout
    vaddr = next(int(w[0], 16) for w in (l.split() for l in out.splitlines()) if len(w) == 3 and w[2] == name)
    out = subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True, check=True).stdout
    for w in (l.split() for l in out.splitlines()):
        if w[:1] == ["LOAD"]:
            off, va, filesz = int(w[1], 16), int(w[2], 16), int(w[4], 16)
            if va <= vaddr < va + filesz:
                return vaddr - va + off
    raise LookupError(f"{name} is in no LOAD segment of {binary}")


def tool_counts_exact(bt, v, what, lib0=None):
    """With v's workload stopped, the tool's first map counted every call
    of probed_add, and its second (when lib0 is given) every call of
    lib_probed_mul since lib0."""
    v.go(False)
    calls, lib = v.get(CTL_CALLS), v.get(CTL_LIB)
    got = bt.ask("lookup 0")
    check(calls > 0 and got == f"lookup OK {calls}", f"{what}: every probed_add call counted once",
          f"the tool's map: {got}, the process made {calls} calls")
    if lib0 is not None:
        got = bt.ask("lookup 1")
        check(lib > lib0 and got == f"lookup OK {lib - lib0}", f"{what}: every lib_probed_mul call counted once",
              f"the tool's map: {got}, the process made {lib - lib0} calls")
    v.go(True)


def tool_adopted_old_abi(a, d):
    """A `bpfgraft run` tool whose payload is of payload ABI 2 (its server
    of ABI 2 SIGKILLed, this server started) is adopted: this server speaks
    ABI 2's tool channel (listing, log and ps say so); the process it
    probes is re-injected and its count goes on exactly over the whole run;
    a MAP_CREATE and a new attach from the tool work, also after the next
    restart; its detach leaves the process's text equal to its files."""
    exe = os.path.join(a.test_bin, "attach-victim-pie")
    lib = os.path.join(a.test_bin, "libattachvictim.so")
    start_old_abi(a, d)
    v = Victim(a, d.dir, 70, threads=4)
    bt = RunTool(d, [sys.executable, os.path.join(HERE, "bpf_tool.py")], "python3")
    try:
        check_eq(bt.ask("create"), "create OK", "tool abi 2: the ABI-2 server serves the tool's MAP_CREATE")
        check_eq(bt.ask("prog 0"), "prog OK", "tool abi 2: the ABI-2 server loads the tool's program")
        got = bt.ask(f"attach {v.pid} {exe} {file_offset(exe, 'probed_add')}", timeout=60)
        check(got == "attach OK", "tool abi 2: the ABI-2 server attaches it in another process",
              f"{got}; {bt.stderr()[-500:]}")
        pid = bt.pid(d)
        v.go(True)
        time.sleep(0.3)
        d.stop(signal.SIGKILL)
        time.sleep(0.3)  # counting goes on without a server
        d.start()
        got = wait_listed(d, [pid, v.pid])
        t = got.get(pid, {})
        check(t.get("state") == "attached" and t.get("adopted") == "tool-abi-2",
              "tool abi 2: the tool's payload listed as adopted (state attached, adopted tool-abi-2)", f"{t}")
        check_eq(got.get(v.pid, {}).get("adopted"), "reinjected", "tool abi 2: the probed process is re-injected")
        check_eq(wait_tools_running(d, [pid]).get(pid), "running", "tool abi 2: tool.list says it runs")
        check("adopted as a `bpfgraft run` tool" in d.log(), "tool abi 2: the log says it adopted the tool",
              d.log()[-2000:])
        rc, out, _ = d.cli("ps")
        check(rc == 0 and "(tool-abi-2)" in out, "tool abi 2: bpfgraft ps says it", out)
        time.sleep(0.3)
        tool_counts_exact(bt, v, "tool abi 2")
        check_eq(bt.ask("create"), "create OK", "tool abi 2: after the restart a MAP_CREATE is served")
        check_eq(bt.ask("prog 1"), "prog OK", "tool abi 2: after the restart a PROG_LOAD is served")
        v.go(False)
        lib0 = v.get(CTL_LIB)
        got = bt.ask(f"attach {v.pid} {lib} {file_offset(lib, 'lib_probed_mul')}", timeout=60)
        check(got == "attach OK", "tool abi 2: after the restart a new attach is served",
              f"{got}; {bt.stderr()[-500:]}")
        v.go(True)
        time.sleep(0.3)
        harness.wait_until(lambda: v.get(CTL_LIB) > lib0)  # a loaded machine may not run the threads that soon
        tool_counts_exact(bt, v, "tool abi 2 after a new attach", lib0)
        d.stop(signal.SIGKILL)  # the next server adopts the same tool again
        time.sleep(0.2)
        d.start()
        t = wait_listed(d, [pid, v.pid]).get(pid, {})
        check(t.get("adopted") == "tool-abi-2" and wait_tools_running(d, [pid]).get(pid) == "running",
              "tool abi 2: the next server adopts the tool again", f"{t}")
        time.sleep(0.3)
        tool_counts_exact(bt, v, "tool abi 2 after the next restart", lib0)
        v.go(False)
        check_eq(bt.ask("detach"), "detach OK", "tool abi 2: the tool closes its links")
        deadline = time.monotonic() + 10
        while text_matches_file(v.pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # the process attached for the tool leaves on the tick
        check_eq(text_matches_file(v.pid), [], "tool abi 2: after the tool's detach the text equals its files")
        check(v.alive(), "tool abi 2: the process lives", v.death())
        bt.stop()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and pid in wait_listed(d, []):
            time.sleep(0.05)
        check(pid not in wait_listed(d, []), "tool abi 2: the ended tool is no longer listed")
    finally:
        bt.stop()
        v.kill()
        d.stop(signal.SIGTERM)


REINJECT_STEPS = 5  # pending record, payload whole, new record, 2 stubs re-pointed (2 sites)


def part_reinject(a, d):
    """A payload of an older ABI, with the record its server left, is
    replaced by re-injection: same hooks (uprobe, uretprobe), same programs
    and map regions, counts exact over the whole run; the server killed
    after each step of the re-injection, the next one finishes it."""
    start_old_abi(a, d)
    rc, _, err = d.cli("load", a.obj)
    check_eq(rc, 0, f"reinject: load ({err.strip()})")
    d.stop(signal.SIGTERM)
    v, c0 = old_abi_victim(a, d, 40)
    try:
        d.start()
        reinjected(d, v, "reinject")
        check("replaced by re-injection" in d.log(), "reinject: the log says it re-injected", d.log()[-2000:])
        rc, out, _ = d.cli("ps")
        check(rc == 0 and "(reinjected)" in out, "reinject: bpfgraft ps says it re-injected", out)
        time.sleep(0.3)
        exact_since(d, v, c0, "reinject")
        d.stop(signal.SIGKILL)  # the new payload is adopted as any other
        time.sleep(0.2)
        d.start()
        t = wait_listed(d, [v.pid]).get(v.pid, {})
        check_eq(t.get("adopted"), "record", "reinject: after the next restart adopted from its record")
        exact_since(d, v, c0, "reinject after a restart")
        detach_reinjected(d, v, "reinject")
        d.stop(signal.SIGTERM)
    finally:
        v.kill()
    for k in range(1, REINJECT_STEPS + 1):
        v, c0 = old_abi_victim(a, d, 50 + k)
        try:
            start_reinject_killed(d, k)
            check_eq(wait_died(d), -signal.SIGKILL, f"reinject {k}: the server killed itself at step {k}")
            time.sleep(0.2)
            check(v.alive() and v.get(CTL_BAD) == 0, f"reinject {k}: the process lives", v.death())
            d.start()
            t = wait_listed(d, [v.pid]).get(v.pid, {})
            check(t.get("adopted") == ("reinjected" if k < 3 else "record") and len(t.get("hooks", [])) == 3,
                  f"reinject {k}: re-injected, or adopted from the new record, with its 3 hooks", f"{t}")
            if k in (3, 4):  # killed before a stub was re-pointed: done at this adoption
                check("finished the re-injection" in d.log(), f"reinject {k}: the stubs left are re-pointed now",
                      d.log()[-2000:])
            time.sleep(0.2)
            exact_since(d, v, c0, f"reinject {k}")
            detach_reinjected(d, v, f"reinject {k}", images=2 if k == 2 else 1)
            d.stop(signal.SIGTERM)
        finally:
            v.kill()
    tool_adopted_old_abi(a, d)


def sys_counts(d):
    """syscount's counts of write (1) and getppid (110)."""
    return syscall_count(d, 1), syscall_count(d, 110)


def old_abi_sys_victim(a, d):
    """A 4-thread signal-victim whose syscalls syscount counts (writes and
    getppid() through rewritten sites, the real-time signals' rt_sigreturn
    through dispatch), attached by a server of payload ABI 2 that is then
    killed; with the counts before its writers started."""
    start_old_abi(a, d)
    v = SignalVictim(d, "hold")
    c0 = sys_counts(d)
    rc, _, err = d.cli("attach", v.pid, "syscount")
    check_eq(rc, 0, f"reinjectsys: attach syscount by the ABI-2 server ({err.strip()})")
    os.kill(v.pid, signal.SIGUSR1)  # its writers start: every call is counted
    harness.wait_until(lambda: wait_listed(d, [v.pid]).get(v.pid, {}).get("syscall_sites"), timeout=20,
                       step=0.05)  # the sites they call through are rewritten
    d.stop(signal.SIGKILL)
    time.sleep(0.2)
    return v, c0


def sys_reinjected(d, v, what, adopted=("reinjected",), hooks=None):
    """v listed with its syscall program and rewritten sites (and hooks
    uprobes, unless None)."""
    t = wait_listed(d, [v.pid]).get(v.pid, {})
    check(t.get("adopted") in adopted and t.get("state") == "attached" and t.get("syscall_programs") == 1
          and t.get("syscall_sites", 0) > 0 and (hooks is None or len(t.get("hooks", [])) == hooks),
          f"{what}: listed ({'/'.join(adopted)}), attached, its syscall program and rewritten sites"
          + ("" if hooks is None else f" and {hooks} uprobe(s)"), f"{t}")


def sys_exact_detach(d, v, c0, what, images):
    """Its workload stopped: every signal delivered, every byte written
    arrived, the counts exact over the whole run; detach leaves the files'
    bytes, the payloads mapped before and no other; it runs on."""
    r = v.report()
    w, g = sys_counts(d)
    check(r and r["sent"] == r["received"] and int(r["sent"]) > 0, f"{what}: the process lives, every signal came",
          f"{r}")
    check(r and r["written"] == r["read"] and r["badwrite"] == "0" and r["badppid"] == "0" and int(r["calls"]) > 0
          and r["calls"] == r["written"], f"{what}: every write(2) and getppid() made once", f"{r}")
    calls = int(r.get("calls", -1))
    check(w - c0[0] == calls + 1 and g - c0[1] == calls, f"{what}: counts exact over the whole run",
          f"write {c0[0]} -> {w}, getppid {c0[1]} -> {g}, {calls} calls (and the report's write)")
    rc, _, err = d.cli("detach", v.pid)
    check_eq(rc, 0, f"{what}: detach ({err.strip()})")
    check_eq(text_matches_file(v.pid), [], f"{what}: detach left the files' bytes")
    check_eq(len(payload_images(v.pid)), images, f"{what}: the payloads stay mapped (a handler may be on a stack)")
    check(v.proc.poll() is None, f"{what}: it runs on after detach")


REINJECT_SYS_STEPS = 8  # pending record, payload whole, new record, 4 threads, SIGSYS action; then the stubs


def reinject_sys_killed(a, d, k):
    """The new server killed after step k of re-injecting the syscall
    hooks; the next one finishes. False once k is past the last step."""
    v, c0 = old_abi_sys_victim(a, d)
    try:
        start_reinject_killed(d, k)
        if wait_died(d, timeout=5) != -signal.SIGKILL:  # done in fewer steps: it was stopped
            check(k > REINJECT_SYS_STEPS, f"reinjectsys {k}: the server killed itself at step {k}", d.log()[-2000:])
            d.start()
            sys_reinjected(d, v, f"reinjectsys {k} (not killed)", adopted=("record",))
            sys_exact_detach(d, v, c0, f"reinjectsys {k} (not killed)", images=2)
            return False
        time.sleep(0.2)
        check(v.proc.poll() is None, f"reinjectsys {k}: the process lives")
        d.start()
        sys_reinjected(d, v, f"reinjectsys {k}", adopted=("reinjected",) if k < 3 else ("record",))
        if k >= 3:
            check("finished the re-injection" in d.log(), f"reinjectsys {k}: the rest is done at this adoption",
                  d.log()[-2000:])
        time.sleep(0.2)
        sys_exact_detach(d, v, c0, f"reinjectsys {k}", images=3 if k == 2 else 2)
        return True
    finally:
        v.stop()
        d.stop(signal.SIGTERM)


def part_reinjectsys(a, d):
    """A payload of an older ABI with syscall hooks (dispatch in 4 threads,
    rewritten sites), with the record its server left, is replaced by
    re-injection: its threads, SIGSYS action and sites' stubs move to the
    new payload; counts exact, every syscall made once, no signal lost;
    the same with the new server killed after each step."""
    start_old_abi(a, d)
    rc, _, err = d.cli("load", a.syscount)
    check_eq(rc, 0, f"reinjectsys: load syscount ({err.strip()})")
    d.stop(signal.SIGTERM)
    v, c0 = old_abi_sys_victim(a, d)
    try:
        d.start()
        sys_reinjected(d, v, "reinjectsys")
        check("replaced by re-injection" in d.log() and "1 syscall programs" in d.log(),
              "reinjectsys: the log says it re-injected its syscall program", d.log()[-2000:])
        rc, out, _ = d.cli("ps")
        check(rc == 0 and "(reinjected)" in out, "reinjectsys: bpfgraft ps says it re-injected", out)
        check_eq(len(payload_images(v.pid)), 2, "reinjectsys: two payloads mapped (the old one stays)")
        time.sleep(0.3)
        d.stop(signal.SIGKILL)  # the new payload is adopted as any other
        time.sleep(0.2)
        d.start()
        sys_reinjected(d, v, "reinjectsys after a restart", adopted=("record",))
        time.sleep(0.2)
        sys_exact_detach(d, v, c0, "reinjectsys", images=2)
        d.stop(signal.SIGTERM)
    finally:
        v.stop()
    k = 1
    while k < 40 and reinject_sys_killed(a, d, k):
        k += 1
    check(k > REINJECT_SYS_STEPS, f"reinjectsys: killed at each of {k - 1} steps, each finished by the next server")


class GoSysVictim:
    """go-sys-victim: goroutines calling getppid() and main.probed(),
    counting their calls (go_sys_victim.go)."""

    def __init__(self, a):
        self.proc = subprocess.Popen([os.path.join(a.test_bin, "go-sys-victim"), "4"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, preexec_fn=harness._die_with_parent)
        self.pid = self.proc.pid
        self.ready = self.proc.stdout.readline().strip() == "ready"

    def ask(self, line):
        """Its answer to a command line ("" once it died)."""
        if self.proc.poll() is not None:
            return ""
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def calls(self):
        """Its getppid() (and probed()) calls so far, its goroutines
        stopped (-1: dead)."""
        r = self.ask("report")
        return int(r.split("=")[1]) if r.startswith("report calls=") else -1

    def calls_past(self, since, run_s, timeout=20):
        """Its calls once past since, its goroutines let run run_s at a
        time (a loaded machine may not run them that soon), then stopped."""
        deadline = time.monotonic() + timeout
        while True:
            time.sleep(run_s)
            c = self.calls()
            if c > since or c < 0 or time.monotonic() > deadline:
                return c
            self.ask("go")

    def stop(self):
        self.proc.kill()
        self.proc.wait()


GO_MAPS = {}  # "syscount", "count": the id of each object's map "counts" (the name is in both)


def go_load(a, d):
    """syscount and count loaded, their maps' ids noted."""
    for obj, name in ((a.syscount, "syscount"), (a.obj, "count")):
        rc, _, err = d.cli("load", obj)
        check_eq(rc, 0, f"reinjectgo: load {name} ({err.strip()})")
        with d.client() as cl:
            ids = [m["id"] for m in cl.call("map.list") if m["name"] == "counts" and m["id"] not in GO_MAPS.values()]
        GO_MAPS[name] = ids[0] if ids else -1


def go_counts(d):
    """(getppid() calls syscount counted, main.probed() entries add_entry counted)."""
    out = []
    with d.client() as cl:
        for name, key in (("syscount", 110), ("count", 0)):
            try:
                r = cl.call("map.lookup", map=GO_MAPS[name], key=struct.pack("<I", key))
                out.append(struct.unpack("<Q", r["value"])[0])
            except Exception as e:  # syscount's hash has no key before the first call
                if "not_found" not in str(e) and "ENOENT" not in str(e):
                    raise
                out.append(0)
    return tuple(out)


def old_abi_go_victim(a, d):
    """A Go process whose syscalls syscount counts (every site of its
    binary rewritten, no dispatch) and whose main.probed a uprobe counts,
    attached by a server of payload ABI 2 that is then killed while its
    goroutines run; with the counts before they started."""
    start_old_abi(a, d)
    v = GoSysVictim(a)
    check(v.ready, "reinjectgo: the Go victim started")
    c0 = go_counts(d)
    rc, _, err = d.cli("attach", v.pid, "syscount")
    check_eq(rc, 0, f"reinjectgo: attach syscount to the Go process by the ABI-2 server ({err.strip()})")
    rc, _, err = d.cli("attach", v.pid, "count", "add_entry", "--target", ":main.probed")
    check_eq(rc, 0, f"reinjectgo: attach a uprobe on main.probed by the ABI-2 server ({err.strip()})")
    check_eq(v.ask("go"), "going", "reinjectgo: its goroutines start")
    time.sleep(0.3)
    d.stop(signal.SIGKILL)
    time.sleep(0.2)
    return v, c0


def go_reinjected(d, v, what, adopted=("reinjected",)):
    """v listed with its syscall program, rewritten sites and uprobe."""
    sys_reinjected(d, v, what, adopted, hooks=1)


def go_runs_in_new_payload(d, v, what):
    """A burst of calls runs syscount and add_entry in the payload the
    server serves (run_cnt: read from its stats table) at least once per
    call: the stubs enter the new payload, not the replaced one (which
    would count them just as well)."""
    rc, _, err = d.cli("stats", "enable")
    check_eq(rc, 0, f"{what}: stats enable ({err.strip()})")
    with d.client() as cl:
        def runs():
            return [cl.call("prog.show", prog=p)["run_cnt"] for p in ("sys_enter", "add_entry")]
        c0, r0 = v.calls(), runs()
        v.ask("go")
        c1, r1 = v.calls_past(c0, 0.3), runs()
    check(c1 > c0 and r1[0] - r0[0] >= c1 - c0 and r1[1] - r0[1] == c1 - c0,
          f"{what}: its syscalls and probe run the new payload's programs",
          f"calls {c0} -> {c1}, run_cnt sys_enter {r0[0]} -> {r1[0]}, add_entry {r0[1]} -> {r1[1]}")
    d.cli("stats", "disable")
    v.ask("go")


def go_exact_detach(d, v, c0, what, images):
    """Its goroutines stopped: every getppid() and main.probed() call
    counted once over the whole run; detach leaves the file's bytes, the
    payloads mapped before and no other; it runs on."""
    calls = v.calls()
    got = go_counts(d)
    check(calls > 0 and got[0] - c0[0] == calls and got[1] - c0[1] == calls,
          f"{what}: getppid() and main.probed() counted exactly over the whole run",
          f"getppid {c0[0]} -> {got[0]}, probed {c0[1]} -> {got[1]}, the process made {calls} of each")
    rc, _, err = d.cli("detach", v.pid)
    check_eq(rc, 0, f"{what}: detach ({err.strip()})")
    check_eq(text_matches_file(v.pid), [], f"{what}: detach left the Go text equal to its file")
    check_eq(len(payload_images(v.pid)), images, f"{what}: the payloads mapped before stay, no other")
    going = v.ask("go")
    check(going == "going" and v.calls_past(calls, 0.2) > calls, f"{what}: it runs on after detach")


def reinject_go_killed(a, d, k):
    """The new server killed after step k (1-3: the pending record, the new
    payload whole, its record) of re-injecting the Go process's hooks; the
    next one finishes."""
    v, c0 = old_abi_go_victim(a, d)
    try:
        start_reinject_killed(d, k)
        check_eq(wait_died(d), -signal.SIGKILL, f"reinjectgo {k}: the server killed itself at step {k}")
        time.sleep(0.2)
        check(v.proc.poll() is None, f"reinjectgo {k}: the process lives")
        d.start()
        go_reinjected(d, v, f"reinjectgo {k}", adopted=("reinjected",) if k < 3 else ("record",))
        if k == 3:
            check("finished the re-injection" in d.log(), f"reinjectgo {k}: the stubs are re-pointed at this adoption",
                  d.log()[-2000:])
        time.sleep(0.2)
        go_exact_detach(d, v, c0, f"reinjectgo {k}", images=3 if k == 2 else 2)
    finally:
        v.stop()
        d.stop(signal.SIGTERM)


def reinject_go_stub_by_stub(a, d, stubs):
    """Killed after the new record (step 3), then each next server killed
    after re-pointing one stub (the syscall sites', then the uprobe's):
    `stubs` servers die, one stub each; the one after finds them all done
    and lives on."""
    v, c0 = old_abi_go_victim(a, d)
    try:
        start_reinject_killed(d, 3)
        check_eq(wait_died(d), -signal.SIGKILL, "reinjectgo stubs: the server killed itself after the new record")
        died = 0
        while died <= stubs:
            start_reinject_killed(d, 1)
            if wait_died(d) != -signal.SIGKILL:
                break
            died += 1
            check(v.proc.poll() is None, f"reinjectgo stubs: the process lives after {died} stubs")
        check_eq(died, stubs, "reinjectgo stubs: a server killed after each stub's write, the next one going on")
        d.start()
        go_reinjected(d, v, "reinjectgo stubs", adopted=("record",))
        go_runs_in_new_payload(d, v, "reinjectgo stubs")
        go_exact_detach(d, v, c0, "reinjectgo stubs", images=2)
    finally:
        v.stop()
        d.stop(signal.SIGTERM)


def part_reinjectgo(a, d):
    """A pure Go process's syscall hooks (every syscall site of its binary
    rewritten up front, no Syscall User Dispatch) and uprobe, under a
    server of an older ABI, with the record it left, are re-injected: the
    new payload gets syscount and the uprobe's program, every stub enters
    it; getppid() and main.probed() counted exactly over the whole run
    (equal to the process's own count); the same with the new server
    killed after each step (3, then one per stub), the next server
    finishing; detach leaves the Go text equal to its file."""
    if not os.path.exists(os.path.join(a.test_bin, "go-sys-victim")):
        harness.skip("reinjectgo: no go-sys-victim (golang-go not installed when built)")
        return
    start_old_abi(a, d)
    go_load(a, d)
    d.stop(signal.SIGTERM)
    v, c0 = old_abi_go_victim(a, d)
    try:
        d.start()
        go_reinjected(d, v, "reinjectgo")
        log = d.log()
        m = re.search(r"replaced by re-injection: .* 1 hooks \(1 re-pointed\), 1 syscall programs \((\d+) sites\)", log)
        check(m is not None and int(m.group(1)) > 0, "reinjectgo: the log says it re-injected its hook and syscall "
              "program", log[-2000:])
        sites = int(m.group(1)) if m else 0
        rc, out, _ = d.cli("ps")
        check(rc == 0 and "(reinjected)" in out, "reinjectgo: bpfgraft ps says it re-injected", out)
        check_eq(len(payload_images(v.pid)), 2, "reinjectgo: two payloads mapped (the old one stays)")
        go_runs_in_new_payload(d, v, "reinjectgo")
        d.stop(signal.SIGKILL)  # the new payload is adopted as any other
        time.sleep(0.2)
        d.start()
        go_reinjected(d, v, "reinjectgo after a restart", adopted=("record",))
        check("finished the re-injection" not in d.log(), "reinjectgo: nothing left to finish after a restart")
        time.sleep(0.2)
        go_exact_detach(d, v, c0, "reinjectgo", images=2)
        d.stop(signal.SIGTERM)
    finally:
        v.stop()
    for k in (1, 2, 3):
        reinject_go_killed(a, d, k)
    reinject_go_stub_by_stub(a, d, sites + 1)


def part_orphan(a, d):
    d.start(["--orphan-grace", "0.5"])
    d.cli("load", a.obj)
    v = Victim(a, d.dir, 20)
    try:
        attach_counting(d, a, v)
        v.go(True)
        time.sleep(0.2)
        d.stop(signal.SIGKILL)
        time.sleep(1.5)  # past the grace period: inert
        d.start()  # with its state: the inert hooks get their programs back
        listed = wait_listed(d, [v.pid])
        t = listed.get(v.pid, {})
        check(t.get("state") == "attached" and len(t.get("hooks", [])) == 3,
              "orphan: adopted with its record: re-armed, its 3 hooks listed", f"{listed}")
        v.go(False)
        c1, calls1, lib1 = counts(d), v.get(CTL_CALLS), v.get(CTL_LIB)
        check(c1[0] < calls1, "orphan: while inert no program counted", f"map {c1}, {calls1} calls made")
        v.go(True)
        time.sleep(0.3)
        calls_on(v)  # a loaded machine may not run the threads that soon
        v.go(False)
        c2, calls2, lib2 = counts(d), v.get(CTL_CALLS), v.get(CTL_LIB)
        check(calls2 > calls1 and c2[0] - c1[0] == calls2 - calls1 and c2[1] - c1[1] == calls2 - calls1
              and c2[3] - c1[3] == lib2 - lib1, "orphan: re-armed: every call counted again, exactly",
              f"map {c1} -> {c2}, calls {calls1} -> {calls2}, lib calls {lib1} -> {lib2}")
        v.go(True)
        d.stop(signal.SIGKILL)
        time.sleep(1.5)  # inert again
        c_state = os.path.join(d.state, "restart")
        shutil.rmtree(c_state)  # a server that never knew it
        d.start()
        listed = wait_listed(d, [v.pid])
        t = listed.get(v.pid)
        check(t is not None, "orphan: a fresh server with no state lists it", f"{listed}")
        check(t is not None and t.get("state") == "inert", "orphan: listed as inert", f"{t}")
        check(calls_on(v), "orphan: the process runs on")
        detach_all(d, [v], "orphan")
    finally:
        v.kill()
        d.stop(signal.SIGTERM)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--test-bin", required=True)
    ap.add_argument("--obj", required=True)
    ap.add_argument("--scripts", required=True)
    ap.add_argument("--only", default="")
    ap.add_argument("--kills", type=int, default=50)
    ap.add_argument("--inject", default="", help="bpfgraft-inject (part failed)")
    ap.add_argument("--syscount", required=True, help="samples' syscount.bpf.o (raw syscall tracepoint)")
    ap.add_argument("--opensnoop", required=True, help="skel-opensnoop (the tool under bpfgraft run in the loop)")
    a = ap.parse_args()
    sys.path.insert(0, a.scripts)
    parts = {"crash": part_crash, "graceful": part_graceful, "orphan": part_orphan, "loop": part_loop,
             "takeover": part_takeover, "stress": part_stress, "syscalls": part_syscalls, "abi": part_abi,
             "patching": part_patching, "failed": part_failed, "toolsdown": part_toolsdown, "timers": part_timers,
             "execwatch": part_execwatch, "layout": part_layout, "syssites": part_syssites,
             "attachsteps": part_attachsteps, "signals": part_signals,
             "reinject": part_reinject, "reinjectsys": part_reinjectsys, "tickets": part_tickets,
             "reinjectgo": part_reinjectgo}
    for name, fn in parts.items():
        if a.only and name not in a.only.split(","):
            continue
        d = Daemon(a, tempfile.mkdtemp(prefix="bpfgraft-restart-"))
        try:
            fn(a, d)
        except Exception as e:  # counted, the rest still runs
            import traceback
            traceback.print_exc()
            check(False, f"{name}: raised {e}")
            print(d.log()[-3000:])
        finally:
            d.stop(signal.SIGKILL)
            if not os.environ.get("BPFGRAFT_KEEP"):
                shutil.rmtree(d.dir, ignore_errors=True)
    sys.exit(report())


if __name__ == "__main__":
    main()
