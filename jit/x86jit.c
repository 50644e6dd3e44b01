/* The x86-64 JIT: one pass over the instructions emitting machine code,
 * then a patch pass over the recorded jump fixups. See x86jit.h for the
 * calling convention.
 *
 * Validation and lddw resolution are the interpreter's own (bpfg_vm_load on
 * a private VM), so both engines accept exactly the same programs and
 * report load errors with the same wording.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "x86fold.h"
#include "x86jit.h"

/* Must match jit/vm.c: lddw BPF_PSEUDO_FUNC yields FUNC_TAG | insn index. */
#define FUNC_TAG_HI16 0xbfc0u

/* x86 registers */
enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

static const uint8_t reg_map[EBPF_NREGS] = {
    RAX, RDI, RSI, RDX, RCX, R8, RBX, R13, R14, R15, RBP,
};

/* The per-run block r12 points to. */
#define BLK_TABLE 0
#define BLK_USER 8
#define BLK_STACK_LO 16
#define BLK_STACK 40 /* eBPF stack: [r12+40, r12+40+4096) */
#define FRAME_AREA (EBPF_STACK_SIZE * EBPF_MAX_CALL_DEPTH)
#define ENTRY_FRAME 4144 /* block + stack + padding, 16-aligned */

/* prefix flags */
enum { F_W = 1, F_66 = 2, F_B = 4 };

/* condition codes */
enum {
    CC_B = 2,
    CC_AE = 3,
    CC_E = 4,
    CC_NE = 5,
    CC_BE = 6,
    CC_A = 7,
    CC_L = 0xc,
    CC_GE = 0xd,
    CC_LE = 0xe,
    CC_G = 0xf
};

struct fixup {
    uint32_t pos;   /* offset of a rel32 (or rel8) field */
    uint32_t label; /* instruction index, or n + LBL_* */
    bool rel8;
};

enum { LBL_UNWIND, LBL_FAULT, NLBL_EXTRA };

struct jit {
    uint8_t *buf;
    size_t len, cap;
    bool oom;
    size_t n;
    uint32_t *labels; /* n + NLBL_EXTRA code offsets */
    struct fixup *fix;
    size_t nfix, capfix;
    size_t out_label; /* the entry's epilogue */
    const struct bpfg_x86jit_opts *opts;
    uint32_t *funcs; /* instructions referenced as functions (callx targets) */
    size_t nfuncs;
    /* lookup inlining (opts->map_info): r1's value where a lddw set it
     * and no jump target, call or write to r1 came after */
    uint8_t *leader;    /* per instruction: reached other than by falling through */
    uint8_t *loop_head; /* per instruction: a backward jump's target, aligned */
    bool r1_known;
    uint64_t r1_val;
    const struct bpf_insn *insns; /* resolved: fold[] and labels are indexed alike */
    struct x86_fold *fold;
    size_t done; /* labels[0, done) are set: jumps back to them can be short */
    /* the x86 register whose value ZF describes (-1: none) after the last
     * instruction (zf_reg) and at the start of this one (zf_in) */
    int zf_reg, zf_in;
    bool zf_w; /* set by a 64-bit operation */
};

/* ---- byte emission ------------------------------------------------------ */

static void grow(struct jit *j, size_t more)
{
    if (j->len + more <= j->cap || j->oom)
        return;
    size_t cap = j->cap * 2;
    while (cap < j->len + more)
        cap *= 2;
    uint8_t *b = realloc(j->buf, cap);
    if (!b) {
        j->oom = true;
        return;
    }
    j->buf = b;
    j->cap = cap;
}

static void emit1(struct jit *j, uint8_t b)
{
    grow(j, 1);
    if (!j->oom)
        j->buf[j->len++] = b;
}

static void emit4(struct jit *j, uint32_t v)
{
    grow(j, 4);
    if (j->oom)
        return;
    memcpy(j->buf + j->len, &v, 4);
    j->len += 4;
}

static void emit8(struct jit *j, uint64_t v)
{
    emit4(j, (uint32_t)v);
    emit4(j, (uint32_t)(v >> 32));
}

static bool is_imm8(int64_t v)
{
    return v >= -128 && v <= 127;
}

static void prefix_x(struct jit *j, unsigned f, int reg, int index, int rm)
{
    if (f & F_66)
        emit1(j, 0x66);
    uint8_t rex = 0x40 | (f & F_W ? 8 : 0) | (reg & 8 ? 4 : 0) | (index & 8 ? 2 : 0) | (rm & 8 ? 1 : 0);
    if (rex != 0x40 || (f & F_B)) /* a bare REX selects sil/dil/bpl over dh/bh/ch */
        emit1(j, rex);
}

static void prefix(struct jit *j, unsigned f, int reg, int rm)
{
    prefix_x(j, f, reg, 0, rm);
}

static void opcode(struct jit *j, uint32_t op)
{
    if (op > 0xffff)
        emit1(j, (uint8_t)(op >> 16));
    if (op > 0xff)
        emit1(j, (uint8_t)(op >> 8));
    emit1(j, (uint8_t)op);
}

/* op with a register-direct ModRM: reg field, r/m field */
static void ins_rr(struct jit *j, unsigned f, uint32_t op, int reg, int rm)
{
    prefix(j, f, reg, rm);
    opcode(j, op);
    emit1(j, (uint8_t)(0xc0 | (reg & 7) << 3 | (rm & 7)));
}

/* op with a [base + disp] memory operand */
static void ins_rm(struct jit *j, unsigned f, uint32_t op, int reg, int base, int32_t disp)
{
    prefix(j, f, reg, base);
    opcode(j, op);
    int mod = (disp == 0 && (base & 7) != RBP) ? 0 : is_imm8(disp) ? 1 : 2;
    emit1(j, (uint8_t)(mod << 6 | (reg & 7) << 3 | (base & 7)));
    if ((base & 7) == RSP)
        emit1(j, 0x24); /* SIB: base only */
    if (mod == 1)
        emit1(j, (uint8_t)disp);
    else if (mod == 2)
        emit4(j, (uint32_t)disp);
}

/* A memory operand [base + index + disp] (index < 0: none). */
struct maddr {
    int base, index;
    int32_t disp;
};

static void ins_mem(struct jit *j, unsigned f, uint32_t op, int reg, struct maddr a)
{
    if (a.index < 0) {
        ins_rm(j, f, op, reg, a.base, a.disp);
        return;
    }
    prefix_x(j, f, reg, a.index, a.base);
    opcode(j, op);
    int mod = (a.disp == 0 && (a.base & 7) != RBP) ? 0 : is_imm8(a.disp) ? 1 : 2;
    emit1(j, (uint8_t)(mod << 6 | (reg & 7) << 3 | 4));
    emit1(j, (uint8_t)((a.index & 7) << 3 | (a.base & 7))); /* SIB, scale 1 */
    if (mod == 1)
        emit1(j, (uint8_t)a.disp);
    else if (mod == 2)
        emit4(j, (uint32_t)a.disp);
}

