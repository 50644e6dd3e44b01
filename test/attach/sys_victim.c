/* Victim of the syscall-hook tests: opens the paths given on the command
 * line every 20 ms and prints each result ("main|thread PATH RC ERRNO").
 * SIGUSR1 starts one more thread doing the same (created after attach);
 * SIGUSR2 makes the main loop call getppid() 1000 times and print
 * "burst 1000". Runs until killed. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char **paths;
static int npaths;
static volatile sig_atomic_t want_thread, want_burst;

static void open_all(const char *who)
{
    for (int i = 0; i < npaths; i++) {
        int fd = openat(AT_FDCWD, paths[i], O_RDONLY | O_CLOEXEC);
        int e = fd < 0 ? errno : 0;
        printf("%s %s %d %d\n", who, paths[i], fd < 0 ? -1 : 0, e);
        if (fd >= 0)
            close(fd);
    }
    fflush(stdout);
}

static void *thread_main(void *arg)
{
    (void)arg;
    for (;;) {
        open_all("thread");
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void on_signal(int sig)
{
    if (sig == SIGUSR1)
        want_thread = 1;
    else
        want_burst = 1;
}

int main(int argc, char **argv)
{
    paths = argv + 1;
    npaths = argc - 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask); /* a full mask: SIGSYS must still get through */
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGUSR2, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready %d\n", (int)getpid());
    for (;;) {
        open_all("main");
        if (want_thread) {
            want_thread = 0;
            pthread_t t;
            if (pthread_create(&t, NULL, thread_main, NULL) == 0)
                pthread_detach(t);
        }
        if (want_burst) {
            want_burst = 0;
            for (int i = 0; i < 1000; i++)
                getppid();
            printf("burst 1000\n");
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
}
