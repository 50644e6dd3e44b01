/* The kernel side of a loaded object: programs userspace cannot run
 * (kprobes, fentry, kernel tracepoints, perf_event, kernel-only helpers)
 * loaded into the kernel through the real bpf() by libbpf (the kernel's
 * verifier) and attached by the kernel; maps used by programs on both
 * sides are kernel maps that userspace programs reach through their fds
 * (maps.h, bpfg_map_is_kernel). server/README.md, "Kernel programs". */
#ifndef BPFGRAFT_SERVER_KERNEL_H
#define BPFGRAFT_SERVER_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

struct kernel_obj;

/* "auto", "never", "always" -> mode; -EINVAL otherwise. */
int kernel_mode_parse(const char *s, enum bpfg_kernel_mode *mode);

/* Marks the userspace programs of o that call a helper bpfgraft does not
 * serve as kernel programs (mode AUTO), then, if o has kernel programs,
 * loads them from the object's bytes (path or data), attaches them, and
 * turns every map both sides use into the kernel's (o's maps are
 * replaced). Stored in o->kernel. 0 or a negative errno with err set. */
int kernel_load(struct registry *r, struct reg_object *o, enum bpfg_kernel_mode mode, const void *data, size_t len,
                char *err, size_t errlen);

/* map.adopt: the kernel map pinned at path (bpffs) becomes object and
 * map `name`; objects loaded later that define a map of that name (same
 * type, key, value and size) use it. 0 or a negative errno, err set. */
int kernel_adopt_map(struct registry *r, const char *path, const char *name, struct reg_map **out, char *err,
                     size_t errlen);

/* The kernel map fd (described by info) as map `name` of o, through the
 * registry's adopt_fd. The caller keeps fd. 0 or a negative errno, err set. */
struct bpf_map_info;
int kernel_add_map(struct registry *r, struct reg_object *o, int fd, const struct bpf_map_info *info, const char *name,
                   struct reg_map **out, char *err, size_t errlen);

/* The kernel's run_cnt and run_time_ns (bpf_prog_info) of k's program
 * named name: 0, or -ENOENT when k has no such program loaded. */
int kernel_prog_stats(const struct kernel_obj *k, const char *name, uint64_t *run_cnt, uint64_t *run_time_ns);

/* Links detached, programs and maps closed (the kernel frees them once
 * no target holds a map fd). Pinned ones stay as they are, for the next
 * server. NULL is fine. */
void kernel_obj_free(struct kernel_obj *k);

/* Restarts: kernel_load pins an object's kernel programs, links and the
 * kernel maps they use under /sys/fs/bpf/bpfgraft/ (mounting bpffs if
 * none is), when the server has a state directory, so they outlive it.
 * kernel_restore, for an object the state directory restored, takes
 * them back: its pinned programs are the kernel's again (prog list) and
 * its pinned maps replace the restored regions (0 when it has no pins,
 * or -ENOMEM). kernel_unpin removes k's pins (unload; NULL is fine),
 * kernel_unpin_all every object's (shutdown --detach). */
int kernel_restore(struct registry *r, struct reg_object *o);
void kernel_unpin(struct kernel_obj *k);
void kernel_unpin_all(struct registry *r);

#endif
