/* Addresses of a process as "function+0xoff (file)": ELF symbols
 * (.symtab, .dynsym), MiniDebugInfo (.gnu_debugdata, xz) and separate
 * debug files (/usr/lib/debug/.build-id/xx/yyyy.debug) when installed.
 * For stack maps in `bpfgraft map dump` and map.dump. */
#ifndef BPFGRAFT_SERVER_SYMBOLIZE_H
#define BPFGRAFT_SERVER_SYMBOLIZE_H

#include <gelf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct symz;

/* The process's executable mappings now; symbols are read per file on
 * first use. 0 and *out, or a negative errno (no such process). */
int symz_open(pid_t pid, struct symz **out);
void symz_close(struct symz *z); /* NULL is fine */

/* Whether addr is in one of the process's executable file mappings. */
bool symz_knows(const struct symz *z, uint64_t addr);

/* addr as "function+0xoff (file)" (C++ names demangled), "0xaddr (file)" without a symbol, or
 * "0xaddr" outside any file. ret: addr is a return address (the function
 * is the one of addr - 1: a call at a function's end). */
void symz_frame(struct symz *z, uint64_t addr, bool ret, char *out, size_t len);

/* e's GNU build id (NT_GNU_BUILD_ID) into id: its length (at most max),
 * 0 without one. */
size_t symz_build_id(Elf *e, uint8_t *id, size_t max);

/* runtime address - ELF vaddr for the executable mapping of e at start,
 * file offset off. */
bool symz_mapping_bias(Elf *e, uint64_t start, uint64_t off, uint64_t *bias);

#endif
