/* Victim for stops of a thread in uninterruptible sleep (test_attach.py):
 * calls vfork_work() every millisecond; on SIGUSR1 the main thread vforks a
 * child that sleeps 4 s before _exit, so the parent waits in state D. */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t fork_now;
volatile long vfork_sink;

__attribute__((noinline)) long vfork_work(long x)
{
    vfork_sink = x;
    for (int i = 0; i < 8; i++)
        vfork_sink += i;
    return vfork_sink;
}

static void on_usr1(int sig)
{
    (void)sig;
    fork_now = 1;
}

static __attribute__((noinline)) void vfork_and_wait(void)
{
    fork_now = 0;
    pid_t c = vfork();
    if (c == 0) {
        sleep(4); /* not what vfork allows, but what makes the parent wait */
        _exit(0);
    }
    if (c > 0)
        waitpid(c, NULL, 0);
}

int main(void)
{
    signal(SIGUSR1, on_usr1);
    struct timespec ms = {0, 1000000};
    for (;;) {
        vfork_work(1);
        if (fork_now)
            vfork_and_wait();
        nanosleep(&ms, NULL);
    }
}
