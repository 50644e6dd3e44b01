/* User stacks by CFI (abi/payload_abi.h section 8): the tables the server
 * sends (USTACK) and the walk bpf_get_stack makes with them. */
#ifndef BPFGRAFT_PAYLOAD_USTACK_H
#define BPFGRAFT_PAYLOAD_USTACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "payload_abi.h"

/* Payload thread: maps the tables in fd and makes them the ones walks use
 * (the previous ones are unmapped after a grace period). */
int ustack_install(int fd, char *err, size_t errlen);

/* Payload thread: whether a walk met a pc the current tables lack since
 * the last call (the server is then asked for fresh ones, once a table). */
bool ustack_take_stale(void);

/* Payload thread, at detach: unmaps the tables (no handler runs). */
void ustack_release(void);

/* The return-address chain of the thread regs belong to, from regs->ip,
 * skipping the first skip frames, into ips[max]; returns how many were
 * written. entry: regs are at a function's first instruction (the return
 * address is at [sp]). Without tables: frame pointers. Never faults, never
 * allocates; makes a syscall only to read a stack the tables do not know. */
uint32_t ustack_walk(const struct bpfg_pt_regs *regs, bool entry, uint64_t *ips, uint32_t max, uint32_t skip);

/* BPF_F_USER_BUILD_ID: the build id of the file mapped at ip and ip's
 * offset in that file; false where the tables know no file with one. */
bool ustack_build_id(uint64_t ip, uint8_t id[20], uint64_t *offset);

#endif
