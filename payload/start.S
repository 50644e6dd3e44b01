/* Entry points the injector and the hook stubs jump to. Layout of the
 * pt_regs frame built here: struct bpfg_pt_regs in payload_abi.h (the kernel's). */

#define R15 0
#define R14 8
#define R13 16
#define R12 24
#define RBP 32
#define RBX 40
#define R11 48
#define R10 56
#define R9 64
#define R8 72
#define RAX 80
#define RCX 88
#define RDX 96
#define RSI 104
#define RDI 112
#define ORIG_AX 120
#define RIP 128
#define CS 136
#define EFLAGS 144
#define RSP 152
#define SS 160
#define PTREGS 168

.macro SAVE_GPRS
    mov %r15, R15(%rsp)
    mov %r14, R14(%rsp)
    mov %r13, R13(%rsp)
    mov %r12, R12(%rsp)
    mov %rbp, RBP(%rsp)
    mov %rbx, RBX(%rsp)
    mov %r11, R11(%rsp)
    mov %r10, R10(%rsp)
    mov %r9, R9(%rsp)
    mov %r8, R8(%rsp)
    mov %rax, RAX(%rsp)
    mov %rcx, RCX(%rsp)
    mov %rdx, RDX(%rsp)
    mov %rsi, RSI(%rsp)
    mov %rdi, RDI(%rsp)
.endm

/* mov only: the flags stay as the handler left them until popfq */
.macro RESTORE_GPRS
    mov R15(%rsp), %r15
    mov R14(%rsp), %r14
    mov R13(%rsp), %r13
    mov R12(%rsp), %r12
    mov RBP(%rsp), %rbp
    mov RBX(%rsp), %rbx
    mov R11(%rsp), %r11
    mov R10(%rsp), %r10
    mov R9(%rsp), %r9
    mov R8(%rsp), %r8
    mov RAX(%rsp), %rax
    mov RCX(%rsp), %rcx
    mov RDX(%rsp), %rdx
    mov RSI(%rsp), %rsi
    mov RDI(%rsp), %rdi
.endm

/* Puts back the flags pushed at PTREGS(%rsp) and then rax (the other
 * registers are restored already). popfq is microcoded and slow; the
 * handler changes only the arithmetic flags and DF (cld), so when DF was
 * clear and the CPU has lahf/sahf in long mode, sahf restores SF ZF AF PF
 * CF and an add that overflows exactly when OF was set restores OF. */
.macro RESTORE_FLAGS_RAX
    cmpb $0, rt_lahf(%rip)
    je 8f
    movzwl PTREGS(%rsp), %eax
    test $0x04, %ah             /* DF (bit 10) set: the slow way */
    jnz 8f
    shr $3, %ah                 /* OF: bit 11 -> bit 0 */
    and $1, %ah
    xchg %al, %ah               /* al = OF, ah = SF ZF AF PF CF */
    add $0x7f, %al              /* OF = (al == 1) */
    sahf
    mov RAX(%rsp), %rax
    jmp 9f
8:  mov RAX(%rsp), %rax
    push PTREGS(%rsp)
    popfq
9:
.endm

    .text

/* rax = SYS_clone, rdi = flags, rsi = child stack, r13 = params.
 * Parent: int3 (the injector takes the thread back). Child: runs
 * bpfg_payload_main(params) and exits the thread if it ever returns. */
    .globl bpfg_payload_start
    .type bpfg_payload_start, @function
    .balign 16
bpfg_payload_start:
    syscall
    test %rax, %rax
    jz 2f
1:  int3
    jmp 1b
2:  xor %ebp, %ebp
    and $-16, %rsp
    mov %r13, %rdi
    call bpfg_payload_main
3:  mov $60, %eax          /* SYS_exit: this thread only */
    xor %edi, %edi
    syscall
    jmp 3b
    .size bpfg_payload_start, . - bpfg_payload_start

/* From a stub: [rsp] = hook index, [rsp+8] = the function's return address.
 * Frame (R = rsp after pushfq): [R] flags, [R+8] index, later the resume
 * address written by the handler, [R+16] return address = the sp the
 * function saw. The pt_regs go right below R. */
    .globl bpfg_uprobe_entry
    .type bpfg_uprobe_entry, @function
    .balign 16
bpfg_uprobe_entry:
    pushfq
    lea -PTREGS(%rsp), %rsp
    SAVE_GPRS
    mov PTREGS+8(%rsp), %rax
    mov %rax, ORIG_AX(%rsp)
    mov PTREGS(%rsp), %rax
    mov %rax, EFLAGS(%rsp)
    lea PTREGS+16(%rsp), %rax
    mov %rax, RSP(%rsp)
    movq $0, RIP(%rsp)
    movq $0x33, CS(%rsp)
    movq $0x2b, SS(%rsp)
    mov %rsp, %rbx
    and $-16, %rsp
    cld
    mov %rbx, %rdi
    call bpfg_uprobe_handler
    mov %rbx, %rsp
    test %rax, %rax
    jnz 1f
    RESTORE_GPRS
    RESTORE_FLAGS_RAX
    /* To the resume address with the function's sp. A jmp, not a ret: a
     * ret to an address no call pushed mispredicts, and so would the
     * function's own ret after it (the return stack is off by one). The
     * word read sits in the red zone, which no signal frame overwrites. */
    lea PTREGS+16(%rsp), %rsp
    jmp *-8(%rsp)
1:  RESTORE_GPRS
    RESTORE_FLAGS_RAX       /* rax: the override value */
    lea PTREGS+16(%rsp), %rsp
    ret                     /* to the caller: the function is skipped */
    .size bpfg_uprobe_entry, . - bpfg_uprobe_entry

/* A uretprobe'd function returned here (its return address was replaced).
 * [R+8] receives the original return address from the handler. */
    .globl bpfg_uretprobe_return
    .type bpfg_uretprobe_return, @function
    .balign 16
bpfg_uretprobe_return:
    push $0
    pushfq
    lea -PTREGS(%rsp), %rsp
    SAVE_GPRS
    movq $-1, ORIG_AX(%rsp)
    mov PTREGS(%rsp), %rax
    mov %rax, EFLAGS(%rsp)
    lea PTREGS+16(%rsp), %rax
    mov %rax, RSP(%rsp)
    movq $0, RIP(%rsp)
    movq $0x33, CS(%rsp)
    movq $0x2b, SS(%rsp)
    mov %rsp, %rbx
    and $-16, %rsp
    cld
    mov %rbx, %rdi
    call bpfg_uretprobe_handler
    mov %rbx, %rsp
    mov %rax, PTREGS+8(%rsp)
    RESTORE_GPRS
    RESTORE_FLAGS_RAX
    lea PTREGS+16(%rsp), %rsp   /* the caller's sp, as after its ret */
    jmp *-8(%rsp)           /* not ret: the return stack holds no entry for it */
    .size bpfg_uretprobe_return, . - bpfg_uretprobe_return

    .section .note.GNU-stack,"",@progbits
