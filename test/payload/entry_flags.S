/* The entry code's save and restore of the flags (payload/entry.h) in
 * isolation: uint64_t entry_flags_roundtrip(uint64_t flags) sets flags,
 * runs SAVE_SCRATCH, clobbers every arithmetic flag, runs RESTORE_SCRATCH
 * and returns the flags it left. */
#include "entry.h"

    .text
    .globl entry_flags_roundtrip
    .type entry_flags_roundtrip, @function
entry_flags_roundtrip:
    push %rdi
    popfq
    push $0                     /* the stub's word (S_WORD) */
    SAVE_SCRATCH
    xor %eax, %eax              /* ZF PF set, CF SF OF AF clear */
    cmp $1, %eax                /* CF SF AF set, ZF clear */
    RESTORE_SCRATCH             /* rsp back at the stub's word */
    pushfq
    pop %rax
    lea 8(%rsp), %rsp
    cld
    ret
    .size entry_flags_roundtrip, . - entry_flags_roundtrip

    .data
    .globl bpfg_entry_lahf      /* as hooks.c: lahf/sahf in long mode */
bpfg_entry_lahf: .byte 1

    .section .note.GNU-stack,"",@progbits
