/* The injector's tracer may die at any instant (bpfgraftd SIGKILLed):
 * the target must go on as if never stopped. A victim process runs a
 * counting thread, a thread sleeping in restartable syscalls (checking
 * each result and its signal mask) and a thread taking SIGUSR1s; tracer
 * processes stop it and run remote syscalls (mmap, munmap, getpid) in a
 * loop and are SIGKILLed after a random delay, again and again. After
 * each kill the victim must be alive, and at the end its checks clean,
 * its counters moving and its files' text unchanged. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "injector.h"
#include "tasks_util.h"

#define KILLS 200

/* tracer-death-victim's counters (tracer_death_victim.c) */
struct shared {
    volatile uint64_t counted, slept, signals, bad_sleep, bad_mask, last_errno;
};

static struct shared *sh;

/* Polls every ms for up to 20 s (a loaded machine runs the victim late)
 * until its counters moved past c and s; whether they did. */
static bool counters_move(uint64_t c, uint64_t s)
{
    for (int i = 0; i < 20000 && !(sh->counted > c && sh->slept > s); i++)
        usleep(1000);
    return sh->counted > c && sh->slept > s;
}

/* The victim, exec'd (its text is then exactly its files') with the
 * shared page in a file; returned once its 3 threads run (its SIGUSR1
 * handler is in before they are made: a SIGUSR1 earlier would kill it). */
static pid_t start_victim(const char *page)
{
    char self[512], exe[600];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    cr_assert_gt(n, 0);
    self[n] = 0;
    *strrchr(self, '/') = 0;
    snprintf(exe, sizeof(exe), "%s/tracer-death-victim", self);
    pid_t v = fork();
    if (v == 0) {
        execl(exe, exe, page, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 20000 && tasks_of(v) < 3; i++)
        usleep(1000);
    cr_assert_eq(tasks_of(v), 3, "the victim started its threads");
    return v;
}

/* Stops the victim and runs remote syscalls until killed. */
static void tracer(pid_t pid, unsigned seed)
{
    char err[BPFG_ERRLEN];
    for (unsigned round = 0;; round++) {
        struct bpfg_stopped st;
        if (bpfg_stop_process(pid, &st, err) != 0)
            continue;
        for (size_t i = 0; i < st.nthreads; i++) {
            int64_t addr, ret;
            const uint64_t mm[6] = {0, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, (uint64_t)-1, 0};
            if (bpfg_remote_syscall_on(&st, i, SYS_mmap, mm, &addr, err) == 0 && addr > 0) {
                const uint64_t um[6] = {(uint64_t)addr, 4096};
                bpfg_remote_syscall_on(&st, i, SYS_munmap, um, &ret, err);
            }
            const uint64_t none[6] = {0};
            bpfg_remote_syscall_on(&st, (i + round + seed) % st.nthreads, SYS_getpid, none, &ret, err);
        }
        bpfg_resume_process(&st, NULL);
    }
}

/* Every executable file mapping of pid equals its file: 0, or 1 and says which. */
static int text_changed(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    FILE *maps = fopen(path, "r");
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    FILE *mem = fopen(path, "r");
    int changed = 0;
    while (maps && mem && fgets(line, sizeof(line), maps)) {
        unsigned long lo, hi, off;
        char perms[8], file[400] = "";
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %399s", &lo, &hi, perms, &off, file) < 4 || perms[2] != 'x' ||
            file[0] != '/')
            continue;
        FILE *f = fopen(file, "r");
        char *want = malloc(hi - lo), *got = malloc(hi - lo);
        size_t n = 0;
        if (f && want && got && fseek(f, (long)off, SEEK_SET) == 0 && (n = fread(want, 1, hi - lo, f)) > 0 &&
            fseek(mem, (long)lo, SEEK_SET) == 0 && fread(got, 1, n, mem) == n && memcmp(want, got, n) != 0) {
            printf("text of %s at 0x%lx differs from the file\n", file, lo);
            changed = 1;
        }
        if (f)
            fclose(f);
        free(want);
        free(got);
    }
    if (maps)
        fclose(maps);
    if (mem)
        fclose(mem);
    return changed;
}

Test(tracer_death, target_survives_tracer_killed_anywhere, .timeout = 120)
{
    char page[] = "/tmp/bpfgraft-tracer-death-XXXXXX";
    int fd = mkstemp(page);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 4096), 0);
    sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    cr_assert_neq(sh, MAP_FAILED);
    pid_t v = start_victim(page);
    struct timespec settle = {0, 50000000};
    nanosleep(&settle, NULL);
    srand(13);
    int died = 0;
    for (int i = 0; i < KILLS && !died; i++) {
        pid_t t = fork();
        if (t == 0)
            tracer(v, (unsigned)i);
        struct timespec d = {0, (rand() % 3000) * 1000};
        nanosleep(&d, NULL);
        kill(v, SIGUSR1);
        kill(t, SIGKILL);
        waitpid(t, NULL, 0);
        int status;
        if (waitpid(v, &status, WNOHANG) == v) {
            printf("victim died after kill %d: status 0x%x\n", i + 1, status);
            died = 1;
        }
    }
    cr_assert(!died, "the victim survives every tracer killed at a random moment");
    uint64_t c = sh->counted, s = sh->slept;
    bool moving = counters_move(c, s);
    int changed = text_changed(v);
    kill(v, SIGKILL);
    waitpid(v, NULL, 0);
    unlink(page);
    cr_expect(moving, "its threads run on");
    cr_expect_eq(sh->bad_sleep, 0,
                 "its syscalls return as without a tracer (nanosleep: 0 or EINTR): %llu bad, "
                 "last errno %llu",
                 (unsigned long long)sh->bad_sleep, (unsigned long long)sh->last_errno);
    cr_expect_eq(sh->bad_mask, 0, "its signal mask is never left changed");
    cr_expect_gt(sh->signals, 0, "its signals are delivered");
    cr_expect(!changed, "its files' text is unchanged");
}

/* A stop whose first remote call is an unload (an attach removing a failed
 * payload) runs it from the rescue code in the vDSO's tail. It once chose
 * the executable's first bytes (.init, then the PLT) for every call: a
 * tracer killed meanwhile left the code there, and a thread calling
 * through the PLT popped its stack into its registers (restart_loop). */
Test(tracer_death, unload_first_runs_from_the_vdso, .timeout = 30)
{
    char page[] = "/tmp/bpfgraft-tracer-death-XXXXXX";
    int fd = mkstemp(page);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 4096), 0);
    close(fd);
    pid_t v = start_victim(page);
    struct timespec settle = {0, 50000000};
    nanosleep(&settle, NULL);
    struct bpfg_stopped st;
    char err[BPFG_ERRLEN];
    int r = bpfg_stop_process(v, &st, err);
    /* nothing is mapped there: the munmaps succeed and change nothing */
    struct bpfg_injected inj = {
        .base = 0x200000000000ull, .size = 4096, .stack_base = 0x200000010000ull, .stack_size = 4096};
    int u = r ? r : bpfg_unload_payload(&st, &inj, err);
    uint64_t rescue = st.rescue, site = st.syscall_site;
    if (!r)
        bpfg_resume_process(&st, NULL);
    int changed = text_changed(v);
    kill(v, SIGKILL);
    waitpid(v, NULL, 0);
    unlink(page);
    cr_assert_eq(u, 0, "unload: %s", err);
    cr_expect_neq(rescue, 0, "the rescue code is in the vDSO's tail");
    cr_expect_eq(site, 0, "no text site was chosen for it");
    cr_expect(!changed, "its files' text is unchanged");
}
