/* The kernel's struct sigaction, as rt_sigaction takes it with
 * sigsetsize 8: the payload installs its signal handlers with the raw
 * syscall (no libc), and keeps the target's own actions in this form. */
#ifndef BPFG_PAYLOAD_KSIG_H
#define BPFG_PAYLOAD_KSIG_H

#include <stdint.h>

#define SA_RESTORER_ 0x04000000

struct ksigaction {
    uint64_t handler;
    uint64_t flags;
    uint64_t restorer;
    uint64_t mask;
};

#endif
