/* A process with a leak: every 10 ms leaky_alloc() keeps 100 bytes and
 * balanced_alloc() mallocs and frees (forever, or N rounds with an
 * argument); memleak finds leaky_alloc. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void *volatile keep; /* keeps the compiler from eliding malloc/free */

__attribute__((noinline)) void *leaky_alloc(void)
{
    void *p = malloc(100);
    keep = p;
    return p;
}

__attribute__((noinline)) void balanced_alloc(void)
{
    void *p = calloc(4, 64);
    keep = p;
    free(p);
}

int main(int argc, char **argv)
{
    long limit = argc > 1 ? atol(argv[1]) : -1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    for (long i = 1; limit < 0 || i <= limit; i++) {
        leaky_alloc();
        balanced_alloc();
        usleep(10000);
    }
    return 0;
}
