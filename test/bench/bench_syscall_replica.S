/* Native replicas of a rewritten syscall site's path (bench_syscall.c:
 * replica_rows), run in the bench process on the one-thread table the
 * uprobe suite's replicas use (bench_uprobe.c: replica_setup). The entry
 * code is the payload's own, entry.h's SYS_FAST_ENTRY, with handlers that
 * do no more than the row says:
 *   replica_sys_entry_nop: enter returns 0 (make the call, no exit);
 *   replica_sys_entry_prog: enter calls a program through a pointer
 *     (replica_sys_enter_prog, bench_syscall.c), as a run calls JIT code.
 * The site and its stub are built at run time as the server builds them
 * (bench_syscall.c: replica_site). */
#include "entry.h"

    .text
    .globl replica_sys_entry_nop
    .type replica_sys_entry_nop, @function
    .balign 16
replica_sys_entry_nop:
    SYS_FAST_ENTRY replica_sys_enter_nop, replica_sys_exit_nop, replica_miss
    .size replica_sys_entry_nop, . - replica_sys_entry_nop

    .globl replica_sys_entry_prog
    .type replica_sys_entry_prog, @function
    .balign 16
replica_sys_entry_prog:
    SYS_FAST_ENTRY replica_sys_enter_prog, replica_sys_exit_nop, replica_miss
    .size replica_sys_entry_prog, . - replica_sys_entry_prog

    .balign 16
replica_sys_enter_nop:
    xor %eax, %eax
    ret
replica_sys_exit_nop:
    ret

/* the counter's hardware part: one locked add on a map value */
    .globl replica_count_prog
    .balign 16
replica_count_prog:
    lock incq replica_count(%rip)
    xor %eax, %eax
    xor %edx, %edx
    ret

    .bss
    .balign 64
    .globl replica_count
replica_count: .quad 0

    .section .note.GNU-stack,"",@progbits
