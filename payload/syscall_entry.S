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


/* bpfg_sys_fast_entry: called from a rewritten site's stub (payload_abi.h) with
 * rax = the syscall number, the arguments in rdi, rsi, rdx, r10, r8, r9
 * and the stub's return address on the stack (128 bytes below the
 * target's red zone). The programs run on the thread's handler stack with
 * a kernel-layout pt_regs (ip = site + 7, sp = the target's rsp at the
 * site, as the kernel's would be); the syscall itself runs here, on the
 * target's stack, so that a signal arriving while it blocks is handled
 * where the target expects. Every register but rax (the result), rcx
 * (= site + 7) and r11 (= rflags) is kept, like `syscall` does. The C
 * side is -mgeneral-regs-only: no vector state is touched. */
#define F_DONE 1        /* bpfg_sys_fast_enter: the result is in regs->ax */
#define F_EXIT 2        /* ... and sys_exit programs want the result */
#define F_SLOW 4        /* ... make it at the site's own syscall (the signal path) */

/* On the handler stack (SWITCH_STACK): the syscall's pt_regs fields. */
.macro SYS_REGS
    mov S_RAX(%rbx), %rax
    mov %rax, ORIG_AX(%rsp)
    movq $-38, RAX(%rsp)                /* -ENOSYS, as the kernel has it */
    mov S_WORD(%rbx), %rax              /* return address: stub + 16 */
    mov 24(%rax), %rax                  /* stub + 40: the site */
    add $7, %rax
    mov %rax, RIP(%rsp)
    lea S_SP+128(%rbx), %rax            /* the target's rsp at the site */
    mov %rax, RSP(%rsp)
.endm

    .hidden bpfg_sys_fast_enter
    .hidden bpfg_sys_fast_exit
    .hidden bpfg_sys_fast_miss
    .section .text.hot,"ax",@progbits   /* payload.h: PAYLOAD_HOT */
    .globl bpfg_sys_fast_entry
    .hidden bpfg_sys_fast_entry
    .type bpfg_sys_fast_entry, @function
    .balign 16
bpfg_sys_fast_entry:
    SAVE_SCRATCH
    SWITCH_STACK 1f, bpfg_sys_fast_miss
    SYS_REGS
    mov %rsp, %rdi
    call bpfg_sys_fast_enter
    mov %rax, %r11                      /* F_* (r11 is ours until the end) */
    mov RAX(%rsp), %rcx
    mov %rcx, S_RCX(%rbx)               /* the result, with F_DONE (S_RAX keeps the number) */
    mov R10(%rsp), %r10                 /* SWITCH_BACK but for r11 */
    mov R9(%rsp), %r9
    mov R8(%rsp), %r8
    mov RDI(%rsp), %rdi
    mov %rbx, %rax
    mov RBX(%rsp), %rbx
    mov %rax, %rsp                      /* rsp = T from here on */
    test $F_SLOW, %r11b
    jnz 6f
    test $F_DONE, %r11b
    jnz 2f
3:  mov S_RAX(%rsp), %rax               /* the call, with the target's arguments */
    mov S_RSI(%rsp), %rsi
    mov S_RDX(%rsp), %rdx
    push %r11
    syscall
    pop %r11
    mov %rax, S_RCX(%rsp)
2:  test $F_EXIT, %r11b
    jz 5f
    SWITCH_STACK 5f, bpfg_sys_fast_miss
    SYS_REGS
    mov %rsp, %rdi
    mov S_RCX(%rbx), %rsi
    call bpfg_sys_fast_exit
    SWITCH_BACK
5:  mov S_RCX(%rsp), %rax               /* rax = result, rcx = site + 7, r11 = rflags */
    mov %rax, S_RAX(%rsp)
    mov S_WORD(%rsp), %rax
    mov 24(%rax), %rax
    add $7, %rax
    mov %rax, S_RCX(%rsp)
    mov S_FLAGS(%rsp), %r11
    RESTORE_SCRATCH
    ret                                 /* into the stub, which goes on at site + 7 */
1:  mov S_WORD(%rsp), %rax              /* no handler stack; rax = stub + 16 */
    cmpb $0xb8, -11(%rax)               /* a `mov $nr,%eax` stub: never a slow number */
    jne 6f
    xor %r11d, %r11d                    /* else the call unobserved */
    jmp 3b
6:  mov S_WORD(%rsp), %rax              /* the call at the site's `syscall` (site + 5), */
    mov 24(%rax), %rax                  /* with the target's registers and stack: */
    add $5, %rax                        /* Syscall User Dispatch traps it there */
    mov %rax, S_RCX(%rsp)               /* (syscall clobbers rcx anyway) */
    RESTORE_SCRATCH
    lea 8+128(%rsp), %rsp               /* the return address, the red zone skip */
    jmp *%rcx
    .size bpfg_sys_fast_entry, . - bpfg_sys_fast_entry
    .text

/* bpfg_sigsys_entry(sig, si, uc): our SIGSYS handler (entry.h,
 * SIGNAL_ENTRY). A thread without a handler stack runs
 * bpfg_sigsys_handler where it is: its programs then miss anyway, having
 * no thread slot, and the syscall must still be made. */
    SIGNAL_ENTRY bpfg_sigsys_entry, bpfg_sigsys_handler

    .section .note.GNU-stack,"",@progbits
