#!/usr/bin/env python3
"""The libbpf skeleton samples (samples/skel) under the kernel, each
against a real workload: skel-malloc counts an exact number of mallocs,
skel-opensnoop sees the unique paths a process opens, skel-bashreadline
sees the command typed into a bash on a pty. Needs root and kernel BPF
(a part this machine cannot run is skipped, with the reason).

  test_skel.py --bin-dir BUILD/bin --only malloc|opensnoop|bashreadline
"""
import argparse
import os
import pty
import select
import signal
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cli"))
from harness import TRACEFS, check, finish, needs, report, skip, tracefs  # noqa: E402

# What each part needs of the machine (test/facts/facts.h); without it the
# part is skipped, with the reason.
NEEDS = {
    "malloc": ("root", "bpf-tracing", "btf"),
    "opensnoop": ("root", "bpf-tracing", "btf", "tracefs"),   # mounted here if absent
    "bashreadline": ("root", "bpf-tracing", "btf"),
}


def start_tool(argv):
    """Starts a skel tool; returns once it printed its header, i.e. after
    the probes are attached (the loaders print it only then)."""
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    header = []
    deadline = time.time() + 15
    while time.time() < deadline:
        ready, _, _ = select.select([p.stdout], [], [], 0.5)
        if ready:
            line = p.stdout.readline()
            if not line:
                break
            header.append(line)
            if line.startswith(("TIME", "PID")):
                return p, header
        elif p.poll() is not None:
            break
    out, err = finish(p, 5)
    raise RuntimeError(f"{argv[0]} did not start: {''.join(header)}{out}{err}")


def reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def stopped_victim(path, *args):
    """Forks a child that stops itself and, once continued, execs path: the
    probe is in place before the victim runs its first instruction."""
    pid = os.fork()
    if pid == 0:
        try:
            os.kill(os.getpid(), signal.SIGSTOP)
            os.execv(path, [os.path.basename(path), *args])
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status)
    return pid


def malloc_rows(out, pid):
    rows = []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 7 and f[1] == str(pid):
            rows.append([int(x) for x in f[3:]])
    return rows


def test_malloc(a):
    tool = os.path.join(a.bin_dir, "skel-malloc")
    victim = os.path.join(a.bin_dir, "malloc-victim")
    # 10 ms apart; below 100 so the victim never prints (stdio would add
    # its buffer's malloc)
    n = 99
    want_bytes = sum(64 + i % 64 for i in range(1, n + 1))
    pids = []
    try:
        target = stopped_victim(victim, str(n))
        decoy = stopped_victim(victim, str(n))
        pids += [target, decoy]
        p, header = start_tool([tool, "-p", str(target), "-i", "1", "-d", "3"])
        # halfway into the first interval: the ~1 s of mallocs spans two
        time.sleep(0.5)
        os.kill(target, signal.SIGCONT)
        os.kill(decoy, signal.SIGCONT)
        for pid in (target, decoy):
            os.waitpid(pid, 0)
        pids.clear()
        out, err = finish(p, 15)
        check(p.returncode == 0, "malloc: -d 3 ends the run with status 0", err)
        rows = malloc_rows(out, target)
        busy = [r for r in rows if r[0] > 0]
        check(len(rows) >= 3, f"malloc: one line per interval for -p ({len(rows)} lines)", out)
        check(rows and rows[-1][2] == n and rows[-1][3] == want_bytes,
              f"malloc: exact totals {n} calls / {want_bytes} bytes",
              repr(rows[-1] if rows else out))
        check(sum(r[0] for r in rows) == n and sum(r[1] for r in rows) == want_bytes,
              "malloc: the per-interval deltas add up to the totals", repr(rows))
        check(busy and all(r[0] <= 110 for r in busy),
              "malloc: no interval counts more than the victim's 100/s pace", repr(rows))
        check(not malloc_rows(out, decoy), "malloc: -p leaves the other victim out", out)

        # the pid's own libc by default (-b below overrides it)
        check(f"libc.so.6 for pid {target}" in header[0], "malloc: the header names the resolved libc",
              repr(header))

        # SIGINT: prompt, clean exit with the final totals
        v = subprocess.Popen([victim], stdout=subprocess.DEVNULL)
        pids.append(v.pid)
        p, _ = start_tool([tool, "-p", str(v.pid), "-b", "/lib/x86_64-linux-gnu/libc.so.6", "-i", "1"])
        time.sleep(1.5)
        t0 = time.time()
        p.send_signal(signal.SIGINT)
        out, err = finish(p, 10)
        rows = malloc_rows(out, v.pid)
        check(p.returncode == 0 and time.time() - t0 < 3, "malloc: SIGINT stops it cleanly", err)
        check(rows and rows[-1][2] >= 100, "malloc: a running victim is counted (>= 100 calls in 1.5 s)",
              repr(rows))

        r = subprocess.run([tool, "-p", "999999999"], capture_output=True, text=True, timeout=10)
        check(r.returncode != 0, "malloc: a bad pid is refused", r.stderr)
    finally:
        for pid in pids:
            reap(pid)


def tracefs_mounted():
    with open("/proc/self/mounts") as f:
        return any(l.split()[1] == TRACEFS and l.split()[2] == "tracefs" for l in f)


