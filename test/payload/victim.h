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
    VICTIM_SLOTS = 5,       /* one call = a round of VICTIM_SLOT_THREADS new threads calling victim_ra */
};

#define VICTIM_WORKERS 4
#define VICTIM_SLOT_THREADS 8 /* VICTIM_SLOTS: threads a round, all alive at once */
#define VICTIM_SLOT_ROUNDS 3  /* rounds recorded (glibc hands later rounds the first's stacks and TCBs) */
#define VICTIM_SLOT_CALLS 100 /* victim_ra calls per thread */

/* What a VICTIM_SLOTS thread saw: its thread pointer (pthread_self, the
 * fs base), the return address victim_ra found in its first call, and the
 * calls that found another. */
struct victim_slot_rec {
    uint64_t tp;
    uint64_t ra;
    uint64_t changed;
};

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
    volatile uint64_t ra_func; /* &victim_ra */
    volatile uint64_t ra_sum;  /* VICTIM_SLOTS: sum of what victim_ra returned */
    volatile struct victim_slot_rec slots[VICTIM_SLOT_ROUNDS][VICTIM_SLOT_THREADS];
};

#define VICTIM_PROLOGUE_LEN 5 /* the functions start with a 5-byte nop */

#endif
