/* Counts calls of the probed functions; the uretprobe checks return values. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps"); /* 0: add entries, 1: add returns, 2: wrong returns, 3: lib entries */

static __always_inline void bump(u32 key)
{
    u64 *v = bpf_map_lookup_elem(&counts, &key);
    if (v)
        __sync_fetch_and_add(v, 1);
}

SEC("uprobe")
int BPF_KPROBE(add_entry, long a, long b)
{
    bump(0);
    return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(add_return, long ret)
{
    bump(1);
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(lib_entry, long a, long b)
{
    bump(3);
    return 0;
}

#define SIGUSR2 12

/* bpf_send_signal*: the victim counts the SIGUSR2 it gets inside calls */
SEC("uprobe")
int BPF_KPROBE(add_signal_thread, long a, long b)
{
    bump(0);
    return bpf_send_signal_thread(SIGUSR2) ? 1 : 0;
}

SEC("uprobe")
int BPF_KPROBE(lib_signal, long a, long b)
{
    bump(3);
    return bpf_send_signal(SIGUSR2) ? 1 : 0;
}

/* bpf_get_current_pid_tgid by thread: tid -> the whole value */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, u32);
    __type(value, u64);
} tids SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(add_tid, long a, long b)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    bpf_map_update_elem(&tids, &tid, &id, BPF_ANY);
    return 0;
}

/* bpf_get_stack's user stack at the probed function's entry: the first 8
 * return addresses, in the array "stack" (slot 0: how many) */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, u64[9]);
} stack SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(user_stack)
{
    u32 k = 0;
    u64 *s = bpf_map_lookup_elem(&stack, &k);
    if (!s)
        return 0;
    long r = bpf_get_stack(ctx, s + 1, 8 * sizeof(u64), BPF_F_USER_STACK);
    s[0] = r > 0 ? (u64)r / 8 : 0;
    return 0;
}
