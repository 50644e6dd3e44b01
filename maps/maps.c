/* Map regions: creation, validation, mapping, locking and dispatch. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

_Static_assert(sizeof(struct region_hdr) <= STATE_OFF, "header overlaps state");
_Static_assert(STATE_OFF + sizeof(struct region_state) <= HDR_SIZE, "state too big");
/* Offsets documented in FORMAT.md. */
_Static_assert(STATE_OFF + offsetof(struct region_state, rb_lock) == 832, "rb_lock moved");
_Static_assert(STATE_OFF + offsetof(struct region_state, rb_lost) == 776, "rb_lost moved");
_Static_assert(STATE_OFF + offsetof(struct region_state, h_count) == 896, "hash count moved");
_Static_assert(offsetof(struct perf_ctl, lock) == 192, "perf ring lock moved");
_Static_assert(offsetof(struct region_hdr, inner) == 152, "inner map template moved");
_Static_assert(STATE_OFF + offsetof(struct region_state, t_seq) == 528, "trie state moved");
_Static_assert(STATE_OFF + offsetof(struct region_state, t_stamp) == 544, "trie stamp moved");

/* Type dispatch: adding a map type means adding one ops table here. */
static const struct map_ops *const type_ops[] = {
    [BPF_MAP_TYPE_HASH] = &hash_ops,
    [BPF_MAP_TYPE_ARRAY] = &array_ops,
    [BPF_MAP_TYPE_PROG_ARRAY] = &prog_array_ops,
    [BPF_MAP_TYPE_PERF_EVENT_ARRAY] = &perf_ops,
    [BPF_MAP_TYPE_PERCPU_HASH] = &percpu_hash_ops,
    [BPF_MAP_TYPE_PERCPU_ARRAY] = &percpu_array_ops,
    [BPF_MAP_TYPE_LRU_HASH] = &lru_hash_ops,
    [BPF_MAP_TYPE_LRU_PERCPU_HASH] = &lru_percpu_hash_ops,
    [BPF_MAP_TYPE_QUEUE] = &queue_ops,
    [BPF_MAP_TYPE_STACK] = &stack_ops,
    [BPF_MAP_TYPE_RINGBUF] = &ringbuf_ops,
    [BPF_MAP_TYPE_LPM_TRIE] = &lpm_trie_ops,
    [BPF_MAP_TYPE_ARRAY_OF_MAPS] = &array_of_maps_ops,
    [BPF_MAP_TYPE_HASH_OF_MAPS] = &hash_of_maps_ops,
    [BPF_MAP_TYPE_BLOOM_FILTER] = &bloom_ops,
    [BPF_MAP_TYPE_STACK_TRACE] = &stack_trace_ops,
};

static const char *const type_names[] = {
    [BPF_MAP_TYPE_HASH] = "hash",
    [BPF_MAP_TYPE_ARRAY] = "array",
    [BPF_MAP_TYPE_PROG_ARRAY] = "prog_array",
    [BPF_MAP_TYPE_PERF_EVENT_ARRAY] = "perf_event_array",
    [BPF_MAP_TYPE_PERCPU_HASH] = "percpu_hash",
    [BPF_MAP_TYPE_PERCPU_ARRAY] = "percpu_array",
    [BPF_MAP_TYPE_LRU_HASH] = "lru_hash",
    [BPF_MAP_TYPE_LRU_PERCPU_HASH] = "lru_percpu_hash",
    [BPF_MAP_TYPE_QUEUE] = "queue",
    [BPF_MAP_TYPE_STACK] = "stack",
    [BPF_MAP_TYPE_RINGBUF] = "ringbuf",
    [BPF_MAP_TYPE_LPM_TRIE] = "lpm_trie",
    [BPF_MAP_TYPE_ARRAY_OF_MAPS] = "array_of_maps",
    [BPF_MAP_TYPE_HASH_OF_MAPS] = "hash_of_maps",
    [BPF_MAP_TYPE_BLOOM_FILTER] = "bloom_filter",
    [BPF_MAP_TYPE_STACK_TRACE] = "stack_trace",
};

#define NTYPES (sizeof(type_ops) / sizeof(type_ops[0]))

static const struct map_ops *ops_for(uint32_t type)
{
    return type < NTYPES ? type_ops[type] : NULL;
}

const char *bpfg_map_type_name(uint32_t type)
{
    return type < NTYPES && type_names[type] ? type_names[type] : "unknown";
}

static __thread char last_error[192];

void map_set_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
}

const char *bpfg_map_last_error(void)
{
    return last_error[0] ? last_error : "no error";
}

/* Number of possible CPUs, as the kernel sizes per-CPU maps. */
uint32_t bpfg_possible_cpus(void)
{
    static _Atomic uint32_t cached;
    uint32_t n = atomic_load_explicit(&cached, memory_order_relaxed);
    if (n)
        return n;
    n = 0;
    FILE *f = fopen("/sys/devices/system/cpu/possible", "re");
    if (f) {
        unsigned a, b;
        int c;
        while (fscanf(f, "%u", &a) == 1) {
            b = a;
            c = fgetc(f);
            if (c == '-') {
                if (fscanf(f, "%u", &b) != 1)
                    break;
                c = fgetc(f);
            }
            if (b + 1 > n)
                n = b + 1;
            if (c != ',')
                break;
        }
        fclose(f);
    }
    if (!n) {
        long s = sysconf(_SC_NPROCESSORS_CONF);
        n = s > 0 ? (uint32_t)s : 1;
    }
    atomic_store_explicit(&cached, n, memory_order_relaxed);
    return n;
}

