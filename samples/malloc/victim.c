/* A process that keeps allocating: malloc() every 10 ms, forever (or N
 * times with an argument), printing how many calls it made so far. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void *volatile last; /* keeps the compiler from eliding malloc/free */

int main(int argc, char **argv)
{
    long limit = argc > 1 ? atol(argv[1]) : -1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (long i = 1; limit < 0 || i <= limit; i++) {
        char *p = malloc(64 + (size_t)(i % 64));
        if (p)
            p[0] = (char)i;
        last = p;
        free(p);
        if (i % 100 == 0)
            printf("victim %d: %ld mallocs\n", (int)getpid(), i);
        usleep(10000);
    }
    return 0;
}
