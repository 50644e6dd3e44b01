/* bpfgraft maps: eBPF maps living in memfd shared regions.
 *
 * Every map is one self-describing memfd region (layout in maps/FORMAT.md).
 * The server creates it; targets, the CLI and scripts receive the fd and map
 * it with bpfg_map_open_fd(). A `struct bpfg_map` is a process-local handle
 * on one mapping of a region.
 *
 * Two families of calls:
 *   - program side (called from eBPF helper wrappers inside a target):
 *     bpfg_map_lookup_elem/update_elem/delete_elem, push/pop/peek, the
 *     ring buffer producer and perf output. No malloc, no syscall on the
 *     lookup path; per-CPU maps act on the current CPU's slot.
 *   - syscall side (server/CLI): *_copy calls and get_next_key, which copy
 *     values in and out; per-CPU maps take/return every CPU's value, each
 *     rounded up to 8 bytes, like the kernel's bpf(2) interface.
 *
 * Map types are the kernel's `enum bpf_map_type` values. Return values
 * follow libbpf: 0 or a negative errno, with the same errno the kernel
 * returns for the same operation.
 */
#ifndef BPFGRAFT_MAPS_H
#define BPFGRAFT_MAPS_H

#include <linux/bpf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BPFG_MAP_NAME_LEN 16 /* BPF_OBJ_NAME_LEN, NUL included */

/* bpfgraft-only creation flag: an ARRAY with max_entries 1 backing a
 * .data/.bss (or, with BPF_F_RDONLY_PROG, .rodata) section. Implies
 * BPF_F_MMAPABLE: the value starts on a page boundary of the region. */
#define BPFG_F_GLOBAL_DATA (1U << 30)

/* Default size of each per-CPU ring of a PERF_EVENT_ARRAY (map_extra). */
#define BPFG_PERF_RING_DEFAULT (64u * 1024)

struct bpfg_map;

/* ARRAY_OF_MAPS / HASH_OF_MAPS: the inner map template (the kernel's
 * inner_map_fd). Inner maps stored in the outer map must match it like the
 * kernel's bpf_map_meta_equal (type, key/value size, flags; max_entries for
 * arrays unless BPF_F_INNER_MAP). */
struct bpfg_map_inner {
    uint32_t type, key_size, value_size, max_entries, map_flags;
};

struct bpfg_map_spec {
    uint32_t type; /* enum bpf_map_type */
    uint32_t key_size;
    uint32_t value_size;
    uint32_t max_entries;
    uint32_t map_flags; /* BPF_F_* plus BPFG_F_GLOBAL_DATA */
    uint64_t map_extra; /* PERF_EVENT_ARRAY: bytes per ring (0 = default) */
    const char *name;   /* may be NULL; truncated to 15 chars */
    uint32_t btf_key_type_id;
    uint32_t btf_value_type_id;
    uint32_t nr_cpus;            /* 0 = possible CPUs of this machine */
    struct bpfg_map_inner inner; /* map-in-map types only */
};

struct bpfg_map_info {
    uint32_t type, key_size, value_size, max_entries, map_flags;
    uint32_t nr_cpus; /* slots of per-CPU maps / rings of perf arrays */
    uint32_t btf_key_type_id, btf_value_type_id;
    uint64_t map_extra;
    uint64_t region_size;     /* bytes of the memfd */
    uint32_t value_copy_size; /* bytes a *_copy call reads/writes per value */
    uint32_t frozen;
    uint32_t repairs; /* owner-death repairs run on this region */
    char name[BPFG_MAP_NAME_LEN];
    struct bpfg_map_inner inner; /* map-in-map types: the template */
};

/* Possible CPUs (/sys/devices/system/cpu/possible), as the kernel and
 * libbpf size per-CPU maps and perf arrays; cached. */
uint32_t bpfg_possible_cpus(void);

/* Creates a region (memfd named "bpfg-map:<name>", sealed against
 * resizing) and a handle on it. Returns 0 or -EINVAL/-E2BIG/-ENOMEM/... */
int bpfg_map_create(const struct bpfg_map_spec *spec, struct bpfg_map **out);
/* The same in a new file `name` of directory dirfd (mode 0600; -EEXIST if
 * it exists), which outlives the process: bpfgraftd keeps its maps in its
 * state directory (tmpfs) so that a restarted server reopens them with
 * bpfg_map_open_fd. Such a file cannot be sealed; bpfg_map_open_fd takes an
 * unsealed region only from a linked file that neither group nor others
 * may write. */
int bpfg_map_create_in(const struct bpfg_map_spec *spec, int dirfd, const char *name, struct bpfg_map **out);
/* The same in fd, an empty file the caller made (bpfgraftd's spare files,
 * made ahead so that a create makes no inode; the same rules as
 * create_in's files), which is sized and filled here; -EINVAL if it is not
 * an empty regular file. fd is duplicated: the caller keeps it. The
 * payload of a `bpfgraft run` tool lays maps out in its map tickets so. */
