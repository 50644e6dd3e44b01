/* Victim for test_callbacks.py: prints "ready", waits for SIGUSR1, calls
 * probe_me(x, x even ? "alpha" : "beta") for x = 0..N-1 on each of T
 * threads (argv: N [T [now|exit]], T = 1 by default; "now": no waiting for
 * the signal, the calls are the first thing main does; "exit": the same,
 * and exit after), prints "done", then waits to be killed. */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static unsigned long n_calls = 1000;
volatile unsigned long probe_sink;

__attribute__((noinline)) unsigned long probe_me(unsigned long x, const char *name)
{
    probe_sink += x + (unsigned char)name[0];
    __asm__ volatile("" ::: "memory");
    return 2 * x;
}

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

static void *calls(void *arg)
{
    (void)arg;
    for (unsigned long x = 0; x < n_calls; x++)
        probe_sink += probe_me(x, x % 2 ? "beta" : "alpha");
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc > 1)
        n_calls = strtoul(argv[1], NULL, 10);
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1 || threads > 64)
        return 2;
    bool leave = argc > 3 && !strcmp(argv[3], "exit");
    bool now = leave || (argc > 3 && !strcmp(argv[3], "now"));
    signal(SIGUSR1, on_usr1);
    if (!now) {
        printf("ready\n");
        fflush(stdout);
    }
    while (!go && !now)
        usleep(1000);
    pthread_t t[64];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, calls, NULL))
            return 1;
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    printf("done\n");
    fflush(stdout);
    if (leave)
        return 0;
    for (;;)
        pause();
}
