/* test_musl.py: exact counts in musl processes; a hash map keyed by tid
 * (the maps' own locks, bpf_get_current_pid_tgid without glibc's TCB). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps"); /* 0: entries, 1: returns, 2: wrong returns, 3: getppid() */

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, u64);
    __type(value, u64);
} by_thread SEC(".maps"); /* pid_tgid -> entries */

static __always_inline void bump(u32 key)
{
    u64 *v = bpf_map_lookup_elem(&counts, &key);
    if (v)
        __sync_fetch_and_add(v, 1);
}

SEC("uprobe")
int BPF_KPROBE(musl_entry, long a, long b)
{
    u64 id = bpf_get_current_pid_tgid(), one = 1;
    u64 *v = bpf_map_lookup_elem(&by_thread, &id);
    if (v)
        __sync_fetch_and_add(v, 1);
    else if (bpf_map_update_elem(&by_thread, &id, &one, BPF_NOEXIST))
        bump(2); /* cannot happen: one thread, one key */
    bump(0);
    return 0;
}

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, u64);
    __type(value, u64);
} last_arg SEC(".maps"); /* pid_tgid -> the first argument of its last call */

/* An update (a stripe lock taken) at every call: what the SIGKILL test
 * kills a process in the middle of. */
SEC("uprobe")
int BPF_KPROBE(musl_lock, long a, long b)
{
    u64 id = bpf_get_current_pid_tgid(), arg = (u64)a;
    if (bpf_map_update_elem(&last_arg, &id, &arg, BPF_ANY))
        bump(2);
    return 0;
}

struct seen {
    char comm[16];
    u64 ktime;
    u64 ret_addr; /* [sp] at the entry, read with bpf_probe_read_user */
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, u32);
    __type(value, struct seen);
} seen SEC(".maps");

/* Helpers that must not need glibc: comm, ktime, probe_read_user. */
SEC("uprobe")
int BPF_KPROBE(musl_helpers, long a, long b)
{
    u32 zero = 0;
    struct seen *s = bpf_map_lookup_elem(&seen, &zero);
    if (!s)
        return 0;
    bpf_get_current_comm(s->comm, sizeof(s->comm));
    s->ktime = bpf_ktime_get_ns();
    if (bpf_probe_read_user(&s->ret_addr, sizeof(s->ret_addr), (void *)PT_REGS_SP(ctx)))
        bump(2);
    return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(musl_return, long ret)
{
    bump(1);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int musl_getppid(void *ctx)
{
    bump(3);
    return 0;
}
