/* bpfgraft-bench maps: lookup/update/delete on array and hash maps (1k and
 * 1M entries, one and two threads), bloom filter peeks and LPM trie
 * lookups (1k and 64k entries) and ring buffer throughput (one and two
 * producers, one consumer), each beside the
 * kernel doing the same operations from a BPF program.
 *
 * Kernel side: a socket-filter program built from raw instructions does 64
 * unrolled operations per run (keys computed as in the C loop below), run
 * with BPF_PROG_TEST_RUN and `repeat`; ns/op = reported duration / 64. The
 * program's prologue is included, amortised over the 64 operations.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "maps.h"

#define UNROLL 64
#define KEYMUL 0x9E3779B1u

/* OP_PCPU_ADD: a per-CPU counter's "lookup; *v += 1", one run per op (ours:
 * the slot claimed); OP_PCPU_RAW: the same unclaimed (before claims). */
enum op { OP_LOOKUP, OP_UPDATE, OP_DELINS, OP_RBOUT, OP_PEEK, OP_LPM, OP_INLINE, OP_PCPU_ADD, OP_PCPU_RAW };

/* LPM trie keys: the /24 prefix k << 8, looked up with address k.0x5a */
static inline uint32_t lpm_addr(uint32_t k)
{
    return __builtin_bswap32(k << 8 | 0x5a);
}

/* ---- kernel side: raw bpf(2) ---- */

static long sys_bpf(int cmd, union bpf_attr *a)
{
    return syscall(__NR_bpf, cmd, a, sizeof(*a));
}

static int kmap_create(uint32_t type, uint32_t ks, uint32_t vs, uint32_t n)
{
    union bpf_attr a = {0};
    a.map_type = type;
    a.key_size = ks;
    a.value_size = vs;
    a.max_entries = n;
    if (type == BPF_MAP_TYPE_LPM_TRIE)
        a.map_flags = BPF_F_NO_PREALLOC;
    int fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
    return fd < 0 ? -errno : fd;
}

/* A BPF_F_MMAPABLE kernel array: what bpfgraft makes of arrays that kernel
 * programs share with userspace ones. */
static int kmap_create_mmapable(uint32_t vs, uint32_t n)
{
    union bpf_attr a = {0};
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = vs;
    a.max_entries = n;
    a.map_flags = BPF_F_MMAPABLE;
    int fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
    return fd < 0 ? -errno : fd;
}

static int kmap_update(int fd, const void *k, const void *v)
{
    union bpf_attr a = {0};
    a.map_fd = (uint32_t)fd;
    a.key = (uintptr_t)k;
    a.value = (uintptr_t)v;
    return sys_bpf(BPF_MAP_UPDATE_ELEM, &a) < 0 ? -errno : 0;
}

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

struct prog {
    struct bpf_insn insn[UNROLL * 24 + 64];
    int n;
};

static void emit(struct prog *p, struct bpf_insn i)
{
    p->insn[p->n++] = i;
}

static void ld_map(struct prog *p, int reg, int fd)
{
    emit(p, INSN(BPF_LD | BPF_DW | BPF_IMM, reg, BPF_PSEUDO_MAP_FD, 0, fd));
    emit(p, INSN(0, 0, 0, 0, 0));
}

/* r7 = per-run base read from ctl[0] (then advanced), 64 ops on keys
 * ((base + i) * KEYMUL) & mask, as the C side does. */
