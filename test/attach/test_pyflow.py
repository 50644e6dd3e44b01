"""samples/pyflow (issue 14): Python function calls of a running python3.11
through its USDT probes, with the native CLI (`bpfgraft load`, `bpfgraft
attach PID pyflow`) and the sample's printer. A script with a known call
pattern waits on stdin while the probes are attached, then runs it:
- every function's calls are counted exactly (a generator once per resume:
  python fires its entry and return probes per resume and yield);
- every call is timed (the `line` probe's semaphore makes 3.11 fire
  function__entry for Python-to-Python calls too), with its first line;
- a function entered before the attach is counted but not timed;
- map keys hold nothing past each string's NUL (as the kernel's
  bpf_probe_read_user_str leaves the rest of a zeroed key);
- the script's own results are unchanged and it runs on after detach."""
import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "cli"))
from harness import Server, check, check_eq, report, require  # noqa: E402

PYTHON = "/usr/bin/python3.11"
SCRIPT = '''import sys
def leaf(x):
    return x + 1

def mid(n):
    s = 0
    for i in range(n):
        s += leaf(i)
    return s

def rec(k):
    if k == 0:
        return 0
    return rec(k - 1) + 1

def gen():
    yield 1
    yield 2

def work():
    total = sum(mid(4) for _ in range(3))
    return total + rec(5) + sum(gen())

def waiter():
    print("ready", flush=True)
    sys.stdin.readline()
    return work()

def main():
    print("result", waiter(), flush=True)
    sys.stdin.readline()

main()
'''
# function: (calls, first line); work's genexpr runs 4 times (3 values and
# the end), gen 3 times (two yields and the end)
WANT = {"leaf": (12, 2), "mid": (3, 5), "rec": (6, 11), "gen": (3, 16), "work": (1, 20), "<genexpr>": (4, 21)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--obj", required=True)
    ap.add_argument("--printer", required=True)
    args = ap.parse_args()
    require("root")
    if not os.access(PYTHON, os.X_OK):
        check(False, f"{PYTHON} (Debian's, with USDT probes) is installed")
        sys.exit(report())
    with tempfile.TemporaryDirectory() as tmp, Server(args) as srv:
        script = os.path.join(tmp, "calls.py")
        with open(script, "w") as f:
            f.write(SCRIPT)
        py = subprocess.Popen([PYTHON, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            check_eq(py.stdout.readline().strip(), "ready", "the script waits")
            rc, _, err = srv.cli("load", args.obj)
            check_eq(rc, 0, f"bpfgraft load pyflow.bpf.o {err}")
            rc, _, err = srv.cli("attach", py.pid, "pyflow")
            check_eq(rc, 0, f"bpfgraft attach PID pyflow: its three usdt programs {err}")
            py.stdin.write("go\n")
            py.stdin.flush()
            check_eq(py.stdout.readline().strip(), "result 38", "the script's result is unchanged")
            r = subprocess.run([sys.executable, args.printer, "--socket", srv.socket, "--interval", "0", "--count", "1",
                                "--json"], capture_output=True, text=True, timeout=60)
            rows = {row["function"]: row for row in json.loads(r.stdout or "[]") if row["file"] == script}
            for func, (calls, line) in WANT.items():
                row = rows.get(func, {})
                check((row.get("calls"), row.get("timed"), row.get("line")) == (calls, calls, line),
                      f"{func}: {calls} calls, each timed, first line {line}", repr(row))
                check(row and 0 < row["avg_us"] <= row["max_us"], f"{func}: a latency", repr(row))
            w = rows.get("waiter", {})
            check((w.get("calls"), w.get("timed")) == (1, 0),
                  "waiter, entered before the attach: its return counted, not timed", repr(w))
            junk = [row["function"] for row in rows.values() for half in (row["raw_key"][:128], row["raw_key"][128:])
                    if bytes.fromhex(half).partition(b"\0")[2].strip(b"\0")]
            check(not junk, "no key holds bytes past its strings' NUL", repr(junk))
            rc, _, err = srv.cli("detach", py.pid)
            check_eq(rc, 0, f"bpfgraft detach PID {err}")
            py.stdin.write("end\n")
            py.stdin.flush()
            check_eq(py.wait(timeout=30), 0, "the script ends normally after the detach")
        finally:
            if py.poll() is None:
                py.kill()
                py.wait()
    sys.exit(report())


if __name__ == "__main__":
    main()
