/* Shared plumbing of bpfgraft-bench suites: timing and reporting.
 *
 * Each suite measures its subject and a baseline (native code, the kernel)
 * in the same run and reports both with bench_report(); the driver prints
 * text lines or, with --json, one JSON object for the whole run.
 */
#ifndef BPFGRAFT_BENCH_H
#define BPFGRAFT_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bench_ctx;

struct bench_suite {
    const char *name;
    const char *summary;
    int (*run)(struct bench_ctx *ctx); /* 0 or negative errno */
};

/* Monotonic clock in nanoseconds. */
uint64_t bench_now_ns(void);

/* Reports one measurement. baseline_name may be NULL (no ratio printed);
 * otherwise the ratio value/baseline_value is printed and recorded. */
void bench_report(struct bench_ctx *ctx, const char *name, const char *variant, double value, const char *unit,
                  const char *baseline_name, double baseline_value);

/* Free-form note printed in text mode and recorded under "notes" in JSON. */
void bench_note(struct bench_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Quick mode (--quick) asks suites for fewer iterations, for smoke tests. */
bool bench_quick(const struct bench_ctx *ctx);

/* One run of a timed subject over mem: 0 or a negative errno, *result the
 * run's value. */
typedef int (*bench_run_fn)(void *subject, uint8_t *mem, size_t len, uint64_t *result);

/* Runs subject in batches of `batch` runs until at least min_ns passed:
 * *ns per run, *result the last run's. 0 or the first error of a run.
 * Inline, so the suites built with -O2 call run directly. */
static inline int bench_time_runs(bench_run_fn run, void *subject, uint8_t *mem, size_t len, int batch, uint64_t min_ns,
                                  uint64_t *result, double *ns)
{
    uint64_t runs = 0, start = bench_now_ns(), now;
    do {
        for (int i = 0; i < batch; i++) {
            int err = run(subject, mem, len, result);
            if (err)
                return err;
        }
        runs += (uint64_t)batch;
        now = bench_now_ns();
    } while (now - start < min_ns);
    *ns = (double)(now - start) / (double)runs;
    return 0;
}

/* bench_run_fn for native code: subject points to a volatile pointer to
 * the function, so every run calls it. */
static inline int bench_run_native(void *subject, uint8_t *mem, size_t len, uint64_t *result)
{
    uint64_t (*volatile * fn)(uint8_t *, size_t) = subject;
    *result = (*fn)(mem, len);
    return 0;
}

/* Keeps the compiler from optimising a computed value away. */
#define bench_keep(v) __asm__ volatile("" : : "r"(v) : "memory")

/* bench_uprobe.c: this thread's slot and handler stack in the table the
 * payload's entry code (payload/entry.h) reads, for the native replicas of
 * the uprobe and syscall suites (key_method 1: rdfsbase, 2: %fs:0). */
void replica_setup(uint8_t key_method);

#endif
