"""`bpfgraft run`: unmodified libbpf tools (Debian's libbpf-tools package
and the skeleton samples) with their BPF side served by a real bpfgraftd,
against bpfgraft-managed processes; the same tools under the kernel for
the same workload, side by side (tracefs mounted for that and unmounted
again if this test mounted it)."""
import argparse
import contextlib
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import (Server, check, check_eq, ensure_libbpf_tools, finish, report, require,  # noqa: E402
                     text_matches_file, tracefs, wait_exe, wait_handler, wait_mapped, wait_until)

TOOLS = "/usr/sbin"


def run_tool(srv, argv, timeout=60):
    r = subprocess.run([srv.cli_bin, "--socket", srv.socket, "run", "--"] + argv,
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def run_kernel(argv, timeout=60):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def victim_alive(p):
    return p.poll() is None


def exec_mappings(pid):
    """pid's executable mappings: (start, end, name) each."""
    out = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if "x" in parts[1]:
                out.add((parts[0], parts[5] if len(parts) > 5 else ""))
    return out


def payload_mapped(pid):
    """Is a bpfgraft payload mapped in pid?"""
    with open(f"/proc/{pid}/maps") as f:
        return any("/memfd:bpfgraft-payload" in l for l in f)


def pid_probe_section(srv, args, victim_bin, marker):
    """A tool's uprobe for a PID bpfgraft does not manage attaches that
    process on the spot (the kernel needs nothing prepared either) and
    detaches it when the tool ends; a PID the tool's user may not trace
    gets EACCES, as from the kernel."""
    probe = [srv.cli_bin, "--socket", srv.socket, "run", "--", os.path.join(args.test_bin, "tool-pid-probe"),
             os.path.abspath(args.count_obj)]
    lone = start_process([victim_bin, marker + "-lone"])
    try:
        r = subprocess.run(probe + [str(lone.pid), victim_bin, "work_unit"], capture_output=True, text=True,
                           timeout=60)
        m = re.search(r"calls (\d+)", r.stdout)
        check(m is not None and int(m.group(1)) >= 10,
              "a uprobe for the pid of a process never attached: attached on the spot, calls counted",
              r.stdout + r.stderr[-300:])
        deadline = time.monotonic() + 10
        while payload_mapped(lone.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        rc, doc, _ = srv.cli_json("ps")
        check(not payload_mapped(lone.pid) and all(t.get("pid") != lone.pid for t in doc or []),
              "the tool ended: the process it attached is detached, no payload left")
        check_eq(text_matches_file(lone.pid), [], "and its text equals its file again")
        r = subprocess.run(probe + [str(lone.pid), victim_bin, "work_unit", "65534"], capture_output=True,
                           text=True, timeout=60)
        check("attach: EACCES" in r.stdout, "a tool whose user may not trace the pid gets EACCES",
              r.stdout + r.stderr[-300:])
        check(not payload_mapped(lone.pid) and victim_alive(lone), "and the process was not touched")
    finally:
        lone.kill()
        lone.wait()


def binary_wide_section(srv, args):
    """pid -1 on a binary: a process running it before the tool started and
    one started while the tool runs (caught at exec, traced from its first
    call) are both counted exactly; both are detached when the tool ends.
    The binary is a private copy, so no other process is concerned."""
    tmp = tempfile.mkdtemp(prefix="bpfgraft-bw-")
    vic = os.path.join(tmp, "bw-victim")
    shutil.copy2(os.path.join(args.test_bin, "callbacks-victim"), vic)
    procs = []
    try:
        early = subprocess.Popen([vic, "1000", "1"], stdout=subprocess.PIPE, text=True)
        procs.append(early)
        check_eq(early.stdout.readline().strip(), "ready", "binary-wide: a process of the binary runs before the tool")
        tool = subprocess.Popen([srv.cli_bin, "--socket", srv.socket, "run", "--",
                                 os.path.join(args.test_bin, "tool-pid-probe"), os.path.abspath(args.count_obj), "-1",
                                 vic, "probe_me", "-", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        check_eq(tool.stdout.readline().strip(), "attached", "binary-wide: the tool's uprobe (pid -1) is attached")
        early.send_signal(signal.SIGUSR1)
        check_eq(early.stdout.readline().strip(), "done", "binary-wide: the early process made its 1000 calls")
        late = subprocess.Popen([vic, "500", "1", "now"], stdout=subprocess.PIPE, text=True)
        procs.append(late)
        check_eq(late.stdout.readline().strip(), "done", "binary-wide: a process started later made its 500 calls")
        out, err = tool.communicate(timeout=60)
        check("calls 1500" in out, "binary-wide: every call of both counted, the late one's from its first",
              out + err[-300:])
        deadline = time.monotonic() + 10
        while any(payload_mapped(p.pid) for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        check(not any(payload_mapped(p.pid) for p in procs) and all(victim_alive(p) for p in procs),
              "binary-wide: both processes detached when the tool ended, both still running",
              repr([(p.pid, payload_mapped(p.pid), victim_alive(p)) for p in procs]))
        check(all(text_matches_file(p.pid) == [] for p in procs), "binary-wide: their text equals the file")
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def hooks_of(srv, pid):
    rc, doc, _ = srv.cli_json("ps")
    for t in doc or []:
        if t.get("pid") == pid:
            return t.get("hooks", [])
    return None


def sites_of(srv, pid):
    """[pid's rewritten syscall sites] from ps ([] when not listed)."""
    rc, doc, _ = srv.cli_json("ps")
    return [t.get("syscall_sites") for t in doc or [] if t.get("pid") == pid]


def wait_left(srv, pid, sites=False):
    """Once an ended tool's programs (and with sites, its rewritten syscall
    sites) left pid: the server retires an ended tool's programs in the
    background, on its tick (server/tool.c, tool_end), so a check right
    after the tool's exit races with it."""
    wait_until(lambda: hooks_of(srv, pid) == [] and (not sites or sites_of(srv, pid) == [0]), timeout=20, step=0.1)


def wait_no_tools(srv):
    """Once tool.list is empty (the server sees a tool's end on its events)."""
    wait_until(lambda: srv.cli_json("tools")[1] == [], timeout=20, step=0.1)


def start_process(argv, lib="libc.so.6"):
    """A process past its dynamic loader (lib mapped: an attach there needs it)."""
    p = subprocess.Popen(argv)
    wait_mapped(p.pid, lib)
    return p


def faults_section(srv, args):
    """A tool's map calls are served in it with fault-guarded copies: bad
    pointers give EFAULT, the tool's own SIGSEGV handler sees its faults,
    and a tool that crashes dies of SIGSEGV (tool_faults.c), as under the
    kernel."""
    prog = os.path.join(args.test_bin, "tool-faults")
    rc, out, err = run_tool(srv, [prog])
    print(out, err[-300:])
    check_eq(rc, 0, "tool-faults: every check passed under bpfgraft run")
    check(out.count("ok ") == 9 and "0 failed" in out, "tool-faults: nine checks printed ok", out)
    rc, out, err = run_tool(srv, [prog, "crash"])
    check_eq(rc, 128 + signal.SIGSEGV, "a crashing tool dies of SIGSEGV under bpfgraft run, as without it")
    check(srv.alive(), "bpfgraftd outlived the crashing tool")


def early_site_section(srv, args):
    """glibc's syscall(), through which libbpf makes every bpf() call, is
    rewritten in the stop that starts the tool (server/syscalls.c,
    tool_early_site): not even the first map call traps. Found by its first
    SIGSYS it was rewritten 50+ ms later, after 10-25 thousand trapped map
    calls."""
    prog = os.path.join(args.test_bin, "tool-faults")
    rc, out, _ = run_kernel([prog, "site"])
    check(rc == 0 and "site: original" in out, "tool-faults site: glibc's syscall() as the file has it, without "
          "bpfgraft", out)
    rc, out, err = run_tool(srv, [prog, "site"])
    check(rc == 0 and "site: rewritten" in out, "tool-faults site: under bpfgraft run it is rewritten before main",
          out + err[-300:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--test-bin", required=True)
    ap.add_argument("--count-obj", required=True)
    args = ap.parse_args()
    # side by side with the kernel: the same tools under kernel BPF (the
    # tools' CO-RE needs the kernel's BTF under bpfgraft too)
    require("root", "bpf-tracing", "btf", "tracefs")
    check(ensure_libbpf_tools("opensnoop", "syscount", "funclatency", "bashreadline"), "libbpf-tools is installed (apt)")
    victim_bin = os.path.abspath(os.path.join(args.test_bin, "tool-victim"))
    marker = f"/nonexistent/bpfgraft-tool-marker-{os.getpid()}"
    kernel_side = contextlib.ExitStack()   # tracefs, from the kernel's first run

    with Server(args) as srv:
        victim = start_process([victim_bin, marker])
        try:
            rc, _, err = srv.cli("attach", victim.pid)
            check_eq(rc, 0, f"attach without an object: the victim joins bpfgraft ({err.strip()})")

            # ---- opensnoop: tracepoints + perf buffer ----
            rc, out, err = run_tool(srv, [f"{TOOLS}/opensnoop", "-p", str(victim.pid), "-d", "3"])
            print(out[:600], err[-800:])
            opensnoop_rc = rc
            check("PID    COMM" in out and "PATH" in out, "opensnoop: its own header")
            lines = [l for l in out.splitlines() if marker in l]
            check(len(lines) >= 20, f"opensnoop: the victim's opens of the marker path ({len(lines)} in 3 s, >= 20)")
            check(all(l.split()[0] == str(victim.pid) and " 2 " in f" {l} " for l in lines[:5]),
                  "opensnoop: lines carry the victim's pid and ENOENT (2)", "\n".join(lines[:3]))
            check(victim_alive(victim), "the victim still runs after opensnoop")
            wait_left(srv, victim.pid, sites=True)
            hooks = hooks_of(srv, victim.pid)
            check(hooks == [], "after opensnoop exits no program stays in the victim", repr(hooks))
            rc, doc, _ = srv.cli_json("ps")
            sites = [t.get("syscall_sites") for t in doc or [] if t.get("pid") == victim.pid]
            check(sites == [0], "and its rewritten syscall sites are back to the original code", repr(sites))
            wait_no_tools(srv)
            rc, doc, _ = srv.cli_json("tools")
            check(rc == 0 and doc == [], "tool.list is empty once the tool exited", repr(doc))

            # the same tool under the kernel, same workload
            kernel_side.enter_context(tracefs())
            rc, kout, kerr = run_kernel([f"{TOOLS}/opensnoop", "-p", str(victim.pid), "-d", "2"])
            check_eq(opensnoop_rc, rc, "opensnoop: the same exit status under bpfgraft as under the kernel")
            klines = [l for l in kout.splitlines() if marker in l]
            check(len(klines) >= 10, f"opensnoop under the kernel sees the same opens ({len(klines)})",
                  kerr[-300:])
            if klines and lines:
                norm = lambda l: l.split()[:2] + l.split()[3:]   # PID COMM ERR PATH (fd differs: -1 both)
                check_eq(norm(lines[0]), norm(klines[0]), "opensnoop: bpfgraft's line equals the kernel's")

            # ---- syscount: raw_syscalls tracepoints, hash maps, batch lookups ----
            rc, out, err = run_tool(srv, [f"{TOOLS}/syscount", "-p", str(victim.pid), "-d", "2"])
            print(out[:800], err[-800:])
            check_eq(rc, 0, "syscount under bpfgraft run exits 0")
            counts = {}
            for l in out.splitlines():
                m = re.match(r"^(\w+)\s+(\d+)$", l.strip())
                if m:
                    counts[m.group(1)] = int(m.group(2))
            check(counts.get("openat", 0) >= 40, f"syscount: openat counted ({counts.get('openat')} in 2 s, >= 40)",
                  repr(counts))
            check(counts.get("clock_nanosleep", 0) + counts.get("nanosleep", 0) >= 40,
                  "syscount: the victim's sleeps counted", repr(counts))
            rc, kout, _ = run_kernel([f"{TOOLS}/syscount", "-p", str(victim.pid), "-d", "2"])
            kcounts = {m.group(1): int(m.group(2)) for m in
                       (re.match(r"^(\w+)\s+(\d+)$", l.strip()) for l in kout.splitlines()) if m}
            check(set(kcounts) >= {"openat"} and abs(kcounts.get("openat", 0) - counts.get("openat", 0)) <= 40,
                  f"syscount: kernel openat {kcounts.get('openat')} vs bpfgraft {counts.get('openat')} (same rate)")

            # ---- funclatency on a user-space function: uprobe + uretprobe ----
            rc, out, err = run_tool(srv, [f"{TOOLS}/funclatency", "-p", str(victim.pid), "-d", "2",
                                          ":work_unit"])   # the binary of -p PID
            print(out[-1500:], err[-800:])
            check_eq(rc, 0, "funclatency under bpfgraft run exits 0")
            rows = [l for l in out.splitlines() if "->" in l and ":" in l]
            total = sum(int(l.split(":")[1].split("|")[0]) for l in rows)
            check("nsec" in out and "distribution" in out, "funclatency: its histogram header")
            check(total >= 40, f"funclatency: {total} calls of work_unit in 2 s (>= 40)")
            wait_left(srv, victim.pid)
            check(hooks_of(srv, victim.pid) == [], "after funclatency the victim's code is restored (no hooks)")

            # ---- gethostlatency: uprobe + uretprobe on libc's getaddrinfo ----
            resolver = start_process([victim_bin, marker + "-gai", "localhost"])
            try:
                srv.cli("attach", resolver.pid)
                runs = []
                for argv in ([srv.cli_bin, "--socket", srv.socket, "run", "--"], []):
                    tool = subprocess.Popen(argv + [f"{TOOLS}/gethostlatency", "-p", str(resolver.pid)],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    if argv:  # its 3 s start once its probes are in (a loaded machine starts it slowly)
                        wait_until(lambda: hooks_of(srv, resolver.pid) or tool.poll() is not None, step=0.1)
                    time.sleep(3)
                    tool.send_signal(signal.SIGINT)
                    runs.append(finish(tool, 20))
                (out, err), (kout, _) = runs
                rows = [l.split() for l in out.splitlines() if l.rstrip().endswith(" localhost")]
                krows = [l.split() for l in kout.splitlines() if l.rstrip().endswith(" localhost")]
                print(out[:300], err[-300:])
                check(len(rows) >= 20 and all(r[1] == str(resolver.pid) for r in rows),
                      f"gethostlatency: {len(rows)} getaddrinfo calls of the resolver in 3 s, its pid on each",
                      err[-300:])
                check(len(krows) >= 20 and out.splitlines()[:1] == kout.splitlines()[:1],
                      f"gethostlatency under the kernel: the same header, {len(krows)} calls")
                wait_left(srv, resolver.pid)
                check(hooks_of(srv, resolver.pid) == [], "after gethostlatency no hook stays in the resolver")
            finally:
                srv.cli("detach", resolver.pid)
                resolver.kill()
                resolver.wait()

            # ---- the skeleton samples, under bpfgraft and under the kernel ----
            skel = lambda name: os.path.join(args.bin_dir, f"skel-{name}")
            rc, out, err = run_tool(srv, [skel("opensnoop"), "-p", str(victim.pid), "-d", "2"])
            rc_k, kout, kerr = run_kernel([skel("opensnoop"), "-p", str(victim.pid), "-d", "2"])
            print(out[:300], err[-500:], kerr[-300:])
            ours = [l for l in out.splitlines() if marker in l]
            theirs = [l for l in kout.splitlines() if marker in l]
            check(rc == 0 and rc_k == 0, f"skel-opensnoop exits 0 under bpfgraft ({rc}) and the kernel ({rc_k})")
            check(len(ours) >= 40 and len(theirs) >= 40,
                  f"skel-opensnoop (ring buffer): {len(ours)} lines under bpfgraft, {len(theirs)} under the kernel")
            check(ours[:1] and theirs[:1] and ours[0].split() == theirs[0].split(),
                  "skel-opensnoop: the same line both ways", f"{ours[:1]} vs {theirs[:1]}")
            check(out.splitlines()[:1] == kout.splitlines()[:1], "skel-opensnoop: the same header both ways")
            # the same, waiting with poll(2) on the ring buffer's fd instead of epoll
            rc, out, err = run_tool(srv, [skel("opensnoop"), "-P", "-p", str(victim.pid), "-d", "2"])
            rc_k, kout, _ = run_kernel([skel("opensnoop"), "-P", "-p", str(victim.pid), "-d", "2"])
            ours = [l for l in out.splitlines() if marker in l]
            theirs = [l for l in kout.splitlines() if marker in l]
            check(rc == 0 and rc_k == 0 and len(ours) >= 40 and len(theirs) >= 40,
                  f"skel-opensnoop -P (poll on the ring buffer fd): {len(ours)} lines under bpfgraft, "
                  f"{len(theirs)} under the kernel", err[-300:])

            rc, out, err = run_tool(srv, [skel("malloc"), "-p", str(victim.pid), "-d", "3", "-i", "1"])
            rc_k, kout, _ = run_kernel([skel("malloc"), "-p", str(victim.pid), "-d", "3", "-i", "1"])
            print(out[-400:], err[-400:])

            def malloc_rows(text):
                return [l.split() for l in text.splitlines() if l.split()[:2] and l.split()[1] == str(victim.pid)]
            rows, krows = malloc_rows(out), malloc_rows(kout)
            check(rc == 0 and rc_k == 0, f"skel-malloc exits 0 under bpfgraft ({rc}) and the kernel ({rc_k})")
            calls = [int(r[3]) for r in rows if len(r) >= 5]
            kcalls = [int(r[3]) for r in krows if len(r) >= 5]
            # the victim mallocs ~50 times a second; under CI load a second
            # may see fewer (its timer slips), none may see none
            check(len(calls) >= 2 and sorted(calls)[len(calls) // 2] >= 30 and min(calls) > 0,
                  f"skel-malloc (uprobe, hash map read by the tool): per-second calls {calls}")
            check(len(kcalls) >= 2 and abs(sum(calls) / len(calls) - sum(kcalls) / len(kcalls)) <= 15,
                  f"skel-malloc: the same rate under the kernel {kcalls}")

            # ---- scope: a process attached while a tool runs joins it; two tools at once ----
            tools_bg = [subprocess.Popen([srv.cli_bin, "--socket", srv.socket, "run", "--", f"{TOOLS}/opensnoop"],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                        for _ in range(2)]
            marker2 = marker + "-late"
            late = None
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    rc, doc, _ = srv.cli_json("tools")
                    if rc == 0 and len(doc or []) == 2 and all(len(t["links"]) >= 2 for t in doc):
                        break
                    time.sleep(0.2)
                check(rc == 0 and len(doc or []) == 2, "two tools run at once (tool.list)", repr(doc)[:300])
                late = start_process([victim_bin, marker2])
                rc, _, err = srv.cli("attach", late.pid)
                check_eq(rc, 0, f"bpfgraft attach adds a new process to the running tools' scope ({err.strip()})")
                rc, doc, _ = srv.cli_json("tools")
                attached = [l["attached"] for t in doc or [] for l in t["links"]]
                check(attached and all(late.pid in a and victim.pid in a for a in attached),
                      "every link of both tools is attached in both processes", repr(attached)[:300])
                rc, out, _ = srv.cli("tools")
                lines = out.splitlines()
                rows = [l.split() for l in lines[1:]]
                want = {(str(t["pid"]), t["name"], str(t["object"]), str(l["id"]), str(l["prog"]), l["kind"], l["target"])
                        for t in doc or [] for l in t["links"]}
                check(rc == 0 and lines and lines[0].split() == ["PID", "NAME", "OBJECT", "LINK", "PROG", "KIND",
                                                                "SCOPE", "IN", "TARGET"]
                      and {(r[0], r[1], r[2], r[3], r[4], r[5], r[8]) for r in rows if len(r) == 9} == want
                      and len(rows) == len(want)
                      and all(r[6] == "all" and set(r[7].split(",")) == {str(victim.pid), str(late.pid)}
                              for r in rows),
                      "tools (text): a row per link with its scope (all) and the processes it is in", out)
                time.sleep(1.5)
            finally:
                for t in tools_bg:
                    t.send_signal(2)
                outs = []
                for t in tools_bg:
                    outs.append(finish(t, 20))
                if late:
                    late.kill()
                    late.wait()
            for i, (out, err) in enumerate(outs):
                check(any(marker2 in l for l in out.splitlines()),
                      f"tool {i + 1}: opens of the process attached after it started", err[-300:])
                check(any(marker in l and marker2 not in l for l in out.splitlines()),
                      f"tool {i + 1}: and of the first process")
            wait_left(srv, victim.pid)
            check(hooks_of(srv, victim.pid) == [], "both tools gone: nothing left in the victim")

            # ---- a pid bpfgraft does not manage: attached for the tool, as the kernel needs nothing ----
            stranger = start_process([victim_bin, marker + "-stranger"])
            try:
                rc, out, err = run_tool(srv, [f"{TOOLS}/funclatency", "-p", str(stranger.pid), "-d", "1", ":work_unit"])
                check(rc == 0 and "distribution" in out,
                      "funclatency -p PID of a process bpfgraft did not manage: attached on the spot", err[-300:])
                deadline = time.monotonic() + 10
                while payload_mapped(stranger.pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                check(not payload_mapped(stranger.pid), "and detached again when the tool ended")
            finally:
                stranger.kill()
                stranger.wait()

            # ---- a tool killed with SIGKILL: its programs leave the victim ----
            tool = subprocess.Popen([srv.cli_bin, "--socket", srv.socket, "run", "--", f"{TOOLS}/opensnoop",
                                     "-p", str(victim.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                deadline = time.monotonic() + 20
                tool_pid = None
                while time.monotonic() < deadline and not tool_pid:
                    rc, doc, _ = srv.cli_json("tools")
                    if doc and doc[0]["links"]:
                        tool_pid = doc[0]["pid"]
                    time.sleep(0.2)
                check(tool_pid is not None, "opensnoop is running under bpfgraft")
                if tool_pid:
                    os.kill(tool_pid, 9)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and srv.cli_json("tools")[1]:
                    time.sleep(0.2)
                rc, doc, _ = srv.cli_json("tools")
                check(doc == [], "the killed tool is gone from tool.list", repr(doc))
                # they leave in the background (server/tool.c, tool_end's retire steps)
                deadline = time.monotonic() + 10
                while True:
                    rc, ps, _ = srv.cli_json("ps")
                    sites = [t.get("syscall_sites") for t in ps or [] if t.get("pid") == victim.pid]
                    left = hooks_of(srv, victim.pid) == [] and sites == [0]
                    if left or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                check(left, "its programs and rewritten sites left the victim", repr(ps)[:300])
                check(victim_alive(victim), "the victim still runs")
            finally:
                tool.wait(timeout=20)

            # ---- a hostile tool writing garbage into its channel ----
            rc, out, err = run_tool(srv, [os.path.join(args.test_bin, "tool-abuser")])
            print(out, err[-300:])
            check(rc == 0 and "garbage writes" in out, "a tool writing garbage into its sockets ran to its end")
            check(srv.alive(), "bpfgraftd survived the garbage")
            rc, doc, _ = srv.cli_json("tools")
            check(rc == 0 and doc == [], "and serves requests afterwards", repr(doc))

            faults_section(srv, args)
            early_site_section(srv, args)
            pid_probe_section(srv, args, victim_bin, marker)
            binary_wide_section(srv, args)

            # ---- bad command lines ----
            rc, out, err = run_tool(srv, ["/nonexistent/tool"])
            check(rc != 0 and "cannot run /nonexistent/tool" in err, "run: a missing tool is reported",
                  err[-200:])
            r = subprocess.run([srv.cli_bin, "--socket", srv.socket, "run"], capture_output=True, text=True)
            check(r.returncode == 2 and "usage" in r.stderr, "run: no tool is a usage error")
            r = subprocess.run([srv.cli_bin, "--socket", srv.socket, "run", "--attach", "nope", "--", "/bin/true"],
                               capture_output=True, text=True)
            check(r.returncode == 2 and "--attach takes PID" in r.stderr, "run --attach with garbage: usage error")
            fresh = start_process([victim_bin, marker + "-fresh"])
            try:
                r = subprocess.run([srv.cli_bin, "--socket", srv.socket, "run", "--attach", str(fresh.pid), "--",
                                    f"{TOOLS}/opensnoop", "-p", str(fresh.pid), "-d", "1"],
                                   capture_output=True, text=True, timeout=60)
                check(sum(marker + "-fresh" in l for l in r.stdout.splitlines()) >= 10,
                      "run --attach PID: a process not yet managed is attached first and traced", r.stderr[-300:])
            finally:
                srv.cli("detach", fresh.pid)
                fresh.kill()
                fresh.wait()
            # a process forked while a tool's uprobe is placed gets the probe
            # removed too when the tool ends
            fl = subprocess.Popen([os.path.join(args.test_bin, "forkloop-victim")])
            fork_pid = None
            try:
                wait_handler(fl.pid, signal.SIGUSR1)  # SIGUSR1 before that would kill it
                srv.cli("attach", fl.pid)
                tool = subprocess.Popen([srv.cli_bin, "--socket", srv.socket, "run", "--", f"{TOOLS}/funclatency",
                                         "-p", str(fl.pid), "-d", "2", ":forkloop_work"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deadline = time.monotonic() + 20
                while not hooks_of(srv, fl.pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                os.kill(fl.pid, signal.SIGUSR1)
                while fork_pid is None and time.monotonic() < deadline:
                    with open(f"/proc/{fl.pid}/task/{fl.pid}/children") as f:
                        kids = f.read().split()
                    fork_pid = int(kids[0]) if kids else None
                    time.sleep(0.02)
                patched = fork_pid is not None and text_matches_file(fork_pid) != []
                tool.wait(timeout=30)
                check(patched and text_matches_file(fork_pid) == [] and text_matches_file(fl.pid) == [],
                      "a fork made while a tool's uprobe was placed had it, and loses it when the tool ends",
                      f"patched in the fork before: {patched}")
                srv.cli("detach", fl.pid)
            finally:
                if fork_pid:
                    os.kill(fork_pid, signal.SIGKILL)
                fl.kill()
                fl.wait()

            # a tool's uprobes leave nothing behind: after it exits and the
            # process is detached, its executable mappings are those it had
            plain = start_process([victim_bin, marker + "-plain"])
            try:
                before = exec_mappings(plain.pid)
                r = subprocess.run([srv.cli_bin, "--socket", srv.socket, "run", "--attach", str(plain.pid), "--",
                                    f"{TOOLS}/funclatency", "-p", str(plain.pid), "-d", "1", ":work_unit"],
                                   capture_output=True, text=True, timeout=60)
                check(r.returncode == 0 and "distribution" in r.stdout, "funclatency on a fresh process",
                      r.stderr[-300:])
                rc, _, err = srv.cli("detach", plain.pid)
                # funclatency's uretprobe left the unwind page, which the
                # process's unwinders keep pointers into (payload/README.md,
                # "Return trampolines and unwinders"): that one, no other
                after = exec_mappings(plain.pid)
                unwind = {m for m in after - before if m[1].startswith("/memfd:bpfgraft-unwind")}
                check(rc == 0 and after - unwind == before and len(unwind) == 1 and victim_alive(plain),
                      "after the tool and a detach the process has exactly its own executable mappings again "
                      "and the uretprobe's unwind page",
                      f"{err} added {sorted(after - before)} removed {sorted(before - after)}")
            finally:
                plain.kill()
                plain.wait()
            echo = subprocess.Popen(["sleep", "60"])
            try:
                r = subprocess.run([srv.cli_bin, "--socket", srv.socket, "run", "--attach", str(echo.pid),
                                    "--engine", "interp", "--", "/bin/echo", "a", "b", "c"],
                                   capture_output=True, text=True, timeout=60)
                check_eq(r.stdout, "a b c\n", "run with options: the tool gets exactly its own arguments")
            finally:
                srv.cli("detach", echo.pid)
                echo.kill()
                echo.wait()
            rc, out, err = run_tool(srv, ["/bin/echo", "no-bpf-here"])
            check(rc == 0 and out.strip() == "no-bpf-here", "run: a program that never calls bpf() runs normally")
            r = subprocess.run([srv.cli_bin, "--socket", srv.socket, "load", f"{TOOLS}/syscount", "-p",
                                str(victim.pid), "-d", "1"], capture_output=True, text=True, timeout=60)
            check(r.returncode == 0 and "SYSCALL" in r.stdout and "openat" in r.stdout,
                  "`bpfgraft load ./tool ARGS` runs the tool like run", r.stderr[-300:])

            # ---- a kprobe cannot work: clear message, no hang ----
            # a hang would end in run_tool's timeout, failing the test
            rc, out, err = run_tool(srv, [f"{TOOLS}/funclatency", "-d", "1", "do_sys_openat2"], timeout=60)
            print(err[-600:])
            check(rc != 0, "funclatency on a kernel function fails under bpfgraft")
            check("kprobe" in err and "userspace" in err, "the failure names the missing feature (kprobe)",
                  err[-300:])
            check(victim_alive(victim), "the victim still runs")
        finally:
            victim.kill()
            victim.wait()
            kernel_side.close()

        # ---- bashreadline: uretprobe on readline in every attached bash, perf buffer ----
        pid, fd = pty.fork()
        if pid == 0:
            os.environ.update({"HISTFILE": "/dev/null", "PS1": "$ ", "TERM": "dumb"})
            os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
        tool = None
        try:
            wait_exe(pid, shutil.which("bash"))   # exec'd: attaching the forked Python would be lost at the exec
            rc, _, err = srv.cli_attach(pid)
            check_eq(rc, 0, f"bashreadline: the shell joins bpfgraft ({err.strip()})")
            tool = subprocess.Popen([srv.cli_bin, "--socket", srv.socket, "run", "--", f"{TOOLS}/bashreadline"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not hooks_of(srv, pid):
                time.sleep(0.2)
            check(bool(hooks_of(srv, pid)), "bashreadline: its uretprobe is in the shell")
            os.write(fd, b"true first\n")   # the readline in progress began before the hook
            time.sleep(0.3)
            os.write(fd, b"echo hello-from-bashreadline\n")
            time.sleep(1.5)
            tool.send_signal(2)
            out, err = finish(tool, 20)
            print(out[-600:], err[-600:])
            check("COMMAND" in out and "PID" in out, "bashreadline: its own header")
            check(any("echo hello-from-bashreadline" in l and str(pid) in l for l in out.splitlines()),
                  "bashreadline: the typed line with the shell's pid")
            wait_left(srv, pid)
            check(hooks_of(srv, pid) == [], "bashreadline gone: the shell has no hook left")
            os.write(fd, b"echo still-alive\n")
            time.sleep(0.3)
            seen = b""
            while select.select([fd], [], [], 0.3)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
            check(b"still-alive" in seen, "bashreadline: the shell keeps working")

            # skel-bashreadline (perf buffer, -p) under bpfgraft
            tool = subprocess.Popen([srv.cli_bin, "--socket", srv.socket, "run", "--",
                                     os.path.join(args.bin_dir, "skel-bashreadline"), "-p", str(pid), "-d", "4"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not hooks_of(srv, pid):
                time.sleep(0.2)
            os.write(fd, b"true second\n")
            time.sleep(0.3)
            os.write(fd, b"echo hello-from-skel\n")
            out, err = finish(tool, 30)
            print(out[-400:], err[-400:])
            check_eq(tool.returncode, 0, "skel-bashreadline under bpfgraft run ends after -d with 0")
            check(any("echo hello-from-skel" in l and str(pid) in l for l in out.splitlines()),
                  "skel-bashreadline: the typed line with the shell's pid (perf buffer)")
        finally:
            if tool and tool.poll() is None:
                tool.kill()
                tool.wait()
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        check(srv.alive(), "bpfgraftd survived every tool")
    return report()


if __name__ == "__main__":
    sys.exit(main())
