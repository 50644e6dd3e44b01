/* Unit tests of maps/: semantics per type, sharing between handles,
 * region validation (including a header fuzzer) and repair. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"

static struct bpfg_map *mk(uint32_t type, uint32_t ks, uint32_t vs, uint32_t n, uint32_t flags)
{
    struct bpfg_map_spec s = {
        .type = type, .key_size = ks, .value_size = vs, .max_entries = n, .map_flags = flags, .name = "t"};
    struct bpfg_map *m = NULL;
    int err = bpfg_map_create(&s, &m);
    cr_assert_eq(err, 0, "create type %u: %d (%s)", type, err, bpfg_map_last_error());
    return m;
}

static void pin_cpu0(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    cr_assert_eq(sched_setaffinity(0, sizeof(set), &set), 0);
}

Test(maps_array, semantics)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_ARRAY, 4, 12, 8, 0);
    uint32_t k = 3, v[3] = {1, 2, 3}, out[3];
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_ANY), 0);
    uint32_t *p = bpfg_map_lookup_elem(m, &k);
    cr_assert_not_null(p);
    cr_assert_eq(p[2], 3);
    __atomic_fetch_add(&p[0], 41, __ATOMIC_RELAXED); /* in place */
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, out), 0);
    cr_assert_eq(out[0], 42);
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_NOEXIST), -EEXIST);
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_EXIST), 0);
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_F_LOCK), -EINVAL);
    k = 8;
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_ANY), -E2BIG);
    cr_assert_null(bpfg_map_lookup_elem(m, &k));
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, out), -ENOENT);
    cr_assert_eq(bpfg_map_delete_elem(m, &k), -EINVAL);
    uint32_t nk, seen = 0;
    const uint32_t *cur = NULL;
    while (bpfg_map_get_next_key(m, cur, &nk) == 0) {
        cr_assert_eq(nk, seen);
        seen++;
        k = nk;
        cur = &k;
    }
    cr_assert_eq(seen, 8);
    k = 100;
    cr_assert_eq(bpfg_map_get_next_key(m, &k, &nk), 0);
    cr_assert_eq(nk, 0);
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    cr_assert_eq(info.type, BPF_MAP_TYPE_ARRAY);
    cr_assert_eq(info.value_size, 12);
    cr_assert_str_eq(info.name, "t");
    bpfg_map_close(m);
}

Test(maps_array, percpu)
{
    pin_cpu0();
    struct bpfg_map *m = mk(BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 4, 0);
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    cr_assert_geq(info.nr_cpus, 1);
    cr_assert_eq(info.value_copy_size, 8 * info.nr_cpus);
    uint64_t *all = calloc(info.nr_cpus, 8);
    for (uint32_t c = 0; c < info.nr_cpus; c++)
        all[c] = 100 + c;
    uint32_t k = 1;
    cr_assert_eq(bpfg_map_update_copy(m, &k, all, BPF_ANY), 0);
    uint32_t *p = bpfg_map_lookup_elem(m, &k);
    cr_assert_eq(*p, 100); /* pinned to CPU 0: its slot */
    *p = 7;
    uint32_t v = 9;
    k = 2;
    cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_ANY), 0);
    memset(all, 0xff, 8 * info.nr_cpus);
    k = 1;
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, all), 0);
    cr_assert_eq(all[0], 7);
    for (uint32_t c = 1; c < info.nr_cpus; c++)
        cr_assert_eq(all[c], 100 + c);
    k = 2;
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, all), 0);
    cr_assert_eq(all[0], 9);
    free(all);
    bpfg_map_close(m);
}

Test(maps_array, global_data_and_freeze)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_ARRAY, 4, 100, 1, BPFG_F_GLOBAL_DATA | BPF_F_RDONLY_PROG);
    size_t sz;
    uint64_t off;
    uint8_t *area = bpfg_map_value_area(m, &sz, &off);
    cr_assert_not_null(area);
    cr_assert_eq(off % 4096, 0);
    cr_assert_geq(sz, 100);
    uint32_t k = 0;
    uint8_t v[100];
    memset(v, 0x5a, sizeof(v));
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_ANY), -EPERM); /* .rodata: not from programs */
    cr_assert_eq(bpfg_map_update_copy(m, &k, v, BPF_ANY), 0);
    /* The value is mmapable on its own at its file offset. */
    uint8_t *direct = mmap(NULL, 4096, PROT_READ, MAP_SHARED, bpfg_map_fd(m), (off_t)off);
    cr_assert_neq(direct, MAP_FAILED);
    cr_assert_eq(memcmp(direct, v, 100), 0);
    cr_assert_eq(area[99], 0x5a);
    munmap(direct, 4096);
    cr_assert_eq(bpfg_map_freeze(m), 0);
    cr_assert_eq(bpfg_map_freeze(m), -EBUSY);
    cr_assert_eq(bpfg_map_update_copy(m, &k, v, BPF_ANY), -EPERM);
    bpfg_map_close(m);
    struct bpfg_map_spec bad = {
        .type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 2, .map_flags = BPFG_F_GLOBAL_DATA};
    cr_assert_eq(bpfg_map_create(&bad, &m), -EINVAL);
}

Test(maps_array, prog_array)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_PROG_ARRAY, 4, 4, 4, 0);
    uint32_t k = 2, id = 77, out;
    cr_assert_eq(bpfg_map_prog_array_get(m, 2), 0);
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, &out), -ENOENT);
    cr_assert_eq(bpfg_map_update_copy(m, &k, &id, BPF_NOEXIST), -EINVAL);
    cr_assert_eq(bpfg_map_update_copy(m, &k, &id, BPF_ANY), 0);
    cr_assert_eq(bpfg_map_prog_array_get(m, 2), 77);
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, &out), 0);
    cr_assert_eq(out, 77);
    cr_assert_eq(bpfg_map_delete_copy(m, &k), 0);
    cr_assert_eq(bpfg_map_delete_copy(m, &k), -ENOENT);
    cr_assert_eq(bpfg_map_prog_array_get(m, 2), 0);
    k = 9;
    cr_assert_eq(bpfg_map_update_copy(m, &k, &id, BPF_ANY), -E2BIG);
    bpfg_map_close(m);
}

struct kv13 {
    uint8_t b[13];
};

Test(maps_hash, semantics_and_capacity)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_HASH, 13, 24, 100, 0);
    struct kv13 k = {{0}};
    uint64_t v[3], out[3];
    for (int i = 0; i < 100; i++) {
        k.b[0] = (uint8_t)i;
        k.b[12] = (uint8_t)(i * 7);
        v[0] = v[1] = v[2] = (uint64_t)i * 3;
        cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_NOEXIST), 0, "insert %d", i);
    }
    k.b[0] = 200;
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_ANY), -E2BIG);
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_EXIST), -ENOENT);
    /* A full map still replaces existing keys. */
    k.b[0] = 5;
    k.b[12] = 35;
    v[0] = v[1] = v[2] = 999;
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_NOEXIST), -EEXIST);
    for (int r = 0; r < 300; r++)
        cr_assert_eq(bpfg_map_update_elem(m, &k, v, r % 2 ? BPF_EXIST : BPF_ANY), 0);
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, out), 0);
    cr_assert_eq(out[2], 999);
    uint64_t *p = bpfg_map_lookup_elem(m, &k);
    cr_assert_not_null(p);
    cr_assert_eq(p[0], 999);
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, 8), -EINVAL);
    cr_assert_eq(bpfg_map_delete_elem(m, &k), 0);
    cr_assert_eq(bpfg_map_delete_elem(m, &k), -ENOENT);
    cr_assert_null(bpfg_map_lookup_elem(m, &k));
    k.b[0] = 201;
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_ANY), 0); /* room again */
    /* Iteration: every key exactly once. */
    int seen = 0, dup = 0;
    struct kv13 cur, nk;
    int err = bpfg_map_get_next_key(m, NULL, &nk);
    uint8_t mark[256] = {0};
    while (err == 0) {
        cr_assert_eq(bpfg_map_lookup_copy(m, &nk, out), 0);
        dup += mark[nk.b[0]]++;
        seen++;
        cur = nk;
        err = bpfg_map_get_next_key(m, &cur, &nk);
    }
    cr_assert_eq(err, -ENOENT);
    cr_assert_eq(seen, 100);
    cr_assert_eq(dup, 0);
    /* A key never in the map starts at the first key, as the kernel's does
     * (bpftrace walks from such a key), whatever bucket it hashes to. */
    struct kv13 first, absent;
    cr_assert_eq(bpfg_map_get_next_key(m, NULL, &first), 0);
    for (int a = 0; a < 64; a++) {
        memset(&absent, 0xff, sizeof(absent));
        absent.b[1] = (uint8_t)a;
        cr_assert_eq(bpfg_map_get_next_key(m, &absent, &nk), 0);
        cr_assert_eq(memcmp(&nk, &first, sizeof(nk)), 0, "absent key %d", a);
    }
    /* lookup_and_delete */
    k.b[0] = 201;
    cr_assert_eq(bpfg_map_lookup_and_delete_copy(m, &k, out), 0);
    cr_assert_eq(out[0], 999);
    cr_assert_eq(bpfg_map_lookup_and_delete_copy(m, &k, out), -ENOENT);
    bpfg_map_close(m);
}

