/* The eBPF virtual machine: load, check and interpret eBPF programs.
 *
 * Conventions follow libbpf: functions that can fail return 0 or a negative
 * errno; constructors return NULL and set errno. When loading or running
 * fails, bpfg_vm_error() holds a message naming the instruction.
 */
#ifndef BPFGRAFT_VM_H
#define BPFGRAFT_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ebpf.h"

struct bpfg_vm;

#define BPFG_MAX_HELPERS 256 /* helper ids 0..255 */
#define BPFG_MAX_INSNS 1000000

/* A helper: receives r1..r5 and the opaque pointer given at registration
 * (the runtime context of the caller), returns r0. */
typedef uint64_t (*bpfg_helper_fn)(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, void *user);

/* Resolves the pseudo forms of lddw (src_reg != 0: map fd/idx, map value,
 * BTF id, function) at load time. imm0/imm1 are the two immediates. Returns
 * 0 and the 64-bit value to load, or a negative errno to refuse the program. */
typedef int (*bpfg_ld64_resolver)(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value);

struct bpfg_vm *bpfg_vm_new(void);
void bpfg_vm_free(struct bpfg_vm *vm);

/* Last load or run error, "" if none. Valid until the next call on vm. */
const char *bpfg_vm_error(const struct bpfg_vm *vm);

int bpfg_vm_register_helper(struct bpfg_vm *vm, uint32_t id, const char *name, bpfg_helper_fn fn, void *user);
/* Name of a registered helper, or NULL. */
const char *bpfg_vm_helper_name(const struct bpfg_vm *vm, uint32_t id);
/* After a call of this helper returns 0, the program stops and returns 0
 * (the "unwind" helper of the conformance suite). */
int bpfg_vm_set_unwind_helper(struct bpfg_vm *vm, uint32_t id);
void bpfg_vm_set_ld64_resolver(struct bpfg_vm *vm, bpfg_ld64_resolver fn, void *user);

/* Checked mode (default on): every load and store must fall inside the
 * current stack frames, the context memory or a registered region; a bad
 * access stops the program with -EFAULT instead of touching memory. */
void bpfg_vm_set_checked(struct bpfg_vm *vm, bool checked);
int bpfg_vm_add_region(struct bpfg_vm *vm, const void *addr, size_t len, bool writable);

/* Validates and copies the program (n instructions of 8 bytes). Errors:
 * -EINVAL with a message for an unknown opcode, bad register, jump out of
 * range, split lddw, missing exit, falling off the end, unknown helper. */
int bpfg_vm_load(struct bpfg_vm *vm, const struct bpf_insn *insns, size_t n);
const struct bpf_insn *bpfg_vm_insns(const struct bpfg_vm *vm);
/* Loading appends stubs for helpers that take callbacks (callbacks.h):
 * the count below is the loaded program's, and the JITs compile the
 * lowered program (lddw still unresolved; NULL when nothing was lowered). */
size_t bpfg_vm_insn_count(const struct bpfg_vm *vm);
const struct bpf_insn *bpfg_vm_lowered_insns(const struct bpfg_vm *vm);

/* Runs the loaded program with r1 = ctx, r2 = ctx_len. On success stores r0
 * in *ret and returns 0; a faulting program returns a negative errno. */
int bpfg_vm_exec(struct bpfg_vm *vm, void *ctx, size_t ctx_len, uint64_t *ret);

/* Like bpfg_vm_exec, but every helper called during this run receives
 * exec_user instead of its registration's user pointer: a per-run context
 * (the hooked thread's registers, override state) without thread-local
 * storage. */
int bpfg_vm_exec_ctx(struct bpfg_vm *vm, void *ctx, size_t ctx_len, void *exec_user, uint64_t *ret);

#endif