/* group-1 ALU with an immediate: ext = 0 add, 1 or, 4 and, 5 sub, 6 xor, 7 cmp */
static void ins_ri(struct jit *j, unsigned f, int ext, int rm, int32_t imm)
{
    if (is_imm8(imm)) {
        ins_rr(j, f, 0x83, ext, rm);
        emit1(j, (uint8_t)imm);
    } else {
        ins_rr(j, f, 0x81, ext, rm);
        emit4(j, (uint32_t)imm);
    }
}

static void mov_rr(struct jit *j, unsigned f, int dst, int src)
{
    ins_rr(j, f, 0x89, src, dst);
}

/* dst = imm sign-extended (F_W) or zero-extended (32-bit) */
static void mov_ri(struct jit *j, unsigned f, int dst, int32_t imm)
{
    if (imm == 0) {
        ins_rr(j, 0, 0x31, dst, dst); /* xor r32, r32 */
    } else if (!(f & F_W) || imm > 0) {
        prefix(j, 0, 0, dst);
        emit1(j, (uint8_t)(0xb8 + (dst & 7)));
        emit4(j, (uint32_t)imm);
    } else {
        ins_rr(j, F_W, 0xc7, 0, dst);
        emit4(j, (uint32_t)imm);
    }
}

static void mov_ri64(struct jit *j, int dst, uint64_t v)
{
    if (v <= UINT32_MAX) {
        mov_ri(j, 0, dst, (int32_t)(uint32_t)v);
    } else if ((int64_t)v >= INT32_MIN && (int64_t)v < 0) {
        mov_ri(j, F_W, dst, (int32_t)v);
    } else {
        prefix(j, F_W, 0, dst);
        emit1(j, (uint8_t)(0xb8 + (dst & 7)));
        emit8(j, v);
    }
}

static void push(struct jit *j, int r)
{
    if (r & 8)
        emit1(j, 0x41);
    emit1(j, (uint8_t)(0x50 + (r & 7)));
}

static void pop(struct jit *j, int r)
{
    if (r & 8)
        emit1(j, 0x41);
    emit1(j, (uint8_t)(0x58 + (r & 7)));
}

/* rel32 jumps to labels, patched at the end */
static void add_fixup_n(struct jit *j, uint32_t label, bool rel8)
{
    if (j->nfix == j->capfix) {
        size_t cap = j->capfix ? j->capfix * 2 : 64;
        struct fixup *f = realloc(j->fix, cap * sizeof(*f));
        if (!f) {
            j->oom = true;
            return;
        }
        j->fix = f;
        j->capfix = cap;
    }
    j->fix[j->nfix++] = (struct fixup){(uint32_t)j->len, label, rel8};
    if (rel8)
        emit1(j, 0);
    else
        emit4(j, 0);
}

static void add_fixup(struct jit *j, uint32_t label)
{
    add_fixup_n(j, label, false);
}

/* A jump back to an instruction already emitted: rel8 when it reaches. */
static bool short_back(struct jit *j, uint8_t op, uint32_t label)
{
    if (label >= j->done || j->oom)
        return false;
    int64_t rel = (int64_t)j->labels[label] - (int64_t)(j->len + 2);
    if (!is_imm8(rel))
        return false;
    emit1(j, op);
    emit1(j, (uint8_t)rel);
    return true;
}

/* near: a forward jump near_forward allows rel8 for */
static void jmp_label_n(struct jit *j, uint32_t label, bool near)
{
    if (short_back(j, 0xeb, label))
        return;
    if (near) {
        emit1(j, 0xeb);
        add_fixup_n(j, label, true);
        return;
    }
    emit1(j, 0xe9);
    add_fixup(j, label);
}

static void jmp_label(struct jit *j, uint32_t label)
{
    jmp_label_n(j, label, false);
}

static void jcc_label_n(struct jit *j, int cc, uint32_t label, bool near)
{
    if (short_back(j, (uint8_t)(0x70 + cc), label))
        return;
    if (near) {
        emit1(j, (uint8_t)(0x70 + cc));
        add_fixup_n(j, label, true);
        return;
    }
    emit1(j, 0x0f);
    emit1(j, (uint8_t)(0x80 + cc));
    add_fixup(j, label);
}

static void jcc_label(struct jit *j, int cc, uint32_t label)
{
    jcc_label_n(j, cc, label, false);
}

/* short forward jumps inside one instruction's code */
static size_t jcc8(struct jit *j, int cc)
{
    emit1(j, (uint8_t)(0x70 + cc));
    emit1(j, 0);
    return j->len;
}

static size_t jmp8(struct jit *j)
{
    emit1(j, 0xeb);
    emit1(j, 0);
    return j->len;
}

static void here8(struct jit *j, size_t after)
{
    if (!j->oom)
        j->buf[after - 1] = (uint8_t)(j->len - after); /* sequences stay < 128 bytes */
}

static void jmp_back(struct jit *j, size_t target)
{
    emit1(j, 0xe9);
    emit4(j, (uint32_t)(int32_t)(target - (j->len + 4)));
}

/* Stops the run with -err at instruction pc (jump taken when cc holds). */
static void fault_if(struct jit *j, int cc, int err, size_t pc)
{
    size_t skip = jcc8(j, cc ^ 1);
    mov_ri(j, 0, R10, -err);
    mov_ri(j, 0, R11, (int32_t)pc);
    jmp_label(j, (uint32_t)(j->n + LBL_FAULT));
    here8(j, skip);
}

/* ---- ALU ------------------------------------------------------------------ */

/* The flags now describe dst (ZF: whether it is 0), set by an operation
 * of width w. */
static void set_zf(struct jit *j, int dst, unsigned w)
{
    j->zf_reg = dst;
    j->zf_w = w != 0;
}

static void emit_shift(struct jit *j, const struct bpf_insn *in, unsigned w, int ext)
{
    int dst = reg_map[in->dst_reg];
    if (BPF_SRC(in->code) == BPF_K) {
        int cnt = in->imm & (w ? 63 : 31);
        if (cnt) {
            ins_rr(j, w, 0xc1, ext, dst);
            emit1(j, (uint8_t)cnt);
            set_zf(j, dst, w); /* a count of 0 would leave the flags */
        } else if (!w) {
            mov_rr(j, 0, dst, dst); /* still zero-extends */
        }
        return;
    }
    int src = reg_map[in->src_reg];
    if (src == RCX) {
        ins_rr(j, w, 0xd3, ext, dst);
        return;
    }
    /* the count must be in cl, which is r4: park r4 in r11 meanwhile */
    mov_rr(j, F_W, R11, RCX);
    mov_rr(j, F_W, RCX, src);
    ins_rr(j, w, 0xd3, ext, dst == RCX ? R11 : dst);
    mov_rr(j, F_W, RCX, R11);
}

