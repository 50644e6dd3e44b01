/* connlat: how long a thread spends between calling libc's connect() and
 * the kernel's TCP connect path seeing it. One object, two sides:
 *  - a uprobe on libc's connect (runs in the process, in userspace)
 *    stores the time keyed by thread id in `start`;
 *  - a raw tracepoint on sock:inet_sock_set_state (runs in the kernel),
 *    at tcp_v4_connect's move to SYN_SENT in the connecting thread, takes
 *    that time out and adds the delay to a log2 histogram. (A kprobe or
 *    fentry on tcp_v4_connect does the same where the kernel has kprobes
 *    and BPF trampolines; the raw tracepoint needs neither.)
 * `start` and `counts` are used by both sides, so bpfgraft makes them
 * kernel maps (`counts`, an array, is mapped into the process; `start`,
 * a hash, is reached through bpf()). counts[0]: connects the uprobe saw,
 * counts[1]: those the kprobe matched, counts[2]: total delay in ns. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define SLOTS 32

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);   /* thread id */
    __type(value, u64); /* bpf_ktime_get_ns() at libc's connect */
} start SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 3);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, SLOTS);
    __type(key, u32);   /* log2 of the delay in ns */
    __type(value, u64); /* connects */
} hist SEC(".maps");

static void count(u32 slot, u64 n)
{
    u64 *c = bpf_map_lookup_elem(&counts, &slot);
    if (c)
        __sync_fetch_and_add(c, n);
}

SEC("uprobe/libc.so.6:connect")
int BPF_KPROBE(connect_enter)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 now = bpf_ktime_get_ns();

    bpf_map_update_elem(&start, &tid, &now, BPF_ANY);
    count(0, 1);
    return 0;
}

static u32 log2l(u64 v)
{
    u32 r = 0;
    for (int i = 0; i < SLOTS - 1 && v > 1; i++) {
        v >>= 1;
        r++;
    }
    return r;
}

SEC("raw_tp/inet_sock_set_state")
int tcp_connect_enter(struct bpf_raw_tracepoint_args *ctx)
{
    /* TP_PROTO(const struct sock *sk, const int oldstate, const int newstate) */
    if ((int)ctx->args[2] != TCP_SYN_SENT)
        return 0;
    u32 tid = (u32)bpf_get_current_pid_tgid();
    u64 *ts = bpf_map_lookup_elem(&start, &tid);
    if (!ts)
        return 0; /* a thread no uprobe saw */
    u64 delta = bpf_ktime_get_ns() - *ts;
    bpf_map_delete_elem(&start, &tid);
    u32 slot = log2l(delta);
    u64 *h = bpf_map_lookup_elem(&hist, &slot);
    if (h)
        __sync_fetch_and_add(h, 1);
    count(1, 1);
    count(2, delta);
    return 0;
}
