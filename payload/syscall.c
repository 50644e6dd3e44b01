/* Syscall hooks: programs of the syscall tracepoints, run inside the
 * target on Syscall User Dispatch (SUD).
 *
 * The server turns SUD on in every thread with the payload image as the
 * exempt region and bpfg_sys_selector as the switch. Every syscall made
 * anywhere else (the program, any library, JIT code, code loaded later)
 * is then not executed by the kernel but raises SIGSYS, whose handler
 * here builds the tracepoint context, runs the sys_enter programs, makes
 * the syscall itself from the payload's text (exempt) unless a program
 * overrode it, runs the sys_exit programs and returns the result in the
 * interrupted context's rax.
 *
 * The fast path: SUD stays on as the exhaustive net, but each site it
 * catches in the 7-byte form `mov $nr,%eax; syscall` is reported to the
 * server, which rewrites it (all threads stopped) into a jump to a stub
 * calling bpfg_sys_fast_entry (payload_abi.h, syscall_entry.S). Later calls
 * run the same programs from bpfg_sys_fast_enter without a signal: the
 * syscall is made by the entry code, outside any signal handler, on the
 * target's stack with the thread's own mask, so signals, restarts and
 * blocking behave as at the site. The numbers that need the handler's special cases below are never rewritten
 * (bpfg_sys_slow_only). A fork child inherits the rewritten text but runs
 * unhooked, like on the signal path: hot.fast_live is on a MADV_WIPEONFORK
 * page. A vfork child (or clone with CLONE_VM and no CLONE_THREAD) shares
 * our memory and does run the programs through rewritten sites, with its
 * own tid, as the kernel's tracepoint would (the signal path misses them).
 *
 * Without dispatch (BPFG_SYS_F_NO_DISPATCH, pure Go processes: README.md,
 * "Go and Rust targets"): no SIGSYS handler, no SUD; the server rewrites
 * every site of the binary up front and the fast path is the only one.
 * The numbers that need the stack they are made on (site_bound) then run
 * their sys_enter programs here and are made at the site's own syscall.
 *
 * Why the special cases:
 *  - SUD is per thread and not inherited: clone/clone3 of a thread
 *    returns through a stub whose child turns SUD on before running any
 *    target code (syscall_entry.S). Children that are other processes
 *    (fork, vfork, clone without CLONE_THREAD) run unhooked; a new image
 *    after execve has no SUD and no payload (the server gets an EXEC
 *    notice first).
 *  - A syscall made inside the handler is undone by its rt_sigreturn if it
 *    changes the signal mask: rt_sigprocmask is emulated on the saved
 *    mask of the interrupted context. SIGSYS may never be blocked (the
 *    kernel would kill the thread on the next dispatch), so it is removed
 *    from every mask set by rt_sigprocmask or an rt_sigaction's sa_mask,
 *    and the target's own SIGSYS action is kept aside (it receives the
 *    SIGSYS that are not ours, e.g. from seccomp).
 *  - The target's rt_sigreturn must find its frame at its own stack
 *    pointer: it is replayed from payload text after our handler returned.
 *  - Signals: the handler runs with the target's signal mask (empty
 *    sa_mask, SA_NODEFER), so a blocking syscall it makes is interrupted
 *    and restarted (ERESTART*, restart_syscall) exactly as it would be in
 *    the target; the kernel delivers our SIGSYS below the red zone and
 *    saves the FPU/extended state in the signal frame; the handler is
 *    built -mgeneral-regs-only anyway.
 *  - A syscall made while a program runs on the same thread (a signal
 *    handler of the target interrupting it, or a futex of the target's
 *    libc called by a map helper) is executed without programs and
 *    counted as a miss, like the kernel's recursion protection does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>

#include "fault.h"
#include "ksig.h"
#include "payload.h"
#include "rt/rt.h"
#include "syscall.h"
#include "tool.h"

#define SYS_USER_DISPATCH_CODE 2
#define PR_SET_SUD 59
#define SUD_ALLOW 0 /* SYSCALL_DISPATCH_FILTER_ALLOW */
#define SUD_BLOCK 1 /* SYSCALL_DISPATCH_FILTER_BLOCK */
#define STUBS 32
#define STUB_SIZE 128
#define SIGSYS_BIT (1ull << (SIGSYS - 1))
#define UNBLOCKABLE ((1ull << (SIGKILL - 1)) | (1ull << (SIGSTOP - 1)))

/* Read by syscall_entry.S. */
uint64_t bpfg_sys_exempt_base, bpfg_sys_exempt_len;
volatile uint8_t bpfg_sys_selector;
uint64_t bpfg_sys_clone_ret[2 * STUBS];
extern char bpfg_sys_restorer[], bpfg_sys_sigreturn[], bpfg_sys_clone_stubs[];

/* The injector's rescue code, in the exempt region: injected syscalls of
 * threads whose dispatch is on run here (injector/remote.c finds it by its
 * bytes), never raising SIGSYS with every signal blocked. */
__attribute__((used, section(".text.bpfg_rescue"), aligned(16))) static const uint8_t rescue_copy[] = {
    BPFG_RESCUE_CODE};

/* Program lists: payload-internal struct prog pointers, published with
 * release stores by the payload thread, cleared before a grace period. */
static uint64_t sys_enter[BPFG_SYS_MAX_NR][BPFG_SYS_MAX_PROGS];
static uint64_t sys_exit[BPFG_SYS_MAX_NR][BPFG_SYS_MAX_PROGS];
PAYLOAD_HOT_DATA static uint64_t raw_lists[4][BPFG_SYS_MAX_PROGS]; /* RAW_ENTER, RAW_EXIT, RAWTP_ENTER, RAWTP_EXIT */
/* What every hooked syscall reads first, on the hot data page (payload.h,
 * PAYLOAD_HOT_DATA: each page touched after a syscall may cost a TLB walk). */
PAYLOAD_HOT_DATA static struct {
    /* One byte on a MADV_WIPEONFORK page: 1 in this process, 0 in a fork
     * child, which runs unhooked (it has no Syscall User Dispatch either)
     * but inherits the rewritten text. */
    volatile uint8_t *fast_live;
    volatile uint8_t raw_has;                 /* bit per raw list */
    volatile uint8_t no_dispatch;             /* BPFG_SYS_F_NO_DISPATCH: rewritten sites only (Go) */
    volatile uint8_t tool_on;                 /* tool.c's tool_on, copied once tool mode is on */
    volatile uint8_t nr_has[BPFG_SYS_MAX_NR]; /* 1: enter, 2: exit programs for this nr */
} hot __attribute__((aligned(64)));

