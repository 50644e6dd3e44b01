/* The maps' locks: a futex word in the region holding the owner's tid, and
 * beside it who the owner is (tgid, tid, process start time, pid
 * namespace). No libc function beyond raw syscalls and open/pread, so the
 * payload takes them on any thread of any process (glibc, musl, Go, static
 * binaries) and a glibc server shares them with it. Crash safety without
 * the kernel's robust lists (which belong to each libc): a waiter sleeps on
 * the futex with a timeout, and when the same owner holds the lock across
 * timeouts it checks that owner; a dead one is taken over and the map
 * marked for repair, as EOWNERDEAD did. FORMAT.md "Locks" has the why. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#ifndef BPFG_FREESTANDING
#include <pthread.h>
#endif
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>

#include "internal.h"

_Static_assert(sizeof(struct map_lock) <= FREE_HEAD_OFF, "lock overlaps the free-list head");
_Static_assert(sizeof(struct map_lock) <= SPARE_OFF, "lock overlaps the stripe's spare element");

#define LOCK_WAITERS 0x80000000u
#define LOCK_TID_MASK 0x3fffffffu /* tids are below 2^22 (PID_MAX_LIMIT) */
#define LOCK_SPINS 100
#define LOCK_NAP_NS 2000000 /* futex wait before looking at the owner */

/* Raw syscalls, -errno on failure: inside the payload errno is one global
 * that another thread may change between a call and its check. */
static inline long sys4(long nr, long a, long b, long c, long d)
{
    long r;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(r) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return r;
}

static inline struct map_lock *lock_at(struct bpfg_map *m, uint32_t i)
{
    return (struct map_lock *)(m->locks + (uint64_t)i * LOCK_STRIDE);
}

/* ---- who we are ---- */

/* What identifies this process to a waiter: its start time (a reused pid
 * has another) and its pid namespace (ids from another one mean nothing
 * here). Computed once per process, again in a forked child (its tgid
 * differs from the one they were computed for). */
struct proc_self {
    _Atomic uint32_t tgid; /* 0: not computed */
    uint64_t start, pidns;
    bool proc_ours; /* /proc/TGID is us: /proc is our pid namespace's */
};
static struct proc_self proc_self;

