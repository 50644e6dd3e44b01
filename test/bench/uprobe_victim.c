/* The process bpfgraft-bench uprobe probes. Commands on stdin:
 *   run N      call bench_target() N times, print the elapsed ns
 *   short N    the same with bench_short(), too short for a jmp: padding
 *              follows it, so a probe gets a short jmp (hop)
 *   tight N    the same with bench_tight(), too short for a jmp and with
 *              no padding around it: a probe gets a trap
 *   mid N      the same with bench_mid(), probed at +3 (inside a leaf,
 *              ret 4 bytes on): a short jmp whose stub steps over the red
 *              zone
 *   deepD N    call bench_deep_target() N times from D frames deep (main,
 *              libc's start and _start included); built without frame
 *              pointers, as Debian's binaries are
 *   usdt N     fire the USDT probe bpfgraft_bench:hit(i) N times (no
 *              semaphore), print the elapsed ns
 *   quit
 * With "--threads N" it first starts N threads that sleep, to measure how
 * long attaching stops a process with many threads; with "--busy N", N
 * threads that spin (each must be caught on a CPU to stop). */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sdt.h>
#include <time.h>
#include <unistd.h>

volatile long bench_sink;

/* Big enough to patch; the RIP-relative store exercises relocation. */
__attribute__((noinline)) long bench_target(long x)
{
    bench_sink = x;
    return x + 1;
}

/* long bench_short(long x): x + 1 in 5 bytes that end with ret: a 5-byte
 * jmp cannot go there; aligned as gcc aligns functions, padding follows
 * it, and a probe gets a short jmp to a jmp in the padding. */
long bench_short(long x);
__asm__(".text\n"
        ".globl bench_short\n"
        ".type bench_short, @function\n"
        ".balign 16\n"
        "bench_short:\n"
        "    lea 1(%rdi), %rax\n"
        "    ret\n"
        ".size bench_short, . - bench_short\n"
        ".balign 16\n");

/* long bench_mid(long x): x + 1 in a leaf probed at +3, where a 5-byte
 * jmp would cover its ret: a short jmp to the padding after it. */
long bench_mid(long x);
__asm__(".text\n"
        ".globl bench_mid\n"
        ".type bench_mid, @function\n"
        ".balign 16\n"
        "bench_mid:\n"
        "    mov %rdi, %rax\n"
        "    add $1, %rax\n"
        "    ret\n"
        ".size bench_mid, . - bench_mid\n"
        ".balign 16\n");

/* long bench_tight(long x): the same as bench_short, between two functions
 * with no padding on either side: a probe gets a trap. */
long bench_tight(long x);
__asm__(".text\n"
        ".balign 16\n"
        ".globl bench_tight_prev\n"
        ".type bench_tight_prev, @function\n"
        "bench_tight_prev:\n"
        "    ret\n"
        ".size bench_tight_prev, . - bench_tight_prev\n"
        ".globl bench_tight\n"
        ".type bench_tight, @function\n"
        "bench_tight:\n"
        "    lea 1(%rdi), %rax\n"
        "    ret\n"
        ".size bench_tight, . - bench_tight\n"
        ".globl bench_tight_next\n"
        ".type bench_tight_next, @function\n"
        "bench_tight_next:\n"
        "    ret\n"
        ".size bench_tight_next, . - bench_tight_next\n");

__attribute__((noinline)) long bench_deep_target(long x)
{
    bench_sink = x;
    return x + 2;
}

/* d + 1 frames of its own above bench_deep_target; the store after the
 * call keeps every level a real call. */
__attribute__((noinline)) static long deep(int d, long x)
{
    long r = d ? deep(d - 1, x) : bench_deep_target(x);
    bench_sink = r;
    return r + d;
}

/* frames at bench_deep_target: itself, deep's, main, __libc_start_call_main,
 * __libc_start_main, _start */
#define DEEP_OTHER_FRAMES 5

static void *sleeper(void *arg)
{
    (void)arg;
    for (;;)
        pause();
    return NULL;
}

static void *spinner(void *arg)
{
    (void)arg;
    for (volatile unsigned long i = 0;; i++)
        ;
    return NULL;
}

static unsigned long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned long long)ts.tv_sec * 1000000000ull + (unsigned long long)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc == 3 && (strcmp(argv[1], "--threads") == 0 || strcmp(argv[1], "--busy") == 0)) {
        int n = atoi(argv[2]);
        for (int i = 0; i < n; i++) {
            pthread_t t;
            if (pthread_create(&t, NULL, argv[1][2] == 'b' ? spinner : sleeper, NULL) != 0)
                return 1;
        }
    }
    char line[128];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof(line), stdin)) {
        long n;
        int depth;
        if (sscanf(line, "deep%d %ld", &depth, &n) == 2 && depth > DEEP_OTHER_FRAMES) {
            long sum = 0;
            unsigned long long t0 = now_ns();
            for (long i = 0; i < n; i++)
                sum += deep(depth - DEEP_OTHER_FRAMES - 1, i);
            printf("%llu %ld\n", now_ns() - t0, sum);
            continue;
        }
        long (*fn)(long) = sscanf(line, "short %ld", &n) == 1   ? bench_short
                           : sscanf(line, "tight %ld", &n) == 1 ? bench_tight
                           : sscanf(line, "mid %ld", &n) == 1   ? bench_mid
                           : sscanf(line, "run %ld", &n) == 1   ? bench_target
                                                                : NULL;
        if (fn) {
            long sum = 0;
            unsigned long long t0 = now_ns();
            for (long i = 0; i < n; i++)
                sum += fn(i);
            unsigned long long t1 = now_ns();
            printf("%llu %ld\n", t1 - t0, sum);
        } else if (sscanf(line, "usdt %ld", &n) == 1) {
            unsigned long long t0 = now_ns();
            for (long i = 0; i < n; i++)
                STAP_PROBE1(bpfgraft_bench, hit, i);
            printf("%llu 0\n", now_ns() - t0);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        }
    }
    return 0;
}
