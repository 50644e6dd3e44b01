/* The LLVM JIT's own features: inlined array lookups, direct helper calls,
 * relocatable blobs rebound to other maps, the on-disk cache and archives.
 * (Semantics against the interpreter: test_jit_diff and conformance-llvm.)
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "insn.h"
#include "jit_run.h" /* test/helpers: running the code here */
#include "jitcache.h"
#include "llvmjit.h"
#include "vm.h"

#define NVALUES 16

struct fake_map {
    uint32_t max_entries;
    uint64_t values[NVALUES];
};

static struct fake_map map_a = {NVALUES, {0}}, map_b = {NVALUES, {0}};
static int lookups; /* calls of the real helper */

static uint64_t lookup_helper(uint64_t map, uint64_t key, uint64_t r3, uint64_t r4, uint64_t r5, void *user)
{
    (void)r3, (void)r4, (void)r5, (void)user;
    struct fake_map *m = (struct fake_map *)(uintptr_t)map;
    uint32_t k;
    memcpy(&k, (void *)(uintptr_t)key, 4);
    lookups++;
    return k < m->max_entries ? (uintptr_t)&m->values[k] : 0;
}

/* resolver_user: the map the program's lddw refers to */
static int resolve(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    (void)imm0, (void)imm1;
    if (src_reg != BPF_PSEUDO_MAP_FD)
        return -EINVAL;
    *value = (uintptr_t)user;
    return 0;
}

static int describe(void *user, uint64_t value, struct bpfg_jit_map_info *info)
{
    (void)user;
    if (value != (uintptr_t)&map_a && value != (uintptr_t)&map_b)
        return -ENOENT;
    struct fake_map *m = (struct fake_map *)(uintptr_t)value;
    *info = (struct bpfg_jit_map_info){
        .type = BPF_MAP_TYPE_ARRAY,
        .key_size = 4,
        .value_size = 8,
        .max_entries = m->max_entries,
        .value_base = (uintptr_t)m->values,
    };
    return 0;
}

/* v = lookup(map, ctx[0]); if (!v) return -1; *v += 5; return *v */
static const struct bpf_insn prog[] = {
    MOV64_REG(6, 1),
    LDX(BPF_W, 3, 6, 0),
    STX(BPF_W, 10, 3, -4),
    MOV64_REG(2, 10),
    ALU64_IMM(BPF_ADD, 2, -4),
    LD_IMM64_RAW(1, BPF_PSEUDO_MAP_FD, 7, 0),
    CALL_HELPER(BPF_FUNC_map_lookup_elem),
    JMP_IMM(BPF_JEQ, 0, 0, 5),
    LDX(BPF_DW, 1, 0, 0),
    ALU64_IMM(BPF_ADD, 1, 5),
    STX(BPF_DW, 0, 1, 0),
    MOV64_REG(0, 1),
    EXIT(),
    MOV64_IMM(0, -1),
    EXIT(),
};
#define PROG_LEN (sizeof(prog) / sizeof(prog[0]))

static struct bpfg_x86jit_helper table[BPFG_MAX_HELPERS] = {
    [BPF_FUNC_map_lookup_elem] = {lookup_helper, NULL},
};

static void base_opts(struct bpfg_llvmjit_opts *o, struct fake_map *m)
{
    memset(o, 0, sizeof(*o));
    o->jit.resolver = resolve;
    o->jit.resolver_user = m;
    bpfg_x86jit_allow_helper(&o->jit, BPF_FUNC_map_lookup_elem);
}

/* Options of a compile with map references left to bind per target. */
static void reloc_opts(struct bpfg_llvmjit_opts *o)
{
    base_opts(o, &map_a);
    o->jit.map_info = describe;
    o->relocatable_maps = true;
}

