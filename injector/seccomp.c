/* Seccomp filters of a stopped target, evaluated before anything runs in it.
 *
 * A sandboxed process (systemd SystemCallFilter=, a browser's renderer, a
 * container profile) may kill itself on a syscall the payload makes:
 * injecting would then kill the very process we were asked to observe.
 * Each thread's filters (PTRACE_SECCOMP_GET_FILTER, classic BPF) are run
 * here on the syscalls the injector and the payload make, with the
 * arguments they use. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "injector.h"
#include "internal.h"
#include "procfs.h"

#ifndef PTRACE_SECCOMP_GET_FILTER
#define PTRACE_SECCOMP_GET_FILTER 0x420c
#endif
#define MAX_FILTERS 64

struct wanted {
    const char *name;
    int nr;
    uint64_t args[6];
    bool essential; /* nothing works without it; else some helpers fail */
};

static const struct wanted wanted[] = {
    {"mmap", SYS_mmap, {0, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, (uint64_t)-1, 0}, true},
    {"mprotect", SYS_mprotect, {0, 4096, PROT_READ | PROT_EXEC, 0, 0, 0}, true},
    {"munmap", SYS_munmap, {0, 4096, 0, 0, 0, 0}, true},
    {"memfd_create", SYS_memfd_create, {0, MFD_CLOEXEC, 0, 0, 0, 0}, true},
    {"close", SYS_close, {3, 0, 0, 0, 0, 0}, true},
    {"clone",
     SYS_clone,
     {CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM, 0, 0, 0, 0, 0},
     true},
    {"socket", SYS_socket, {AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, 0, 0, 0}, true},
    {"connect", SYS_connect, {3, 0, 110, 0, 0, 0}, true},
    {"sendto", SYS_sendto, {3, 0, 64, MSG_NOSIGNAL, 0, 0}, true},
    {"recvfrom", SYS_recvfrom, {3, 0, 64, 0, 0, 0}, true},
    {"recvmsg", SYS_recvmsg, {3, 0, MSG_CMSG_CLOEXEC, 0, 0, 0}, true},
    {"poll", SYS_poll, {0, 1, 100, 0, 0, 0}, true},
    {"futex", SYS_futex, {0, FUTEX_WAIT_PRIVATE, 0, 0, 0, 0}, true},
    {"getpid", SYS_getpid, {0}, true},
    {"gettid", SYS_gettid, {0}, true},
    {"exit", SYS_exit, {0}, true},
    {"process_vm_readv", SYS_process_vm_readv, {0, 0, 1, 0, 1, 0}, true},
    {"process_vm_writev", SYS_process_vm_writev, {0, 0, 1, 0, 1, 0}, false},
    {"membarrier", SYS_membarrier, {MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0, 0, 0, 0}, false},
    {"getuid", SYS_getuid, {0}, false},
    {"getgid", SYS_getgid, {0}, false},
    {"kill", SYS_kill, {0, 0, 0, 0, 0, 0}, false},
    {"tgkill", SYS_tgkill, {0, 0, 0, 0, 0, 0}, false},
    {"rt_sigprocmask", SYS_rt_sigprocmask, {SIG_BLOCK, 0, 0, 8, 0, 0}, false},
    {"arch_prctl", SYS_arch_prctl, {0x1003, 0, 0, 0, 0, 0}, false},
    {"prctl", SYS_prctl, {59 /* PR_SET_SYSCALL_USER_DISPATCH */, 1, 0, 0, 0, 0}, false},
    {"rt_sigaction", SYS_rt_sigaction, {SIGSYS, 0, 0, 8, 0, 0}, false},
    /* map fds: regions or kernel maps (fstat), kernel hashes (bpf, BPF_MAP_LOOKUP_ELEM) */
    {"fstat", SYS_fstat, {3, 0, 0, 0, 0, 0}, false},
    {"bpf", SYS_bpf, {1, 0, 144, 0, 0, 0}, false},
};

