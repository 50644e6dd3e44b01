/* Differential tests of the bloom filter, LPM trie and map-in-map types:
 * the same seeded random operation sequence on a kernel map (libbpf, root)
 * and on ours; return codes, errno values, values and (for the LPM trie)
 * the iteration order must be identical. */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "criterion_facts.h"
#include "maps.h"

#define OPS 6000

static void needs_kernel_maps(void)
{
    test_needs("bpf-maps");
}

TestSuite(maptypes_kernel, .init = needs_kernel_maps);

struct pair {
    int kfd;
    struct bpfg_map *m;
    uint32_t ks, vs;
};

static struct pair mkpair(const struct bpfg_map_spec *s, int inner_fd)
{
    struct pair p = {.ks = s->key_size, .vs = s->value_size};
    LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = s->map_flags, .map_extra = s->map_extra);
    if (inner_fd >= 0)
        o.inner_map_fd = (uint32_t)inner_fd;
    p.kfd = bpf_map_create(s->type, "diff", s->key_size, s->value_size, s->max_entries, &o);
    cr_assert_geq(p.kfd, 0, "kernel map create type %u: %s", s->type, strerror(errno));
    cr_assert_eq(bpfg_map_create(s, &p.m), 0, "%s", bpfg_map_last_error());
    return p;
}

static void freepair(struct pair *p)
{
    close(p->kfd);
    bpfg_map_close(p->m);
}

static void rand_bytes(unsigned *seed, void *buf, size_t n)
{
    uint8_t *b = buf;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rand_r(seed);
}

static const uint64_t flag_choices[] = {BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK, 3};
#define NFLAGS (sizeof(flag_choices) / sizeof(flag_choices[0]))

/* ---- bloom filter ---- */

/* Values from a domain of `domain` so that pushes repeat and peeks of
 * values never pushed hit set bits (false positives must match too). */
static void bloom_value(unsigned *seed, uint32_t domain, uint8_t *v, uint32_t vs)
{
    uint32_t k = (uint32_t)rand_r(seed) % domain;
    for (uint32_t i = 0; i < vs; i++)
        v[i] = (uint8_t)(k * (i + 3) ^ (k >> (i % 8)));
}

static void run_bloom(uint32_t vs, uint32_t entries, uint64_t nr_hash, unsigned seed)
{
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_BLOOM_FILTER,
                              .value_size = vs,
                              .max_entries = entries,
                              .map_extra = nr_hash,
                              .map_flags = BPF_F_ZERO_SEED};
    struct pair p = mkpair(&s, -1);
    uint8_t v[64];
    int hits = 0, misses = 0;
    for (int op = 0; op < OPS; op++) {
        bloom_value(&seed, 4 * entries, v, vs);
        int which = rand_r(&seed) % 10, rk, ro;
        const char *name;
        if (which < 3) {
            name = "push";
            uint64_t fl = rand_r(&seed) % 4 ? BPF_ANY : flag_choices[rand_r(&seed) % NFLAGS];
            rk = bpf_map_update_elem(p.kfd, NULL, v, fl) ? -errno : 0;
            ro = bpfg_map_update_copy(p.m, NULL, v, fl);
        } else if (which < 8) {
            name = "peek";
            rk = bpf_map_lookup_elem(p.kfd, NULL, v) ? -errno : 0;
            ro = bpfg_map_lookup_copy(p.m, NULL, v);
            hits += !rk;
            misses += rk == -ENOENT;
        } else if (which < 9) {
            name = "delete";
            rk = bpf_map_delete_elem(p.kfd, NULL) ? -errno : 0;
            ro = bpfg_map_delete_copy(p.m, NULL);
        } else {
            name = rand_r(&seed) % 2 ? "get_next_key" : "lookup_and_delete";
            if (name[0] == 'g') {
                rk = bpf_map_get_next_key(p.kfd, NULL, v) ? -errno : 0;
                ro = bpfg_map_get_next_key(p.m, NULL, v);
            } else {
                rk = bpf_map_lookup_and_delete_elem(p.kfd, NULL, v) ? -errno : 0;
                ro = bpfg_map_lookup_and_delete_copy(p.m, NULL, v);
            }
        }
        cr_assert_eq(ro, rk, "op %d %s: ours %d kernel %d", op, name, ro, rk);
    }
    cr_assert_gt(hits, 100, "the sequence reaches present values");
    cr_assert_gt(misses, 100, "and absent ones");
    freepair(&p);
}

