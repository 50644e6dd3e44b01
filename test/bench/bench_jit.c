/* bpfgraft-bench jit: the x86-64 JIT against native C (gcc -O2), the
 * kernel's JIT (BPF_PROG_TEST_RUN with repeat, where its verifier accepts
 * the program) and the interpreter, plus compile time per program.
 *
 * The programs of programs.h take r1 = mem, r2 = MEM_SIZE. In the kernel
 * they run as XDP programs whose prologue looks up the memory as the value
 * of a one-entry array map (an 8 KiB packet is beyond test_run's limit).
 * map_loop is map-heavy: 4096 lookups in a 64-entry array map (helper 1,
 * bpf_map_lookup_elem: a call in the interpreter, inlined by the kernel's
 * verifier and, as the server has them do for arrays it maps, our JITs).
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "asm.h"
#include "bench.h"
#include "vm.h"
#include "x86jit.h"
#include "jit_run.h" /* test/helpers: running the code here */
#ifdef BPFGRAFT_HAVE_LLVM
#include "llvmjit.h"
#endif

#include "programs.h"
#ifdef BENCH_HAVE_UBPF
#include <ubpf.h> /* third_party/ubpf: a peer JIT on the same bytecode */
#endif

#define MAP_ENTRIES 64
#define MAP_ITERS 4096

/* ---- map_loop: v = lookup(i % 64); if (v) *v += i; r0 += *v ---- */
struct bench_array {
    uint32_t max_entries;
    uint64_t values[MAP_ENTRIES];
};

static struct bench_array array_map = {MAP_ENTRIES, {0}};

static __attribute__((noinline)) void *array_lookup(struct bench_array *m, const uint32_t *key)
{
    return *key < m->max_entries ? &m->values[*key] : NULL;
}

static uint64_t helper_lookup(uint64_t map, uint64_t key, uint64_t r3, uint64_t r4, uint64_t r5, void *user)
{
    (void)r3, (void)r4, (void)r5, (void)user;
    return (uintptr_t)array_lookup((struct bench_array *)(uintptr_t)map, (const uint32_t *)(uintptr_t)key);
}

static __attribute__((noinline)) uint64_t map_native(uint8_t *mem, size_t len)
{
    (void)mem, (void)len;
    uint64_t r = 0;
    for (uint32_t i = 0; i < MAP_ITERS; i++) {
        uint32_t key = i % MAP_ENTRIES;
        uint64_t *v = array_lookup(&array_map, &key);
        if (v) {
            *v += i;
            r += *v;
        }
    }
    return r;
}

#define I(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

