/* denyopen: open()/openat() of one path fail with EACCES without being
 * made (bpf_override_return at sys_enter). The path comes from .data:
 * set it with `bpfgraft map update` on denyopen.data, or edit it here. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define PATH_LEN 128
#define EACCES 13

char denied_path[PATH_LEN] = "/etc/bpfgraft-denied";
u64 denied;

static int check(struct pt_regs *regs, const char *fname)
{
    char buf[PATH_LEN];
    int i;

    if (bpf_probe_read_user_str(buf, sizeof(buf), fname) <= 0)
        return 0;
    for (i = 0; i < PATH_LEN; i++) {
        if (buf[i] != denied_path[i])
            return 0;
        if (!buf[i])
            break;
    }
    __sync_fetch_and_add(&denied, 1);
    bpf_override_return(regs, -EACCES);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int deny_openat(struct trace_event_raw_sys_enter *ctx)
{
    return check((struct pt_regs *)ctx, (const char *)ctx->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_open")
int deny_open(struct trace_event_raw_sys_enter *ctx)
{
    return check((struct pt_regs *)ctx, (const char *)ctx->args[0]);
}
