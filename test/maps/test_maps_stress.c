/* Many threads in many processes on the same maps, and writers SIGKILLed at
 * random points (also while holding a map lock, also while repairing). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "maps.h"
#include "maps_testutil.h"

#define VW STRESS_VW /* value words (maps_testutil.h) */

static struct bpfg_map *mk(uint32_t type, uint32_t ks, uint32_t vs, uint32_t n)
{
    struct bpfg_map_spec s = {.type = type, .key_size = ks, .value_size = vs, .max_entries = n, .name = "stress"};
    struct bpfg_map *m = NULL;
    cr_assert_eq(bpfg_map_create(&s, &m), 0, "%s", bpfg_map_last_error());
    return m;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- multi-process stress ---- */

#define STABLE 100
#define CHURN 1000
#define PROCS 3
#define THREADS 2

struct worker {
    struct bpfg_map *hash, *counters;
    uint32_t id;
    unsigned seed;
    uint64_t until;
    int failures;
};

static void *stress_thread(void *arg)
{
    struct worker *w = arg;
    uint64_t v[VW], adds = 0, seq = 0;
    while (now_ms() < w->until) {
        for (int i = 0; i < 256; i++) {
            uint32_t r = (uint32_t)rand_r(&w->seed), op = r % 8;
            uint32_t k = STABLE + (r >> 8) % CHURN;
            if (op < 3) {
                make_val(v, k, ++seq);
                int err = bpfg_map_update_elem(w->hash, &k, v, BPF_ANY);
                if (err && err != -E2BIG)
                    w->failures++;
            } else if (op < 4) {
                bpfg_map_delete_elem(w->hash, &k);
            } else if (op < 6) {
                if (bpfg_map_lookup_copy(w->hash, &k, v) == 0 && !val_ok(v, k))
                    w->failures++; /* torn or foreign value */
            } else {
                /* Atomic add through the returned pointer on a stable key. */
                uint32_t sk = (r >> 8) % STABLE;
                uint64_t *p = bpfg_map_lookup_elem(w->hash, &sk);
                if (!p) {
                    w->failures++;
                    continue;
                }
                __atomic_fetch_add(&p[0], 1, __ATOMIC_RELAXED);
                adds++;
            }
        }
    }
    /* Report through a shared array: counters[id] = adds done. */
    uint32_t slot = w->id;
    bpfg_map_update_elem(w->counters, &slot, &adds, BPF_ANY);
    return NULL;
}

/* Full iterations concurrent with churn must see every stable key. */
static int iterate_check(struct bpfg_map *hash, uint64_t until)
{
    int bad = 0;
    while (now_ms() < until) {
        uint8_t seen[STABLE] = {0};
        uint32_t cur, next;
        int err = bpfg_map_get_next_key(hash, NULL, &next), steps = 0;
        while (!err && steps++ < 100000) {
            if (next < STABLE)
                seen[next] = 1;
            cur = next;
            err = bpfg_map_get_next_key(hash, &cur, &next);
        }
        if (err != -ENOENT)
            bad++;
        for (int i = 0; i < STABLE; i++)
            bad += !seen[i];
    }
    return bad;
}

Test(maps_stress, many_processes_many_threads, .timeout = 60)
{
    struct bpfg_map *hash = mk(BPF_MAP_TYPE_HASH, 4, VW * 8, 512);
    struct bpfg_map *counters = mk(BPF_MAP_TYPE_ARRAY, 4, 8, PROCS * THREADS);
    uint64_t zero[VW] = {0};
    for (uint32_t k = 0; k < STABLE; k++)
        cr_assert_eq(bpfg_map_update_elem(hash, &k, zero, BPF_NOEXIST), 0);
    uint64_t until = now_ms() + 2000;
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        cr_assert_geq(pids[p], 0);
        if (pids[p] == 0) {
            /* Child: its own handle on the region, as a target would have. */
            struct bpfg_map *h, *c;
            if (bpfg_map_open_fd(bpfg_map_fd(hash), &h) || bpfg_map_open_fd(bpfg_map_fd(counters), &c))
                _exit(2);
            struct worker w[THREADS];
            pthread_t t[THREADS];
            for (int i = 0; i < THREADS; i++) {
                w[i] = (struct worker){h, c, (uint32_t)(p * THREADS + i), (unsigned)(p * 77 + i + 1), until, 0};
                pthread_create(&t[i], NULL, stress_thread, &w[i]);
            }
            int bad = iterate_check(h, until);
            if (bad)
                fprintf(stderr, "child %d: %d iteration misses\n", p, bad);
            for (int i = 0; i < THREADS; i++) {
                pthread_join(t[i], NULL);
                if (w[i].failures)
                    fprintf(stderr, "child %d thread %d: %d failures\n", p, i, w[i].failures);
                bad += w[i].failures;
            }
            bpfg_map_close(h);
            bpfg_map_close(c);
            _exit(bad ? 1 : 0);
        }
    }
    for (int p = 0; p < PROCS; p++) {
        int st;
        cr_assert_eq(waitpid(pids[p], &st, 0), pids[p]);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d status %#x", p, st);
    }
    uint64_t expect = 0, got = 0, v[VW];
    for (uint32_t i = 0; i < PROCS * THREADS; i++) {
        cr_assert_eq(bpfg_map_lookup_copy(counters, &i, v), 0);
        expect += v[0];
    }
    for (uint32_t k = 0; k < STABLE; k++) {
        cr_assert_eq(bpfg_map_lookup_copy(hash, &k, v), 0);
        got += v[0];
    }
    cr_assert_gt(expect, 10000);
    cr_assert_eq(got, expect, "no lost atomic adds");
    struct bpfg_map_info info;
    bpfg_map_get_info(hash, &info);
    cr_assert_eq(info.repairs, 0, "nobody died, nothing to repair");
    bpfg_map_close(hash);
    bpfg_map_close(counters);
}