static void emit_divmod(struct jit *j, const struct bpf_insn *in, unsigned w)
{
    int dst = reg_map[in->dst_reg];
    bool is_mod = BPF_OP(in->code) == BPF_MOD, sign = in->off == 1;
    size_t to_zero = 0, to_end1 = 0, to_end2 = 0;

    if (BPF_SRC(in->code) == BPF_K) {
        if (in->imm == 0) {
            if (!is_mod)
                mov_ri(j, 0, dst, 0);
            else if (!w)
                mov_rr(j, 0, dst, dst);
            return;
        }
        if (sign && in->imm == -1) {
            if (is_mod)
                mov_ri(j, 0, dst, 0);
            else
                ins_rr(j, w, 0xf7, 3, dst); /* neg: INT_MIN stays INT_MIN */
            return;
        }
        mov_ri(j, w, R11, in->imm);
    } else {
        mov_rr(j, w, R11, reg_map[in->src_reg]);
        ins_rr(j, w, 0x85, R11, R11);
        to_zero = jcc8(j, CC_E);
        if (sign) {
            ins_ri(j, w, 7, R11, -1);
            size_t to_div = jcc8(j, CC_NE);
            if (is_mod)
                mov_ri(j, 0, dst, 0);
            else
                ins_rr(j, w, 0xf7, 3, dst);
            to_end1 = jmp8(j);
            here8(j, to_div);
        }
    }
    mov_rr(j, F_W, R10, RAX);
    mov_rr(j, F_W, R9, RDX);
    if (dst != RAX)
        mov_rr(j, w, RAX, dst);
    if (sign) {
        /* cqo / cdq */
        if (w)
            emit1(j, 0x48);
        emit1(j, 0x99);
    } else {
        ins_rr(j, 0, 0x31, RDX, RDX);
    }
    ins_rr(j, w, 0xf7, sign ? 7 : 6, R11);
    mov_rr(j, w, R11, is_mod ? RDX : RAX);
    mov_rr(j, F_W, RAX, R10);
    mov_rr(j, F_W, RDX, R9);
    mov_rr(j, w, dst, R11);
    if (to_zero) {
        to_end2 = jmp8(j);
        here8(j, to_zero);
        if (!is_mod)
            mov_ri(j, 0, dst, 0);
        else if (!w)
            mov_rr(j, 0, dst, dst);
        here8(j, to_end2);
    }
    if (to_end1)
        here8(j, to_end1);
}

static void emit_end(struct jit *j, const struct bpf_insn *in)
{
    int dst = reg_map[in->dst_reg];
    bool swap = BPF_CLASS(in->code) == BPF_ALU64 || BPF_SRC(in->code) == BPF_TO_BE;
    switch (in->imm) {
    case 16:
        if (swap) { /* ror r16, 8 */
            ins_rr(j, F_66, 0xc1, 1, dst);
            emit1(j, 8);
        }
        ins_rr(j, 0, 0x0fb7, dst, dst); /* movzx r32, r16 */
        break;
    case 32:
        if (swap) {
            prefix(j, 0, 0, dst);
            emit1(j, 0x0f);
            emit1(j, (uint8_t)(0xc8 + (dst & 7)));
        } else {
            mov_rr(j, 0, dst, dst);
        }
        break;
    default:
        if (swap) {
            prefix(j, F_W, 0, dst);
            emit1(j, 0x0f);
            emit1(j, (uint8_t)(0xc8 + (dst & 7)));
        }
        break;
    }
}

static int emit_alu(struct jit *j, const struct bpf_insn *in)
{
    unsigned w = BPF_CLASS(in->code) == BPF_ALU64 ? F_W : 0;
    bool k = BPF_SRC(in->code) == BPF_K;
    int dst = reg_map[in->dst_reg];
    int src = k ? -1 : reg_map[in->src_reg];
    static const struct {
        uint8_t rr;
        int8_t ext;
    } simple[16] = {
        [BPF_ADD >> 4] = {0x01, 0}, [BPF_SUB >> 4] = {0x29, 5}, [BPF_OR >> 4] = {0x09, 1},
        [BPF_AND >> 4] = {0x21, 4}, [BPF_XOR >> 4] = {0x31, 6},
    };

    switch (BPF_OP(in->code)) {
    case BPF_ADD:
    case BPF_SUB:
    case BPF_OR:
    case BPF_AND:
    case BPF_XOR: {
        int op = BPF_OP(in->code) >> 4;
        if (k)
            ins_ri(j, w, simple[op].ext, dst, in->imm);
        else
            ins_rr(j, w, simple[op].rr, src, dst);
        set_zf(j, dst, w);
        return 0;
    }
    case BPF_MUL:
        if (k)
            ins_rr(j, w, is_imm8(in->imm) ? 0x6b : 0x69, dst, dst);
        else
            ins_rr(j, w, 0x0faf, dst, src);
        if (k) {
            if (is_imm8(in->imm))
                emit1(j, (uint8_t)in->imm);
            else
                emit4(j, (uint32_t)in->imm);
        }
        return 0;
    case BPF_DIV:
    case BPF_MOD: emit_divmod(j, in, w); return 0;
    case BPF_LSH: emit_shift(j, in, w, 4); return 0;
    case BPF_RSH: emit_shift(j, in, w, 5); return 0;
    case BPF_ARSH: emit_shift(j, in, w, 7); return 0;
    case BPF_NEG:
        ins_rr(j, w, 0xf7, 3, dst);
        set_zf(j, dst, w);
        return 0;
    case BPF_MOV:
        if (k) {
            mov_ri(j, w, dst, in->imm);
        } else if (in->off == 8) {
            ins_rr(j, w | F_B, 0x0fbe, dst, src);
        } else if (in->off == 16) {
            ins_rr(j, w, 0x0fbf, dst, src);
        } else if (in->off == 32) {
            ins_rr(j, F_W, 0x63, dst, src); /* movsxd */
        } else if (dst != src || !w) {
            mov_rr(j, w, dst, src);
        }
        return 0;
    case BPF_END: emit_end(j, in); return 0;
    }
    return -EINVAL;
}

/* ---- memory --------------------------------------------------------------- */

/* The address of a load or store based on eBPF register base: [base +
 * off], or the folded [s + x + imm + off] of its group (x86fold.h). */
static struct maddr mem_addr(const struct jit *j, const struct bpf_insn *in, int base)
{
    const struct x86_fold *fo = &j->fold[in - j->insns];
    if (fo->kind != FOLD_MEM)
        return (struct maddr){reg_map[base], -1, in->off};
    return (struct maddr){reg_map[fo->base], fo->index == FOLD_NOREG ? -1 : reg_map[fo->index], fo->disp + in->off};
}

static void emit_ldx(struct jit *j, const struct bpf_insn *in)
{
    int dst = reg_map[in->dst_reg];
    struct maddr a = mem_addr(j, in, in->src_reg);
    bool sx = BPF_MODE(in->code) == BPF_MEMSX;
    switch (BPF_SIZE(in->code)) {
    case BPF_B: ins_mem(j, sx ? F_W : 0, sx ? 0x0fbe : 0x0fb6, dst, a); break;
    case BPF_H: ins_mem(j, sx ? F_W : 0, sx ? 0x0fbf : 0x0fb7, dst, a); break;
    case BPF_W: ins_mem(j, sx ? F_W : 0, sx ? 0x63 : 0x8b, dst, a); break;
    default: ins_mem(j, F_W, 0x8b, dst, a); break;
    }
}

