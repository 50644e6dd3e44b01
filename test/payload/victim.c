/* The process test_payload injects: makes calls until the shared `calls`
 * reaches `target`, in the mode the test chose, and records what they
 * returned. victim_add and victim_rec start with a 5-byte nop, so a test
 * can hook them without relocating instructions.
 * Usage: victim FD (a memfd holding struct victim_shared). */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "victim.h"

int victim_add(int a, int b);
/* Returns depth after depth + 1 nested calls; with jb != NULL the deepest
 * call longjmps to jb instead of returning. */
int victim_rec(int depth, jmp_buf *jb);
/* Returns its own return address (a uretprobe's trampoline when probed). */
uint64_t victim_ra(void);

__asm__(".text\n"
        ".globl victim_add\n"
        ".type victim_add, @function\n"
        "victim_add:\n"
        "    .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n" /* nopl 0(%rax,%rax,1) */
        "    lea (%rdi,%rsi), %eax\n"
        "    ret\n"
        ".size victim_add, . - victim_add\n"
        ".globl victim_rec\n"
        ".type victim_rec, @function\n"
        "victim_rec:\n"
        "    .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"
        "    push %rbx\n"
        "    test %edi, %edi\n"
        "    jz 1f\n"
        "    sub $1, %edi\n"
        "    call victim_rec\n"
        "    add $1, %eax\n"
        "    pop %rbx\n"
        "    ret\n"
        "1:  test %rsi, %rsi\n"
        "    jz 2f\n"
        "    mov %rsi, %rdi\n"
        "    mov $1, %esi\n"
        "    call longjmp@PLT\n"
        "2:  xor %eax, %eax\n"
        "    pop %rbx\n"
        "    ret\n"
        ".size victim_rec, . - victim_rec\n"
        ".globl victim_ra\n"
        ".type victim_ra, @function\n"
        "victim_ra:\n"
        "    .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"
        "    mov (%rsp), %rax\n"
        "    ret\n"
        ".size victim_ra, . - victim_ra\n");

static struct victim_shared *sh;
static int (*volatile add_fn)(int, int) = victim_add;
static int (*volatile rec_fn)(int, jmp_buf *) = victim_rec;
static uint64_t (*volatile ra_fn)(void) = victim_ra;

static void record(int got, int want)
{
    __atomic_fetch_add(&sh->sum_ret, (uint32_t)got, __ATOMIC_RELAXED);
    sh->last_ret = got;
    if (got != want)
        __atomic_fetch_add(&sh->wrong, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&sh->calls, 1, __ATOMIC_RELEASE);
}

static void nap(void)
{
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
}

static void *worker(void *arg)
{
    (void)arg;
    while (!sh->quit) {
        if (sh->mode != VICTIM_THREADS) {
            nap();
            continue;
        }
        uint64_t n = __atomic_load_n(&sh->claimed, __ATOMIC_RELAXED);
        if (n >= sh->target) {
            nap();
            continue;
        }
        if (!__atomic_compare_exchange_n(&sh->claimed, &n, n + 1, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            continue;
        record(add_fn((int)n, 1), (int)n + 1);
    }
    return NULL;
}

/* VICTIM_SLOTS: a round's threads are all alive while any calls, so
 * each has a TCB, and a thread slot, of its own. */
static pthread_barrier_t slot_barrier;

static void *slot_worker(void *arg)
{
    volatile struct victim_slot_rec *rec = arg;
    pthread_barrier_wait(&slot_barrier);
    rec->tp = (uint64_t)pthread_self();
    uint64_t sum = 0;
    for (int i = 0; i < VICTIM_SLOT_CALLS; i++) {
        uint64_t ra = ra_fn();
        if (i == 0)
            rec->ra = ra;
        else if (ra != rec->ra)
            rec->changed++;
        sum += ra;
    }
    __atomic_fetch_add(&sh->ra_sum, sum, __ATOMIC_RELAXED);
    pthread_barrier_wait(&slot_barrier);
    return NULL;
}

static void slot_round(uint64_t round)
{
    pthread_t t[VICTIM_SLOT_THREADS];
    int n = 0;
    if (round < VICTIM_SLOT_ROUNDS && pthread_barrier_init(&slot_barrier, NULL, VICTIM_SLOT_THREADS) == 0) {
        while (n < VICTIM_SLOT_THREADS && pthread_create(&t[n], NULL, slot_worker, (void *)&sh->slots[round][n]) == 0)
            n++;
        if (n < VICTIM_SLOT_THREADS)
            exit(5); /* the others wait at the barrier for good */
        for (int i = 0; i < n; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&slot_barrier);
    }
    __atomic_fetch_add(&sh->calls, 1, __ATOMIC_RELEASE);
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int fd = atoi(argv[1]);
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (sh == MAP_FAILED)
        return 3;
    close(fd);
    pthread_t t[VICTIM_WORKERS];
    for (int i = 0; i < VICTIM_WORKERS; i++)
        if (pthread_create(&t[i], NULL, worker, NULL) != 0)
            return 4;
    sh->rec_func = (uint64_t)(uintptr_t)victim_rec;
    sh->ra_func = (uint64_t)(uintptr_t)victim_ra;
    sh->func = (uint64_t)(uintptr_t)victim_add;
    while (!sh->quit) {
        if (sh->mode == VICTIM_THREADS || sh->calls >= sh->target) {
            nap();
            continue;
        }
        int a = (int)sh->calls, depth = (int)sh->depth;
        switch (sh->mode) {
        case VICTIM_ADD: record(add_fn(a, 1), a + 1); break;
        case VICTIM_REC: record(rec_fn(depth, NULL), depth); break;
        case VICTIM_SLOTS: {
            static uint64_t rounds;
            slot_round(rounds++);
            break;
        }
        case VICTIM_TIMED: {
            struct timespec t0, t1;
            int r = 0;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            for (int i = 0; i < depth; i++)
                r += add_fn(i, 1);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            sh->timed_ns =
                (uint64_t)(t1.tv_sec - t0.tv_sec) * 1000000000ull + (uint64_t)t1.tv_nsec - (uint64_t)t0.tv_nsec;
            record(r, (int)((int64_t)depth * (depth + 1) / 2));
            break;
        }
        case VICTIM_REC_LONGJMP: {
            static jmp_buf jb;
            if (a % 2) {
                record(rec_fn(depth, NULL), depth);
            } else if (setjmp(jb) == 0) {
                rec_fn(depth, &jb);
                record(-1, depth); /* never reached */
            } else {
                sh->longjmps++;
                record(depth, depth);
            }
            break;
        }
        }
    }
    for (int i = 0; i < VICTIM_WORKERS; i++)
        pthread_join(t[i], NULL);
    return 0;
}
