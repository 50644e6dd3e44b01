/* The kernel part of `bpfgraft run` tools (server/README.md, "Kernel
 * programs of run tools"): a tool program that calls a helper only the
 * kernel has, or that is attached where only the kernel can run it (a
 * kernel tracepoint, the exit of execve), is loaded into the kernel
 * through the real bpf() and attached there; every map it uses becomes a
 * kernel map first (created like the tool's, its contents copied), which
 * the tool's payload then serves through the kernel and userspace
 * programs reach as object.load's shared kernel maps. Everything is kept
 * per tool object and goes with tool_kernel_forget. */
#ifndef BPFGRAFT_SERVER_TOOL_KERNEL_H
#define BPFGRAFT_SERVER_TOOL_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct server;
struct reg_object;
struct bpfg_obj_prog;

/* The tool created map_id of object obj_id as type, which bpfgraft made
 * another type in userspace (CGROUP_ARRAY: a plain array): a kernel copy
 * gets the tool's type. 0 or -ENOMEM. */
int tool_kernel_note_type(uint32_t obj_id, uint32_t map_id, uint32_t type);

/* Loads p (instructions with map indices of o) into the kernel, each map
 * it uses made the kernel's first (*maps_changed set when one was; a map
 * a process other than tool_pid was sent refuses it). The program's
 * kernel fd, or a negative errno with err set (the kernel verifier's log
 * ends it). Keep the fd with tool_kernel_keep_prog. */
int tool_kernel_load(struct server *s, struct reg_object *o, pid_t tool_pid, const struct bpfg_obj_prog *p,
                     bool *maps_changed, char *err, size_t errlen);
/* Program prog_id of obj_id is the kernel program fd (owned from now on,
 * also on failure: -ENOMEM). */
int tool_kernel_keep_prog(uint32_t obj_id, uint32_t prog_id, int fd);
/* Whether prog_id was loaded into the kernel. */
bool tool_kernel_has_prog(uint32_t prog_id);

struct tool_kernel_attach {
    uint32_t kind;       /* enum bpfg_tool_attach_kind */
    int32_t pid;         /* perf_event_open's pid, -1 every process */
    const char *name;    /* tracepoint "CAT/NAME", raw tracepoint name, or uprobe binary */
    uint32_t tp_id;      /* tracepoints: the kernel's id; 0: name's, read in tracefs */
    uint64_t offset;     /* uprobes: file offset */
    uint64_t ref_ctr;    /* uprobes: USDT semaphore file offset */
    uint64_t cookie;     /* bpf_get_attach_cookie */
    uint32_t probe_type; /* the uprobe PMU's type, retprobe_bit its config bit */
    uint32_t retprobe_bit;
};

/* Attaches kernel program prog_id as link link_id of obj_id, by the
 * kernel. 0 or a negative errno with err set. */
int tool_kernel_attach(uint32_t obj_id, uint32_t prog_id, uint32_t link_id, const struct tool_kernel_attach *a,
                       char *err, size_t errlen);
/* Detaches kernel link link_id of obj_id: 0, or -ENOENT if it is none. */
int tool_kernel_detach(uint32_t obj_id, uint32_t link_id);

/* The ids of obj_id's kernel maps (malloc'd; NULL and 0 when none). */
int tool_kernel_map_ids(uint32_t obj_id, uint32_t **ids, size_t *n);
/* The kernel fd of map map_id of obj_id (still owned here), or -ENOENT. */
int tool_kernel_map_fd(uint32_t obj_id, uint32_t map_id);

/* The tool ended: its kernel links, programs and maps are closed. */
void tool_kernel_forget(uint32_t obj_id);

#endif