static void emit_st(struct jit *j, const struct bpf_insn *in)
{
    struct maddr a = mem_addr(j, in, in->dst_reg);
    switch (BPF_SIZE(in->code)) {
    case BPF_B:
        ins_mem(j, 0, 0xc6, 0, a);
        emit1(j, (uint8_t)in->imm);
        break;
    case BPF_H:
        ins_mem(j, F_66, 0xc7, 0, a);
        emit1(j, (uint8_t)in->imm);
        emit1(j, (uint8_t)(in->imm >> 8));
        break;
    case BPF_W:
        ins_mem(j, 0, 0xc7, 0, a);
        emit4(j, (uint32_t)in->imm);
        break;
    default:
        ins_mem(j, F_W, 0xc7, 0, a);
        emit4(j, (uint32_t)in->imm);
        break;
    }
}

static void emit_stx(struct jit *j, const struct bpf_insn *in)
{
    int src = reg_map[in->src_reg];
    struct maddr a = mem_addr(j, in, in->dst_reg);
    switch (BPF_SIZE(in->code)) {
    case BPF_B: ins_mem(j, F_B, 0x88, src, a); break;
    case BPF_H: ins_mem(j, F_66, 0x89, src, a); break;
    case BPF_W: ins_mem(j, 0, 0x89, src, a); break;
    default: ins_mem(j, F_W, 0x89, src, a); break;
    }
}

static void emit_atomic(struct jit *j, const struct bpf_insn *in, size_t pc)
{
    unsigned w = BPF_SIZE(in->code) == BPF_DW ? F_W : 0;
    int dst = reg_map[in->dst_reg], src = reg_map[in->src_reg];
    int32_t off = in->off;

    /* misaligned atomics fault, as in the interpreter */
    ins_rm(j, F_W, 0x8d, R11, dst, off); /* lea r11, [dst+off] */
    ins_rr(j, F_B, 0xf6, 0, R11);        /* test r11b, size-1 */
    emit1(j, w ? 7 : 3);
    fault_if(j, CC_NE, EFAULT, pc);

    switch (in->imm) {
    case BPF_ADD:
    case BPF_OR:
    case BPF_AND:
    case BPF_XOR: {
        uint8_t op = in->imm == BPF_ADD ? 0x01 : in->imm == BPF_OR ? 0x09 : in->imm == BPF_AND ? 0x21 : 0x31;
        emit1(j, 0xf0);
        ins_rm(j, w, op, src, R11, 0);
        return;
    }
    case BPF_ADD | BPF_FETCH:
        emit1(j, 0xf0);
        ins_rm(j, w, 0x0fc1, src, R11, 0); /* lock xadd: src = old */
        return;
    case BPF_XCHG:
        ins_rm(j, w, 0x87, src, R11, 0); /* xchg is implicitly locked */
        return;
    case BPF_CMPXCHG:
        emit1(j, 0xf0);
        ins_rm(j, w, 0x0fb1, src, R11, 0); /* compares with rax = r0, old -> rax */
        if (!w)
            mov_rr(j, 0, RAX, RAX); /* a successful cmpxchg32 leaves rax's top */
        return;
    default: { /* or/and/xor with fetch: cmpxchg loop */
        uint8_t op = (in->imm & ~BPF_FETCH) == BPF_OR ? 0x09 : (in->imm & ~BPF_FETCH) == BPF_AND ? 0x21 : 0x31;
        push(j, RAX);
        mov_rr(j, F_W, R9, src);
        ins_rm(j, w, 0x8b, RAX, R11, 0);
        size_t loop = j->len;
        mov_rr(j, F_W, R10, RAX);
        ins_rr(j, w, op, R9, R10);
        emit1(j, 0xf0);
        ins_rm(j, w, 0x0fb1, R10, R11, 0);
        emit1(j, (uint8_t)(0x70 + CC_NE));
        emit1(j, (uint8_t)(loop - (j->len + 1)));
        mov_rr(j, w, R9, RAX);
        pop(j, RAX);
        mov_rr(j, F_W, src, R9);
        return;
    }
    }
}

/* ---- calls ---------------------------------------------------------------- */

static const int arg_regs[] = {RDI, RSI, RDX, RCX, R8};

/* Calls the helper whose table entry r11 points to; r1..r5 survive. */
static void emit_helper_call_r11(struct jit *j, size_t pc)
{
    ins_rm(j, F_W, 0x8b, R10, R11, 0); /* mov r10, [r11] (fn) */
    ins_rr(j, F_W, 0x85, R10, R10);
    fault_if(j, CC_E, EINVAL, pc);
    if (j->opts->per_run_user)
        ins_rm(j, F_W, 0x8b, R9, R12, BLK_USER);
    else
        ins_rm(j, F_W, 0x8b, R9, R11, 8);
    ins_rr(j, 0, 0xff, 2, R10); /* call r10 */
}

bool bpfg_jit_inline_array(const struct bpfg_x86jit_opts *opts, uint32_t helper_id, uint64_t r1,
                           struct bpfg_jit_map_info *mi)
{
    memset(mi, 0, sizeof(*mi));
    if (helper_id != BPF_FUNC_map_lookup_elem || !opts->map_info || (opts->has_unwind && opts->unwind_id == helper_id))
        return false;
    if (opts->map_info(opts->map_info_user, r1, mi) || mi->type != BPF_MAP_TYPE_ARRAY || mi->key_size != 4 ||
        !mi->value_base)
        return false;
    if (!mi->value_stride)
        mi->value_stride = ((uint64_t)mi->value_size + 7) & ~7ull;
    return true;
}

/* bpf_map_lookup_elem on an ARRAY at a known address, as the helper:
 * r0 = key < max_entries ? value_base + key * stride : 0. */
static bool inline_lookup(struct jit *j, uint32_t id)
{
    struct bpfg_jit_map_info mi;
    if (!j->r1_known || !bpfg_jit_inline_array(j->opts, id, j->r1_val, &mi) || mi.value_stride > INT32_MAX)
        return false;
    uint64_t stride = mi.value_stride;
    ins_rm(j, 0, 0x8b, R10, reg_map[BPF_REG_2], 0); /* mov r10d, [r2]: the key */
    mov_ri(j, 0, RAX, 0);
    ins_ri(j, 0, 7, R10, (int32_t)mi.max_entries); /* cmp r10d, max_entries */
    size_t out = jcc8(j, CC_AE);
    ins_rr(j, F_W, 0x69, R10, R10); /* imul r10, r10, stride */
    emit4(j, (uint32_t)stride);
    mov_ri64(j, RAX, mi.value_base);
    ins_rr(j, F_W, 0x01, R10, RAX); /* add rax, r10 */
    here8(j, out);
    return true;
}

static void emit_helper_call(struct jit *j, uint32_t id, size_t pc)
{
    if (inline_lookup(j, id))
        return;
    for (size_t i = 0; i < 5; i++)
        push(j, arg_regs[i]);
    ins_ri(j, F_W, 5, RSP, 8); /* keep rsp 16-aligned */
    ins_rm(j, F_W, 0x8b, R11, R12, BLK_TABLE);
    ins_rm(j, F_W, 0x8d, R11, R11, (int32_t)(id * sizeof(struct bpfg_x86jit_helper)));
    emit_helper_call_r11(j, pc);
    ins_ri(j, F_W, 0, RSP, 8);
    for (size_t i = 5; i-- > 0;)
        pop(j, arg_regs[i]);
    if (j->opts->has_unwind && id == j->opts->unwind_id) {
        ins_rr(j, F_W, 0x85, RAX, RAX);
        jcc_label(j, CC_E, (uint32_t)(j->n + LBL_UNWIND));
    }
}