static struct ksigaction app_action; /* the target's SIGSYS action, chained to */
static bool installed;
static int notify_fd = -1;
static uint64_t misses, dispatched;

void syscall_set_socket(int fd)
{
    notify_fd = fd;
}

/* ---- the syscall itself, from payload text ---- */

static inline long raw6(long n, const uint64_t a[6])
{
    return rt_sys6(n, (long)a[0], (long)a[1], (long)a[2], (long)a[3], (long)a[4], (long)a[5]);
}

/* The syscall the target asked for: in tool mode, the tool's BPF calls
 * (and the fd calls that must keep tool.c's table right) are served by
 * tool.c; everything else, and every call of a process not in tool mode,
 * is made as is. */
static inline long make_call(long n, const uint64_t a[6])
{
    long r;
    if (__builtin_expect(__atomic_load_n(&tool_on, __ATOMIC_RELAXED), 0) && tool_syscall(n, a, &r))
        return r;
    return raw6(n, a);
}

/* ---- contexts ---- */

/* The records of /sys/kernel/tracing/events/{syscalls,raw_syscalls}/: an
 * 8-byte common header (type, flags, preempt count, pid), the syscall
 * number at 8, then the six arguments (enter) or the return value (exit)
 * from 16. */
struct tp_enter {
    uint16_t common_type;
    uint8_t common_flags, common_preempt_count;
    int32_t common_pid;
    int64_t nr;
    uint64_t args[6];
};

struct tp_exit {
    uint16_t common_type;
    uint8_t common_flags, common_preempt_count;
    int32_t common_pid;
    int64_t nr;
    int64_t ret;
};

struct call {
    long nr;
    uint64_t args[6];
    struct bpfg_pt_regs *regs; /* kernel layout, for raw tracepoints and bpf_get_stack */
    int32_t tid;
    /* the thread's slot (hooks.c; its grace periods cover syscall
     * programs too), found from the handler stack the call runs on; NULL
     * off it: the programs miss */
    struct bpfg_thread_slot *slot;
};

static void regs_from_uc(struct bpfg_pt_regs *r, const greg_t *g, long nr)
{
    r->r15 = (uint64_t)g[REG_R15], r->r14 = (uint64_t)g[REG_R14], r->r13 = (uint64_t)g[REG_R13];
    r->r12 = (uint64_t)g[REG_R12], r->bp = (uint64_t)g[REG_RBP], r->bx = (uint64_t)g[REG_RBX];
    r->r11 = (uint64_t)g[REG_R11], r->r10 = (uint64_t)g[REG_R10], r->r9 = (uint64_t)g[REG_R9];
    r->r8 = (uint64_t)g[REG_R8], r->ax = (uint64_t)-ENOSYS, r->cx = (uint64_t)g[REG_RCX];
    r->dx = (uint64_t)g[REG_RDX], r->si = (uint64_t)g[REG_RSI], r->di = (uint64_t)g[REG_RDI];
    r->orig_ax = (uint64_t)nr, r->ip = (uint64_t)g[REG_RIP], r->cs = 0x33;
    r->flags = (uint64_t)g[REG_EFL], r->sp = (uint64_t)g[REG_RSP], r->ss = 0x2b;
}

/* The hot code of a hooked syscall (this file's, then syscall_entry.S's,
 * the next in link order) starts a page, so that it is one page, one TLB
 * walk after each syscall (payload-freestanding checks it). */
__asm__(".pushsection .text.hot,\"ax\",@progbits\n.balign 4096\n.popsection");

static PAYLOAD_HOT void run_list(const uint64_t *list, struct bpfg_exec *ex)
{
    for (int i = 0; i < BPFG_SYS_MAX_PROGS; i++) {
        struct prog *p = (struct prog *)(uintptr_t)__atomic_load_n(&list[i], __ATOMIC_ACQUIRE);
        if (p)
            helpers_run_hot(p, ex);
    }
}

static bool want_enter(long nr)
{
    uint8_t raw = __atomic_load_n(&hot.raw_has, __ATOMIC_RELAXED);
    return (raw & 5) || ((unsigned long)nr < BPFG_SYS_MAX_NR && (hot.nr_has[nr] & 1));
}

static bool want_exit(long nr)
{
    uint8_t raw = __atomic_load_n(&hot.raw_has, __ATOMIC_RELAXED);
    return (raw & 10) || ((unsigned long)nr < BPFG_SYS_MAX_NR && (hot.nr_has[nr] & 2));
}

/* Whether nr's programs include a record format (tracepoint/syscalls/ or
 * raw_syscalls/), whose common_pid needs the tid: a gettid, one more
 * kernel entry, that raw tracepoints do without. */
static bool want_tid(long nr)
{
    uint8_t raw = __atomic_load_n(&hot.raw_has, __ATOMIC_RELAXED);
    return (raw & 3) || ((unsigned long)nr < BPFG_SYS_MAX_NR && (hot.nr_has[nr] & 3));
}

/* Runs the sys_enter programs. Returns true (with *rc) when one of them
 * called bpf_override_return: the syscall must not run. */
/* Enters the thread's handler context for c; false (a miss) when the
 * call runs off the handler stack or inside another handler. */
static inline __attribute__((always_inline)) bool call_enter(const struct call *c)
{
    if (c->slot && hooks_thread_enter(c->slot))
        return true;
    __atomic_fetch_add(&misses, 1, __ATOMIC_RELAXED);
    return false;
}

/* What nr's programs want, from one read of the flags (want_enter,
 * want_exit and want_tid at once): SYS_W_* bits. The lists themselves are
 * read inside the handler context; a flag read before is a hint. */
enum {
    SYS_W_ENTER_NR = 1,    /* sys_enter[nr] (record format) */
    SYS_W_ENTER_RAW = 2,   /* raw_lists[0] (record format) */
    SYS_W_ENTER_RAWTP = 4, /* raw_lists[2] (raw tracepoint: regs, nr) */
    SYS_W_EXIT = 8,
    SYS_W_TID = 16, /* a record format: common_pid */
    SYS_W_REC = SYS_W_ENTER_NR | SYS_W_ENTER_RAW,
    SYS_W_ENTER = SYS_W_REC | SYS_W_ENTER_RAWTP,
};

