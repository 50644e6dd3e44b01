/* Hook planning and stub generation with the Zydis decoder. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>

#include <Zydis/Zydis.h>

#include "hookgen.h"
#include "injector.h"
#include "internal.h"

#define JMP_LEN 5

/* lea leaves the flags alone */
static const uint8_t LEA_RSP_MINUS_128[] = {0x48, 0x8d, 0x64, 0x24, 0x80};
static const uint8_t LEA_RSP_PLUS_128[] = {0x48, 0x8d, 0xa4, 0x24, 0x80, 0x00, 0x00, 0x00};

static bool decode(const ZydisDecoder *dec, const uint8_t *code, size_t len, ZydisDecodedInstruction *insn,
                   ZydisDecodedOperand *ops)
{
    return ZYAN_SUCCESS(ZydisDecoderDecodeFull(dec, code, len, insn, ops));
}

static bool is_rip_relative_mem(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops)
{
    for (unsigned i = 0; i < insn->operand_count; i++)
        if (ops[i].type == ZYDIS_OPERAND_TYPE_MEMORY && ops[i].mem.base == ZYDIS_REGISTER_RIP)
            return true;
    return false;
}

static bool relative_target(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops, uint64_t at,
                            uint64_t *target)
{
    for (unsigned i = 0; i < insn->operand_count; i++) {
        if (ops[i].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && ops[i].imm.is_relative) {
            *target = at + insn->length + (uint64_t)ops[i].imm.value.s;
            return true;
        }
    }
    return false;
}

int bpfg_hook_plan(uint64_t func, const uint8_t *code, size_t code_len, struct bpfg_hook_plan *plan, char *err)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    size_t off = 0;

    memset(plan, 0, sizeof(*plan));
    plan->func = func;
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
        return bpfg_inj_fail(err, -EINVAL, "cannot initialise the x86 decoder");

    /* endbr64 stays in place: indirect calls must still land on it. */
    if (decode(&dec, code, code_len, &insn, ops) && insn.mnemonic == ZYDIS_MNEMONIC_ENDBR64)
        off = insn.length;
    plan->site = func + off;
    size_t start = off;

    while (off - start < JMP_LEN) {
        if (off >= code_len || !decode(&dec, code + off, code_len - off, &insn, ops))
            return bpfg_inj_fail(err, -EINVAL, "cannot decode the instruction at 0x%llx",
                                 (unsigned long long)(func + off));
        switch (insn.meta.category) {
        case ZYDIS_CATEGORY_RET:
        case ZYDIS_CATEGORY_UNCOND_BR:
        case ZYDIS_CATEGORY_INTERRUPT:
            return bpfg_inj_fail(err, -EINVAL,
                                 "function at 0x%llx is too short to patch: it returns or jumps away within its first "
                                 "%zu bytes, a hook needs %d",
                                 (unsigned long long)func, off - start + insn.length, JMP_LEN);
        default: break;
        }
        if (insn.meta.category == ZYDIS_CATEGORY_CALL)
            plan->has_call = true;
        if (insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE) {
            uint64_t target;
            bool branch = relative_target(&insn, ops, func + off, &target);
            bool ok_branch =
                branch && (insn.meta.category == ZYDIS_CATEGORY_COND_BR || insn.meta.category == ZYDIS_CATEGORY_CALL) &&
                insn.mnemonic != ZYDIS_MNEMONIC_JRCXZ && insn.mnemonic != ZYDIS_MNEMONIC_JECXZ &&
                insn.mnemonic != ZYDIS_MNEMONIC_LOOP && insn.mnemonic != ZYDIS_MNEMONIC_LOOPE &&
                insn.mnemonic != ZYDIS_MNEMONIC_LOOPNE;
            bool ok_mem = !branch && is_rip_relative_mem(&insn, ops) && insn.raw.disp.size == 32;
            if (!ok_branch && !ok_mem)
                return bpfg_inj_fail(err, -EINVAL, "cannot relocate the instruction at 0x%llx (relative operand)",
                                     (unsigned long long)(func + off));
        }
        off += insn.length;
    }
    plan->patch_len = off - start;
    if (plan->patch_len > sizeof(plan->orig))
        return bpfg_inj_fail(err, -EINVAL, "displaced instructions too long (%zu bytes)", plan->patch_len);
    memcpy(plan->orig, code + start, plan->patch_len);

    /* No later branch of the function may land inside the displaced bytes
     * (a loop back to the second instruction would execute half a jmp). */
    uint64_t lo = plan->site + 1, hi = plan->site + plan->patch_len;
    for (size_t at = off; at < code_len;) {
        if (!decode(&dec, code + at, code_len - at, &insn, ops))
            break;
        uint64_t target;
        if ((insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE) && relative_target(&insn, ops, func + at, &target) &&
            target >= lo && target < hi)
            return bpfg_inj_fail(err, -EINVAL, "instruction at 0x%llx branches into the bytes a hook would replace",
                                 (unsigned long long)(func + at));
        if (insn.meta.category == ZYDIS_CATEGORY_RET || insn.meta.category == ZYDIS_CATEGORY_INTERRUPT)
            break;
        at += insn.length;
    }
    return 0;
}