Test(maptypes_kernel, bloom_jhash2)
{
    run_bloom(8, 40, 3, 11);
}

Test(maptypes_kernel, bloom_jhash_odd_size)
{
    run_bloom(13, 100, 0, 12); /* default 5 hash functions */
}

Test(maptypes_kernel, bloom_one_hash_large_value)
{
    run_bloom(40, 2000, 1, 13);
}

/* A random seed (the default): no false negatives, frozen maps refuse. */
Test(maptypes_kernel, bloom_random_seed)
{
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_BLOOM_FILTER, .value_size = 4, .max_entries = 1000};
    struct pair p = mkpair(&s, -1);
    for (uint32_t k = 0; k < 1000; k += 2) {
        cr_assert_eq(bpf_map_update_elem(p.kfd, NULL, &k, 0), 0);
        cr_assert_eq(bpfg_map_update_copy(p.m, NULL, &k, 0), 0);
    }
    int fp_k = 0, fp_o = 0;
    for (uint32_t k = 0; k < 1000; k++) {
        int rk = bpf_map_lookup_elem(p.kfd, NULL, &k) ? -errno : 0;
        int ro = bpfg_map_peek_elem(p.m, &k);
        if (k % 2 == 0) {
            cr_assert_eq(rk, 0);
            cr_assert_eq(ro, 0, "pushed value %u found", k);
        } else {
            fp_k += !rk;
            fp_o += !ro;
        }
    }
    cr_assert_lt(fp_o, 50, "false positives ours %d (kernel %d) of 500", fp_o, fp_k);
    cr_assert_eq(bpf_map_freeze(p.kfd), 0);
    cr_assert_eq(bpfg_map_freeze(p.m), 0);
    uint32_t k = 1;
    int rk = bpf_map_update_elem(p.kfd, NULL, &k, 0) ? -errno : 0;
    cr_assert_eq(bpfg_map_update_copy(p.m, NULL, &k, 0), rk);
    freepair(&p);
}

/* ---- LPM trie ---- */

/* Keys: prefixes of a few base addresses so that they nest and collide;
 * bits beyond the prefix are random (they are stored as given). */
