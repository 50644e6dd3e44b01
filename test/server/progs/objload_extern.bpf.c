/* References a map that no object defines: loading must fail by name. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

extern long missing_counter;

SEC("uprobe//bin/true:main")
int BPF_KPROBE(uses_missing, long a)
{
    return a + missing_counter;
}
