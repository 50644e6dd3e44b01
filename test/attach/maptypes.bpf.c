/* A uprobe using a bloom filter, an LPM trie and a hash of maps (with its
 * slots filled by the object), for test_maptypes.py. probe_me(x) is called
 * for x = 0..N-1 once; every count below is exact. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct lpm_key {
    __u32 prefixlen;
    __u8 addr[4];
};

struct {
    __uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
    __uint(max_entries, 4096);
    __type(value, __u32);
    __uint(map_extra, 3);
} seen SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, 16);
    __type(key, struct lpm_key);
    __type(value, __u32);
    __uint(map_flags, BPF_F_NO_PREALLOC);
} routes SEC(".maps");

struct inner_map {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} cls0 SEC(".maps"), cls1 SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
    __uint(max_entries, 4);
    __type(key, __u32);
    __array(values, struct inner_map);
} by_class SEC(".maps") = {.values = {[0] = &cls0, [1] = &cls1}};

/* 0: bloom hits of values pushed before, 1..3: LPM values found,
 * 4: empty map-in-map slot read as NULL, 5: calls */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 8);
    __type(key, __u32);
    __type(value, __u64);
} results SEC(".maps");

static __always_inline void bump(__u32 key)
{
    __u64 *v = bpf_map_lookup_elem(&results, &key);
    if (v)
        __sync_fetch_and_add(v, 1);
}

static __always_inline void add_route(__u32 plen, __u8 a, __u8 b, __u8 c, __u32 value)
{
    struct lpm_key k = {plen, {a, b, c, 0}};
    bpf_map_update_elem(&routes, &k, &value, BPF_ANY);
}

SEC("uprobe")
int BPF_KPROBE(probe_me, __u32 x)
{
    bump(5);
    if (x == 0) {
        add_route(8, 10, 0, 0, 1);
        add_route(16, 10, 1, 0, 2);
        add_route(24, 10, 1, 2, 3);
    }
    if ((x & 1) == 0) {
        bpf_map_push_elem(&seen, &x, BPF_ANY);
        __u32 y = x - 2;
        if (x >= 2 && bpf_map_peek_elem(&seen, &y) == 0)
            bump(0);
    }
    struct lpm_key q = {32, {10, 1, (__u8)(x % 4), (__u8)x}};
    __u32 *r = bpf_map_lookup_elem(&routes, &q);
    if (r && *r < 4)
        bump(*r);
    struct lpm_key q2 = {32, {10, 200, 0, 0}};
    r = bpf_map_lookup_elem(&routes, &q2);
    if (r && *r < 4)
        bump(*r);
    __u32 k = x & 1, zero = 0;
    void *inner = bpf_map_lookup_elem(&by_class, &k);
    if (inner) {
        __u64 *c = bpf_map_lookup_elem(inner, &zero);
        if (c)
            __sync_fetch_and_add(c, 1);
    }
    k = 2;
    if (!bpf_map_lookup_elem(&by_class, &k))
        bump(4);
    return 0;
}
