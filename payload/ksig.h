/* The kernel's struct sigaction, as rt_sigaction takes it with
 * sigsetsize 8: the payload installs its signal handlers with the raw
 * syscall (no libc), and keeps the target's own actions in this form. */
#ifndef BPFG_PAYLOAD_KSIG_H
#define BPFG_PAYLOAD_KSIG_H

#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>

#include "rt/rt.h"

#define SA_RESTORER_ 0x04000000

struct ksigaction {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

/* Calls the target's own handler a (neither SIG_DFL nor SIG_IGN) as the
 * kernel would have: with siginfo and context if it asked for them. */
static inline void ksig_call(const struct ksigaction *a, int sig, siginfo_t *si, void *uc)
{
    if (a->flags & SA_SIGINFO)
        ((void (*)(int, siginfo_t *, void *))(uintptr_t)a->handler)(sig, si, uc);
    else
        ((void (*)(int))(uintptr_t)a->handler)(sig);
}

/* Handlers installed before ours may block sig while they run (a
 * synchronous signal reached in one would then kill the process): sig
 * leaves every handler's mask. */
static inline void ksig_unblock_in_handlers(int sig)
{
    const uint64_t bit = 1ull << (sig - 1);
    for (int n = 1; n <= 64; n++) {
        struct ksigaction a;
        if (n == sig || n == SIGKILL || n == SIGSTOP || rt_is_err(rt_sys4(SYS_rt_sigaction, n, 0, (long)&a, 8)))
            continue;
        if (a.handler > 1 && (a.mask & bit)) {
            a.mask &= ~bit;
            rt_sys4(SYS_rt_sigaction, n, (long)&a, 0, 8);
        }
    }
}

#endif
