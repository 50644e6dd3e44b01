/* Differential tests: the same seeded random operation sequence is applied
 * to a kernel map (libbpf, needs root) and to ours; return codes, errno
 * values and values read back must be identical. */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "criterion_facts.h"
#include "maps.h"
#include "maps_testutil.h"

#define OPS 4000
#define MAXV 4096

static void needs_kernel_maps(void)
{
    test_needs("bpf-maps");
}

/* Every test compares with the kernel's maps: skipped without them. */
TestSuite(maps_kernel, .init = needs_kernel_maps);

struct pair {
    int kfd;
    struct bpfg_map *m;
    uint32_t type, ks, vs, n, copy; /* copy: bytes per value on the syscall side */
};

static void pin_cpu0(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    cr_assert_eq(sched_setaffinity(0, sizeof(set), &set), 0);
}

static struct pair mkpair(uint32_t type, uint32_t ks, uint32_t vs, uint32_t n)
{
    struct pair p = {.type = type, .ks = ks, .vs = vs, .n = n};
    p.kfd = bpf_map_create(type, "diff", ks, vs, n, NULL);
    cr_assert_geq(p.kfd, 0, "kernel map create type %u: %s (run as root)", type, strerror(errno));
    struct bpfg_map_spec s = {.type = type, .key_size = ks, .value_size = vs, .max_entries = n, .name = "diff"};
    cr_assert_eq(bpfg_map_create(&s, &p.m), 0, "%s", bpfg_map_last_error());
    struct bpfg_map_info info;
    bpfg_map_get_info(p.m, &info);
    p.copy = info.value_copy_size;
    cr_assert_leq(p.copy, MAXV);
    int ncpu = libbpf_num_possible_cpus();
    bool percpu =
        type == BPF_MAP_TYPE_PERCPU_ARRAY || type == BPF_MAP_TYPE_PERCPU_HASH || type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
    if (percpu)
        cr_assert_eq(info.nr_cpus, (uint32_t)ncpu, "same possible CPU count as the kernel");
    return p;
}

static void freepair(struct pair *p)
{
    close(p->kfd);
    bpfg_map_close(p->m);
}

/* Keys drawn from a small domain so that hits, misses and "full" all occur. */
static void rand_key(unsigned *seed, const struct pair *p, uint32_t domain, void *key)
{
    uint32_t k = (uint32_t)rand_r(seed) % domain;
    memset(key, 0, p->ks);
    memcpy(key, &k, p->ks < 4 ? p->ks : 4);
    if (p->ks > 4)
        ((uint8_t *)key)[p->ks - 1] = (uint8_t)(k * 31);
}

static const uint64_t flag_choices[] = {BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK, 3, 8};

/* Collects the full key set by iteration (order differs between
 * implementations, the set must not). */
static int keyset_cmp(const void *a, const void *b, void *ks)
{
    return memcmp(a, b, *(uint32_t *)ks);
}

static size_t iterate(const struct pair *p, bool kernel, uint8_t *keys, size_t cap)
{
    uint8_t cur[64], next[64];
    size_t n = 0;
    int err = kernel ? bpf_map_get_next_key(p->kfd, NULL, next) : bpfg_map_get_next_key(p->m, NULL, next);
    while (err == 0 && n < cap) {
        memcpy(keys + n * p->ks, next, p->ks);
        n++;
        memcpy(cur, next, p->ks);
        err = kernel ? bpf_map_get_next_key(p->kfd, cur, next) : bpfg_map_get_next_key(p->m, cur, next);
    }
    cr_assert_eq(err, -ENOENT, "iteration ends with ENOENT (%s)", kernel ? "kernel" : "ours");
    uint32_t ks = p->ks;
    qsort_r(keys, n, ks, keyset_cmp, &ks);
    return n;
}

static void compare_sets(const struct pair *p)
{
    size_t cap = p->n + 8;
    uint8_t *a = calloc(cap, p->ks), *b = calloc(cap, p->ks);
    size_t na = iterate(p, true, a, cap), nb = iterate(p, false, b, cap);
    cr_assert_eq(na, nb, "element count kernel %zu ours %zu", na, nb);
    cr_assert_eq(memcmp(a, b, na * p->ks), 0, "same key set");
    free(a);
    free(b);
}

/* Random update/lookup/delete/lookup_and_delete/get_next_key sequence.
 * ordered: get_next_key results can be compared key by key (arrays). */