/* Runs the code's entry at entry_off with a 4-byte context. */
static uint64_t run_code_at(const struct bpfg_x86jit_code *code, uint32_t entry_off, uint32_t key)
{
    struct bpfg_x86jit_image img;
    uint64_t r0;
    cr_assert_eq(bpfg_x86jit_map_exec(code, &img), 0);
    img.fn = (bpfg_x86jit_fn)((uint8_t *)img.addr + entry_off);
    int err = bpfg_x86jit_run(&img, &key, sizeof(key), table, NULL, &r0, NULL);
    bpfg_x86jit_unmap(&img);
    cr_assert_eq(err, 0, "run failed: %d", err);
    return r0;
}

static uint64_t run_code(const struct bpfg_x86jit_code *code, uint32_t key)
{
    return run_code_at(code, 0, key);
}

static uint64_t run_interp(struct fake_map *m, uint32_t key)
{
    struct bpfg_vm *vm = bpfg_vm_new();
    uint64_t r0;
    cr_assert_not_null(vm);
    bpfg_vm_register_helper(vm, BPF_FUNC_map_lookup_elem, "lookup", lookup_helper, NULL);
    bpfg_vm_set_ld64_resolver(vm, resolve, m);
    bpfg_vm_set_checked(vm, false);
    cr_assert_eq(bpfg_vm_load(vm, prog, PROG_LEN), 0, "%s", bpfg_vm_error(vm));
    cr_assert_eq(bpfg_vm_exec(vm, &key, sizeof(key), &r0), 0);
    bpfg_vm_free(vm);
    return r0;
}

static void reset_maps(void)
{
    for (int i = 0; i < NVALUES; i++) {
        map_a.values[i] = 100 + i;
        map_b.values[i] = 200 + i;
    }
    lookups = 0;
}

