/* eBPF helpers inside a target. Each receives the run's struct bpfg_exec
 * (bpfg_vm_exec_ctx) as its user pointer. Reads and writes of arbitrary
 * memory go through process_vm_readv/writev on our own pid, so a bad
 * pointer yields -EFAULT instead of a crash of the target. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

#include "callbacks.h"
#include "payload.h"
#include "rt/rt.h"
#include "ustack.h"

#define H(name) static uint64_t name(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, void *user)
#define UNUSED5 (void)r1, (void)r2, (void)r3, (void)r4, (void)r5, (void)user

static inline uint64_t neg(int e)
{
    return (uint64_t)(int64_t)e;
}

/* ---- maps ---- */

H(h_map_lookup_elem)
{
    (void)r3, (void)r4, (void)r5;
    struct bpfg_map *m = (struct bpfg_map *)r1;
    struct bpfg_exec *ex = user;
    void *v = bpfg_map_lookup_elem_run(m, (const void *)r2, &ex->cpus);
    if (v && bpfg_map_type_is_outer(bpfg_map_type(m))) {
        /* map-in-map: the slot holds the inner map's id; the program gets
         * this payload's handle on it (NULL if the server did not send it) */
        uint32_t id = __atomic_load_n((const uint32_t *)v, __ATOMIC_ACQUIRE);
        return (uint64_t)(uintptr_t)(id ? payload_map_by_id(id) : NULL);
    }
    return (uint64_t)(uintptr_t)v;
}
H(h_map_update_elem)
{
    (void)r5;
    struct bpfg_exec *ex = user;
    return neg(bpfg_map_update_elem_run((struct bpfg_map *)r1, (const void *)r2, (const void *)r3, r4, &ex->cpus));
}
H(h_map_delete_elem)
{
    (void)r3, (void)r4, (void)r5, (void)user;
    return neg(bpfg_map_delete_elem((struct bpfg_map *)r1, (const void *)r2));
}
H(h_map_push_elem)
{
    (void)r4, (void)r5, (void)user;
    return neg(bpfg_map_push_elem((struct bpfg_map *)r1, (const void *)r2, r3));
}
H(h_map_pop_elem)
{
    (void)r3, (void)r4, (void)r5, (void)user;
    return neg(bpfg_map_pop_elem((struct bpfg_map *)r1, (void *)r2));
}
H(h_map_peek_elem)
{
    (void)r3, (void)r4, (void)r5, (void)user;
    return neg(bpfg_map_peek_elem((struct bpfg_map *)r1, (void *)r2));
}

/* bpf_tail_call(ctx, prog_array, index): on success the program stops (the
 * VM treats this helper as its unwind helper) and helpers_run() starts the
 * target program with the same context. */
H(h_tail_call)
{
    (void)r1, (void)r4, (void)r5;
    struct bpfg_exec *ex = user;
    if (ex->tail_count >= MAX_TAIL_CALLS - 1)
        return neg(-E2BIG);
    uint32_t id = bpfg_map_prog_array_get((struct bpfg_map *)r2, (uint32_t)r3);
    struct prog *p = id ? payload_prog_by_id(id) : NULL;
    if (!p)
        return neg(-ENOENT);
    ex->tail_count++;
    ex->tail_next = p;
    return 0;
}

/* ---- process and time ---- */

/* bpf_get_current_pid_tgid without syscalls: the tid glibc keeps in the
 * thread's struct pthread (at the offset libthread_db is told), and the
 * pid cached per tid (a thread's pid only changes by fork, where glibc
 * gives the child's thread its new tid, which misses the cache). */
static uint32_t tid_off;       /* 0: make the syscalls */
static uint64_t pid_cache[64]; /* tid << 32 | pid, by tid % 64 */

void helpers_init(void)
{
    uint32_t desc[3];
    uint64_t at = rt_params->libc.thread_db_pthread_tid;
    /* only where the thread pointer is readable the way hooks.c reads it */
    bool tp_ok = (rt_hwcap2 & 2) || rt_params->libc.pthread_mutex_lock;
    if (at && tp_ok && rt_safe_read(desc, (const void *)(uintptr_t)at, sizeof(desc)) == 0 && desc[0] == 32 &&
        desc[1] == 1 && desc[2] >= 16 && desc[2] < 4096)
        tid_off = desc[2];
}

uint32_t helpers_tcb_tid_offset(void)
{
    return tid_off;
}

