/* opensnoop: every open()/openat() of the target with its path, flags
 * and result, sent through a ring buffer (bcc's/libbpf-tools' opensnoop,
 * written exactly as for the kernel's syscall tracepoints). targ_pid and
 * targ_failed are libbpf-tools-style filters a loader sets in .rodata
 * before load (samples/skel); 0/false, as loaded by `bpfgraft load`,
 * filter nothing. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

#define NAME_MAX 255

const volatile pid_t targ_pid = 0;       /* 0: every process */
const volatile bool targ_failed = false; /* only failed opens */

struct args_t {
    const char *fname;
    int flags;
};

struct event {
    u32 pid, tid;
    int ret;
    int flags;
    char comm[16];
    char fname[NAME_MAX + 1];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240);
    __type(key, u32);
    __type(value, struct args_t);
} start SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
} events SEC(".maps");

static int enter(const char *fname, int flags)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct args_t args;

    /* filtering at entry keeps other processes out of the start map */
    if (targ_pid && (pid_t)(id >> 32) != targ_pid)
        return 0;
    __builtin_memset(&args, 0, sizeof(args));
    args.fname = fname;
    args.flags = flags;

    bpf_map_update_elem(&start, &tid, &args, BPF_ANY);
    return 0;
}

static int leave(long ret)
{
    u64 id = bpf_get_current_pid_tgid();
    u32 tid = (u32)id;
    struct args_t *ap = bpf_map_lookup_elem(&start, &tid);
    struct event *e;

    if (!ap)
        return 0;
    if (targ_failed && ret >= 0)
        goto cleanup;
    e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (e) {
        e->pid = id >> 32;
        e->tid = tid;
        e->ret = (int)ret;
        e->flags = ap->flags;
        bpf_get_current_comm(&e->comm, sizeof(e->comm));
        bpf_probe_read_user_str(&e->fname, sizeof(e->fname), ap->fname);
        bpf_ringbuf_submit(e, 0);
    }
cleanup:
    bpf_map_delete_elem(&start, &tid);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_open")
int tracepoint__syscalls__sys_enter_open(struct trace_event_raw_sys_enter *ctx)
{
    return enter((const char *)ctx->args[0], (int)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int tracepoint__syscalls__sys_enter_openat(struct trace_event_raw_sys_enter *ctx)
{
    return enter((const char *)ctx->args[1], (int)ctx->args[2]);
}

SEC("tracepoint/syscalls/sys_exit_open")
int tracepoint__syscalls__sys_exit_open(struct trace_event_raw_sys_exit *ctx)
{
    return leave(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_openat")
int tracepoint__syscalls__sys_exit_openat(struct trace_event_raw_sys_exit *ctx)
{
    return leave(ctx->ret);
}