uint32_t map_update_slot(const struct bpfg_map *m, uint32_t cpu)
{
    return cpu == MAP_CPU_CURRENT ? map_current_cpu(m) : cpu;
}

uint32_t map_current_cpu(const struct bpfg_map *m)
{
    int cpu = sched_getcpu(); /* rseq area read with glibc >= 2.35, no syscall */
    if (cpu < 0)
        cpu = 0;
    return (uint32_t)cpu < m->nr_cpus ? (uint32_t)cpu : (uint32_t)cpu % m->nr_cpus;
}

/* ---- locks ---- */

/* Takes the repair lock, then every stripe in order. Normal operations hold
 * at most one stripe and only ever trylock a second, so this cannot
 * deadlock with them; two repairers serialise on the repair lock. */
int map_repair(struct bpfg_map *m)
{
    int err = map_lock(m, m->n_locks);
    if (err)
        return err;
    if (!atomic_load(&m->st->needs_repair)) {
        map_unlock(m, m->n_locks);
        return 0;
    }
    uint32_t held = 0;
    for (; held < m->n_locks; held++) {
        err = map_lock(m, held);
        if (err)
            break;
    }
    if (!err) {
        err = m->ops->repair ? m->ops->repair(m) : 0;
        if (!err) {
            atomic_store(&m->st->needs_repair, 0);
            atomic_fetch_add(&m->st->repairs, 1);
        }
    }
    while (held)
        map_unlock(m, --held);
    map_unlock(m, m->n_locks);
    return err;
}

int map_lock_checked(struct bpfg_map *m, uint32_t i)
{
    for (;;) {
        int err = map_lock(m, i);
        if (err)
            return err;
        if (!atomic_load(&m->st->needs_repair))
            return 0;
        map_unlock(m, i);
        if ((err = map_repair(m)))
            return err;
    }
}

int map_repair_if_needed(struct bpfg_map *m)
{
    if (!m->n_locks || !atomic_load_explicit(&m->st->needs_repair, memory_order_acquire))
        return 0;
    return map_repair(m);
}

int bpfg_map_check_repair(struct bpfg_map *map)
{
    if (!map->n_locks)
        return 0;
    atomic_store(&map->st->needs_repair, 1);
    return map_repair(map);
}

/* ---- validation ---- */

static void spec_from_hdr(const struct region_hdr *h, struct bpfg_map_spec *s)
{
    memset(s, 0, sizeof(*s));
    s->type = h->map_type;
    s->key_size = h->key_size;
    s->value_size = h->value_size;
    s->max_entries = h->max_entries;
    s->map_flags = h->map_flags;
    s->map_extra = h->map_extra;
    s->nr_cpus = h->nr_cpus;
    s->inner = h->inner;
}

/* Whether this build serves a region of layout `version` of `type` with
 * that layout's rules. */
static bool layout_served(uint32_t type, uint32_t version)
{
    return version == REGION_VERSION ||
           (map_hash_family(type) && version >= HASH_OLDEST_SERVED && version < REGION_VERSION);
}

/* The geometry of a region of layout `version` (one layout_served). */
static void layout_at(const struct map_ops *ops, const struct bpfg_map_spec *spec, uint32_t version, struct layout *lo)
{
    if (map_hash_family(spec->type))
        map_hash_layout_at(spec, version, lo);
    else
        ops->layout(spec, lo);
}

#define CHECK_FIELD(f)                                                                                    \
    do {                                                                                                  \
        if ((uint64_t)h->f != (uint64_t)lo.f) {                                                           \
            map_set_error("region: header field " #f " is %llu, expected %llu", (unsigned long long)h->f, \
                          (unsigned long long)lo.f);                                                      \
            return -EBADMSG;                                                                              \
        }                                                                                                 \
    } while (0)

/* Checks a header copy against the fd's size. On success *lo is the
 * recomputed geometry, identical to what the header claims. */