/* Field 22 (starttime) and field 3 (state) of /proc/PID/stat. */
static int read_stat(uint32_t pid, uint64_t *start, char *state)
{
    char path[48], buf[512];
    if (pid)
        snprintf(path, sizeof(path), "/proc/%u/stat", pid);
    else
        snprintf(path, sizeof(path), "/proc/self/stat");
    long fd = sys4(SYS_openat, AT_FDCWD, (long)path, O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return (int)fd;
    long n = sys4(SYS_pread64, fd, (long)buf, sizeof(buf) - 1, 0);
    sys4(SYS_close, fd, 0, 0, 0);
    if (n < 0)
        return (int)n;
    buf[n] = 0;
    const char *p = NULL; /* the last ')': comm may hold spaces and parentheses */
    for (long k = n - 1; k >= 0 && !p; k--)
        if (buf[k] == ')')
            p = buf + k;
    if (!p || p[1] != ' ' || !p[2])
        return -EBADMSG;
    *state = p[2];
    for (int field = 2; field < 22 && p; field++)
        p = strchr(p + 1, ' ');
    if (!p || p[1] < '0' || p[1] > '9')
        return -EBADMSG;
    uint64_t v = 0;
    for (p++; *p >= '0' && *p <= '9'; p++)
        v = v * 10 + (uint64_t)(*p - '0');
    *start = v;
    return 0;
}

static uint64_t own_pidns(void)
{
    struct stat st;
    long fd = sys4(SYS_openat, AT_FDCWD, (long)"/proc/self/ns/pid", O_RDONLY | O_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    long r = sys4(SYS_fstat, fd, (long)&st, 0, 0);
    sys4(SYS_close, fd, 0, 0, 0);
    return r == 0 ? (uint64_t)st.st_ino : 0;
}

static const struct proc_self *proc_self_for(uint32_t tgid)
{
    if (__builtin_expect(atomic_load_explicit(&proc_self.tgid, memory_order_acquire) == tgid, 1))
        return &proc_self;
    char state;
    uint64_t start = 0, by_pid = 0;
    read_stat(0, &start, &state); /* 0 when /proc is missing: only the tgid is compared */
    /* In a pid namespace without a /proc of its own (unshare --pid
     * --fork), /proc/PID names the host's PID: another process, whose
     * start time made a live owner look like a reused pid's. */
    proc_self.proc_ours = start && read_stat(tgid, &by_pid, &state) == 0 && by_pid == start;
    proc_self.start = start;
    proc_self.pidns = own_pidns();
    atomic_store_explicit(&proc_self.tgid, tgid, memory_order_release);
    return &proc_self;
}

#ifdef BPFG_FREESTANDING
static inline uint64_t self_ids(void)
{
    return payload_local_pid_tid();
}
#else
static __thread uint64_t cached_ids; /* tgid << 32 | tid */
static pthread_once_t ids_once = PTHREAD_ONCE_INIT;

static void ids_after_fork(void)
{
    cached_ids = 0; /* the child inherited the parent thread's value */
}

static void ids_register(void)
{
    pthread_atfork(NULL, NULL, ids_after_fork);
}

static inline uint64_t self_ids(void)
{
    if (__builtin_expect(!cached_ids, 0)) {
        pthread_once(&ids_once, ids_register);
        cached_ids = (uint64_t)(uint32_t)sys4(SYS_getpid, 0, 0, 0, 0) << 32 | (uint32_t)sys4(SYS_gettid, 0, 0, 0, 0);
    }
    return cached_ids;
}
#endif

uint32_t map_tid(void)
{
    return (uint32_t)self_ids();
}

/* ---- the owner's liveness ---- */

static bool ids_dead(uint32_t tgid, uint32_t tid)
{
    return sys4(SYS_tgkill, tgid, tid, 0, 0) == -ESRCH;
}

/* Whether the holder recorded in l, whose tid is in the lock word, is gone.
 * *stale counts checks that found the record not matching the word (the
 * owner died, or stalls, between taking the word and writing the record).
 * Errs on the side of "alive": a live owner taken over would corrupt the
 * map; a dead one missed only makes waiters wait. */
static bool owner_gone(struct map_lock *l, uint32_t tid, const struct proc_self *me, uint32_t *stale)
{
    uint64_t o = atomic_load_explicit(&l->owner, memory_order_acquire);
    uint64_t start = atomic_load_explicit(&l->start, memory_order_relaxed);
    uint64_t ns = atomic_load_explicit(&l->pidns, memory_order_relaxed);
    if ((uint32_t)o != tid)
        return ++*stale >= 2 && sys4(SYS_kill, tid, 0, 0, 0) == -ESRCH;
    if (ns && me->pidns && ns != me->pidns)
        return false; /* its ids mean nothing in our namespace */
    uint32_t tgid = (uint32_t)(o >> 32);
    if (ids_dead(tgid, tid))
        return true;
    char state;
    uint64_t now_start;
    if (!start || !me->proc_ours || read_stat(tgid, &now_start, &state) < 0)
        return false;
    /* a reused pid (another start time), or a killed process's leader that
     * its parent has not reaped yet */
    return now_start != start || (tid == tgid && (state == 'Z' || state == 'X'));
}

/* ---- lock, trylock, unlock ---- */

static inline void lock_record(struct map_lock *l, uint64_t ids)
{
    const struct proc_self *me = proc_self_for((uint32_t)(ids >> 32));
    atomic_store_explicit(&l->owner, ids, memory_order_relaxed);
    atomic_store_explicit(&l->start, me->start, memory_order_relaxed);
    atomic_store_explicit(&l->pidns, me->pidns, memory_order_relaxed);
}

/* Takes a lock whose owner is gone; true if we now hold it. */
static bool take_over(struct bpfg_map *m, struct map_lock *l, uint32_t cur, uint64_t ids)
{
    uint32_t mine = (uint32_t)ids | (cur & LOCK_WAITERS);
    if (!atomic_compare_exchange_strong_explicit(&l->word, &cur, mine, memory_order_acquire, memory_order_relaxed))
        return false;
    lock_record(l, ids);
    /* Every update protocol leaves the structure walkable; what may be
     * left over (leaked elements, a wrong count) is fixed by repair. */
    atomic_store(&m->st->needs_repair, 1);
    return true;
}

static int futex_wait(_Atomic uint32_t *w, uint32_t val, long ns)
{
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    return (int)sys4(SYS_futex, (long)w, FUTEX_WAIT, val, (long)&ts);
}

static int lock_slow(struct bpfg_map *m, struct map_lock *l, uint64_t ids)
{
    uint32_t tid = (uint32_t)ids, stale = 0, naps = 0, cur;
    for (int spin = 0; spin < LOCK_SPINS; spin++) {
        __builtin_ia32_pause();
        cur = atomic_load_explicit(&l->word, memory_order_relaxed);
        if (!cur &&
            atomic_compare_exchange_weak_explicit(&l->word, &cur, tid, memory_order_acquire, memory_order_relaxed))
            goto owned;
    }
    uint32_t last = 0;
    for (;;) {
        cur = atomic_load_explicit(&l->word, memory_order_relaxed);
        if (!cur) {
            /* others may sleep: keep the bit, our unlock wakes one */
            if (atomic_compare_exchange_weak_explicit(&l->word, &cur, tid | LOCK_WAITERS, memory_order_acquire,
                                                      memory_order_relaxed))
                goto owned;
            continue;
        }
        if (!(cur & LOCK_WAITERS) && !atomic_compare_exchange_weak_explicit(&l->word, &cur, cur | LOCK_WAITERS,
                                                                            memory_order_relaxed, memory_order_relaxed))
            continue;
        cur |= LOCK_WAITERS;
        if (futex_wait(&l->word, cur, LOCK_NAP_NS) != -ETIMEDOUT)
            continue;
        /* the same owner across two naps: look at it */
        naps = (cur & LOCK_TID_MASK) == last ? naps + 1 : 0;
        last = cur & LOCK_TID_MASK;
        if (naps && owner_gone(l, last, proc_self_for((uint32_t)(ids >> 32)), &stale) && take_over(m, l, cur, ids))
            return 0;
    }
owned:
    lock_record(l, ids);
    return 0;
}

int map_lock(struct bpfg_map *m, uint32_t i)
{
    struct map_lock *l = lock_at(m, i);
    uint64_t ids = self_ids();
    uint32_t cur = 0;
    if (__builtin_expect(atomic_compare_exchange_strong_explicit(&l->word, &cur, (uint32_t)ids, memory_order_acquire,
                                                                 memory_order_relaxed),
                         1)) {
        lock_record(l, ids);
        return 0;
    }
    return lock_slow(m, l, ids);
}

int map_trylock(struct bpfg_map *m, uint32_t i)
{
    struct map_lock *l = lock_at(m, i);
    uint64_t ids = self_ids();
    uint32_t cur = 0;
    if (!atomic_compare_exchange_strong_explicit(&l->word, &cur, (uint32_t)ids, memory_order_acquire,
                                                 memory_order_relaxed))
        return -EBUSY;
    lock_record(l, ids);
    return 0;
}

void map_unlock(struct bpfg_map *m, uint32_t i)
{
    struct map_lock *l = lock_at(m, i);
    if (atomic_exchange_explicit(&l->word, 0, memory_order_release) & LOCK_WAITERS)
        sys4(SYS_futex, (long)&l->word, FUTEX_WAKE, 1, 0);
}

/* Takes lock i if it is free or its owner is gone (then marking the map
 * for repair); -EBUSY while a live owner holds it. */
static int trylock_probe(struct bpfg_map *m, uint32_t i)
{
    if (map_trylock(m, i) == 0)
        return 0;
    struct map_lock *l = lock_at(m, i);
    uint64_t ids = self_ids();
    uint32_t cur = atomic_load_explicit(&l->word, memory_order_relaxed), stale = 1;
    if (!cur || (cur & LOCK_TID_MASK) == (uint32_t)ids)
        return -EBUSY; /* freed meanwhile, or ours */
    if (!owner_gone(l, cur & LOCK_TID_MASK, proc_self_for((uint32_t)(ids >> 32)), &stale))
        return -EBUSY;
    return take_over(m, l, cur, ids) ? 0 : -EBUSY;
}

/* Finds locks whose owner died without anyone having waited for them
 * since, then repairs. Used before reporting "full": capacity leaked by a
 * dead writer is reclaimed first. */
bool map_probe_dead_owners(struct bpfg_map *m)
{
    for (uint32_t i = 0; i < m->n_locks; i++)
        if (trylock_probe(m, i) == 0)
            map_unlock(m, i);
    if (!atomic_load(&m->st->needs_repair))
        return false;
    return map_repair(m) == 0;
}

/* ---- per-CPU slots claimed for a program's run ---- */

/* A claim word per slot (slot % CLAIM_LINES), one cache line each in the
 * header page: the holder's tgid << 32 | tid, 0 = free. */
static inline _Atomic uint64_t *slot_word(struct bpfg_map *m, uint32_t slot)
{
    return (_Atomic uint64_t *)(m->base + CLAIM_OFF + (uint64_t)(slot % CLAIM_LINES) * LOCK_STRIDE);
}

#define SLOT_SHARED 0x80000000u     /* held by this thread through another handle */
#define CLAIM_WAITING 0x80000000ull /* in a held word: its holder waits for another claim */
#define CLAIM_SPINS 64              /* rounds between yields and owner checks */
#define CLAIM_ROUNDS_HOLDING 64     /* then a thread holding claims says it waits */

/* The slot *run holds on m, or NIL. */
static uint32_t claim_held(const struct bpfg_map *m, const struct bpfg_map_run *run)
{
    for (uint32_t i = 0; i < run->n; i++)
        if (run->claim[i].map == m)
            return run->claim[i].slot;
    return NIL;
}

static uint32_t claim_slots(const struct bpfg_map *m)
{
    return m->nr_cpus < CLAIM_LINES ? m->nr_cpus : CLAIM_LINES;
}

/* One pass over the slots from the current CPU's: a free one taken (or,
 * with take_dead, one whose holder is gone), one this thread holds already
 * (| SLOT_SHARED), or NIL. */
static uint32_t claim_pass(struct bpfg_map *m, uint64_t ids, bool take_dead)
{
    uint32_t first = map_current_cpu(m), n = claim_slots(m);
    for (uint32_t k = 0; k < n; k++) {
        uint32_t s = (first + k) % m->nr_cpus;
        _Atomic uint64_t *w = slot_word(m, s);
        uint64_t cur = atomic_load_explicit(w, memory_order_relaxed);
        if ((cur & ~CLAIM_WAITING) == ids)
            return s | SLOT_SHARED;
        if (cur && !(take_dead && ids_dead((uint32_t)(cur >> 32), (uint32_t)(cur & ~CLAIM_WAITING))))
            continue;
        if (atomic_compare_exchange_strong_explicit(w, &cur, ids, memory_order_acquire, memory_order_relaxed))
            return s;
    }
    return NIL;
}

/* Marks (or unmarks) the words *run holds: their holder waits. */
static void claims_mark_waiting(const struct bpfg_map_run *run, uint64_t ids, bool waiting)
{
    for (uint32_t i = 0; i < run->n; i++)
        atomic_store_explicit(slot_word(run->claim[i].map, run->claim[i].slot), waiting ? ids | CLAIM_WAITING : ids,
                              memory_order_relaxed);
}

/* Every slot of m held by a thread that itself waits for a claim: the only
 * state a cycle of waiters can be in (a holder not waiting ends its run and
 * frees its slot). */
static bool claim_holders_all_wait(struct bpfg_map *m)
{
    for (uint32_t s = 0; s < claim_slots(m); s++)
        if (!(atomic_load_explicit(slot_word(m, s), memory_order_relaxed) & CLAIM_WAITING))
            return false;
    return true;
}

/* Waits for a slot of m; NIL when waiting could close a cycle. */
static uint32_t claim_wait(struct bpfg_map *m, struct bpfg_map_run *run, uint64_t ids)
{
    bool marked = false;
    uint32_t s;
    for (uint32_t round = 1;; round++) {
        s = claim_pass(m, ids, round % CLAIM_SPINS == 0);
        if (s != NIL)
            break;
        if (run->n && round >= CLAIM_ROUNDS_HOLDING) {
            if (!marked)
                claims_mark_waiting(run, ids, marked = true);
            else if (claim_holders_all_wait(m))
                break;
        }
        if (round % CLAIM_SPINS == 0)
            sys4(SYS_sched_yield, 0, 0, 0, 0);
        else
            __builtin_ia32_pause();
    }
    if (marked)
        claims_mark_waiting(run, ids, false);
    return s;
}

uint32_t map_slot_claim(struct bpfg_map *m, struct bpfg_map_run *run)
{
    uint32_t s = claim_held(m, run);
    if (s != NIL)
        return s;
    if (run->n >= BPFG_RUN_CLAIMS)
        return NIL;
    uint64_t ids = self_ids();
    s = claim_wait(m, run, ids);
    if (s == NIL || (s & SLOT_SHARED))
        return s == NIL ? NIL : s & ~SLOT_SHARED; /* the other handle's record releases it */
    run->claim[run->n].map = m;
    run->claim[run->n++].slot = s;
    return s;
}

void map_slot_release(struct bpfg_map *m, uint32_t slot)
{
    atomic_store_explicit(slot_word(m, slot), 0, memory_order_release);
}
