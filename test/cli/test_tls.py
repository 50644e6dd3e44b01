#!/usr/bin/python3
"""bpfgraftd --listen tcp://127.0.0.1:PORT: mutual TLS 1.3 with a test CA
the `openssl` CLI makes here. A client certificate of the CA is served
(CLI and Python client); none, one of another CA, an expired one and a
TLS 1.2 client are refused, each named in the server log; a peer that
never shakes hands is closed after 10 s. Roles by
certificate subject and SAN (access file) are allowed and denied; the audit
line of a state-changing call names the subject and the remote address,
reads get none; an operate certificate attaches and detaches a process
while another TLS connection streams the target events; map.fd is refused;
an operate line with targets: (a uid, a cgroup) reaches those processes
only; --takeover carries the TCP listener over. SIGHUP rereads the certificate files (a bad one keeps the
old); --listen without the files, or the files without --listen, refuse to
start."""
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

from harness import Server, check, check_eq, parse_args, report

STATUS = [0, 1, "server.status", []]


class Pki:
    """A CA, another CA, and certificates made with the openssl CLI in a
    temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="bpfgraft-tls-")

    def path(self, name):
        return os.path.join(self.dir, name)

    def _run(self, *argv):
        subprocess.run(["openssl", *argv], check=True, capture_output=True)

    def ca(self, name, cn):
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", self.path(name + ".key"), "-out", self.path(name + ".crt"), "-days", "2",
                  "-subj", f"/CN={cn}")

    def cert(self, name, subj, sans, ca="ca", days=2):
        """NAME.crt and NAME.key: subj (openssl's /K=V form), SANs as
        openssl's subjectAltName value, signed by ca, valid for days (-1:
        expired yesterday)."""
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", self.path(name + ".key"), "-out", self.path(name + ".csr"), "-subj", subj)
        with open(self.path(name + ".ext"), "w") as f:
            f.write(f"subjectAltName={sans}\n")
        self._run("x509", "-req", "-in", self.path(name + ".csr"), "-CA", self.path(ca + ".crt"),
                  "-CAkey", self.path(ca + ".key"), "-set_serial", str(int(time.time() * 1000) % 10**9),
                  "-out", self.path(name + ".crt"), "-days", str(days), "-extfile", self.path(name + ".ext"))

    def files(self, name, ca="ca"):
        return dict(tls_cert=self.path(name + ".crt"), tls_key=self.path(name + ".key"),
                    tls_ca=self.path(ca + ".crt"))

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def make_pki():
    pki = Pki()
    pki.ca("ca", "bpfgraft test CA")
    pki.ca("other", "another CA")
    pki.cert("server", "/CN=bpfgraftd", "IP:127.0.0.1")
    pki.cert("alice", "/O=ops/CN=alice", "DNS:alice.example")     # operate by subject
    pki.cert("bob", "/O=ops/CN=bob", "DNS:bob.example")           # read by SAN
    pki.cert("dave", "/O=ops/CN=dave", "email:dave@example.org")  # admin by SAN
    pki.cert("carol", "/O=ops/CN=carol", "DNS:carol.example")     # named by no rule
    pki.cert("erin", "/O=ops/CN=erin", "DNS:erin.example")        # operate on some processes only
    pki.cert("expired", "/O=ops/CN=alice", "DNS:alice.example", days=-1)
    pki.cert("stranger", "/O=ops/CN=alice", "DNS:alice.example", ca="other")
    return pki


ACCESS = """# roles of TLS peers
operate subject:CN=alice,O=ops
read    san:DNS:bob.example
admin   san:email:dave@example.org
operate subject:CN=erin,O=ops targets:uid:{uid} targets:cgroup:/{cgroup}
"""
TARGET_UID = 60011
LOOP = "import time\nwhile True:\n    bytearray(100000)\n    time.sleep(0.01)\n"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raw_status(port, ctx):
    """server.status over a TLS socket made with ctx: ("ok", result) or
    ("refused", why)."""
    import msgpack
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                s.sendall(msgpack.packb(STATUS))
                data = s.recv(65536)
                if not data:
                    return "refused", "closed without an answer"
                return "ok", msgpack.unpackb(data, raw=False)
    except (OSError, ssl.SSLError) as e:
        return "refused", str(e)


def client_ctx(pki, cert=None, ca="ca", max12=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.path(ca + ".crt"))
    if cert:
        ctx.load_cert_chain(pki.path(cert + ".crt"), pki.path(cert + ".key"))
    if max12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def wait_log(srv, text, start, timeout=10):
    """Whether text shows in the server log after offset start within timeout s."""
    deadline = time.monotonic() + timeout
    while text not in srv.log_text()[start:]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def check_refusals(srv, pki, port):
    """No certificate, another CA, expired, TLS 1.2: refused, each named in
    the server log."""
    cases = [("no client certificate", client_ctx(pki), "peer did not return a certificate"),
             ("a certificate of another CA", client_ctx(pki, "stranger"), "unable to get local issuer certificate"),
             ("an expired certificate", client_ctx(pki, "expired"), "certificate has expired"),
             ("TLS 1.2", client_ctx(pki, "alice", max12=True), "unsupported protocol")]
    for what, ctx, logged in cases:
        start = len(srv.log_text())
        got, detail = raw_status(port, ctx)
        check_eq(got, "refused", f"{what}: refused")
        check(wait_log(srv, logged, start), f"{what}: the server log says '{logged}'", srv.log_text()[start:])
    got, res = raw_status(port, client_ctx(pki, "alice"))
    check(got == "ok" and res[2] is None and res[3].get("version"),
          "the same raw client with a valid certificate gets server.status", repr(res))


def check_silent_peer(srv, port):
    """A TCP peer that never starts a handshake is closed after 10 s, logged."""
    start = len(srv.log_text())
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        t0 = time.monotonic()
        try:
            data = s.recv(1)
        except OSError as e:
            data = str(e)
        waited = time.monotonic() - t0
    check(data == b"" and 9 <= waited < 25, "a peer without a handshake is closed after 10 s",
          f"recv gave {data!r} after {waited:.1f} s")
    check("no TLS handshake" in srv.log_text()[start:], "the server log says why it closed the silent peer")


def tls_client(port, pki, name):
    from bpfgraft_client import Client
    return Client(host=f"tcps://127.0.0.1:{port}", timeout=20, **pki.files(name))


def outcome(cl, method, **params):
    from bpfgraft_client import BpfgraftError
    try:
        cl.call(method, **params)
        return "ok", ""
    except BpfgraftError as e:
        return e.name, e.message


def check_roles(srv, pki, port, args):
    """read, operate and admin calls of each certificate: its role's
    classes allowed, the others forbidden naming the role needed."""
    calls = {"read": ("server.status", {}),
             "operate": ("map.update", {"map": "counts", "key": struct.pack("<I", 7), "value": bytes(8)}),
             "admin": ("server.shutdown", {"bogus": 1})}   # an allowed call fails on the argument
    roles = {"bob": "read", "alice": "operate", "dave": "admin", "carol": None}
    order = ["read", "operate", "admin"]
    for name, role in roles.items():
        with tls_client(port, pki, name) as cl:
            for cls, (method, params) in calls.items():
                got, msg = outcome(cl, method, **params)
                allowed = role is not None and order.index(cls) <= order.index(role)
                if allowed:
                    check(got in ("ok", "invalid_params"), f"{name} ({role}): {method} allowed", f"{got}: {msg}")
                else:
                    check(got == "forbidden" and f"needs role {cls}" in msg and "CN=" + name in msg,
                          f"{name} ({role or 'no role'}): {method} forbidden, naming role {cls} and the subject",
                          f"{got}: {msg}")


def audit_lines(srv):
    path = os.path.join(srv.dir, "audit.log")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def check_audit(srv, pki, port, args):
    before = len(audit_lines(srv))
    with tls_client(port, pki, "alice") as cl:
        cl.call("map.list")
        cl.call("server.status")
        check_eq(len(audit_lines(srv)), before, "reads over TLS write no audit line")
        local = cl.sock.getsockname()
        cl.call("map.update", map="counts", key=struct.pack("<I", 3), value=struct.pack("<Q", 42))
        v = cl.call("map.lookup", map="counts", key=struct.pack("<I", 3))["value"]
        check_eq(struct.unpack("<Q", v)[0], 42, "alice's map.update over TLS took effect")
    lines = audit_lines(srv)[before:]
    check_eq(len(lines), 1, "one audit line for the one state-changing call")
    if lines:
        who = lines[0].get("who", {})
        check_eq(lines[0].get("method"), "map.update", "the audit line names the method")
        check_eq(who.get("subject"), "CN=alice,O=ops", "the audit line names the certificate's subject")
        check_eq(who.get("remote"), f"tls {local[0]}:{local[1]}", "the audit line names the remote address")
        check("uid" not in who, "a TLS peer has no uid in the audit line", repr(who))


def check_attach_and_events(srv, pki, port):
    """alice (operate) attaches a process over TLS (her role decides: there
    is no uid to check ptrace rights against) while another TLS connection
    streams the target events; map.fd is refused (no fd crosses TCP)."""
    from bpfgraft_client import BpfgraftError
    victim = subprocess.Popen([sys.executable, "-c",
                               "import time\nwhile True:\n    bytearray(100000)\n    time.sleep(0.01)\n"])
    try:
        with tls_client(port, pki, "bob") as watcher, tls_client(port, pki, "alice") as cl:
            watcher.call("events.subscribe", topics=["target"])
            cl.call("target.attach", pid=victim.pid, object="cli_maps", programs=["count_call"],
                    target="libc.so.6:malloc")
            check([t["pid"] for t in cl.call("target.list")] == [victim.pid], "alice attached a process over TLS")
            cl.call("target.detach", pid=victim.pid)
            states = []
            while "detached" not in states:
                msg = watcher.recv_message()   # the client's 20 s timeout ends a missing event
                states += [e.get("state") for e in msg[2] if msg[0] == 2 and e.get("pid") == victim.pid]
            check("attached" in states, "events over TLS: the attach and the detach", repr(states))
            try:
                cl.map_fd("counts")
                check(False, "map.fd over TLS is refused")
            except BpfgraftError as e:
                check(e.name == "unsupported" and "(tls)" in e.message, "map.fd over TLS is refused", str(e))
    finally:
        victim.kill()
        victim.wait()


def test_cgroup_name():
    return f"bpfgraft-tls-{os.getpid()}"


def cgroup2_root():
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            if fstype == "cgroup2":
                return mnt
    return None


def start_in_cgroup(path):
    """A root process moved into the cgroup v2 directory path."""
    p = subprocess.Popen([sys.executable, "-c", LOOP])
    with open(os.path.join(path, "cgroup.procs"), "w") as f:
        f.write(str(p.pid))
    return p


def wait_uid(pid, uid, timeout=20):
    """Whether every uid of pid became uid (after its setuid) in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(f"/proc/{pid}/status") as f:
            uids = next(l for l in f if l.startswith("Uid:")).split()[1:4]
        if uids == [str(uid)] * 3:
            return True
        time.sleep(0.05)
    return False