/* An instruction that can run out of line from a stub: not itself a
 * trap, its relative operand re-encodable. */
static int out_of_line_ok(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops, uint64_t at, char *err)
{
    if (insn->meta.category == ZYDIS_CATEGORY_INTERRUPT)
        return bpfg_inj_fail(err, -EINVAL, "the instruction at 0x%llx is itself a trap (%s): it cannot be probed",
                             (unsigned long long)at, ZydisMnemonicGetString(insn->mnemonic));
    uint64_t target;
    if ((insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE) && !relative_target(insn, ops, at, &target) &&
        !(is_rip_relative_mem(insn, ops) && insn->raw.disp.size == 32))
        return bpfg_inj_fail(err, -EINVAL, "cannot relocate the instruction at 0x%llx (relative operand)",
                             (unsigned long long)at);
    return 0;
}

int bpfg_hook_plan_trap(uint64_t addr, const uint8_t *code, size_t code_len, struct bpfg_hook_plan *plan, char *err)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];

    memset(plan, 0, sizeof(*plan));
    plan->func = plan->site = addr;
    plan->trap = true;
    plan->patch_len = 1;
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
        return bpfg_inj_fail(err, -EINVAL, "cannot initialise the x86 decoder");
    if (!decode(&dec, code, code_len, &insn, ops))
        return bpfg_inj_fail(err, -EINVAL, "cannot decode the instruction at 0x%llx", (unsigned long long)addr);
    int r = out_of_line_ok(&insn, ops, addr, err);
    if (r)
        return r;
    plan->insn_len = insn.length;
    plan->has_call = insn.meta.category == ZYDIS_CATEGORY_CALL;
    memcpy(plan->orig, code, insn.length);
    return 0;
}

/* Whether control can leave a one-byte instruction other than by falling
 * through to the next (a hop must then displace that one too). */
static bool transfers(const ZydisDecodedInstruction *insn)
{
    switch (insn->meta.category) {
    case ZYDIS_CATEGORY_RET:
    case ZYDIS_CATEGORY_UNCOND_BR:
    case ZYDIS_CATEGORY_COND_BR:
    case ZYDIS_CATEGORY_CALL:
    case ZYDIS_CATEGORY_INTERRUPT:
    case ZYDIS_CATEGORY_SYSTEM: return true;
    default: return false;
    }
}

