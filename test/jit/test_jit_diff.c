/* Differential tests of the x86-64 JIT against the interpreter (and, for
 * the programs its verifier accepts, the kernel through BPF_PROG_TEST_RUN).
 *
 * Random valid programs: straight-line code over every ALU, JMP, LD, LDX,
 * ST, STX and atomic form, forward branches, bounded loops, helper calls
 * (also through callx and the unwind helper) and bpf-to-bpf calls, with
 * memory accesses confined to the stack and a 256-byte context buffer. The
 * epilogue folds every data register and the used stack slots into r0, so
 * comparing r0 and the context buffer compares the whole final state.
 *
 * Counts: BPFG_JIT_DIFF_PROGS (default 20000) random programs,
 * BPFG_JIT_DIFF_KERNEL (default 2000) kernel-compatible ones; seed from
 * BPFG_JIT_DIFF_SEED. Longer runs: set the counts.
 */
#define _GNU_SOURCE /* memfd_create */
#include <bpf/bpf.h>
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asm.h"
#include "criterion_facts.h"
#include "insn.h"
#include "vm.h"
#include "x86jit.h"
#include "jit_run.h" /* test/helpers: running the code here */
#ifdef BPFGRAFT_HAVE_LLVM
#include <sys/mman.h>
#include "llvmjit.h"
#endif

#define CTX_LEN 256
#define SLOTS 8 /* stack bytes used: [r10 - 8*SLOTS, r10) */
#define HELPER_HASH 1
#define HELPER_UNWIND 2
#define HELPER_CONF_UNWIND 5
#define MAX_PROG 512

static int user_token;

