/* test_go.py: uprobes on Go and Rust functions. Go's internal ABI passes
 * integer arguments in RAX, RBX, RCX, RDI, RSI, R8, R9, R10, R11; the
 * context is the kernel's struct pt_regs, unchanged, so a program reads
 * them by register (payload/README.md, "Go and Rust targets"). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

#define GO_PARM1(x) ((x)->ax)
#define GO_PARM2(x) ((x)->bx)
#define GO_PARM3(x) ((x)->cx)
#define GO_PARM4(x) ((x)->di)
#define GO_PARM5(x) ((x)->si)
#define GO_PARM6(x) ((x)->r8)
#define GO_PARM7(x) ((x)->r9)
#define GO_PARM8(x) ((x)->r10)
#define GO_PARM9(x) ((x)->r11)

/* 0: entries, 1: returns, 2: wrong arguments or map errors, 3: getppid(),
 * 4: openat(), 5: close(), 6: sum of the arguments seen, 7: getppid()
 * returns (sys_exit) */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 8);
    __type(key, u32);
    __type(value, u64);
} counts SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, u64);
    __type(value, u64);
} by_thread SEC(".maps"); /* pid_tgid -> entries */

static __always_inline void add(u32 key, u64 n)
{
    u64 *v = bpf_map_lookup_elem(&counts, &key);
    if (v)
        __sync_fetch_and_add(v, n);
}

static __always_inline void count_thread(void)
{
    u64 id = bpf_get_current_pid_tgid(), one = 1;
    u64 *v = bpf_map_lookup_elem(&by_thread, &id);
    if (v)
        __sync_fetch_and_add(v, 1);
    else if (bpf_map_update_elem(&by_thread, &id, &one, BPF_NOEXIST))
        add(2, 1); /* cannot happen: one thread, one key */
}

/* main.probed(x, x+1, ..., x+8) of go_victim.go. Each register is read
 * once into a local (barrier_var): else clang may keep ctx + offset in a
 * register, which the verifier refuses, as the kernel's does. */
SEC("uprobe")
int go_entry(struct pt_regs *ctx)
{
    u64 a[9] = {GO_PARM1(ctx), GO_PARM2(ctx), GO_PARM3(ctx), GO_PARM4(ctx), GO_PARM5(ctx),
                GO_PARM6(ctx), GO_PARM7(ctx), GO_PARM8(ctx), GO_PARM9(ctx)};
    u64 sum = 0;
    for (int i = 0; i < 9; i++) {
        barrier_var(a[i]);
        if (a[i] != a[0] + i)
            add(2, 1);
        sum += a[i];
    }
    add(6, sum);
    count_thread();
    add(0, 1);
    return 0;
}

/* rust_victim.rs's probed(a, b): the System V ABI, PT_REGS_PARM* as in C */
SEC("uprobe")
int BPF_KPROBE(rust_entry, u64 a, u64 b)
{
    if (b != a + 1)
        add(2, 1);
    add(6, a + b);
    count_thread();
    add(0, 1);
    return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(go_return, u64 ret)
{
    add(1, 1);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int go_getppid(void *ctx)
{
    add(3, 1);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int go_openat(void *ctx)
{
    add(4, 1);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_close")
int go_close(void *ctx)
{
    add(5, 1);
    return 0;
}

/* getppid() cannot fail: a result that is not a pid is wrong */
SEC("tracepoint/syscalls/sys_exit_getppid")
int go_getppid_exit(struct trace_event_raw_sys_exit *ctx)
{
    if (ctx->ret <= 1)
        add(2, 1);
    add(7, 1);
    return 0;
}
