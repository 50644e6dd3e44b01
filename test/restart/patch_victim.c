/* Victim of the patching part of test_restart.py: THREADS threads call
 * crossing_add (patch_fns.S: its jmp site crosses a page boundary) while
 * the shared control page says go, counting their calls there in the
 * layout of test/attach/victim.c (go, active, calls, lib_calls, bad).
 *
 *   patch-victim CONTROL_FILE THREADS */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

struct control {
    atomic_long go;
    atomic_long active;
    atomic_long calls;
    atomic_long lib_calls; /* unused here: the layout of victim.c */
    atomic_long bad_results;
};

long crossing_add(long a, long b);

static struct control *ctl;

static void *worker(void *arg)
{
    long id = (long)arg;
    for (long i = 0;; i++) {
        atomic_fetch_add(&ctl->active, 1);
        if (atomic_load(&ctl->go)) {
            if (crossing_add(id, i) != id + i)
                atomic_fetch_add(&ctl->bad_results, 1);
            atomic_fetch_add(&ctl->calls, 1);
        }
        atomic_fetch_sub(&ctl->active, 1);
        if (!atomic_load(&ctl->go))
            usleep(200);
    }
    return NULL;
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
    close(fd);
    for (long i = 0; i < atol(argv[2]); i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)i) != 0)
            return 1;
    }
    for (;;)
        pause();
}