/* Count slots spread over the stripes' credits (after deletes) are found
 * by inserts of any stripe: capacity stays exactly max_entries. */
static int fill_from(struct bpfg_map *m, uint32_t first, uint32_t n)
{
    uint64_t v = 1;
    int ok = 0;
    for (uint32_t k = first; k < first + n; k++)
        ok += bpfg_map_update_elem(m, &k, &v, BPF_NOEXIST) == 0;
    return ok;
}

Test(maps_hash, capacity_exact_when_slots_sit_in_stripes)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_HASH, 4, 8, 1024, 0);
    for (uint32_t round = 0; round < 4; round++) {
        uint32_t base = round * 100000;
        cr_assert_eq(fill_from(m, base, 1030), 1024, "round %u: exactly max_entries inserts succeed", round);
        uint32_t k = base + 1029;
        uint64_t v = 1;
        cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_ANY), -E2BIG, "round %u", round);
        /* Delete a stripe-skewed subset, then all: credits pile up unevenly. */
        for (k = base; k < base + 1024; k += 3)
            cr_assert_eq(bpfg_map_delete_elem(m, &k), 0);
        for (k = base; k < base + 1024; k++)
            if ((k - base) % 3)
                cr_assert_eq(bpfg_map_delete_elem(m, &k), 0);
    }
    bpfg_map_close(m);
}

struct filler {
    struct bpfg_map *m;
    uint32_t first;
    int ok;
};

static void *fill_thread(void *arg)
{
    struct filler *f = arg;
    f->ok = fill_from(f->m, f->first, 1024);
    return NULL;
}

Test(maps_hash, two_writers_fill_to_capacity)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_HASH, 4, 8, 1024, 0);
    for (int round = 0; round < 20; round++) {
        struct filler f[2] = {{m, 0, 0}, {m, 1u << 20, 0}};
        pthread_t th[2];
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, fill_thread, &f[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        int live = f[0].ok + f[1].ok;
        cr_assert_leq(live, 1024, "round %d: %d live", round, live);
        /* Whatever a racing writer missed is still there for the taking. */
        cr_assert_eq(live + fill_from(m, 2u << 20, 1024), 1024, "round %d", round);
        uint32_t k, nk;
        int n = 0;
        for (int err = bpfg_map_get_next_key(m, NULL, &nk); !err; err = bpfg_map_get_next_key(m, &k, &nk)) {
            k = nk;
            n++;
        }
        cr_assert_eq(n, 1024, "round %d: iteration sees every element", round);
        for (int err = bpfg_map_get_next_key(m, NULL, &nk); !err; err = bpfg_map_get_next_key(m, NULL, &nk))
            cr_assert_eq(bpfg_map_delete_elem(m, &nk), 0);
    }
    bpfg_map_close(m);
}

/* Inserts that take an intermediate node (sibling /24 prefixes) and fill
 * the trie to max_entries run no repair pass: nobody died. (A used-up
 * spare node once read as a pool short of nodes: a whole-trie repair on
 * the next update, quadratic fills.) */
Test(maps_lpm, fill_to_capacity_without_repairs)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_LPM_TRIE, 8, 8, 4096, BPF_F_NO_PREALLOC);
    uint64_t v = 1;
    for (uint32_t k = 0; k < 4096; k++) {
        uint32_t key[2] = {24, __builtin_bswap32(k << 8)};
        cr_assert_eq(bpfg_map_update_copy(m, key, &v, BPF_NOEXIST), 0, "prefix %u", k);
    }
    uint32_t more[2] = {24, __builtin_bswap32(4096u << 8)};
    cr_assert_eq(bpfg_map_update_copy(m, more, &v, BPF_ANY), -ENOSPC);
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    cr_assert_eq(info.repairs, 0, "nobody died, nothing to repair (%u repairs)", info.repairs);
    for (uint32_t k = 0; k < 4096; k += 97) {
        uint32_t addr[2] = {32, __builtin_bswap32(k << 8 | 0x5a)};
        uint64_t *p = bpfg_map_lookup_elem(m, addr);
        cr_assert(p && *p == 1, "address in prefix %u found", k);
    }
    bpfg_map_close(m);
}

Test(maps_hash, percpu)
{
    pin_cpu0();
    struct bpfg_map *m = mk(BPF_MAP_TYPE_PERCPU_HASH, 4, 8, 16, 0);
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    uint64_t *all = calloc(info.nr_cpus, 8);
    uint32_t k = 5;
    uint64_t v = 11;
    cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_ANY), 0);
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, all), 0);
    cr_assert_eq(all[0], 11);
    for (uint32_t c = 1; c < info.nr_cpus; c++)
        cr_assert_eq(all[c], 0, "other CPUs zeroed");
    for (uint32_t c = 0; c < info.nr_cpus; c++)
        all[c] = c + 1;
    cr_assert_eq(bpfg_map_update_copy(m, &k, all, BPF_EXIST), 0);
    uint64_t *p = bpfg_map_lookup_elem(m, &k);
    cr_assert_eq(*p, 1);
    v = 50;
    cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_ANY), 0);
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, all), 0);
    cr_assert_eq(all[0], 50);
    for (uint32_t c = 1; c < info.nr_cpus; c++)
        cr_assert_eq(all[c], c + 1, "in-place update keeps other CPUs");
    free(all);
    bpfg_map_close(m);
}

Test(maps_hash, lru_evicts_cold_keys)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_LRU_HASH, 4, 8, 64, 0);
    uint64_t v = 1;
    for (uint32_t k = 0; k < 1000; k++) {
        cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_NOEXIST), 0, "key %u", k);
        cr_assert_not_null(bpfg_map_lookup_elem(m, &k), "just inserted %u", k);
        uint32_t hot = 0;
        cr_assert_not_null(bpfg_map_lookup_elem(m, &hot), "hot key evicted at %u", k);
    }
    uint32_t n = 0, cur, nk;
    int err = bpfg_map_get_next_key(m, NULL, &nk);
    while (!err) {
        n++;
        cur = nk;
        err = bpfg_map_get_next_key(m, &cur, &nk);
    }
    cr_assert_leq(n, 64);
    cr_assert_geq(n, 32);
    bpfg_map_close(m);
}

static void qs_case(uint32_t type)
{
    struct bpfg_map *m = mk(type, 0, 8, 3, 0);
    uint64_t v, out;
    cr_assert_eq(bpfg_map_pop_elem(m, &out), -ENOENT);
    cr_assert_eq(bpfg_map_peek_elem(m, &out), -ENOENT);
    for (v = 1; v <= 3; v++)
        cr_assert_eq(bpfg_map_push_elem(m, &v, 0), 0);
    cr_assert_eq(bpfg_map_push_elem(m, &v, 0), -E2BIG);
    cr_assert_eq(bpfg_map_push_elem(m, &v, BPF_NOEXIST), -EINVAL);
    cr_assert_eq(bpfg_map_push_elem(m, &v, BPF_EXIST), 0); /* drops the oldest (1) */
    uint64_t expect_q[] = {2, 3, 4}, expect_s[] = {4, 3, 2};
    const uint64_t *e = type == BPF_MAP_TYPE_QUEUE ? expect_q : expect_s;
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(bpfg_map_peek_elem(m, &out), 0);
        cr_assert_eq(out, e[i]);
        cr_assert_eq(bpfg_map_lookup_and_delete_copy(m, NULL, &out), 0);
        cr_assert_eq(out, e[i]);
    }
    cr_assert_eq(bpfg_map_pop_elem(m, &out), -ENOENT);
    cr_assert_eq(bpfg_map_delete_copy(m, NULL), -EINVAL);
    cr_assert_eq(bpfg_map_get_next_key(m, NULL, &out), -EINVAL);
    v = 9;
    cr_assert_eq(bpfg_map_update_copy(m, NULL, &v, 0), 0); /* syscall push */
    cr_assert_eq(bpfg_map_lookup_copy(m, NULL, &out), 0);  /* syscall peek */
    cr_assert_eq(out, 9);
    bpfg_map_close(m);
}

Test(maps_queue, queue)
{
    qs_case(BPF_MAP_TYPE_QUEUE);
}
Test(maps_queue, stack)
{
    qs_case(BPF_MAP_TYPE_STACK);
}

struct collect {
    uint64_t seq[4096];
    size_t n;
    size_t sizes;
};