Test(llvmjit, array_lookup_is_inlined_and_matches_the_helper)
{
    struct bpfg_llvmjit_opts o;
    struct bpfg_x86jit_code code;
    struct bpfg_llvmjit_stats st;
    char err[256];
    base_opts(&o, &map_a);
    o.jit.map_info = describe;
    cr_assert_eq(bpfg_llvmjit_compile(prog, PROG_LEN, &o, &code, &st, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(st.inlined_lookups, 1);

    for (uint32_t key = 0; key < NVALUES + 3; key += 3) {
        reset_maps();
        uint64_t want = run_interp(&map_a, key);
        uint64_t after = key < NVALUES ? map_a.values[key] : 0;
        reset_maps();
        uint64_t got = run_code(&code, key);
        cr_expect_eq(got, want, "key %u: llvm %llu, interp %llu", key, (unsigned long long)got,
                     (unsigned long long)want);
        cr_expect_eq(lookups, 0, "the helper was called");
        if (key < NVALUES)
            cr_expect_eq(map_a.values[key], after);
    }
    bpfg_x86jit_code_free(&code);
}

Test(llvmjit, without_map_info_the_helper_is_called)
{
    struct bpfg_llvmjit_opts o;
    struct bpfg_x86jit_code code;
    struct bpfg_llvmjit_stats st;
    char err[256];
    base_opts(&o, &map_a);
    cr_assert_eq(bpfg_llvmjit_compile(prog, PROG_LEN, &o, &code, &st, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(st.inlined_lookups, 0);
    reset_maps();
    cr_expect_eq(run_code(&code, 4), 109);
    cr_expect_eq(lookups, 1);
    cr_expect_eq(map_a.values[4], 109);
    bpfg_x86jit_code_free(&code);
}

Test(llvmjit, direct_helper_calls)
{
    struct bpfg_llvmjit_opts o;
    struct bpfg_x86jit_code code;
    struct bpfg_llvmjit_stats st;
    uint64_t addr[BPFG_MAX_HELPERS] = {[BPF_FUNC_map_lookup_elem] = (uintptr_t)lookup_helper};
    char err[256];
    base_opts(&o, &map_b);
    o.helper_addr = addr;
    cr_assert_eq(bpfg_llvmjit_compile(prog, PROG_LEN, &o, &code, &st, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(st.direct_calls, 1);
    reset_maps();
    /* an empty table: a call through it would stop the run with -EINVAL */
    struct bpfg_x86jit_helper empty[BPFG_MAX_HELPERS] = {{0}};
    struct bpfg_x86jit_image img;
    uint64_t r0;
    uint32_t key = 2;
    cr_assert_eq(bpfg_x86jit_map_exec(&code, &img), 0);
    cr_expect_eq(bpfg_x86jit_run(&img, &key, 4, empty, NULL, &r0, NULL), 0);
    bpfg_x86jit_unmap(&img);
    cr_expect_eq(r0, 207);
    cr_expect_eq(lookups, 1);
    bpfg_x86jit_code_free(&code);
}

/* Compiles share pooled target machines: threads compiling at once (more
 * than the pool keeps, at two codegen levels) all get the code a lone
 * compile gives. */
struct compile_job {
    int opt_level;
    const struct bpfg_x86jit_code *want;
    int mismatches;
};

static void *compile_thread(void *arg)
{
    struct compile_job *job = arg;
    for (int i = 0; i < 6; i++) {
        struct bpfg_llvmjit_opts o;
        struct bpfg_x86jit_code code;
        char err[256];
        base_opts(&o, &map_a);
        o.jit.map_info = describe;
        o.opt_level = job->opt_level;
        if (bpfg_llvmjit_compile(prog, PROG_LEN, &o, &code, NULL, err, sizeof(err)) || code.len != job->want->len ||
            memcmp(code.buf, job->want->buf, code.len))
            job->mismatches++;
        bpfg_x86jit_code_free(&code);
    }
    return NULL;
}

Test(llvmjit, concurrent_compiles_give_the_same_code)
{
    struct bpfg_x86jit_code want[2];
    struct compile_job jobs[6];
    pthread_t th[6];
    char err[256];
    for (int l = 0; l < 2; l++) {
        struct bpfg_llvmjit_opts o;
        base_opts(&o, &map_a);
        o.jit.map_info = describe;
        o.opt_level = l + 1;
        cr_assert_eq(bpfg_llvmjit_compile(prog, PROG_LEN, &o, &want[l], NULL, err, sizeof(err)), 0, "%s", err);
    }
    for (int i = 0; i < 6; i++) {
        jobs[i] = (struct compile_job){i % 2 + 1, &want[i % 2], 0};
        cr_assert_eq(pthread_create(&th[i], NULL, compile_thread, &jobs[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(jobs[i].mismatches, 0, "thread %d: %d compiles differ or failed", i, jobs[i].mismatches);
    }
    reset_maps();
    cr_expect_eq(run_code(&want[1], 3), 108);
    bpfg_x86jit_code_free(&want[0]);
    bpfg_x86jit_code_free(&want[1]);
}

/* One compilation, two targets: slots rebound from map_a to map_b. */
Test(llvmjit, relocatable_blob_rebinds_to_other_maps)
{
    struct bpfg_llvmjit_opts o;
    struct bpfg_llvmjit_blob blob;
    struct bpfg_llvmjit_stats st;
    char err[256];
    reloc_opts(&o);
    cr_assert_eq(bpfg_llvmjit_compile_blob(prog, PROG_LEN, &o, &blob, &st, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(st.inlined_lookups, 1);
    cr_assert_eq(blob.nrelocs, 2, "slots: the lddw and the array's values");

    uint8_t ka[16], kb[16];
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, ka, err, sizeof(err)), 0);
    o.jit.resolver_user = &map_b;
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, kb, err, sizeof(err)), 0);
    cr_expect(!memcmp(ka, kb, 16), "a relocatable key must not depend on the target");

    cr_assert_eq(bpfg_llvmjit_blob_bind(&blob, prog, PROG_LEN, &o, err, sizeof(err)), 0, "%s", err);
    reset_maps();
    cr_expect_eq(run_code(&blob.code, 3), 208);
    cr_expect_eq(map_b.values[3], 208);
    cr_expect_eq(map_a.values[3], 103, "the blob still used the map it was compiled with");

    o.jit.resolver_user = &map_a;
    cr_assert_eq(bpfg_llvmjit_blob_bind(&blob, prog, PROG_LEN, &o, err, sizeof(err)), 0, "%s", err);
    reset_maps();
    cr_expect_eq(run_code(&blob.code, 3), 108);
    cr_expect_eq(map_b.values[3], 203);
    cr_expect_eq(lookups, 0);
    bpfg_llvmjit_blob_free(&blob);

    /* baked-in (not relocatable) keys do depend on the target */
    o.relocatable_maps = false;
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, ka, err, sizeof(err)), 0);
    o.jit.resolver_user = &map_b;
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, kb, err, sizeof(err)), 0);
    cr_expect(memcmp(ka, kb, 16));
}

Test(llvmjit, key_follows_code_changing_options)
{
    struct bpfg_llvmjit_opts o;
    uint8_t k0[16], k1[16];
    char err[256];
    base_opts(&o, &map_a);
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, k0, err, sizeof(err)), 0);
    o.jit.per_run_user = true;
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, k1, err, sizeof(err)), 0);
    cr_expect(memcmp(k0, k1, 16), "per_run_user changes the code");
    o.jit.per_run_user = false;
    o.jit.map_info = describe;
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, k1, err, sizeof(err)), 0);
    cr_expect(memcmp(k0, k1, 16), "an inlinable map changes the code");
    o.jit.map_info = NULL;
    bpfg_x86jit_allow_helper(&o.jit, 6);
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, k1, err, sizeof(err)), 0);
    cr_expect(!memcmp(k0, k1, 16), "allowed helpers do not change the code");
    struct bpf_insn bad[] = {CALL_HELPER(99), EXIT()};
    cr_expect_eq(bpfg_llvmjit_key(bad, 2, &o, k1, err, sizeof(err)), -EINVAL);
    cr_expect(strstr(err, "instruction 0"), "%s", err);
}

