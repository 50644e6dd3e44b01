/* memleak: outstanding allocations of a process by allocation stack, like
 * bcc's memleak -p: malloc, calloc, realloc, posix_memalign and free of
 * libc; each live allocation is in `allocs` (address -> size and the id of
 * its user stack in `stack_traces`). memleak.py groups them by stack. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct alloc_info {
    u64 size;
    s64 stack_id;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);   /* thread */
    __type(value, u64); /* size of its allocation in progress */
} sizes SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);   /* thread */
    __type(value, u64); /* posix_memalign's memptr */
} memptrs SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1000000);
    __type(key, u64); /* address */
    __type(value, struct alloc_info);
} allocs SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_STACK_TRACE);
    __uint(max_entries, 10240);
    __type(key, u32);
    __type(value, u64[32]);
} stack_traces SEC(".maps");

static int enter(u64 size)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    bpf_map_update_elem(&sizes, &tid, &size, BPF_ANY);
    return 0;
}

/* At the allocator's return: the user stack starts at its caller. */
static int leave(struct pt_regs *ctx, u64 addr)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *size = bpf_map_lookup_elem(&sizes, &tid);
    if (!size)
        return 0;
    struct alloc_info info = {*size, bpf_get_stackid(ctx, &stack_traces, BPF_F_USER_STACK)};
    bpf_map_delete_elem(&sizes, &tid);
    if (addr)
        bpf_map_update_elem(&allocs, &addr, &info, BPF_ANY);
    return 0;
}

SEC("uprobe/libc.so.6:malloc")
int BPF_KPROBE(malloc_enter, size_t size)
{
    return enter(size);
}

SEC("uretprobe/libc.so.6:malloc")
int BPF_KRETPROBE(malloc_exit, void *ret)
{
    return leave(ctx, (u64)ret);
}

SEC("uprobe/libc.so.6:calloc")
int BPF_KPROBE(calloc_enter, size_t n, size_t size)
{
    return enter(n * size);
}

SEC("uretprobe/libc.so.6:calloc")
int BPF_KRETPROBE(calloc_exit, void *ret)
{
    return leave(ctx, (u64)ret);
}

SEC("uprobe/libc.so.6:realloc")
int BPF_KPROBE(realloc_enter, void *ptr, size_t size)
{
    u64 addr = (u64)ptr;
    bpf_map_delete_elem(&allocs, &addr);
    return enter(size);
}

SEC("uretprobe/libc.so.6:realloc")
int BPF_KRETPROBE(realloc_exit, void *ret)
{
    return leave(ctx, (u64)ret);
}

SEC("uprobe/libc.so.6:posix_memalign")
int BPF_KPROBE(posix_memalign_enter, void **memptr, size_t align, size_t size)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 p = (u64)memptr;
    bpf_map_update_elem(&memptrs, &tid, &p, BPF_ANY);
    return enter(size);
}

SEC("uretprobe/libc.so.6:posix_memalign")
int BPF_KRETPROBE(posix_memalign_exit, int ret)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *memptr = bpf_map_lookup_elem(&memptrs, &tid), addr = 0;
    if (!memptr)
        return 0;
    bpf_map_delete_elem(&memptrs, &tid);
    if (ret == 0)
        bpf_probe_read_user(&addr, sizeof(addr), (void *)*memptr);
    return leave(ctx, addr);
}

SEC("uprobe/libc.so.6:free")
int BPF_KPROBE(free_enter, void *ptr)
{
    u64 addr = (u64)ptr;
    bpf_map_delete_elem(&allocs, &addr);
    return 0;
}
