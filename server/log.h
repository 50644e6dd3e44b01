/* bpfgraftd logging: one line per event, with a timestamp and a level. */
#ifndef BPFGRAFT_SERVER_LOG_H
#define BPFGRAFT_SERVER_LOG_H

#include <stdio.h>

enum srv_log_level { SRV_DEBUG, SRV_INFO, SRV_WARN, SRV_ERROR };

void srv_log_set_level(enum srv_log_level min);
/* Sends further lines to f (default stderr); the caller owns f. */
void srv_log_set_file(FILE *f);
void srv_log(enum srv_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