static int collect_cb(void *ctx, void *data, size_t size)
{
    struct collect *c = ctx;
    uint64_t s;
    memcpy(&s, data, 8);
    if (c->n < 4096)
        c->seq[c->n++] = s;
    c->sizes += size;
    return 0;
}

Test(maps_ringbuf, kernel_layout_and_records)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, 0);
    struct bpfg_ringbuf_view view;
    cr_assert_eq(bpfg_ringbuf_get_view(m, &view), 0);
    cr_assert_eq((uint8_t *)view.producer_pos - (uint8_t *)view.consumer_pos, 4096);
    cr_assert_eq(view.data - (uint8_t *)view.consumer_pos, 8192);
    cr_assert_eq(view.size, 4096);
    cr_assert_null(bpfg_ringbuf_reserve(m, 8, 1), "flags must be 0");
    cr_assert_null(bpfg_ringbuf_reserve(m, 5000, 0));
    struct collect *c = calloc(1, sizeof(*c));
    uint64_t next = 0, expect = 0;
    /* 100-byte records wrap around the 4 KiB ring many times. */
    for (int round = 0; round < 50; round++) {
        for (int i = 0; i < 7; i++) {
            uint8_t rec[100] = {0};
            memcpy(rec, &next, 8);
            if (i == 3) {
                uint64_t *p = bpfg_ringbuf_reserve(m, 100, 0);
                cr_assert_not_null(p);
                uint32_t hdr_len = *(uint32_t *)((uint8_t *)p - 8);
                cr_assert_eq(hdr_len, 100u | BPF_RINGBUF_BUSY_BIT);
                *p = 0xdead;
                bpfg_ringbuf_discard(m, p, 0);
                continue;
            }
            cr_assert_eq(bpfg_ringbuf_output(m, rec, 100, BPF_RB_NO_WAKEUP), 0);
            next++;
        }
        cr_assert_eq(bpfg_ringbuf_query(m, BPF_RB_AVAIL_DATA), 7 * 112);
        c->n = 0;
        /* The generic kernel-layout consumer reads our ring too. */
        int n = round % 2 ? bpfg_ringbuf_consume(m, collect_cb, c) : bpfg_ringbuf_consume_view(&view, collect_cb, c);
        cr_assert_eq(n, 6);
        for (size_t i = 0; i < c->n; i++)
            cr_assert_eq(c->seq[i], expect++);
    }
    /* Full ring: reserve fails, output reports -EAGAIN. */
    uint8_t big[1000] = {0};
    int ok = 0;
    while (bpfg_ringbuf_output(m, big, sizeof(big), 0) == 0)
        ok++;
    cr_assert_eq(ok, 4);
    cr_assert_eq(bpfg_ringbuf_output(m, big, sizeof(big), 4), -EINVAL);
    free(c);
    bpfg_map_close(m);
}

/* The memfd offsets bpfg_ringbuf_get_file_layout gives map the same
 * pages as the handle's own kernel-layout view. */
Test(maps_ringbuf, file_layout_matches_the_view)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, 0);
    struct bpfg_ringbuf_view view;
    struct bpfg_ringbuf_file file;
    cr_assert_eq(bpfg_ringbuf_get_view(m, &view), 0);
    cr_assert_eq(bpfg_ringbuf_get_file_layout(m, &file), 0);
    cr_assert_eq(file.size, 4096);
    cr_assert_eq(file.data_off, file.consumer_off + 8192);
    uint64_t rec = 0x1122334455667788ull;
    cr_assert_eq(bpfg_ringbuf_output(m, &rec, 8, 0), 0);
    int fd = bpfg_map_fd(m);
    uint8_t *pages = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, (off_t)file.consumer_off);
    uint8_t *data = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, (off_t)file.data_off);
    cr_assert_neq(pages, MAP_FAILED);
    cr_assert_neq(data, MAP_FAILED);
    cr_assert_eq(*(unsigned long *)pages, *view.consumer_pos);
    cr_assert_eq(*(unsigned long *)(pages + 4096), 16); /* one 8-byte record and its header */
    cr_assert_eq(*view.producer_pos, 16);
    cr_assert_eq(memcmp(data, view.data, 16), 0);
    munmap(pages, 8192);
    munmap(data, 4096);
    struct bpfg_map *arr = mk(BPF_MAP_TYPE_ARRAY, 4, 8, 1, 0);
    cr_assert_eq(bpfg_ringbuf_get_file_layout(arr, &file), -EINVAL);
    bpfg_map_close(arr);
    bpfg_map_close(m);
}

static void *late_producer(void *arg)
{
    usleep(50000);
    uint64_t v = 42;
    bpfg_ringbuf_output(arg, &v, 8, 0);
    return NULL;
}

Test(maps_ringbuf, wait_without_spinning)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, 0);
    cr_assert_eq(bpfg_ringbuf_wait(m, 20), -ETIMEDOUT);
    pthread_t t;
    pthread_create(&t, NULL, late_producer, m);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    cr_assert_eq(bpfg_ringbuf_wait(m, 5000), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    pthread_join(t, NULL);
    cr_assert_lt(b.tv_sec - a.tv_sec, 4, "woken by the producer, not the timeout");
    struct collect c = {0};
    cr_assert_eq(bpfg_ringbuf_consume(m, collect_cb, &c), 1);
    cr_assert_eq(c.seq[0], 42);
    bpfg_map_close(m);
}

static long thread_faults(void)
{
    struct rusage u;
    cr_assert_eq(getrusage(RUSAGE_THREAD, &u), 0);
    return u.ru_minflt + u.ru_majflt;
}

static int count_only_cb(void *ctx, void *data, size_t size)
{
    (void)data;
    (void)size;
    ++*(size_t *)ctx;
    return 0;
}

/* A ring's pages exist once the map does (as the kernel allocates a
 * ringbuf's at creation), and a handle's mappings come populated: records
 * written through a second handle, around the ring and across its end
 * (the second view of the data), take no page faults. Before, every page
 * of a new ring faulted at its first record (~2 us each). */
Test(maps_ringbuf, pages_populated_no_faults_in_ring)
{
    const uint32_t size = 1u << 20, pages = size / 4096;
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, size, 0), *peer;
    struct bpfg_ringbuf_view v;
    cr_assert_eq(bpfg_ringbuf_get_view(m, &v), 0);
    unsigned char vec[256];
    cr_assert_eq(mincore(v.data, v.size, vec), 0);
    uint32_t resident = 0;
    for (uint32_t i = 0; i < pages; i++)
        resident += vec[i] & 1;
    cr_assert_eq(resident, pages, "%u of %u ring pages exist after create", resident, pages);
    cr_assert_eq(bpfg_map_open_fd(bpfg_map_fd(m), &peer), 0);
    uint8_t rec[64] = {1};
    size_t out = 0, got = 0;
    long before = thread_faults();
    for (int lap = 0; lap < 3; lap++) {
        while (bpfg_ringbuf_output(peer, rec, sizeof(rec), 0) == 0)
            out++;
        cr_assert_gt(bpfg_ringbuf_consume(m, count_only_cb, &got), 0);
    }
    long faults = thread_faults() - before;
    cr_assert_eq(got, out);
    cr_assert_gt(out, 3 * (size / 72 - 1), "three laps of 72-byte records");
    /* each of the ring's pages faulted before; ASan's shadow of the two
     * views still faults (1/8 of their size: a quarter of the pages) */
    cr_assert_lt(faults, (long)pages / 2, "%ld page faults writing and reading %zu records", faults, out);
    bpfg_map_close(peer);
    bpfg_map_close(m);
}

struct seq_out {
    struct bpfg_map *m;
    uint64_t n;
};

static void *seq_producer(void *arg)
{
    struct seq_out *o = arg;
    for (uint64_t i = 0; i < o->n; i++) {
        uint64_t rec[8];
        for (int w = 0; w < 8; w++)
            rec[w] = i;
        while (bpfg_ringbuf_output(o->m, rec, sizeof(rec), BPF_RB_NO_WAKEUP) != 0)
            sched_yield(); /* full: wait for the reader */
    }
    return NULL;
}

/* bpf_ringbuf_output's record is whole before producer_pos covers it: a
 * reader walking up to producer_pos while a producer outputs never finds
 * a BUSY header nor a half-written record (reserve then commit, the
 * previous path, published producer_pos over a BUSY header first). */
