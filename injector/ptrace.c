/* Stopping, inspecting and resuming a whole process with ptrace, and
 * running code in it on one of its threads.
 *
 * Threads are taken with PTRACE_SEIZE + PTRACE_INTERRUPT (no SIGSTOP that
 * the process could observe), without PTRACE_O_EXITKILL: if we die, the
 * kernel detaches and the process keeps running. A thread stopped inside a
 * restartable syscall gets its exact registers back, so the kernel
 * restarts the syscall as if nothing happened.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "injector.h"
#include "internal.h"
#include "procfs.h"

int bpfg_inj_fail(char *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, BPFG_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return code;
}

void bpfg_inj_test_stop(struct bpfg_test_stop *s)
{
    if (s->at < 0) {
        const char *v = getenv(s->env);
        s->at = v && *v ? strtol(v, NULL, 10) : 0;
    }
    if (s->at > 0 && ++s->done == s->at)
        kill(getpid(), SIGKILL);
}

void bpfg_inj_test_step(void)
{
    static struct bpfg_test_stop ptrace_stop = {"BPFGRAFT_TEST_PTRACE_STOP", -1, 0};
    bpfg_inj_test_stop(&ptrace_stop);
}

long bpfg_inj_ptrace(int req, pid_t tid, void *addr, void *data)
{
    long r = ptrace((enum __ptrace_request)req, tid, addr, data);
    int e = errno;
    bpfg_inj_test_step();
    errno = e;
    return r;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* TracerPid from /proc/PID/status: 0 if untraced, -errno if unreadable. */
static int tracer_of(pid_t pid)
{
    int tracer = 0;
    int r = bpfg_procfs_status_int(pid, 0, "TracerPid", &tracer);
    return r == -ENODATA ? 0 : r ? r : tracer;
}

static int check_arch(pid_t pid, char *err)
{
    char path[64];
    Elf64_Ehdr eh;
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return bpfg_inj_fail(err, -ESRCH, "no process with pid %d", (int)pid);
        if (errno == EACCES || errno == EPERM)
            return bpfg_inj_fail(err, -EPERM, "permission denied: cannot inspect process %d", (int)pid);
        return bpfg_inj_fail(err, -errno, "cannot open %s: %s", path, strerror(errno));
    }
    ssize_t n = pread(fd, &eh, sizeof(eh), 0);
    close(fd);
    if (n != (ssize_t)sizeof(eh) || memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0)
        return bpfg_inj_fail(err, -ENOEXEC, "process %d does not run an ELF executable", (int)pid);
    if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64)
        return bpfg_inj_fail(err, -ENOEXEC, "process %d is not an x86-64 process (ELF machine %u, class %u)", (int)pid,
                             eh.e_machine, eh.e_ident[EI_CLASS]);
    return 0;
}

static bool seized(const struct bpfg_stopped *st, pid_t tid)
{
    for (size_t i = 0; i < st->nthreads; i++)
        if (st->threads[i].tid == tid)
            return true;
    return false;
}

/* A thread in uninterruptible sleep (state D: I/O, or the parent of a
 * vfork child that has not exec'd) stops only when it wakes, which may be
 * much later: such a thread is waited for this long, then left to
 * bpfg_reap_abandoned, which detaches it once it has stopped. */
#define STOP_TIMEOUT_MS 1000
#define MAX_ABANDONED 64

static pid_t abandoned[MAX_ABANDONED];
static size_t nabandoned;

void bpfg_reap_abandoned(void)
{
    for (size_t i = 0; i < nabandoned;) {
        int status;
        pid_t r = waitpid(abandoned[i], &status, __WALL | WNOHANG);
        if (r == 0) {
            i++;
            continue;
        }
        if (r > 0 && WIFSTOPPED(status)) {
            /* a signal that stopped it first goes back to it */
            int sig = (status >> 16) == PTRACE_EVENT_STOP ? 0 : WSTOPSIG(status);
            ptrace(PTRACE_DETACH, abandoned[i], NULL, (void *)(long)sig);
        }
        abandoned[i] = abandoned[--nabandoned];
    }
}

