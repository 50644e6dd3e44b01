/* The ptrace injector: stops every thread of a running process, runs
 * syscalls in it, maps the payload into it and starts the payload thread,
 * patches code while no thread can be inside the patched bytes, and lets
 * the process go exactly as it was.
 *
 * All functions return 0 or a negative errno and, on failure, write a
 * message naming the problem into the caller's err buffer.
 */
#ifndef BPFGRAFT_INJECTOR_H
#define BPFGRAFT_INJECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "payload_abi.h"

#define BPFG_ERRLEN 256

/* One stopped thread and everything needed to put it back exactly. */
struct bpfg_thread {
    pid_t tid;
    struct user_regs_struct regs; /* as found */
    uint64_t sigmask;             /* as found */
    bool adopted;                 /* already traced and stopped by us: left so on resume */
    bool stopping;                /* seized and interrupted, stop not yet waited for */
};

/* Every thread of a process, ptrace-stopped. */
struct bpfg_stopped {
    pid_t pid;
    struct bpfg_thread *threads;
    size_t nthreads;
    int mem_fd;            /* /proc/PID/mem, read-write */
    uint64_t stop_ns;      /* when the first thread was stopped */
    uint64_t rescue;       /* the rescue code in the vDSO's tail (remote.c), 0 if none */
    uint64_t syscall_site; /* else: text the rescue code is written over for each call */
    bool rescue_tried;     /* the vDSO was tried for it in this stop */
    uint64_t exempt_lo;    /* a Syscall User Dispatch exempt region seen (remote.c) */
    uint64_t exempt_code;  /* the rescue code's copy in it, 0 if none */
};

/* Seizes and stops every thread, re-scanning /proc/PID/task until no new
 * thread appears. Errors: -ESRCH no such process, -EBUSY already traced
 * (message names the tracer), -EPERM permission denied, -ENOEXEC not an
 * x86-64 process, -ECHILD the process exited meanwhile. */
int bpfg_stop_process(pid_t pid, struct bpfg_stopped *st, char *err);

/* Starting a program under bpfgraft (`bpfgraft start`): pid is a child
 * that stopped itself with SIGSTOP just before execve. Seizes it, lets it
 * exec and runs it to its entry point (AT_ENTRY: the dynamic loader has
 * mapped its libraries, nothing of libc has run), where it stays stopped
 * and traced by us: bpfg_stop_process adopts such a thread, and
 * bpfg_release_started lets the program go on to main. */
int bpfg_start_to_entry(pid_t pid, char *err);
int bpfg_release_started(pid_t pid);
/* The same in two steps, for a process caught inside execve (a fanotify
 * exec permission event): bpfg_exec_seize traces it (the exec not yet
 * allowed); once allowed, bpfg_exec_to_entry waits for the exec and runs
 * it to its entry point as above (on failure it is detached). */
int bpfg_exec_seize(pid_t pid, char *err);
int bpfg_exec_to_entry(pid_t pid, char *err);
/* bpfg_exec_seize of a process whose exec holds its credentials lock (the
 * permission event is its interpreter's open) gives up after this long:
 * -EDEADLK (it uses SIGALRM meanwhile). */
#define BPFG_SEIZE_WAIT_MS 200
/* While bpfg_exec_to_entry (and bpfg_start_to_entry) wait for the exec,
 * hook(arg) is called every few ms (NULL: a blocking wait): the exec may
 * itself wait for the caller, which holds a fanotify exec permission mark
 * (the file opened by that exec, its interpreter, a script's). With a
 * hook, a process that has not completed an exec within BPFG_EXEC_WAIT_MS
 * (the exec failed after the open and it runs on) is let go, -ETIMEDOUT. */
#define BPFG_EXEC_WAIT_MS 5000
void bpfg_set_exec_wait_hook(void (*hook)(void *arg), void *arg);

/* A process another tracer holds in the stop at the end of its execve
 * (bpftrace -c CMD stops its child there while it attaches, then
 * detaches): none of its program has run. bpfg_park_exec checks that and
 * writes at its first instruction (the dynamic loader's entry, or a static
 * program's), through /proc/PID/mem, a loop of pause(): once the tracer
 * lets go it sleeps there, running nothing. -EAGAIN: not in that stop
 * (nothing written). bpfg_unpark_to_entry, once no one else traces it,
 * traces it, puts the bytes and registers back as the exec left them and
 * runs it to its entry point as bpfg_exec_to_entry does (on failure it is
 * detached, its bytes restored). bpfg_park_undo puts the bytes back while
 * the tracer still holds it in that stop (-EBUSY if it left it). */
#define BPFG_PARK_LEN 9
struct bpfg_park {
    uint64_t pc;
    uint8_t saved[BPFG_PARK_LEN];
};
int bpfg_park_exec(pid_t pid, struct bpfg_park *pk, char *err);
int bpfg_unpark_to_entry(pid_t pid, const struct bpfg_park *pk, char *err);
int bpfg_park_undo(pid_t pid, const struct bpfg_park *pk);

/* Restores every thread's registers and signal mask as found, re-delivers
 * signals that arrived during the stop and detaches. Returns how long the
 * threads were stopped in *stopped_ns (may be NULL). */
int bpfg_resume_process(struct bpfg_stopped *st, uint64_t *stopped_ns);

/* Every stop this process made (bpfg_stop_process to
 * bpfg_resume_process), whatever the caller: how many, and the longest
 * and total time threads stayed stopped. */
struct bpfg_stop_tally {
    uint64_t stops, longest_ns, total_ns;
};
void bpfg_stop_tally(struct bpfg_stop_tally *out);

/* bpfg_stop_process gives up on a thread that sleeps uninterruptibly (an
 * -EBUSY naming it) but has asked it to stop; call this now and then (the
 * server: every event tick) to let such threads go once they stopped. */
