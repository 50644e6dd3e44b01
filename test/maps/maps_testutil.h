/* Helpers the map tests share: random bytes for the differential tests,
 * one round of the SIGKILL-mid-update tests, stack trace maps. */
#ifndef BPFGRAFT_TEST_MAPS_TESTUTIL_H
#define BPFGRAFT_TEST_MAPS_TESTUTIL_H

#include <bpf/bpf.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "maps.h"

static inline void rand_bytes(unsigned *seed, void *buf, size_t n)
{
    uint8_t *b = buf;
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)rand_r(seed);
}

/* Creating s fails, or succeeds, as the kernel's map creation does. */
static inline void expect_create_like_kernel(const struct bpfg_map_spec *s, size_t casei)
{
    LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = s->map_flags, .map_extra = s->map_extra);
    int kfd = bpf_map_create(s->type, "e", s->key_size, s->value_size, s->max_entries, &o);
    int rk = kfd < 0 ? -errno : 0;
    if (kfd >= 0)
        close(kfd);
    struct bpfg_map *m = NULL;
    int ro = bpfg_map_create(s, &m);
    bpfg_map_close(m);
    cr_assert_eq(ro, rk, "case %zu: ours %d kernel %d", casei, ro, rk);
}

/* A STACK_TRACE map of depth frames per stack. */
static inline struct bpfg_map *stack_map_create(uint32_t entries, uint32_t depth)
{
    struct bpfg_map_spec s = {
        .type = BPF_MAP_TYPE_STACK_TRACE, .key_size = 4, .value_size = depth * 8, .max_entries = entries};
    struct bpfg_map *m = NULL;
    cr_assert_eq(bpfg_map_create(&s, &m), 0, "%s", bpfg_map_last_error());
    return m;
}

/* n return addresses of a stack numbered base (distinct per base). */
static inline void stack_fill(uint64_t *ips, uint32_t n, uint64_t base)
{
    for (uint32_t i = 0; i < n; i++)
        ips[i] = 0x400000 + base * 0x1000 + i * 0x10;
}

/* The stress tests' values: STRESS_VW equal words (seq << 16 | key), so a
 * torn value shows. */
#define STRESS_VW 4

static inline void make_val(uint64_t *v, uint32_t key, uint64_t seq)
{
    for (int i = 0; i < STRESS_VW; i++)
        v[i] = seq << 16 | key;
}

static inline bool val_ok(const uint64_t *v, uint32_t key)
{
    for (int i = 1; i < STRESS_VW; i++)
        if (v[i] != v[0])
            return false;
    return (v[0] & 0xffff) == key;
}

/* Two writer processes on m (writer never returns), SIGKILLed after
 * 0.2-2.2 ms, wherever they are: in an update, holding a lock. */
static inline void kill_two_writers(struct bpfg_map *m, void (*writer)(struct bpfg_map *, unsigned), int it,
                                    unsigned *seed)
{
    pid_t pids[2];
    for (int c = 0; c < 2; c++) {
        pids[c] = fork();
        cr_assert_geq(pids[c], 0);
        if (pids[c] == 0)
            writer(m, (unsigned)(it * 2 + c + 1));
    }
    usleep(200 + (unsigned)rand_r(seed) % 2000);
    for (int c = 0; c < 2; c++) {
        kill(pids[c], SIGKILL);
        int st;
        cr_assert_eq(waitpid(pids[c], &st, 0), pids[c]);
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "writer exited early: %#x", st);
    }
}

#endif
