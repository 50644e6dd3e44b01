/* Internals shared by the map type implementations. Layout: FORMAT.md. */
#ifndef BPFGRAFT_MAPS_INTERNAL_H
#define BPFGRAFT_MAPS_INTERNAL_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "maps.h"

#ifndef ENOTSUPP
#define ENOTSUPP 524 /* kernel-internal errno that bpf(2) returns for some map ops */
#endif

#define REGION_MAGIC 0x50414d4746504221ull /* "!BPFGMAP" little-endian */
#define REGION_VERSION ((uint32_t)BPFG_MAP_LAYOUT_VERSION)
#define REGION_PAGE 4096u
#define HDR_SIZE REGION_PAGE
#define LOCK_STRIDE 64u   /* one lock per cache line (struct map_lock) */
#define SPARE_OFF 40u     /* hash: the stripe's spare element + 1 (0 = none) */
#define FREE_HEAD_OFF 48u /* hash: the stripe's free-list head */
#define CREDIT_OFF 56u    /* hash: count slots the stripe holds (see map_hash.c) */
#define MAX_LOCK_STRIPES 64u
#define NIL 0xffffffffu
#define NULLS_BIT 0x80000000u
#define MAX_CPUS 4096u

#define ROUND8(x) (((x) + 7u) & ~7u)
#define ROUNDUP(x, a) (((x) + (a)-1) / (a) * (a))

/* Immutable description, written once at creation (offset 0). */
struct region_hdr {
    uint64_t magic;
    uint32_t version;
    uint32_t hdr_size;
    uint32_t map_type;
    uint32_t key_size;
    uint32_t value_size;
    uint32_t max_entries;
    uint32_t map_flags;
    uint32_t nr_cpus;
    uint64_t map_extra;
    uint32_t btf_key_type_id;
    uint32_t btf_value_type_id;
    uint32_t hash_seed;
    uint32_t page_size;
    char name[BPFG_MAP_NAME_LEN];
    uint64_t region_size;
    uint64_t locks_off; /* n_locks + 1 struct map_lock, LOCK_STRIDE apart */
    uint32_t n_locks;   /* stripes; lock n_locks is the repair lock */
    uint32_t elem_size; /* stride of data elements */
    uint64_t aux_off;   /* hash: buckets; ring: consumer page; perf: ctl pages */
    uint64_t aux_size;
    uint64_t data_off; /* elements / ring data */
    uint64_t data_size;
    uint64_t lru_off; /* LRU: 2 bytes per element (live, ref) */
    uint32_t n_elems; /* hash: pool size; array: max_entries; queue: slots */
    uint32_t n_buckets;
    struct bpfg_map_inner inner; /* map-in-map: inner map template (offset 152) */
};

/* Per-CPU maps: a claim word per slot (modulo CLAIM_LINES), a cache line
 * each, in the header page after the state (map_lock.c). */
#define CLAIM_OFF 1024u
#define CLAIM_LINES 48u

/* Mutable state, in the header page at STATE_OFF. */
#define STATE_OFF 512u
struct region_state {
    _Atomic uint32_t frozen;
    _Atomic uint32_t needs_repair; /* an owner died: run repair */
    _Atomic uint32_t count;        /* LPM_TRIE: live entries (hash maps: h_count; bloom: pushes) */
    _Atomic uint32_t repairs;      /* statistics: repairs done */
    /* LPM_TRIE (writers under lock 0): */
    _Atomic uint32_t t_seq;   /* odd while a writer changes the trie */
    _Atomic uint32_t t_root;  /* root node index, NIL = empty */
    _Atomic uint32_t t_bump;  /* nodes [0, t_bump) have been handed out */
    _Atomic uint32_t t_free;  /* free node list head, NIL = empty */
    _Atomic uint64_t t_stamp; /* insert sequence, newest entry wins in repair */
    char pad0[24];
    uint64_t unused_free_head; /* layout 1's single free list */
    char pad1[56];
    _Atomic uint64_t clock_hand; /* LRU victim search */
    char pad2[56];
    _Atomic uint32_t q_head, q_tail; /* queue/stack, under lock 0 */
    char pad3[56];
    _Atomic uint32_t rb_waiters; /* ringbuf: consumers sleeping */
    _Atomic uint32_t rb_futex;   /* ringbuf: bumped on wakeup */
    _Atomic uint64_t rb_lost;    /* ringbuf: records refused, the ring full */
    char pad4[48];
    _Atomic uint32_t rb_lock; /* ringbuf: reserving thread's tid, 0 = free */
    char pad5[60];
    _Atomic uint32_t h_count; /* hash: live elements + slots held by stripes; its own line */
    char pad6[60];
};

