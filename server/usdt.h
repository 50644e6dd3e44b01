/* USDT (statically defined tracepoints, <sys/sdt.h>): the semaphores a
 * process counts its probes' users in. See server/README.md, "USDT". */
#ifndef BPFGRAFT_SERVER_USDT_H
#define BPFGRAFT_SERVER_USDT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Adds delta to the u16 semaphore at addr in pid, as the kernel's uprobe
 * ref_ctr does: the probe's code runs while it is not 0. A count that
 * would go below 0 stays 0. 0 or -errno with err set. */
int usdt_sem_add(pid_t pid, uint64_t addr, int delta, char *err, size_t errlen);

#endif
