/* Code that must run from the payload's text (the exempt region of
 * Syscall User Dispatch) on behalf of a target thread, after the SIGSYS
 * handler has returned to it with the thread's own registers:
 *
 *  - bpfg_sys_restorer: our handler's sa_restorer (rt_sigreturn).
 *  - bpfg_sys_sigreturn: the target's own rt_sigreturn, replayed with its
 *    stack pointer untouched so the kernel finds the right frame.
 *  - clone stubs: clone/clone3 with CLONE_VM or a new stack, and vfork,
 *    cannot run inside the handler (the child would return into a frame
 *    on a stack it does not have, or a vfork child would overwrite the
 *    parent's frame). The handler returns into a stub instead, with rax =
 *    the syscall number: the stub makes the syscall and jumps to the
 *    site's return address, kept in bpfg_sys_clone_ret[i] (one slot per
 *    call site, never reused). A thread stub's child first turns dispatch
 *    on for itself (it is not inherited), saving the argument registers on
 *    its new stack, so it never runs target code unhooked.
 */
#include "entry.h"

#define STUBS 32
#define STUB_SIZE 128

    .hidden bpfg_sys_exempt_base
    .hidden bpfg_sys_exempt_len
    .hidden bpfg_sys_selector
    .hidden bpfg_sys_clone_ret

    .text

    .globl bpfg_sys_restorer
    .hidden bpfg_sys_restorer
    .type bpfg_sys_restorer, @function
    .balign 16
bpfg_sys_restorer:
    mov $15, %eax              /* SYS_rt_sigreturn */
    syscall
    ud2
    .size bpfg_sys_restorer, . - bpfg_sys_restorer

    .globl bpfg_sys_sigreturn
    .hidden bpfg_sys_sigreturn
    .type bpfg_sys_sigreturn, @function
    .balign 16
bpfg_sys_sigreturn:
    mov $15, %eax
    syscall
    ud2
    .size bpfg_sys_sigreturn, . - bpfg_sys_sigreturn

.macro CLONE_STUB i, thread
    .balign STUB_SIZE
    syscall
    test %rax, %rax
    jnz 1f
    .if \thread
    push %rdi
    push %rsi
    push %rdx
    push %r10
    push %r8
    push %r9
    mov $157, %eax             /* SYS_prctl */
    mov $59, %edi              /* PR_SET_SYSCALL_USER_DISPATCH */
    mov $1, %esi               /* PR_SYS_DISPATCH_ON */
    mov bpfg_sys_exempt_base(%rip), %rdx
    mov bpfg_sys_exempt_len(%rip), %r10
    lea bpfg_sys_selector(%rip), %r8
    syscall
    pop %r9
    pop %r8
    pop %r10
    pop %rdx
    pop %rsi
    pop %rdi
    xor %eax, %eax
    .endif
1:  jmp *bpfg_sys_clone_ret+8*(\i + (1 - \thread) * STUBS)(%rip)
.endm

    .globl bpfg_sys_clone_stubs
    .hidden bpfg_sys_clone_stubs
    .balign STUB_SIZE
/* STUBS thread stubs (child enables dispatch), then STUBS plain ones */
bpfg_sys_clone_stubs:
    .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    CLONE_STUB \i, 1
    .endr
    .irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    CLONE_STUB \i, 0
    .endr
    .balign STUB_SIZE
    .globl bpfg_sys_clone_stubs_end
    .hidden bpfg_sys_clone_stubs_end
bpfg_sys_clone_stubs_end:


/* bpfg_sys_fast_entry: entry.h's SYS_FAST_ENTRY with this file's
 * handlers (the bench's native replica runs the same macro). */
    .hidden bpfg_sys_fast_enter
    .hidden bpfg_sys_fast_exit
    .hidden bpfg_sys_fast_miss
    .section .text.hot,"ax",@progbits   /* payload.h: PAYLOAD_HOT */
    .globl bpfg_sys_fast_entry
    .hidden bpfg_sys_fast_entry
    .type bpfg_sys_fast_entry, @function
    .balign 16
bpfg_sys_fast_entry:
    SYS_FAST_ENTRY bpfg_sys_fast_enter, bpfg_sys_fast_exit, bpfg_sys_fast_miss
    .size bpfg_sys_fast_entry, . - bpfg_sys_fast_entry
    .text

/* bpfg_sigsys_entry(sig, si, uc): our SIGSYS handler (entry.h,
 * SIGNAL_ENTRY). A thread without a handler stack runs
 * bpfg_sigsys_handler where it is: its programs then miss anyway, having
 * no thread slot, and the syscall must still be made. */
    SIGNAL_ENTRY bpfg_sigsys_entry, bpfg_sigsys_handler

    .section .note.GNU-stack,"",@progbits
