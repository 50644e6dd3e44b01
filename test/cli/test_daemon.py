"""bpfgraftd as a service: a second instance on the same socket refuses
with a clear message; permissions of the socket and its directory; SIGTERM
shuts down cleanly and removes the socket; --daemon returns once serving."""
import os
import signal
import stat
import subprocess
import tempfile
import time
import shutil
import sys

from harness import Server, check, check_eq, needs, parse_args, report, skip


def wait_gone(path, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and os.path.exists(path):
        time.sleep(0.05)
    return not os.path.exists(path)


def verifier_kernel(args):
    """--verifier=kernel: the kernel's verifier must accept programs too."""
    bpf_dir = os.path.dirname(args.other_obj)
    # a kernel with CONFIG_BPF_KPROBE_OVERRIDE loads override_return in
    # kprobe programs (it checks the function at attach): errinject passes
    override = needs("bpf-override-return") is None
    with Server(args, ["--verifier=kernel"]) as ksrv:
        kc = ksrv.client()
        kc.call("object.load", path=os.path.join(bpf_dir, "malloc.bpf.o"))
        check(True, "--verifier=kernel: malloc passes both verifiers")
        refused = None
        try:
            kc.call("object.load", path=os.path.join(bpf_dir, "errinject.bpf.o"))
        except Exception as e:   # BpfgraftError
            refused = e
        if override:
            check(refused is None, "--verifier=kernel: errinject passes (this kernel has override_return)",
                  str(refused))
        else:
            check(getattr(refused, "name", "") == "verifier_rejected" and "kernel" in str(refused).lower(),
                  "--verifier=kernel: errinject (override_return on a uprobe) is refused by the kernel",
                  str(refused))


def main():
    args = parse_args()
    bpfgraftd = os.path.join(args.bin_dir, "bpfgraftd")

    with Server(args) as srv:
        second = subprocess.run([bpfgraftd, "--socket", srv.socket, "--foreground"],
                                capture_output=True, text=True, timeout=10)
        check(second.returncode != 0, "a second instance on the same socket exits non-zero")
        check("already serving" in second.stderr and srv.socket in second.stderr,
              "it names the socket and says it is already served", second.stderr)
        check(srv.alive(), "the first instance keeps running")
        rc, out, _ = srv.cli("status")
        check_eq(rc, 0, "the first instance still answers")
        mode = stat.S_IMODE(os.stat(srv.socket).st_mode)
        check_eq(oct(mode), oct(0o600), "the socket is 0600 by default")

        srv.proc.send_signal(signal.SIGTERM)
        try:
            code = srv.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            code = None
        check_eq(code, 0, "SIGTERM: clean exit with status 0")
        check(not os.path.exists(srv.socket), "SIGTERM: the socket is removed")
        check(not os.path.exists(srv.socket + ".lock"), "SIGTERM: the lock file is removed")
        check("shutting down" in srv.log_text(), "the log says why it stopped")

    # SO_PEERCRED: a peer may attach only to what it could ptrace itself
    tmp = tempfile.mkdtemp(prefix="bpfgraft-perm-")
    os.chmod(tmp, 0o755)
    sock = os.path.join(tmp, "control.sock")
    srv = subprocess.Popen([bpfgraftd, "--socket", sock, "--socket-mode", "0666", "--foreground"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim = subprocess.Popen(["sleep", "30"])
    try:
        for _ in range(200):
            if os.path.exists(sock):
                break
            time.sleep(0.02)
        sys.path.insert(0, args.scripts)
        from bpfgraft_client import Client
        with Client(sock) as root_client:
            root_client.call("object.load", path=args.obj, name="permtest")
        probe = f"""
import os, sys
sys.path.insert(0, {args.scripts!r})
os.setgid(65534); os.setuid(65534)
from bpfgraft_client import Client, BpfgraftError
c = Client({sock!r})
try:
    c.call("target.attach", pid={victim.pid}, object="permtest")
    print("attached")
except BpfgraftError as e:
    print(e.name, e.message)
"""
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=20)
        check("permission_denied" in r.stdout and "may not trace" in r.stdout,
              "an unprivileged peer may not attach to a root process", r.stdout + r.stderr)
    finally:
        victim.kill()
        victim.wait()
        srv.terminate()
        srv.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    why = needs("root", "bpf-tracing")
    if why:
        skip(f"--verifier=kernel: {why}")
    else:
        verifier_kernel(args)

    tmp = tempfile.mkdtemp(prefix="bpfgraft-daemon-")
    try:
        sockdir = os.path.join(tmp, "run")
        sock = os.path.join(sockdir, "control.sock")
        log = os.path.join(tmp, "d.log")
        r = subprocess.run([bpfgraftd, "--daemon", "--socket", sock, "--socket-mode", "0660", "--log", log],
                           capture_output=True, text=True, timeout=20)
        check_eq(r.returncode, 0, "--daemon returns 0 once the server is serving")
        check(os.path.exists(sock), "--daemon: the socket exists when the command returns")
        check_eq(oct(stat.S_IMODE(os.stat(sockdir).st_mode)), oct(0o700), "the socket directory it creates is 0700")
        check_eq(oct(stat.S_IMODE(os.stat(sock).st_mode)), oct(0o660), "--socket-mode 0660 is applied")
        st = subprocess.run([os.path.join(args.bin_dir, "bpfgraft"), "--socket", sock, "--json", "status"],
                            capture_output=True, text=True, timeout=10)
        check_eq(st.returncode, 0, "the daemon answers status")
        pid = None
        with open(sock + ".lock") as f:
            pid = int(f.read().strip())
        check(pid and pid != os.getpid(), "the lock file holds the daemon's pid")
        os.kill(pid, signal.SIGTERM)
        check(wait_gone(sock), "the daemon removes its socket on SIGTERM")
        with open(log) as f:
            text = f.read()
        check(" info " in text and "listening on" in text, "the log file has one line per event with a level")
        bad = subprocess.run([bpfgraftd, "--socket-mode", "999"], capture_output=True, text=True, timeout=10)
        check(bad.returncode == 2 and "bad socket mode" in bad.stderr, "a bad option is refused with a message")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
    raise SystemExit(report())
