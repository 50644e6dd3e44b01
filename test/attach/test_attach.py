"""End-to-end attach tests against a real bpfgraftd and real victims:
counts exact after every attach, PIE and non-PIE, a library function, a
uretprobe, text restored exactly on detach, a target blocked in read(),
pending signals kept, 200 attach/detach rounds under load, bad PIDs, an
already-traced target, and a target that exits. The exactness checks run
with the interpreter and with the x86 JIT (engine selection)."""
import ctypes
import mmap
import os
import signal
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import (CtlFields, Server, check, check_eq, counts, parse_probe_args, report,  # noqa: E402
                     task_states, text_matches_file, wait_handler, wait_mapped, wait_stopped, wait_threads,
                     wait_until, wait_zombie, zero_counts)

CTL_FIELDS = ["go", "active", "calls", "lib_calls", "bad_results", "signals", "read_done", "usr2", "usr2_outside",
              "hold", "held"]


class Victim(CtlFields):
    FIELDS = CTL_FIELDS

    def __init__(self, binary, directory, threads, block=False, wrapper=()):
        self.ctl_path = os.path.join(directory, f"ctl-{os.getpid()}-{time.monotonic_ns()}")
        with open(self.ctl_path, "wb") as f:
            f.write(b"\0" * 4096)
        argv = list(wrapper) + [binary, self.ctl_path, str(threads)] + (["--block"] if block else [])
        self.proc = subprocess.Popen(argv)
        self.pid = self.proc.pid
        deadline = time.monotonic() + 10
        while wrapper and time.monotonic() < deadline:   # the wrapper forks the victim
            try:
                with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                    kids = f.read().split()
            except OSError:
                kids = []
            if kids:
                self.pid = int(kids[0])
                break
            time.sleep(0.02)
        self.mm = None
        while time.monotonic() < deadline:
            try:
                f = open(self.ctl_path, "r+b")
                self.mm = mmap.mmap(f.fileno(), 4096)
                f.close()
                break
            except (OSError, ValueError):
                time.sleep(0.02)
        # past its start (its library mapped, its handlers and threads made)
        wait_threads(self.pid, threads + 1)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.pid != self.proc.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        if self.mm:
            self.mm.close()
        os.unlink(self.ctl_path)


def exact_round(cl, v, run_s=0.1, lib=True, ret=True, what=""):
    """Counts made between two quiescent points must match exactly."""
    ok = v.quiesce()
    c0, l0, m0 = v.get("calls"), v.get("lib_calls"), counts(cl)
    v.set("go", 1)
    time.sleep(run_s)
    deadline = time.monotonic() + 20   # a loaded machine may not run the threads that soon
    while v.get("calls") == c0 and time.monotonic() < deadline:
        time.sleep(0.005)
    ok &= v.quiesce()
    c1, l1, m1 = v.get("calls"), v.get("lib_calls"), counts(cl)
    calls = c1 - c0
    good = ok and calls > 0 and m1[0] - m0[0] == calls
    if ret:
        good &= m1[1] - m0[1] == calls
    if lib:
        good &= m1[3] - m0[3] == l1 - l0
    return good, f"{what}: victim {calls} calls / {l1 - l0} lib calls, program {[a - b for a, b in zip(m1, m0)]}"


