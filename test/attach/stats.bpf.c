/* Programs of the statistics test (test_stats.py): count.bpf.c's, and a
 * ring buffer nobody reads, filled at every call. */
#include "count.bpf.c"

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} small_rb SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, u32);
    __type(value, u64);
} ring_counts SEC(".maps"); /* 0: records submitted, 1: reserves refused */

SEC("uprobe")
int BPF_KPROBE(fill_ring)
{
    u64 *rec = bpf_ringbuf_reserve(&small_rb, sizeof(*rec), 0);
    u32 key = rec ? 0 : 1;
    u64 *n = bpf_map_lookup_elem(&ring_counts, &key);
    if (n)
        __sync_fetch_and_add(n, 1);
    if (rec) {
        *rec = 1;
        bpf_ringbuf_submit(rec, 0);
    }
    return 0;
}
