/* Resolving uprobe targets ("binary:function+offset") to addresses in a
 * running process, with libelf: .symtab and .dynsym, versioned names
 * ("malloc@GLIBC_2.2.5" or plain "malloc"), PIE and non-PIE executables
 * and shared libraries, raw addresses ("0x4011d6") for stripped
 * binaries, and Go functions by name through .gopclntab (Go 1.18 and
 * later, also in binaries stripped with -ldflags=-s -w). */
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
 * where none covers it, an FDE of .eh_frame outside the PLT; else a Go
 * function of .gopclntab, up to the next one's entry) that contains
 * runtime address addr in pid: [*lo, *hi). -ENOENT when addr is in no
 * file mapping or none of them covers it. */
int sym_function_at(pid_t pid, uint64_t addr, uint64_t *lo, uint64_t *hi);

/* The Go code of the file mapped at runtime address addr, from its
 * .gopclntab: [*lo, *hi) from its first Go function to the end of its
 * last. -ENOENT: not a Go file (or addr in no file); -ENOTSUP: a Go table
 * of a version not read here (before Go 1.18); -ENOEXEC: a table that
 * does not hold together. */
int sym_go_text(pid_t pid, uint64_t addr, uint64_t *lo, uint64_t *hi);

/* Calls fn for each Go function of the file mapped at addr, in address
 * order, with its name and runtime extent [lo, hi) (up to the next one's
 * entry); a non-zero return ends the walk and is returned. -ENOENT etc.
 * as sym_go_text. */
typedef int sym_go_fn(void *arg, const char *name, uint64_t lo, uint64_t hi);
int sym_go_functions(pid_t pid, uint64_t addr, sym_go_fn *fn, void *arg);

/* Whether pid's executable has the section named name (".gopclntab": it
 * is a Go program). */
bool sym_exe_has_section(pid_t pid, const char *name);

/* The function (sized symbol or FDE, as above) of the file mapped at addr
 * that ends last at or before addr: [*lo, *hi). -ENOENT when there is none. */
int sym_function_before(pid_t pid, uint64_t addr, uint64_t *lo, uint64_t *hi);

/* The runtime address of the first symbol (any type but section and
 * file), allocated section or FDE that starts at runtime address addr or
 * after it, in the file mapped at addr. -ENOENT when there is none. */
int sym_next_start(pid_t pid, uint64_t addr, uint64_t *next);

/* Whether pid maps binary (an absolute path, matched by inode). */
bool sym_maps_binary(pid_t pid, const char *binary);

#endif