static inline uint64_t thread_pointer(void)
{
    uint64_t tp;
    if (rt_hwcap2 & 2)
        __asm__ volatile("rdfsbase %0" : "=r"(tp));
    else
        __asm__ volatile("mov %%fs:0, %0" : "=r"(tp));
    return tp;
}

/* ---- pid namespaces ----
 * In another pid namespace getpid/gettid give the namespace's ids; the
 * kernel's helpers give the initial namespace's. The server sends the
 * process's host pid and its threads' host tids (BPFG_PMSG_PIDNS) and
 * refreshes them as threads come and go; a thread newer than the last
 * refresh keeps its namespace tid until then, and a forked child (another
 * process, whose host pid nobody told us) its namespace ids. */
#define NS_TIDS 4096 /* power of two, >= 2x the threads sent */
#define NS_PROBES 32
static uint32_t ns_pid_host; /* 0: same namespace as the kernel's view */
static uint32_t ns_pid_local;
static uint64_t ns_tids[NS_TIDS]; /* ns_tid << 32 | host_tid, 0 empty; linear probing */
static uint32_t ns_tids_used;     /* payload thread only */

uint32_t helpers_host_tid(uint32_t tid)
{
    if (!__atomic_load_n(&ns_pid_host, __ATOMIC_ACQUIRE))
        return tid;
    for (uint32_t k = 0; k < NS_PROBES; k++) {
        uint64_t e = __atomic_load_n(&ns_tids[(tid + k) & (NS_TIDS - 1)], __ATOMIC_ACQUIRE);
        if (!e)
            break;
        if ((uint32_t)(e >> 32) == tid)
            return (uint32_t)e;
    }
    return tid;
}

static bool ns_tid_put(uint32_t ns_tid, uint32_t host_tid)
{
    for (uint32_t k = 0; k < NS_PROBES; k++) {
        uint64_t *slot = &ns_tids[(ns_tid + k) & (NS_TIDS - 1)];
        if (*slot && (uint32_t)(*slot >> 32) != ns_tid)
            continue;
        if (!*slot)
            ns_tids_used++;
        __atomic_store_n(slot, (uint64_t)ns_tid << 32 | host_tid, __ATOMIC_RELEASE);
        return true;
    }
    return false;
}

int helpers_set_pidns(const void *body, size_t len, char *err, size_t errlen)
{
    struct bpfg_pmsg_pidns m;
    if (len < sizeof(m)) {
        snprintf(err, errlen, "PIDNS message too short");
        return -EBADMSG;
    }
    memcpy(&m, body, sizeof(m));
    if (len - sizeof(m) < (size_t)m.ntids * 8 || m.ntids > NS_TIDS / 2 || !m.host_pid || !m.ns_pid) {
        snprintf(err, errlen, "PIDNS: bad message (%u threads)", m.ntids);
        return -EINVAL;
    }
    const uint8_t *pairs = (const uint8_t *)body + sizeof(m);
    /* entries of exited threads stay (a reused tid is overwritten); start
     * over when the table gets crowded (readers miss for that moment) */
    if (ns_tids_used + m.ntids > NS_TIDS / 2) {
        for (uint32_t i = 0; i < NS_TIDS; i++)
            __atomic_store_n(&ns_tids[i], 0, __ATOMIC_RELEASE);
        ns_tids_used = 0;
    }
    for (uint32_t i = 0; i < m.ntids; i++) {
        uint32_t p[2];
        memcpy(p, pairs + 8 * (size_t)i, sizeof(p));
        if (p[0] && p[1])
            ns_tid_put(p[0], p[1]);
    }
    __atomic_store_n(&ns_pid_local, m.ns_pid, __ATOMIC_RELAXED);
    __atomic_store_n(&ns_pid_host, m.host_pid, __ATOMIC_RELEASE);
    return 0;
}

static inline uint64_t host_pid_tgid(uint32_t pid, uint32_t tid)
{
    uint32_t hp = __atomic_load_n(&ns_pid_host, __ATOMIC_ACQUIRE);
    if (__builtin_expect(!hp, 1) || pid != __atomic_load_n(&ns_pid_local, __ATOMIC_RELAXED))
        return (uint64_t)pid << 32 | tid;
    return (uint64_t)hp << 32 | (tid == pid ? hp : helpers_host_tid(tid));
}

/* tgid << 32 | tid in the process's own pid namespace; the maps' locks
 * record it (maps/internal.h). */