static uint64_t helper_hash(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, void *user)
{
    uint64_t h = 0xcbf29ce484222325ull ^ (user == &user_token);
    uint64_t v[5] = {r1, r2, r3, r4, r5};
    for (int i = 0; i < 5; i++)
        h = (h ^ v[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t helper_unwind(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, void *user)
{
    (void)r2, (void)r3, (void)r4, (void)r5, (void)user;
    return r1 & 3;
}

static uint64_t helper_conf_unwind(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, void *user)
{
    (void)r2, (void)r3, (void)r4, (void)r5, (void)user;
    return r1;
}

/* ---- random program generator ------------------------------------------ */

struct gen {
    struct bpf_insn p[MAX_PROG];
    bool bad_target[MAX_PROG]; /* second half of lddw, inside a loop */
    size_t n;
    uint64_t rng;
    bool kernel; /* only what the kernel verifier accepts */
    struct {
        size_t pc, target;
        bool in_imm;
    } jumps[64];
    size_t njumps;
    struct {
        size_t pc;
        int sub;
        bool pseudo_func;
    } calls[8];
    size_t ncalls;
};

static uint64_t rnd(struct gen *g)
{
    g->rng ^= g->rng << 13;
    g->rng ^= g->rng >> 7;
    g->rng ^= g->rng << 17;
    return g->rng;
}

static uint32_t below(struct gen *g, uint32_t n)
{
    return (uint32_t)(rnd(g) % n);
}

static void put(struct gen *g, struct bpf_insn in)
{
    if (g->n < MAX_PROG)
        g->p[g->n++] = in;
}

static uint64_t special(struct gen *g)
{
    static const uint64_t v[] = {0,
                                 1,
                                 2,
                                 3,
                                 7,
                                 31,
                                 32,
                                 63,
                                 64,
                                 0xff,
                                 0xffff,
                                 0x7fffffff,
                                 0x80000000,
                                 0xffffffff,
                                 0x100000000ull,
                                 (uint64_t)-1,
                                 (uint64_t)-2,
                                 0x8000000000000000ull,
                                 0x7fffffffffffffffull,
                                 0xffffffff80000000ull};
    switch (below(g, 3)) {
    case 0: return v[below(g, sizeof(v) / sizeof(v[0]))];
    case 1: return below(g, 1000) - 500;
    default: return rnd(g);
    }
}

static int32_t imm32(struct gen *g)
{
    return (int32_t)special(g);
}
static int data_reg(struct gen *g)
{
    return (int)below(g, 9);
} /* r0..r8; r9 = ctx, r10 = frame */

/* loop counters are never written inside their loop */
static int dst_reg(struct gen *g, int avoid)
{
    int r;
    do
        r = data_reg(g);
    while (r == avoid);
    return r;
}

static void gen_alu(struct gen *g, int avoid)
{
    static const uint8_t ops[] = {BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR,  BPF_AND,  BPF_LSH,
                                  BPF_RSH, BPF_NEG, BPF_MOD, BPF_XOR, BPF_MOV, BPF_ARSH, BPF_END};
    uint8_t op = ops[below(g, sizeof(ops))];
    bool is64 = below(g, 2);
    uint8_t cls = is64 ? BPF_ALU64 : BPF_ALU;
    int dst = dst_reg(g, avoid);
    bool reg = below(g, 2);
    int32_t imm = imm32(g);
    int16_t off = 0;

    if (op == BPF_NEG) {
        put(g, INSN(cls | BPF_K | op, dst, 0, 0, 0));
        return;
    }
    if (op == BPF_END) {
        static const int widths[] = {16, 32, 64};
        int w = widths[below(g, 3)];
        int kind = below(g, 3); /* le, be, bswap */
        uint8_t code =
            kind == 2 ? (BPF_ALU64 | BPF_END | BPF_TO_LE) : (BPF_ALU | BPF_END | (kind ? BPF_TO_BE : BPF_TO_LE));
        put(g, INSN(code, dst, 0, 0, w));
        return;
    }
    if ((op == BPF_DIV || op == BPF_MOD) && below(g, 3) == 0)
        off = 1; /* sdiv / smod */
    if ((op == BPF_DIV || op == BPF_MOD) && !reg) {
        if (below(g, 4) == 0)
            imm = (int32_t)below(g, 3) - 1; /* -1, 0, 1 */
        if (g->kernel && imm == 0)
            imm = 3;
    }
    if (op == BPF_MOV && reg && below(g, 3) == 0) {
        static const int16_t sx[] = {8, 16, 32};
        off = sx[below(g, is64 ? 3 : 2)];
    }
    if ((op == BPF_LSH || op == BPF_RSH || op == BPF_ARSH) && !reg && (g->kernel || below(g, 2)))
        imm = (int32_t)below(g, is64 ? 64 : 32);
    if (reg)
        put(g, INSN(cls | BPF_X | op, dst, data_reg(g), off, 0));
    else
        put(g, INSN(cls | BPF_K | op, dst, 0, off, imm));
}

static const uint8_t sizes[] = {BPF_B, BPF_H, BPF_W, BPF_DW};

static int size_bytes(uint8_t sz)
{
    return sz == BPF_B ? 1 : sz == BPF_H ? 2 : sz == BPF_W ? 4 : 8;
}

/* a base register and an offset for an access of `bytes`, in bounds */
static void mem_operand(struct gen *g, int bytes, bool aligned, int *base, int16_t *off)
{
    if (below(g, 2)) {
        *base = BPF_REG_10;
        int o = (int)below(g, SLOTS * 8 - bytes + 1);
        if (aligned || g->kernel)
            o &= ~(bytes - 1);
        *off = (int16_t)(o - SLOTS * 8);
    } else {
        *base = BPF_REG_9;
        int o = (int)below(g, CTX_LEN - bytes + 1);
        if (aligned)
            o &= ~(bytes - 1);
        *off = (int16_t)o;
    }
}

static void gen_mem(struct gen *g, int avoid)
{
    uint8_t sz = sizes[below(g, 4)];
    int base;
    int16_t off;
    switch (below(g, 4)) {
    case 0: { /* ldx, sign-extending or not */
        bool sx = sz != BPF_DW && below(g, 3) == 0;
        mem_operand(g, size_bytes(sz), false, &base, &off);
        put(g, INSN(BPF_LDX | (sx ? BPF_MEMSX : BPF_MEM) | sz, dst_reg(g, avoid), base, off, 0));
        break;
    }
    case 1:
        mem_operand(g, size_bytes(sz), false, &base, &off);
        put(g, INSN(BPF_ST | BPF_MEM | sz, base, 0, off, imm32(g)));
        break;
    case 2:
        mem_operand(g, size_bytes(sz), false, &base, &off);
        put(g, INSN(BPF_STX | BPF_MEM | sz, base, data_reg(g), off, 0));
        break;
    default: {
        static const int32_t aops[] = {BPF_ADD,
                                       BPF_OR,
                                       BPF_AND,
                                       BPF_XOR,
                                       BPF_ADD | BPF_FETCH,
                                       BPF_OR | BPF_FETCH,
                                       BPF_AND | BPF_FETCH,
                                       BPF_XOR | BPF_FETCH,
                                       BPF_XCHG,
                                       BPF_CMPXCHG};
        int32_t aop = aops[below(g, 10)];
        sz = below(g, 2) ? BPF_W : BPF_DW;
        mem_operand(g, size_bytes(sz), true, &base, &off);
        if (g->kernel && base == BPF_REG_9) { /* no atomics on packet memory */
            base = BPF_REG_10;
            off = (int16_t)(-8 * (1 + (int)below(g, SLOTS)));
        }
        bool writes_src = (aop & BPF_FETCH) || aop == BPF_XCHG;
        if (aop == BPF_CMPXCHG && avoid == BPF_REG_0)
            aop = BPF_ADD;
        put(g, INSN(BPF_STX | BPF_ATOMIC | sz, base, writes_src ? dst_reg(g, avoid) : data_reg(g), off, aop));
        break;
    }
    }
}

static void gen_ldimm(struct gen *g, int avoid)
{
    uint64_t v = special(g);
    g->bad_target[g->n + 1] = true;
    put(g, INSN(BPF_LD | BPF_IMM | BPF_DW, dst_reg(g, avoid), 0, 0, (int32_t)(uint32_t)v));
    put(g, INSN(0, 0, 0, 0, (int32_t)(uint32_t)(v >> 32)));
}

static void gen_straight(struct gen *g, int avoid)
{
    unsigned r = below(g, 10);
    if (r < 6)
        gen_alu(g, avoid);
    else if (r < 9)
        gen_mem(g, avoid);
    else
        gen_ldimm(g, avoid);
}

static void gen_cond_jump(struct gen *g)
{
    static const uint8_t ops[] = {BPF_JEQ,  BPF_JGT, BPF_JGE, BPF_JSET, BPF_JNE, BPF_JSGT,
                                  BPF_JSGE, BPF_JLT, BPF_JLE, BPF_JSLT, BPF_JSLE};
    uint8_t cls = below(g, 2) ? BPF_JMP : BPF_JMP32;
    uint8_t op = ops[below(g, sizeof(ops))];
    if (g->njumps == sizeof(g->jumps) / sizeof(g->jumps[0]))
        return;
    g->jumps[g->njumps].pc = g->n;
    g->jumps[g->njumps].in_imm = false;
    g->jumps[g->njumps++].target = g->n + 1 + below(g, 12);
    if (below(g, 8) == 0) { /* ja, or ja32 with the offset in imm */
        g->jumps[g->njumps - 1].in_imm = below(g, 2);
        put(g, INSN((g->jumps[g->njumps - 1].in_imm ? BPF_JMP32 : BPF_JMP) | BPF_JA, 0, 0, 0, 0));
    } else if (below(g, 2))
        put(g, INSN(cls | BPF_X | op, data_reg(g), data_reg(g), 0, 0));
    else
        put(g, INSN(cls | BPF_K | op, data_reg(g), 0, 0, imm32(g)));
}

static void gen_loop(struct gen *g)
{
    int counter = 6 + (int)below(g, 3);
    put(g, MOV64_IMM(counter, 1 + (int)below(g, 5)));
    size_t start = g->n;
    size_t len = 1 + below(g, 6);
    for (size_t i = 0; i < len; i++)
        gen_straight(g, counter);
    put(g, ALU64_IMM(BPF_ADD, counter, -1));
    put(g, JMP_IMM(BPF_JNE, counter, 0, (int16_t)(start - (g->n + 1))));
    for (size_t pc = start; pc < g->n && pc < MAX_PROG; pc++)
        g->bad_target[pc] = true;
}

/* "L: head; if done(counter) goto X; body; step; goto L; [dead;] X:" (the
 * x86 JIT repeats the head and the test, inverted, on the back-edge when
 * the head is at most 4 instructions and no lddw or atomic), with every
 * exit test form: counting down to 0, or up until a bit is set (jset). The
 * head is 0-5 straight-line instructions, sometimes ending with the step
 * (the goto then follows the test at once); outside kernel programs the
 * exit sometimes skips dead code after the goto (the repeated test's exit
 * then needs its own jmp). The body sometimes continues early: "if c goto
 * C; ...; goto L; C: s1..sk; step; goto L" (the x86 JIT carries C's code
 * into the jump, its test inverted, when k + 1 <= 4). */
static void gen_while(struct gen *g)
{
    static const struct {
        uint8_t op;
        int32_t imm;
    } down[] = {{BPF_JEQ, 0}, {BPF_JSLE, 0}, {BPF_JLE, 0}, {BPF_JLT, 1}, {BPF_JSLT, 1}};
    int counter = 6 + (int)below(g, 3);
    bool up = below(g, 4) == 0, step_first = below(g, 3) == 0;
    uint8_t cls = below(g, 2) ? BPF_JMP : BPF_JMP32;
    struct bpf_insn step = ALU64_IMM(BPF_ADD, counter, up ? 1 : -1);
    put(g, MOV64_IMM(counter, up ? 1 + (int)below(g, 7) : (int)below(g, 6) + step_first));
    size_t head = g->n;
    for (size_t i = 0, len = below(g, 6); i < len; i++)
        gen_straight(g, counter);
    if (step_first)
        put(g, step);
    size_t test = g->n, k = below(g, 5);
    put(g, up ? INSN(cls | BPF_K | BPF_JSET, counter, 0, 0, 8)
              : INSN(cls | BPF_K | down[k].op, counter, 0, 0, down[k].imm));
    size_t cont = SIZE_MAX;
    for (size_t i = 0, len = step_first ? 0 : 1 + below(g, 5); i < len; i++) {
        if (cont == SIZE_MAX && below(g, 4) == 0) {
            cont = g->n;
            gen_cond_jump(g);
            if (g->n == cont) /* the jump table is full */
                cont = SIZE_MAX;
            else
                g->njumps--; /* its target is C */
        }
        gen_straight(g, counter);
    }
    if (!step_first)
        put(g, step);
    for (int pass = 0; pass < 1 + (cont != SIZE_MAX); pass++) {
        if (pass) { /* the continue block C */
            if (BPF_OP(g->p[cont].code) == BPF_JA)
                g->p[cont].code = BPF_JMP | BPF_JNE | BPF_K; /* not a goto: a test */
            g->p[cont].off = (int16_t)(g->n - (cont + 1));
            for (size_t i = 0, len = below(g, 5); i < len; i++)
                gen_straight(g, counter);
            put(g, step);
        }
        if (below(g, 2))
            put(g, JA((int16_t)(head - (g->n + 1))));
        else
            put(g, INSN(BPF_JMP32 | BPF_JA, 0, 0, 0, (int32_t)(head - (g->n + 1))));
    }
    for (size_t i = 0, len = g->kernel ? 0 : below(g, 3); i < len; i++) /* the kernel refuses dead code */
        gen_straight(g, -1);
    if (test < g->n)
        g->p[test].off = (int16_t)(g->n - (test + 1));
    for (size_t pc = head; pc < g->n && pc < MAX_PROG; pc++) /* entered past its counter's start */
        g->bad_target[pc] = true;
}

/* "d = s; d += x; loads and stores at [d + off]" with s a copy of r10 or
 * r9 and x a register or an immediate: the x86 JIT addresses [s + x +
 * off] and leaves out the mov and add when d dies. 1-3 accesses, some
 * loading into s or x (a fold must not reach past them: the accesses after
 * would see the new value), the last sometimes into d; d is then either
 * dead or still read (d -= s: an offset, the same in every engine), at
 * once or past a goto. No address is left in a register. */
static void gen_fold_mem(struct gen *g, int avoid)
{
    bool stack = below(g, 2), reg = below(g, 2), sub = below(g, 2), s_loaded = false, d_loaded = false;
    bool fp = stack && below(g, 3) == 0; /* s = r10 itself */
    int s = fp ? BPF_REG_10 : dst_reg(g, avoid), d, x = -1;
    do
        d = dst_reg(g, avoid);
    while (d == s);
    if (reg)
        do
            x = dst_reg(g, avoid);
        while (x == s || x == d);
    int32_t xval = (int32_t)below(g, 601) - 300;
    size_t first = g->n;
    if (!fp)
        put(g, MOV64_REG(s, stack ? BPF_REG_10 : BPF_REG_9));
    if (reg)
        put(g, MOV64_IMM(x, xval));
    put(g, MOV64_REG(d, s));
    put(g, reg ? ALU64_REG(BPF_ADD, d, x) : ALU64_IMM(BPF_ADD, d, xval));
    for (size_t i = 0, k = 1 + below(g, 3); i < k; i++) {
        uint8_t sz = sizes[below(g, 4)];
        int bytes = size_bytes(sz);
        int o = stack         ? (int)below(g, SLOTS * 8 - bytes + 1) - SLOTS * 8
                : below(g, 4) ? (int)below(g, CTX_LEN - bytes + 1)
                              : 0; /* [s + 0]: no displacement byte */
        int16_t off = (int16_t)(o - xval);
        int v;
        switch (below(g, 3)) {
        case 0:
            int cand[3], nc = 0; /* d only by the last: the others address by it */
            if (i + 1 == k)
                cand[nc++] = d;
            if (!fp)
                cand[nc++] = s;
            if (x >= 0)
                cand[nc++] = x;
            if (nc && below(g, 2)) {
                v = cand[below(g, (uint32_t)nc)];
            } else {
                do
                    v = dst_reg(g, avoid);
                while (v == s || v == d || v == x);
            }
            s_loaded |= v == s, d_loaded |= v == d;
            put(g, INSN(BPF_LDX | (sz == BPF_DW || below(g, 3) ? BPF_MEM : BPF_MEMSX) | sz, v, d, off, 0));
            break;
        case 1: put(g, ST_IMM(sz, d, off, imm32(g))); break;
        default:
            do
                v = data_reg(g);
            while (v == s || v == d);
            put(g, STX(sz, d, v, off));
            break;
        }
    }
    if (sub && !s_loaded && !d_loaded) {
        if (below(g, 2)) { /* d's read further on, past a write of another register and a goto */
            int e;
            do
                e = dst_reg(g, avoid);
            while (e == s || e == d);
            put(g, MOV64_IMM(e, (int32_t)below(g, 100)));
            put(g, JA(1));
            put(g, MOV64_IMM(d, 7)); /* skipped */
        }
        put(g, ALU64_REG(BPF_SUB, d, s));
    } else
        put(g, MOV64_IMM(d, (int32_t)below(g, 100)));
    if (!fp)
        put(g, MOV64_IMM(s, (int32_t)below(g, 100)));
    for (size_t pc = first + 1; pc < g->n && pc < MAX_PROG; pc++)
        g->bad_target[pc] = true; /* a jump past the first mov would use a random address */
}

/* An ALU operation on dst, then "if dst ==/!= 0": the x86 JIT takes the
 * operation's flags for the test (not after a 64-bit operation for a
 * 32-bit test, nor after a shift by 0, which leaves them). Shift counts
 * 0, 1, 31, 32 and 63; the jump's target sometimes another jump's. */
static void gen_zero_test(struct gen *g, int avoid)
{
    static const uint8_t ops[] = {BPF_ADD, BPF_SUB, BPF_OR, BPF_AND, BPF_XOR, BPF_NEG, BPF_LSH, BPF_RSH, BPF_ARSH};
    static const int32_t counts[] = {0, 1, 31, 32, 63};
    uint8_t op = ops[below(g, sizeof(ops))];
    uint8_t cls = below(g, 2) ? BPF_ALU64 : BPF_ALU;
    int dst = dst_reg(g, avoid);
    bool shift = op == BPF_LSH || op == BPF_RSH || op == BPF_ARSH;
    int32_t imm = shift ? counts[below(g, 5)] & (cls == BPF_ALU64 ? 63 : 31) : imm32(g);
    if (op == BPF_NEG)
        put(g, INSN(cls | BPF_K | op, dst, 0, 0, 0));
    else if (!shift && below(g, 2))
        put(g, INSN(cls | BPF_X | op, dst, data_reg(g), 0, 0));
    else
        put(g, INSN(cls | BPF_K | op, dst, 0, 0, imm));
    if (g->njumps == sizeof(g->jumps) / sizeof(g->jumps[0]))
        return;
    g->jumps[g->njumps].pc = g->n;
    g->jumps[g->njumps].in_imm = false;
    g->jumps[g->njumps++].target = g->n + 1 + below(g, 8);
    put(g, INSN((below(g, 2) ? BPF_JMP : BPF_JMP32) | BPF_K | (below(g, 2) ? BPF_JEQ : BPF_JNE), dst, 0, 0, 0));
}

/* "dst = src; dst += x", clang's address arithmetic: with a data register
 * or an immediate, the source register itself as x, and (not in kernel
 * programs) a stack or context address used at once. */
static void gen_addr(struct gen *g, int avoid)
{
    int dst = dst_reg(g, avoid), src = data_reg(g);
    if (!g->kernel && below(g, 3) == 0) {
        bool stack = below(g, 2);
        int slot = (int)below(g, SLOTS);
        for (size_t pc = g->n + 1; pc < g->n + 4 && pc < MAX_PROG; pc++)
            g->bad_target[pc] = true; /* a jump past the mov would use a random address */
        put(g, MOV64_REG(dst, stack ? BPF_REG_10 : BPF_REG_9));
        put(g, ALU64_IMM(BPF_ADD, dst, stack ? -8 * (slot + 1) : 8 * slot));
        if (below(g, 2)) {
            put(g, STX(BPF_DW, dst, src == dst ? (dst + 1) % 9 : src, 0));
            put(g, MOV64_IMM(dst, (int32_t)below(g, 100))); /* no address left in a register */
        } else {
            put(g, LDX(BPF_DW, dst, dst, 0));
        }
        return;
    }
    put(g, MOV64_REG(dst, src));
    switch (below(g, 3)) {
    case 0: put(g, ALU64_IMM(BPF_ADD, dst, imm32(g))); break;
    case 1: put(g, ALU64_REG(BPF_ADD, dst, dst)); break;
    default: put(g, ALU64_REG(BPF_ADD, dst, data_reg(g))); break;
    }
}

static void gen_call(struct gen *g)
{
    switch (below(g, 5)) {
    case 0:
        put(g, MOV64_IMM(BPF_REG_1, 1 + (int)below(g, 7))); /* sometimes unwinds */
        put(g, CALL_HELPER(HELPER_UNWIND));
        break;
    case 1: {
        int r = data_reg(g);
        put(g, MOV64_IMM(r, HELPER_HASH));
        g->bad_target[g->n] = true;
        put(g, CALLX(r));
        break;
    }
    case 2:
    case 3:
        if (g->ncalls < 8) {
            g->calls[g->ncalls++] = (typeof(g->calls[0])){g->n, (int)below(g, 2), false};
            put(g, CALL_LOCAL(0));
        }
        break;
    default: put(g, CALL_HELPER(HELPER_HASH)); break;
    }
}

/* 8 zeroed stack slots, every data register initialised */
static void gen_frame_init(struct gen *g, bool regs)
{
    for (int k = 1; k <= SLOTS; k++)
        put(g, ST_IMM(BPF_DW, BPF_REG_10, (int16_t)(-8 * k), 0));
    for (int r = 0; regs && r <= 8; r++) {
        uint64_t v = special(g);
        g->bad_target[g->n + 1] = true;
        struct bpf_insn ld[] = {LD_IMM64(r, v)};
        put(g, ld[0]);
        put(g, ld[1]);
    }
}

/* folds r1..r8 and the stack slots into r0 */
static void gen_fold(struct gen *g)
{
    for (int r = 1; r <= 8; r++) {
        put(g, ALU64_IMM(BPF_MUL, 0, 0x01000193));
        put(g, ALU64_REG(BPF_XOR, 0, r));
    }
    for (int k = 1; k <= SLOTS; k++) {
        put(g, LDX(BPF_DW, 1, BPF_REG_10, (int16_t)(-8 * k)));
        put(g, ALU64_IMM(BPF_MUL, 0, 0x01000193));
        put(g, ALU64_REG(BPF_XOR, 0, 1));
    }
    put(g, MOV64_REG(1, 0));
    put(g, ALU64_IMM(BPF_RSH, 1, 32));
    put(g, ALU64_REG(BPF_XOR, 0, 1));
}

/* Generates a body + epilogue + subprograms into g; the caller prepends a
 * prologue that sets r9 to the context. Returns false if it overflowed. */
static bool gen_program(struct gen *g, bool kernel)
{
    memset(g->bad_target, 0, sizeof(g->bad_target));
    g->n = 0;
    g->njumps = 0;
    g->ncalls = 0;
    g->kernel = kernel;
    gen_frame_init(g, true);
    size_t body = 10 + below(g, 40);
    while (g->n < body + SLOTS + 18) {
        unsigned r = below(g, 22);
        if (r < 13)
            gen_straight(g, -1);
        else if (r < 16)
            gen_cond_jump(g);
        else if (r < 17)
            gen_loop(g);
        else if (r < 18)
            gen_while(g);
        else if (r < 19)
            gen_zero_test(g, -1);
        else if (r < 20 || kernel)
            gen_addr(g, -1);
        else if (r < 21)
            gen_call(g);
        else
            gen_fold_mem(g, -1);
    }
    size_t epilogue = g->n;
    gen_fold(g);
    put(g, EXIT());

    /* subprograms: zero their frame, scramble r0..r8, fold, exit */
    size_t sub_start[2] = {0, 0};
    for (int s = 0; s < 2 && !kernel; s++) { /* the kernel refuses unreachable code */
        sub_start[s] = g->n;
        gen_frame_init(g, false);
        for (int i = 0, len = 3 + (int)below(g, 8); i < len; i++)
            gen_straight(g, -1);
        gen_fold(g);
        put(g, EXIT());
    }
    if (g->n >= MAX_PROG)
        return false;
    for (size_t i = 0; i < g->njumps; i++) {
        size_t t = g->jumps[i].target;
        while (t < epilogue && g->bad_target[t])
            t++;
        if (t > epilogue)
            t = epilogue;
        if (g->jumps[i].in_imm)
            g->p[g->jumps[i].pc].imm = (int32_t)(t - (g->jumps[i].pc + 1));
        else
            g->p[g->jumps[i].pc].off = (int16_t)(t - (g->jumps[i].pc + 1));
    }
    for (size_t i = 0; i < g->ncalls; i++)
        g->p[g->calls[i].pc].imm = (int32_t)(sub_start[g->calls[i].sub] - (g->calls[i].pc + 1));
    return true;
}

/* ---- engines ------------------------------------------------------------ */

struct outcome {
    int err;
    uint64_t r0;
    uint8_t mem[CTX_LEN];
};

static struct bpfg_x86jit_helper table[BPFG_MAX_HELPERS] = {
    [HELPER_HASH] = {helper_hash, &user_token},
    [HELPER_UNWIND] = {helper_unwind, &user_token},
    [HELPER_CONF_UNWIND] = {helper_conf_unwind, &user_token},
};

/* the conformance vectors' unwind helper is 5; the generator's is 2 */
static uint32_t unwind_id = HELPER_UNWIND;

static void run_interp(const struct bpf_insn *p, size_t n, const uint8_t *mem, struct outcome *o)
{
    struct bpfg_vm *vm = bpfg_vm_new();
    cr_assert_not_null(vm);
    for (uint32_t id = 0; id < BPFG_MAX_HELPERS; id++)
        if (table[id].fn)
            bpfg_vm_register_helper(vm, id, "", table[id].fn, table[id].user);
    bpfg_vm_set_unwind_helper(vm, unwind_id);
    int err = bpfg_vm_load(vm, p, n);
    cr_assert_eq(err, 0, "interpreter refused a generated program: %s", bpfg_vm_error(vm));
    memcpy(o->mem, mem, CTX_LEN);
    o->r0 = 0;
    o->err = bpfg_vm_exec(vm, o->mem, CTX_LEN, &o->r0);
    bpfg_vm_free(vm);
}

static void run_jit(const struct bpf_insn *p, size_t n, const uint8_t *mem, struct outcome *o)
{
    struct bpfg_x86jit_opts opts = {.has_unwind = true, .unwind_id = unwind_id};
    struct bpfg_x86jit_code code;
    struct bpfg_x86jit_image img;
    char err[256];
    for (uint32_t id = 0; id < BPFG_MAX_HELPERS; id++)
        if (table[id].fn)
            bpfg_x86jit_allow_helper(&opts, id);
    int ret = bpfg_x86jit_compile(p, n, &opts, &code, err, sizeof(err));
    cr_assert_eq(ret, 0, "JIT refused a program the interpreter loads: %s", err);
    ret = bpfg_x86jit_map_exec(&code, &img);
    cr_assert_eq(ret, 0, "map_exec: %s", strerror(-ret));
    bpfg_x86jit_code_free(&code);
    memcpy(o->mem, mem, CTX_LEN);
    o->err = bpfg_x86jit_run(&img, o->mem, CTX_LEN, table, NULL, &o->r0, NULL);
    bpfg_x86jit_unmap(&img);
}

#ifdef BPFGRAFT_HAVE_LLVM
static void dump(const struct bpf_insn *p, size_t n);

/* The LLVM JIT through the shipping path: the blob goes into a memfd that
 * is mapped read+execute at an address the compiler never saw (twice, at
 * two addresses, when both_maps: both must behave the same). */
static size_t llvm_compared;
static int llvm_level; /* opt_level of the LLVM compiles: 0, the default */

static void run_llvm_blob(const struct bpf_insn *p, size_t n, const uint8_t *mem, struct outcome *o, bool both_maps)
{
    struct bpfg_llvmjit_opts opts = {.jit = {.has_unwind = true, .unwind_id = unwind_id}, .opt_level = llvm_level};
    struct bpfg_x86jit_code code;
    char err[256];
    for (uint32_t id = 0; id < BPFG_MAX_HELPERS; id++)
        if (table[id].fn)
            bpfg_x86jit_allow_helper(&opts.jit, id);
    int ret = bpfg_llvmjit_compile(p, n, &opts, &code, NULL, err, sizeof(err));
    cr_assert_eq(ret, 0, "LLVM JIT refused a program the interpreter loads: %s", err);
    int fd = memfd_create("bpfg-llvm-blob", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, code.buf, code.len), (ssize_t)code.len);
    void *at[2];
    for (int k = 0; k < 2; k++) {
        at[k] = mmap(NULL, code.len, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
        cr_assert_neq(at[k], MAP_FAILED, "mmap: %s", strerror(errno));
    }
    close(fd);
    cr_assert_neq(at[0], at[1]);
    for (int k = 0; k < (both_maps ? 2 : 1); k++) {
        struct bpfg_x86jit_image img = {at[k], code.len, (bpfg_x86jit_fn)at[k]};
        struct outcome tmp;
        struct outcome *dst = k ? &tmp : o;
        memcpy(dst->mem, mem, CTX_LEN);
        dst->r0 = 0;
        dst->err = bpfg_x86jit_run(&img, dst->mem, CTX_LEN, table, NULL, &dst->r0, NULL);
        if (k)
            cr_assert(tmp.err == o->err && tmp.r0 == o->r0 && !memcmp(tmp.mem, o->mem, CTX_LEN),
                      "the blob behaves differently at another address");
    }
    munmap(at[0], code.len);
    munmap(at[1], code.len);
    bpfg_x86jit_code_free(&code);
}

/* Runs the program on the LLVM JIT and asserts the interpreter's outcome. */
static void check_llvm(const struct bpf_insn *p, size_t n, const uint8_t *mem, const struct outcome *want,
                       const char *what, size_t i)
{
    struct outcome c;
    run_llvm_blob(p, n, mem, &c, llvm_compared % 8 == 0);
    if (c.err != want->err || c.r0 != want->r0 || memcmp(c.mem, want->mem, CTX_LEN)) {
        dump(p, n);
        cr_assert_fail("%s %zu: interp err %d r0 0x%llx, llvm err %d r0 0x%llx, memory %s", what, i, want->err,
                       (unsigned long long)want->r0, c.err, (unsigned long long)c.r0,
                       memcmp(c.mem, want->mem, CTX_LEN) ? "differs" : "same");
    }
    llvm_compared++;
}
#define CHECK_LLVM(p, n, mem, want, what, i) check_llvm(p, n, mem, want, what, i)
#else
#define CHECK_LLVM(p, n, mem, want, what, i) ((void)0)
#endif

static void dump(const struct bpf_insn *p, size_t n)
{
    char *text = bpfg_disasm(p, n);
    if (text)
        fprintf(stderr, "%s\n", text);
    free(text);
}

static void fill(struct gen *g, uint8_t *mem)
{
    for (size_t i = 0; i < CTX_LEN; i++)
        mem[i] = (uint8_t)rnd(g);
}

static size_t env_count(const char *name, size_t def)
{
    const char *s = getenv(name);
    return s && *s ? strtoull(s, NULL, 0) : def;
}

static uint64_t seed(void)
{
    uint64_t s = env_count("BPFG_JIT_DIFF_SEED", 0x5eed1234abcdull);
    return s ? s : 1;
}

/* A random program (r9 = ctx first) in prog[0..g->n] and its memory;
 * false when the generator gave up on this one. */
static bool random_program(struct gen *g, struct bpf_insn *prog, uint8_t *mem)
{
    if (!gen_program(g, false))
        return false;
    prog[0] = MOV64_REG(BPF_REG_9, BPF_REG_1);
    memcpy(prog + 1, g->p, g->n * sizeof(*prog));
    fill(g, mem);
    return true;
}

Test(jit_diff, random_programs_match_interpreter)
{
    static struct gen g;
    uint8_t mem[CTX_LEN];
    struct bpf_insn prog[MAX_PROG + 1];
    struct outcome a, b;
    size_t count = env_count("BPFG_JIT_DIFF_PROGS", 20000), unwound = 0, ran = 0;
#ifdef BPFGRAFT_HAVE_LLVM
    /* LLVM compiles take milliseconds: every k-th program, BPFG_JIT_DIFF_LLVM in all */
    size_t llvm_count = env_count("BPFG_JIT_DIFF_LLVM", 2000), llvm_ran = 0;
    size_t llvm_every = llvm_count ? (count + llvm_count - 1) / llvm_count : 0;
#endif
    g.rng = seed();

    for (size_t i = 0; i < count; i++) {
        if (!random_program(&g, prog, mem))
            continue;
        run_interp(prog, g.n + 1, mem, &a);
        run_jit(prog, g.n + 1, mem, &b);
        if (a.err != b.err || a.r0 != b.r0 || memcmp(a.mem, b.mem, CTX_LEN)) {
            dump(prog, g.n + 1);
            cr_assert_fail("program %zu: interp err %d r0 0x%llx, jit err %d r0 0x%llx, memory %s", i, a.err,
                           (unsigned long long)a.r0, b.err, (unsigned long long)b.r0,
                           memcmp(a.mem, b.mem, CTX_LEN) ? "differs" : "same");
        }
        cr_assert_eq(a.err, 0, "program %zu failed to run: %d", i, a.err);
#ifdef BPFGRAFT_HAVE_LLVM
        if (llvm_every && i % llvm_every == 0) {
            CHECK_LLVM(prog, g.n + 1, mem, &a, "program", i);
            llvm_ran++;
        }
#endif
        ran++;
        unwound += a.r0 == 0;
    }
    cr_log_info("%zu random programs identical on interpreter and x86 JIT (%zu stopped by unwind or r0 = 0)", ran,
                unwound);
    printf("jit_diff: %zu random programs identical (%zu with r0 = 0)\n", ran, unwound);
    cr_assert_geq(ran, count * 9 / 10);
#ifdef BPFGRAFT_HAVE_LLVM
    printf("jit_diff: %zu of them also identical on the LLVM JIT (blob mapped from a memfd)\n", llvm_ran);
    cr_assert_geq(llvm_ran, llvm_count * 8 / 10);
#endif
}

#ifdef BPFGRAFT_HAVE_LLVM
/* The LLVM JIT's pipelines by program shape and level: loops over memory
 * (unrolled at level 2, not at 1), loops of registers only (never
 * unrolled), loops a goto closes (rotated at levels 1 and 2: strcmp's
 * shape, two exits), data-dependent if-then diamonds (kept as branches),
 * local calls (the CGSCC inliner) and single functions (always-inline). */
static const struct bpf_insn shape_memory_loop[] = {
    MOV64_IMM(3, 0),          LDX(BPF_DW, 4, 1, 0), /* loop: */
    ALU64_REG(BPF_ADD, 4, 3), STX(BPF_DW, 1, 4, 8),        ALU64_REG(BPF_ADD, 0, 4),
    ALU64_IMM(BPF_ADD, 3, 1), JMP_IMM(BPF_JLT, 3, 37, -6), EXIT(),
};
static const struct bpf_insn shape_register_loop[] = {
    MOV64_IMM(0, 0), MOV64_IMM(1, 0), ALU64_REG(BPF_ADD, 0, 1), ALU64_IMM(BPF_ADD, 1, 1), JMP_IMM(BPF_JLT, 1, 1000, -3),
    EXIT(),
};
/* r3 = r4 = ctx; loop: r5 = *r3, r6 = *r4, exits r5 != r6 (differ, 11)
 * and r5 == 0 (end, 14: r0 = the string's length; a zero at 200) */
static const struct bpf_insn shape_goto_loop[] = {
    MOV64_REG(3, 1),
    MOV64_REG(4, 1),
    MOV64_IMM(0, 0),
    ST_IMM(BPF_B, 1, 200, 0),
    LDX(BPF_B, 5, 3, 0),
    LDX(BPF_B, 6, 4, 0),
    JMP_REG(BPF_JNE, 5, 6, 4),
    JMP_IMM(BPF_JEQ, 5, 0, 6),
    ALU64_IMM(BPF_ADD, 3, 1),
    ALU64_IMM(BPF_ADD, 4, 1),
    JA(-7),
    MOV64_REG(0, 5),
    ALU64_REG(BPF_SUB, 0, 6),
    EXIT(),
    MOV64_REG(0, 3),
    ALU64_REG(BPF_SUB, 0, 1),
    EXIT(),
};
static const struct bpf_insn shape_diamonds[] = {
    MOV64_IMM(0, 0),
    MOV64_IMM(6, 0),
    LDX(BPF_DW, 3, 1, 0), /* loop: r3 = the word at ctx + r6 */
    ALU64_REG(BPF_ADD, 3, 6),
    MOV64_IMM(4, 0),
    MOV64_REG(5, 3),
    ALU64_IMM(BPF_RSH, 5, 32),
    JMP_IMM(BPF_JEQ, 5, 0, 2),
    ALU64_IMM(BPF_ADD, 4, 32),
    MOV64_REG(3, 5),
    MOV64_REG(5, 3),
    ALU64_IMM(BPF_RSH, 5, 16),
    JMP_IMM(BPF_JEQ, 5, 0, 2),
    ALU64_IMM(BPF_ADD, 4, 16),
    MOV64_REG(3, 5),
    ALU64_REG(BPF_ADD, 0, 4),
    ALU64_IMM(BPF_ADD, 6, 1),
    ALU64_IMM(BPF_ADD, 1, 1),
    JMP_IMM(BPF_JLT, 6, 200, -17),
    EXIT(),
};
static const struct bpf_insn shape_local_call[] = {
    MOV64_IMM(6, 5),
    MOV64_REG(1, 6),
    CALL_LOCAL(3),
    ALU64_IMM(BPF_ADD, 6, -1),
    JMP_IMM(BPF_JNE, 6, 0, -4),
    EXIT(),
    ALU64_IMM(BPF_ADD, 1, 2),
    ALU64_REG(BPF_MUL, 1, 1),
    ALU64_REG(BPF_ADD, 0, 1),
    EXIT(),
};

Test(jit_diff, llvm_pipelines_match_interpreter)
{
    static const struct {
        const char *name;
        const struct bpf_insn *p;
        size_t n;
    } shapes[] = {
        {"memory loop", shape_memory_loop, sizeof(shape_memory_loop) / sizeof(shape_memory_loop[0])},
        {"register loop", shape_register_loop, sizeof(shape_register_loop) / sizeof(shape_register_loop[0])},
        {"goto loop", shape_goto_loop, sizeof(shape_goto_loop) / sizeof(shape_goto_loop[0])},
        {"diamonds", shape_diamonds, sizeof(shape_diamonds) / sizeof(shape_diamonds[0])},
        {"local call", shape_local_call, sizeof(shape_local_call) / sizeof(shape_local_call[0])},
    };
    static struct gen g;
    uint8_t mem[CTX_LEN];
    struct outcome a;
    g.rng = seed();
    for (llvm_level = 1; llvm_level <= 3; llvm_level++) {
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
            fill(&g, mem);
            run_interp(shapes[s].p, shapes[s].n, mem, &a);
            cr_assert_eq(a.err, 0, "%s: %d", shapes[s].name, a.err);
            CHECK_LLVM(shapes[s].p, shapes[s].n, mem, &a, shapes[s].name, (size_t)llvm_level);
        }
    }
    /* random programs (their loops, jumps and calls) at the levels other than the default */
    struct bpf_insn prog[MAX_PROG + 1];
    size_t count = env_count("BPFG_JIT_DIFF_LEVELS", 100), ran = 0;
    for (size_t i = 0; ran < 2 * count && i < 20 * count; i++) {
        if (!random_program(&g, prog, mem))
            continue;
        run_interp(prog, g.n + 1, mem, &a);
        llvm_level = ran % 2 ? 3 : 1;
        CHECK_LLVM(prog, g.n + 1, mem, &a, "program", i);
        ran++;
    }
    llvm_level = 0;
    cr_assert_eq(ran, 2 * count);
    printf("jit_diff: %zu random programs identical on the LLVM JIT at levels 1 and 3\n", ran);
}
#endif

#ifdef BPFGRAFT_HAVE_LLVM
/* ---- batches: several programs in one LLVM module, one blob ---- */

#define BATCH_MAX 8

/* A batch's blob in a memfd, mapped r-x at an address the compiler never
 * saw, as the server ships it: every program runs at its entry_off. */
static void *map_batch(const struct bpfg_llvmjit_batch *b)
{
    int fd = memfd_create("bpfg-llvm-batch", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, b->blob.code.buf, b->blob.code.len), (ssize_t)b->blob.code.len);
    void *at = mmap(NULL, b->blob.code.len, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
    cr_assert_neq(at, MAP_FAILED, "mmap: %s", strerror(errno));
    close(fd);
    return at;
}

static void run_batch_prog(const struct bpfg_llvmjit_batch *b, void *at, size_t i, const uint8_t *mem,
                           struct outcome *o)
{
    struct bpfg_x86jit_image img = {at, b->blob.code.len, (bpfg_x86jit_fn)((uint8_t *)at + b->entry_off[i])};
    memcpy(o->mem, mem, CTX_LEN);
    o->r0 = 0;
    o->err = bpfg_x86jit_run(&img, o->mem, CTX_LEN, table, NULL, &o->r0, NULL);
}

/* Compiles n programs as one batch and asserts every program's outcome
 * is its single compile's and the interpreter's. */
static void check_batch(const struct bpf_insn *const *p, const size_t *len, uint8_t (*mem)[CTX_LEN], size_t n,
                        const char *what)
{
    struct bpfg_llvmjit_opts opts = {.jit = {.has_unwind = true, .unwind_id = unwind_id}, .opt_level = llvm_level};
    for (uint32_t id = 0; id < BPFG_MAX_HELPERS; id++)
        if (table[id].fn)
            bpfg_x86jit_allow_helper(&opts.jit, id);
    struct bpfg_llvmjit_prog progs[BATCH_MAX];
    for (size_t i = 0; i < n; i++)
        progs[i] = (struct bpfg_llvmjit_prog){p[i], len[i]};
    struct bpfg_llvmjit_batch b;
    char err[512];
    cr_assert_eq(bpfg_llvmjit_compile_batch(progs, n, &opts, &b, NULL, err, sizeof(err)), 0, "%s: %s", what, err);
    cr_assert_eq(b.nprogs, n);
    void *at = map_batch(&b);
    for (size_t i = 0; i < n; i++) {
        struct outcome want, single, got;
        run_interp(p[i], len[i], mem[i], &want);
        run_llvm_blob(p[i], len[i], mem[i], &single, false);
        run_batch_prog(&b, at, i, mem[i], &got);
        if (got.err != single.err || got.r0 != single.r0 || memcmp(got.mem, single.mem, CTX_LEN) ||
            got.err != want.err || got.r0 != want.r0 || memcmp(got.mem, want.mem, CTX_LEN)) {
            dump(p[i], len[i]);
            cr_assert_fail("%s, program %zu of %zu: interp err %d r0 0x%llx, single err %d r0 0x%llx, batch err %d "
                           "r0 0x%llx",
                           what, i, n, want.err, (unsigned long long)want.r0, single.err, (unsigned long long)single.r0,
                           got.err, (unsigned long long)got.r0);
        }
    }
    munmap(at, b.blob.code.len);
    bpfg_llvmjit_batch_free(&b);
}

/* The pipeline shapes together (each keeps its own pipeline: unrolled,
 * rotated, inlined or fused), two programs with local calls among them
 * (their functions must not meet by name), at every level; then random
 * programs (local calls, callx, loops, helpers, unwinds) in batches. */
Test(jit_diff, llvm_batches_match_single_compiles)
{
    const struct bpf_insn *shapes[] = {shape_local_call, shape_memory_loop, shape_goto_loop,
                                       shape_local_call, shape_diamonds,    shape_register_loop};
    size_t lens[BATCH_MAX] = {sizeof(shape_local_call) / sizeof(shape_local_call[0]),
                              sizeof(shape_memory_loop) / sizeof(shape_memory_loop[0]),
                              sizeof(shape_goto_loop) / sizeof(shape_goto_loop[0]),
                              sizeof(shape_local_call) / sizeof(shape_local_call[0]),
                              sizeof(shape_diamonds) / sizeof(shape_diamonds[0]),
                              sizeof(shape_register_loop) / sizeof(shape_register_loop[0])};
    static struct gen g;
    static uint8_t mem[BATCH_MAX][CTX_LEN];
    static struct bpf_insn prog[BATCH_MAX][MAX_PROG + 1];
    g.rng = seed() ^ 0xba7c4;
    for (size_t i = 0; i < 6; i++)
        fill(&g, mem[i]);
    for (llvm_level = 0; llvm_level <= 3; llvm_level++)
        check_batch(shapes, lens, mem, 6, "shapes");
    llvm_level = 0;
    /* one program alone is a batch too */
    check_batch(shapes, lens, mem, 1, "a batch of one");

    size_t count = env_count("BPFG_JIT_DIFF_BATCHES", 30), done = 0, progs = 0, calls = 0;
    for (size_t tries = 0; done < count && tries < 20 * count; tries++) {
        const struct bpf_insn *pp[BATCH_MAX];
        size_t n = 2 + tries % (BATCH_MAX - 1), got = 0;
        while (got < n) {
            if (!random_program(&g, prog[got], mem[got]))
                continue;
            lens[got] = g.n + 1;
            pp[got] = prog[got];
            for (size_t pc = 0; pc < lens[got]; pc++)
                calls += prog[got][pc].code == (BPF_JMP | BPF_CALL) && prog[got][pc].src_reg == BPF_PSEUDO_CALL;
            got++;
        }
        check_batch(pp, lens, mem, n, "random batch");
        done++;
        progs += n;
    }
    cr_assert_eq(done, count);
    cr_assert_gt(calls, 0, "no random program had a local call");
    printf("jit_diff: %zu batches (%zu programs, %zu local calls) identical to single compiles and the interpreter\n",
           done, progs, calls);
}
#endif

/* Run-time errors: call depth, bad callx targets, misaligned atomics. */
Test(jit_diff, run_errors_match_interpreter)
{
    struct bpf_insn recurse[] = {
        MOV64_IMM(0, 1),
        CALL_LOCAL(-2), /* calls itself forever */
        EXIT(),
    };
    struct bpf_insn bad_callx[] = {
        MOV64_IMM(3, 77),
        CALLX(3),
        EXIT(),
    };
    struct bpf_insn bad_func[] = {
        LD_IMM64(3, 0xbfc0000000000064ull), /* FUNC_TAG | 100: out of the program */
        CALLX(3),
        EXIT(),
    };
    struct bpf_insn misaligned[] = {
        MOV64_REG(2, BPF_REG_10), ALU64_IMM(BPF_ADD, 2, -13), MOV64_IMM(3, 1), ATOMIC(BPF_DW, BPF_ADD, 2, 3, 0), EXIT(),
    };
    struct {
        struct bpf_insn *p;
        size_t n;
        int err;
    } cases[] = {
        {recurse, 3, -E2BIG},
        {bad_callx, 3, -EINVAL},
        {bad_func, 4, -EINVAL},
        {misaligned, 5, -EFAULT},
    };
    uint8_t mem[CTX_LEN] = {0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct outcome a, b;
        run_interp(cases[i].p, cases[i].n, mem, &a);
        run_jit(cases[i].p, cases[i].n, mem, &b);
        cr_expect_eq(a.err, cases[i].err, "case %zu: interp %d", i, a.err);
        cr_expect_eq(b.err, cases[i].err, "case %zu: jit %d", i, b.err);
        CHECK_LLVM(cases[i].p, cases[i].n, mem, &a, "run-error case", i);
    }
}

/* Depth 8 is allowed, 9 is not: a chain of calls counting down from r1. */
Test(jit_diff, call_depth_limit)
{
    for (int depth = 1; depth <= 9; depth++) {
        struct bpf_insn p[] = {
            MOV64_IMM(1, depth - 1),
            CALL_LOCAL(1),
            EXIT(),
            /* f: if r1 == 0 return 100; r1--; call f; r0 += 1 */
            MOV64_IMM(0, 100),
            JMP_IMM(BPF_JEQ, 1, 0, 3),
            ALU64_IMM(BPF_ADD, 1, -1),
            CALL_LOCAL(-4),
            ALU64_IMM(BPF_ADD, 0, 1),
            EXIT(),
        };
        uint8_t mem[CTX_LEN] = {0};
        struct outcome a, b;
        run_interp(p, sizeof(p) / sizeof(p[0]), mem, &a);
        run_jit(p, sizeof(p) / sizeof(p[0]), mem, &b);
        cr_expect_eq(a.err, b.err, "depth %d: interp %d, jit %d", depth, a.err, b.err);
        cr_expect_eq(a.r0, b.r0, "depth %d", depth);
        /* frames: main + depth (function calls) */
        cr_expect_eq(b.err, depth + 1 <= EBPF_MAX_CALL_DEPTH ? 0 : -E2BIG, "depth %d: %d", depth, b.err);
        CHECK_LLVM(p, sizeof(p) / sizeof(p[0]), mem, &a, "depth", (size_t)depth);
    }
}

/* bpf_loop runs its callback through the stub every engine gets
 * (jit/callbacks.c): r0 = ret * 1000 + the sum of the indexes seen. The
 * callback stops at index 6; the count is a u32; flags and the iteration
 * cap give the kernel's errors. */
Test(jit_diff, bpf_loop_runs_callbacks)
{
    static const struct {
        const char *nr, *flags;
        int64_t want;
    } cases[] = {
        {"10", "0", 7 * 1000 + 21},         /* stopped by the callback after index 6 */
        {"4", "0", 4 * 1000 + 6},           /* ran to the end: 0+1+2+3 */
        {"0", "0", 0},                      /* no iteration */
        {"0x100000003", "0", 3 * 1000 + 3}, /* only the low 32 bits count */
        {"1", "1", -EINVAL * 1000},         /* flags */
        {"8388609", "0", -E2BIG * 1000},    /* > BPF_MAX_LOOPS */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text),
                 "stdw [%%r10-8], 0\n lddw %%r1, %s\n lddw %%r2, func cb\n mov %%r3, %%r10\n add %%r3, -8\n"
                 " mov %%r4, %s\n call 181\n mul %%r0, 1000\n ldxdw %%r1, [%%r10-8]\n add %%r0, %%r1\n exit\n"
                 "cb:\n ldxdw %%r3, [%%r2+0]\n add %%r3, %%r1\n stxdw [%%r2+0], %%r3\n mov %%r0, 0\n"
                 " jne %%r1, 6, out\n mov %%r0, 1\nout:\n exit\n",
                 cases[i].nr, cases[i].flags);
        struct bpf_insn *p;
        size_t n;
        char err[256];
        cr_assert_eq(bpfg_asm(text, &p, &n, err, sizeof(err)), 0, "%s", err);
        uint8_t mem[CTX_LEN] = {0};
        struct outcome a, b;
        run_interp(p, n, mem, &a);
        run_jit(p, n, mem, &b);
        cr_expect(a.err == 0 && (int64_t)a.r0 == cases[i].want, "case %zu: interpreter %d/%lld, want %lld", i, a.err,
                  (long long)a.r0, (long long)cases[i].want);
        cr_expect(b.err == 0 && (int64_t)b.r0 == cases[i].want, "case %zu: x86 jit %d/%lld, want %lld", i, b.err,
                  (long long)b.r0, (long long)cases[i].want);
        CHECK_LLVM(p, n, mem, &a, "bpf_loop", i);
        free(p);
    }
}

