/* bpfgraftd --offload-kernel-uprobes: kernel uprobes that unmodified tools
 * (started normally, not under `bpfgraft run`) attach to processes
 * bpfgraft manages are served in those processes instead. The tool's
 * perf events are found through /proc/PID/fd and BPF_TASK_FD_QUERY; the
 * program is read back from the kernel (its instructions after the
 * kernel's verifier, map ids), turned back into portable instructions and
 * attached where the kernel placed its breakpoint; the hook's jmp
 * replaces that int3, so the kernel no longer runs the program in that
 * process, and detaching the hook writes the int3 back (the uprobe is
 * handed back). What cannot be offloaded stays in the kernel unchanged.
 * server/README.md, "Offloading kernel uprobes". */
#ifndef BPFGRAFT_SERVER_OFFLOAD_H
#define BPFGRAFT_SERVER_OFFLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct server;

/* bpfgraftd --offload-kernel-uprobes (off by default). */
void offload_enable(bool on);
bool offload_enabled(void);

/* Periodic (server tick, about once a second): finds new kernel uprobes
 * on managed processes and serves them there; hands back those whose
 * tool closed them or whose process went. */
void offload_tick(struct server *s);

/* Every offloaded uprobe handed back to the kernel (server stop). */
void offload_stop(struct server *s);

/* targets.c, planning a hook at addr of pid from code (have bytes read
 * there): when the offload is attaching there and code starts with the
 * int3 of a kernel uprobe, code[0] becomes the file's byte and true is
 * returned (the hook's original bytes must then start with the int3 again,
 * so that removing the hook hands the uprobe back). */
bool offload_take_breakpoint(pid_t pid, uint64_t addr, uint8_t *code, size_t have);

#endif