/* ---- cache ---------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static char tmpdir[64];

static void mk_tmp(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/bpfg-jitcache-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmp(void)
{
    if (tmpdir[0])
        nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t count_entries(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -c '\\.jit$'", dir);
    FILE *p = popen(cmd, "r");
    size_t n = 0;
    cr_assert_not_null(p);
    cr_assert_eq(fscanf(p, "%zu", &n), 1);
    pclose(p);
    return n;
}

Test(jitcache, hit_after_miss_and_damaged_entries_recompile, .init = mk_tmp, .fini = rm_tmp)
{
    char dir[128], err[256];
    snprintf(dir, sizeof(dir), "%s/a/b", tmpdir);
    struct bpfg_jitcache *c = bpfg_jitcache_open(dir);
    cr_assert_not_null(c, "%s", strerror(errno));
    struct bpfg_llvmjit_opts o;
    reloc_opts(&o);
    struct bpfg_llvmjit_blob b1, b2;
    bool hit = true;
    cr_assert_eq(bpfg_jitcache_compile(c, prog, PROG_LEN, &o, &b1, &hit, err, sizeof(err)), 0, "%s", err);
    cr_expect_not(hit);
    cr_expect_eq(count_entries(dir), 1);
    o.jit.resolver_user = &map_b; /* another target: same entry, other binding */
    cr_assert_eq(bpfg_jitcache_compile(c, prog, PROG_LEN, &o, &b2, &hit, err, sizeof(err)), 0, "%s", err);
    cr_expect(hit);
    cr_expect_eq(count_entries(dir), 1);
    reset_maps();
    cr_expect_eq(run_code(&b2.code, 1), 206);
    cr_expect_eq(map_b.values[1], 206);
    reset_maps();
    cr_expect_eq(run_code(&b1.code, 1), 106);
    bpfg_llvmjit_blob_free(&b2);

    /* damage the entry: a miss, recompiled and stored again */
    uint8_t key[16];
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, key, err, sizeof(err)), 0);
    char path[256];
    int len = snprintf(path, sizeof(path), "%s/", dir);
    for (int i = 0; i < 16; i++)
        len += snprintf(path + len, sizeof(path) - (size_t)len, "%02x", key[i]);
    snprintf(path + len, sizeof(path) - (size_t)len, ".jit");
    FILE *f = fopen(path, "r+");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fseek(f, 70, SEEK_SET);
    fputc(0x5a ^ 0xff, f);
    fclose(f);
    cr_expect_eq(bpfg_jitcache_get(c, key, &b2), -ENOENT);
    cr_expect_eq(access(path, F_OK), -1, "the damaged entry is removed");
    cr_assert_eq(bpfg_jitcache_compile(c, prog, PROG_LEN, &o, &b2, &hit, err, sizeof(err)), 0, "%s", err);
    cr_expect_not(hit);
    cr_expect_eq(b2.code.len, b1.code.len);
    bpfg_llvmjit_blob_free(&b2);
    bpfg_llvmjit_blob_free(&b1);
    bpfg_jitcache_close(c);
}

