/* eBPF disassembler: prints the syntax asm.c reads, so that assembling the
 * output gives back the same instructions. Encodings the assembler cannot
 * produce (unknown opcodes, reserved fields set) are reported as errors
 * instead of being printed approximately.
 *
 * Immediates between -4095 and 4095 print in decimal, others as the hex
 * pattern of the field (32 or 64 bits); jump and call targets print as
 * relative "+N"/"-N"; pseudo lddw forms print as "map_fd 3", "map_value 3+8"
 * ("+M" being the second immediate, omitted when 0).
 */
#include "asm.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const alu_names[16] = {
    "add", "sub", "mul", "div", "or", "and", "lsh", "rsh", "neg", "mod", "xor", "mov", "arsh", NULL, NULL, NULL,
};

static const char *const jmp_names[16] = {
    "ja", "jeq", "jgt", "jge", "jset", "jne", "jsgt", "jsge", NULL, NULL, "jlt", "jle", "jslt", "jsle", NULL, NULL,
};

static const char *const size_names[4] = {"w", "h", "b", "dw"};

static const char *const ld64_kinds[] = {
    NULL, "map_fd", "map_value", "btf_id", "func", "map_idx", "map_idx_value",
};

struct out {
    char *buf;
    size_t len;
    size_t pos;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    if (!o->len)
        return;
    size_t room = o->pos < o->len ? o->len - o->pos : 0;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(room ? o->buf + o->pos : NULL, room, fmt, ap);
    va_end(ap);
    if (k > 0)
        o->pos += (size_t)k;
}

static void put_imm32(struct out *o, int32_t imm)
{
    if (imm > -4096 && imm < 4096)
        put(o, "%d", imm);
    else
        put(o, "0x%" PRIx32, (uint32_t)imm);
}

static void put_target(struct out *o, int32_t rel)
{
    put(o, "%c%" PRId64, rel < 0 ? '-' : '+', rel < 0 ? -(int64_t)rel : (int64_t)rel);
}

static void put_mem(struct out *o, uint8_t reg, int16_t off)
{
    put(o, "[%%r%u%c%d]", reg, off < 0 ? '-' : '+', off < 0 ? -(int)off : (int)off);
}

static int bad(struct out *o, const struct bpf_insn *insn, const char *why)
{
    o->pos = 0;
    put(o, "invalid instruction (%s): code 0x%02x dst %u src %u off %d imm %d", why, insn->code, insn->dst_reg,
        insn->src_reg, insn->off, insn->imm);
    return -EINVAL;
}

static int dis_alu(struct out *o, const struct bpf_insn *in)
{
    bool is64 = ebpf_class(in->code) == BPF_ALU64;
    uint8_t op = BPF_OP(in->code);
    bool reg = BPF_SRC(in->code) == BPF_X;
    const char *w = is64 ? "" : "32";

    if (op == BPF_END) {
        if (in->src_reg || in->off || (in->imm != 16 && in->imm != 32 && in->imm != 64))
            return bad(o, in, "bad byte swap");
        if (is64 && reg)
            return bad(o, in, "unknown opcode");
        put(o, "%s%d %%r%u", is64 ? "bswap" : reg ? "be" : "le", in->imm, in->dst_reg);
        return 1;
    }
    if (op == BPF_NEG) {
        if (reg || in->src_reg || in->off || in->imm)
            return bad(o, in, "bad neg");
        put(o, "neg%s %%r%u", w, in->dst_reg);
        return 1;
    }
    if (!alu_names[op >> 4])
        return bad(o, in, "unknown opcode");

    const char *name = alu_names[op >> 4];
    if (in->off) {
        if (op == BPF_MOV && reg && !in->imm && (in->off == 8 || in->off == 16 || (is64 && in->off == 32))) {
            put(o, "movsx%d%s %%r%u, %%r%u", in->off, is64 ? "64" : "32", in->dst_reg, in->src_reg);
            return 1;
        }
        if (in->off != 1 || (op != BPF_DIV && op != BPF_MOD))
            return bad(o, in, "reserved offset set");
        name = op == BPF_DIV ? "sdiv" : "smod";
    }
    if (reg) {
        if (in->imm)
            return bad(o, in, "reserved imm set");
        put(o, "%s%s %%r%u, %%r%u", name, w, in->dst_reg, in->src_reg);
    } else {
        if (in->src_reg)
            return bad(o, in, "reserved src set");
        put(o, "%s%s %%r%u, ", name, w, in->dst_reg);
        put_imm32(o, in->imm);
    }
    return 1;
}

