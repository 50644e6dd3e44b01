#define _GNU_SOURCE
#include "bench_victim.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

pid_t bench_fork_victim(int *cmd, int *answer)
{
    int to[2], from[2];
    if (pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC))
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(to[1]);
        close(from[0]);
        *cmd = to[0];
        *answer = from[1];
        return 0;
    }
    close(to[0]);
    close(from[1]);
    *cmd = to[1];
    *answer = from[0];
    return pid;
}

void bench_end_victim(pid_t pid, int wait_ms)
{
    for (int i = 0; i < wait_ms / 10 && waitpid(pid, NULL, WNOHANG) == 0; i++)
        usleep(10000);
    if (waitpid(pid, NULL, WNOHANG) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
}

int bench_best_run(const struct bench_timed_calls *t, double *per_call)
{
    double best = 1e300;
    for (int r = 0; r < (t->runs > 0 ? t->runs : 3); r++) {
        double per;
        int err = t->run(t->victim, t->n, &per);
        if (err)
            return err;
        if (per < best)
            best = per;
    }
    *per_call = best;
    return 0;
}

int bench_kernel_cost(const char *obj_path, const char *prog_name, bench_attach_fn attach, void *attach_arg,
                      const char *suite, const char *where, const struct bench_timed_calls *t, double *per_call)
{
    struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
    if (!obj)
        return -errno;
    int err = bpf_object__load(obj);
    struct bpf_program *prog = err ? NULL : bpf_object__find_program_by_name(obj, prog_name);
    struct bpf_link *link = prog ? attach(prog, attach_arg) : NULL;
    if (!prog || !link) {
        err = err ? err : -errno;
        fprintf(stderr, "bench %s: kernel %s on %s: %s\n", suite, prog_name, where, strerror(-err));
    } else {
        err = bench_best_run(t, per_call);
    }
    bpf_link__destroy(link);
    bpf_object__close(obj);
    return err;
}
