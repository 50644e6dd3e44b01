/* Assembler and disassembler: encodings against hand-written instructions,
 * error messages, and assemble(disasm(x)) == x over every conformance
 * vector and over a sweep of encodings. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asm.h"

#ifndef BPFGRAFT_CONFORMANCE_DIR
#error "BPFGRAFT_CONFORMANCE_DIR must name the directory of *.data vectors"
#endif

#define I(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

static void expect_insns(const char *text, const struct bpf_insn *want, size_t nwant)
{
    struct bpf_insn *got = NULL;
    size_t n = 0;
    char err[256];
    int rc = bpfg_asm(text, &got, &n, err, sizeof(err));
    cr_assert_eq(rc, 0, "assembling '%s' failed: %s", text, err);
    cr_assert_eq(n, nwant, "'%s': %zu instructions, want %zu", text, n, nwant);
    for (size_t i = 0; i < n; i++) {
        const struct bpf_insn *g = &got[i], *w = &want[i];
        cr_expect(g->code == w->code && g->dst_reg == w->dst_reg && g->src_reg == w->src_reg && g->off == w->off &&
                      g->imm == w->imm,
                  "'%s' insn %zu: got {0x%02x %u %u %d %d} want {0x%02x %u %u %d %d}", text, i, g->code, g->dst_reg,
                  g->src_reg, g->off, g->imm, w->code, w->dst_reg, w->src_reg, w->off, w->imm);
    }
    free(got);
}

#define EXPECT(text, ...)                                            \
    do {                                                             \
        const struct bpf_insn want_[] = {__VA_ARGS__};               \
        expect_insns(text, want_, sizeof(want_) / sizeof(want_[0])); \
    } while (0)

static void expect_error(const char *text, const char *msg)
{
    struct bpf_insn *got = (struct bpf_insn *)1;
    size_t n = 99;
    char err[256] = "untouched";
    int rc = bpfg_asm(text, &got, &n, err, sizeof(err));
    cr_assert_eq(rc, -EINVAL, "'%s' assembled (rc %d), expected error '%s'", text, rc, msg);
    cr_expect_null(got);
    cr_expect_eq(n, 0);
    cr_expect_str_eq(err, msg, "'%s': error '%s', want '%s'", text, err, msg);
}

/* Disassembles one instruction (and its lddw half) and returns the text. */
static int disasm1(const struct bpf_insn *insns, size_t n, char *buf, size_t len)
{
    return bpfg_disasm_insn(insns, n, 0, buf, len);
}

/* ---- encodings ---------------------------------------------------------- */

Test(asm_encoding, lddw_is_two_slots)
{
    EXPECT("lddw %r0, 0x1122334455667788", I(0x18, 0, 0, 0, 0x55667788), I(0, 0, 0, 0, 0x11223344));
    EXPECT("lddw %r3, -1", I(0x18, 3, 0, 0, -1), I(0, 0, 0, 0, -1));
    EXPECT("lddw %r0, 2147483648", I(0x18, 0, 0, 0, (int32_t)0x80000000), I(0, 0, 0, 0, 0));
    EXPECT("lddw %r0, 0xFFFFFFFFFFFFFFFF", I(0x18, 0, 0, 0, -1), I(0, 0, 0, 0, -1));
}

Test(asm_encoding, lddw_pseudo_forms)
{
    EXPECT("lddw %r1, map_fd 3", I(0x18, 1, BPF_PSEUDO_MAP_FD, 0, 3), I(0, 0, 0, 0, 0));
    EXPECT("lddw %r2, map_value 4+16", I(0x18, 2, BPF_PSEUDO_MAP_VALUE, 0, 4), I(0, 0, 0, 0, 16));
    EXPECT("lddw %r1, map_idx_value 0 + 8", I(0x18, 1, 6, 0, 0), I(0, 0, 0, 0, 8));
    EXPECT("lddw %r1, func f\nexit\nf:\nexit", I(0x18, 1, BPF_PSEUDO_FUNC, 0, 2), I(0, 0, 0, 0, 0), I(0x95, 0, 0, 0, 0),
           I(0x95, 0, 0, 0, 0));
}