static int dis_lddw(struct out *o, const struct bpf_insn *insns, size_t n, size_t i)
{
    const struct bpf_insn *in = &insns[i];
    if (in->code != (BPF_LD | BPF_IMM | BPF_DW))
        return bad(o, in, "unknown opcode");
    if (i + 1 >= n)
        return bad(o, in, "lddw without its second slot");
    const struct bpf_insn *hi = &insns[i + 1];
    if (in->off || in->src_reg > 6 || hi->code || hi->dst_reg || hi->src_reg || hi->off)
        return bad(o, in, "bad lddw");
    put(o, "lddw %%r%u, ", in->dst_reg);
    if (in->src_reg) {
        put(o, "%s ", ld64_kinds[in->src_reg]);
        if (in->src_reg == BPF_PSEUDO_FUNC)
            put_target(o, in->imm);
        else
            put(o, "%d", in->imm);
        if (hi->imm)
            put(o, "+%" PRIu32, (uint32_t)hi->imm);
        return 2;
    }
    uint64_t v = (uint64_t)(uint32_t)in->imm | (uint64_t)(uint32_t)hi->imm << 32;
    if ((int64_t)v > -4096 && (int64_t)v < 4096)
        put(o, "%" PRId64, (int64_t)v);
    else
        put(o, "0x%" PRIx64, v);
    return 2;
}

static int dis_mem(struct out *o, const struct bpf_insn *in)
{
    uint8_t cls = ebpf_class(in->code);
    uint8_t mode = BPF_MODE(in->code);
    const char *sz = size_names[BPF_SIZE(in->code) >> 3];

    switch (cls) {
    case BPF_LDX:
        if (mode != BPF_MEM && !(mode == BPF_MEMSX && BPF_SIZE(in->code) != BPF_DW))
            return bad(o, in, "unknown opcode");
        if (in->imm)
            return bad(o, in, "reserved imm set");
        put(o, "ldx%s%s %%r%u, ", mode == BPF_MEMSX ? "s" : "", sz, in->dst_reg);
        put_mem(o, in->src_reg, in->off);
        return 1;
    case BPF_ST:
        if (mode != BPF_MEM)
            return bad(o, in, "unknown opcode");
        if (in->src_reg)
            return bad(o, in, "reserved src set");
        put(o, "st%s ", sz);
        put_mem(o, in->dst_reg, in->off);
        put(o, ", ");
        put_imm32(o, in->imm);
        return 1;
    default: /* BPF_STX */
        if (mode == BPF_MEM) {
            if (in->imm)
                return bad(o, in, "reserved imm set");
            put(o, "stx%s ", sz);
            put_mem(o, in->dst_reg, in->off);
            put(o, ", %%r%u", in->src_reg);
            return 1;
        }
        if (mode != BPF_ATOMIC || (BPF_SIZE(in->code) != BPF_W && BPF_SIZE(in->code) != BPF_DW))
            return bad(o, in, "unknown opcode");
        const char *op;
        bool fetch = in->imm & BPF_FETCH;
        switch (in->imm) {
        case BPF_XCHG:
            op = "xchg";
            fetch = false;
            break; /* always fetch */
        case BPF_CMPXCHG:
            op = "cmpxchg";
            fetch = false;
            break;
        case BPF_ADD:
        case BPF_ADD | BPF_FETCH: op = "add"; break;
        case BPF_OR:
        case BPF_OR | BPF_FETCH: op = "or"; break;
        case BPF_AND:
        case BPF_AND | BPF_FETCH: op = "and"; break;
        case BPF_XOR:
        case BPF_XOR | BPF_FETCH: op = "xor"; break;
        default: return bad(o, in, "unknown atomic operation");
        }
        put(o, "lock %s%s%s ", fetch ? "fetch " : "", op, BPF_SIZE(in->code) == BPF_W ? "32" : "");
        put_mem(o, in->dst_reg, in->off);
        put(o, ", %%r%u", in->src_reg);
        return 1;
    }
}

