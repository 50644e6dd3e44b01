/* stackcount: how often each distinct user stack reaches a function, like
 * bcc's stackcount -p: attach with `--target BINARY:FUNCTION`; `sc_counts`
 * maps a stack id of `sc_stacks` to its hits (negative ids: stacks
 * that could not be stored, e.g. -EEXIST on a full map). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, s64);   /* stack id, or a negative errno */
    __type(value, u64); /* hits */
} sc_counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_STACK_TRACE);
    __uint(max_entries, 10240);
    __type(key, u32);
    __type(value, u64[32]);
} sc_stacks SEC(".maps");

SEC("uprobe")
int stackcount(struct pt_regs *ctx)
{
    s64 id = bpf_get_stackid(ctx, &sc_stacks, BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP);
    u64 one = 1, *n = bpf_map_lookup_elem(&sc_counts, &id);
    if (n)
        __sync_fetch_and_add(n, 1);
    else
        bpf_map_update_elem(&sc_counts, &id, &one, BPF_NOEXIST);
    return 0;
}
