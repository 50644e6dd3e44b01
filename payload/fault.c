/* SIGSEGV/SIGBUS handler of tool mode (fault.h). */
#define _GNU_SOURCE
#include "fault.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/ucontext.h>

#include "ksig.h"
#include "rt/rt.h"

extern char bpfg_fault_insn[], bpfg_fault_fixup[];
extern char bpfg_sys_restorer[];
long bpfg_fault_copy_raw(void *dst, const void *src, size_t n);

static const int fault_sigs[2] = {SIGSEGV, SIGBUS};
static struct ksigaction app_actions[2]; /* the tool's, chained to */
static volatile uint8_t installed;

static int sig_index(long sig)
{
    return sig == SIGSEGV ? 0 : sig == SIGBUS ? 1 : -1;
}

/* As if we were not there: the tool's action, or the default one (a fault
 * then happens again on return and kills with a core; a signal somebody
 * sent is sent again). */
static void chain(int sig, siginfo_t *si, void *uc)
{
    int i = sig_index(sig);
    struct ksigaction a = app_actions[i];
    bool sent = si->si_code <= 0;
    if (a.handler == (uint64_t)(uintptr_t)SIG_IGN && sent)
        return;
    if (a.handler <= (uint64_t)(uintptr_t)SIG_IGN) { /* a fault cannot be ignored */
        struct ksigaction dfl = {0};
        rt_sys4(SYS_rt_sigaction, sig, (long)&dfl, 0, 8);
        if (sent)
            rt_sys3(SYS_tgkill, rt_sys0(SYS_getpid), rt_sys0(SYS_gettid), sig);
        return;
    }
    if (a.flags & SA_RESETHAND)
        app_actions[i] = (struct ksigaction){0};
    ksig_call(&a, sig, si, uc);
}

static void fault_handler(int sig, siginfo_t *si, void *ucv)
{
    greg_t *g = ((ucontext_t *)ucv)->uc_mcontext.gregs;
    if (si->si_code > 0 && g[REG_RIP] == (greg_t)(uintptr_t)bpfg_fault_insn) {
        g[REG_RIP] = (greg_t)(uintptr_t)bpfg_fault_fixup;
        return;
    }
    chain(sig, si, ucv);
}

int fault_install(void)
{
    if (installed)
        return 0;
    struct ksigaction act = {
        .handler = (uint64_t)(uintptr_t)fault_handler,
        .flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART | SA_RESTORER_,
        .restorer = (uint64_t)(uintptr_t)bpfg_sys_restorer,
    };
    for (int i = 0; i < 2; i++) {
        long r = rt_sys4(SYS_rt_sigaction, fault_sigs[i], (long)&act, (long)&app_actions[i], 8);
        if (rt_is_err(r)) {
            if (i)
                rt_sys4(SYS_rt_sigaction, fault_sigs[0], (long)&app_actions[0], 0, 8);
            return (int)r;
        }
    }
    __atomic_store_n(&installed, 1, __ATOMIC_RELEASE);
    return 0;
}

void fault_uninstall(void)
{
    if (!__atomic_exchange_n(&installed, 0, __ATOMIC_ACQ_REL))
        return;
    for (int i = 0; i < 2; i++)
        rt_sys4(SYS_rt_sigaction, fault_sigs[i], (long)&app_actions[i], 0, 8);
}

long fault_copy(void *dst, const void *src, size_t n)
{
    if (!__atomic_load_n(&installed, __ATOMIC_ACQUIRE))
        return -ENOSYS;
    return bpfg_fault_copy_raw(dst, src, n);
}

int fault_sigaction(const uint64_t a[6], long *ret)
{
    int i = sig_index((long)a[0]);
    if (i < 0 || a[3] != 8 || !__atomic_load_n(&installed, __ATOMIC_ACQUIRE))
        return false;
    struct ksigaction act, old = app_actions[i];
    if (a[1] && rt_safe_read(&act, (const void *)a[1], sizeof(act)))
        *ret = -EFAULT;
    else if (a[2] && rt_safe_write((void *)a[2], &old, sizeof(old)))
        *ret = -EFAULT;
    else {
        if (a[1])
            app_actions[i] = act;
        *ret = 0;
    }
    return true;
}
