/* Per-CPU maps under threads sharing CPUs: a run's "lookup; *v += 1" on
 * the slot bpfg_map_lookup_elem_run claimed loses no increment (FORMAT.md
 * "Per-CPU slots"); a claim whose holder died is taken over. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"

#define THREADS 4
#define INCREMENTS 1000000u
#define KEYS 4

static struct bpfg_map *mk(uint32_t type, uint32_t nr_cpus)
{
    struct bpfg_map_spec s = {
        .type = type, .key_size = 4, .value_size = 8, .max_entries = KEYS, .nr_cpus = nr_cpus, .name = "pcpu"};
    struct bpfg_map *m = NULL;
    cr_assert_eq(bpfg_map_create(&s, &m), 0, "%s", bpfg_map_last_error());
    uint64_t zero[64] = {0};
    cr_assert_leq(nr_cpus, 64);
    for (uint32_t k = 0; k < KEYS; k++)
        cr_assert_eq(bpfg_map_update_copy(m, &k, zero, BPF_ANY), 0);
    return m;
}

struct incr {
    struct bpfg_map *a, *b; /* b: a second map the same run touches, or NULL */
    uint32_t seed;
};

/* A program's non-atomic add, as a JIT emits it: load, add, store. */
static void add_one(uint64_t *v)
{
    uint64_t x = __atomic_load_n(v, __ATOMIC_RELAXED);
    __atomic_store_n(v, x + 1, __ATOMIC_RELAXED);
}

static void *increment(void *arg)
{
    struct incr *t = arg;
    for (uint32_t i = 0; i < INCREMENTS; i++) {
        struct bpfg_map_run run = {.n = 0};
        uint32_t k = (t->seed + i) % KEYS;
        uint64_t *v = bpfg_map_lookup_elem_run(t->a, &k, &run);
        add_one(v);
        if (t->b) {
            add_one(bpfg_map_lookup_elem_run(t->b, &k, &run));
            add_one(bpfg_map_lookup_elem_run(t->a, &k, &run)); /* the run's slot again */
        }
        bpfg_map_run_release(&run);
    }
    return NULL;
}

/* Every key's slots summed over the CPUs, then over the keys. */
static uint64_t total(struct bpfg_map *m, uint32_t nr_cpus)
{
    uint64_t sum = 0, v[64];
    for (uint32_t k = 0; k < KEYS; k++) {
        cr_assert_eq(bpfg_map_lookup_copy(m, &k, v), 0);
        for (uint32_t c = 0; c < nr_cpus; c++)
            sum += v[c];
    }
    return sum;
}