static int kprog_load(enum op op, int map_fd, int ctl_fd, uint32_t mask)
{
    struct prog *p = calloc(1, sizeof(*p));
    emit(p, INSN(BPF_ST | BPF_W | BPF_MEM, BPF_REG_10, 0, -4, 0));
    ld_map(p, BPF_REG_1, ctl_fd);
    emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0));
    emit(p, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -4));
    emit(p, INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem));
    int jpos = p->n;
    emit(p, INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 0, 0)); /* patched */
    emit(p, INSN(BPF_LDX | BPF_DW | BPF_MEM, BPF_REG_7, BPF_REG_0, 0, 0));
    emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_7, 0, 0));
    emit(p, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, UNROLL));
    emit(p, INSN(BPF_STX | BPF_DW | BPF_MEM, BPF_REG_0, BPF_REG_1, 0, 0));
    for (int off = -16; off >= -80; off -= 8) /* value / record bytes */
        emit(p, INSN(BPF_ST | BPF_DW | BPF_MEM, BPF_REG_10, 0, (int16_t)off, 1));
    if (op == OP_LPM) /* key at fp-8: prefixlen 32, then the address at fp-4 */
        emit(p, INSN(BPF_ST | BPF_W | BPF_MEM, BPF_REG_10, 0, -8, 32));
    for (int i = 0; i < UNROLL; i++) {
        if (op != OP_RBOUT) {
            emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_7, 0, 0));
            emit(p, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, i));
            emit(p, INSN(BPF_ALU | BPF_MUL | BPF_K, BPF_REG_1, 0, 0, (int32_t)KEYMUL));
            emit(p, INSN(BPF_ALU | BPF_AND | BPF_K, BPF_REG_1, 0, 0, (int32_t)mask));
            if (op == OP_LPM) {
                emit(p, INSN(BPF_ALU | BPF_LSH | BPF_K, BPF_REG_1, 0, 0, 8));
                emit(p, INSN(BPF_ALU | BPF_OR | BPF_K, BPF_REG_1, 0, 0, 0x5a));
                emit(p, INSN(BPF_ALU | BPF_END | BPF_TO_BE, BPF_REG_1, 0, 0, 32));
            }
            emit(p, INSN(BPF_STX | BPF_W | BPF_MEM, BPF_REG_10, BPF_REG_1, -4, 0));
        }
        if (op == OP_DELINS) {
            ld_map(p, BPF_REG_1, map_fd);
            emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0));
            emit(p, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -4));
            emit(p, INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_delete_elem));
        }
        ld_map(p, BPF_REG_1, map_fd);
        emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0));
        if (op == OP_RBOUT) {
            emit(p, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -80));
            emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_3, 0, 0, 64));
            emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_4, 0, 0, BPF_RB_NO_WAKEUP));
            emit(p, INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_ringbuf_output));
            continue;
        }
        emit(p, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, op == OP_LPM ? -8 : -4));
        if (op == OP_LOOKUP || op == OP_LPM) {
            emit(p, INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem));
        } else if (op == OP_PCPU_ADD) {
            emit(p, INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem));
            emit(p, INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 3, 0));
            emit(p, INSN(BPF_LDX | BPF_DW | BPF_MEM, BPF_REG_1, BPF_REG_0, 0, 0));
            emit(p, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, 1));
            emit(p, INSN(BPF_STX | BPF_DW | BPF_MEM, BPF_REG_0, BPF_REG_1, 0, 0));
        } else if (op == OP_PEEK) {
            emit(p, INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_peek_elem));
        } else {
            emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_3, BPF_REG_10, 0, 0));
            emit(p, INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_3, 0, 0, -16));
            emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_4, 0, 0, BPF_ANY));
            emit(p, INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_update_elem));
        }
    }
    p->insn[jpos].off = (int16_t)(p->n - jpos - 1);
    emit(p, INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0));
    emit(p, INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0));

    static char log[1 << 16];
    union bpf_attr a = {0};
    a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
    a.insns = (uintptr_t)p->insn;
    a.insn_cnt = (uint32_t)p->n;
    a.license = (uintptr_t) "GPL";
    if (getenv("BENCH_VLOG")) { /* the kernel wants no buffer at log level 0 */
        a.log_buf = (uintptr_t)log;
        a.log_size = sizeof(log);
        a.log_level = 1;
    }
    int fd = (int)sys_bpf(BPF_PROG_LOAD, &a);
    int err = errno;
    if (fd < 0 && getenv("BENCH_VLOG"))
        fprintf(stderr, "%s\n", log + (strlen(log) > 2000 ? strlen(log) - 2000 : 0));
    free(p);
    return fd < 0 ? -err : fd;
}

/* Average ns per run over `repeat` runs. */
static double ktest_run(int prog_fd, uint32_t repeat)
{
    uint8_t pkt[64] = {0};
    union bpf_attr a = {0};
    a.test.prog_fd = (uint32_t)prog_fd;
    a.test.data_in = (uintptr_t)pkt;
    a.test.data_size_in = sizeof(pkt);
    a.test.repeat = repeat;
    if (sys_bpf(BPF_PROG_TEST_RUN, &a) < 0)
        return -1;
    return (double)a.test.duration;
}

struct kthr {
    int prog;
    uint32_t repeat;
    double ns_per_run;
};

static void *kthread(void *arg)
{
    struct kthr *t = arg;
    t->ns_per_run = ktest_run(t->prog, t->repeat);
    return NULL;
}

/* ---- our side ---- */

/* Each run of 64 ops takes its keys' base from a cursor shared by the
 * threads of a row, as the kernel's program reads and advances ctl[0]:
 * two threads work on different batches of keys on both sides. (Before,
 * our threads started 2^30 apart, which the mask made the same keys:
 * ours contended for every line the other thread had just written while
 * the kernel's threads did not.) */
