/* bashreadline: every line bash reads, from readline()'s return value,
 * sent through a ring buffer (bcc's bashreadline). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#include "line_event.h"

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);
} lines SEC(".maps");

SEC("uretprobe//bin/bash:readline")
int BPF_KRETPROBE(bash_readline, const void *ret)
{
    struct line_event *e;

    if (!ret)
        return 0;
    e = bpf_ringbuf_reserve(&lines, sizeof(*e), 0);
    if (!e)
        return 0;
    e->pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    bpf_probe_read_user_str(&e->line, sizeof(e->line), ret);
    bpf_ringbuf_submit(e, 0);
    return 0;
}