/* Flips a byte of every entry's last 8 (a batch's table). */
static void damage_tails(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    cr_assert_not_null(d);
    while ((e = readdir(d))) {
        char path[600];
        if (!strstr(e->d_name, ".jit"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "r+");
        cr_assert_not_null(f, "%s: %s", path, strerror(errno));
        cr_assert_eq(fseek(f, -3, SEEK_END), 0);
        int c = fgetc(f);
        cr_assert_eq(fseek(f, -3, SEEK_END), 0);
        fputc(c ^ 0xff, f);
        fclose(f);
    }
    closedir(d);
}

static uint64_t run_entry(const struct bpfg_llvmjit_batch *b, size_t i, uint32_t key)
{
    return run_code_at(&b->blob.code, b->entry_off[i], key);
}

/* A batch of two (the map program, and r0 = ctx[0] * 3) through the
 * cache: a miss stores one entry, the next compile (another target) hits
 * and binds it there; a batch entry answers no single lookup, nor a batch
 * of other programs; a damaged one is recompiled. */
Test(jitcache, batch_hit_binds_per_target, .init = mk_tmp, .fini = rm_tmp)
{
    static const struct bpf_insn triple[] = {LDX(BPF_W, 0, 1, 0), ALU64_IMM(BPF_MUL, 0, 3), EXIT()};
    const struct bpfg_llvmjit_prog progs[2] = {{triple, 3}, {prog, PROG_LEN}};
    char err[256];
    struct bpfg_jitcache *c = bpfg_jitcache_open(tmpdir);
    cr_assert_not_null(c, "%s", strerror(errno));
    struct bpfg_llvmjit_opts o;
    reloc_opts(&o);
    struct bpfg_llvmjit_batch b1, b2;
    bool hit = true;
    cr_assert_eq(bpfg_jitcache_compile_batch(c, progs, 2, &o, &b1, &hit, err, sizeof(err)), 0, "%s", err);
    cr_expect_not(hit);
    cr_expect_eq(count_entries(tmpdir), 1);
    cr_assert_eq(b1.nprogs, 2);
    cr_expect_eq(b1.reloc_end[0], 0, "triple has no slots");
    cr_expect_eq(b1.reloc_end[1], 2, "the lddw and the array's values");
    o.jit.resolver_user = &map_b;
    cr_assert_eq(bpfg_jitcache_compile_batch(c, progs, 2, &o, &b2, &hit, err, sizeof(err)), 0, "%s", err);
    cr_expect(hit);
    cr_expect_eq(count_entries(tmpdir), 1);
    cr_expect_eq(b2.blob.code.len, b1.blob.code.len);
    cr_expect(!memcmp(b2.entry_off, b1.entry_off, sizeof(uint32_t) * 2));
    reset_maps();
    cr_expect_eq(run_entry(&b2, 0, 7), 21);
    cr_expect_eq(run_entry(&b2, 1, 2), 207);
    cr_expect_eq(run_entry(&b1, 1, 2), 107);
    cr_expect_eq(lookups, 0);

    uint8_t key[16];
    struct bpfg_llvmjit_blob single;
    cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, key, err, sizeof(err)), 0);
    cr_expect_not(bpfg_jitcache_contains(c, key));
    cr_expect_eq(bpfg_jitcache_get(c, key, &single), -ENOENT);
    const struct bpfg_llvmjit_prog swapped[2] = {{prog, PROG_LEN}, {triple, 3}};
    bpfg_llvmjit_batch_free(&b2);
    cr_assert_eq(bpfg_jitcache_compile_batch(c, swapped, 2, &o, &b2, &hit, err, sizeof(err)), 0, "%s", err);
    cr_expect_not(hit, "another order is another batch");
    cr_expect_eq(count_entries(tmpdir), 2);
    reset_maps();
    cr_expect_eq(run_entry(&b2, 0, 2), 207);
    cr_expect_eq(run_entry(&b2, 1, 5), 15);
    bpfg_llvmjit_batch_free(&b2);

    /* damage every entry's table end: misses, recompiled */
    damage_tails(tmpdir);
    cr_assert_eq(bpfg_jitcache_compile_batch(c, progs, 2, &o, &b2, &hit, err, sizeof(err)), 0, "%s", err);
    cr_expect_not(hit, "a damaged batch entry is a miss");
    reset_maps();
    cr_expect_eq(run_entry(&b2, 1, 2), 207);
    bpfg_llvmjit_batch_free(&b2);
    bpfg_llvmjit_batch_free(&b1);
    bpfg_jitcache_close(c);
}