def opener(paths):
    """A child that opens paths once released through the returned pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(w)
            os.read(r, 1)
            for path in paths:
                try:
                    os.close(os.open(path, os.O_RDONLY))
                except OSError:
                    pass
        finally:
            os._exit(0)
    os.close(r)
    return pid, w


def snoop_rows(out):
    rows = {}
    for line in out.splitlines():
        f = line.split(None, 4)
        if len(f) == 5 and f[0].isdigit():
            rows.setdefault(f[4], []).append((int(f[0]), f[1], int(f[2]), int(f[3])))
    return rows


def test_opensnoop(a):
    tool = os.path.join(a.bin_dir, "skel-opensnoop")
    absent = not tracefs_mounted()
    pids, fds = [], []
    tmp = tempfile.mkdtemp(prefix="skel-opensnoop-")
    try:
        with tracefs():
            snoop_runs(tool, tmp, pids, fds)
    finally:
        for pid in pids:
            reap(pid)
        for w in fds:
            try:
                os.close(w)
            except OSError:
                pass
        for name in os.listdir(tmp):
            os.unlink(os.path.join(tmp, name))
        os.rmdir(tmp)
    if absent and not os.path.exists("/run/bpfgraft-tests-tracefs"):   # no other test uses it now
        check(not tracefs_mounted(), "opensnoop: the tracefs mount made for the test is gone")


def snoop_runs(tool, tmp, pids, fds):
    """opensnoop -p of a child opening two files, a decoy beside it."""
    tag = uuid.uuid4().hex
    exist = os.path.join(tmp, f"exists-{tag}")
    missing = os.path.join(tmp, f"missing-{tag}")
    other = os.path.join(tmp, f"decoy-{tag}")
    with open(exist, "w") as f:
        f.write("x")
    with open(other, "w") as f:
        f.write("x")

    for flags, name in (([], "all opens"), (["-x"], "failed only")):
        target, tw = opener([exist, missing])
        decoy, dw = opener([other])
        pids += [target, decoy]
        fds += [tw, dw]
        p, _ = start_tool([tool, "-p", str(target), "-d", "2", *flags])
        for w in (tw, dw):
            os.write(w, b"g")
        for pid in (target, decoy):
            os.waitpid(pid, 0)
        pids.clear()
        out, err = finish(p, 15)
        rows = snoop_rows(out)
        check(p.returncode == 0, f"opensnoop ({name}): -d 2 ends the run with status 0", err)
        if not flags:
            check(rows.get(exist) and rows[exist][0][0] == target and rows[exist][0][2] >= 0
                  and rows[exist][0][3] == 0,
                  "opensnoop: the existing file's line has the pid, an fd and ERR 0", out)
        else:
            check(exist not in rows, "opensnoop -x: the successful open is left out", out)
        check(rows.get(missing) and rows[missing][0][0] == target and rows[missing][0][2] == -1
              and rows[missing][0][3] == 2,
              f"opensnoop ({name}): the missing file's line has FD -1 ERR 2 (ENOENT)", out)
        check(other not in rows and all(r[0] == target for v in rows.values() for r in v),
              f"opensnoop ({name}): -p leaves the other process out", out)


def spawn_bash():
    pid, fd = pty.fork()
    if pid == 0:
        try:
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TERM": "dumb", "PS1": "$ "}
            os.execve("/bin/bash", ["bash", "--norc", "--noprofile", "+o", "history", "-i"], env)
        finally:
            os._exit(127)
    return pid, fd


def drain(fd, seconds):
    """Reads what bash echoes so its pty never fills up."""
    data = b""
    end = time.time() + seconds
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                data += os.read(fd, 4096)
            except OSError:
                break
    return data


def test_bashreadline(a):
    tool = os.path.join(a.bin_dir, "skel-bashreadline")
    shells = []
    try:
        target = spawn_bash()
        decoy = spawn_bash()
        shells += [target, decoy]
        for _, fd in shells:
            drain(fd, 0.3)
        p, _ = start_tool([tool, "-p", str(target[0]), "-d", "3"])
        tag = uuid.uuid4().hex[:12]
        cmd = f"echo skel-target-{tag}"
        # each bash already sits in readline(): a uretprobe only sees calls
        # entered after it was placed, so one line first completes that call
        for (_, fd), line in ((target, "true"), (decoy, "true"), (target, cmd),
                              (decoy, f"echo skel-decoy-{tag}")):
            os.write(fd, (line + "\n").encode())
            drain(fd, 0.2)
        seen = drain(target[1], 0.3)
        out, err = finish(p, 15)
        check(p.returncode == 0, "bashreadline: -d 3 ends the run with status 0", err)
        hits = [l.split(None, 2) for l in out.splitlines() if l.endswith(cmd)]
        check(len(hits) == 1 and hits[0][1] == str(target[0]) and hits[0][2] == cmd,
              "bashreadline: the typed command is printed once with bash's pid", out)
        check(f"skel-decoy-{tag}" not in out, "bashreadline: -p leaves the other bash out", out)
        os.write(target[1], b"echo still-alive\n")
        check(b"still-alive" in drain(target[1], 0.5) + seen, "bashreadline: bash keeps working after detach")
    finally:
        for pid, fd in shells:
            reap(pid)
            os.close(fd)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--only", choices=["malloc", "opensnoop", "bashreadline"], action="append")
    a = ap.parse_args()
    for name in a.only or ["malloc", "opensnoop", "bashreadline"]:
        why = needs(*NEEDS[name])
        if why:
            skip(f"{name}: {why}")
            continue
        try:
            globals()[f"test_{name}"](a)
        except Exception as e:  # a crashed part is a failure, not a skip
            check(False, f"{name}: ran to the end", repr(e))
    return report()


if __name__ == "__main__":
    sys.exit(main())
