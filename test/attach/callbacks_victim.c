/* Victim for test_callbacks.py: prints "ready", waits for SIGUSR1, calls
 * probe_me(x, x even ? "alpha" : "beta") for x = 0..N-1, prints "done",
 * then waits to be killed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t go;
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

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    signal(SIGUSR1, on_usr1);
    printf("ready\n");
    fflush(stdout);
    while (!go)
        usleep(1000);
    for (unsigned long x = 0; x < n; x++)
        probe_sink += probe_me(x, x % 2 ? "beta" : "alpha");
    printf("done\n");
    fflush(stdout);
    for (;;)
        pause();
}