/* Waits for tid to reach a stop. 1 stopped, 0 it exited, -ETIMEDOUT
 * (abandoned: see above), -errno. */
static int wait_stopped(pid_t pid, struct bpfg_thread *t)
{
    bool polling = false;
    uint64_t deadline = 0;
    for (;;) {
        int status;
        pid_t r = waitpid(t->tid, &status, __WALL | WNOHANG);
        if (r == 0) {
            if (!polling) {
                /* not stopped yet: block, unless it sleeps uninterruptibly */
                char state = 0;
                polling =
                    bpfg_procfs_stat(pid, t->tid, &state, NULL) == 0 && state == 'D' && nabandoned < MAX_ABANDONED;
                deadline = now_ns() + STOP_TIMEOUT_MS * 1000000ull;
                if (!polling)
                    r = waitpid(t->tid, &status, __WALL);
            }
            if (polling) {
                if (now_ns() > deadline) {
                    abandoned[nabandoned++] = t->tid;
                    return -ETIMEDOUT;
                }
                struct timespec ms = {0, 1000000};
                nanosleep(&ms, NULL);
                continue;
            }
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (WIFEXITED(status) || WIFSIGNALED(status))
            return 0;
        if (!WIFSTOPPED(status))
            continue;
        if ((status >> 16) == PTRACE_EVENT_STOP)
            return 1; /* our interrupt (or a group stop) */
        /* A signal arrived first: the thread is stopped in its delivery.
         * Held here, it would be lost should we die (the kernel resumes a
         * thread in a signal-delivery-stop without its signal), so it is
         * delivered now; the interrupt still pending stops the thread
         * again at its handler's first instruction. */
        if (bpfg_inj_ptrace(PTRACE_CONT, t->tid, NULL, (void *)(long)WSTOPSIG(status)) != 0 && errno != ESRCH)
            return -errno;
    }
}

/* A thread we already trace and keep stopped (bpfg_start_to_entry). */
static bool ours_already(pid_t pid, pid_t tid)
{
    int tracer = 0;
    return bpfg_procfs_status_int(pid, tid, "TracerPid", &tracer) == 0 && tracer == getpid();
}

/* BPFGRAFT_TEST_SEIZE_WAIT_US=N (tests only): N us between seizing a
 * thread and interrupting it, where a signal reaching it stops it in its
 * delivery: a tracer's death then must not lose it (restart_signals). */
static void test_seize_wait(void)
{
    static long us = -1;
    if (us < 0) {
        const char *v = getenv("BPFGRAFT_TEST_SEIZE_WAIT_US");
        us = v && *v ? strtol(v, NULL, 10) : 0;
    }
    if (us > 0) {
        struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Seizes one thread and asks it to stop; the stop itself is waited for
 * by wait_seized, so that all threads of a pass stop in parallel (a busy
 * thread stops only when it next runs: waiting for each in turn would
 * cost a scheduler slice per thread). 1 seized, 0 gone, -errno. */
static int seize_thread(struct bpfg_stopped *st, pid_t tid, char *err)
{
    if (bpfg_inj_ptrace(PTRACE_SEIZE, tid, NULL, (void *)(long)PTRACE_O_TRACESYSGOOD) != 0) {
        if (errno == ESRCH)
            return 0;
        if (errno == EPERM && ours_already(st->pid, tid)) {
            struct bpfg_thread *grown = realloc(st->threads, (st->nthreads + 1) * sizeof(*grown));
            if (!grown)
                return bpfg_inj_fail(err, -ENOMEM, "out of memory");
            st->threads = grown;
            memset(&st->threads[st->nthreads], 0, sizeof(*grown));
            st->threads[st->nthreads].tid = tid;
            st->threads[st->nthreads].adopted = true;
            st->nthreads++;
            return 1;
        }
        if (errno == EPERM) {
            int tracer = tracer_of(st->pid);
            if (tracer > 0 && tracer != getpid()) {
                char comm[32];
                bpfg_procfs_comm(tracer, comm, sizeof(comm));
                return bpfg_inj_fail(err, -EBUSY, "process %d is already traced by pid %d (%s); detach it first",
                                     (int)st->pid, tracer, comm[0] ? comm : "?");
            }
            return bpfg_inj_fail(err, -EPERM,
                                 "permission denied: cannot ptrace process %d (need the same uid or "
                                 "CAP_SYS_PTRACE; check kernel.yama.ptrace_scope)",
                                 (int)st->pid);
        }
        return bpfg_inj_fail(err, -errno, "PTRACE_SEIZE of thread %d: %s", (int)tid, strerror(errno));
    }
    struct bpfg_thread *grown = realloc(st->threads, (st->nthreads + 1) * sizeof(*grown));
    if (!grown) {
        ptrace(PTRACE_DETACH, tid, NULL, NULL);
        return bpfg_inj_fail(err, -ENOMEM, "out of memory");
    }
    st->threads = grown;
    test_seize_wait();
    if (bpfg_inj_ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) != 0) {
        int e = errno;
        ptrace(PTRACE_DETACH, tid, NULL, NULL);
        return e == ESRCH ? 0 : bpfg_inj_fail(err, -e, "PTRACE_INTERRUPT of thread %d: %s", (int)tid, strerror(e));
    }
    struct bpfg_thread *t = &st->threads[st->nthreads++];
    memset(t, 0, sizeof(*t));
    t->tid = tid;
    t->stopping = true;
    return 1;
}

/* Waits for every thread seize_thread interrupted; threads that exited
 * meanwhile leave the set. A thread whose wait fails is dropped from the
 * set too (it can no longer be resumed by us), and the first error is
 * returned after all others were waited for. */
static int wait_seized(struct bpfg_stopped *st, char *err)
{
    int ret = 0;
    size_t kept = 0;
    for (size_t i = 0; i < st->nthreads; i++) {
        struct bpfg_thread t = st->threads[i];
        if (t.stopping) {
            int r = wait_stopped(st->pid, &t);
            t.stopping = false;
            if (r == -ETIMEDOUT && !ret)
                ret = bpfg_inj_fail(err, -EBUSY,
                                    "thread %d of process %d is in uninterruptible sleep (state D: "
                                    "waiting for I/O, or the parent of a vfork child that has not called exec) "
                                    "and does not stop; try again later",
                                    (int)t.tid, (int)st->pid);
            else if (r < 0 && !ret)
                ret = bpfg_inj_fail(err, r, "waiting for thread %d: %s", (int)t.tid, strerror(-r));
            if (r <= 0)
                continue;
            if (!st->stop_ns)
                st->stop_ns = now_ns();
        }
        st->threads[kept++] = t;
    }
    st->nthreads = kept;
    return ret;
}

int bpfg_stop_process(pid_t pid, struct bpfg_stopped *st, char *err)
{
    memset(st, 0, sizeof(*st));
    st->pid = pid;
    st->mem_fd = -1;
    if (pid <= 0)
        return bpfg_inj_fail(err, -ESRCH, "invalid pid %d", (int)pid);
    if (kill(pid, 0) != 0 && errno == ESRCH)
        return bpfg_inj_fail(err, -ESRCH, "no process with pid %d", (int)pid);
    int tracer = tracer_of(pid);
    if (tracer == -ENOENT)
        return bpfg_inj_fail(err, -ESRCH, "no process with pid %d", (int)pid);
    if (tracer > 0 && tracer != getpid()) {
        char comm[32];
        bpfg_procfs_comm(tracer, comm, sizeof(comm));
        return bpfg_inj_fail(err, -EBUSY, "process %d is already traced by pid %d (%s); detach it first", (int)pid,
                             tracer, comm[0] ? comm : "?");
    }
    int r = check_arch(pid, err);
    if (r)
        return r;

    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    bool found_new = true;
    for (int pass = 0; found_new; pass++) {
        found_new = false;
        DIR *d = opendir(path);
        if (!d) {
            r = errno == ENOENT ? bpfg_inj_fail(err, -ECHILD, "process %d exited during the attach", (int)pid)
                                : bpfg_inj_fail(err, -errno, "cannot list %s: %s", path, strerror(errno));
            goto fail;
        }
        struct dirent *de;
        while ((de = readdir(d))) {
            pid_t tid = (pid_t)atoi(de->d_name);
            if (tid <= 0 || seized(st, tid))
                continue;
            r = seize_thread(st, tid, err);
            if (r < 0)
                break;
            found_new |= r == 1;
        }
        closedir(d);
        /* wait even after an error: only a stopped thread can be detached */
        char werr[BPFG_ERRLEN];
        int w = wait_seized(st, r < 0 ? werr : err);
        if (r < 0)
            goto fail;
        if (w < 0) {
            r = w;
            goto fail;
        }
        if (pass > 1000) {
            r = bpfg_inj_fail(err, -EAGAIN, "process %d keeps creating threads faster than they can be stopped",
                              (int)pid);
            goto fail;
        }
    }
    if (!st->nthreads) {
        r = bpfg_inj_fail(err, -ECHILD, "process %d exited during the attach", (int)pid);
        goto fail;
    }
    for (size_t i = 0; i < st->nthreads; i++) {
        struct bpfg_thread *t = &st->threads[i];
        if (ptrace(PTRACE_GETREGS, t->tid, NULL, &t->regs) != 0 ||
            ptrace(PTRACE_GETSIGMASK, t->tid, (void *)sizeof(t->sigmask), &t->sigmask) != 0) {
            r = bpfg_inj_fail(err, -errno, "reading the registers of thread %d: %s", (int)t->tid, strerror(errno));
            goto fail;
        }
    }
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    st->mem_fd = open(path, O_RDWR | O_CLOEXEC);
    if (st->mem_fd < 0) {
        r = bpfg_inj_fail(err, -errno, "cannot open %s: %s", path, strerror(errno));
        goto fail;
    }
    return 0;
fail:
    bpfg_resume_process(st, NULL);
    return r;
}

static struct bpfg_stop_tally tally;

void bpfg_stop_tally(struct bpfg_stop_tally *out)
{
    *out = tally;
}

static void count_stop(uint64_t ns)
{
    tally.stops++;
    tally.total_ns += ns;
    if (ns > tally.longest_ns)
        tally.longest_ns = ns;
}

/* A thread that died while stopped (a SIGKILL wakes a ptrace-stopped
 * thread) is a zombie until its tracer waits for it, and until then its
 * process's parent cannot reap the process: reaped now, or, still dying,
 * by bpfg_reap_abandoned. */
static void reap_dead(pid_t tid)
{
    int status;
    if (waitpid(tid, &status, __WALL | WNOHANG) == 0 && nabandoned < MAX_ABANDONED)
        abandoned[nabandoned++] = tid;
}

int bpfg_resume_process(struct bpfg_stopped *st, uint64_t *stopped_ns)
{
    int ret = 0;
    for (size_t i = 0; i < st->nthreads; i++) {
        struct bpfg_thread *t = &st->threads[i];
        if (t->adopted)
            continue; /* stays stopped under bpfg_start_to_entry's trace */
        /* Registers were only changed on threads that ran remote code and
         * were restored there; no signal is held (wait_stopped). */
        if (bpfg_inj_ptrace(PTRACE_DETACH, t->tid, NULL, NULL) == 0)
            continue;
        if (errno == ESRCH)
            reap_dead(t->tid);
        else
            ret = -errno;
    }
    uint64_t ns = st->stop_ns ? now_ns() - st->stop_ns : 0;
    if (st->stop_ns)
        count_stop(ns);
    st->stop_ns = 0;
    if (stopped_ns)
        *stopped_ns = ns;
    if (st->mem_fd >= 0)
        close(st->mem_fd);
    free(st->threads);
    st->threads = NULL;
    st->nthreads = 0;
    st->mem_fd = -1;
    return ret;
}

int bpfg_mem_read(const struct bpfg_stopped *st, uint64_t addr, void *buf, size_t len)
{
    ssize_t n = pread(st->mem_fd, buf, len, (off_t)addr);
    if (n == (ssize_t)len)
        return 0;
    return n < 0 ? -errno : -EFAULT;
}

int bpfg_mem_write(const struct bpfg_stopped *st, uint64_t addr, const void *buf, size_t len)
{
    ssize_t n = pwrite(st->mem_fd, buf, len, (off_t)addr);
    bpfg_inj_test_step();
    if (n == (ssize_t)len)
        return 0;
    return n < 0 ? -errno : -EFAULT;
}

bool bpfg_any_thread_in(const struct bpfg_stopped *st, uint64_t start, uint64_t end, pid_t *tid)
{
    for (size_t i = 0; i < st->nthreads; i++) {
        uint64_t ip = st->threads[i].regs.rip;
        if (ip >= start && ip < end) {
            if (tid)
                *tid = st->threads[i].tid;
            return true;
        }
    }
    return false;
}

/* Whether sig is in the hex signal set of status field name of thread tid
 * (true when unreadable: a caller waits rather than guess). */
static bool in_pending_set(pid_t pid, pid_t tid, const char *name, int sig)
{
    char value[32];
    if (bpfg_procfs_status(pid, tid, name, value, sizeof(value)) != 0)
        return true;
    unsigned long long set = strtoull(value, NULL, 16);
    return (set >> (sig - 1)) & 1;
}

bool bpfg_any_signal_queued(const struct bpfg_stopped *st, int sig, pid_t *tid)
{
    for (size_t i = 0; i < st->nthreads; i++) {
        pid_t t = st->threads[i].tid;
        if (in_pending_set(st->pid, t, "SigPnd", sig) || in_pending_set(st->pid, t, "ShdPnd", sig)) {
            if (tid)
                *tid = t;
            return true;
        }
    }
    return false;
}

struct code_search {
    uint64_t lo, hi, found;
};

static int code_outside(const struct bpfg_procfs_map *m, void *arg)
{
    struct code_search *cs = arg;
    if (m->perms[2] != 'x' || strcmp(m->path, "[vsyscall]") == 0 || (m->end > cs->lo && m->start < cs->hi))
        return 0;
    cs->found = m->start;
    return 1;
}

int bpfg_inj_code_site(pid_t pid, uint64_t lo, uint64_t hi, uint64_t *site)
{
    struct code_search cs = {lo, hi, 0};
    int r = bpfg_procfs_maps(pid, code_outside, &cs);
    if (r < 0)
        return r;
    *site = cs.found;
    return 0;
}

/* What a waitpid status means to bpfg_inj_wait_event: the status to
 * return, 0 to wait on (an ordinary signal is delivered), or -ECHILD. */
static int event_of(pid_t tid, int status, int want_sig)
{
    if (WIFEXITED(status) || WIFSIGNALED(status))
        return -ECHILD;
    if (!WIFSTOPPED(status))
        return 0;
    int sig = WSTOPSIG(status);
    if ((status >> 16) != 0 || sig == want_sig)
        return status;
    ptrace(PTRACE_CONT, tid, NULL, (void *)(long)sig);
    return 0;
}

int bpfg_inj_wait_event(pid_t tid, int want_sig)
{
    for (;;) {
        int status, r;
        if (waitpid(tid, &status, __WALL) < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if ((r = event_of(tid, status, want_sig)) != 0)
            return r;
    }
}

static void (*exec_wait_hook)(void *arg);
static void *exec_wait_arg;

void bpfg_set_exec_wait_hook(void (*hook)(void *arg), void *arg)
{
    exec_wait_hook = hook;
    exec_wait_arg = arg;
}

/* bpfg_inj_wait_event for the stops before an exec completes: with a hook
 * the wait polls, calling it meanwhile (the exec may wait for the hook's
 * owner: a fanotify permission event), and gives up after
 * BPFG_EXEC_WAIT_MS (-ETIMEDOUT: the exec failed and the process runs on). */
static int wait_exec_event(pid_t pid)
{
    if (!exec_wait_hook)
        return bpfg_inj_wait_event(pid, -1);
    uint64_t deadline = now_ns() + BPFG_EXEC_WAIT_MS * 1000000ull;
    for (;;) {
        int status, r;
        pid_t got = waitpid(pid, &status, __WALL | WNOHANG);
        if (got < 0 && errno != EINTR)
            return -errno;
        if (got > 0 && (r = event_of(pid, status, -1)) != 0)
            return r;
        if (got == 0 && now_ns() >= deadline)
            return -ETIMEDOUT;
        if (got == 0)
            exec_wait_hook(exec_wait_arg);
    }
}

/* A seized process that is running: stopped and let go. */
static void let_go(pid_t pid)
{
    if (ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) == 0)
        for (int status; waitpid(pid, &status, __WALL) == pid && WIFSTOPPED(status);) {
            if ((status >> 16) == PTRACE_EVENT_STOP || (status >> 16) == PTRACE_EVENT_EXEC)
                break;
            ptrace(PTRACE_CONT, pid, NULL, (void *)(long)WSTOPSIG(status));
        }
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
}

uint64_t bpfg_inj_auxv(pid_t pid, uint64_t type)
{
    char path[64];
    uint64_t pair[2], value = 0;
    snprintf(path, sizeof(path), "/proc/%d/auxv", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    while (read(fd, pair, sizeof(pair)) == sizeof(pair) && pair[0] != 0)
        if (pair[0] == type)
            value = pair[1];
    close(fd);
    return value;
}

static int seize_for_exec(pid_t pid, char *err)
{
    if (ptrace(PTRACE_SEIZE, pid, NULL, (void *)(long)(PTRACE_O_TRACEEXEC | PTRACE_O_TRACESYSGOOD)) != 0)
        return bpfg_inj_fail(err, -errno, "cannot trace process %d: %s", (int)pid, strerror(errno));
    return 0;
}

int bpfg_start_to_entry(pid_t pid, char *err)
{
    int r = seize_for_exec(pid, err); /* stopped before its execve: no exec holds its lock */
    if (r)
        return r;
    /* It stopped itself before execve: wake it up; we see the exec. */
    if (kill(pid, SIGCONT) != 0) {
        int e = errno;
        ptrace(PTRACE_DETACH, pid, NULL, NULL);
        return bpfg_inj_fail(err, -e, "cannot continue process %d: %s", (int)pid, strerror(e));
    }
    return bpfg_exec_to_entry(pid, err);
}

static sigjmp_buf seize_jmp;

static void seize_timeout(int sig)
{
    (void)sig;
    siglongjmp(seize_jmp, 1);
}

/* PTRACE_SEIZE waits for the process's cred_guard_mutex, which an execve
 * holds from its interpreter's open (ld.so, a script's) to its end: a
 * process stopped in a permission event of that open, waiting for us,
 * would wait forever. So the seize gives up after BPFG_SEIZE_WAIT_MS (the
 * interrupted ptrace() has changed nothing: the kernel would restart it). */
int bpfg_exec_seize(pid_t pid, char *err)
{
    struct sigaction sa = {.sa_handler = seize_timeout}, old;
    struct itimerval wait = {.it_value = {0, BPFG_SEIZE_WAIT_MS * 1000}}, off = {{0, 0}, {0, 0}};
    volatile int r = -EDEADLK;
    char ierr[BPFG_ERRLEN] = "";
    if (sigaction(SIGALRM, &sa, &old) != 0)
        return bpfg_inj_fail(err, -errno, "SIGALRM: %s", strerror(errno));
    if (sigsetjmp(seize_jmp, 1) == 0) {
        setitimer(ITIMER_REAL, &wait, NULL);
        r = seize_for_exec(pid, ierr);
    }
    setitimer(ITIMER_REAL, &off, NULL);
    sigaction(SIGALRM, &old, NULL);
    /* the timer may also fire as a seize that took returns (a loaded
     * machine): whether it took is the process's tracer */
    if (r == -EDEADLK && tracer_of(pid) == getpid())
        r = 0;
    if (r == -EDEADLK)
        return bpfg_inj_fail(err, -EDEADLK,
                             "process %d is inside an exec that holds its credentials lock "
                             "(an interpreter's open): not traced",
                             (int)pid);
    if (r != 0)
        return bpfg_inj_fail(err, r, "%s", ierr);
    return 0;
}

int bpfg_exec_to_entry(pid_t pid, char *err)
{
    for (;;) {
        int status = wait_exec_event(pid);
        if (status == -ETIMEDOUT) {
            let_go(pid);
            return bpfg_inj_fail(err, status, "process %d did not complete an exec within %d ms: let go", (int)pid,
                                 BPFG_EXEC_WAIT_MS);
        }
        if (status < 0) {
            return bpfg_inj_fail(err, status, "process %d exited before running its program", (int)pid);
        }
        if ((status >> 16) == PTRACE_EVENT_EXEC)
            break;
        /* the group stop it put itself in, SIGCONT and the like: run on
         * (PTRACE_CONT also ends a group stop for a seized tracee) */
        int sig = WSTOPSIG(status);
        bool quiet = (status >> 16) == PTRACE_EVENT_STOP || sig == SIGSTOP || sig == SIGCONT;
        ptrace(PTRACE_CONT, pid, NULL, (void *)(long)(quiet ? 0 : sig));
    }
    return bpfg_inj_run_to_entry(pid, err);
}

int bpfg_inj_run_to_entry(pid_t pid, char *err)
{
    int r = 0;
    uint64_t entry = bpfg_inj_auxv(pid, AT_ENTRY);
    if (!entry) {
        r = bpfg_inj_fail(err, -ENOEXEC, "process %d: no AT_ENTRY in its auxiliary vector", (int)pid);
        goto fail;
    }
    errno = 0;
    long word = ptrace(PTRACE_PEEKTEXT, pid, (void *)entry, NULL);
    if (errno) {
        r = bpfg_inj_fail(err, -errno, "reading the entry point of %d: %s", (int)pid, strerror(errno));
        goto fail;
    }
    long trap = (word & ~0xffL) | 0xcc;
    if (ptrace(PTRACE_POKETEXT, pid, (void *)entry, (void *)trap) != 0 || ptrace(PTRACE_CONT, pid, NULL, NULL) != 0) {
        r = bpfg_inj_fail(err, -errno, "breakpoint at the entry of %d: %s", (int)pid, strerror(errno));
        goto fail;
    }
    for (;;) {
        int status = bpfg_inj_wait_event(pid, SIGTRAP);
        if (status < 0) {
            return bpfg_inj_fail(err, status, "process %d exited before its entry point", (int)pid);
        }
        struct user_regs_struct regs;
        if (WSTOPSIG(status) == SIGTRAP && (status >> 16) == 0 && ptrace(PTRACE_GETREGS, pid, NULL, &regs) == 0 &&
            regs.rip == entry + 1) {
            regs.rip = entry;
            if (ptrace(PTRACE_POKETEXT, pid, (void *)entry, (void *)word) != 0 ||
                ptrace(PTRACE_SETREGS, pid, NULL, &regs) != 0) {
                r = bpfg_inj_fail(err, -errno, "removing the entry breakpoint of %d: %s", (int)pid, strerror(errno));
                goto fail;
            }
            return 0;
        }
        ptrace(PTRACE_CONT, pid, NULL, NULL);
    }
fail:
    ptrace(PTRACE_DETACH, pid, NULL, NULL);
    return r;
}

int bpfg_release_started(pid_t pid)
{
    if (ptrace(PTRACE_DETACH, pid, NULL, NULL) == 0)
        return 0;
    int r = -errno;
    if (r == -ESRCH)
        reap_dead(pid); /* killed while held at its entry */
    return r;
}
