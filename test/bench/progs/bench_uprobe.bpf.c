/* Programs for bpfgraft-bench uprobe: the same objects run under kernel
 * uprobes (libbpf) and under bpfgraft. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64);
} hits SEC(".maps");

SEC("uprobe")
int empty_entry(struct pt_regs *ctx)
{
    return 0;
}

SEC("uretprobe")
int empty_return(struct pt_regs *ctx)
{
    return 0;
}

SEC("uprobe")
int count_entry(struct pt_regs *ctx)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&hits, &key);
    if (v)
        __sync_fetch_and_add(v, 1);
    return 0;
}

/* bpf_get_current_pid_tgid, which nearly every bcc/libbpf tool calls */
SEC("uprobe")
int pid_entry(struct pt_regs *ctx)
{
    return bpf_get_current_pid_tgid() == 0;
}

/* bpf_get_stackid of the user stack (the victim is built without frame
 * pointers: bpfgraft unwinds with CFI, the kernel follows rbp) */
struct {
    __uint(type, BPF_MAP_TYPE_STACK_TRACE);
    __uint(max_entries, 1024);
    __type(key, u32);
    __type(value, u64[64]);
} stacks SEC(".maps");

SEC("uprobe")
int stackid_entry(struct pt_regs *ctx)
{
    return bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK) < 0;
}

/* bpfgraft-bench usdt: the victim's bpfgraft_bench:hit(i) */
SEC("usdt")
int empty_usdt(struct pt_regs *ctx)
{
    return 0;
}

/* a counter of hits whose argument reads back (usdt.bpf.h's spec walk) */
SEC("usdt")
int BPF_USDT(count_usdt, long i)
{
    u32 key = 0;
    u64 *v = bpf_map_lookup_elem(&hits, &key);
    if (v && i >= 0)
        __sync_fetch_and_add(v, 1);
    return 0;
}
