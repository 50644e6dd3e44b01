/* Assembler macros, not C: clang-format stays out. */
/* clang-format off */

/* Shared by the entry code (start.S, syscall_entry.S, trap_entry.S): the kernel-layout
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

/* Facts of hooks.c the entry code reads directly (hooks.c asserts them). */
#define T_SLOT_SIZE 800                 /* sizeof(struct bpfg_thread_slot) */
#define T_LISTED 24                     /* offsetof(struct bpfg_thread_slot, listed) */
#define T_HSTACK_READY 2                /* its bit: the slot's handler stack is writable */
#define T_SLOTS_MASK 1023               /* BPFG_MAX_THREADS - 1 */
#define T_HASH 0x9e3779b97f4a7c15       /* thread_hash(): (key * T_HASH) >> 40 */
#define T_KEY_RDFSBASE 1                /* bpfg_key_method values */
#define T_KEY_FS0 2
#define HSTACK_SIZE 0x20000             /* BPFG_HANDLER_STACK_SIZE */
#define HSTACK_STRIDE 0x21000           /* BPFG_HANDLER_STACK_STRIDE */
#define HSTACK_GUARD 0x1000             /* BPFG_HANDLER_STACK_GUARD */

/* The words the entry code keeps on the target's stack (T = rsp after
 * SAVE_SCRATCH): four registers the stack lookup uses, the flags, the word
 * the stub pushed (or the uretprobe's slot) and above it the probed frame.
 * Everything else is saved straight into the pt_regs on the handler stack. */
#define S_RSI 0
#define S_RDX 8
#define S_RCX 16
#define S_RAX 24
#define S_FLAGS 32
#define S_WORD 40       /* hook index in; the address to continue at out */
#define S_SP 48         /* the probed frame's stack pointer */

.macro SAVE_SCRATCH
    pushfq
    push %rax
    push %rcx
    push %rdx
    push %rsi
.endm

/* rsp = T: pops what SAVE_SCRATCH pushed, leaving rsp at S_WORD. pop and
 * lea leave the flags alone. popfq is microcoded and slow; the handler
 * changes only the arithmetic flags and DF (cld), so when DF was clear and
 * the CPU has lahf/sahf in long mode, sahf restores SF ZF AF PF CF and an
 * add that overflows exactly when OF was set restores OF. */
.macro RESTORE_SCRATCH
    pop %rsi
    pop %rdx
    pop %rcx
    cmpb $0, bpfg_entry_lahf(%rip)
    je .Le8_\@
    testb $0x04, 9(%rsp)        /* DF (bit 10) set: the slow way */
    jnz .Le8_\@
    movzbl 8(%rsp), %eax        /* SF ZF AF PF CF, */
    shl $8, %eax                /* in ah for sahf (no ah read-modify-write) */
    testb $0x08, 9(%rsp)        /* OF (bit 11) */
    setnz %al
    add $0x7f, %al              /* OF = (al == 1) */
    sahf
    jmp .Le9_\@
.Le8_\@:  push 8(%rsp)
    popfq
.Le9_\@:  pop %rax
    lea 8(%rsp), %rsp
.endm

/* rsp = T. Switches to the thread's handler stack with a kernel-layout
 * struct pt_regs at rsp (ip and orig_ax left to the caller), rbx = T and
 * rdx = the thread's slot (the handler needs no lookup of its own: a
 * division by the stacks' stride); slot and stack found inline (hooks.c:
 * thread_slot) when the thread has both, else by bpfg_handler_stack. Without one, calls miss(&T[S_WORD])
 * and continues at `none` with rsp = T and every register as at entry but
 * those SAVE_SCRATCH saved. */
.macro SWITCH_STACK none, miss
    movzbl bpfg_key_method(%rip), %eax
    cmp $T_KEY_RDFSBASE, %al
    jne .Le1_\@
    rdfsbase %rcx
    jmp .Le2_\@
.Le1_\@:  cmp $T_KEY_FS0, %al
    jne .Le5_\@
    mov %fs:0, %rcx
