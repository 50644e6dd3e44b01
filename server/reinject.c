/* Replacing a payload of another ABI by re-injection (reinject.h). The
 * order makes a kill at any step safe: the old record is rewritten naming
 * the new payload's token first (a payload left by a server killed before
 * the new record is sent DETACH when it reconnects: nothing enters it yet);
 * the new payload gets the programs, maps and slots; its record is
 * written; only then are the stubs re-pointed, each by one write within
 * its page, so every stub enters a live payload of either ABI, and a
 * server killed halfway has the rest re-pointed at the next adoption.
 * Syscall hooks move in the same stop (syscalls.c: dispatch, the SIGSYS
 * action, the sites' stubs; a pure Go process has no dispatch and no
 * action, only stubs), in an order each of whose states counts every
 * syscall once. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "adopt.h"
#include "hookgen.h"
#include "injector.h"
#include "log.h"
#include "pmsg.h"
#include "reinject.h"
#include "server.h"
#include "state.h"
#include "syscalls.h"
#include "targets.h"
#include "tool.h"

#define PAGE 4096u
#define MAX_LEFTOVERS 64

/* Tokens of payloads of re-injections a killed server left unfinished,
 * once a new re-injection replaced them in the record. */
static uint64_t leftovers[MAX_LEFTOVERS];
static size_t nleftovers;

/* BPFGRAFT_TEST_REINJECT_STOP=N (tests only): the server SIGKILLs itself
 * right after step N of a re-injection (counted over its life). */
static void test_step(void)
{
    static long at = -1, done;
    if (at < 0) {
        const char *v = getenv("BPFGRAFT_TEST_REINJECT_STOP");
        at = v ? atol(v) : 0;
    }
    if (at > 0 && ++done == at)
        kill(getpid(), SIGKILL);
}

/* Hook h's stub built to enter entry, into plan. */
static int stub_for(const struct target_hook *h, uint64_t entry, struct bpfg_hook_plan *plan, char *ierr)
{
    *plan = h->plan;
    return bpfg_hook_build(plan, h->plan.stub_addr, h->index, entry, ierr);
}

/* Re-points h's stub from entry `from` to entry `to`: the bytes the two
 * builds differ in (the entry's address), one write within the stub's
 * page. 1 written, 0 already done, -EBADMSG when the stub is neither. */
static int repoint_stub(const struct bpfg_stopped *st, const struct target_hook *h, uint64_t from, uint64_t to)
{
    struct bpfg_hook_plan was, now;
    uint8_t mem[BPFG_HOOK_STUB_MAX];
    char ierr[BPFG_ERRLEN];
    int r = stub_for(h, from, &was, ierr);
    if (!r)
        r = stub_for(h, to, &now, ierr);
    if (!r && was.stub_len != now.stub_len)
        r = -EBADMSG;
    if (!r)
        r = bpfg_mem_read(st, h->plan.stub_addr, mem, now.stub_len);
    if (r || !memcmp(mem, now.stub, now.stub_len))
        return r;
    if (memcmp(mem, was.stub, was.stub_len))
        return -EBADMSG;
    size_t lo = 0, hi = now.stub_len;
    while (was.stub[lo] == now.stub[lo])
        lo++;
    while (was.stub[hi - 1] == now.stub[hi - 1])
        hi--;
    uint64_t at = h->plan.stub_addr + lo;
    if (at / PAGE != (at + hi - lo - 1) / PAGE)
        return -ERANGE;
    r = bpfg_mem_write(st, at, now.stub + lo, hi - lo);
    if (r)
        return r;
    test_step();
    return 1;
}

/* The uprobe hooks' stubs still entering the replaced payload enter t's.
 * Returns how many were re-pointed, or a negative errno. */
static int repoint_hooks(struct bpfg_stopped *st, struct target *t)
{
    int moved = 0;
    for (size_t i = 0; i < TARGET_MAX_HOOKS; i++) {
        const struct target_hook *h = &t->hooks[i];
        int r = h->used ? repoint_stub(st, h, t->replaced_entry, t->inj.uprobe_entry) : 0;
        if (r < 0) {
            srv_log(SRV_ERROR, "target %d: the stub of the hook at 0x%llx cannot be re-pointed: %s", (int)t->pid,
                    (unsigned long long)h->plan.func, r == -EBADMSG ? "it enters neither payload" : strerror(-r));
            return r;
        }
        moved += r;
    }
    return moved;
}

/* Every thread, the SIGSYS action and every hook stub of t that still
 * belong to the replaced payload now t's; once all do, the record says so
 * (later adoptions stop nothing). Returns how many uprobe stubs were
 * re-pointed, or a negative errno. */
static int repoint_all(struct server *s, struct target *t)
{
    struct bpfg_stopped st;
    struct syscalls_takeover tk;
    char err[BPFG_ERRLEN];
    int r = syscalls_takeover_begin(s, t, &tk, err, sizeof(err));
    if (r)
        srv_log(SRV_WARN, "target %d: its payload cannot take its syscall hooks over: %s", (int)t->pid, err);
    else if ((r = bpfg_stop_process(t->pid, &st, err)))
        srv_log(SRV_WARN, "target %d: cannot stop it to re-point its hooks: %s", (int)t->pid, err);
    if (r)
        return r;
    r = syscalls_takeover_stopped(&st, t, &tk, test_step, err, sizeof(err));
    if (r)
        srv_log(SRV_ERROR, "target %d: its syscall hooks cannot be moved to its payload: %s", (int)t->pid, err);
    else
        r = repoint_hooks(&st, t);
    bpfg_resume_process(&st, &t->last_stop_ns);
    if (r < 0)
        return r;
    t->replaced_entry = 0;
    state_save_target(s, t);
    return r;
}

