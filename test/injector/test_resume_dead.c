/* A process SIGKILLed while the injector has its threads stopped: its
 * threads die as ptrace zombies, which only their tracer can reap; the
 * resume must reap them, or the process's parent waits for it forever
 * (a `bpfgraft run` tool's CLI did). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "injector.h"
#include "tasks_util.h"

#define THREADS 3

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static pid_t start_threads(void)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        for (int i = 0; i < THREADS; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, sleeper, NULL) != 0)
                _exit(3);
        }
        sleeper(NULL);
    }
    for (int i = 0; i < 20000 && tasks_of(pid) != THREADS + 1; i++)
        usleep(1000);
    cr_assert_eq(tasks_of(pid), THREADS + 1, "the child's threads started");
    return pid;
}

/* Whether pid is gone for good (reaped by us, its parent, or nowhere). */
static bool gone_within(pid_t pid, int ms)
{
    for (int i = 0; i < ms; i++) {
        int status;
        bpfg_reap_abandoned();
        if (waitpid(pid, &status, WNOHANG) == pid || (kill(pid, 0) != 0 && errno == ESRCH))
            return kill(pid, 0) != 0;
        usleep(1000);
    }
    return false;
}

Test(resume_dead, killed_while_stopped_is_reaped)
{
    pid_t pid = start_threads();
    struct bpfg_stopped st;
    char err[BPFG_ERRLEN];
    cr_assert_eq(bpfg_stop_process(pid, &st, err), 0, "%s", err);
    cr_assert_eq(st.nthreads, THREADS + 1);
    cr_assert_eq(kill(pid, SIGKILL), 0);
    usleep(20000); /* the stopped threads wake to die */
    bpfg_resume_process(&st, NULL);
    cr_assert(gone_within(pid, 20000), "the killed process was reaped: no thread left a zombie of ours");
}