struct othr {
    struct bpfg_map *m;
    enum op op;
    uint32_t mask;
    _Atomic uint32_t *cursor;
    uint64_t ops;
    double ns;
};

static inline uint32_t next_base(struct othr *t)
{
    return atomic_fetch_add_explicit(t->cursor, UNROLL, memory_order_relaxed);
}

/* An array lookup as the LLVM JIT inlines it (jit/llvmjit.c): a bounds
 * check and an address computation on the values' base, no call. */
struct inl_array {
    uint8_t *base;
    uint32_t max_entries, stride;
};

static inline void *inl_lookup(const struct inl_array *a, uint32_t k)
{
    return k < a->max_entries ? a->base + (uint64_t)k * a->stride : NULL;
}

/* OP_INLINE's loop: no per-op dispatch, as in the JITed program. */
static void inline_lookups(struct othr *t)
{
    struct bpfg_map_info info;
    uint32_t zero = 0;
    bpfg_map_get_info(t->m, &info);
    struct inl_array inl = {bpfg_map_lookup_elem(t->m, &zero), info.max_entries, (info.value_size + 7) & ~7u};
    for (uint64_t done = 0; done < t->ops; done += UNROLL)
        for (uint32_t i = 0, base = next_base(t); i < UNROLL; i++)
            bench_keep(inl_lookup(&inl, ((base + i) * KEYMUL) & t->mask));
}

/* One op of t->op's kind on key k; op is a constant where run_ops inlines
 * it, so the loop dispatches nothing per op (as the kernel's program). */
static inline __attribute__((always_inline)) void one_op(struct othr *t, enum op op, uint32_t k, const uint64_t *v)
{
    switch (op) {
    case OP_LOOKUP: bench_keep(bpfg_map_lookup_elem(t->m, &k)); break;
    case OP_PCPU_ADD: {
        struct bpfg_map_run run = {.n = 0};
        uint64_t *c = bpfg_map_lookup_elem_run(t->m, &k, &run);
        *(volatile uint64_t *)c += 1;
        bpfg_map_run_release(&run);
        break;
    }
    case OP_PCPU_RAW: *(volatile uint64_t *)bpfg_map_lookup_elem(t->m, &k) += 1; break;
    case OP_UPDATE: bpfg_map_update_elem(t->m, &k, v, BPF_ANY); break;
    case OP_PEEK: bench_keep((void *)(uintptr_t)bpfg_map_peek_elem(t->m, &k)); break;
    case OP_LPM: {
        uint32_t key[2] = {32, lpm_addr(k)};
        bench_keep(bpfg_map_lookup_elem(t->m, key));
        break;
    }
    default: bpfg_map_delete_elem(t->m, &k); bpfg_map_update_elem(t->m, &k, v, BPF_ANY);
    }
}

static inline __attribute__((always_inline)) void run_ops(struct othr *t, enum op op)
{
    uint64_t v = 1;
    uint32_t mask = t->mask;
    for (uint64_t done = 0; done < t->ops; done += UNROLL)
        for (uint32_t i = 0, base = next_base(t); i < UNROLL; i++)
            one_op(t, op, ((base + i) * KEYMUL) & mask, &v);
}

/* This thread's CPU time: the kernel's BPF_PROG_TEST_RUN times its loop
 * with preemption off and leaves out the time it yields the CPU (its
 * bpf_test_timer), so ours leaves out the time this thread is not running
 * (wall time counted every preemption by another process against us). */
static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *othread(void *arg)
{
    struct othr *t = arg;
    uint64_t t0 = thread_cpu_ns();
    switch (t->op) {
    case OP_INLINE: inline_lookups(t); break;
    case OP_LOOKUP: run_ops(t, OP_LOOKUP); break;
    case OP_PCPU_ADD: run_ops(t, OP_PCPU_ADD); break;
    case OP_PCPU_RAW: run_ops(t, OP_PCPU_RAW); break;
    case OP_UPDATE: run_ops(t, OP_UPDATE); break;
    case OP_PEEK: run_ops(t, OP_PEEK); break;
    case OP_LPM: run_ops(t, OP_LPM); break;
    default: run_ops(t, OP_DELINS);
    }
    t->ns = (double)(thread_cpu_ns() - t0);
    return NULL;
}

static double ours_ns_per_op(struct bpfg_map *m, enum op op, uint32_t mask, uint64_t ops, int threads)
{
    struct othr t[2];
    pthread_t th[2];
    _Atomic uint32_t cursor = 0;
    for (int i = 0; i < threads; i++) {
        t[i] = (struct othr){m, op, mask, &cursor, ops, 0};
        pthread_create(&th[i], NULL, othread, &t[i]);
    }
    double worst = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        if (t[i].ns > worst)
            worst = t[i].ns;
    }
    return worst / (double)ops;
}

