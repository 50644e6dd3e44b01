/* malloc: counts malloc() calls per process in a hash map shared by every
 * process it is attached to (bcc's mallocstacks/memleak in miniature).
 * BPF_KPROBE gives the uprobe's pt_regs arguments: Debian 12's libbpf 1.1
 * headers predate the BPF_UPROBE spelling, which means the same. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);   /* pid */
    __type(value, u64); /* calls */
} malloc_calls SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);   /* pid */
    __type(value, u64); /* bytes requested */
} malloc_bytes SEC(".maps");

SEC("uprobe/libc.so.6:malloc")
int BPF_KPROBE(count_malloc, size_t size)
{
    u32 pid = bpf_get_current_pid_tgid() >> 32;
    u64 one = 1, *calls, *bytes;

    calls = bpf_map_lookup_elem(&malloc_calls, &pid);
    if (calls)
        __sync_fetch_and_add(calls, 1);
    else
        bpf_map_update_elem(&malloc_calls, &pid, &one, BPF_NOEXIST);

    bytes = bpf_map_lookup_elem(&malloc_bytes, &pid);
    if (bytes)
        __sync_fetch_and_add(bytes, size);
    else
        bpf_map_update_elem(&malloc_bytes, &pid, &size, BPF_NOEXIST);
    return 0;
}
