/* What a uretprobe needs from the target beyond the hook: the unwinders
 * its return trampolines must be registered with (payload/unwind.c), the
 * refusal of functions whose stack walker cannot be told (Go), and the
 * file gdb reads the trampolines' symbols and unwind tables from
 * (server/README.md, "Uretprobes and unwinders"). */
#ifndef BPFGRAFT_SERVER_UNWIND_H
#define BPFGRAFT_SERVER_UNWIND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "payload_abi.h"

/* -EOPNOTSUPP with a message when a uretprobe at func cannot be made safe
 * for the stack walkers of the code it is in (Go functions). */
int unwind_check_function(pid_t pid, uint64_t func, char *err, size_t errlen);

/* Fills the UNWIND message for pid: the registration functions of its
 * unwinders, an unwind page an earlier payload left, and (glibc 2.35+)
 * where gdb's list of shared objects starts with the file gdb_path names.
 * -EOPNOTSUPP with a message when the process has an unwinder that cannot
 * be registered with (a uretprobe would crash its C++ exceptions). */
int unwind_describe(pid_t pid, const char *gdb_path, struct bpfg_pmsg_unwind *m, char *err, size_t errlen);

/* Writes the ELF file gdb loads for pid's unwind page (whose rw page is at
 * page): the trampolines' symbols and their .eh_frame. */
int unwind_write_gdb_file(pid_t pid, uint64_t page, const char *path, char *err, size_t errlen);

/* The gdb file's path for pid under dir. */
void unwind_gdb_path(const char *dir, pid_t pid, char *buf, size_t len);

/* Removes the gdb files in dir of processes that are gone. */
void unwind_remove_stale(const char *dir);

#endif