_Static_assert(STATE_OFF + sizeof(struct region_state) <= CLAIM_OFF, "state overlaps the slot claims");
_Static_assert(CLAIM_OFF + CLAIM_LINES * LOCK_STRIDE <= HDR_SIZE, "slot claims beyond the header page");

/* Per-ring control of ring types. RINGBUF: the kernel's consumer page and
 * producer page. PERF_EVENT_ARRAY: one page per ring holding both. */
struct perf_ctl {
    _Atomic unsigned long consumer_pos;
    char pad0[56];
    _Atomic unsigned long producer_pos;
    char pad1[56];
    _Atomic uint64_t lost;
    _Atomic uint64_t lost_reported;
    char pad2[48];
    _Atomic uint32_t lock; /* reserving thread's tid, 0 = free */
};

struct ring_view {
    _Atomic unsigned long *cons;
    _Atomic unsigned long *prod;
    uint8_t *data; /* double mapped */
    uint64_t mask;
    _Atomic uint32_t *lock;           /* reserve lock: owner tid (see ring_lock) */
    struct perf_ctl *perf;            /* perf rings only */
    _Atomic unsigned long cons_cache; /* last consumer_pos seen: a lower bound */
};

struct map_ops;

/* Process-local handle. Geometry is copied out of the header once, after
 * validation, so a peer scribbling on the header cannot move our accesses
 * out of bounds. */
struct bpfg_map {
    int fd;
    uint8_t *base; /* main mapping */
    size_t base_len;
    size_t map_len; /* the mapping's length when longer than base_len (a prepared ticket's), else 0 */
    struct region_hdr *hdr;
    struct region_state *st;
    const struct map_ops *ops;
    uint32_t type, key_size, value_size, max_entries, map_flags, nr_cpus;
    uint32_t n_elems, elem_size, n_buckets, n_locks, hash_seed;
    uint32_t layout;             /* the region's layout version: its rules (hash: spares from 5) */
    uint32_t value_stride;       /* ROUND8(value_size) */
    uint32_t key_stride;         /* ROUND8(key_size) */
    _Atomic uint64_t walk_hint;  /* hash: 1 << 32 | hash of the key get_next_key gave last */
    struct bpfg_map_inner inner; /* map-in-map template */
    uint8_t *locks;
    uint8_t *aux;
    uint8_t *data;
    uint8_t *lru;
    /* ring types */
    struct ring_view *rings;
    uint32_t n_rings;
    void **ring_bases; /* one double mapping per ring */
    size_t ring_map_len;
    /* a kernel map (map_kernel.c): fd is a bpf map fd; hdr and st are a
     * private copy, data the lookup slots or the mmapped array values */
    bool kernel;
    _Atomic uint32_t kslot_next;
};

/* Geometry of a region, computed from the parameters alone; the validator
 * recomputes it and compares with what the header says. */
struct layout {
    uint64_t region_size, locks_off, aux_off, aux_size, data_off, data_size, lru_off;
    uint32_t n_locks, elem_size, n_elems, n_buckets;
};

struct map_ops {
    int (*check)(const struct bpfg_map_spec *spec); /* -EINVAL/-E2BIG */
    void (*layout)(const struct bpfg_map_spec *spec, struct layout *lo);
    void (*init)(struct bpfg_map *m); /* fresh region */
    void *(*lookup)(struct bpfg_map *m, const void *key);
    void *(*lookup_cpu)(struct bpfg_map *m, const void *key, uint32_t cpu); /* per-CPU types: slot cpu */
    /* cpu: the slot a per-CPU map's update writes, or MAP_CPU_ALL / MAP_CPU_CURRENT */
    int (*update)(struct bpfg_map *m, const void *key, const void *value, uint64_t flags, uint32_t cpu);
    int (*delete)(struct bpfg_map *m, const void *key);
    int (*lookup_copy)(struct bpfg_map *m, const void *key, void *value);
    int (*lookup_and_delete)(struct bpfg_map *m, const void *key, void *value);
    int (*get_next_key)(struct bpfg_map *m, const void *key, void *next);
    int (*push)(struct bpfg_map *m, const void *value, uint64_t flags);
    int (*pop)(struct bpfg_map *m, void *value, bool remove);
    int (*repair)(struct bpfg_map *m); /* all locks held */
    /* bpfg_map_elem_at: arrays leave *key NULL (the key is the index) */
    int (*elem_at)(struct bpfg_map *m, uint64_t *cursor, void **key, void **value);
    uint64_t (*entries)(struct bpfg_map *m); /* in use; NULL: max_entries */
};

