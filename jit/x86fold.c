/* Address folding for the x86 JIT: register liveness, then the
 * "d = s; d += x; loads/stores at [d + off]" groups whose d dies.
 *
 * Liveness is conservative where the engines' behaviour beyond the eBPF
 * rules is observable: calls read every register (the engines keep
 * r1-r5 across a helper; a callee may read what it was not given), and
 * with any call in the program every exit reads r0-r9 (a subprogram's
 * exit returns them to its caller). */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "x86fold.h"

#define ALL_REGS 0x3ffu /* r0..r9; r10 is never written */
#define LDDW (BPF_LD | BPF_IMM | BPF_DW)

static unsigned bit(int r)
{
    return 1u << r;
}

struct flow {
    const struct bpf_insn *insns;
    size_t n;
    unsigned exit_use;
    uint16_t *live_out; /* computed at the first group found: most programs have none */
};

/* Registers in reads; *def those it surely writes. */
static unsigned uses(const struct flow *f, const struct bpf_insn *in, unsigned *def)
{
    uint8_t cls = BPF_CLASS(in->code), op = BPF_OP(in->code);
    bool x = BPF_SRC(in->code) == BPF_X;
    *def = 0;
    switch (cls) {
    case BPF_ALU:
    case BPF_ALU64:
        *def = bit(in->dst_reg);
        return (op == BPF_MOV ? 0 : bit(in->dst_reg)) | (x && op != BPF_END ? bit(in->src_reg) : 0);
    case BPF_LD: *def = bit(in->dst_reg); return 0;
    case BPF_LDX: *def = bit(in->dst_reg); return bit(in->src_reg);
    case BPF_ST: return bit(in->dst_reg);
    case BPF_STX: return bit(in->dst_reg) | bit(in->src_reg) | (BPF_MODE(in->code) == BPF_ATOMIC ? 1u : 0);
    default: break;
    }
    if (op == BPF_EXIT)
        return f->exit_use;
    if (op == BPF_CALL)
        return ALL_REGS;
    if (op == BPF_JA)
        return 0;
    return bit(in->dst_reg) | (x ? bit(in->src_reg) : 0);
}

/* The successors of the instruction at pc: up to 2 in s, their count. */
static int successors(const struct flow *f, size_t pc, size_t s[2])
{
    const struct bpf_insn *in = &f->insns[pc];
    uint8_t cls = BPF_CLASS(in->code), op = BPF_OP(in->code);
    size_t next = pc + (in->code == LDDW ? 2 : 1);
    int k = 0;
    if (cls == BPF_JMP || cls == BPF_JMP32) {
        if (op == BPF_EXIT)
            return 0;
        if (op != BPF_CALL) {
            int64_t off = op == BPF_JA && cls == BPF_JMP32 ? in->imm : in->off;
            s[k++] = (size_t)((int64_t)pc + 1 + off);
            if (op == BPF_JA)
                return k;
        }
    }
    if (next < f->n)
        s[k++] = next;
    return k;
}

static bool has_calls(const struct bpf_insn *insns, size_t n)
{
    for (size_t pc = 0; pc < n; pc++) {
        if (insns[pc].code == (BPF_JMP | BPF_CALL) && insns[pc].src_reg == BPF_PSEUDO_CALL)
            return true;
        if (insns[pc].code == (BPF_JMP | BPF_CALL | BPF_X))
            return true;
        if (insns[pc].code == LDDW && insns[pc].src_reg == BPF_PSEUDO_FUNC)
            return true;
    }
    return false;
}

/* f->live_out[pc]: the registers read after instruction pc before
 * written. */
