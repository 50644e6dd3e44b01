"""Probes anywhere the kernel can put one (issue 22): a function whose loop
label is 2 bytes in, a 3-byte function (uprobe and uretprobe), FUNC+OFF on
a branch target, a raw address, and a function whose first bytes are the
targets of another function's jump table; short jmps displacing two
instructions, to padding before the function or to dead bytes inside it,
jmps and short jmps inside leaf functions whose red zone is live, and
traps where neither is safe (a branch target 1 byte in, no padding around
the function), and a compiled function of a stripped copy by raw
address (bounded by its .eh_frame FDE: a jmp). Each is probed while 4
threads call it; the program's count must equal the victim's own exactly, the victim's results stay
right, target.list names the mechanism chosen (`uprobe` for a 5-byte jmp,
`uprobe (short jmp)` where a 2-byte jmp to unreachable bytes is provably
safe, `uprobe (trap)` elsewhere), a short jmp changes exactly its 2 bytes
and 5 bytes within its reach, and after detach the text equals the
files."""
import mmap
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import (CtlFields, Server, check, check_eq, counts, parse_probe_args, report,  # noqa: E402
                     text_matches_file, wait_threads)

FIELDS = ["go", "active", "loop_calls", "three_calls", "off_iterations", "raw_calls", "jt_calls", "dispatch_calls",
          "bad_results", "two_calls", "edge_calls", "tight_calls", "redzone_calls", "redhop_calls", "inner_calls",
          "back_calls", "c_calls"]


class Victim(CtlFields):
    FIELDS = FIELDS

    def __init__(self, binary, directory, threads):
        self.ctl_path = os.path.join(directory, f"anywhere-{os.getpid()}-{time.monotonic_ns()}")
        with open(self.ctl_path, "wb") as f:
            f.write(b"\0" * 4096)
        with open(self.ctl_path, "r+b") as f:
            self.mm = mmap.mmap(f.fileno(), 4096)
        self.binary = binary
        self.proc = subprocess.Popen([binary, self.ctl_path, str(threads)])
        self.pid = self.proc.pid
        wait_threads(self.pid, threads + 1)   # past its start: its threads made

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.mm.close()
        os.unlink(self.ctl_path)


def symbols(binary):
    """name: (vaddr, size) of the binary's sized symbols."""
    out = subprocess.run(["nm", "-S", binary], capture_output=True, text=True, check=True).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4:
            syms[parts[3]] = (int(parts[0], 16), int(parts[1], 16))
    return syms


def symbol_vaddr(binary, name):
    return symbols(binary)[name][0]


def changed_bytes(pid, binary):
    """File offsets (= vaddrs in this PIE) of the binary whose bytes in
    pid's executable mapping differ from the file."""
    diffs = []
    with open(f"/proc/{pid}/maps") as f:
        maps = [line.split() for line in f.read().splitlines()]
    with open(f"/proc/{pid}/mem", "rb") as mem, open(binary, "rb") as fil:
        for parts in maps:
            if len(parts) < 6 or "x" not in parts[1] or os.path.realpath(parts[5]) != os.path.realpath(binary):
                continue
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            off = int(parts[2], 16)
            fil.seek(off)
            want = fil.read(hi - lo)
            mem.seek(lo)
            got = mem.read(len(want))
            diffs += [off + i for i in range(len(want)) if got[i] != want[i]]
    return diffs


def hop_bytes_ok(pid, binary, target):
    """A short jmp at target (name or name+off): its first 2 bytes changed,
    then at most 5 more within a short jmp's reach, nothing else."""
    name, _, off = target.partition("+")
    start = symbols(binary)[name][0] + int(off or "0", 0)
    diffs = changed_bytes(pid, binary)
    site = [d for d in diffs if start <= d < start + 2]
    slot = [d for d in diffs if d not in site]
    near = slot and max(slot) - min(slot) < 5 and all(abs(d - (start + 2)) <= 132 for d in slot)
    return len(site) >= 1 and bool(near), f"{target} at 0x{start:x}: changed {[hex(d) for d in diffs]}"


def kinds(cl, pid):
    for t in cl.call("target.list"):
        if t["pid"] == pid:
            return sorted(h["kind"] for h in t["hooks"])
    return None


def exact(cl, v, fields, keys, run_s=0.2):
    """Runs the victim between two quiescent points: the sum of the victim's
    fields must equal each counts[key]'s growth."""
    ok = v.quiesce()
    c0, m0 = sum(v.get(f) for f in fields), counts(cl)
    v.set("go", 1)
    time.sleep(run_s)
    ok &= v.quiesce()
    c1, m1 = sum(v.get(f) for f in fields), counts(cl)
    calls = c1 - c0
    got = [m1[k] - m0[k] for k in keys]
    return ok and calls > 0 and all(g == calls for g in got), f"victim {calls}, program {got}"


JMP, HOP, HOPRET, TRAP, TRAPRET = "uprobe", "uprobe (short jmp)", "uretprobe (short jmp)", "uprobe (trap)", \
    "uretprobe (trap)"