uint64_t payload_local_pid_tid(void)
{
    uint64_t tp = tid_off ? thread_pointer() : 0;
    int32_t tid = tp ? *(volatile int32_t *)(uintptr_t)(tp + tid_off) : 0;
    if (tid > 0) {
        uint64_t *slot = &pid_cache[(uint32_t)tid % 64];
        uint64_t e = __atomic_load_n(slot, __ATOMIC_RELAXED);
        if ((uint32_t)(e >> 32) == (uint32_t)tid)
            return (uint64_t)(uint32_t)e << 32 | (uint32_t)tid;
        uint64_t pid = (uint32_t)rt_sys0(SYS_getpid);
        __atomic_store_n(slot, (uint64_t)(uint32_t)tid << 32 | pid, __ATOMIC_RELAXED);
        return pid << 32 | (uint32_t)tid;
    }
    return (uint64_t)(uint32_t)rt_sys0(SYS_getpid) << 32 | (uint32_t)rt_sys0(SYS_gettid);
}

H(h_get_current_pid_tgid)
{
    UNUSED5;
    uint64_t ids = payload_local_pid_tid();
    return host_pid_tgid((uint32_t)(ids >> 32), (uint32_t)ids);
}
H(h_get_current_uid_gid)
{
    UNUSED5;
    uint64_t uid = (uint32_t)rt_sys0(SYS_getuid), gid = (uint32_t)rt_sys0(SYS_getgid);
    return gid << 32 | uid;
}
H(h_get_current_comm)
{
    (void)r3, (void)r4, (void)r5, (void)user;
    char name[16] = {0};
    char *buf = (char *)r1;
    uint32_t size = (uint32_t)r2;
    if (!size)
        return neg(-EINVAL);
    long r = rt_sys2(SYS_prctl, PR_GET_NAME, (long)name);
    if (rt_is_err(r)) {
        memset(buf, 0, size);
        return (uint64_t)r;
    }
    size_t n = strnlen(name, sizeof(name) - 1);
    if (n >= size)
        n = size - 1;
    memcpy(buf, name, n);
    memset(buf + n, 0, size - n);
    return 0;
}
H(h_ktime_get_ns)
{
    UNUSED5;
    return rt_clock_ns(CLOCK_MONOTONIC);
}
H(h_ktime_get_boot_ns)
{
    UNUSED5;
    return rt_clock_ns(CLOCK_BOOTTIME);
}
H(h_ktime_get_coarse_ns)
{
    UNUSED5;
    return rt_clock_ns(CLOCK_MONOTONIC_COARSE);
}
H(h_get_smp_processor_id)
{
    UNUSED5;
    int c = sched_getcpu();
    return c < 0 ? 0 : (uint64_t)c;
}

static uint64_t prandom_state = 0x853c49e6748fea9bull;

/* splitmix64 over an atomic counter: lock-free and fine across threads */
H(h_get_prandom_u32)
{
    UNUSED5;
    uint64_t z = __atomic_add_fetch(&prandom_state, 0x9e3779b97f4a7c15ull, __ATOMIC_RELAXED);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (uint32_t)(z ^ (z >> 31));
}

/* ---- memory ---- */

/* Whether [src, src + len) lies in the run's context (registers or
 * tracepoint record): memory the payload itself filled, always readable. */
static bool within(const void *area, uint64_t size, uint64_t src, uint64_t len)
{
    uint64_t lo = (uint64_t)(uintptr_t)area;
    return lo && src >= lo && len <= size && src - lo <= size - len;
}

static bool in_ctx(const struct bpfg_exec *ex, uint64_t src, uint64_t len)
{
    return within(ex->regs, sizeof(*ex->regs), src, len) || within(ex->ctx, ex->ctx_len, src, len);
}

/* bpf_probe_read*(dst, size, src): zero dst on failure, as the kernel
 * does. Reads of the context (usdt.bpf.h's register arguments) are plain
 * copies; others go through process_vm_readv, which cannot fault. */
H(h_probe_read)
{
    (void)r4, (void)r5;
    if (user && in_ctx(user, r3, (uint32_t)r2)) {
        memcpy((void *)r1, (const void *)r3, (uint32_t)r2);
        return 0;
    }
    long r = rt_safe_read((void *)r1, (const void *)r3, (uint32_t)r2);
    if (r)
        memset((void *)r1, 0, (uint32_t)r2);
    return neg((int)r);
}
H(h_probe_read_str)
{
    (void)r4, (void)r5, (void)user;
    if (!(uint32_t)r2)
        return 0;
    long r = rt_safe_read_str((char *)r1, (const void *)r3, (uint32_t)r2);
    if (r < 0)
        memset((void *)r1, 0, (uint32_t)r2);
    return (uint64_t)r;
}
H(h_probe_write_user)
{
    (void)r4, (void)r5, (void)user;
    return neg((int)rt_safe_write((void *)r1, (const void *)r2, (uint32_t)r3));
}

