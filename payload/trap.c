/* Trap probes: where a 5-byte jmp is not provably safe (a function shorter
 * than 5 bytes, a branch target inside the bytes, any offset inside a
 * function, an address outside any known function), the server writes a
 * one-byte int3 instead. Its SIGTRAP lands in bpfg_trap_entry
 * (trap_entry.S), which moves to the thread's handler stack; the handler
 * here finds the hook by the trapping address and runs it through the same
 * bpfg_uprobe_handler as the jmp stubs (entry programs, uretprobe return
 * address, bpf_override_return), then resumes the thread at the stub's
 * resume code: the displaced instruction relocated, then a jmp back, as
 * the kernel's uprobes execute it out of line.
 *
 * The table of trap sites is written by the payload thread only and read
 * lock-free by handlers; an entry stays after UNHOOK (a thread may have
 * trapped before the byte was put back and still be on its way to the
 * handler) until its slot is reused for another site.
 *
 * Signals that are not ours (another int3, a SIGTRAP sent with kill, a
 * debugger's) go to the target's own SIGTRAP action, kept aside at install:
 * its handler is called, or the default action (core dump) is taken as if
 * we were not there. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>

#include "ksig.h"
#include "payload.h"
#include "rt/rt.h"
#include "trap.h"

#define TRAP_SLOTS 1024 /* > BPFG_MAX_HOOKS: open addressing stays short */
#define SI_KERNEL_ 0x80 /* si_code of an int3 */

struct trap_site {
    uint64_t addr; /* 0: free; published after index */
    uint32_t index;
    uint32_t pad;
};

static struct trap_site traps[TRAP_SLOTS];
static struct ksigaction app_action; /* the target's SIGTRAP action, chained to */
static bool installed;

extern char bpfg_trap_entry[];
extern char bpfg_sys_restorer[]; /* syscall_entry.S: rt_sigreturn */

static inline uint32_t trap_hash(uint64_t addr)
{
    return (uint32_t)((addr * 0x9e3779b97f4a7c15ull) >> 40) % TRAP_SLOTS;
}

/* The hook slot of the trap at addr, or -1. */
static int trap_find(uint64_t addr)
{
    for (uint32_t i = 0, h = trap_hash(addr); i < TRAP_SLOTS; i++) {
        const struct trap_site *t = &traps[(h + i) % TRAP_SLOTS];
        uint64_t a = __atomic_load_n(&t->addr, __ATOMIC_ACQUIRE);
        if (a == addr)
            return (int)t->index;
        if (!a)
            return -1;
    }
    return -1;
}

static void chain(int sig, siginfo_t *si, void *uc)
{
    struct ksigaction a = app_action;
    if (a.handler == (uint64_t)(uintptr_t)SIG_DFL || a.handler == (uint64_t)(uintptr_t)SIG_IGN) {
        /* a trap is never ignored: the default action, as without us */
        struct ksigaction dfl = {0};
        rt_sys4(SYS_rt_sigaction, SIGTRAP, (long)&dfl, 0, 8);
        rt_sys3(SYS_tgkill, rt_sys0(SYS_getpid), rt_sys0(SYS_gettid), SIGTRAP);
        return;
    }
    ksig_call(&a, sig, si, uc);
}

static void regs_from_uc(struct bpfg_pt_regs *r, const greg_t *g, uint64_t site, int index)
{
    r->r15 = (uint64_t)g[REG_R15], r->r14 = (uint64_t)g[REG_R14], r->r13 = (uint64_t)g[REG_R13];
    r->r12 = (uint64_t)g[REG_R12], r->bp = (uint64_t)g[REG_RBP], r->bx = (uint64_t)g[REG_RBX];
    r->r11 = (uint64_t)g[REG_R11], r->r10 = (uint64_t)g[REG_R10], r->r9 = (uint64_t)g[REG_R9];
    r->r8 = (uint64_t)g[REG_R8], r->ax = (uint64_t)g[REG_RAX], r->cx = (uint64_t)g[REG_RCX];
    r->dx = (uint64_t)g[REG_RDX], r->si = (uint64_t)g[REG_RSI], r->di = (uint64_t)g[REG_RDI];
    r->orig_ax = (uint64_t)index, r->ip = site, r->cs = 0x33, r->ss = 0x2b;
    r->flags = (uint64_t)g[REG_EFL], r->sp = (uint64_t)g[REG_RSP];
}

/* The int3 of a code patch under way (abi/payload_abi.h, the patch
 * journal, which the server writes while every thread is stopped): where
 * the thread continues, as if the patch were whole; 0 if site is none. */