/* bpf-to-bpf call: a fresh frame below the caller's, r6..r9 preserved.
 * target < 0: the code address is in r11. */
static void emit_local_call(struct jit *j, int64_t target, size_t pc)
{
    ins_rm(j, F_W, 0x8d, R10, RBP, -2 * EBPF_STACK_SIZE); /* new frame's bottom */
    ins_rm(j, F_W, 0x3b, R10, R12, BLK_STACK_LO);
    fault_if(j, CC_B, E2BIG, pc);
    push(j, RBX);
    push(j, R13);
    push(j, R14);
    push(j, R15);
    ins_ri(j, F_W, 5, RBP, EBPF_STACK_SIZE);
    ins_ri(j, F_W, 5, RSP, 8);
    if (target >= 0) {
        emit1(j, 0xe8);
        add_fixup(j, (uint32_t)target);
    } else {
        ins_rr(j, 0, 0xff, 2, R11); /* call r11 */
    }
    ins_ri(j, F_W, 0, RSP, 8);
    ins_ri(j, F_W, 0, RBP, EBPF_STACK_SIZE);
    pop(j, R15);
    pop(j, R14);
    pop(j, R13);
    pop(j, RBX);
}

/* lea reg, [rip + label] */
static void lea_label(struct jit *j, int reg, uint32_t label)
{
    prefix(j, F_W, reg, 0);
    emit1(j, 0x8d);
    emit1(j, (uint8_t)((reg & 7) << 3 | 5));
    add_fixup(j, label);
}

/* long forward jumps inside one instruction's code */
static size_t jcc32(struct jit *j, int cc)
{
    emit1(j, 0x0f);
    emit1(j, (uint8_t)(0x80 + cc));
    emit4(j, 0);
    return j->len;
}

static size_t jmp32(struct jit *j)
{
    emit1(j, 0xe9);
    emit4(j, 0);
    return j->len;
}

static void here32(struct jit *j, size_t after, size_t target)
{
    if (!j->oom) {
        int32_t rel = (int32_t)((int64_t)target - (int64_t)after);
        memcpy(j->buf + after - 4, &rel, 4);
    }
}

static void emit_callx(struct jit *j, const struct bpf_insn *in, size_t pc)
{
    mov_rr(j, F_W, R11, reg_map[in->dst_reg]);
    mov_rr(j, F_W, R10, R11);
    ins_rr(j, F_W, 0xc1, 5, R10); /* shr r10, 48 */
    emit1(j, 48);
    ins_ri(j, 0, 7, R10, FUNC_TAG_HI16);
    size_t to_helper = jcc32(j, CC_NE);

    /* a function reference: only the program's known function entries */
    mov_ri64(j, R10, 0x0000ffffffffffffull);
    ins_rr(j, F_W, 0x21, R10, R11);
    size_t *hits = malloc((j->nfuncs ? j->nfuncs : 1) * sizeof(*hits));
    if (!hits) {
        j->oom = true;
        return;
    }
    for (size_t i = 0; i < j->nfuncs; i++) {
        ins_ri(j, F_W, 7, R11, (int32_t)j->funcs[i]);
        size_t miss = jcc8(j, CC_NE);
        lea_label(j, R11, j->funcs[i]);
        hits[i] = jmp32(j);
        here8(j, miss);
    }
    mov_ri(j, 0, R10, -EINVAL);
    mov_ri(j, 0, R11, (int32_t)pc);
    jmp_label(j, (uint32_t)(j->n + LBL_FAULT));
    for (size_t i = 0; i < j->nfuncs; i++)
        here32(j, hits[i], j->len);
    free(hits);
    emit_local_call(j, -1, pc);
    size_t to_end = jmp32(j);

    /* a helper id */
    here32(j, to_helper, j->len);
    ins_ri(j, F_W, 7, R11, BPFG_MAX_HELPERS - 1);
    fault_if(j, CC_A, EINVAL, pc);
    for (size_t i = 0; i < 5; i++)
        push(j, arg_regs[i]);
    push(j, R11);                 /* the id, for unwind; keeps alignment */
    ins_rr(j, F_W, 0xc1, 4, R11); /* shl r11, 4 */
    emit1(j, 4);
    ins_rm(j, F_W, 0x03, R11, R12, BLK_TABLE); /* add r11, [r12] */
    emit_helper_call_r11(j, pc);
    pop(j, R11);
    for (size_t i = 5; i-- > 0;)
        pop(j, arg_regs[i]);
    if (j->opts->has_unwind) {
        ins_ri(j, F_W, 7, R11, (int32_t)j->opts->unwind_id);
        size_t not_unwind = jcc8(j, CC_NE);
        ins_rr(j, F_W, 0x85, RAX, RAX);
        jcc_label(j, CC_E, (uint32_t)(j->n + LBL_UNWIND));
        here8(j, not_unwind);
    }
    here32(j, to_end, j->len);
}

/* ---- jumps ---------------------------------------------------------------- */

static bool is_cond_jump(const struct bpf_insn *in)
{
    uint8_t cls = BPF_CLASS(in->code), op = BPF_OP(in->code);
    return (cls == BPF_JMP || cls == BPF_JMP32) && op != BPF_JA && op != BPF_CALL && op != BPF_EXIT && op <= BPF_JSLE;
}

/* The compare of conditional jump in, then a jcc to label (the inverse
 * condition with invert). */
static void emit_cond_jump(struct jit *j, const struct bpf_insn *in, bool invert, uint32_t label, bool near)
{
    static const int cc_of[16] = {
        [BPF_JEQ >> 4] = CC_E,  [BPF_JGT >> 4] = CC_A,  [BPF_JGE >> 4] = CC_AE,  [BPF_JSET >> 4] = CC_NE,
        [BPF_JNE >> 4] = CC_NE, [BPF_JSGT >> 4] = CC_G, [BPF_JSGE >> 4] = CC_GE, [BPF_JLT >> 4] = CC_B,
        [BPF_JLE >> 4] = CC_BE, [BPF_JSLT >> 4] = CC_L, [BPF_JSLE >> 4] = CC_LE,
    };
    unsigned w = BPF_CLASS(in->code) == BPF_JMP32 ? 0 : F_W;
    uint8_t op = BPF_OP(in->code);
    int dst = reg_map[in->dst_reg];
    if (BPF_SRC(in->code) == BPF_X) {
        ins_rr(j, w, op == BPF_JSET ? 0x85 : 0x39, reg_map[in->src_reg], dst);
    } else if (op == BPF_JSET) {
        ins_rr(j, w, 0xf7, 0, dst);
        emit4(j, (uint32_t)in->imm);
    } else if (in->imm == 0 && (op == BPF_JEQ || op == BPF_JNE) && j->zf_in == dst && (w || !j->zf_w)) {
        /* the ALU operation just before left ZF for dst (a 32-bit jump
         * needs a 32-bit operation's) */
    } else if (in->imm == 0) {
        ins_rr(j, w, 0x85, dst, dst); /* test sets the flags cmp 0 would */
    } else {
        ins_ri(j, w, 7, dst, in->imm);
    }
    jcc_label_n(j, cc_of[op >> 4] ^ (invert ? 1 : 0), label, near); /* x86 cc ^ 1 is its inverse */
}

