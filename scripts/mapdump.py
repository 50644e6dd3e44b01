#!/usr/bin/env python3
"""Dump an ARRAY / PERCPU_ARRAY / HASH-family map from a bpfgraft map region.

Reads the region layout documented in maps/FORMAT.md, with nothing but the
standard library. The region is read from a path (e.g. /proc/PID/fd/N) or an
inherited file descriptor.

    mapdump.py [--json] (PATH | --fd N)

Text output: one line per element, "KEYHEX VALUEHEX" (per-CPU maps: the
values of all CPUs, each padded to 8 bytes, concatenated).
"""
import argparse
import json
import os
import struct
import sys

MAGIC = 0x50414D4746504221
VERSION = 5
HDR = struct.Struct("<QIIIIIIIIQIIII16sQQIIQQQQQII")
FIELDS = ("magic version hdr_size map_type key_size value_size max_entries map_flags "
          "nr_cpus map_extra btf_key_type_id btf_value_type_id hash_seed page_size name "
          "region_size locks_off n_locks elem_size aux_off aux_size data_off data_size "
          "lru_off n_elems n_buckets").split()
TYPES = {1: "hash", 2: "array", 5: "percpu_hash", 6: "percpu_array", 9: "lru_hash", 10: "lru_percpu_hash",
         11: "lpm_trie", 12: "array_of_maps", 13: "hash_of_maps"}
HASH_FAMILY = (1, 5, 9, 10, 13)
NIL = 0xffffffff
TRIE_STATE = 528  # t_seq, t_root (FORMAT.md, mutable state)
TNODE_HDR = 32    # child[2], prefixlen, state, stamp, free_next, pad
NULLS_BIT = 0x80000000
ELEM_HDR = 16  # next, hash, gen, free_next (u32 each)


class RegionError(Exception):
    pass


def r8(x):
    return (x + 7) & ~7


def parse_header(buf):
    if len(buf) < HDR.size:
        raise RegionError("truncated header")
    h = dict(zip(FIELDS, HDR.unpack_from(buf, 0)))
    if h["magic"] != MAGIC:
        raise RegionError("bad magic: not a bpfgraft map region")
    # a hash-family region of layout 4 (no stripe spares) reads as layout 5
    if h["version"] != VERSION and not (h["version"] == 4 and h["map_type"] in HASH_FAMILY):
        raise RegionError("layout version %d, this script reads %d" % (h["version"], VERSION))
    if h["region_size"] > len(buf):
        raise RegionError("truncated region: header says %d bytes, have %d" % (h["region_size"], len(buf)))
    h["name"] = h["name"].split(b"\0", 1)[0].decode("utf-8", "replace")
    if h["map_type"] not in TYPES:
        raise RegionError("map type %d is not an array, hash, LPM trie or map-in-map" % h["map_type"])
    end = h["data_off"] + h["n_elems"] * h["elem_size"]
    if end > len(buf) or h["aux_off"] + h["aux_size"] > len(buf):
        raise RegionError("offsets out of range")
    return h


def value_len(h):
    percpu = h["map_type"] in (5, 6, 10)
    return r8(h["value_size"]) * h["nr_cpus"] if percpu else h["value_size"]


def dump_array(h, buf):
    vlen = value_len(h)
    for i in range(h["max_entries"]):
        off = h["data_off"] + i * h["elem_size"]
        yield struct.pack("<I", i), buf[off:off + vlen]


def dump_hash(h, buf):
    vlen, ks = value_len(h), h["key_size"]
    for b in range(h["n_buckets"]):
        (i,) = struct.unpack_from("<I", buf, h["aux_off"] + 4 * b)
        steps = 0
        while not i & NULLS_BIT:
            if i >= h["n_elems"] or steps > h["n_elems"]:
                raise RegionError("corrupt chain in bucket %d" % b)
            steps += 1
            off = h["data_off"] + i * h["elem_size"]
            nxt, _hash, gen, _free = struct.unpack_from("<IIII", buf, off)
            if gen % 2 == 0:  # odd: element being written right now
                k = off + ELEM_HDR
                v = k + r8(ks)
                yield buf[k:k + ks], buf[v:v + vlen]
            i = nxt


def dump_lpm(h, buf):
    """LPM_TRIE: every LIVE node (state 2) reachable from the root; the key
    is prefixlen then the data bytes, as bpf(2) returns it."""
    seq, root = struct.unpack_from("<II", buf, TRIE_STATE)
    if seq % 2:
        raise RegionError("a writer is changing the trie (or died doing so): try again")
    ds = h["key_size"] - 4
    stack, seen = [root], 0
    while stack:
        i = stack.pop()
        if i == NIL:
            continue
        if i >= h["n_elems"] or seen > h["n_elems"]:
            raise RegionError("corrupt trie")
        seen += 1
        off = h["data_off"] + i * h["elem_size"]
        c0, c1, plen, state = struct.unpack_from("<IIII", buf, off)
        stack += [c1, c0]
        if state == 2:
            d = off + TNODE_HDR
            v = d + r8(ds)
            yield struct.pack("<I", plen) + buf[d:d + ds], buf[v:v + h["value_size"]]


def read_region(path=None, fd=None):
    if path is not None:
        with open(path, "rb") as f:
            return f.read()
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", nargs="?")
    ap.add_argument("--fd", type=int)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if (a.path is None) == (a.fd is None):
        ap.error("give a PATH or --fd N")
    try:
        buf = read_region(a.path, a.fd)
        h = parse_header(buf)
        gen = dump_array if h["map_type"] in (2, 6, 12) else dump_lpm if h["map_type"] == 11 else dump_hash
        elems = list(gen(h, buf))
    except (OSError, RegionError) as e:
        print("mapdump: %s" % e, file=sys.stderr)
        return 1
    if a.json:
        json.dump({"name": h["name"], "type": TYPES[h["map_type"]], "key_size": h["key_size"],
                   "value_size": h["value_size"], "max_entries": h["max_entries"],
                   "elements": [{"key": k.hex(), "value": v.hex()} for k, v in elems]},
                  sys.stdout, indent=1)
        print()
    else:
        for k, v in elems:
            print(k.hex(), v.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
