/* Instruction builders for tests, in the style of the kernel's filter.h. */
#ifndef BPFGRAFT_TEST_INSN_H
#define BPFGRAFT_TEST_INSN_H

#include "ebpf.h"

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})
#define ALU64_IMM(op, d, i) INSN(BPF_ALU64 | BPF_K | (op), d, 0, 0, i)
#define ALU64_REG(op, d, s) INSN(BPF_ALU64 | BPF_X | (op), d, s, 0, 0)
#define ALU32_IMM(op, d, i) INSN(BPF_ALU | BPF_K | (op), d, 0, 0, i)
#define ALU32_REG(op, d, s) INSN(BPF_ALU | BPF_X | (op), d, s, 0, 0)
#define SDIV64_IMM(d, i) INSN(BPF_ALU64 | BPF_K | BPF_DIV, d, 0, 1, i)
#define SMOD64_IMM(d, i) INSN(BPF_ALU64 | BPF_K | BPF_MOD, d, 0, 1, i)
#define SDIV32_IMM(d, i) INSN(BPF_ALU | BPF_K | BPF_DIV, d, 0, 1, i)
#define SMOD32_IMM(d, i) INSN(BPF_ALU | BPF_K | BPF_MOD, d, 0, 1, i)
#define MOV64_IMM(d, i) ALU64_IMM(BPF_MOV, d, i)
#define MOV64_REG(d, s) ALU64_REG(BPF_MOV, d, s)
#define MOV32_IMM(d, i) ALU32_IMM(BPF_MOV, d, i)
#define LD_IMM64_RAW(d, s, lo, hi) INSN(BPF_LD | BPF_DW | BPF_IMM, d, s, 0, lo), INSN(0, 0, 0, 0, hi)
#define LD_IMM64(d, v) LD_IMM64_RAW(d, 0, (int32_t)(uint32_t)(uint64_t)(v), (int32_t)(uint32_t)((uint64_t)(v) >> 32))
#define LDX(sz, d, s, o) INSN(BPF_LDX | BPF_MEM | (sz), d, s, o, 0)
#define LDXSX(sz, d, s, o) INSN(BPF_LDX | BPF_MEMSX | (sz), d, s, o, 0)
#define STX(sz, d, s, o) INSN(BPF_STX | BPF_MEM | (sz), d, s, o, 0)
#define ST_IMM(sz, d, o, i) INSN(BPF_ST | BPF_MEM | (sz), d, 0, o, i)
#define ATOMIC(sz, op, d, s, o) INSN(BPF_STX | BPF_ATOMIC | (sz), d, s, o, op)
#define JMP_IMM(op, d, i, o) INSN(BPF_JMP | BPF_K | (op), d, 0, o, i)
#define JMP_REG(op, d, s, o) INSN(BPF_JMP | BPF_X | (op), d, s, o, 0)
#define JA(o) INSN(BPF_JMP | BPF_JA, 0, 0, o, 0)
#define CALL_HELPER(id) INSN(BPF_JMP | BPF_CALL, 0, 0, 0, id)
#define CALL_LOCAL(rel) INSN(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_CALL, 0, rel)
#define CALLX(r) INSN(BPF_JMP | BPF_CALL | BPF_X, r, 0, 0, 0)
#define EXIT() INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

#endif
