#!/usr/bin/python3
"""Bad input to bpfgraftd: malformed msgpack, messages that are not
requests, unknown methods, wrongly typed parameters, oversized and too
deeply nested messages, non-ELF and truncated objects, garbage. Each gets
the error code PROTOCOL.md gives, the connection is kept or closed as it
says, and the server keeps serving other clients."""
import os
import random
import socket
import sys

import msgpack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, check_eq, parse_args, report  # noqa: E402

PARSE, INVALID_REQUEST, NO_METHOD, INVALID_PARAMS, TOO_LARGE, NOT_FOUND, BAD_OBJECT = 1, 2, 3, 4, 5, 7, 9


class Raw:
    """A bare connection: bytes out, msgpack messages in."""

    def __init__(self, path, timeout=10):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(timeout)
        self.s.connect(path)
        self.u = msgpack.Unpacker(raw=False, max_buffer_size=64 << 20)
        self.eof = False

    def send(self, data):
        self.s.sendall(data)

    def request(self, msgid, method, params):
        self.send(msgpack.packb([0, msgid, method, params], use_bin_type=True))

    def recv(self):
        """Next message, or None at end of stream."""
        while True:
            try:
                return next(self.u)
            except StopIteration:
                pass
            data = self.s.recv(65536)
            if not data:
                self.eof = True
                return None
            self.u.feed(data)

    def closed(self):
        """True when the server closed the stream (nothing more comes)."""
        try:
            return self.recv() is None
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def error_code(self, msg):
        if not (isinstance(msg, list) and len(msg) == 4 and msg[0] == 1 and msg[2] is not None):
            return None
        return msg[2][0]

    def close(self):
        self.s.close()


def status_ok(raw, msgid):
    raw.request(msgid, "server.status", [])
    m = raw.recv()
    return isinstance(m, list) and m[:3] == [1, msgid, None] and "pid" in m[3]