/* ---- SIGKILL at random points ---- */

#define KCAP 128
#define KKEYS 256

static void hash_writer(struct bpfg_map *m, unsigned seed)
{
    uint64_t v[VW], seq = 0;
    for (;;) {
        uint32_t r = (uint32_t)rand_r(&seed), k = (r >> 4) % KKEYS;
        switch (r % 4) {
        case 0:
        case 1:
            make_val(v, k, ++seq);
            bpfg_map_update_elem(m, &k, v, (r >> 2) % 3);
            break;
        case 2: bpfg_map_delete_elem(m, &k); break;
        default:
            if (bpfg_map_lookup_copy(m, &k, v) == 0 && !val_ok(v, k))
                _exit(3);
        }
    }
}

/* Every element intact, and the full capacity usable. */
static void hash_verify(struct bpfg_map *m, bool lru, int iter)
{
    uint64_t v[VW];
    uint32_t cur, next, n = 0;
    int err = bpfg_map_get_next_key(m, NULL, &next);
    while (!err) {
        cr_assert_lt(next, KKEYS, "iter %d: garbage key", iter);
        cr_assert_eq(bpfg_map_lookup_copy(m, &next, v), 0, "iter %d", iter);
        cr_assert(val_ok(v, next), "iter %d: torn value for key %u", iter, next);
        cur = next;
        err = bpfg_map_get_next_key(m, &cur, &next);
        cr_assert_leq(++n, KCAP, "iter %d: more elements than max_entries", iter);
    }
    cr_assert_eq(err, -ENOENT);
    for (uint32_t k = 0; k < KKEYS; k++)
        bpfg_map_delete_elem(m, &k);
    for (uint32_t k = 0; k < KCAP; k++) {
        make_val(v, k, 1);
        cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_NOEXIST), 0, "iter %d: capacity lost at %u", iter, k);
    }
    uint32_t k = KCAP;
    make_val(v, k, 1);
    cr_assert_eq(bpfg_map_update_elem(m, &k, v, BPF_NOEXIST), lru ? 0 : -E2BIG, "iter %d", iter);
}

static void kill_loop(struct bpfg_map *m, void (*writer)(struct bpfg_map *, unsigned),
                      void (*verify)(struct bpfg_map *, bool, int), bool lru, int iters)
{
    unsigned seed = 4242;
    for (int it = 0; it < iters; it++) {
        kill_two_writers(m, writer, it, &seed);
        /* Every other round the next writers find the dead owners (and run
         * the repair themselves, maybe getting killed in it). */
        if (it % 2 || it == iters - 1)
            verify(m, lru, it);
    }
}