static double kernel_ns_per_op(int prog, uint64_t ops, int threads)
{
    struct kthr t[2];
    pthread_t th[2];
    uint32_t repeat = (uint32_t)(ops / UNROLL);
    for (int i = 0; i < threads; i++) {
        t[i] = (struct kthr){prog, repeat, 0};
        pthread_create(&th[i], NULL, kthread, &t[i]);
    }
    double worst = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(th[i], NULL);
        if (t[i].ns_per_run < 0)
            return -1;
        if (t[i].ns_per_run > worst)
            worst = t[i].ns_per_run;
    }
    return worst / UNROLL;
}

/* One row: our op on m (warmed up first) beside the kernel program prog
 * (none if < 0), entries keys, threads threads. */
static void report_op(struct bench_ctx *ctx, struct bpfg_map *m, enum op op, int prog, const char *name,
                      uint32_t entries, uint64_t ops, int threads)
{
    char variant[32];
    snprintf(variant, sizeof(variant), "%u %dthr", entries, threads);
    ours_ns_per_op(m, op, entries - 1, ops / 8, threads); /* warm up */
    double ours = ours_ns_per_op(m, op, entries - 1, ops, threads);
    double kern = prog >= 0 ? kernel_ns_per_op(prog, ops, threads) : -1;
    bench_report(ctx, name, variant, ours, "ns/op", kern > 0 ? "kernel" : NULL, kern);
}

/* Closes what a suite opened (each fd if >= 0) and its map. */
static void close_suite(int prog, int kfd, int ctl, struct bpfg_map *m)
{
    int fds[] = {prog, kfd, ctl};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    bpfg_map_close(m);
}

static int bench_kv(struct bench_ctx *ctx, uint32_t type, uint32_t entries, const char *label)
{
    uint64_t ops = bench_quick(ctx) ? 64 * 1024 : 4 * 1024 * 1024;
    struct bpfg_map_spec s = {.type = type, .key_size = 4, .value_size = 8, .max_entries = entries, .name = "bench"};
    struct bpfg_map *m;
    int err = bpfg_map_create(&s, &m);
    if (err)
        return err;
    int kfd = kmap_create(type, 4, 8, entries), ctl = kmap_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1);
    if (kfd < 0 || ctl < 0) {
        bench_note(ctx, "kernel maps unavailable (%s); kernel figures skipped", strerror(kfd < 0 ? -kfd : -ctl));
    }
    uint64_t v = 1;
    for (uint32_t k = 0; k < entries; k++) {
        bpfg_map_update_elem(m, &k, &v, BPF_ANY);
        if (kfd >= 0 && type == BPF_MAP_TYPE_HASH)
            kmap_update(kfd, &k, &v);
    }
    /* arrays: "lookup" is what the LLVM JIT runs (inlined), "lookup call"
     * the helper the interpreter and other engines call */
    bool array = type == BPF_MAP_TYPE_ARRAY;
    const struct {
        enum op ours, kern;
        const char *name;
        bool run;
    } ops_list[] = {
        {array ? OP_INLINE : OP_LOOKUP, OP_LOOKUP, "lookup", true},
        {OP_LOOKUP, OP_LOOKUP, "lookup call", array},
        {OP_UPDATE, OP_UPDATE, "update", true},
        {OP_DELINS, OP_DELINS, "delete+insert", !array}, /* arrays have no delete */
    };
    for (size_t o = 0; o < sizeof(ops_list) / sizeof(ops_list[0]); o++) {
        if (!ops_list[o].run)
            continue;
        int prog = kfd >= 0 && ctl >= 0 ? kprog_load(ops_list[o].kern, kfd, ctl, entries - 1) : -1;
        if (kfd >= 0 && ctl >= 0 && prog < 0)
            bench_note(ctx, "kernel program load failed: %s", strerror(-prog));
        for (int threads = 1; threads <= 2; threads++) {
            char name[64];
            snprintf(name, sizeof(name), "%s %s", label, ops_list[o].name);
            report_op(ctx, m, ops_list[o].ours, prog, name, entries, ops, threads);
        }
        if (prog >= 0)
            close(prog);
    }
    close_suite(-1, kfd, ctl, m);
    return 0;
}

/* Per-CPU counters (maps/FORMAT.md "Per-CPU slots"): each op is a run
 * whose slot is claimed, and the same unclaimed (what a run cost before
 * claims, losing increments when threads share a CPU). */