/* ---- output ---- */

/* The trace ring: a bounded MPMC queue (per-cell sequence numbers); the
 * programs produce, the payload thread consumes and sends TRACE messages. */
#define TRACE_SLOTS 256u
static struct trace_cell {
    uint64_t seq;
    struct trace_line line;
} trace_ring[TRACE_SLOTS];
static uint64_t trace_head, trace_tail, trace_dropped;
static int trace_ready;

static void trace_init(void)
{
    if (__atomic_load_n(&trace_ready, __ATOMIC_ACQUIRE))
        return;
    for (uint64_t i = 0; i < TRACE_SLOTS; i++)
        trace_ring[i].seq = i;
    __atomic_store_n(&trace_ready, 1, __ATOMIC_RELEASE);
}

static bool trace_push(const char *text, uint32_t len)
{
    uint64_t pos = __atomic_load_n(&trace_head, __ATOMIC_RELAXED);
    for (;;) {
        struct trace_cell *c = &trace_ring[pos % TRACE_SLOTS];
        uint64_t seq = __atomic_load_n(&c->seq, __ATOMIC_ACQUIRE);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            if (__atomic_compare_exchange_n(&trace_head, &pos, pos + 1, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
                c->line.pid = (uint32_t)rt_sys0(SYS_getpid);
                c->line.tid = (uint32_t)rt_sys0(SYS_gettid);
                c->line.len = len;
                memcpy(c->line.text, text, len);
                __atomic_store_n(&c->seq, pos + 1, __ATOMIC_RELEASE);
                return true;
            }
        } else if (dif < 0) {
            __atomic_fetch_add(&trace_dropped, 1, __ATOMIC_RELAXED);
            return false;
        } else {
            pos = __atomic_load_n(&trace_head, __ATOMIC_RELAXED);
        }
    }
}

bool trace_ring_pop(struct trace_line *out)
{
    trace_init();
    uint64_t pos = trace_tail;
    struct trace_cell *c = &trace_ring[pos % TRACE_SLOTS];
    if (__atomic_load_n(&c->seq, __ATOMIC_ACQUIRE) != pos + 1)
        return false;
    *out = c->line;
    __atomic_store_n(&c->seq, pos + TRACE_SLOTS, __ATOMIC_RELEASE);
    trace_tail = pos + 1;
    return true;
}

uint64_t trace_ring_take_dropped(void)
{
    return __atomic_exchange_n(&trace_dropped, 0, __ATOMIC_RELAXED);
}

/* Formats with the program's format string, which must end inside fmt_size. */
static int bpf_format(char *out, size_t outsz, const char *fmt, uint32_t fmt_size, const uint64_t *args, uint32_t nargs)
{
    if (!fmt_size || !memchr(fmt, 0, fmt_size))
        return -EINVAL;
    struct rt_fmt_args a = {.arr = args, .n = nargs};
    return rt_format(out, outsz, fmt, &a);
}

/* bpf_trace_printk(fmt, fmt_size, a, b, c) */
H(h_trace_printk)
{
    (void)user;
    if (!__atomic_load_n(&trace_ready, __ATOMIC_ACQUIRE))
        return neg(-EBUSY);
    uint64_t args[3] = {r3, r4, r5};
    char line[BPFG_TRACE_LINE];
    int n = bpf_format(line, sizeof(line), (const char *)r1, (uint32_t)r2, args, 3);
    if (n < 0)
        return neg(n);
    uint32_t len = (uint32_t)n < sizeof(line) - 1 ? (uint32_t)n : (uint32_t)sizeof(line) - 1;
    if (!trace_push(line, len + 1))
        return neg(-EBUSY);
    return len;
}

/* bpf_snprintf(str, str_size, fmt, data, data_len): u64 arguments */
H(h_snprintf)
{
    (void)user;
    if (r5 % 8 || r5 > 12 * 8 || (r5 && !r4))
        return neg(-EINVAL);
    const char *fmt = (const char *)r3;
    if (!fmt || !memchr(fmt, 0, 1024))
        return neg(-EINVAL);
    struct rt_fmt_args a = {.arr = (const uint64_t *)r4, .n = (uint32_t)(r5 / 8)};
    int n = rt_format((char *)r1, (uint32_t)r2, fmt, &a);
    return n < 0 ? neg(n) : (uint64_t)n + 1;
}

