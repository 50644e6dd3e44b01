/* RINGBUF (the kernel's layout and record format) and PERF_EVENT_ARRAY
 * (one such ring per CPU).
 *
 * Producers serialise only to reserve space: under a lock word holding the
 * owner's tid (ring_lock) they write the record header (length | BUSY,
 * producer tid) and advance producer_pos with a release store, exactly like
 * the kernel under its spinlock. Submit and discard clear BUSY with one
 * store, outside any lock. Output (ring_output) writes the whole record,
 * committed, before producer_pos, all under the lock. A producer killed while holding the lock (which
 * the next producer then takes over) leaves at most header bytes beyond
 * producer_pos, which no consumer reads. One killed between reserve and
 * submit leaves a BUSY record; the consumer sees that its tid is gone and
 * turns the record into a discarded one.
 *
 * Wakeups: a sleeping consumer registers in rb_waiters and waits on the
 * rb_futex word (a shared futex); a producer looks at rb_waiters after
 * committing and only then makes the futex syscall.
 */
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define RB_MAX_RECORD (UINT32_MAX / 4)
#define BUSY_SPINS 4 /* re-reads (~250 ns apart) of a BUSY header before checking its producer */
#define CACHE_LINE 64u
#define CONS_PREFETCH 1024u /* bytes a consumer asks for ahead of the record it reads */
#define RB_FLAGS (BPF_F_NUMA_NODE)
#define PERF_FLAGS (BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)

struct rb_hdr {
    _Atomic uint32_t len;
    uint32_t pg_off; /* kernel: page offset; here: the producer's tid */
};

static bool pow2(uint64_t x)
{
    return x && !(x & (x - 1));
}

static int ringbuf_check(const struct bpfg_map_spec *s)
{
    if (s->key_size || s->value_size || (s->map_flags & ~RB_FLAGS) || !pow2(s->max_entries) ||
        s->max_entries % REGION_PAGE)
        return -EINVAL;
    if (s->max_entries > (1u << 30))
        return -E2BIG;
    return 0;
}

static void ringbuf_layout(const struct bpfg_map_spec *s, struct layout *lo)
{
    lo->n_locks = 1;
    lo->locks_off = HDR_SIZE;
    lo->aux_off = ROUNDUP(lo->locks_off + 2ull * LOCK_STRIDE, REGION_PAGE);
    lo->aux_size = 2ull * REGION_PAGE; /* consumer page, producer page */
    lo->data_off = lo->aux_off + lo->aux_size;
    lo->data_size = s->max_entries;
    lo->region_size = lo->data_off + lo->data_size;
}

static int perf_check(const struct bpfg_map_spec *s)
{
    if (s->key_size != 4 || s->value_size != 4 || s->max_entries == 0 || (s->map_flags & ~PERF_FLAGS) ||
        !pow2(s->map_extra) || s->map_extra % REGION_PAGE)
        return -EINVAL;
    if (s->map_extra > (1u << 30) || s->max_entries > MAX_CPUS || s->map_extra * s->max_entries > (1ull << 36))
        return -E2BIG;
    return 0;
}

static void perf_layout(const struct bpfg_map_spec *s, struct layout *lo)
{
    lo->n_locks = s->max_entries; /* one per ring */
    lo->locks_off = HDR_SIZE;
    lo->aux_off = ROUNDUP(lo->locks_off + (uint64_t)(lo->n_locks + 1) * LOCK_STRIDE, REGION_PAGE);
    lo->aux_size = (uint64_t)s->max_entries * REGION_PAGE; /* struct perf_ctl each */
    lo->n_elems = s->max_entries;
    lo->elem_size = (uint32_t)s->map_extra;
    lo->data_off = lo->aux_off + lo->aux_size;
    lo->data_size = (uint64_t)s->max_entries * s->map_extra;
    lo->region_size = lo->data_off + lo->data_size;
}

