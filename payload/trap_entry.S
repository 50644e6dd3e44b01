/* bpfg_trap_entry(sig, si, uc): the SIGTRAP handler of trap probes
 * (trap.c). The kernel's signal frame is where the kernel put it (below
 * the red zone of the interrupted stack); bpfg_trap_handler runs on the
 * thread's handler stack, its fourth argument saying whether it got one. */

    .text
    .hidden bpfg_trap_handler
    .hidden bpfg_handler_stack
    .globl bpfg_trap_entry
    .hidden bpfg_trap_entry
    .type bpfg_trap_entry, @function
    .balign 16
bpfg_trap_entry:
    push %rbx
    push %r12
    push %r13
    push %r14
    mov %edi, %r12d
    mov %rsi, %r13
    mov %rdx, %r14
    mov %rsp, %rbx
    and $-16, %rsp
    mov %rbx, %rdi
    cld
    call bpfg_handler_stack
    xor %ecx, %ecx
    test %rax, %rax
    jz 1f
    mov %rax, %rsp
    mov $1, %ecx
1:  mov %r12d, %edi
    mov %r13, %rsi
    mov %r14, %rdx
    call bpfg_trap_handler
    mov %rbx, %rsp
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    ret
    .size bpfg_trap_entry, . - bpfg_trap_entry

    .section .note.GNU-stack,"",@progbits
