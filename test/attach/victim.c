/* Victim for the attach tests. THREADS threads call probed_add() (in the
 * executable) and lib_probed_mul() (in libattachvictim.so) while the
 * shared control page says go, counting their own calls there, so a test
 * can compare the program's count with the victim's exactly.
 *
 *   attach-victim CONTROL_FILE THREADS [--block]
 * --block: the main thread sits in read() on a pipe nobody writes, to check
 * that a target blocked in a syscall continues correctly. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "victim_lib.h"

struct control {
    atomic_long go;           /* threads call the functions while nonzero */
    atomic_long active;       /* threads inside one loop iteration */
    atomic_long calls;        /* probed_add() calls made */
    atomic_long lib_calls;    /* lib_probed_mul() calls made */
    atomic_long bad_results;  /* a probed function returned a wrong value */
    atomic_long signals;      /* SIGUSR1 received */
    atomic_long read_done;    /* --block: read() returned (with its result) */
    atomic_long usr2;         /* SIGUSR2 received (sent by bpf_send_signal*) */
    atomic_long usr2_outside; /* ... on a thread not inside a probed call */
    atomic_long hold;         /* the SIGUSR2 handler waits while nonzero */
    atomic_long held;         /* threads waiting in the SIGUSR2 handler */
};

/* Which probed call the thread is in: a probe's signal must arrive inside. */
static __thread volatile int in_call;

static struct control *ctl;

volatile long probed_sink;

/* The store makes the function long enough to patch (and RIP-relative). */
__attribute__((noinline)) long probed_add(long a, long b)
{
    probed_sink = a;
    return a + b;
}

static void *worker(void *arg)
{
    long id = (long)arg;
    for (long i = 0;; i++) {
        atomic_fetch_add(&ctl->active, 1);
        if (atomic_load(&ctl->go)) {
            in_call = 1;
            if (probed_add(id, i) != id + i)
                atomic_fetch_add(&ctl->bad_results, 1);
            in_call = 0;
            atomic_fetch_add(&ctl->calls, 1);
            in_call = 2;
            if (lib_probed_mul(id, 3) != id * 3)
                atomic_fetch_add(&ctl->bad_results, 1);
            in_call = 0;
            atomic_fetch_add(&ctl->lib_calls, 1);
        }
        atomic_fetch_sub(&ctl->active, 1);
        if (!atomic_load(&ctl->go))
            usleep(200);
    }
    return NULL;
}

static void on_usr1(int sig)
{
    (void)sig;
    atomic_fetch_add(&ctl->signals, 1);
}

static void on_usr2(int sig)
{
    (void)sig;
    atomic_fetch_add(&ctl->usr2, 1);
    if (!in_call)
        atomic_fetch_add(&ctl->usr2_outside, 1);
    if (atomic_load(&ctl->hold)) {
        atomic_fetch_add(&ctl->held, 1);
        while (atomic_load(&ctl->hold))
            usleep(1000);
        atomic_fetch_sub(&ctl->held, 1);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    int fd = open(argv[1], O_RDWR);
    if (fd < 0 || ftruncate(fd, 4096) != 0)
        return 1;
    ctl = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (ctl == MAP_FAILED)
        return 1;
    signal(SIGUSR1, on_usr1);
    signal(SIGUSR2, on_usr2);
    int n = atoi(argv[2]);
    for (long i = 0; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)i) != 0)
            return 1;
    }
    if (argc > 3 && strcmp(argv[3], "--block") == 0) {
        int p[2];
        char c;
        if (pipe(p) != 0)
            return 1;
        /* blocks until the test writes to /proc/PID/fd/<p[1]> */
        ssize_t r = read(p[0], &c, 1);
        atomic_store(&ctl->read_done, r == 1 && c == 'x' ? 1 : -1);
    }
    for (;;)
        pause();
}
