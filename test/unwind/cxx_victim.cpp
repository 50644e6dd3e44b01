/* C++ exceptions through uretprobed frames (issue 21). Built twice: with
 * g++ (libstdc++, libgcc_s's unwinder) and with clang++ on libc++ and
 * LLVM's libunwind (test/unwind/CMakeLists.txt).
 *
 * Usage: cxx-victim MODE N, MODE one of
 *   one      main calls middle(i), which calls inner(i); inner throws
 *            std::runtime_error when i % 3 == 0; main catches it.
 *   three    main calls f1 -> f2 -> f3 -> thrower; thrower throws when
 *            i % 3 == 0: every exception crosses f3, f2 and f1.
 *   rethrow  as one, but middle catches the exception and rethrows it
 *            (throw;), main catches it again.
 *
 * Protocol (test_unwind.py): prints "ready", waits for a line, runs MODE
 * N times, prints one line
 *   calls=C normal_returns=R throws=T caught=K ... unwinder=LIB
 * and exits 0 after reading another line (or EOF), unless that line is
 * "again": then it runs another round (counts from 0) the same way. calls and
 * normal_returns are those of the outermost probed function (middle,
 * f1); the other *_returns fields are the normal returns of the other
 * probeable functions, each counted by its caller after the call came back.
 * unwinder is the file _Unwind_RaiseException comes from. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <stdexcept>

/* Probed by name: C linkage, never inlined (nor, under g++, cloned or
 * analysed across calls; clang has no noipa). */
#if defined(__clang__)
#define PROBED extern "C" __attribute__((noinline, used))
#else
#define PROBED extern "C" __attribute__((noinline, noipa, used))
#endif

static long calls, normal_returns, throws, caught, rethrows;
static long inner_returns, f2_returns, f3_returns, thrower_returns;
static volatile long sink;

PROBED long inner(long i)
{
    if (i % 3 == 0) {
        throws++;
        throw std::runtime_error("inner: i % 3 == 0");
    }
    sink += i;
    return sink;
}

PROBED long middle(long i)
{
    long r = inner(i);
    inner_returns++;
    return r + 1;
}

PROBED long rethrow_middle(long i)
{
    try {
        long r = inner(i);
        inner_returns++;
        return r + 1;
    } catch (const std::runtime_error &) {
        rethrows++;
        throw;
    }
}

PROBED long thrower(long i)
{
    if (i % 3 == 0) {
        throws++;
        throw std::runtime_error("thrower: i % 3 == 0");
    }
    sink += i;
    return sink;
}

PROBED long f3(long i)
{
    long r = thrower(i);
    thrower_returns++;
    return r + 3;
}

PROBED long f2(long i)
{
    long r = f3(i);
    f3_returns++;
    return r + 2;
}

PROBED long f1(long i)
{
    long r = f2(i);
    f2_returns++;
    return r + 1;
}

static const char *unwinder(void)
{
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "_Unwind_RaiseException");
    if (!sym || !dladdr(sym, &info) || !info.dli_fname)
        return "unknown";
    const char *slash = strrchr(info.dli_fname, '/');
    return slash ? slash + 1 : info.dli_fname;
}

/* One round of n calls, then the result line. */
static void run(long (*outer)(long), long n)
{
    /* i from 1: the last call (n % 3 != 0 for the test's n) returns
     * normally, which is when bpfgraft notices the frame the last
     * exception left and counts it dropped */
    for (long i = 1; i <= n; i++) {
        calls++;
        try {
            outer(i);
            normal_returns++;
        } catch (const std::runtime_error &) {
            caught++;
        }
    }
    printf("calls=%ld normal_returns=%ld throws=%ld caught=%ld rethrows=%ld inner_returns=%ld f2_returns=%ld "
           "f3_returns=%ld thrower_returns=%ld sink=%ld unwinder=%s\n",
           calls, normal_returns, throws, caught, rethrows, inner_returns, f2_returns, f3_returns, thrower_returns,
           (long)sink, unwinder());
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s one|three|rethrow N\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    long (*outer)(long) = !strcmp(mode, "one")       ? middle
                          : !strcmp(mode, "three")   ? f1
                          : !strcmp(mode, "rethrow") ? rethrow_middle
                                                     : nullptr;
    if (!outer) {
        fprintf(stderr, "%s: unknown mode %s\n", argv[0], mode);
        return 2;
    }
    char line[64];
    printf("ready\n");
    fflush(stdout);
    if (!fgets(line, sizeof(line), stdin))
        return 2;
    /* rounds: one per line "go"; "again" after a result runs another */
    do {
        calls = normal_returns = throws = caught = rethrows = inner_returns = 0;
        f2_returns = f3_returns = thrower_returns = 0;
        run(outer, n);
    } while (fgets(line, sizeof(line), stdin) && !strncmp(line, "again", 5));
    return 0;
}