/* map fd (or, for our engines, index 0 for the resolver) in insns 2..3 */
static const struct bpf_insn map_prog[] = {
    I(BPF_ALU64 | BPF_MOV | BPF_K, 6, 0, 0, 0), /* i = 0 */
    I(BPF_ALU64 | BPF_MOV | BPF_K, 7, 0, 0, 0), /* r = 0 */
    /* loop: */
    I(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0),
    I(BPF_ALU64 | BPF_AND | BPF_K, 1, 0, 0, MAP_ENTRIES - 1),
    I(BPF_STX | BPF_MEM | BPF_W, 10, 1, -4, 0),
    I(BPF_LD | BPF_IMM | BPF_DW, 1, BPF_PSEUDO_MAP_FD, 0, 0),
    I(0, 0, 0, 0, 0),
    I(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0),
    I(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -4),
    I(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
    I(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 4, 0),
    I(BPF_LDX | BPF_MEM | BPF_DW, 1, 0, 0, 0),
    I(BPF_ALU64 | BPF_ADD | BPF_X, 1, 6, 0, 0),
    I(BPF_STX | BPF_MEM | BPF_DW, 0, 1, 0, 0),
    I(BPF_ALU64 | BPF_ADD | BPF_X, 7, 1, 0, 0),
    I(BPF_ALU64 | BPF_ADD | BPF_K, 6, 0, 0, 1),
    I(BPF_JMP | BPF_JLT | BPF_K, 6, 0, -15, MAP_ITERS),
    I(BPF_ALU64 | BPF_MOV | BPF_X, 0, 7, 0, 0),
    I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
};

static int resolve_map(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    (void)imm0, (void)imm1;
    if (src_reg != BPF_PSEUDO_MAP_FD)
        return -EINVAL;
    *value = (uintptr_t)user;
    return 0;
}

/* What the server would tell the JITs about map_loop's map: an array
 * whose values live at a known address, so lookups are inlined. */
static int describe_map(void *user, uint64_t value, struct bpfg_jit_map_info *info)
{
    (void)user;
    if (value != (uintptr_t)&array_map)
        return -ENOENT;
    *info = (struct bpfg_jit_map_info){
        .type = BPF_MAP_TYPE_ARRAY,
        .key_size = 4,
        .value_size = 8,
        .max_entries = MAP_ENTRIES,
        .value_base = (uintptr_t)array_map.values,
    };
    return 0;
}

/* ---- kernel side -------------------------------------------------------- */

struct kernel {
    int mem_map;   /* array, 1 entry of MEM_SIZE bytes: the programs' memory */
    int array_map; /* array, MAP_ENTRIES x u64: map_loop's map */
};

/* XDP prologue: r1 = lookup(mem_map, 0), r2 = MEM_SIZE, r0 = 0. */
static size_t kernel_prologue(struct bpf_insn *p, int mem_map)
{
    size_t i = 0;
    p[i++] = I(BPF_ST | BPF_MEM | BPF_W, 10, 0, -4, 0);
    p[i++] = I(BPF_LD | BPF_IMM | BPF_DW, 1, BPF_PSEUDO_MAP_FD, 0, mem_map);
    p[i++] = I(0, 0, 0, 0, 0);
    p[i++] = I(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0);
    p[i++] = I(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -4);
    p[i++] = I(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
    p[i++] = I(BPF_JMP | BPF_JNE | BPF_K, 0, 0, 1, 0);
    p[i++] = I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    p[i++] = I(BPF_ALU64 | BPF_MOV | BPF_X, 1, 0, 0, 0);
    p[i++] = I(BPF_ALU64 | BPF_MOV | BPF_K, 2, 0, 0, MEM_SIZE);
    p[i++] = I(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0);
    return i;
}

/* Loads the program in the kernel and times it; *ns < 0 if refused. */
static int kernel_time(struct bench_ctx *ctx, const struct kernel *k, const char *name, const struct bpf_insn *insns,
                       size_t n, const uint8_t *mem, bool quick, double *ns, double *load_us, uint32_t *result)
{
    struct bpf_insn *p = calloc(n + 16, sizeof(*p));
    if (!p)
        return -ENOMEM;
    size_t pro = kernel_prologue(p, k->mem_map);
    memcpy(p + pro, insns, n * sizeof(*p));
    for (size_t i = pro; i < pro + n; i++)
        if (p[i].code == (BPF_LD | BPF_IMM | BPF_DW) && p[i].src_reg == BPF_PSEUDO_MAP_FD)
            p[i].imm = k->array_map;
    uint32_t key = 0;
    *ns = -1;
    int ret = bpf_map_update_elem(k->mem_map, &key, mem, BPF_ANY);
    if (ret) {
        free(p);
        return ret;
    }
    uint64_t t0 = bench_now_ns();
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, name, "GPL", p, pro + n, NULL);
    *load_us = (double)(bench_now_ns() - t0) / 1e3;
    free(p);
    if (fd < 0) {
        bench_note(ctx, "%s: the kernel verifier refuses the program (%s)", name, strerror(errno));
        return 0;
    }
    uint8_t pkt[64] = {0};
    LIBBPF_OPTS(bpf_test_run_opts, topts, .data_in = pkt, .data_size_in = sizeof(pkt), .repeat = quick ? 20 : 2000);
    ret = bpf_prog_test_run_opts(fd, &topts);
    close(fd);
    if (ret)
        return -errno;
    *ns = topts.duration;
    *result = topts.retval;
    return 0;
}

/* ---- timing --------------------------------------------------------------- */

static double time_native_fn(uint64_t (*native)(uint8_t *, size_t), uint8_t *mem, uint64_t min_ns, uint64_t *result)
{
    uint64_t (*volatile fn)(uint8_t *, size_t) = native;
    double ns;
    bench_time_runs(bench_run_native, (void *)&fn, mem, MEM_SIZE, 16, min_ns, result, &ns);
    return ns;
}

/* A JIT image and the helpers it calls: what run_jit runs. */
struct jit_subject {
    const struct bpfg_x86jit_image *img;
    const struct bpfg_x86jit_helper *table;
};

static int run_jit(void *subject, uint8_t *mem, size_t len, uint64_t *result)
{
    const struct jit_subject *s = subject;
    return bpfg_x86jit_run(s->img, mem, len, s->table, NULL, result, NULL);
}

static int time_jit(const struct bpfg_x86jit_image *img, const struct bpfg_x86jit_helper *table, uint8_t *mem,
                    uint64_t min_ns, uint64_t *result, double *ns)
{
    struct jit_subject s = {img, table};
    return bench_time_runs(run_jit, &s, mem, MEM_SIZE, 16, min_ns, result, ns);
}

static int run_interp(void *vm, uint8_t *mem, size_t len, uint64_t *result)
{
    return bpfg_vm_exec(vm, mem, len, result);
}

static int time_interp(struct bpfg_vm *vm, uint8_t *mem, uint64_t min_ns, uint64_t *result, double *ns)
{
    return bench_time_runs(run_interp, vm, mem, MEM_SIZE, 4, min_ns, result, ns);
}

/* ---- one case ------------------------------------------------------------- */

struct jit_case {
    const char *name;
    const struct bpf_insn *insns;
    size_t n;
    uint64_t (*native)(uint8_t *, size_t);
    void (*init)(uint8_t *);
    bool uses_map;
    uint64_t (*native_loop)(uint8_t *, size_t); /* native the way the program does it, or NULL */
};

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

#ifdef BENCH_HAVE_UBPF
/* ---- the peer: uBPF's x86-64 JIT on the same bytecode ---------------------- */

#define PEER_ROUNDS 6

static uint64_t ubpf_lookup(uint64_t map, uint64_t key, uint64_t r3, uint64_t r4, uint64_t r5)
{
    return helper_lookup(map, key, r3, r4, r5, NULL);
}

static int run_ubpf(void *subject, uint8_t *mem, size_t len, uint64_t *result)
{
    *result = (*(ubpf_jit_fn *)subject)(mem, len);
    return 0;
}

/* uBPF has no map references: map_loop's lddw becomes the map's address,
 * as our resolver makes it, and its lookups a helper call (uBPF inlines
 * none). NULL, with the reason on stderr, if uBPF refuses the program. */
static struct ubpf_vm *ubpf_prepare(const struct jit_case *c, ubpf_jit_fn *fn)
{
    struct bpf_insn *p = malloc(c->n * sizeof(*p));
    struct ubpf_vm *vm = ubpf_create();
    char *err = NULL;
    if (!p || !vm)
        goto fail;
    memcpy(p, c->insns, c->n * sizeof(*p));
    for (size_t i = 0; i + 1 < c->n; i++)
        if (p[i].code == (BPF_LD | BPF_IMM | BPF_DW) && p[i].src_reg == BPF_PSEUDO_MAP_FD) {
            p[i].src_reg = 0;
            p[i].imm = (int32_t)(uint32_t)(uintptr_t)&array_map;
            p[i + 1].imm = (int32_t)(uint32_t)((uintptr_t)&array_map >> 32);
        }
    ubpf_register(vm, BPF_FUNC_map_lookup_elem, "map_lookup_elem", ubpf_lookup);
    if (ubpf_load(vm, p, (uint32_t)(c->n * sizeof(*p)), &err) || !(*fn = ubpf_compile(vm, &err)))
        goto fail;
    free(p);
    return vm;
fail:
    fprintf(stderr, "bench jit: %s: ubpf: %s\n", c->name, err ? err : "out of memory");
    free(err);
    free(p);
    if (vm)
        ubpf_destroy(vm);
    return NULL;
}

/* The peer row: medians of PEER_ROUNDS interleaved rounds of native, our
 * engines (llvm may be NULL) and uBPF; uBPF against native, our best
 * engine against native and against uBPF. */
static int report_peer(struct bench_ctx *ctx, const struct jit_case *c, const struct jit_subject *x86,
                       const struct jit_subject *llvm, uint8_t *mem, uint64_t min_ns)
{
    ubpf_jit_fn fn = NULL;
    struct ubpf_vm *vm = ubpf_prepare(c, &fn);
    if (!vm)
        return 0; /* reported: the row is missing, the suite goes on */
    double t[4][PEER_ROUNDS];
    uint64_t r[4] = {0};
    uint64_t (*volatile native)(uint8_t *, size_t) = c->native;
    int ret = 0;
    for (int k = 0; k < PEER_ROUNDS && !ret; k++) {
        if (c->init)
            c->init(mem);
        bench_time_runs(bench_run_native, (void *)&native, mem, MEM_SIZE, 16, min_ns, &r[0], &t[0][k]);
        ret = bench_time_runs(run_jit, (void *)x86, mem, MEM_SIZE, 16, min_ns, &r[1], &t[1][k]);
        if (!ret && llvm)
            ret = bench_time_runs(run_jit, (void *)llvm, mem, MEM_SIZE, 16, min_ns, &r[2], &t[2][k]);
        if (!ret)
            ret = bench_time_runs(run_ubpf, &fn, mem, MEM_SIZE, 16, min_ns, &r[3], &t[3][k]);
    }
    ubpf_destroy(vm);
    if (ret)
        return ret;
    if (!c->uses_map && r[3] != r[0]) {
        fprintf(stderr, "bench jit: %s: ubpf result %llu differs from native %llu\n", c->name, (unsigned long long)r[3],
                (unsigned long long)r[0]);
        return -EDOM;
    }
    double native_ns = median(t[0], PEER_ROUNDS), x86_ns = median(t[1], PEER_ROUNDS);
    double llvm_ns = llvm ? median(t[2], PEER_ROUNDS) : -1, peer_ns = median(t[3], PEER_ROUNDS);
    bool llvm_best = llvm && llvm_ns < x86_ns;
    const char *best = llvm_best ? "best (llvmjit)" : "best (x86jit)";
    double best_ns = llvm_best ? llvm_ns : x86_ns;
    bench_report(ctx, c->name, "peer ubpf-jit", peer_ns, "ns/run", "native", native_ns);
    bench_report(ctx, c->name, best, best_ns, "ns/run", "native", native_ns);
    bench_report(ctx, c->name, best, best_ns, "ns/run", "peer ubpf-jit", peer_ns);
    return 0;
}
#endif

/* One compile of c into code, as bpfg_x86jit_compile. */
typedef int (*jit_compile_fn)(const struct jit_case *c, const void *opts, struct bpfg_x86jit_code *code, char *err,
                              size_t len);

static int compile_x86(const struct jit_case *c, const void *opts, struct bpfg_x86jit_code *code, char *err, size_t len)
{
    return bpfg_x86jit_compile(c->insns, c->n, opts, code, err, len);
}

#ifdef BPFGRAFT_HAVE_LLVM
static int compile_llvm(const struct jit_case *c, const void *opts, struct bpfg_x86jit_code *code, char *err,
                        size_t len)
{
    return bpfg_llvmjit_compile(c->insns, c->n, opts, code, NULL, err, len);
}
#endif

/* Compiles c reps times, each freeing *code first, and maps the last
 * one's code into *img: *us the mean microseconds of a compile. A failed
 * compile is printed as "bench jit: CASE: LABELerror". */
static int compile_image(jit_compile_fn compile, const void *opts, const char *label, const struct jit_case *c,
                         int reps, struct bpfg_x86jit_code *code, struct bpfg_x86jit_image *img, double *us)
{
    char err[256];
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < reps; i++) {
        bpfg_x86jit_code_free(code);
        int ret = compile(c, opts, code, err, sizeof(err));
        if (ret) {
            fprintf(stderr, "bench jit: %s: %s%s\n", c->name, label, err);
            return ret;
        }
    }
    *us = (double)(bench_now_ns() - t0) / reps / 1e3;
    return bpfg_x86jit_map_exec(code, img);
}

