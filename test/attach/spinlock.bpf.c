/* bpf_spin_lock in a uprobe, for test_callbacks.py: threads call
 * probe_me() at once; two plain (non-atomic) counters updated under the
 * value's lock must come out exact. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct counters {
    __u64 a;
    struct bpf_spin_lock lock;
    __u64 b;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct counters);
} locked SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(probe_locked)
{
    __u32 zero = 0;
    struct counters *c = bpf_map_lookup_elem(&locked, &zero);
    if (!c)
        return 0;
    bpf_spin_lock(&c->lock);
    __u64 a = c->a;
    c->a = a + 1;
    c->b += 2;
    bpf_spin_unlock(&c->lock);
    return 0;
}
