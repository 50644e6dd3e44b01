"""bpftrace v0.17.0's own runtime tests (tests/runtime, vendored here with
their engine and test programs, Apache-2.0: LICENSE, README.md) for the
probe kinds bpfgraft serves, run with their runner twice: bpftrace under
the kernel, and bpftrace under `bpfgraft run` (a wrapper in place of the
bpftrace binary). Prints and writes (--report) the per-case results side
by side. Fails when a case that passes under the kernel fails under
bpfgraft, unless KNOWN gives the reason (reported as failed, never as
passed). Runs only with BPFGRAFT_BPFTRACE_RUNTIME=1 (else skipped, exit
77): it takes about 10 minutes."""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, report, require  # noqa: E402

BPFTRACE = "/usr/bin/bpftrace"
TRACEFS = "/sys/kernel/tracing"
# suite.name patterns (fnmatch, the engine's --filter): uprobe, uretprobe,
# usdt, syscall tracepoints, interval, BEGIN/END
PATTERNS = ["uprobe.*", "usdt.*", "probe.uprobe*", "probe.uretprobe*", "probe.tracepoint*", "probe.interval*",
            "probe.BEGIN*", "probe.END*", "probe.sanitise*"]
# cases that need the kernel: expected to fail under bpfgraft, naming why
NOT_APPLICABLE = {
    "probe.tracepoint_data_loc": "tracepoint:irq:* is a kernel tracepoint (bpfgraft has syscalls and raw_syscalls)",
}
# cases not run on either side: they wait for any process of the machine
# to call a function of /bin/bash (or libc), so under bpfgraft they would
# attach every bash of every session on the machine (binary-wide scope)
NOT_RUN = {
    "probe.uprobe": "probes /bin/bash:echo_builtin in every bash of the machine",
    "probe.uprobe_offset": "probes /bin/bash:echo_builtin in every bash of the machine",
    "probe.uprobe_library": "probes libc:fread in every process of the machine",
    "probe.uprobe_order": "probes /bin/bash:echo_builtin in every bash of the machine",
    "probe.uretprobe": "probes /bin/bash:echo_builtin in every bash of the machine",
    "probe.uretprobe_order": "probes /bin/bash:echo_builtin in every bash of the machine",
}
# cases that pass under the kernel and fail under bpfgraft: why
KNOWN = {
    'usdt."usdt probes - file based semaphore activation"': (
        "two cases share this name: with --usdt-file-activation it passes; without it (the kernel raising the "
        "semaphore of a running process for a pid -1 probe) the probe did not fire within 5 s in one run and "
        "passed in the next: not found"),
}
RESULT = re.compile(r"^\[\s*(OK|FAILED|TIMEOUT|SKIP)\s*\] (\S+\.\S.*?)(?: \((.*)\))?$")


def build_programs(work):
    """testprogs/ and testlibs/ as bpftrace's CMake builds them (-g -O0,
    executables -no-pie, libraries not executable)."""
    for d in ("testprogs", "testlibs"):
        os.makedirs(os.path.join(work, d))
    sdt = ["-DHAVE_SYSTEMTAP_SYS_SDT_H"]
    libs = os.path.join(work, "testlibs")
    for src in sorted(os.listdir(os.path.join(HERE, "testlibs"))):
        if src.endswith(".c"):
            out = os.path.join(libs, "lib" + src[:-2] + ".so")
            subprocess.run(["gcc", "-g", "-O0", "-shared", "-fPIC", *sdt, "-o", out,
                            os.path.join(HERE, "testlibs", src)], check=True)
            os.chmod(out, 0o644)
    for src in sorted(os.listdir(os.path.join(HERE, "testprogs"))):
        name = src[:-2]
        extra = ["-fPIC", "-I", os.path.join(HERE, "testlibs"), "-L", libs, "-lusdt_tp",
                 "-Wl,-rpath," + libs] if name == "usdt_lib" else []
        subprocess.run(["gcc", "-g", "-O0", "-no-pie", *sdt, "-o", os.path.join(work, "testprogs", name),
                        os.path.join(HERE, "testprogs", src), *extra, "-lpthread"], check=True)


def prepare(work):
    shutil.copytree(os.path.join(HERE, "runtime"), os.path.join(work, "runtime"))
    shutil.copytree(os.path.join(HERE, "engine"), os.path.join(work, "runtime", "engine"))
    with open(os.path.join(work, "runtime", "engine", "cmake_vars.py"), "w") as f:
        f.write("LIBBCC_BPF_CONTAINS_RUNTIME = False\n")   # Debian's bpftrace has no AOT runtime
    build_programs(work)


def bpftrace_dir(work, side, srv=None):
    """A directory whose `bpftrace` the engine runs: Debian's, or a wrapper
    running it under `bpfgraft run` (the engine gives it no PATH)."""
    d = os.path.join(work, "bin-" + side)
    os.makedirs(d)
    path = os.path.join(d, "bpftrace")
    if srv is None:
        os.symlink(BPFTRACE, path)
    else:
        with open(path, "w") as f:
            f.write(f'#!/bin/sh\nexec {srv.cli_bin} --socket {srv.socket} run -- {BPFTRACE} "$@"\n')
        os.chmod(path, 0o755)
    return d