/* Where native calls glibc, the JITs also against C doing the same work
 * the same way (c->native_loop: byte and word loops). */
static int report_same_way(struct bench_ctx *ctx, const struct jit_case *c, uint8_t *mem, uint64_t min_ns,
                           uint64_t native_r, double native_ns, double jit_ns, double llvm_ns)
{
    if (!c->native_loop)
        return 0;
    uint64_t loop_r;
    if (c->init)
        c->init(mem);
    double loop_ns = time_native_fn(c->native_loop, mem, min_ns, &loop_r);
    if (loop_r != native_r) {
        fprintf(stderr, "bench jit: %s: native-loop result %llu differs from native %llu\n", c->name,
                (unsigned long long)loop_r, (unsigned long long)native_r);
        return -EDOM;
    }
    bench_report(ctx, c->name, "native-loop", loop_ns, "ns/run", "native", native_ns);
    if (llvm_ns > 0)
        bench_report(ctx, c->name, "llvmjit", llvm_ns, "ns/run", "native-loop", loop_ns);
    bench_report(ctx, c->name, "x86jit", jit_ns, "ns/run", "native-loop", loop_ns);
    return 0;
}

static int run_case(struct bench_ctx *ctx, const struct kernel *k, const struct jit_case *c, uint8_t *mem)
{
    bool quick = bench_quick(ctx);
    uint64_t min_ns = quick ? 10000000ull : 300000000ull;
    struct bpfg_x86jit_opts opts = {.resolver = resolve_map, .resolver_user = &array_map, .map_info = describe_map};
    struct bpfg_x86jit_helper table[BPFG_MAX_HELPERS] = {{0}};
    struct bpfg_x86jit_code code = {0};
    struct bpfg_x86jit_image img = {0};
#ifdef BPFGRAFT_HAVE_LLVM
    struct bpfg_x86jit_code lcode = {0};
    struct bpfg_x86jit_image limg = {0};
#endif
    struct bpfg_vm *vm = NULL;
    int ret;

    bpfg_x86jit_allow_helper(&opts, BPF_FUNC_map_lookup_elem);
    table[BPF_FUNC_map_lookup_elem].fn = helper_lookup;

    /* compile time: the mean of many compiles of the same program */
    int reps = quick ? 20 : 2000;
    double compile_us;
    ret = compile_image(compile_x86, &opts, "", c, reps, &code, &img, &compile_us);
    if (ret)
        goto out;

    vm = bpfg_vm_new();
    if (!vm) {
        ret = -ENOMEM;
        goto out;
    }
    bpfg_vm_register_helper(vm, BPF_FUNC_map_lookup_elem, "map_lookup_elem", helper_lookup, NULL);
    bpfg_vm_set_ld64_resolver(vm, resolve_map, &array_map);
    bpfg_vm_set_checked(vm, false);
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < reps && !ret; i++)
        ret = bpfg_vm_load(vm, c->insns, c->n);
    double interp_load_us = (double)(bench_now_ns() - t0) / reps / 1e3;
    if (ret) {
        fprintf(stderr, "bench jit: %s: %s\n", c->name, bpfg_vm_error(vm));
        goto out;
    }

