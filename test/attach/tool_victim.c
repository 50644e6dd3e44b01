/* Victim of the `bpfgraft run` tests (test_tools.py): every 20 ms it opens
 * the path given as argv[1] (usually missing: opensnoop shows ENOENT),
 * calls work_unit() (funclatency), mallocs, and with argv[2] resolves that
 * name with getaddrinfo (gethostlatency). Runs until killed. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long sink;

__attribute__((noinline)) unsigned long work_unit(unsigned n)
{
    unsigned long x = n;
    for (unsigned i = 0; i < n * 1000; i++)
        x = x * 6364136223846793005ul + 1442695040888963407ul;
    return x;
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "/nonexistent/bpfgraft-tool-victim";
    struct timespec tick = {0, 20 * 1000 * 1000};
    for (unsigned round = 0;; round++) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        sink += work_unit(1 + round % 16);
        void *p = malloc(64 + round % 512);
        sink += (unsigned long)p;
        free(p);
        struct addrinfo *ai = NULL;
        if (argc > 2 && getaddrinfo(argv[2], NULL, NULL, &ai) == 0)
            freeaddrinfo(ai);
        nanosleep(&tick, NULL);
    }
}
