/* Programs for bpfgraft-bench syscall: the same objects run on the
 * kernel's sys_enter raw tracepoint (libbpf; needs no tracefs) and under
 * bpfgraft. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} hits SEC(".maps");

SEC("raw_tracepoint/sys_enter")
int empty_enter(struct bpf_raw_tracepoint_args *ctx)
{
    return 0;
}

SEC("raw_tracepoint/sys_enter")
int count_enter(struct bpf_raw_tracepoint_args *ctx)
{
    u32 key = 0;
    u64 *v;

    if (ctx->args[1] != 110) /* getppid */
        return 0;
    v = bpf_map_lookup_elem(&hits, &key);
    if (v)
        __sync_fetch_and_add(v, 1);
    return 0;
}