.Le2_\@:  test %rcx, %rcx
    jz .Le5_\@
    movabs $T_HASH, %rax
    imul %rcx, %rax
    shr $40, %rax
    and $T_SLOTS_MASK, %eax
    imul $T_SLOT_SIZE, %rax, %rdx
    lea bpfg_threads(%rip), %rsi
    add %rsi, %rdx                      /* the slot, kept for the handler */
    cmp %rcx, (%rdx)                    /* its owner */
    jne .Le5_\@
    testb $T_HSTACK_READY, T_LISTED(%rdx) /* same cache line: no table of stack tops */
    jz .Le5_\@
    imul $HSTACK_STRIDE, %rax, %rax     /* the slot's stack top */
    add hooks_hstacks(%rip), %rax
    add $(HSTACK_GUARD + HSTACK_SIZE), %rax
    lea -1(%rax), %rcx                  /* already on it (nested): below sp */
    sub %rsp, %rcx
    cmp $HSTACK_SIZE, %rcx
    jae .Le6_\@
    mov %rsp, %rax
    and $-16, %rax
    jmp .Le6_\@
.Le5_\@:  push %rdi                           /* the slow path: a C call */
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbx
    lea 48(%rsp), %rdi
    mov %rsp, %rbx
    and $-16, %rsp
    cld
    call bpfg_handler_stack
    test %rax, %rax
    jnz .Le7_\@
    lea 48+S_WORD(%rbx), %rdi
    call \miss
    xor %eax, %eax
.Le7_\@:  mov %rbx, %rsp
    pop %rbx
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    test %rax, %rax
    jz \none
.Le6_\@:  mov %rsp, %rcx
    lea -(PTREGS+8)(%rax), %rsp         /* 16-aligned for the call */
    mov %rbx, RBX(%rsp)
    mov %rcx, %rbx
    mov %r15, R15(%rsp)
    mov %r14, R14(%rsp)
    mov %r13, R13(%rsp)
    mov %r12, R12(%rsp)
    mov %rbp, RBP(%rsp)
    mov %r11, R11(%rsp)
    mov %r10, R10(%rsp)
    mov %r9, R9(%rsp)
    mov %r8, R8(%rsp)
    mov %rdi, RDI(%rsp)
    mov S_RSI(%rbx), %rax
    mov %rax, RSI(%rsp)
    mov S_RDX(%rbx), %rax
    mov %rax, RDX(%rsp)
    mov S_RCX(%rbx), %rax
    mov %rax, RCX(%rsp)
    mov S_RAX(%rbx), %rax
    mov %rax, RAX(%rsp)
    mov S_FLAGS(%rbx), %rax
    mov %rax, EFLAGS(%rsp)
    lea S_SP(%rbx), %rax
    mov %rax, RSP(%rsp)
    movq $0, RIP(%rsp)
    movq $0x33, CS(%rsp)
    movq $0x2b, SS(%rsp)
    cld
.endm

/* On the handler stack after the C call: back to rsp = T with the
 * registers the call may have clobbered reloaded from the pt_regs (r12-r15
 * and rbp are callee-saved), rax rcx rdx rsi and the flags still at T. */
.macro SWITCH_BACK
    mov R11(%rsp), %r11
    mov R10(%rsp), %r10
    mov R9(%rsp), %r9
    mov R8(%rsp), %r8
    mov RDI(%rsp), %rdi
    mov %rbx, %rax
    mov RBX(%rsp), %rbx
    mov %rax, %rsp
.endm

/* A signal handler's entry, name(sig, si, uc): the kernel's signal frame
 * stays where the kernel put it (below the red zone of the interrupted
 * stack); handler(sig, si, uc, on_hstack) runs on the thread's handler
 * stack (on_hstack 1) or, when the thread has none (thread table full, no
 * memory), where it is (on_hstack 0). Used for SIGSYS and SIGTRAP. */
.macro SIGNAL_ENTRY name, handler
    .hidden \handler
    .hidden bpfg_handler_stack
    .globl \name
    .hidden \name
    .type \name, @function
    .balign 16
\name:
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
    jz .Lsig_\@
    mov %rax, %rsp
    mov $1, %ecx
.Lsig_\@:
    mov %r12d, %edi
    mov %r13, %rsi
    mov %r14, %rdx
    call \handler
    mov %rbx, %rsp
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    ret
    .size \name, . - \name
.endm

#endif
