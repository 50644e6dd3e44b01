/* Resolving uprobe targets ("binary:function+offset") to addresses in a
 * running process, with libelf: .symtab and .dynsym, versioned names
 * ("malloc@GLIBC_2.2.5" or plain "malloc"), PIE and non-PIE executables
 * and shared libraries, and raw addresses ("0x4011d6") for stripped
 * binaries. */
#ifndef BPFGRAFT_SERVER_SYMBOLS_H
#define BPFGRAFT_SERVER_SYMBOLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* binary: absolute path, a library file name ("libc.so.6"), or NULL/""/
 * "self" for the process's executable. func: a symbol name or a hex
 * address (file virtual address). Returns 0 and the runtime address, or
 * -ENOENT (binary not mapped / symbol not found) with a message. */
int sym_resolve(pid_t pid, const char *binary, const char *func, uint64_t offset, uint64_t *addr, char *err,
                size_t errlen);

/* The runtime address of file offset file_off of binary (an absolute path,
 * matched by inode) in pid, as perf_event_open uprobes name places.
 * -ESRCH: no process; -ENOENT: not mapped there (message in err). */
int sym_resolve_file_offset(pid_t pid, const char *binary, uint64_t file_off, uint64_t *addr, char *err, size_t errlen);
/* The same in a private writable mapping only (the process's copy of its
 * data, where a USDT semaphore is counted), as the kernel's ref_ctr. */
int sym_resolve_data_offset(pid_t pid, const char *binary, uint64_t file_off, uint64_t *addr, char *err, size_t errlen);

/* The function (an STT_FUNC symbol with a size, of .symtab or .dynsym;
 * in a file without one there, the .eh_frame FDE) that contains runtime
 * address addr in pid: [*lo, *hi). -ENOENT when addr is in no file
 * mapping or neither covers it. */
int sym_function_at(pid_t pid, uint64_t addr, uint64_t *lo, uint64_t *hi);

/* The sized function of the file mapped at addr that ends last at or
 * before addr: [*lo, *hi). -ENOENT when there is none. */
int sym_function_before(pid_t pid, uint64_t addr, uint64_t *lo, uint64_t *hi);

/* The runtime address of the first symbol (any type but section and
 * file) or allocated section that starts at runtime address addr or after
 * it, in the file mapped at addr. -ENOENT when there is none. */
int sym_next_start(pid_t pid, uint64_t addr, uint64_t *next);

/* Whether pid maps binary (an absolute path, matched by inode). */
bool sym_maps_binary(pid_t pid, const char *binary);

#endif
