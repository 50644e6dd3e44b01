/* Victim of test_bpftrace.py. bt_loop(n) counts to n in a loop whose label
 * is 2 bytes in (bt_loop+2: a branch target, where a jmp over the next 5
 * bytes is safe but a jmp at the entry is not); bt_short() is 3 bytes long. Commands on stdin, one a line:
 *   CALLS N   calls bt_loop(N) CALLS times and bt_short() CALLS times,
 *             then prints "done ITERATIONS" (bt_loop+2 runs N times a call)
 *   quit
 * Prints "ready" first. */
#include <stdio.h>
#include <stdlib.h>

int bt_loop(int n);
int bt_short(void);
__asm__(".text\n"
        ".globl bt_loop\n"
        ".type bt_loop, @function\n"
        ".balign 16\n"
        "bt_loop:\n"
        "    xor %eax, %eax\n"
        "1:  add $1, %eax\n"
        "    cmp %edi, %eax\n"
        "    jl 1b\n"
        "    ret\n"
        ".size bt_loop, . - bt_loop\n"
        ".globl bt_short\n"
        ".type bt_short, @function\n"
        ".balign 16\n"
        "bt_short:\n"
        "    xor %eax, %eax\n"
        "    ret\n"
        ".size bt_short, . - bt_short\n"
        ".balign 16\n");

int main(void)
{
    char line[128];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready\n");
    while (fgets(line, sizeof(line), stdin)) {
        long calls, n;
        if (sscanf(line, "%ld %ld", &calls, &n) != 2)
            break;
        long iterations = 0, bad = 0;
        for (long i = 0; i < calls; i++) {
            iterations += bt_loop((int)n);
            bad += bt_short() != 0;
        }
        printf("done %ld%s\n", iterations, bad ? " bad" : "");
    }
    return 0;
}