static int validate_hdr(int fd, const struct region_hdr *h, struct layout *out)
{
    struct stat stbuf;
    if (fstat(fd, &stbuf) < 0) {
        map_set_error("region: fstat: %s", strerror(errno));
        return -errno;
    }
    if ((uint64_t)stbuf.st_size < HDR_SIZE) {
        map_set_error("region: fd is %lld bytes, smaller than a header", (long long)stbuf.st_size);
        return -EBADMSG;
    }
    if (h->magic != REGION_MAGIC) {
        map_set_error("region: bad magic, not a bpfgraft map");
        return -EBADMSG;
    }
    if (!layout_served(h->map_type, h->version)) {
        map_set_error("region: layout version %u, this build reads %u", h->version, REGION_VERSION);
        return -EPROTONOSUPPORT;
    }
    if (h->hdr_size != HDR_SIZE || h->page_size != REGION_PAGE) {
        map_set_error("region: header size %u / page size %u unsupported", h->hdr_size, h->page_size);
        return -EBADMSG;
    }
    const struct map_ops *ops = ops_for(h->map_type);
    if (!ops) {
        map_set_error("region: unknown map type %u", h->map_type);
        return -EBADMSG;
    }
    if (h->nr_cpus == 0 || h->nr_cpus > MAX_CPUS) {
        map_set_error("region: nr_cpus %u out of range", h->nr_cpus);
        return -EBADMSG;
    }
    struct bpfg_map_spec spec;
    spec_from_hdr(h, &spec);
    int err = ops->check(&spec);
    if (err) {
        map_set_error("region: invalid %s parameters (key %u value %u entries %u flags %#x)",
                      bpfg_map_type_name(h->map_type), h->key_size, h->value_size, h->max_entries, h->map_flags);
        return -EBADMSG;
    }
    struct layout lo = {0};
    layout_at(ops, &spec, h->version, &lo);
    CHECK_FIELD(region_size);
    CHECK_FIELD(locks_off);
    CHECK_FIELD(n_locks);
    CHECK_FIELD(elem_size);
    CHECK_FIELD(aux_off);
    CHECK_FIELD(aux_size);
    CHECK_FIELD(data_off);
    CHECK_FIELD(data_size);
    CHECK_FIELD(lru_off);
    CHECK_FIELD(n_elems);
    CHECK_FIELD(n_buckets);
    if (lo.region_size > (uint64_t)stbuf.st_size) {
        map_set_error("region: truncated, needs %llu bytes, fd has %lld", (unsigned long long)lo.region_size,
                      (long long)stbuf.st_size);
        return -EBADMSG;
    }
    /* A peer able to shrink the file could make our loads fault (SIGBUS). */
    int seals = fcntl(fd, F_GET_SEALS);
    if (seals >= 0 && !(seals & F_SEAL_SHRINK) && !(stbuf.st_nlink > 0 && !(stbuf.st_mode & 0022))) {
        map_set_error("region: memfd is not sealed against shrinking");
        return -EBADMSG;
    }
    *out = lo;
    return 0;
}

static int read_hdr(int fd, struct region_hdr *h)
{
    ssize_t n = pread(fd, h, sizeof(*h), 0);
    if (n < 0) {
        map_set_error("region: read header: %s", strerror(errno));
        return -errno;
    }
    if ((size_t)n < sizeof(*h)) {
        map_set_error("region: truncated header (%zd bytes)", n);
        return -EBADMSG;
    }
    return 0;
}

/* ---- mapping ---- */

/* Maps [file_off, file_off + head + size) followed by a second mapping of the
 * last `size` bytes, so records crossing the end of a ring read linearly.
 * Both are populated, as the kernel maps a ringbuf's pages at mmap: the
 * first mapping of a new region allocates the ring's pages, and no
 * producer or consumer takes a page fault in the ring afterwards (a
 * first write of a memfd page costs ~2 us, 35 ns per 64-byte record). */
static void *map_double(int fd, uint64_t file_off, size_t head, size_t size)
{
    const int flags = MAP_SHARED | MAP_FIXED | MAP_POPULATE;
    uint8_t *r = mmap(NULL, head + 2 * size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED)
        return NULL;
    if (mmap(r, head + size, PROT_READ | PROT_WRITE, flags, fd, (off_t)file_off) == MAP_FAILED ||
        mmap(r + head + size, size, PROT_READ | PROT_WRITE, flags, fd, (off_t)(file_off + head)) == MAP_FAILED) {
        int e = errno;
        munmap(r, head + 2 * size);
        errno = e;
        return NULL;
    }
    return r;
}

void bpfg_map_close(struct bpfg_map *m)
{
    if (!m)
        return;
    if (m->ring_bases) {
        for (uint32_t i = 0; i < m->n_rings; i++)
            if (m->ring_bases[i])
                munmap(m->ring_bases[i], m->ring_map_len);
        free(m->ring_bases);
    }
    free(m->rings);
    if (m->base)
        munmap(m->base, m->map_len ? m->map_len : m->base_len);
    if (m->fd >= 0)
        close(m->fd);
    free(m);
}

static int attach_rings(struct bpfg_map *m, const struct layout *lo)
{
    bool rb = m->type == BPF_MAP_TYPE_RINGBUF;
    uint64_t ring_size = rb ? m->max_entries : lo->elem_size;
    m->n_rings = rb ? 1 : m->max_entries;
    m->rings = calloc(m->n_rings, sizeof(*m->rings));
    m->ring_bases = calloc(m->n_rings, sizeof(*m->ring_bases));
    if (!m->rings || !m->ring_bases)
        return -ENOMEM;
    size_t head = rb ? 2 * REGION_PAGE : 0;
    m->ring_map_len = head + 2 * ring_size;
    for (uint32_t i = 0; i < m->n_rings; i++) {
        uint64_t off = rb ? lo->aux_off : lo->data_off + (uint64_t)i * ring_size;
        uint8_t *p = map_double(m->fd, off, head, ring_size);
        if (!p) {
            map_set_error("region: mmap ring: %s", strerror(errno));
            return -errno;
        }
        m->ring_bases[i] = p;
        struct ring_view *r = &m->rings[i];
        r->mask = ring_size - 1;
        r->data = p + head;
        if (rb) {
            r->cons = (_Atomic unsigned long *)p;
            r->prod = (_Atomic unsigned long *)(p + REGION_PAGE);
            r->lock = &m->st->rb_lock;
        } else {
            r->perf = (struct perf_ctl *)(m->aux + (uint64_t)i * REGION_PAGE);
            r->cons = &r->perf->consumer_pos;
            r->prod = &r->perf->producer_pos;
            r->lock = &r->perf->lock;
        }
    }
    return 0;
}