/* Runs one classic BPF seccomp program on d. The kernel checked it when it
 * was installed (forward jumps only, in-bounds); we check again anyway. */
static uint32_t run_filter(const struct sock_filter *f, size_t n, const struct seccomp_data *d)
{
    uint32_t a = 0, x = 0, mem[BPF_MEMWORDS] = {0};
    for (size_t pc = 0; pc < n; pc++) {
        const struct sock_filter *in = &f[pc];
        uint32_t k = in->k, src = BPF_SRC(in->code) == BPF_X ? x : k;
        switch (BPF_CLASS(in->code)) {
        case BPF_LD:
            if (BPF_MODE(in->code) == BPF_ABS && BPF_SIZE(in->code) == BPF_W && k % 4 == 0 && k + 4 <= sizeof(*d))
                memcpy(&a, (const uint8_t *)d + k, 4);
            else if (BPF_MODE(in->code) == BPF_IMM)
                a = k;
            else if (BPF_MODE(in->code) == BPF_MEM && k < BPF_MEMWORDS)
                a = mem[k];
            else if (BPF_MODE(in->code) == BPF_LEN)
                a = sizeof(*d);
            else
                return SECCOMP_RET_KILL_PROCESS;
            break;
        case BPF_LDX:
            if (BPF_MODE(in->code) == BPF_IMM)
                x = k;
            else if (BPF_MODE(in->code) == BPF_MEM && k < BPF_MEMWORDS)
                x = mem[k];
            else if (BPF_MODE(in->code) == BPF_LEN)
                x = sizeof(*d);
            else
                return SECCOMP_RET_KILL_PROCESS;
            break;
        case BPF_ST:
        case BPF_STX:
            if (k >= BPF_MEMWORDS)
                return SECCOMP_RET_KILL_PROCESS;
            mem[k] = BPF_CLASS(in->code) == BPF_ST ? a : x;
            break;
        case BPF_ALU:
            switch (BPF_OP(in->code)) {
            case BPF_ADD: a += src; break;
            case BPF_SUB: a -= src; break;
            case BPF_MUL: a *= src; break;
            case BPF_DIV: a = src ? a / src : 0; break;
            case BPF_MOD: a = src ? a % src : 0; break;
            case BPF_AND: a &= src; break;
            case BPF_OR: a |= src; break;
            case BPF_XOR: a ^= src; break;
            case BPF_LSH: a = src < 32 ? a << src : 0; break;
            case BPF_RSH: a = src < 32 ? a >> src : 0; break;
            case BPF_NEG: a = -a; break;
            default: return SECCOMP_RET_KILL_PROCESS;
            }
            break;
        case BPF_JMP: {
            bool t;
            switch (BPF_OP(in->code)) {
            case BPF_JA: pc += k; continue;
            case BPF_JEQ: t = a == src; break;
            case BPF_JGT: t = a > src; break;
            case BPF_JGE: t = a >= src; break;
            case BPF_JSET: t = (a & src) != 0; break;
            default: return SECCOMP_RET_KILL_PROCESS;
            }
            pc += t ? in->jt : in->jf;
            break;
        }
        case BPF_RET: return BPF_RVAL(in->code) == BPF_A ? a : k;
        case BPF_MISC:
            if (BPF_MISCOP(in->code) == BPF_TAX)
                x = a;
            else
                a = x;
            break;
        default: return SECCOMP_RET_KILL_PROCESS;
        }
    }
    return SECCOMP_RET_KILL_PROCESS; /* fell off the end: the kernel would not have loaded it */
}