H(h_perf_event_output)
{
    (void)r1, (void)user;
    return neg(bpfg_perf_event_output((struct bpfg_map *)r2, r3, (const void *)r4, r5));
}
H(h_ringbuf_output)
{
    (void)r5, (void)user;
    return neg(bpfg_ringbuf_output((struct bpfg_map *)r1, (const void *)r2, r3, r4));
}
H(h_ringbuf_query)
{
    (void)r3, (void)r4, (void)r5, (void)user;
    return bpfg_ringbuf_query((struct bpfg_map *)r1, r2);
}

/* submit/discard only get the record: remember which map each reservation
 * came from for the rest of the run. */
H(h_ringbuf_reserve)
{
    (void)r4, (void)r5;
    struct bpfg_exec *ex = user;
    if (ex->nrb >= MAX_RB_RESERVED)
        return 0;
    void *p = bpfg_ringbuf_reserve((struct bpfg_map *)r1, r2, r3);
    if (p) {
        ex->rb[ex->nrb].data = p;
        ex->rb[ex->nrb].map = (struct bpfg_map *)r1;
        ex->nrb++;
    }
    return (uint64_t)(uintptr_t)p;
}

static void ringbuf_release(struct bpfg_exec *ex, void *data, uint64_t flags, bool discard)
{
    for (uint32_t i = 0; i < ex->nrb; i++) {
        if (ex->rb[i].data != data)
            continue;
        if (discard)
            bpfg_ringbuf_discard(ex->rb[i].map, data, flags);
        else
            bpfg_ringbuf_submit(ex->rb[i].map, data, flags);
        ex->rb[i] = ex->rb[--ex->nrb];
        return;
    }
}

H(h_ringbuf_submit)
{
    (void)r3, (void)r4, (void)r5;
    ringbuf_release(user, (void *)r1, r2, false);
    return 0;
}
H(h_ringbuf_discard)
{
    (void)r3, (void)r4, (void)r5;
    ringbuf_release(user, (void *)r1, r2, true);
    return 0;
}

/* ---- probe context ---- */

/* bpf_override_return(ctx, rc): only entry programs can skip the function */
H(h_override_return)
{
    (void)r1, (void)r3, (void)r4, (void)r5;
    struct bpfg_exec *ex = user;
    if (!ex->entry)
        return neg(-EINVAL);
    ex->override = true;
    ex->override_rc = r2;
    return 0;
}

/* bpf_send_signal(sig) / bpf_send_signal_thread(sig). The kernel delivers
 * the signal when the task returns to user mode, after the probe; here it
 * is sent once the programs ran and the thread left the handler's
 * critical section (a handler that blocks or longjmps must not hold a
 * grace period up). Sent with tgkill/kill: the target sees SI_TKILL or
 * SI_USER where the kernel's helper gives SI_KERNEL. */
static uint64_t request_signal(struct bpfg_exec *ex, uint64_t sig, bool thread)
{
    if (sig > 64)
        return neg(-EINVAL);
    if (ex->signal && (ex->signal != (int32_t)sig || ex->signal_thread != thread))
        return neg(-EBUSY); /* one per run, like the kernel's irq_work slot */
    ex->signal = (int32_t)sig;
    ex->signal_thread = thread;
    return 0;
}

H(h_send_signal)
{
    (void)r2, (void)r3, (void)r4, (void)r5;
    return request_signal(user, r1, false);
}
H(h_send_signal_thread)
{
    (void)r2, (void)r3, (void)r4, (void)r5;
    return request_signal(user, r1, true);
}

void helpers_deliver_signal(const struct bpfg_exec *ex)
{
    long pid = rt_sys0(SYS_getpid), tid = rt_sys0(SYS_gettid);
    uint64_t mask = 0;
    /* The kernel's process-wide signal goes to the current thread unless
     * it blocks it; kill() would prefer the main thread. */
    bool here =
        ex->signal_thread || ex->signal == 0 ||
        (!rt_is_err(rt_sys4(SYS_rt_sigprocmask, SIG_BLOCK, 0, (long)&mask, 8)) && !(mask & (1ull << (ex->signal - 1))));
    if (here)
        rt_sys3(SYS_tgkill, pid, tid, ex->signal);
    else
        rt_sys2(SYS_kill, pid, ex->signal);
}

H(h_get_func_ip)
{
    (void)r1, (void)r2, (void)r3, (void)r4, (void)r5;
    struct bpfg_exec *ex = user;
    return ex->hook ? ex->hook->site : 0;
}

/* bpf_get_func_arg(ctx, n, &value): at a uprobe on a function's entry the
 * first six integer arguments are in registers (SysV ABI); the verifier
 * allows it in uprobes only. */
