/* The process test_payload injects: calls victim_add(i, 1) until the
 * shared `calls` reaches `target`, recording what it returned. victim_add
 * starts with a 5-byte nop, so a test can hook it without relocating
 * instructions. Usage: victim FD (a memfd holding struct victim_shared). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "victim.h"

int victim_add(int a, int b);

__asm__(".text\n"
        ".globl victim_add\n"
        ".type victim_add, @function\n"
        "victim_add:\n"
        "    .byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"   /* nopl 0(%rax,%rax,1) */
        "    lea (%rdi,%rsi), %eax\n"
        "    ret\n"
        ".size victim_add, . - victim_add\n");

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    int fd = atoi(argv[1]);
    struct victim_shared *sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (sh == MAP_FAILED)
        return 3;
    close(fd);
    int (*volatile fn)(int, int) = victim_add;
    sh->func = (uint64_t)(uintptr_t)victim_add;
    while (!sh->quit) {
        if (sh->calls >= sh->target) {
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
            continue;
        }
        int a = (int)sh->calls;
        int r = fn(a, 1);
        sh->sum_ret += (uint32_t)r;
        sh->last_ret = r;
        if (r != a + 1)
            sh->wrong++;
        __atomic_store_n(&sh->calls, sh->calls + 1, __ATOMIC_RELEASE);
    }
    return 0;
}
