/* The target of test_tracer_death: a counting thread, a thread in
 * restartable syscalls checking their results and its signal mask, and
 * SIGUSR1s counted; everything in the shared page argv[1]. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct shared {
    volatile uint64_t counted, slept, signals, bad_sleep, bad_mask, last_errno;
};

static struct shared *sh;

static void on_usr1(int sig)
{
    (void)sig;
    sh->signals++;
}

static void *counter(void *arg)
{
    (void)arg;
    for (;;)
        sh->counted++;
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    sigset_t empty, cur;
    sigemptyset(&empty);
    for (;;) {
        struct timespec ts = {0, 2000000};
        if (nanosleep(&ts, NULL) != 0 && errno != EINTR) {
            sh->bad_sleep++;
            sh->last_errno = (uint64_t)errno;
        }
        if (syscall(SYS_getppid) <= 0)
            sh->bad_sleep++;
        pthread_sigmask(SIG_BLOCK, NULL, &cur);
        if (memcmp(&cur, &empty, sizeof(cur)) != 0)
            sh->bad_mask++;
        sh->slept++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int fd = argc > 1 ? open(argv[1], O_RDWR) : -1;
    if (fd < 0)
        return 2;
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (sh == MAP_FAILED)
        return 2;
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    pthread_t a, b;
    pthread_create(&a, NULL, counter, NULL);
    pthread_create(&b, NULL, sleeper, NULL);
    for (;;)
        pause();
}
