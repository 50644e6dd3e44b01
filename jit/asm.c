/* eBPF text assembler for the bpf_conformance / uBPF syntax (see asm.h).
 *
 * One instruction per line, operands separated by commas, '#' comments.
 * Jump targets are "+N"/"-N" (relative to the next instruction) or labels;
 * like upstream bpf_conformance, a jump to "exit" without an "exit:" label
 * goes to the first exit instruction of the program.
 *
 * Registers %r0..%r15 are accepted: %r11..%r15 fit the 4-bit field and the
 * loader rejects them, which keeps upstream's negative vectors assemblable.
 *
 * Encodings that need a choice:
 *   call N            BPF_JMP|BPF_CALL, src_reg 0, imm N (helper)
 *   call local L      BPF_JMP|BPF_CALL, src_reg 1 (BPF_PSEUDO_CALL), imm pc-rel
 *   call runtime N    BPF_JMP|BPF_CALL, src_reg 2 (BPF_PSEUDO_KFUNC_CALL)
 *   call %rN          BPF_JMP|BPF_CALL|BPF_X, register in dst_reg, imm 0
 *                     (as upstream bpf_conformance and uBPF encode callx)
 *   ja32 L            BPF_JMP32|BPF_JA, target in imm
 *   lddw %rD, map_fd 3 / map_value 3+8 / btf_id 7 / func +4 / map_idx 0 /
 *   map_idx_value 0+16   pseudo lddw, src_reg 1..6, "+M" is the second imm
 */
#include "asm.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OPERANDS 4

enum fixup_kind { FIX_OFF16, FIX_IMM32 };

struct label {
    const char *name;
    size_t pc;
    int line;
};

struct fixup {
    const char *name;
    size_t pc;
    int line;
    enum fixup_kind kind;
};

struct asm_state {
    struct bpf_insn *insns;
    size_t n, cap;
    struct label *labels;
    size_t nlabels, caplabels;
    struct fixup *fixups;
    size_t nfixups, capfixups;
    long first_exit; /* pc of the first exit, -1 if none */
    int line;
    char *err;
    size_t errlen;
};

