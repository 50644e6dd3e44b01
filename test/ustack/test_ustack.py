"""User stacks without frame pointers (payload/README.md, "User stacks"):
bpf_get_stack(BPF_F_USER_STACK) at a function of code built -O2
-fomit-frame-pointer (five calls through two shared libraries, rbp holding
garbage) gives the functions gdb's bt gives at that point; through a
signal handler, the stack goes on through the kernel's signal frame to the
interrupted code; in python3, the stack at PyObject_Call reaches main."""
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, check_eq, finish, parse_probe_args, report, skip  # noqa: E402

LEAF = "libustack_b.so:_ZN8ustack_b4leafEi"
CHAIN = ["ustack_b::leaf", "ustack_a::five", "ustack_b::four", "ustack_a::three", "ustack_b::two",
         "ustack_a::one"]
GDB_TIMEOUT = 60
SIGNAL_FRAME = "<signal handler called>"


class Victim:
    def __init__(self, argv):
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.pid = self.proc.pid
        self.ready = self.proc.stdout.readline().strip() == "ready"

    def end(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("end\n")
                self.proc.stdin.flush()
            except OSError:
                pass
        out, _ = finish(self.proc, 30)
        return self.proc.returncode, out


def take_stack(cl, pid, target, what, detach=True):
    """The stack the program saw at target, once it has seen one."""
    cl.call("map.update", map="ustack", key=b"\0" * 4, value=b"\0" * 8 * 65)
    cl.call("target.attach", pid=pid, object="ustack", programs=["take_ustack"], target=target)
    words = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not words:
        raw = cl.call("map.lookup", map="ustack", key=b"\0" * 4)["value"]
        n = int.from_bytes(raw[:8], "little")
        words = [int.from_bytes(raw[8 + 8 * i:16 + 8 * i], "little") for i in range(n)]
        time.sleep(0.05)
    if detach:
        cl.call("target.detach", pid=pid)
    check(len(words) > 0, f"{what}: the program took a stack")
    return words


def gdb(gdb_path, pid, commands):
    argv = [gdb_path, "-nx", "-batch", "-p", str(pid), "-ex", "set debuginfod enabled off"]
    for c in commands:
        argv += ["-ex", c]
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=GDB_TIMEOUT, stdin=subprocess.DEVNULL)
        return r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        return f"gdb timed out: {e.stdout or ''}"


def plain(name):
    """A function name without its parameter list."""
    return name.split("(")[0].strip()


def gdb_view(gdb_path, pid, stop_at, stack):
    """At a breakpoint at stop_at (the first address of stack): gdb's
    physical frames [(pc, name)] (a signal frame named SIGNAL_FRAME), and
    the function of each address of stack as gdb names it (a return address
    by the call before it; after a signal frame, the interrupted address
    itself); None when gdb did not answer."""
    cmds = ["handle SIGUSR1 nostop noprint pass", f"break *{stop_at:#x}", "continue", f"source {os.path.join(HERE, 'gdb_frames.py')}"]
    cmds += [f"info symbol {a:#x}" for a in stack] + [f"info symbol {a - 1:#x}" for a in stack]
    out = gdb(gdb_path, pid, cmds + ["delete", "detach"])
    # gdb names a frame by its debug info where it has it: glibc's
    # internal aliases (__GI_raise) for the symbols (raise)
    frames = [(int(pc, 16), SIGNAL_FRAME if kind == "signal" else plain(name).removeprefix("__GI_"))
              for pc, kind, name in re.findall(r"^FRAME (0x[0-9a-f]+) (\w+) (.*)$", out, re.M)]
    syms = re.findall(r"^(?:(.+?) \+ \d+ in section|(.+?) in section|(No symbol matches) )", out, re.M)
    names = [plain(next(g for g in s if g)) for s in syms]
    if len(names) != 2 * len(stack):
        return frames, None, out
    exact, before = names[:len(stack)], names[len(stack):]
    ours, after_signal = [], True
    for i in range(len(stack)):
        if exact[i] == "__restore_rt":
            ours.append(SIGNAL_FRAME)
            after_signal = True
            continue
        ours.append(exact[i] if after_signal else before[i])
        after_signal = False
    return frames, ours, out


