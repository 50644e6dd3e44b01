/* Helpers shared by the skeleton loaders: option parsing, a libbpf print
 * hook that stays quiet unless -v, signal-driven shutdown and a deadline
 * for -d. */
#ifndef SKEL_COMMON_H
#define SKEL_COMMON_H

#include <signal.h>
#include <stdbool.h>
#include <sys/types.h>

extern volatile sig_atomic_t skel_exiting;

/* Routes libbpf's messages to stderr only when verbose. */
void skel_setup_libbpf(bool verbose);
/* SIGINT/SIGTERM set skel_exiting; without SA_RESTART so sleeps and polls
 * return early. Returns 0, or -errno after "TOOL: sigaction: ..." on
 * stderr. */
int skel_install_signals(const char *tool);
/* Line-buffers stdout so output shows up promptly when piped. */
void skel_line_buffer_stdout(void);

/* Prints "MESSAGE: <strerror(errno)>" on stderr, MESSAGE formatted from
 * fmt, and returns -errno as it was on entry. */
int skel_errno_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Parses a positive decimal into *out; 0 on success, -EINVAL otherwise. */
int skel_parse_pid(const char *s, pid_t *out);
int skel_parse_seconds(const char *s, long *out);

/* Monotonic milliseconds. */
long long skel_now_ms(void);
/* Milliseconds until deadline_ms (0 if passed), or fallback_ms if there is
 * no deadline (deadline_ms < 0). */
long long skel_remaining_ms(long long deadline_ms, long long fallback_ms);
/* Writes the wall-clock time as HH:MM:SS into buf (at least 9 bytes). */
void skel_strtime(char *buf, size_t len);

/* The options every loader takes: -p PID, -d SECONDS, -v (and -h). */
struct skel_options {
    pid_t pid;     /* 0: no -p */
    long duration; /* seconds; 0: until a signal */
    bool verbose;
};

/* A loader's own options: returns 0 when opt (with arg, NULL for a flag)
 * was taken into tool_env, -EINVAL for a bad argument, SKEL_OPT_UNKNOWN
 * when opt is not one of the loader's. */
#define SKEL_OPT_UNKNOWN 1
typedef int (*skel_tool_option_fn)(int opt, const char *arg, void *tool_env);

/* getopt over optstring: -p, -d and -v go to *opts, the rest to
 * tool_option. -h prints "Usage: PROG " and usage to stdout and exits 0;
 * an unknown option or a stray argument prints them to stderr. Returns 0
 * or -EINVAL. */
int skel_parse_args(int argc, char **argv, const char *optstring, const char *usage, struct skel_options *opts,
                    skel_tool_option_fn tool_option, void *tool_env);

/* Line-buffers stdout, parses the options and routes libbpf's messages by
 * -v: what every loader's main does first. Returns 0 or -EINVAL. */
int skel_start(int argc, char **argv, const char *optstring, const char *usage, struct skel_options *opts,
               skel_tool_option_fn tool_option, void *tool_env);

/* Waits for events with poll_one(ctx, timeout_ms), each timeout at most
 * 100 ms, until a signal or duration seconds (0: no limit) have passed.
 * -EINTR from poll_one is not an error. Returns 0 or poll_one's first
 * other negative result. */
typedef int (*skel_poll_fn)(void *ctx, int timeout_ms);
int skel_poll_for(long duration, skel_poll_fn poll_one, void *ctx);

#endif