static void record_free(struct target *rec)
{
    targets_free_sent(rec);
    syscalls_forget(rec);
    free(rec);
}

/* The record of the other-ABI payload (pid, base, token), if it can be
 * re-injected. */
static int load_record(struct server *s, pid_t pid, uid_t uid, const struct bpfg_pmsg_hello *hello, struct target **out)
{
    struct target *rec = calloc(1, sizeof(*rec));
    if (!rec)
        return -ENOMEM;
    rec->pid = pid;
    rec->uid = uid;
    rec->sock = rec->pidfd = -1;
    rec->inj.base = hello->load_base;
    rec->token = hello->token; /* the record is written again, naming the re-injection */
    int err = state_load_target(s, rec, hello->token);
    const char *why = err ? NULL : syscalls_not_reinjectable(rec);
    if (why) {
        srv_log(SRV_WARN, "target %d: its payload of ABI %u is not re-injected: %s", (int)pid, hello->abi_version, why);
        err = -EOPNOTSUPP;
    }
    if (err)
        record_free(rec);
    else
        *out = rec;
    return err;
}

/* A re-injection that failed before its record: the new payload goes,
 * the old record stays as it was. */
static void undo(struct server *s, struct target *rec, struct target *t)
{
    char err[BPFG_ERRLEN];
    if (t) {
        t->replaced_base = 0;      /* the old payload is not released: listed as other-abi */
        syscalls_keep_dispatch(t); /* its threads, action and sites stay the old payload's */
    }
    if (t && targets_detach(s, rec->pid, 0, 0, err, sizeof(err)) != 0)
        srv_log(SRV_WARN, "target %d: the new payload of a failed re-injection stays: %s", (int)rec->pid, err);
    rec->reinject_token = 0;
    state_save_target(s, rec);
}

/* Steps up to the new record; the new target is listed, its record written. */
static int inject_new(struct server *s, struct target *rec, struct target **out)
{
    char err[BPFG_ERRLEN];
    if (rec->reinject_token && nleftovers < MAX_LEFTOVERS)
        leftovers[nleftovers++] = rec->reinject_token;
    if (getrandom(&rec->reinject_token, sizeof(rec->reinject_token), 0) != sizeof(rec->reinject_token))
        return -errno;
    state_save_target(s, rec);
    test_step();
    struct target *t = NULL;
    int r = targets_reinject(s, rec, rec->reinject_token, &t, err, sizeof(err));
    test_step();
    if (r) {
        srv_log(SRV_ERROR, "target %d: re-injection failed: %s", (int)rec->pid, err);
        undo(s, rec, t);
        return r;
    }
    t->record_held = false;
    snprintf(t->adopted, sizeof(t->adopted), "reinjected");
    state_save_target(s, t);
    test_step();
    *out = t;
    return 0;
}

int reinject_other_abi(struct server *s, int fd, pid_t pid, uid_t uid, const struct bpfg_pmsg_hello *hello)
{
    struct target *rec = NULL, *t = NULL;
    uint64_t replaced, pending;
    state_reinjection(s, pid, &replaced, &pending);
    if (replaced == hello->load_base) { /* replaced already: its successor reconnects on its own */
        close(fd);
        return 0;
    }
    int r = load_record(s, pid, uid, hello, &rec);
    if (r)
        return r;
    r = inject_new(s, rec, &t);
    if (!r) {
        close(fd); /* the old payload keeps its hooks until it goes inert; nothing enters it now */
        int moved = repoint_all(s, t);
        srv_log(SRV_INFO,
                "target %d: its payload of ABI %u (at 0x%llx) replaced by re-injection: payload ABI %u at 0x%llx, "
                "%zu hooks (%d re-pointed%s), %zu syscall programs (%zu sites), %zu programs, %zu maps, threads "
                "stopped %llu us; the old payload stays mapped",
                (int)pid, hello->abi_version, (unsigned long long)rec->inj.base, adopt_payload_abi(),
                (unsigned long long)t->inj.base, t->nhooks, moved < 0 ? 0 : moved,
                moved < 0 ? ", the rest at the next adoption" : "", syscalls_count(t), syscalls_sites(t),
                t->nprogs_sent, t->nmaps_sent, (unsigned long long)t->last_stop_ns / 1000);
        tools_adopted(s, t); /* it is in the tools' links whose programs it runs */
    }
    record_free(rec);
    return r;
}

void reinject_finish(struct server *s, struct target *t)
{
    if (!t->replaced_entry)
        return;
    int moved = repoint_all(s, t);
    if (moved >= 0)
        srv_log(SRV_INFO,
                "target %d: finished the re-injection its last server was killed in (%d hooks re-pointed, %zu "
                "syscall programs)",
                (int)t->pid, moved, syscalls_count(t));
}

bool reinject_leftover(struct server *s, int fd, pid_t pid, uint64_t token)
{
    uint64_t replaced, pending;
    state_reinjection(s, pid, &replaced, &pending);
    bool left = pending == token;
    for (size_t i = 0; i < nleftovers && !left; i++)
        left = leftovers[i] == token;
    if (!token || !left)
        return false;
    struct bpfg_pmsg_hdr h = {.len = sizeof(h), .type = BPFG_PMSG_DETACH};
    int r = pmsg_write(fd, &h, NULL, 0, -1, 1000);
    srv_log(SRV_INFO, "target %d: the payload of a re-injection its server was killed in before it was whole: %s",
            (int)pid, r ? "not told to go yet (at its next reconnect)" : "told to go");
    close(fd);
    return true;
}