def compare_with_gdb(gdb_path, v, stack, what):
    """Checks stack against gdb's frames at the same point: the same
    addresses, so the same functions; returns gdb's names of ours."""
    frames, ours, out = gdb_view(gdb_path, v.pid, stack[0], stack)
    check(ours is not None and len(frames) >= len(CHAIN), f"{what}: gdb's frames and symbols", out[-3000:])
    if ours is None:
        return None
    check_eq([hex(a) for a in stack[:len(frames)]], [hex(pc) for pc, _ in frames],
             f"{what}: bpf_get_stack's return addresses are those of gdb's frames")
    check_eq(ours[:len(frames)], [name for _, name in frames], f"{what}: so are the functions, up to main")
    check_eq(ours[:len(CHAIN)], CHAIN, f"{what}: the chain through both libraries")
    return ours


def test_chain(cl, victim, gdb_path):
    what = "-O2 -fomit-frame-pointer chain"
    v = Victim([victim, "chain"])
    try:
        check(v.ready, f"{what}: victim ready")
        stack = take_stack(cl, v.pid, LEAF, what)
        ours = compare_with_gdb(gdb_path, v, stack, what) if stack else None
        check(ours is not None and "main" in ours, f"{what}: the stack reaches main", repr(ours))
    finally:
        rc, out = v.end()
    check_eq(rc, 0, f"{what}: the process exits normally")


def build_id(path):
    """The GNU build id of the ELF file at path, as bytes."""
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
    m = re.search(r"Build ID: ([0-9a-f]+)", out)
    return bytes.fromhex(m.group(1)) if m else b""


def file_offset(pid, addr):
    """(file, offset in it) of addr in pid's mappings."""
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if lo <= addr < hi and len(parts) > 5:
                return parts[5], addr - lo + int(parts[2], 16)
    return None, None


def test_build_id(cl, victim):
    """bpf_get_stack(BPF_F_USER_BUILD_ID) at the same point: the frames of
    bpf_get_stack as (build id of the file, offset in it), as the kernel's
    struct bpf_stack_build_id (status 1); build ids as readelf reads them."""
    what = "BPF_F_USER_BUILD_ID"
    v = Victim([victim, "chain"])
    try:
        check(v.ready, f"{what}: victim ready")
        stack = take_stack(cl, v.pid, LEAF, what, detach=False)
        cl.call("map.update", map="buildid", key=b"\0" * 4, value=b"\0" * (8 + 32 * 16))
        cl.call("target.attach", pid=v.pid, object="ustack", programs=["take_buildid"], target=LEAF)
        raw, deadline = b"\0" * 8, time.monotonic() + 20
        while time.monotonic() < deadline and not int.from_bytes(raw[:8], "little"):
            raw = cl.call("map.lookup", map="buildid", key=b"\0" * 4)["value"]
            time.sleep(0.05)
        cl.call("target.detach", pid=v.pid)   # the value is rewritten at every hit: read it at rest
        raw = cl.call("map.lookup", map="buildid", key=b"\0" * 4)["value"]
        n = int.from_bytes(raw[:8], "little")
        got = [struct.unpack_from("<i20sQ", raw, 8 + 32 * i) for i in range(n)]
        want = []
        for addr in stack[:n]:
            path, off = file_offset(v.pid, addr)
            want.append((1, build_id(path).ljust(20, b"\0"), off) if path else (2, b"\0" * 20, addr))
        check(n == min(len(stack), 16) and n >= 5, f"{what}: as many frames as bpf_get_stack's", f"{n} {len(stack)}")
        check_eq([(s, b.hex(), hex(o)) for s, b, o in got], [(s, b.hex(), hex(o)) for s, b, o in want],
                 f"{what}: each frame is its file's build id and offset")
    finally:
        rc, out = v.end()
    check_eq(rc, 0, f"{what}: the process exits normally")


