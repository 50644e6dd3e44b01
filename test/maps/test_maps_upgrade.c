/* A hash region of layout 4 (before the stripes' spare elements) across an
 * upgrade: writers that mapped it before the upgrade (an older build's
 * payloads, in a process of their own) and writers of a handle opened after
 * bpfg_map_upgrade_fd share it with exact results (FORMAT.md "Validation"). */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"

#define THREADS 2  /* per process */
#define KEYS 2000  /* per thread */
#define REPLACES 6 /* per key and round */
#define ROUNDS 4
#define OLD_LAYOUT 4u
#define SPARE_OFF 40u /* a lock line's stripe spare (layout 5) */
#define LOCK_STRIDE 64u

/* The header fields this test reads (FORMAT.md "Header"). */
struct hdr_view {
    uint32_t version, n_locks, n_elems;
    uint64_t locks_off;
};

static struct hdr_view read_view(int fd)
{
    struct hdr_view h;
    cr_assert_eq(pread(fd, &h.version, 4, 8), 4);
    cr_assert_eq(pread(fd, &h.locks_off, 8, 88), 8);
    cr_assert_eq(pread(fd, &h.n_locks, 4, 96), 4);
    cr_assert_eq(pread(fd, &h.n_elems, 4, 144), 4);
    return h;
}

/* Stripes holding a spare element (what layout 4's writers cannot see). */
static uint32_t spares_set(int fd)
{
    struct hdr_view h = read_view(fd);
    uint32_t n = 0;
    for (uint32_t s = 0; s < h.n_locks; s++) {
        uint32_t sp = 0;
        cr_assert_eq(pread(fd, &sp, 4, (off_t)(h.locks_off + (uint64_t)s * LOCK_STRIDE + SPARE_OFF)), 4);
        n += sp != 0;
    }
    return n;
}

static uint64_t val_of(uint32_t key, uint32_t round, uint32_t rep)
{
    return (uint64_t)key << 32 | round << 16 | rep;
}

struct writer {
    struct bpfg_map *m;
    uint32_t first; /* keys [first, first + KEYS) are this thread's */
    int errors;
};

/* Inserts its keys, replaces each REPLACES times, deletes the odd ones;
 * ROUNDS times. Ends with the even keys holding their last value. */
static void *write_keys(void *arg)
{
    struct writer *w = arg;
    for (uint32_t r = 0; r < ROUNDS; r++) {
        for (uint32_t k = w->first; k < w->first + KEYS; k++) {
            uint64_t v = val_of(k, r, 0);
            int flags = r == 0 || (k & 1) ? BPF_NOEXIST : BPF_EXIST;
            w->errors += bpfg_map_update_elem(w->m, &k, &v, flags) != 0;
        }
        for (uint32_t rep = 1; rep <= REPLACES; rep++)
            for (uint32_t k = w->first; k < w->first + KEYS; k++) {
                uint64_t v = val_of(k, r, rep);
                w->errors += bpfg_map_update_elem(w->m, &k, &v, BPF_EXIST) != 0;
            }
        for (uint32_t k = w->first | 1; k < w->first + KEYS; k += 2)
            w->errors += bpfg_map_delete_elem(w->m, &k) != 0;
    }
    return NULL;
}

/* THREADS writers on m, keys from first; the errors they met. */
static int run_writers(struct bpfg_map *m, uint32_t first)
{
    pthread_t t[THREADS];
    struct writer w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct writer){.m = m, .first = first + (uint32_t)i * KEYS};
        cr_assert_eq(pthread_create(&t[i], NULL, write_keys, &w[i]), 0);
    }
    int errors = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        errors += w[i].errors;
    }
    return errors;
}

/* Every writer's even keys hold their last value, odd ones are gone. */
static void expect_values(struct bpfg_map *m, uint32_t nkeys)
{
    for (uint32_t k = 0; k < nkeys; k++) {
        uint64_t v = 0;
        int err = bpfg_map_lookup_copy(m, &k, &v);
        if (k & 1) {
            cr_assert_eq(err, -ENOENT, "key %u deleted", k);
            continue;
        }
        cr_assert_eq(err, 0, "key %u present", k);
        cr_assert_eq(v, val_of(k, ROUNDS - 1, REPLACES), "key %u: %#llx", k, (unsigned long long)v);
    }
}

/* ... and they are the only entries. */
static void expect_final(struct bpfg_map *m, uint32_t nkeys)
{
    expect_values(m, nkeys);
    cr_assert_eq(bpfg_map_entries(m), nkeys / 2);
}

/* Fills the map (through the old handle) to max_entries with new keys:
 * every one fits, none evicts an entry, one more does not fit. */
