/* LPM trie and bloom filter writers SIGKILLed at random points (also while
 * holding the trie's lock, also while repairing), and concurrent readers:
 * the region stays usable by every other process; stack trace inserters
 * SIGKILLed leak no element. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"
#include "maps_testutil.h"

#define VW STRESS_VW /* value words (maps_testutil.h) */
#define KKEYS 250    /* prefixes 0..249 */
#define KCAP 64

struct lkey {
    uint32_t plen;
    uint8_t d[4];
};

/* Key k: first byte k / 25, prefix length 8 + k % 25: all distinct and
 * nested (keys with the same first byte are prefixes of each other). */
static struct lkey key_of(uint32_t k)
{
    struct lkey key = {8 + k % 25, {(uint8_t)(k / 25), 0xff, 0xff, 0xff}};
    return key;
}

static uint32_t id_of(const struct lkey *key)
{
    return key->d[0] * 25u + key->plen - 8;
}

static void lpm_writer(struct bpfg_map *m, unsigned seed)
{
    uint64_t v[VW], seq = 0;
    for (;;) {
        uint32_t r = (uint32_t)rand_r(&seed), k = (r >> 4) % KKEYS;
        struct lkey key = key_of(k);
        switch (r % 4) {
        case 0:
        case 1:
            make_val(v, k, ++seq);
            bpfg_map_update_elem(m, &key, v, (r >> 2) % 3);
            break;
        case 2: bpfg_map_delete_elem(m, &key); break;
        default:
            /* the longest prefix of an exact key is itself or shorter:
             * a value of a key with the same first byte */
            key.plen = 32;
            if (bpfg_map_lookup_copy(m, &key, v) == 0 &&
                (!val_ok(v, (uint32_t)(v[0] & 0xffff)) || (v[0] & 0xffff) / 25 != k / 25))
                _exit(3);
        }
    }
}

static void lpm_verify(struct bpfg_map *m, int iter)
{
    uint64_t v[VW];
    struct lkey cur, next;
    uint32_t n = 0;
    int err = bpfg_map_get_next_key(m, NULL, &next);
    while (!err) {
        uint32_t k = id_of(&next);
        cr_assert_lt(k, KKEYS, "iter %d: garbage key", iter);
        cr_assert_eq(bpfg_map_lookup_copy(m, &next, v), 0, "iter %d", iter);
        cr_assert(val_ok(v, k), "iter %d: torn or wrong value for key %u", iter, k);
        cur = next;
        err = bpfg_map_get_next_key(m, &cur, &next);
        cr_assert_leq(++n, KCAP, "iter %d: more entries than max_entries", iter);
    }
    cr_assert_eq(err, -ENOENT);
    for (uint32_t k = 0; k < KKEYS; k++) {
        struct lkey key = key_of(k);
        bpfg_map_delete_elem(m, &key);
    }
    cr_assert_eq(bpfg_map_get_next_key(m, NULL, &next), -ENOENT, "iter %d: empty after deleting all", iter);
    for (uint32_t k = 0; k < KCAP; k++) {
        struct lkey key = key_of(k * 3);
        make_val(v, k * 3, 1);
        cr_assert_eq(bpfg_map_update_elem(m, &key, v, BPF_NOEXIST), 0, "iter %d: capacity lost at %u", iter, k);
    }
    struct lkey key = key_of(1);
    cr_assert_eq(bpfg_map_update_elem(m, &key, v, BPF_NOEXIST), -ENOSPC, "iter %d", iter);
    key = key_of(3);
    make_val(v, 3, 2);
    cr_assert_eq(bpfg_map_update_elem(m, &key, v, BPF_EXIST), 0, "iter %d: replace on a full trie", iter);
}

static void kill_loop(struct bpfg_map *m, void (*writer)(struct bpfg_map *, unsigned),
                      void (*verify)(struct bpfg_map *, int), int iters)
{
    unsigned seed = 4343;
    for (int it = 0; it < iters; it++) {
        kill_two_writers(m, writer, it, &seed);
        if (it % 2 || it == iters - 1)
            verify(m, it);
    }
}

Test(maptypes_kill, lpm_writers, .timeout = 90)
{
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_LPM_TRIE,
                              .key_size = 8,
                              .value_size = VW * 8,
                              .max_entries = KCAP,
                              .map_flags = BPF_F_NO_PREALLOC,
                              .name = "kill"};
    struct bpfg_map *m = NULL;
    cr_assert_eq(bpfg_map_create(&s, &m), 0, "%s", bpfg_map_last_error());
    kill_loop(m, lpm_writer, lpm_verify, 200);
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    cr_assert_gt(info.repairs, 0, "some writer died holding the lock");
    bpfg_map_close(m);
}

