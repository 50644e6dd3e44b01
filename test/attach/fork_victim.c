/* Victim for the pid/tgid of forked processes (test_samples.py): on
 * SIGUSR1 it forks; the child starts a thread; parent, child and the
 * child's thread then each make exactly 200 malloc() calls and the process
 * prints "done PID" (parent and child) before sleeping until killed. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t go;
void *volatile last;

static void on_usr1(int sig)
{
    (void)sig;
    go = 1;
}

static void *mallocs(void *arg)
{
    (void)arg;
    for (int i = 0; i < 200; i++) {
        last = malloc(100);
        free(last);
    }
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGUSR1, on_usr1);
    printf("ready %d\n", (int)getpid());
    while (!go)
        usleep(1000);
    pid_t child = fork();
    if (child < 0)
        return 1;
    pthread_t t;

    int threaded = child == 0 && pthread_create(&t, NULL, mallocs, NULL) == 0;
    mallocs(NULL);
    if (threaded)
        pthread_join(t, NULL);
    printf("done %d\n", (int)getpid());
    for (;;)
        pause();
}
