/* HASH, PERCPU_HASH, LRU_HASH, LRU_PERCPU_HASH.
 *
 * Preallocated elements in one pool, chained per bucket by element index;
 * a chain ends in a "nulls" marker naming its bucket (as the kernel's
 * hlist_nulls), so a lock-free reader that followed a recycled element
 * into another chain notices and restarts.
 *
 * Readers take no lock. Writers take the robust mutex of the bucket's
 * stripe. Every change is published with one atomic store:
 *   insert:  fill a free element (gen odd while writing), link it at the
 *            head of the chain with one store;
 *   replace: fill a new element, swap it for the old one with one store
 *            (a plain map's 4- or 8-byte value: one store of the value);
 *   delete:  unlink with one store, then push the element on the free list.
 * A writer killed at any instruction therefore leaves every chain walkable;
 * the worst left over is an element taken from the free list but not
 * linked (or unlinked but not freed) and a live count off by one. The
 * repair pass (run by whoever next takes a lock the dead writer held) walks
 * every chain, cuts anything malformed, recounts and rebuilds the free list.
 *
 * Two writers on different stripes share no written cache line: each stripe
 * owns whole lines of the bucket array (16 consecutive buckets), its free
 * list and a credit of count slots in its lock's line, and the map-wide
 * count (h_count, its own line) is touched only to move slots in batches.
 */
#include <stdlib.h>

#include "internal.h"

#define HASH_FLAGS                                                                                                 \
    (BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | \
     BPF_F_WRONLY_PROG | BPF_F_ZERO_SEED)
#define MAX_KEY 512u /* MAX_BPF_STACK */
#define MAX_ENTRIES (1u << 28)
#define PCPU_MAX_VALUE (32u * 1024)
#define READ_RETRIES 16

struct helem {
    _Atomic uint32_t next; /* element index, or NULLS_BIT | bucket */
    uint32_t hash;
    _Atomic uint32_t gen;       /* odd while the element is being written */
    _Atomic uint32_t free_next; /* free-list link; `next` stays intact for readers */
};