def erin_outcomes(port, pki, pid):
    with tls_client(port, pki, "erin") as cl:
        got = outcome(cl, "target.attach", pid=pid, object="cli_maps", programs=["count_call"],
                      target="libc.so.6:malloc")
        if got[0] == "ok":
            got = outcome(cl, "target.detach", pid=pid)
        return got


def check_restricted_operate(srv, pki, port, args):
    """erin's operate line names targets: a uid and a cgroup: she attaches
    and detaches a process of that uid and one in that cgroup (below it),
    and is refused another root process, binary-wide scopes, tool.start on
    it, and kernel programs."""
    root = cgroup2_root()
    check(root is not None, "a cgroup v2 hierarchy is mounted", open("/proc/mounts").read())
    if root is None:
        return
    top = os.path.join(root, test_cgroup_name())
    os.mkdir(top)
    os.mkdir(os.path.join(top, "inner"))
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-c", f"import os\nos.setgid({TARGET_UID})\n"
                                       f"os.setuid({TARGET_UID})\n" + LOOP]))
        procs.append(start_in_cgroup(os.path.join(top, "inner")))
        procs.append(subprocess.Popen([sys.executable, "-c", LOOP]))
        by_uid, by_cgroup, outsider = (p.pid for p in procs)
        check(wait_uid(by_uid, TARGET_UID), f"the victim took uid {TARGET_UID}")
        check_eq(erin_outcomes(port, pki, by_uid), ("ok", ""), "erin attaches and detaches a process of her uid")
        check_eq(erin_outcomes(port, pki, by_cgroup), ("ok", ""),
                 "erin attaches and detaches a process below her cgroup")
        got, msg = erin_outcomes(port, pki, outsider)
        check(got == "forbidden" and f"process {outsider} (uid 0" in msg and "CN=erin" in msg,
              "erin is refused a process outside her targets, naming it", f"{got}: {msg}")
        with tls_client(port, pki, "erin") as cl:
            got, msg = outcome(cl, "target.detach", pid=outsider)
            check(got == "forbidden", "erin cannot detach a process outside her targets", f"{got}: {msg}")
            got, msg = outcome(cl, "tool.start", pid=outsider)
            check(got == "forbidden", "erin cannot start a tool's process outside her targets", f"{got}: {msg}")
            got, msg = outcome(cl, "scope.attach", path=sys.executable, object="cli_maps")
            check(got == "forbidden" and "every process mapping the binary" in msg,
                  "erin is refused a binary-wide scope", f"{got}: {msg}")
            got, msg = outcome(cl, "object.load", path=args.obj, name="erin_obj", kernel="always")
            check(got == "forbidden" and "kernel" in msg, "erin is refused kernel=always", f"{got}: {msg}")
        with tls_client(port, pki, "alice") as cl:
            got = outcome(cl, "target.attach", pid=outsider, object="cli_maps", programs=["count_call"],
                          target="libc.so.6:malloc")
            check_eq(got, ("ok", ""), "alice's unrestricted operate line reaches the same process")
            cl.call("target.detach", pid=outsider)
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for d in (os.path.join(top, "inner"), top):
            for _ in range(50):   # the cgroup is busy until its last process is reaped
                try:
                    os.rmdir(d)
                    break
                except OSError:
                    time.sleep(0.1)


