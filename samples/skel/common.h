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
 * return early. Returns 0 or -errno. */
int skel_install_signals(void);
/* Line-buffers stdout so output shows up promptly when piped. */
void skel_line_buffer_stdout(void);

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

#endif