int bpfg_hook_plan_hop(uint64_t addr, const uint8_t *code, size_t code_len, uint64_t slot,
                       const uint8_t slot_bytes[BPFG_HOP_SLOT_LEN], struct bpfg_hook_plan *plan, char *err)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];

    memset(plan, 0, sizeof(*plan));
    plan->func = plan->site = addr;
    plan->hop = true;
    plan->patch_len = 2;
    plan->slot = slot;
    int64_t rel = (int64_t)(slot - (addr + 2));
    if (rel < INT8_MIN || rel > INT8_MAX)
        return bpfg_inj_fail(err, -EINVAL, "0x%llx is out of a short jmp's reach of 0x%llx", (unsigned long long)slot,
                             (unsigned long long)addr);
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
        return bpfg_inj_fail(err, -EINVAL, "cannot initialise the x86 decoder");
    size_t off = 0;
    while (off < plan->patch_len) {
        if (off >= code_len || !decode(&dec, code + off, code_len - off, &insn, ops))
            return bpfg_inj_fail(err, -EINVAL, "cannot decode the instruction at 0x%llx",
                                 (unsigned long long)(addr + off));
        int r = out_of_line_ok(&insn, ops, addr + off, err);
        if (r)
            return r;
        if (off + insn.length < plan->patch_len && transfers(&insn))
            return bpfg_inj_fail(err, -EINVAL, "the one-byte instruction at 0x%llx leaves before a short jmp's end",
                                 (unsigned long long)addr);
        plan->has_call |= insn.meta.category == ZYDIS_CATEGORY_CALL;
        off += insn.length;
    }
    plan->insn_len = off;
    memcpy(plan->orig, code, off);
    memcpy(plan->slot_orig, slot_bytes, BPFG_HOP_SLOT_LEN);
    return 0;
}

static bool fits32(int64_t v)
{
    return v >= INT32_MIN && v <= INT32_MAX;
}