def check_cli(srv, pki, port):
    url = f"tcps://127.0.0.1:{port}"
    f = pki.files("alice")
    base = [srv.cli_bin, "--host", url, "--tls-cert", f["tls_cert"], "--tls-key", f["tls_key"], "--tls-ca", f["tls_ca"]]
    r = subprocess.run(base + ["--json", "status"], capture_output=True, text=True, timeout=30)
    st = json.loads(r.stdout) if r.returncode == 0 else {}
    check(st.get("socket") == srv.socket, "bpfgraft --host tcps:// status names the server's socket", r.stderr)
    r = subprocess.run(base + ["--json", "load", srv.args.other_obj], capture_output=True, text=True, timeout=30)
    obj = json.loads(r.stdout) if r.returncode == 0 else {}
    check(obj.get("id"), "bpfgraft --host tcps:// load sends the object", r.stdout + r.stderr)
    r = subprocess.run(base + ["shutdown"], capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "needs role admin" in r.stderr, "the CLI prints forbidden for alice's shutdown",
          r.stderr)
    env = dict(os.environ, BPFGRAFT_TLS_CERT=pki.path("expired.crt"), BPFGRAFT_TLS_KEY=pki.path("expired.key"),
               BPFGRAFT_TLS_CA=pki.path("ca.crt"))
    r = subprocess.run([srv.cli_bin, "--host", url, "status"], capture_output=True, text=True, timeout=30, env=env)
    check(r.returncode != 0 and not r.stdout, "the CLI with an expired certificate ($BPFGRAFT_TLS_*) is refused",
          r.stdout + r.stderr)
    r = subprocess.run([srv.cli_bin, "--host", url, "status"], capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "--tls-cert" in r.stderr, "tcps:// without the files says which it needs", r.stderr)
    r = subprocess.run(base[:3] + ["--tls-cert", f["tls_cert"], "--tls-key", f["tls_key"], "--tls-ca",
                                   pki.path("other.crt"), "status"], capture_output=True, text=True, timeout=30)
    check(r.returncode != 0 and "certificate" in r.stderr,
          "the CLI refuses a server whose certificate its CA did not sign", r.stderr)