/* Straight-line code emit_ja may repeat: its machine code refers to no
 * label (no lddw, jump, call, or atomic with its fault exit). */
static bool is_repeatable(const struct bpf_insn *in)
{
    uint8_t cls = BPF_CLASS(in->code);
    return cls == BPF_ALU || cls == BPF_ALU64 || cls == BPF_LDX || cls == BPF_ST ||
           (cls == BPF_STX && BPF_MODE(in->code) == BPF_MEM);
}

/* The exit test of a loop head "L: s1..sk; if c goto X" (k <= ROTATE_MAX
 * repeatable instructions) a goto at pc jumps back to, or SIZE_MAX. The
 * head is emitted twice: a longer one would grow the code more than the
 * jmp it saves is worth. */
#define ROTATE_MAX 4
static size_t rotated_test(const struct bpf_insn *insns, size_t target, size_t pc)
{
    for (size_t t = target; t < pc && t <= target + ROTATE_MAX; t++) {
        if (is_cond_jump(&insns[t]))
            return t;
        if (!is_repeatable(&insns[t]))
            return SIZE_MAX;
    }
    return SIZE_MAX;
}

/* Where instruction in starts, the flags the previous one left are
 * valid unless a jump may land here. */
static void begin_insn(struct jit *j, bool leader)
{
    j->zf_in = leader ? -1 : j->zf_reg;
    j->zf_reg = -1;
}

static int emit_repeat(struct jit *j, const struct bpf_insn *in)
{
    begin_insn(j, false);
    if (j->fold[in - j->insns].kind == FOLD_SKIP)
        return 0;
    switch (BPF_CLASS(in->code)) {
    case BPF_LDX: emit_ldx(j, in); return 0;
    case BPF_ST: emit_st(j, in); return 0;
    case BPF_STX: emit_stx(j, in); return 0;
    default: return emit_alu(j, in);
    }
}

/* Whether a jump at pc to target can be rel8, the code between known to
 * be short: at most NEAR_MAX straight-line instructions, no division
 * among them (each then at most 13 bytes of code, 104 in all), and no
 * aligned loop head among them or at target (up to 63 bytes of nops). */
#define NEAR_MAX 8
static bool near_forward(const struct jit *j, size_t pc, size_t target)
{
    if (target <= pc || target - pc - 1 > NEAR_MAX)
        return false;
    for (size_t i = pc + 1; i <= target; i++) {
        if (j->loop_head[i])
            return false;
        const struct bpf_insn *in = &j->insns[i];
        bool alu = BPF_CLASS(in->code) == BPF_ALU || BPF_CLASS(in->code) == BPF_ALU64;
        if (i < target && (!is_repeatable(in) || (alu && (BPF_OP(in->code) == BPF_DIV || BPF_OP(in->code) == BPF_MOD))))
            return false;
    }
    return true;
}

/* A goto back to a loop head "L: s1..sk; if c goto X; ..." (k may be 0)
 * carries the head, its test inverted: "s1..sk; if !c goto test+1; goto
 * X". The loop then runs one branch fewer per iteration: no jmp (strcmp's
 * byte loop, k = 2: three branches a byte to two). */
static int emit_ja(struct jit *j, const struct bpf_insn *insns, size_t pc, int32_t off, size_t next)
{
    size_t target = (size_t)((int64_t)pc + 1 + off);
    size_t test = off < 0 ? rotated_test(insns, target, pc) : SIZE_MAX;
    if (test == SIZE_MAX) {
        if (target != next) /* ja +0 is a nop */
            jmp_label_n(j, (uint32_t)target, next == pc + 1 && near_forward(j, pc, target));
        return 0;
    }
    j->zf_reg = -1;
    for (size_t i = target; i < test; i++) {
        int ret = emit_repeat(j, &insns[i]);
        if (ret)
            return ret;
    }
    begin_insn(j, false);
    const struct bpf_insn *t = &insns[test];
    size_t exit = (size_t)((int64_t)test + 1 + t->off);
    emit_cond_jump(j, t, true, (uint32_t)(test + 1), false);
    if (exit != next) /* the exit is often the next instruction */
        jmp_label(j, (uint32_t)exit);
    return 0;
}

/* The goto ending a loop's "continue" block "s1..sk; goto back" (k <=
 * ROTATE_MAX repeatable instructions) at target, or SIZE_MAX. */
static size_t continue_goto(const struct jit *j, size_t target)
{
    for (size_t t = target; t < j->n && t <= target + ROTATE_MAX; t++) {
        const struct bpf_insn *in = &j->insns[t];
        if (BPF_OP(in->code) == BPF_JA && (BPF_CLASS(in->code) == BPF_JMP || BPF_CLASS(in->code) == BPF_JMP32))
            return (BPF_CLASS(in->code) == BPF_JMP32 ? in->imm : in->off) < 0 ? t : SIZE_MAX;
        if (!is_repeatable(in))
            return SIZE_MAX;
    }
    return SIZE_MAX;
}

/* A forward conditional jump to a continue block carries the block, its
 * test inverted: "if !c goto pc+1; s1..sk; goto back" (the goto as
 * emit_ja makes it). The loop's usual path then takes one branch, not
 * two (prime_sieve's "if composite, next i"). */
static int emit_cond(struct jit *j, const struct bpf_insn *in, size_t pc)
{
    size_t target = (size_t)((int64_t)pc + 1 + in->off);
    size_t back = target > pc + 1 ? continue_goto(j, target) : SIZE_MAX;
    if (back == SIZE_MAX) {
        emit_cond_jump(j, in, false, (uint32_t)target, near_forward(j, pc, target));
        return 0;
    }
    emit_cond_jump(j, in, true, (uint32_t)(pc + 1), false);
    j->zf_reg = -1;
    for (size_t i = target; i < back; i++) {
        int ret = emit_repeat(j, &j->insns[i]);
        if (ret)
            return ret;
    }
    const struct bpf_insn *b = &j->insns[back];
    int ret = emit_ja(j, j->insns, back, BPF_CLASS(b->code) == BPF_JMP32 ? b->imm : b->off, pc + 1);
    j->zf_reg = -1; /* pc + 1 is reached by the jump */
    return ret;
}

static int emit_jmp(struct jit *j, const struct bpf_insn *in, size_t pc)
{
    bool is32 = BPF_CLASS(in->code) == BPF_JMP32;
    switch (BPF_OP(in->code)) {
    case BPF_JA: return emit_ja(j, in - pc, pc, is32 ? in->imm : in->off, pc + 1);
    case BPF_EXIT: emit1(j, 0xc3); return 0;
    case BPF_CALL:
        if (BPF_SRC(in->code) == BPF_X)
            emit_callx(j, in, pc);
        else if (in->src_reg == BPF_PSEUDO_CALL)
            emit_local_call(j, (int64_t)pc + 1 + in->imm, pc);
        else
            emit_helper_call(j, (uint32_t)in->imm, pc);
        return 0;
    }
    if (!is_cond_jump(in))
        return -EINVAL;
    return emit_cond(j, in, pc);
}