def test_stackid(cl, srv, victim):
    """bpf_get_stackid at the same function: the stack map holds the stack
    bpf_get_stack reports (its first 32 frames), under the id, readable
    through the client and `bpfgraft map dump`."""
    what = "bpf_get_stackid"
    v = Victim([victim, "chain"])
    try:
        check(v.ready, f"{what}: victim ready")
        cl.call("map.update", map="stackid", key=b"\0" * 4, value=(-1).to_bytes(8, "little", signed=True))
        cl.call("target.attach", pid=v.pid, object="ustack", programs=["take_stackid"], target=LEAF)
        stack = take_stack(cl, v.pid, LEAF, what, detach=False)
        sid = int.from_bytes(cl.call("map.lookup", map="stackid", key=b"\0" * 4)["value"], "little", signed=True)
        check(0 <= sid < 1024, f"{what}: an id ({sid})")
        if sid >= 0:
            raw = cl.call("map.lookup", map="stacks", key=sid.to_bytes(4, "little"))["value"]
            got = [int.from_bytes(raw[i:i + 8], "little") for i in range(0, len(raw), 8)]
            want = (stack[:32] + [0] * 32)[:32]
            check_eq([hex(a) for a in got], [hex(a) for a in want], f"{what}: the id's stack is bpf_get_stack's")
            check_dump(srv, cl, sid, stack, what)
        cl.call("target.detach", pid=v.pid)
    finally:
        rc, out = v.end()
    check_eq(rc, 0, f"{what}: the process exits normally")


def check_dump(srv, cl, sid, stack, what):
    """map.dump and `bpfgraft map dump` name the frames function+offset
    (file), from the ELF symbols of the process that has the map, C++
    names demangled."""
    entry = [e for e in cl.call("map.dump", map="stacks")["entries"]
             if int.from_bytes(e["key"], "little") == sid]
    frames = entry[0].get("frames", []) if entry else []
    check(len(frames) == min(len(stack), 32) and frames[0].startswith("ustack_b::leaf(int)+0x0 (")
          and frames[0].endswith("/libustack_b.so)") and frames[1].startswith("ustack_a::five(int)+0x")
          and any(f.startswith("main+0x") for f in frames),
          f"{what}: map.dump's frames are symbolized (client)", repr(frames))
    rc, out, err = srv.cli("map", "dump", "stacks")
    check(rc == 0 and f"frames: {len(frames)}" in out and "\n    ustack_a::three(int)+0x" in out,
          f"{what}: bpfgraft map dump prints them", out[-2000:] + err)
    rc, out, err = srv.cli("map", "dump", "stacks", json_out=True)
    check(rc == 0 and '"frames": ["ustack_b::leaf(int)+0x0 (' in out, f"{what}: and --json", out[-2000:] + err)


def subscribed(srv, clients):
    """Whether the server has this many clients (with the one asking)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rc, st, _ = srv.cli_json("status")
        if st and st["clients"] >= clients:
            return True
        time.sleep(0.05)
    return False


def check_event_frames(frames, what):
    check(len(frames) >= len(CHAIN) and frames[0].startswith("ustack_b::leaf(int)+0x0 (")
          and frames[0].endswith("/libustack_b.so)") and frames[1].startswith("ustack_a::five(int)+0x")
          and any(f.startswith("main+0x") for f in frames), what, repr(frames))


def test_events(srv, victim):
    """Ring buffer records whose BTF type has a user_stack_id member (a
    bpf_get_stackid id): `bpfgraft events`, --json and the Python client
    give that stack symbolized with the record."""
    what = "events"
    cli = [srv.cli_bin, "--socket", srv.socket]
    readers = [subprocess.Popen(cli + extra + ["events", "--topic", "ringbuf"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for extra in ([], ["--json"])]
    py = srv.client()
    py.call("events.subscribe", topics=["ringbuf"])
    v = Victim([victim, "chain"])
    try:
        check(v.ready and subscribed(srv, 5), f"{what}: victim ready, three readers subscribed")
        py.call("target.attach", pid=v.pid, object="ustack", programs=["emit_stack_event"], target=LEAF)
        ev = next(e for e in py.events(["ringbuf"]) if e.get("topic") == "ringbuf")
        sid = int.from_bytes(ev["data"][4:8], "little", signed=True)
        frames = ev.get("stacks", {}).get("user_stack_id", [])
        check(sid >= 0, f"{what}: the record holds a stack id ({sid})")
        check_event_frames(frames, f"{what}: the Python client's record has its stack symbolized")
        time.sleep(1)  # the CLI readers get the same records
        py.call("target.detach", pid=v.pid)
    finally:
        v.end()
        outs = []
        for p in readers:
            p.send_signal(signal.SIGINT)
            outs.append(finish(p, 10)[0] or "")
        py.close()
    text, js = outs
    check(re.search(r"^ringbuf: map=\d+ cpu=-1 data=.*\n  user_stack_id: frames: \d+\n    ustack_b::leaf\(int\)\+0x0 \(",
                    text, re.M) is not None and "\n    ustack_a::three(int)+0x" in text,
          f"{what}: bpfgraft events prints the frames under the record", text[-2000:])
    docs = [json.loads(line) for line in js.splitlines() if line.startswith("{")]
    with_stacks = [d for d in docs if d.get("stacks", {}).get("user_stack_id")]
    check(len(with_stacks) >= 1, f"{what}: --json records carry stacks", js[-2000:])
    if with_stacks:
        check_event_frames(with_stacks[0]["stacks"]["user_stack_id"], f"{what}: --json's frames are symbolized")


def rust_symbols(path):
    """The Rust names (legacy _ZN, v0 _R) of path's symbol table."""
    out = subprocess.run(["nm", path], capture_output=True, text=True).stdout
    return sorted({w[-1] for w in (line.split() for line in out.splitlines()) if w and w[-1][:2] in ("_R", "_Z")})