static void run_kv(struct pair *p, unsigned seed, uint32_t domain, bool ordered)
{
    uint8_t key[64], kv[MAXV], ov[MAXV], kn[64], on[64];
    bool hash = p->type != BPF_MAP_TYPE_ARRAY && p->type != BPF_MAP_TYPE_PERCPU_ARRAY;
    for (int op = 0; op < OPS; op++) {
        rand_key(&seed, p, domain, key);
        int which = rand_r(&seed) % 10;
        int rk, ro;
        const char *name;
        if (which < 4) {
            name = "update";
            uint64_t fl = flag_choices[rand_r(&seed) % 6];
            rand_bytes(&seed, kv, p->copy);
            /* Per-CPU slots are ROUND8 wide; padding bytes are not stored. */
            memcpy(ov, kv, p->copy);
            rk = bpf_map_update_elem(p->kfd, key, kv, fl);
            ro = bpfg_map_update_copy(p->m, key, ov, fl);
        } else if (which < 7) {
            name = "lookup";
            memset(kv, 0, sizeof(kv));
            memset(ov, 0, sizeof(ov));
            rk = bpf_map_lookup_elem(p->kfd, key, kv);
            ro = bpfg_map_lookup_copy(p->m, key, ov);
            if (!rk && !ro) {
                uint32_t stride = (p->vs + 7) & ~7u;
                for (uint32_t off = 0; off < p->copy; off += stride)
                    cr_assert_eq(memcmp(kv + off, ov + off, p->vs), 0, "op %d: value differs", op);
            }
        } else if (which < 8) {
            name = "delete";
            rk = bpf_map_delete_elem(p->kfd, key);
            ro = bpfg_map_delete_copy(p->m, key);
        } else if (which < 9 && hash) {
            name = "lookup_and_delete";
            rk = bpf_map_lookup_and_delete_elem(p->kfd, key, kv);
            ro = bpfg_map_lookup_and_delete_copy(p->m, key, ov);
            if (!rk && !ro)
                cr_assert_eq(memcmp(kv, ov, p->vs), 0, "op %d: value differs", op);
        } else {
            name = "get_next_key";
            bool null = rand_r(&seed) % 4 == 0;
            rk = bpf_map_get_next_key(p->kfd, null ? NULL : key, kn);
            ro = bpfg_map_get_next_key(p->m, null ? NULL : key, on);
            if (!rk && !ro && ordered)
                cr_assert_eq(memcmp(kn, on, p->ks), 0, "op %d: next key differs", op);
            if (!ordered && !null) {
                /* Hash order differs, so "is there a next one" does too;
                 * what must hold: a returned key is present. */
                if (!ro)
                    cr_assert_eq(bpfg_map_lookup_copy(p->m, on, ov), 0, "op %d: next key exists", op);
                if (!rk)
                    cr_assert_eq(bpf_map_lookup_elem(p->kfd, kn, kv), 0);
                ro = rk = 0;
            }
        }
        cr_assert_eq(ro, rk, "op %d %s: ours %d kernel %d", op, name, ro, rk);
        if (hash && op % 200 == 199)
            compare_sets(p);
    }
    if (hash)
        compare_sets(p);
}

Test(maps_kernel, array)
{
    struct pair p = mkpair(BPF_MAP_TYPE_ARRAY, 4, 12, 16);
    run_kv(&p, 1, 20, true);
    freepair(&p);
}

Test(maps_kernel, percpu_array)
{
    struct pair p = mkpair(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 6, 8);
    run_kv(&p, 2, 10, true);
    freepair(&p);
}

Test(maps_kernel, hash)
{
    struct pair p = mkpair(BPF_MAP_TYPE_HASH, 4, 16, 24);
    run_kv(&p, 3, 40, false);
    freepair(&p);
}

Test(maps_kernel, hash_odd_key)
{
    struct pair p = mkpair(BPF_MAP_TYPE_HASH, 7, 3, 50);
    run_kv(&p, 4, 70, false);
    freepair(&p);
}

Test(maps_kernel, percpu_hash)
{
    struct pair p = mkpair(BPF_MAP_TYPE_PERCPU_HASH, 8, 8, 16);
    run_kv(&p, 5, 30, false);
    freepair(&p);
}

/* LRU without eviction pressure (key domain below max_entries, one CPU so
 * the kernel's per-CPU free lists never force an eviction): exact. */
Test(maps_kernel, lru_hash_no_eviction)
{
    pin_cpu0();
    struct pair p = mkpair(BPF_MAP_TYPE_LRU_HASH, 4, 8, 256);
    run_kv(&p, 6, 48, false);
    freepair(&p);
}

/* LRU under eviction: which key goes is not specified; what is: inserts
 * always succeed, the new key is present, the size never passes
 * max_entries, and errno values for flags stay the kernel's. */
