/* Victim of test_usdt.py: USDT probes (sys/sdt.h) and two plain functions.
 * Reads commands on stdin, one a line:
 *   run N   for x = 0..N-1: probe_a(x), probe_b(x) twice, the USDT probe
 *           usdtv:tick(x, 3x, name) where its semaphore says it is wanted
 *           (name "alpha" for even x, "beta" for odd), usdtv:tock(x + 1000, -5)
 *           (its semaphore not checked) always; prints "done TICKS" (the ticks it fired)
 *   sem     prints the semaphore of usdtv:tick ("sem V")
 * and exits at end of input. With --start it fires usdtv:first(1) and
 * usdtv:second(2) three times each as it starts (adjacent sites: nothing
 * between their nops), prints "started" and exits: only probes in place
 * before main see them (bpftrace -c). */
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sdt.h>

__extension__ unsigned short usdtv_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));
/* tock fires whatever its semaphore says */
__extension__ unsigned short usdtv_tock_semaphore __attribute__((unused)) __attribute__((section(".probes")));
/* --start: fired unconditionally, as tock */
__extension__ unsigned short usdtv_first_semaphore __attribute__((unused)) __attribute__((section(".probes")));
__extension__ unsigned short usdtv_second_semaphore __attribute__((unused)) __attribute__((section(".probes")));

volatile unsigned long sink;

__attribute__((noinline)) void probe_a(unsigned long x)
{
    sink += x;
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void probe_b(unsigned long x)
{
    sink += 2 * x;
    __asm__ volatile("" ::: "memory");
}

static unsigned long run(unsigned long n)
{
    unsigned long ticks = 0;
    for (unsigned long x = 0; x < n; x++) {
        probe_a(x);
        probe_b(x);
        probe_b(x);
        const char *name = x % 2 ? "beta" : "alpha";
        if (__builtin_expect(usdtv_tick_semaphore, 0)) {
            STAP_PROBE3(usdtv, tick, x, 3 * x, name);
            ticks++;
        }
        volatile long on_stack = (long)x + 1000; /* a memory operand */
        STAP_PROBE2(usdtv, tock, on_stack, -5);
    }
    return ticks;
}

static void start_probes(void)
{
    for (int i = 0; i < 3; i++) {
        STAP_PROBE1(usdtv, first, 1);
        STAP_PROBE1(usdtv, second, 2);
    }
}

int main(int argc, char **argv)
{
    char line[64];
    if (argc > 1 && strcmp(argv[1], "--start") == 0) {
        start_probes();
        printf("started\n");
        return 0;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof(line), stdin)) {
        if (strncmp(line, "run ", 4) == 0)
            printf("done %lu\n", run(strtoul(line + 4, NULL, 10)));
        else if (strncmp(line, "sem", 3) == 0)
            printf("sem %u\n", (unsigned)usdtv_tick_semaphore);
        else
            printf("unknown command\n");
    }
    return 0;
}
