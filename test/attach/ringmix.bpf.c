/* One ring buffer written from both sides: a uprobe on libc's connect (in
 * the process, under bpfgraft) and the connect syscall's tracepoint, which
 * calls bpf_get_current_task (kernel-only: it runs in the kernel). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 16);
} rb SEC(".maps");

const volatile u32 target_tgid = 0;

struct rec {
    u32 side; /* 1: the uprobe, 2: the kernel's tracepoint */
    u32 tgid;
    u64 task; /* the kernel side's task pointer: not 0 */
};

SEC("uprobe")
int user_side(void *ctx)
{
    struct rec r = {.side = 1, .tgid = bpf_get_current_pid_tgid() >> 32};
    bpf_ringbuf_output(&rb, &r, sizeof(r), 0);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_connect")
int kernel_side(void *ctx)
{
    u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (tgid != target_tgid)
        return 0;
    struct rec r = {.side = 2, .tgid = tgid, .task = bpf_get_current_task()};
    bpf_ringbuf_output(&rb, &r, sizeof(r), 0);
    return 0;
}
