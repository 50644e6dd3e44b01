#!/usr/bin/env python3
"""A minimal libbpf-free tool for test_restart.py, run under `bpfgraft run`.
Each line on stdin is a command, answered by one line:
"create [E]": bpf(BPF_MAP_CREATE) of an array (E entries, default 1, u64
value), "create OK" or "create ERR errno"; "update N [M]" / "lookup [M]" use
the first map created (or the Mth), key 0, locally (no server); "id": the server's id of the last
map created (its info); "burst N": N creates back to back, then each
map's value set to 1000 + its place and read back, "burst OK ID..." (the
servers' ids) or "burst ERR I errno"; "prog M": bpf(BPF_PROG_LOAD) of a uprobe program
adding 1 to map M's value (atomic), "prog OK"; "attach PID PATH OFFSET":
perf_event_open of a uprobe at PATH's file OFFSET in process PID, the last
program attached with PERF_EVENT_IOC_SET_BPF, "attach OK"; "detach":
every attached perf event closed (its link goes), "detach OK"."""
import ctypes
import os
import struct
import sys

libc = ctypes.CDLL(None, use_errno=True)
NR_BPF, NR_PERF_EVENT_OPEN = 321, 298
MAP_CREATE, MAP_LOOKUP, MAP_UPDATE, PROG_LOAD, OBJ_GET_INFO_BY_FD = 0, 1, 2, 5, 15
PROG_TYPE_KPROBE = 2
PERF_EVENT_IOC_SET_BPF = 0x40042408  # _IOW('$', 8, __u32)
PERF_FLAG_FD_CLOEXEC = 8


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(NR_BPF, cmd, buf, 128)
    return r, ctypes.get_errno()


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def counting_prog(map_fd):
    """map[0] += 1 (atomic): what a libbpf tool's __sync_fetch_and_add does."""
    return b"".join([
        insn(0xb7, 1),                  # r1 = 0
        insn(0x63, 10, 1, -4),          # *(u32 *)(r10 - 4) = r1
        insn(0xbf, 2, 10),              # r2 = r10
        insn(0x07, 2, imm=-4),          # r2 += -4
        insn(0x18, 1, 1, imm=map_fd),   # r1 = map (BPF_PSEUDO_MAP_FD)
        insn(0),
        insn(0x85, imm=1),              # call bpf_map_lookup_elem
        insn(0x15, 0, off=2),           # if r0 == 0 goto +2
        insn(0xb7, 1, imm=1),           # r1 = 1
        insn(0xdb, 0, 1),               # lock *(u64 *)(r0 + 0) += r1
        insn(0xb7, 0),                  # r0 = 0
        insn(0x95),                     # exit
    ])


def prog_load(map_fd):
    code = ctypes.create_string_buffer(counting_prog(map_fd))
    lic = ctypes.create_string_buffer(b"GPL")
    attr = struct.pack("<IIQQIIQII16s", PROG_TYPE_KPROBE, len(code.raw) // 8, ctypes.addressof(code),
                       ctypes.addressof(lic), 0, 0, 0, 0, 0, b"count")
    return bpf(PROG_LOAD, attr)


def uprobe_attach(prog_fd, pid, path, offset):
    with open("/sys/bus/event_source/devices/uprobe/type") as f:
        utype = int(f.read())
    cpath = ctypes.create_string_buffer(path.encode())
    attr = ctypes.create_string_buffer(128)
    struct.pack_into("<II", attr, 0, utype, 72)  # PERF_ATTR_SIZE_VER1: up to config2
    struct.pack_into("<QQ", attr, 56, ctypes.addressof(cpath), offset)  # config1 path, config2 offset
    fd = libc.syscall(NR_PERF_EVENT_OPEN, attr, pid, -1, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        return fd, ctypes.get_errno()
    if libc.ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd) != 0:
        e = ctypes.get_errno()
        os.close(fd)
        return -1, e
    return fd, 0


def map_id(fd):
    """The server's id of map fd (struct bpf_map_info: type, then id)."""
    info = ctypes.create_string_buffer(80)
    r, e = bpf(OBJ_GET_INFO_BY_FD, struct.pack("<IIQ", fd, 80, ctypes.addressof(info)))
    return (struct.unpack_from("<I", info, 4)[0], 0) if r == 0 else (-1, e)


def burst(maps, n):
    """n array maps created with nothing between the calls (the attr built
    once), then each one's key 0 written and read back; appended to maps."""
    buf = ctypes.create_string_buffer(struct.pack("<IIIII", 2, 4, 8, 1, 0), 128)
    fds = [libc.syscall(NR_BPF, MAP_CREATE, buf, 128) for _ in range(n)]
    bad = [i for i, fd in enumerate(fds) if fd < 0]
    maps += [fd for fd in fds if fd >= 0]
    if bad:
        return f"burst ERR {bad[0]} {ctypes.get_errno()}"
    key, val = ctypes.c_uint32(0), ctypes.c_uint64(0)
    for i, fd in enumerate(fds):
        for cmd in (MAP_UPDATE, MAP_LOOKUP):
            val.value = 1000 + i if cmd == MAP_UPDATE else 0
            r, e = bpf(cmd, struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0))
            if r != 0 or val.value != 1000 + i:
                return f"burst ERR {i} {e if r else 0}"
    ids = [map_id(fd)[0] for fd in fds]
    return "burst OK " + " ".join(map(str, ids))


def main():
    maps, progs, events = [], [], []
    key = ctypes.c_uint32(0)
    val = ctypes.c_uint64(0)
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "create":  # array, 4-byte key, 8-byte value, 1 entry
            r, e = bpf(MAP_CREATE, struct.pack("<IIIII", 2, 4, 8, int(w[1]) if len(w) > 1 else 1, 0))
            if r >= 0:
                maps.append(r)
            print(f"create OK" if r >= 0 else f"create ERR {e}", flush=True)
        elif w[0] in ("update", "lookup"):
            at = w[1 if w[0] == "lookup" else 2] if len(w) > (1 if w[0] == "lookup" else 2) else None
            fd = maps[int(at) if at else 0] if maps else -1
            val.value = int(w[1]) if w[0] == "update" else 0
            attr = struct.pack("<IIQQQ", fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0)
            r, e = bpf(MAP_UPDATE if w[0] == "update" else MAP_LOOKUP, attr)
            print(f"{w[0]} OK {val.value}" if r == 0 else f"{w[0]} ERR {e}", flush=True)
        elif w[0] == "id":
            r, e = map_id(maps[-1] if maps else -1)
            print(f"id {r}" if r >= 0 else f"id ERR {e}", flush=True)
        elif w[0] == "burst":
            print(burst(maps, int(w[1])), flush=True)
        elif w[0] == "prog":
            r, e = prog_load(maps[int(w[1])])
            if r >= 0:
                progs.append(r)
            print("prog OK" if r >= 0 else f"prog ERR {e}", flush=True)
        elif w[0] == "attach":
            r, e = uprobe_attach(progs[-1], int(w[1]), w[2], int(w[3], 0))
            if r >= 0:
                events.append(r)
            print("attach OK" if r >= 0 else f"attach ERR {e}", flush=True)
        elif w[0] == "detach":
            for fd in events:
                os.close(fd)
            events.clear()
            print("detach OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