/* Unknown input is refused with the instruction named, never compiled. */
Test(jit_diff, bad_programs_are_refused)
{
    struct bpf_insn bad_op[] = {MOV64_IMM(0, 0), INSN(0xff, 0, 0, 0, 0), EXIT()};
    struct bpf_insn no_helper[] = {CALL_HELPER(99), EXIT()};
    struct bpf_insn ldabs[] = {MOV64_IMM(0, 0), INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0), EXIT()};
    struct {
        struct bpf_insn *p;
        size_t n;
        const char *msg;
    } cases[] = {
        {bad_op, 3, "instruction 1"},
        {no_helper, 2, "instruction 0"},
        {ldabs, 3, "instruction 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bpfg_x86jit_code code = {(uint8_t *)1, 1};
        char err[256];
        int ret = bpfg_x86jit_compile(cases[i].p, cases[i].n, NULL, &code, err, sizeof(err));
        cr_expect_eq(ret, -EINVAL, "case %zu: %d", i, ret);
        cr_expect(strstr(err, cases[i].msg), "case %zu: '%s'", i, err);
        cr_expect_null(code.buf);
#ifdef BPFGRAFT_HAVE_LLVM
        struct bpfg_x86jit_code lcode = {(uint8_t *)1, 1};
        ret = bpfg_llvmjit_compile(cases[i].p, cases[i].n, NULL, &lcode, NULL, err, sizeof(err));
        cr_expect_eq(ret, -EINVAL, "llvm case %zu: %d", i, ret);
        cr_expect(strstr(err, cases[i].msg), "llvm case %zu: '%s'", i, err);
        cr_expect_null(lcode.buf);
#endif
    }
}