int bpfg_map_create_fd(const struct bpfg_map_spec *spec, int fd, struct bpfg_map **out);
/* The same in fd, a zero-filled file of len bytes (len >= the region:
 * else -E2BIG) that the caller has mapped shared at `mapped`, len bytes
 * from offset 0, made ahead of the call (a run tool's prepared map
 * ticket): the file keeps its size (readers take the region's from its
 * header, and accept a longer file), the mapping becomes the map's. The
 * mapping is taken in every case (unmapped on failure); fd is duplicated.
 * seed: the hash seed (ignored with BPF_F_ZERO_SEED). */
int bpfg_map_create_mapped(const struct bpfg_map_spec *spec, int fd, void *mapped, size_t len, uint32_t seed,
                           struct bpfg_map **out);

/* Validates and maps a region received from elsewhere. The fd is duplicated:
 * the caller keeps ownership of its fd. A corrupt, truncated or foreign
 * region is refused with -EBADMSG (or -EPROTONOSUPPORT for another layout
 * version); bpfg_map_last_error() then says why. */
int bpfg_map_open_fd(int fd, struct bpfg_map **out);

/* Brings a region file kept from an older build (a restarted server's
 * state directory) to this build's layout before bpfg_map_open_fd:
 * layouts 3 and 4 of every type but the hash family (hash, per-CPU hash,
 * LRU, hash of maps: their counts and stripes changed in layout 4, their
 * stripes' spare elements in layout 5) are the same region, so its
 * header's version is rewritten once the layout recomputed for this
 * version equals it (apply false: only whether it can be). A hash-family
 * region of layout 4 is left as it is: bpfg_map_open_fd serves it with
 * layout 4's rules (no stripe spares), which its older writers, payloads
 * still running in targets, share. 0 (also when current or not a region:
 * bpfg_map_open_fd says what is wrong), or -EPROTONOSUPPORT with
 * bpfg_map_last_error() naming both versions (a hash region of layout 3);
 * the region is then left untouched. Not in the payload. */
int bpfg_map_upgrade_fd(int fd, bool apply);

/* The layout version of the region file fd (this build's:
 * BPFG_MAP_LAYOUT_VERSION), 0 if it is not a region, or -errno. Not in
 * the payload. */
#define BPFG_MAP_LAYOUT_VERSION 5
int bpfg_map_file_layout(int fd);

/* Tests: creates a region of an older layout this build still serves
 * (4, hash family), exactly as an older build wrote it, as
 * bpfg_map_create does; -EPROTONOSUPPORT for another. Not in the payload. */
int bpfg_map_create_layout(const struct bpfg_map_spec *spec, uint32_t version, struct bpfg_map **out);

/* Human-readable reason for the last failure of create/open in this thread. */
const char *bpfg_map_last_error(void);

void bpfg_map_close(struct bpfg_map *map); /* NULL is fine */

/* bpfg_map_open_fd also takes a kernel bpf map fd (not a regular file):
 * BPF_F_MMAPABLE arrays are mapped and used in place, HASH and LRU_HASH
 * go through bpf() (a lookup returns a copy in one of 64 slots of the
 * handle: writes through it do not reach the kernel), other types are
 * refused with -EOPNOTSUPP. Whether map is such a handle: */
bool bpfg_map_is_kernel(const struct bpfg_map *map);

/* The handle's own fd (owned by the handle; dup it to keep it). */
int bpfg_map_fd(const struct bpfg_map *map);
uint32_t bpfg_map_type(const struct bpfg_map *map); /* enum bpf_map_type */
void bpfg_map_get_info(const struct bpfg_map *map, struct bpfg_map_info *info);
const char *bpfg_map_type_name(uint32_t type);

/* ARRAY_OF_MAPS or HASH_OF_MAPS: values are inner map ids (u32, 0 = none),
 * the ids of the server's registry (what the kernel's bpf(2) returns). */
static inline int bpfg_map_type_is_outer(uint32_t type)
{
    return type == BPF_MAP_TYPE_ARRAY_OF_MAPS || type == BPF_MAP_TYPE_HASH_OF_MAPS;
}

/* Whether `inner` may be stored in `outer` (a map-in-map): 0, or -EINVAL
 * as the kernel's update with a mismatching inner map fd returns. */
int bpfg_map_inner_check(const struct bpfg_map *outer, const struct bpfg_map_info *inner);

/* The memory a handle maps, for a VM that bounds-checks what programs
 * touch: mapping i's address, its length in *len; NULL past the last.
 * Mapping 0 is the main one, then one per ring (its data mapped twice). */