static void run_threads(struct bpfg_map *a, struct bpfg_map *b)
{
    pthread_t th[THREADS];
    struct incr t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        t[i] = (struct incr){a, b, (uint32_t)i};
        cr_assert_eq(pthread_create(&th[i], NULL, increment, &t[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
}

static void exact_sum(uint32_t type, uint32_t nr_cpus)
{
    struct bpfg_map *m = mk(type, nr_cpus);
    run_threads(m, NULL);
    cr_assert_eq(total(m, nr_cpus), (uint64_t)THREADS * INCREMENTS, "lost %llu increments",
                 (unsigned long long)((uint64_t)THREADS * INCREMENTS - total(m, nr_cpus)));
    bpfg_map_close(m);
}

Test(maps_percpu, array_sum_exact)
{
    exact_sum(BPF_MAP_TYPE_PERCPU_ARRAY, bpfg_possible_cpus());
}

Test(maps_percpu, hash_sum_exact)
{
    exact_sum(BPF_MAP_TYPE_PERCPU_HASH, bpfg_possible_cpus());
}

Test(maps_percpu, lru_hash_sum_exact)
{
    exact_sum(BPF_MAP_TYPE_LRU_PERCPU_HASH, bpfg_possible_cpus());
}

/* More threads than slots: one slot for four threads. */
Test(maps_percpu, one_slot_sum_exact)
{
    exact_sum(BPF_MAP_TYPE_PERCPU_ARRAY, 1);
}

/* Runs touching two per-CPU maps (one of them twice) keep both exact. */
Test(maps_percpu, two_maps_in_a_run)
{
    uint32_t cpus = bpfg_possible_cpus();
    struct bpfg_map *a = mk(BPF_MAP_TYPE_PERCPU_ARRAY, cpus), *b = mk(BPF_MAP_TYPE_PERCPU_HASH, cpus);
    run_threads(a, b);
    cr_assert_eq(total(a, cpus), 2ull * THREADS * INCREMENTS);
    cr_assert_eq(total(b, cpus), (uint64_t)THREADS * INCREMENTS);
    bpfg_map_close(a);
    bpfg_map_close(b);
}

struct crossed {
    struct bpfg_map *first, *second;
};

/* Runs taking two one-slot maps in the order given. */
static void *crossed_runs(void *arg)
{
    struct crossed *c = arg;
    for (uint32_t i = 0; i < INCREMENTS / 10; i++) {
        struct bpfg_map_run run = {.n = 0};
        uint32_t k = i % KEYS;
        add_one(bpfg_map_lookup_elem_run(c->first, &k, &run));
        add_one(bpfg_map_lookup_elem_run(c->second, &k, &run));
        bpfg_map_run_release(&run);
    }
    return NULL;
}

/* Two threads taking the same two maps in opposite orders (a possible
 * cycle of claims): both finish, each map counted at most once a run. */
Test(maps_percpu, opposite_orders_finish)
{
    struct bpfg_map *a = mk(BPF_MAP_TYPE_PERCPU_ARRAY, 1), *b = mk(BPF_MAP_TYPE_PERCPU_HASH, 1);
    struct crossed c[2] = {{a, b}, {b, a}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, crossed_runs, &c[i]), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_join(th[i], NULL), 0);
    cr_assert_leq(total(a, 1), 2ull * INCREMENTS / 10);
    cr_assert_gt(total(a, 1), 0);
    cr_assert_leq(total(b, 1), 2ull * INCREMENTS / 10);
    bpfg_map_close(a);
    bpfg_map_close(b);
}

/* Claims one slot of m in a run never released (its thread dies in it). */
static void *claim_and_die(void *arg)
{
    uint32_t k = 0;
    struct bpfg_map_run run = {.n = 0};
    return bpfg_map_lookup_elem_run(arg, &k, &run) && run.n == 1 ? arg : NULL;
}

/* Threads of a process that died in their runs, holding every slot, do
 * not block the next run for good. */
Test(maps_percpu, dead_holders_taken_over)
{
    struct bpfg_map *m = mk(BPF_MAP_TYPE_PERCPU_ARRAY, 2);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        int held = 0;
        for (int i = 0; i < 2; i++) {
            pthread_t th;
            void *ok = NULL;
            if (pthread_create(&th, NULL, claim_and_die, m) == 0 && pthread_join(th, &ok) == 0 && ok)
                held++;
        }
        _exit(held == 2 ? 0 : 3);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %#x", st);
    uint32_t k = 0;
    struct bpfg_map_run run = {.n = 0};
    uint64_t *v = bpfg_map_lookup_elem_run(m, &k, &run);
    cr_assert_not_null(v);
    cr_assert_eq(run.n, 1, "a slot claimed");
    add_one(v);
    bpfg_map_run_release(&run);
    cr_assert_eq(total(m, 2), 1);
    bpfg_map_close(m);
}

/* Moves the calling thread onto cpu; false if it cannot run there. */
static bool move_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        return false;
    sched_yield();
    return sched_getcpu() == cpu;
}

/* bpftrace's count(): "x = lookup(k); update(k, x + 1)", the thread moved
 * to another CPU between the two. The update goes to the slot the lookup
 * read (the run's claim), not to the new CPU's: else it overwrites that
 * slot's count with this one's, and the sum counts it twice. */
/* Two CPUs this thread may run on whose slots differ in a map of two
 * (slot = CPU % 2); asserts that there are. */
static void two_cpus(const cpu_set_t *allowed, int cpu[2])
{
    cpu[0] = cpu[1] = -1;
    for (int c = 0; c < CPU_SETSIZE && cpu[1] < 0; c++)
        if (CPU_ISSET(c, allowed) && (cpu[0] < 0 || c % 2 != cpu[0] % 2))
            cpu[cpu[0] < 0 ? 0 : 1] = c;
    cr_assert(cpu[1] >= 0, "the test needs two CPUs (one odd, one even) to move between");
}

/* bpftrace's count(): "x = lookup(k); update(k, x + 1)", the thread moved
 * to another CPU between the two. The update goes to the slot the lookup
 * read (the run's claim), not to the new CPU's: else it overwrites that
 * slot's count with this one's, and the sum counts it twice. */
static void update_follows_the_claim(uint32_t type, bool missing)
{
    cpu_set_t old;
    int cpu[2];
    cr_assert_eq(sched_getaffinity(0, sizeof(old), &old), 0);
    two_cpus(&old, cpu);
    uint32_t from = (uint32_t)cpu[0] % 2, to = (uint32_t)cpu[1] % 2, k = 1;
    struct bpfg_map *m = mk(type, 2);
    uint64_t seed[2], v[64];
    seed[from] = 5;
    seed[to] = 7;
    if (missing)
        cr_assert_eq(bpfg_map_delete_copy(m, &k), 0);
    else
        cr_assert_eq(bpfg_map_update_copy(m, &k, seed, BPF_ANY), 0);
    cr_assert(move_to(cpu[0]), "on CPU %d", cpu[0]);
    struct bpfg_map_run run = {.n = 0};
    uint64_t *p = bpfg_map_lookup_elem_run(m, &k, &run);
    cr_assert_eq(run.n, 1, "the lookup claimed a slot");
    cr_assert_eq(run.claim[0].slot, from, "CPU %d's", cpu[0]);
    uint64_t x = p ? *p + 1 : 1;
    cr_assert(move_to(cpu[1]), "on CPU %d", cpu[1]);
    cr_assert_eq(bpfg_map_update_elem_run(m, &k, &x, BPF_ANY, &run), 0);
    bpfg_map_run_release(&run);
    cr_assert_eq(sched_setaffinity(0, sizeof(old), &old), 0);
    cr_assert_eq(bpfg_map_lookup_copy(m, &k, v), 0);
    cr_assert_eq(v[from], missing ? 1 : 6, "the lookup's slot: %lu", (unsigned long)v[from]);
    cr_assert_eq(v[to], missing ? 0 : 7, "the other slot untouched: %lu", (unsigned long)v[to]);
    bpfg_map_close(m);
}

Test(maps_percpu, array_update_follows_the_claim)
{
    update_follows_the_claim(BPF_MAP_TYPE_PERCPU_ARRAY, false);
}

Test(maps_percpu, hash_update_follows_the_claim)
{
    update_follows_the_claim(BPF_MAP_TYPE_PERCPU_HASH, false);
}

Test(maps_percpu, hash_new_element_follows_the_claim)
{
    update_follows_the_claim(BPF_MAP_TYPE_PERCPU_HASH, true);
}

Test(maps_percpu, lru_hash_update_follows_the_claim)
{
    update_follows_the_claim(BPF_MAP_TYPE_LRU_PERCPU_HASH, false);
}