static void fill_to_capacity(struct bpfg_map *old, struct bpfg_map *cur, uint32_t nkeys, uint32_t max)
{
    uint32_t first = nkeys, room = max - nkeys / 2;
    for (uint32_t k = first; k < first + room; k++) {
        uint64_t v = k;
        cr_assert_eq(bpfg_map_update_elem(old, &k, &v, BPF_NOEXIST), 0, "key %u of %u", k - first, room);
    }
    cr_assert_eq(bpfg_map_entries(cur), max);
    expect_values(cur, nkeys); /* no entry of the writers evicted */
    for (uint32_t k = first; k < first + room; k++) {
        uint64_t v = 0;
        cr_assert_eq(bpfg_map_lookup_copy(cur, &k, &v), 0);
        cr_assert_eq(v, k);
    }
    uint32_t k = first + room;
    uint64_t v = k;
    if (bpfg_map_type(cur) == BPF_MAP_TYPE_HASH)
        cr_assert_eq(bpfg_map_update_elem(cur, &k, &v, BPF_NOEXIST), -E2BIG, "full at max_entries");
}

static struct bpfg_map *make_old_hash(uint32_t type, uint32_t max_entries)
{
    struct bpfg_map_spec s = {.type = type, .key_size = 4, .value_size = 8, .max_entries = max_entries, .name = "l4"};
    struct bpfg_map *m = NULL;
    cr_assert_eq(bpfg_map_create_layout(&s, OLD_LAYOUT, &m), 0, "%s", bpfg_map_last_error());
    return m;
}

/* The old writers: a process that mapped the region before the upgrade. */
static pid_t start_old_writers(struct bpfg_map *old, int go[2])
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        char c;
        close(go[1]);
        if (read(go[0], &c, 1) != 1)
            _exit(3);
        _exit(run_writers(old, 0) ? 1 : 0);
    }
    close(go[0]);
    return pid;
}

static void upgrade_and_share(uint32_t type)
{
    const uint32_t nkeys = 2 * THREADS * KEYS, max = nkeys + 64;
    struct bpfg_map *old = make_old_hash(type, max);
    int fd = bpfg_map_fd(old);
    struct hdr_view h = read_view(fd);
    cr_assert_eq(h.version, OLD_LAYOUT);
    cr_assert_eq(h.n_elems, max + h.n_locks, "layout 4: one element in flight per stripe, no spares");

    int go[2];
    cr_assert_eq(pipe(go), 0);
    pid_t pid = start_old_writers(old, go);
    /* The restarted server's side: upgrade leaves it at layout 4, open
     * serves it with layout 4's rules. */
    cr_assert_eq(bpfg_map_upgrade_fd(fd, true), 0, "%s", bpfg_map_last_error());
    cr_assert_eq(read_view(fd).version, OLD_LAYOUT, "the region keeps its layout while old writers may live");
    struct bpfg_map *cur = NULL;
    cr_assert_eq(bpfg_map_open_fd(fd, &cur), 0, "%s", bpfg_map_last_error());
    cr_assert_eq(write(go[1], "g", 1), 1);
    close(go[1]);
    int errors = run_writers(cur, nkeys / 2);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "old writers: status %#x", st);
    cr_assert_eq(errors, 0, "new writers met %d errors", errors);

    expect_final(cur, nkeys);
    cr_assert_eq(spares_set(fd), 0, "no stripe of a layout-4 region holds a spare");
    struct bpfg_map_info info;
    bpfg_map_get_info(cur, &info);
    cr_assert_eq(info.repairs, 0, "nobody died, nothing to repair");
    /* The repair walk keeps every entry, and the whole capacity is there:
     * no element leaked, none in two places. */
    cr_assert_eq(bpfg_map_check_repair(cur), 0);
    expect_final(cur, nkeys);
    fill_to_capacity(old, cur, nkeys, max);
    bpfg_map_close(cur);
    bpfg_map_close(old);
}

Test(maps_upgrade, layout4_hash_shared_by_old_and_new_writers)
{
    upgrade_and_share(BPF_MAP_TYPE_HASH);
}

Test(maps_upgrade, layout4_lru_hash_shared_by_old_and_new_writers)
{
    upgrade_and_share(BPF_MAP_TYPE_LRU_HASH);
}

/* Only the hash family keeps an older layout; a region of this layout is
 * made as ever. */
Test(maps_upgrade, older_layouts_served_only_for_hash_maps)
{
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 4};
    struct bpfg_map *m = NULL;
    cr_assert_eq(bpfg_map_create_layout(&s, OLD_LAYOUT, &m), -EPROTONOSUPPORT);
    s.type = BPF_MAP_TYPE_HASH;
    cr_assert_eq(bpfg_map_create_layout(&s, 3, &m), -EPROTONOSUPPORT);
    cr_assert_eq(bpfg_map_create_layout(&s, BPFG_MAP_LAYOUT_VERSION, &m), 0, "%s", bpfg_map_last_error());
    cr_assert_eq(read_view(bpfg_map_fd(m)).n_elems, 4 + 2 * read_view(bpfg_map_fd(m)).n_locks);
    bpfg_map_close(m);
}