#ifdef BPFGRAFT_HAVE_LLVM
    /* the LLVM JIT: compile time per program (fewer reps: milliseconds) */
    struct bpfg_llvmjit_opts lopts = {.jit = opts};
    int lreps = quick ? 3 : 50;
    double llvm_compile_us;
    ret = compile_image(compile_llvm, &lopts, "llvm: ", c, lreps, &lcode, &limg, &llvm_compile_us);
    if (ret)
        goto out;
    uint64_t llvm_r;
    double llvm_ns;
#endif
    uint64_t native_r, jit_r, interp_r;
    uint32_t kernel_r = 0;
    double native_ns, jit_ns, interp_ns, kernel_ns, kernel_load_us = 0;
    memset(mem, 0, MEM_SIZE);
    if (c->init)
        c->init(mem);
    memset(array_map.values, 0, sizeof(array_map.values));
    native_ns = time_native_fn(c->native, mem, min_ns, &native_r);
    memset(array_map.values, 0, sizeof(array_map.values));
    ret = time_jit(&img, table, mem, min_ns, &jit_r, &jit_ns);
#ifdef BPFGRAFT_HAVE_LLVM
    if (!ret) {
        memset(array_map.values, 0, sizeof(array_map.values));
        ret = time_jit(&limg, table, mem, min_ns, &llvm_r, &llvm_ns);
    }