static int liveness(struct flow *f)
{
    struct node {
        uint16_t use, def, in;
        uint8_t nsucc; /* 3: the second half of a lddw */
        size_t succ[2];
    } *g = calloc(f->n, sizeof(*g));
    uint16_t *live_out = calloc(f->n, sizeof(*live_out));
    if (!g || !live_out) {
        free(g);
        free(live_out);
        return -ENOMEM;
    }
    for (size_t pc = 0; pc < f->n; pc++) {
        unsigned def;
        g[pc].use = (uint16_t)uses(f, &f->insns[pc], &def);
        g[pc].def = (uint16_t)def;
        g[pc].nsucc = (uint8_t)successors(f, pc, g[pc].succ);
        if (f->insns[pc].code == LDDW && pc + 1 < f->n)
            g[++pc].nsucc = 3;
    }
    for (bool changed = true; changed;) {
        changed = false;
        for (size_t pc = f->n; pc-- > 0;) {
            struct node *v = &g[pc];
            if (v->nsucc == 3)
                continue;
            unsigned out = 0;
            for (int i = 0; i < v->nsucc; i++)
                out |= g[v->succ[i]].in;
            unsigned in = v->use | (out & ~(unsigned)v->def);
            changed |= in != v->in;
            v->in = (uint16_t)in;
            live_out[pc] = (uint16_t)out;
        }
    }
    free(g);
    f->live_out = live_out;
    return 0;
}

/* A load or store addressed by d (a store's value not d itself). */
static bool based_on(const struct bpf_insn *in, int d)
{
    switch (BPF_CLASS(in->code)) {
    case BPF_LDX: return (BPF_MODE(in->code) == BPF_MEM || BPF_MODE(in->code) == BPF_MEMSX) && in->src_reg == d;
    case BPF_ST: return BPF_MODE(in->code) == BPF_MEM && in->dst_reg == d;
    case BPF_STX: return BPF_MODE(in->code) == BPF_MEM && in->dst_reg == d && in->src_reg != d;
    default: return false;
    }
}

/* The group starting with "d = s" at pc, if it folds: *last its last
 * access, else 0. 0 or -ENOMEM. */
static int fold_group(struct flow *f, const uint8_t *leader, size_t pc, struct x86_fold *plan, size_t *last_out)
{
    *last_out = 0;
    const struct bpf_insn *a = &f->insns[pc], *b = &f->insns[pc + 1];
    int d = a->dst_reg, s = a->src_reg;
    if (a->code != (BPF_ALU64 | BPF_MOV | BPF_X) || a->off || d == s || pc + 2 >= f->n || leader[pc + 1] ||
        b->dst_reg != d || (b->code != (BPF_ALU64 | BPF_ADD | BPF_X) && b->code != (BPF_ALU64 | BPF_ADD | BPF_K)))
        return 0;
    bool k = BPF_SRC(b->code) == BPF_K;
    int x = k ? FOLD_NOREG : b->src_reg == d ? s : b->src_reg;
    int32_t disp = k ? b->imm : 0;
    size_t last = 0;
    for (size_t c = pc + 2; c < f->n && !leader[c] && based_on(&f->insns[c], d); c++) {
        int64_t sum = (int64_t)disp + f->insns[c].off;
        if (sum < INT32_MIN || sum > INT32_MAX)
            break;
        last = c;
        unsigned def;
        uses(f, &f->insns[c], &def);
        if (def & (bit(s) | bit(d) | (x == FOLD_NOREG ? 0 : bit(x))))
            break; /* the next access would see the new value */
    }
    if (!last)
        return 0;
    if (!f->live_out && liveness(f))
        return -ENOMEM;
    unsigned def;
    uses(f, &f->insns[last], &def);
    if ((f->live_out[last] & bit(d)) && !(def & bit(d)))
        return 0;
    plan[pc].kind = plan[pc + 1].kind = FOLD_SKIP;
    for (size_t c = pc + 2; c <= last; c++)
        plan[c] = (struct x86_fold){FOLD_MEM, (uint8_t)s, (uint8_t)x, disp};
    *last_out = last;
    return 0;
}

int bpfg_x86_fold_plan(const struct bpf_insn *insns, size_t n, const uint8_t *leader, struct x86_fold **out)
{
    struct flow f = {insns, n, has_calls(insns, n) ? ALL_REGS : 1u, NULL};
    struct x86_fold *plan = calloc(n ? n : 1, sizeof(*plan));
    int ret = plan ? 0 : -ENOMEM;
    for (size_t pc = 0; pc < n && !ret; pc++) {
        size_t last = 0;
        if (insns[pc].code != LDDW)
            ret = fold_group(&f, leader, pc, plan, &last);
        if (last)
            pc = last;
        else if (insns[pc].code == LDDW)
            pc++;
    }
    free(f.live_out);
    if (ret) {
        free(plan);
        return ret;
    }
    *out = plan;
    return 0;
}
