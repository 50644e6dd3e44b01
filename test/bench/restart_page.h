/* The page bpfgraft-bench restart shares with its victims (restart_victim.c). */
#ifndef BPFGRAFT_BENCH_RESTART_PAGE_H
#define BPFGRAFT_BENCH_RESTART_PAGE_H

#include <stdint.h>

#define RESTART_PAGE_SLOTS 127

struct restart_slot {
    volatile uint64_t calls;
    volatile uint64_t max_gap_ns; /* since gen last changed */
};

struct restart_page {
    volatile uint64_t gen;
    uint64_t pad;
    struct restart_slot slots[RESTART_PAGE_SLOTS];
};

#endif
