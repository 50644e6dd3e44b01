/* Shared page between test_payload and the victim process it injects. */
#ifndef BPFGRAFT_TEST_VICTIM_H
#define BPFGRAFT_TEST_VICTIM_H

#include <stdint.h>

struct victim_shared {
    volatile uint64_t func;        /* &victim_add in the victim */
    volatile uint64_t calls;       /* calls made so far */
    volatile uint64_t target;      /* the victim calls until calls == target */
    volatile uint64_t sum_ret;     /* sum of (uint32) return values */
    volatile uint64_t wrong;       /* calls that did not return a + b */
    volatile int64_t last_ret;
    volatile uint32_t quit;
    volatile uint32_t threads;     /* worker threads (0: main thread only) */
    volatile uint64_t recursion;   /* >0: also run victim_rec(depth) with longjmp out */
};

#define VICTIM_PROLOGUE_LEN 5      /* victim_add starts with a 5-byte nop */

#endif
