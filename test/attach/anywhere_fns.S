/* Functions a 5-byte jmp cannot safely patch (test_anywhere.py): each is
 * probed where only a short jmp to their padding (a hop) or a trap is
 * safe, and checked for its result. */
    .text

/* int loop_fn(int n): counts to n; its loop label is 2 bytes in. */
    .globl loop_fn
    .type loop_fn, @function
    .balign 16
loop_fn:
    xor %eax, %eax
1:  add $1, %eax
    cmp %edi, %eax
    jl 1b
    ret
    .size loop_fn, . - loop_fn

/* int three_fn(void): 0, in 3 bytes. */
    .globl three_fn
    .type three_fn, @function
    .balign 16
three_fn:
    xor %eax, %eax
    ret
    .size three_fn, . - three_fn

/* int off_fn(int n): as loop_fn; probed at off_fn+2, the branch target. */
    .globl off_fn
    .type off_fn, @function
    .balign 16
off_fn:
    xor %eax, %eax
1:  add $1, %eax
    cmp %edi, %eax
    jl 1b
    ret
    .size off_fn, . - off_fn

/* int raw_fn(int a, int b): a + b + 1; probed by raw address at +2. */
    .globl raw_fn
    .type raw_fn, @function
    .balign 16
raw_fn:
    mov %edi, %eax
    add %esi, %eax
    add $1, %eax
    ret
    .size raw_fn, . - raw_fn

/* int jt_fn(int x): x + 3, one increment at +0, +2 and +4. */
    .globl jt_fn
    .type jt_fn, @function
    .balign 16
jt_fn:
    inc %edi
    inc %edi
    inc %edi
    mov %edi, %eax
    ret
    .size jt_fn, . - jt_fn

/* int jt_dispatch(int x, long k): a jump table into jt_fn+2 (k = 0, x + 2)
 * or jt_fn+4 (k = 1, x + 1): targets inside jt_fn's first 5 bytes. */
    .globl jt_dispatch
    .type jt_dispatch, @function
    .balign 16
jt_dispatch:
    lea .Ljt_table(%rip), %rdx
    movslq (%rdx,%rsi,4), %rax
    add %rdx, %rax
    jmp *%rax
    .size jt_dispatch, . - jt_dispatch

/* int two_fn(int x): x, through push %rbx (one byte) and mov: a short
 * jmp displaces both. */
    .globl two_fn
    .type two_fn, @function
    .balign 16
two_fn:
    push %rbx
    mov %edi, %eax
    pop %rbx
    ret
    .size two_fn, . - two_fn

/* int edge_fn(int n): 0 for n >= 1; its loop label is 1 byte in, inside
 * the bytes a short jmp would cover: only a trap can go there. */
    .globl edge_fn
    .type edge_fn, @function
    .balign 16
edge_fn:
    push %rbx
1:  sub $1, %edi
    jg 1b
    mov %edi, %eax
    pop %rbx
    ret
    .size edge_fn, . - edge_fn

/* int tight_fn(void): 0, in 3 bytes between two functions with no
 * padding on either side: no slot for a short jmp, so a trap. */
    .balign 16
    .globl tight_prev
    .type tight_prev, @function
tight_prev:
    ret
    .size tight_prev, . - tight_prev
    .globl tight_fn
    .type tight_fn, @function
tight_fn:
    xor %eax, %eax
    ret
    .size tight_fn, . - tight_fn
    .globl tight_next
    .type tight_next, @function
tight_next:
    ret
    .size tight_next, . - tight_next

/* edi and esi into the red zone, as a leaf may keep them */
.macro ARGS_TO_RED_ZONE
    mov %edi, -8(%rsp)
    mov %esi, -16(%rsp)
.endm

/* int redzone_fn(int a, int b): a + b through the red zone of a leaf;
 * probed at +8, where a 5-byte jmp is safe but its stub must not push
 * onto the live red zone. */
    .globl redzone_fn
    .type redzone_fn, @function
    .balign 16
redzone_fn:
    ARGS_TO_RED_ZONE
    mov -8(%rsp), %eax
    add -16(%rsp), %eax
    ret
    .size redzone_fn, . - redzone_fn

/* int redhop_fn(int a, int n): a * n (n >= 1) through the red zone;
 * probed at +8, 2 bytes before a loop label: a short jmp inside a leaf. */
    .globl redhop_fn
    .type redhop_fn, @function
    .balign 16
redhop_fn:
    ARGS_TO_RED_ZONE
    xor %eax, %eax
1:  add -8(%rsp), %eax
    decl -16(%rsp)
    jg 1b
    ret
    .size redhop_fn, . - redhop_fn

/* int inner_fn(int n): 1 for n >= 2; its loop label is 2 bytes in and it
 * has no padding around it, but 8 bytes of nops after its ret that no
 * code reaches: a short jmp's slot inside the function. */
    .balign 16
    .globl inner_prev
    .type inner_prev, @function
inner_prev:
    ret
    .size inner_prev, . - inner_prev
    .globl inner_fn
    .type inner_fn, @function
inner_fn:
    xor %eax, %eax
1:  sub $1, %edi
    jg 2f
    ret
    .fill 8, 1, 0x90
2:  mov $1, %eax
    jmp 1b
    .size inner_fn, . - inner_fn
    .globl inner_next
    .type inner_next, @function
inner_next:
    ret
    .size inner_next, . - inner_next

/* int back_fn(void): 0, in 3 bytes with padding only before it: a short
 * jmp backwards. */
    .balign 16
    .globl back_fn
    .type back_fn, @function
back_fn:
    xor %eax, %eax
    ret
    .size back_fn, . - back_fn
    .globl back_next
    .type back_next, @function
back_next:
    ret
    .size back_next, . - back_next

    .section .rodata
    .balign 4
.Ljt_table:
    .long jt_fn + 2 - .Ljt_table
    .long jt_fn + 4 - .Ljt_table

    .section .note.GNU-stack,"",@progbits
