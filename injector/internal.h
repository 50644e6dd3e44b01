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

#endif
