/* Shared plumbing of bpfgraft-bench suites: timing and reporting.
 *
 * Each suite measures its subject and a baseline (native code, the kernel)
 * in the same run and reports both with bench_report(); the driver prints
 * text lines or, with --json, one JSON object for the whole run.
 */
#ifndef BPFGRAFT_BENCH_H
#define BPFGRAFT_BENCH_H

#include <stdbool.h>
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

/* Keeps the compiler from optimising a computed value away. */
#define bench_keep(v) __asm__ volatile("" : : "r"(v) : "memory")

#endif
