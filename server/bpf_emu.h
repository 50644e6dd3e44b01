/* A userspace stand-in for the bpf() syscall, used while libbpf loads an
 * object (see objload.c).
 *
 * libbpf issues every BPF command through libc's syscall(__NR_bpf, ...).
 * An executable that links this module with -Wl,--wrap=syscall (the
 * bpfg_objload target adds it) sends those calls to __wrap_syscall here,
 * which emulates them when the calling thread has an active emulation and
 * forwards everything else, and every bpf() outside a load, to the kernel.
 *
 * One emulation runs at a time (a process-wide mutex); it is active only on
 * the thread that began it. Fake fds are real memfds (>= 3, close-on-exec)
 * so libbpf's close(), fcntl() and mmap() work on them; array map memfds are
 * sized like the kernel's mmapable arrays. bpfg_emu_end() closes what is
 * still open of what the emulation created and frees every record.
 *
 * Commands: MAP_CREATE, MAP_UPDATE_ELEM / LOOKUP_ELEM (arrays; stored in
 * the memfd), MAP_FREEZE, MAP_DELETE_ELEM, MAP_GET_NEXT_KEY, PROG_LOAD
 * (captures the final instructions), BTF_LOAD, OBJ_GET_INFO_BY_FD,
 * PROG_BIND_MAP, *_GET_NEXT_ID (none). Feature probes all succeed, so libbpf
 * takes its modern paths (global data, BTF func/datasec/float/decl_tag/
 * type_tag, prog names, probe_read_kernel, mmapable arrays). Anything else
 * fails with EINVAL. BPFG_EMU_TRACE=1 in the environment logs each command.
 */
#ifndef BPFGRAFT_BPF_EMU_H
#define BPFGRAFT_BPF_EMU_H

#include <linux/bpf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bpfg_emu;

/* What BPF_MAP_CREATE asked for. */
struct bpfg_emu_map {
    char name[BPF_OBJ_NAME_LEN];
    uint32_t type, key_size, value_size, max_entries, flags;
    uint32_t btf_key_type_id, btf_value_type_id;
    uint64_t map_extra;
    bool frozen;
    /* map-in-map: the inner map template (what inner_map_fd named) */
    uint32_t inner_type, inner_key_size, inner_value_size, inner_max_entries, inner_flags;
    /* map-in-map: the slots libbpf filled (`.values`): u32 key -> map fd */
    uint32_t *slot_keys;
    int *slot_fds;
    uint32_t nslots;
};

/* What BPF_PROG_LOAD received: the final, relocated program. */
struct bpfg_emu_prog {
    char name[BPF_OBJ_NAME_LEN];
    uint32_t type, expected_attach_type, flags, kern_version;
    char *license;
    struct bpf_insn *insns;
    size_t insn_cnt;
};

/* Takes the emulation lock and activates the emulation on this thread.
 * Fails with -ENOSYS (and releases the lock) when the executable was not
 * linked with -Wl,--wrap=syscall, so nothing reaches the kernel by mistake. */
int bpfg_emu_begin(struct bpfg_emu **out);
/* Deactivates, closes the fds still owned by the emulation, frees, unlocks. */
void bpfg_emu_end(struct bpfg_emu *emu);

/* The record behind a fake fd, or NULL if fd is not (or no longer) one. */
const struct bpfg_emu_map *bpfg_emu_map_by_fd(struct bpfg_emu *emu, int fd);
const struct bpfg_emu_prog *bpfg_emu_prog_by_fd(struct bpfg_emu *emu, int fd);

#endif