def cxxfilt(names):
    """binutils' c++filt --format=rust of names, in rustc-demangle's
    alternate form as bpfgraft prints it: no crate hashes ([..]), no legacy
    hash (::h<16 hex>), integer consts without their type (4: usize)."""
    out = subprocess.run(["c++filt", "--format=rust"], input="\n".join(names) + "\n", capture_output=True,
                         text=True).stdout.splitlines()
    out = [re.sub(r"::h[0-9a-f]{16}$", "", re.sub(r"\[[0-9a-f]+\]", "", n)) for n in out]
    return [re.sub(r"(\d+|true|false|'.'): (?:[iu](?:8|16|32|64|128|size)|bool|char)\b", r"\1", n) for n in out]


def rust_stack(cl, path, what):
    """The symbolized stack map.dump gives at rust_leaf in a victim of path."""
    v = Victim([path])
    frames = []
    try:
        check(v.ready, f"{what}: victim ready")
        cl.call("map.update", map="stackid", key=b"\0" * 4, value=(-1).to_bytes(8, "little", signed=True))
        cl.call("target.attach", pid=v.pid, object="ustack", programs=["take_stackid"], target=":rust_leaf")
        sid, deadline = -1, time.monotonic() + 20
        while sid < 0 and time.monotonic() < deadline:
            sid = int.from_bytes(cl.call("map.lookup", map="stackid", key=b"\0" * 4)["value"], "little", signed=True)
            time.sleep(0.05)
        entry = [e for e in cl.call("map.dump", map="stacks")["entries"] if int.from_bytes(e["key"], "little") == sid]
        frames = entry[0].get("frames", []) if entry else []
        cl.call("target.detach", pid=v.pid)
    finally:
        rc, _ = v.end()
    check_eq(rc, 0, f"{what}: the process exits normally")
    return frames


def test_rust(cl, rust, demangle_filter):
    """Rust frames demangled as rustc-demangle prints them without hashes:
    every Rust symbol of a legacy (rustc's default) and a v0 build, beside
    binutils' c++filt; and the stack at rust_leaf through a generic
    function and a method, from map.dump."""
    if not rust or not shutil.which("c++filt"):
        skip("rust: no rustc at build time or no c++filt (binutils)")
        return
    chains = {"legacy": ["rust_leaf", "ustack_rust::inner", "ustack_rust::Walker::step", "ustack_rust::outer",
                         "ustack_rust::main"],
              "v0": ["rust_leaf", "ustack_rust::inner::<u32>", "<ustack_rust::Walker>::step", "ustack_rust::outer",
                     "ustack_rust::main"]}
    for path in rust.split(","):
        kind = "v0" if path.endswith("-v0") else "legacy"
        what = f"rust {kind}"
        syms = rust_symbols(path)
        ours = subprocess.run([demangle_filter], input="\n".join(syms) + "\n", capture_output=True,
                              text=True).stdout.splitlines()
        theirs = cxxfilt(syms)
        diff = [(n, o, t) for n, o, t in zip(syms, ours, theirs) if o != t]
        check(len(syms) > 100 and len(ours) == len(syms) and not diff,
              f"{what}: its {len(syms)} Rust symbols demangled as c++filt does", repr(diff[:5]))
        names = [f.split("+0x")[0] for f in rust_stack(cl, path, what)]
        check_eq(names[:len(chains[kind])], chains[kind], f"{what}: the stack's frames demangled, leaf to main")
        check(not any(re.search(r"::h[0-9a-f]{16}$|^_R|^_ZN", n) for n in names),
              f"{what}: no frame keeps a hash or a mangled name", repr(names))


