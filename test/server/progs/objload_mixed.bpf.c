/* A uprobe beside kernel-only programs: the uprobe loads, the others are
 * reported as unavailable in userspace. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("kprobe/do_sys_openat2")
int BPF_KPROBE(kernel_probe, int dfd)
{
    return dfd;
}

SEC("xdp")
int pass_all(struct xdp_md *ctx)
{
    return XDP_PASS;
}

SEC("uprobe//bin/true:main")
int BPF_KPROBE(user_probe, long a)
{
    return a + 7;
}
