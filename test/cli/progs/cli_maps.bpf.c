/* Test object of the CLI tests: maps whose keys and values have BTF struct,
 * char array, enum and int types, so typed printing and parsing can be
 * checked end to end. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct cli_key {
    u32 pid;
    char comm[12];
};

struct cli_stats {
    u64 count;
    s32 delta;
    u8 tag[4];
};

enum cli_mode { MODE_OFF = 0, MODE_ON = 1, MODE_AUTO = 7 };

struct cli_cfg {
    char label[8];
    u16 level;
    u8 flags_lo : 3, flags_hi : 5;
    enum cli_mode mode;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 128);
    __type(key, struct cli_key);
    __type(value, struct cli_stats);
} flows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, struct cli_cfg);
} cfg SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(count_flow, long pid)
{
    struct cli_key k = {.pid = pid};
    struct cli_stats *s = bpf_map_lookup_elem(&flows, &k);
    u32 zero = 0;
    struct cli_cfg *c = bpf_map_lookup_elem(&cfg, &zero);

    if (s && c && c->mode == MODE_ON)
        s->count++;
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(count_call, long n)
{
    u32 key = n;
    u64 one = 1, *v = bpf_map_lookup_elem(&counts, &key);

    if (v)
        __sync_fetch_and_add(v, 1);
    else
        bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
    return 0;
}

/* Per-CPU values of 4 bytes: bpf(2) pads each CPU's to 8. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 2);
    __type(key, u32);
    __type(value, u32);
} pcpu SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(count_cpu)
{
    u32 zero = 0, *v = bpf_map_lookup_elem(&pcpu, &zero);

    if (v)
        *v += 1;
    return 0;
}

struct {
    __uint(type, BPF_MAP_TYPE_QUEUE);
    __uint(max_entries, 8);
    __type(value, u32);
} jobs SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(push_job, long n)
{
    u32 v = n;

    bpf_map_push_elem(&jobs, &v, BPF_ANY);
    return 0;
}
