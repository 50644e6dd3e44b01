/* measure_depth(fn, pattern): fills the 16 KiB below the stack pointer
 * with pattern, calls fn(1) and returns how many bytes below the sp at
 * the call were written (8 without a probe: the return address). No C
 * code runs between the fill and the scan. */
#define AREA 16384
    .text
    .globl measure_depth
    .type measure_depth, @function
measure_depth:
    push %rbx
    push %r12
    push %r13
    mov %rdi, %rbx
    mov %esi, %eax
    lea -AREA(%rsp), %rdi
    mov $AREA, %ecx
    cld
    rep stosb
    mov %rsp, %r12
    mov %al, %r13b
    mov $1, %edi
    call *%rbx
    lea -AREA(%r12), %rdi
    xor %eax, %eax
1:  cmpb %r13b, (%rdi,%rax)
    jne 2f
    inc %rax
    cmp $AREA, %rax
    jb 1b
2:  mov $AREA, %rdx
    sub %rax, %rdx
    mov %rdx, %rax
    pop %r13
    pop %r12
    pop %rbx
    ret
    .size measure_depth, . - measure_depth

/* A function a uprobe can sit on: a 5-byte first instruction, then ret. */
    .globl depth_probed
    .type depth_probed, @function
depth_probed:
    mov $0x1234, %eax
    ret
    .size depth_probed, . - depth_probed

    .section .note.GNU-stack,"",@progbits
