/* The unwind page: uretprobe return trampolines with unwind tables the
 * target's own unwinders are told about, so C++ exceptions, backtrace()
 * and libunwind walk through a replaced return address to the real caller
 * (abi/payload_abi.h: struct bpfg_unwind_data; payload/README.md, "Return
 * trampolines and unwinders"). */
#ifndef BPFGRAFT_PAYLOAD_UNWIND_H
#define BPFGRAFT_PAYLOAD_UNWIND_H

#include <stddef.h>
#include <stdint.h>

#include "payload_abi.h"

/* The return address of thread slot 0's trampoline (BPFG_UNWIND_RET gives
 * the others); 0 until unwind_setup succeeded. Read by the uprobe handler. */
extern uint64_t unwind_ret0;

/* Payload thread, on BPFG_PMSG_UNWIND: adopts or maps the unwind page,
 * registers its tables with the unwinders named and links gdb's entry.
 * 0 and *page (its rw page), or a negative errno with err set. */
int unwind_setup(const struct bpfg_pmsg_unwind *m, char *err, size_t errlen, uint64_t *page);

#endif