static void put32(uint8_t *p, int32_t v)
{
    memcpy(p, &v, 4);
}
static void put64(uint8_t *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

/* jmp qword [rip+0] ; .quad target */
static size_t emit_abs_jmp(uint8_t *p, uint64_t target)
{
    p[0] = 0xff, p[1] = 0x25;
    put32(p + 2, 0);
    put64(p + 6, target);
    return 14;
}

/* call [rip+2] ; jmp +8 ; .quad target: returns into the stub */
static size_t emit_call(uint8_t *p, uint64_t target)
{
    p[0] = 0xff, p[1] = 0x15;
    put32(p + 2, 2);
    p[6] = 0xeb, p[7] = 0x08;
    put64(p + 8, target);
    return 16;
}

/* A conditional branch: jcc by its inverted short form over an absolute
 * jmp; jrcxz/jecxz/loop* (rel8 only) taken to an absolute jmp, else over it. */
static size_t emit_cond(uint8_t *p, const ZydisDecodedInstruction *insn, const uint8_t *b, uint64_t target)
{
    const uint8_t *op = b + insn->raw.prefix_count;
    if ((op[0] & 0xf0) == 0x70 || op[0] == 0x0f) {
        uint8_t cc = op[0] == 0x0f ? (op[1] & 0x0f) : (op[0] & 0x0f);
        p[0] = (uint8_t)(0x70 | (cc ^ 1));
        p[1] = 14;
        return 2 + emit_abs_jmp(p + 2, target);
    }
    size_t n = insn->length; /* prefixes, opcode, rel8 */
    memcpy(p, b, n);
    p[n - 1] = 2;               /* taken: over the next jmp */
    p[n] = 0xeb, p[n + 1] = 14; /* not taken: over the absolute jmp */
    return n + 2 + emit_abs_jmp(p + n + 2, target);
}

/* RIP-relative memory operand: same bytes, new displacement. */
static int emit_riprel(uint8_t *p, const ZydisDecodedInstruction *insn, const uint8_t *b, uint64_t old_at,
                       uint64_t new_at, char *err)
{
    uint64_t mem_target = old_at + insn->length + (uint64_t)insn->raw.disp.value;
    int64_t disp = (int64_t)(mem_target - (new_at + insn->length));
    if (!fits32(disp))
        return bpfg_inj_fail(err, -ERANGE, "RIP-relative operand at 0x%llx is out of reach from the stub",
                             (unsigned long long)old_at);
    memcpy(p, b, insn->length);
    put32(p + insn->raw.disp.offset, (int32_t)disp);
    return (int)insn->length;
}

/* push $ret (as two halves: push imm32 sign-extends) ; jmp target */
static size_t emit_call_from(uint8_t *p, uint64_t ret, uint64_t target)
{
    p[0] = 0x68;
    put32(p + 1, (int32_t)(uint32_t)ret);
    p[5] = 0xc7, p[6] = 0x44, p[7] = 0x24, p[8] = 0x04; /* movl $hi, 4(%rsp) */
    put32(p + 9, (int32_t)(uint32_t)(ret >> 32));
    return 13 + emit_abs_jmp(p + 13, target);
}

/* One displaced instruction at old_at, re-encoded at p (stub address
 * new_at); end: where the displaced bytes end if it is the last of them,
 * else 0. Returns the bytes written or -errno. */
static int relocate_one(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops, const uint8_t *b,
                        uint64_t old_at, uint64_t new_at, uint64_t end, uint8_t *p, char *err)
{
    uint64_t target;
    if (!(insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE)) {
        memcpy(p, b, insn->length);
        return (int)insn->length;
    }
    if (!relative_target(insn, ops, old_at, &target))
        return emit_riprel(p, insn, b, old_at, new_at, err);
    switch (insn->meta.category) {
    case ZYDIS_CATEGORY_CALL:
        /* The last displaced instruction: push the original return address
         * and jmp, as the kernel emulates a call. The callee returns into
         * the function itself, and unwinders (C++ exceptions) find the
         * function's own CFI there. */
        return (int)(end ? emit_call_from(p, end, target) : emit_call(p, target));
    case ZYDIS_CATEGORY_UNCOND_BR: return (int)emit_abs_jmp(p, target);
    default: return (int)emit_cond(p, insn, b, target);
    }
}

/* The displaced instructions (len bytes of plan->orig) into the stub at
 * *out, which advances. */
static int relocate(const ZydisDecoder *dec, struct bpfg_hook_plan *plan, size_t len, size_t *out, char *err)
{
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    for (size_t off = 0; off < len;) {
        uint64_t old_at = plan->site + off;
        if (!decode(dec, plan->orig + off, len - off, &insn, ops))
            return bpfg_inj_fail(err, -EINVAL, "cannot re-decode the instruction at 0x%llx",
                                 (unsigned long long)old_at);
        if (*out + 40 > BPFG_HOOK_STUB_MAX)
            return bpfg_inj_fail(err, -E2BIG, "stub too large");
        uint64_t end = off + insn.length == len ? plan->site + len : 0;
        int n = relocate_one(&insn, ops, plan->orig + off, old_at, plan->stub_addr + *out, end, plan->stub + *out, err);
        if (n < 0)
            return n;
        *out += (size_t)n;
        off += insn.length;
    }
    return 0;
}

/* The patch bytes once the stub is at plan->stub_addr. */
static int build_patch(struct bpfg_hook_plan *plan, char *err)
{
    if (plan->trap) {
        plan->patch[0] = 0xcc;
        return 0;
    }
    uint64_t from = plan->hop ? plan->slot : plan->site;
    int64_t rel = (int64_t)(plan->stub_addr - (from + JMP_LEN));
    if (!fits32(rel))
        return bpfg_inj_fail(err, -ERANGE, "stub at 0x%llx is out of jmp reach of 0x%llx",
                             (unsigned long long)plan->stub_addr, (unsigned long long)from);
    uint8_t *jmp = plan->hop ? plan->slot_patch : plan->patch;
    jmp[0] = 0xe9;
    put32(jmp + 1, (int32_t)rel);
    if (plan->hop) {
        plan->patch[0] = 0xeb;
        plan->patch[1] = (uint8_t)(int8_t)(int64_t)(plan->slot - (plan->site + 2));
        return 0;
    }
    memset(plan->patch + JMP_LEN, 0x90, plan->patch_len - JMP_LEN);
    return 0;
}

int bpfg_hook_build(struct bpfg_hook_plan *plan, uint64_t stub_addr, uint32_t hook_index, uint64_t entry, char *err)
{
    ZydisDecoder dec;
    uint8_t *s = plan->stub;

    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
        return bpfg_inj_fail(err, -EINVAL, "cannot initialise the x86 decoder");
    memset(s, 0xcc, BPFG_HOOK_STUB_MAX);
    plan->stub_addr = stub_addr;
    int r = build_patch(plan, err);
    if (r)
        return r;

    size_t out = 0;
    if (plan->mid) { /* a leaf function's red zone may be live here */
        memcpy(s, LEA_RSP_MINUS_128, sizeof(LEA_RSP_MINUS_128));
        out = sizeof(LEA_RSP_MINUS_128);
        hook_index |= BPFG_HOOK_INDEX_MID;
    }
    s[out] = 0x68; /* push imm32 hook_index */
    put32(s + out + 1, (int32_t)hook_index);
    emit_abs_jmp(s + out + 5, entry);

    out = BPFG_HOOK_RESUME_OFF;
    if (plan->mid) {
        memcpy(s + out, LEA_RSP_PLUS_128, sizeof(LEA_RSP_PLUS_128));
        out += sizeof(LEA_RSP_PLUS_128);
    }
    size_t len = plan->trap || plan->hop ? plan->insn_len : plan->patch_len;
    r = relocate(&dec, plan, len, &out, err);
    if (r)
        return r;
    out += emit_abs_jmp(s + out, plan->site + len);
    plan->stub_len = out;
    return 0;
}

int bpfg_hook_patch(const struct bpfg_stopped *st, const struct bpfg_hook_plan *plan, uint64_t journal)
{
    struct bpfg_text_write w[2] = {
        {plan->slot, plan->stub_addr, BPFG_HOP_SLOT_LEN, plan->slot_orig, plan->slot_patch},
        {plan->site, plan->stub_addr, plan->patch_len, plan->orig, plan->patch},
    };
    return plan->hop ? bpfg_text_poke(st, journal, w, 2) : bpfg_text_poke(st, journal, &w[1], 1);
}

int bpfg_hook_unpatch(struct bpfg_stopped *st, const struct bpfg_hook_plan *plan, uint64_t journal)
{
    struct bpfg_text_write site = {plan->site, plan->stub_addr, plan->patch_len, plan->patch, plan->orig};
    int r = bpfg_text_poke(st, journal, &site, 1);
    if (r || !plan->hop)
        return r;
    for (size_t i = 0; i < st->nthreads; i++) {
        struct bpfg_thread *t = &st->threads[i];
        if (t->regs.rip != plan->slot)
            continue;
        struct user_regs_struct regs = t->regs;
        regs.rip = plan->site;
        if (bpfg_inj_ptrace(PTRACE_SETREGS, t->tid, NULL, &regs) != 0)
            return -errno; /* the slot keeps its jmp: the thread still gets to the stub */
        t->regs = regs;
    }
    struct bpfg_text_write slot = {plan->slot, plan->stub_addr, BPFG_HOP_SLOT_LEN, plan->slot_patch, plan->slot_orig};
    return bpfg_text_poke(st, journal, &slot, 1);
}

bool bpfg_hook_in_place(const struct bpfg_stopped *st, const struct bpfg_hook_plan *plan)
{
    uint8_t now[sizeof(plan->patch)];
    if (plan->patch_len > sizeof(now) || bpfg_mem_read(st, plan->site, now, plan->patch_len) != 0 ||
        memcmp(now, plan->patch, plan->patch_len) != 0)
        return false;
    return !plan->hop || (bpfg_mem_read(st, plan->slot, now, BPFG_HOP_SLOT_LEN) == 0 &&
                          memcmp(now, plan->slot_patch, BPFG_HOP_SLOT_LEN) == 0);
}

/* ---- syscall sites of code without Syscall User Dispatch (Go) ---- */

#define SYS_BACK 8 /* instructions remembered before a syscall */

/* `mov $imm32,%eax` (b8) or `mov $imm32,%rax` (48 c7 c0) of a number >= 0. */
static bool sets_number(const uint8_t *p, size_t len, int64_t *nr)
{
    int32_t imm;
    if (len == 5 && p[0] == 0xb8)
        memcpy(&imm, p + 1, 4);
    else if (len == 7 && p[0] == 0x48 && p[1] == 0xc7 && p[2] == 0xc0)
        memcpy(&imm, p + 3, 4);
    else
        return false;
    *nr = imm;
    return imm >= 0;
}

/* An instruction that runs the same from a stub: no relative operand, no
 * control transfer, no trap. */
static bool movable(const ZydisDecodedInstruction *insn, const ZydisDecodedOperand *ops)
{
    return !(insn->attributes & ZYDIS_ATTRIB_IS_RELATIVE) && !is_rip_relative_mem(insn, ops) && !transfers(insn);
}

/* The plan of the syscall at off, given the offsets and movability of the
 * instructions decoded before it (back[0] the nearest). */
static int plan_sys_site(const uint8_t *code, uint64_t lo, size_t off, const size_t *back, const bool *mov,
                         size_t nback, struct bpfg_sys_site_plan *p, char *why, size_t whylen)
{
    memset(p, 0, sizeof(*p));
    p->syscall = lo + off;
    p->nr = -1;
    if (nback && sets_number(code + back[0], off - back[0], &p->nr)) {
        p->patch = lo + back[0];
        return 0;
    }
    size_t k = 0;
    while (k < nback && off - back[k] < BPFG_HOP_SLOT_LEN && mov[k])
        k++;
    if (k < nback && off - back[k] < BPFG_HOP_SLOT_LEN + 16 && mov[k] && off - back[k] >= BPFG_HOP_SLOT_LEN) {
        p->patch = lo + back[k];
        p->ndisplaced = off - back[k];
        memcpy(p->displaced, code + back[k], p->ndisplaced);
        return 0;
    }
    snprintf(why, whylen, "the syscall at 0x%llx has no 5 bytes of movable instructions before it",
             (unsigned long long)p->syscall);
    return -EINVAL;
}

int bpfg_sys_sites_scan(const uint8_t *code, size_t len, uint64_t lo, struct bpfg_sys_site_plan *out, size_t max,
                        size_t *n, char *why, size_t whylen)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    size_t back[SYS_BACK], nback = 0;
    bool mov[SYS_BACK];
    *n = 0;
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
        return snprintf(why, whylen, "cannot initialise the x86 decoder"), -EINVAL;
    for (size_t off = 0; off < len; off += insn.length) {
        if (!decode(&dec, code + off, len - off, &insn, ops)) {
            /* bytes that do not decode: refused only if a syscall may hide there */
            if (!memmem(code + off, len - off, "\x0f\x05", 2))
                return 0;
            return snprintf(why, whylen, "the code at 0x%llx does not decode, and a syscall may follow",
                            (unsigned long long)(lo + off)),
                   -EINVAL;
        }
        if (insn.mnemonic == ZYDIS_MNEMONIC_SYSCALL) {
            if (*n == max)
                return snprintf(why, whylen, "more than %zu syscall sites", max), -ENOSPC;
            int r = plan_sys_site(code, lo, off, back, mov, nback, &out[*n], why, whylen);
            if (r)
                return r;
            ++*n;
        }
        memmove(back + 1, back, (SYS_BACK - 1) * sizeof(back[0]));
        memmove(mov + 1, mov, (SYS_BACK - 1) * sizeof(mov[0]));
        back[0] = off;
        mov[0] = movable(&insn, ops);
        nback += nback < SYS_BACK;
    }
    return 0;
}