Test(maps_ringbuf, output_is_whole_when_published)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 1u << 16, 0);
    struct bpfg_ringbuf_view v;
    cr_assert_eq(bpfg_ringbuf_get_view(m, &v), 0);
    struct seq_out o = {m, 200000};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, seq_producer, &o), 0);
    uint64_t next = 0, busy = 0;
    _Atomic unsigned long *cons = (_Atomic unsigned long *)v.consumer_pos;
    const _Atomic unsigned long *prod = (const _Atomic unsigned long *)v.producer_pos;
    while (next < o.n) {
        unsigned long c = atomic_load(cons), p = atomic_load_explicit(prod, memory_order_acquire);
        for (; c < p; c += 72) {
            const uint32_t *h = (const uint32_t *)(v.data + (c & (v.size - 1)));
            uint32_t len = __atomic_load_n(h, __ATOMIC_ACQUIRE);
            busy += (len & BPF_RINGBUF_BUSY_BIT) != 0;
            cr_assert_eq(len & ~BPF_RINGBUF_BUSY_BIT, 64u, "record at %lu: length %#x", c, len);
            const uint64_t *rec = (const uint64_t *)(h + 2);
            for (int w = 0; w < 8; w++)
                cr_assert_eq(rec[w], next, "record %llu word %d: %llu", (unsigned long long)next, w,
                             (unsigned long long)rec[w]);
            next++;
        }
        atomic_store_explicit(cons, c, memory_order_release);
    }
    pthread_join(th, NULL);
    cr_assert_eq(busy, 0, "%llu BUSY records below producer_pos", (unsigned long long)busy);
    bpfg_map_close(m);
}

Test(maps_ringbuf, dead_producer_record_is_skipped)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 8192, 0);
    pid_t pid = fork();
    if (pid == 0) {
        void *p = bpfg_ringbuf_reserve(m, 64, 0);
        _exit(p ? 0 : 1); /* dies holding an uncommitted record */
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    uint64_t v = 7;
    cr_assert_eq(bpfg_ringbuf_output(m, &v, 8, 0), 0);
    cr_assert_eq(bpfg_ringbuf_wait(m, 1000), 0);
    struct collect c = {0};
    cr_assert_eq(bpfg_ringbuf_consume(m, collect_cb, &c), 1);
    cr_assert_eq(c.seq[0], 7);
    cr_assert_eq(bpfg_ringbuf_query(m, BPF_RB_AVAIL_DATA), 0);
    bpfg_map_close(m);
}

/* The reserve lock word (FORMAT.md: state offset 832 holds the owner's tid). */
static _Atomic uint32_t *rb_lock_word(struct bpfg_map *m, void **map_out)
{
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, bpfg_map_fd(m), 0);
    cr_assert_neq(p, MAP_FAILED);
    *map_out = p;
    return (_Atomic uint32_t *)((uint8_t *)p + 832);
}

struct out_arg {
    struct bpfg_map *m;
    _Atomic int done;
};

static void *output_thread(void *arg)
{
    struct out_arg *a = arg;
    uint64_t v = 11;
    int err = bpfg_ringbuf_output(a->m, &v, 8, 0);
    atomic_store(&a->done, err == 0 ? 1 : -1);
    return NULL;
}

Test(maps_ringbuf, reserve_lock_of_dead_thread_is_taken_over)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 8192, 0);
    void *hdr;
    _Atomic uint32_t *lock = rb_lock_word(m, &hdr);
    cr_assert_eq(atomic_load(lock), 0, "free at creation");

    /* A live owner (this test's main thread) is waited for. */
    atomic_store(lock, (uint32_t)getpid());
    struct out_arg a = {m, 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, output_thread, &a), 0);
    usleep(100 * 1000);
    cr_assert_eq(atomic_load(&a.done), 0, "output must wait for a live owner");
    atomic_store(lock, 0);
    pthread_join(th, NULL);
    cr_assert_eq(atomic_load(&a.done), 1);

    /* A dead owner, who also left a half-written header beyond
     * producer_pos, is taken over and the garbage overwritten. */
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    struct bpfg_ringbuf_view view;
    cr_assert_eq(bpfg_ringbuf_get_view(m, &view), 0);
    uint32_t *junk = (uint32_t *)(view.data + (*view.producer_pos & (view.size - 1)));
    junk[0] = 5000 | BPF_RINGBUF_BUSY_BIT;
    junk[1] = (uint32_t)pid;
    atomic_store(lock, (uint32_t)pid);
    uint64_t v = 12;
    cr_assert_eq(bpfg_ringbuf_output(m, &v, 8, 0), 0);
    cr_assert_eq(atomic_load(lock), 0, "released after the take-over");
    struct collect c = {0};
    cr_assert_eq(bpfg_ringbuf_consume(m, collect_cb, &c), 2);
    cr_assert_eq(c.seq[0], 11);
    cr_assert_eq(c.seq[1], 12);
    cr_assert_eq(bpfg_ringbuf_query(m, BPF_RB_AVAIL_DATA), 0);
    munmap(hdr, 4096);
    bpfg_map_close(m);
}

/* A full ring refuses a record without its reserve lock: a producer
 * retrying on it does not wait for (nor bounce the line of) the producer
 * holding it. Room made by the consumer is seen again. */
Test(maps_ringbuf, full_ring_refuses_without_the_lock)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 8192, 0);
    uint64_t v = 3;
    int fit = 0;
    while (bpfg_ringbuf_output(m, &v, 8, 0) == 0)
        fit++;
    cr_assert_eq(fit, 8192 / 16 - 1, "16-byte records fill all but the last (a ring holds size - 1 bytes)");
    void *hdr;
    _Atomic uint32_t *lock = rb_lock_word(m, &hdr);
    atomic_store(lock, (uint32_t)getpid()); /* a live owner: this test's main thread */
    struct out_arg a = {m, 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, output_thread, &a), 0);
    for (int i = 0; i < 200 && !atomic_load(&a.done); i++)
        usleep(10 * 1000);
    int done = atomic_load(&a.done);
    atomic_store(lock, 0);
    pthread_join(th, NULL);
    cr_assert_eq(done, -1, "refused at once, not after the lock's owner let go");
    cr_assert_eq(bpfg_map_lost(m), 2, "the refusals are counted");
    struct collect c = {0};
    cr_assert_eq(bpfg_ringbuf_consume(m, collect_cb, &c), fit);
    cr_assert_eq(bpfg_ringbuf_output(m, &v, 8, 0), 0, "room again once consumed");
    munmap(hdr, 4096);
    bpfg_map_close(m);
}

struct perf_seen {
    int samples[8];
    uint64_t lost[8];
};

static void perf_s(void *ctx, int cpu, void *data, uint32_t size)
{
    (void)data;
    (void)size;
    ((struct perf_seen *)ctx)->samples[cpu]++;
}

static void perf_l(void *ctx, int cpu, uint64_t lost)
{
    ((struct perf_seen *)ctx)->lost[cpu] += lost;
}

Test(maps_perf, output_and_lost)
{
    struct bpfg_map_spec s = {
        .type = BPF_MAP_TYPE_PERF_EVENT_ARRAY, .key_size = 4, .value_size = 4, .max_entries = 2, .map_extra = 4096};
    struct bpfg_map *m;
    cr_assert_eq(bpfg_map_create(&s, &m), 0, "%s", bpfg_map_last_error());
    uint8_t rec[248] = {1};
    cr_assert_eq(bpfg_perf_event_output(m, 5, rec, 8), -E2BIG);
    int ok = 0;
    while (bpfg_perf_event_output(m, 1, rec, sizeof(rec)) == 0)
        ok++;
    cr_assert_eq(ok, 15); /* 256-byte records in a 4 KiB ring */
    cr_assert_eq(bpfg_perf_event_output(m, 1, rec, sizeof(rec)), -ENOSPC);
    cr_assert_eq(bpfg_perf_event_output(m, BPF_F_CURRENT_CPU, rec, 16), 0);
    struct perf_seen seen = {0};
    int n = bpfg_perf_consume(m, perf_s, perf_l, &seen);
    cr_assert_eq(n, 16);
    cr_assert_eq(seen.samples[0] + seen.samples[1], 16);
    cr_assert_eq(seen.lost[1], 2);
    bpfg_map_close(m);
}

/* The handle's mappings: the main one, then one per ring, and the
 * pointers the map hands out lie inside them. */
Test(maps_region, mappings_cover_the_handle)
{
    size_t len;
    struct bpfg_map *arr = mk(BPF_MAP_TYPE_ARRAY, 4, 8, 4, 0);
    uint8_t *base = bpfg_map_mapping(arr, 0, &len);
    uint32_t k = 3;
    uint8_t *v = bpfg_map_lookup_elem(arr, &k);
    cr_assert(base && v >= base && v + 8 <= base + len);
    cr_assert_null(bpfg_map_mapping(arr, 1, &len));
    bpfg_map_close(arr);

    struct bpfg_map *rb = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, 0);
    struct bpfg_ringbuf_view view;
    cr_assert_eq(bpfg_ringbuf_get_view(rb, &view), 0);
    cr_assert_not_null(bpfg_map_mapping(rb, 0, &len));
    uint8_t *ring = bpfg_map_mapping(rb, 1, &len);
    cr_assert(ring && view.data >= ring && view.data + 2 * view.size <= ring + len);
    cr_assert_null(bpfg_map_mapping(rb, 2, &len));
    bpfg_map_close(rb);

    struct bpfg_map_spec s = {
        .type = BPF_MAP_TYPE_PERF_EVENT_ARRAY, .key_size = 4, .value_size = 4, .max_entries = 3, .map_extra = 4096};
    struct bpfg_map *perf;
    cr_assert_eq(bpfg_map_create(&s, &perf), 0, "%s", bpfg_map_last_error());
    for (uint32_t i = 0; i < 4; i++)
        cr_assert_not_null(bpfg_map_mapping(perf, i, &len), "mapping %u", i);
    cr_assert_null(bpfg_map_mapping(perf, 4, &len));
    bpfg_map_close(perf);
}

