/* Hook planning and stub generation with the Zydis decoder. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "hookgen.h"
#include "injector.h"
#include "internal.h"

#define JMP_LEN 5

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

/* push $ret (as two halves: push imm32 sign-extends) ; jmp target */
static size_t emit_call_from(uint8_t *p, uint64_t ret, uint64_t target)
{
    p[0] = 0x68;
    put32(p + 1, (int32_t)(uint32_t)ret);
    p[5] = 0xc7, p[6] = 0x44, p[7] = 0x24, p[8] = 0x04; /* movl $hi, 4(%rsp) */
    put32(p + 9, (int32_t)(uint32_t)(ret >> 32));
    return 13 + emit_abs_jmp(p + 13, target);
}

int bpfg_hook_build(struct bpfg_hook_plan *plan, uint64_t stub_addr, uint32_t hook_index, uint64_t entry, char *err)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction insn;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    uint8_t *s = plan->stub;

    int64_t rel = (int64_t)(stub_addr - (plan->site + JMP_LEN));
    if (!fits32(rel))
        return bpfg_inj_fail(err, -ERANGE, "stub at 0x%llx is out of jmp reach of 0x%llx",
                             (unsigned long long)stub_addr, (unsigned long long)plan->site);
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
        return bpfg_inj_fail(err, -EINVAL, "cannot initialise the x86 decoder");
    memset(s, 0xcc, BPFG_HOOK_STUB_MAX);
    plan->stub_addr = stub_addr;

    s[0] = 0x68; /* push imm32 hook_index */
    put32(s + 1, (int32_t)hook_index);
    emit_abs_jmp(s + 5, entry);

    size_t out = BPFG_HOOK_RESUME_OFF;
    for (size_t off = 0; off < plan->patch_len;) {
        uint64_t old_at = plan->site + off, new_at = stub_addr + out;
        if (!decode(&dec, plan->orig + off, plan->patch_len - off, &insn, ops))
            return bpfg_inj_fail(err, -EINVAL, "cannot re-decode the instruction at 0x%llx",
                                 (unsigned long long)old_at);
        if (out + 32 > BPFG_HOOK_STUB_MAX)
            return bpfg_inj_fail(err, -E2BIG, "stub too large");
        uint64_t target;
        if (!(insn.attributes & ZYDIS_ATTRIB_IS_RELATIVE)) {
            memcpy(s + out, plan->orig + off, insn.length);
            out += insn.length;
        } else if (relative_target(&insn, ops, old_at, &target)) {
            if (insn.meta.category == ZYDIS_CATEGORY_CALL) {
                /* A call rel32 is 5 bytes: always the last displaced
                 * instruction. Push the original return address and jmp,
                 * as the kernel emulates a call: the callee returns into
                 * the function itself, where unwinders (C++ exceptions)
                 * find the function's own CFI. */
                out += emit_call_from(s + out, old_at + insn.length, target);
            } else {
                /* jcc: inverted short jcc over an absolute jmp */
                const uint8_t *b = plan->orig + off + insn.raw.prefix_count;
                uint8_t cc = b[0] == 0x0f ? (b[1] & 0x0f) : (b[0] & 0x0f);
                s[out] = (uint8_t)(0x70 | (cc ^ 1));
                s[out + 1] = 14;
                out += 2;
                out += emit_abs_jmp(s + out, target);
            }
        } else {
            /* RIP-relative memory operand: same bytes, new displacement */
            uint64_t mem_target = old_at + insn.length + (uint64_t)insn.raw.disp.value;
            int64_t disp = (int64_t)(mem_target - (new_at + insn.length));
            if (!fits32(disp))
                return bpfg_inj_fail(err, -ERANGE, "RIP-relative operand at 0x%llx is out of reach from the stub",
                                     (unsigned long long)old_at);
            memcpy(s + out, plan->orig + off, insn.length);
            put32(s + out + insn.raw.disp.offset, (int32_t)disp);
            out += insn.length;
        }
        off += insn.length;
    }
    out += emit_abs_jmp(s + out, plan->site + plan->patch_len);
    plan->stub_len = out;

    plan->patch[0] = 0xe9;
    put32(plan->patch + 1, (int32_t)rel);
    memset(plan->patch + JMP_LEN, 0x90, plan->patch_len - JMP_LEN);
    return 0;
}