/* Validates the region behind fd and builds a handle. Takes ownership of fd
 * (closed on failure too) and of `mapped` (mapped_len bytes of fd from
 * offset 0, or NULL): the handle's mapping when it has that length, else
 * unmapped. made: the layout of a region this process has just created in
 * `mapped`, whose header is taken from there unchecked (a pread, an fstat
 * and an F_GET_SEALS less: ~1 us of a run tool's BPF_MAP_CREATE). */
static int attach_mapped(int fd, uint8_t *mapped, size_t mapped_len, const struct layout *made, struct bpfg_map **out)
{
    struct region_hdr h;
    struct layout lo = {0}; /* set by validate_hdr; gcc cannot tell once it is inlined here */
    struct bpfg_map *m = NULL;
    int err = 0;
    if (made) {
        memcpy(&h, mapped, sizeof(h));
        lo = *made;
    } else if (!(err = read_hdr(fd, &h))) {
        err = validate_hdr(fd, &h, &lo);
    }
    if (err)
        goto fail;
    m = calloc(1, sizeof(*m));
    if (!m) {
        err = -ENOMEM;
        goto fail;
    }
    m->fd = fd;
    fd = -1;
    m->ops = ops_for(h.map_type);
    m->type = h.map_type;
    m->key_size = h.key_size;
    m->value_size = h.value_size;
    m->max_entries = h.max_entries;
    m->map_flags = h.map_flags;
    m->nr_cpus = h.nr_cpus;
    m->n_elems = lo.n_elems;
    m->elem_size = lo.elem_size;
    m->n_buckets = lo.n_buckets;
    m->n_locks = lo.n_locks;
    m->hash_seed = h.hash_seed;
    m->layout = h.version;
    m->value_stride = ROUND8(h.value_size);
    m->key_stride = ROUND8(h.key_size);
    m->inner = h.inner;

    bool ring = m->type == BPF_MAP_TYPE_RINGBUF || m->type == BPF_MAP_TYPE_PERF_EVENT_ARRAY;
    m->base_len = m->type == BPF_MAP_TYPE_RINGBUF            ? lo.aux_off
                  : m->type == BPF_MAP_TYPE_PERF_EVENT_ARRAY ? lo.data_off
                                                             : lo.region_size;
    /* a creator's: no second mapping (a prepared ticket's may be longer) */
    if (mapped && (mapped_len == m->base_len || (made && mapped_len > m->base_len))) {
        m->base = mapped;
        m->map_len = mapped_len;
        mapped = NULL;
    } else {
        m->base = mmap(NULL, m->base_len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    }
    if (m->base == MAP_FAILED) {
        m->base = NULL;
        err = -errno;
        map_set_error("region: mmap: %s", strerror(errno));
        goto fail;
    }
    m->hdr = (struct region_hdr *)m->base;
    m->st = (struct region_state *)(m->base + STATE_OFF);
    m->locks = m->base + lo.locks_off;
    m->aux = lo.aux_size && lo.aux_off < m->base_len ? m->base + lo.aux_off : NULL;
    m->data = lo.data_off < m->base_len ? m->base + lo.data_off : NULL;
    m->lru = lo.lru_off ? m->base + lo.lru_off : NULL;
    if (ring && (err = attach_rings(m, &lo)))
        goto fail;
    if (mapped)
        munmap(mapped, mapped_len);
    *out = m;
    return 0;
fail:
    if (mapped)
        munmap(mapped, mapped_len);
    if (fd >= 0)
        close(fd);
    bpfg_map_close(m);
    return err;
}

static int attach(int fd, struct bpfg_map **out)
{
    return attach_mapped(fd, NULL, 0, NULL, out);
}

#ifndef BPFG_FREESTANDING
int bpfg_map_file_layout(int fd)
{
    struct region_hdr h;
    ssize_t n = pread(fd, &h, sizeof(h), 0);
    if (n < 0)
        return -errno;
    return (size_t)n == sizeof(h) && h.magic == REGION_MAGIC ? (int)h.version : 0;
}

int bpfg_map_upgrade_fd(int fd, bool apply)
{
    struct region_hdr h;
    struct layout lo = {0};
    if (read_hdr(fd, &h) != 0 || h.magic != REGION_MAGIC || layout_served(h.map_type, h.version))
        return 0; /* a hash region of layout 4 is served as it is: its old writers may live on */
    bool older = h.version == 3 || h.version == 4;
    if (!older || map_hash_family(h.map_type)) {
        map_set_error("region: layout version %u, this build reads %u%s", h.version, REGION_VERSION,
                      older ? " (a hash map's region of layout 3, before the per-stripe counts, is not converted)"
                            : "");
        return -EPROTONOSUPPORT;
    }
    h.version = REGION_VERSION;
    int err = validate_hdr(fd, &h, &lo);
    if (err || !apply)
        return err;
    if (pwrite(fd, &h.version, sizeof(h.version), offsetof(struct region_hdr, version)) != sizeof(h.version)) {
        map_set_error("region: writing the layout version: %s", strerror(errno));
        return -errno;
    }
    return 0;
}
#endif

int bpfg_map_open_fd(int fd, struct bpfg_map **out)
{
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0) {
        map_set_error("region: dup fd %d: %s", fd, strerror(errno));
        return -errno;
    }
    struct stat st;
    if (fstat(dfd, &st) == 0 && !S_ISREG(st.st_mode)) /* regions are memfds or files */
        return map_open_kernel(dfd, out);
    return attach(dfd, out);
}

