"""`bpfgraft attach --path BINARY OBJ` (issue 14): the native CLI's
binary-wide scope, against a private copy of callbacks-victim (so no other
process is concerned):
- a process running the binary before the attach and one started after it
  (caught at exec, counted from its first call) are counted exactly;
- a process of another binary is left alone;
- a process attached on its own keeps its payload after `detach --path`,
  the processes the scope brought in lose theirs, all keep running with
  their text equal to the file; a process started after the detach is not
  caught;
- the object cannot be unloaded while the scope holds it; bad paths get
  errors naming them."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, check_eq, counts, parse_probe_args, report, text_matches_file  # noqa: E402


def payload_mapped(pid):
    with open(f"/proc/{pid}/maps") as f:
        return any("/memfd:bpfgraft-payload" in line for line in f)


def start(vic, *argv):
    p = subprocess.Popen([vic, *argv], stdout=subprocess.PIPE, text=True)
    first = p.stdout.readline().strip()
    return p, first


def wait_detached(procs):
    deadline = time.monotonic() + 10
    while any(payload_mapped(p.pid) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)


def scope_section(srv, cl, vic, other):
    early, first = start(vic, "1000", "1")
    procs = [early]
    try:
        check_eq(first, "ready", "a process of the binary runs before the attach")
        own, first = start(vic, "100", "1")
        procs.append(own)
        check_eq(first, "ready", "a second one, attached on its own")
        rc, _, err = srv.cli("attach", own.pid)
        check_eq(rc, 0, "bpfgraft attach PID (no object) " + err)
        stranger, first = start(other, "100", "1")
        procs.append(stranger)
        rc, doc, err = srv.cli_json("attach", "--path", vic, "bw", "add_entry", "--target", vic + ":probe_me")
        check(rc == 0 and doc and doc.get("processes") == 2 and doc.get("programs") == 1,
              "attach --path: the program is in both running processes of the binary", f"{doc} {err}")
        check(not payload_mapped(stranger.pid), "a process of another binary is left alone")
        scopes = cl.call("scope.list")
        check(len(scopes) == 1 and scopes[0]["path"] == vic and sorted(scopes[0]["processes"]) ==
              sorted([early.pid, own.pid]), "scope.list lists the scope and its processes", repr(scopes))
        try:
            cl.call("object.unload", id=scopes[0]["object"])
            check(False, "the object cannot be unloaded while a binary-wide attachment holds it")
        except Exception as e:  # noqa: BLE001 - the client raises its RPC error
            check("detach --path" in str(e), "the object cannot be unloaded while a binary-wide attachment holds it",
                  str(e))
        early.send_signal(signal.SIGUSR1)
        check_eq(early.stdout.readline().strip(), "done", "the early process made its 1000 calls")
        late, first = start(vic, "500", "1", "now")
        procs.append(late)
        check_eq(first, "done", "a process started after the attach made its 500 calls")
        check_eq(counts(cl)[0], 1500, "every call of both counted, the late one's from its first")
        own.send_signal(signal.SIGUSR1)
        check_eq(own.stdout.readline().strip(), "done", "the process attached on its own made its 100 calls")
        check_eq(counts(cl)[0], 1600, "and they are counted too")
        rc, doc, err = srv.cli_json("detach", "--path", vic)
        check(rc == 0 and doc and doc.get("processes") == 3, "detach --path: the program left the three processes",
              f"{doc} {err}")
        wait_detached([early, late])
        check(not payload_mapped(early.pid) and not payload_mapped(late.pid),
              "the processes the scope brought in are detached")
        check(payload_mapped(own.pid) and own.pid in [t["pid"] for t in cl.call("target.list")],
              "the process attached on its own stays attached")
        check(all(p.poll() is None for p in procs), "every process still runs")
        check(all(text_matches_file(p.pid) == [] for p in (early, late, own)), "their text equals the file")
        after, first = start(vic, "50", "1", "now")
        procs.append(after)
        check(first == "done" and not payload_mapped(after.pid) and counts(cl)[0] == 1600,
              "a process started after the detach is not caught")
        check_eq(cl.call("scope.list"), [], "no scope is left")
    finally:
        for p in procs:
            p.kill()
            p.wait()


def bad_input_section(srv, vic):
    rc, _, err = srv.cli("attach", "--path", "relative/bin", "bw")
    check(rc != 0 and "relative/bin" in err and "absolute" in err, "a relative --path is refused, naming it", err)
    rc, _, err = srv.cli("attach", "--path", "/nonexistent/bpfgraft-bin", "bw")
    check(rc != 0 and "/nonexistent/bpfgraft-bin" in err, "a missing --path is refused, naming it", err)
    rc, _, err = srv.cli("detach", "--path", vic)
    check(rc != 0 and "no binary-wide attachment" in err, "detach --path of a binary without one is refused", err)
    rc, _, err = srv.cli("attach", "--path", vic)
    check(rc != 0 and "usage" in err, "attach --path needs an object", err)


def main():
    args = parse_probe_args("--test-bin")
    tmp = tempfile.mkdtemp(prefix="bpfgraft-binwide-")
    vic = os.path.join(tmp, "bw-victim")
    other = os.path.join(tmp, "other-victim")
    shutil.copy2(os.path.join(args.test_bin, "callbacks-victim"), vic)
    shutil.copy2(os.path.join(args.test_bin, "callbacks-victim"), other)
    try:
        with Server(args) as srv:
            rc, _, err = srv.cli("load", os.path.abspath(args.obj), "--name", "bw")
            check_eq(rc, 0, "the count object loads " + err)
            with srv.client() as cl:
                scope_section(srv, cl, vic, other)
                bad_input_section(srv, vic)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return report()


if __name__ == "__main__":
    sys.exit(main())