Test(asm_encoding, calls)
{
    EXPECT("call 5", I(0x85, 0, 0, 0, 5));
    EXPECT("call helper 7", I(0x85, 0, 0, 0, 7));
    /* callx: register in dst_reg, as upstream bpf_conformance and uBPF */
    EXPECT("call %r2", I(0x8d, 2, 0, 0, 0));
    EXPECT("call runtime 9", I(0x85, 0, BPF_PSEUDO_KFUNC_CALL, 0, 9));
    EXPECT("call local f\nexit\nf:\nmov %r0, 1\nexit", I(0x85, 0, BPF_PSEUDO_CALL, 0, 1), I(0x95, 0, 0, 0, 0),
           I(0xb7, 0, 0, 0, 1), I(0x95, 0, 0, 0, 0));
    EXPECT("f: mov %r0, 0\nexit\ncall local f\nexit", I(0xb7, 0, 0, 0, 0), I(0x95, 0, 0, 0, 0), I(0x85, 0, 1, 0, -3),
           I(0x95, 0, 0, 0, 0));
    EXPECT("call local -1", I(0x85, 0, 1, 0, -1));
}

Test(asm_encoding, jumps)
{
    EXPECT("ja32 +3", I(0x06, 0, 0, 0, 3));
    EXPECT("top:\nmov %r0, 0\nja32 top", I(0xb7, 0, 0, 0, 0), I(0x06, 0, 0, 0, -2));
    EXPECT("ja -1", I(0x05, 0, 0, -1, 0));
    EXPECT("jeq %r1, 0xb, +2", I(0x15, 1, 0, 2, 0xb));
    EXPECT("jsge32 %r1, 0xffffffff, +1", I(0x76, 1, 0, 1, -1));
    EXPECT("jset32 %r1, %r2, -4", I(0x4e, 1, 2, -4, 0));
    EXPECT("jslt %r3, -2, L\nL: exit", I(0xc5, 3, 0, 0, -2), I(0x95, 0, 0, 0, 0));
    /* upstream: "exit" without a label is the first exit instruction */
    EXPECT("jne %r0, %r1, exit\nmov %r0, 1\nexit\nexit", I(0x5d, 0, 1, 1, 0), I(0xb7, 0, 0, 0, 1), I(0x95, 0, 0, 0, 0),
           I(0x95, 0, 0, 0, 0));
    /* ... unless the program defines an "exit" label */
    EXPECT("ja exit\nexit\nexit:\nexit", I(0x05, 0, 0, 1, 0), I(0x95, 0, 0, 0, 0), I(0x95, 0, 0, 0, 0));
}

Test(asm_encoding, alu)
{
    EXPECT("mov32 %r0, 0xffffffff", I(0xb4, 0, 0, 0, -1));
    EXPECT("mov %r0, -10", I(0xb7, 0, 0, 0, -10));
    EXPECT("add64 %r1, %r2", I(0x0f, 1, 2, 0, 0));
    EXPECT("add32 %r1, %r2", I(0x0c, 1, 2, 0, 0));
    EXPECT("arsh32 %r0, -16", I(0xc4, 0, 0, 0, -16));
    EXPECT("neg32 %r1", I(0x84, 1, 0, 0, 0));
    EXPECT("neg %r1", I(0x87, 1, 0, 0, 0));
    EXPECT("sdiv32 %r0, -4", I(0x34, 0, 0, 1, -4));
    EXPECT("sdiv %r0, %r1", I(0x3f, 0, 1, 1, 0));
    EXPECT("smod32 %r0, -3", I(0x94, 0, 0, 1, -3));
    EXPECT("smod %r0, %r1", I(0x9f, 0, 1, 1, 0));
    EXPECT("sub %r0, 1", I(0x17, 0, 0, 0, 1)); /* not mistaken for a signed op */
    EXPECT("mod %r0, 0XFF", I(0x97, 0, 0, 0, 255));
}

Test(asm_encoding, movsx)
{
    EXPECT("movsx832 %r0, %r1", I(0xbc, 0, 1, 8, 0));
    EXPECT("movsx1632 %r0, %r1", I(0xbc, 0, 1, 16, 0));
    EXPECT("movsx864 %r0, %r1", I(0xbf, 0, 1, 8, 0));
    EXPECT("movsx1664 %r0, %r1", I(0xbf, 0, 1, 16, 0));
    EXPECT("movsx3264 %r9, %r8", I(0xbf, 9, 8, 32, 0));
}