static int bench_percpu(struct bench_ctx *ctx)
{
    uint64_t ops = bench_quick(ctx) ? 64 * 1024 : 4 * 1024 * 1024;
    const uint32_t entries = 1024;
    struct bpfg_map_spec s = {
        .type = BPF_MAP_TYPE_PERCPU_ARRAY, .key_size = 4, .value_size = 8, .max_entries = entries, .name = "bench"};
    struct bpfg_map *m;
    int err = bpfg_map_create(&s, &m);
    if (err)
        return err;
    int kfd = kmap_create(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, entries), ctl = kmap_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1);
    int prog = kfd >= 0 && ctl >= 0 ? kprog_load(OP_PCPU_ADD, kfd, ctl, entries - 1) : -1;
    if (prog < 0)
        bench_note(ctx, "kernel per-CPU program unavailable (%s)", strerror(prog < 0 ? -prog : EINVAL));
    bench_note(ctx, "percpu lookup+add: one run per op, slot claimed; unclaimed: the bare lookup (racy)");
    const struct {
        enum op op;
        const char *name;
    } list[] = {{OP_PCPU_ADD, "percpu_array lookup+add"}, {OP_PCPU_RAW, "percpu_array lookup+add unclaimed"}};
    for (size_t o = 0; o < sizeof(list) / sizeof(list[0]); o++)
        for (int threads = 1; threads <= 2; threads++)
            report_op(ctx, m, list[o].op, prog, list[o].name, entries, ops, threads);
    close_suite(prog, kfd, ctl, m);
    return 0;
}

/* ---- kernel maps shared with userspace programs ---- */

/* What a program in a target does with a kernel map (maps/map_kernel.c,
 * the code the payload runs, here in the bench process): an mmapable
 * array's lookup vs the same lookup in our array; a hash's lookup and
 * update through bpf() vs the kernel's program doing them. */
static int bench_kernel_array(struct bench_ctx *ctx, uint64_t ops)
{
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 1024};
    struct bpfg_map *ours, *shared;
    int kfd = kmap_create_mmapable(8, 1024);
    if (kfd < 0) {
        bench_note(ctx, "kernel mmapable array unavailable (%s); shared-map figures skipped", strerror(-kfd));
        return 0;
    }
    int err = bpfg_map_create(&s, &ours);
    if (!err && (err = bpfg_map_open_fd(kfd, &shared)))
        bpfg_map_close(ours);
    close(kfd);
    if (err)
        return err;
    ours_ns_per_op(shared, OP_LOOKUP, 1023, ops / 8, 1); /* warm up */
    double k = ours_ns_per_op(shared, OP_LOOKUP, 1023, ops, 1);
    double o = ours_ns_per_op(ours, OP_LOOKUP, 1023, ops, 1);
    bench_report(ctx, "kernel array (mmapped) lookup", "1024 from target", k, "ns/op", "bpfgraft array", o);
    bpfg_map_close(shared);
    bpfg_map_close(ours);
    return 0;
}

static int bench_kernel_hash(struct bench_ctx *ctx, uint64_t ops)
{
    int kfd = kmap_create(BPF_MAP_TYPE_HASH, 4, 8, 1024), ctl = kmap_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1);
    struct bpfg_map *shared = NULL;
    int err = kfd < 0 || ctl < 0 ? (kfd < 0 ? kfd : ctl) : bpfg_map_open_fd(kfd, &shared);
    uint64_t v = 1;
    for (uint32_t k = 0; !err && k < 1024; k++)
        kmap_update(kfd, &k, &v);
    static const struct {
        enum op op;
        const char *name;
    } list[] = {{OP_LOOKUP, "kernel hash lookup via bpf()"}, {OP_UPDATE, "kernel hash update via bpf()"}};
    for (size_t i = 0; !err && i < 2; i++) {
        int prog = kprog_load(list[i].op, kfd, ctl, 1023);
        double mine = ours_ns_per_op(shared, list[i].op, 1023, ops, 1);
        double kern = prog >= 0 ? kernel_ns_per_op(prog, ops, 1) : -1;
        bench_report(ctx, list[i].name, "1024 from target", mine, "ns/op", kern > 0 ? "kernel prog" : NULL, kern);
        if (prog >= 0)
            close(prog);
    }
    if (err)
        bench_note(ctx, "kernel hash unavailable (%s); shared-map figures skipped", strerror(-err));
    bpfg_map_close(shared);
    if (kfd >= 0)
        close(kfd);
    if (ctl >= 0)
        close(ctl);
    return 0;
}

static int bench_shared(struct bench_ctx *ctx)
{
    bench_note(ctx, "kernel maps from a target: maps/map_kernel.c (the payload's code) run in this process");
    int err = bench_kernel_array(ctx, bench_quick(ctx) ? 64 * 1024 : 4 * 1024 * 1024);
    return err ? err : bench_kernel_hash(ctx, bench_quick(ctx) ? 4 * 1024 : 256 * 1024);
}