def main():
    args = parse_args()
    with open(args.obj, "rb") as f:
        elf = f.read()

    with Server(args) as srv:
        keep = srv.client()   # a bystander that must keep being served
        obj = keep.call("object.load", path=args.obj)
        counts = next(m["id"] for m in obj["maps"] if m["name"] == "counts")
        keep.call("map.update", map=counts, key=(1).to_bytes(4, "little"), value=(11).to_bytes(8, "little"))

        # -- bytes that are not msgpack: parse_error, connection closed
        for name, data in (("0xc1 (never used)", b"\xc1"),
                           ("array with a 0xc1 inside", b"\x94\x00\x01\xc1\x00"),
                           ("after a valid request", msgpack.packb([0, 1, "server.status", []]) + b"\xc1")):
            r = Raw(srv.socket)
            r.send(data)
            m = r.recv()
            if name.startswith("after"):
                check(isinstance(m, list) and m[2] is None, "the valid request before garbage is answered")
                m = r.recv()
            check_eq(r.error_code(m), PARSE, f"malformed msgpack ({name}): parse_error")
            check(r.closed(), f"malformed msgpack ({name}): connection closed")
            r.close()

        # -- valid msgpack, not a request: invalid_request, connection kept
        r = Raw(srv.socket)
        for i, (name, obj_) in enumerate((("a string", "hello"), ("an int", 42), ("a map", {"a": 1}),
                                          ("a 3-element request", [0, 7, "server.status"]),
                                          ("a response", [1, 7, None, None]),
                                          ("a non-string method", [0, 7, 5, []]),
                                          ("params not an array", [0, 7, "server.status", {}]),
                                          ("type 9", [9, 7, "x", []]))):
            r.send(msgpack.packb(obj_))
            m = r.recv()
            check_eq(r.error_code(m), INVALID_REQUEST, f"{name}: invalid_request")
            check(status_ok(r, 100 + i), f"{name}: the connection stays usable")
        r.close()

        # -- unknown method
        r = Raw(srv.socket)
        for i, meth in enumerate(("no.such", "", "map.lookupp", "MAP.LIST", "x" * 5000)):
            r.request(10 + i, meth, [])
            m = r.recv()
            check(r.error_code(m) == NO_METHOD and m[1] == 10 + i,
                  f"unknown method {meth[:20]!r}: no_such_method with its msgid", repr(m)[:200])
        check(status_ok(r, 99), "after unknown methods the connection is usable")

        # -- wrong parameters: invalid_params, connection kept
        k4 = (1).to_bytes(4, "little")
        bad = [
            ("map.lookup", [{"map": counts, "key": "a str, not bin"}], "key as str"),
            ("map.lookup", [{"map": 1.5, "key": k4}], "map as float"),
            ("map.lookup", [{"map": counts}], "missing key"),
            ("map.lookup", [{"map": counts, "key": b"\x01\x00\x00"}], "3-byte key of a 4-byte map"),
            ("map.update", [{"map": counts, "key": k4, "value": b"\x00" * 7}], "7-byte value of 8"),
            ("map.update", [{"map": counts, "key": k4, "value": b"\x00" * 8, "flags": "x"}], "flags as str"),
            ("map.update", [{"map": counts, "key": k4, "value": b"\x00" * 8, "flags": 99}], "flags 99"),
            ("map.show", [{"map": [counts]}], "map as array"),
            ("map.show", [{"map": counts, "bogus": 1}], "unknown argument"),
            ("map.show", [{"map": -1}], "negative id"),
            ("object.unload", [{"id": "1"}], "id as str"),
            ("object.load", [{}], "neither path nor data"),
            ("object.load", [{"path": args.obj, "data": elf}], "both path and data"),
            ("object.load", [{"path": 5}], "path as int"),
            ("object.load", [{"data": "str"}], "data as str"),
            ("events.subscribe", [{"topics": "trace"}], "topics as str"),
            ("events.subscribe", [{"topics": ["nope"]}], "unknown topic"),
            ("server.status", [1, 2], "params not one map"),
            ("server.status", [{1: 2}], "a non-string argument name"),
            ("server.status", [{"x": 1}], "an argument to a method that takes none"),
        ]
        for i, (meth, params, why) in enumerate(bad):
            r.send(msgpack.packb([0, 200 + i, meth, params], use_bin_type=True, strict_types=False))
            m = r.recv()
            check(r.error_code(m) == INVALID_PARAMS and m[1] == 200 + i,
                  f"{meth} with {why}: invalid_params", repr(m)[:200])
        check(status_ok(r, 98), "after bad parameters the connection is usable")
        check_eq(keep.call("map.lookup", map=counts, key=k4)["value"], (11).to_bytes(8, "little"),
                 "bad updates left the map unchanged")
        r.close()

        # -- oversized and too deep: too_large, connection closed
        big_hdr = (b"\x94\x00\x01" + msgpack.packb("object.load") + b"\x91\x81" + msgpack.packb("data")
                   + b"\xc6" + (17 << 20).to_bytes(4, "big"))
        for name, data in (("a 17 MiB bin announced", big_hdr),
                           ("a 4 GiB array announced", b"\xdd\xff\xff\xff\xff"),
                           ("arrays nested 100 deep", b"\x91" * 100 + b"\xc0"),
                           ("maps nested 65 deep", b"\x81\xa1k" * 65 + b"\xc0")):
            r = Raw(srv.socket)
            r.send(data)
            m = r.recv()
            check_eq(r.error_code(m), TOO_LARGE, f"{name}: too_large")
            check(r.closed(), f"{name}: connection closed")
            r.close()
        # A whole message over the limit, actually sent.
        r = Raw(srv.socket, timeout=30)
        try:
            r.send(msgpack.packb([0, 1, "object.load", [{"data": bytes((16 << 20) + 1)}]]))
        except (BrokenPipeError, ConnectionResetError):
            pass   # the server may close before reading it all
        m = r.recv() if not r.eof else None
        check_eq(r.error_code(m), TOO_LARGE, "a 16 MiB + 1 message sent whole: too_large")
        r.close()
        # Just under the limit is not too large: it is a bad object.
        r = Raw(srv.socket, timeout=30)
        r.request(5, "object.load", [{"data": bytes(8 << 20)}])
        m = r.recv()
        check_eq(r.error_code(m), BAD_OBJECT, "an 8 MiB object of zeros: bad_object, not too_large")
        check(status_ok(r, 6), "... and the connection is usable")
        r.close()

        # -- bad objects
        r = Raw(srv.socket)
        with open("/bin/true", "rb") as f:
            x86 = f.read()
        objs = [("not an ELF", b"hello, world"), ("empty", b""), ("ELF magic only", elf[:4]),
                ("ELF header only", elf[:64]), ("truncated to 1000 bytes", elf[:1000]),
                ("truncated to half", elf[:len(elf) // 2]), ("truncated by 1 byte", elf[:-1]),
                ("an x86-64 executable", x86)]
        for i, (name, data) in enumerate(objs):
            r.request(300 + i, "object.load", [{"data": data}])
            m = r.recv()
            check(r.error_code(m) == BAD_OBJECT and isinstance(m[2][1], str) and m[2][1],
                  f"object.load of {name}: bad_object with a message", repr(m)[:200])
        r.request(320, "object.load", [{"path": "/etc/hostname"}])
        check_eq(r.error_code(r.recv()), BAD_OBJECT, "object.load of a non-ELF path: bad_object")
        r.request(321, "object.load", [{"path": "/nonexistent/x.o"}])
        check_eq(r.error_code(r.recv()), NOT_FOUND, "object.load of a missing path: not_found")
        check(status_ok(r, 322), "after bad objects the connection is usable")
        r.request(323, "object.list", [])
        m = r.recv()
        check(m[2] is None and len(m[3]) == 1, "no bad object was left loaded", repr(m)[:300])
        r.close()

        # -- clients that vanish mid-message, and random garbage
        for cut in (1, 5, 20):
            r = Raw(srv.socket)
            r.send(msgpack.packb([0, 1, "map.list", []])[:cut])
            r.close()
        rng = random.Random(1234)
        answered = 0
        for i in range(200):
            r = Raw(srv.socket, timeout=5)
            blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
            try:
                r.send(blob)
                r.s.shutdown(socket.SHUT_WR)
                while r.recv() is not None:
                    answered += 1
            except (ConnectionResetError, BrokenPipeError):
                pass
            except socket.timeout:
                check(False, f"garbage {blob.hex()}: the server neither answers nor closes")
            r.close()
        check(answered > 0, f"200 connections of random bytes handled ({answered} answers)")

        # -- the server is alive and serves everyone
        check(srv.alive(), "the server did not crash")
        check_eq(keep.call("map.lookup", map=counts, key=k4)["value"], (11).to_bytes(8, "little"),
                 "the bystander connection is still served")
        with srv.client() as c:
            st = c.call("server.status")
            check(st["objects"] == 1 and st["clients"] == 2,
                  "a new client is served; only the two live clients are counted", repr(st))
        keep.close()
    return report()


if __name__ == "__main__":
    sys.exit(main())