void *bpfg_map_mapping(const struct bpfg_map *map, uint32_t i, size_t *len);

/* ---- program side ---- */

/* Pointer into the region (current CPU's slot for per-CPU maps), or NULL.
 * Map-in-map: a pointer to the u32 inner map id (0 = empty slot), which
 * the caller turns into its handle on that map. */
void *bpfg_map_lookup_elem(struct bpfg_map *map, const void *key);
int bpfg_map_update_elem(struct bpfg_map *map, const void *key, const void *value, uint64_t flags);
int bpfg_map_delete_elem(struct bpfg_map *map, const void *key);
/* Queue/stack push; BLOOM_FILTER: adds value (flags must be BPF_ANY). */
int bpfg_map_push_elem(struct bpfg_map *map, const void *value, uint64_t flags);

/* A program run's per-CPU slots (FORMAT.md "Per-CPU slots"). In the
 * kernel nothing else runs on a CPU during a program, so "lookup; *v += 1"
 * on this CPU's slot is safe; in userspace two threads share a CPU. A
 * lookup through bpfg_map_lookup_elem_run claims a slot of a per-CPU map
 * (the current CPU's, else a free one) for this run alone, recorded in
 * *run, until bpfg_map_run_release(run). Set run->n = 0 before the run;
 * other map types cost one branch more than bpfg_map_lookup_elem. */
#define BPFG_RUN_CLAIMS 8
struct bpfg_map_run {
    uint32_t n; /* claims held */
    struct {
        struct bpfg_map *map;
        uint32_t slot;
    } claim[BPFG_RUN_CLAIMS];
};
void *bpfg_map_lookup_elem_run(struct bpfg_map *map, const void *key, struct bpfg_map_run *run);
/* A program's update: a per-CPU map's value goes to the slot the run's
 * lookups use (claimed if not yet), so "v = lookup; update(v + 1)" stays
 * on one slot when the thread moves to another CPU between the two. */
int bpfg_map_update_elem_run(struct bpfg_map *map, const void *key, const void *value, uint64_t flags,
                             struct bpfg_map_run *run);
void bpfg_map_run_release(struct bpfg_map_run *run);
int bpfg_map_pop_elem(struct bpfg_map *map, void *value);
/* Queue/stack: copies the next value out. BLOOM_FILTER: value is the input;
 * 0 if it may be in the set, -ENOENT if it is certainly not. */
int bpfg_map_peek_elem(struct bpfg_map *map, void *value);

/* PROG_ARRAY: program id stored at index (0 = empty slot). */
uint32_t bpfg_map_prog_array_get(struct bpfg_map *map, uint32_t index);

/* Global-data arrays (and any BPF_F_MMAPABLE array): the value area, which
 * starts on a page boundary of the region at offset *file_off. */
void *bpfg_map_value_area(struct bpfg_map *map, size_t *size, uint64_t *file_off);

/* ---- syscall side ---- */

/* BLOOM_FILTER: value is the input, as with peek. Map-in-map: the value
 * is the inner map id; update_copy takes the id (the caller has checked
 * the inner map with bpfg_map_inner_check), lookup_copy returns it. */
int bpfg_map_lookup_copy(struct bpfg_map *map, const void *key, void *value);
int bpfg_map_update_copy(struct bpfg_map *map, const void *key, const void *value, uint64_t flags);
int bpfg_map_delete_copy(struct bpfg_map *map, const void *key);
/* Queue/stack: pop (key must be NULL). Hash maps: lookup then delete. */
int bpfg_map_lookup_and_delete_copy(struct bpfg_map *map, const void *key, void *value);
/* key NULL = first key. -ENOENT after the last. For hash maps a key that is
 * no longer present continues from its bucket rather than restarting, so a
 * full iteration terminates under concurrent updates and returns every key
 * present throughout (possibly some twice). */
int bpfg_map_get_next_key(struct bpfg_map *map, const void *key, void *next_key);
/* bpf_for_each_map_elem's walk, in place and without locks: from *cursor
 * (0 = the start) finds the next element, stores pointers to its key and
 * value (this CPU's for per-CPU maps; an array's key is the index, written
 * to *index) and advances *cursor. -ENOENT at the end, -EOPNOTSUPP for map
 * types that cannot be walked. Elements changed meanwhile may be missed or
 * seen twice, as with get_next_key. */
int bpfg_map_elem_at(struct bpfg_map *map, uint64_t *cursor, void **key, void **value, uint32_t *index);
/* Like BPF_MAP_FREEZE: later *_copy writes fail with -EPERM. */
int bpfg_map_freeze(struct bpfg_map *map);

/* ---- ring buffer (BPF_MAP_TYPE_RINGBUF) ---- */

