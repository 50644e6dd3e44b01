/* A sandboxed victim (test_attach.py): installs a seccomp filter, then calls
 * sandboxed_work() every millisecond until killed.
 *   seccomp-victim kill-socket    socket(2) kills the process
 *   seccomp-victim errno-tgkill   tgkill(2) fails with EPERM (a helper needs it)
 *   seccomp-victim errno-mount    mount(2) fails (nothing bpfgraft uses)
 *   seccomp-victim args           a container-like filter on arguments:
 *                                 clone with CLONE_NEWUSER and sockets other
 *                                 than AF_UNIX/AF_INET fail; all else passes
 *   seccomp-victim kill-thread-clone  clone with CLONE_THREAD kills */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

volatile long sandboxed_sink;

__attribute__((noinline)) long sandboxed_work(long x)
{
    sandboxed_sink = x;
    for (int i = 0; i < 8; i++)
        sandboxed_sink += i;
    return sandboxed_sink;
}

static int install(struct sock_filter *f, unsigned short n)
{
    struct sock_fprog prog = {n, f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        perror("seccomp");
        return 1;
    }
    return 0;
}

static void work_forever(void)
{
    struct timespec ms = {0, 1000000};
    for (long i = 0;; i++) {
        sandboxed_work(i);
        nanosleep(&ms, NULL);
    }
}

#define ARG_LO(i) (offsetof(struct seccomp_data, args) + 8 * (i))

/* Filters on arguments, the way container profiles are written: the low
 * word of an argument through the scratch memory and X, masks with JSET. */
static int run_args_filter(bool lenient)
{
    unsigned clone_bit = lenient ? CLONE_NEWUSER : CLONE_THREAD;
    unsigned clone_action = lenient ? (SECCOMP_RET_ERRNO | EPERM) : SECCOMP_RET_KILL_PROCESS;
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_STMT(BPF_ST, 0), /* M[0] = nr */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)), /* clone flags */
        BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, clone_bit, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, clone_action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LDX | BPF_MEM, 0), /* X = nr */
        BPF_STMT(BPF_MISC | BPF_TXA, 0),
        BPF_STMT(BPF_ALU | BPF_SUB | BPF_K, SYS_socket), /* A = nr - socket */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 5),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0)), /* domain */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EAFNOSUPPORT),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    if (install(f, sizeof(f) / sizeof(f[0])))
        return 1;
    work_forever();
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    unsigned nr;
    unsigned action;
    if (strcmp(mode, "kill-socket") == 0) {
        nr = SYS_socket;
        action = SECCOMP_RET_KILL_PROCESS;
    } else if (strcmp(mode, "errno-tgkill") == 0) {
        nr = SYS_tgkill;
        action = SECCOMP_RET_ERRNO | EPERM;
    } else if (strcmp(mode, "errno-mount") == 0) {
        nr = SYS_mount;
        action = SECCOMP_RET_ERRNO | EPERM;
    } else if (strcmp(mode, "args") == 0 || strcmp(mode, "kill-thread-clone") == 0) {
        return run_args_filter(strcmp(mode, "args") == 0);
    } else {
        fprintf(stderr, "usage: seccomp-victim kill-socket|errno-tgkill|errno-mount|args|kill-thread-clone\n");
        return 2;
    }
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, action),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    if (install(f, sizeof(f) / sizeof(f[0])))
        return 1;
    work_forever();
}
