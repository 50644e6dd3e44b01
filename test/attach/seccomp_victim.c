/* A sandboxed victim (test_attach.py): installs a seccomp filter, then calls
 * sandboxed_work() every millisecond until killed.
 *   seccomp-victim kill-socket    socket(2) kills the process
 *   seccomp-victim errno-tgkill   tgkill(2) fails with EPERM (a helper needs it)
 *   seccomp-victim errno-mount    mount(2) fails (nothing bpfgraft uses) */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
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
    } else {
        fprintf(stderr, "usage: seccomp-victim kill-socket|errno-tgkill|errno-mount\n");
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
    struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        perror("seccomp");
        return 1;
    }
    struct timespec ms = {0, 1000000};
    for (long i = 0;; i++) {
        sandboxed_work(i);
        nanosleep(&ms, NULL);
    }
}
