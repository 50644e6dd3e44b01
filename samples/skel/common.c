#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <bpf/libbpf.h>

volatile sig_atomic_t skel_exiting;

static int print_quiet(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level;
    (void)fmt;
    (void)ap;
    return 0;
}

static int print_verbose(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    (void)level;
    return vfprintf(stderr, fmt, ap);
}

void skel_setup_libbpf(bool verbose)
{
    libbpf_set_print(verbose ? print_verbose : print_quiet);
}

static void on_signal(int sig)
{
    (void)sig;
    skel_exiting = 1;
}

int skel_install_signals(const char *tool)
{
    struct sigaction sa;
    int err;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL)) {
        err = -errno;
        fprintf(stderr, "%s: sigaction: %s\n", tool, strerror(-err));
        return err;
    }
    return 0;
}

int skel_errno_error(const char *fmt, ...)
{
    int err = errno;
    va_list ap;

    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, ": %s\n", strerror(err));
    return -err;
}

void skel_line_buffer_stdout(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
}

static int parse_positive(const char *s, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno || end == s || *end || v <= 0 || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

int skel_parse_pid(const char *s, pid_t *out)
{
    long v;

    if (parse_positive(s, INT_MAX, &v))
        return -EINVAL;
    *out = (pid_t)v;
    return 0;
}

int skel_parse_seconds(const char *s, long *out)
{
    /* a year is plenty and keeps the millisecond arithmetic far from overflow */
    return parse_positive(s, 366L * 24 * 3600, out);
}

long long skel_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long skel_remaining_ms(long long deadline_ms, long long fallback_ms)
{
    long long left;

    if (deadline_ms < 0)
        return fallback_ms;
    left = deadline_ms - skel_now_ms();
    return left > 0 ? left : 0;
}

void skel_strtime(char *buf, size_t len)
{
    time_t t = time(NULL);
    struct tm tm;

    if (!localtime_r(&t, &tm) || !strftime(buf, len, "%H:%M:%S", &tm))
        snprintf(buf, len, "??:??:??");
}

/* One option of the common set, or the tool's: 0, -EINVAL for a bad
 * argument, SKEL_OPT_UNKNOWN for an option neither knows. */
static int take_option(int c, struct skel_options *opts, skel_tool_option_fn tool_option, void *tool_env)
{
    switch (c) {
    case 'p': return skel_parse_pid(optarg, &opts->pid);
    case 'd': return skel_parse_seconds(optarg, &opts->duration);
    case 'v': opts->verbose = true; return 0;
    case '?': return SKEL_OPT_UNKNOWN;
    default: return tool_option(c, optarg, tool_env);
    }
}

static void print_usage(FILE *out, const char *prog, const char *usage)
{
    fprintf(out, "Usage: %s %s", prog, usage);
}

int skel_parse_args(int argc, char **argv, const char *optstring, const char *usage, struct skel_options *opts,
                    skel_tool_option_fn tool_option, void *tool_env)
{
    int c, err;

    while ((c = getopt(argc, argv, optstring)) != -1) {
        if (c == 'h') {
            print_usage(stdout, argv[0], usage);
            exit(0);
        }
        err = take_option(c, opts, tool_option, tool_env);
        if (err == SKEL_OPT_UNKNOWN)
            break;
        if (err) {
            fprintf(stderr, "%s: invalid argument for -%c: '%s'\n", argv[0], c, optarg);
            return -EINVAL;
        }
    }
    if (c != -1 || optind != argc) {
        print_usage(stderr, argv[0], usage);
        return -EINVAL;
    }
    return 0;
}

int skel_start(int argc, char **argv, const char *optstring, const char *usage, struct skel_options *opts,
               skel_tool_option_fn tool_option, void *tool_env)
{
    skel_line_buffer_stdout();
    if (skel_parse_args(argc, argv, optstring, usage, opts, tool_option, tool_env))
        return -EINVAL;
    skel_setup_libbpf(opts->verbose);
    return 0;
}

int skel_poll_for(long duration, skel_poll_fn poll_one, void *ctx)
{
    long long deadline = duration ? skel_now_ms() + duration * 1000 : -1;
    int err;

    while (!skel_exiting) {
        long long wait = skel_remaining_ms(deadline, 100);

        if (deadline >= 0 && wait == 0)
            break;
        err = poll_one(ctx, (int)(wait < 100 ? wait : 100));
        if (err < 0 && err != -EINTR)
            return err;
    }
    return 0;
}
