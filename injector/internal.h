/* Shared by the injector's modules; not part of its API. */
#ifndef BPFG_INJECTOR_INTERNAL_H
#define BPFG_INJECTOR_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct bpfg_stopped;

/* Formats the message into err (BPFG_ERRLEN bytes, may be NULL) and
 * returns code: `return bpfg_inj_fail(err, -EINVAL, "...", ...);` */
int bpfg_inj_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The start of pid's first executable mapping (not the vsyscall page)
 * outside [lo, hi), in *site; 0 there if it has none. 0 or -errno. */
int bpfg_inj_code_site(pid_t pid, uint64_t lo, uint64_t hi, uint64_t *site);

/* True if remote syscalls write their code over [lo, hi) of the text
 * (no room in the vDSO: remote.c). */
bool bpfg_rescue_in_text(const struct bpfg_stopped *st, uint64_t lo, uint64_t hi);

/* Waits for a stop of tid; signals on the way are re-delivered. Returns the
 * wait status of the stop that is not a plain signal (or is want_sig), or
 * -errno (-ECHILD: it exited). */
int bpfg_inj_wait_event(pid_t tid, int want_sig);

/* pid's auxiliary vector entry type (AT_ENTRY, AT_BASE), 0 if absent. */
uint64_t bpfg_inj_auxv(pid_t pid, uint64_t type);

/* pid, traced by us and stopped before its first instruction after exec,
 * is run to its entry point (AT_ENTRY: libraries mapped, none of the
 * program's code run) and stays stopped there; on failure it is detached. */
int bpfg_inj_run_to_entry(pid_t pid, char *err);

#endif