/* ---- bloom filter and LPM trie: lookups of present keys ---- */

static int fill_both(struct bpfg_map *m, int kfd, uint32_t type, uint32_t entries)
{
    uint64_t v = 1;
    for (uint32_t k = 0; k < entries; k++) {
        uint32_t key[2] = {24, lpm_addr(k)};
        int err = type == BPF_MAP_TYPE_BLOOM_FILTER ? bpfg_map_update_copy(m, NULL, &k, BPF_ANY)
                                                    : bpfg_map_update_copy(m, key, &v, BPF_ANY);
        if (err)
            return err;
        if (kfd >= 0)
            kmap_update(kfd, type == BPF_MAP_TYPE_BLOOM_FILTER ? NULL : (void *)key,
                        type == BPF_MAP_TYPE_BLOOM_FILTER ? (void *)&k : (void *)&v);
    }
    return 0;
}

static int bench_set(struct bench_ctx *ctx, uint32_t type, uint32_t entries, const char *label)
{
    uint64_t ops = bench_quick(ctx) ? 64 * 1024 : 4 * 1024 * 1024;
    bool bloom = type == BPF_MAP_TYPE_BLOOM_FILTER;
    struct bpfg_map_spec s = {.type = type,
                              .key_size = bloom ? 0 : 8,
                              .value_size = bloom ? 4 : 8,
                              .max_entries = entries,
                              .map_flags = bloom ? 0 : BPF_F_NO_PREALLOC,
                              .name = "bench"};
    struct bpfg_map *m;
    int err = bpfg_map_create(&s, &m);
    if (err)
        return err;
    int kfd = kmap_create(type, s.key_size, s.value_size, entries), ctl = kmap_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1);
    if (kfd < 0 || ctl < 0)
        bench_note(ctx, "kernel maps unavailable (%s); kernel figures skipped", strerror(kfd < 0 ? -kfd : -ctl));
    if ((err = fill_both(m, kfd, type, entries))) {
        bpfg_map_close(m);
        return err;
    }
    enum op op = bloom ? OP_PEEK : OP_LPM;
    int prog = kfd >= 0 && ctl >= 0 ? kprog_load(op, kfd, ctl, entries - 1) : -1;
    if (kfd >= 0 && ctl >= 0 && prog < 0)
        bench_note(ctx, "kernel program load failed: %s", strerror(-prog));
    for (int threads = 1; threads <= 2; threads++) {
        char name[64], variant[32];
        snprintf(name, sizeof(name), "%s %s", label, bloom ? "peek" : "lookup");
        snprintf(variant, sizeof(variant), "%u %dthr", entries, threads);
        ours_ns_per_op(m, op, entries - 1, ops / 8, threads); /* warm up */
        double ours = ours_ns_per_op(m, op, entries - 1, ops, threads);
        double kern = prog >= 0 ? kernel_ns_per_op(prog, ops, threads) : -1;
        bench_report(ctx, name, variant, ours, "ns/op", kern > 0 ? "kernel" : NULL, kern);
    }
    if (prog >= 0)
        close(prog);
    if (kfd >= 0)
        close(kfd);
    if (ctl >= 0)
        close(ctl);
    bpfg_map_close(m);
    return 0;
}

/* ---- ring buffer ---- */

struct rbc {
    struct bpfg_ringbuf_view view;
    struct bpfg_map *m;
    _Atomic int stop;
    uint64_t got;
};

static int count_cb(void *ctx, void *data, size_t size)
{
    (void)data;
    (void)size;
    ++*(uint64_t *)ctx;
    return 0;
}

/* An empty ring: the consumer waits ~1.5 us (pause is ~46 ns on the VM
 * measured) before it looks again, as a poller does. Re-reading
 * producer_pos after every pause took its cache line from the producer on
 * nearly every record (perf: the producer's time went to the lock's
 * compare-and-swap draining that store), which measured the line's round
 * trip between the CPUs, for the kernel's producer and ours alike. */
#define RB_IDLE_PAUSES 32

static void *rb_consumer(void *arg)
{
    struct rbc *c = arg;
    while (!atomic_load_explicit(&c->stop, memory_order_relaxed)) {
        int n = c->m ? bpfg_ringbuf_consume(c->m, count_cb, &c->got)
                     : bpfg_ringbuf_consume_view(&c->view, count_cb, &c->got);
        for (int i = 0; n == 0 && i < RB_IDLE_PAUSES; i++)
            __builtin_ia32_pause();
    }
    if (c->m)
        bpfg_ringbuf_consume(c->m, count_cb, &c->got);
    else
        bpfg_ringbuf_consume_view(&c->view, count_cb, &c->got);
    return NULL;
}

