/* Calls probed functions where little stack is left, the way production
 * code does: a signal handler on an 8 KiB alternate stack, a ucontext fiber
 * with a 16 KiB stack, a thread with a 16 KiB stack, and measures how deep
 * below a probed call's stack pointer anything was written (depth_probe.S).
 *
 * Protocol (the test drives it on stdin/stdout): prints "ready", waits for
 * a line, runs MODE N times, prints "calls=N result=R" (or "depth=D" for
 * MODE depth), waits for a line and exits 0. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define PAGE 4096

long measure_depth(long (*fn)(long), uint8_t pattern); /* depth_probe.S */
long depth_probed(long x);                             /* depth_probe.S: 5-byte mov, ret */

static volatile long sink;
static long calls;

__attribute__((noinline)) long stack_probed(long a, long b)
{
    sink += a + b;
    calls++;
    return sink;
}

static volatile long nested_calls;

/* Called from the SIGUSR2 handler that a probe's bpf_send_signal_thread
 * runs while the probe's handler is still on its stack. */
__attribute__((noinline)) long nested_probed(long a)
{
    nested_calls++;
    return a + sink;
}

/* Recurses until about `bytes` of stack are used, then calls the probe. */
__attribute__((noinline)) static long deep_call(int bytes, long x)
{
    volatile char frame[512];
    frame[0] = (char)x;
    if (bytes > (int)sizeof(frame))
        return deep_call(bytes - (int)sizeof(frame), x) + frame[0] * 0;
    return stack_probed(x, frame[0]);
}

/* A stack with an inaccessible guard page below it. */
static void *guarded_stack(size_t size)
{
    uint8_t *m = mmap(NULL, size + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m, PAGE, PROT_NONE) != 0) {
        perror("stack");
        exit(2);
    }
    return m + PAGE;
}

static void on_alarm(int sig)
{
    deep_call(3072, sig);
}

static void run_sigalt(long n)
{
    stack_t ss = {.ss_sp = guarded_stack(8192), .ss_size = 8192};
    struct sigaction sa = {.sa_handler = on_alarm, .sa_flags = SA_ONSTACK};
    if (sigaltstack(&ss, NULL) != 0 || sigaction(SIGALRM, &sa, NULL) != 0) {
        perror("sigaltstack");
        exit(2);
    }
    for (long i = 0; i < n; i++)
        raise(SIGALRM);
}

static ucontext_t main_ctx, fiber_ctx;
static long fiber_left;

static void fiber_main(void)
{
    while (fiber_left > 0) {
        deep_call(12 * 1024, fiber_left);
        fiber_left--;
        swapcontext(&fiber_ctx, &main_ctx);
    }
}

static void run_fiber(long n)
{
    fiber_left = n;
    getcontext(&fiber_ctx);
    fiber_ctx.uc_stack.ss_sp = guarded_stack(16384);
    fiber_ctx.uc_stack.ss_size = 16384;
    fiber_ctx.uc_link = &main_ctx;
    makecontext(&fiber_ctx, fiber_main, 0);
    while (fiber_left > 0)
        swapcontext(&main_ctx, &fiber_ctx);
}

static void *small_thread(void *arg)
{
    for (long i = 0, n = *(long *)arg; i < n; i++)
        deep_call(8 * 1024, i);
    return NULL;
}

static void run_thread(long n)
{
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 16384);
    if (pthread_create(&t, &a, small_thread, &n) != 0) {
        fprintf(stderr, "pthread_create with a 16 KiB stack failed\n");
        exit(2);
    }
    pthread_join(t, NULL);
    pthread_attr_destroy(&a);
}

static void on_usr2(int sig)
{
    nested_probed(sig);
}

/* A probe whose program signals the thread: the signal handler, run while
 * the probe's handler is on the thread's handler stack, reaches a second
 * probe (nested), all on a 16 KiB thread. */
static void run_nested(long n)
{
    struct sigaction sa = {.sa_handler = on_usr2};
    if (sigaction(SIGUSR2, &sa, NULL) != 0) {
        perror("sigaction");
        exit(2);
    }
    run_thread(n);
}

/* The deepest write below a probed call's sp, over both fill patterns. */
static long depth_once(void)
{
    long a = measure_depth(depth_probed, 0xa5), b = measure_depth(depth_probed, 0x5a);
    calls += 2;
    return a > b ? a : b;
}

static void *depth_thread(void *arg)
{
    *(long *)arg = depth_once(); /* a new thread: its first hit takes the slow path */
    return NULL;
}

static long run_depth(long n)
{
    volatile char room[32768]; /* the fill below sp stays inside the stack */
    room[0] = 0;
    long max = room[0];
    for (long i = 0; i < n; i++) {
        long d = 0;
        pthread_t t;
        if (i % 2 == 0 && pthread_create(&t, NULL, depth_thread, &d) == 0)
            pthread_join(t, NULL);
        else
            d = depth_once();
        max = d > max ? d : max;
    }
    return max;
}

static void wait_line(void)
{
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        exit(0);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s sigalt|fiber|thread|nested|depth N\n", argv[0]);
        return 2;
    }
    long n = atol(argv[2]);
    printf("ready\n");
    fflush(stdout);
    wait_line();
    if (!strcmp(argv[1], "depth")) {
        long d = run_depth(n);
        printf("depth=%ld calls=%ld\n", d, calls);
    } else {
        if (!strcmp(argv[1], "sigalt"))
            run_sigalt(n);
        else if (!strcmp(argv[1], "fiber"))
            run_fiber(n);
        else if (!strcmp(argv[1], "thread"))
            run_thread(n);
        else if (!strcmp(argv[1], "nested"))
            run_nested(n);
        else
            return 2;
        printf("calls=%ld nested=%ld result=%ld\n", calls, (long)nested_calls, (long)sink);
    }
    fflush(stdout);
    wait_line();
    return 0;
}
