/* Inline hook generation for uprobes: decides which instructions at a
 * function's entry a 5-byte jmp displaces, relocates them (RIP-relative
 * operands, relative jumps and calls re-encoded) into a stub placed within
 * +-2 GiB, and builds the stub that enters the payload. Decoding uses Zydis.
 *
 * Stub layout (see abi/payload_abi.h):
 *   +0   push imm32 hook_index ; jmp qword [rip+0] ; .quad entry
 *   +32  relocated displaced instructions ; jmp qword [rip+0] ; .quad site+len
 * A plan with mid set (a site inside a function) steps over the red zone:
 *   +0   lea -128(%rsp),%rsp ; push imm32 hook_index|BPFG_HOOK_INDEX_MID ; jmp ...
 *   +32  lea 128(%rsp),%rsp ; relocated displaced instructions ; jmp ...
 */
#ifndef BPFGRAFT_HOOKGEN_H
#define BPFGRAFT_HOOKGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BPFG_HOOK_CODE_WINDOW 256 /* bytes read at the function for planning */
#define BPFG_HOOK_STUB_MAX 256
#define BPFG_HOOK_RESUME_OFF 32
#define BPFG_HOP_SLOT_LEN 5 /* a jmp rel32 */

struct bpfg_hook_plan {
    uint64_t func;    /* the probed address (bpf_get_func_ip) */
    uint64_t site;    /* where the jmp (or int3) goes: func, or after endbr64 */
    size_t patch_len; /* bytes written at site: >= 5 for a jmp, 2 for a hop, 1 for a trap */
    bool trap;        /* an int3 (bpfg_hook_plan_trap), not a jmp */
    bool hop;         /* a 2-byte jmp to a 5-byte jmp at slot (bpfg_hook_plan_hop) */
    bool mid;         /* a jmp or hop inside a function: the stub steps over the red zone (the caller sets it) */
    size_t insn_len;  /* a trap or hop: the length of the instructions run out of line */
    uint64_t slot;    /* a hop: the 5 unreachable bytes that jmp to the stub */
    uint8_t slot_orig[BPFG_HOP_SLOT_LEN], slot_patch[BPFG_HOP_SLOT_LEN];
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

/* Plans a hop at a function's entry addr (the fallback before a trap,
 * as E9Patch's trampoline hopping): a 2-byte `jmp rel8` to slot, 5 bytes
 * no code can reach (the caller proves it: padding after a function's
 * end) that receive a `jmp rel32` to the stub, whose original bytes are
 * slot_bytes. The instruction at addr (and the next if it is one byte
 * long) is run out of line; the caller must prove nothing branches into
 * the bytes after addr they cover (plan->insn_len). -EINVAL when slot is
 * out of rel8 reach or the instructions cannot be relocated. */
int bpfg_hook_plan_hop(uint64_t addr, const uint8_t *code, size_t code_len, uint64_t slot,
                       const uint8_t slot_bytes[BPFG_HOP_SLOT_LEN], struct bpfg_hook_plan *plan, char *err);

/* Builds the stub for stub_addr and the patch bytes (jmp or int3). -ERANGE when the stub
 * or a relocated operand is out of rel32 reach. */
int bpfg_hook_build(struct bpfg_hook_plan *plan, uint64_t stub_addr, uint32_t hook_index, uint64_t entry, char *err);

struct bpfg_stopped;
/* Writes the planned bytes into the stopped process (a hop's slot first),
 * puts the original ones back (the site first; a thread stopped between a
 * hop's two jmps, at the slot, resumes at the site instead, where nothing
 * of the original instruction has run yet), or says whether the planned
 * ones are in place. Writes of more than a byte go through
 * bpfg_text_poke with journal (0: plain writes, for a process without
 * our payload). 0 or -errno. */
int bpfg_hook_patch(const struct bpfg_stopped *st, const struct bpfg_hook_plan *plan, uint64_t journal);
int bpfg_hook_unpatch(struct bpfg_stopped *st, const struct bpfg_hook_plan *plan, uint64_t journal);

/* ---- crash-consistent code writes (textpoke.c) ---- */

struct bpfg_text_write {
    uint64_t site;
    uint64_t resume; /* where a thread meeting the int3 meanwhile continues */
    size_t len;      /* at most BPFG_JOURNAL_BYTES */
    const uint8_t *before, *after;
};

/* Writes n (at most BPFG_JOURNAL_WRITES) code patches into the stopped
 * process int3-first (the kernel's text_poke_bp: an int3 over the first
 * byte, the rest page by page, then the first byte), recorded first in
 * the payload's patch journal at address journal (abi/payload_abi.h), so
 * a server killed at any step leaves no torn instruction and its
 * successor can finish. Without a journal, or for one-byte writes, plain
 * writes (one each: whole only within a page). 0 or -errno. */
int bpfg_text_poke(const struct bpfg_stopped *st, uint64_t journal, const struct bpfg_text_write *w, size_t n);

/* Finishes the patch a killed server left in the journal at address
 * journal: every write of it made to the end. *step: the step it was
 * left at (0: none was under way, nothing done). -EBADMSG when the code
 * holds bytes the journal does not explain (nothing written). */
int bpfg_text_poke_finish(const struct bpfg_stopped *st, uint64_t journal, uint32_t *step);
bool bpfg_hook_in_place(const struct bpfg_stopped *st, const struct bpfg_hook_plan *plan);

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

/* True if nothing in the index enters (site, site+len), [site, site+len)
 * lies inside the function [lo, hi), and every indirect jmp of the
 * function is explained by a jump table of its own; else why not. */
bool bpfg_bytes_unentered(const struct bpfg_branch_index *ix, uint64_t site, size_t len, uint64_t lo, uint64_t hi,
                          char *why, size_t whylen);

/* True if [hi, next) is padding no code reaches: the function at [lo, hi)
 * (code: its bytes and the padding's, from lo) decodes to exactly hi and
 * its last instruction does not fall through, every byte up to next (the
 * next symbol or section) decodes as nop or int3, and nothing in the index
 * enters it. Else false with the reason in why. */
bool bpfg_padding_unreachable(const struct bpfg_branch_index *ix, const uint8_t *code, uint64_t lo, uint64_t hi,
                              uint64_t next, char *why, size_t whylen);

/* The runs of padding inside the function [lo, hi) (code: its bytes) no
 * code reaches: nop or int3 bytes after an instruction that does not fall
 * through, up to the first address the index says control enters; only
 * runs of at least BPFG_HOP_SLOT_LEN bytes, at most max of them into out.
 * Returns how many; 0 too when the function has an indirect jump no table
 * of its own explains or bytes that do not decode (anything may be
 * reached). */
size_t bpfg_dead_runs(const struct bpfg_branch_index *ix, const uint8_t *code, uint64_t lo, uint64_t hi,
                      struct bpfg_text_range *out, size_t max);

/* True if addr starts an instruction when the code at lo (len bytes at
 * code) is decoded from lo on: an offset into a function the kernel would
 * trap at mid-instruction is refused instead. */
bool bpfg_insn_boundary(const uint8_t *code, size_t len, uint64_t lo, uint64_t addr);

/* ---- syscall sites of code without Syscall User Dispatch (hookgen.c) ----
 *
 * Every `syscall` instruction of a function, and how a 5-byte jmp at patch
 * takes it over without touching the syscall itself: either the
 * instruction before it sets the number (`mov $nr,%eax` or `mov
 * $nr,%rax`; nr >= 0, nothing displaced: the stub sets it again), or the
 * number is in rax already and the whole instructions before it that
 * cover at least 5 bytes (displaced, no relative operand, no control
 * transfer) run from the stub first (nr -1). The caller proves nothing
 * branches into (patch, syscall + 2). */
struct bpfg_sys_site_plan {
    uint64_t patch;   /* the jmp's address */
    uint64_t syscall; /* the syscall instruction: patch + the bytes the stub stands for */
    int64_t nr;       /* set by the instruction at patch, or -1 */
    uint8_t displaced[BPFG_HOP_SLOT_LEN + 15];
    size_t ndisplaced; /* nr -1: the bytes at patch the stub runs */
};

/* Decodes the function [lo, lo + len) (code: its bytes) from lo and plans
 * each syscall in it into out (at most max; *n of them). -EINVAL with why
 * naming the address when one cannot be planned, or when bytes that do
 * not decode may hide one; -ENOSPC past max. */
int bpfg_sys_sites_scan(const uint8_t *code, size_t len, uint64_t lo, struct bpfg_sys_site_plan *out, size_t max,
                        size_t *n, char *why, size_t whylen);

#endif