H(h_get_func_arg)
{
    (void)r1, (void)r4, (void)r5;
    struct bpfg_exec *ex = user;
    uint64_t *out = (uint64_t *)r3;
    const struct bpfg_pt_regs *g = ex->regs;
    if (!g || r2 >= 6) {
        *out = 0;
        return neg(-EINVAL);
    }
    const uint64_t args[6] = {g->di, g->si, g->dx, g->cx, g->r8, g->r9};
    *out = args[r2];
    return 0;
}

/* bpf_get_func_ret(ctx, &value): a uretprobe's return value. */
H(h_get_func_ret)
{
    (void)r1, (void)r3, (void)r4, (void)r5;
    struct bpfg_exec *ex = user;
    uint64_t *out = (uint64_t *)r2;
    if (!ex->regs) {
        *out = 0;
        return neg(-EOPNOTSUPP);
    }
    *out = ex->regs->ax;
    return 0;
}

/* bpf_strncmp(s1, s1_sz, s2): the kernel's strncmp, -1, 0 or 1. s2 is a
 * zero-terminated constant (verified). */
H(h_strncmp)
{
    (void)r4, (void)r5, (void)user;
    const unsigned char *a = (const unsigned char *)r1, *b = (const unsigned char *)r3;
    for (uint32_t i = 0; i < (uint32_t)r2; i++) {
        if (a[i] != b[i])
            return a[i] < b[i] ? neg(-1) : 1;
        if (!a[i])
            break;
    }
    return 0;
}

/* bpf_spin_lock: a spinning lock word in the map value, shared by every
 * process mapping it. The verifier keeps the section short and free of
 * calls; a word held for over a second is taken over, its owner having been
 * killed inside the section (the kernel's programs cannot be). */
#define SPIN_STALE_NS 1000000000ull
H(h_spin_lock)
{
    (void)r2, (void)r3, (void)r4, (void)r5, (void)user;
    _Atomic uint32_t *word = (_Atomic uint32_t *)r1;
    uint64_t since = 0;
    for (uint32_t n = 1;; n++) {
        uint32_t expect = 0;
        if (!atomic_load_explicit(word, memory_order_relaxed) &&
            atomic_compare_exchange_weak_explicit(word, &expect, 1, memory_order_acquire, memory_order_relaxed))
            return 0;
        __asm__ volatile("pause");
        if (n % 65536)
            continue;
        uint64_t now = rt_clock_ns(CLOCK_MONOTONIC);
        if (!since)
            since = now;
        else if (now - since > SPIN_STALE_NS)
            return 0; /* inherited: the word stays held, now by us */
    }
}

H(h_spin_unlock)
{
    (void)r2, (void)r3, (void)r4, (void)r5, (void)user;
    atomic_store_explicit((_Atomic uint32_t *)r1, 0, memory_order_release);
    return 0;
}

/* BPFG_FUNC_map_iter(map, cursor, out[3]): bpf_for_each_map_elem's walk
 * (jit/callbacks.h). Cursors given back are the map's plus one, never 0. */
H(h_map_iter)
{
    (void)r4, (void)r5, (void)user;
    uint64_t *out = (uint64_t *)r3;
    uint64_t cursor = r2 ? r2 - 1 : 0;
    void *key = NULL, *value = NULL;
    uint32_t *index = (uint32_t *)&out[2];
    if (bpfg_map_elem_at((struct bpfg_map *)r1, &cursor, &key, &value, index))
        return 0;
    out[0] = (uint64_t)key;
    out[1] = (uint64_t)value;
    return cursor + 1;
}

/* The cookie of the attachment (hook slot entry) running the program;
 * syscall tracepoints have none: 0. */
H(h_get_attach_cookie)
{
    (void)r1, (void)r2, (void)r3, (void)r4, (void)r5;
    return ((const struct bpfg_exec *)user)->cookie;
}

/* BPF_F_USER_BUILD_ID: the n return addresses at buf as the kernel's
 * bpf_stack_build_id entries, written from the last (entry i, 4 words at
 * word 4i, never reaches the addresses j < i still to be read). */
static void build_id_frames(uint64_t *buf, uint32_t n)
{
    for (uint32_t i = n; i-- > 0;) {
        uint64_t ip = buf[i], off = 0;
        struct bpf_stack_build_id e;
        memset(&e, 0, sizeof(e));
        if (ustack_build_id(ip, e.build_id, &off)) {
            e.status = BPF_STACK_BUILD_ID_VALID;
            e.offset = off;
        } else {
            e.status = BPF_STACK_BUILD_ID_IP;
            e.ip = ip;
        }
        memcpy((uint8_t *)buf + (size_t)i * sizeof(e), &e, sizeof(e));
    }
}