/* Bloom: a pusher records each value whose push returned; after the kill
 * every recorded value is found, and the filter takes pushes. */
static _Atomic uint64_t *bloom_done;

static void bloom_writer(struct bpfg_map *m, unsigned seed)
{
    /* 4000 values, then the same ones again (killed mid-push either
     * way), so the filter stays far from saturation */
    for (uint64_t i = 0;; i = (i + 1) % 4000) {
        uint64_t v = (uint64_t)seed << 40 | i;
        if (bpfg_map_push_elem(m, &v, 0) == 0 && atomic_load(&bloom_done[seed]) < i + 1)
            atomic_store(&bloom_done[seed], i + 1);
    }
}

static void bloom_verify(struct bpfg_map *m, int iter)
{
    for (unsigned w = 1; w <= (unsigned)(iter * 2 + 2); w++) {
        uint64_t n = atomic_load(&bloom_done[w]);
        for (uint64_t i = 0; i < n; i++) {
            uint64_t v = (uint64_t)w << 40 | i;
            cr_assert_eq(bpfg_map_peek_elem(m, &v), 0, "iter %d: pushed value %u/%lu lost", iter, w, (unsigned long)i);
        }
    }
}

Test(maptypes_kill, bloom_pushers, .timeout = 60)
{
    struct bpfg_map_spec s = {
        .type = BPF_MAP_TYPE_BLOOM_FILTER, .value_size = 8, .max_entries = 1u << 20, .name = "kill"};
    struct bpfg_map *m = NULL;
    cr_assert_eq(bpfg_map_create(&s, &m), 0, "%s", bpfg_map_last_error());
    bloom_done = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(bloom_done, MAP_FAILED);
    kill_loop(m, bloom_writer, bloom_verify, 40);
    uint64_t total = 0;
    for (int w = 0; w < 128; w++)
        total += atomic_load(&bloom_done[w]);
    cr_assert_gt(total, 1000, "pushers made progress");
    uint64_t absent = 0xabcdef0000000000ull; /* no writer seed is that high */
    int fp = 0;
    for (uint64_t i = 0; i < 1000; i++, absent++)
        fp += bpfg_map_peek_elem(m, &absent) == 0;
    cr_assert_lt(fp, 100, "a filter not saturated by the pushes answers -ENOENT (%d false positives)", fp);
    munmap(bloom_done, 4096);
    bpfg_map_close(m);
}

/* ---- STACK_TRACE inserters ---- */

#define KENTRIES 8
#define SDEPTH 8

static void inserter(struct bpfg_map *m, unsigned seed)
{
    uint64_t ips[SDEPTH];
    for (;;) {
        uint32_t n = 1 + (unsigned)rand_r(&seed) % SDEPTH;
        stack_fill(ips, n, (unsigned)rand_r(&seed) % 64);
        int r = bpfg_map_stackid(m, ips, n, BPF_F_REUSE_STACKID);
        if (r < 0 && r != -ENOMEM)
            _exit(3);
        uint32_t id = (unsigned)rand_r(&seed) % KENTRIES;
        if (rand_r(&seed) % 4 == 0)
            bpfg_map_delete_elem(m, &id);
    }
}

/* After the kills: every id deleted, then KENTRIES stacks of distinct ids
 * all find an element (none leaked). */
Test(maptypes_kill, stack_trace_inserters, .timeout = 60)
{
    struct bpfg_map *m = stack_map_create(KENTRIES, SDEPTH);
    unsigned seed = 42;
    for (int it = 0; it < 40; it++)
        kill_two_writers(m, inserter, it, &seed);
    cr_assert_eq(bpfg_map_check_repair(m), 0);
    uint32_t id;
    while (bpfg_map_get_next_key(m, NULL, &id) == 0)
        cr_assert_eq(bpfg_map_delete_elem(m, &id), 0);
    int stored = 0;
    uint64_t ips[SDEPTH];
    for (uint64_t base = 1000; base < 100000 && stored < KENTRIES; base++) {
        stack_fill(ips, SDEPTH, base);
        int r = bpfg_map_stackid(m, ips, SDEPTH, 0);
        cr_assert(r >= 0 || r == -EEXIST, "stack %llu: %d (an element leaked)", (unsigned long long)base, r);
        stored += r >= 0;
    }
    cr_assert_eq(stored, KENTRIES);
    bpfg_map_close(m);
}