/* The region's file: a memfd sealed against resizing, (dirfd >= 0) a
 * new file `name` in that directory, mode 0600 (it cannot be sealed:
 * bpfg_map_create_in), or (given >= 0) a duplicate of the caller's empty
 * file (bpfg_map_create_fd). Returns the fd or a negative errno. */
static int region_file(int given, int dirfd, const char *name, const char *mname, off_t size)
{
    int fd = given >= 0   ? fcntl(given, F_DUPFD_CLOEXEC, 0)
             : dirfd >= 0 ? openat(dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600)
                          : memfd_create(mname, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        map_set_error("create: %s: %s", given >= 0 ? "dup" : dirfd >= 0 ? "openat" : "memfd_create", strerror(errno));
        return -errno;
    }
    if (ftruncate(fd, size) < 0 ||
        (given < 0 && dirfd < 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)) {
        int err = -errno;
        map_set_error("create: size/seal the region: %s", strerror(errno));
        close(fd);
        if (dirfd >= 0)
            unlinkat(dirfd, name, 0);
        return err;
    }
    return fd;
}

static int create_region(const struct bpfg_map_spec *spec_in, uint32_t version, int given, int dirfd, const char *fname,
                         struct bpfg_map **out);

int bpfg_map_create(const struct bpfg_map_spec *spec, struct bpfg_map **out)
{
    return create_region(spec, REGION_VERSION, -1, -1, NULL, out);
}

int bpfg_map_create_in(const struct bpfg_map_spec *spec, int dirfd, const char *name, struct bpfg_map **out)
{
    if (dirfd < 0 || !name)
        return -EINVAL;
    return create_region(spec, REGION_VERSION, -1, dirfd, name, out);
}

int bpfg_map_create_fd(const struct bpfg_map_spec *spec, int fd, struct bpfg_map **out)
{
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != 0) {
        map_set_error("create: fd %d is not an empty regular file", fd);
        return -EINVAL;
    }
    return create_region(spec, REGION_VERSION, fd, -1, NULL, out);
}

#ifndef BPFG_FREESTANDING
int bpfg_map_create_layout(const struct bpfg_map_spec *spec, uint32_t version, struct bpfg_map **out)
{
    if (!spec || !layout_served(spec->type, version)) {
        map_set_error("create: layout version %u is not served for this map type", version);
        return -EPROTONOSUPPORT;
    }
    return create_region(spec, version, -1, -1, NULL, out);
}
#endif

/* Checks spec_in, fills in its defaults (*spec) and computes its layout. */
static int create_plan(const struct bpfg_map_spec *spec_in, uint32_t version, struct bpfg_map_spec *spec,
                       struct layout *lo, const struct map_ops **ops_out)
{
    if (!spec_in)
        return -EINVAL;
    *spec = *spec_in;
    const struct map_ops *ops = ops_for(spec->type);
    if (!ops) {
        map_set_error("create: unsupported map type %u", spec->type);
        return -EINVAL;
    }
    if (!spec->nr_cpus)
        spec->nr_cpus = bpfg_possible_cpus();
    if (spec->nr_cpus > MAX_CPUS)
        return -EINVAL;
    if (spec->map_flags & BPFG_F_GLOBAL_DATA)
        spec->map_flags |= BPF_F_MMAPABLE;
    if (spec->type == BPF_MAP_TYPE_PERF_EVENT_ARRAY && !spec->map_extra)
        spec->map_extra = BPFG_PERF_RING_DEFAULT;
    int err = ops->check(spec);
    if (err) {
        map_set_error("create: invalid %s parameters (key %u value %u entries %u flags %#x)",
                      bpfg_map_type_name(spec->type), spec->key_size, spec->value_size, spec->max_entries,
                      spec->map_flags);
        return err;
    }
    memset(lo, 0, sizeof(*lo));
    layout_at(ops, spec, version, lo);
    *ops_out = ops;
    return 0;
}

