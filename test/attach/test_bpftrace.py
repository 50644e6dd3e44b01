"""bpftrace under `bpfgraft run` (issue 22): Debian's unmodified bpftrace
with `uprobe:BIN:FUNC+OFF { @ = count(); }` and its relatives, against a
victim that calls the probed code a known number of times; the count it
prints must equal the known count and the count the same bpftrace command
prints under the kernel.

Probed: bt_loop (entry: a short jmp, its loop label 2 bytes in),
bt_short's return (3 bytes: a short jmp), bt_loop+2 (the loop label) by
FUNC+OFF and, in a stripped copy, by raw address (no symbol and, being
asm without CFI, no FDE to analyse: a trap). Debian 12's bpftrace 0.17 is built without
its disassembler ("bfd: no" in `bpftrace --info`): it refuses any
FUNC+OFF with OFF != 0 itself, before a perf_event_open, under the
kernel too ("Can't check if uprobe is in proper place"), with or without
`--unsafe`, and so any raw address inside a known symbol; then bpfgraft
must refuse it the same way. The raw address in a stripped binary
(`--unsafe`, no symbol to check against) reaches the kernel and bpfgraft
alike."""
import argparse
import os
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
from harness import Server, check, check_eq, interrupt_bpftrace, report, require, tracefs  # noqa: E402

CALLS, N = 1000, 7   # bt_loop(N) and bt_short() CALLS times: bt_loop+2 runs CALLS * N times


