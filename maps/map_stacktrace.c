/* STACK_TRACE: the kernel's stackmap.c (FORMAT.md "STACK_TRACE").
 *
 * n_buckets (max_entries rounded up to a power of two) u32 bucket slots
 * at aux_off, each 0 or an element index + 1; max_entries elements at
 * data_off: u32 hash, u32 nr, u32 free_next, u32 pad, then value_size
 * bytes of return addresses. A stack's id is jhash2(ips, nr * 2, 0) &
 * (n_buckets - 1), as in the kernel, so the same stacks get the kernel's
 * ids, collisions included.
 *
 * Writers (bpf_get_stackid inserting, delete, copy) take lock 0; a stack
 * already stored is found without it (the kernel's READ_ONCE of the
 * bucket). An element is written before its bucket points at it and
 * goes back to the free list after its bucket stopped pointing at it, so
 * a writer killed anywhere leaks at most elements: the repair pass puts
 * every element no bucket points at back on the free list.
 */
#include "internal.h"

#define STACK_FLAGS (BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_STACK_BUILD_ID)
#define PERF_MAX_STACK 127 /* sysctl kernel.perf_event_max_stack's default */
#define LIVE_MARK 0xfffffffeu

struct selem {
    uint32_t hash;
    uint32_t nr;
    uint32_t free_next;
    uint32_t pad;
    uint64_t ips[];
};

static inline struct selem *E(struct bpfg_map *m, uint32_t i)
{
    return (struct selem *)(m->data + (uint64_t)i * m->elem_size);
}

static inline _Atomic uint32_t *bucket(struct bpfg_map *m, uint32_t id)
{
    return (_Atomic uint32_t *)m->aux + id;
}

static int stack_check(const struct bpfg_map_spec *s)
{
    if ((s->map_flags & ~STACK_FLAGS) || s->max_entries == 0 || s->key_size != 4 || s->value_size < 8 ||
        s->value_size % 8 || s->value_size / 8 > PERF_MAX_STACK)
        return -EINVAL;
    if (s->map_flags & BPF_F_STACK_BUILD_ID) {
        map_set_error("stack_trace: BPF_F_STACK_BUILD_ID is not supported (addresses only)");
        return -EOPNOTSUPP;
    }
    if (s->max_entries > (1u << 31))
        return -E2BIG; /* roundup_pow_of_two overflows */
    if ((uint64_t)s->max_entries * (sizeof(struct selem) + s->value_size) > (1ull << 36))
        return -ENOMEM;
    return 0;
}

static void stack_layout(const struct bpfg_map_spec *s, struct layout *lo)
{
    uint64_t n = 1;
    while (n < s->max_entries)
        n <<= 1;
    lo->n_buckets = (uint32_t)n;
    lo->n_locks = 1;
    lo->locks_off = HDR_SIZE;
    lo->aux_off = ROUNDUP(lo->locks_off + 2ull * LOCK_STRIDE, 64);
    lo->aux_size = n * 4;
    lo->n_elems = s->max_entries;
    lo->elem_size = (uint32_t)(sizeof(struct selem) + s->value_size);
    lo->data_off = ROUNDUP(lo->aux_off + lo->aux_size, 64);
    lo->data_size = (uint64_t)lo->n_elems * lo->elem_size;
    lo->region_size = ROUNDUP(lo->data_off + lo->data_size, REGION_PAGE);
}

static void stack_init(struct bpfg_map *m)
{
    atomic_store(&m->st->t_free, NIL);
    atomic_store(&m->st->t_bump, 0);
}

/* The element a bucket points at, NIL when empty or out of range. */
static uint32_t bucket_elem(struct bpfg_map *m, uint32_t id, memory_order mo)
{
    uint32_t v = atomic_load_explicit(bucket(m, id), mo);
    return v && v - 1 < m->n_elems ? v - 1 : NIL;
}

static uint32_t elem_alloc(struct bpfg_map *m)
{
    return map_pool_alloc(m, offsetof(struct selem, free_next));
}

static void elem_free(struct bpfg_map *m, uint32_t i)
{
    map_pool_free(m, i, offsetof(struct selem, free_next));
}

static bool same_stack(struct bpfg_map *m, uint32_t e, uint32_t hash, const uint64_t *ips, uint32_t nr, bool fast)
{
    const struct selem *x = E(m, e);
    if (x->hash != hash)
        return false;
    if (fast)
        return true;
    if (x->nr != nr)
        return false;
    for (uint32_t i = 0; i < nr; i++) /* words: the payload's memcmp is bytewise */
        if (x->ips[i] != ips[i])
            return false;
    return true;
}

