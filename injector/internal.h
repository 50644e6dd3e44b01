/* Shared by the injector's modules; not part of its API. */
#ifndef BPFG_INJECTOR_INTERNAL_H
#define BPFG_INJECTOR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct bpfg_stopped;

/* Formats the message into err (BPFG_ERRLEN bytes, may be NULL) and
 * returns code: `return bpfg_inj_fail(err, -EINVAL, "...", ...);` */
int bpfg_inj_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Tests only: the process SIGKILLs itself at the s->at-th call (read from
 * the environment variable s->env at the first; at -1 until then). */
struct bpfg_test_stop {
    const char *env;
    long at, done;
};
void bpfg_inj_test_stop(struct bpfg_test_stop *s);

/* BPFGRAFT_TEST_PTRACE_STOP=N (tests only): the process SIGKILLs itself
 * right after the Nth request that changes a traced thread (seize,
 * interrupt, registers, signal mask, resume, detach) or its memory,
 * counted over the process's life: a tracer killed at each step. */
void bpfg_inj_test_step(void);

/* ptrace(req, tid, addr, data) that changes a thread, then the test step
 * above; errno as ptrace left it. */
long bpfg_inj_ptrace(int req, pid_t tid, void *addr, void *data);

/* The start of pid's first executable mapping (not the vsyscall page)
 * outside [lo, hi), in *site; 0 there if it has none. 0 or -errno. */
int bpfg_inj_code_site(pid_t pid, uint64_t lo, uint64_t hi, uint64_t *site);

/* Places the rescue code in the vDSO's tail, once a stop: before any
 * choice of a text site, which other threads may run once a dying tracer
 * leaves the bytes changed (remote.c). */
void bpfg_inj_place_rescue(struct bpfg_stopped *st);

/* True if remote syscalls write their code over [lo, hi) of the text
 * (no room in the vDSO: remote.c). */
bool bpfg_rescue_in_text(const struct bpfg_stopped *st, uint64_t lo, uint64_t hi);

/* True if a stopped thread's Syscall User Dispatch (as the kernel reports
 * it, Linux 6.6) has its selector or exempt region in [lo, hi): unmapping
 * that range would make its next syscall fatal (SIGSEGV). *tid: which. */
bool bpfg_inj_dispatch_in(const struct bpfg_stopped *st, uint64_t lo, uint64_t hi, pid_t *tid);
/* The first thread whose Syscall User Dispatch is off (in a process with
 * syscall hooks: a payload's thread), else 0: code outside every exempt
 * region, a new payload's own, makes its syscalls there. */
size_t bpfg_inj_undispatched(const struct bpfg_stopped *st);
/* bpfg_remote_run on thread index. */
int bpfg_inj_run_on(struct bpfg_stopped *st, size_t index, struct user_regs_struct *regs, struct user_regs_struct *out,
                    char *err);

/* Waits for a stop of tid; signals on the way are re-delivered. Returns the
 * wait status of the stop that is not a plain signal (or is want_sig), or
 * -errno (-ECHILD: it exited). */
int bpfg_inj_wait_event(pid_t tid, int want_sig);

/* pid's auxiliary vector entry type (AT_ENTRY, AT_BASE), 0 if absent. */
uint64_t bpfg_inj_auxv(pid_t pid, uint64_t type);

/* pid, traced by us and stopped before its first instruction after exec,
 * is run to its entry point (AT_ENTRY: libraries mapped, none of the
 * program's code run) and stays stopped there; on failure it is detached. */
int bpfg_inj_run_to_entry(pid_t pid, char *err);

#endif
