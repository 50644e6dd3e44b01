/* Helpers with callbacks and the newer helpers in a uprobe and a uretprobe,
 * for test_callbacks.py: probe_me(x, name) is called once for x = 0..N-1,
 * name "alpha" for even x; every sum in results is exact. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

enum { CALLS, ALPHAS, ARG_SUM, RET_SUM, LOOP_RET, EACH_ARRAY, EACH_HASH, LOOP_ACC, NRESULTS };

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, NRESULTS);
    __type(key, __u32);
    __type(value, __u64);
} results SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} arr SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);
    __type(value, __u64);
} keys SEC(".maps");

static void add(__u32 slot, __u64 v)
{
    __u64 *p = bpf_map_lookup_elem(&results, &slot);
    if (p)
        __sync_fetch_and_add(p, v);
}

/* sums the indexes 0..4, then stops: bpf_loop returns 5 */
static long loop_cb(__u64 i, void *ctx)
{
    *(__u64 *)ctx += i;
    return i == 4;
}

static long array_cb(struct bpf_map *map, __u32 *key, __u64 *val, void *ctx)
{
    __sync_fetch_and_add(val, *key + 1);
    *(__u64 *)ctx += 1;
    return 0;
}

static long hash_cb(struct bpf_map *map, __u32 *key, __u64 *val, void *ctx)
{
    *(__u64 *)ctx += *key;
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(probe_entry, unsigned long x, const char *name)
{
    char buf[8] = {};
    bpf_probe_read_user_str(buf, sizeof(buf), name);
    if (bpf_strncmp(buf, 6, "alpha") == 0)
        add(ALPHAS, 1);
    __u64 arg = 0;
    if (bpf_get_func_arg(ctx, 0, &arg) == 0)
        add(ARG_SUM, arg);
    __u64 acc = 0;
    add(LOOP_RET, bpf_loop(100, loop_cb, &acc, 0));
    add(LOOP_ACC, acc);
    __u64 visited = 0;
    bpf_for_each_map_elem(&arr, array_cb, &visited, 0);
    add(EACH_ARRAY, visited);
    __u32 k = x % 8;
    __u64 one = 1;
    bpf_map_update_elem(&keys, &k, &one, BPF_ANY);
    __u64 key_sum = 0;
    bpf_for_each_map_elem(&keys, hash_cb, &key_sum, 0);
    add(EACH_HASH, key_sum);
    add(CALLS, 1);
    return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(probe_return)
{
    __u64 ret = 0;
    if (bpf_get_func_ret(ctx, &ret) == 0)
        add(RET_SUM, ret);
    return 0;
}