static int asm_err(struct asm_state *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int asm_err(struct asm_state *st, const char *fmt, ...)
{
    if (st->err && st->errlen) {
        int k = snprintf(st->err, st->errlen, "line %d: ", st->line);
        if (k >= 0 && (size_t)k < st->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(st->err + k, st->errlen - k, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, ncap * elem);
    if (!np)
        return -ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

static int emit(struct asm_state *st, struct bpf_insn insn)
{
    int err = grow((void **)&st->insns, &st->cap, st->n + 1, sizeof(insn));
    if (err)
        return err;
    st->insns[st->n++] = insn;
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

static bool is_ident_start(char c)
{
    return isalpha((unsigned char)c) || c == '_' || c == '.' || c == '$';
}

static bool is_ident(const char *s)
{
    if (!is_ident_start(*s))
        return false;
    for (s++; *s; s++)
        if (!is_ident_start(*s) && !isdigit((unsigned char)*s))
            return false;
    return true;
}

/* Parses [+-](0x<hex>|<dec>) filling the whole string. */
static int parse_int(const char *s, bool *neg, uint64_t *mag)
{
    *neg = false;
    if (*s == '+' || *s == '-')
        *neg = *s++ == '-';
    int base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
    }
    if (!*s)
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        int d;
        if (isdigit((unsigned char)*s))
            d = *s - '0';
        else if (base == 16 && isxdigit((unsigned char)*s))
            d = tolower((unsigned char)*s) - 'a' + 10;
        else
            return -1;
        if (v > (UINT64_MAX - d) / base)
            return -2; /* overflow */
        v = v * base + d;
    }
    *mag = v;
    return 0;
}

/* A 32-bit immediate: -2^31..2^32-1, so 0xffffffff is the 32-bit pattern. */
static int parse_imm32(struct asm_state *st, const char *s, int32_t *out)
{
    bool neg;
    uint64_t mag;
    int r = parse_int(s, &neg, &mag);
    if (r == -1)
        return asm_err(st, "bad immediate '%s'", s);
    if (r < 0 || (neg ? mag > 0x80000000ull : mag > 0xffffffffull))
        return asm_err(st, "immediate '%s' out of range", s);
    *out = (int32_t)(uint32_t)(neg ? 0 - mag : mag);
    return 0;
}

static int parse_imm64(struct asm_state *st, const char *s, uint64_t *out)
{
    bool neg;
    uint64_t mag;
    int r = parse_int(s, &neg, &mag);
    if (r == -1)
        return asm_err(st, "bad immediate '%s'", s);
    if (r < 0 || (neg && mag > 0x8000000000000000ull))
        return asm_err(st, "immediate '%s' out of range", s);
    *out = neg ? 0 - mag : mag;
    return 0;
}

static int parse_off16(struct asm_state *st, const char *s, int16_t *out)
{
    bool neg;
    uint64_t mag;
    int r = parse_int(s, &neg, &mag);
    if (r == -1)
        return asm_err(st, "bad offset '%s'", s);
    if (r < 0 || (neg ? mag > 32768 : mag > 32767))
        return asm_err(st, "offset '%s' out of range", s);
    *out = (int16_t)(neg ? -(int64_t)mag : (int64_t)mag);
    return 0;
}

static int parse_reg(struct asm_state *st, const char *s, uint8_t *reg)
{
    if (s[0] == '%' && s[1] == 'r' && isdigit((unsigned char)s[2])) {
        const char *p = s + 2;
        int v = 0;
        while (isdigit((unsigned char)*p) && v < 100)
            v = v * 10 + (*p++ - '0');
        /* no leading zeros ("%r01") so that each register has one spelling */
        if (!*p && v <= 15 && !(s[2] == '0' && s[3])) {
            *reg = (uint8_t)v;
            return 0;
        }
    }
    return asm_err(st, "bad register '%s'", s);
}

/* "[%rN]", "[%rN+off]" or "[%rN-off]", blanks allowed inside. */
static int parse_mem(struct asm_state *st, char *s, uint8_t *reg, int16_t *off)
{
    size_t len = strlen(s);
    if (len < 3 || s[0] != '[' || s[len - 1] != ']')
        return asm_err(st, "bad memory operand '%s'", s);
    char buf[128];
    if (len - 2 >= sizeof(buf))
        return asm_err(st, "bad memory operand '%s'", s);
    memcpy(buf, s + 1, len - 2);
    buf[len - 2] = '\0';
    char *sign = strpbrk(buf, "+-");
    char offbuf[64] = "0";
    if (sign) {
        char *o = trim(sign + 1);
        if (!*o || strlen(o) + 2 > sizeof(offbuf))
            return asm_err(st, "bad memory operand '%s'", s);
        snprintf(offbuf, sizeof(offbuf), "%c%s", *sign, o);
        *sign = '\0';
    }
    int err = parse_reg(st, trim(buf), reg);
    if (err)
        return err;
    return parse_off16(st, offbuf, off);
}

static int add_fixup(struct asm_state *st, const char *name, enum fixup_kind kind)
{
    int err = grow((void **)&st->fixups, &st->capfixups, st->nfixups + 1, sizeof(*st->fixups));
    if (err)
        return err;
    st->fixups[st->nfixups++] = (struct fixup){name, st->n, st->line, kind};
    return 0;
}

/* A jump/call target for the instruction about to be emitted at st->n:
 * a number (relative) or a label, resolved after the last line. */
static int parse_target(struct asm_state *st, const char *s, enum fixup_kind kind, int16_t *off, int32_t *imm)
{
    if (is_ident(s)) {
        *off = 0;
        *imm = 0;
        return add_fixup(st, s, kind);
    }
    if (kind == FIX_OFF16)
        return parse_off16(st, s, off);
    return parse_imm32(st, s, imm);
}

/* Splits s on commas into trimmed, non-empty operands. */
static int split_operands(struct asm_state *st, char *s, char **ops, int *nops)
{
    *nops = 0;
    s = trim(s);
    if (!*s)
        return 0;
    for (;;) {
        char *comma = strchr(s, ',');
        if (comma)
            *comma = '\0';
        if (*nops == MAX_OPERANDS)
            return asm_err(st, "too many operands");
        char *op = trim(s);
        if (!*op)
            return asm_err(st, "empty operand");
        ops[(*nops)++] = op;
        if (!comma)
            return 0;
        s = comma + 1;
    }
}

static int want_ops(struct asm_state *st, const char *mn, int nops, int want)
{
    if (nops == want)
        return 0;
    return asm_err(st, "'%s' takes %d operand%s, got %d", mn, want, want == 1 ? "" : "s", nops);
}

/* Cuts the first blank-separated word off *rest. */
static char *next_word(char **rest)
{
    char *s = *rest;
    while (isspace((unsigned char)*s))
        s++;
    char *w = s;
    while (*s && !isspace((unsigned char)*s))
        s++;
    if (*s)
        *s++ = '\0';
    *rest = s;
    return w;
}

struct name_op {
    const char *name;
    uint8_t op;
};

static const struct name_op alu_ops[] = {
    {"add", BPF_ADD}, {"sub", BPF_SUB}, {"mul", BPF_MUL},   {"div", BPF_DIV},  {"or", BPF_OR},
    {"and", BPF_AND}, {"lsh", BPF_LSH}, {"rsh", BPF_RSH},   {"neg", BPF_NEG},  {"mod", BPF_MOD},
    {"xor", BPF_XOR}, {"mov", BPF_MOV}, {"arsh", BPF_ARSH}, {"sdiv", BPF_DIV}, {"smod", BPF_MOD},
};

static const struct name_op jmp_ops[] = {
    {"jeq", BPF_JEQ},   {"jgt", BPF_JGT}, {"jge", BPF_JGE}, {"jset", BPF_JSET}, {"jne", BPF_JNE},   {"jsgt", BPF_JSGT},
    {"jsge", BPF_JSGE}, {"jlt", BPF_JLT}, {"jle", BPF_JLE}, {"jslt", BPF_JSLT}, {"jsle", BPF_JSLE},
};

static const struct name_op mem_ops[] = {
    {"ldxb", BPF_LDX | BPF_MEM | BPF_B},    {"ldxh", BPF_LDX | BPF_MEM | BPF_H},
    {"ldxw", BPF_LDX | BPF_MEM | BPF_W},    {"ldxdw", BPF_LDX | BPF_MEM | BPF_DW},
    {"ldxsb", BPF_LDX | BPF_MEMSX | BPF_B}, {"ldxsh", BPF_LDX | BPF_MEMSX | BPF_H},
    {"ldxsw", BPF_LDX | BPF_MEMSX | BPF_W}, {"stb", BPF_ST | BPF_MEM | BPF_B},
    {"sth", BPF_ST | BPF_MEM | BPF_H},      {"stw", BPF_ST | BPF_MEM | BPF_W},
    {"stdw", BPF_ST | BPF_MEM | BPF_DW},    {"stxb", BPF_STX | BPF_MEM | BPF_B},
    {"stxh", BPF_STX | BPF_MEM | BPF_H},    {"stxw", BPF_STX | BPF_MEM | BPF_W},
    {"stxdw", BPF_STX | BPF_MEM | BPF_DW},
};

static const struct {
    const char *name;
    int32_t imm;
} atomic_ops[] = {
    {"add", BPF_ADD}, {"or", BPF_OR}, {"and", BPF_AND}, {"xor", BPF_XOR}, {"xchg", BPF_XCHG}, {"cmpxchg", BPF_CMPXCHG},
};

static const char *const ld64_kinds[] = {
    NULL, "map_fd", "map_value", "btf_id", "func", "map_idx", "map_idx_value",
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static int lookup(const struct name_op *t, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(t[i].name, name))
            return (int)i;
    return -1;
}

/* Strips a "32" or "64" width suffix: returns 32, 64 or 0 (none). */
static int width_suffix(const char *mn, char *base, size_t baselen)
{
    size_t len = strlen(mn);
    if (len >= baselen)
        return -1;
    memcpy(base, mn, len + 1);
    if (len > 2 && (!strcmp(mn + len - 2, "32") || !strcmp(mn + len - 2, "64"))) {
        base[len - 2] = '\0';
        return mn[len - 2] == '3' ? 32 : 64;
    }
    return 0;
}

static int asm_lock(struct asm_state *st, char *rest)
{
    char *w = next_word(&rest);
    bool fetch = !strcmp(w, "fetch");
    if (fetch)
        w = next_word(&rest);
    if (!*w)
        return asm_err(st, "'lock' needs an operation");
    char base[32];
    int width = width_suffix(w, base, sizeof(base));
    size_t i;
    for (i = 0; width >= 0 && i < ARRAY_LEN(atomic_ops); i++)
        if (!strcmp(atomic_ops[i].name, base))
            break;
    if (width < 0 || i == ARRAY_LEN(atomic_ops))
        return asm_err(st, "unknown atomic operation '%s'", w);

    char *ops[MAX_OPERANDS];
    int nops, err;
    if ((err = split_operands(st, rest, ops, &nops)) || (err = want_ops(st, "lock", nops, 2)))
        return err;
    struct bpf_insn insn = {
        .code = BPF_STX | BPF_ATOMIC | (width == 32 ? BPF_W : BPF_DW),
        .imm = atomic_ops[i].imm | (fetch ? BPF_FETCH : 0),
    };
    uint8_t dst, src;
    int16_t off;
    if ((err = parse_mem(st, ops[0], &dst, &off)) || (err = parse_reg(st, ops[1], &src)))
        return err;
    insn.dst_reg = dst;
    insn.src_reg = src;
    insn.off = off;
    return emit(st, insn);
}

static int asm_call(struct asm_state *st, char *rest)
{
    struct bpf_insn insn = {.code = BPF_JMP | BPF_CALL};
    char *s = trim(rest);
    char *mode = s;
    char *arg = s;
    /* optional mode word: local / helper / runtime */
    while (*arg && !isspace((unsigned char)*arg))
        arg++;
    if (*arg) {
        *arg++ = '\0';
        arg = trim(arg);
    } else {
        mode = "";
        arg = s;
    }
    if (!*arg || (!*mode && (!strcmp(arg, "local") || !strcmp(arg, "helper") || !strcmp(arg, "runtime"))))
        return asm_err(st, "'call' needs a target");
    if (strchr(arg, ',') || strpbrk(arg, " \t"))
        return asm_err(st, "'call' takes one target, got '%s'", arg);
    int16_t off;
    if (!strcmp(mode, "local")) {
        insn.src_reg = BPF_PSEUDO_CALL;
        int err = parse_target(st, arg, FIX_IMM32, &off, &insn.imm);
        return err ? err : emit(st, insn);
    }
    if (!strcmp(mode, "runtime")) {
        insn.src_reg = BPF_PSEUDO_KFUNC_CALL;
    } else if (*mode && strcmp(mode, "helper")) {
        return asm_err(st, "unknown call mode '%s'", mode);
    } else if (arg[0] == '%') {
        uint8_t reg;
        int err = parse_reg(st, arg, &reg);
        if (err)
            return err;
        insn.code |= BPF_X;
        insn.dst_reg = reg;
        return emit(st, insn);
    }
    int err = parse_imm32(st, arg, &insn.imm);
    return err ? err : emit(st, insn);
}

static int asm_lddw(struct asm_state *st, char **ops, int nops)
{
    int err = want_ops(st, "lddw", nops, 2);
    if (err)
        return err;
    struct bpf_insn insn[2] = {{.code = BPF_LD | BPF_IMM | BPF_DW}, {0}};
    uint8_t dst;
    if ((err = parse_reg(st, ops[0], &dst)))
        return err;
    insn[0].dst_reg = dst;
    char *v = ops[1];
    if (is_ident_start(*v)) {
        /* pseudo form "KIND IMM0[+IMM1]" */
        char *rest = v;
        char *kind = next_word(&rest);
        size_t k;
        for (k = 1; k < ARRAY_LEN(ld64_kinds); k++)
            if (!strcmp(kind, ld64_kinds[k]))
                break;
        if (k == ARRAY_LEN(ld64_kinds))
            return asm_err(st, "unknown lddw kind '%s'", kind);
        insn[0].src_reg = (uint8_t)k;
        rest = trim(rest);
        char *plus = *rest ? strchr(rest + 1, '+') : NULL;
        if (plus) {
            *plus = '\0';
            if ((err = parse_imm32(st, trim(plus + 1), &insn[1].imm)))
                return err;
            rest = trim(rest);
        }
        if (!*rest)
            return asm_err(st, "'lddw %s' needs a value", kind);
        int16_t off;
        if (k == BPF_PSEUDO_FUNC)
            err = parse_target(st, rest, FIX_IMM32, &off, &insn[0].imm);
        else
            err = parse_imm32(st, rest, &insn[0].imm);
    } else {
        uint64_t imm = 0;
        err = parse_imm64(st, v, &imm);
        insn[0].imm = (int32_t)(uint32_t)imm;
        insn[1].imm = (int32_t)(uint32_t)(imm >> 32);
    }
    if (err || (err = emit(st, insn[0])))
        return err;
    return emit(st, insn[1]);
}

/* Second operand of ALU and conditional jumps: register or immediate. */
static int parse_src(struct asm_state *st, const char *s, struct bpf_insn *insn)
{
    if (s[0] == '%') {
        uint8_t reg;
        int err = parse_reg(st, s, &reg);
        if (err)
            return err;
        insn->code |= BPF_X;
        insn->src_reg = reg;
        return 0;
    }
    return parse_imm32(st, s, &insn->imm);
}

static int asm_insn(struct asm_state *st, const char *mn, char *rest)
{
    if (!strcmp(mn, "lock"))
        return asm_lock(st, rest);
    if (!strcmp(mn, "call"))
        return asm_call(st, rest);

    char *ops[MAX_OPERANDS];
    int nops;
    int err = split_operands(st, rest, ops, &nops);
    if (err)
        return err;
    struct bpf_insn insn = {0};
    uint8_t reg;
    int16_t off;
    int i;

    if (!strcmp(mn, "exit")) {
        if ((err = want_ops(st, mn, nops, 0)))
            return err;
        if (st->first_exit < 0)
            st->first_exit = (long)st->n;
        insn.code = BPF_JMP | BPF_EXIT;
        return emit(st, insn);
    }
    if (!strcmp(mn, "ja") || !strcmp(mn, "ja32")) {
        if ((err = want_ops(st, mn, nops, 1)))
            return err;
        bool wide = mn[2] != '\0';
        insn.code = (wide ? BPF_JMP32 : BPF_JMP) | BPF_JA;
        err = parse_target(st, ops[0], wide ? FIX_IMM32 : FIX_OFF16, &insn.off, &insn.imm);
        return err ? err : emit(st, insn);
    }
    if (!strcmp(mn, "lddw"))
        return asm_lddw(st, ops, nops);

    if ((i = lookup(mem_ops, ARRAY_LEN(mem_ops), mn)) >= 0) {
        if ((err = want_ops(st, mn, nops, 2)))
            return err;
        insn.code = mem_ops[i].op;
        switch (ebpf_class(insn.code)) {
        case BPF_LDX:
            if ((err = parse_reg(st, ops[0], &reg)))
                return err;
            insn.dst_reg = reg;
            if ((err = parse_mem(st, ops[1], &reg, &off)))
                return err;
            insn.src_reg = reg;
            break;
        case BPF_ST:
            if ((err = parse_mem(st, ops[0], &reg, &off)) || (err = parse_imm32(st, ops[1], &insn.imm)))
                return err;
            insn.dst_reg = reg;
            break;
        default: /* BPF_STX */
            if ((err = parse_mem(st, ops[0], &reg, &off)))
                return err;
            insn.dst_reg = reg;
            if ((err = parse_reg(st, ops[1], &reg)))
                return err;
            insn.src_reg = reg;
            break;
        }
        insn.off = off;
        return emit(st, insn);
    }

    /* byte swaps: be16, le32, bswap64, swap16 (upstream spelling of bswap) */
    static const struct {
        const char *prefix;
        uint8_t code;
    } ends[] = {
        {"be", BPF_ALU | BPF_END | BPF_TO_BE},
        {"le", BPF_ALU | BPF_END | BPF_TO_LE},
        {"bswap", EBPF_ALU_BSWAP},
        {"swap", EBPF_ALU_BSWAP},
    };
    for (size_t e = 0; e < ARRAY_LEN(ends); e++) {
        size_t plen = strlen(ends[e].prefix);
        const char *bits = mn + plen;
        if (strncmp(mn, ends[e].prefix, plen) || (strcmp(bits, "16") && strcmp(bits, "32") && strcmp(bits, "64")))
            continue;
        if ((err = want_ops(st, mn, nops, 1)) || (err = parse_reg(st, ops[0], &reg)))
            return err;
        insn.code = ends[e].code;
        insn.dst_reg = reg;
        insn.imm = atoi(bits);
        return emit(st, insn);
    }

    /* movsx{8,16}{32,64} and movsx3264: sign-extending register move */
    if (!strncmp(mn, "movsx", 5)) {
        static const struct {
            const char *suffix;
            uint8_t cls;
            int16_t off;
        } sx[] = {
            {"832", BPF_ALU, 8},     {"1632", BPF_ALU, 16},   {"864", BPF_ALU64, 8},
            {"1664", BPF_ALU64, 16}, {"3264", BPF_ALU64, 32},
        };
        for (size_t k = 0; k < ARRAY_LEN(sx); k++) {
            if (strcmp(mn + 5, sx[k].suffix))
                continue;
            if ((err = want_ops(st, mn, nops, 2)) || (err = parse_reg(st, ops[0], &reg)))
                return err;
            insn.code = sx[k].cls | BPF_MOV | BPF_X;
            insn.dst_reg = reg;
            insn.off = sx[k].off;
            if (ops[1][0] != '%')
                return asm_err(st, "'%s' needs a register source", mn);
            if ((err = parse_reg(st, ops[1], &reg)))
                return err;
            insn.src_reg = reg;
            return emit(st, insn);
        }
        return asm_err(st, "unknown mnemonic '%s'", mn);
    }

    char base[32];
    int width = width_suffix(mn, base, sizeof(base));
    if (width < 0)
        return asm_err(st, "unknown mnemonic '%s'", mn);

    if (width != 64 && (i = lookup(jmp_ops, ARRAY_LEN(jmp_ops), base)) >= 0) {
        if ((err = want_ops(st, mn, nops, 3)) || (err = parse_reg(st, ops[0], &reg)))
            return err;
        insn.code = (width == 32 ? BPF_JMP32 : BPF_JMP) | jmp_ops[i].op;
        insn.dst_reg = reg;
        int32_t unused;
        if ((err = parse_src(st, ops[1], &insn)) || (err = parse_target(st, ops[2], FIX_OFF16, &insn.off, &unused)))
            return err;
        return emit(st, insn);
    }

    if ((i = lookup(alu_ops, ARRAY_LEN(alu_ops), base)) >= 0) {
        insn.code = (width == 32 ? BPF_ALU : BPF_ALU64) | alu_ops[i].op;
        /* sdiv, smod: the signed forms of div, mod */
        insn.off = !strcmp(base, "sdiv") || !strcmp(base, "smod");
        int want = alu_ops[i].op == BPF_NEG ? 1 : 2;
        if ((err = want_ops(st, mn, nops, want)) || (err = parse_reg(st, ops[0], &reg)))
            return err;
        insn.dst_reg = reg;
        if (want == 2 && (err = parse_src(st, ops[1], &insn)))
            return err;
        return emit(st, insn);
    }
    return asm_err(st, "unknown mnemonic '%s'", mn);
}

static int define_label(struct asm_state *st, const char *name)
{
    if (!is_ident(name))
        return asm_err(st, "bad label name '%s'", name);
    for (size_t i = 0; i < st->nlabels; i++)
        if (!strcmp(st->labels[i].name, name))
            return asm_err(st, "duplicate label '%s' (first defined at line %d)", name, st->labels[i].line);
    int err = grow((void **)&st->labels, &st->caplabels, st->nlabels + 1, sizeof(*st->labels));
    if (err)
        return err;
    st->labels[st->nlabels++] = (struct label){name, st->n, st->line};
    return 0;
}

static int asm_line(struct asm_state *st, char *line)
{
    char *hash = strchr(line, '#');
    if (hash)
        *hash = '\0';
    char *s = trim(line);
    if (!*s)
        return 0;
    /* "name:" alone or in front of an instruction */
    char *rest = s;
    char *word = next_word(&rest);
    size_t wlen = strlen(word);
    if (word[wlen - 1] == ':') {
        word[wlen - 1] = '\0';
        int err = define_label(st, word);
        if (err)
            return err;
        rest = trim(rest);
        if (!*rest)
            return 0;
        word = next_word(&rest);
    }
    return asm_insn(st, word, rest);
}

static int resolve_fixups(struct asm_state *st)
{
    for (size_t i = 0; i < st->nfixups; i++) {
        struct fixup *f = &st->fixups[i];
        long target = -1;
        for (size_t k = 0; k < st->nlabels; k++)
            if (!strcmp(st->labels[k].name, f->name))
                target = (long)st->labels[k].pc;
        if (target < 0 && !strcmp(f->name, "exit"))
            target = st->first_exit;
        st->line = f->line;
        if (target < 0)
            return asm_err(st, "undefined label '%s'", f->name);
        long rel = target - (long)f->pc - 1;
        if (f->kind == FIX_OFF16) {
            if (rel < INT16_MIN || rel > INT16_MAX)
                return asm_err(st, "jump to '%s' out of range", f->name);
            st->insns[f->pc].off = (int16_t)rel;
        } else {
            st->insns[f->pc].imm = (int32_t)rel;
        }
    }
    return 0;
}

int bpfg_asm(const char *text, struct bpf_insn **insns, size_t *n, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = '\0';
    *insns = NULL;
    *n = 0;
    /* Labels and fixups point into this copy, so it lives until the end. */
    char *copy = strdup(text);
    if (!copy)
        return -ENOMEM;
    struct asm_state st = {.first_exit = -1, .err = errbuf, .errlen = errlen};
    int err = 0;
    char *line = copy;
    while (line && !err) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        st.line++;
        err = asm_line(&st, line);
        line = nl ? nl + 1 : NULL;
    }
    if (!err)
        err = resolve_fixups(&st);
    if (err == -ENOMEM && errbuf && errlen)
        snprintf(errbuf, errlen, "line %d: out of memory", st.line);
    free(st.labels);
    free(st.fixups);
    free(copy);
    if (err) {
        free(st.insns);
        return err;
    }
    *insns = st.insns;
    *n = st.n;
    return 0;
}
