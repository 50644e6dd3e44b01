/* crossing_add(a, b) = a + b, placed so that the 5-byte jmp over its
 * first instructions straddles a page boundary (test_restart.py, part
 * patching): its entry is 3 bytes before the end of a page. */
    .text
    .balign 4096
    .skip 4093, 0xcc
    .globl crossing_add
    .type crossing_add, @function
crossing_add:
    mov %rdi, %rax
    add %rsi, %rax
    ret
    .size crossing_add, . - crossing_add

    .section .note.GNU-stack, "", @progbits
