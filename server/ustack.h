/* User-stack unwind tables for bpf_get_stack (abi/payload_abi.h section
 * 8): compiled from the CFI of every executable file a process maps, with
 * its readable-writable ranges (where its stacks are), into one sealed
 * memfd the payload maps read-only. */
#ifndef BPFGRAFT_SERVER_USTACK_H
#define BPFGRAFT_SERVER_USTACK_H

#include <stddef.h>
#include <sys/types.h>

/* The tables of process pid now: *fd (a sealed memfd, the caller's), 0;
 * or a negative errno with a message in err. A file that cannot be read
 * or parsed is a module without rows (frame pointers there), not an
 * error. */
int ustack_build(pid_t pid, int *fd, char *err, size_t errlen);

#endif
