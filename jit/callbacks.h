/* Helpers that take a BPF callback (bpf_loop, bpf_for_each_map_elem) as
 * bytecode every engine runs: after the verifier has accepted a program,
 * each such helper call becomes a local call to a stub appended to the
 * program, which calls the callback with callx, as the kernel inlines
 * bpf_loop. The engines then need no re-entry from C into BPF code.
 *
 * bpf_for_each_map_elem's stub walks the map with one internal helper,
 * BPFG_FUNC_map_iter, that the runtime provides (payload/helpers.c). */
#ifndef BPFGRAFT_JIT_CALLBACKS_H
#define BPFGRAFT_JIT_CALLBACKS_H

#include <stddef.h>

#include "ebpf.h"

/* Internal helper: u64 map_iter(map, u64 cursor, u64 out[3]). Finds the
 * first element at or after position cursor-1 (cursor 0 = the start),
 * stores its key pointer in out[0] and value pointer in out[1] (an array's
 * key is the u32 index kept in out[2]), and returns the cursor of the next
 * position; 0 when there is no element left. */
#define BPFG_FUNC_map_iter 255

/* Rewrites *insns (malloc'd, *n instructions) in place: 0 when nothing
 * needed a stub or the stubs were appended, -ENOMEM. */
int bpfg_lower_callbacks(struct bpf_insn **insns, size_t *n);

#endif
