/* Programs run on a timer by the payload thread (BPFG_PMSG_TIMER): the
 * userspace form of a perf_event program on a cpu-clock event, which is
 * what bpftrace's interval: probes are. */
#ifndef BPFGRAFT_PAYLOAD_TIMER_H
#define BPFGRAFT_PAYLOAD_TIMER_H

#include <stddef.h>
#include <stdint.h>

/* BPFG_PMSG_TIMER: 0 or a negative errno with a message in err. */
int timer_set(const void *body, size_t len, char *err, size_t errlen);
/* Stops the timers of a program being unloaded. */
void timer_forget_prog(uint32_t prog_id);
/* How long the payload thread may wait for messages, at most max_ms. */
int timer_wait_ms(int max_ms);
/* Runs the programs whose time has come (payload thread). */
void timer_run_due(void);

#endif
