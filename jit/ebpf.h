/* eBPF instruction set definitions (RFC 9669 plus clang -mcpu=v4).
 *
 * Builds on <linux/bpf.h> and adds what the Debian 12 kernel headers lack
 * (the v4 additions: sign-extending loads and moves, sdiv/smod, bswap, ja32).
 */
#ifndef BPFGRAFT_EBPF_H
#define BPFGRAFT_EBPF_H

#include <linux/bpf.h>
#include <stdint.h>

#define EBPF_INSN_SIZE 8
#define EBPF_NREGS 11         /* r0..r10 */
#define EBPF_STACK_SIZE 512   /* per call frame */
#define EBPF_MAX_CALL_DEPTH 8 /* frames, including the main program */

/* v4 encodings missing from older headers. */
#ifndef BPF_MEMSX
#define BPF_MEMSX 0x80 /* LDX mode: sign-extending load */
#endif
/* sdiv/smod: BPF_DIV/BPF_MOD with offset 1. movsx: BPF_MOV with offset 8/16/32.
 * bswap: BPF_ALU64 | BPF_END | BPF_TO_LE. ja32 (gotol): BPF_JMP32 | BPF_JA,
 * target in imm. callx: BPF_JMP | BPF_CALL | BPF_X, register in dst_reg. */
#define EBPF_ALU_BSWAP (BPF_ALU64 | BPF_END | BPF_TO_LE)

static inline uint8_t ebpf_class(uint8_t op)
{
    return op & 0x07;
}

#endif
