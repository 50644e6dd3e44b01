/* eBPF text assembler and disassembler.
 *
 * The syntax is the one of the bpf_conformance vectors and uBPF:
 *   mov %r0, 1 / add32 %r1, %r2 / ldxw %r0, [%r1+4] / stdw [%r10-8], 5
 *   lddw %r0, 0x1122334455667788 / ja +2 / jeq %r1, 3, label / call 5
 *   call local func / call %r2 / lock fetch add [%r1+0], %r2 / exit ...
 * Labels ("name:") may be jump and local-call targets; '#' starts a comment.
 */
#ifndef BPFGRAFT_ASM_H
#define BPFGRAFT_ASM_H

#include <stddef.h>

#include "ebpf.h"

/* Assembles text into a malloc'd instruction array (*insns, *n). Returns 0,
 * or a negative errno with a message "line N: ..." in errbuf. */
int bpfg_asm(const char *text, struct bpf_insn **insns, size_t *n, char *errbuf, size_t errlen);

/* Disassembles the instruction at insns[i] (reading insns[i+1] for lddw)
 * into buf. Returns the number of instructions consumed (1 or 2), or a
 * negative errno for an unknown opcode (buf then says so). */
int bpfg_disasm_insn(const struct bpf_insn *insns, size_t n, size_t i, char *buf, size_t buflen);

/* Disassembles a whole program, one "index: text" line each, into a
 * malloc'd string. Returns NULL and sets errno on allocation failure. */
char *bpfg_disasm(const struct bpf_insn *insns, size_t n);

#endif