static int dis_jmp(struct out *o, const struct bpf_insn *in)
{
    bool is32 = ebpf_class(in->code) == BPF_JMP32;
    uint8_t op = BPF_OP(in->code);
    bool reg = BPF_SRC(in->code) == BPF_X;

    if (op == BPF_JA) {
        if (reg || in->dst_reg || in->src_reg || (is32 ? in->off : in->imm))
            return bad(o, in, "bad ja");
        put(o, is32 ? "ja32 " : "ja ");
        put_target(o, is32 ? in->imm : in->off);
        return 1;
    }
    if (op == BPF_EXIT) {
        if (is32 || reg || in->dst_reg || in->src_reg || in->off || in->imm)
            return bad(o, in, is32 ? "unknown opcode" : "bad exit");
        put(o, "exit");
        return 1;
    }
    if (op == BPF_CALL) {
        if (is32 || in->off)
            return bad(o, in, is32 ? "unknown opcode" : "bad call");
        if (reg) {
            if (in->src_reg || in->imm)
                return bad(o, in, "bad callx");
            put(o, "call %%r%u", in->dst_reg);
            return 1;
        }
        if (in->dst_reg)
            return bad(o, in, "bad call");
        switch (in->src_reg) {
        case 0:
            put(o, "call ");
            put_imm32(o, in->imm);
            return 1;
        case BPF_PSEUDO_CALL:
            put(o, "call local ");
            put_target(o, in->imm);
            return 1;
        case BPF_PSEUDO_KFUNC_CALL:
            put(o, "call runtime ");
            put_imm32(o, in->imm);
            return 1;
        default: return bad(o, in, "bad call");
        }
    }
    if (!jmp_names[op >> 4])
        return bad(o, in, "unknown opcode");
    put(o, "%s%s %%r%u, ", jmp_names[op >> 4], is32 ? "32" : "", in->dst_reg);
    if (reg) {
        if (in->imm)
            return bad(o, in, "reserved imm set");
        put(o, "%%r%u", in->src_reg);
    } else {
        if (in->src_reg)
            return bad(o, in, "reserved src set");
        put_imm32(o, in->imm);
    }
    put(o, ", ");
    put_target(o, in->off);
    return 1;
}

int bpfg_disasm_insn(const struct bpf_insn *insns, size_t n, size_t i, char *buf, size_t buflen)
{
    struct out o = {buf, buflen, 0};
    if (buflen)
        buf[0] = '\0';
    if (!insns || i >= n) {
        put(&o, "no instruction %zu", i);
        return -EINVAL;
    }
    const struct bpf_insn *in = &insns[i];
    switch (ebpf_class(in->code)) {
    case BPF_ALU:
    case BPF_ALU64: return dis_alu(&o, in);
    case BPF_LD: return dis_lddw(&o, insns, n, i);
    case BPF_LDX:
    case BPF_ST:
    case BPF_STX: return dis_mem(&o, in);
    default: /* BPF_JMP, BPF_JMP32 */ return dis_jmp(&o, in);
    }
}

char *bpfg_disasm(const struct bpf_insn *insns, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f)
        return NULL;
    char line[160];
    for (size_t i = 0; i < n;) {
        int k = bpfg_disasm_insn(insns, n, i, line, sizeof(line));
        fprintf(f, "%zu: %s\n", i, line);
        i += k > 0 ? (size_t)k : 1;
    }
    if (fclose(f)) {
        free(text); /* open_memstream leaves it allocated on failure */
        return NULL;
    }
    return text;
}
