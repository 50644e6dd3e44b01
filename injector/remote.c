/* Remote syscalls and code that survive the tracer's death.
 *
 * A stopped thread runs an injected syscall at the rescue code: `syscall`,
 * then a path that restores the thread's signal mask and every register
 * from a frame written on its own stack (below its red zone) and returns
 * to where the thread was. The tracer takes the thread back at that
 * syscall's exit (PTRACE_SYSCALL) and puts it back itself; if the tracer
 * dies at any instant (the kernel then detaches without a signal), the
 * thread runs on through the rescue path and is exactly as before. No
 * int3 is involved: nothing a thread can be left at is fatal.
 *
 * The rescue code lives in the vDSO's unused tail (after the last byte of
 * its ELF image; that page is copied on write for this process only), is
 * written once and stays: the files' text is never touched. A process
 * without such room gets the code written over the start of its first
 * executable mapping for each call and restored afterwards (the old way:
 * a tracer dying then leaves those bytes changed, the thread still safe).
 *
 * A thread stopped inside an interrupted syscall is put back already
 * restarted (ip on its `syscall`, rax its number), as the kernel does for
 * a thread that no signal handler interrupts: neither the rescue path nor
 * a syscall-exit stop goes through the kernel's restart step. No thread
 * is ever held in a signal's delivery (ptrace.c delivers it before the
 * thread counts as stopped; one met while injected code runs goes on,
 * queued again since all are blocked), so the tracer never holds a
 * signal that its death would lose.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "injector.h"
#include "internal.h"
#include "payload_abi.h"
#include "procfs.h"

/* syscall; restore: rt_sigprocmask(SIG_SETMASK, rsp, NULL, 8);
 * lea 8(%rsp),%rsp; pop r15..rdi (struct rescue_frame's order); popfq;
 * ret $128 (back over the red zone to the thread's rsp). */
static const uint8_t rescue_code[] = {BPFG_RESCUE_CODE};
#define RESCUE_RESTORE BPFG_RESCUE_RESTORE
#define RESCUE_SLOT 64 /* room taken at the end of the vDSO */
#define RED_ZONE 128

/* On the thread's stack, ending where its red zone begins. */
struct rescue_frame {
    uint64_t sigmask;
    uint64_t r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi;
    uint64_t eflags, rip;
};

_Static_assert(sizeof(rescue_code) <= RESCUE_SLOT, "rescue code fits its slot");

/* The registers to put the thread back with: an interrupted syscall is
 * restarted here (the kernel's step for a thread no handler interrupts). */
static struct user_regs_struct restarted(const struct user_regs_struct *r)
{
    struct user_regs_struct b = *r;
    if ((int64_t)b.orig_rax >= 0) {
        int64_t ax = (int64_t)b.rax;
        if (ax == -512 || ax == -513 || ax == -514) { /* ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND */
            b.rax = b.orig_rax;
            b.rip -= 2;
        } else if (ax == -516) { /* ERESTART_RESTARTBLOCK */
            b.rax = SYS_restart_syscall;
            b.rip -= 2;
        }
    }
    b.orig_rax = (uint64_t)-1;
    return b;
}

static struct rescue_frame frame_of(const struct user_regs_struct *b, uint64_t sigmask)
{
    return (struct rescue_frame){sigmask, b->r15, b->r14, b->r13, b->r12, b->rbp, b->rbx, b->r11,    b->r10,
                                 b->r9,   b->r8,  b->rax, b->rcx, b->rdx, b->rsi, b->rdi, b->eflags, b->rip};
}

struct vdso_span {
    uint64_t lo, hi;
};

static int find_vdso(const struct bpfg_procfs_map *m, void *arg)
{
    struct vdso_span *v = arg;
    if (strcmp(m->path, "[vdso]") != 0)
        return 0;
    v->lo = m->start;
    v->hi = m->end;
    return 1;
}

/* Where the vDSO's ELF image ends (its section headers come last; its
 * segments are checked too), 0 if it cannot be read. */