def run_engine(work, exe_dir, log, patterns):
    """Every case of patterns: {suite.name: (status, detail)}."""
    results = {}
    env = dict(os.environ, BPFTRACE_RUNTIME_TEST_EXECUTABLE=exe_dir, RUNTIME_TEST_DISABLE=",".join(NOT_RUN))
    for pattern in patterns:
        r = subprocess.run([sys.executable, "runtime/engine/main.py", "--filter", pattern], cwd=work, env=env,
                           capture_output=True, text=True, timeout=1800)
        log.write(f"==== {pattern}\n{r.stdout}{r.stderr}")
        for line in r.stdout.splitlines():
            m = RESULT.match(line)
            if m and (m.group(2) not in results or m.group(3)):
                results[m.group(2)] = (m.group(1), m.group(3) or "")
    return results


def verdict(name, k, g):
    if name in NOT_RUN:
        return "not run: " + NOT_RUN[name]
    if name in NOT_APPLICABLE:
        return "not applicable: " + NOT_APPLICABLE[name]
    if k[0] == "SKIP":
        return "skipped by the engine under the kernel: " + k[1]
    if k[0] != "OK":
        return "fails under the kernel too"
    if g[0] == "OK":
        return "passes under both"
    return "FAILS under bpfgraft: " + KNOWN.get(name, "(no known reason)")


def write_report(path, kernel, graft):
    names = sorted(set(kernel) | set(graft))
    rows = [(n, kernel.get(n, ("-", ""))[0], graft.get(n, ("-", ""))[0],
             verdict(n, kernel.get(n, ("-", "")), graft.get(n, ("-", "")))) for n in names]
    ran = [r for r in rows if r[1] != "SKIP"]   # the engine's skips and NOT_RUN
    lines = [f"cases: {len(rows)}; run under the kernel: {len(ran)}; pass under the kernel: "
             f"{sum(r[1] == 'OK' for r in rows)}; pass under bpfgraft: {sum(r[2] == 'OK' for r in rows)}; "
             f"pass under the kernel and fail under bpfgraft: "
             f"{sum(r[1] == 'OK' and r[2] != 'OK' and r[0] not in NOT_APPLICABLE for r in rows)} "
             f"(and {sum(r[0] in NOT_APPLICABLE for r in rows)} not applicable)",
             "", "| case | kernel | bpfgraft | verdict |", "| --- | --- | --- | --- |"]
    lines += [f"| {n} | {k} | {g} | {v} |" for n, k, g, v in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    if path:
        with open(path, "w") as f:
            f.write(text)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--report", default="")
    ap.add_argument("--log", default="", help="the engine's full output (default: in the work directory, removed)")
    ap.add_argument("--pattern", action="append", default=[],
                    help="only these suite.name patterns (default: every kind bpfgraft serves)")
    args = ap.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)   # the wrapper runs elsewhere
    if os.environ.get("BPFGRAFT_BPFTRACE_RUNTIME") != "1":
        print("skipped: set BPFGRAFT_BPFTRACE_RUNTIME=1 to run it (about 10 minutes; its probes give a "
              "process 5 s to attach, which a loaded machine misses now and then)")
        return 77
    if os.environ.get("BPFGRAFT_BT_RUNTIME_NS") != "1":
        # a mount namespace of its own: the system-wide tracepoint cases
        # make bpfgraftd catch every process started in its namespace
        # (server/README.md, "Tools and new processes"): only ours
        os.environ["BPFGRAFT_BT_RUNTIME_NS"] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--propagation", "private", sys.executable, *sys.argv])
    require("root", "bpf-tracing")
    check(os.access(BPFTRACE, os.X_OK), "bpftrace is installed")
    work = tempfile.mkdtemp(prefix="bpfgraft-bt-runtime-")
    mounted = False
    try:
        if not os.path.exists(os.path.join(TRACEFS, "events")):
            mounted = subprocess.run(["mount", "-t", "tracefs", "nodev", TRACEFS]).returncode == 0
        prepare(work)
        with open(args.log or os.path.join(work, "engine.log"), "w") as log:
            patterns = args.pattern or PATTERNS
            kernel = run_engine(work, bpftrace_dir(work, "kernel"), log, patterns)
            with Server(args, catch_new=True) as srv:
                graft = run_engine(work, bpftrace_dir(work, "bpfgraft", srv), log, patterns)
                log.write("==== bpfgraftd's log\n" + srv.log_text())
        rows = write_report(args.report, kernel, graft)
        check(len(rows) > 0 and all(n in graft for n in kernel), "every case ran under both")
        for n, k, g, v in rows:
            if k == "OK" and n not in NOT_APPLICABLE:
                check(g == "OK" or n in KNOWN, f"{n}: passes under the kernel and under bpfgraft (or KNOWN)", v)
    finally:
        if mounted:
            subprocess.run(["umount", TRACEFS])
        shutil.rmtree(work, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