static uint64_t journal_resume(uint64_t site)
{
    const struct bpfg_patch_journal *j = &bpfg_payload_params.journal;
    if (!__atomic_load_n(&j->step, __ATOMIC_ACQUIRE))
        return 0;
    for (uint32_t i = 0; i < j->nwrites && i < BPFG_JOURNAL_WRITES; i++)
        if (j->w[i].site == site && j->w[i].len > 1)
            return j->w[i].resume;
    return 0;
}

/* The int3 at site was replaced since it trapped (a patch finished while
 * the thread's SIGTRAP was pending: a stop hands the signal back to the
 * kernel): run what is there now, as the kernel's uprobes do. Not an
 * `int $3` (cd 03), whose trap address is its second byte. The bytes were
 * just executed, so they are mapped. */
static bool int3_gone(uint64_t site)
{
    const volatile uint8_t *b = (const volatile uint8_t *)(uintptr_t)site;
    return b[0] != 0xcc && !(b[0] == 0x03 && b[-1] == 0xcd);
}

/* Run by bpfg_trap_entry; on_hstack: on the thread's handler stack (else
 * it has none and the hit is a miss). */
void bpfg_trap_handler(int sig, siginfo_t *si, void *ucv, int on_hstack)
{
    greg_t *g = ((ucontext_t *)ucv)->uc_mcontext.gregs;
    uint64_t site = (uint64_t)g[REG_RIP] - 1;
    int index = si->si_code == SI_KERNEL_ ? trap_find(site) : -1;
    uint64_t patched = index < 0 && si->si_code == SI_KERNEL_ ? journal_resume(site) : 0;
    if (patched || (index < 0 && si->si_code == SI_KERNEL_ && int3_gone(site)))
        patched = patched ? patched : site;
    if (patched) {
        g[REG_RIP] = (greg_t)patched;
        return;
    }
    if (index < 0) {
        chain(sig, si, ucv);
        return;
    }
    uint64_t resume = (uint64_t)index;
    if (!on_hstack) {
        bpfg_uprobe_miss(&resume);
        g[REG_RIP] = (greg_t)resume;
        return;
    }
    struct bpfg_pt_regs regs;
    regs_from_uc(&regs, g, site, index);
    if (bpfg_uprobe_handler(&regs, &resume)) {
        /* bpf_override_return: back to the caller (only at an entry) */
        uint64_t sp = (uint64_t)g[REG_RSP];
        g[REG_RIP] = (greg_t) * (uint64_t *)(uintptr_t)sp;
        g[REG_RSP] = (greg_t)(sp + 8);
        g[REG_RAX] = (greg_t)regs.ax;
        return;
    }
    g[REG_RIP] = (greg_t)resume;
}

/* ---- payload thread ---- */

uint64_t trap_saved(void)
{
    return installed ? (uint64_t)(uintptr_t)&app_action : 0;
}

int trap_install(uint64_t *saved, char *err, size_t errlen)
{
    *saved = (uint64_t)(uintptr_t)&app_action;
    if (installed)
        return 0;
    /* empty sa_mask and SA_NODEFER: the handler runs with the thread's
     * own mask, and a trap reached inside it (a nested probe) is taken */
    struct ksigaction act = {
        .handler = (uint64_t)(uintptr_t)bpfg_trap_entry,
        .flags = SA_SIGINFO | SA_NODEFER | SA_RESTORER_,
        .restorer = (uint64_t)(uintptr_t)bpfg_sys_restorer,
        .mask = 0,
    };
    struct ksigaction old;
    long r = rt_sys4(SYS_rt_sigaction, SIGTRAP, (long)&act, (long)&old, 8);
    if (rt_is_err(r)) {
        snprintf(err, errlen, "installing the SIGTRAP handler: %s", strerror((int)-r));
        return (int)r;
    }
    app_action = old;
    installed = true;
    ksig_unblock_in_handlers(SIGTRAP); /* a trap reached in one would kill the process */
    return 0;
}

int trap_add(uint32_t index, uint64_t site, uint64_t *saved, char *err, size_t errlen)
{
    int r = trap_install(saved, err, errlen);
    if (r)
        return r;
    for (uint32_t i = 0, h = trap_hash(site); i < TRAP_SLOTS; i++) {
        struct trap_site *t = &traps[(h + i) % TRAP_SLOTS];
        uint64_t a = t->addr;
        if (a && a != site)
            continue;
        /* a reused address may belong to another slot now: the index
         * store is atomic, and only this thread writes */
        __atomic_store_n(&t->index, index, __ATOMIC_RELEASE);
        __atomic_store_n(&t->addr, site, __ATOMIC_RELEASE);
        return 0;
    }
    snprintf(err, errlen, "the table of trap sites is full (%d sites)", TRAP_SLOTS);
    return -ENOSPC;
}
