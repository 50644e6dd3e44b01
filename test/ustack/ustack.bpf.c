/* User stacks for test/ustack: bpf_get_stack's user stack at the probed
 * function, in the array "ustack" (slot 0: how many frames). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define FRAMES 64

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64[FRAMES + 1]);
} ustack SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(take_ustack)
{
    u32 k = 0;
    u64 *s = bpf_map_lookup_elem(&ustack, &k);
    if (!s)
        return 0;
    long r = bpf_get_stack(ctx, s + 1, FRAMES * sizeof(u64), BPF_F_USER_STACK);
    s[0] = r > 0 ? (u64)r / 8 : 0;
    return 0;
}

/* bpf_get_stackid's id of the same stack, in "stackid" (slot 0). */
struct {
    __uint(type, BPF_MAP_TYPE_STACK_TRACE);
    __uint(max_entries, 1024);
    __type(key, u32);
    __type(value, u64[32]);
} stacks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, s64);
} stackid SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(take_stackid)
{
    u32 k = 0;
    s64 *v = bpf_map_lookup_elem(&stackid, &k);
    if (v)
        *v = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
    return 0;
}

/* bpf_get_stack(BPF_F_USER_BUILD_ID) at the same function: up to 16
 * struct bpf_stack_build_id in "buildid" (slot 0: how many). */
struct buildid_frames {
    u64 n;
    struct bpf_stack_build_id f[16];
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct buildid_frames);
} buildid SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(take_buildid)
{
    u32 k = 0;
    struct buildid_frames *s = bpf_map_lookup_elem(&buildid, &k);
    if (!s)
        return 0;
    long r = bpf_get_stack(ctx, s->f, sizeof(s->f), BPF_F_USER_STACK | BPF_F_USER_BUILD_ID);
    s->n = r > 0 ? (u64)r / sizeof(s->f[0]) : 0;
    return 0;
}

/* Ring buffer records naming their stack by id: `bpfgraft events` adds
 * the stack of user_stack_id symbolized (server/stacksyms.c's rule: a
 * struct of the record's size in the object's BTF with a member named
 * *stack_id). The first EVENTS calls only: the victim calls in a loop. */
#define EVENTS 4

struct stack_event {
    u32 pid;
    s32 user_stack_id;
    u64 seq;
};

const struct stack_event *unused_stack_event __attribute__((unused)); /* the type in BTF */
u64 events_sent;

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096 * 4);
} stack_events SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(emit_stack_event)
{
    u64 seq = __sync_fetch_and_add(&events_sent, 1);
    if (seq >= EVENTS)
        return 0;
    struct stack_event *e = bpf_ringbuf_reserve(&stack_events, sizeof(*e), 0);
    if (!e)
        return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->user_stack_id = bpf_get_stackid(ctx, &stacks, BPF_F_USER_STACK);
    e->seq = seq;
    bpf_ringbuf_submit(e, 0);
    return 0;
}
