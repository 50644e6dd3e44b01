/* Helpers the map tests share: random bytes for the differential tests,
 * one round of the SIGKILL-mid-update tests. */
#ifndef BPFGRAFT_TEST_MAPS_TESTUTIL_H
#define BPFGRAFT_TEST_MAPS_TESTUTIL_H

#include <criterion/criterion.h>
#include <signal.h>
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
