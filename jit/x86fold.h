/* Address folding for the x86 JIT (internal to bpfg_vm): where clang's
 * "d = s; d += x; <loads and stores based on d>" can address [s + x + off]
 * directly because d is dead afterwards (register liveness over the
 * program's jumps), so the mov and add are not emitted. */
#ifndef BPFGRAFT_X86FOLD_H
#define BPFGRAFT_X86FOLD_H

#include <stddef.h>
#include <stdint.h>

#include "ebpf.h"

enum { FOLD_NONE, FOLD_SKIP, FOLD_MEM };
#define FOLD_NOREG 0xff

/* Per instruction: FOLD_SKIP (the mov or add, not emitted) or FOLD_MEM
 * (a load or store: its base register replaced by base + index + disp). */
struct x86_fold {
    uint8_t kind;
    uint8_t base, index; /* eBPF registers; index FOLD_NOREG for none */
    int32_t disp;        /* added to the instruction's off */
};

/* The fold plan of n validated instructions; leader[pc] marks the
 * instructions reached other than by falling through (jump and call
 * targets). *out: n entries, free() it. 0 or -ENOMEM. */
int bpfg_x86_fold_plan(const struct bpf_insn *insns, size_t n, const uint8_t *leader, struct x86_fold **out);

#endif