static inline __attribute__((always_inline)) unsigned sys_wants(long nr)
{
    unsigned raw = __atomic_load_n(&hot.raw_has, __ATOMIC_RELAXED);
    unsigned has = (unsigned long)nr < BPFG_SYS_MAX_NR ? hot.nr_has[nr] : 0;
    return (has & 1 ? SYS_W_ENTER_NR : 0) | (raw & 1 ? SYS_W_ENTER_RAW : 0) | (raw & 4 ? SYS_W_ENTER_RAWTP : 0) |
           ((has & 2) || (raw & 10) ? SYS_W_EXIT : 0) | ((has & 3) || (raw & 3) ? SYS_W_TID : 0);
}

/* The lists of w (sys_wants) run, each only when its bit says it holds
 * a program (the test is one byte): every list a load and a branch per
 * slot otherwise. c->args is read only for a record format. */
static inline __attribute__((always_inline)) bool run_enter(struct call *c, unsigned w, int64_t *rc)
{
    if (!call_enter(c))
        return false;
    struct bpfg_exec ex;
    hooks_exec_init(&ex, c->regs, NULL, true);
    if (w & SYS_W_REC) {
        struct tp_enter rec; /* field by field: an initialiser is a rep stos */
        rec.common_type = 0, rec.common_flags = 0, rec.common_preempt_count = 0;
        rec.common_pid = c->tid, rec.nr = c->nr;
        rec.args[0] = c->args[0], rec.args[1] = c->args[1], rec.args[2] = c->args[2];
        rec.args[3] = c->args[3], rec.args[4] = c->args[4], rec.args[5] = c->args[5];
        ex.ctx = &rec;
        ex.ctx_len = sizeof(rec);
        if (w & SYS_W_ENTER_NR) /* set only for nr < BPFG_SYS_MAX_NR */
            run_list(sys_enter[c->nr], &ex);
        if (w & SYS_W_ENTER_RAW)
            run_list(raw_lists[0], &ex);
    }
    if (w & SYS_W_ENTER_RAWTP) {
        uint64_t rawtp[2] = {(uint64_t)(uintptr_t)c->regs, (uint64_t)c->nr};
        ex.ctx = rawtp;
        ex.ctx_len = sizeof(rawtp);
        run_list(raw_lists[2], &ex);
    }
    hooks_thread_leave(c->slot);
    helpers_send_signal(&ex); /* delivered now (our handler runs with the target's mask): before the syscall */
    *rc = (int64_t)ex.override_rc;
    return ex.override;
}

static PAYLOAD_HOT void run_exit(struct call *c, int64_t ret)
{
    if (!call_enter(c))
        return;
    uint8_t raw = __atomic_load_n(&hot.raw_has, __ATOMIC_RELAXED);
    struct tp_exit rec = {.common_pid = c->tid, .nr = c->nr, .ret = ret};
    c->regs->ax = (uint64_t)ret;
    struct bpfg_exec ex;
    hooks_exec_init(&ex, c->regs, NULL, false);
    ex.ctx = &rec;
    ex.ctx_len = sizeof(rec);
    if ((unsigned long)c->nr < BPFG_SYS_MAX_NR)
        run_list(sys_exit[c->nr], &ex);
    if (raw & 2)
        run_list(raw_lists[1], &ex);
    if (raw & 8) {
        uint64_t rawtp[2] = {(uint64_t)(uintptr_t)c->regs, (uint64_t)ret};
        ex.ctx = rawtp;
        ex.ctx_len = sizeof(rawtp);
        run_list(raw_lists[3], &ex);
    }
    hooks_thread_leave(c->slot);
    helpers_send_signal(&ex);
}

/* ---- special syscalls ---- */

/* rt_sigprocmask on the mask the interrupted context gets back. */
static long emulate_sigprocmask(ucontext_t *uc, const uint64_t a[6])
{
    uint64_t *mask = (uint64_t *)&uc->uc_sigmask;
    uint64_t set = 0, old = *mask;
    if (a[3] != 8)
        return -EINVAL;
    if (a[1] && rt_safe_read(&set, (const void *)a[1], 8))
        return -EFAULT;
    if (a[1]) {
        uint64_t next;
        switch ((int)a[0]) {
        case SIG_BLOCK: next = old | set; break;
        case SIG_UNBLOCK: next = old & ~set; break;
        case SIG_SETMASK: next = set; break;
        default: return -EINVAL;
        }
        next &= ~(SIGSYS_BIT | UNBLOCKABLE);
        *mask = next;
    }
    if (a[2] && rt_safe_write((void *)a[2], &old, 8)) {
        *mask = old;
        return -EFAULT;
    }
    return 0;
}

/* rt_sigaction: SIGSYS stays ours (the target's action is kept aside);
 * no other action may block SIGSYS while its handler runs. */
static long emulate_sigaction(const uint64_t a[6])
{
    struct ksigaction act;
    long ret;
    if (a[3] != 8)
        return raw6(SYS_rt_sigaction, a);
    if (fault_sigaction(a, &ret))
        return ret;
    if (a[0] == SIGSYS) {
        struct ksigaction old = app_action;
        if (a[1] && rt_safe_read(&act, (const void *)a[1], sizeof(act)))
            return -EFAULT;
        if (a[2] && rt_safe_write((void *)a[2], &old, sizeof(old)))
            return -EFAULT;
        if (a[1])
            app_action = act;
        return 0;
    }
    if (!a[1])
        return raw6(SYS_rt_sigaction, a);
    if (rt_safe_read(&act, (const void *)a[1], sizeof(act)))
        return -EFAULT;
    act.mask &= ~SIGSYS_BIT;
    uint64_t b[6] = {a[0], (uint64_t)(uintptr_t)&act, a[2], a[3], 0, 0};
    return raw6(SYS_rt_sigaction, b);
}

/* The stub for a clone site: slot i of its family keeps the site's return
 * address for good (a slot is never reused, so a stub a thread is about
 * to jump through never changes). NULL when all slots are taken. */
