/* funclatency: log2 histogram of a function's latency, uprobe + uretprobe
 * (bcc's funclatency). Attach with --target BINARY:FUNCTION. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define MAX_SLOTS 32

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);   /* thread id */
    __type(value, u64); /* entry timestamp */
} starts SEC(".maps");

/* Slots 0..MAX_SLOTS-1 count calls by log2(ns); slot MAX_SLOTS sums the
 * nanoseconds (ebpf_exporter's histogram layout: the sum at bucket_max + 1). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_SLOTS + 1);
    __type(key, u32);   /* log2(ns), or MAX_SLOTS */
    __type(value, u64); /* count, or total ns */
} hist SEC(".maps");

static __always_inline u32 log2l(u64 v)
{
    u32 r = 0;
    while (v > 1 && r < MAX_SLOTS - 1) {
        v >>= 1;
        r++;
    }
    return r;
}

SEC("uprobe")
int BPF_KPROBE(func_entry)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 ts = bpf_ktime_get_ns();
    bpf_map_update_elem(&starts, &tid, &ts, BPF_ANY);
    return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(func_return)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *start = bpf_map_lookup_elem(&starts, &tid);
    if (!start)
        return 0;
    u64 delta = bpf_ktime_get_ns() - *start;
    bpf_map_delete_elem(&starts, &tid);
    u32 slot = log2l(delta);
    u64 *count = bpf_map_lookup_elem(&hist, &slot);
    if (count)
        __sync_fetch_and_add(count, 1);
    slot = MAX_SLOTS;
    u64 *sum = bpf_map_lookup_elem(&hist, &slot);
    if (sum)
        __sync_fetch_and_add(sum, delta);
    return 0;
}
