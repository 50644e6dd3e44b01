/* Calls open_config() in a loop and reports how many calls failed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

__attribute__((noinline)) long open_config(long attempt)
{
    volatile long v = attempt;
    return v >= 0 ? 0 : -1; /* always succeeds when not injected */
}

int main(int argc, char **argv)
{
    long limit = argc > 1 ? atol(argv[1]) : -1, failed = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (long i = 1; limit < 0 || i <= limit; i++) {
        if (open_config(i) != 0)
            failed++;
        if (i % 100 == 0)
            printf("victim %d: %ld calls, %ld failed\n", (int)getpid(), i, failed);
        usleep(1000);
    }
    return 0;
}
