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
    movzbl 9(%rsp), %eax        /* flags bits 8-15 */
    test $0x04, %al             /* DF (bit 10) set: the slow way */
    jnz .Le8_\@
    and $0x08, %eax             /* OF (bit 11) */
    add $0x78, %al              /* OF = (al == 0x08): 8 + 120 overflows */
    mov 8(%rsp), %ah            /* SF ZF AF PF CF, for sahf */
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
 * thread_slot) when the thread has both, else by bpfg_handler_stack. sys=1
 * (a syscall's entry): ax, cx, ip and sp are left to SYS_REGS, r11 is the
 * flags (as after `syscall`). ret=1 (a uretprobe's return): S_WORD holds
 * the slot index the thread's trampoline named, taken when the slot's
 * owner is the thread (no hash; the key by %fs:0 in glibc processes, whose
 * threads reaching a trampoline had a TCB when they entered:
 * bpfg_ret_key_method), else the lookup as for any entry. Without one,
 * calls miss(&T[S_WORD]) and continues at `none` with rsp = T and every
 * register as at entry but those SAVE_SCRATCH saved. */
.macro SWITCH_STACK none, miss, sys=0, ret=0
    .if \ret
    mov S_WORD(%rsp), %rax              /* the slot index */
    cmp $T_SLOTS_MASK, %rax
    ja .Le0_\@
    imul $T_SLOT_SIZE, %rax, %rdx
    lea bpfg_threads(%rip), %rsi
    add %rsi, %rdx
    movzbl bpfg_ret_key_method(%rip), %ecx
    cmp $T_KEY_FS0, %cl
    jne .Lr1_\@
    mov %fs:0, %rcx
    jmp .Lr2_\@
.Lr1_\@:  cmp $T_KEY_RDFSBASE, %cl
    jne .Le0_\@
    rdfsbase %rcx
.Lr2_\@:  cmp %rcx, (%rdx)                    /* the slot's owner is this thread */
    je .Le3_\@
.Le0_\@:
    .endif
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
.Le3_\@:  testb $T_HSTACK_READY, T_LISTED(%rdx) /* same cache line: no table of stack tops */
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
    mov %r10, R10(%rsp)
    mov %r9, R9(%rsp)
    mov %r8, R8(%rsp)
    mov %rdi, RDI(%rsp)
    mov S_RSI(%rbx), %rax
    mov %rax, RSI(%rsp)
    mov S_RDX(%rbx), %rax
    mov %rax, RDX(%rsp)
    mov S_FLAGS(%rbx), %rax
    mov %rax, EFLAGS(%rsp)
    .if \sys                           /* SYS_REGS stores the rest */
    mov %rax, R11(%rsp)                 /* r11 = rflags, as after `syscall` */
    .else
    mov %r11, R11(%rsp)
    mov S_RCX(%rbx), %rax
    mov %rax, RCX(%rsp)
    mov S_RAX(%rbx), %rax
    mov %rax, RAX(%rsp)
    lea S_SP(%rbx), %rax
    mov %rax, RSP(%rsp)
    movq $0, RIP(%rsp)
    .endif
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

/* A rewritten syscall site's entry (syscall_entry.S: bpfg_sys_fast_entry),
 * called from the site's stub (payload_abi.h section 6) with rax = the
 * syscall number, the arguments in rdi, rsi, rdx, r10, r8, r9 and the
 * stub's return address on the stack (128 bytes below the target's red
 * zone). The programs run on the thread's handler stack with a
 * kernel-layout pt_regs (ip = site + 7, sp = the target's rsp at the
 * site, cx and r11 as `syscall` leaves them); the syscall itself runs
 * here, on the target's stack, so that a signal arriving while it blocks
 * is handled where the target expects. Every register but rax (the
 * result), rcx (= site + 7) and r11 (= rflags) is kept, like `syscall`
 * does. enter(regs, slot) returns F_* (below); exit(regs, result, slot)
 * runs the sys_exit programs; miss(&T[S_WORD]) counts a thread without a
 * handler stack. The C side is -mgeneral-regs-only: no vector state is
 * touched. In a macro so that the bench's native replica
 * (test/bench/bench_syscall_replica.S) runs this very code. */
#define F_DONE 1        /* enter: the result is in regs->ax */
#define F_EXIT 2        /* ... and sys_exit programs want the result */
#define F_SLOW 4        /* ... make it at the site's own syscall (the signal path) */

/* On the handler stack (SWITCH_STACK with sys=1): the syscall's pt_regs
 * fields. */
.macro SYS_REGS
    mov S_RAX(%rbx), %rax
    mov %rax, ORIG_AX(%rsp)
    movq $-38, RAX(%rsp)                /* -ENOSYS, as the kernel has it */
    mov S_WORD(%rbx), %rax              /* return address: stub + 16 */
    mov 24(%rax), %rax                  /* stub + 40: the site */
    add $7, %rax
    mov %rax, RIP(%rsp)
    mov %rax, RCX(%rsp)                 /* rcx = the next ip, as after `syscall` */
    lea S_SP+128(%rbx), %rax            /* the target's rsp at the site */
    mov %rax, RSP(%rsp)
.endm

.macro SYS_FAST_ENTRY enter, exit, miss
    SAVE_SCRATCH
    SWITCH_STACK 1f, \miss, 1
    SYS_REGS
    mov %rsp, %rdi
    mov %rdx, %rsi                      /* the thread's slot */
    call \enter
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
    test $(F_SLOW | F_DONE), %r11b
    jnz 4f
3:  mov S_RAX(%rsp), %rax               /* the call, with the target's arguments */
    mov S_RSI(%rsp), %rsi
    mov S_RDX(%rsp), %rdx
    push %r11
    syscall
    pop %r11
    mov %rax, S_RCX(%rsp)
2:  test $F_EXIT, %r11b
    jnz 7f
5:  mov S_RCX(%rsp), %rax               /* rax = result, rcx = site + 7, r11 = rflags */
    mov %rax, S_RAX(%rsp)
    mov S_WORD(%rsp), %rax
    mov 24(%rax), %rax
    add $7, %rax
    mov %rax, S_RCX(%rsp)
    mov S_FLAGS(%rsp), %r11
    RESTORE_SCRATCH
    ret                                 /* into the stub, which goes on at site + 7 */
4:  test $F_SLOW, %r11b
    jz 2b
    jmp 6f
7:  SWITCH_STACK 5b, \miss, 1
    SYS_REGS
    mov %rsp, %rdi
    mov S_RCX(%rbx), %rsi
    call \exit                          /* rdx: the thread's slot */
    SWITCH_BACK
    jmp 5b
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
