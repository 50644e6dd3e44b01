/* Shared page between test_payload and the victim process it injects. */
#ifndef BPFGRAFT_TEST_VICTIM_H
#define BPFGRAFT_TEST_VICTIM_H

#include <stdint.h>

enum victim_mode {
    VICTIM_ADD = 0,         /* main thread: victim_add(calls, 1) */
    VICTIM_THREADS = 1,     /* VICTIM_WORKERS threads: victim_add(n, 1) */
    VICTIM_REC = 2,         /* victim_rec(depth): depth + 1 nested calls */
    VICTIM_REC_LONGJMP = 3, /* every other call longjmps out of the deepest frame */
    VICTIM_TIMED = 4,       /* one call = `depth` back-to-back victim_add calls, timed */
};

#define VICTIM_WORKERS 4

struct victim_shared {
    volatile uint64_t func;     /* &victim_add in the victim */
    volatile uint64_t rec_func; /* &victim_rec */
    volatile uint64_t calls;    /* calls made so far */
    volatile uint64_t target;   /* the victim calls until calls == target */
    volatile uint64_t claimed;  /* VICTIM_THREADS: calls started */
    volatile uint64_t sum_ret;  /* sum of (uint32) return values */
    volatile uint64_t wrong;    /* calls that did not return what they should */
    volatile int64_t last_ret;
    volatile uint32_t mode;     /* enum victim_mode */
    volatile uint32_t depth;    /* VICTIM_REC*: recursion depth */
    volatile uint64_t longjmps; /* VICTIM_REC_LONGJMP: calls left by longjmp */
    volatile uint64_t timed_ns; /* VICTIM_TIMED: duration of the last batch */
    volatile uint32_t quit;
};

#define VICTIM_PROLOGUE_LEN 5 /* both functions start with a 5-byte nop */

#endif