#endif
    if (!ret) {
        memset(array_map.values, 0, sizeof(array_map.values));
        ret = time_interp(vm, mem, min_ns / 3, &interp_r, &interp_ns);
    }
    if (ret) {
        fprintf(stderr, "bench jit: %s: run failed: %s\n", c->name, strerror(-ret));
        goto out;
    }
    /* map_loop's result depends on the map's history: compare single runs */
    if (c->uses_map) {
        memset(array_map.values, 0, sizeof(array_map.values));
        native_r = map_native(mem, MEM_SIZE);
        memset(array_map.values, 0, sizeof(array_map.values));
        bpfg_x86jit_run(&img, mem, MEM_SIZE, table, NULL, &jit_r, NULL);
#ifdef BPFGRAFT_HAVE_LLVM
        memset(array_map.values, 0, sizeof(array_map.values));
        bpfg_x86jit_run(&limg, mem, MEM_SIZE, table, NULL, &llvm_r, NULL);
#endif
        memset(array_map.values, 0, sizeof(array_map.values));
        bpfg_vm_exec(vm, mem, MEM_SIZE, &interp_r);
    }
    if (jit_r != native_r || interp_r != native_r) {
        fprintf(stderr, "bench jit: %s: results differ (native %llu, x86 JIT %llu, interp %llu)\n", c->name,
                (unsigned long long)native_r, (unsigned long long)jit_r, (unsigned long long)interp_r);
        ret = -EDOM;
        goto out;
    }
