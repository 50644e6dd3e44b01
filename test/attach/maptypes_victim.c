/* Victim for test_maptypes.py: prints "ready", waits for SIGUSR1, calls
 * probe_me(x) for x = 0..N-1, prints "done", then waits to be killed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t go;
volatile unsigned probe_sink;

__attribute__((noinline)) void probe_me(unsigned x)
{
    probe_sink += x;
    __asm__ volatile("" ::: "memory");
}

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

int main(int argc, char **argv)
{
    unsigned n = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 10) : 1000;
    signal(SIGUSR1, on_usr1);
    printf("ready\n");
    fflush(stdout);
    while (!go)
        usleep(1000);
    for (unsigned x = 0; x < n; x++)
        probe_me(x);
    printf("done\n");
    fflush(stdout);
    for (;;)
        pause();
}