CASES = [
    # what, target, programs, victim fields counted, count keys, expected kinds
    ("loop label 2 bytes in", ":loop_fn", ["add_entry"], ["loop_calls"], [0], [HOP]),
    ("3-byte function", ":three_fn", ["add_entry", "add_return"], ["three_calls"], [0, 1], [HOP, HOPRET]),
    ("FUNC+OFF on a branch target", ":off_fn+2", ["add_entry"], ["off_iterations"], [0], [JMP]),
    ("jump table into another site's first bytes", ":jt_fn", ["add_entry"], ["jt_calls"], [0], [HOP]),
    ("short jmp over two instructions", ":two_fn", ["add_entry", "add_return"], ["two_calls"], [0, 1],
     [HOP, HOPRET]),
    ("branch target 1 byte in", ":edge_fn", ["add_entry"], ["edge_calls"], [0], [TRAP]),
    ("3-byte function without padding", ":tight_fn", ["add_entry", "add_return"], ["tight_calls"], [0, 1],
     [TRAP, TRAPRET]),
    ("jmp inside a leaf using its red zone", ":redzone_fn+8", ["add_entry"], ["redzone_calls"], [0], [JMP]),
    ("short jmp inside a leaf using its red zone", ":redhop_fn+8", ["add_entry"], ["redhop_calls"], [0], [HOP]),
    ("short jmp to dead bytes inside the function", ":inner_fn", ["add_entry"], ["inner_calls"], [0], [HOP]),
    ("short jmp backwards to the padding before", ":back_fn", ["add_entry", "add_return"], ["back_calls"], [0, 1],
     [HOP, HOPRET]),
]


def run_case(cl, v, what, target, progs, fields, keys, want_kinds, extra=None):
    cl.call("target.attach", pid=v.pid, object="count", programs=progs, target=target)
    if extra:
        cl.call("target.attach", pid=v.pid, object="count", programs=extra[0], target=extra[1])
    check_eq(kinds(cl, v.pid), sorted(want_kinds), f"{what}: target.list kinds")
    if HOP in want_kinds and not extra:
        good, detail = hop_bytes_ok(v.pid, v.binary, target.lstrip(":"))
        check(good, f"{what}: the short jmp changed its 2 bytes and 5 within its reach only", detail)
    good, detail = exact(cl, v, fields, keys)
    check(good, f"{what}: counts exact over 4 threads", detail)
    cl.call("target.detach", pid=v.pid)
    check_eq(text_matches_file(v.pid), [], f"{what}: after detach the text equals the files")
    check_eq(v.get("bad_results"), 0, f"{what}: probed functions return correct values")
    check(v.proc.poll() is None, f"{what}: victim alive")


def main():
    args = parse_probe_args("--test-bin")
    binary = os.path.join(args.test_bin, "anywhere-victim")
    with Server(args) as srv:
        cl = srv.client()
        cl.call("object.load", path=os.path.abspath(args.obj), name="count")
        v = Victim(binary, srv.dir, 4)
        try:
            for what, target, progs, fields, keys, want in CASES:
                run_case(cl, v, what, target, progs, fields, keys, want)
            raw = symbol_vaddr(binary, "raw_fn") + 2   # `add %esi,%eax`, mid-function: a jmp
            run_case(cl, v, "raw address", f":0x{raw:x}", ["add_entry"], ["raw_calls"], [0], [JMP])
            raw = symbol_vaddr(binary, "tight_fn")
            run_case(cl, v, "raw address of a trap", f":0x{raw:x}", ["add_entry"], ["tight_calls"], [0], [TRAP])
            # the dispatcher itself is provably safe for a jmp (its indirect
            # jump is explained by its table); both sites counted together
            run_case(cl, v, "jump table and its target", ":jt_fn", ["add_entry"], ["jt_calls", "dispatch_calls"],
                     [0], ["uprobe", HOP], extra=(["add_entry"], ":jt_dispatch"))
            # one of each kind at once: ps says how they are placed; one detach restores them all
            for target in (":jt_dispatch", ":inner_fn", ":tight_fn", ":redhop_fn+8"):
                cl.call("target.attach", pid=v.pid, object="count", programs=["add_entry"], target=target)
            rc, out, _ = srv.cli("ps")
            rows = [line.split() for line in out.splitlines() if line.split()[:1] == [str(v.pid)]]
            check(rc == 0 and len(rows) == 1 and set(rows[0][-1].split(",")) == {"jmp", "short", "trap"},
                  "ps: PLACED names jmp, short jmp and trap", out)
            good, detail = exact(cl, v, ["dispatch_calls", "inner_calls", "tight_calls", "redhop_calls"], [0])
            check(good, "every kind at once: counts exact over 4 threads", detail)
            cl.call("target.detach", pid=v.pid)
            check_eq(text_matches_file(v.pid), [], "every kind at once: after detach the text equals the files")
            check_eq(v.get("bad_results"), 0, "every kind at once: probed functions return correct values")
            # an offset inside an instruction is refused, not patched
            try:
                cl.call("target.attach", pid=v.pid, object="count", programs=["add_entry"], target=":raw_fn+1")
                check(False, "raw_fn+1 (mid-instruction) is refused")
            except Exception as e:   # noqa: BLE001 - BpfgraftError
                check("instruction boundary" in str(e), "raw_fn+1 (mid-instruction) is refused", str(e))
            check_eq(text_matches_file(v.pid), [], "refused attach: text unchanged")
        finally:
            v.stop()
        # stripped: no symbol bounds c_fn any more, its FDE does: a jmp
        raw = symbol_vaddr(binary, "c_fn")
        v = Victim(binary + "-stripped", srv.dir, 4)
        try:
            run_case(cl, v, "stripped compiled function by raw address (bounded by its FDE)", f":0x{raw:x}",
                     ["add_entry", "add_return"], ["c_calls"], [0, 1], [JMP, "uretprobe"])
        finally:
            v.stop()
    sys.exit(report())


if __name__ == "__main__":
    main()
