// ustack-victim MODE: prints "ready", then calls the chain of
// ustack_lib.h until its stdin closes (or a line arrives).
//   chain:  from main
//   signal: from a SIGUSR1 handler that interrupts a busy loop in main's
//           callee spin() (the stack goes through the kernel's signal frame)
//   dlopen LIB: after a first line on stdin, dlopen()s LIB and calls the
//           chain through its ustack_d_run
// Built -O2 -fomit-frame-pointer, as are its libraries.
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ustack_lib.h"

static volatile sig_atomic_t stop;

static bool input_ready()
{
    struct pollfd p = {0, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

static void on_usr1(int)
{
    ustack_a::one(0);
}

// Raises SIGUSR1 at itself in a loop: the handler runs the chain.
__attribute__((noinline)) static int spin(void)
{
    int n = 0;
    while (!input_ready()) {
        for (int i = 0; i < 1000; i++) {
            raise(SIGUSR1);
            n++;
        }
    }
    return n;
}

// The chain through a library loaded now, until stdin has a line.
static int through_dlopened(const char *lib)
{
    char line[64];
    if (!fgets(line, sizeof(line), stdin))
        return -1;
    void *h = dlopen(lib, RTLD_NOW);
    auto run = h ? (int (*)(int (*)(int), int))dlsym(h, "ustack_d_run") : nullptr;
    if (!run) {
        fprintf(stderr, "dlopen %s: %s\n", lib, dlerror());
        return -1;
    }
    int n = 0;
    while (!input_ready())
        for (int i = 0; i < 1000; i++)
            n += run(ustack_a::one, 0);
    return n;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "dlopen") == 0) {
        printf("ready\n");
        fflush(stdout);
        int n = through_dlopened(argv[2]);
        printf("done calls=%d\n", n);
        return n < 0;
    }
    bool sig = argc > 1 && strcmp(argv[1], "signal") == 0;
    if (sig) {
        struct sigaction sa = {};
        sa.sa_handler = on_usr1;
        sigaction(SIGUSR1, &sa, nullptr);
    }
    // rbp must not look like a frame chain: fill it with garbage
    asm volatile("mov $0x1234567, %%rbp" ::: "rbp");
    printf("ready\n");
    fflush(stdout);
    int n = 0;
    if (sig)
        n = spin();
    else
        while (!input_ready())
            for (int i = 0; i < 1000; i++)
                n += ustack_a::one(0);
    printf("done calls=%d\n", n);
    return 0;
}