Test(asm_encoding, byte_swaps)
{
    EXPECT("be16 %r0", I(0xdc, 0, 0, 0, 16));
    EXPECT("be64 %r0", I(0xdc, 0, 0, 0, 64));
    EXPECT("le32 %r1", I(0xd4, 1, 0, 0, 32));
    EXPECT("bswap32 %r0", I(0xd7, 0, 0, 0, 32));
    EXPECT("swap16 %r0", I(0xd7, 0, 0, 0, 16));
}

Test(asm_encoding, loads_and_stores)
{
    EXPECT("ldxsb %r0, [%r10-1]", I(0x91, 0, 10, -1, 0));
    EXPECT("ldxsh %r0, [%r1+2]", I(0x89, 0, 1, 2, 0));
    EXPECT("ldxsw %r0, [%r1]", I(0x81, 0, 1, 0, 0));
    EXPECT("ldxb %r0, [%r1+0x2]", I(0x71, 0, 1, 2, 0));
    EXPECT("ldxdw %r0, [ %r1 - 8 ]", I(0x79, 0, 1, -8, 0));
    EXPECT("stdw [%r10-8], -1", I(0x7a, 10, 0, -8, -1));
    EXPECT("sth [%r0], 0x1234", I(0x6a, 0, 0, 0, 0x1234));
    EXPECT("stxw [%r1+32767], %r2", I(0x63, 1, 2, 32767, 0));
    EXPECT("stxb [%r1-32768], %r9", I(0x73, 1, 9, -32768, 0));
}

Test(asm_encoding, atomics)
{
    EXPECT("lock cmpxchg32 [%r10-8], %r1", I(0xc3, 10, 1, -8, BPF_CMPXCHG));
    EXPECT("lock cmpxchg [%r10-8], %r1", I(0xdb, 10, 1, -8, BPF_CMPXCHG));
    EXPECT("lock xchg32 [%r10-8], %r1", I(0xc3, 10, 1, -8, BPF_XCHG));
    EXPECT("lock add [%r1+4], %r2", I(0xdb, 1, 2, 4, BPF_ADD));
    EXPECT("lock fetch add [%r1+4], %r2", I(0xdb, 1, 2, 4, BPF_ADD | BPF_FETCH));
    EXPECT("lock or32 [%r1], %r2", I(0xc3, 1, 2, 0, BPF_OR));
    EXPECT("lock fetch and32 [%r1], %r2", I(0xc3, 1, 2, 0, BPF_AND | BPF_FETCH));
    EXPECT("lock fetch xor [%r1], %r2", I(0xdb, 1, 2, 0, BPF_XOR | BPF_FETCH));
}

Test(asm_encoding, comments_blank_lines_and_labels)
{
    EXPECT("# header\n\n  mov %r0, 1   # one\nL1:\n\n# more\nL2: exit\n", I(0xb7, 0, 0, 0, 1), I(0x95, 0, 0, 0, 0));
}

Test(asm_encoding, empty_program)
{
    struct bpf_insn *insns = (struct bpf_insn *)1;
    size_t n = 99;
    cr_assert_eq(bpfg_asm("# nothing\n\n", &insns, &n, NULL, 0), 0);
    cr_expect_eq(n, 0);
    free(insns);
}

/* ---- errors ----------------------------------------------------------------- */