/* Every conformance vector's program on both engines (result and memory). */
static char *read_section(const char *text, const char *name)
{
    char hdr[32];
    snprintf(hdr, sizeof(hdr), "-- %s\n", name);
    const char *s = strstr(text, hdr);
    if (!s)
        return NULL;
    s += strlen(hdr);
    const char *e = strstr(s, "\n--");
    return strndup(s, e ? (size_t)(e - s + 1) : strlen(s));
}

Test(jit_diff, conformance_and_sample_programs_match)
{
    const char *dir = BPFGRAFT_CONFORMANCE_DIR;
    unwind_id = HELPER_CONF_UNWIND;
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "cannot open %s", dir);
    size_t compared = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 6 || strcmp(de->d_name + len - 5, ".data"))
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f);
        static char text[1 << 16];
        size_t got = fread(text, 1, sizeof(text) - 1, f);
        text[got] = 0;
        fclose(f);
        char *asm_text = read_section(text, "asm"), *mem_text = read_section(text, "mem");
        struct bpf_insn *p;
        size_t n;
        char err[256];
        uint8_t mem[CTX_LEN] = {0};
        size_t mlen = 0;
        for (char *t = mem_text ? strtok(mem_text, " \t\n") : NULL; t && mlen < CTX_LEN; t = strtok(NULL, " \t\n"))
            mem[mlen++] = (uint8_t)strtoul(t, NULL, 16);
        if (asm_text && !bpfg_asm(asm_text, &p, &n, err, sizeof(err))) {
            struct outcome a, b;
            run_interp(p, n, mem, &a);
            run_jit(p, n, mem, &b);
            cr_expect(a.err == b.err && a.r0 == b.r0 && !memcmp(a.mem, b.mem, CTX_LEN),
                      "%s: interp %d/0x%llx, jit %d/0x%llx", de->d_name, a.err, (unsigned long long)a.r0, b.err,
                      (unsigned long long)b.r0);
            CHECK_LLVM(p, n, mem, &a, de->d_name, compared);
            compared++;
            free(p);
        }
        free(asm_text);
        free(mem_text);
    }
    closedir(d);

    /* the README's demo program */
    FILE *f = fopen(BPFGRAFT_SOURCE_DIR "/samples/vm/collatz.s", "r");
    cr_assert_not_null(f);
    static char text[1 << 16];
    text[fread(text, 1, sizeof(text) - 1, f)] = 0;
    fclose(f);
    struct bpf_insn *p;
    size_t n;
    char err[256];
    cr_assert_eq(bpfg_asm(text, &p, &n, err, sizeof(err)), 0, "%s", err);
    uint8_t mem[CTX_LEN] = {0};
    uint64_t start = 10000;
    memcpy(mem, &start, 8);
    struct outcome a, b;
    run_interp(p, n, mem, &a);
    run_jit(p, n, mem, &b);
    CHECK_LLVM(p, n, mem, &a, "collatz", 0);
    free(p);
    cr_expect(a.err == 0 && b.err == 0 && a.r0 == b.r0, "collatz: %d/%llu vs %d/%llu", a.err, (unsigned long long)a.r0,
              b.err, (unsigned long long)b.r0);
    compared++;
    printf("jit_diff: %zu conformance/sample programs identical\n", compared);
    cr_assert_geq(compared, 200);
}