#ifdef BPFGRAFT_HAVE_LLVM
    if (llvm_r != native_r) {
        fprintf(stderr, "bench jit: %s: results differ (native %llu, LLVM JIT %llu)\n", c->name,
                (unsigned long long)native_r, (unsigned long long)llvm_r);
        ret = -EDOM;
        goto out;
    }
#endif
    if (c->init)
        c->init(mem);
    ret = kernel_time(ctx, k, c->name, c->insns, c->n, mem, quick, &kernel_ns, &kernel_load_us, &kernel_r);
    if (ret) {
        fprintf(stderr, "bench jit: %s: kernel: %s\n", c->name, strerror(-ret));
        goto out;
    }
    if (kernel_ns >= 0 && !c->uses_map && kernel_r != (uint32_t)native_r) {
        fprintf(stderr, "bench jit: %s: kernel result 0x%x differs from native\n", c->name, kernel_r);
        ret = -EDOM;
        goto out;
    }

    bench_report(ctx, c->name, "native", native_ns, "ns/run", NULL, 0);
#ifdef BPFGRAFT_HAVE_LLVM
    ret = report_same_way(ctx, c, mem, min_ns, native_r, native_ns, jit_ns, llvm_ns);
#else
    ret = report_same_way(ctx, c, mem, min_ns, native_r, native_ns, jit_ns, -1);
#endif
    if (ret)
        goto out;
#ifdef BPFGRAFT_HAVE_LLVM
    bench_report(ctx, c->name, "llvmjit", llvm_ns, "ns/run", "native", native_ns);
    if (kernel_ns >= 0)
        bench_report(ctx, c->name, "llvmjit", llvm_ns, "ns/run", "kernel-jit", kernel_ns);
