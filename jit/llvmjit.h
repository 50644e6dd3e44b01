/* The LLVM JIT: eBPF -> LLVM IR -> optimised x86-64, shipped as a flat
 * position-independent blob.
 *
 * The blob has exactly the x86 JIT's format and calling convention (see
 * x86jit.h): a struct bpfg_x86jit_code whose entry is at offset 0,
 *
 *   struct bpfg_x86jit_result fn(void *ctx, size_t len,
 *                                const struct bpfg_x86jit_helper *table,
 *                                void *run_user);
 *
 * the same helper table, the same per_run_user / unwind / fault semantics
 * (fault = (insn << 32) | (uint32_t)-errno, r0 = 0 on a fault). So the
 * server and the payload treat both engines alike: the bytes are copied
 * into a memfd and mapped r-x at any address in the target.
 *
 * How: the program is validated and its lddw pseudo forms resolved by the
 * interpreter's loader, translated to IR (one LLVM function per eBPF
 * function, registers as allocas promoted by SROA, one basic block per jump
 * target), optimised with the new pass manager (a lean pipeline at levels
 * 1-2, see llvmjit.c; default<O3> at 3), emitted by a target machine
 * reused across compiles as a PIC relocatable object in memory and linked
 * here into one blob: only
 * PC-relative relocations inside the object are accepted, so the blob
 * references nothing outside itself. LLVM never runs in the target.
 *
 * Target-specific speed-ups, all optional:
 *  - jit.map_info: array lookups inlined, as in the x86 JIT (x86jit.h).
 *  - helper_addr: helpers whose address in the target is known are called
 *    directly instead of through the table (no NULL check, no table load).
 * Map and global-data addresses are lddw immediates, hence IR constants.
 *
 * Semantics are the interpreter's in unchecked mode, exactly as x86jit.h
 * describes (div/mod by zero, INT_MIN / -1, masked shifts, r1..r5 preserved
 * across helper calls, r1..r5 of a bpf-to-bpf callee visible to the caller,
 * 8 frames of 512 bytes, run-time checks of callx targets, misaligned
 * atomics fault).
 */
#ifndef BPFGRAFT_LLVMJIT_H
#define BPFGRAFT_LLVMJIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "x86jit.h"

struct bpfg_llvmjit_opts {
    struct bpfg_x86jit_opts jit; /* resolver, map_info, allowed helpers, unwind, per_run_user */
    const uint64_t *helper_addr; /* BPFG_MAX_HELPERS target addresses (0 = via table) or NULL */
    /* 0..3; 0 means the default, 2 (lean pipeline, loops over memory
     * unrolled); 1: no unrolling, the quickest compile (memcpy-like loops
     * run up to 2.4x slower); 3: LLVM's full O3 (slower compile) */
    int opt_level;
    /* Map references (lddw map fd/idx/value forms) read their value from a
     * slot in the blob instead of being immediates, so one compilation
     * serves every target: bpfg_llvmjit_blob_bind() fills the slots. For
     * ahead-of-time compiles and the on-disk cache. */
    bool relocatable_maps;
};

enum bpfg_llvmjit_reloc_kind {
    BPFG_LLVMJIT_RELOC_LDDW = 0,       /* the resolver's value of the lddw */
    BPFG_LLVMJIT_RELOC_ARRAY_BASE = 1, /* jit.map_info's value_base of that map */
};

/* An 8-byte little-endian slot of a relocatable blob. */
struct bpfg_llvmjit_reloc {
    uint32_t offset; /* in the blob */
    uint32_t insn;   /* the lddw instruction it belongs to */
    uint32_t kind;   /* enum bpfg_llvmjit_reloc_kind */
};

/* Code plus its slots (none unless relocatable_maps). */
struct bpfg_llvmjit_blob {
    struct bpfg_x86jit_code code;
    struct bpfg_llvmjit_reloc *relocs;
    size_t nrelocs;
};

/* Compile statistics (optional output). */
struct bpfg_llvmjit_stats {
    double ir_ms, opt_ms, codegen_ms, link_ms;
    uint32_t inlined_lookups; /* map lookups turned into loads */
    uint32_t direct_calls;    /* helper calls through helper_addr */
};

