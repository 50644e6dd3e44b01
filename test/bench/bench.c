/* bpfgraft-bench: runs one benchmark suite per area and prints figures
 * side by side with their baseline (native code, the kernel).
 *
 *   bpfgraft-bench [--json] [--quick] SUITE...   (or "all", or --list)
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

/* Suites live in their own files; a suite whose file is not built yet is a
 * NULL weak reference and is left out of the table. */
extern const struct bench_suite bench_suite_vm __attribute__((weak));
extern const struct bench_suite bench_suite_maps __attribute__((weak));
extern const struct bench_suite bench_suite_rpc __attribute__((weak));
extern const struct bench_suite bench_suite_uprobe __attribute__((weak));
extern const struct bench_suite bench_suite_usdt __attribute__((weak));
extern const struct bench_suite bench_suite_jit __attribute__((weak));
extern const struct bench_suite bench_suite_verifier __attribute__((weak));
extern const struct bench_suite bench_suite_syscall __attribute__((weak));
extern const struct bench_suite bench_suite_tool __attribute__((weak));
extern const struct bench_suite bench_suite_restart __attribute__((weak));

static const struct bench_suite *suites(size_t i)
{
    const struct bench_suite *all[] = {
        &bench_suite_vm,  &bench_suite_maps,     &bench_suite_rpc,     &bench_suite_uprobe, &bench_suite_usdt,
        &bench_suite_jit, &bench_suite_verifier, &bench_suite_syscall, &bench_suite_tool,   &bench_suite_restart,
    };
    return i < sizeof(all) / sizeof(all[0]) ? all[i] : (const void *)-1;
}

struct bench_ctx {
    bool json;
    bool quick;
    bool first_result; /* JSON: no comma before the first entry */
    const char *suite;
    char notes[4096];
    size_t notes_len;
};

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

bool bench_quick(const struct bench_ctx *ctx)
{
    return ctx->quick;
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

void bench_report(struct bench_ctx *ctx, const char *name, const char *variant, double value, const char *unit,
                  const char *baseline_name, double baseline_value)
{
    double ratio = baseline_name && baseline_value > 0 ? value / baseline_value : 0;
    if (!ctx->json) {
        printf("%-6s %-28s %-14s %12.2f %-8s", ctx->suite, name, variant, value, unit);
        if (baseline_name)
            printf("  %s %.2f %s  ratio %.3gx", baseline_name, baseline_value, unit, ratio);
        putchar('\n');
        fflush(stdout);
        return;
    }
    printf("%s\n    {\"name\": ", ctx->first_result ? "" : ",");
    ctx->first_result = false;
    json_string(name);
    printf(", \"variant\": ");
    json_string(variant);
    printf(", \"value\": %.4f, \"unit\": ", value);
    json_string(unit);
    if (baseline_name) {
        printf(", \"baseline\": ");
        json_string(baseline_name);
        printf(", \"baseline_value\": %.4f, \"ratio\": %.4f", baseline_value, ratio);
    }
    printf("}");
}

void bench_note(struct bench_ctx *ctx, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (!ctx->json) {
        printf("%-6s note: %s\n", ctx->suite, line);
        return;
    }
    size_t len = strlen(line);
    if (ctx->notes_len + len + 2 < sizeof(ctx->notes)) {
        memcpy(ctx->notes + ctx->notes_len, line, len);
        ctx->notes_len += len;
        ctx->notes[ctx->notes_len++] = '\n';
        ctx->notes[ctx->notes_len] = 0;
    }
}

/* "model name" of /proc/cpuinfo, or "unknown cpu". */
static void cpu_model(char *out, size_t len)
{
    snprintf(out, len, "unknown cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon) {
            snprintf(out, len, "%s", colon + 2);
            out[strcspn(out, "\n")] = 0;
            break;
        }
    }
    fclose(f);
}

/* JSON: the machine the run measured, so a chart of it can name it. */
static void json_machine(void)
{
    char cpu[128];
    struct utsname u;
    cpu_model(cpu, sizeof(cpu));
    if (uname(&u) < 0)
        snprintf(u.release, sizeof(u.release), "unknown");
    printf("\n  \"machine\": {\"cpu\": ");
    json_string(cpu);
    printf(", \"cpus\": %ld, \"kernel\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_string(u.release);
    printf(", \"time\": %lld}", (long long)time(NULL));
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bpfgraft-bench [--json] [--quick] SUITE...|all|--list\nsuites:\n");
    for (size_t i = 0; suites(i) != (const void *)-1; i++)
        if (suites(i))
            fprintf(f, "  %-8s %s\n", suites(i)->name, suites(i)->summary);
}

static const struct bench_suite *find_suite(const char *name)
{
    for (size_t i = 0; suites(i) != (const void *)-1; i++)
        if (suites(i) && strcmp(suites(i)->name, name) == 0)
            return suites(i);
    return NULL;
}

static int run_suite(struct bench_ctx *ctx, const struct bench_suite *s, bool *first_suite)
{
    ctx->suite = s->name;
    ctx->first_result = true;
    ctx->notes_len = 0;
    ctx->notes[0] = 0;
    if (ctx->json) {
        printf("%s\n  ", *first_suite ? "" : ",");
        json_string(s->name);
        printf(": {\"results\": [");
    }
    *first_suite = false;
    int err = s->run(ctx);
    if (ctx->json) {
        printf("\n  ], \"notes\": ");
        json_string(ctx->notes);
        printf(", \"error\": %d}", err);
    }
    if (err)
        fprintf(stderr, "bpfgraft-bench: suite %s failed: %s\n", s->name, strerror(-err));
    return err;
}

int main(int argc, char **argv)
{
    struct bench_ctx ctx = {0};
    const struct bench_suite *chosen[16];
    size_t nchosen = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            ctx.json = true;
        } else if (strcmp(argv[i], "--quick") == 0) {
            ctx.quick = true;
        } else if (strcmp(argv[i], "--list") == 0 || strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "all") == 0) {
            for (size_t k = 0; suites(k) != (const void *)-1; k++)
                if (suites(k) && nchosen < 16)
                    chosen[nchosen++] = suites(k);
        } else {
            const struct bench_suite *s = find_suite(argv[i]);
            if (!s) {
                fprintf(stderr, "bpfgraft-bench: unknown suite '%s'\n", argv[i]);
                usage(stderr);
                return 2;
            }
            if (nchosen < 16)
                chosen[nchosen++] = s;
        }
    }
    if (!nchosen) {
        usage(stderr);
        return 2;
    }

    int failed = 0;
    bool first_suite = true;
    if (ctx.json) {
        printf("{");
        json_machine();
        first_suite = false;
    }
    for (size_t i = 0; i < nchosen; i++)
        failed |= run_suite(&ctx, chosen[i], &first_suite) != 0;
    if (ctx.json)
        printf("\n}\n");
    return failed ? 1 : 0;
}