/* bpf_get_stack(ctx, buf, size, flags): user stacks only, walked with
 * the CFI tables the server sent (ustack.c; frame pointers where a pc
 * has no CFI or before the tables arrive). Return addresses a uretprobe
 * replaced are reported as they were. Kernel stacks (no
 * BPF_F_USER_STACK) are empty here. With BPF_F_USER_BUILD_ID: build-id
 * frames, file offsets where the tables know the file's build id. */
H(h_get_stack)
{
    (void)r1, (void)r5;
    struct bpfg_exec *ex = user;
    uint64_t *buf = (uint64_t *)r2;
    uint32_t size = (uint32_t)r3;
    uint64_t flags = r4;
    uint32_t elem = flags & BPF_F_USER_BUILD_ID ? sizeof(struct bpf_stack_build_id) : 8;
    if (size % elem || (flags & ~(BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_USER_BUILD_ID)) ||
        ((flags & BPF_F_USER_BUILD_ID) && !(flags & BPF_F_USER_STACK)))
        return neg(-EINVAL);
    uint32_t n = 0;
    if ((flags & BPF_F_USER_STACK) && ex->regs)
        n = ustack_walk(ex->regs, ex->entry, buf, size / elem, (uint32_t)(flags & BPF_F_SKIP_FIELD_MASK));
    if (elem != 8)
        build_id_frames(buf, n);
    memset((uint8_t *)buf + (size_t)n * elem, 0, size - n * elem);
    return (uint64_t)n * elem;
}

/* bpf_get_stackid(ctx, map, flags): the kernel's: the user stack (up to
 * the map's depth + skip frames, at most 127), less skip frames, stored
 * in the STACK_TRACE map; its id. -EFAULT when no frame is left (kernel
 * stacks: none here). */
H(h_get_stackid)
{
    (void)r4, (void)r5;
    struct bpfg_exec *ex = user;
    struct bpfg_map *m = (struct bpfg_map *)r2;
    uint64_t flags = r3;
    if (flags & ~(BPF_F_SKIP_FIELD_MASK | BPF_F_USER_STACK | BPF_F_FAST_STACK_CMP | BPF_F_REUSE_STACKID))
        return neg(-EINVAL);
    uint64_t ips[127];
    uint32_t skip = (uint32_t)(flags & BPF_F_SKIP_FIELD_MASK), max = bpfg_map_stack_depth(m) + skip, n = 0;
    if (max > 127)
        max = 127;
    if ((flags & BPF_F_USER_STACK) && ex->regs)
        n = ustack_walk(ex->regs, ex->entry, ips, max, 0);
    (void)r1;
    if (n <= skip)
        return neg(-EFAULT);
    return (uint64_t)(int64_t)bpfg_map_stackid(m, ips + skip, n - skip, flags);
}

/* ---- running ---- */

struct bpfg_x86jit_helper helpers_table[BPFG_MAX_HELPERS];

struct prog *helpers_run_end(struct bpfg_exec *ex)
{
    /* a reservation the program kept would block the ring forever */
    while (ex->nrb)
        ringbuf_release(ex, ex->rb[ex->nrb - 1].data, 0, true);
    bpfg_map_run_release(&ex->cpus);
    return ex->tail_next;
}

void helpers_run(struct prog *p, struct bpfg_exec *ex)
{
    helpers_run_hot(p, ex);
}

/* Out of line: the hot path only branches here while stats are on. */
__attribute__((noinline)) void helpers_run_timed(struct prog *p, struct bpfg_exec *ex)
{
    uint64_t t0 = rt_clock_ns(CLOCK_MONOTONIC);
    helpers_run_body(p, ex);
    uint64_t ns = rt_clock_ns(CLOCK_MONOTONIC) - t0;
    __atomic_fetch_add(&p->stats->run_cnt, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&p->stats->run_time_ns, ns, __ATOMIC_RELAXED);
}

