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
    uint64_t site;     /* where the jmp goes: func, or after endbr64 */
    size_t patch_len;  /* displaced bytes, >= 5 */
    bool has_call;     /* a displaced call: frames may return into the
                                      * patch (before) or the stub (after) */
    uint8_t orig[16];  /* the original bytes at site */
    uint8_t patch[16]; /* jmp rel32 + nop padding (after build) */
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

/* Builds the stub for stub_addr and the patch bytes. -ERANGE when the stub
 * or a relocated operand is out of rel32 reach. */
int bpfg_hook_build(struct bpfg_hook_plan *plan, uint64_t stub_addr, uint32_t hook_index, uint64_t entry, char *err);

#endif