def thread_states(pid):
    """Each thread's state, wait channel and syscall line, for a failure report."""
    out = []
    try:
        for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
            base = f"/proc/{pid}/task/{tid}"
            try:
                with open(base + "/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(base + "/wchan") as f:
                    wchan = f.read()
                with open(base + "/syscall") as f:
                    sysc = f.read().strip()
                with open(base + "/status") as f:
                    tracer = [ln.split()[1] for ln in f if ln.startswith("TracerPid")][0]
            except OSError as e:
                out.append(f"  thread {tid}: {e}")
                continue
            out.append(f"  thread {tid}: state {state} wchan {wchan} tracer {tracer} syscall {sysc}")
    except OSError as e:
        out.append(f"  process {pid}: {e}")
    return "\n".join(out)


def seccomp_mode(pid):
    """pid's Seccomp: field (2: a filter installed), or -1."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("Seccomp:"))
    except (OSError, StopIteration, ValueError):
        return -1


def attach(cl, pid, progs, target, engine=None):
    if engine is None:
        return cl.call("target.attach", pid=pid, object="count", programs=progs, target=target)
    return cl.call("target.attach", pid=pid, object="count", programs=progs, target=target, engine=engine)


def refused_attach(cl, pid, target, what):
    """Attaches add_entry at target expecting a refusal: the error and the
    seconds it took to come, or a failed check `what` and None."""
    from bpfgraft_client import BpfgraftError
    t0 = time.monotonic()
    try:
        attach(cl, pid, ["add_entry"], target)
    except BpfgraftError as e:
        return e, time.monotonic() - t0
    check(False, what)
    return None, time.monotonic() - t0


def engines_of(cl, pid):
    for t in cl.call("target.list"):
        if t["pid"] == pid:
            return sorted({h["engine"] for h in t["hooks"]})
    return None


def detach_meets_death(srv, args, error):
    """A client's detach and the target's death in one event batch: the
    server, stopped, gets the request, then the process dies; resumed, it
    handles the detach (which frees the target) before the target's own
    hang-up events, which must no longer name it."""
    for round_ in range(3):
        cl = srv.client()
        v = Victim(os.path.join(args.test_bin, "attach-victim-pie"), srv.dir, 2)
        try:
            attach(cl, v.pid, ["add_entry"], ":probed_add")
            replies = []

            def detach():
                try:
                    replies.append(cl.call("target.detach", pid=v.pid))
                except error as e:
                    replies.append(e.name)
            os.kill(srv.proc.pid, signal.SIGSTOP)
            try:
                caller = threading.Thread(target=detach)
                caller.start()
                time.sleep(0.2)  # the request is in the socket
                os.kill(v.pid, signal.SIGKILL)
                v.proc.wait()
                time.sleep(0.1)  # the payload's socket and pidfd report it
            finally:
                os.kill(srv.proc.pid, signal.SIGCONT)
            caller.join(30)
            check(not caller.is_alive() and len(replies) == 1,
                  f"detach meeting death {round_}: the detach is answered", repr(replies))
            check(srv.alive(), f"detach meeting death {round_}: bpfgraftd lives")
            check_eq(srv.client().call("target.list"), [], f"detach meeting death {round_}: nothing listed")
        finally:
            v.stop()


def main():
    args = parse_probe_args("--test-bin")
    from bpfgraft_client import BpfgraftError

    with Server(args) as srv:
        cl = srv.client()
        cl.call("object.load", path=os.path.abspath(args.obj), name="count")

        for kind, engine in (("pie", "interp"), ("nopie", "interp"), ("pie", "x86"), ("nopie", "x86"),
                             ("pie", "llvm"), ("nopie", "llvm")):
            kind_name = kind
            kind = f"{kind_name}/{engine}"
            v = Victim(os.path.join(args.test_bin, f"attach-victim-{kind_name}"), srv.dir, 4)
            try:
                v.set("go", 1)
                t0 = time.monotonic()
                attach(cl, v.pid, ["add_entry", "add_return"], ":probed_add", engine)
                check(True, f"{kind}: attach uprobe+uretprobe to probed_add in {1000 * (time.monotonic() - t0):.1f} ms")
                attach(cl, v.pid, ["lib_entry"], "libattachvictim.so:lib_probed_mul", engine)
                check(True, f"{kind}: attach a uprobe to a library function")
                ps = cl.call("target.list")
                check(len(ps) == 1 and ps[0]["pid"] == v.pid and len(ps[0]["hooks"]) == 3,
                      f"{kind}: target.list shows the process with 3 hooks", repr(ps))
                check_eq(engines_of(cl, v.pid), [engine], f"{kind}: target.list reports engine {engine} for every hook")
                good, detail = exact_round(cl, v, what=kind)
                check(good, f"{kind}: uprobe, uretprobe and library counts equal the victim's own", detail)
                check_eq(v.get("bad_results"), 0, f"{kind}: probed functions return correct values")
                cl.call("target.detach", pid=v.pid)
                check_eq(text_matches_file(v.pid), [], f"{kind}: after detach the text equals the files")
                before = counts(cl)
                v.set("go", 1)
                time.sleep(0.05)
                v.quiesce()
                check(counts(cl) == before and v.alive(), f"{kind}: after detach nothing counts, victim runs")
                attach(cl, v.pid, ["add_entry", "add_return"], ":probed_add", engine)
                good, detail = exact_round(cl, v, lib=False, what=kind + " re-attach")
                check(good, f"{kind}: attaching again works and counts exactly", detail)
                cl.call("target.detach", pid=v.pid)
                check_eq(text_matches_file(v.pid), [], f"{kind}: text restored after the second detach")
                check(v.alive(), f"{kind}: victim alive at the end")
            finally:
                v.stop()

        # engine selection: the default is llvm, which falls back to x86 until
        # it is built, never to the interpreter for these programs; unknown
        # engines are refused before anything happens
        v = Victim(os.path.join(args.test_bin, "attach-victim-pie"), srv.dir, 1)
        try:
            try:
                attach(cl, v.pid, ["add_entry"], ":probed_add", "bogus")
                check(False, "attach with engine 'bogus' fails")
            except BpfgraftError as e:
                check(e.name == "invalid_params" and "bogus" in e.message,
                      "engine 'bogus': invalid_params naming it", str(e))
            check_eq(cl.call("target.list"), [], "engine 'bogus': nothing was attached")
            attach(cl, v.pid, ["add_entry"], ":probed_add")
            eng = engines_of(cl, v.pid)
            check(eng in (["llvm"], ["x86"]), "default engine: llvm or its x86 fallback", repr(eng))
            good, detail = exact_round(cl, v, lib=False, ret=False, what="default engine")
            check(good, "default engine: counts exact", detail)
            attach(cl, v.pid, ["add_return"], ":probed_add", "interp")
            check_eq(engines_of(cl, v.pid), sorted(set(eng + ["interp"])),
                     "programs of one process may run on different engines")
            good, detail = exact_round(cl, v, lib=False, what="mixed engines")
            check(good, "mixed engines on one site: counts exact", detail)
            cl.call("target.detach", pid=v.pid)
            check(v.alive(), "engine selection: victim alive")
        finally:
            v.stop()

        detach_meets_death(srv, args, BpfgraftError)

        cache = os.path.join(srv.dir, "jitcache")
        entries = [f for f in os.listdir(cache) if f.endswith(".jit")] if os.path.isdir(cache) else []
        check(len(entries) >= 3, f"llvm: compiled code is cached on disk ({len(entries)} entries)")

        # a target blocked in read(), with a signal pending meanwhile
        v = Victim(os.path.join(args.test_bin, "attach-victim-pie"), srv.dir, 1, block=True)
        try:
            os.kill(v.pid, signal.SIGUSR1)
            attach(cl, v.pid, ["add_entry"], ":probed_add")
            os.kill(v.pid, signal.SIGUSR1)
            cl.call("target.detach", pid=v.pid)
            # the pipe's write end: the victim's highest fd
            fds = sorted(int(x) for x in os.listdir(f"/proc/{v.pid}/fd"))
            with open(f"/proc/{v.pid}/fd/{fds[-1]}", "wb") as w:
                w.write(b"x")
            deadline = time.monotonic() + 20
            while v.get("read_done") == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            check_eq(v.get("read_done"), 1, "a target blocked in read() continues and reads the right byte")
            check_eq(v.get("signals"), 2, "both SIGUSR1 (before and during attach) were delivered")
        finally:
            v.stop()

        # hammer: 8 threads call the function while attaching/detaching 200 times
        v = Victim(os.path.join(args.test_bin, "attach-victim-pie"), srv.dir, 8)
        try:
            exact_rounds = 0
            for i in range(200):
                v.set("go", 1)
                attach(cl, v.pid, ["add_entry"], ":probed_add")
                good, detail = exact_round(cl, v, run_s=0.005, lib=False, ret=False, what=f"round {i}")
                if not good:
                    # one bad round is enough to know; a stuck thread would
                    # make every further round wait out quiesce()
                    print(detail + "\n" + thread_states(v.pid), flush=True)
                    cl.call("target.detach", pid=v.pid)
                    break
                exact_rounds += 1
                v.set("go", 1)
                cl.call("target.detach", pid=v.pid)
            check_eq(exact_rounds, 200, "hammer: count exact after each of 200 attaches under load")
            check(v.alive() and v.get("bad_results") == 0, "hammer: victim alive, all results correct")
            check_eq(text_matches_file(v.pid), [], "hammer: text equals the files at the end")
        finally:
            v.stop()

        # bpf_send_signal_thread / bpf_send_signal: one SIGUSR2 per call,
        # arriving inside the probed call on the calling thread
        v = Victim(os.path.join(args.test_bin, "attach-victim-pie"), srv.dir, 2)
        try:
            attach(cl, v.pid, ["add_signal_thread"], ":probed_add")
            attach(cl, v.pid, ["lib_signal"], "libattachvictim.so:lib_probed_mul")
            ok = v.quiesce()
            c0, s0 = v.get("calls") + v.get("lib_calls"), v.get("usr2")
            v.set("go", 1)
            time.sleep(0.1)
            wait_until(lambda: v.get("calls") + v.get("lib_calls") > c0)  # a loaded machine runs them later
            ok &= v.quiesce()
            calls, sigs = v.get("calls") + v.get("lib_calls") - c0, v.get("usr2") - s0
            check(ok and calls > 0 and sigs == calls, "bpf_send_signal(_thread): one SIGUSR2 per probed call",
                  f"{calls} calls, {sigs} signals")
            check_eq(v.get("usr2_outside"), 0, "bpf_send_signal(_thread): every signal arrived inside the probed call")

            # detach while signal handlers entered from a probe still run:
            # they return into the payload, which must stay mapped
            v.set("hold", 1)
            v.set("go", 1)
            deadline = time.monotonic() + 10
            while v.get("held") < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            check_eq(v.get("held"), 2, "both threads wait in a SIGUSR2 handler entered from a probe")
            cl.call("target.detach", pid=v.pid)
            check("leaving the payload mapped" in srv.log_text(),
                  "detach leaves the payload mapped while a signal handler would return into it")
            v.set("hold", 0)
            ok = v.quiesce()
            c0, s0 = v.get("calls"), v.get("usr2")
            v.set("go", 1)
            time.sleep(0.05)
            wait_until(lambda: v.get("calls") > c0)  # a loaded machine runs them later
            ok &= v.quiesce()
            check(ok and v.alive() and v.get("calls") > c0 and v.get("usr2") == s0 and v.get("bad_results") == 0,
                  "the handlers returned through the payload; the victim runs on without probes",
                  f"alive {v.alive()} calls {v.get('calls') - c0} signals {v.get('usr2') - s0}")
            check_eq(text_matches_file(v.pid), [], "signal detach: text equals the files")
        finally:
            v.stop()

        # runs the payload had to skip are counted per hook (target.list
        # "misses"): a uretprobe on a function recursing deeper than the
        # shadow stack misses the innermost 8 of every 40 returns
        rv = subprocess.Popen([os.path.join(args.test_bin, "recurse-victim")])
        try:
            time.sleep(0.2)
            zero_counts(cl)
            attach(cl, rv.pid, ["add_return"], ":recurse")
            time.sleep(0.5)
            wait_until(lambda: any(h["misses"] for t in cl.call("target.list") if t["pid"] == rv.pid
                                   for h in t["hooks"]), step=0.1)  # a loaded machine recurses later
            # the victim recurses on between the two reads: bracket the list
            before = counts(cl)[1]
            hooks = [h for t in cl.call("target.list") if t["pid"] == rv.pid for h in t["hooks"]]
            misses, after = hooks[0]["misses"] if hooks else 0, counts(cl)[1]
            check(misses > 0 and before - 4 * 40 <= misses * 4 <= after + 4 * 40,
                  f"target.list: a hook's missed runs ({misses} misses, {before}..{after} returns traced around "
                  "the list: 8 of 40 missed)")
            cl.call("target.detach", pid=rv.pid)
            check(rv.poll() is None and text_matches_file(rv.pid) == [], "the recursing victim runs on, text restored")
        finally:
            rv.kill()
            rv.wait()

        # a fork made after attach runs the probes too (programs follow
        # forks); detach removes them there as well, and so does the end of
        # the target (which a fork holding the payload's socket must not hide)
        for ending in ("detach", "exit"):
            fv = subprocess.Popen([os.path.join(args.test_bin, "forkloop-victim")])
            child = None
            try:
                wait_handler(fv.pid, signal.SIGUSR1)  # SIGUSR1 before that would kill it
                attach(cl, fv.pid, ["add_entry"], ":forkloop_work")
                os.kill(fv.pid, signal.SIGUSR1)
                deadline = time.monotonic() + 20
                while child is None and time.monotonic() < deadline:
                    with open(f"/proc/{fv.pid}/task/{fv.pid}/children") as f:
                        kids = f.read().split()
                    child = int(kids[0]) if kids else None
                    time.sleep(0.02)
                # each alone, the other stopped: counts, not a rate, say who runs it
                alone = {}
                for who, stop in (("fork", fv.pid), ("parent", child)):
                    if stop is None:
                        break
                    os.kill(stop, signal.SIGSTOP)
                    try:
                        wait_stopped(stop)
                        zero_counts(cl)
                        time.sleep(0.3)
                        alone[who] = wait_until(lambda: counts(cl)[0], step=0.05)  # a loaded machine: later
                    finally:
                        os.kill(stop, signal.SIGCONT)
                check(child is not None and alone.get("fork", 0) > 0 and alone.get("parent", 0) > 0,
                      f"{ending}: parent and fork both run the probe (each alone: {alone})")
                if ending == "detach":
                    cl.call("target.detach", pid=fv.pid)
                else:
                    fv.kill()
                    fv.wait()
                    deadline = time.monotonic() + 20
                    while cl.call("target.list") and time.monotonic() < deadline:
                        time.sleep(0.05)
                    check_eq(cl.call("target.list"), [], "exit: the target's end is seen while its fork lives")
                check(child is not None and text_matches_file(child) == [],
                      f"{ending}: afterwards the fork's text equals the files")
                zero_counts(cl)
                time.sleep(0.3)
                check_eq(counts(cl)[0], 0, f"{ending}: and nothing counts any more")
                check(child is not None and os.path.exists(f"/proc/{child}") and (ending == "exit" or fv.poll() is None),
                      f"{ending}: the fork (and parent) run on")
            finally:
                if child:
                    os.kill(child, signal.SIGKILL)
                fv.kill()
                fv.wait()

        # a thread in uninterruptible sleep (the parent of a vfork child) does
        # not stop: attach gives up after a second instead of blocking the
        # server, and the thread is let go once it wakes
        vv = subprocess.Popen([os.path.join(args.test_bin, "vfork-victim")])
        try:
            wait_handler(vv.pid, signal.SIGUSR1)  # SIGUSR1 before that would kill it
            os.kill(vv.pid, signal.SIGUSR1)
            wait_until(lambda: "D" in task_states(vv.pid), step=0.01)  # the parent waits for its vfork child
            e, took = refused_attach(cl, vv.pid, ":vfork_work",
                                     "attach while a thread waits for its vfork child fails")
            if e:
                check("uninterruptible sleep" in e.message and "vfork" in e.message and took < 3.5,
                      f"attach while a thread waits for its vfork child: refused in {took:.1f} s, saying why", str(e))
            check_eq(cl.call("object.list")[0]["name"], "count", "and the server goes on serving")
            deadline = time.monotonic() + 30   # the child exits (4 s); the server's tick lets the thread go
            while time.monotonic() < deadline:
                with open(f"/proc/{vv.pid}/status") as f:
                    status = dict(ln.split(":", 1) for ln in f if ":" in ln)
                if status["TracerPid"].strip() == "0" and status["State"].split()[0] in "SR":
                    break
                time.sleep(0.1)
            check(status["TracerPid"].strip() == "0" and status["State"].split()[0] in "SR",
                  "once the child exited the thread runs, untraced", repr((status["TracerPid"], status["State"])))
            zero_counts(cl)
            attach(cl, vv.pid, ["add_entry"], ":vfork_work")
            time.sleep(0.3)
            wait_until(lambda: counts(cl)[0] > 50, step=0.05)  # a call a millisecond, slower on a loaded machine
            check(counts(cl)[0] > 50, f"then attach works and counts ({counts(cl)[0]})")
            cl.call("target.detach", pid=vv.pid)
        finally:
            vv.kill()
            vv.wait()

        # sandboxed processes: their seccomp filters are run on the payload's
        # syscalls first; one that would kill the process is refused
        for mode in ("kill-socket", "errno-tgkill", "errno-mount", "args", "kill-thread-clone"):
            sv = subprocess.Popen([os.path.join(args.test_bin, "seccomp-victim"), mode])
            try:
                wait_until(lambda: seccomp_mode(sv.pid) == 2)  # its filter installed
                log_before = len(srv.log_text())
                try:
                    attach(cl, sv.pid, ["add_entry"], ":sandboxed_work")
                    refused = None
                except BpfgraftError as e:
                    refused = e
                if mode.startswith("kill-"):
                    syscall = {"kill-socket": "socket", "kill-thread-clone": "clone"}[mode]
                    check(refused is not None and f"seccomp filter that kills the process on {syscall}(2)" in
                          refused.message, f"seccomp filter killing on {syscall}(2): attach refused, naming it",
                          str(refused))
                    check(sv.poll() is None and cl.call("target.list") == [] and text_matches_file(sv.pid) == [],
                          f"seccomp {mode}: the sandboxed process lives on, untouched")
                    continue
                zero_counts(cl)
                time.sleep(0.2)
                wait_until(lambda: counts(cl)[0] > 50, step=0.05)  # slower on a loaded machine
                warned = "fails tgkill(2)" in srv.log_text()[log_before:]
                check(refused is None and counts(cl)[0] > 50 and warned == (mode == "errno-tgkill"),
                      f"seccomp filter {mode}: attached, counts ({counts(cl)[0]}), "
                      f"{'a warning names it' if warned else 'no warning'}", str(refused))
                cl.call("target.detach", pid=sv.pid)
                check(sv.poll() is None, f"seccomp {mode}: the process runs on after detach")
            finally:
                sv.kill()
                sv.wait()

        # static glibc executables, with and without symbols: the maps' locks
        # are bpfgraft's own, so a hash map program runs in both
        static = os.path.join(args.test_bin, "static-victim")
        nm = subprocess.run(["nm", static], capture_output=True, text=True).stdout
        work = [int(l.split()[0], 16) for l in nm.splitlines() if l.endswith(" static_work")][0]
        for name in ("static-victim", "static-victim-stripped"):
            stripped = name.endswith("stripped")
            sv = subprocess.Popen([os.path.join(args.test_bin, name)])
            try:
                time.sleep(0.2)
                target = f":0x{work:x}" if stripped else ":static_work"
                try:
                    attach(cl, sv.pid, ["add_tid"], target)
                    refused = None
                except BpfgraftError as e:
                    refused = e
                check(refused is None, f"{name}: a program using a hash map attaches", str(refused))
                time.sleep(0.3)
                wait_until(lambda: any(struct.unpack("<Q", e["value"])[0] >> 32 == sv.pid
                                       for e in cl.call("map.dump", map="tids")["entries"]), step=0.05)
                ids = [struct.unpack("<Q", e["value"])[0] for e in cl.call("map.dump", map="tids")["entries"]]
                check(any(i >> 32 == sv.pid for i in ids), f"{name}: the hash map is updated from inside it", repr(ids))
                cl.call("target.detach", pid=sv.pid)
                check(sv.poll() is None and text_matches_file(sv.pid) == [], f"{name}: runs on, text restored")
            finally:
                sv.kill()
                sv.wait()

        # a process in another pid namespace (a container's): pid_tgid gives
        # the ids of ours, as the kernel's helper does, for every thread
        v = Victim(os.path.join(args.test_bin, "attach-victim-pie"), srv.dir, 3,
                   wrapper=["unshare", "--pid", "--fork", "--kill-child"])
        try:
            with open(f"/proc/{v.pid}/status") as f:
                nspid = [ln.split()[1:] for ln in f if ln.startswith("NSpid:")][0]
            check(len(nspid) == 2 and nspid[1] == "1", "the victim is pid 1 of its own pid namespace", repr(nspid))
            for e in cl.call("map.dump", map="tids")["entries"]:   # earlier sections' threads
                cl.call("map.delete", map="tids", key=e["key"])
            attach(cl, v.pid, ["add_tid"], ":probed_add")
            v.set("go", 1)
            time.sleep(0.3)
            wait_until(lambda: len(cl.call("map.dump", map="tids")["entries"]) >= 3, step=0.05)  # every thread called
            v.quiesce()
            ids = [struct.unpack("<Q", e["value"])[0] for e in cl.call("map.dump", map="tids")["entries"]]
            host_tids = sorted(int(x) for x in os.listdir(f"/proc/{v.pid}/task"))
            check(ids and all(i >> 32 == v.pid for i in ids),
                  f"pid namespace: pid_tgid's pid is the host pid {v.pid}", repr([i >> 32 for i in ids]))
            got = sorted(i & 0xffffffff for i in ids)
            check(len(got) == 3 and set(got) <= set(host_tids) and v.pid not in got,
                  "pid namespace: each calling thread's tid is its host tid", f"{got} of {host_tids}")
            cl.call("target.detach", pid=v.pid)
            check(v.alive(), "pid namespace: the victim runs on after detach")
        finally:
            v.stop()

        # errors
        try:
            attach(cl, 999999, ["add_entry"], ":probed_add")
            check(False, "attach to a missing pid fails")
        except BpfgraftError as e:
            check(e.name == "not_found" and "999999" in e.message, "attach to a missing pid: not_found naming it", str(e))

        # what cannot take a payload says what it is
        zombie = subprocess.Popen(["true"])
        wait_zombie(zombie.pid)   # exited, not yet reaped
        for pid, name, words, what in ((2, "invalid_params", "kernel thread", "a kernel thread"),
                                       (srv.proc.pid, "invalid_params", "bpfgraftd itself", "the server itself"),
                                       (zombie.pid, "not_found", "zombie", "a zombie")):
            try:
                cl.call("target.attach", pid=pid)
                check(False, f"attach to {what} fails")
            except BpfgraftError as e:
                check(e.name == name and words in e.message, f"attach to {what}: {name}, saying so", str(e))
        zombie.wait()

        # a stopped process (SIGSTOP, ^Z) runs no thread, not even the
        # payload's: attach and detach say so at once and change nothing
        v = Victim(os.path.join(args.test_bin, "attach-victim-pie"), srv.dir, 2)
        try:
            os.kill(v.pid, signal.SIGSTOP)
            wait_stopped(v.pid)
            e, took = refused_attach(cl, v.pid, ":probed_add", "attach to a stopped process fails")
            if e:
                check(e.name == "busy" and "kill -CONT" in e.message and took < 2,
                      "attach to a stopped process: busy at once, naming kill -CONT", str(e))
            check(cl.call("target.list") == [] and text_matches_file(v.pid) == [],
                  "the stopped process was not touched")
            os.kill(v.pid, signal.SIGCONT)
            attach(cl, v.pid, ["add_entry"], ":probed_add")
            os.kill(v.pid, signal.SIGSTOP)
            wait_stopped(v.pid)
            try:
                cl.call("target.detach", pid=v.pid)
                check(False, "detach from a stopped process fails")
            except BpfgraftError as e:
                check(e.name == "busy" and "kill -CONT" in e.message, "detach from a stopped process: busy", str(e))
            os.kill(v.pid, signal.SIGCONT)
            good, detail = exact_round(cl, v, lib=False, ret=False, what="after SIGCONT")
            check(good, "after SIGCONT the probe still counts exactly", detail)
            cl.call("target.detach", pid=v.pid)
            check(v.alive() and text_matches_file(v.pid) == [] and cl.call("target.list") == [],
                  "then detach works and the text is restored")
        finally:
            v.stop()

        sleeper = subprocess.Popen(["sleep", "60"])
        wait_mapped(sleeper.pid, "libc.so.6")   # let it map libc before we trace it
        libc = ctypes.CDLL(None, use_errno=True)
        try:
            PTRACE_SEIZE = 0x4206
            traced = libc.ptrace(PTRACE_SEIZE, sleeper.pid, None, None) == 0
            check(traced, "the test itself traces a process")
            try:
                cl.call("target.attach", pid=sleeper.pid, object="count", programs=["add_entry"],
                        target="libc.so.6:nanosleep")
                check(False, "attach to an already traced process fails")
            except BpfgraftError as e:
                check("already traced" in e.message, "already-traced target: the error says so", str(e))
        finally:
            sleeper.kill()
            sleeper.wait()

        v = Victim(os.path.join(args.test_bin, "attach-victim-pie"), srv.dir, 2)
        attach(cl, v.pid, ["add_entry"], ":probed_add")
        obj_id = [o["id"] for o in cl.call("object.list") if o["name"] == "count"][0]
        try:
            cl.call("object.unload", id=obj_id)
            check(False, "unloading an object whose programs run in a process is refused")
        except BpfgraftError as e:
            check(e.name == "busy" and str(v.pid) in e.message,
                  "unloading an object in use: busy, naming the process", str(e))
        v.proc.kill()
        v.proc.wait()
        deadline = time.monotonic() + 20
        while cl.call("target.list") and time.monotonic() < deadline:
            time.sleep(0.05)
        check_eq(cl.call("target.list"), [], "a target that exits is noticed and forgotten")
        check(counts(cl)[0] > 0, "maps keep their data after the target exits")
        v.stop()
        check(srv.alive(), "the server survived everything")


if __name__ == "__main__":
    main()
    raise SystemExit(report())