static bool type_percpu(uint32_t t)
{
    return t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

static bool type_lru(uint32_t t)
{
    return t == BPF_MAP_TYPE_LRU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

static uint32_t roundup_pow2(uint32_t x)
{
    uint32_t p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

static int hash_check(const struct bpfg_map_spec *s)
{
    if (s->type == BPF_MAP_TYPE_HASH_OF_MAPS && (s->value_size != 4 || map_inner_template_check(s)))
        return -EINVAL;
    if (s->key_size == 0 || s->value_size == 0 || s->max_entries == 0 || (s->map_flags & ~HASH_FLAGS))
        return -EINVAL;
    if (!type_lru(s->type) && (s->map_flags & BPF_F_NO_COMMON_LRU))
        return -EINVAL;
    if (type_lru(s->type) && (s->map_flags & BPF_F_NO_PREALLOC))
        return -ENOTSUPP;
    if (s->key_size > MAX_KEY || s->value_size > (1u << 20) || s->max_entries > MAX_ENTRIES)
        return -E2BIG;
    if (type_percpu(s->type) && s->value_size > PCPU_MAX_VALUE)
        return -E2BIG;
    uint64_t val = (uint64_t)ROUND8(s->value_size) * (type_percpu(s->type) ? s->nr_cpus : 1);
    if ((sizeof(struct helem) + ROUND8(s->key_size) + val) * (uint64_t)s->max_entries > (1ull << 38))
        return -E2BIG;
    return 0;
}

bool map_hash_family(uint32_t t)
{
    return t == BPF_MAP_TYPE_HASH || t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_HASH ||
           t == BPF_MAP_TYPE_LRU_PERCPU_HASH || t == BPF_MAP_TYPE_HASH_OF_MAPS;
}

void map_hash_layout_at(const struct bpfg_map_spec *s, uint32_t version, struct layout *lo)
{
    lo->n_buckets = roundup_pow2(s->max_entries);
    lo->n_locks = lo->n_buckets < MAX_LOCK_STRIPES ? lo->n_buckets : MAX_LOCK_STRIPES;
    lo->locks_off = HDR_SIZE;
    lo->aux_off = ROUNDUP(lo->locks_off + (uint64_t)(lo->n_locks + 1) * LOCK_STRIDE, 64);
    lo->aux_size = (uint64_t)lo->n_buckets * 4;
    /* Two elements per stripe beyond max_entries: its spare (a replace's
     * next element) and one in flight (a replace builds the new element
     * before freeing the old one; a deleted one is freed after its count
     * slot), so a replace never fails with E2BIG on a full map. Layout 4
     * has no spares: one in flight per stripe. */
    lo->n_elems = s->max_entries + (version >= 5 ? 2 : 1) * lo->n_locks;
    uint64_t end = lo->aux_off + lo->aux_size;
    if (type_lru(s->type)) {
        lo->lru_off = ROUNDUP(end, 64);
        end = lo->lru_off + 8ull * lo->n_elems;
    }
    lo->elem_size = (uint32_t)(sizeof(struct helem) + ROUND8(s->key_size) +
                               ROUND8(s->value_size) * (type_percpu(s->type) ? s->nr_cpus : 1));
    lo->data_off = ROUNDUP(end, 64);
    lo->data_size = (uint64_t)lo->n_elems * lo->elem_size;
    lo->region_size = ROUNDUP(lo->data_off + lo->data_size, REGION_PAGE);
}

static void hash_layout(const struct bpfg_map_spec *s, struct layout *lo)
{
    map_hash_layout_at(s, REGION_VERSION, lo);
}

static inline struct helem *E(struct bpfg_map *m, uint32_t i)
{
    return (struct helem *)(m->data + (uint64_t)i * m->elem_size);
}

static inline uint8_t *ekey(struct helem *e)
{
    return (uint8_t *)(e + 1);
}

static inline uint8_t *eval(struct bpfg_map *m, struct helem *e)
{
    return (uint8_t *)(e + 1) + m->key_stride;
}

static inline _Atomic uint32_t *bucket(struct bpfg_map *m, uint32_t b)
{
    return (_Atomic uint32_t *)m->aux + b;
}

/* LRU bookkeeping, one per element: last-use tick and whether linked. */
struct lru_ent {
    _Atomic uint32_t stamp;
    _Atomic uint32_t live;
};

static inline struct lru_ent *lru_ent(struct bpfg_map *m, uint32_t i)
{
    return (struct lru_ent *)m->lru + i;
}

static inline _Atomic uint32_t *lru_live(struct bpfg_map *m, uint32_t i)
{
    return &lru_ent(m, i)->live;
}

static inline uint32_t lru_now(struct bpfg_map *m)
{
    return (uint32_t)atomic_load_explicit(&m->st->clock_hand, memory_order_relaxed);
}

/* Marks use; writes only when the tick moved, to spare the cache line. */
static inline void lru_touch(struct bpfg_map *m, uint32_t i)
{
    uint32_t now = lru_now(m);
    if (atomic_load_explicit(&lru_ent(m, i)->stamp, memory_order_relaxed) != now)
        atomic_store_explicit(&lru_ent(m, i)->stamp, now, memory_order_relaxed);
}

static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

/* len is a constant where the fast lookup inlines it (4 or 8). */
static inline __attribute__((always_inline)) uint32_t hash_bytes(uint32_t seed, const void *key, uint32_t len)
{
    const uint8_t *p = key;
    uint64_t h = seed ^ ((uint64_t)len << 32);
    if (len == 4) {
        uint32_t v;
        memcpy(&v, p, 4);
        return (uint32_t)mix64(h ^ v);
    }
    if (len == 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        return (uint32_t)mix64(h ^ v);
    }
    for (; len >= 8; len -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        h = (h ^ mix64(v)) * 0x9e3779b97f4a7c15ull;
    }
    for (; len; len--, p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return (uint32_t)mix64(h);
}

static inline uint32_t hash_key(const struct bpfg_map *m, const void *key)
{
    return hash_bytes(m->hash_seed, key, m->key_size);
}

static inline __attribute__((always_inline)) bool key_eq_len(const uint8_t *a, const void *b, uint32_t len)
{
    switch (len) {
    case 4: {
        uint32_t x, y;
        memcpy(&x, a, 4);
        memcpy(&y, b, 4);
        return x == y;
    }
    case 8: {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        return x == y;
    }
    default: return memcmp(a, b, len) == 0;
    }
}

static inline bool key_eq(const struct bpfg_map *m, const uint8_t *a, const void *b)
{
    return key_eq_len(a, b, m->key_size);
}

/* Lock-free search. Returns the element and its (even) generation, NULL if
 * absent, or sets *busy when churn or corruption kept it from an answer. */
static struct helem *find_rcu(struct bpfg_map *m, const void *key, uint32_t hash, uint32_t *gen, bool *busy)
{
    uint32_t b = hash & (m->n_buckets - 1);
    for (int attempt = 0; attempt < READ_RETRIES; attempt++) {
        uint32_t i = atomic_load_explicit(bucket(m, b), memory_order_acquire);
        uint32_t steps = 0;
        while (!(i & NULLS_BIT)) {
            if (i >= m->n_elems || ++steps > m->n_elems)
                goto again;
            struct helem *e = E(m, i);
            uint32_t g = atomic_load_explicit(&e->gen, memory_order_acquire);
            if (!(g & 1) && e->hash == hash && key_eq(m, ekey(e), key)) {
                atomic_thread_fence(memory_order_acquire);
                if (atomic_load_explicit(&e->gen, memory_order_relaxed) == g) {
                    *gen = g;
                    return e;
                }
                goto again;
            }
            i = atomic_load_explicit(&e->next, memory_order_acquire);
        }
        if (i == (NULLS_BIT | b))
            return NULL;
    again:;
    }
    *busy = true;
    return NULL;
}

/* Search under the stripe lock: *link is the word that points at the
 * result, *idx its index (no division by the stride in writers). */
static struct helem *find_locked_at(struct bpfg_map *m, const void *key, uint32_t hash, _Atomic uint32_t **link_out,
                                    uint32_t *idx)
{
    uint32_t b = hash & (m->n_buckets - 1);
    _Atomic uint32_t *link = bucket(m, b);
    uint32_t i = atomic_load_explicit(link, memory_order_relaxed);
    uint32_t steps = 0;
    while (!(i & NULLS_BIT)) {
        if (i >= m->n_elems || ++steps > m->n_elems) {
            atomic_store(&m->st->needs_repair, 1); /* corrupt chain */
            return NULL;
        }
        struct helem *e = E(m, i);
        if (e->hash == hash && key_eq(m, ekey(e), key)) {
            *link_out = link;
            *idx = i;
            return e;
        }
        link = &e->next;
        i = atomic_load_explicit(link, memory_order_relaxed);
    }
    return NULL;
}

static struct helem *find_locked(struct bpfg_map *m, const void *key, uint32_t hash, _Atomic uint32_t **link_out)
{
    uint32_t idx;
    return find_locked_at(m, key, hash, link_out, &idx);
}

/* Asks for a line a writer is about to write, in the exclusive state, so
 * that its miss overlaps the lock's (PREFETCHW; a NOP on CPUs without it). */
static inline void prefetch_w(const void *p)
{
    __asm__ volatile("prefetchw %0" : : "m"(*(const char *)p));
}

/* Bucket b's stripe: runs of up to 16 buckets (a cache line of the bucket
 * array) share one, so writers of different stripes never write one line. */
static inline uint32_t stripe_of_bucket(const struct bpfg_map *m, uint32_t b)
{
    uint32_t spread = (uint32_t)(__builtin_ctz(m->n_buckets) - __builtin_ctz(m->n_locks));
    return (b >> (spread < 4 ? spread : 4)) & (m->n_locks - 1);
}

static uint32_t stripe_of(struct bpfg_map *m, uint32_t hash)
{
    return stripe_of_bucket(m, hash & (m->n_buckets - 1));
}

static uint32_t idx_of(struct bpfg_map *m, struct helem *e)
{
    return (uint32_t)(((uint8_t *)e - m->data) / m->elem_size);
}

/* Free elements: one tagged Treiber stack per stripe, its head in the
 * stripe's lock slot (FREE_HEAD_OFF), a line the writer already owns since
 * it holds that lock. Writers pop from their stripe's stack and take from
 * the others when it is empty; a freed element goes to the stripe whose
 * lock is held. Pops and pushes are lock-free, so taking from another
 * stripe needs no second lock. */
static inline _Atomic uint64_t *free_head(struct bpfg_map *m, uint32_t s)
{
    return (_Atomic uint64_t *)(m->locks + (uint64_t)s * LOCK_STRIDE + FREE_HEAD_OFF);
}

static uint32_t free_pop_one(struct bpfg_map *m, uint32_t s)
{
    _Atomic uint64_t *head = free_head(m, s);
    uint64_t old = atomic_load(head), nw;
    uint32_t i;
    do {
        i = (uint32_t)old;
        if (i == NIL)
            return NIL;
        if (i >= m->n_elems) {
            atomic_store(&m->st->needs_repair, 1);
            return NIL;
        }
        nw = ((old >> 32) + 1) << 32 | atomic_load(&E(m, i)->free_next);
    } while (!atomic_compare_exchange_weak(head, &old, nw));
    return i;
}

/* A writer holding a stripe lock always has an element to take unless some
 * leaked (n_elems = max_entries + a spare and one in flight per stripe), but one pass
 * over the stacks can miss it while other writers move the few free ones
 * between stripes: only a pool found empty pass after pass is exhausted. */
#define FREE_POP_PASSES 64

static uint32_t free_pop(struct bpfg_map *m, uint32_t s)
{
    for (uint32_t pass = 0; pass < FREE_POP_PASSES; pass++)
        for (uint32_t k = 0; k < m->n_locks; k++) {
            uint32_t i = free_pop_one(m, (s + k) & (m->n_locks - 1));
            if (i != NIL)
                return i;
        }
    return NIL;
}

static void free_push(struct bpfg_map *m, uint32_t s, uint32_t i)
{
    _Atomic uint64_t *head = free_head(m, s);
    uint64_t old = atomic_load(head), nw;
    do {
        /* the compare-and-swap publishing it orders this store: no second
         * locked instruction (each costs ~35 ns on a PVM guest) */
        atomic_store_explicit(&E(m, i)->free_next, (uint32_t)old, memory_order_relaxed);
        nw = ((old >> 32) + 1) << 32 | i;
    } while (!atomic_compare_exchange_weak(head, &old, nw));
}

/* Stripe s's spare element + 1 (0 = none), read and written only by the
 * holder of its lock: a replace fills the spare and leaves the element it
 * replaced there, as the kernel's per-CPU extra_elems do, so replacing
 * takes no free-list compare-and-swap. */
static inline _Atomic uint32_t *spare(struct bpfg_map *m, uint32_t s)
{
    return (_Atomic uint32_t *)(m->locks + (uint64_t)s * LOCK_STRIDE + SPARE_OFF);
}

/* Layout 4's writers (payloads of an older build) know no spares: they
 * would put a spare on a free list in a repair while a new writer uses
 * it, so on such a region every writer replaces with free-list elements. */
static inline bool has_spares(const struct bpfg_map *m)
{
    return m->layout >= 5;
}

/* The spare element of stripe s (held), else a free one. A replace leaves
 * the element it replaced as the next spare; an insert empties the slot. */
static uint32_t spare_take(struct bpfg_map *m, uint32_t s, bool insert)
{
    if (!has_spares(m))
        return free_pop(m, s);
    uint32_t sp = atomic_load_explicit(spare(m, s), memory_order_relaxed);
    if (sp && sp <= m->n_elems) {
        if (insert)
            atomic_store_explicit(spare(m, s), 0, memory_order_relaxed);
        return sp - 1;
    }
    if (sp)
        atomic_store(&m->st->needs_repair, 1); /* out of range: corrupt */
    return free_pop(m, s);
}

/* A freed element of stripe s (held): the spare when the stripe has none
 * (a delete then insert takes no free-list compare-and-swap), else on the
 * stripe's free list. */
static void elem_free(struct bpfg_map *m, uint32_t s, uint32_t i)
{
    if (has_spares(m) && !atomic_load_explicit(spare(m, s), memory_order_relaxed))
        atomic_store_explicit(spare(m, s), i + 1, memory_order_relaxed);
    else
        free_push(m, s, i);
}

/* The stripe's spare, which the writer holding it will fill. */
static inline void prefetch_spare(struct bpfg_map *m, uint32_t s)
{
    uint32_t sp = has_spares(m) ? atomic_load_explicit(spare(m, s), memory_order_relaxed) : 0;
    if (sp && sp <= m->n_elems)
        prefetch_w(E(m, sp - 1));
}

/* Deals elements [0, n_elems) out to the stripes' stacks, a contiguous run
 * each (keeping each stripe's elements together), skipping live ones; no
 * stripe keeps a spare. */
static void free_rebuild(struct bpfg_map *m, const uint64_t *live)
{
    uint32_t per = (m->n_elems + m->n_locks - 1) / m->n_locks;
    for (uint32_t s = 0; s < m->n_locks; s++) {
        uint32_t top = NIL;
        if (has_spares(m))
            atomic_store_explicit(spare(m, s), 0, memory_order_relaxed);
        uint64_t lo = (uint64_t)s * per, hi = lo + per < m->n_elems ? lo + per : m->n_elems;
        for (uint64_t i = hi; i-- > lo;) {
            if (live && (live[i / 64] >> (i % 64) & 1))
                continue;
            atomic_store(&E(m, (uint32_t)i)->free_next, top);
            top = (uint32_t)i;
        }
        _Atomic uint64_t *head = free_head(m, s);
        atomic_store(head, ((atomic_load(head) >> 32) + 1) << 32 | top);
    }
}

/* Count slots: h_count = live elements + the slots stripes hold as
 * credit. A writer holding stripe s spends and refills s's credit (a line
 * it already owns) and moves slots to or from h_count COUNT_BATCH at a
 * time, so two writers do not bounce one counter's line on every insert
 * and delete (perf: that counter was the hottest instruction of both). */
#define COUNT_BATCH 16u

static inline _Atomic uint32_t *credit(struct bpfg_map *m, uint32_t s)
{
    return (_Atomic uint32_t *)(m->locks + (uint64_t)s * LOCK_STRIDE + CREDIT_OFF);
}

/* Takes up to `want` slots from h_count: how many it got. */
static uint32_t count_take(struct bpfg_map *m, uint32_t want)
{
    uint32_t c = atomic_load_explicit(&m->st->h_count, memory_order_relaxed), got;
    do {
        if (c >= m->max_entries)
            return 0;
        got = m->max_entries - c < want ? m->max_entries - c : want;
    } while (!atomic_compare_exchange_weak(&m->st->h_count, &c, c + got));
    return got;
}

/* One slot from stripe s's credit; stripe s held. */
static bool credit_spend(struct bpfg_map *m, uint32_t s)
{
    _Atomic uint32_t *cr = credit(m, s);
    uint32_t c = atomic_load_explicit(cr, memory_order_relaxed);
    while (c && !atomic_compare_exchange_weak(cr, &c, c - 1))
        ;
    return c != 0;
}

/* One slot for an insert under stripe s: its credit, a batch from h_count,
 * else every other stripe's credit (taken whole, lock-free). A few rounds:
 * slots another writer has taken from h_count but not yet put in its
 * credit are in nobody's sight for a moment. */
static bool slot_take(struct bpfg_map *m, uint32_t s)
{
    if (credit_spend(m, s))
        return true;
    uint32_t got = 0;
    for (int round = 0; !got && round < 3; round++) {
        if (round)
            __builtin_ia32_pause();
        got = count_take(m, COUNT_BATCH);
        for (uint32_t k = 1; !got && k < m->n_locks; k++)
            got = atomic_exchange(credit(m, (s + k) & (m->n_locks - 1)), 0);
    }
    if (!got)
        return false;
    atomic_fetch_add(credit(m, s), got - 1);
    return true;
}

/* A deleted element's slot to stripe s's credit, a batch back to h_count
 * when the credit grows large; stripe s held. */
static void slot_give(struct bpfg_map *m, uint32_t s)
{
    uint32_t c = atomic_fetch_add(credit(m, s), 1) + 1;
    if (c > 2 * COUNT_BATCH && atomic_compare_exchange_strong(credit(m, s), &c, c - COUNT_BATCH))
        atomic_fetch_sub(&m->st->h_count, COUNT_BATCH);
}

/* Every slot back to h_count, which counts `live`; every stripe held. */
static void slots_reset(struct bpfg_map *m, uint32_t live)
{
    for (uint32_t s = 0; s < m->n_locks; s++)
        atomic_store(credit(m, s), 0);
    atomic_store(&m->st->h_count, live);
}

static void hash_init(struct bpfg_map *m)
{
    for (uint32_t b = 0; b < m->n_buckets; b++)
        atomic_store(bucket(m, b), NULLS_BIT | b);
    free_rebuild(m, NULL);
    slots_reset(m, 0);
}

/* Writes key and value into a free element. Other CPUs' slots of a per-CPU
 * element are zeroed when only the current CPU's value is given. */
static void fill_elem(struct bpfg_map *m, struct helem *e, const void *key, uint32_t hash, const void *value,
                      uint32_t cpu)
{
    uint32_t g = atomic_load_explicit(&e->gen, memory_order_relaxed);
    atomic_store_explicit(&e->gen, g | 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    e->hash = hash;
    memcpy(ekey(e), key, m->key_size);
    uint8_t *v = eval(m, e);
    if (!type_percpu(m->type)) {
        memcpy(v, value, m->value_size);
    } else if (cpu == MAP_CPU_ALL) {
        for (uint32_t c = 0; c < m->nr_cpus; c++)
            memcpy(v + (uint64_t)c * m->value_stride, (const uint8_t *)value + (uint64_t)c * m->value_stride,
                   m->value_size);
    } else {
        memset(v, 0, (uint64_t)m->value_stride * m->nr_cpus);
        memcpy(v + (uint64_t)map_update_slot(m, cpu) * m->value_stride, value, m->value_size);
    }
    atomic_store_explicit(&e->gen, (g | 1) + 1, memory_order_release);
}

/* Unlinks element i from bucket b if it is there; stripe held. */
static bool unlink_idx(struct bpfg_map *m, uint32_t b, uint32_t i)
{
    _Atomic uint32_t *link = bucket(m, b);
    uint32_t j = atomic_load_explicit(link, memory_order_relaxed), steps = 0;
    while (!(j & NULLS_BIT)) {
        if (j >= m->n_elems || ++steps > m->n_elems)
            return false;
        if (j == i) {
            atomic_store_explicit(link, atomic_load_explicit(&E(m, i)->next, memory_order_relaxed),
                                  memory_order_release);
            return true;
        }
        link = &E(m, j)->next;
        j = atomic_load_explicit(link, memory_order_relaxed);
    }
    return false;
}

/* Frees an unlinked element; stripe s (its bucket's) is held. Its count
 * slot goes to s's credit, or straight back to h_count (an eviction, whose
 * slot the evicting insert takes from there). */
static void release_elem(struct bpfg_map *m, uint32_t s, uint32_t i, bool to_count)
{
    if (m->lru)
        atomic_store_explicit(lru_live(m, i), 0, memory_order_relaxed);
    if (to_count)
        atomic_fetch_sub(&m->st->h_count, 1);
    else
        slot_give(m, s);
    elem_free(m, s, i);
}

static __thread uint64_t lru_rng;

static uint32_t lru_rand(uint32_t n)
{
    if (!lru_rng)
        lru_rng = (uint64_t)(uintptr_t)&lru_rng | 1;
    lru_rng ^= lru_rng << 13;
    lru_rng ^= lru_rng >> 7;
    lru_rng ^= lru_rng << 17;
    return (uint32_t)((lru_rng >> 16) % n);
}

#define LRU_SAMPLES 8

/* Approximate LRU (as Redis does): among a few sampled live elements evict
 * the one used longest ago. Holds stripe `held`; others only by trylock. */
static int lru_evict(struct bpfg_map *m, uint32_t held)
{
    uint32_t now = lru_now(m);
    for (int attempt = 0; attempt < 64; attempt++) {
        uint32_t best = NIL, best_age = 0;
        for (uint32_t t = 0, found = 0; t < 4 * LRU_SAMPLES && found < LRU_SAMPLES; t++) {
            uint32_t i = lru_rand(m->n_elems);
            if (!atomic_load_explicit(lru_live(m, i), memory_order_relaxed))
                continue;
            found++;
            uint32_t age = now - atomic_load_explicit(&lru_ent(m, i)->stamp, memory_order_relaxed);
            if (best == NIL || age > best_age) {
                best = i;
                best_age = age;
            }
        }
        if (best == NIL) {
            /* Sparse live set: fall back to a scan. */
            for (uint32_t i = 0; i < m->n_elems && best == NIL; i++)
                if (atomic_load_explicit(lru_live(m, i), memory_order_relaxed))
                    best = i;
            if (best == NIL)
                return -E2BIG;
        }
        uint32_t b = E(m, best)->hash & (m->n_buckets - 1);
        uint32_t s = stripe_of_bucket(m, b);
        if (s != held && map_trylock(m, s))
            continue;
        bool ok = atomic_load(lru_live(m, best)) && unlink_idx(m, b, best);
        if (ok)
            release_elem(m, s, best, true);
        if (s != held)
            map_unlock(m, s);
        if (ok)
            return 0;
    }
    return -E2BIG;
}

/* Reserves room for one more live element (evicting for LRU maps). */
static int reserve_count(struct bpfg_map *m, uint32_t held)
{
    while (!slot_take(m, held)) {
        if (!m->lru)
            return -E2BIG;
        int err = lru_evict(m, held);
        if (err)
            return err;
    }
    return 0;
}

static uint32_t copy_size(struct bpfg_map *m)
{
    return type_percpu(m->type) ? m->value_stride * m->nr_cpus : m->value_size;
}

/* Values a plain hash map replaces in place: 4 or 8 bytes (8-aligned in
 * the element), which one store writes and one load reads whole. */
static inline bool value_in_place(const struct bpfg_map *m)
{
    return !type_percpu(m->type) && !m->lru && (m->value_size == 8 || m->value_size == 4);
}

/* Replaces the value of the linked element old with one store, as a
 * program's store through a looked-up pointer does: readers see the old
 * value or the new, the element, its chain and the stripe's spare stay as
 * they are. A replace by element (the spare filled, linked in with a
 * store to the bucket's line) moved two more lines between two writers'
 * CPUs (perf: the spare's fill, 7% of a two-thread update). */
static bool replace_in_place(struct bpfg_map *m, struct helem *old, const void *value)
{
    if (!value_in_place(m))
        return false;
    uint8_t *v = eval(m, old);
    if (m->value_size == 8) {
        uint64_t x;
        __builtin_memcpy(&x, value, 8);
        atomic_store_explicit((_Atomic uint64_t *)v, x, memory_order_release);
    } else {
        uint32_t x;
        __builtin_memcpy(&x, value, 4);
        atomic_store_explicit((_Atomic uint32_t *)v, x, memory_order_release);
    }
    return true;
}

/* Copies e's value out; a value replaced in place with one load (a
 * byte-wise copy could take part of each). */
static void value_out(struct bpfg_map *m, struct helem *e, void *dst)
{
    const uint8_t *v = eval(m, e);
    if (value_in_place(m) && m->value_size == 8) {
        uint64_t x = atomic_load_explicit((_Atomic uint64_t *)v, memory_order_relaxed);
        __builtin_memcpy(dst, &x, 8);
    } else if (value_in_place(m)) {
        uint32_t x = atomic_load_explicit((_Atomic uint32_t *)v, memory_order_relaxed);
        __builtin_memcpy(dst, &x, 4);
    } else {
        memcpy(dst, v, copy_size(m));
    }
}

static int hash_update_once(struct bpfg_map *m, const void *key, const void *value, uint64_t flags, uint32_t cpu)
{
    if (flags > BPF_EXIST)
        return -EINVAL;
    uint32_t hash = hash_key(m, key);
    uint32_t b = hash & (m->n_buckets - 1), s = stripe_of(m, hash), oi = NIL;
    prefetch_w(bucket(m, b)); /* its miss overlaps the lock's */
    int err = map_lock_checked(m, s);
    if (err)
        return err;
    prefetch_spare(m, s);
    _Atomic uint32_t *link = NULL;
    struct helem *old = find_locked_at(m, key, hash, &link, &oi);
    if (old && flags == BPF_NOEXIST) {
        err = -EEXIST;
        goto out;
    }
    if (!old && flags == BPF_EXIST) {
        err = -ENOENT;
        goto out;
    }
    if (old && type_percpu(m->type)) {
        /* Per-CPU values are updated in place, as the kernel does. */
        uint8_t *v = eval(m, old);
        if (cpu == MAP_CPU_ALL)
            for (uint32_t c = 0; c < m->nr_cpus; c++)
                memcpy(v + (uint64_t)c * m->value_stride, (const uint8_t *)value + (uint64_t)c * m->value_stride,
                       m->value_size);
        else
            memcpy(v + (uint64_t)map_update_slot(m, cpu) * m->value_stride, value, m->value_size);
        if (m->lru)
            lru_touch(m, oi);
        goto out;
    }
    if (old && replace_in_place(m, old, value))
        goto out;
    if (!old && (err = reserve_count(m, s)))
        goto out;
    uint32_t i = spare_take(m, s, !old);
    if (i == NIL) {
        if (old) {
            /* Pool exhausted by leaks a repair will reclaim: update in place. */
            memcpy(eval(m, old), value, m->value_size);
            atomic_store(&m->st->needs_repair, 1);
            goto out;
        }
        slot_give(m, s);
        atomic_store(&m->st->needs_repair, 1);
        err = -E2BIG;
        goto out;
    }
    struct helem *e = E(m, i);
    fill_elem(m, e, key, hash, value, cpu);
    if (m->lru) {
        uint32_t now = (uint32_t)atomic_fetch_add_explicit(&m->st->clock_hand, 1, memory_order_relaxed) + 1;
        atomic_store_explicit(&lru_ent(m, i)->stamp, now, memory_order_relaxed);
        atomic_store_explicit(lru_live(m, i), 1, memory_order_relaxed);
    }
    if (old) {
        /* Replace: one store swaps the new element in for the old. */
        atomic_store_explicit(&e->next, atomic_load_explicit(&old->next, memory_order_relaxed), memory_order_relaxed);
        atomic_store_explicit(link, i, memory_order_release);
        if (m->lru)
            atomic_store_explicit(lru_live(m, oi), 0, memory_order_relaxed);
        if (has_spares(m))
            atomic_store_explicit(spare(m, s), oi + 1, memory_order_relaxed);
        else
            free_push(m, s, oi);
    } else {
        atomic_store_explicit(&e->next, atomic_load_explicit(bucket(m, b), memory_order_relaxed), memory_order_relaxed);
        atomic_store_explicit(bucket(m, b), i, memory_order_release);
    }
out:
    map_unlock(m, s);
    return err;
}

static int hash_update(struct bpfg_map *m, const void *key, const void *value, uint64_t flags, uint32_t cpu)
{
    int err = hash_update_once(m, key, value, flags, cpu);
    if (err == -E2BIG && map_probe_dead_owners(m))
        err = hash_update_once(m, key, value, flags, cpu);
    return err;
}

static int hash_delete(struct bpfg_map *m, const void *key)
{
    uint32_t hash = hash_key(m, key), s = stripe_of(m, hash), i = NIL;
    prefetch_w(bucket(m, hash & (m->n_buckets - 1)));
    int err = map_lock_checked(m, s);
    if (err)
        return err;
    _Atomic uint32_t *link = NULL;
    struct helem *e = find_locked_at(m, key, hash, &link, &i);
    if (e) {
        atomic_store_explicit(link, atomic_load_explicit(&e->next, memory_order_relaxed), memory_order_release);
        release_elem(m, s, i, false);
    }
    map_unlock(m, s);
    return e ? 0 : -ENOENT;
}

static void *hash_lookup_cpu(struct bpfg_map *m, const void *key, uint32_t cpu)
{
    uint32_t hash = hash_key(m, key), g;
    bool busy = false;
    struct helem *e = find_rcu(m, key, hash, &g, &busy);
    if (!e && busy) {
        /* Endless churn on this chain: ask under the lock instead. */
        _Atomic uint32_t *link;
        uint32_t s = stripe_of(m, hash);
        if (map_lock_checked(m, s))
            return NULL;
        e = find_locked(m, key, hash, &link);
        map_unlock(m, s);
    }
    if (!e)
        return NULL;
    if (m->lru)
        lru_touch(m, idx_of(m, e));
    return eval(m, e) + (uint64_t)cpu * m->value_stride;
}

static void *hash_lookup(struct bpfg_map *m, const void *key)
{
    return hash_lookup_cpu(m, key, type_percpu(m->type) ? map_current_cpu(m) : 0);
}

/* Chain elements the fast lookup walks before leaving it to find_rcu. */
#define FAST_STEPS 8

static __attribute__((noinline)) void *hash_lookup_slow(struct bpfg_map *m, const void *key)
{
    return hash_lookup_cpu(m, key, 0);
}

/* One pass of find_rcu's walk for a key of len bytes (a constant), inline,
 * in a leaf that saves no register. Anything but a clean answer (a torn
 * element, a foreign nulls marker, a long chain) goes to the general path,
 * which retries and falls back to the lock. */
static inline __attribute__((always_inline)) void *lookup_len(struct bpfg_map *m, const void *key, uint32_t len)
{
    uint32_t hash = hash_bytes(m->hash_seed, key, len), b = hash & (m->n_buckets - 1);
    uint32_t i = atomic_load_explicit(bucket(m, b), memory_order_acquire);
    for (uint32_t steps = 0; !(i & NULLS_BIT) && i < m->n_elems && steps < FAST_STEPS; steps++) {
        struct helem *e = E(m, i);
        uint32_t g = atomic_load_explicit(&e->gen, memory_order_acquire);
        if (e->hash == hash && !(g & 1) && key_eq_len(ekey(e), key, len)) {
            atomic_thread_fence(memory_order_acquire);
            if (atomic_load_explicit(&e->gen, memory_order_relaxed) != g)
                break;
            return eval(m, e);
        }
        i = atomic_load_explicit(&e->next, memory_order_acquire);
    }
    if (i == (NULLS_BIT | b))
        return NULL;
    return hash_lookup_slow(m, key);
}

/* HASH and HASH_OF_MAPS (no per-CPU slot, no LRU stamp): keys of 4 and 8
 * bytes take the fast walk. */
static void *hash_lookup_plain(struct bpfg_map *m, const void *key)
{
    switch (m->key_size) {
    case 4: return lookup_len(m, key, 4);
    case 8: return lookup_len(m, key, 8);
    default: return hash_lookup_cpu(m, key, 0);
    }
}

static int hash_lookup_copy(struct bpfg_map *m, const void *key, void *value)
{
    uint32_t hash = hash_key(m, key), g;
    for (int t = 0; t < READ_RETRIES; t++) {
        bool busy = false;
        struct helem *e = find_rcu(m, key, hash, &g, &busy);
        if (!e && !busy)
            return -ENOENT;
        if (!e)
            break;
        value_out(m, e, value);
        atomic_thread_fence(memory_order_acquire);
        /* Same generation: the element was not recycled while we copied. */
        if (atomic_load_explicit(&e->gen, memory_order_relaxed) == g)
            return 0;
    }
    _Atomic uint32_t *link;
    uint32_t s = stripe_of(m, hash);
    int err = map_lock_checked(m, s);
    if (err)
        return err;
    struct helem *e = find_locked(m, key, hash, &link);
    if (e)
        value_out(m, e, value);
    map_unlock(m, s);
    return e ? 0 : -ENOENT;
}

static int hash_lookup_and_delete(struct bpfg_map *m, const void *key, void *value)
{
    uint32_t hash = hash_key(m, key), s = stripe_of(m, hash), i = NIL;
    int err = map_lock_checked(m, s);
    if (err)
        return err;
    _Atomic uint32_t *link = NULL;
    struct helem *e = find_locked_at(m, key, hash, &link, &i);
    if (e) {
        value_out(m, e, value);
        atomic_store_explicit(link, atomic_load_explicit(&e->next, memory_order_relaxed), memory_order_release);
        release_elem(m, s, i, false);
    }
    map_unlock(m, s);
    return e ? 0 : -ENOENT;
}

/* Copies e's key out as get_next_key's answer and remembers its hash. */
static void give_key(struct bpfg_map *m, struct helem *e, void *next)
{
    memcpy(next, ekey(e), m->key_size);
    atomic_store_explicit(&m->walk_hint, 1ull << 32 | e->hash, memory_order_relaxed);
}

/* First element of the first non-empty bucket at or after b. */
static int first_from(struct bpfg_map *m, uint32_t b, void *next)
{
    for (; b < m->n_buckets; b++) {
        if (atomic_load_explicit(bucket(m, b), memory_order_relaxed) & NULLS_BIT)
            continue; /* cheap skip of empty buckets without the lock */
        uint32_t s = stripe_of_bucket(m, b);
        int err = map_lock_checked(m, s);
        if (err)
            return err;
        uint32_t i = atomic_load_explicit(bucket(m, b), memory_order_relaxed);
        bool ok = !(i & NULLS_BIT) && i < m->n_elems;
        if (ok)
            give_key(m, E(m, i), next);
        map_unlock(m, s);
        if (ok)
            return 0;
    }
    return -ENOENT;
}

static int hash_get_next_key(struct bpfg_map *m, const void *key, void *next)
{
    if (!key)
        return first_from(m, 0, next);
    uint32_t hash = hash_key(m, key), b = hash & (m->n_buckets - 1), s = stripe_of(m, hash);
    int err = map_lock_checked(m, s);
    if (err)
        return err;
    _Atomic uint32_t *link;
    struct helem *e = find_locked(m, key, hash, &link);
    if (!e) {
        /* A key not in the map starts over at the first key, as the kernel
         * does (bpftrace walks from a key it made sure is absent). The key
         * this handle gave last, deleted since, continues at the start of
         * its bucket instead, so a walk under churn terminates. */
        map_unlock(m, s);
        bool walked = atomic_load_explicit(&m->walk_hint, memory_order_relaxed) == (1ull << 32 | hash);
        return first_from(m, walked ? b : 0, next);
    }
    uint32_t i = atomic_load_explicit(&e->next, memory_order_relaxed);
    bool ok = !(i & NULLS_BIT) && i < m->n_elems;
    if (ok)
        give_key(m, E(m, i), next);
    map_unlock(m, s);
    return ok ? 0 : first_from(m, b + 1, next);
}

/* Lock-free walk for bpfg_map_elem_at: the cursor is (bucket << 32) | the
 * position in its chain. Elements being written (odd gen) are skipped. */
static int hash_elem_at(struct bpfg_map *m, uint64_t *cursor, void **key, void **value)
{
    uint32_t b = (uint32_t)(*cursor >> 32), k = (uint32_t)*cursor;
    for (; b < m->n_buckets; b++, k = 0) {
        uint32_t i = atomic_load_explicit(bucket(m, b), memory_order_acquire);
        for (uint32_t pos = 0; !(i & NULLS_BIT) && i < m->n_elems && pos <= m->n_elems; pos++) {
            struct helem *e = E(m, i);
            if (pos >= k && !(atomic_load_explicit(&e->gen, memory_order_acquire) & 1)) {
                uint8_t *v = eval(m, e);
                *key = ekey(e);
                *value = type_percpu(m->type) ? v + (uint64_t)map_current_cpu(m) * m->value_stride : v;
                *cursor = ((uint64_t)b << 32) | (pos + 1);
                return 0;
            }
            i = atomic_load_explicit(&e->next, memory_order_acquire);
        }
    }
    return -ENOENT;
}

/* Runs with every stripe held. Rebuilds what a dead writer may have left
 * half done: malformed chains are cut, the count and LRU flags recomputed,
 * every unreachable element goes back on the free list. */
static int hash_repair(struct bpfg_map *m)
{
    uint64_t *seen = calloc((m->n_elems + 63) / 64, 8);
    if (!seen)
        return -ENOMEM;
    uint32_t count = 0;
    for (uint32_t b = 0; b < m->n_buckets; b++) {
        _Atomic uint32_t *link = bucket(m, b);
        uint32_t i = atomic_load(link);
        while (!(i & NULLS_BIT)) {
            if (i >= m->n_elems || (seen[i / 64] >> (i % 64) & 1) || (E(m, i)->hash & (m->n_buckets - 1)) != b ||
                (atomic_load(&E(m, i)->gen) & 1))
                break;
            seen[i / 64] |= 1ull << (i % 64);
            count++;
            link = &E(m, i)->next;
            i = atomic_load(link);
        }
        if (i != (NULLS_BIT | b))
            atomic_store(link, NULLS_BIT | b);
    }
    for (uint32_t i = 0; i < m->n_elems; i++) {
        bool live = seen[i / 64] >> (i % 64) & 1;
        if (m->lru)
            atomic_store(lru_live(m, i), live);
        if (live)
            continue;
        struct helem *e = E(m, i);
        uint32_t g = atomic_load(&e->gen);
        if (g & 1)
            atomic_store(&e->gen, g + 1);
    }
    free_rebuild(m, seen);
    slots_reset(m, count);
    free(seen);
    return 0;
}

/* Live elements: h_count less the slots the stripes hold (exact while no
 * writer is between the two; never above max_entries). */
static uint64_t hash_entries(struct bpfg_map *m)
{
    int64_t n = atomic_load(&m->st->h_count);
    for (uint32_t s = 0; s < m->n_locks; s++)
        n -= atomic_load(credit(m, s));
    return n < 0 ? 0 : n > m->max_entries ? m->max_entries : (uint64_t)n;
}

#define HASH_OPS                                                                                                     \
    .check = hash_check, .layout = hash_layout, .init = hash_init, .update = hash_update, .delete = hash_delete,     \
    .lookup_copy = hash_lookup_copy, .lookup_and_delete = hash_lookup_and_delete, .get_next_key = hash_get_next_key, \
    .repair = hash_repair, .elem_at = hash_elem_at, .entries = hash_entries

const struct map_ops hash_ops = {HASH_OPS, .lookup = hash_lookup_plain};
const struct map_ops percpu_hash_ops = {HASH_OPS, .lookup = hash_lookup, .lookup_cpu = hash_lookup_cpu};
const struct map_ops lru_hash_ops = {HASH_OPS, .lookup = hash_lookup};
const struct map_ops lru_percpu_hash_ops = {HASH_OPS, .lookup = hash_lookup, .lookup_cpu = hash_lookup_cpu};

/* HASH_OF_MAPS: values are inner map ids. The kernel's bpf(2) has no
 * lookup-and-delete for it. */
static int no_lookup_and_delete(struct bpfg_map *m, const void *key, void *value)
{
    (void)m;
    (void)key;
    (void)value;
    return -ENOTSUPP;
}

const struct map_ops hash_of_maps_ops = {
    .check = hash_check,
    .layout = hash_layout,
    .init = hash_init,
    .lookup = hash_lookup_plain, /* the value: u32 inner map id */
    .update = hash_update,
    .delete = hash_delete,
    .lookup_copy = hash_lookup_copy,
    .lookup_and_delete = no_lookup_and_delete,
    .get_next_key = hash_get_next_key,
    .repair = hash_repair,
    .entries = hash_entries,
};