#endif
    bench_report(ctx, c->name, "x86jit", jit_ns, "ns/run", "native", native_ns);
    if (kernel_ns >= 0)
        bench_report(ctx, c->name, "kernel-jit", kernel_ns, "ns/run", "native", native_ns);
    bench_report(ctx, c->name, "interp", interp_ns, "ns/run", "native", native_ns);
    if (kernel_ns >= 0)
        bench_report(ctx, c->name, "x86jit-compile", compile_us, "us", "kernel-load", kernel_load_us);
    else
        bench_report(ctx, c->name, "x86jit-compile", compile_us, "us", "interp-load", interp_load_us);
#ifdef BPFGRAFT_HAVE_LLVM
    if (kernel_ns >= 0)
        bench_report(ctx, c->name, "llvmjit-compile", llvm_compile_us, "us", "kernel-load", kernel_load_us);
    else
        bench_report(ctx, c->name, "llvmjit-compile", llvm_compile_us, "us", "x86jit-compile", compile_us);
#endif
#ifdef BENCH_HAVE_UBPF
    struct jit_subject x86_subject = {&img, table};
#ifdef BPFGRAFT_HAVE_LLVM
    struct jit_subject llvm_subject = {&limg, table};
    ret = report_peer(ctx, c, &x86_subject, &llvm_subject, mem, min_ns / PEER_ROUNDS);
#else
    ret = report_peer(ctx, c, &x86_subject, NULL, mem, min_ns / PEER_ROUNDS);
#endif
#endif
out:
#ifdef BPFGRAFT_HAVE_LLVM
    bpfg_x86jit_unmap(&limg);
    bpfg_x86jit_code_free(&lcode);
#endif
    bpfg_vm_free(vm);
    bpfg_x86jit_unmap(&img);
    bpfg_x86jit_code_free(&code);
    return ret;
}

#ifdef BPFGRAFT_HAVE_LLVM
/* Microseconds of one LLVM compile of every program together (batch) or
 * of each alone (single[i]); 0 or a negative errno. */
static int time_llvm_round(const struct jit_case *jc, const struct bpfg_llvmjit_prog *progs, size_t n,
                           const struct bpfg_llvmjit_opts *o, double *batch_us, double *single_us)
{
    char err[256];
    struct bpfg_llvmjit_batch b;
    uint64_t t0 = bench_now_ns();
    int ret = bpfg_llvmjit_compile_batch(progs, n, o, &b, NULL, err, sizeof(err));
    *batch_us += (double)(bench_now_ns() - t0) / 1e3;
    if (ret) {
        fprintf(stderr, "bench jit: batch of %zu: %s\n", n, err);
        return ret;
    }
    bpfg_llvmjit_batch_free(&b);
    for (size_t i = 0; i < n; i++) {
        struct bpfg_llvmjit_blob blob;
        t0 = bench_now_ns();
        ret = bpfg_llvmjit_compile_blob(jc[i].insns, jc[i].n, o, &blob, NULL, err, sizeof(err));
        single_us[i] += (double)(bench_now_ns() - t0) / 1e3;
        if (ret) {
            fprintf(stderr, "bench jit: %s: llvm: %s\n", jc[i].name, err);
            return ret;
        }
        bpfg_llvmjit_blob_free(&blob);
    }
    return 0;
}

/* The suite's programs compiled as one batch (one LLVM module, one codegen
 * run), per program, against the same programs compiled alone in the
 * same rounds (alternated, so the machine's load weighs on both): the
 * baseline is the median over the programs of a single compile. */
static int report_batch(struct bench_ctx *ctx, const struct jit_case *jc, size_t n)
{
    struct bpfg_llvmjit_opts o = {
        .jit = {.resolver = resolve_map, .resolver_user = &array_map, .map_info = describe_map}};
    bpfg_x86jit_allow_helper(&o.jit, BPF_FUNC_map_lookup_elem);
    struct bpfg_llvmjit_prog progs[16];
    double single_us[16] = {0}, batch_us = 0;
    if (n > 16)
        return -E2BIG;
    for (size_t i = 0; i < n; i++)
        progs[i] = (struct bpfg_llvmjit_prog){jc[i].insns, jc[i].n};
    int reps = bench_quick(ctx) ? 3 : 20, ret = 0;
    for (int r = 0; r < reps && !ret; r++)
        ret = time_llvm_round(jc, progs, n, &o, &batch_us, single_us);
    if (ret)
        return ret;
    for (size_t i = 0; i < n; i++)
        single_us[i] /= reps;
    char name[48];
    snprintf(name, sizeof(name), "batch_of_%zu", n);
    bench_report(ctx, name, "llvmjit-compile-per-prog", batch_us / reps / (double)n, "us", "llvmjit-compile-median",
                 median(single_us, n));
    return 0;
}
#endif