/* ---- the kernel --------------------------------------------------------- */

/* XDP prologue: r9 = data, exit unless 256 bytes are there. */
static size_t kernel_prologue(struct bpf_insn *p)
{
    size_t i = 0;
    p[i++] = LDX(BPF_W, 9, 1, 0);
    p[i++] = LDX(BPF_W, 2, 1, 4);
    p[i++] = MOV64_REG(3, 9);
    p[i++] = ALU64_IMM(BPF_ADD, 3, CTX_LEN);
    p[i++] = JMP_REG(BPF_JLE, 3, 2, 2);
    p[i++] = MOV64_IMM(0, 0);
    p[i++] = EXIT();
    return i;
}

Test(jit_diff, kernel_accepted_programs_match, .timeout = 120)
{
    static struct gen g;
    uint8_t mem[CTX_LEN], out[CTX_LEN];
    struct bpf_insn prog[MAX_PROG + 8];
    size_t count = env_count("BPFG_JIT_DIFF_KERNEL", 2000), accepted = 0, compared = 0;
    static char log[65536];
    g.rng = seed() ^ 0x4b45524eull;
    test_needs("bpf-test-run");
    char why[256];
    bool kernel_jit = !test_fact("bpf-jit", why, sizeof(why));

    for (size_t i = 0; i < count; i++) {
        if (!gen_program(&g, true))
            continue;
        size_t pro = kernel_prologue(prog);
        memcpy(prog + pro, g.p, g.n * sizeof(*prog));
        LIBBPF_OPTS(bpf_prog_load_opts, lopts, .log_buf = log, .log_size = sizeof(log), .log_level = 0);
        int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, NULL, "GPL", prog, pro + g.n, &lopts);
        if (fd < 0)
            continue;
        accepted++;
        fill(&g, mem);
        LIBBPF_OPTS(bpf_test_run_opts, topts, .data_in = mem, .data_size_in = CTX_LEN, .data_out = out,
                    .data_size_out = CTX_LEN, .repeat = 1);
        int err = bpf_prog_test_run_opts(fd, &topts);
        close(fd);
        cr_assert_eq(err, 0, "test_run: %s", strerror(errno));

        struct outcome a, b;
        prog[pro - 1] = MOV64_REG(BPF_REG_9, BPF_REG_1);
        run_interp(prog + pro - 1, g.n + 1, mem, &a);
        run_jit(prog + pro - 1, g.n + 1, mem, &b);
        if ((uint32_t)b.r0 != topts.retval || memcmp(b.mem, out, CTX_LEN) || a.r0 != b.r0 ||
            memcmp(a.mem, b.mem, CTX_LEN)) {
            dump(prog + pro - 1, g.n + 1);
            cr_assert_fail("program %zu: kernel r0 0x%x, jit 0x%llx, interp 0x%llx, memory %s", i, topts.retval,
                           (unsigned long long)b.r0, (unsigned long long)a.r0,
                           memcmp(b.mem, out, CTX_LEN) ? "differs from the kernel's" : "same");
        }
        /* the kernel's JIT, the interpreter and the LLVM JIT agree too */
        if (compared % 4 == 0)
            CHECK_LLVM(prog + pro - 1, g.n + 1, mem, &a, "kernel program", i);
        compared++;
    }
    printf("jit_diff: kernel accepted %zu of %zu programs; all %zu identical on kernel (%s), interpreter and "
           "x86 JIT\n",
           accepted, count, compared, kernel_jit ? "its JIT" : why);
    cr_log_info("kernel accepted %zu of %zu generated programs", accepted, count);
    cr_assert_geq(accepted, count / 10, "the kernel accepted only %zu of %zu", accepted, count);
}

