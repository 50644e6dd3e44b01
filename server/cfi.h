/* The call frame information (.eh_frame, and .debug_frame where present)
 * of an x86-64 ELF file compiled into the payload's user-stack rows
 * (abi/payload_abi.h section 8): for each pc range, how to find the CFA
 * (rsp or rbp + offset, the PLT's expression, a signal frame, the
 * outermost frame) and where rbp was saved. Rules that a stack walk cannot
 * follow with rsp and rbp alone become BPFG_USTACK_CFA_NONE (frame
 * pointers), never a wrong frame. */
#ifndef BPFGRAFT_SERVER_CFI_H
#define BPFGRAFT_SERVER_CFI_H

#include <stddef.h>
#include <stdint.h>

#include <libelf.h>

#include "payload_abi.h"

struct cfi_rows {
    struct bpfg_ustack_row *rows; /* sorted by pc; owned */
    size_t n, cap;
};

/* Appends the rows of the ELF file open at fd to out (sorted among
 * themselves). An FDE overlapping an earlier one (.debug_frame describing
 * what .eh_frame does) is skipped; a gap between FDEs gets a NONE row.
 * Returns 0 (a file without CFI adds nothing), -ENOMEM, or -EINVAL with
 * a message in err for a file that is not ELF. */
int cfi_rows_from_elf(int fd, struct cfi_rows *out, char *err, size_t errlen);

void cfi_rows_free(struct cfi_rows *r);

/* The bounds [lo, hi) of the FDE covering file address vaddr: a function's
 * extent in a file without symbols for it. 0, -ENOENT or -ENOMEM. */
int cfi_function_at(Elf *e, uint64_t vaddr, uint64_t *lo, uint64_t *hi);

#endif
