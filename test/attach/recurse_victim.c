/* Victim for missed runs (test_attach.py): every millisecond calls
 * recurse(40), which recurses 40 deep, deeper than a uretprobe's shadow
 * stack (32): the 8 innermost returns of each call cannot be traced. */
#include <time.h>

volatile long recurse_sink;

__attribute__((noinline)) long recurse(long n)
{
    if (n <= 1)
        return recurse_sink;
    long r = recurse(n - 1);
    recurse_sink += r & 1; /* work after the call: no tail call */
    return r + 1;
}

int main(void)
{
    struct timespec ms = {0, 1000000};
    for (;;) {
        recurse(40);
        nanosleep(&ms, NULL);
    }
}