/* ---- inlined array lookups ------------------------------------------------
 * bpf_map_lookup_elem on arrays whose values' address the JITs are told
 * (opts.map_info): the interpreter's helper call = the x86 JIT calling it =
 * the x86 JIT inlined = the LLVM JIT inlined (= the kernel, on real array
 * maps). Map A has 8-byte values, map B 12-byte ones (a 16-byte stride). */

#define ARR_A_ENTRIES 16
#define ARR_B_ENTRIES 5
#define ARR_BYTES (ARR_A_ENTRIES * 8)

struct fake_array {
    uint32_t max_entries, value_size;
    _Alignas(8) uint8_t values[ARR_BYTES]; /* atomics need aligned values */
};

static struct fake_array arr[2] = {{ARR_A_ENTRIES, 8, {0}}, {ARR_B_ENTRIES, 12, {0}}};
static int array_calls; /* of the real helper */

static uint32_t arr_stride(const struct fake_array *m)
{
    return (m->value_size + 7) & ~7u;
}

static uint64_t helper_array_lookup(uint64_t map, uint64_t key, uint64_t r3, uint64_t r4, uint64_t r5, void *user)
{
    (void)r3, (void)r4, (void)r5, (void)user;
    struct fake_array *m = (struct fake_array *)(uintptr_t)map;
    uint32_t k = *(const uint32_t *)(uintptr_t)key; /* the programs' keys: aligned stack slots */
    array_calls++;
    return k < m->max_entries ? (uintptr_t)&m->values[k * arr_stride(m)] : 0;
}