static const struct {
    uint32_t id;
    const char *name;
    bpfg_helper_fn fn;
} helper_defs[] = {
    {BPF_FUNC_map_lookup_elem, "map_lookup_elem", h_map_lookup_elem},
    {BPF_FUNC_map_update_elem, "map_update_elem", h_map_update_elem},
    {BPF_FUNC_map_delete_elem, "map_delete_elem", h_map_delete_elem},
    {BPF_FUNC_map_push_elem, "map_push_elem", h_map_push_elem},
    {BPF_FUNC_map_pop_elem, "map_pop_elem", h_map_pop_elem},
    {BPF_FUNC_map_peek_elem, "map_peek_elem", h_map_peek_elem},
    {BPF_FUNC_tail_call, "tail_call", h_tail_call},
    {BPF_FUNC_get_current_pid_tgid, "get_current_pid_tgid", h_get_current_pid_tgid},
    {BPF_FUNC_get_current_uid_gid, "get_current_uid_gid", h_get_current_uid_gid},
    {BPF_FUNC_get_current_comm, "get_current_comm", h_get_current_comm},
    {BPF_FUNC_ktime_get_ns, "ktime_get_ns", h_ktime_get_ns},
    {BPF_FUNC_ktime_get_boot_ns, "ktime_get_boot_ns", h_ktime_get_boot_ns},
    {BPF_FUNC_ktime_get_coarse_ns, "ktime_get_coarse_ns", h_ktime_get_coarse_ns},
    {BPF_FUNC_get_smp_processor_id, "get_smp_processor_id", h_get_smp_processor_id},
    {BPF_FUNC_get_prandom_u32, "get_prandom_u32", h_get_prandom_u32},
    {BPF_FUNC_probe_read, "probe_read", h_probe_read},
    {BPF_FUNC_probe_read_user, "probe_read_user", h_probe_read},
    {BPF_FUNC_probe_read_kernel, "probe_read_kernel", h_probe_read},
    {BPF_FUNC_probe_read_str, "probe_read_str", h_probe_read_str},
    {BPF_FUNC_probe_read_user_str, "probe_read_user_str", h_probe_read_str},
    {BPF_FUNC_probe_read_kernel_str, "probe_read_kernel_str", h_probe_read_str},
    {BPF_FUNC_probe_write_user, "probe_write_user", h_probe_write_user},
    {BPF_FUNC_trace_printk, "trace_printk", h_trace_printk},
    {BPF_FUNC_snprintf, "snprintf", h_snprintf},
    {BPF_FUNC_perf_event_output, "perf_event_output", h_perf_event_output},
    {BPF_FUNC_ringbuf_output, "ringbuf_output", h_ringbuf_output},
    {BPF_FUNC_ringbuf_reserve, "ringbuf_reserve", h_ringbuf_reserve},
    {BPF_FUNC_ringbuf_submit, "ringbuf_submit", h_ringbuf_submit},
    {BPF_FUNC_ringbuf_discard, "ringbuf_discard", h_ringbuf_discard},
    {BPF_FUNC_ringbuf_query, "ringbuf_query", h_ringbuf_query},
    {BPF_FUNC_override_return, "override_return", h_override_return},
    {BPF_FUNC_get_func_ip, "get_func_ip", h_get_func_ip},
    {BPF_FUNC_send_signal, "send_signal", h_send_signal},
    {BPF_FUNC_send_signal_thread, "send_signal_thread", h_send_signal_thread},
    {BPF_FUNC_get_attach_cookie, "get_attach_cookie", h_get_attach_cookie},
    {BPF_FUNC_get_stack, "get_stack", h_get_stack},
    {BPF_FUNC_get_func_arg, "get_func_arg", h_get_func_arg},
    {BPF_FUNC_get_func_ret, "get_func_ret", h_get_func_ret},
    {BPF_FUNC_strncmp, "strncmp", h_strncmp},
    {BPFG_FUNC_map_iter, "bpfgraft_map_iter", h_map_iter},
    {BPF_FUNC_spin_lock, "spin_lock", h_spin_lock},
    {BPF_FUNC_spin_unlock, "spin_unlock", h_spin_unlock},
    {BPF_FUNC_get_stackid, "get_stackid", h_get_stackid},
};

int helpers_register(struct bpfg_vm *vm)
{
    static bool table_filled;
    trace_init();
    /* payload thread only, before any program that could read it is published */
    for (size_t i = 0; !table_filled && i < sizeof(helper_defs) / sizeof(helper_defs[0]); i++)
        helpers_table[helper_defs[i].id].fn = helper_defs[i].fn;
    table_filled = true;
    for (size_t i = 0; i < sizeof(helper_defs) / sizeof(helper_defs[0]); i++) {
        int err = bpfg_vm_register_helper(vm, helper_defs[i].id, helper_defs[i].name, helper_defs[i].fn, NULL);
        if (err)
            return err;
    }
    return bpfg_vm_set_unwind_helper(vm, BPF_FUNC_tail_call);
}