static void header_write(struct region_hdr *h, const struct bpfg_map_spec *spec, uint32_t version,
                         const struct layout *lo, uint32_t seed)
{
    h->version = version;
    h->hdr_size = HDR_SIZE;
    h->map_type = spec->type;
    h->key_size = spec->key_size;
    h->value_size = spec->value_size;
    h->max_entries = spec->max_entries;
    h->map_flags = spec->map_flags;
    h->nr_cpus = spec->nr_cpus;
    h->map_extra = spec->map_extra;
    h->btf_key_type_id = spec->btf_key_type_id;
    h->btf_value_type_id = spec->btf_value_type_id;
    h->hash_seed = spec->map_flags & BPF_F_ZERO_SEED ? 0 : seed;
    h->page_size = REGION_PAGE;
    if (spec->name)
        strncpy(h->name, spec->name, BPFG_MAP_NAME_LEN - 1);
    h->region_size = lo->region_size;
    h->locks_off = lo->locks_off;
    h->n_locks = lo->n_locks;
    h->elem_size = lo->elem_size;
    h->aux_off = lo->aux_off;
    h->aux_size = lo->aux_size;
    h->data_off = lo->data_off;
    h->data_size = lo->data_size;
    h->lru_off = lo->lru_off;
    h->n_elems = lo->n_elems;
    h->n_buckets = lo->n_buckets;
    h->inner = spec->inner;
    /* locks: all zero (free), as the fresh file is */
}

/* Lays the map out in p, the zeroed region's mapping: header, then the
 * type's init on a temporary handle, magic last (a half-initialised region
 * is never accepted). */
static void region_write(uint8_t *p, const struct bpfg_map_spec *spec, const struct map_ops *ops, uint32_t version,
                         const struct layout *lo, uint32_t seed)
{
    struct region_hdr *h = (struct region_hdr *)p;
    header_write(h, spec, version, lo, seed);
    struct bpfg_map tmp = {
        .fd = -1,
        .base = p,
        .base_len = lo->region_size,
        .hdr = h,
        .st = (struct region_state *)(p + STATE_OFF),
        .ops = ops,
        .type = spec->type,
        .key_size = spec->key_size,
        .value_size = spec->value_size,
        .max_entries = spec->max_entries,
        .map_flags = spec->map_flags,
        .nr_cpus = spec->nr_cpus,
        .n_elems = lo->n_elems,
        .elem_size = lo->elem_size,
        .n_buckets = lo->n_buckets,
        .n_locks = lo->n_locks,
        .hash_seed = h->hash_seed,
        .layout = version,
        .value_stride = ROUND8(spec->value_size),
        .key_stride = ROUND8(spec->key_size),
        .inner = spec->inner,
        .locks = p + lo->locks_off,
        .aux = lo->aux_size ? p + lo->aux_off : NULL,
        .data = p + lo->data_off,
        .lru = lo->lru_off ? p + lo->lru_off : NULL,
    };
    if (ops->init)
        ops->init(&tmp);
    atomic_thread_fence(memory_order_release);
    h->magic = REGION_MAGIC;
}

/* The region of layout `version` in the caller's file `given`, a new
 * file dirfd/fname, or (both -1) a sealed memfd. */
static int create_region(const struct bpfg_map_spec *spec_in, uint32_t version, int given, int dirfd, const char *fname,
                         struct bpfg_map **out)
{
    struct bpfg_map_spec spec;
    struct layout lo;
    const struct map_ops *ops;
    if (!out)
        return -EINVAL;
    int err = create_plan(spec_in, version, &spec, &lo, &ops);
    if (err)
        return err;
    char mname[32 + BPFG_MAP_NAME_LEN];
    snprintf(mname, sizeof(mname), "bpfg-map:%.15s", spec.name ? spec.name : "");
    int fd = region_file(given, dirfd, fname, mname, (off_t)lo.region_size);
    if (fd < 0)
        return fd;
    uint8_t *p = mmap(NULL, lo.region_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        err = -errno;
        map_set_error("create: mmap: %s", strerror(errno));
        close(fd);
        if (dirfd >= 0)
            unlinkat(dirfd, fname, 0);
        return err;
    }
    uint32_t seed;
    if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
        seed = (uint32_t)(uintptr_t)p ^ (uint32_t)getpid();
    region_write(p, &spec, ops, version, &lo, seed);
    return attach_mapped(fd, p, lo.region_size, &lo, out);
}

int bpfg_map_create_mapped(const struct bpfg_map_spec *spec_in, int fd, void *mapped, size_t len, uint32_t seed,
                           struct bpfg_map **out)
{
    struct bpfg_map_spec spec;
    struct layout lo;
    const struct map_ops *ops;
    int err = fd < 0 || !mapped || !out ? -EINVAL : create_plan(spec_in, REGION_VERSION, &spec, &lo, &ops);
    if (!err && lo.region_size > len) {
        map_set_error("create: the region needs %llu bytes, the file has %zu", (unsigned long long)lo.region_size, len);
        err = -E2BIG;
    }
    int own = err ? -1 : fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (!err && own < 0) {
        err = -errno;
        map_set_error("create: dup: %s", strerror(errno));
    }
    if (err) {
        if (mapped)
            munmap(mapped, len);
        return err;
    }
    region_write(mapped, &spec, ops, REGION_VERSION, &lo, seed);
    return attach_mapped(own, mapped, len, &lo, out);
}