Test(maps_region, shared_between_handles)
{
    struct bpfg_map *a = mk(BPF_MAP_TYPE_HASH, 4, 8, 32, 0), *b;
    cr_assert_eq(bpfg_map_open_fd(bpfg_map_fd(a), &b), 0, "%s", bpfg_map_last_error());
    cr_assert_neq(bpfg_map_fd(a), bpfg_map_fd(b), "open_fd dups");
    uint32_t k = 1;
    uint64_t v = 10, out;
    cr_assert_eq(bpfg_map_update_elem(a, &k, &v, 0), 0);
    uint64_t *pb = bpfg_map_lookup_elem(b, &k);
    cr_assert_not_null(pb);
    __atomic_fetch_add(pb, 5, __ATOMIC_RELAXED);
    bpfg_map_close(a); /* b keeps the region alive */
    cr_assert_eq(bpfg_map_lookup_copy(b, &k, &out), 0);
    cr_assert_eq(out, 15);
    /* A child process sees and changes the same memory. */
    pid_t pid = fork();
    if (pid == 0) {
        k = 2;
        _exit(bpfg_map_update_elem(b, &k, &v, BPF_NOEXIST) == 0 ? 0 : 1);
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert_eq(WEXITSTATUS(st), 0);
    k = 2;
    cr_assert_eq(bpfg_map_lookup_copy(b, &k, &out), 0);
    bpfg_map_close(b);
}

/* Copies a region into a fresh sealed memfd, with edits. */
static int clone_region(int fd, size_t len, void (*edit)(uint8_t *, size_t, void *), void *arg, bool seal)
{
    uint8_t *buf = malloc(len);
    cr_assert_eq(pread(fd, buf, len, 0), (ssize_t)len);
    if (edit)
        edit(buf, len, arg);
    int nfd = memfd_create("clone", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    cr_assert_geq(nfd, 0);
    cr_assert_eq(pwrite(nfd, buf, len, 0), (ssize_t)len);
    if (seal)
        fcntl(nfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    free(buf);
    return nfd;
}

static void put32(uint8_t *b, size_t len, void *arg)
{
    uintptr_t a = (uintptr_t)arg;
    uint32_t off = (uint32_t)(a >> 32), val = (uint32_t)a;
    (void)len;
    memcpy(b + off, &val, 4);
}

static size_t region_len(int fd)
{
    struct stat st;
    fstat(fd, &st);
    return (size_t)st.st_size;
}

Test(maps_region, refuses_corrupt_headers)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_HASH, 4, 8, 32, 0), *o;
    int fd = bpfg_map_fd(m);
    size_t len = region_len(fd);
    struct {
        uint32_t off, val;
        int err;
    } cases[] = {
        {0, 0x12345678, -EBADMSG}, /* magic */
        {8, 99, -EPROTONOSUPPORT}, /* version */
        {16, 1000, -EBADMSG},      /* map type */
        {20, 0, -EBADMSG},         /* key size */
        {28, 1u << 20, -EBADMSG},  /* max entries: does not fit the fd */
        {36, 0, -EBADMSG},         /* nr_cpus */
        {80, 1u << 30, -EBADMSG},  /* region size */
        {88, 7, -EBADMSG},         /* locks offset */
        {104, 12, -EBADMSG},       /* aux (bucket) offset */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int nfd = clone_region(fd, len, put32, (void *)((uintptr_t)cases[i].off << 32 | cases[i].val), true);
        int err = bpfg_map_open_fd(nfd, &o);
        cr_assert_eq(err, cases[i].err, "case %zu: %d (%s)", i, err, bpfg_map_last_error());
        close(nfd);
    }
    /* Truncated copy. */
    int nfd = clone_region(fd, len, NULL, NULL, false);
    cr_assert_eq(ftruncate(nfd, (off_t)len - 4096), 0);
    fcntl(nfd, F_ADD_SEALS, F_SEAL_SHRINK);
    cr_assert_eq(bpfg_map_open_fd(nfd, &o), -EBADMSG);
    cr_assert(strstr(bpfg_map_last_error(), "truncated"), "%s", bpfg_map_last_error());
    close(nfd);
    /* Unsealed memfd: a peer could shrink it under us. */
    nfd = clone_region(fd, len, NULL, NULL, false);
    cr_assert_eq(bpfg_map_open_fd(nfd, &o), -EBADMSG);
    close(nfd);
    /* Too short to hold a header. */
    nfd = memfd_create("tiny", MFD_CLOEXEC);
    cr_assert_eq(write(nfd, "xx", 2), 2);
    cr_assert_eq(bpfg_map_open_fd(nfd, &o), -EBADMSG);
    close(nfd);
    /* Intact clone opens. */
    nfd = clone_region(fd, len, NULL, NULL, true);
    cr_assert_eq(bpfg_map_open_fd(nfd, &o), 0, "%s", bpfg_map_last_error());
    bpfg_map_close(o);
    close(nfd);
    bpfg_map_close(m);
}

static void flip(uint8_t *b, size_t len, void *arg)
{
    unsigned *seed = arg;
    int nflips = 1 + rand_r(seed) % 3;
    (void)len;
    for (int i = 0; i < nflips; i++)
        b[rand_r(seed) % 256] ^= (uint8_t)(1u << (rand_r(seed) % 8));
}

/* Random bit flips in the header: every open either fails cleanly or yields
 * a map whose operations stay in bounds. */
Test(maps_region, header_fuzz)
{
    uint32_t types[][4] = {
        {BPF_MAP_TYPE_HASH, 4, 8, 64},  {BPF_MAP_TYPE_ARRAY, 4, 16, 64},    {BPF_MAP_TYPE_LRU_HASH, 8, 8, 32},
        {BPF_MAP_TYPE_QUEUE, 0, 8, 16}, {BPF_MAP_TYPE_RINGBUF, 0, 0, 4096}, {BPF_MAP_TYPE_PERCPU_HASH, 4, 4, 16},
    };
    unsigned seed = 12345;
    int accepted = 0, refused = 0;
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        struct bpfg_map *m = mk(types[t][0], types[t][1], types[t][2], types[t][3], 0);
        int fd = bpfg_map_fd(m);
        size_t len = region_len(fd);
        for (int it = 0; it < 300; it++) {
            int nfd = clone_region(fd, len, flip, &seed, true);
            struct bpfg_map *o;
            int err = bpfg_map_open_fd(nfd, &o);
            close(nfd);
            if (err) {
                cr_assert(err == -EBADMSG || err == -EPROTONOSUPPORT, "err %d", err);
                refused++;
                continue;
            }
            accepted++;
            uint64_t key[8] = {1}, val[64] = {0};
            bpfg_map_update_copy(o, key, val, BPF_ANY);
            bpfg_map_lookup_copy(o, key, val);
            bpfg_map_lookup_elem(o, key);
            bpfg_map_get_next_key(o, NULL, key);
            bpfg_map_delete_copy(o, key);
            bpfg_map_close(o);
        }
        bpfg_map_close(m);
    }
    cr_assert_gt(refused, 100);
    cr_assert_gt(accepted, 10); /* flips in name, btf ids, seed are harmless */
}

/* Offsets from FORMAT.md, used to damage live state on purpose. */
#define OFF_BUCKETS_OFF 104
#define OFF_LOCKS_OFF 88
#define OFF_N_LOCKS 96
#define FREE_HEAD_IN_LOCK 48 /* each stripe's free-list head, in its lock slot */

