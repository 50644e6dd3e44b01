#!/usr/bin/python3
"""Small client of bpfgraftd's control socket (proto/PROTOCOL.md).

    from bpfgraft_client import Client, BpfgraftError
    with Client() as c:                       # $BPFGRAFT_HOST, $BPFGRAFT_SOCKET or the default
        obj = c.call("object.load", path="/abs/path/prog.bpf.o")
        c.call("map.update", map="counts", key=b"\\x01\\0\\0\\0", value=bytes(8))
        fd = c.map_fd("counts")               # the map's memfd (maps/FORMAT.md)
        for ev in c.events(["trace"]):        # notifications, forever
            print(ev["pid"], ev["line"])

Keys, values and object bytes are `bytes` (msgpack bin); names are `str`.
Needs python3-msgpack; fds travel with SCM_RIGHTS (socket.recv_fds).

A remote server: Client(host="ssh://[user@]host[:port][/socket]") (or
$BPFGRAFT_HOST) runs `bpfgraft [--socket SOCKET] dial-stdio` there through
ssh ($BPFGRAFT_SSH_COMMAND, e.g. "ssh -F FILE", replaces "ssh"), as the
bpfgraft CLI's --host does. map_fd() is refused remotely (unsupported).
Client(host="tcps://host:port", tls_cert=, tls_key=, tls_ca=) (default
$BPFGRAFT_TLS_CERT, $BPFGRAFT_TLS_KEY, $BPFGRAFT_TLS_CA) is mutual TLS 1.3
to a `bpfgraftd --listen`, as the CLI's --host tcps:// with --tls-cert,
--tls-key and --tls-ca.
"""
import collections
import itertools
import os
import re
import shlex
import socket
import ssl
import subprocess

import msgpack

DEFAULT_SOCKET = "/run/bpfgraft/control.sock"
MAX_MESSAGE = 16 << 20

# Stable error codes (PROTOCOL.md, "Errors").
ERROR_NAMES = {
    1: "parse_error", 2: "invalid_request", 3: "no_such_method", 4: "invalid_params",
    5: "too_large", 6: "permission_denied", 7: "not_found", 8: "exists",
    9: "bad_object", 10: "verifier_rejected", 11: "target_error", 12: "internal_error",
    13: "unsupported", 14: "busy", 15: "forbidden",
}
ERROR_CODES = {name: code for code, name in ERROR_NAMES.items()}


class BpfgraftError(Exception):
    """An error answered by the server: [code, message]."""

    def __init__(self, code, name, message):
        super().__init__(code, name, message)
        self.code, self.name, self.message = code, name, message

    def __str__(self):
        return f"{self.message} ({self.name})"


_SSH_URL = re.compile(r"ssh://(?:([^@/\-][^@/]*)@)?(\[[^\]/]+\]|[^:/\[\-][^:/]*)(?::(\d{1,5}))?(/[^']*)?$")


def ssh_command(url):
    """The argv that reaches bpfgraftd at an ssh://[user@]host[:port][/socket] URL."""
    m = _SSH_URL.match(url)
    if not m or (m.group(3) and not 0 < int(m.group(3)) < 65536):
        raise ValueError(f"bad host {url!r}: want ssh://[user@]host[:port][/socket]")
    user, host, port, sock = m.groups()
    argv = shlex.split(os.environ.get("BPFGRAFT_SSH_COMMAND") or "ssh")
    argv += ["-l", user] if user else []
    argv += ["-p", port] if port else []
    remote = f"bpfgraft --socket '{sock}' dial-stdio" if sock and sock != "/" else "bpfgraft dial-stdio"
    return argv + ["--", host.strip("[]"), remote]


_TLS_URL = re.compile(r"tcps://(\[[^\]/]+\]|[^:/\[@]+):(\d{1,5})$")


