/* What the suites that time a victim process (syscall, uprobe) share:
 * forking it with a pipe each way and ending it, the best of several timed runs,
 * and the kernel baseline (a libbpf program attached while the victim runs). */
#ifndef BPFGRAFT_BENCH_VICTIM_H
#define BPFGRAFT_BENCH_VICTIM_H

#include <sys/types.h>

struct bpf_link;
struct bpf_program;

/* Forks a child that is killed when this process dies, joined by a pipe
 * each way (close-on-exec). Returns the child's pid in the parent, 0 in
 * the child, or -errno. *cmd and *answer are the caller's ends: in the
 * parent, where commands are written and answers read; in the child,
 * where commands are read and answers written. */
pid_t bench_fork_victim(int *cmd, int *answer);

/* Waits up to wait_ms for the victim pid to exit, then kills it; reaps it. */
void bench_end_victim(pid_t pid, int wait_ms);

/* One run of n calls in a victim: *per_call the ns a call took, or a
 * negative errno. */
typedef int (*bench_run_calls_fn)(void *victim, long n, double *per_call);

/* What a suite times: runs runs (0: 3) of n calls each in victim, a run at
 * a time with run. Many short runs find some that no other task
 * interrupted on a loaded machine, where a few long ones find none. */
struct bench_timed_calls {
    bench_run_calls_fn run;
    void *victim;
    long n;
    int runs;
};

/* The best (least) ns per call of t's runs: 0 or the first run's error. */
int bench_best_run(const struct bench_timed_calls *t, double *per_call);

/* Attaches a kernel program: attach(prog, arg), NULL and errno on failure. */
typedef struct bpf_link *(*bench_attach_fn)(struct bpf_program *prog, void *arg);

/* Loads obj_path into the kernel, attaches its program prog_name with
 * attach(prog, attach_arg) and times t while it is attached (best run).
 * A failure to load or attach is printed as
 * "bench SUITE: kernel PROG on WHERE: error". */
int bench_kernel_cost(const char *obj_path, const char *prog_name, bench_attach_fn attach, void *attach_arg,
                      const char *suite, const char *where, const struct bench_timed_calls *t, double *per_call);

#endif