Test(jitcache, archive_round_trip, .init = mk_tmp, .fini = rm_tmp)
{
    char ar_path[128], dir[128], err[256];
    snprintf(ar_path, sizeof(ar_path), "%s/progs.jar", tmpdir);
    snprintf(dir, sizeof(dir), "%s/cache", tmpdir);
    struct bpfg_llvmjit_opts o;
    base_opts(&o, &map_a);
    o.relocatable_maps = true;
    struct bpfg_jitarchive *a = bpfg_jitarchive_create(ar_path);
    cr_assert_not_null(a);
    uint8_t keys[2][16];
    for (int i = 0; i < 2; i++) {
        struct bpfg_llvmjit_blob b;
        o.jit.map_info = i ? describe : NULL;
        cr_assert_eq(bpfg_llvmjit_key(prog, PROG_LEN, &o, keys[i], err, sizeof(err)), 0);
        cr_assert_eq(bpfg_llvmjit_compile_blob(prog, PROG_LEN, &o, &b, NULL, err, sizeof(err)), 0, "%s", err);
        cr_assert_eq(bpfg_jitarchive_add(a, i ? "obj/inlined" : "obj/plain", keys[i], &b), 0);
        bpfg_llvmjit_blob_free(&b);
    }
    cr_assert_eq(bpfg_jitarchive_finish(a), 0);

    struct bpfg_jitcache *c = bpfg_jitcache_open(dir);
    cr_assert_not_null(c);
    cr_expect_eq(bpfg_jitcache_import(c, ar_path), 2);
    for (int i = 0; i < 2; i++) {
        struct bpfg_llvmjit_blob b;
        bool hit = false;
        o.jit.map_info = i ? describe : NULL;
        o.jit.resolver_user = &map_b;
        cr_assert_eq(bpfg_jitcache_compile(c, prog, PROG_LEN, &o, &b, &hit, err, sizeof(err)), 0, "%s", err);
        cr_expect(hit, "entry %d was not imported", i);
        reset_maps();
        cr_expect_eq(run_code(&b.code, 0), 205);
        cr_expect_eq(lookups, i ? 0 : 1);
        bpfg_llvmjit_blob_free(&b);
    }
    /* not an archive */
    FILE *f = fopen(ar_path, "w");
    fputs("not an archive at all", f);
    fclose(f);
    cr_expect_eq(bpfg_jitcache_import(c, ar_path), -EBADMSG);
    bpfg_jitcache_close(c);
}
