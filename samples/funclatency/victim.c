/* Calls work_unit() in a loop; its duration varies between ~1 us and
 * ~1 ms so the latency histogram has several buckets. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

__attribute__((noinline)) long work_unit(long n)
{
    struct timespec ts = {0, n * 1000};
    volatile long sum = 0;
    for (long i = 0; i < n * 10; i++)
        sum += i;
    nanosleep(&ts, NULL);
    return sum;
}

int main(int argc, char **argv)
{
    long limit = argc > 1 ? atol(argv[1]) : -1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (long i = 1; limit < 0 || i <= limit; i++) {
        work_unit(1 << (i % 10));
        if (i % 1000 == 0)
            printf("victim %d: %ld calls\n", (int)getpid(), i);
    }
    return 0;
}
