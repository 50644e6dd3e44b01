/* The loader's main test object: one program per attach kind, BTF maps,
 * global data, a bpf-to-bpf call, CO-RE and a .kconfig extern. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, u32);
    __type(value, u64);
} slots SEC(".maps");

long data_bias = 5;                 /* .data */
const volatile long rodata_mul = 3; /* .rodata */
long bss_total;                     /* .bss */
extern unsigned int LINUX_KERNEL_VERSION __kconfig;

SEC("uprobe//bin/true:main+4")
int BPF_KPROBE(double_arg, long a)
{
    return a * 2;
}

SEC("uretprobe//bin/true:main")
int BPF_KRETPROBE(ret_plus_one, long rc)
{
    return rc + 1;
}

static __noinline long mul_add(long x, long y)
{
    return x * y + 1;
}

static __noinline long twice(long x)
{
    return mul_add(x, 2) - 1;
}

SEC("uprobe")
int BPF_KPROBE(call_sub, long a, long b)
{
    return mul_add(a, b) + twice(b);
}

/* bss_total += a * rodata_mul + data_bias, returns the new total. */
SEC("uprobe.s//bin/true:main")
int BPF_KPROBE(globals, long a)
{
    bss_total += a * rodata_mul + data_bias;
    return bss_total;
}

/* slots[a] += b; returns the new value, or -1 if a is out of range. */
SEC("uprobe//bin/true:main")
int BPF_KPROBE(array_add, long a, long b)
{
    u32 key = a;
    u64 *v = bpf_map_lookup_elem(&slots, &key);

    if (!v)
        return -1;
    *v += b;
    return *v;
}

SEC("uprobe//bin/true:main")
int BPF_KPROBE(hash_count, long a)
{
    u32 key = a;
    u64 one = 1, *v = bpf_map_lookup_elem(&counts, &key);

    if (v)
        return ++*v;
    bpf_map_update_elem(&counts, &key, &one, BPF_ANY);
    return 1;
}

/* Layout differs from the kernel's struct pt_regs: only CO-RE relocation
 * against the running kernel's BTF makes the offsets right. */
struct pt_regs___mine {
    unsigned long si;
    unsigned long di;
} __attribute__((preserve_access_index));

SEC("uprobe//bin/true:main")
int core_read(struct pt_regs *ctx)
{
    struct pt_regs___mine *r = (void *)ctx;
    long exists = bpf_core_field_exists(r->di);
    long si = BPF_CORE_READ(ctx, si); /* bpf_probe_read_kernel */

    return r->di * 1000 + si * 10 + exists;
}

SEC("uprobe//bin/true:main")
int kversion(struct pt_regs *ctx)
{
    return LINUX_KERNEL_VERSION;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int enter_openat(struct trace_event_raw_sys_enter *ctx)
{
    return ctx->args[2];
}

SEC("tracepoint/syscalls/sys_exit_openat")
int exit_openat(struct trace_event_raw_sys_exit *ctx)
{
    return ctx->ret;
}

SEC("raw_tracepoint/sys_enter")
int raw_enter(struct bpf_raw_tracepoint_args *ctx)
{
    return ctx->args[1];
}

SEC("raw_tracepoint/sys_exit")
int raw_exit(struct bpf_raw_tracepoint_args *ctx)
{
    return ctx->args[1];
}

SEC("tracepoint/raw_syscalls/sys_enter")
int tp_raw_enter(struct trace_event_raw_sys_enter *ctx)
{
    return ctx->id;
}
