/* Victim of test_restart.py's signals part: counts what a tracer killed
 * mid-stop could lose. A sender process queues SIGRTMIN to it (real-time
 * signals queue, never coalesce) as fast as it takes them; two threads
 * write one byte at a time to a pipe a third one drains, and call getppid()
 * through syscall() (with Syscall User Dispatch on, each call is a SIGSYS:
 * a skipped one returns its own number). SIGUSR2 stops it all and prints
 * "report sent=S received=R written=W read=B badppid=P badwrite=E
 * calls=C" (C: writer iterations, each one write(2) and one getppid());
 * it then sleeps until killed. With the argument "hold" the writers start
 * at SIGUSR1 (a program attached meanwhile sees every call). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WRITERS 2
#define DRAIN_MS 10000

static atomic_long received, written, nread, badppid, badwrite, calls;
static atomic_bool stop_writers, hold;
static volatile sig_atomic_t want_report, sender_stop;
static int pipefd[2];
static pid_t parent;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc;
    atomic_fetch_add(&received, 1);
}

static void on_usr1(int sig)
{
    (void)sig;
    atomic_store(&hold, false);
}

static void on_usr2(int sig)
{
    (void)sig;
    want_report = 1;
}

static void on_sender_stop(int sig)
{
    (void)sig;
    sender_stop = 1;
}

static void sleep_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* The sender: queues SIGRTMIN until SIGUSR1, then writes how many it sent. */
static void run_sender(pid_t to, int out)
{
    signal(SIGUSR1, on_sender_stop);
    long sent = 0;
    while (!sender_stop) {
        union sigval v = {.sival_int = (int)sent};
        if (sigqueue(to, SIGRTMIN, v) == 0)
            sent++;
        else if (errno != EAGAIN)
            break;
        sleep_us(50);
    }
    if (write(out, &sent, sizeof(sent)) != sizeof(sent))
        _exit(1);
    _exit(0);
}

static void *writer(void *arg)
{
    (void)arg;
    while (atomic_load(&hold))
        sleep_us(1000);
    while (!atomic_load(&stop_writers)) {
        atomic_fetch_add(&calls, 1);
        long r = syscall(SYS_write, pipefd[1], "x", 1);
        if (r == 1)
            atomic_fetch_add(&written, 1);
        else if (!(r < 0 && errno == EINTR))
            atomic_fetch_add(&badwrite, 1);
        if (syscall(SYS_getppid) != parent)
            atomic_fetch_add(&badppid, 1);
    }
    return NULL;
}

static void *reader(void *arg)
{
    (void)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(pipefd[0], buf, sizeof(buf));
        if (n > 0)
            atomic_fetch_add(&nread, n);
        else if (n == 0 || errno != EINTR)
            return NULL;
    }
}

/* Waits up to DRAIN_MS for *have to reach want. */
static void wait_for(atomic_long *have, long want)
{
    for (int ms = 0; atomic_load(have) < want && ms < DRAIN_MS; ms++)
        sleep_us(1000);
}

static long stop_sender(pid_t sender, int in)
{
    long sent = -1;
    kill(sender, SIGUSR1);
    if (read(in, &sent, sizeof(sent)) != sizeof(sent))
        sent = -1;
    waitpid(sender, NULL, 0);
    return sent;
}

int main(int argc, char **argv)
{
    parent = getppid();
    atomic_store(&hold, argc > 1 && strcmp(argv[1], "hold") == 0);
    signal(SIGUSR1, on_usr1);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_rt;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigaction(SIGRTMIN, &sa, NULL);
    signal(SIGUSR2, on_usr2);
    int sp[2];
    if (pipe(pipefd) != 0 || pipe(sp) != 0)
        return perror("pipe"), 1;
    pid_t self = getpid(), sender = fork();
    if (sender < 0)
        return perror("fork"), 1;
    if (sender == 0)
        run_sender(self, sp[1]);
    pthread_t w[WRITERS], r;
    for (int i = 0; i < WRITERS; i++)
        pthread_create(&w[i], NULL, writer, NULL);
    pthread_create(&r, NULL, reader, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("ready %d\n", (int)self);
    while (!want_report)
        sleep_us(10000);
    long sent = stop_sender(sender, sp[0]);
    wait_for(&received, sent);
    atomic_store(&stop_writers, true);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i], NULL);
    wait_for(&nread, atomic_load(&written));
    printf("report sent=%ld received=%ld written=%ld read=%ld badppid=%ld badwrite=%ld calls=%ld\n", sent,
           atomic_load(&received), atomic_load(&written), atomic_load(&nread), atomic_load(&badppid),
           atomic_load(&badwrite), atomic_load(&calls));
    for (;;)
        pause();
}