static void lpm_key(unsigned *seed, uint8_t *key, uint32_t ks, bool any_len)
{
    static const uint8_t bases[4][16] = {{10, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
                                         {10, 1, 128, 0, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9},
                                         {192, 168, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
                                         {10, 0, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255}};
    uint32_t ds = ks - 4, maxp = 8 * ds;
    uint32_t plen = (uint32_t)rand_r(seed) % (maxp + 1);
    if (any_len && rand_r(seed) % 16 == 0)
        plen = maxp + 1 + (uint32_t)rand_r(seed) % 3;
    memcpy(key, &plen, 4);
    memcpy(key + 4, bases[rand_r(seed) % 4], ds);
    if (rand_r(seed) % 3 == 0)
        key[4 + (uint32_t)rand_r(seed) % ds] ^= (uint8_t)(1u << (rand_r(seed) % 8));
}

/* Both iterations, key by key: the same postorder. */
static void lpm_compare_order(struct pair *p, int op)
{
    uint8_t kk[64], ok[64], cur[64];
    int rk = bpf_map_get_next_key(p->kfd, NULL, kk) ? -errno : 0;
    int ro = bpfg_map_get_next_key(p->m, NULL, ok);
    for (int n = 0; n < 10000; n++) {
        cr_assert_eq(ro, rk, "op %d: iteration step %d ours %d kernel %d", op, n, ro, rk);
        if (rk)
            return;
        cr_assert_eq(memcmp(kk, ok, p->ks), 0, "op %d: iteration step %d key differs", op, n);
        memcpy(cur, kk, p->ks);
        rk = bpf_map_get_next_key(p->kfd, cur, kk) ? -errno : 0;
        ro = bpfg_map_get_next_key(p->m, cur, ok);
    }
    cr_assert_fail("iteration does not end");
}

static void run_lpm(uint32_t ks, uint32_t vs, uint32_t entries, unsigned seed)
{
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_LPM_TRIE,
                              .key_size = ks,
                              .value_size = vs,
                              .max_entries = entries,
                              .map_flags = BPF_F_NO_PREALLOC};
    struct pair p = mkpair(&s, -1);
    uint8_t key[64], kv[256], ov[256], kn[64], on[64];
    int found = 0;
    for (int op = 0; op < OPS; op++) {
        int which = rand_r(&seed) % 10, rk, ro;
        const char *name;
        lpm_key(&seed, key, ks, true);
        if (which < 4) {
            name = "update";
            uint64_t fl = flag_choices[rand_r(&seed) % NFLAGS];
            rand_bytes(&seed, kv, vs);
            rk = bpf_map_update_elem(p.kfd, key, kv, fl) ? -errno : 0;
            ro = bpfg_map_update_copy(p.m, key, kv, fl);
        } else if (which < 7) {
            name = "lookup";
            memset(kv, 0, vs);
            memset(ov, 1, vs);
            rk = bpf_map_lookup_elem(p.kfd, key, kv) ? -errno : 0;
            ro = bpfg_map_lookup_copy(p.m, key, ov);
            if (!rk && !ro)
                cr_assert_eq(memcmp(kv, ov, vs), 0, "op %d: longest-prefix value differs", op);
            found += !rk;
        } else if (which < 8) {
            name = "delete";
            rk = bpf_map_delete_elem(p.kfd, key) ? -errno : 0;
            ro = bpfg_map_delete_copy(p.m, key);
        } else if (which < 9) {
            name = "get_next_key";
            bool null = rand_r(&seed) % 4 == 0;
            rk = bpf_map_get_next_key(p.kfd, null ? NULL : key, kn) ? -errno : 0;
            ro = bpfg_map_get_next_key(p.m, null ? NULL : key, on);
            if (!rk && !ro)
                cr_assert_eq(memcmp(kn, on, ks), 0, "op %d: next key differs", op);
        } else {
            name = "lookup_and_delete";
            rk = bpf_map_lookup_and_delete_elem(p.kfd, key, kv) ? -errno : 0;
            ro = bpfg_map_lookup_and_delete_copy(p.m, key, ov);
        }
        cr_assert_eq(ro, rk, "op %d %s: ours %d kernel %d", op, name, ro, rk);
        if (op % 250 == 249)
            lpm_compare_order(&p, op);
    }
    cr_assert_gt(found, 200, "lookups found entries");
    lpm_compare_order(&p, OPS);
    freepair(&p);
}

Test(maptypes_kernel, lpm_ipv4)
{
    run_lpm(8, 8, 24, 21);
}

Test(maptypes_kernel, lpm_ipv6_full)
{
    run_lpm(20, 12, 8, 22); /* small: "full" (-ENOSPC) is reached often */
}

Test(maptypes_kernel, lpm_odd_sizes)
{
    run_lpm(7, 3, 40, 23);
}

/* Program-side lookup: the longest prefix's value, in place. */
Test(maptypes_kernel, lpm_longest_prefix)
{
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_LPM_TRIE,
                              .key_size = 8,
                              .value_size = 4,
                              .max_entries = 8,
                              .map_flags = BPF_F_NO_PREALLOC};
    struct bpfg_map *m;
    cr_assert_eq(bpfg_map_create(&s, &m), 0);
    struct {
        uint32_t plen;
        uint8_t a[4];
        uint32_t v;
    } e[] = {{8, {10, 0, 0, 0}, 1}, {16, {10, 1, 0, 0}, 2}, {24, {10, 1, 2, 0}, 3}, {0, {0, 0, 0, 0}, 4}};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(bpfg_map_update_elem(m, &e[i], &e[i].v, BPF_NOEXIST), 0);
    struct {
        uint32_t plen;
        uint8_t a[4];
        uint32_t want;
    } q[] = {{32, {10, 1, 2, 3}, 3}, {32, {10, 1, 3, 3}, 2}, {32, {10, 2, 0, 0}, 1},
             {32, {11, 0, 0, 0}, 4}, {20, {10, 1, 2, 3}, 2}, {8, {10, 1, 2, 3}, 1}};
    for (int i = 0; i < 6; i++) {
        uint32_t *v = bpfg_map_lookup_elem(m, &q[i]);
        cr_assert_not_null(v, "query %d", i);
        cr_assert_eq(*v, q[i].want, "query %d: value %u want %u", i, *v, q[i].want);
    }
    bpfg_map_close(m);
}

