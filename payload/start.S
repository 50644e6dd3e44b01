/* Entry points the injector and the hook stubs jump to. Layout of the
 * pt_regs frame built here: struct bpfg_pt_regs in payload_abi.h (the kernel's). */

#include "entry.h"

    .text

/* rax = SYS_clone, rdi = flags, rsi = child stack, r13 = params, r12 =
 * the injector's rescue path. Parent: the injector takes the thread back
 * at the clone's syscall exit; should it have died, the thread jumps to
 * the rescue path, which puts it back as it was (injector/remote.c).
 * Child: runs bpfg_payload_main(params) and exits the thread if it ever
 * returns. */
    .globl bpfg_payload_start
    .type bpfg_payload_start, @function
    .balign 16
bpfg_payload_start:
    syscall
    test %rax, %rax
    jz 2f
    jmp *%r12
2:  xor %ebp, %ebp
    and $-16, %rsp
    mov %r13, %rdi
    call bpfg_payload_main
3:  mov $60, %eax          /* SYS_exit: this thread only */
    xor %edi, %edi
    syscall
    jmp 3b
    .size bpfg_payload_start, . - bpfg_payload_start

    .section .text.hot,"ax",@progbits   /* payload.h: PAYLOAD_HOT */

/* From a stub: [rsp] = hook index, [rsp+8] = the function's return
 * address. The handler runs on the thread's handler stack; the target's
 * stack holds only SAVE_SCRATCH's words (entry.h). */
    .hidden bpfg_uprobe_miss
    .hidden bpfg_uretprobe_lost
    .globl bpfg_uprobe_entry
    .type bpfg_uprobe_entry, @function
    .balign 16
bpfg_uprobe_entry:
    SAVE_SCRATCH
    SWITCH_STACK 2f, bpfg_uprobe_miss
    mov %rdx, %rcx              /* the thread's slot */
    mov S_WORD(%rbx), %rdx      /* the hook's word, also in a register */
    mov %rdx, ORIG_AX(%rsp)
    mov %rsp, %rdi
    lea S_WORD(%rbx), %rsi
    call bpfg_uprobe_hit
    mov RAX(%rsp), %rcx         /* bpf_override_return's value */
    mov %rcx, S_RAX(%rbx)
    mov %rax, %rcx              /* the verdict: SWITCH_BACK uses rax */
    SWITCH_BACK
    test %rcx, %rcx
    jnz 1f
2:  RESTORE_SCRATCH
    /* To the resume address with the function's sp. A jmp, not a ret: a
     * ret to an address no call pushed mispredicts, and so would the
     * function's own ret after it (the return stack is off by one). The
     * word read sits in the red zone, which no signal frame overwrites. */
    lea 8(%rsp), %rsp
    jmp *-8(%rsp)
1:  RESTORE_SCRATCH
    lea 8(%rsp), %rsp
    ret                     /* to the caller: the function is skipped */
    .size bpfg_uprobe_entry, . - bpfg_uprobe_entry

/* A uretprobe'd function returned to its thread's trampoline in the
 * unwind page (unwind.c), which stored the thread's slot index over the
 * return address it came by (at sp - 8) and jumped here: that word is
 * S_WORD, which receives the original return address from the handler. */
    .globl bpfg_uretprobe_return
    .type bpfg_uretprobe_return, @function
    .balign 16
bpfg_uretprobe_return:
    lea -8(%rsp), %rsp      /* onto the slot index: as a push of it */
    SAVE_SCRATCH
    SWITCH_STACK 2f, bpfg_uretprobe_lost, 0, 1
    movq $-1, ORIG_AX(%rsp)
    mov %rsp, %rdi
    mov %rdx, %rsi              /* the thread's slot */
    call bpfg_uretprobe_handler
    mov %rax, S_WORD(%rbx)
    SWITCH_BACK
    RESTORE_SCRATCH
    lea 8(%rsp), %rsp       /* the caller's sp, as after its ret */
    jmp *-8(%rsp)           /* not ret: the return stack holds no entry for it */
2:  ud2                     /* bpfg_uretprobe_lost does not return */
    .size bpfg_uretprobe_return, . - bpfg_uretprobe_return

    .section .note.GNU-stack,"",@progbits
