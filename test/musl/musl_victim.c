/* A musl-linked victim (test_musl.py), built with musl-gcc dynamic and
 * static. Each round (SIGUSR2, or at once with "once") starts THREADS
 * threads that each call musl_add() CALLS times and getppid() CALLS times,
 * joins them and prints "round N bad B" (B: wrong results of musl_add).
 * "spin": the threads call both forever (the SIGKILL test's process). Also
 * built with glibc (glibc-twin), to share maps with a musl process. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long calls;
static volatile sig_atomic_t requested;
static long bad;

/* Long enough for a jmp hook (a bare `lea; ret` would get a trap probe). */
__attribute__((noinline)) long musl_add(long a, long b)
{
    volatile long sum = a;
    sum += b;
    return sum;
}

static void *worker(void *arg)
{
    long t = (long)arg, wrong = 0;
    for (long i = 0; calls < 0 || i < calls; i++) {
        if (musl_add(i, t) != i + t)
            wrong++;
        getppid();
    }
    __atomic_fetch_add(&bad, wrong, __ATOMIC_RELAXED);
    return NULL;
}

static void on_usr2(int sig)
{
    (void)sig;
    requested++;
}

static int round_of(int n, long threads)
{
    pthread_t th[64];
    for (long t = 0; t < threads; t++)
        if (pthread_create(&th[t], NULL, worker, (void *)t))
            return -1;
    for (long t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    printf("round %d bad %ld\n", n, __atomic_load_n(&bad, __ATOMIC_RELAXED));
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    long threads = atol(argv[1]);
    calls = atol(argv[2]);
    if (threads < 1 || threads > 64)
        return 2;
    if (argc > 3 && strcmp(argv[3], "once") == 0)
        return round_of(1, threads) ? 1 : 0;
    if (argc > 3 && strcmp(argv[3], "spin") == 0) {
        calls = -1; /* forever */
        return round_of(1, threads) ? 1 : 0;
    }
    struct sigaction sa = {.sa_handler = on_usr2};
    sigaction(SIGUSR2, &sa, NULL);
    printf("ready\n");
    fflush(stdout);
    for (int done = 0;;) {
        while (done == requested)
            usleep(1000);
        if (round_of(++done, threads))
            return 1;
    }
}