Test(maps_kill, hash_writers, .timeout = 60)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_HASH, 4, VW * 8, KCAP);
    kill_loop(m, hash_writer, hash_verify, false, 200);
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    cr_assert_gt(info.repairs, 0, "some writer died holding a lock");
    bpfg_map_close(m);
}

Test(maps_kill, lru_hash_writers, .timeout = 60)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_LRU_HASH, 4, VW * 8, KCAP);
    kill_loop(m, hash_writer, hash_verify, true, 120);
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    cr_assert_gt(info.repairs, 0);
    bpfg_map_close(m);
}

#define QCAP 64

static void queue_writer(struct bpfg_map *m, unsigned seed)
{
    uint64_t v[VW], seq = 0;
    for (;;) {
        uint32_t r = (uint32_t)rand_r(&seed);
        if (r % 2) {
            make_val(v, 7, ++seq);
            bpfg_map_push_elem(m, v, r % 4 == 1 ? BPF_EXIST : 0);
        } else if (bpfg_map_pop_elem(m, v) == 0 && !val_ok(v, 7)) {
            _exit(3);
        }
    }
}

static void queue_verify(struct bpfg_map *m, bool unused, int iter)
{
    (void)unused;
    uint64_t v[VW];
    int n = 0;
    while (bpfg_map_pop_elem(m, v) == 0) {
        cr_assert(val_ok(v, 7), "iter %d: torn element", iter);
        cr_assert_leq(++n, QCAP);
    }
    make_val(v, 7, 0);
    for (int i = 0; i < QCAP; i++)
        cr_assert_eq(bpfg_map_push_elem(m, v, 0), 0, "iter %d", iter);
    cr_assert_eq(bpfg_map_push_elem(m, v, 0), -E2BIG);
    while (bpfg_map_pop_elem(m, v) == 0)
        ;
}

Test(maps_kill, queue_writers, .timeout = 60)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_QUEUE, 0, VW * 8, QCAP);
    kill_loop(m, queue_writer, queue_verify, false, 100);
    bpfg_map_close(m);
}

static void rb_writer(struct bpfg_map *m, unsigned seed)
{
    uint64_t v[8], seq = 0;
    for (;;) {
        uint32_t r = (uint32_t)rand_r(&seed);
        for (int i = 0; i < 8; i++)
            v[i] = seq << 10 | 9;
        seq++;
        if (r % 2) {
            bpfg_ringbuf_output(m, v, sizeof(v), 0);
        } else {
            uint64_t *p = bpfg_ringbuf_reserve(m, sizeof(v), 0);
            if (p) {
                for (int i = 0; i < 8; i++)
                    p[i] = v[i];
                if (r % 8 == 2)
                    bpfg_ringbuf_discard(m, p, 0);
                else
                    bpfg_ringbuf_submit(m, p, 0);
            }
        }
    }
}

static int rb_check(void *ctx, void *data, size_t size)
{
    uint64_t v[8];
    if (size != sizeof(v))
        return -EBADMSG;
    memcpy(v, data, sizeof(v));
    for (int i = 0; i < 8; i++)
        if (v[i] != v[0] || (v[i] & 1023) != 9)
            return -EBADMSG;
    ++*(int *)ctx;
    return 0;
}

static void rb_verify(struct bpfg_map *m, bool unused, int iter)
{
    (void)unused;
    int n = 0, r;
    while ((r = bpfg_ringbuf_consume(m, rb_check, &n)) > 0)
        ;
    cr_assert_geq(r, 0, "iter %d: bad record (%d)", iter, r);
    cr_assert_eq(bpfg_ringbuf_query(m, BPF_RB_AVAIL_DATA), 0, "iter %d: ring drained", iter);
    uint64_t v[8];
    for (int i = 0; i < 8; i++)
        v[i] = 9;
    cr_assert_eq(bpfg_ringbuf_output(m, v, sizeof(v), 0), 0, "iter %d: producer usable", iter);
    n = 0;
    cr_assert_eq(bpfg_ringbuf_consume(m, rb_check, &n), 1);
}

Test(maps_kill, ringbuf_producers, .timeout = 60)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_RINGBUF, 0, 0, 1 << 16);
    kill_loop(m, rb_writer, rb_verify, false, 100);
    bpfg_map_close(m);
}
