/* USDT probes of usdt_victim.c through libbpf's usdt.bpf.h (argument
 * specs, bpf_get_attach_cookie), and a uprobe counting by its attach
 * cookie. results[]: 0 tick hits, 1 sum of tick's x, 2 sum of its 3x,
 * 3 ticks named "alpha", 4 tock hits, 5 sum of tock's first argument,
 * 6 sum of its second (-5 each), 7 wrong argument counts, 8 sum of
 * tick's bpf_usdt_cookie. by_cookie[c]:
 * hits of count_cookie attached with cookie c (mod 16). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 9);
    __type(key, u32);
    __type(value, u64);
} results SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 16);
    __type(key, u32);
    __type(value, u64);
} by_cookie SEC(".maps");

static __always_inline void add(void *map, u32 key, u64 delta)
{
    u64 *v = bpf_map_lookup_elem(map, &key);
    if (v)
        __sync_fetch_and_add(v, delta);
}

SEC("usdt")
int BPF_USDT(tick, long x, long x3, const char *name)
{
    char buf[8] = {};
    add(&results, 0, 1);
    add(&results, 1, x);
    add(&results, 2, x3);
    bpf_probe_read_user_str(buf, sizeof(buf), name);
    if (buf[0] == 'a' && buf[1] == 'l' && buf[4] == 'a' && buf[5] == 0)
        add(&results, 3, 1);
    if (bpf_usdt_arg_cnt(ctx) != 3)
        add(&results, 7, 1);
    add(&results, 8, bpf_usdt_cookie(ctx));
    return 0;
}

SEC("usdt")
int BPF_USDT(tock, long v, int c)
{
    add(&results, 4, 1);
    add(&results, 5, v);
    add(&results, 6, (u64)(long)c);
    if (bpf_usdt_arg_cnt(ctx) != 2)
        add(&results, 7, 1);
    return 0;
}

SEC("uprobe")
int count_cookie(struct pt_regs *ctx)
{
    add(&by_cookie, (u32)(bpf_get_attach_cookie(ctx) & 15), 1);
    return 0;
}
