/* Where a uprobe goes and how: a 5-byte jmp where the whole binary's code
 * proves it safe; else, at a function's entry, a hop (a 2-byte jmp to a
 * 5-byte jmp in the padding after the function) where that is proved
 * safe; else a one-byte trap (payload/trap.c). */
#ifndef BPFGRAFT_SERVER_SITES_H
#define BPFGRAFT_SERVER_SITES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hookgen.h"

/* Plans the probe of addr in pid from the code read there (have bytes).
 * A jmp only at the entry of a function known from the binary's symbols,
 * when bpfg_hook_plan accepts it and the branch index of the file
 * (hookgen.h) shows nothing entering the bytes it covers; otherwise a
 * hop at an entry whose first instruction nothing enters past its first
 * byte and whose function is followed by unreachable padding in rel8
 * reach (sym_next_start bounds it); otherwise a trap. The reason a jmp
 * (and a hop) was not used in why. Refuses (-EINVAL, err) an address that is not
 * an instruction boundary of its function, or an instruction that cannot
 * run out of line. */
int sites_plan(pid_t pid, uint64_t addr, const uint8_t *code, size_t have, struct bpfg_hook_plan *plan, char *why,
               size_t whylen, char *err);

/* Whether nothing in the branch index of the file mapped at addr enters
 * (addr, addr + len), which lies in the function [lo, hi) whose indirect
 * jmps its own jump tables explain (bpfg_bytes_unentered); else why not. */
bool sites_unentered(pid_t pid, uint64_t addr, size_t len, uint64_t lo, uint64_t hi, char *why, size_t whylen);

/* Frees the cached images and branch indexes of pid's files (0: all). */
void sites_forget(pid_t pid);

/* Images of pid read from now on show byte at addr instead of what is in
 * memory (the int3 of a kernel uprobe the offload replaces, offload.h);
 * pid 0 ends that. */
void sites_file_byte(pid_t pid, uint64_t addr, uint8_t byte);

#endif
