/* Shared by the injector's modules; not part of its API. */
#ifndef BPFG_INJECTOR_INTERNAL_H
#define BPFG_INJECTOR_INTERNAL_H

#include <sys/types.h>

/* Formats the message into err (BPFG_ERRLEN bytes, may be NULL) and
 * returns code: `return bpfg_inj_fail(err, -EINVAL, "...", ...);` */
int bpfg_inj_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* An integer field ("TracerPid", "Seccomp") of /proc/PID/status, or of
 * thread tid's (tid > 0). 0, -ENODATA without the field, -errno (-ENOENT:
 * no such process). */
int bpfg_inj_status_int(pid_t pid, pid_t tid, const char *field, int *value);

#endif