def test_signal(cl, victim, gdb_path):
    what = "through a signal frame"
    v = Victim([victim, "signal"])
    try:
        check(v.ready, f"{what}: victim ready")
        stack = take_stack(cl, v.pid, LEAF, what)
        ours = compare_with_gdb(gdb_path, v, stack, what) if stack else None
        ok = ours is not None and SIGNAL_FRAME in ours
        check(ok, f"{what}: the stack goes through the signal frame", repr(ours))
        if ok:
            rest = ours[ours.index(SIGNAL_FRAME) + 1:]
            check("spin" in rest and "main" in rest, f"{what}: and on to the interrupted spin() and main", repr(ours))
    finally:
        rc, out = v.end()
    check_eq(rc, 0, f"{what}: the process exits normally")


def test_dlopen(cl, victim):
    """A library dlopen()ed after the tables were made: the first stacks
    end at its code (the payload asks for fresh tables), later ones go on
    through it to main."""
    what = "dlopen"
    lib = os.path.join(os.path.dirname(victim), "libustack_d.so")
    v = Victim([victim, "dlopen", lib])
    try:
        check(v.ready, f"{what}: victim ready")
        cl.call("map.update", map="ustack", key=b"\0" * 4, value=b"\0" * 8 * 65)
        cl.call("target.attach", pid=v.pid, object="ustack", programs=["take_ustack"], target=LEAF)
        v.proc.stdin.write("go\n")
        v.proc.stdin.flush()
        lo, hi = library_range(v.pid, lib)
        through, words, deadline = [], [], time.monotonic() + 20
        while time.monotonic() < deadline and not (through and len(words) > len(CHAIN) + 2):
            raw = cl.call("map.lookup", map="ustack", key=b"\0" * 4)["value"]
            n = int.from_bytes(raw[:8], "little")
            words = [int.from_bytes(raw[8 + 8 * i:16 + 8 * i], "little") for i in range(n)]
            lo, hi = (lo, hi) if lo else library_range(v.pid, lib)
            through = [w for w in words if lo <= w < hi]
            time.sleep(0.1)
        check(len(through) == 1 and len(words) > len(CHAIN) + 2,
              f"{what}: stacks go through the dlopen()ed library and on ({len(words)} frames)",
              [hex(w) for w in words])
        cl.call("target.detach", pid=v.pid)
    finally:
        rc, out = v.end()
    check_eq(rc, 0, f"{what}: the process exits normally")


def library_range(pid, path):
    """[lo, hi) of path's executable mapping in pid, (0, 0) before it is there."""
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == path and parts[1][2] == "x":
                lo, hi = parts[0].split("-")
                return int(lo, 16), int(hi, 16)
    return 0, 0


def hooked(srv, pid):
    """Whether process pid has a probe in place (bpfgraft ps)."""
    rc, doc, _ = srv.cli_json("ps")
    return any(t.get("pid") == pid and t.get("hooks") for t in doc or [])