/* A loop head starts a 64-byte block (multi-byte nops before it, the Intel
 * SDM's recommended sequences): a small loop then sits in one block of the
 * decoded-uop cache's 64-byte windows. On the bench's Xeon (model 207)
 * strcmp_4k went 2.75 -> 2.07 us, prime_sieve_8k 22.5 -> 18.6 us and
 * memcpy_4k no longer depends on where its loop falls (185-352 -> 184 ns);
 * 32-byte alignment left memcpy's back edge across a 64-byte line. */
#define LOOP_ALIGN 64
static void align_loop(struct jit *j)
{
    static const uint8_t nops[9][9] = {
        {0x90},
        {0x66, 0x90},
        {0x0f, 0x1f, 0x00},
        {0x0f, 0x1f, 0x40, 0x00},
        {0x0f, 0x1f, 0x44, 0x00, 0x00},
        {0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00},
        {0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00},
        {0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00},
        {0x66, 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00},
    };
    size_t pad = (LOOP_ALIGN - j->len % LOOP_ALIGN) % LOOP_ALIGN;
    while (pad) {
        size_t k = pad < 9 ? pad : 9;
        for (size_t i = 0; i < k; i++)
            emit1(j, nops[k - 1][i]);
        pad -= k;
    }
}

/* ---- driver --------------------------------------------------------------- */

static void emit_entry(struct jit *j)
{
    static const int saved[] = {RBP, RBX, R12, R13, R14, R15};
    for (size_t i = 0; i < 6; i++)
        push(j, saved[i]);
    ins_rr(j, F_W, 0x81, 5, RSP); /* sub rsp, ENTRY_FRAME */
    emit4(j, ENTRY_FRAME);
    mov_rr(j, F_W, R12, RSP);
    ins_rm(j, F_W, 0x89, RDX, R12, BLK_TABLE);
    ins_rm(j, F_W, 0x89, RCX, R12, BLK_USER);
    ins_rm(j, F_W, 0x8d, RAX, R12, BLK_STACK);
    ins_rm(j, F_W, 0x89, RAX, R12, BLK_STACK_LO);
    ins_rm(j, F_W, 0x8d, RBP, R12, BLK_STACK + FRAME_AREA);
    static const int zero[] = {RAX, RDX, RCX, R8, RBX, R13, R14, R15};
    for (size_t i = 0; i < 8; i++)
        mov_ri(j, 0, zero[i], 0);
    emit1(j, 0xe8);
    add_fixup(j, 0); /* call the program */
    mov_ri(j, 0, RDX, 0);
    j->out_label = j->len;
    ins_rr(j, F_W, 0x81, 0, RSP);
    emit4(j, ENTRY_FRAME);
    for (size_t i = 6; i-- > 0;)
        pop(j, saved[i]);
    emit1(j, 0xc3);
}

static void emit_exits(struct jit *j)
{
    /* unwind: r0 = 0, no fault; both unwind every frame through r12 */
    j->labels[j->n + LBL_UNWIND] = (uint32_t)j->len;
    mov_rr(j, F_W, RSP, R12);
    mov_ri(j, 0, RAX, 0);
    mov_ri(j, 0, RDX, 0);
    jmp_back(j, j->out_label);
    /* fault: r10d = -errno, r11d = instruction */
    j->labels[j->n + LBL_FAULT] = (uint32_t)j->len;
    mov_rr(j, F_W, RSP, R12);
    mov_rr(j, 0, RDX, R10);
    ins_rr(j, F_W, 0xc1, 4, R11);
    emit1(j, 32);
    ins_rr(j, F_W, 0x09, R11, RDX);
    mov_ri(j, 0, RAX, 0);
    jmp_back(j, j->out_label);
}

static uint64_t accept_any(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, void *u)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)u;
    return 0;
}

/* Validates and resolves with the interpreter's loader; *vm_out holds the
 * resolved copy. */
int bpfg_x86jit_validate(const struct bpf_insn *insns, size_t n, const struct bpfg_x86jit_opts *opts,
                         struct bpfg_vm **vm_out, char *err, size_t errlen)
{
    struct bpfg_vm *vm = bpfg_vm_new();
    if (!vm) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (uint32_t id = 0; id < BPFG_MAX_HELPERS; id++)
        if (opts->helpers[id / 64] & (1ull << (id % 64)))
            bpfg_vm_register_helper(vm, id, NULL, accept_any, NULL);
    if (opts->resolver)
        bpfg_vm_set_ld64_resolver(vm, opts->resolver, opts->resolver_user);
    int ret = bpfg_vm_load(vm, insns, n);
    if (ret) {
        snprintf(err, errlen, "%s", bpfg_vm_error(vm));
        bpfg_vm_free(vm);
        return ret;
    }
    *vm_out = vm;
    return 0;
}

/* Instructions a callx may reach: targets of call local and lddw PSEUDO_FUNC. */
static int collect_funcs(struct jit *j, const struct bpf_insn *orig, size_t n)
{
    bool callx = false;
    for (size_t pc = 0; pc < n; pc++)
        callx |= orig[pc].code == (BPF_JMP | BPF_CALL | BPF_X);
    if (!callx)
        return 0;
    uint8_t *seen = calloc(n, 1);
    if (!seen)
        return -ENOMEM;
    for (size_t pc = 0; pc < n; pc++) {
        const struct bpf_insn *in = &orig[pc];
        if ((in->code == (BPF_JMP | BPF_CALL) && in->src_reg == BPF_PSEUDO_CALL) ||
            (in->code == (BPF_LD | BPF_IMM | BPF_DW) && in->src_reg == BPF_PSEUDO_FUNC))
            seen[pc + 1 + in->imm] = 1; /* validated in range */
        if (in->code == (BPF_LD | BPF_IMM | BPF_DW))
            pc++;
    }
    size_t cnt = 0;
    for (size_t pc = 0; pc < n; pc++)
        cnt += seen[pc];
    j->funcs = malloc((cnt ? cnt : 1) * sizeof(*j->funcs));
    if (!j->funcs) {
        free(seen);
        return -ENOMEM;
    }
    for (size_t pc = 0; pc < n; pc++)
        if (seen[pc])
            j->funcs[j->nfuncs++] = (uint32_t)pc;
    free(seen);
    return 0;
}

/* A goto or conditional jump's offset (a 32-bit goto's is in imm): true
 * and *off; false for calls, exits and anything else. */
static bool jump_offset(const struct bpf_insn *in, int64_t *off)
{
    uint8_t cls = BPF_CLASS(in->code), op = BPF_OP(in->code);
    if ((cls != BPF_JMP && cls != BPF_JMP32) || op == BPF_CALL || op == BPF_EXIT)
        return false;
    *off = op == BPF_JA && cls == BPF_JMP32 ? in->imm : in->off;
    return true;
}

/* Lookup inlining needs r1's value at a call: known from a lddw up to the
 * next instruction reached by a jump or a call (marked here) or the next
 * write to r1 (track_r1). */
