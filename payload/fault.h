/* Fault-safe copies of a tool's memory without a syscall: a SIGSEGV and
 * SIGBUS handler (installed in tool mode, while Syscall User Dispatch
 * lets the payload see the tool's own rt_sigaction calls) turns a fault
 * of bpfg_fault_copy's one copying instruction into -EFAULT, as the
 * kernel's exception table does for copy_from_user; every other fault
 * goes to the tool's own action, or the default one. */
#ifndef BPFG_PAYLOAD_FAULT_H
#define BPFG_PAYLOAD_FAULT_H

#include <stddef.h>
#include <stdint.h>

/* Installs the handler (the tool's actions are kept aside). 0 or -errno. */
int fault_install(void);
/* Gives the tool its actions back (payload thread, not a handler). */
void fault_uninstall(void);

/* n bytes from src to dst: 0, -EFAULT if either faults, or -ENOSYS while
 * the handler is not installed (copy another way). */
long fault_copy(void *dst, const void *src, size_t n);

/* rt_sigaction(a[0..3]) of the tool while installed: for SIGSEGV and
 * SIGBUS the tool's action is read and kept aside, the result in *ret
 * and true; false for anything else (make the call). */
int fault_sigaction(const uint64_t a[6], long *ret);

#endif
