"""`bpfgraft run` tools with kernel parts: Debian's execsnoop (its
sys_enter_execve program reads the parent pid through bpf_get_current_task,
a kernel-only helper; its sys_exit_execve program runs at the return of
execve, in the new image) prints the same lines under bpfgraft as under
the kernel for the same known commands started by a bpfgraft-managed
shell. The programs are listed as running in the kernel, and they leave
the kernel when the tool ends. A ring buffer written by a uprobe in a
managed process (userspace) and by a kernel program (a tracepoint calling
bpf_get_current_task) reaches the tool whole, as under the kernel."""
import argparse
import json
import os
import pty
import select
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import (Server, check, check_eq, ensure_libbpf_tools, finish, report, require,  # noqa: E402
                     tcp_listener, tracefs, wait_until)

EXECSNOOP = "/usr/sbin/execsnoop"
PROGS = ("tracepoint__syscalls__sys_enter_execve", "tracepoint__syscalls__sys_exit_execve")


class Tool:
    """A tool whose stdout is a pty (line-buffered), read line by line."""

    def __init__(self, argv):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.PIPE, text=True)
        os.close(slave)
        self.buf = b""
        self.lines = []

    def poll(self, secs):
        end = time.monotonic() + secs
        while time.monotonic() < end and select.select([self.master], [], [], 0.05)[0]:
            try:
                self.buf += os.read(self.master, 65536)
            except OSError:
                break
        *done, self.buf = self.buf.split(b"\n")
        self.lines += [l.decode(errors="replace").rstrip("\r") for l in done]

    def wait_line(self, needle, secs):
        end = time.monotonic() + secs
        while time.monotonic() < end:
            self.poll(0.1)
            if any(needle in l for l in self.lines):
                return True
        return False

    def stop(self):
        self.proc.send_signal(2)
        _, err = finish(self.proc, 20)
        self.poll(0.2)
        os.close(self.master)
        return err


def shell_run(shell, args):
    """Runs args in the background of shell; the child's pid."""
    shell.stdin.write(f"{args} >/dev/null & echo pid $!; wait\n")
    shell.stdin.flush()
    line = shell.stdout.readline().split()
    return int(line[1]) if len(line) == 2 and line[0] == "pid" else 0


def session(tool, shell, tag, n):
    """Waits until tool sees the shell's execs, then runs n known commands:
    their lines, pids and ppids made names (CHILD, SHELL), the tag removed."""
    ready = False
    for i in range(100):
        shell_run(shell, f"/bin/true {tag}-warmup-{i}")
        if tool.wait_line(f"{tag}-warmup-{i}", 0.3):
            ready = True
            break
    check(ready, f"{tag}: execsnoop prints the shell's commands")
    pids = [shell_run(shell, f"/bin/echo {tag}-cmd-{i} a 'b c'") for i in range(n)]
    for i in range(n):
        tool.wait_line(f"{tag}-cmd-{i} ", 20)
    out = []
    for line in tool.lines:
        if f"{tag}-cmd-" not in line:
            continue
        f = line.split(None, 4)
        if len(f) < 5:
            out.append(line)
            continue
        f[1] = "CHILD" if int(f[1]) in pids else f[1]
        f[2] = "SHELL" if int(f[2]) == shell.pid else f[2]
        out.append(" ".join(f).replace(tag, "TAG"))
    return out


def kernel_progs():
    r = subprocess.run(["bpftool", "-j", "prog", "list"], capture_output=True, text=True)
    return [p["id"] for p in json.loads(r.stdout or "[]") if p.get("name", "") in [n[:15] for n in PROGS] + list(PROGS)]


def execsnoop_runs(srv):
    """Where the running tool's execsnoop programs run (names cut to 15
    characters by bpf(): both are "tracepoint__sys"; feature probes left out)."""
    rc, tools, _ = srv.cli_json("tools")
    objs = [t["object"] for t in tools or []]
    rc, progs, _ = srv.cli_json("prog", "list")
    return sorted(p["runs"] for p in progs or [] if p["object"] in objs and p["name"] == PROGS[0][:15])


def wait_kernel_progs(srv, want):
    end = time.monotonic() + 30
    while time.monotonic() < end:
        runs = execsnoop_runs(srv)
        if len(runs) == want:
            return runs
        time.sleep(0.2)
    return runs


def ringmix_counts(tool, want):
    """The tool's "user U kernel K bad B" once both sides reached want (or 30 s)."""
    end = time.monotonic() + 30
    while True:
        tool.stdin.write("count\n")
        tool.stdin.flush()
        line = tool.stdout.readline().strip()
        if line == f"user {want} kernel {want} bad 0" or time.monotonic() > end:
            return line
        time.sleep(0.2)


def wait_unhooked(srv, pid, deadline_s=30):
    """Waits until an ended tool's hooks have left pid (in the background,
    after the tool exits): a kernel uprobe registered on a function while
    bpfgraft's patch is still there is lost for that process when the
    patch is taken out (the kernel's int3 is written over)."""
    end = time.monotonic() + deadline_s
    while True:
        _, ps, _ = srv.cli_json("ps")
        hooks = [h for t in ps or [] if t["pid"] == pid for h in t["hooks"]]
        if not hooks or time.monotonic() > end:
            check_eq(hooks, [], "the ended tool's hooks left the victim")
            return
        time.sleep(0.05)


