/* The maps' own locks (FORMAT.md "Locks"): a lock left held by an owner
 * that is gone (exited, killed but not reaped, a pid reused by another
 * process) is taken over and the map repaired; a live owner is waited for.
 * The lock words are written as FORMAT.md lays them out, the way a process
 * killed inside its critical section leaves them. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "maps.h"

#define HDR_LOCKS_OFF 88
#define HDR_N_LOCKS 96
#define LOCK_STRIDE 64

struct owner {
    uint32_t tgid, tid;
    uint64_t start;
};

static uint64_t start_time(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "re");
    cr_assert(f, "open %s", path);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    cr_assert(p);
    for (int field = 2; field < 22; field++)
        p = strchr(p + 1, ' ');
    return strtoull(p + 1, NULL, 10);
}

/* Every stripe and the repair lock held by `o`, as a killed owner leaves them. */
static uint32_t hold_all(struct bpfg_map *m, const struct owner *o)
{
    size_t len;
    uint8_t *base = bpfg_map_mapping(m, 0, &len);
    uint64_t off;
    uint32_t n;
    memcpy(&off, base + HDR_LOCKS_OFF, 8);
    memcpy(&n, base + HDR_N_LOCKS, 4);
    cr_assert(n > 0 && off + (uint64_t)(n + 1) * LOCK_STRIDE <= len);
    for (uint32_t i = 0; i <= n; i++) {
        uint8_t *l = base + off + (uint64_t)i * LOCK_STRIDE;
        uint64_t ids = (uint64_t)o->tgid << 32 | o->tid;
        memcpy(l + 8, &ids, 8);
        memcpy(l + 16, &o->start, 8);
        /* pidns left as written by nobody: 0, unknown */
        memset(l + 24, 0, 8);
        atomic_store((_Atomic uint32_t *)l, o->tid);
    }
    return n;
}

static struct bpfg_map *mk_hash(void)
{
    struct bpfg_map_spec s = {
        .type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 8, .max_entries = 256, .name = "locks"};
    struct bpfg_map *m = NULL;
    cr_assert_eq(bpfg_map_create(&s, &m), 0, "%s", bpfg_map_last_error());
    return m;
}

static pid_t sleeper(void)
{
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test leaves no process */
        pause();
        _exit(0);
    }
    return pid;
}

/* A map whose locks a live child holds, as recorded; start_skew != 0 makes
 * the record's start time another process's (a reused pid). */
static struct bpfg_map *held_by_child(pid_t *pid, struct owner *o, uint64_t start_skew)
{
    struct bpfg_map *m = mk_hash();
    *pid = sleeper();
    *o = (struct owner){(uint32_t)*pid, (uint32_t)*pid, start_time(*pid) - start_skew};
    hold_all(m, o);
    return m;
}

struct updater {
    struct bpfg_map *m;
    _Atomic int done;
    int err;
};

static void *update_all(void *arg)
{
    struct updater *u = arg;
    for (uint32_t k = 0; k < 64; k++) {
        uint64_t v = k * 3;
        if ((u->err = bpfg_map_update_elem(u->m, &k, &v, BPF_ANY)))
            break;
    }
    atomic_store(&u->done, 1);
    return NULL;
}

/* Runs 64 updates (every stripe) on a thread; true if they finished within ms. */
static bool updates_within(struct updater *u, pthread_t *th, int ms)
{
    cr_assert_eq(pthread_create(th, NULL, update_all, u), 0);
    for (int i = 0; i < ms && !atomic_load(&u->done); i++)
        usleep(1000);
    return atomic_load(&u->done);
}

static void expect_values(struct bpfg_map *m)
{
    for (uint32_t k = 0; k < 64; k++) {
        uint64_t *v = bpfg_map_lookup_elem(m, &k);
        cr_assert(v && *v == k * 3, "key %u", k);
    }
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    cr_assert_geq(info.repairs, 1, "the map was repaired");
}

/* After our updates every stripe's record names this thread, with the start
 * time /proc gives (what a waiter compares). */
static void expect_records_ours(struct bpfg_map *m, uint32_t n)
{
    size_t len;
    uint8_t *base = bpfg_map_mapping(m, 0, &len);
    uint64_t off, ids, start, want = (uint64_t)getpid() << 32;
    memcpy(&off, base + HDR_LOCKS_OFF, 8);
    for (uint32_t i = 0; i < n; i++) {
        uint8_t *l = base + off + (uint64_t)i * LOCK_STRIDE;
        memcpy(&ids, l + 8, 8);
        memcpy(&start, l + 16, 8);
        cr_assert_eq(atomic_load((_Atomic uint32_t *)l), 0, "stripe %u free", i);
        cr_assert_eq(ids >> 32, want >> 32, "stripe %u: owner's tgid", i);
        cr_assert_eq(start, start_time(getpid()), "stripe %u: owner's start time", i);
    }
}

Test(map_locks, exited_owner_taken_over)
{
    struct bpfg_map *m = mk_hash();
    pid_t pid = sleeper();
    struct owner o = {(uint32_t)pid, (uint32_t)pid, start_time(pid)};
    kill(pid, SIGKILL);
    cr_assert_eq(waitpid(pid, NULL, 0), pid);
    uint32_t n = hold_all(m, &o);
    struct updater u = {.m = m};
    pthread_t th;
    cr_assert(updates_within(&u, &th, 5000), "updates behind a dead owner's locks finish");
    pthread_join(th, NULL);
    cr_assert_eq(u.err, 0);
    expect_values(m);
    expect_records_ours(m, n); /* the repair pass took every stripe */
    bpfg_map_close(m);
}

Test(map_locks, unreaped_owner_taken_over)
{
    pid_t pid;
    struct owner o;
    struct bpfg_map *m = held_by_child(&pid, &o, 0);
    kill(pid, SIGKILL);
    struct updater u = {.m = m};
    pthread_t th;
    /* a zombie: tgkill still finds it; its state says it is dead */
    bool done = updates_within(&u, &th, 5000);
    siginfo_t si;
    cr_assert_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT), 0);
    cr_assert_eq(si.si_pid, pid, "the owner was still unreaped when the updates finished");
    cr_assert(done, "updates behind a killed, unreaped owner finish");
    waitpid(pid, NULL, 0);
    pthread_join(th, NULL);
    cr_assert_eq(u.err, 0);
    expect_values(m);
    bpfg_map_close(m);
}

Test(map_locks, reused_pid_is_not_the_owner)
{
    /* the record names a live process, but another start time: the pid
     * was reused after the owner died */
    pid_t pid;
    struct owner o;
    struct bpfg_map *m = held_by_child(&pid, &o, 1);
    struct updater u = {.m = m};
    pthread_t th;
    bool done = updates_within(&u, &th, 5000);
    cr_assert_eq(kill(pid, 0), 0, "the pid's new process lives");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    cr_assert(done, "a reused pid does not keep the lock");
    pthread_join(th, NULL);
    expect_values(m);
    bpfg_map_close(m);
}

Test(map_locks, live_owner_waited_for)
{
    pid_t pid;
    struct owner o;
    struct bpfg_map *m = held_by_child(&pid, &o, 0);
    struct updater u = {.m = m};
    pthread_t th;
    cr_assert_not(updates_within(&u, &th, 300), "updates wait while the owner lives");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    for (int i = 0; i < 5000 && !atomic_load(&u.done); i++)
        usleep(1000);
    cr_assert(atomic_load(&u.done), "updates finish once the owner is gone");
    pthread_join(th, NULL);
    expect_values(m);
    bpfg_map_close(m);
}