def check_vanishing_server(srv, pki):
    """A server that hangs up right after the handshake: the CLI says so and
    exits 1 (its writes to the dead connection must not kill it by SIGPIPE)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.path("server.crt"), pki.path("server.key"))
    ctx.load_verify_locations(pki.path("ca.crt"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def serve():
        with lsock:
            conn, _ = lsock.accept()
            with ctx.wrap_socket(conn, server_side=True):
                pass   # handshake done: hang up at once

    th = threading.Thread(target=serve)
    th.start()
    f = pki.files("alice")
    r = subprocess.run([srv.cli_bin, "--host", f"tcps://127.0.0.1:{port}", "--tls-cert", f["tls_cert"],
                        "--tls-key", f["tls_key"], "--tls-ca", f["tls_ca"], "map", "list"],
                       capture_output=True, text=True, timeout=30)
    th.join()
    check(r.returncode == 1 and "bpfgraft:" in r.stderr,
          "a server gone after the handshake: the CLI exits 1 saying so (no SIGPIPE death)",
          f"rc {r.returncode}: {r.stderr}")


def server_subject(port, pki):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with client_ctx(pki, "alice").wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return dict(x[0] for x in s.getpeercert()["subject"]).get("commonName")


def tcp_listen_inode(port):
    """The inode of the socket listening on 127.0.0.1:port (/proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":
                return int(fields[9])
    return None


def holds_socket(pid, inode):
    fd_dir = f"/proc/{pid}/fd"
    return any(os.readlink(os.path.join(fd_dir, n)) == f"socket:[{inode}]" for n in os.listdir(fd_dir))


def check_takeover(srv, pki, port, extra):
    """bpfgraftd --takeover carries the TLS listener over: the new daemon
    serves on the very socket the old one listened on (so connections in
    its backlog are not refused), and TLS clients are served after."""
    inode = tcp_listen_inode(port)
    check(inode is not None and holds_socket(srv.proc.pid, inode), "the old daemon listens on the TCP port")
    start = len(srv.log_text())
    new = subprocess.Popen([srv.bpfgraftd, "--socket", srv.socket, "--foreground", "--cache-dir",
                            os.path.join(srv.dir, "jitcache"), "--state-dir", srv.dir, "--takeover"] + extra,
                           stdout=srv.log, stderr=subprocess.STDOUT)
    old, srv.proc = srv.proc, new   # the harness stops the new one
    try:
        check_eq(old.wait(timeout=30), 0, "the old daemon exits after the takeover")
    except subprocess.TimeoutExpired:
        check(False, "the old daemon exits after the takeover", srv.log_text()[start:])
    check(wait_log(srv, "on the socket taken over", start, timeout=30),
          "the new daemon says it listens on the socket taken over", srv.log_text()[start:])
    check(new.poll() is None and holds_socket(new.pid, inode) and tcp_listen_inode(port) == inode,
          "the new daemon holds the old daemon's TCP listener (same socket inode)")
    with tls_client(port, pki, "alice") as cl:
        check_eq(cl.call("server.status")["pid"], new.pid, "a TLS client is served by the new daemon")


def check_reload(srv, pki, port):
    """SIGHUP: a new server certificate at the same paths is served to new
    connections while an open one goes on; a bad file keeps the old one."""
    check_eq(server_subject(port, pki), "bpfgraftd", "the server presents its certificate")
    with tls_client(port, pki, "alice") as cl:
        pki.cert("server", "/CN=bpfgraftd-renewed", "IP:127.0.0.1")
        start = len(srv.log_text())
        srv.proc.send_signal(signal.SIGHUP)
        check(wait_log(srv, "TLS certificates reloaded", start), "SIGHUP rereads the certificate files")
        check_eq(server_subject(port, pki), "bpfgraftd-renewed", "new connections get the renewed certificate")
        check(cl.call("server.status")["version"], "a connection made before the reload goes on")
    with open(pki.path("server.crt"), "w") as f:
        f.write("not a certificate\n")
    start = len(srv.log_text())
    srv.proc.send_signal(signal.SIGHUP)
    check(wait_log(srv, "TLS certificates not reloaded", start), "a bad certificate file is not taken (logged)")
    check_eq(server_subject(port, pki), "bpfgraftd-renewed", "the certificate in force stays")


def check_bad_starts(args, pki):
    bpfgraftd = os.path.join(args.bin_dir, "bpfgraftd")
    with tempfile.TemporaryDirectory(prefix="bpfgraft-tls-start-") as d:
        sock = os.path.join(d, "c.sock")
        r = subprocess.run([bpfgraftd, "--socket", sock, "--state-dir", d, "--listen", "tcp://127.0.0.1:1"],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "--tls-cert" in r.stderr, "--listen without certificate files refuses to start",
              r.stderr)
        r = subprocess.run([bpfgraftd, "--socket", sock, "--state-dir", d, "--tls-cert", pki.path("server.crt")],
                           capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "--listen" in r.stderr, "--tls-cert without --listen refuses to start", r.stderr)
        r = subprocess.run([bpfgraftd, "--socket", sock, "--state-dir", d, "--listen", "http://127.0.0.1:80",
                            "--tls-cert", pki.path("server.crt"), "--tls-key", pki.path("server.key"),
                            "--tls-client-ca", pki.path("ca.crt")], capture_output=True, text=True, timeout=30)
        check(r.returncode != 0 and "tcp://" in r.stderr, "a --listen that is not tcp:// refuses to start", r.stderr)


def main():
    args = parse_args()
    pki = make_pki()
    try:
        with open(pki.path("access.conf"), "w") as f:
            f.write(ACCESS.format(uid=TARGET_UID, cgroup=test_cgroup_name()))
        port = free_port()
        extra = ["--listen", f"tcp://127.0.0.1:{port}", "--tls-cert", pki.path("server.crt"),
                 "--tls-key", pki.path("server.key"), "--tls-client-ca", pki.path("ca.crt"),
                 "--access", pki.path("access.conf")]
        with Server(args, extra) as srv:
            srv.args = args
            with srv.client() as local:
                local.call("object.load", path=args.obj)
            check_refusals(srv, pki, port)
            check_silent_peer(srv, port)
            check_roles(srv, pki, port, args)
            check_audit(srv, pki, port, args)
            check_attach_and_events(srv, pki, port)
            check_restricted_operate(srv, pki, port, args)
            check_cli(srv, pki, port)
            check_vanishing_server(srv, pki)
            check_takeover(srv, pki, port, extra)
            check_reload(srv, pki, port)
            check(srv.alive(), "the server outlived every refused client")
        check_bad_starts(args, pki)
    finally:
        pki.close()
    return report()


if __name__ == "__main__":
    raise SystemExit(main())