static uint64_t vdso_image_end(const struct bpfg_stopped *st, const struct vdso_span *v)
{
    Elf64_Ehdr eh;
    if (bpfg_mem_read(st, v->lo, &eh, sizeof(eh)) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        return 0;
    uint64_t end = eh.e_shoff + (uint64_t)eh.e_shnum * eh.e_shentsize;
    for (unsigned i = 0; i < eh.e_phnum && i < 16; i++) {
        Elf64_Phdr ph;
        if (bpfg_mem_read(st, v->lo + eh.e_phoff + i * sizeof(ph), &ph, sizeof(ph)))
            return 0;
        if (ph.p_offset + ph.p_filesz > end)
            end = ph.p_offset + ph.p_filesz;
    }
    return v->lo + end;
}

/* The rescue code at the vDSO's end, if there is room after its image
 * (zeros, or the code an earlier attach left). */
static void place_in_vdso(struct bpfg_stopped *st)
{
    struct vdso_span v = {0, 0};
    if (bpfg_procfs_maps(st->pid, find_vdso, &v) < 0 || v.hi - v.lo < RESCUE_SLOT)
        return;
    uint64_t at = v.hi - RESCUE_SLOT, image_end = vdso_image_end(st, &v);
    uint8_t tail[RESCUE_SLOT], want[RESCUE_SLOT] = {0};
    if (!image_end || image_end > at || bpfg_mem_read(st, at, tail, sizeof(tail)))
        return;
    memcpy(want, rescue_code, sizeof(rescue_code));
    bool zeros = true;
    for (size_t i = 0; i < sizeof(tail); i++)
        zeros &= tail[i] == 0;
    if (memcmp(tail, want, sizeof(want)) == 0 || (zeros && bpfg_mem_write(st, at, want, sizeof(want)) == 0))
        st->rescue = at;
}

void bpfg_inj_place_rescue(struct bpfg_stopped *st)
{
    if (!st->rescue && !st->rescue_tried) {
        st->rescue_tried = true;
        place_in_vdso(st);
    }
}

/* An executable mapping's first bytes as the fallback site. */
static int find_syscall_site(struct bpfg_stopped *st, char *err)
{
    bpfg_inj_place_rescue(st);
    if (st->rescue || st->syscall_site)
        return 0;
    int r = bpfg_inj_code_site(st->pid, 0, 0, &st->syscall_site);
    if (r)
        return bpfg_inj_fail(err, r, "cannot read /proc/%d/maps: %s", (int)st->pid, strerror(-r));
    return st->syscall_site ? 0 : bpfg_inj_fail(err, -ENOEXEC, "process %d has no executable mapping", (int)st->pid);
}

#define PTRACE_GET_SUD_CONFIG 0x4211 /* PTRACE_GET_SYSCALL_USER_DISPATCH_CONFIG, Linux 6.6 */

struct sud_config {
    uint64_t mode, selector, offset, len;
};

bool bpfg_inj_dispatch_in(const struct bpfg_stopped *st, uint64_t lo, uint64_t hi, pid_t *tid)
{
    for (size_t i = 0; i < st->nthreads; i++) {
        struct sud_config c;
        pid_t t = st->threads[i].tid;
        if (ptrace(PTRACE_GET_SUD_CONFIG, t, (void *)sizeof(c), &c) != 0 || c.mode == 0)
            continue;
        if ((c.selector >= lo && c.selector < hi) || (c.offset < hi && c.offset + c.len > lo)) {
            *tid = t;
            return true;
        }
    }
    return false;
}

/* The payload's copy of the rescue code in [lo, lo + len), 0 if none (a
 * payload's image is ~1 MiB: larger regions, another program's, are not
 * read past 16 MiB). */
static uint64_t find_rescue_copy(const struct bpfg_stopped *st, uint64_t lo, uint64_t len)
{
    uint8_t buf[16384];
    len = len < (16u << 20) ? len : (16u << 20);
    for (uint64_t off = 0; off + sizeof(rescue_code) <= len;) {
        size_t want = len - off < sizeof(buf) ? (size_t)(len - off) : sizeof(buf);
        ssize_t got = pread(st->mem_fd, buf, want, (off_t)(lo + off));
        if (got < (ssize_t)sizeof(rescue_code)) { /* an unreadable page: on to the next */
            off = (off + 4096) & ~4095ull;
            continue;
        }
        const uint8_t *hit = memmem(buf, (size_t)got, rescue_code, sizeof(rescue_code));
        if (hit)
            return lo + off + (uint64_t)(hit - buf);
        off += (uint64_t)got - sizeof(rescue_code) + 1;
    }
    return 0;
}

/* Where a thread whose Syscall User Dispatch is on runs injected code: the
 * copy of the rescue code in its exempt region (the payload's image), so
 * no syscall of it raises SIGSYS, which with every signal blocked kills the
 * process, should we die. 0 in *code when dispatch is off (or the kernel
 * cannot say: the server then keeps the selector at ALLOW); -EPERM when
 * there is no copy and the selector blocks. */
static int exempt_code(struct bpfg_stopped *st, pid_t tid, uint64_t *code, char *err)
{
    struct sud_config c;
    *code = 0;
    if (ptrace(PTRACE_GET_SUD_CONFIG, tid, (void *)sizeof(c), &c) != 0 || c.mode == 0)
        return 0;
    if (c.offset != st->exempt_lo || !st->exempt_code) {
        st->exempt_lo = c.offset;
        st->exempt_code = find_rescue_copy(st, c.offset, c.len);
    }
    *code = st->exempt_code;
    uint8_t selector = 1;
    if (*code || (c.selector && bpfg_mem_read(st, c.selector, &selector, 1) == 0 && selector == 0))
        return 0;
    return bpfg_inj_fail(err, -EPERM,
                         "thread %d has Syscall User Dispatch on, blocking, and no bpfgraft rescue code in its "
                         "exempt region 0x%llx: an injected syscall would raise SIGSYS",
                         (int)tid, (unsigned long long)c.offset);
}

static bool fault_signal(int sig)
{
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGILL || sig == SIGFPE;
}

/* Runs t until the exit of the syscall it makes; signals that still
 * reach it (all are blocked: stop signals, faults) are dealt with. */
static int wait_syscall_exit(struct bpfg_stopped *st, struct bpfg_thread *t, char *err)
{
    for (;;) {
        int status;
        if (waitpid(t->tid, &status, __WALL) < 0) {
            if (errno == EINTR)
                continue;
            return bpfg_inj_fail(err, -errno, "waiting for thread %d: %s", (int)t->tid, strerror(errno));
        }
        if (WIFEXITED(status) || WIFSIGNALED(status))
            return bpfg_inj_fail(err, -ECHILD, "process %d exited during the attach", (int)st->pid);
        if (!WIFSTOPPED(status))
            continue;
        int sig = WSTOPSIG(status), event = status >> 16;
        if (sig == (SIGTRAP | 0x80)) {
            struct __ptrace_syscall_info info;
            if (ptrace(PTRACE_GET_SYSCALL_INFO, t->tid, (void *)sizeof(info), &info) < 0)
                return bpfg_inj_fail(err, -errno, "syscall stop of thread %d: %s", (int)t->tid, strerror(errno));
            if (info.op == PTRACE_SYSCALL_INFO_EXIT)
                return 0;
        } else if (event == 0 && sig == SIGSYS) { /* forced: dispatch or seccomp took the syscall */
            return bpfg_inj_fail(err, -EPERM,
                                 "the injected syscall raised SIGSYS in thread %d "
                                 "(Syscall User Dispatch or a seccomp filter)",
                                 (int)t->tid);
        } else if (event == 0 && fault_signal(sig)) {
            struct user_regs_struct bad;
            ptrace(PTRACE_GETREGS, t->tid, NULL, &bad);
            return bpfg_inj_fail(err, -EFAULT, "injected code faulted with signal %d at 0x%llx", sig, bad.rip);
        }
        /* Any other signal goes on at once (none is held here: it would
         * be lost should we die): every one is blocked, so the kernel
         * queues it again; SIGSTOP starts a group stop, which a resumed
         * thread leaves for now and re-enters when detached. */
        int on = event == 0 && sig != (SIGTRAP | 0x80) ? sig : 0;
        if (bpfg_inj_ptrace(PTRACE_SYSCALL, t->tid, NULL, (void *)(long)on) != 0)
            return bpfg_inj_fail(err, -errno, "resuming thread %d: %s", (int)t->tid, strerror(errno));
    }
}

/* Puts t back: signal mask first (a tracer dying between the two leaves
 * it in the rescue path, which sets the same mask), then registers. */
static int put_back(struct bpfg_thread *t, const struct user_regs_struct *back, char *err)
{
    if (bpfg_inj_ptrace(PTRACE_SETSIGMASK, t->tid, (void *)sizeof(t->sigmask), &t->sigmask) != 0 ||
        bpfg_inj_ptrace(PTRACE_SETREGS, t->tid, NULL, (void *)back) != 0)
        return bpfg_inj_fail(err, -errno, "restoring thread %d: %s", (int)t->tid, strerror(errno));
    return 0;
}

/* Runs thread index from regs (rip: code starting with `syscall` whose
 * caller continues at r12, set here to the rescue path) to that syscall's
 * exit; out gets the registers there. The thread is put back either way. */
static int run_rescued(struct bpfg_stopped *st, size_t index, uint64_t code, struct user_regs_struct *regs,
                       struct user_regs_struct *out, char *err)
{
    struct bpfg_thread *t = &st->threads[index];
    struct user_regs_struct back = restarted(&t->regs);
    struct rescue_frame f = frame_of(&back, t->sigmask);
    uint64_t frame_at = t->regs.rsp - RED_ZONE - sizeof(f);
    int r = bpfg_mem_write(st, frame_at, &f, sizeof(f));
    if (r)
        return bpfg_inj_fail(err, r, "cannot write to the stack of thread %d at 0x%llx: %s", (int)t->tid,
                             (unsigned long long)frame_at, strerror(-r));
    regs->rsp = frame_at;
    regs->r12 = code + RESCUE_RESTORE;
    regs->orig_rax = (uint64_t)-1;          /* no syscall restart for injected code */
    regs->eflags &= ~(0x100ull | 0x400ull); /* TF, DF */
    uint64_t all = ~0ull;
    /* registers before the mask: a tracer dying in between leaves a thread
     * that runs the syscall and restores itself, mask included */
    if (bpfg_inj_ptrace(PTRACE_SETREGS, t->tid, NULL, regs) != 0 ||
        bpfg_inj_ptrace(PTRACE_SETSIGMASK, t->tid, (void *)sizeof(all), &all) != 0 ||
        bpfg_inj_ptrace(PTRACE_SYSCALL, t->tid, NULL, NULL) != 0) {
        r = bpfg_inj_fail(err, -errno, "running code in thread %d: %s", (int)t->tid, strerror(errno));
    } else if (!(r = wait_syscall_exit(st, t, err)) && ptrace(PTRACE_GETREGS, t->tid, NULL, out) != 0) {
        r = bpfg_inj_fail(err, -errno, "reading registers of thread %d: %s", (int)t->tid, strerror(errno));
    }
    if (r == -ECHILD)
        return r;
    int p = put_back(t, &back, r ? NULL : err);
    return r ? r : p;
}

/* Runs regs on thread index with the rescue code placed (regs->rip 0:
 * at the rescue code's own syscall). */
static int run_with_rescue(struct bpfg_stopped *st, size_t index, struct user_regs_struct *regs,
                           struct user_regs_struct *out, char *err)
{
    if (index >= st->nthreads)
        return bpfg_inj_fail(err, -EINVAL, "no stopped thread %zu", index);
    uint64_t exempt;
    int r = exempt_code(st, st->threads[index].tid, &exempt, err);
    if (!r && !exempt)
        r = find_syscall_site(st, err);
    if (r)
        return r;
    bool in_text = !exempt && !st->rescue;
    uint64_t code = exempt ? exempt : st->rescue ? st->rescue : st->syscall_site;
    uint8_t saved[sizeof(rescue_code)];
    if (in_text && ((r = bpfg_mem_read(st, code, saved, sizeof(saved))) ||
                    (r = bpfg_mem_write(st, code, rescue_code, sizeof(rescue_code)))))
        return bpfg_inj_fail(err, r, "writing code at 0x%llx: %s", (unsigned long long)code, strerror(-r));
    if (!regs->rip)
        regs->rip = code;
    r = run_rescued(st, index, code, regs, out, err);
    int w = in_text ? bpfg_mem_write(st, code, saved, sizeof(saved)) : 0;
    if (!r && w)
        r = bpfg_inj_fail(err, w, "restoring the code at 0x%llx: %s", (unsigned long long)code, strerror(-w));
    return r;
}

int bpfg_remote_syscall_on(struct bpfg_stopped *st, size_t index, long nr, const uint64_t args[6], int64_t *ret,
                           char *err)
{
    if (index >= st->nthreads)
        return bpfg_inj_fail(err, -EINVAL, "no stopped thread %zu", index);
    struct user_regs_struct regs = st->threads[index].regs, out;
    regs.rax = (uint64_t)nr;
    regs.rdi = args[0];
    regs.rsi = args[1];
    regs.rdx = args[2];
    regs.r10 = args[3];
    regs.r8 = args[4];
    regs.r9 = args[5];
    regs.rip = 0;
    int r = run_with_rescue(st, index, &regs, &out, err);
    if (!r)
        *ret = (int64_t)out.rax;
    return r;
}

int bpfg_remote_syscall(struct bpfg_stopped *st, long nr, const uint64_t args[6], int64_t *ret, char *err)
{
    return bpfg_remote_syscall_on(st, 0, nr, args, ret, err);
}

int bpfg_remote_run(struct bpfg_stopped *st, struct user_regs_struct *regs, struct user_regs_struct *out, char *err)
{
    return run_with_rescue(st, 0, regs, out, err);
}

int bpfg_inj_run_on(struct bpfg_stopped *st, size_t index, struct user_regs_struct *regs, struct user_regs_struct *out,
                    char *err)
{
    return run_with_rescue(st, index, regs, out, err);
}

size_t bpfg_inj_undispatched(const struct bpfg_stopped *st)
{
    for (size_t i = 0; i < st->nthreads; i++) {
        struct sud_config c;
        if (ptrace(PTRACE_GET_SUD_CONFIG, st->threads[i].tid, (void *)sizeof(c), &c) != 0 || c.mode == 0)
            return i;
    }
    return 0;
}

bool bpfg_rescue_in_text(const struct bpfg_stopped *st, uint64_t lo, uint64_t hi)
{
    return !st->rescue && st->syscall_site && st->syscall_site + sizeof(rescue_code) > lo && st->syscall_site < hi;
}
