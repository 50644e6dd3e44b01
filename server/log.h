/* bpfgraftd logging: one line per event, with a timestamp and a level. */
#ifndef BPFGRAFT_SERVER_LOG_H
#define BPFGRAFT_SERVER_LOG_H

#include <stddef.h>
#include <stdio.h>

enum srv_log_level { SRV_DEBUG, SRV_INFO, SRV_WARN, SRV_ERROR };

void srv_log_set_level(enum srv_log_level min);
/* Sends further lines to f (default stderr); the caller owns f. */
void srv_log_set_file(FILE *f);
void srv_log(enum srv_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes a message into err (errlen bytes) and returns code: the
 * "return srv_efail(err, errlen, -EINVAL, ...)" of functions reporting why. */
int srv_efail(char *err, size_t errlen, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#endif