int map_inner_template_check(const struct bpfg_map_spec *s)
{
    const struct bpfg_map_inner *in = &s->inner;
    if (!ops_for(in->type) || bpfg_map_type_is_outer(in->type))
        return -EINVAL;
    return 0;
}

/* The kernel's bpf_map_meta_equal, and array_map_meta_equal for arrays. */
int bpfg_map_inner_check(const struct bpfg_map *o, const struct bpfg_map_info *in)
{
    const struct bpfg_map_inner *t = &o->inner;
    if (!bpfg_map_type_is_outer(o->type) || bpfg_map_type_is_outer(in->type))
        return -EINVAL;
    if (in->type != t->type || in->key_size != t->key_size || in->value_size != t->value_size ||
        in->map_flags != t->map_flags)
        return -EINVAL;
    bool array = t->type == BPF_MAP_TYPE_ARRAY || t->type == BPF_MAP_TYPE_PERCPU_ARRAY;
    if (array && !(t->map_flags & BPF_F_INNER_MAP) && in->max_entries != t->max_entries)
        return -EINVAL;
    return 0;
}

int bpfg_map_fd(const struct bpfg_map *m)
{
    return m->fd;
}

uint32_t bpfg_map_type(const struct bpfg_map *m)
{
    return m->type;
}

void *bpfg_map_mapping(const struct bpfg_map *m, uint32_t i, size_t *len)
{
    if (i == 0) {
        *len = m->base_len;
        return m->base;
    }
    if (!m->ring_bases || i - 1 >= m->n_rings)
        return NULL;
    *len = m->ring_map_len;
    return m->ring_bases[i - 1];
}

void bpfg_map_get_info(const struct bpfg_map *m, struct bpfg_map_info *info)
{
    memset(info, 0, sizeof(*info));
    info->type = m->type;
    info->key_size = m->key_size;
    info->value_size = m->value_size;
    info->max_entries = m->max_entries;
    info->map_flags = m->map_flags;
    info->nr_cpus = m->nr_cpus;
    info->btf_key_type_id = m->hdr->btf_key_type_id;
    info->btf_value_type_id = m->hdr->btf_value_type_id;
    info->map_extra = m->hdr->map_extra;
    info->region_size = m->hdr->region_size;
    bool percpu = m->type == BPF_MAP_TYPE_PERCPU_ARRAY || m->type == BPF_MAP_TYPE_PERCPU_HASH ||
                  m->type == BPF_MAP_TYPE_LRU_PERCPU_HASH;
    info->value_copy_size = percpu ? m->value_stride * m->nr_cpus : m->value_size;
    info->inner = m->inner;
    info->frozen = atomic_load(&m->st->frozen);
    info->repairs = atomic_load(&m->st->repairs);
    memcpy(info->name, m->hdr->name, BPFG_MAP_NAME_LEN);
    info->name[BPFG_MAP_NAME_LEN - 1] = 0;
}

/* ---- dispatch ---- */

void *bpfg_map_lookup_elem(struct bpfg_map *m, const void *key)
{
    return m->ops->lookup ? m->ops->lookup(m, key) : NULL;
}

void *bpfg_map_lookup_elem_run(struct bpfg_map *m, const void *key, struct bpfg_map_run *run)
{
    if (!m->ops->lookup_cpu)
        return m->ops->lookup ? m->ops->lookup(m, key) : NULL;
    uint32_t slot = map_slot_claim(m, run);
    return m->ops->lookup_cpu(m, key, slot != NIL ? slot : map_current_cpu(m));
}

void bpfg_map_run_release(struct bpfg_map_run *run)
{
    for (uint32_t i = 0; i < run->n; i++)
        map_slot_release(run->claim[i].map, run->claim[i].slot);
    run->n = 0;
}

int bpfg_map_update_elem(struct bpfg_map *m, const void *key, const void *value, uint64_t flags)
{
    if (m->map_flags & BPF_F_RDONLY_PROG)
        return -EPERM;
    return m->ops->update ? m->ops->update(m, key, value, flags, MAP_CPU_CURRENT) : -EINVAL;
}

int bpfg_map_update_elem_run(struct bpfg_map *m, const void *key, const void *value, uint64_t flags,
                             struct bpfg_map_run *run)
{
    if (!m->ops->lookup_cpu || (m->map_flags & BPF_F_RDONLY_PROG))
        return bpfg_map_update_elem(m, key, value, flags);
    uint32_t slot = map_slot_claim(m, run);
    return m->ops->update(m, key, value, flags, slot != NIL ? slot : MAP_CPU_CURRENT);
}

int bpfg_map_delete_elem(struct bpfg_map *m, const void *key)
{
    if (m->map_flags & BPF_F_RDONLY_PROG)
        return -EPERM;
    return m->ops->delete ? m->ops->delete (m, key) : -EINVAL;
}

int bpfg_map_push_elem(struct bpfg_map *m, const void *value, uint64_t flags)
{
    return m->ops->push ? m->ops->push(m, value, flags) : -EINVAL;
}

