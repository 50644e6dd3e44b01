/* Shared by the injector's modules; not part of its API. */
#ifndef BPFG_INJECTOR_INTERNAL_H
#define BPFG_INJECTOR_INTERNAL_H

/* Formats the message into err (BPFG_ERRLEN bytes, may be NULL) and
 * returns code: `return bpfg_inj_fail(err, -EINVAL, "...", ...);` */
int bpfg_inj_fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