/* Under lock 0: the kernel's insert, from the bucket's current state. */
static int insert_locked(struct bpfg_map *m, uint32_t id, uint32_t hash, const uint64_t *ips, uint32_t nr,
                         uint64_t flags)
{
    uint32_t old = bucket_elem(m, id, memory_order_relaxed);
    if (old != NIL && same_stack(m, old, hash, ips, nr, flags & BPF_F_FAST_STACK_CMP))
        return (int)id;
    if (old != NIL && !(flags & BPF_F_REUSE_STACKID))
        return -EEXIST;
    uint32_t e = elem_alloc(m);
    if (e == NIL)
        return -ENOMEM;
    struct selem *x = E(m, e);
    x->hash = hash;
    x->nr = nr;
    memcpy(x->ips, ips, (size_t)nr * 8);
    atomic_store_explicit(bucket(m, id), e + 1, memory_order_release);
    if (old != NIL)
        elem_free(m, old);
    return (int)id;
}

uint32_t bpfg_map_stack_depth(const struct bpfg_map *m)
{
    return m->type == BPF_MAP_TYPE_STACK_TRACE ? m->value_size / 8 : 0;
}

static int stackid_once(struct bpfg_map *m, uint32_t id, uint32_t hash, const uint64_t *ips, uint32_t nr,
                        uint64_t flags)
{
    uint32_t e = bucket_elem(m, id, memory_order_acquire);
    if (e != NIL && same_stack(m, e, hash, ips, nr, flags & BPF_F_FAST_STACK_CMP))
        return (int)id;
    if (e != NIL && !(flags & BPF_F_REUSE_STACKID))
        return -EEXIST;
    int err = map_lock_checked(m, 0);
    if (err)
        return err;
    int r = insert_locked(m, id, hash, ips, nr, flags);
    map_unlock(m, 0);
    return r;
}

/* Ids of stacks stored lately, by a digest of a few of their words, so a
 * stack seen again gets its id without jhash2 over every frame (most
 * probes see few distinct stacks). An entry is one word, digest tag << 32
 * | id, and a hit counts only when the id's element holds these very
 * frames: their jhash2 is then the element's, so the id is the one the
 * kernel's way gives. A stale or racing entry is a miss, never a wrong id. */
#define MEMO_BITS 9
static uint64_t stack_memo[1u << MEMO_BITS];

static uint64_t stack_digest(const struct bpfg_map *m, const uint64_t *ips, uint32_t nr)
{
    const uint64_t k = 0x9e3779b97f4a7c15ull;
    uint64_t d = ((uint64_t)(uintptr_t)m ^ nr) * k;
    d = (d ^ ips[0]) * k;
    d = (d ^ ips[nr / 2]) * k;
    d = (d ^ ips[nr - 1]) * k;
    return d ^ (d >> 31);
}

static uint64_t *memo_slot(uint64_t digest)
{
    return &stack_memo[digest & ((1u << MEMO_BITS) - 1)];
}

/* The id memoized for ips, or -1. */
static int memo_find(struct bpfg_map *m, uint64_t digest, const uint64_t *ips, uint32_t nr)
{
    uint64_t v = __atomic_load_n(memo_slot(digest), __ATOMIC_RELAXED);
    uint32_t id = (uint32_t)v;
    if (!v || v >> 32 != digest >> 32 || id >= m->n_buckets)
        return -1;
    uint32_t e = bucket_elem(m, id, memory_order_acquire);
    if (e == NIL || (E(m, e)->hash & (m->n_buckets - 1)) != id || !same_stack(m, e, E(m, e)->hash, ips, nr, false))
        return -1;
    return (int)id;
}

int bpfg_map_stackid(struct bpfg_map *m, const uint64_t *ips, uint32_t nr, uint64_t flags)
{
    if (m->type != BPF_MAP_TYPE_STACK_TRACE || nr > m->value_size / 8)
        return -EINVAL;
    uint64_t digest = nr ? stack_digest(m, ips, nr) : 0;
    int r = nr ? memo_find(m, digest, ips, nr) : -1;
    if (r >= 0)
        return r;
    uint32_t hash = map_jhash2((const uint8_t *)ips, nr * 2, 0);
    uint32_t id = hash & (m->n_buckets - 1);
    r = stackid_once(m, id, hash, ips, nr, flags);
    if (r == -ENOMEM && map_probe_dead_owners(m)) /* elements a dead writer leaked */
        r = stackid_once(m, id, hash, ips, nr, flags);
    if (r >= 0 && nr)
        __atomic_store_n(memo_slot(digest), (digest >> 32) << 32 | (uint32_t)r, __ATOMIC_RELAXED);
    return r;
}

