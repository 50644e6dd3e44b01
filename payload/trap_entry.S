/* bpfg_trap_entry(sig, si, uc): the SIGTRAP handler of trap probes
 * (trap.c); bpfg_trap_handler gets a fourth argument saying whether it
 * runs on the thread's handler stack (entry.h, SIGNAL_ENTRY). */
#include "entry.h"

    .text
    SIGNAL_ENTRY bpfg_trap_entry, bpfg_trap_handler

    .section .note.GNU-stack,"",@progbits
