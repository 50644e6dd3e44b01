/* Stack walkers inside a uretprobed function (issue 21).
 *
 * Usage: bt-victim MODE N, MODE one of
 *   bt   bt_probed() walks its own stack with glibc's backtrace() and with
 *        libunwind's unw_backtrace() (when built with it) and compares the
 *        frames above itself with those of its first call, made before
 *        "ready" (before any probe is attached). A uretprobe's return
 *        trampoline (in bpfgraft's unwind page) is a frame of its own, as
 *        the kernel's [uprobes] page is: such frames are counted apart
 *        (tramp=, the most seen in one walk) and left out of the
 *        comparison. Prints "calls=C mismatches=M depth=D tramp=T
 *        unw_mismatches=U unw_depth=E unw_tramp=F".
 *   gdb  gdb_probed() calls gdb_leaf(), where gdb puts its breakpoint: a
 *        uretprobe on gdb_probed puts its trampoline in the return address
 *        of the frame just above gdb_leaf's. The calls go on, 20 µs apart,
 *        until SIGUSR1, then N more calls are made without pause. Prints
 *        "calls=C normal_returns=R leaf_calls=L".
 *
 * Protocol (test_unwind.py): prints "ready", waits for a line, runs, prints
 * its line and exits 0 after reading another line (or EOF). */
#define _GNU_SOURCE
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#endif

#define PROBED __attribute__((noinline, noipa, used))
#define MAX_FRAMES 64

struct walk {
    void *ref[MAX_FRAMES];
    int ref_depth; /* 0: not taken yet */
    int depth;     /* of the last walk, trampolines left out */
    int tramp;     /* the most trampoline frames in one walk */
    long mismatches;
};

/* bpfgraft's trampolines: the r-x mapping of its unwind page, read once
 * at the first measured walk (the probes are attached by then). */
static unsigned long tramp_lo, tramp_hi;
static int tramp_known;

static void find_trampolines(void)
{
    char line[512];
    FILE *f = fopen("/proc/self/maps", "r");
    tramp_known = 1;
    while (f && fgets(line, sizeof(line), f))
        if (strstr(line, "/memfd:bpfgraft-unwind") && strstr(line, " r-xp "))
            sscanf(line, "%lx-%lx", &tramp_lo, &tramp_hi);
    if (f)
        fclose(f);
}

/* Drops trampoline frames from frames[]; returns how many. */
static int drop_trampolines(void **frames, int *depth)
{
    int out = 0, n = 0;
    for (int i = 0; i < *depth; i++) {
        unsigned long pc = (unsigned long)frames[i];
        if (pc >= tramp_lo && pc < tramp_hi)
            n++;
        else
            frames[out++] = frames[i];
    }
    *depth = out;
    return n;
}

static struct walk gnu, unw;
static long calls, normal_returns, leaf_calls;
static volatile long sink;
static volatile sig_atomic_t stop;

/* The frames above the walking function (index 0 is the walker itself)
 * against those of the first walk. */
static void compare(struct walk *w, void **frames, int depth)
{
    if (!w->ref_depth) {
        memcpy(w->ref, frames, sizeof(void *) * depth);
        w->ref_depth = w->depth = depth;
        return;
    }
    if (!tramp_known)
        find_trampolines();
    int tramp = drop_trampolines(frames, &depth);
    if (tramp > w->tramp)
        w->tramp = tramp;
    w->depth = depth;
    if (depth != w->ref_depth || memcmp(w->ref + 1, frames + 1, sizeof(void *) * (depth - 1)) != 0)
        w->mismatches++;
}

PROBED long bt_probed(long i)
{
    void *frames[MAX_FRAMES];
    calls++;
    compare(&gnu, frames, backtrace(frames, MAX_FRAMES));
#ifdef HAVE_LIBUNWIND
    compare(&unw, frames, unw_backtrace(frames, MAX_FRAMES));
#endif
    sink += i;
    return sink;
}

PROBED long gdb_leaf(long i)
{
    leaf_calls++;
    sink += i;
    return sink;
}

PROBED long gdb_probed(long i)
{
    calls++;
    return gdb_leaf(i) + 1;
}

/* The same call site for the reference walk and the measured ones, so
 * that every frame above bt_probed is the same. */
PROBED void bt_run(long n)
{
    for (long i = 0; i < n; i++) {
        bt_probed(i);
        normal_returns++;
    }
}

static void on_usr1(int sig)
{
    (void)sig;
    stop = 1;
}

static void gdb_run(long n)
{
    struct timespec pause = {0, 20000};
    long i = 0;
    for (; !stop; i++) {
        gdb_probed(i);
        normal_returns++;
        nanosleep(&pause, NULL);
    }
    for (long k = 0; k < n; k++, i++) {
        gdb_probed(i);
        normal_returns++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3 || (strcmp(argv[1], "bt") && strcmp(argv[1], "gdb"))) {
        fprintf(stderr, "usage: %s bt|gdb N\n", argv[0]);
        return 2;
    }
    int bt = !strcmp(argv[1], "bt");
    long n = atol(argv[2]);
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    char line[64];
    /* volatile: one loop body, one call site of bt_run for both rounds */
    for (volatile int round = 0; round < 2; round++) {
        if (round == 1) {
            /* the reference walk was made (round 0); the counts start over */
            calls = normal_returns = leaf_calls = 0;
            printf("ready\n");
            fflush(stdout);
            if (!fgets(line, sizeof(line), stdin))
                return 2;
        }
        if (bt)
            bt_run(round ? n : 1);
        else if (round)
            gdb_run(n);
    }
    if (bt)
        printf("calls=%ld normal_returns=%ld mismatches=%ld depth=%d ref_depth=%d tramp=%d unw_mismatches=%ld "
               "unw_depth=%d unw_ref_depth=%d unw_tramp=%d\n",
               calls, normal_returns, gnu.mismatches, gnu.depth, gnu.ref_depth, gnu.tramp, unw.mismatches, unw.depth,
               unw.ref_depth, unw.tramp);
    else
        printf("calls=%ld normal_returns=%ld leaf_calls=%ld\n", calls, normal_returns, leaf_calls);
    fflush(stdout);
    (void)!fgets(line, sizeof(line), stdin);
    return 0;
}
