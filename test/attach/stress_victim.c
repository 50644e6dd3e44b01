/* Stress victim of the syscall-hook tests: for ITERATIONS rounds (about
 * 100 ms each) it does file I/O, starts and joins threads, forks, forks
 * and execs /bin/true, sends itself signals and sleeps. Every round prints
 * one line that depends only on the round number and the results, so a
 * hooked and an unhooked run print the same. The syscalls of the rounds
 * are fixed in number (see test_syscalls.py, which compares them with
 * `strace -c -f`).
 *
 * usage: stress_victim SECONDS DIR */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr1, got_usr2;

static void on_usr1(int sig)
{
    (void)sig;
    got_usr1++;
}
static void on_usr2(int sig)
{
    (void)sig;
    got_usr2++;
    syscall(SYS_getppid);
}

static void *worker(void *arg)
{
    long k = (long)arg;
    long sum = 0;
    for (int i = 0; i < 10; i++)
        sum += syscall(SYS_getppid) > 0;
    return (void *)(sum + k);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: stress_victim SECONDS DIR\n");
        return 2;
    }
    int rounds = atoi(argv[1]) * 10;
    char path[4096];
    snprintf(path, sizeof(path), "%s/stress-%d", argv[2], (int)getpid());
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sa.sa_flags = SA_RESTART;
    sigfillset(&sa.sa_mask);
    sigaction(SIGUSR2, &sa, NULL);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);

    for (int r = 0; r < rounds; r++) {
        /* file I/O */
        char buf[256], back[256];
        int n = snprintf(buf, sizeof(buf), "round %d payload %d\n", r, r * 7919 % 1000);
        int fd = open(path, O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0 || pwrite(fd, buf, (size_t)n, 0) != n || fsync(fd) != 0 || pread(fd, back, (size_t)n, 0) != n ||
            ftruncate(fd, 4) != 0) {
            printf("round %d: file I/O failed: %s\n", r, strerror(errno));
            return 1;
        }
        close(fd);
        unlink(path);
        /* threads */
        pthread_t t[2];
        long tsum = 0;
        for (long i = 0; i < 2; i++)
            pthread_create(&t[i], NULL, worker, (void *)i);
        for (int i = 0; i < 2; i++) {
            void *ret;
            pthread_join(t[i], &ret);
            tsum += (long)ret;
        }
        /* fork, and every 5th round fork + exec */
        pid_t c = fork();
        if (c == 0)
            _exit(r % 7);
        int st = 0;
        waitpid(c, &st, 0);
        int execst = -1;
        if (r % 5 == 0) {
            pid_t e = fork();
            if (e == 0) {
                execl("/bin/true", "true", (char *)NULL);
                _exit(127);
            }
            waitpid(e, &execst, 0);
        }
        /* signals: one plain, one whose handler makes a syscall and
         * interrupts nothing (SA_RESTART) */
        kill(getpid(), SIGUSR1);
        kill(getpid(), SIGUSR2);
        /* sleep */
        struct timespec ts = {0, 90 * 1000 * 1000};
        nanosleep(&ts, NULL);
        printf("round %d: %.*s| threads %ld | child %d | exec %d | signals %d %d\n", r, n - 1, back, tsum,
               WEXITSTATUS(st), execst, (int)got_usr1, (int)got_usr2);
    }
    printf("done %d rounds\n", rounds);
    return 0;
}