static const struct bpfg_x86jit_helper array_table[BPFG_MAX_HELPERS] = {
    [BPF_FUNC_map_lookup_elem] = {helper_array_lookup, NULL},
};

/* the programs' lddw imm: fds of kernel maps, or 1 and 2 without the kernel */
static int arr_fd[2] = {1, 2};

static int arr_resolve(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    (void)user, (void)imm1;
    if (src_reg != BPF_PSEUDO_MAP_FD || (imm0 != arr_fd[0] && imm0 != arr_fd[1]))
        return -EINVAL;
    *value = (uintptr_t)&arr[imm0 == arr_fd[1]];
    return 0;
}

static int arr_describe(void *user, uint64_t value, struct bpfg_jit_map_info *info)
{
    (void)user;
    if (value != (uintptr_t)&arr[0] && value != (uintptr_t)&arr[1])
        return -ENOENT;
    const struct fake_array *m = (const struct fake_array *)(uintptr_t)value;
    *info = (struct bpfg_jit_map_info){
        .type = BPF_MAP_TYPE_ARRAY,
        .key_size = 4,
        .value_size = m->value_size,
        .max_entries = m->max_entries,
        .value_base = (uintptr_t)m->values,
    };
    return 0;
}

#define MAP_A(d) LD_IMM64_RAW(d, BPF_PSEUDO_MAP_FD, arr_fd[0], 0)
#define MAP_B(d) LD_IMM64_RAW(d, BPF_PSEUDO_MAP_FD, arr_fd[1], 0)
#define KEY_FROM_CTX LDX(BPF_W, 3, 9, 0), STX(BPF_W, 10, 3, -4), MOV64_REG(2, 10), ALU64_IMM(BPF_ADD, 2, -4)

/* Program `which` (r9 = ctx: u32 key at 0, u32 x at 4) into p; its length.
 * *inlined: every lookup's r1 is a lddw value both JITs must inline. */
static size_t array_prog(int which, struct bpf_insn *p, bool *inlined)
{
    /* 0: v = A[key]; if (!v) return -1; atomically *v += x; return *v */
    const struct bpf_insn update[] = {
        KEY_FROM_CTX,         MAP_A(1),
        CALL_HELPER(1),       JMP_IMM(BPF_JEQ, 0, 0, 4),
        LDX(BPF_W, 3, 9, 4),  ATOMIC(BPF_DW, BPF_ADD, 0, 3, 0),
        LDX(BPF_DW, 0, 0, 0), EXIT(),
        MOV64_IMM(0, -1),     EXIT(),
    };
    /* 1: the map depends on x & 1, both lddw reach one call: a jump target */
    const struct bpf_insn join[] = {
        KEY_FROM_CTX,   LDX(BPF_W, 4, 9, 4),       ALU64_IMM(BPF_AND, 4, 1),
        MAP_A(1),       JMP_IMM(BPF_JEQ, 4, 0, 2), MAP_B(1),
        CALL_HELPER(1), JMP_IMM(BPF_JEQ, 0, 0, 2), LDX(BPF_DW, 0, 0, 0),
        EXIT(),         MOV64_IMM(0, -1),          EXIT(),
    };
    /* 2: r1 = A by lddw, then overwritten with B from r6 */
    const struct bpf_insn moved[] = {
        KEY_FROM_CTX,
        MAP_B(6),
        MAP_A(1),
        MOV64_REG(1, 6),
        CALL_HELPER(1),
        JMP_IMM(BPF_JEQ, 0, 0, 4),
        LDX(BPF_W, 3, 0, 8),
        LDX(BPF_DW, 0, 0, 0),
        ALU64_REG(BPF_ADD, 0, 3),
        EXIT(),
        MOV64_IMM(0, -1),
        EXIT(),
    };
    /* 3: for (i = 0; i < 20; i++) if ((v = A[i])) { *v += i; sum += *v } */
    const struct bpf_insn loop[] = {
        MOV64_IMM(6, 0),
        MOV64_IMM(7, 0),
        STX(BPF_W, 10, 6, -4),
        MOV64_REG(2, 10),
        ALU64_IMM(BPF_ADD, 2, -4),
        MAP_A(1),
        CALL_HELPER(1),
        JMP_IMM(BPF_JEQ, 0, 0, 4),
        LDX(BPF_DW, 1, 0, 0),
        ALU64_REG(BPF_ADD, 1, 6),
        STX(BPF_DW, 0, 1, 0),
        ALU64_REG(BPF_ADD, 7, 1),
        ALU64_IMM(BPF_ADD, 6, 1),
        JMP_IMM(BPF_JLT, 6, 20, -13),
        MOV64_REG(0, 7),
        EXIT(),
    };
    static const size_t lens[] = {sizeof(update), sizeof(join), sizeof(moved), sizeof(loop)};
    const struct bpf_insn *progs[] = {update, join, moved, loop};
    memcpy(p, progs[which], lens[which]);
    *inlined = which == 0 || which == 3;
    return lens[which] / sizeof(*p);
}

#define NARRAY_PROGS 4

struct arr_outcome {
    int err;
    uint64_t r0;
    uint8_t values[2][ARR_BYTES];
    int calls;
};

static void arr_reset(void)
{
    for (int m = 0; m < 2; m++)
        for (size_t i = 0; i < ARR_BYTES; i++)
            arr[m].values[i] = (uint8_t)(i * 37 + 11 + m);
    array_calls = 0;
}

static void arr_record(struct arr_outcome *o)
{
    for (int m = 0; m < 2; m++)
        memcpy(o->values[m], arr[m].values, ARR_BYTES);
    o->calls = array_calls;
}

static void arr_interp(const struct bpf_insn *p, size_t n, uint8_t *ctx, struct arr_outcome *o)
{
    struct bpfg_vm *vm = bpfg_vm_new();
    cr_assert_not_null(vm);
    bpfg_vm_register_helper(vm, BPF_FUNC_map_lookup_elem, "", helper_array_lookup, NULL);
    bpfg_vm_set_ld64_resolver(vm, arr_resolve, NULL);
    bpfg_vm_set_checked(vm, false); /* map values are outside the regions it checks */
    cr_assert_eq(bpfg_vm_load(vm, p, n), 0, "%s", bpfg_vm_error(vm));
    arr_reset();
    o->r0 = 0;
    o->err = bpfg_vm_exec(vm, ctx, CTX_LEN, &o->r0);
    arr_record(o);
    bpfg_vm_free(vm);
}

/* engine 0: x86 calling the helper, 1: x86 inlined, 2: LLVM inlined (3:
 * the LLVM batch, arr_batch_run) */
static void arr_jit(int engine, const struct bpf_insn *p, size_t n, uint8_t *ctx, struct arr_outcome *o)
{
    struct bpfg_x86jit_opts opts = {.resolver = arr_resolve, .map_info = engine ? arr_describe : NULL};
    struct bpfg_x86jit_code code;
    struct bpfg_x86jit_image img;
    char err[256];
    bpfg_x86jit_allow_helper(&opts, BPF_FUNC_map_lookup_elem);
    int ret = bpfg_x86jit_compile(p, n, &opts, &code, err, sizeof(err));
#ifdef BPFGRAFT_HAVE_LLVM
    if (engine == 2) {
        struct bpfg_llvmjit_opts lopts = {.jit = opts};
        bpfg_x86jit_code_free(&code);
        ret = bpfg_llvmjit_compile(p, n, &lopts, &code, NULL, err, sizeof(err));
    }
#endif
    cr_assert_eq(ret, 0, "engine %d: %s", engine, err);
    cr_assert_eq(bpfg_x86jit_map_exec(&code, &img), 0);
    bpfg_x86jit_code_free(&code);
    arr_reset();
    o->err = bpfg_x86jit_run(&img, ctx, CTX_LEN, array_table, NULL, &o->r0, NULL);
    arr_record(o);
    bpfg_x86jit_unmap(&img);
}

