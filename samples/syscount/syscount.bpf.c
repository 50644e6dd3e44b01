/* syscount: how many syscalls of each number, and per process, from the
 * raw sys_enter tracepoint (counted at entry, so syscalls that never
 * return, like execve or exit_group, count too). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, u32); /* syscall number */
    __type(value, u64);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, u32); /* pid (thread group) */
    __type(value, u64);
} pid_counts SEC(".maps");

static void bump(void *map, u32 key)
{
    u64 one = 1, *v = bpf_map_lookup_elem(map, &key);

    if (v)
        __sync_fetch_and_add(v, 1);
    else if (bpf_map_update_elem(map, &key, &one, BPF_NOEXIST))
        if ((v = bpf_map_lookup_elem(map, &key)))
            __sync_fetch_and_add(v, 1);
}

SEC("tracepoint/raw_syscalls/sys_enter")
int sys_enter(struct trace_event_raw_sys_enter *ctx)
{
    bump(&counts, (u32)ctx->id);
    bump(&pid_counts, bpf_get_current_pid_tgid() >> 32);
    return 0;
}