Test(maps_kernel, lru_hash_eviction)
{
    pin_cpu0();
    struct pair p = mkpair(BPF_MAP_TYPE_LRU_HASH, 4, 8, 32);
    unsigned seed = 7;
    uint64_t v, kv, ov;
    for (int op = 0; op < 3000; op++) {
        uint32_t k = (uint32_t)rand_r(&seed) % 500;
        v = k * 3;
        uint64_t fl = flag_choices[rand_r(&seed) % 6];
        int rk = bpf_map_update_elem(p.kfd, &k, &v, fl);
        int ro = bpfg_map_update_copy(p.m, &k, &v, fl);
        if (fl == BPF_ANY || fl == BPF_NOEXIST) {
            /* NOEXIST on a key one side still holds and the other evicted
             * may legitimately differ; BPF_ANY must always succeed. */
            if (fl == BPF_ANY) {
                cr_assert_eq(rk, 0);
                cr_assert_eq(ro, 0);
            }
            if (!rk)
                cr_assert_eq(bpf_map_lookup_elem(p.kfd, &k, &kv), 0);
            if (!ro) {
                cr_assert_eq(bpfg_map_lookup_copy(p.m, &k, &ov), 0);
                cr_assert_eq(ov, k * 3);
            }
        } else if (fl != BPF_EXIST) {
            cr_assert_eq(ro, rk, "invalid flags %lu: ours %d kernel %d", (unsigned long)fl, ro, rk);
        }
        if (op % 500 == 0) {
            uint32_t cap = 64;
            uint8_t *keys = calloc(cap, 4);
            cr_assert_leq(iterate(&p, true, keys, cap), 32);
            cr_assert_leq(iterate(&p, false, keys, cap), 32);
            free(keys);
        }
    }
    freepair(&p);
}

static void run_qs(uint32_t type, unsigned seed)
{
    struct pair p = mkpair(type, 0, 12, 10);
    uint8_t kv[12], ov[12];
    for (int op = 0; op < OPS; op++) {
        int which = rand_r(&seed) % 8, rk, ro;
        const char *name;
        if (which < 4) {
            name = "push";
            uint64_t fl = flag_choices[rand_r(&seed) % 6];
            rand_bytes(&seed, kv, 12);
            rk = bpf_map_update_elem(p.kfd, NULL, kv, fl);
            ro = bpfg_map_update_copy(p.m, NULL, kv, fl);
        } else if (which < 6) {
            name = "pop";
            rk = bpf_map_lookup_and_delete_elem(p.kfd, NULL, kv);
            ro = bpfg_map_lookup_and_delete_copy(p.m, NULL, ov);
            if (!rk && !ro)
                cr_assert_eq(memcmp(kv, ov, 12), 0, "op %d: popped value differs", op);
        } else if (which < 7) {
            name = "peek";
            rk = bpf_map_lookup_elem(p.kfd, NULL, kv);
            ro = bpfg_map_lookup_copy(p.m, NULL, ov);
            if (!rk && !ro)
                cr_assert_eq(memcmp(kv, ov, 12), 0, "op %d: peeked value differs", op);
        } else {
            name = rand_r(&seed) % 2 ? "delete" : "get_next_key";
            if (name[0] == 'd') {
                rk = bpf_map_delete_elem(p.kfd, NULL);
                ro = bpfg_map_delete_copy(p.m, NULL);
            } else {
                rk = bpf_map_get_next_key(p.kfd, NULL, kv);
                ro = bpfg_map_get_next_key(p.m, NULL, ov);
            }
        }
        cr_assert_eq(ro, rk, "op %d %s: ours %d kernel %d", op, name, ro, rk);
    }
    freepair(&p);
}

Test(maps_kernel, queue)
{
    run_qs(BPF_MAP_TYPE_QUEUE, 8);
}
Test(maps_kernel, stack)
{
    run_qs(BPF_MAP_TYPE_STACK, 9);
}

/* Creation-time errno values for a few invalid parameter sets. */
Test(maps_kernel, create_errors)
{
    struct {
        uint32_t type, ks, vs, n, flags;
    } c[] = {
        {BPF_MAP_TYPE_ARRAY, 8, 4, 4, 0},
        {BPF_MAP_TYPE_ARRAY, 4, 0, 4, 0},
        {BPF_MAP_TYPE_ARRAY, 4, 4, 0, 0},
        {BPF_MAP_TYPE_HASH, 0, 4, 4, 0},
        {BPF_MAP_TYPE_HASH, 4, 4, 0, 0},
        {BPF_MAP_TYPE_QUEUE, 4, 4, 4, 0},
        {BPF_MAP_TYPE_QUEUE, 0, 0, 4, 0},
        {BPF_MAP_TYPE_RINGBUF, 0, 0, 5000, 0},
        {BPF_MAP_TYPE_RINGBUF, 4, 0, 4096, 0},
        {BPF_MAP_TYPE_HASH, 4, 4, 4, 1u << 20},
        {BPF_MAP_TYPE_ARRAY, 4, 4, 4, BPF_F_NO_PREALLOC},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        struct bpfg_map_spec s = {.type = c[i].type,
                                  .key_size = c[i].ks,
                                  .value_size = c[i].vs,
                                  .max_entries = c[i].n,
                                  .map_flags = c[i].flags};
        expect_create_like_kernel(&s, i);
    }
}