def ensure_bpftrace():
    if shutil.which("bpftrace"):
        return True
    r = subprocess.run(["apt-get", "install", "-y", "-q", "bpftrace"], capture_output=True, text=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return r.returncode == 0 and shutil.which("bpftrace") is not None


class Victim:
    def __init__(self, binary):
        self.proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.pid = self.proc.pid
        self.line(10)

    def line(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        return self.proc.stdout.readline().strip() if ready else ""

    def run(self):
        """Runs one round; the iterations of bt_loop's loop, or None."""
        self.proc.stdin.write(f"{CALLS} {N}\n")
        self.proc.stdin.flush()
        m = re.fullmatch(r"done (\d+)", self.line(30))
        return int(m.group(1)) if m else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()


def wait_attached(tool, deadline_s):
    """Waits for bpftrace's "Attaching N probe(s)..." line; True if seen."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end and tool.poll() is None:
        ready, _, _ = select.select([tool.stdout], [], [], 0.2)
        if ready:
            line = tool.stdout.readline()
            if line.startswith("Attaching"):
                return True
    return False


def hook_kinds(srv, pid):
    rc, doc, _ = srv.cli_json("ps")
    for t in doc or []:
        if t.get("pid") == pid:
            return sorted(h.get("kind", "") for h in t.get("hooks", []))
    return None


def bpftrace(prefix, args, victim, ready):
    """Runs bpftrace (under prefix) with args while victim runs one round;
    (maps printed {name: count}, iterations the victim reported, stderr)."""
    # a session of its own: whatever is left of it can be killed as a group
    tool = subprocess.Popen(prefix + ["bpftrace"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    iterations, attached, placed = None, wait_attached(tool, 60), False
    if attached:
        placed = ready()
        iterations = victim.run() if placed else None
    interrupt_bpftrace(tool)   # bpftrace prints its maps and exits
    try:
        out, err = tool.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(tool.pid, signal.SIGKILL)
        out, err = tool.communicate()
        err += "\n(test: bpftrace did not end within 30 s of SIGINTs sent while it polled; killed)"
    if not attached or not placed:
        err += f"\n(test: attaching line seen: {attached}, probe in place: {placed})"
    maps = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(@\w*): (\d+)$", out, re.M)}
    return maps, iterations, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--test-bin", required=True)
    args = ap.parse_args()
    require("root", "bpf-tracing")
    check(ensure_bpftrace(), "bpftrace is installed (apt)")
    binary = os.path.abspath(os.path.join(args.test_bin, "bpftrace-victim"))
    stripped = binary + "-stripped"
    loop_vaddr = int(subprocess.run(["nm", binary], capture_output=True, text=True, check=True).stdout
                     .split(" T bt_loop\n")[0].rsplit("\n", 1)[-1], 16)

    with Server(args) as srv:
        prefix = [srv.cli_bin, "--socket", srv.socket, "run", "--"]
        cases = [
            # what, binary, bpftrace arguments after -p PID, map: expected count, kinds under bpfgraft
            ("uprobe:BIN:FUNC at a short jmp", binary, ["-e", f"uprobe:{binary}:bt_loop {{ @ = count(); }}"],
             {"@": CALLS}, ["uprobe (short jmp)"]),
            ("uretprobe:BIN:FUNC on a 3-byte function", binary,
             ["-e", f"uretprobe:{binary}:bt_short {{ @ = count(); }}"], {"@": CALLS}, ["uretprobe (short jmp)"]),
            ("uprobe:BIN:0xADDR at a branch target (stripped, --unsafe)", stripped,
             ["--unsafe", "-e", f"uprobe:{stripped}:0x{loop_vaddr + 2:x} {{ @ = count(); }}"],
             {"@": CALLS * N}, ["uprobe (trap)"]),
        ]
        for what, target, bt_args, want, kinds in cases:
            got = {}
            for side in ("bpfgraft", "kernel"):
                v = Victim(target)
                try:
                    if side == "bpfgraft":
                        rc, _, err = srv.cli("attach", v.pid)
                        check_eq(rc, 0, f"{what}: the victim joins bpfgraft ({err.strip()})")

                        def ready(v=v):   # the probe is in place in the victim
                            end = time.monotonic() + 20
                            while time.monotonic() < end and hook_kinds(srv, v.pid) != kinds:
                                time.sleep(0.1)
                            return hook_kinds(srv, v.pid) == kinds
                        maps, iters, err = bpftrace(prefix, ["-p", str(v.pid)] + bt_args, v, ready)
                        check(hook_kinds(srv, v.pid) in ([], None), f"{what}: no probe left after bpftrace exits")
                    else:
                        maps, iters, err = bpftrace([], ["-p", str(v.pid)] + bt_args, v, lambda: time.sleep(1) or True)
                    check_eq(iters, CALLS * N, f"{what}, {side}: the victim ran its round with right results")
                    check(v.proc.poll() is None, f"{what}, {side}: victim alive")
                finally:
                    v.stop()
                got[side] = maps
                check(maps == want, f"{what}: bpftrace's count under {side}",
                      f"got {maps!r}, want {want!r}; stderr: {err[-600:]}")
            check_eq(got["bpfgraft"], got["kernel"], f"{what}: bpfgraft's count equals the kernel's")

        # FUNC+OFF with OFF != 0: whatever the kernel's bpftrace does, the
        # same under bpfgraft (Debian's build refuses it itself)
        v = Victim(binary)
        try:
            srv.cli("attach", v.pid)
            off_args = ["-p", str(v.pid), "-e", f"uprobe:{binary}:bt_loop+2 {{ @ = count(); }}"]
            kmaps, kiters, kerr = bpftrace([], off_args, v, lambda: time.sleep(1) or True)
            refused = "Can't check if uprobe is in proper place" in kerr
            if refused:
                gmaps, giters, gerr = bpftrace(prefix, off_args, v, lambda: True)
                check("Can't check if uprobe is in proper place" in gerr and not gmaps,
                      "uprobe:BIN:FUNC+2: refused by this bpftrace build under bpfgraft as under the kernel",
                      gerr[-400:])
            else:
                gmaps, giters, gerr = bpftrace(prefix, off_args, v, lambda: time.sleep(1) or True)
                check(kmaps == {"@": CALLS * N}, "uprobe:BIN:FUNC+2: the kernel's count", f"{kmaps!r} {kerr[-400:]}")
                check(gmaps == kmaps, "uprobe:BIN:FUNC+2: bpfgraft's count equals the kernel's",
                      f"{gmaps!r} {gerr[-400:]}")
            check(v.proc.poll() is None, "FUNC+OFF: victim alive")
        finally:
            v.stop()
        dash_c(prefix, args)
        timers(prefix)
    sys.exit(report())


def timers(prefix):
    """interval: runs on a timer (in the tool, under bpfgraft): ticks
    counted, printf and exit() from it as under the kernel; profile:
    (sampling threads on every cpu) is refused naming why."""
    script = 'interval:ms:20 { @n = count(); } interval:ms:200 { printf("tock\\n"); exit(); }'
    for who, pre in (("the kernel", []), ("bpfgraft", prefix)):
        r = subprocess.run(pre + ["bpftrace", "-e", script], capture_output=True, text=True, timeout=60)
        m = re.search(r"^@n: (\d+)$", r.stdout, re.M)
        check("tock" in r.stdout.splitlines() and m is not None and 5 <= int(m.group(1)) <= 40,
              f"interval: under {who}: ticks counted (~10 in 200 ms), printf and exit() from a timer",
              r.stdout[-300:] + r.stderr[-300:])
    # @n++ is a hash map update: under bpfgraft it takes the map's lock on
    # the tool's payload thread (no glibc thread there: while the lock was
    # glibc's the update failed, @n never reached 5 and bpftrace ran on)
    script = 'interval:ms:20 { @n++; if (@n == 5) { printf("five\\n"); exit(); } }'
    for who, pre in (("the kernel", []), ("bpfgraft", prefix)):
        r = subprocess.run(pre + ["bpftrace", "-e", script], capture_output=True, text=True, timeout=60)
        m = re.search(r"^@n: (\d+)$", r.stdout, re.M)
        # ticks due before bpftrace has detached the timer still count
        check(r.returncode == 0 and "five" in r.stdout.splitlines() and m is not None and int(m.group(1)) >= 5,
              f"interval: under {who}: a hash map updated from a timer, exit() when it reaches 5",
              r.stdout[-300:] + r.stderr[-300:])
    r = subprocess.run(prefix + ["bpftrace", "-e", "profile:hz:99 { @ = count(); }"], capture_output=True, text=True,
                       timeout=60)
    check(r.returncode != 0 and "needs the kernel's timer interrupts" in r.stderr,
          "profile: under bpfgraft is refused, naming why", r.stderr[-400:])


def dash_c(prefix, args):
    """bpftrace -c CMD with BEGIN and END (uprobes in bpftrace itself), a
    uprobe on the command, traced from its first call (under bpfgraft it is
    caught at exec), and a syscall tracepoint reading args-> fields through
    the kernel's BTF: output and maps equal to the kernel's. A private copy
    of the binary: no other process is concerned."""
    tmp = tempfile.mkdtemp(prefix="bt-c-")
    try:
        with tracefs():
            dash_c_runs(prefix, args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def dash_c_runs(prefix, args, tmp):
    vic = os.path.join(tmp, "c-victim")
    shutil.copy2(os.path.join(args.test_bin, "callbacks-victim"), vic)
    script = ('BEGIN { printf("start\\n"); } '
              f'uprobe:{vic}:probe_me {{ @ = count(); }} '
              'tracepoint:syscalls:sys_enter_write /pid == cpid && args->count == 5/ '
              '{ @w = count(); @bytes = sum(args->count); } '
              'END { printf("end\\n"); }')
    argv = ["bpftrace", "-e", script, "-c", f"{vic} 300 1 exit"]
    want = {"@": 300, "@w": 1, "@bytes": 5}   # the command's one write: "done\n"
    for who, pre in (("the kernel", []), ("bpfgraft", prefix)):
        r = subprocess.run(pre + argv, capture_output=True, text=True, timeout=120)
        got = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(@\w*): (\d+)$", r.stdout, re.M)}
        lines = [l for l in r.stdout.splitlines() if l in ("start", "done", "end")]
        check(got == want and lines == ["start", "done", "end"],
              f"bpftrace -c CMD under {who}: BEGIN, every call of the command, args->count, END",
              f"{got!r} {lines!r} {r.stderr[-400:]}")


if __name__ == "__main__":
    main()