def check_ringmix(srv, args):
    ls = tcp_listener()
    victim = subprocess.Popen([os.path.join(args.bin_dir, "connlat-victim"), str(ls.getsockname()[1])],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    tool_argv = [os.path.join(args.test_bin, "ringmix-tool"), args.ringmix_obj, str(victim.pid)]
    try:
        check_eq(victim.stdout.readline().strip(), "ready", "the connecting victim is ready")
        rc, _, err = srv.cli("attach", victim.pid)
        check_eq(rc, 0, f"the victim joins bpfgraft ({err.strip()})")
        runs = {("bpfgraft run", 25): [srv.cli_bin, "--socket", srv.socket, "run", "--"] + tool_argv,
                ("the kernel", 15): tool_argv}
        for (name, n), argv in runs.items():
            tool = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            check_eq(tool.stdout.readline().strip(), "attached", f"ringmix-tool under {name} attached")
            if name == "bpfgraft run":
                rc, progs, _ = srv.cli_json("prog", "list")
                where = sorted((p["name"], p["runs"]) for p in progs or [] if p["name"] in ("user_side", "kernel_side"))
                check_eq(where, [("kernel_side", "kernel"), ("user_side", "userspace"), ("user_side", "userspace")],
                         "the uprobe runs in the victim, the tracepoint in the kernel (loaded and attached copies)")
            connects = f"{n}\n"
            victim.stdin.write(connects)
            victim.stdin.flush()
            check_eq(victim.stdout.readline().split(), ["done", str(n), "failed", "0"], f"{n} connects")
            got = ringmix_counts(tool, n)
            _, err = finish(tool, 20)  # end of input: it exits
            if name == "bpfgraft run":
                wait_unhooked(srv, victim.pid)
            if got != f"user {n} kernel {n} bad 0":
                print(err[-600:])
            check_eq(got, f"user {n} kernel {n} bad 0", f"under {name}: the ring buffer brought {n} records from each side")
    finally:
        victim.kill()
        victim.wait()
        ls.close()


def execsnoop_both_sides(args):
    """execsnoop under bpfgraft then under the kernel, same commands; then the
    ring buffer fed from both sides."""
    n = 5
    with Server(args) as srv:
        shell = subprocess.Popen(["/bin/bash", "--norc", "--noprofile"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)
        try:
            rc, _, err = srv.cli("attach", shell.pid)
            check_eq(rc, 0, f"the shell joins bpfgraft ({err.strip()})")

            tool = Tool([srv.cli_bin, "--socket", srv.socket, "run", "--", EXECSNOOP])
            runs = wait_kernel_progs(srv, 2)
            check_eq(runs, ["kernel", "kernel"], "prog list: both execsnoop programs run in the kernel")
            ours = session(tool, shell, f"bpfg{os.getpid()}", n)
            err = tool.stop()
            print("\n".join(tool.lines[:3] + ours), err[-800:])
            check(tool.lines and tool.lines[0].split()[:5] == ["PCOMM", "PID", "PPID", "RET", "ARGS"],
                  "execsnoop under bpfgraft: its own header", repr(tool.lines[:1]))
            wait_until(lambda: not execsnoop_runs(srv), timeout=20, step=0.2)  # the server sees the tool end
            check_eq(execsnoop_runs(srv), [], "the tool ended: its programs are gone")
            end = time.monotonic() + 30
            while kernel_progs() and time.monotonic() < end:
                time.sleep(0.2)
            check_eq(kernel_progs(), [], "and the kernel has none of them left")

            tool = Tool([EXECSNOOP])
            theirs = session(tool, shell, f"kern{os.getpid()}", n)
            tool.stop()
            print("\n".join(theirs))
            check_eq(len(theirs), n, f"under the kernel: one line per command ({n})")
            # per-CPU perf buffers: lines of commands run on two CPUs may come
            # in either order, under the kernel as under bpfgraft
            check_eq(sorted(ours), sorted(theirs), "execsnoop prints the same lines under bpfgraft as under the kernel")
            check(all(l.split()[:4] == ["echo", "CHILD", "SHELL", "0"] for l in ours),
                  "each line has the command's comm, its pid, the shell as parent and ret 0", repr(ours[:2]))
            check(shell.poll() is None, "the shell still runs")
            check_ringmix(srv, args)
        finally:
            shell.kill()
            shell.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--test-bin", required=True)
    ap.add_argument("--ringmix-obj", required=True)
    args = ap.parse_args()
    require("root", "bpf-tracing", "btf", "tracefs")
    ensure_libbpf_tools(os.path.basename(EXECSNOOP))
    check(os.access(EXECSNOOP, os.X_OK), "libbpf-tools' execsnoop is installed")
    with tracefs():
        execsnoop_both_sides(args)
    return report()


if __name__ == "__main__":
    sys.exit(main())