Test(maps_region, corrupt_state_is_survived_and_repaired)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_HASH, 4, 8, 64, 0);
    uint32_t k;
    uint64_t v = 3, out;
    for (k = 0; k < 40; k++)
        cr_assert_eq(bpfg_map_update_elem(m, &k, &v, 0), 0);
    int fd = bpfg_map_fd(m);
    uint8_t *raw = mmap(NULL, region_len(fd), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    uint64_t boff;
    memcpy(&boff, raw + OFF_BUCKETS_OFF, 8);
    /* Leak every stripe's free list: the map reports full. */
    uint64_t nil = 0xffffffffull, loff;
    uint32_t nlocks;
    memcpy(&loff, raw + OFF_LOCKS_OFF, 8);
    memcpy(&nlocks, raw + OFF_N_LOCKS, 4);
    cr_assert_gt(nlocks, 1);
    for (uint32_t i = 0; i < nlocks; i++)
        memcpy(raw + loff + i * 64 + FREE_HEAD_IN_LOCK, &nil, 8);
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    uint32_t repairs = info.repairs;
    k = 1000;
    /* The empty free list with a count below max_entries is noticed, the
     * map repairs itself and the insert succeeds. */
    cr_assert_eq(bpfg_map_update_elem(m, &k, &v, 0), 0);
    bpfg_map_get_info(m, &info);
    cr_assert_eq(info.repairs, repairs + 1);
    cr_assert_eq(bpfg_map_delete_elem(m, &k), 0);
    for (k = 40; k < 64; k++)
        cr_assert_eq(bpfg_map_update_elem(m, &k, &v, 0), 0, "capacity restored, key %u", k);
    for (k = 0; k < 64; k++)
        cr_assert_eq(bpfg_map_lookup_copy(m, &k, &out), 0, "content kept, key %u", k);
    /* Garbage element indices and a cycle in the buckets: no crash, no hang. */
    uint32_t *buckets = (uint32_t *)(raw + boff);
    buckets[0] = 0x7ffffff0;
    buckets[1] = 3;
    buckets[2] = 3;
    for (k = 0; k < 200; k++) {
        bpfg_map_lookup_elem(m, &k);
        bpfg_map_lookup_copy(m, &k, &out);
        bpfg_map_update_elem(m, &k, &v, BPF_ANY);
        bpfg_map_delete_elem(m, &k);
    }
    cr_assert_eq(bpfg_map_check_repair(m), 0);
    /* Keys the loop could not delete through the corrupt chains survive
     * the repair as live entries (which ones depends on the hash seed):
     * empty the map through its own key walk first. */
    uint32_t cur;
    while (bpfg_map_get_next_key(m, NULL, &cur) == 0)
        cr_assert_eq(bpfg_map_delete_elem(m, &cur), 0, "survivor %u deleted", cur);
    int n = 0;
    for (k = 0; k < 64; k++)
        n += bpfg_map_update_elem(m, &k, &v, BPF_ANY) == 0;
    cr_assert_eq(n, 64, "usable at full capacity after repair");
    munmap(raw, region_len(fd));
    bpfg_map_close(m);
}

Test(maps_region, invalid_specs)
{
    struct bpfg_map *m;
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_HASH, .key_size = 0, .value_size = 4, .max_entries = 4};
    cr_assert_eq(bpfg_map_create(&s, &m), -EINVAL);
    s.key_size = 4;
    s.max_entries = 0;
    cr_assert_eq(bpfg_map_create(&s, &m), -EINVAL);
    s = (struct bpfg_map_spec){.type = BPF_MAP_TYPE_ARRAY, .key_size = 8, .value_size = 4, .max_entries = 4};
    cr_assert_eq(bpfg_map_create(&s, &m), -EINVAL);
    s = (struct bpfg_map_spec){.type = BPF_MAP_TYPE_RINGBUF, .max_entries = 5000};
    cr_assert_eq(bpfg_map_create(&s, &m), -EINVAL);
    s = (struct bpfg_map_spec){.type = BPF_MAP_TYPE_LPM_TRIE, .key_size = 8, .value_size = 4, .max_entries = 4};
    cr_assert_eq(bpfg_map_create(&s, &m), -EINVAL);
    s = (struct bpfg_map_spec){.type = BPF_MAP_TYPE_HASH, .key_size = 600, .value_size = 4, .max_entries = 4};
    cr_assert_eq(bpfg_map_create(&s, &m), -E2BIG);
}

/* ---- statistics: entries in use, records lost ---- */

Test(maps_stats, entries_in_use)
{
    struct bpfg_map *h = mk(BPF_MAP_TYPE_HASH, 4, 8, 64, 0);
    uint64_t v = 1;
    for (uint32_t k = 0; k < 10; k++)
        cr_assert_eq(bpfg_map_update_elem(h, &k, &v, BPF_ANY), 0);
    for (uint32_t k = 0; k < 10; k += 3)
        cr_assert_eq(bpfg_map_delete_elem(h, &k), 0);
    cr_assert_eq(bpfg_map_entries(h), 6, "10 inserted, 4 deleted: %llu", (unsigned long long)bpfg_map_entries(h));
    bpfg_map_close(h);

    struct bpfg_map *a = mk(BPF_MAP_TYPE_ARRAY, 4, 8, 16, 0);
    cr_assert_eq(bpfg_map_entries(a), 16, "an array is always full");
    bpfg_map_close(a);

    struct bpfg_map *t = mk(BPF_MAP_TYPE_LPM_TRIE, 8, 8, 16, BPF_F_NO_PREALLOC);
    for (uint32_t k = 0; k < 5; k++) {
        uint32_t key[2] = {24, __builtin_bswap32(k << 8)};
        cr_assert_eq(bpfg_map_update_copy(t, key, &v, BPF_NOEXIST), 0);
    }
    cr_assert_eq(bpfg_map_entries(t), 5);
    bpfg_map_close(t);

    struct bpfg_map *b = mk(BPF_MAP_TYPE_BLOOM_FILTER, 0, 8, 100, 0);
    for (uint64_t x = 0; x < 3; x++)
        cr_assert_eq(bpfg_map_push_elem(b, &x, BPF_ANY), 0);
    cr_assert_eq(bpfg_map_entries(b), 3, "a bloom filter: the values pushed");
    bpfg_map_close(b);
}

Test(maps_stats, lost_when_the_buffer_is_full)
{
    struct bpfg_map *rb = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 4096, 0);
    int ok = 0;
    while (bpfg_ringbuf_reserve(rb, 100, 0))
        ok++;
    cr_assert_eq(ok, 36, "112-byte records in a 4 KiB ring nobody reads");
    uint8_t rec[100] = {0};
    cr_assert_eq(bpfg_ringbuf_output(rb, rec, sizeof(rec), 0), -EAGAIN);
    cr_assert_null(bpfg_ringbuf_reserve(rb, 5000, 0));
    cr_assert_null(bpfg_ringbuf_reserve(rb, 8, 1));
    cr_assert_eq(bpfg_map_lost(rb), 2, "the failed reserve and output; not a record too large or bad flags");
    bpfg_map_close(rb);

    struct bpfg_map_spec s = {
        .type = BPF_MAP_TYPE_PERF_EVENT_ARRAY, .key_size = 4, .value_size = 4, .max_entries = 2, .map_extra = 4096};
    struct bpfg_map *pa;
    cr_assert_eq(bpfg_map_create(&s, &pa), 0, "%s", bpfg_map_last_error());
    uint8_t big[248] = {1};
    for (int cpu = 0; cpu < 2; cpu++)
        for (int i = 0; i < 15 + cpu + 1; i++)
            bpfg_perf_event_output(pa, (uint64_t)cpu, big, sizeof(big));
    cr_assert_eq(bpfg_map_lost(pa), 3, "1 refused on ring 0, 2 on ring 1: every ring's");
    bpfg_map_close(pa);
    struct bpfg_map *h = mk(BPF_MAP_TYPE_HASH, 4, 4, 4, 0);
    cr_assert_eq(bpfg_map_lost(h), 0, "no buffer, nothing lost");
    bpfg_map_close(h);
}

/* ---- hash internals seen through the region (FORMAT.md, HASH) ---- */

struct hview {
    uint8_t *raw, *locks, *data;
    size_t len;
    uint32_t *buckets;
    uint32_t n_buckets, n_locks, n_elems, elem_size;
};

