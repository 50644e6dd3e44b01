#!/usr/bin/python3
"""bpfgraft --host ssh://: a real sshd (Debian's openssh-server) on
127.0.0.1 with a throwaway host key and an authorized client key, all in a
temporary directory; the CLI and the Python client reach bpfgraftd through
it (`bpfgraft dial-stdio` on the far side) for status, load, attach, map
dump, events and detach; map.fd is refused remotely."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from harness import Server, check, check_eq, finish, parse_args, report, skip

SSHD = "/usr/sbin/sshd"


class Sshd:
    """sshd -D on 127.0.0.1:PORT for root with one authorized key; PATH on
    the far side starts with bin_dir so `bpfgraft` is this build's."""

    def __init__(self, bin_dir):
        self.bin_dir = bin_dir
        self.dir = tempfile.mkdtemp(prefix="bpfgraft-sshd-")
        self.proc = None
        self.made_privsep = False

    def _path(self, name):
        return os.path.join(self.dir, name)

    def _keygen(self, name):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self._path(name)], check=True)

    def _free_port(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def _configs(self):
        self.port = self._free_port()
        with open(self._path("sshd_config"), "w") as f:
            f.write(f"ListenAddress 127.0.0.1\nPort {self.port}\nHostKey {self._path('host_key')}\n"
                    f"PidFile {self._path('sshd.pid')}\nAuthorizedKeysFile {self._path('authorized_keys')}\n"
                    "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
                    "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
                    f"SetEnv PATH={self.bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin\n")
        with open(self._path("ssh_config"), "w") as f:
            f.write(f"Host *\n  IdentityFile {self._path('client_key')}\n  IdentitiesOnly yes\n"
                    f"  UserKnownHostsFile {self._path('known_hosts')}\n  StrictHostKeyChecking no\n"
                    "  BatchMode yes\n  LogLevel ERROR\n")
        shutil.copy(self._path("client_key.pub"), self._path("authorized_keys"))

    def __enter__(self):
        self._keygen("host_key")
        self._keygen("client_key")
        self._configs()
        if not os.path.isdir("/run/sshd"):   # sshd's privilege separation directory
            os.makedirs("/run/sshd", mode=0o755)
            self.made_privsep = True
        self.log = open(self._path("sshd.log"), "wb")
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self._path("sshd_config")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen: {open(self._path('sshd.log')).read()}")

    def env(self):
        return dict(os.environ, BPFGRAFT_SSH_COMMAND=f"ssh -F {self._path('ssh_config')}")

    def __exit__(self, *exc):
        if self.proc:
            self.proc.terminate()
            finish(self.proc, 10)
            self.log.close()
        if self.made_privsep:
            shutil.rmtree("/run/sshd", ignore_errors=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        return False


def rcli(srv, url, env, *argv, json_out=False, timeout=60):
    cmd = [srv.cli_bin, "--host", url] + (["--json"] if json_out else []) + [str(a) for a in argv]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    return r.returncode, r.stdout, r.stderr


def malloc_loop():
    """A python3 that mallocs 100000 bytes every 10 ms."""
    return subprocess.Popen([sys.executable, "-c",
                             "import time\nwhile True:\n    bytearray(100000)\n    time.sleep(0.01)\n"])


def check_cli(srv, url, env, args):
    rc, out, err = rcli(srv, url, env, "status", json_out=True)
    st = json.loads(out) if rc == 0 else {}
    check(rc == 0 and st.get("socket") == srv.socket, "status through ssh names the remote socket", err)

    rc, out, err = rcli(srv, url, env, "load", args.obj, json_out=True)
    obj = json.loads(out) if rc == 0 else {}
    check(rc == 0 and obj.get("name") == "cli_maps", "load through ssh sends the object's bytes", err + out)

    sessions = srv.log_text().count("remote via ssh")
    events = subprocess.Popen([srv.cli_bin, "--host", url, "--json", "events", "--topic", "target"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    victim = malloc_loop()
    try:
        deadline = time.monotonic() + 30   # the log names each ssh session (session.remote)
        while time.monotonic() < deadline and srv.log_text().count("remote via ssh") <= sessions:
            time.sleep(0.05)
        time.sleep(0.5)   # its events.subscribe follows at once
        rc, _, err = rcli(srv, url, env, "attach", victim.pid, "cli_maps", "count_call", "--target",
                          "libc.so.6:malloc")
        check_eq(rc, 0, f"attach through ssh ({err.strip()})")
        rc, out, err = rcli(srv, url, env, "ps", json_out=True)
        check(rc == 0 and [t["pid"] for t in json.loads(out)] == [victim.pid], "ps through ssh", err)
        time.sleep(0.5)
        rc, _, err = rcli(srv, url, env, "detach", victim.pid)
        check_eq(rc, 0, f"detach through ssh ({err.strip()})")
        rc, remote_dump, err = rcli(srv, url, env, "map", "dump", "counts", json_out=True)
        lrc, local_dump, _ = srv.cli("map", "dump", "counts", json_out=True)
        entries = json.loads(remote_dump) if rc == 0 else []
        check(rc == 0 and lrc == 0 and remote_dump == local_dump and len(entries) > 0,
              "map dump through ssh (RPC reads) equals the local dump, counts taken", err + remote_dump[:300])
    finally:
        victim.kill()
        victim.wait()
        time.sleep(0.3)
        events.send_signal(signal.SIGINT)
        out, err = finish(events, 10)
    states = [e.get("state") for e in map(json.loads, out.splitlines()) if e.get("pid") == victim.pid]
    check(events.returncode == 0 and "attached" in states and "detached" in states,
          "events through ssh: the attach and the detach of the victim, exit 0 on SIGINT", f"{states} {out!r} {err}")

    with open(os.path.join(srv.dir, "audit.log")) as f:
        attach = [l for l in map(json.loads, f) if l["method"] == "target.attach"]
    check(len(attach) == 1 and attach[0]["who"].get("remote", "").startswith("ssh 127.0.0.1:")
          and attach[0]["target"]["pid"] == victim.pid, "the audit line of the remote attach names ssh's client",
          repr(attach))

    rc, _, err = rcli(srv, url, env, "run", "--", "true")
    check(rc == 2 and "cannot trace" in err, "run is refused with --host (a local child)", err)


def check_python(srv, url, env):
    from bpfgraft_client import BpfgraftError, Client
    os.environ["BPFGRAFT_SSH_COMMAND"] = env["BPFGRAFT_SSH_COMMAND"]
    with Client(host=url, timeout=30) as c:
        check_eq(c.call("server.status")["socket"], srv.socket, "Python client through ssh: server.status")
        try:
            c.map_fd("counts")
            check(False, "Python client through ssh: map.fd refused")
        except BpfgraftError as e:
            check(e.name == "unsupported" and "map.lookup or map.dump" in e.message,
                  "Python client through ssh: map.fd refused, naming the RPC reads", str(e))
        check(len(c.call("map.dump", map="counts")["entries"]) > 0, "Python client through ssh: map.dump")
    with srv.client() as local:
        fd = local.map_fd("counts")
        check(fd >= 0 and os.fstat(fd).st_size > 0, "map.fd still works locally")
        os.close(fd)


def main():
    args = parse_args()
    if not os.access(SSHD, os.X_OK):
        skip(f"{SSHD} missing (openssh-server; scripts/setup.sh installs it)")
        return report()
    with Server(args) as srv, Sshd(args.bin_dir) as sshd:
        url = f"ssh://root@127.0.0.1:{sshd.port}{srv.socket}"
        check_cli(srv, url, sshd.env(), args)
        check_python(srv, url, sshd.env())
        rc, _, err = rcli(srv, "ssh://bad host", sshd.env(), "status")
        check(rc == 2 and "bad --host" in err, "a malformed --host URL is a usage error", err)
    return report()


if __name__ == "__main__":
    sys.exit(main())
