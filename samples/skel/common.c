#include "common.h"

#include <errno.h>
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

int skel_install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL))
        return -errno;
    return 0;
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
