/* The bpfgraft verifier: proves a program safe before it may run inside
 * another process.
 *
 * Path-sensitive abstract interpretation in the manner of the kernel's
 * verifier, simplified: every register has a type (scalar with unsigned,
 * signed and known-bits bounds; context; stack pointer; map pointer; map
 * value; map value or NULL; ring buffer record or NULL), stack slots remember
 * spilled registers and which bytes were written, conditional jumps refine
 * both sides, and states already proven safe at a jump target prune later
 * equivalent ones. Loops are accepted when exploration ends (bounded by the
 * complexity limit); bpf-to-bpf calls get their own frames. Callbacks
 * (bpf_loop, bpf_for_each_map_elem) are checked once as a call from the
 * helper; the frame their ctx points into loses its spilled types before
 * and after, which covers any number of runs (stricter than the kernel's
 * fixpoint iteration, never looser).
 *
 * Programs reach the verifier as the object loader leaves them: map
 * references are lddw BPF_PSEUDO_MAP_IDX / BPF_PSEUDO_MAP_IDX_VALUE with an
 * index into env->maps.
 *
 * Rejections read like the kernel's: "insn N: <disasm>: <reason>" followed
 * by the register state at that point.
 */
#ifndef BPFGRAFT_SERVER_VERIFIER_H
#define BPFGRAFT_SERVER_VERIFIER_H

#include <linux/bpf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the context pointer (r1 at entry) points to. */
enum bpfg_verify_kind {
    BPFG_VERIFY_UPROBE,        /* struct pt_regs, 168 bytes, read-only */
    BPFG_VERIFY_URETPROBE,     /* same */
    BPFG_VERIFY_SYSCALL_ENTER, /* tracepoint record: common 8 bytes, int nr at 8, 6 args of 8 from 16 */
    BPFG_VERIFY_SYSCALL_EXIT,  /* tracepoint record: common 8 bytes, nr at 8, long ret at 16 */
    BPFG_VERIFY_RAW_TP,        /* raw tracepoint sys_enter/sys_exit: u64 args[2] */
    BPFG_VERIFY_PERF_EVENT,    /* struct bpf_perf_event_data, 184 bytes, read-only (timers) */
};

struct bpfg_verify_map {
    uint32_t type; /* BPF_MAP_TYPE_* */
    uint32_t key_size, value_size, max_entries;
    uint32_t flags;   /* BPF_F_RDONLY_PROG for .rodata/.kconfig */
    const void *data; /* read-only maps: the frozen value (may be NULL) */
    size_t data_size;
    uint32_t inner;     /* map-in-map: 1 + index in maps[] of its inner map template
                     * (entries past map_cnt, which lddw cannot name); 0 = none */
    uint32_t spin_lock; /* 1 + offset of the value's struct bpf_spin_lock (BTF); 0 = none */
};

struct bpfg_verify_env {
    enum bpfg_verify_kind kind;
    const struct bpfg_verify_map *maps; /* by the index lddw uses */
    size_t map_cnt;
    bool allow_probe_write_user; /* bpf_probe_write_user */
    bool allow_override_return;  /* bpf_override_return, uprobes only */
    bool kernel_check;           /* also ask the kernel (root) */
    uint8_t *reached;            /* optional, n bytes: set to 1 for every instruction
                                             * some explored path executes (the rest is dead
                                             * code, e.g. behind frozen .rodata flags) */
};

struct bpfg_verify_result {
    bool ok;
    int err;                  /* 0, -EINVAL (unsafe), -E2BIG (too complex), -ENOMEM */
    char msg[2048];           /* why it was rejected, "" when accepted */
    uint64_t insns_processed; /* abstract instructions executed */
    uint32_t states;          /* states stored for pruning */
    uint32_t peak_pending;    /* deepest stack of branches still to explore */
    uint32_t stack_depth;     /* largest combined stack of a call chain, bytes */
    uint64_t time_ns;
    int kernel_verdict;    /* kernel_check: 0 accepted, negative errno, 1 not asked */
    int32_t kernel_helper; /* rejected at a reachable call of this helper, which only the kernel has; 0 else */
};

/* Verifies n instructions. Returns 0 when the program is safe, otherwise
 * res->err with res->msg saying why. With env->kernel_check the kernel's
 * verifier must accept an equivalent program too (see bpfg_verify_kernel). */
int bpfg_verify(const struct bpf_insn *insns, size_t n, const struct bpfg_verify_env *env,
                struct bpfg_verify_result *res);

/* Loads an equivalent program into the running kernel (root): maps of the
 * same shapes are created, map references rewritten to their fds, the
 * program type chosen from env->kind (KPROBE, TRACEPOINT, RAW_TRACEPOINT).
 * Returns 0 if the kernel accepts it, else a negative errno with the last
 * lines of the kernel's log in msg (msglen 0: no log is asked for, as when
 * timing). Everything created is closed again. */
int bpfg_verify_kernel(const struct bpf_insn *insns, size_t n, const struct bpfg_verify_env *env, char *msg,
                       size_t msglen);

struct bpfg_obj;
struct bpfg_obj_prog;

/* Fills env (kind, maps) for a program of a loaded object (objload.h):
 * .rodata/.kconfig maps become BPF_F_RDONLY_PROG with their contents.
 * *maps is malloc'd (the caller frees it, also on error). Returns 0,
 * -EOPNOTSUPP for a program the loader marked unsupported, or -ENOMEM. */
int bpfg_verify_env_for_prog(const struct bpfg_obj *obj, const struct bpfg_obj_prog *prog, struct bpfg_verify_env *env,
                             struct bpfg_verify_map **maps);

#endif
