/* Native replicas of a jmp hook's path built from the payload's own entry
 * code (payload/entry.h), run in the bench process on a one-thread table
 * of its own (bench_uprobe.c: replica_setup), one piece more in each:
 *   replica_switch: the site's jmp, the stub, SAVE_SCRATCH, the thread's
 *     slot by %fs:0, the switch to its handler stack with the pt_regs
 *     built there, SWITCH_BACK, RESTORE_SCRATCH, the resume code;
 *   replica_call: the same calling an empty C-ABI handler as the entry
 *     calls bpfg_uprobe_hit (replica_handler_nop: stores the resume);
 *   replica_prog: the handler calls an empty program through a pointer,
 *     as a run calls JIT code (replica_handler_prog, bench_uprobe.c);
 *   replica_ret: a function whose return address is swapped for a
 *     trampoline that, as the payload's per-thread-slot ones, leaves the
 *     thread's slot index on the stack (push; jmp *) for the entry code of
 *     a return (SWITCH_STACK ret=1: the slot from it, its owner checked),
 *     which continues at the original: a uretprobe's return without its
 *     work.
 * Each site is called as long f(long x) and returns x + 1. */
#include "entry.h"

/* site, its stub (push $7; jmp *entry) and resume code, as the server
 * generates them (abi/payload_abi.h) */
.macro SITE name
    .globl \name
    .type \name, @function
\name:
    jmp \name\()_stub
\name\()_after:
    ret
\name\()_stub:
    push $7
    jmp *\name\()_entry_ptr(%rip)
    .globl \name\()_resume
\name\()_resume:
    mov %rdi, %rax
    add $1, %rax
    jmp *\name\()_back_ptr(%rip)
    .section .data.rel.local,"aw"
    .balign 8
\name\()_entry_ptr: .quad \name\()_entry
\name\()_back_ptr: .quad \name\()_after
    .text
.endm

/* back on the target's stack (rsp = T): to the address at S_WORD */
.macro LEAVE
    RESTORE_SCRATCH
    lea 8(%rsp), %rsp
    jmp *-8(%rsp)
.endm

    .text
    SITE replica_switch
    .balign 16
replica_switch_entry:
    SAVE_SCRATCH
    SWITCH_STACK 2f, replica_miss
    SWITCH_BACK
2:  lea replica_switch_resume(%rip), %rcx
    mov %rcx, S_WORD(%rsp)
    LEAVE

/* the entry code calling handler(regs, &S_WORD, word, slot) */
.macro CALL_ENTRY name, handler
    SITE \name
    .balign 16
\name\()_entry:
    SAVE_SCRATCH
    SWITCH_STACK 2f, replica_miss
    mov %rdx, %rcx
    mov S_WORD(%rbx), %rdx
    mov %rdx, ORIG_AX(%rsp)
    mov %rsp, %rdi
    lea S_WORD(%rbx), %rsi
    call \handler
    SWITCH_BACK
2:  LEAVE
.endm

    CALL_ENTRY replica_call, replica_handler_nop
    CALL_ENTRY replica_prog, replica_handler_prog

    .globl replica_handler_nop
    .balign 16
replica_handler_nop:
    lea replica_call_resume(%rip), %rax
    mov %rax, (%rsi)
    xor %eax, %eax
    ret

/* the empty LLVM program's code */
    .globl replica_empty_prog
    .balign 16
replica_empty_prog:
    xor %eax, %eax
    xor %edx, %edx
    ret

    .globl replica_ret
    .type replica_ret, @function
    .balign 16
replica_ret:
    mov (%rsp), %rax
    mov %rax, replica_saved_ret(%rip)
    lea replica_tramp(%rip), %rax
    mov %rax, (%rsp)
    mov %rdi, %rax
    add $1, %rax
    ret
replica_tramp:
    push replica_slot_index(%rip)   /* the payload's: movq $slot,-8(%rsp), then lea -8(%rsp),%rsp */
    jmp *replica_ret_entry_ptr(%rip)
    .balign 16
replica_ret_entry:
    SAVE_SCRATCH
    SWITCH_STACK 2f, replica_miss, 0, 1
    mov replica_saved_ret(%rip), %rcx
    mov %rcx, S_WORD(%rbx)
    SWITCH_BACK
2:  LEAVE

    .section .data.rel.local,"aw"
    .balign 8
replica_ret_entry_ptr: .quad replica_ret_entry
replica_saved_ret: .quad 0

    .section .note.GNU-stack,"",@progbits