static void hview_open(struct bpfg_map *m, struct hview *h)
{
    int fd = bpfg_map_fd(m);
    h->len = region_len(fd);
    h->raw = mmap(NULL, h->len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(h->raw, MAP_FAILED);
    uint64_t locks_off, aux_off, data_off;
    memcpy(&locks_off, h->raw + 88, 8);
    memcpy(&h->n_locks, h->raw + 96, 4);
    memcpy(&h->elem_size, h->raw + 100, 4);
    memcpy(&aux_off, h->raw + 104, 8);
    memcpy(&data_off, h->raw + 120, 8);
    memcpy(&h->n_elems, h->raw + 144, 4);
    memcpy(&h->n_buckets, h->raw + 148, 4);
    h->locks = h->raw + locks_off;
    h->buckets = (uint32_t *)(h->raw + aux_off);
    h->data = h->raw + data_off;
}

static uint32_t *hview_next(struct hview *h, uint32_t i)
{
    return (uint32_t *)(h->data + (uint64_t)i * h->elem_size);
}

/* The element holding key (ks bytes) and its bucket, walking the chains. */
static uint32_t hview_find(struct hview *h, const void *key, uint32_t ks, uint32_t *bucket)
{
    for (uint32_t b = 0; b < h->n_buckets; b++)
        for (uint32_t i = h->buckets[b]; !(i & 0x80000000u); i = *hview_next(h, i))
            if (memcmp(h->data + (uint64_t)i * h->elem_size + 16, key, ks) == 0) {
                *bucket = b;
                return i;
            }
    cr_assert_fail("key not linked");
    return 0;
}

/* A stripe's spare element + 1 (lock line +40), 0 = none. */
static uint32_t hview_spare(struct hview *h, uint32_t stripe)
{
    uint32_t sp;
    memcpy(&sp, h->locks + (uint64_t)stripe * 64 + 40, 4);
    return sp;
}

static uint32_t hview_stripe(struct hview *h, uint32_t b)
{
    uint32_t spread = (uint32_t)(__builtin_ctz(h->n_buckets) - __builtin_ctz(h->n_locks));
    return (b >> (spread < 4 ? spread : 4)) & (h->n_locks - 1);
}

/* The lookup's fast walk (keys of 4 and 8 bytes) gives up after a few
 * elements: a key deeper in its chain is still found (by the general
 * walk), its value the one stored. */
static void long_chain_lookup(uint32_t ks)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_HASH, ks, 8, 64, 0);
    uint64_t key = 0;
    for (uint64_t i = 0; i < 64; i++) {
        uint64_t v = i * 3 + 1;
        key = ks == 8 ? i | i << 40 : i;
        cr_assert_eq(bpfg_map_update_elem(m, &key, &v, BPF_NOEXIST), 0);
    }
    struct hview h;
    hview_open(m, &h);
    uint64_t want = ks == 8 ? 5 | 5ull << 40 : 5;
    uint32_t b, target = hview_find(&h, &want, ks, &b), chain[12], n = 0;
    for (uint64_t i = 20; n < 11; i++) { /* 11 other elements in front of it */
        uint64_t k = ks == 8 ? i | i << 40 : i;
        uint32_t kb;
        chain[n++] = hview_find(&h, &k, ks, &kb);
    }
    chain[n++] = target;
    h.buckets[b] = chain[0];
    for (uint32_t j = 0; j + 1 < n; j++)
        *hview_next(&h, chain[j]) = chain[j + 1];
    *hview_next(&h, target) = 0x80000000u | b;
    uint64_t *p = bpfg_map_lookup_elem(m, &want);
    cr_assert_not_null(p, "key %u bytes, 12th in its chain", ks);
    cr_assert_eq(*p, 16, "its own value");
    uint64_t out;
    cr_assert_eq(bpfg_map_lookup_copy(m, &want, &out), 0);
    cr_assert_eq(out, 16);
    munmap(h.raw, h.len);
    bpfg_map_close(m);
}

Test(maps_hash, lookup_finds_keys_deep_in_long_chains)
{
    long_chain_lookup(4);
    long_chain_lookup(8);
}

/* A delete leaves its element as the stripe's spare when the stripe has
 * none; the stripe's next insert takes it (no free-list operation), and
 * capacity stays exact through delete/insert churn, without a repair. */
Test(maps_hash, delete_parks_the_element_as_the_stripes_spare)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_HASH, 4, 8, 1024, 0);
    uint64_t v = 1;
    for (uint32_t k = 0; k < 100; k++)
        cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_NOEXIST), 0);
    struct hview h;
    hview_open(m, &h);
    uint32_t key = 7, b, idx = hview_find(&h, &key, 4, &b), s = hview_stripe(&h, b);
    cr_assert_eq(hview_spare(&h, s), 0, "inserts alone leave no spare");
    cr_assert_eq(bpfg_map_delete_elem(m, &key), 0);
    cr_assert_eq(hview_spare(&h, s), idx + 1, "the deleted element is the spare");
    bool taken = false;
    for (uint32_t k = 5000; k < 100000 && !taken; k++) {
        cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_NOEXIST), 0);
        uint32_t kb, ki = hview_find(&h, &k, 4, &kb);
        if (hview_stripe(&h, kb) != s) {
            cr_assert_eq(bpfg_map_delete_elem(m, &k), 0);
            continue;
        }
        cr_assert_eq(ki, idx, "an insert in the stripe takes its spare");
        cr_assert_eq(hview_spare(&h, s), 0);
        taken = true;
    }
    cr_assert(taken);
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    uint32_t repairs = info.repairs;
    for (uint32_t round = 0; round < 20; round++)
        for (uint32_t k = 0; k < 100; k++) {
            uint32_t nk = k + (round + 1) * 200000;
            bpfg_map_delete_elem(m, &k);
            cr_assert_eq(bpfg_map_update_elem(m, &nk, &v, BPF_NOEXIST), 0);
            cr_assert_eq(bpfg_map_delete_elem(m, &nk), 0);
            cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_NOEXIST), 0);
        }
    uint32_t cur;
    while (bpfg_map_get_next_key(m, NULL, &cur) == 0)
        cr_assert_eq(bpfg_map_delete_elem(m, &cur), 0);
    cr_assert_eq(fill_from(m, 1u << 24, 1100), 1024, "exactly max_entries after the churn");
    bpfg_map_get_info(m, &info);
    cr_assert_eq(info.repairs, repairs, "no element leaked, no repair");
    munmap(h.raw, h.len);
    bpfg_map_close(m);
}

/* A plain hash map's 4- or 8-byte value is replaced in place: the element
 * a reader holds is the key's still and shows the new value, and the
 * stripe's spare is left as it was. Larger values and LRU maps replace by
 * element (the pointer held keeps the old value). */
static void replace_case(uint32_t type, uint32_t vs, bool in_place)
{
    struct bpfg_map *m = mk(type, 4, vs, 64, 0);
    uint8_t v1[16], v2[16];
    memset(v1, 0x11, sizeof(v1));
    memset(v2, 0x22, sizeof(v2));
    uint32_t k = 3;
    cr_assert_eq(bpfg_map_update_elem(m, &k, v1, BPF_NOEXIST), 0);
    uint8_t *p = bpfg_map_lookup_elem(m, &k);
    cr_assert_not_null(p);
    struct hview h;
    hview_open(m, &h);
    uint32_t b, idx = hview_find(&h, &k, 4, &b), s = hview_stripe(&h, b), sp = hview_spare(&h, s);
    cr_assert_eq(bpfg_map_update_elem(m, &k, v2, BPF_ANY), 0);
    uint8_t *q = bpfg_map_lookup_elem(m, &k), out[16];
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, out), 0);
    cr_assert_eq(memcmp(out, v2, vs), 0, "type %u, %u-byte value: the new value", type, vs);
    if (in_place) {
        cr_assert_eq(q, p, "type %u, %u-byte value: the same element", type, vs);
        cr_assert_eq(memcmp(p, v2, vs), 0, "the pointer held shows the new value");
        cr_assert_eq(hview_find(&h, &k, 4, &b), idx);
        cr_assert_eq(hview_spare(&h, s), sp, "the stripe's spare untouched");
    } else {
        cr_assert_neq(q, p, "type %u, %u-byte value: a new element", type, vs);
        cr_assert_eq(memcmp(p, v1, vs), 0, "the pointer held keeps the old value");
        cr_assert_eq(hview_spare(&h, s), idx + 1, "the replaced element is the spare");
    }
    munmap(h.raw, h.len);
    bpfg_map_close(m);
}

Test(maps_hash, small_values_replaced_in_place)
{
    replace_case(BPF_MAP_TYPE_HASH, 8, true);
    replace_case(BPF_MAP_TYPE_HASH, 4, true);
    replace_case(BPF_MAP_TYPE_HASH, 12, false);
    replace_case(BPF_MAP_TYPE_LRU_HASH, 8, false);
}

/* Two threads delete and insert the same keys in the same order on a
 * full map (each insert takes the count slot a delete gave, the spare or
 * a free element): every update succeeds, and at the end every key is
 * there once with one of the two threads' last values, the count is
 * exactly max_entries (a further key is refused), nothing leaked (the
 * map empties and fills to max_entries again) and no repair ran. */
#define CHURN_KEYS 1024u
#define CHURN_ROUNDS 200u

struct churner {
    struct bpfg_map *m;
    uint32_t id, vs;
    int bad_update, bad_delete;
};

static void churn_value(uint8_t *v, uint32_t vs, uint32_t id, uint32_t round, uint32_t k)
{
    uint32_t words[4] = {id, round, k, id ^ round ^ k};
    memcpy(v, words, vs);
}

static void *churn_thread(void *arg)
{
    struct churner *c = arg;
    uint8_t v[16];
    for (uint32_t round = 0; round < CHURN_ROUNDS; round++)
        for (uint32_t k = 0; k < CHURN_KEYS; k++) {
            int d = bpfg_map_delete_elem(c->m, &k);
            c->bad_delete += d != 0 && d != -ENOENT;
            churn_value(v, c->vs, c->id, round, k);
            c->bad_update += bpfg_map_update_elem(c->m, &k, v, BPF_ANY) != 0;
        }
    return NULL;
}

