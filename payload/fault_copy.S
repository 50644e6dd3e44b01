/* bpfg_fault_copy_raw(dst, src, n): 0, or -EFAULT when bpfg_fault_insn
 * faulted (fault.c's handler moves rip to bpfg_fault_fixup). */
    .text
    .globl bpfg_fault_copy_raw
    .hidden bpfg_fault_copy_raw
    .globl bpfg_fault_insn
    .hidden bpfg_fault_insn
    .globl bpfg_fault_fixup
    .hidden bpfg_fault_fixup
    .type bpfg_fault_copy_raw, @function
    .balign 16
bpfg_fault_copy_raw:
    mov %rdx, %rcx
bpfg_fault_insn:
    rep movsb
    xor %eax, %eax
    ret
bpfg_fault_fixup:
    mov $-14, %rax                      /* -EFAULT */
    ret
    .size bpfg_fault_copy_raw, . - bpfg_fault_copy_raw

    .section .note.GNU-stack,"",@progbits