/* ---- the syscall side ---- */

static void *stack_lookup(struct bpfg_map *m, const void *key)
{
    (void)m;
    (void)key;
    return NULL; /* programs use bpf_get_stackid; the verifier refuses a lookup */
}

static int stack_update(struct bpfg_map *m, const void *key, const void *value, uint64_t flags, uint32_t cpu)
{
    (void)m, (void)key, (void)value, (void)flags, (void)cpu;
    return -EINVAL; /* the kernel's stack_map_update_elem */
}

static int stack_copy(struct bpfg_map *m, const void *key, void *value)
{
    uint32_t id;
    memcpy(&id, key, 4);
    if (id >= m->n_buckets)
        return -ENOENT;
    int err = map_lock_checked(m, 0);
    if (err)
        return err;
    uint32_t e = bucket_elem(m, id, memory_order_relaxed);
    if (e != NIL) {
        uint32_t nr = E(m, e)->nr <= m->value_size / 8 ? E(m, e)->nr : m->value_size / 8;
        memcpy(value, E(m, e)->ips, (size_t)nr * 8);
        memset((uint8_t *)value + (size_t)nr * 8, 0, m->value_size - (size_t)nr * 8);
    }
    map_unlock(m, 0);
    return e == NIL ? -ENOENT : 0;
}

static int stack_delete(struct bpfg_map *m, const void *key)
{
    uint32_t id;
    memcpy(&id, key, 4);
    if (id >= m->n_buckets)
        return -E2BIG;
    int err = map_lock_checked(m, 0);
    if (err)
        return err;
    uint32_t e = bucket_elem(m, id, memory_order_relaxed);
    if (e != NIL) {
        atomic_store_explicit(bucket(m, id), 0, memory_order_release);
        elem_free(m, e);
    }
    map_unlock(m, 0);
    return e == NIL ? -ENOENT : 0;
}

static int stack_get_next_key(struct bpfg_map *m, const void *key, void *next)
{
    uint32_t id = 0;
    if (key) {
        memcpy(&id, key, 4);
        id = id >= m->n_buckets || bucket_elem(m, id, memory_order_acquire) == NIL ? 0 : id + 1;
    }
    while (id < m->n_buckets && bucket_elem(m, id, memory_order_acquire) == NIL)
        id++;
    if (id >= m->n_buckets)
        return -ENOENT;
    memcpy(next, &id, 4);
    return 0;
}

/* All locks held: every element below t_bump that no bucket points at
 * goes back on the free list; a bucket pointing at an element twice
 * pointed at, or out of range, is emptied. */
static int stack_repair(struct bpfg_map *m)
{
    uint32_t bump = atomic_load(&m->st->t_bump);
    if (bump > m->n_elems)
        bump = m->n_elems;
    atomic_store(&m->st->t_bump, bump);
    for (uint32_t i = 0; i < bump; i++)
        E(m, i)->free_next = NIL;
    for (uint32_t id = 0; id < m->n_buckets; id++) {
        uint32_t e = bucket_elem(m, id, memory_order_relaxed);
        bool bad = e != NIL && (e >= bump || E(m, e)->free_next == LIVE_MARK);
        if (bad || (atomic_load(bucket(m, id)) && e == NIL))
            atomic_store(bucket(m, id), 0);
        else if (e != NIL)
            E(m, e)->free_next = LIVE_MARK;
    }
    atomic_store(&m->st->t_free, NIL);
    for (uint32_t i = bump; i-- > 0;)
        if (E(m, i)->free_next != LIVE_MARK)
            elem_free(m, i);
    return 0;
}

const struct map_ops stack_trace_ops = {
    .check = stack_check,
    .layout = stack_layout,
    .init = stack_init,
    .lookup = stack_lookup,
    .update = stack_update,
    .delete = stack_delete,
    .lookup_copy = stack_copy,
    .get_next_key = stack_get_next_key,
    .repair = stack_repair,
};