static int bench_jit_run(struct bench_ctx *ctx)
{
    struct kernel k = {-1, -1};
    struct jit_case jc[sizeof(cases) / sizeof(cases[0]) + 1];
    struct bpf_insn *assembled[sizeof(cases) / sizeof(cases[0])] = {0};
    size_t ncases = 0;
    int ret = 0;
    uint8_t *mem = aligned_alloc(64, MEM_SIZE);
    if (!mem)
        return -ENOMEM;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char err[256];
        size_t n;
        ret = bpfg_asm(cases[i].asm_text, &assembled[i], &n, err, sizeof(err));
        if (ret) {
            fprintf(stderr, "bench jit: %s: %s\n", cases[i].name, err);
            goto out;
        }
        jc[ncases++] = (struct jit_case){cases[i].name, assembled[i],        n, cases[i].native, cases[i].init,
                                         false,         cases[i].native_loop};
    }
    jc[ncases++] = (struct jit_case){"map_loop_4k", map_prog, sizeof(map_prog) / sizeof(map_prog[0]), map_native, NULL,
                                     true,          NULL};

    k.mem_map = bpf_map_create(BPF_MAP_TYPE_ARRAY, "bench_mem", 4, MEM_SIZE, 1, NULL);
    k.array_map = bpf_map_create(BPF_MAP_TYPE_ARRAY, "bench_array", 4, 8, MAP_ENTRIES, NULL);
    if (k.mem_map < 0 || k.array_map < 0) {
        ret = -errno;
        fprintf(stderr, "bench jit: creating kernel maps: %s (needs root)\n", strerror(errno));
        goto out;
    }
    bench_note(
        ctx, "x86jit: bpfgraft's x86-64 JIT (array lookups inlined); kernel-jit: BPF_PROG_TEST_RUN (XDP, memory in an "
             "array map value); interp: unchecked interpreter; native: gcc -O2; "
             "native-loop: gcc -O2 doing the work the program's way (byte/word loops, no glibc SIMD); "
             "x86jit-compile: validation + translation, baseline the kernel's load (verifier + JIT); "
             "llvmjit: the LLVM JIT's flat blob (its lean O2 pipeline, array lookups inlined), llvmjit-compile: "
             "validation + IR + optimisation + codegen + link; batch_of_N llvmjit-compile-per-prog: the N programs "
             "compiled together in one LLVM module (bpfg_llvmjit_compile_batch), per program, against the median "
             "single compile of the same programs timed in the same alternated rounds"
#ifdef BENCH_HAVE_UBPF
             "; peer ubpf-jit: uBPF's x86-64 JIT (third_party/ubpf) on the same bytecode, best (ENGINE): the faster "
             "of ours, both medians of 6 interleaved rounds; uBPF has no maps: map_loop's lddw is the map's address "
             "and its lookups helper calls (retpolined, as uBPF builds by default), not inlined; bpftime's llvmbpf "
             "is not a peer here: it needs LLVM 15+ (Debian 12 has 14)"
#endif
    );
    for (size_t i = 0; i < ncases && !ret; i++)
        ret = run_case(ctx, &k, &jc[i], mem);
#ifdef BPFGRAFT_HAVE_LLVM
    if (!ret)
        ret = report_batch(ctx, jc, ncases);
#endif
out:
    if (k.mem_map >= 0)
        close(k.mem_map);
    if (k.array_map >= 0)
        close(k.array_map);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        free(assembled[i]);
    free(mem);
    return ret;
}

const struct bench_suite bench_suite_jit = {
    "jit",
    "x86-64 JIT vs native C, the kernel JIT and the interpreter",
    bench_jit_run,
};