int bpfg_map_pop_elem(struct bpfg_map *m, void *value)
{
    return m->ops->pop ? m->ops->pop(m, value, true) : -EINVAL;
}

int bpfg_map_peek_elem(struct bpfg_map *m, void *value)
{
    return m->ops->pop ? m->ops->pop(m, value, false) : -EINVAL;
}

int bpfg_map_lookup_copy(struct bpfg_map *m, const void *key, void *value)
{
    if (m->map_flags & BPF_F_WRONLY)
        return -EPERM;
    if (m->ops->pop)
        return m->ops->pop(m, value, false);
    return m->ops->lookup_copy ? m->ops->lookup_copy(m, key, value) : -EOPNOTSUPP;
}

static bool sys_writable(struct bpfg_map *m)
{
    return !(m->map_flags & BPF_F_RDONLY) && !atomic_load(&m->st->frozen);
}

int bpfg_map_update_copy(struct bpfg_map *m, const void *key, const void *value, uint64_t flags)
{
    if (!sys_writable(m))
        return -EPERM;
    if (m->ops->push)
        return m->ops->push(m, value, flags);
    return m->ops->update ? m->ops->update(m, key, value, flags, MAP_CPU_ALL) : -EOPNOTSUPP;
}

int bpfg_map_delete_copy(struct bpfg_map *m, const void *key)
{
    if (!sys_writable(m))
        return -EPERM;
    return m->ops->delete ? m->ops->delete (m, key) : -EINVAL;
}

int bpfg_map_lookup_and_delete_copy(struct bpfg_map *m, const void *key, void *value)
{
    if (!sys_writable(m))
        return -EPERM;
    if (m->ops->pop)
        return m->ops->pop(m, value, true);
    return m->ops->lookup_and_delete ? m->ops->lookup_and_delete(m, key, value) : -EOPNOTSUPP;
}

int bpfg_map_get_next_key(struct bpfg_map *m, const void *key, void *next)
{
    return m->ops->get_next_key ? m->ops->get_next_key(m, key, next) : -EINVAL;
}

static uint32_t *pool_next(struct bpfg_map *m, uint32_t i, size_t next_off)
{
    return (uint32_t *)(m->data + (uint64_t)i * m->elem_size + next_off);
}

uint32_t map_pool_alloc(struct bpfg_map *m, size_t next_off)
{
    uint32_t i = atomic_load_explicit(&m->st->t_free, memory_order_relaxed);
    if (i != NIL) {
        if (i >= m->n_elems) {
            atomic_store(&m->st->needs_repair, 1);
            return NIL;
        }
        atomic_store_explicit(&m->st->t_free, *pool_next(m, i, next_off), memory_order_relaxed);
        return i;
    }
    uint32_t b = atomic_load_explicit(&m->st->t_bump, memory_order_relaxed);
    if (b >= m->n_elems)
        return NIL;
    atomic_store_explicit(&m->st->t_bump, b + 1, memory_order_relaxed);
    return b;
}

void map_pool_free(struct bpfg_map *m, uint32_t i, size_t next_off)
{
    *pool_next(m, i, next_off) = atomic_load_explicit(&m->st->t_free, memory_order_relaxed);
    atomic_store_explicit(&m->st->t_free, i, memory_order_release);
}

int bpfg_map_elem_at(struct bpfg_map *m, uint64_t *cursor, void **key, void **value, uint32_t *index)
{
    if (!m->ops->elem_at)
        return -EOPNOTSUPP;
    uint64_t at = *cursor;
    int err = m->ops->elem_at(m, cursor, key, value);
    if (!err && !*key) {
        *index = (uint32_t)at;
        *key = index;
    }
    return err;
}

uint64_t bpfg_map_entries(const struct bpfg_map *m)
{
    return m->ops->entries ? m->ops->entries((struct bpfg_map *)m) : m->max_entries;
}

int bpfg_map_freeze(struct bpfg_map *m)
{
    if (m->type == BPF_MAP_TYPE_RINGBUF || m->type == BPF_MAP_TYPE_PERF_EVENT_ARRAY ||
        m->type == BPF_MAP_TYPE_PROG_ARRAY)
        return -ENOTSUPP;
    if (atomic_exchange(&m->st->frozen, 1))
        return -EBUSY;
    return 0;
}

uint32_t bpfg_map_prog_array_get(struct bpfg_map *m, uint32_t index)
{
    if (m->type != BPF_MAP_TYPE_PROG_ARRAY || index >= m->max_entries)
        return 0;
    return atomic_load_explicit((_Atomic uint32_t *)(m->data + (uint64_t)index * 4), memory_order_acquire);
}

void *bpfg_map_value_area(struct bpfg_map *m, size_t *size, uint64_t *file_off)
{
    if (m->type != BPF_MAP_TYPE_ARRAY || !(m->map_flags & BPF_F_MMAPABLE))
        return NULL;
    if (size)
        *size = (size_t)m->value_stride * m->max_entries;
    if (file_off) /* a kernel array's values start its fd */
        *file_off = m->kernel ? 0 : (uint64_t)(m->data - m->base);
    return m->data;
}
