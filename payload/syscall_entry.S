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
 * target's red zone). Builds a kernel-layout pt_regs (ip = site + 7 and
 * sp = the target's rsp, as the kernel's would be), calls
 * bpfg_sys_fast_handler(regs) and restores every register but rax (the
 * result), rcx (= site + 7) and r11 (= rflags), like `syscall` does. The
 * C side is -mgeneral-regs-only: no vector state is touched. */
#define R_R15 0
#define R_R14 8
#define R_R13 16
#define R_R12 24
#define R_BP 32
#define R_BX 40
#define R_R11 48
#define R_R10 56
#define R_R9 64
#define R_R8 72
#define R_AX 80
#define R_CX 88
#define R_DX 96
#define R_SI 104
#define R_DI 112
#define R_ORIG 120
#define R_IP 128
#define R_CS 136
#define R_FLAGS 144
#define R_SP 152
#define R_SS 160
#define R_SIZE 168

    .hidden bpfg_sys_fast_handler
    .globl bpfg_sys_fast_entry
    .hidden bpfg_sys_fast_entry
    .type bpfg_sys_fast_entry, @function
    .balign 16
bpfg_sys_fast_entry:
    pushfq                              /* flags at R_SIZE(%rsp) after the sub */
    sub $R_SIZE, %rsp
    mov %r15, R_R15(%rsp)
    mov %r14, R_R14(%rsp)
    mov %r13, R_R13(%rsp)
    mov %r12, R_R12(%rsp)
    mov %rbp, R_BP(%rsp)
    mov %rbx, R_BX(%rsp)
    mov %r11, R_R11(%rsp)
    mov %r10, R_R10(%rsp)
    mov %r9, R_R9(%rsp)
    mov %r8, R_R8(%rsp)
    movq $-38, R_AX(%rsp)               /* -ENOSYS, as the kernel has it */
    mov %rcx, R_CX(%rsp)
    mov %rdx, R_DX(%rsp)
    mov %rsi, R_SI(%rsp)
    mov %rdi, R_DI(%rsp)
    mov %rax, R_ORIG(%rsp)
    cld
    mov R_SIZE(%rsp), %rax
    mov %rax, R_FLAGS(%rsp)
    mov R_SIZE+8(%rsp), %rax            /* return address: stub + 16 */
    mov 24(%rax), %rax                  /* stub + 40: the site */
    add $7, %rax
    mov %rax, R_IP(%rsp)
    lea R_SIZE+16+128(%rsp), %rax       /* the target's rsp at the site */
    mov %rax, R_SP(%rsp)
    movq $0x33, R_CS(%rsp)
    movq $0x2b, R_SS(%rsp)
    mov %rsp, %rdi
    mov %rsp, %rbx
    and $-16, %rsp
    call bpfg_sys_fast_handler
    mov %rbx, %rsp
    mov R_R15(%rsp), %r15
    mov R_R14(%rsp), %r14
    mov R_R13(%rsp), %r13
    mov R_R12(%rsp), %r12
    mov R_BP(%rsp), %rbp
    mov R_BX(%rsp), %rbx
    mov R_R10(%rsp), %r10
    mov R_R9(%rsp), %r9
    mov R_R8(%rsp), %r8
    mov R_DX(%rsp), %rdx
    mov R_SI(%rsp), %rsi
    mov R_DI(%rsp), %rdi
    mov R_IP(%rsp), %rcx
    mov R_FLAGS(%rsp), %r11
    add $R_SIZE, %rsp
    popfq
    ret
    .size bpfg_sys_fast_entry, . - bpfg_sys_fast_entry

    .section .note.GNU-stack,"",@progbits
