/* bashreadline for the skeleton loader: the sample's logic with the lines
 * going through a perf buffer instead of a ring buffer, as libbpf-tools'
 * bashreadline does. skel-bashreadline attaches it itself (binary and pid
 * from the command line), so the section's target is only the default. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#include "../bashreadline/line_event.h"

struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, sizeof(u32));
    __uint(value_size, sizeof(u32));
} lines SEC(".maps");

SEC("uretprobe//bin/bash:readline")
int BPF_KRETPROBE(bash_readline, const void *ret)
{
    struct line_event e;

    if (!ret)
        return 0;
    __builtin_memset(&e, 0, sizeof(e));
    e.pid = bpf_get_current_pid_tgid() >> 32;
    bpf_get_current_comm(&e.comm, sizeof(e.comm));
    bpf_probe_read_user_str(&e.line, sizeof(e.line), ret);
    bpf_perf_event_output(ctx, &lines, BPF_F_CURRENT_CPU, &e, sizeof(e));
    return 0;
}
