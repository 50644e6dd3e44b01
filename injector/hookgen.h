/* Inline hook generation for uprobes: decides which instructions at a
 * function's entry a 5-byte jmp displaces, relocates them (RIP-relative
 * operands, relative jumps and calls re-encoded) into a stub placed within
 * +-2 GiB, and builds the stub that enters the payload. Decoding uses Zydis.
 *
 * Stub layout (see abi/payload_abi.h):
 *   +0   push imm32 hook_index ; jmp qword [rip+0] ; .quad entry
 *   +32  relocated displaced instructions ; jmp qword [rip+0] ; .quad site+len
 */
#ifndef BPFGRAFT_HOOKGEN_H
#define BPFGRAFT_HOOKGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BPFG_HOOK_CODE_WINDOW 256 /* bytes read at the function for planning */
#define BPFG_HOOK_STUB_MAX 256
#define BPFG_HOOK_RESUME_OFF 32

struct bpfg_hook_plan {
    uint64_t func;     /* the probed address (bpf_get_func_ip) */
    uint64_t site;     /* where the jmp (or int3) goes: func, or after endbr64 */
    size_t patch_len;  /* bytes written at site: >= 5 for a jmp, 1 for a trap */
    bool trap;         /* an int3 (bpfg_hook_plan_trap), not a jmp */
    size_t insn_len;   /* a trap: the length of the instruction run out of line */
    bool has_call;     /* a displaced call: frames may return into the
                                      * patch (before) or the stub (after) */
    uint8_t orig[16];  /* the original bytes at site (a trap: the whole instruction) */
    uint8_t patch[16]; /* jmp rel32 + nop padding, or int3 (after build) */
    uint8_t stub[BPFG_HOOK_STUB_MAX];
    size_t stub_len;
    uint64_t stub_addr;
};

/* Plans a hook at func from the code bytes found there (code_len bytes
 * read at func, ideally BPFG_HOOK_CODE_WINDOW). Refuses with -EINVAL and
 * a reason in err when the site cannot be patched safely: too short,
 * control leaves within the displaced bytes, an instruction that cannot be
 * relocated, a later branch back into the displaced bytes. */
int bpfg_hook_plan(uint64_t func, const uint8_t *code, size_t code_len, struct bpfg_hook_plan *plan, char *err);

/* Plans a one-byte trap (int3) at addr, the fallback where a jmp is not
 * provably safe: the instruction at addr (decoded from code) is run out of
 * line from the stub's resume code, as the kernel's uprobes do. Refuses
 * with -EINVAL what cannot run elsewhere (an int3 or int n already there,
 * undecodable bytes). */
int bpfg_hook_plan_trap(uint64_t addr, const uint8_t *code, size_t code_len, struct bpfg_hook_plan *plan, char *err);

/* Builds the stub for stub_addr and the patch bytes (jmp or int3). -ERANGE when the stub
 * or a relocated operand is out of rel32 reach. */
int bpfg_hook_build(struct bpfg_hook_plan *plan, uint64_t stub_addr, uint32_t hook_index, uint64_t entry, char *err);

/* ---- whole-binary branch analysis (sitescan.c) ----
 *
 * Whether a 5-byte jmp at a function's entry is provably safe: no code
 * may enter the bytes it covers other than at their first one. The index
 * collects, over one mapped file, every address control can reach other
 * than by falling through: direct jmp/jcc/call/loop targets, code
 * addresses computed with a RIP-relative lea (computed goto), the entries
 * of jump tables (RIP-relative lea of a table of int32 offsets, as gcc and
 * clang emit them; absolute `jmp *table(,%reg,8)` tables of non-PIE code),
 * and where it cannot know them: indirect jmps no table explains and
 * undecodable bytes. */
struct bpfg_text_range {
    uint64_t lo, hi;
};

struct bpfg_text_image {
    uint64_t base;        /* runtime address of bytes[0] */
    const uint8_t *bytes; /* the file's mappings, gaps zeroed */
    size_t len;
    const struct bpfg_text_range *exec; /* its executable ranges */
    size_t nexec;
};

struct bpfg_branch_index {
    uint64_t *targets; /* sorted */
    size_t ntargets;
    uint64_t *unknown; /* sorted: indirect jmps through a register or an
                        * indexed memory operand, and undecodable bytes */
    size_t nunknown;
    uint64_t *tables; /* sorted: leas of a jump table found */
    size_t ntables;
};

/* 0, -ENOMEM. */
int bpfg_branch_index_build(const struct bpfg_text_image *img, struct bpfg_branch_index *ix);
void bpfg_branch_index_free(struct bpfg_branch_index *ix);

/* True if a jmp over plan (planned at the entry of the function [lo, hi))
 * is provably safe: nothing in the index enters (site, site+patch_len), and
 * every indirect jmp of the function is explained by a jump table of its
 * own. Else false with the reason in why. */
bool bpfg_jmp_provably_safe(const struct bpfg_branch_index *ix, const struct bpfg_hook_plan *plan, uint64_t lo,
                            uint64_t hi, char *why, size_t whylen);

/* True if addr starts an instruction when the code at lo (len bytes at
 * code) is decoded from lo on: an offset into a function the kernel would
 * trap at mid-instruction is refused instead. */
bool bpfg_insn_boundary(const uint8_t *code, size_t len, uint64_t lo, uint64_t addr);

#endif