/* Validates (as bpfg_vm_load does) and compiles n instructions into a flat
 * PIC blob (out->code, entry at offset 0) with its slot list
 * (relocatable_maps). Free with bpfg_llvmjit_blob_free. On error returns a
 * negative errno and a message in err (naming the instruction for a
 * refused program). stats may be NULL. Thread-safe. */
int bpfg_llvmjit_compile_blob(const struct bpf_insn *insns, size_t n, const struct bpfg_llvmjit_opts *opts,
                              struct bpfg_llvmjit_blob *out, struct bpfg_llvmjit_stats *stats, char *err,
                              size_t errlen);
void bpfg_llvmjit_blob_free(struct bpfg_llvmjit_blob *blob);

/* Several programs compiled together: one LLVM module, one codegen run,
 * one blob (LLVM's codegen costs about 0.7 ms a module before it compiles
 * anything, paid once here instead of once a program). Each program is
 * validated, translated and optimised on its own, exactly as
 * bpfg_llvmjit_compile_blob would (its own pipeline; every symbol named
 * after its index, so functions and slots of two programs never meet),
 * then the modules are linked and emitted together. The code of program i
 * starts at entry_off[i] (same calling convention as a single blob); its
 * slots are blob.relocs[i ? reloc_end[i - 1] : 0 .. reloc_end[i]). */
#define BPFG_LLVMJIT_MAX_BATCH 256

struct bpfg_llvmjit_prog {
    const struct bpf_insn *insns;
    size_t n;
};

struct bpfg_llvmjit_batch {
    struct bpfg_llvmjit_blob blob;
    uint32_t *entry_off; /* nprogs */
    uint32_t *reloc_end; /* nprogs */
    size_t nprogs;
};

/* Compiles nprogs (1..BPFG_LLVMJIT_MAX_BATCH) programs with one set of
 * options into out (free with bpfg_llvmjit_batch_free). Fails whole when
 * one program fails (err names its index). stats (may be NULL) sums the
 * phases. Thread-safe. */
int bpfg_llvmjit_compile_batch(const struct bpfg_llvmjit_prog *progs, size_t nprogs,
                               const struct bpfg_llvmjit_opts *opts, struct bpfg_llvmjit_batch *out,
                               struct bpfg_llvmjit_stats *stats, char *err, size_t errlen);
void bpfg_llvmjit_batch_free(struct bpfg_llvmjit_batch *b);

/* Binds every program's slots (bpfg_llvmjit_blob_bind, program i with
 * progs[i]'s instructions). */
int bpfg_llvmjit_batch_bind(struct bpfg_llvmjit_batch *b, const struct bpfg_llvmjit_prog *progs,
                            const struct bpfg_llvmjit_opts *opts, char *err, size_t errlen);

/* The cache key of a batch, from its programs' keys (bpfg_llvmjit_key,
 * same options) in order: a batch entry never answers a single lookup. */
void bpfg_llvmjit_batch_key(const uint8_t (*keys)[16], size_t nprogs, uint8_t key[16]);

/* Binds a relocatable blob to a target: every slot gets the value
 * opts->jit.resolver gives for its lddw in insns (the original program),
 * or jit.map_info's value_base of that map. -ESTALE when an inlined array's
 * address is unknown now. Call before copying the code to the target. */
int bpfg_llvmjit_blob_bind(struct bpfg_llvmjit_blob *blob, const struct bpf_insn *insns, size_t n,
                           const struct bpfg_llvmjit_opts *opts, char *err, size_t errlen);

/* The cache key of a compilation: a 128-bit hash of the resolved
 * instructions (with relocatable_maps: map references as in the object,
 * so the key is the same for every target), every input that changes the
 * code (unwind, per_run_user, map descriptions, helper addresses, opt level), the host
 * CPU and features, and the LLVM version. Same key, same blob. The allowed
 * helpers are not part of it: they decide validation only. Returns 0,
 * or a negative errno and err when the program does not validate. */
int bpfg_llvmjit_key(const struct bpf_insn *insns, size_t n, const struct bpfg_llvmjit_opts *opts, uint8_t key[16],
                     char *err, size_t errlen);

#endif