static uint64_t clone_stub(uint64_t ret, bool thread)
{
    uint64_t *tab = bpfg_sys_clone_ret + (thread ? 0 : STUBS);
    for (int i = 0; i < STUBS; i++) {
        uint64_t v = __atomic_load_n(&tab[i], __ATOMIC_ACQUIRE);
        if (v == 0) {
            uint64_t expected = 0;
            if (__atomic_compare_exchange_n(&tab[i], &expected, ret, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                v = ret;
            else
                v = expected;
        }
        if (v == ret)
            return (uint64_t)(uintptr_t)bpfg_sys_clone_stubs + (uint64_t)((thread ? 0 : STUBS) + i) * STUB_SIZE;
    }
    return 0;
}

static void notify_exec(const struct call *c)
{
    struct {
        struct bpfg_pmsg_hdr h;
        struct bpfg_pmsg_exec e;
        char path[256];
    } m;
    memset(&m, 0, sizeof(m));
    const void *path = (const void *)(c->nr == SYS_execve ? c->args[0] : c->args[1]);
    long n = rt_safe_read_str(m.path, path, sizeof(m.path));
    if (n <= 0)
        n = 1;
    m.e.pid = (uint32_t)rt_sys0(SYS_getpid);
    m.e.tid = (uint32_t)(c->tid ? c->tid : rt_sys0(SYS_gettid)); /* 0 unless a record program wanted it */
    m.h.type = BPFG_PMSG_EXEC;
    m.h.len = (uint32_t)(sizeof(m.h) + sizeof(m.e) + (size_t)n);
    /* one send of a small message: it is not interleaved with the payload
     * thread's own messages */
    if (notify_fd >= 0)
        rt_sys6(SYS_sendto, notify_fd, (long)&m, m.h.len, MSG_NOSIGNAL | MSG_DONTWAIT, 0, 0);
}

/* ---- rewritten sites (the fast path; payload_abi.h, BPFG_PMSG_SYS_SITES) ----
 *
 * The SIGSYS handler notes each site it sees once (open addressing on the
 * address; a slot's key is claimed by CAS, its state published after);
 * the payload thread reports the candidates to the server, which rewrites
 * them with every thread stopped. Calls through a rewritten site then
 * reach bpfg_sys_fast_enter without a signal. */
#define SITES 4096
#define SITE_PROBES 64
enum { SITE_NEW = 0, SITE_CANDIDATE = 1, SITE_DONE = 2 };

static uint64_t site_key[SITES];
static uint8_t site_state[SITES];
static volatile uint8_t fast_on; /* report sites (BPFG_SYS_F_REWRITE) */
extern char bpfg_sys_fast_entry[];
extern char bpfg_sigsys_entry[];

static void note_site(uint64_t ret, long nr)
{
    uint64_t site = ret - 7;
    uint32_t h = (uint32_t)((site * 0x9e3779b97f4a7c15ull) >> 40);
    for (uint32_t i = 0; i < SITE_PROBES; i++) {
        uint32_t idx = (h + i) % SITES;
        uint64_t k = __atomic_load_n(&site_key[idx], __ATOMIC_ACQUIRE);
        if (k == site)
            return;
        if (k)
            continue;
        uint64_t expected = 0;
        if (!__atomic_compare_exchange_n(&site_key[idx], &expected, site, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            if (expected == site)
                return;
            continue;
        }
        uint8_t code[7];
        uint32_t imm;
        bool ok = rt_safe_read(code, (const void *)(uintptr_t)site, sizeof(code)) == 0;
        memcpy(&imm, code + 1, 4);
        ok = ok && code[5] == 0x0f && code[6] == 0x05 &&
             ((code[0] == 0xb8 && imm == (uint32_t)nr) || memcmp(code, BPFG_SYS_SITE_R9_LOAD, 5) == 0);
        __atomic_store_n(&site_state[idx], ok ? SITE_CANDIDATE : SITE_DONE, __ATOMIC_RELEASE);
        return;
    }
}

size_t syscall_take_sites(uint64_t *out, size_t max)
{
    size_t n = 0;
    if (!__atomic_load_n(&fast_on, __ATOMIC_RELAXED))
        return 0;
    for (uint32_t i = 0; i < SITES && n < max; i++)
        if (__atomic_load_n(&site_state[i], __ATOMIC_ACQUIRE) == SITE_CANDIDATE) {
            out[n++] = __atomic_load_n(&site_key[i], __ATOMIC_RELAXED);
            __atomic_store_n(&site_state[i], SITE_DONE, __ATOMIC_RELAXED);
        }
    return n;
}

/* A site may be noted again after a new attach (it was restored). */
static void forget_sites(void)
{
    for (uint32_t i = 0; i < SITES; i++) {
        __atomic_store_n(&site_state[i], SITE_NEW, __ATOMIC_RELAXED);
        __atomic_store_n(&site_key[i], 0, __ATOMIC_RELEASE);
    }
}

/* Called by bpfg_sys_fast_entry (syscall_entry.S) on the thread's
 * handler stack, not in a signal handler. The entry code makes the
 * syscall itself, on the target's stack with the thread's own signal
 * mask, so signals, restarts and blocking behave as at the site. Returns
 * FAST_DONE when the call is not to be made (its result in r->ax), with
 * FAST_EXIT when the sys_exit programs want the result
 * (bpfg_sys_fast_exit); FAST_SLOW for a bpfg_sys_slow_only number, which
 * only a site taking its number in rax can bring (glibc's syscall()): the
 * entry code then makes the call at the site's own `syscall`, which
 * Syscall User Dispatch sends to the signal path. */
enum { FAST_DONE = 1, FAST_EXIT = 2, FAST_SLOW = 4 }; /* entry.h: F_DONE, F_EXIT, F_SLOW */

/* args: copy the arguments (a record format or tool mode reads them;
 * a raw tracepoint has the pt_regs). */
static inline __attribute__((always_inline)) void fast_call_init(struct call *c, struct bpfg_pt_regs *r,
                                                                 struct bpfg_thread_slot *slot, bool args)
{
    c->nr = (long)r->orig_ax;
    if (args) {
        c->args[0] = r->di, c->args[1] = r->si, c->args[2] = r->dx;
        c->args[3] = r->r10, c->args[4] = r->r8, c->args[5] = r->r9;
    }
    c->regs = r; /* cx and r11 as `syscall` leaves them: the entry code's (entry.h, SYS_REGS) */
    c->tid = 0;
    c->slot = slot; /* the entry code's: the owner of the handler stack it switched to */
}

/* Without dispatch: the numbers whose call depends on the stack it is
 * made on (a signal frame, a child's stack) are made at the site. */
static bool site_bound(long nr)
{
    return nr == SYS_rt_sigreturn || nr == SYS_clone || nr == SYS_clone3 || nr == SYS_fork || nr == SYS_vfork;
}

PAYLOAD_HOT long bpfg_sys_fast_enter(struct bpfg_pt_regs *r, struct bpfg_thread_slot *slot)
{
    long nr = (long)r->orig_ax;
    bool nodisp = __atomic_load_n(&hot.no_dispatch, __ATOMIC_RELAXED);
    if (nodisp ? !*hot.fast_live && site_bound(nr) : bpfg_sys_slow_only(nr))
        return FAST_SLOW;
    if (!*hot.fast_live)
        return 0;
    long slow = nodisp && site_bound(nr) ? FAST_SLOW : 0;
    unsigned w = sys_wants(nr);
    long exit = w & SYS_W_EXIT ? FAST_EXIT : 0;
    bool tool = __builtin_expect(__atomic_load_n(&hot.tool_on, __ATOMIC_RELAXED), 0);
    if (!(w & SYS_W_ENTER) && !tool)
        return slow ? slow : exit;
    struct call c;
    fast_call_init(&c, r, slot, (w & SYS_W_REC) || tool);
    int64_t ret;
    if (w & SYS_W_ENTER) {
        if (w & SYS_W_TID)
            c.tid = (int32_t)helpers_host_tid((uint32_t)rt_sys0(SYS_gettid));
        if (run_enter(&c, w, &ret)) {
            r->ax = (uint64_t)ret;
            return FAST_DONE | (slow ? 0 : exit);
        }
    }
    if (slow)
        return slow;
    long served;
    if (tool && tool_syscall(c.nr, c.args, &served)) {
        r->ax = (uint64_t)served;
        return FAST_DONE | exit;
    }
    return exit;
}

/* After the call, on the handler stack again: the sys_exit programs. */
PAYLOAD_HOT void bpfg_sys_fast_exit(struct bpfg_pt_regs *r, long ret, struct bpfg_thread_slot *slot)
{
    struct call c;
    fast_call_init(&c, r, slot, true);
    unsigned w = sys_wants(c.nr);
    if (!(w & SYS_W_EXIT)) /* re-read: the programs may have gone while the syscall blocked */
        return;
    if (w & SYS_W_TID)
        c.tid = (int32_t)helpers_host_tid((uint32_t)rt_sys0(SYS_gettid));
    run_exit(&c, ret);
}

/* The thread has no handler stack: the call is made unobserved. */
void bpfg_sys_fast_miss(uint64_t *word)
{
    (void)word;
    __atomic_fetch_add(&misses, 1, __ATOMIC_RELAXED);
}

static int fast_setup(void)
{
    if (hot.fast_live)
        return 0;
    long a = rt_sys6(SYS_mmap, 0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rt_is_err(a))
        return (int)a;
    long r = rt_sys3(SYS_madvise, a, 4096, 18 /* MADV_WIPEONFORK */);
    if (rt_is_err(r)) {
        rt_sys2(SYS_munmap, a, 4096);
        return (int)r;
    }
    *(volatile uint8_t *)a = 1;
    __atomic_store_n(&hot.fast_live, (volatile uint8_t *)a, __ATOMIC_RELEASE);
    return 0;
}

/* ---- the handler ---- */

static void chain(int sig, siginfo_t *si, void *uc)
{
    struct ksigaction a = app_action;
    if (a.handler == (uint64_t)(uintptr_t)SIG_IGN)
        return;
    if (a.handler == (uint64_t)(uintptr_t)SIG_DFL) {
        /* the default action (core dump), as if we were not there */
        struct ksigaction dfl = {0};
        rt_sys4(SYS_rt_sigaction, SIGSYS, (long)&dfl, 0, 8);
        rt_sys2(SYS_kill, rt_sys0(SYS_getpid), SIGSYS);
        return;
    }
    ksig_call(&a, sig, si, uc);
}

/* The image and selector of the payload this one replaced (SYSCALL_TAKEOVER;
 * read on the signal path only, off the hot page), and who uses the latter. */
static struct {
    uint64_t lo, hi;
} old_image;
static volatile uint8_t *old_selector;
static uint8_t heal_lock;

/* One of our own syscalls was dispatched: the thread's dispatch is still
 * the replaced payload's (one its clone stub turned on). It becomes ours:
 * the prctl passes while the old selector allows (other threads still on
 * it pass unseen meanwhile; one at a time). */
static void heal_dispatch(void)
{
    volatile uint8_t *sel = old_selector;
    if (!sel)
        return;
    while (__atomic_exchange_n(&heal_lock, 1, __ATOMIC_ACQUIRE))
        __builtin_ia32_pause();
    uint8_t was = *sel;
    *sel = SUD_ALLOW;
    rt_sys6(SYS_prctl, PR_SET_SUD, 1 /* PR_SYS_DISPATCH_ON */, (long)bpfg_sys_exempt_base, (long)bpfg_sys_exempt_len,
            (long)&bpfg_sys_selector, 0);
    *sel = was;
    __atomic_store_n(&heal_lock, 0, __ATOMIC_RELEASE);
}

/* Whether a dispatched syscall made at rip is the target's (its programs
 * run): after a re-injection (SYSCALL_TAKEOVER) one made from the
 * replaced payload's code is that payload's (it runs them), one made from
 * ours reveals a thread still on its dispatch (moved to ours, then made
 * as it is). */
static bool own_syscall(uint64_t rip)
{
    if (!old_image.hi) /* no re-injection */
        return true;
    bool self = rip - bpfg_sys_exempt_base < bpfg_sys_exempt_len;
    if (self)
        heal_dispatch();
    return !self && rip - old_image.lo >= old_image.hi - old_image.lo;
}

/* Run by bpfg_sigsys_entry (syscall_entry.S) on the thread's handler stack. */
void bpfg_sigsys_handler(int sig, siginfo_t *si, void *ucv, int on_hstack)
{
    if (si->si_code != SYS_USER_DISPATCH_CODE) {
        chain(sig, si, ucv);
        return;
    }
    ucontext_t *uc = ucv;
    greg_t *g = uc->uc_mcontext.gregs;
    struct bpfg_pt_regs regs;
    struct call c;
    c.regs = &regs;
    c.slot = on_hstack ? hooks_stack_slot(&regs) : NULL;
    c.nr = si->si_syscall;
    c.args[0] = (uint64_t)g[REG_RDI], c.args[1] = (uint64_t)g[REG_RSI], c.args[2] = (uint64_t)g[REG_RDX];
    c.args[3] = (uint64_t)g[REG_R10], c.args[4] = (uint64_t)g[REG_R8], c.args[5] = (uint64_t)g[REG_R9];
    __atomic_fetch_add(&dispatched, 1, __ATOMIC_RELAXED);

    bool own = own_syscall((uint64_t)g[REG_RIP]);
    bool enter = own && want_enter(c.nr), exit = own && want_exit(c.nr);
    c.tid = 0;
    if (enter || exit) {
        c.tid = want_tid(c.nr) ? (int32_t)rt_sys0(SYS_gettid) : 0;
        regs_from_uc(&regs, g, c.nr);
    }
    if (own && __atomic_load_n(&fast_on, __ATOMIC_RELAXED) && !bpfg_sys_slow_only(c.nr))
        note_site((uint64_t)g[REG_RIP], c.nr);
    int64_t ret = 0;
    if (enter && run_enter(&c, sys_wants(c.nr), &ret))
        goto done;

    switch (c.nr) {
    case SYS_rt_sigreturn:
        /* replayed from payload text once we have returned: the kernel
         * finds the target's frame at its stack pointer */
        g[REG_RIP] = (greg_t)(uintptr_t)bpfg_sys_sigreturn;
        return;
    case SYS_clone:
    case SYS_clone3:
    case SYS_vfork: {
        uint64_t flags = 0, stack = 0;
        if (c.nr == SYS_clone) {
            flags = c.args[0];
            stack = c.args[1];
        } else if (c.nr == SYS_clone3) {
            struct clone_args ca;
            memset(&ca, 0, sizeof(ca));
            size_t n = c.args[1] < sizeof(ca) ? c.args[1] : sizeof(ca);
            if (n < 8 || rt_safe_read(&ca, (const void *)c.args[0], n)) {
                ret = n < 8 ? -EINVAL : -EFAULT;
                break;
            }
            flags = ca.flags;
            stack = ca.stack;
        } else {
            flags = CLONE_VM | CLONE_VFORK;
        }
        if (!(flags & CLONE_VM) && !stack) {
            /* fork-like: the child has its own copy of this frame */
            ret = raw6(c.nr, c.args);
            break;
        }
        uint64_t stub = clone_stub((uint64_t)g[REG_RIP], flags & CLONE_THREAD);
        if (!stub) {
            /* all stub slots are taken: glibc falls back from clone3 to clone */
            ret = c.nr == SYS_clone3 ? -ENOSYS : -EAGAIN;
            break;
        }
        g[REG_RAX] = c.nr;
        g[REG_RIP] = (greg_t)stub;
        return; /* no sys_exit for these: the result is not seen here */
    }
    case SYS_execve:
    case SYS_execveat:
        notify_exec(&c);
        ret = raw6(c.nr, c.args);
        break;
    case SYS_rt_sigprocmask: ret = emulate_sigprocmask(uc, c.args); break;
    case SYS_rt_sigaction: ret = emulate_sigaction(c.args); break;
    case SYS_prctl:
        /* one Syscall User Dispatch per thread: ours */
        ret = c.args[0] == PR_SET_SUD ? -EBUSY : raw6(c.nr, c.args);
        break;
    default: ret = make_call(c.nr, c.args); break;
    }
done:
    /* re-read: the programs may have gone while the syscall blocked */
    if (own && want_exit(c.nr)) {
        if (!enter) {
            c.tid = want_tid(c.nr) ? (int32_t)rt_sys0(SYS_gettid) : 0;
            regs_from_uc(&regs, g, c.nr);
        }
        run_exit(&c, ret);
    }
    g[REG_RAX] = (greg_t)ret;
}

/* ---- payload thread ---- */

static struct ksigaction own_action; /* the SIGSYS action this payload installs */

/* The handler ready: own_action built, the current action kept as the
 * one chained to; with set, own_action installed. */
static int prepare(bool set, char *err, size_t errlen)
{
    own_action = (struct ksigaction){
        .handler = (uint64_t)(uintptr_t)bpfg_sigsys_entry,
        .flags = SA_SIGINFO | SA_NODEFER | SA_RESTORER_,
        .restorer = (uint64_t)(uintptr_t)bpfg_sys_restorer,
        .mask = 0,
    };
    struct ksigaction old;
    bpfg_sys_exempt_base = rt_params->load_base;
    bpfg_sys_exempt_len = rt_params->load_size;
    __atomic_store_n(&bpfg_sys_selector, SUD_BLOCK, __ATOMIC_RELEASE);
    long r = rt_sys4(SYS_rt_sigaction, SIGSYS, set ? (long)&own_action : 0, (long)&old, 8);
    if (rt_is_err(r)) {
        snprintf(err, errlen, "installing the SIGSYS handler: %s", strerror((int)-r));
        return (int)r;
    }
    app_action = old;
    installed = true;
    ksig_unblock_in_handlers(SIGSYS); /* their rt_sigreturn alone would kill the process */
    return 0;
}

static int install(char *err, size_t errlen)
{
    return installed ? 0 : prepare(true, err, errlen);
}

static int add_prog(uint64_t *list, struct prog *p, char *err, size_t errlen)
{
    int free_at = -1;
    for (int i = 0; i < BPFG_SYS_MAX_PROGS; i++) {
        if (list[i] == (uint64_t)(uintptr_t)p) {
            snprintf(err, errlen, "program %u is already attached there", p->id);
            return -EEXIST;
        }
        if (!list[i] && free_at < 0)
            free_at = i;
    }
    if (free_at < 0) {
        snprintf(err, errlen, "%d programs are attached there already", BPFG_SYS_MAX_PROGS);
        return -ENOSPC;
    }
    __atomic_store_n(&list[free_at], (uint64_t)(uintptr_t)p, __ATOMIC_SEQ_CST);
    return 0;
}

/* The SIGSYS handler, or (nodisp) none: one or the other for the
 * payload's life. */
static int hook_mode(bool nodisp, char *err, size_t errlen)
{
    if (nodisp ? installed : __atomic_load_n(&hot.no_dispatch, __ATOMIC_RELAXED)) {
        snprintf(err, errlen, "syscall hooks %s dispatch are in place already", nodisp ? "with" : "without");
        return -EBUSY;
    }
    if (!nodisp)
        return install(err, errlen);
    __atomic_store_n(&hot.no_dispatch, 1, __ATOMIC_RELEASE);
    return 0;
}

/* A message's fixed body into dst: false, or true with err set when the
 * body is shorter (the caller returns -EBADMSG). */
static bool take_body(void *dst, size_t want, const uint8_t *body, size_t len, const char *what, char *err,
                      size_t errlen)
{
    if (len < want) {
        snprintf(err, errlen, "%s message too short", what);
        return true;
    }
    memcpy(dst, body, want);
    return false;
}

static int do_hook(const uint8_t *body, size_t len, char *err, size_t errlen, uint8_t *out, size_t *outlen)
{
    struct bpfg_pmsg_syscall_hook h;
    if (take_body(&h, sizeof(h), body, len, "SYSCALL_HOOK", err, errlen))
        return -EBADMSG;
    struct prog *p = payload_prog_by_id(h.prog_id);
    if (!p) {
        snprintf(err, errlen, "program %u is not loaded", h.prog_id);
        return -ENOENT;
    }
    bool per_nr = h.kind == BPFG_SYS_ENTER || h.kind == BPFG_SYS_EXIT;
    if (h.kind < BPFG_SYS_ENTER || h.kind > BPFG_SYS_RAWTP_EXIT || (per_nr && (h.nr < 0 || h.nr >= BPFG_SYS_MAX_NR))) {
        snprintf(err, errlen, "bad syscall hook (kind %u, nr %d)", h.kind, h.nr);
        return -EINVAL;
    }
    int r = hook_mode(h.flags & BPFG_SYS_F_NO_DISPATCH, err, errlen);
    if (r)
        return r;
    if (per_nr) {
        uint64_t *list = h.kind == BPFG_SYS_ENTER ? sys_enter[h.nr] : sys_exit[h.nr];
        if ((r = add_prog(list, p, err, errlen)))
            return r;
        __atomic_fetch_or(&hot.nr_has[h.nr], h.kind == BPFG_SYS_ENTER ? 1 : 2, __ATOMIC_SEQ_CST);
    } else {
        static const int idx[] = {
            [BPFG_SYS_RAW_ENTER] = 0, [BPFG_SYS_RAW_EXIT] = 1, [BPFG_SYS_RAWTP_ENTER] = 2, [BPFG_SYS_RAWTP_EXIT] = 3};
        static const uint8_t bit[] = {1, 2, 4, 8};
        if ((r = add_prog(raw_lists[idx[h.kind]], p, err, errlen)))
            return r;
        __atomic_fetch_or(&hot.raw_has, bit[idx[h.kind]], __ATOMIC_SEQ_CST);
    }
    /* dispatch again, if the last program's removal let syscalls through */
    __atomic_store_n(&bpfg_sys_selector, SUD_BLOCK, __ATOMIC_SEQ_CST);
    bool fast = (h.flags & BPFG_SYS_F_REWRITE) && fast_setup() == 0;
    if (fast)
        __atomic_store_n(&fast_on, 1, __ATOMIC_RELEASE);
    struct bpfg_pmsg_syscall_reply rep = {
        .exempt_base = bpfg_sys_exempt_base,
        .exempt_len = bpfg_sys_exempt_len,
        .selector = (uint64_t)(uintptr_t)&bpfg_sys_selector,
        .fast_entry = fast ? (uint64_t)(uintptr_t)bpfg_sys_fast_entry : 0,
    };
    memcpy(out, &rep, sizeof(rep));
    *outlen = sizeof(rep);
    return 0;
}

void syscall_remove_all(void)
{
    __atomic_store_n(&hot.raw_has, 0, __ATOMIC_SEQ_CST);
    for (int n = 0; n < BPFG_SYS_MAX_NR; n++) {
        __atomic_store_n(&hot.nr_has[n], 0, __ATOMIC_SEQ_CST);
        for (int i = 0; i < BPFG_SYS_MAX_PROGS; i++) {
            __atomic_store_n(&sys_enter[n][i], 0, __ATOMIC_SEQ_CST);
            __atomic_store_n(&sys_exit[n][i], 0, __ATOMIC_SEQ_CST);
        }
    }
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < BPFG_SYS_MAX_PROGS; i++)
            __atomic_store_n(&raw_lists[k][i], 0, __ATOMIC_SEQ_CST);
}

bool syscall_use_prog(const struct prog *p)
{
    uint64_t v = (uint64_t)(uintptr_t)p;
    for (int n = 0; n < BPFG_SYS_MAX_NR; n++)
        for (int i = 0; i < BPFG_SYS_MAX_PROGS; i++)
            if (sys_enter[n][i] == v || sys_exit[n][i] == v)
                return true;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < BPFG_SYS_MAX_PROGS; i++)
            if (raw_lists[k][i] == v)
                return true;
    return false;
}

/* TOOL_MODE: the handler as for the first SYSCALL_HOOK, then tool.c
 * serves the tool's BPF syscalls (fd: the tool channel, kept as a dup). */
int syscall_tool_mode(const uint8_t *body, size_t len, int fd, char *err, size_t errlen, uint8_t *out, size_t outsize,
                      size_t *outlen)
{
    struct bpfg_pmsg_tool_mode tm;
    struct bpfg_pmsg_syscall_reply rep;
    if (len < sizeof(tm)) {
        snprintf(err, errlen, "TOOL_MODE message too short");
        return -EBADMSG;
    }
    if (fd < 0) {
        snprintf(err, errlen, "TOOL_MODE carries no tool channel fd");
        return -EBADF;
    }
    if (outsize < sizeof(rep))
        return -EINVAL;
    memcpy(&tm, body, sizeof(tm));
    int r = install(err, errlen);
    if (r)
        return r;
    long chan = rt_sys3(SYS_fcntl, fd, F_DUPFD_CLOEXEC, 0);
    if (rt_is_err(chan)) {
        snprintf(err, errlen, "keeping the tool channel: %s", strerror((int)-chan));
        return (int)chan;
    }
    r = tool_start(&tm, (int)chan, err, errlen);
    if (r) {
        rt_sys1(SYS_close, chan);
        return r;
    }
    __atomic_store_n(&hot.tool_on, 1, __ATOMIC_RELEASE);
    /* the tool's bpf() sites get rewritten too: its map calls then reach
     * tool.c without a SIGSYS (the server ignores the sites if it does not
     * rewrite: bpfgraftd --syscall-rewrite=off) */
    if (fast_setup() == 0)
        __atomic_store_n(&fast_on, 1, __ATOMIC_RELEASE);
    rep.exempt_base = bpfg_sys_exempt_base;
    rep.exempt_len = bpfg_sys_exempt_len;
    rep.selector = (uint64_t)(uintptr_t)&bpfg_sys_selector;
    rep.fast_entry = __atomic_load_n(&fast_on, __ATOMIC_RELAXED) ? (uint64_t)(uintptr_t)bpfg_sys_fast_entry : 0;
    memcpy(out, &rep, sizeof(rep));
    *outlen = sizeof(rep);
    return 0;
}

/* Clears p from a list; true if it was there. */
static bool list_remove(uint64_t *list, uint64_t p)
{
    bool found = false;
    for (int i = 0; i < BPFG_SYS_MAX_PROGS; i++)
        if (__atomic_load_n(&list[i], __ATOMIC_RELAXED) == p) {
            __atomic_store_n(&list[i], 0, __ATOMIC_SEQ_CST);
            found = true;
        }
    return found;
}

static bool list_empty(const uint64_t *list)
{
    for (int i = 0; i < BPFG_SYS_MAX_PROGS; i++)
        if (__atomic_load_n(&list[i], __ATOMIC_RELAXED))
            return false;
    return true;
}

/* Whether any syscall program or tool mode needs dispatch. */
static bool syscall_any_use(void)
{
    bool none = !__atomic_load_n(&hot.raw_has, __ATOMIC_SEQ_CST);
    for (int n = 0; n < BPFG_SYS_MAX_NR && none; n++)
        none = !__atomic_load_n(&hot.nr_has[n], __ATOMIC_SEQ_CST);
    return !none || __atomic_load_n(&tool_on, __ATOMIC_SEQ_CST);
}

void syscall_reconnected(void)
{
    if (syscall_any_use())
        __atomic_store_n(&bpfg_sys_selector, SUD_BLOCK, __ATOMIC_SEQ_CST);
}

/* SYSCALL_UNHOOK: one program leaves every list it is in; the handlers
 * that may still run it are waited for, as for SYSCALL_OFF. */
int syscall_unhook(const uint8_t *body, size_t len, char *err, size_t errlen)
{
    struct bpfg_pmsg_syscall_unhook u;
    if (take_body(&u, sizeof(u), body, len, "SYSCALL_UNHOOK", err, errlen))
        return -EBADMSG;
    struct prog *p = payload_prog_by_id(u.prog_id);
    if (!p) {
        snprintf(err, errlen, "program %u is not loaded", u.prog_id);
        return -ENOENT;
    }
    uint64_t v = (uint64_t)(uintptr_t)p;
    bool found = false;
    for (int n = 0; n < BPFG_SYS_MAX_NR; n++) {
        bool e = list_remove(sys_enter[n], v), x = list_remove(sys_exit[n], v);
        if (!e && !x)
            continue;
        found = true;
        uint8_t has = (uint8_t)((list_empty(sys_enter[n]) ? 0 : 1) | (list_empty(sys_exit[n]) ? 0 : 2));
        __atomic_store_n(&hot.nr_has[n], has, __ATOMIC_SEQ_CST);
    }
    static const uint8_t bit[] = {1, 2, 4, 8};
    for (int k = 0; k < 4; k++) {
        if (!list_remove(raw_lists[k], v))
            continue;
        found = true;
        if (list_empty(raw_lists[k]))
            __atomic_fetch_and(&hot.raw_has, (uint8_t)~bit[k], __ATOMIC_SEQ_CST);
    }
    if (!found) {
        snprintf(err, errlen, "program %u is not attached to a syscall", u.prog_id);
        return -ENOENT;
    }
    if (!syscall_any_use()) {
        /* nothing to run: syscalls pass without a signal (the server puts
         * rewritten sites back); the next SYSCALL_HOOK blocks again */
        __atomic_store_n(&bpfg_sys_selector, SUD_ALLOW, __ATOMIC_SEQ_CST);
        __atomic_store_n(&fast_on, 0, __ATOMIC_SEQ_CST);
        forget_sites();
    }
    if (!hooks_quiesce(5000)) {
        snprintf(err, errlen, "program %u is still running on some thread; retry", u.prog_id);
        return -EBUSY;
    }
    return 0;
}

/* SYSCALL_TAKEOVER (payload_abi.h): ready to replace another payload's
 * handler, which the server installs; again: the same reply. */
static int takeover(const uint8_t *body, size_t len, char *err, size_t errlen, uint8_t *out, size_t *outlen)
{
    struct bpfg_pmsg_syscall_takeover tk;
    if (take_body(&tk, sizeof(tk), body, len, "SYSCALL_TAKEOVER", err, errlen))
        return -EBADMSG;
    if (__atomic_load_n(&hot.no_dispatch, __ATOMIC_RELAXED)) {
        snprintf(err, errlen, "syscall hooks without dispatch are in place already");
        return -EBUSY;
    }
    if (!installed && !tk.old_len) {
        snprintf(err, errlen, "SYSCALL_TAKEOVER names no payload to replace");
        return -EINVAL;
    }
    if (!installed) {
        old_image.lo = tk.old_base;
        old_image.hi = tk.old_base + tk.old_len;
        old_selector = (volatile uint8_t *)(uintptr_t)tk.old_selector;
    }
    int r = installed ? 0 : prepare(false, err, errlen);
    if (r)
        return r;
    bool fast = fast_setup() == 0;
    struct bpfg_pmsg_syscall_takeover_reply rep = {
        .sys = {.exempt_base = bpfg_sys_exempt_base,
                .exempt_len = bpfg_sys_exempt_len,
                .selector = (uint64_t)(uintptr_t)&bpfg_sys_selector,
                .fast_entry = fast ? (uint64_t)(uintptr_t)bpfg_sys_fast_entry : 0},
        .action = (uint64_t)(uintptr_t)&own_action,
        .old_base = old_image.lo,
        .old_len = old_image.hi - old_image.lo,
    };
    memcpy(out, &rep, sizeof(rep));
    *outlen = sizeof(rep);
    return 0;
}

int syscall_msg(uint16_t type, const uint8_t *body, size_t len, char *err, size_t errlen, uint8_t *out, size_t outsize,
                size_t *outlen)
{
    if (outsize < sizeof(struct bpfg_pmsg_syscall_takeover_reply))
        return -EINVAL;
    if (type == BPFG_PMSG_SYSCALL_TAKEOVER)
        return takeover(body, len, err, errlen, out, outlen);
    if (type == BPFG_PMSG_SYSCALL_HOOK)
        return do_hook(body, len, err, errlen, out, outlen);
    /* SYSCALL_OFF */
    __atomic_store_n(&bpfg_sys_selector, SUD_ALLOW, __ATOMIC_SEQ_CST);
    __atomic_store_n(&fast_on, 0, __ATOMIC_SEQ_CST);
    forget_sites();
    syscall_remove_all();
    fault_uninstall();
    if (!hooks_quiesce(5000)) {
        snprintf(err, errlen, "a syscall program is still running on some thread; retry");
        return -EBUSY;
    }
    struct bpfg_pmsg_syscall_off_reply rep = {
        .saved_action = installed ? (uint64_t)(uintptr_t)&app_action : 0,
        .misses = __atomic_load_n(&misses, __ATOMIC_RELAXED),
        .dispatched = __atomic_load_n(&dispatched, __ATOMIC_RELAXED),
    };
    memcpy(out, &rep, sizeof(rep));
    *outlen = sizeof(rep);
    return 0;
}
