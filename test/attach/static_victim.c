/* A statically linked victim (test_attach.py): calls static_work() every
 * millisecond until killed. Built twice: with its symbol table, and
 * stripped (static-victim-stripped), where glibc's functions cannot be
 * found by name. */
#include <time.h>

volatile long static_sink;

__attribute__((noinline)) long static_work(long x)
{
    static_sink = x;
    for (int i = 0; i < 8; i++)
        static_sink += i;
    return static_sink;
}

int main(void)
{
    struct timespec ms = {0, 1000000};
    for (long i = 0;; i++) {
        static_work(i);
        nanosleep(&ms, NULL);
    }
}