static int mark_leaders(struct jit *j, const struct bpf_insn *orig, size_t n)
{
    j->leader = calloc(n, 1);
    if (!j->leader)
        return -ENOMEM;
    for (size_t pc = 0; pc < n; pc++) {
        const struct bpf_insn *in = &orig[pc];
        int64_t off;
        if (in->code == (BPF_LD | BPF_IMM | BPF_DW)) {
            if (in->src_reg == BPF_PSEUDO_FUNC)
                j->leader[pc + 1 + in->imm] = 1;
            pc++;
        } else if (in->code == (BPF_JMP | BPF_CALL) && in->src_reg == BPF_PSEUDO_CALL) {
            j->leader[pc + 1 + in->imm] = 1;
        } else if (jump_offset(in, &off)) {
            j->leader[(int64_t)pc + 1 + off] = 1;
        }
    }
    return 0;
}

/* Loop heads: targets of backward jumps; for a goto back to a head
 * emit_ja carries (rotated_test), the instruction after its test. */
static int mark_loop_heads(struct jit *j, const struct bpf_insn *orig, size_t n)
{
    j->loop_head = calloc(n, 1);
    if (!j->loop_head)
        return -ENOMEM;
    for (size_t pc = 0; pc < n; pc++) {
        const struct bpf_insn *in = &orig[pc];
        int64_t off;
        if (in->code == (BPF_LD | BPF_IMM | BPF_DW)) {
            pc++;
            continue;
        }
        if (!jump_offset(in, &off) || off >= 0)
            continue;
        size_t t = (size_t)((int64_t)pc + 1 + off);
        size_t test = BPF_OP(in->code) == BPF_JA ? rotated_test(orig, t, pc) : SIZE_MAX;
        j->loop_head[test == SIZE_MAX ? t : test + 1] = 1;
    }
    return 0;
}

/* After instruction in: whether r1 still holds the value a lddw gave it. */
static void track_r1(struct jit *j, const struct bpf_insn *in)
{
    uint8_t cls = BPF_CLASS(in->code), op = BPF_OP(in->code);
    bool writes = in->dst_reg == BPF_REG_1;
    if (cls == BPF_LD && writes) {
        j->r1_known = true;
        j->r1_val = (uint64_t)(uint32_t)in->imm | (uint64_t)(uint32_t)in[1].imm << 32;
        return;
    }
    if (cls == BPF_STX && BPF_MODE(in->code) == BPF_ATOMIC)
        writes = in->src_reg == BPF_REG_1; /* the fetch forms write src */
    else if (cls == BPF_JMP || cls == BPF_JMP32)
        writes = op == BPF_CALL; /* a bpf-to-bpf callee's r1 comes back */
    else if (cls == BPF_ST || cls == BPF_STX)
        writes = false;
    if (writes)
        j->r1_known = false;
}

/* One instruction (lddw: two, *pc advanced past the second). */
static int emit_insn(struct jit *j, const struct bpf_insn *in, size_t *pc)
{
    switch (BPF_CLASS(in->code)) {
    case BPF_ALU:
    case BPF_ALU64: return emit_alu(j, in);
    case BPF_JMP:
    case BPF_JMP32: return emit_jmp(j, in, *pc);
    case BPF_LD:
        if (in->code != (BPF_LD | BPF_IMM | BPF_DW))
            return -EINVAL;
        mov_ri64(j, reg_map[in->dst_reg], (uint64_t)(uint32_t)in->imm | (uint64_t)(uint32_t)in[1].imm << 32);
        j->labels[++*pc] = (uint32_t)j->len;
        j->done = *pc + 1;
        return 0;
    case BPF_LDX: emit_ldx(j, in); return 0;
    case BPF_ST: emit_st(j, in); return 0;
    case BPF_STX:
        if (BPF_MODE(in->code) == BPF_ATOMIC)
            emit_atomic(j, in, *pc);
        else
            emit_stx(j, in);
        return 0;
    default: return -EINVAL;
    }
}

int bpfg_x86jit_compile(const struct bpf_insn *orig, size_t n, const struct bpfg_x86jit_opts *opts,
                        struct bpfg_x86jit_code *out, char *err, size_t errlen)
{
    static const struct bpfg_x86jit_opts no_opts;
    struct bpfg_vm *vm = NULL;
    struct jit j = {.n = n, .opts = opts ? opts : &no_opts, .zf_reg = -1};
    int ret;

    out->buf = NULL;
    out->len = 0;
    if (errlen)
        err[0] = '\0';
    ret = bpfg_x86jit_validate(orig, n, j.opts, &vm, err, errlen);
    if (ret)
        return ret;
    const struct bpf_insn *insns = bpfg_vm_insns(vm);
    if (bpfg_vm_lowered_insns(vm)) { /* callback stubs were appended */
        orig = bpfg_vm_lowered_insns(vm);
        n = j.n = bpfg_vm_insn_count(vm);
    }

    j.cap = n * 16 + 512;
    j.buf = malloc(j.cap);
    j.labels = malloc((n + NLBL_EXTRA) * sizeof(*j.labels));
    j.insns = insns;
    if (!j.buf || !j.labels || collect_funcs(&j, orig, n) || mark_leaders(&j, orig, n) ||
        mark_loop_heads(&j, orig, n) || bpfg_x86_fold_plan(insns, n, j.leader, &j.fold)) {
        ret = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    emit_entry(&j);
    for (size_t pc = 0; pc < n && !ret; pc++) {
        const struct bpf_insn *in = &insns[pc];
        if (j.loop_head[pc])
            align_loop(&j);
        j.labels[pc] = (uint32_t)j.len;
        j.done = pc + 1;
        if (j.leader[pc])
            j.r1_known = false;
        begin_insn(&j, j.leader[pc]);
        if (j.fold[pc].kind != FOLD_SKIP)
            ret = emit_insn(&j, in, &pc);
        if (ret)
            snprintf(err, errlen, "instruction %zu: opcode 0x%02x not supported by the x86 JIT", pc, in->code);
        track_r1(&j, in);
    }
    if (ret)
        goto out;
    emit_exits(&j);
    if (j.oom || j.len > INT32_MAX) {
        ret = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < j.nfix && !ret; i++) {
        const struct fixup *f = &j.fix[i];
        int64_t rel = (int64_t)j.labels[f->label] - (int64_t)(f->pos + (f->rel8 ? 1 : 4));
        if (f->rel8 && !is_imm8(rel)) { /* near_forward's bound is wrong */
            ret = -EFAULT;
            snprintf(err, errlen, "internal error: a short jump does not reach instruction %u", f->label);
        } else if (f->rel8) {
            j.buf[f->pos] = (uint8_t)(int8_t)rel;
        } else {
            int32_t rel32 = (int32_t)rel;
            memcpy(j.buf + f->pos, &rel32, 4);
        }
    }
    if (ret)
        goto out;
    out->buf = j.buf;
    out->len = j.len;
    j.buf = NULL;
out:
    free(j.buf);
    free(j.labels);
    free(j.fix);
    free(j.funcs);
    free(j.leader);
    free(j.loop_head);
    free(j.fold);
    bpfg_vm_free(vm);
    return ret;
}

void bpfg_x86jit_code_free(struct bpfg_x86jit_code *code)
{
    if (!code)
        return;
    free(code->buf);
    code->buf = NULL;
    code->len = 0;
}