extern const struct map_ops array_ops, percpu_array_ops, prog_array_ops;
extern const struct map_ops hash_ops, percpu_hash_ops, lru_hash_ops, lru_percpu_hash_ops;
extern const struct map_ops queue_ops, stack_ops, ringbuf_ops, perf_ops;
extern const struct map_ops bloom_ops, lpm_trie_ops, array_of_maps_ops, hash_of_maps_ops;
extern const struct map_ops stack_trace_ops;

/* Region layout versions a handle serves: the hash family also keeps
 * layout 4 (no stripe spares, FORMAT.md "Validation"), the rest only
 * this build's. */
#define HASH_OLDEST_SERVED 4u
bool map_hash_family(uint32_t type);
/* The hash family's geometry at a served layout version. */
void map_hash_layout_at(const struct bpfg_map_spec *s, uint32_t version, struct layout *lo);

/* The kernel's jhash2 over words u32 words (map_bloom.c). */
uint32_t map_jhash2(const uint8_t *k, uint32_t words, uint32_t initval);

/* Locks: bpfgraft's own, a futex word in the region holding the owner's
 * tid, and the owner's identity for the liveness check a waiter makes when
 * the owner keeps the lock long (FORMAT.md "Locks"). No libc call: the
 * payload takes them on any thread of any process. map_lock() returns 0
 * with the lock held (after marking the map for repair if the previous
 * owner died), or a negative errno. map_repair_if_needed() runs the repair
 * pass. */
struct map_lock {
    _Atomic uint32_t word; /* owner tid | LOCK_WAITERS, 0 = free */
    uint32_t pad;
    _Atomic uint64_t owner; /* tgid << 32 | tid of the holder */
    _Atomic uint64_t start; /* the holder's process start time (clock ticks after boot) */
    _Atomic uint64_t pidns; /* the holder's pid namespace (inode number), 0 = unknown */
};
int map_lock(struct bpfg_map *m, uint32_t i);
int map_trylock(struct bpfg_map *m, uint32_t i); /* -EBUSY if held */
void map_unlock(struct bpfg_map *m, uint32_t i);
int map_repair_if_needed(struct bpfg_map *m);
bool map_probe_dead_owners(struct bpfg_map *m);
/* map_lock(), then the repair pass first if an owner died. */
int map_lock_checked(struct bpfg_map *m, uint32_t i);
/* This thread's id, cached (reset across fork). */
uint32_t map_tid(void);
#ifdef BPFG_FREESTANDING
/* The payload's (payload/helpers.c): tgid << 32 | tid in the process's own
 * pid namespace, read without a syscall where the thread's libc keeps it. */
uint64_t payload_local_pid_tid(void);
#endif
int map_repair(struct bpfg_map *m);
/* A handle on a kernel bpf map fd (map_kernel.c); takes ownership of fd. */
int map_open_kernel(int fd, struct bpfg_map **out);
/* Map-in-map creation: the inner template is a known map type, not itself
 * a map-in-map (nesting is one level, as in the kernel). */
int map_inner_template_check(const struct bpfg_map_spec *s);

uint32_t map_current_cpu(const struct bpfg_map *m);
/* An update's cpu (map_ops.update): the syscall side writes every slot (a
 * value per CPU, like the kernel); a program writes its run's claimed slot
 * (the one its lookups read: the thread may have moved to another CPU
 * since), or the current CPU's. */
#define MAP_CPU_ALL 0xffffffffu
#define MAP_CPU_CURRENT 0xfffffffeu
/* The slot an update of cpu (not MAP_CPU_ALL) writes. */
uint32_t map_update_slot(const struct bpfg_map *m, uint32_t cpu);
/* Per-CPU maps: a slot claimed for a program's run (map_lock.c, FORMAT.md
 * "Per-CPU slots"): this thread's claim if *run has one on m, else a new
 * one recorded in *run; NIL when every slot is held by threads that wait
 * themselves, a possible cycle (the caller then uses the current CPU's
 * slot unclaimed). */
uint32_t map_slot_claim(struct bpfg_map *m, struct bpfg_map_run *run);
void map_slot_release(struct bpfg_map *m, uint32_t slot);

/* Element pools of LPM tries and stack maps (writers hold the map's lock):
 * a free list through each element's u32 at byte next_off (t_free) and a
 * bump index (t_bump) in the region state. NIL when the pool is empty or
 * the list is damaged (the map is then marked for repair). */
uint32_t map_pool_alloc(struct bpfg_map *m, size_t next_off);
void map_pool_free(struct bpfg_map *m, uint32_t i, size_t next_off);
void map_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Ring internals shared by RINGBUF and PERF_EVENT_ARRAY. */
int ring_consume(struct bpfg_map *m, struct ring_view *r, bpfg_ringbuf_sample_fn fn, void *ctx);

#endif