/* Lower is more restrictive, as the kernel ranks the filters' answers. */
static int severity(uint32_t action)
{
    switch (action & SECCOMP_RET_ACTION_FULL) {
    case SECCOMP_RET_KILL_PROCESS: return 0;
    case SECCOMP_RET_KILL_THREAD: return 1;
    case SECCOMP_RET_TRAP: return 2;
    case SECCOMP_RET_ERRNO: return 3;
    case SECCOMP_RET_USER_NOTIF: return 4;
    case SECCOMP_RET_TRACE: return 5;
    case SECCOMP_RET_LOG: return 6;
    case SECCOMP_RET_ALLOW: return 7;
    default: return 0; /* unknown actions kill, as in the kernel */
    }
}

static const char *action_name(uint32_t action)
{
    static const char *names[] = {"kills the process",        "kills the thread",     "raises SIGSYS", "fails it",
                                  "hands it to a supervisor", "hands it to a tracer", "logs it",       "allows it"};
    return names[severity(action)];
}

int bpfg_seccomp_check(const struct bpfg_stopped *st, char *warn, size_t warnlen, char *err)
{
    static struct sock_filter prog[BPF_MAXINSNS];
    if (warn && warnlen)
        warn[0] = 0;
    for (size_t i = 0; i < st->nthreads; i++) {
        pid_t tid = st->threads[i].tid;
        int mode = 0;
        bpfg_procfs_status_int(st->pid, tid, "Seccomp", &mode); /* no field: no seccomp */
        if (mode == 1)
            return bpfg_inj_fail(err, -ENOTSUP,
                                 "process %d runs in strict seccomp mode (read, write and exit only): "
                                 "the payload could not run there",
                                 (int)st->pid);
        if (mode != 2)
            continue;
        uint32_t verdict[sizeof(wanted) / sizeof(wanted[0])];
        for (size_t w = 0; w < sizeof(wanted) / sizeof(wanted[0]); w++)
            verdict[w] = SECCOMP_RET_ALLOW;
        for (unsigned long idx = 0;; idx++) {
            if (idx == MAX_FILTERS)
                return bpfg_inj_fail(err, -E2BIG, "process %d has more than %d seccomp filters", (int)st->pid,
                                     MAX_FILTERS);
            long n = ptrace(PTRACE_SECCOMP_GET_FILTER, tid, (void *)idx, NULL);
            if (n < 0 && errno == ENOENT && idx > 0)
                break; /* past the last filter */
            if (n <= 0 || n > BPF_MAXINSNS || ptrace(PTRACE_SECCOMP_GET_FILTER, tid, (void *)idx, prog) != n)
                return bpfg_inj_fail(err, errno ? -errno : -EIO,
                                     "process %d has a seccomp filter bpfgraft cannot read "
                                     "(%s): not attaching, a filter may kill it",
                                     (int)st->pid, strerror(errno));
            for (size_t w = 0; w < sizeof(wanted) / sizeof(wanted[0]); w++) {
                struct seccomp_data d = {.nr = wanted[w].nr, .arch = AUDIT_ARCH_X86_64};
                memcpy(d.args, wanted[w].args, sizeof(d.args));
                uint32_t r = run_filter(prog, (size_t)n, &d);
                if (severity(r) < severity(verdict[w]))
                    verdict[w] = r;
            }
        }
        for (size_t w = 0; w < sizeof(wanted) / sizeof(wanted[0]); w++) {
            int sev = severity(verdict[w]);
            /* kill, trap, or a supervisor/tracer that may not expect us:
             * never; an error: only where some helper would fail */
            if (sev <= 2 || sev == 4 || sev == 5 || (sev == 3 && wanted[w].essential))
                return bpfg_inj_fail(err, -ENOTSUP,
                                     "process %d has a seccomp filter that %s on %s(2), which bpfgraft's "
                                     "payload needs: not attaching",
                                     (int)st->pid, action_name(verdict[w]), wanted[w].name);
            if (sev == 3 && warn && !warn[0])
                snprintf(warn, warnlen,
                         "process %d's seccomp filter fails %s(2): helpers that need it return "
                         "an error there",
                         (int)st->pid, wanted[w].name);
        }
    }
    return 0;
}
