/* Pre-BTF map definitions in the legacy "maps" section. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct legacy_map_def {
    unsigned int type;
    unsigned int key_size;
    unsigned int value_size;
    unsigned int max_entries;
    unsigned int map_flags;
};

struct legacy_map_def legacy_slots SEC("maps") = {
    .type = BPF_MAP_TYPE_ARRAY,
    .key_size = sizeof(u32),
    .value_size = sizeof(u64),
    .max_entries = 8,
};

SEC("uprobe//bin/true:main")
int BPF_KPROBE(legacy_add, long a, long b)
{
    u32 key = a;
    u64 *v = bpf_map_lookup_elem(&legacy_slots, &key);

    if (!v)
        return -1;
    *v += b;
    return *v;
}
