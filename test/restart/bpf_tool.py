#!/usr/bin/env python3
"""A minimal libbpf-free tool for test_restart.py, run under `bpfgraft run`:
each line on stdin "create" makes bpf(BPF_MAP_CREATE) (served by the
server over the tool channel) and prints "create OK" or "create ERR errno";
"update N" / "lookup" use the first map created, locally (no server);
"id" prints "id N", the server's id of the last map created (its info)."""
import ctypes
import os
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
NR_BPF, MAP_CREATE, MAP_LOOKUP, MAP_UPDATE, OBJ_GET_INFO_BY_FD = 321, 0, 1, 2, 15


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(NR_BPF, cmd, buf, 128)
    return r, ctypes.get_errno()


def main():
    fd = last = -1
    key = ctypes.c_uint32(0)
    val = ctypes.c_uint64(0)
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "create":  # array, 4-byte key, 8-byte value, 1 entry
            r, e = bpf(MAP_CREATE, struct.pack("<IIIII", 2, 4, 8, 1, 0))
            if r >= 0 and fd < 0:
                fd = r  # update/lookup use the first map
            last = r if r >= 0 else last
            print(f"create OK" if r >= 0 else f"create ERR {e}", flush=True)
        elif w[0] in ("update", "lookup"):
            val.value = int(w[1]) if w[0] == "update" else 0
            attr = struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0)
            r, e = bpf(MAP_UPDATE if w[0] == "update" else MAP_LOOKUP, attr)
            print(f"{w[0]} OK {val.value}" if r == 0 else f"{w[0]} ERR {e}", flush=True)
        elif w[0] == "id":  # struct bpf_map_info: type, then id
            info = ctypes.create_string_buffer(80)
            r, e = bpf(OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", last, 80, ctypes.addressof(info)))
            print(f"id {struct.unpack_from('<I', info, 4)[0]}" if r == 0 else f"id ERR {e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