def run_bpftrace(srv, pid, script):
    """bpftrace -p pid -e script under `bpfgraft run` for 2 s once its
    probe is in place, then SIGINT (it prints its maps): (stdout, stderr)."""
    tool = subprocess.Popen([srv.cli_bin, "--socket", srv.socket, "run", "--", "bpftrace", "-p", str(pid), "-e", script],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    first = ""
    end = time.monotonic() + 60
    while time.monotonic() < end and tool.poll() is None and not first.startswith("Attaching"):
        if select.select([tool.stdout], [], [], 0.2)[0]:
            first = tool.stdout.readline()
    while time.monotonic() < end and tool.poll() is None and not hooked(srv, pid):
        time.sleep(0.1)
    time.sleep(2)
    if tool.poll() is None:
        tool.send_signal(signal.SIGINT)
    try:
        out, err = tool.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(tool.pid, signal.SIGKILL)
        out, err = tool.communicate()
    return first + out, err


def test_bpftrace(srv, victim):
    """Debian's bpftrace under `bpfgraft run`: @[ustack] = count() prints
    the whole symbolized chain (the kernel's frame-pointer walk stops after
    the first frame in this victim). bpftrace walks its maps from a zeroed
    key, which the kernel's hash maps answer with their first key."""
    what = "bpftrace @[ustack]"
    if not shutil.which("bpftrace"):
        skip(f"{what}: bpftrace is not installed")
        return
    v = Victim([victim, "chain"])
    try:
        check(v.ready, f"{what}: victim ready")
        rc, _, err = srv.cli("attach", v.pid)
        check_eq(rc, 0, f"{what}: the victim joins bpfgraft ({err.strip()})")
        lib = os.path.join(os.path.dirname(victim), "libustack_b.so")
        script = f"uprobe:{lib}:_ZN8ustack_b4leafEi {{ @[ustack] = count(); }}"
        out, err = run_bpftrace(srv, v.pid, script)
        m = re.search(r"^@\[\n(.*?)\n\]: (\d+)$", out, re.M | re.S)
        frames = [f.strip().split("+")[0] for f in m.group(1).splitlines()] if m else []
        want = [c + "(int)" for c in CHAIN] + ["main"]
        check_eq(frames[:len(want)], want, f"{what}: the symbolized stack, leaf to main")
        check(m is not None and int(m.group(2)) > 0, f"{what}: counted", out[-1500:] + err[-1500:])
    finally:
        rc, out = v.end()
    check_eq(rc, 0, f"{what}: the process exits normally")


def test_memleak(srv, cl, bin_dir, bpf_dir):
    """samples/memleak finds the leak of memleak-victim (leaky_alloc keeps
    100 bytes a round; balanced_alloc frees what it takes) and names the
    allocating function first in the top stack."""
    what = "memleak sample"
    rc, _, err = srv.cli("load", os.path.join(bpf_dir, "memleak.bpf.o"))
    check_eq(rc, 0, f"{what}: loaded ({err.strip()})")
    v = Victim([os.path.join(bin_dir, "memleak-victim")])
    try:
        check(v.ready, f"{what}: victim ready")
        rc, _, err = srv.cli("attach", v.pid, "memleak")
        check_eq(rc, 0, f"{what}: attached ({err.strip()})")
        script = os.path.join(HERE, "..", "..", "samples", "memleak", "memleak.py")
        r = subprocess.run([sys.executable, script, "--socket", srv.socket, "--interval", "2", "--count", "1",
                            "--top", "3"], capture_output=True, text=True, timeout=60)
        blocks = re.findall(r"^\t(\d+) bytes in (\d+) allocations from stack\n((?:\t\t.*\n?)*)", r.stdout, re.M)
        top = blocks[0] if blocks else ("0", "0", "")
        frames = [f.strip() for f in top[2].splitlines()]
        check(int(top[0]) >= 100 * 10 and int(top[0]) == 100 * int(top[1]) and frames[:1] != []
              and frames[0].startswith("leaky_alloc+0x") and any(f.startswith("main+0x") for f in frames),
              f"{what}: the top stack is leaky_alloc's, 100 bytes per allocation", r.stdout[-2000:] + r.stderr)
        cl.call("target.detach", pid=v.pid)
    finally:
        v.proc.kill()
        finish(v.proc, 10)


def test_stackcount(srv, cl, bin_dir, bpf_dir):
    """samples/stackcount on malloc of memleak-victim: its stacks are
    counted apart, leaky_alloc's (main -> leaky_alloc -> malloc) among them
    with the calls made while attached; balanced_alloc's calloc is not
    malloc, so no stack of it."""
    what = "stackcount sample"
    rc, _, err = srv.cli("load", os.path.join(bpf_dir, "stackcount.bpf.o"))
    check_eq(rc, 0, f"{what}: loaded ({err.strip()})")
    v = Victim([os.path.join(bin_dir, "memleak-victim")])
    try:
        check(v.ready, f"{what}: victim ready")
        rc, _, err = srv.cli("attach", v.pid, "stackcount", "--target", "libc.so.6:malloc")
        check_eq(rc, 0, f"{what}: attached at malloc ({err.strip()})")
        script = os.path.join(HERE, "..", "..", "samples", "stackcount", "stackcount.py")
        r = subprocess.run([sys.executable, script, "--socket", srv.socket, "--interval", "1", "--count", "1"],
                           capture_output=True, text=True, timeout=60)
        blocks = re.findall(r"((?:^  \S.*\n)+)^    (\d+)$", r.stdout, re.M)
        stacks = {tuple(f.strip().split("+")[0] for f in b[0].splitlines()): int(b[1]) for b in blocks}
        leaky = [n for fr, n in stacks.items()   # malloc is __libc_malloc's alias
                 if len(fr) > 2 and fr[0].endswith("malloc") and fr[1] == "leaky_alloc" and "main" in fr]
        check(len(leaky) == 1 and leaky[0] >= 10, f"{what}: main -> leaky_alloc -> malloc counted, once a round",
              r.stdout[-2000:] + r.stderr)
        check(not any("balanced_alloc" in fr for fr in stacks), f"{what}: no stack of balanced_alloc (calloc)",
              r.stdout[-2000:])
        cl.call("target.detach", pid=v.pid)
    finally:
        v.proc.kill()
        finish(v.proc, 10)


PY_LOOP = """
import sys
def g(*a, **k):
    return len(a)
print("ready", flush=True)
n = 0
while True:
    n += g(*(1, 2), **{})   # CALL_FUNCTION_EX: PyObject_Call
"""


def test_python(cl, gdb_path):
    what = "python3 at PyObject_Call"
    py = os.path.realpath("/usr/bin/python3")
    v = Victim([py, "-c", PY_LOOP])
    try:
        check(v.ready, f"{what}: python3 ready")
        stack = take_stack(cl, v.pid, f"{py}:PyObject_Call", what)
        _, ours, out = gdb_view(gdb_path, v.pid, stack[0], stack) if stack else (None, None, "")
        if ours and set(ours) == {"No symbol matches"}:   # gdb read no symbols (a loaded machine): once more
            _, ours, out = gdb_view(gdb_path, v.pid, stack[0], stack)
        check(ours is not None and len(ours) > 5, f"{what}: gdb names the frames", out[-3000:])
        ours = ours or []
        check(ours[:1] == ["PyObject_Call"] and "Py_BytesMain" in ours and "__libc_start_call_main" in ours,
              f"{what}: the stack reaches main (Py_BytesMain, then main's return into libc)", repr(ours))
    finally:
        v.proc.kill()
        finish(v.proc, 10)


def main():
    args = parse_probe_args("--victim", "--gdb", optional=("--rust", "--demangle-filter"))
    if not args.gdb:
        skip("gdb is not installed (scripts/setup.sh installs it): no reference stacks")
        sys.exit(report())
    with Server(args) as srv:
        cl = srv.client()
        cl.call("object.load", path=os.path.abspath(args.obj), name="ustack")
        test_chain(cl, args.victim, args.gdb)
        test_stackid(cl, srv, args.victim)
        test_events(srv, args.victim)
        test_rust(cl, args.rust, args.demangle_filter)
        test_build_id(cl, args.victim)
        test_signal(cl, args.victim, args.gdb)
        test_dlopen(cl, args.victim)
        test_bpftrace(srv, args.victim)
        test_memleak(srv, cl, args.bin_dir, os.path.dirname(os.path.abspath(args.obj)))
        test_stackcount(srv, cl, args.bin_dir, os.path.dirname(os.path.abspath(args.obj)))
        test_python(cl, args.gdb)
    sys.exit(report())


if __name__ == "__main__":
    main()