static void wake(struct bpfg_map *m)
{
    if (!atomic_load(&m->st->rb_waiters))
        return;
    atomic_fetch_add(&m->st->rb_futex, 1);
    syscall(SYS_futex, &m->st->rb_futex, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

/* The reserve lock is a word holding the owner's thread id. The critical
 * section is a handful of stores that never block, so a waiter spins; if
 * the owner keeps it for long, the waiter checks whether that thread still
 * exists and takes the lock over from a dead one (what a dead owner can
 * leave is harmless, see ring_reserve). A live but preempted owner is
 * waited for, yielding the CPU. Same assumption as the dead-producer skip:
 * one pid namespace, dead threads reaped. */
#define LOCK_SPINS 256
#define PREFETCH_AHEAD 256 /* bytes past the new producer_pos */

static bool tid_dead(uint32_t tid)
{
    return tid && kill((pid_t)tid, 0) < 0 && errno == ESRCH;
}

static __attribute__((noinline)) void ring_lock_wait(_Atomic uint32_t *lock, uint32_t tid)
{
    uint32_t cur;
    for (;;) {
        for (int spin = 0; spin < LOCK_SPINS; spin++) {
            __builtin_ia32_pause();
            cur = atomic_load_explicit(lock, memory_order_relaxed);
            if (!cur &&
                atomic_compare_exchange_weak_explicit(lock, &cur, tid, memory_order_acquire, memory_order_relaxed))
                return;
        }
        cur = atomic_load_explicit(lock, memory_order_relaxed);
        if (cur && (cur == tid || tid_dead(cur))) {
            /* Owner gone (or a previous life of our tid): take over. */
            if (atomic_compare_exchange_strong_explicit(lock, &cur, tid, memory_order_acquire, memory_order_relaxed))
                return;
            continue;
        }
        if (cur)
            syscall(SYS_sched_yield);
    }
}

static inline void ring_lock(_Atomic uint32_t *lock, uint32_t tid)
{
    uint32_t cur = 0;
    if (!atomic_compare_exchange_strong_explicit(lock, &cur, tid, memory_order_acquire, memory_order_relaxed))
        ring_lock_wait(lock, tid);
}

static inline void ring_unlock(_Atomic uint32_t *lock)
{
    atomic_store_explicit(lock, 0, memory_order_release);
}

/* Whether len bytes past prod are still the consumer's. consumer_pos only
 * grows, so a cached value is a safe lower bound; re-reading it only when
 * short of space keeps its cache line quiet. A prod read without the lock
 * may be older than the cache: then room is assumed (the locked check
 * decides). */
static inline bool no_room(struct ring_view *r, unsigned long prod, uint64_t len)
{
    unsigned long cons = atomic_load_explicit(&r->cons_cache, memory_order_relaxed);
    if (cons > prod || prod + len - cons <= r->mask)
        return false;
    cons = atomic_load_explicit(r->cons, memory_order_acquire);
    atomic_store_explicit(&r->cons_cache, cons, memory_order_relaxed);
    return cons <= prod && prod + len - cons > r->mask;
}

static inline __attribute__((always_inline)) void *ring_reserve(struct ring_view *r, uint64_t size)
{
    if (size > RB_MAX_RECORD)
        return NULL;
    uint64_t len = ROUND8(size + sizeof(struct rb_hdr));
    if (len > r->mask + 1)
        return NULL;
    uint32_t tid = map_tid();
    /* A full ring is refused before the lock: producers retrying on it
     * leave the lock's line to the one that gets room. */
    if (no_room(r, atomic_load_explicit(r->prod, memory_order_acquire), len))
        return NULL;
    ring_lock(r->lock, tid);
    unsigned long prod = atomic_load_explicit(r->prod, memory_order_relaxed);
    if (no_room(r, prod, len)) {
        ring_unlock(r->lock);
        return NULL;
    }
    struct rb_hdr *h = (struct rb_hdr *)(r->data + (prod & r->mask));
    atomic_store_explicit(&h->len, (uint32_t)size | BPF_RINGBUF_BUSY_BIT, memory_order_relaxed);
    h->pg_off = tid;
    atomic_store_explicit(r->prod, prod + len, memory_order_release);
    ring_unlock(r->lock);
    /* Own the free space ahead before the next reserve's barrier waits for
     * it: no consumer reads beyond producer_pos. */
    __builtin_prefetch(r->data + ((prod + len + PREFETCH_AHEAD) & r->mask), 1);
    return h + 1;
}

/* bpf_ringbuf_output and bpf_perf_event_output: the header (committed),
 * the data and then producer_pos, all under the reserve lock, so a
 * consumer never finds the record BUSY nor reads its lines while they are
 * written (reserve publishes producer_pos over a BUSY header first, which
 * a consumer polling behind the producer reads, taking the line the data
 * goes to next). A holder that dies leaves bytes beyond producer_pos only.
 * Wakeups as ring_commit's; the exchange orders the record before the
 * look at rb_waiters. 0, -ENOSPC (no room) or -E2BIG (fits no ring). */
static inline __attribute__((always_inline)) int ring_output(struct bpfg_map *m, struct ring_view *r, const void *data,
                                                             uint64_t size, uint64_t flags)
{
    uint64_t len = ROUND8(size + sizeof(struct rb_hdr));
    if (size > RB_MAX_RECORD || len > r->mask + 1)
        return -E2BIG;
    uint32_t tid = map_tid();
    if (no_room(r, atomic_load_explicit(r->prod, memory_order_acquire), len))
        return -ENOSPC;
    ring_lock(r->lock, tid);
    unsigned long prod = atomic_load_explicit(r->prod, memory_order_relaxed);
    if (no_room(r, prod, len)) {
        ring_unlock(r->lock);
        return -ENOSPC;
    }
    struct rb_hdr *h = (struct rb_hdr *)(r->data + (prod & r->mask));
    atomic_store_explicit(&h->len, (uint32_t)size, memory_order_relaxed);
    h->pg_off = tid;
    memcpy(h + 1, data, size);
    if (flags & BPF_RB_NO_WAKEUP)
        atomic_store_explicit(r->prod, prod + len, memory_order_release);
    else
        atomic_exchange(r->prod, prod + len);
    ring_unlock(r->lock);
    __builtin_prefetch(r->data + ((prod + len + PREFETCH_AHEAD) & r->mask), 1);
    if ((flags & BPF_RB_NO_WAKEUP) || !atomic_load(&m->st->rb_waiters))
        return 0;
    if ((flags & BPF_RB_FORCE_WAKEUP) ||
        (atomic_load_explicit(r->cons, memory_order_acquire) & r->mask) == (prod & r->mask))
        wake(m);
    return 0;
}

static inline void ring_commit(struct bpfg_map *m, struct ring_view *r, void *sample, bool discard, uint64_t flags)
{
    uint8_t *p = (uint8_t *)sample - sizeof(struct rb_hdr);
    if (p < r->data || p > r->data + r->mask) /* not a record of this ring */
        return;
    struct rb_hdr *h = (struct rb_hdr *)p;
    uint32_t len = atomic_load_explicit(&h->len, memory_order_relaxed);
    if (!(len & BPF_RINGBUF_BUSY_BIT))
        return;
    uint32_t nl = len & ~BPF_RINGBUF_BUSY_BIT;
    if (discard)
        nl |= BPF_RINGBUF_DISCARD_BIT;
    if (flags & BPF_RB_NO_WAKEUP) {
        /* No wakeup to order against: a release store is enough. */
        atomic_store_explicit(&h->len, nl, memory_order_release);
        return;
    }
    /* Full barrier: the commit must be visible before we look for sleepers
     * (a sleeper announces itself, then re-checks the ring). */
    atomic_exchange(&h->len, nl);
    if (!atomic_load(&m->st->rb_waiters))
        return; /* nobody asleep: leave the consumer's line alone */
    if (flags & BPF_RB_FORCE_WAKEUP) {
        wake(m);
    } else {
        unsigned long rec = (unsigned long)(p - r->data);
        if ((atomic_load_explicit(r->cons, memory_order_acquire) & r->mask) == rec)
            wake(m);
    }
}

/* A BUSY record whose producer thread no longer exists will never be
 * committed. Assumes producers and consumers share a pid namespace. */
static bool producer_dead(const struct rb_hdr *h)
{
    return tid_dead(h->pg_off);
}

/* Asks for the lines of [*pf, end) that lie below cons + CONS_PREFETCH,
 * whole lines only: a line holding the producer position may still get
 * the next header, and reading it early would take it from its writer. */
static void prefetch_records(const struct ring_view *r, unsigned long *pf, unsigned long cons, unsigned long end)
{
    unsigned long stop = end & ~(unsigned long)(CACHE_LINE - 1), here = cons & ~(unsigned long)(CACHE_LINE - 1);
    if (stop > cons + CONS_PREFETCH)
        stop = cons + CONS_PREFETCH;
    if (*pf < here) /* past a large record: nothing behind cons is read */
        *pf = here;
    for (; *pf < stop; *pf += CACHE_LINE)
        __builtin_prefetch(r->data + (*pf & r->mask), 0, 3);
}

static int consume_ring(struct ring_view *r, bool reap_dead, bpfg_ringbuf_sample_fn fn, void *ctx)
{
    unsigned long cons = atomic_load_explicit(r->cons, memory_order_acquire), pf = 0;
    int n = 0;
    bool progress = true;
    while (progress) {
        progress = false;
        unsigned long prod = atomic_load_explicit(r->prod, memory_order_acquire);
        while (cons < prod) {
            /* Each header's position depends on the previous one's length:
             * without this every record waits for its own miss. */
            prefetch_records(r, &pf, cons, prod);
            struct rb_hdr *h = (struct rb_hdr *)(r->data + (cons & r->mask));
            uint32_t len = atomic_load_explicit(&h->len, memory_order_acquire);
            if (len & BPF_RINGBUF_BUSY_BIT) {
                /* A live producer commits within nanoseconds of reserving:
                 * wait that long before paying for a liveness syscall. */
                for (int spin = 0; spin < BUSY_SPINS && (len & BPF_RINGBUF_BUSY_BIT); spin++) {
                    for (int k = 0; k < 10; k++) /* leave the line to its writer */
                        __builtin_ia32_pause();
                    len = atomic_load_explicit(&h->len, memory_order_acquire);
                }
                if (!(len & BPF_RINGBUF_BUSY_BIT))
                    continue;
                if (!reap_dead || !producer_dead(h)) {
                    atomic_store_explicit(r->cons, cons, memory_order_release);
                    return n;
                }
                uint32_t nl = (len & ~BPF_RINGBUF_BUSY_BIT) | BPF_RINGBUF_DISCARD_BIT;
                atomic_compare_exchange_strong(&h->len, &len, nl);
                continue;
            }
            uint32_t size = len & ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
            uint64_t rlen = ROUND8((uint64_t)size + sizeof(struct rb_hdr));
            if (rlen > r->mask + 1 || cons + rlen > prod) {
                /* Corrupt length: resynchronise at the producer position. */
                atomic_store_explicit(r->cons, prod, memory_order_release);
                return n ? n : -EBADMSG;
            }
            cons += rlen;
            progress = true;
            if (!(len & BPF_RINGBUF_DISCARD_BIT)) {
                int err = fn(ctx, h + 1, size);
                n++;
                if (err < 0) {
                    atomic_store_explicit(r->cons, cons, memory_order_release);
                    return err;
                }
            }
        }
        /* Once per batch: fewer transfers of the line producers read. */
        atomic_store_explicit(r->cons, cons, memory_order_release);
    }
    return n;
}

int ring_consume(struct bpfg_map *m, struct ring_view *r, bpfg_ringbuf_sample_fn fn, void *ctx)
{
    (void)m;
    return consume_ring(r, true, fn, ctx);
}

/* ---- RINGBUF API ---- */

static struct ring_view *rb_of(struct bpfg_map *m)
{
    return m->type == BPF_MAP_TYPE_RINGBUF ? &m->rings[0] : NULL;
}

/* A record the ring had no room for (not one too large for any ring). */
static inline __attribute__((always_inline)) void *rb_reserve_counted(struct bpfg_map *m, struct ring_view *r,
                                                                      uint64_t size)
{
    void *p = ring_reserve(r, size);
    if (!p && size <= RB_MAX_RECORD && ROUND8(size + sizeof(struct rb_hdr)) <= r->mask + 1)
        atomic_fetch_add_explicit(&m->st->rb_lost, 1, memory_order_relaxed);
    return p;
}

void *bpfg_ringbuf_reserve(struct bpfg_map *m, uint64_t size, uint64_t flags)
{
    struct ring_view *r = rb_of(m);
    if (!r || flags)
        return NULL;
    return rb_reserve_counted(m, r, size);
}

void bpfg_ringbuf_submit(struct bpfg_map *m, void *data, uint64_t flags)
{
    struct ring_view *r = rb_of(m);
    if (r && data)
        ring_commit(m, r, data, false, flags);
}

void bpfg_ringbuf_discard(struct bpfg_map *m, void *data, uint64_t flags)
{
    struct ring_view *r = rb_of(m);
    if (r && data)
        ring_commit(m, r, data, true, flags);
}

int bpfg_ringbuf_output(struct bpfg_map *m, const void *data, uint64_t size, uint64_t flags)
{
    struct ring_view *r = rb_of(m);
    if (!r)
        return -EINVAL;
    if (flags & ~(uint64_t)(BPF_RB_NO_WAKEUP | BPF_RB_FORCE_WAKEUP))
        return -EINVAL;
    int err = ring_output(m, r, data, size, flags);
    if (err == -ENOSPC)
        atomic_fetch_add_explicit(&m->st->rb_lost, 1, memory_order_relaxed);
    return err ? -EAGAIN : 0;
}

uint64_t bpfg_ringbuf_query(struct bpfg_map *m, uint64_t flags)
{
    struct ring_view *r = rb_of(m);
    if (!r)
        return 0;
    unsigned long cons = atomic_load(r->cons), prod = atomic_load(r->prod);
    switch (flags) {
    case BPF_RB_AVAIL_DATA: return prod - cons;
    case BPF_RB_RING_SIZE: return r->mask + 1;
    case BPF_RB_CONS_POS: return cons;
    case BPF_RB_PROD_POS: return prod;
    default: return 0;
    }
}

int bpfg_ringbuf_consume(struct bpfg_map *m, bpfg_ringbuf_sample_fn fn, void *ctx)
{
    struct ring_view *r = rb_of(m);
    return r ? ring_consume(m, r, fn, ctx) : -EINVAL;
}

int bpfg_ringbuf_get_view(struct bpfg_map *m, struct bpfg_ringbuf_view *v)
{
    struct ring_view *r = rb_of(m);
    if (!r)
        return -EINVAL;
    v->consumer_pos = (unsigned long *)r->cons;
    v->producer_pos = (const unsigned long *)r->prod;
    v->data = r->data;
    v->size = r->mask + 1;
    return 0;
}

/* A RINGBUF handle's main mapping ends where its consumer page starts
 * (attach() in maps.c); the data follows the producer page. */
int bpfg_ringbuf_get_file_layout(const struct bpfg_map *m, struct bpfg_ringbuf_file *f)
{
    if (m->type != BPF_MAP_TYPE_RINGBUF)
        return -EINVAL;
    f->consumer_off = m->base_len;
    f->data_off = m->base_len + 2ull * REGION_PAGE;
    f->size = m->max_entries;
    return 0;
}

int bpfg_ringbuf_consume_view(const struct bpfg_ringbuf_view *v, bpfg_ringbuf_sample_fn fn, void *ctx)
{
    if (!pow2(v->size))
        return -EINVAL;
    struct ring_view r = {
        .cons = (_Atomic unsigned long *)v->consumer_pos,
        .prod = (_Atomic unsigned long *)v->producer_pos,
        .data = v->data,
        .mask = v->size - 1,
    };
    return consume_ring(&r, false, fn, ctx);
}

/* Data ready in some ring: a committed record, or a dead producer's one
 * that consume will skip. */
static bool any_ready(struct bpfg_map *m)
{
    for (uint32_t i = 0; i < m->n_rings; i++) {
        struct ring_view *r = &m->rings[i];
        unsigned long cons = atomic_load(r->cons), prod = atomic_load(r->prod);
        if (cons == prod)
            continue;
        struct rb_hdr *h = (struct rb_hdr *)(r->data + (cons & r->mask));
        uint32_t len = atomic_load_explicit(&h->len, memory_order_acquire);
        if (!(len & BPF_RINGBUF_BUSY_BIT) || producer_dead(h))
            return true;
    }
    return false;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int bpfg_ringbuf_wait(struct bpfg_map *m, int timeout_ms)
{
    if (!m->rings)
        return -EINVAL;
    int64_t deadline = timeout_ms >= 0 ? now_ns() + (int64_t)timeout_ms * 1000000 : 0;
    for (;;) {
        if (any_ready(m))
            return 0;
        /* Dekker with the producer: announce, then re-check, then sleep. */
        atomic_fetch_add(&m->st->rb_waiters, 1);
        uint32_t seq = atomic_load(&m->st->rb_futex);
        if (any_ready(m)) {
            atomic_fetch_sub(&m->st->rb_waiters, 1);
            return 0;
        }
        struct timespec ts, *tsp = NULL;
        if (timeout_ms >= 0) {
            int64_t left = deadline - now_ns();
            if (left <= 0) {
                atomic_fetch_sub(&m->st->rb_waiters, 1);
                return -ETIMEDOUT;
            }
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        long rc = syscall(SYS_futex, &m->st->rb_futex, FUTEX_WAIT, seq, tsp, NULL, 0);
        int e = errno;
        atomic_fetch_sub(&m->st->rb_waiters, 1);
        if (rc < 0 && e == EINTR)
            return -EINTR;
        /* Woken, timed out or the word already moved: loop and re-check. */
    }
}

uint64_t bpfg_map_lost(const struct bpfg_map *m)
{
    if (m->type == BPF_MAP_TYPE_RINGBUF)
        return atomic_load(&m->st->rb_lost);
    uint64_t lost = 0;
    for (uint32_t i = 0; m->type == BPF_MAP_TYPE_PERF_EVENT_ARRAY && i < m->n_rings; i++)
        lost += atomic_load(&m->rings[i].perf->lost);
    return lost;
}

/* ---- PERF_EVENT_ARRAY ---- */

int bpfg_perf_event_output(struct bpfg_map *m, uint64_t flags, const void *data, uint64_t size)
{
    if (m->type != BPF_MAP_TYPE_PERF_EVENT_ARRAY)
        return -EINVAL;
    if (flags & ~BPF_F_INDEX_MASK)
        return -EINVAL;
    uint64_t idx = flags & BPF_F_INDEX_MASK;
    if (idx == BPF_F_CURRENT_CPU)
        idx = map_current_cpu(m) % m->n_rings;
    if (idx >= m->n_rings)
        return -E2BIG;
    struct ring_view *r = &m->rings[idx];
    if (ring_output(m, r, data, size, 0)) {
        atomic_fetch_add(&r->perf->lost, 1);
        return -ENOSPC;
    }
    return 0;
}

struct perf_cb {
    bpfg_perf_sample_fn fn;
    void *ctx;
    int cpu;
};

static int perf_sample(void *ctx, void *data, size_t size)
{
    struct perf_cb *c = ctx;
    if (c->fn)
        c->fn(c->ctx, c->cpu, data, (uint32_t)size);
    return 0;
}

int bpfg_perf_consume(struct bpfg_map *m, bpfg_perf_sample_fn sample, bpfg_perf_lost_fn lost, void *ctx)
{
    if (m->type != BPF_MAP_TYPE_PERF_EVENT_ARRAY)
        return -EINVAL;
    int total = 0;
    for (uint32_t i = 0; i < m->n_rings; i++) {
        struct ring_view *r = &m->rings[i];
        uint64_t l = atomic_load(&r->perf->lost), seen = atomic_load(&r->perf->lost_reported);
        if (l != seen) {
            atomic_store(&r->perf->lost_reported, l);
            if (lost)
                lost(ctx, (int)i, l - seen);
        }
        struct perf_cb c = {sample, ctx, (int)i};
        int n = ring_consume(m, r, perf_sample, &c);
        if (n < 0)
            return n;
        total += n;
    }
    return total;
}

static int perf_lookup_copy(struct bpfg_map *m, const void *key, void *value)
{
    (void)m;
    (void)key;
    (void)value;
    return -EOPNOTSUPP;
}

const struct map_ops ringbuf_ops = {
    .check = ringbuf_check,
    .layout = ringbuf_layout,
};

const struct map_ops perf_ops = {
    .check = perf_check,
    .layout = perf_layout,
    .lookup_copy = perf_lookup_copy,
};