void bpfg_reap_abandoned(void);

/* Memory of the stopped process (through /proc/PID/mem: writes ignore page
 * protections, so they also patch code). */
int bpfg_mem_read(const struct bpfg_stopped *st, uint64_t addr, void *buf, size_t len);
int bpfg_mem_write(const struct bpfg_stopped *st, uint64_t addr, const void *buf, size_t len);

/* Runs one syscall on the first stopped thread, with all signals blocked,
 * and restores that thread afterwards. *ret gets the raw return value.
 * The thread runs it at the rescue code (remote.c): if we die at any
 * moment, it restores itself and goes on as if never stopped. */
int bpfg_remote_syscall(struct bpfg_stopped *st, long nr, const uint64_t args[6], int64_t *ret, char *err);
/* The same on stopped thread st->threads[index] (per-thread state such as
 * prctl(PR_SET_SYSCALL_USER_DISPATCH)). The thread's saved signal mask
 * (threads[index].sigmask) is what it gets back afterwards. */
int bpfg_remote_syscall_on(struct bpfg_stopped *st, size_t index, long nr, const uint64_t args[6], int64_t *ret,
                           char *err);

/* Runs the first stopped thread from regs (signals blocked) until the exit
 * of the first syscall it makes, then restores it exactly; out gets the
 * registers there. The code at regs->rip must make that syscall first and
 * then, in this thread, jump to %r12 (the rescue path, set here: it puts
 * the thread back should we die). */
int bpfg_remote_run(struct bpfg_stopped *st, struct user_regs_struct *regs, struct user_regs_struct *out, char *err);

/* True if some thread's instruction pointer lies in [start, end). */
bool bpfg_any_thread_in(const struct bpfg_stopped *st, uint64_t start, uint64_t end, pid_t *tid);

/* True if some thread has sig queued, not yet delivered (its own or the
 * process's pending set); tid gets it. A signal a thread was stopped in
 * the delivery of is delivered before it counts as stopped: its handler
 * frame is set up, the thread at the handler's entry. */
bool bpfg_any_signal_queued(const struct bpfg_stopped *st, int sig, pid_t *tid);

/* An address range [lo, hi). */
struct bpfg_range {
    uint64_t lo, hi;
};

/* True if some thread would return into one of the ranges: a return
 * address found by unwinding its stack (libunwind-ptrace, up to 64 frames,
 * through signal frames) lies in one. Patching displaced bytes that a
 * pending call returns into would resume in the middle of the new jmp. */
bool bpfg_any_return_into(const struct bpfg_stopped *st, const struct bpfg_range *ranges, size_t nranges, pid_t *tid);

/* ---- the payload ---- */

struct bpfg_injected {
    uint64_t base, size; /* payload image */
    uint64_t stack_base, stack_size;
    uint64_t hstacks_base, hstacks_size; /* handler stacks reservation (payload_abi.h) */
    uint64_t params;                     /* address of struct bpfg_payload_params */
    uint64_t uprobe_entry;
    uint64_t uretprobe_return;
};

struct bpfg_inject_opts {
    const char *payload_path; /* the payload .so */
    const char *server_socket;
    uint64_t token;
    uint32_t server_uid;
    uint32_t orphan_grace_ms; /* params.orphan_grace_ms (0: never inert) */
};

/* Maps the payload into the stopped process, fills its parameters and
 * starts the payload thread (raw clone: no libc code on a hijacked
 * thread). The process stays stopped; the payload thread runs once the
 * caller resumes the process. */
/* Runs every stopped thread's seccomp filters on the syscalls the
 * injector and the payload make: -ENOTSUP with err naming the syscall and
 * the filter's action if one would kill or trap the process, or fail a
 * syscall the payload cannot do without. warn (may be NULL) receives a
 * note on a filter that only fails optional syscalls. */
int bpfg_seccomp_check(const struct bpfg_stopped *st, char *warn, size_t warnlen, char *err);

int bpfg_inject_payload(struct bpfg_stopped *st, const struct bpfg_inject_opts *opts, struct bpfg_injected *out,
                        char *err);

/* Reads the payload's state word (enum bpfg_payload_state) and error text
 * from a running process without stopping it. */
int bpfg_payload_status(pid_t pid, const struct bpfg_injected *inj, uint32_t *state, char *msg, size_t msglen);

/* Unmaps the payload image and stack from the stopped process, once its
 * thread has exited (-EBUSY while some thread executes inside it). */
int bpfg_unload_payload(struct bpfg_stopped *st, const struct bpfg_injected *inj, char *err);

/* What bpfg_remove_failed_payloads found in a process. */
struct bpfg_payload_scan {
    unsigned removed;      /* payloads unmapped: never served, thread gone */
    unsigned live;         /* payloads of this ABI whose thread runs, or failed
                       * ones a thread is still in */
    char live_socket[108]; /* the server socket of the first live one */
};

/* Unmaps every payload (of the image at payload_path's layout) the
 * stopped process maps that never served a server and whose thread is
 * gone (its first connection failed, or its thread never started), and
 * counts the live ones: a server adopts those when they reconnect, so an
 * attach must map no second payload beside them. 0 or -errno. */
int bpfg_remove_failed_payloads(struct bpfg_stopped *st, const char *payload_path, struct bpfg_payload_scan *scan,
                                char *err);

/* Allocates len bytes of executable memory within +-2 GiB of near. */
int bpfg_remote_alloc_near(struct bpfg_stopped *st, uint64_t near, size_t len, uint64_t *addr, char *err);
int bpfg_remote_free(struct bpfg_stopped *st, uint64_t addr, size_t len, char *err);

#endif