/* ---- map-in-map ---- */

#define NINNER 6

struct inner_set {
    int kfd[NINNER];
    uint32_t kid[NINNER]; /* kernel map ids */
    struct bpfg_map *m[NINNER];
};

/* Inner maps 0..3 match the template (array 4/8/4), 4 has another
 * max_entries, 5 another type. Our ids are index + 1. */
static void mk_inners(struct inner_set *in, uint32_t tmpl_flags)
{
    static const uint32_t types[NINNER] = {BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_ARRAY,
                                           BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH};
    static const uint32_t entries[NINNER] = {4, 4, 4, 4, 9, 4};
    for (int i = 0; i < NINNER; i++) {
        LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = i < 4 ? tmpl_flags : 0);
        if (types[i] == BPF_MAP_TYPE_HASH)
            o.map_flags = 0;
        in->kfd[i] = bpf_map_create(types[i], "inner", 4, 8, entries[i], &o);
        cr_assert_geq(in->kfd[i], 0, "%s", strerror(errno));
        struct bpf_map_info info = {0};
        uint32_t len = sizeof(info);
        cr_assert_eq(bpf_obj_get_info_by_fd(in->kfd[i], &info, &len), 0);
        in->kid[i] = info.id;
        struct bpfg_map_spec s = {
            .type = types[i], .key_size = 4, .value_size = 8, .max_entries = entries[i], .map_flags = o.map_flags};
        cr_assert_eq(bpfg_map_create(&s, &in->m[i]), 0);
    }
}

static void free_inners(struct inner_set *in)
{
    for (int i = 0; i < NINNER; i++) {
        close(in->kfd[i]);
        bpfg_map_close(in->m[i]);
    }
}

/* What a caller of the maps library does for a bpf() update: check the
 * inner map against the template, then store its id. */
static int ours_update(struct pair *p, struct inner_set *in, const void *key, int idx, uint64_t flags)
{
    struct bpfg_map_info info;
    bpfg_map_get_info(in->m[idx], &info);
    uint32_t id = (uint32_t)idx + 1;
    struct bpfg_map_info oi;
    bpfg_map_get_info(p->m, &oi);
    /* the kernel checks array flags and index before the fd */
    if (oi.type == BPF_MAP_TYPE_ARRAY_OF_MAPS && flags != BPF_ANY)
        return -EINVAL;
    if (oi.type == BPF_MAP_TYPE_ARRAY_OF_MAPS && *(const uint32_t *)key >= oi.max_entries)
        return -E2BIG;
    int err = bpfg_map_inner_check(p->m, &info);
    return err ? err : bpfg_map_update_copy(p->m, key, &id, flags);
}

static int kid_index(const struct inner_set *in, uint32_t kid)
{
    for (int i = 0; i < NINNER; i++)
        if (in->kid[i] == kid)
            return i + 1;
    return -1;
}