Test(asm_errors, name_the_line)
{
    expect_error("mov %r0, 1\n\nfoo %r1\nexit", "line 3: unknown mnemonic 'foo'");
    expect_error("mov %r0, 1\nmov %r16, 1", "line 2: bad register '%r16'");
    expect_error("add %rx, 1", "line 1: bad register '%rx'");
    expect_error("ldxw %r0, [r1+4]", "line 1: bad register 'r1'");
    expect_error("exit\n# c\n\nja nowhere\nexit", "line 4: undefined label 'nowhere'");
    expect_error("call local missing", "line 1: undefined label 'missing'");
    expect_error("mov %r0, 0x100000000", "line 1: immediate '0x100000000' out of range");
    expect_error("mov %r0, -2147483649", "line 1: immediate '-2147483649' out of range");
    expect_error("lddw %r0, 0x10000000000000000", "line 1: immediate '0x10000000000000000' out of range");
    expect_error("ldxw %r0, [%r1+32768]", "line 1: offset '+32768' out of range");
    expect_error("ja +40000", "line 1: offset '+40000' out of range");
    expect_error("mov %r0, 12z", "line 1: bad immediate '12z'");
    expect_error("add %r0", "line 1: 'add' takes 2 operands, got 1");
    expect_error("exit %r0", "line 1: 'exit' takes 0 operands, got 1");
    expect_error("a:\nb:\na:\nexit", "line 3: duplicate label 'a' (first defined at line 1)");
    expect_error("lock nand [%r1], %r2", "line 1: unknown atomic operation 'nand'");
    expect_error("movsx864 %r0, 5", "line 1: 'movsx864' needs a register source");
    expect_error("movsx3232 %r0, %r1", "line 1: unknown mnemonic 'movsx3232'");
    expect_error("stw %r1, 5", "line 1: bad memory operand '%r1'");
    expect_error("lddw %r0, map_thing 3", "line 1: unknown lddw kind 'map_thing'");
    expect_error("mov %r0,, 1", "line 1: empty operand");
    expect_error("exit\ncall local", "line 2: 'call' needs a target");
    expect_error("call", "line 1: 'call' needs a target");
    expect_error("call far away", "line 1: unknown call mode 'far'");
}

/* "JUMP far", 40000 instructions, "far: exit" */
static char *far_jump(const char *jump, size_t lines)
{
    char *text = malloc(lines * 16 + 64);
    cr_assert_not_null(text);
    char *p = text + sprintf(text, "%s far\n", jump);
    for (size_t i = 0; i < lines; i++)
        p += sprintf(p, "mov %%r0, 0\n");
    sprintf(p, "far:\nexit\n");
    return text;
}

Test(asm_errors, label_jump_out_of_range)
{
    /* a label 40000 instructions away does not fit the 16-bit offset */
    char *text = far_jump("ja", 40000);
    expect_error(text, "line 1: jump to 'far' out of range");
    free(text);
    /* the same distance fits ja32's 32-bit immediate */
    text = far_jump("ja32", 40000);
    struct bpf_insn *insns;
    size_t n;
    cr_assert_eq(bpfg_asm(text, &insns, &n, NULL, 0), 0);
    cr_expect_eq(insns[0].code, 0x06);
    cr_expect_eq(insns[0].imm, 40000);
    free(insns);
    free(text);
}

Test(asm_errors, null_error_buffer)
{
    struct bpf_insn *insns;
    size_t n;
    cr_expect_eq(bpfg_asm("bogus", &insns, &n, NULL, 0), -EINVAL);
    char tiny[8];
    cr_expect_eq(bpfg_asm("bogus", &insns, &n, tiny, sizeof(tiny)), -EINVAL);
    cr_expect_str_eq(tiny, "line 1:");
}

/* ---- disassembler ----------------------------------------------------------- */

