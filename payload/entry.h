/* Shared by the entry code (start.S, syscall_entry.S): the kernel-layout
 * pt_regs offsets (struct bpfg_pt_regs in payload_abi.h) and the switch from the
 * target's stack to the thread's handler stack (payload/README.md, "Stack
 * budget"). Assembler only. */
#ifndef BPFGRAFT_PAYLOAD_ENTRY_H
#define BPFGRAFT_PAYLOAD_ENTRY_H

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
#define FLAGS EFLAGS
#define RSP 152
#define SS 160
#define PTREGS 168

/* The words the entry code keeps on the target's stack (T = rsp after
 * SAVE_SCRATCH): the registers a C call may clobber, the flags, the word
 * the stub pushed (or the uretprobe's slot) and above it the probed
 * frame. Everything else lives on the thread's handler stack. */
#define S_RBX 0
#define S_R11 8
#define S_R10 16
#define S_R9 24
#define S_R8 32
#define S_RDI 40
#define S_RSI 48
#define S_RDX 56
#define S_RCX 64
#define S_RAX 72
#define S_FLAGS 80
#define S_WORD 88       /* hook index in; the address to continue at out */
#define S_SP 96         /* the probed frame's stack pointer */

.macro SAVE_SCRATCH
    pushfq
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbx
.endm

/* rsp = T: pops what SAVE_SCRATCH pushed, leaving rsp at S_WORD. pop and
 * lea leave the flags alone. popfq is microcoded and slow; the handler
 * changes only the arithmetic flags and DF (cld), so when DF was clear and
 * the CPU has lahf/sahf in long mode, sahf restores SF ZF AF PF CF and an
 * add that overflows exactly when OF was set restores OF. */
.macro RESTORE_SCRATCH
    pop %rbx
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    cmpb $0, rt_lahf(%rip)
    je 8f
    movzwl 8(%rsp), %eax
    test $0x04, %ah             /* DF (bit 10) set: the slow way */
    jnz 8f
    shr $3, %ah                 /* OF: bit 11 -> bit 0 */
    and $1, %ah
    xchg %al, %ah               /* al = OF, ah = SF ZF AF PF CF */
    add $0x7f, %al              /* OF = (al == 1) */
    sahf
    jmp 9f
8:  push 8(%rsp)
    popfq
9:  pop %rax
    lea 8(%rsp), %rsp
.endm

/* rbx = T, rsp 16-aligned. Asks for the thread's handler stack; at `none`
 * if it has none, else on it with a kernel-layout struct pt_regs at rsp
 * (ip and orig_ax left to the caller). */
.macro SWITCH_STACK none
    cld
    mov %rbx, %rdi
    call bpfg_handler_stack
    test %rax, %rax
    jz \none
    lea -(PTREGS+8)(%rax), %rsp     /* 16-aligned again for the call */
    mov %r15, R15(%rsp)
    mov %r14, R14(%rsp)
    mov %r13, R13(%rsp)
    mov %r12, R12(%rsp)
    mov %rbp, RBP(%rsp)
    mov S_RBX(%rbx), %rax
    mov %rax, RBX(%rsp)
    mov S_R11(%rbx), %rax
    mov %rax, R11(%rsp)
    mov S_R10(%rbx), %rax
    mov %rax, R10(%rsp)
    mov S_R9(%rbx), %rax
    mov %rax, R9(%rsp)
    mov S_R8(%rbx), %rax
    mov %rax, R8(%rsp)
    mov S_RDI(%rbx), %rax
    mov %rax, RDI(%rsp)
    mov S_RSI(%rbx), %rax
    mov %rax, RSI(%rsp)
    mov S_RDX(%rbx), %rax
    mov %rax, RDX(%rsp)
    mov S_RCX(%rbx), %rax
    mov %rax, RCX(%rsp)
    mov S_RAX(%rbx), %rax
    mov %rax, RAX(%rsp)
    mov S_FLAGS(%rbx), %rax
    mov %rax, FLAGS(%rsp)
    lea S_SP(%rbx), %rax
    mov %rax, RSP(%rsp)
    movq $0, RIP(%rsp)
    movq $0x33, CS(%rsp)
    movq $0x2b, SS(%rsp)
.endm

#endif