static void run_outer(uint32_t type, uint32_t tmpl_flags, unsigned seed)
{
    struct inner_set in;
    mk_inners(&in, tmpl_flags);
    struct bpfg_map_spec s = {.type = type,
                              .key_size = 4,
                              .value_size = 4,
                              .max_entries = 8,
                              .inner = {BPF_MAP_TYPE_ARRAY, 4, 8, 4, tmpl_flags}};
    struct pair p = mkpair(&s, in.kfd[0]);
    bool hash = type == BPF_MAP_TYPE_HASH_OF_MAPS;
    for (int op = 0; op < OPS; op++) {
        uint32_t key = (uint32_t)rand_r(&seed) % 12, kv = 0, ov = 0, kn = 0, on = 0;
        int which = rand_r(&seed) % 10, rk, ro;
        const char *name;
        if (which < 4) {
            name = "update";
            int idx = rand_r(&seed) % NINNER;
            uint64_t fl = rand_r(&seed) % 2 ? BPF_ANY : flag_choices[rand_r(&seed) % NFLAGS];
            uint32_t fd = (uint32_t)in.kfd[idx];
            rk = bpf_map_update_elem(p.kfd, &key, &fd, fl) ? -errno : 0;
            ro = ours_update(&p, &in, &key, idx, fl);
        } else if (which < 7) {
            name = "lookup";
            rk = bpf_map_lookup_elem(p.kfd, &key, &kv) ? -errno : 0;
            ro = bpfg_map_lookup_copy(p.m, &key, &ov);
            if (!rk && !ro)
                cr_assert_eq((int)ov, kid_index(&in, kv), "op %d: inner map differs", op);
        } else if (which < 8) {
            name = "delete";
            rk = bpf_map_delete_elem(p.kfd, &key) ? -errno : 0;
            ro = bpfg_map_delete_copy(p.m, &key);
        } else if (which < 9) {
            name = "get_next_key";
            rk = bpf_map_get_next_key(p.kfd, &key, &kn) ? -errno : 0;
            ro = bpfg_map_get_next_key(p.m, &key, &on);
            if (!hash && !rk && !ro)
                cr_assert_eq(kn, on, "op %d: next key differs", op);
            if (hash && !ro)
                cr_assert_eq(bpfg_map_lookup_copy(p.m, &on, &ov), 0);
            if (hash)
                rk = ro = 0; /* hash order differs */
        } else {
            name = "lookup_and_delete";
            rk = bpf_map_lookup_and_delete_elem(p.kfd, &key, &kv) ? -errno : 0;
            ro = bpfg_map_lookup_and_delete_copy(p.m, &key, &ov);
        }
        cr_assert_eq(ro, rk, "op %d %s: ours %d kernel %d", op, name, ro, rk);
    }
    freepair(&p);
    free_inners(&in);
}

Test(maptypes_kernel, array_of_maps)
{
    run_outer(BPF_MAP_TYPE_ARRAY_OF_MAPS, 0, 31);
}

Test(maptypes_kernel, array_of_maps_inner_map_flag)
{
    run_outer(BPF_MAP_TYPE_ARRAY_OF_MAPS, BPF_F_INNER_MAP, 32);
}

Test(maptypes_kernel, hash_of_maps)
{
    run_outer(BPF_MAP_TYPE_HASH_OF_MAPS, 0, 33);
}