Test(disasm, prints_the_assembler_syntax)
{
    static const struct {
        struct bpf_insn insn[2];
        const char *text;
    } cases[] = {
        {{I(0x18, 0, 0, 0, 0x55667788), I(0, 0, 0, 0, 0x11223344)}, "lddw %r0, 0x1122334455667788"},
        {{I(0x18, 1, 2, 0, 3), I(0, 0, 0, 0, 8)}, "lddw %r1, map_value 3+8"},
        {{I(0x18, 1, 1, 0, 3), I(0, 0, 0, 0, 0)}, "lddw %r1, map_fd 3"},
        {{I(0x8d, 2, 0, 0, 0)}, "call %r2"},
        {{I(0x85, 0, 0, 0, 5)}, "call 5"},
        {{I(0x85, 0, 1, 0, -3)}, "call local -3"},
        {{I(0x06, 0, 0, 0, -4)}, "ja32 -4"},
        {{I(0x05, 0, 0, 2, 0)}, "ja +2"},
        {{I(0xc3, 10, 1, -8, BPF_CMPXCHG)}, "lock cmpxchg32 [%r10-8], %r1"},
        {{I(0xdb, 1, 2, 0, BPF_ADD | BPF_FETCH)}, "lock fetch add [%r1+0], %r2"},
        {{I(0xbf, 0, 1, 32, 0)}, "movsx3264 %r0, %r1"},
        {{I(0x91, 0, 10, -1, 0)}, "ldxsb %r0, [%r10-1]"},
        {{I(0x34, 0, 0, 1, -4)}, "sdiv32 %r0, -4"},
        {{I(0xd7, 0, 0, 0, 16)}, "bswap16 %r0"},
        {{I(0xdc, 3, 0, 0, 32)}, "be32 %r3"},
        {{I(0x5e, 1, 2, -1, 0)}, "jne32 %r1, %r2, -1"},
        {{I(0xb4, 0, 0, 0, (int32_t)0x87654321)}, "mov32 %r0, 0x87654321"},
        {{I(0x95, 0, 0, 0, 0)}, "exit"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[128];
        int k = disasm1(cases[i].insn, 2, buf, sizeof(buf));
        cr_expect_eq(k, cases[i].insn[0].code == 0x18 ? 2 : 1, "case %zu", i);
        cr_expect_str_eq(buf, cases[i].text);
    }
}

Test(disasm, rejects_invalid_encodings)
{
    static const struct bpf_insn bad[] = {
        I(0xff, 0, 0, 0, 0),    /* unknown opcode */
        I(0xe7, 0, 0, 0, 0),    /* ALU64 op 0xe0 */
        I(0x07, 0, 3, 0, 1),    /* add imm with src_reg set */
        I(0x0f, 0, 1, 0, 7),    /* add reg with imm set */
        I(0x0f, 0, 1, 2, 0),    /* add with offset set */
        I(0xbf, 0, 1, 24, 0),   /* movsx of 24 bits */
        I(0xbc, 0, 1, 32, 0),   /* movsx3232 */
        I(0xdc, 0, 0, 0, 8),    /* be8 */
        I(0xdf, 0, 0, 0, 16),   /* ALU64 END to_be */
        I(0xdb, 1, 2, 0, 0xe0), /* xchg without fetch */
        I(0xdb, 1, 2, 0, 0x11), /* atomic sub */
        I(0xd3, 1, 2, 0, 0),    /* atomic on a byte */
        I(0x96, 0, 0, 0, 0),    /* exit in JMP32 */
        I(0x85, 0, 3, 0, 0),    /* call with src 3 */
        I(0x18, 0, 0, 0, 0),    /* lddw without its second half */
        I(0x20, 0, 0, 0, 0),    /* legacy ld_abs */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char buf[160];
        int k = bpfg_disasm_insn(bad, i + 1, i, buf, sizeof(buf));
        cr_expect_eq(k, -EINVAL, "case %zu (code 0x%02x) disassembled as '%s'", i, bad[i].code, buf);
        cr_expect(strstr(buf, "invalid instruction") != NULL, "case %zu: '%s'", i, buf);
    }
    char buf[64];
    cr_expect_eq(bpfg_disasm_insn(bad, 1, 1, buf, sizeof(buf)), -EINVAL);
}

Test(disasm, whole_program_listing)
{
    const struct bpf_insn prog[] = {
        I(0x18, 0, 0, 0, 1),
        I(0, 0, 0, 0, 0),
        I(0xff, 0, 0, 0, 0),
        I(0x95, 0, 0, 0, 0),
    };
    char *text = bpfg_disasm(prog, 4);
    cr_assert_not_null(text);
    const char *head = "0: lddw %r0, 1\n2: invalid instruction";
    cr_expect(!strncmp(text, head, strlen(head)), "%s", text);
    cr_expect(strstr(text, "\n3: exit\n") != NULL, "%s", text);
    free(text);
}

/* Every encoding the disassembler accepts must assemble back to itself. */
Test(disasm, sweep_round_trips)
{
    static const uint8_t regs[] = {0, 1, 10, 15};
    static const int16_t offs[] = {0, 1, 8, 16, 32, -3, 32767};
    static const int32_t imms[] = {0,     1,         16,        32,   64,   -1,   4095, 4096,
                                   -4096, INT32_MIN, INT32_MAX, 0x40, 0x41, 0xe1, 0xf1, 0x50};
    size_t accepted = 0;
    for (int code = 0; code < 256; code++)
        for (size_t d = 0; d < sizeof(regs); d++)
            for (size_t s = 0; s < sizeof(regs); s++)
                for (size_t o = 0; o < sizeof(offs) / sizeof(offs[0]); o++)
                    for (size_t m = 0; m < sizeof(imms) / sizeof(imms[0]); m++) {
                        struct bpf_insn in[2] = {I(code, regs[d], regs[s], offs[o], imms[m]),
                                                 I(0, 0, 0, 0, imms[(m + 3) % 16])};
                        char buf[160];
                        int k = bpfg_disasm_insn(in, 2, 0, buf, sizeof(buf));
                        if (k < 0)
                            continue;
                        accepted++;
                        struct bpf_insn *out;
                        size_t n;
                        char err[256];
                        int rc = bpfg_asm(buf, &out, &n, err, sizeof(err));
                        cr_assert_eq(rc, 0, "'%s' does not assemble: %s", buf, err);
                        cr_assert_eq(n, (size_t)k, "'%s'", buf);
                        cr_assert(!memcmp(out, in, n * sizeof(*out)),
                                  "'%s' assembled differently from code 0x%02x dst %u src %u off %d imm %d", buf,
                                  in[0].code, in[0].dst_reg, in[0].src_reg, in[0].off, in[0].imm);
                        free(out);
                    }
    /* every valid opcode shows up with several field combinations */
    cr_expect_gt(accepted, 10000, "only %zu encodings accepted", accepted);
}

/* ---- every conformance vector ------------------------------------------------ */

static char *read_asm_section(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    char *text = NULL, *line = NULL;
    size_t tlen = 0, cap = 0;
    FILE *out = open_memstream(&text, &tlen);
    cr_assert_not_null(out);
    int in_asm = 0;
    while (getline(&line, &cap, f) >= 0) {
        if (!strncmp(line, "--", 2)) {
            char *name = line + 2;
            while (*name == ' ')
                name++;
            in_asm = !strncmp(name, "asm", 3) && (name[3] == '\n' || name[3] == '\0');
            continue;
        }
        if (in_asm)
            fputs(line, out);
    }
    fputc('\n', out);
    free(line);
    fclose(f);
    fclose(out);
    return text;
}

static int is_data(const struct dirent *d)
{
    size_t len = strlen(d->d_name);
    return len > 5 && !strcmp(d->d_name + len - 5, ".data");
}

Test(asm_vectors, round_trip_every_vector)
{
    struct dirent **list;
    int nfiles = scandir(BPFGRAFT_CONFORMANCE_DIR, &list, is_data, alphasort);
    cr_assert_gt(nfiles, 0, "no vectors in %s", BPFGRAFT_CONFORMANCE_DIR);
    for (int f = 0; f < nfiles; f++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", BPFGRAFT_CONFORMANCE_DIR, list[f]->d_name);
        char *text = read_asm_section(path);
        struct bpf_insn *a;
        size_t na;
        char err[256];
        cr_assert_eq(bpfg_asm(text, &a, &na, err, sizeof(err)), 0, "%s: %s", path, err);
        cr_assert_gt(na, 0, "%s: empty program", path);

        /* disassemble instruction by instruction into assembler input */
        char *redo = NULL;
        size_t rlen = 0;
        FILE *out = open_memstream(&redo, &rlen);
        cr_assert_not_null(out);
        for (size_t i = 0; i < na;) {
            char line[160];
            int k = bpfg_disasm_insn(a, na, i, line, sizeof(line));
            cr_assert_gt(k, 0, "%s: insn %zu: %s", path, i, line);
            fprintf(out, "%s\n", line);
            i += (size_t)k;
        }
        fclose(out);

        struct bpf_insn *b;
        size_t nb;
        cr_assert_eq(bpfg_asm(redo, &b, &nb, err, sizeof(err)), 0, "%s: reassembly: %s\n%s", path, err, redo);
        cr_assert_eq(na, nb, "%s", path);
        cr_assert(!memcmp(a, b, na * sizeof(*a)), "%s: round trip differs:\n%s", path, redo);

        /* the listing has one numbered line per instruction (lddw: one) */
        char *listing = bpfg_disasm(a, na);
        cr_assert_not_null(listing);
        cr_expect(!strncmp(listing, "0: ", 3), "%s", listing);
        free(listing);
        free(a);
        free(b);
        free(redo);
        free(text);
        free(list[f]);
    }
    free(list);
}
