/* Programs of the statistics test (test_stats.py): a call counter, a hash
 * keyed by thread, a ring buffer nobody reads, a uretprobe for misses. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps"); /* 0: entries, 1: returns, 2: records submitted, 3: reserves refused */

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, u32);
    __type(value, u64);
} tids SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} small_rb SEC(".maps");

static __always_inline void bump(u32 key)
{
    u64 *v = bpf_map_lookup_elem(&counts, &key);
    if (v)
        __sync_fetch_and_add(v, 1);
}

SEC("uprobe")
int BPF_KPROBE(count_entry)
{
    bump(0);
    return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(count_return)
{
    bump(1);
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(by_tid)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    bpf_map_update_elem(&tids, &tid, &id, BPF_ANY);
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(fill_ring)
{
    u64 *rec = bpf_ringbuf_reserve(&small_rb, sizeof(*rec), 0);
    if (!rec) {
        bump(3);
        return 0;
    }
    *rec = 1;
    bpf_ringbuf_submit(rec, 0);
    bump(2);
    return 0;
}