#define RB_SIZE (1u << 22)

struct rbp {
    struct bpfg_map *m;
    uint64_t events;
    double cpu_ns; /* the thread's CPU time per output */
};

/* A ring run's figures: records consumed per second of wall time, and the
 * slower producer's CPU time per output (refused ones included, on both
 * sides), which a busy machine disturbs less than the wall time. */
struct rb_result {
    double ev_s, cpu_ns;
};

/* One output per event, a record refused when the ring is full, as the
 * kernel's program does (it cannot retry): retrying here made ours
 * deliver every record while the kernel's run ended early with the rest
 * dropped, a shorter wall time for fewer records. */
static void *rb_producer(void *arg)
{
    struct rbp *p = arg;
    uint8_t rec[64] = {1};
    uint64_t t0 = thread_cpu_ns();
    for (uint64_t sent = 0; sent < p->events; sent++)
        bpfg_ringbuf_output(p->m, rec, sizeof(rec), BPF_RB_NO_WAKEUP);
    p->cpu_ns = (double)(thread_cpu_ns() - t0) / (double)p->events;
    return NULL;
}

/* Our ring: `producers` threads each output `events` records while one
 * consumer thread reads; events/s = records consumed / wall time. */
static int ours_ringbuf(struct bench_ctx *ctx, uint64_t events, int producers, struct rb_result *res)
{
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_RINGBUF, .max_entries = RB_SIZE, .name = "rb"};
    struct bpfg_map *m;
    int err = bpfg_map_create(&s, &m);
    if (err)
        return err;
    struct rbc c = {.m = m};
    struct rbp p[2] = {{m, events, 0}, {m, events, 0}};
    pthread_t cons, prod[2];
    uint64_t t0 = bench_now_ns();
    pthread_create(&cons, NULL, rb_consumer, &c);
    for (int i = 0; i < producers; i++)
        pthread_create(&prod[i], NULL, rb_producer, &p[i]);
    res->cpu_ns = 0;
    for (int i = 0; i < producers; i++) {
        pthread_join(prod[i], NULL);
        if (p[i].cpu_ns > res->cpu_ns)
            res->cpu_ns = p[i].cpu_ns;
    }
    atomic_store(&c.stop, 1);
    pthread_join(cons, NULL);
    res->ev_s = (double)c.got / ((double)(bench_now_ns() - t0) / 1e9);
    bench_note(ctx, "bpfgraft ringbuf %dp: %llu of %llu records consumed (rest dropped when full)", producers,
               (unsigned long long)c.got, (unsigned long long)events * (uint64_t)producers);
    bpfg_map_close(m);
    return 0;
}

/* Kernel: `producers` threads run a BPF program that outputs (test_run),
 * our view consumer reads the kernel's mmapped ring (same layout). Records
 * dropped when the ring is full are not counted. -1 if unavailable. */
static struct rb_result kernel_ringbuf_run(struct bench_ctx *ctx, int kfd, int prog, uint64_t events, int producers)
{
    long pg = sysconf(_SC_PAGESIZE);
    struct rb_result res = {-1, -1};
    void *cons = mmap(NULL, (size_t)pg, PROT_READ | PROT_WRITE, MAP_SHARED, kfd, 0);
    uint8_t *prod = mmap(NULL, (size_t)pg + 2 * RB_SIZE, PROT_READ, MAP_SHARED, kfd, pg);
    if (cons != MAP_FAILED && prod != MAP_FAILED) {
        struct rbc kc = {.view = {cons, (const unsigned long *)prod, prod + pg, RB_SIZE}};
        struct kthr t[2];
        pthread_t th, kth[2];
        uint64_t k0 = bench_now_ns();
        pthread_create(&th, NULL, rb_consumer, &kc);
        for (int i = 0; i < producers; i++) {
            t[i] = (struct kthr){prog, (uint32_t)(events / UNROLL), 0};
            pthread_create(&kth[i], NULL, kthread, &t[i]);
        }
        for (int i = 0; i < producers; i++) {
            pthread_join(kth[i], NULL);
            if (t[i].ns_per_run / UNROLL > res.cpu_ns)
                res.cpu_ns = t[i].ns_per_run / UNROLL;
        }
        atomic_store(&kc.stop, 1);
        pthread_join(th, NULL);
        res.ev_s = (double)kc.got / ((double)(bench_now_ns() - k0) / 1e9);
        bench_note(ctx, "kernel ringbuf %dp: %llu of %llu records consumed (rest dropped when full)", producers,
                   (unsigned long long)kc.got, (unsigned long long)events * (uint64_t)producers);
    }
    if (cons != MAP_FAILED)
        munmap(cons, (size_t)pg);
    if (prod != MAP_FAILED)
        munmap(prod, (size_t)pg + 2 * RB_SIZE);
    return res;
}