/* Creation errno values for the new types. */
Test(maptypes_kernel, create_errors)
{
    struct {
        uint32_t type, ks, vs, n, flags;
        uint64_t extra;
    } c[] = {
        {BPF_MAP_TYPE_BLOOM_FILTER, 4, 4, 10, 0, 0},
        {BPF_MAP_TYPE_BLOOM_FILTER, 0, 0, 10, 0, 0},
        {BPF_MAP_TYPE_BLOOM_FILTER, 0, 4, 0, 0, 0},
        {BPF_MAP_TYPE_BLOOM_FILTER, 0, 4, 10, 0, 16},
        {BPF_MAP_TYPE_BLOOM_FILTER, 0, 4, 10, BPF_F_NO_PREALLOC, 0},
        {BPF_MAP_TYPE_BLOOM_FILTER, 0, 4, 10, 0, 15},
        {BPF_MAP_TYPE_BLOOM_FILTER, 0, 4, 10, BPF_F_RDONLY | BPF_F_WRONLY, 0},
        {BPF_MAP_TYPE_LPM_TRIE, 8, 4, 10, 0, 0},
        {BPF_MAP_TYPE_LPM_TRIE, 8, 4, 0, BPF_F_NO_PREALLOC, 0},
        {BPF_MAP_TYPE_LPM_TRIE, 4, 4, 10, BPF_F_NO_PREALLOC, 0},
        {BPF_MAP_TYPE_LPM_TRIE, 261, 4, 10, BPF_F_NO_PREALLOC, 0},
        {BPF_MAP_TYPE_LPM_TRIE, 260, 4, 10, BPF_F_NO_PREALLOC, 0},
        {BPF_MAP_TYPE_LPM_TRIE, 8, 0, 10, BPF_F_NO_PREALLOC, 0},
        {BPF_MAP_TYPE_LPM_TRIE, 8, 4, 10, BPF_F_NO_PREALLOC | BPF_F_ZERO_SEED, 0},
        {BPF_MAP_TYPE_LPM_TRIE, 5, 1, 10, BPF_F_NO_PREALLOC | BPF_F_RDONLY_PROG, 0},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = c[i].flags, .map_extra = c[i].extra);
        int kfd = bpf_map_create(c[i].type, "e", c[i].ks, c[i].vs, c[i].n, &o);
        int rk = kfd < 0 ? -errno : 0;
        if (kfd >= 0)
            close(kfd);
        struct bpfg_map_spec s = {.type = c[i].type,
                                  .key_size = c[i].ks,
                                  .value_size = c[i].vs,
                                  .max_entries = c[i].n,
                                  .map_flags = c[i].flags,
                                  .map_extra = c[i].extra};
        struct bpfg_map *m = NULL;
        int ro = bpfg_map_create(&s, &m);
        bpfg_map_close(m);
        cr_assert_eq(ro, rk, "case %zu: ours %d kernel %d", i, ro, rk);
    }
}

/* Map-in-map creation: value size, and an inner template that is itself a
 * map-in-map. */
Test(maptypes_kernel, outer_create_errors)
{
    int inner = bpf_map_create(BPF_MAP_TYPE_ARRAY, "i", 4, 4, 1, NULL);
    cr_assert_geq(inner, 0);
    LIBBPF_OPTS(bpf_map_create_opts, o, .inner_map_fd = (uint32_t)inner);
    int outer = bpf_map_create(BPF_MAP_TYPE_ARRAY_OF_MAPS, "o", 4, 4, 1, &o);
    cr_assert_geq(outer, 0);
    struct {
        uint32_t type, ks, vs;
        int inner;
        struct bpfg_map_inner tmpl;
    } c[] = {
        {BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 8, inner, {BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0}},
        {BPF_MAP_TYPE_HASH_OF_MAPS, 4, 8, inner, {BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0}},
        {BPF_MAP_TYPE_ARRAY_OF_MAPS, 8, 4, inner, {BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0}},
        {BPF_MAP_TYPE_HASH_OF_MAPS, 4, 4, outer, {BPF_MAP_TYPE_ARRAY_OF_MAPS, 4, 4, 1, 0}},
        {BPF_MAP_TYPE_HASH_OF_MAPS, 8, 4, inner, {BPF_MAP_TYPE_ARRAY, 4, 4, 1, 0}},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        LIBBPF_OPTS(bpf_map_create_opts, oo, .inner_map_fd = (uint32_t)c[i].inner);
        int kfd = bpf_map_create(c[i].type, "e", c[i].ks, c[i].vs, 4, &oo);
        int rk = kfd < 0 ? -errno : 0;
        if (kfd >= 0)
            close(kfd);
        struct bpfg_map_spec s = {
            .type = c[i].type, .key_size = c[i].ks, .value_size = c[i].vs, .max_entries = 4, .inner = c[i].tmpl};
        struct bpfg_map *m = NULL;
        int ro = bpfg_map_create(&s, &m);
        bpfg_map_close(m);
        cr_assert_eq(ro, rk, "case %zu: ours %d kernel %d", i, ro, rk);
    }
    close(outer);
    close(inner);
}