static void churn_case(uint32_t vs)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_HASH, 4, vs, CHURN_KEYS, 0);
    uint8_t v[16] = {0};
    for (uint32_t k = 0; k < CHURN_KEYS; k++)
        cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_NOEXIST), 0);
    struct churner c[2] = {{m, 1, vs, 0, 0}, {m, 2, vs, 0, 0}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, churn_thread, &c[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(c[i].bad_update + c[i].bad_delete, 0, "%u-byte values, thread %d: %d updates, %d deletes failed",
                     vs, i, c[i].bad_update, c[i].bad_delete);
    cr_assert_eq(bpfg_map_entries(m), CHURN_KEYS, "%u-byte values: count", vs);
    for (uint32_t k = 0; k < CHURN_KEYS; k++) {
        uint8_t out[16], want1[16], want2[16];
        cr_assert_eq(bpfg_map_lookup_copy(m, &k, out), 0, "key %u", k);
        churn_value(want1, vs, 1, CHURN_ROUNDS - 1, k);
        churn_value(want2, vs, 2, CHURN_ROUNDS - 1, k);
        cr_assert(memcmp(out, want1, vs) == 0 || memcmp(out, want2, vs) == 0, "key %u: a last value", k);
    }
    uint32_t extra = CHURN_KEYS;
    cr_assert_eq(bpfg_map_update_elem(m, &extra, v, BPF_ANY), -E2BIG, "full at max_entries");
    uint32_t cur;
    while (bpfg_map_get_next_key(m, NULL, &cur) == 0)
        cr_assert_eq(bpfg_map_delete_elem(m, &cur), 0);
    cr_assert_eq(bpfg_map_entries(m), 0);
    uint32_t filled = 0;
    for (uint32_t k = 1u << 24; k < (1u << 24) + CHURN_KEYS + 16; k++)
        filled += bpfg_map_update_elem(m, &k, v, BPF_NOEXIST) == 0;
    cr_assert_eq(filled, CHURN_KEYS, "exactly max_entries after the churn");
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    cr_assert_eq(info.repairs, 0, "nobody died, no repair");
    bpfg_map_close(m);
}

Test(maps_hash, two_threads_delete_insert_same_keys, .timeout = 120)
{
    churn_case(8);  /* replaces in place */
    churn_case(16); /* replaces by element */
}

/* A writer replacing 8-byte values in place while readers copy them and
 * read them through a held pointer: every value seen is whole (both
 * halves from one update), the key is never missing. */
struct tear_ctx {
    struct bpfg_map *m;
    _Atomic int stop;
    uint64_t torn, missing, reads;
};

static void *tear_reader(void *arg)
{
    struct tear_ctx *t = arg;
    uint32_t k = 5;
    const volatile uint64_t *p = bpfg_map_lookup_elem(t->m, &k);
    while (!atomic_load(&t->stop)) {
        uint64_t v;
        if (bpfg_map_lookup_copy(t->m, &k, &v) != 0) {
            t->missing++;
            continue;
        }
        uint64_t w = *p;
        t->torn += (uint32_t)v != (uint32_t)(v >> 32) || (uint32_t)w != (uint32_t)(w >> 32);
        t->reads++;
    }
    return NULL;
}

Test(maps_hash, in_place_values_read_whole)
{
    struct tear_ctx t = {.m = mk(BPF_MAP_TYPE_HASH, 4, 8, 64, 0)};
    uint32_t k = 5;
    uint64_t v = 0;
    cr_assert_eq(bpfg_map_update_elem(t.m, &k, &v, BPF_NOEXIST), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, tear_reader, &t), 0);
    for (uint32_t x = 1; x <= 300000; x++) {
        v = (uint64_t)x << 32 | x;
        cr_assert_eq(bpfg_map_update_elem(t.m, &k, &v, BPF_EXIST), 0);
    }
    atomic_store(&t.stop, 1);
    pthread_join(th, NULL);
    cr_assert_eq(t.missing, 0);
    cr_assert_eq(t.torn, 0, "%lu torn of %lu reads", (unsigned long)t.torn, (unsigned long)t.reads);
    uint64_t out;
    cr_assert_eq(bpfg_map_lookup_copy(t.m, &k, &out), 0);
    cr_assert_eq(out, 300000ull << 32 | 300000);
    bpfg_map_close(t.m);
}

/* The consumer asks for the lines ahead of the record it reads (up to
 * producer_pos): records of mixed sizes, some larger than its window,
 * wrapping an 8 KiB ring lap after lap, arrive whole and in order, a
 * batch at a time and one record at a time. */
struct sized {
    uint64_t n, bad;
    uint32_t want[64];
};

static int sized_cb(void *ctx, void *data, size_t size)
{
    struct sized *s = ctx;
    const uint8_t *p = data;
    uint32_t want = s->want[s->n % 64];
    s->bad += size != want;
    for (size_t i = 0; i < size && i < want; i++)
        s->bad += p[i] != (uint8_t)(s->n + i);
    s->n++;
    return 0;
}

Test(maps_ringbuf, mixed_sizes_wrap_whole_and_in_order)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 8192, 0);
    struct sized *s = calloc(1, sizeof(*s));
    static uint8_t rec[3000];
    uint64_t sent = 0;
    const uint32_t sizes[] = {1, 64, 3000, 56, 1500, 8, 2040, 200};
    for (int round = 0; round < 200; round++) {
        int batch = round % 3 + 1;
        for (int i = 0; i < batch; i++, sent++) {
            uint32_t size = sizes[(round + i) % 8];
            s->want[sent % 64] = size;
            for (uint32_t b = 0; b < size; b++)
                rec[b] = (uint8_t)(sent + b);
            cr_assert_eq(bpfg_ringbuf_output(m, rec, size, BPF_RB_NO_WAKEUP), 0, "record %llu",
                         (unsigned long long)sent);
        }
        cr_assert_eq(bpfg_ringbuf_consume(m, sized_cb, s), batch);
    }
    cr_assert_eq(s->n, sent);
    cr_assert_eq(s->bad, 0, "sizes and bytes as written");
    free(s);
    bpfg_map_close(m);
}

/* A file of len zeros mapped shared (a run tool's prepared map ticket). */
static uint8_t *prepared_file(size_t len, int *fd, char *path)
{
    strcpy(path, "/dev/shm/bpfg-mapped-XXXXXX");
    *fd = mkstemp(path);
    cr_assert_geq(*fd, 0);
    cr_assert_eq(ftruncate(*fd, (off_t)len), 0);
    uint8_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
    cr_assert_neq(p, MAP_FAILED);
    return p;
}

Test(create_mapped, lays_out_in_a_longer_file_and_others_read_it)
{
    const size_t len = 1 << 20, page = (size_t)sysconf(_SC_PAGESIZE);
    char path[64];
    int fd;
    uint8_t *p = prepared_file(len, &fd, path);
    struct bpfg_map_spec s = {
        .type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 8, .max_entries = 64, .name = "m"};
    struct bpfg_map *m = NULL, *o = NULL;
    cr_assert_eq(bpfg_map_create_mapped(&s, fd, p, len, 0x1234u, &m), 0, "%s", bpfg_map_last_error());
    uint32_t k = 7;
    uint64_t v = 99;
    cr_assert_eq(bpfg_map_update_elem(m, &k, &v, 0), 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    cr_assert_eq((size_t)st.st_size, len, "the file keeps its size");
    cr_assert_eq(bpfg_map_open_fd(dup(fd), &o), 0, "a reader takes the longer file: %s", bpfg_map_last_error());
    struct bpfg_map_info info;
    bpfg_map_get_info(o, &info);
    cr_assert_lt(info.region_size, len);
    uint64_t *got = bpfg_map_lookup_elem(o, &k);
    cr_assert(got && *got == 99);
    bpfg_map_close(o);
    size_t tail = (info.region_size + page - 1) / page * page;
    unsigned char vec;
    bpfg_map_close(m);
    cr_assert_eq(mincore(p + tail, page, &vec), -1, "the whole prepared mapping goes at close");
    cr_assert_eq(errno, ENOMEM);
    close(fd);
    unlink(path);
}

Test(create_mapped, too_big_for_the_file)
{
    const size_t len = 1 << 16;
    char path[64];
    int fd;
    uint8_t *p = prepared_file(len, &fd, path);
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 1 << 14};
    struct bpfg_map *m = NULL;
    cr_assert_eq(bpfg_map_create_mapped(&s, fd, p, len, 1, &m), -E2BIG);
    cr_assert_null(m);
    unsigned char vec[64]; /* len / 4 KiB */
    cr_assert_eq(mincore(p, len, vec), -1, "the mapping is taken in every case");
    uint8_t b = 1;
    cr_assert_eq(pread(fd, &b, 1, 0), 1);
    cr_assert_eq(b, 0, "the file is left as it was");
    close(fd);
    unlink(path);
}
