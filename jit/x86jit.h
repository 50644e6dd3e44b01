/* The x86-64 JIT: a direct one-pass translator from eBPF to machine code,
 * with no LLVM dependency (hosts without LLVM, near-instant attach).
 *
 * The code it produces is position independent: jumps and local calls are
 * relative, lddw immediates are baked in (pseudo forms are resolved at
 * compile time by the same bpfg_ld64_resolver the interpreter uses) and
 * helpers are called through a table whose address is an argument of every
 * run. The same bytes can therefore be copied into another process (e.g. a
 * memfd mapped r-x there) and run after that process filled its own table.
 *
 * Semantics are the interpreter's (jit/vm.c) in unchecked mode: the whole
 * ISA of RFC 9669 + clang -mcpu=v4, div/mod by zero and INT_MIN / -1 per RFC
 * (no trap), 32-bit results zero-extended, shift amounts masked. Memory is
 * NOT bounds-checked: programs must come from the verifier (or be trusted).
 *
 * Calling convention of the code (SysV x86-64):
 *
 *   struct bpfg_x86jit_result fn(void *ctx, size_t len,
 *                                const struct bpfg_x86jit_helper *table,
 *                                void *run_user);
 *
 *   eBPF  r0  r1  r2  r3  r4  r5  r6  r7  r8  r9  r10
 *   x86   rax rdi rsi rdx rcx r8  rbx r13 r14 r15 rbp
 *
 * r1 = ctx, r2 = len, r10 = top of a 512-byte frame, other registers 0.
 * r12 points at a per-run block on the native stack (table, run_user,
 * stack limit); r9, r10, r11 are scratch. The entry reserves 8 x 512 bytes
 * of eBPF stack below its own frame, so a program needs about 4.5 KiB of
 * native stack.
 *
 * Helper calls: r1..r5 are already the SysV argument registers; the 6th
 * argument (r9) is table[id].user, or run_user when compiled with
 * opts.per_run_user. r0 = the helper's return value. r1..r5 keep their
 * values across a helper call (as in the interpreter). A NULL table entry
 * stops the run with -EINVAL. After a call of opts.unwind_id returning 0
 * the program stops with r0 = 0.
 *
 * bpf-to-bpf calls (call local, and callx of a lddw BPF_PSEUDO_FUNC value,
 * FUNC_TAG | index): each callee gets its own 512-byte frame directly below
 * the caller's (r10 - 512, as in the interpreter); r6..r9 are restored on
 * return. The depth limit of 8 frames is enforced at run time (-E2BIG).
 * callx checks its target at run time: a helper id below BPFG_MAX_HELPERS
 * with a non-NULL table entry, or a function reference to an instruction
 * that the program references as a function (a call local or lddw
 * BPF_PSEUDO_FUNC target); anything else stops the run with -EINVAL.
 *
 * Run errors are returned in the second result word, never by trapping:
 * fault = 0 on success, else low 32 bits = negative errno (int32) and high
 * 32 bits = the instruction index. Atomics on misaligned addresses stop the
 * run with -EFAULT, as in the interpreter.
 */
#ifndef BPFGRAFT_X86JIT_H
#define BPFGRAFT_X86JIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ebpf.h"
#include "vm.h"

/* One entry of the helper table (BPFG_MAX_HELPERS entries, indexed by id). */
struct bpfg_x86jit_helper {
    bpfg_helper_fn fn;
    void *user;
};

struct bpfg_x86jit_result {
    uint64_t r0;
    uint64_t fault; /* 0, or (insn << 32) | (uint32_t)-errno */
};

typedef struct bpfg_x86jit_result (*bpfg_x86jit_fn)(void *ctx, size_t len, const struct bpfg_x86jit_helper *table,
                                                    void *run_user);

/* What the server knows about a map, for lookup inlining. */
struct bpfg_jit_map_info {
    uint32_t type;     /* BPF_MAP_TYPE_*: only ARRAY is inlined */
    uint32_t key_size; /* must be 4 */
    uint32_t value_size;
    uint32_t max_entries;
    uint64_t value_base;   /* target address of element 0's value; 0 = unknown */
    uint64_t value_stride; /* bytes between values; 0 = value_size rounded up to 8 */
};

/* Describes the map whose lddw value is `value` (the resolver's result):
 * 0 and *info, or a negative errno (-ENOENT: not a map / unknown). */
typedef int (*bpfg_jit_map_info_fn)(void *user, uint64_t value, struct bpfg_jit_map_info *info);

struct bpfg_x86jit_opts {
    bpfg_ld64_resolver resolver; /* lddw pseudo forms (maps); NULL: refuse them */
    void *resolver_user;
    /* Lookup inlining: for a lddw value described as an ARRAY map (or
     * global data) whose values sit at a known address in the target,
     * bpf_map_lookup_elem (helper 1) with that map in r1 becomes a bounds
     * check plus an address computation, no call. The map must be
     * described by the same value the run-time helper receives as r1.
     * NULL: every lookup calls the helper. */
    bpfg_jit_map_info_fn map_info;
    void *map_info_user;
    /* Bitmap of the helper ids the run-time table will provide: calls to
     * other ids are refused at compile time, as the interpreter does. */
    uint64_t helpers[BPFG_MAX_HELPERS / 64];
    bool has_unwind;
    uint32_t unwind_id;
    bool per_run_user; /* helpers get run_user, not table[id].user */
};

/* Machine code in a plain heap buffer: copy it anywhere and run it there. */
struct bpfg_x86jit_code {
    uint8_t *buf;
    size_t len;
};

struct bpfg_vm;

/* Validates and resolves with the interpreter's loader, so every engine
 * accepts the same programs with the same messages; *vm_out holds the
 * resolved copy (free with bpfg_vm_free). */
int bpfg_x86jit_validate(const struct bpf_insn *insns, size_t n, const struct bpfg_x86jit_opts *opts,
                         struct bpfg_vm **vm_out, char *err, size_t errlen);

/* Validates (as bpfg_vm_load does) and translates n instructions. On error
 * returns a negative errno and a message naming the instruction in err. */
int bpfg_x86jit_compile(const struct bpf_insn *insns, size_t n, const struct bpfg_x86jit_opts *opts,
                        struct bpfg_x86jit_code *out, char *err, size_t errlen);
void bpfg_x86jit_code_free(struct bpfg_x86jit_code *code);

/* Whether a call of helper_id with r1 = r1 is a lookup both JITs inline
 * (opts->map_info describes r1 as an ARRAY at a known address): true and
 * *mi with value_stride filled in. */
bool bpfg_jit_inline_array(const struct bpfg_x86jit_opts *opts, uint32_t helper_id, uint64_t r1,
                           struct bpfg_jit_map_info *mi);

static inline void bpfg_x86jit_allow_helper(struct bpfg_x86jit_opts *opts, uint32_t id)
{
    if (id < BPFG_MAX_HELPERS)
        opts->helpers[id / 64] |= 1ull << (id % 64);
}

#endif
