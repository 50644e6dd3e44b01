#define _GNU_SOURCE
#include <stdarg.h>
#include <time.h>

#include "log.h"

static enum srv_log_level min_level = SRV_INFO;
static FILE *log_file;

void srv_log_set_level(enum srv_log_level min)
{
    min_level = min;
}
void srv_log_set_file(FILE *f)
{
    log_file = f;
}

void srv_log(enum srv_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if (level < min_level)
        return;
    FILE *f = log_file ? log_file : stderr;
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);

    /* Build the line first so concurrent writers never interleave inside it. */
    char line[1024];
    int n = snprintf(line, sizeof(line), "%s.%03ldZ %s ", when, ts.tv_nsec / 1000000, names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    for (char *p = line + n; *p; p++)
        if (*p == '\n')
            *p = ' ';
    fprintf(f, "%s\n", line);
    fflush(f);
}

int srv_efail(char *err, size_t errlen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return code;
}
