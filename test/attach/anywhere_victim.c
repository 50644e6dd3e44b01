/* Victim of test_anywhere.py: THREADS threads call the functions of
 * anywhere_fns.S while the shared control page says go, counting their
 * calls there (and wrong results), so a test can compare a probe's count
 * with the victim's exactly.
 *
 *   anywhere-victim CONTROL_FILE THREADS */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int loop_fn(int n);
int three_fn(void);
int off_fn(int n);
int raw_fn(int a, int b);
int jt_fn(int x);
int jt_dispatch(int x, long k);
int two_fn(int x);
int edge_fn(int n);
int tight_fn(void);
int redzone_fn(int a, int b);
int redhop_fn(int a, int n);
int inner_fn(int n);
int back_fn(void);

/* Compiled C, so .eh_frame has its FDE: in the stripped copy that FDE is
 * the only record of its extent. Global, so no IPA clone renames it. */
__attribute__((noinline)) long c_fn(long i)
{
    __asm__ volatile("" ::: "memory");
    return i * 3 + 1;
}

#define LOOPS 3 /* iterations of loop_fn / off_fn per call */

struct control {
    atomic_long go, active;
    atomic_long loop_calls, three_calls, off_iterations, raw_calls, jt_calls, dispatch_calls;
    atomic_long bad_results;
    atomic_long two_calls, edge_calls, tight_calls;
    atomic_long redzone_calls, redhop_calls, inner_calls, back_calls, c_calls;
};

static struct control *ctl;

static void one_round(long i)
{
    long bad = 0;
    bad += loop_fn(LOOPS) != LOOPS;
    bad += three_fn() != 0;
    bad += off_fn(LOOPS) != LOOPS;
    bad += raw_fn((int)i & 0xff, 7) != ((int)i & 0xff) + 8;
    bad += jt_fn((int)i & 0xff) != ((int)i & 0xff) + 3;
    bad += jt_dispatch((int)i & 0xff, i & 1) != ((int)i & 0xff) + 2 - (i & 1);
    bad += two_fn((int)i) != (int)i;
    bad += edge_fn(LOOPS) != 0;
    bad += tight_fn() != 0;
    bad += redzone_fn((int)i, 5) != (int)i + 5;
    bad += redhop_fn((int)i & 0xff, LOOPS) != ((int)i & 0xff) * LOOPS;
    bad += inner_fn(LOOPS) != 1;
    bad += back_fn() != 0;
    bad += c_fn(i) != i * 3 + 1;
    atomic_fetch_add(&ctl->loop_calls, 1);
    atomic_fetch_add(&ctl->three_calls, 1);
    atomic_fetch_add(&ctl->off_iterations, LOOPS);
    atomic_fetch_add(&ctl->raw_calls, 1);
    atomic_fetch_add(&ctl->jt_calls, 1);
    atomic_fetch_add(&ctl->dispatch_calls, 1);
    atomic_fetch_add(&ctl->two_calls, 1);
    atomic_fetch_add(&ctl->edge_calls, 1);
    atomic_fetch_add(&ctl->tight_calls, 1);
    atomic_fetch_add(&ctl->redzone_calls, 1);
    atomic_fetch_add(&ctl->redhop_calls, 1);
    atomic_fetch_add(&ctl->inner_calls, 1);
    atomic_fetch_add(&ctl->back_calls, 1);
    atomic_fetch_add(&ctl->c_calls, 1);
    if (bad)
        atomic_fetch_add(&ctl->bad_results, bad);
}

static void *worker(void *arg)
{
    (void)arg;
    for (long i = 0;; i++) {
        atomic_fetch_add(&ctl->active, 1);
        if (atomic_load(&ctl->go))
            one_round(i);
        atomic_fetch_sub(&ctl->active, 1);
        if (!atomic_load(&ctl->go))
            usleep(1000);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s CONTROL_FILE THREADS\n", argv[0]);
        return 2;
    }
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) {
        perror(argv[1]);
        return 1;
    }
    ctl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ctl == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    close(fd);
    int n = atoi(argv[2]);
    for (int i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            return 1;
        }
    }
    for (;;)
        pause();
}