void *bpfg_ringbuf_reserve(struct bpfg_map *map, uint64_t size, uint64_t flags);
void bpfg_ringbuf_submit(struct bpfg_map *map, void *data, uint64_t flags);
void bpfg_ringbuf_discard(struct bpfg_map *map, void *data, uint64_t flags);
int bpfg_ringbuf_output(struct bpfg_map *map, const void *data, uint64_t size, uint64_t flags);
uint64_t bpfg_ringbuf_query(struct bpfg_map *map, uint64_t flags);

/* Called per record; a negative return stops consumption and is returned. */
typedef int (*bpfg_ringbuf_sample_fn)(void *ctx, void *data, size_t size);

/* Consumes every committed record; returns how many were handed to fn.
 * A record left busy by a producer that died is skipped (see FORMAT.md). */
int bpfg_ringbuf_consume(struct bpfg_map *map, bpfg_ringbuf_sample_fn fn, void *ctx);

/* Sleeps (futex, no spinning) until a record is ready or timeout_ms passes
 * (-1 = forever). Returns 0 when data is ready, -ETIMEDOUT, -EINTR. */
int bpfg_ringbuf_wait(struct bpfg_map *map, int timeout_ms);

/* Kernel-layout view: consumer page, producer page, data mapped twice. */
struct bpfg_ringbuf_view {
    unsigned long *consumer_pos;
    const unsigned long *producer_pos;
    uint8_t *data; /* 2 * size bytes readable */
    uint64_t size; /* power of two */
};
int bpfg_ringbuf_get_view(struct bpfg_map *map, struct bpfg_ringbuf_view *view);

/* Where the kernel view's parts sit in the map's memfd, to mmap the fd
 * the way a kernel ringbuf fd is mapped: the consumer page at
 * consumer_off, the producer page after it, size bytes of data at
 * data_off (right after the producer page). -EINVAL if not a RINGBUF. */
struct bpfg_ringbuf_file {
    uint64_t consumer_off;
    uint64_t data_off;
    uint64_t size; /* power of two */
};
int bpfg_ringbuf_get_file_layout(const struct bpfg_map *map, struct bpfg_ringbuf_file *file);

/* Consumes from any ring with the kernel layout (ours or a kernel ringbuf
 * mmapped through its map fd). Does not skip dead producers' records. */
int bpfg_ringbuf_consume_view(const struct bpfg_ringbuf_view *view, bpfg_ringbuf_sample_fn fn, void *ctx);

/* ---- perf event array (one ring per CPU, ring buffer record format) ---- */

/* flags: BPF_F_CURRENT_CPU or an index. -E2BIG for a bad index, -ENOSPC
 * when the ring is full (the record is counted as lost). */
int bpfg_perf_event_output(struct bpfg_map *map, uint64_t flags, const void *data, uint64_t size);
typedef void (*bpfg_perf_sample_fn)(void *ctx, int cpu, void *data, uint32_t size);
typedef void (*bpfg_perf_lost_fn)(void *ctx, int cpu, uint64_t lost);
/* Consumes every ring; returns the number of samples delivered. */
int bpfg_perf_consume(struct bpfg_map *map, bpfg_perf_sample_fn sample, bpfg_perf_lost_fn lost, void *ctx);

/* ---- statistics (server side; no lock taken) ---- */

/* Entries in use: hash maps (LRU, per-CPU, of maps) their live elements,
 * LPM_TRIE its entries, BLOOM_FILTER the values pushed; every other type
 * max_entries (arrays are always full). */
uint64_t bpfg_map_entries(const struct bpfg_map *map);
/* Records dropped because the buffer was full: RINGBUF reserves and
 * outputs refused for want of room, PERF_EVENT_ARRAY outputs refused
 * (every ring's); 0 for other types. */
uint64_t bpfg_map_lost(const struct bpfg_map *map);

/* Test hook: runs the owner-death repair of the map now (takes every lock).
 * Returns 0 or a negative errno. */
int bpfg_map_check_repair(struct bpfg_map *map);

/* STACK_TRACE (map_stacktrace.c): the frames a stack id holds (value_size
 * / 8; 0 for other types), and bpf_get_stackid's map side: the id of the
 * stack ips[0..nr) (BPF_F_SKIP_FIELD_MASK already applied), stored if
 * new. flags: BPF_F_REUSE_STACKID, BPF_F_FAST_STACK_CMP. Returns the id,
 * -EEXIST (another stack holds the id), -ENOMEM (no free element) or
 * -EINVAL. */
uint32_t bpfg_map_stack_depth(const struct bpfg_map *map);
int bpfg_map_stackid(struct bpfg_map *map, const uint64_t *ips, uint32_t nr, uint64_t flags);

#endif