#ifdef BPFGRAFT_HAVE_LLVM
/* Engine 3: every array program in one relocatable LLVM batch, compiled
 * against decoy maps of the same shape and then bound to the real ones
 * (bpfg_llvmjit_batch_bind, as the server binds a cached batch to a
 * target): a slot left unbound would update the decoys. */
static struct fake_array decoy[2] = {{ARR_A_ENTRIES, 8, {0}}, {ARR_B_ENTRIES, 12, {0}}};
static struct bpfg_llvmjit_batch arr_batch;
static void *arr_batch_at;

static int decoy_resolve(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    int ret = arr_resolve(user, src_reg, imm0, imm1, value);
    if (!ret)
        *value = (uintptr_t)&decoy[*value == (uintptr_t)&arr[1]];
    return ret;
}

static int decoy_describe(void *user, uint64_t value, struct bpfg_jit_map_info *info)
{
    for (int m = 0; m < 2; m++)
        if (value == (uintptr_t)&decoy[m] && !arr_describe(user, (uintptr_t)&arr[m], info)) {
            info->value_base = (uintptr_t)decoy[m].values;
            return 0;
        }
    return -ENOENT;
}

static void arr_batch_build(void)
{
    static struct bpf_insn p[NARRAY_PROGS][64];
    struct bpfg_llvmjit_prog progs[NARRAY_PROGS];
    struct bpfg_llvmjit_opts lopts = {.jit = {.resolver = decoy_resolve, .map_info = decoy_describe},
                                      .relocatable_maps = true};
    bpfg_x86jit_allow_helper(&lopts.jit, BPF_FUNC_map_lookup_elem);
    for (int which = 0; which < NARRAY_PROGS; which++) {
        bool inlined;
        p[which][0] = MOV64_REG(9, 1);
        progs[which] = (struct bpfg_llvmjit_prog){p[which], array_prog(which, p[which] + 1, &inlined) + 1};
    }
    char err[512];
    cr_assert_eq(bpfg_llvmjit_compile_batch(progs, NARRAY_PROGS, &lopts, &arr_batch, NULL, err, sizeof(err)), 0, "%s",
                 err);
    for (int which = 0; which < NARRAY_PROGS; which++) /* every program references a map: slots of its own */
        cr_assert_gt(arr_batch.reloc_end[which], which ? arr_batch.reloc_end[which - 1] : 0, "program %d", which);
    lopts.jit.resolver = arr_resolve;
    lopts.jit.map_info = arr_describe;
    cr_assert_eq(bpfg_llvmjit_batch_bind(&arr_batch, progs, &lopts, err, sizeof(err)), 0, "%s", err);
    arr_batch_at = map_batch(&arr_batch);
}

static void arr_batch_run(int which, uint8_t *ctx, struct arr_outcome *o)
{
    struct bpfg_x86jit_image img = {arr_batch_at, arr_batch.blob.code.len,
                                    (bpfg_x86jit_fn)((uint8_t *)arr_batch_at + arr_batch.entry_off[which])};
    arr_reset();
    memset(decoy, 0, sizeof(decoy));
    decoy[0].max_entries = ARR_A_ENTRIES, decoy[0].value_size = 8;
    decoy[1].max_entries = ARR_B_ENTRIES, decoy[1].value_size = 12;
    o->err = bpfg_x86jit_run(&img, ctx, CTX_LEN, array_table, NULL, &o->r0, NULL);
    arr_record(o);
    for (size_t i = 0; i < sizeof(decoy[0].values); i++)
        cr_assert(!decoy[0].values[i] && !decoy[1].values[i], "program %d wrote a decoy map", which);
}

static void arr_batch_free(void)
{
    munmap(arr_batch_at, arr_batch.blob.code.len);
    bpfg_llvmjit_batch_free(&arr_batch);
}
#endif

static bool arr_same(const struct arr_outcome *a, const struct arr_outcome *b)
{
    return a->err == b->err && a->r0 == b->r0 && !memcmp(a->values, b->values, sizeof(a->values));
}

static const uint32_t arr_keys[] = {0, 1, 4, 5, 15, 16, 17, 0x80000000u, 0xffffffffu};

/* Every program with every key and x in {0, 1}, on every engine; kernel
 * (optional) compares with BPF_PROG_TEST_RUN. Returns the runs compared. */
static size_t arr_compare_all(void (*kernel)(const struct bpf_insn *, size_t, uint8_t *, const struct arr_outcome *))
{
    size_t runs = 0;
#ifdef BPFGRAFT_HAVE_LLVM
    int engines = 4; /* 3: the LLVM batch */
    arr_batch_build();
#else
    int engines = 2;
#endif
    for (int which = 0; which < NARRAY_PROGS; which++) {
        struct bpf_insn p[64];
        bool inlined;
        p[0] = MOV64_REG(9, 1);
        size_t n = array_prog(which, p + 1, &inlined) + 1;
        for (size_t k = 0; k < sizeof(arr_keys) / sizeof(arr_keys[0]) * 2; k++) {
            uint8_t ctx[CTX_LEN] = {0};
            uint32_t key = arr_keys[k / 2], x = (uint32_t)(k % 2) * 0x1001;
            memcpy(ctx, &key, 4);
            memcpy(ctx + 4, &x, 4);
            struct arr_outcome want, got;
            arr_interp(p, n, ctx, &want);
            cr_assert_eq(want.err, 0);
            for (int e = 0; e < engines; e++) {
#ifdef BPFGRAFT_HAVE_LLVM
                if (e == 3)
                    arr_batch_run(which, ctx, &got);
                else
#endif
                    arr_jit(e, p, n, ctx, &got);
                if (!arr_same(&got, &want))
                    dump(p, n);
                cr_assert(arr_same(&got, &want), "program %d key 0x%x x %u: engine %d r0 0x%llx, interp 0x%llx%s",
                          which, key, x, e, (unsigned long long)got.r0, (unsigned long long)want.r0,
                          memcmp(got.values, want.values, sizeof(want.values)) ? ", maps differ" : "");
                if (e && inlined)
                    cr_assert_eq(got.calls, 0, "program %d: engine %d called the helper", which, e);
            }
            if (kernel)
                kernel(p, n, ctx, &want);
            runs++;
        }
    }
#ifdef BPFGRAFT_HAVE_LLVM
    arr_batch_free();
#endif
    return runs;
}

Test(jit_diff, inlined_array_lookups_match_interpreter)
{
    size_t runs = arr_compare_all(NULL);
    cr_assert_eq(runs, NARRAY_PROGS * sizeof(arr_keys) / sizeof(arr_keys[0]) * 2);
}

/* ---- the same against the kernel, on real array maps ---- */

static int kmap[2] = {-1, -1};

static void arr_kernel_fill(void)
{
    arr_reset();
    for (int m = 0; m < 2; m++)
        for (uint32_t i = 0; i < arr[m].max_entries; i++)
            cr_assert_eq(bpf_map_update_elem(kmap[m], &i, &arr[m].values[i * arr_stride(&arr[m])], BPF_ANY), 0,
                         "map update: %s", strerror(errno));
}

static void arr_kernel_check_maps(const struct arr_outcome *want)
{
    uint8_t v[16];
    for (int m = 0; m < 2; m++)
        for (uint32_t i = 0; i < arr[m].max_entries; i++) {
            cr_assert_eq(bpf_map_lookup_elem(kmap[m], &i, v), 0, "map lookup: %s", strerror(errno));
            cr_assert(!memcmp(v, &want->values[m][i * arr_stride(&arr[m])], arr[m].value_size),
                      "map %d element %u: the kernel's differs", m, i);
        }
}

/* p without its first instruction (mov r9, r1) behind the XDP prologue. */
static void arr_kernel_run(const struct bpf_insn *p, size_t n, uint8_t *ctx, const struct arr_outcome *want)
{
    static char log[65536];
    struct bpf_insn prog[80];
    size_t pro = kernel_prologue(prog);
    memcpy(prog + pro, p + 1, (n - 1) * sizeof(*p));
    arr_kernel_fill();
    LIBBPF_OPTS(bpf_prog_load_opts, lopts, .log_buf = log, .log_size = sizeof(log), .log_level = 1);
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, NULL, "GPL", prog, pro + n - 1, &lopts);
    cr_assert_geq(fd, 0, "the kernel refused an array program: %s\n%s", strerror(errno), log);
    LIBBPF_OPTS(bpf_test_run_opts, topts, .data_in = ctx, .data_size_in = CTX_LEN, .repeat = 1);
    int err = bpf_prog_test_run_opts(fd, &topts);
    close(fd);
    cr_assert_eq(err, 0, "test_run: %s", strerror(errno));
    cr_assert_eq(topts.retval, (uint32_t)want->r0, "kernel r0 0x%x, interp 0x%llx", topts.retval,
                 (unsigned long long)want->r0);
    arr_kernel_check_maps(want);
}

Test(jit_diff, kernel_array_lookups_match)
{
    test_needs("bpf-test-run");
    for (int m = 0; m < 2; m++) {
        kmap[m] = bpf_map_create(BPF_MAP_TYPE_ARRAY, NULL, 4, arr[m].value_size, arr[m].max_entries, NULL);
        cr_assert_geq(kmap[m], 0, "array map: %s", strerror(errno));
        arr_fd[m] = kmap[m];
    }
    size_t runs = arr_compare_all(arr_kernel_run);
    for (int m = 0; m < 2; m++) {
        close(kmap[m]);
        arr_fd[m] = m + 1;
    }
    cr_assert_eq(runs, NARRAY_PROGS * sizeof(arr_keys) / sizeof(arr_keys[0]) * 2);
}