def tls_connect(url, cert, key, ca, timeout=None):
    """A TLS 1.3 socket to bpfgraftd --listen at tcps://host:port, this
    client's certificate presented, the server's checked against ca."""
    m = _TLS_URL.match(url)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ValueError(f"bad host {url!r}: want tcps://host:port")
    if not (cert and key and ca):
        raise ValueError("tcps:// needs tls_cert, tls_key and tls_ca "
                         "($BPFGRAFT_TLS_CERT, $BPFGRAFT_TLS_KEY, $BPFGRAFT_TLS_CA)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(ca)
    host = m.group(1).strip("[]")
    raw = socket.create_connection((host, int(m.group(2))), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=host)
    except OSError:
        raw.close()
        raise


class Client:
    """One connection; requests are answered in order. Not thread-safe:
    use one Client per thread."""

    def __init__(self, path=None, timeout=None, host=None, tls_cert=None, tls_key=None, tls_ca=None):
        host = host or (None if path else os.environ.get("BPFGRAFT_HOST"))
        self.ssh = None
        self.tls = bool(host and host.startswith("tcps://"))
        if self.tls:
            self.path = host
            env = os.environ.get
            self.sock = tls_connect(host, tls_cert or env("BPFGRAFT_TLS_CERT"), tls_key or env("BPFGRAFT_TLS_KEY"),
                                    tls_ca or env("BPFGRAFT_TLS_CA"), timeout)
        elif host:
            self.path = host
            self.sock, self.ssh = self._ssh(host)
        else:
            self.path = path or os.environ.get("BPFGRAFT_SOCKET") or DEFAULT_SOCKET
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if not host:
            try:
                self.sock.connect(self.path)
            except OSError as e:
                self.sock.close()
                raise ConnectionError(f"cannot connect to {self.path}: {e.strerror} "
                                      "(is bpfgraftd running?)") from e
        self._unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_MESSAGE + 65536)
        self._ids = itertools.count(1)
        self._fds = collections.deque()      # received with SCM_RIGHTS, oldest first
        self._notes = collections.deque()    # notifications read while awaiting answers

    @staticmethod
    def _ssh(host):
        argv = ssh_command(host)
        mine, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(argv, stdin=theirs, stdout=theirs)
        except OSError:
            mine.close()
            raise
        finally:
            theirs.close()
        return mine, proc

    def close(self):
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self.sock.close()
        if self.ssh:      # it ends once the remote side sees EOF
            try:
                self.ssh.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.ssh.kill()
                self.ssh.wait()
            self.ssh = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def fileno(self):
        return self.sock.fileno()

    # -- wire --------------------------------------------------------------

    def _fill(self):
        if self.tls:   # no fds cross TLS
            data = self.sock.recv(65536)
        else:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, 65536, 16)
            self._fds.extend(fds)
        if not data:
            raise ConnectionError(f"{self.path} closed the connection")
        self._unpacker.feed(data)

    def recv_message(self):
        """The next raw message ([1, id, err, result] or [2, method, params])."""
        while True:
            try:
                return next(self._unpacker)
            except StopIteration:
                self._fill()

    def send_raw(self, data):
        """Sends bytes as they are (tests of malformed input)."""
        self.sock.sendall(data)

    def request(self, method, params=None):
        """Sends a request without waiting; returns its msgid."""
        msgid = next(self._ids) & 0xffffffff
        self.sock.sendall(msgpack.packb([0, msgid, method, [params] if params else []],
                                        use_bin_type=True))
        return msgid

    def response(self, msgid):
        """Waits for the answer to msgid; raises BpfgraftError for an error."""
        while True:
            msg = self.recv_message()
            if msg[0] == 2:
                self._notes.append(msg)
            elif msg[0] == 1 and msg[1] == msgid:
                break
        err = msg[2]
        if err is not None:
            code, message = (err + [None, None])[:2] if isinstance(err, list) else (0, str(err))
            raise BpfgraftError(code, ERROR_NAMES.get(code, "unknown_error"), message)
        return msg[3]

    # -- API ---------------------------------------------------------------

    def call(self, method, **params):
        """Calls method with named arguments and returns its result."""
        return self.response(self.request(method, params))

    def map_fd_info(self, map):
        """(fd, info) of a map: its memfd (the caller owns it) and map.show's fields."""
        info = self.call("map.fd", map=map)
        if not self._fds:
            raise BpfgraftError(ERROR_CODES["internal_error"], "internal_error",
                                "map.fd answered without a file descriptor")
        return self._fds.popleft(), info

    def map_fd(self, map):
        """The map's memfd (an int the caller closes); layout in maps/FORMAT.md."""
        return self.map_fd_info(map)[0]

    def events(self, topics=None):
        """Subscribes (all topics by default) and yields each event dict:
        {"topic": "trace", "pid": .., "line": ..}, {"topic": "ringbuf", ..}, ...
        (records with stack id fields add "stacks": {field: [frames]})."""
        self.call("events.subscribe", **({"topics": list(topics)} if topics else {}))
        while True:
            msg = self._notes.popleft() if self._notes else self.recv_message()
            if msg[0] == 2 and msg[1] == "event":
                yield from msg[2]
