/* A program in a section libbpf does not know. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("frobnicate/now")
int odd_one(void *ctx)
{
    return 1;
}