static struct rb_result kernel_ringbuf(struct bench_ctx *ctx, uint64_t events, int producers)
{
    struct rb_result res = {-1, -1};
    int kfd = kmap_create(BPF_MAP_TYPE_RINGBUF, 0, 0, RB_SIZE), ctl = kmap_create(BPF_MAP_TYPE_ARRAY, 4, 8, 1);
    int prog = kfd >= 0 && ctl >= 0 ? kprog_load(OP_RBOUT, kfd, ctl, 0) : -1;
    if (prog >= 0) {
        res = kernel_ringbuf_run(ctx, kfd, prog, events, producers);
        close(prog);
    } else {
        bench_note(ctx, "kernel ringbuf program unavailable (%s)", strerror(prog < 0 ? -prog : EINVAL));
    }
    if (kfd >= 0)
        close(kfd);
    if (ctl >= 0)
        close(ctl);
    return res;
}

/* 64-byte records, one consumer, one and two producers (each producing
 * `events` records), ours and the kernel's in turn. */
static int bench_ringbuf(struct bench_ctx *ctx)
{
    uint64_t events = bench_quick(ctx) ? 200000 : 20000000;
    for (int producers = 1; producers <= 2; producers++) {
        struct rb_result ours, kern;
        int err = ours_ringbuf(ctx, events, producers, &ours);
        if (err)
            return err;
        kern = kernel_ringbuf(ctx, events, producers);
        char variant[16];
        snprintf(variant, sizeof(variant), "%dp/1c", producers);
        bench_report(ctx, "ringbuf output 64B", variant, ours.ev_s / 1e6, "Mev/s", kern.ev_s > 0 ? "kernel" : NULL,
                     kern.ev_s / 1e6);
        bench_report(ctx, "ringbuf output 64B producer cpu", variant, ours.cpu_ns, "ns/op",
                     kern.cpu_ns > 0 ? "kernel" : NULL, kern.cpu_ns);
    }
    return 0;
}

static int run(struct bench_ctx *ctx)
{
    bench_note(ctx,
               "kernel figures: socket-filter BPF program, %d unrolled ops per run, "
               "BPF_PROG_TEST_RUN with repeat; ns/op = duration/%d (prologue amortised)",
               UNROLL, UNROLL);
    bench_note(ctx,
               "keys ((base+i)*0x9E3779B1) & (entries-1) on both sides, each run of %d taking base from a "
               "cursor its threads share (the kernel's ctl[0]); ours: CPU time per thread "
               "(the kernel's test run leaves out the time it yields the CPU); 2thr: the slower thread",
               UNROLL);
    bench_note(ctx, "the kernel's verifier inlines its array lookups: its 'array lookup call' figure is "
                    "inline code, not a call");
    bench_note(ctx, "array lookup: inlined as the LLVM JIT emits it (bounds check, address); "
                    "array lookup call: bpfg_map_lookup_elem, the helper other engines call");
    uint32_t big = bench_quick(ctx) ? 1u << 16 : 1u << 20;
    int err;
    if ((err = bench_kv(ctx, BPF_MAP_TYPE_ARRAY, 1024, "array")) ||
        (err = bench_kv(ctx, BPF_MAP_TYPE_ARRAY, big, "array")) ||
        (err = bench_kv(ctx, BPF_MAP_TYPE_HASH, 1024, "hash")) || (err = bench_kv(ctx, BPF_MAP_TYPE_HASH, big, "hash")))
        return err;
    if ((err = bench_percpu(ctx)) || (err = bench_shared(ctx)))
        return err;
    bench_note(ctx, "bloom: peeks of pushed u32 values (5 hashes); lpm_trie: /32 lookups under /24 prefixes");
    if ((err = bench_set(ctx, BPF_MAP_TYPE_BLOOM_FILTER, 1024, "bloom")) ||
        (err = bench_set(ctx, BPF_MAP_TYPE_BLOOM_FILTER, 65536, "bloom")) ||
        (err = bench_set(ctx, BPF_MAP_TYPE_LPM_TRIE, 1024, "lpm_trie")) ||
        (err = bench_set(ctx, BPF_MAP_TYPE_LPM_TRIE, 65536, "lpm_trie")))
        return err;
    return bench_ringbuf(ctx);
}

const struct bench_suite bench_suite_maps = {"maps", "map lookup/update/delete and ringbuf vs kernel", run};
