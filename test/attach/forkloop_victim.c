/* Victim for probes in forked children (test_attach.py): calls
 * forkloop_work() every millisecond; on SIGUSR1 it forks once, and parent
 * and child both go on calling it until killed. */
#include <signal.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t fork_now;
volatile long forkloop_sink;

__attribute__((noinline)) long forkloop_work(long x)
{
    forkloop_sink = x;
    for (int i = 0; i < 8; i++)
        forkloop_sink += i;
    return forkloop_sink;
}

static void on_usr1(int sig)
{
    (void)sig;
    fork_now = 1;
}

int main(void)
{
    signal(SIGUSR1, on_usr1);
    struct timespec ms = {0, 1000000};
    for (long i = 0;; i++) {
        forkloop_work(i);
        if (fork_now) {
            fork_now = 0;
            if (fork() < 0)
                return 1;
        }
        nanosleep(&ms, NULL);
    }
}
