/* errinject: makes a function fail without running it, via
 * bpf_override_return. The error and how often to inject it come from
 * .rodata/.data so they can be changed with `bpfgraft map update`.
 * Attach with --target BINARY:FUNCTION. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

long inject_error = -12; /* -ENOMEM */
u32 every_nth = 2;       /* fail one call in every_nth */
u64 calls, injected;

SEC("uprobe")
int BPF_KPROBE(inject)
{
    u64 n = __sync_fetch_and_add(&calls, 1);
    if (every_nth && n % every_nth == 0) {
        __sync_fetch_and_add(&injected, 1);
        bpf_override_return(ctx, inject_error);
    }
    return 0;
}
