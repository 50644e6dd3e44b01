/* A target of bpfgraft-bench restart: calls bench_target() (probed) every
 * 2 ms and keeps, in slot argv[2] of the shared page file argv[1], its
 * calls and the longest gap between two iterations since the bench last
 * bumped the page's generation word: a thread stopped by a tracer shows as
 * a gap that long. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "restart_page.h"

volatile long bench_sink;

__attribute__((noinline)) long bench_target(long x)
{
    bench_sink = x;
    return x + 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv)
{
    int fd = argc > 2 ? open(argv[1], O_RDWR) : -1;
    long slot = argc > 2 ? atol(argv[2]) : -1;
    if (fd < 0 || slot < 0 || slot >= RESTART_PAGE_SLOTS)
        return 2;
    struct restart_page *page = mmap(NULL, sizeof(*page), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (page == MAP_FAILED)
        return 2;
    struct restart_slot *me = &page->slots[slot];
    uint64_t gen = page->gen, last = now_ns();
    for (long i = 0;; i++) {
        struct timespec ts = {0, 2000000};
        nanosleep(&ts, NULL);
        bench_target(i);
        uint64_t t = now_ns();
        if (page->gen != gen) {
            gen = page->gen;
            me->max_gap_ns = 0;
        } else if (t - last > me->max_gap_ns) {
            me->max_gap_ns = t - last;
        }
        last = t;
        me->calls = (uint64_t)i + 1;
    }
}
