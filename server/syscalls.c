/* Syscall hooks of attached targets (see syscalls.h and payload/syscall.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>

#include "log.h"
#include "server.h"
#include "syscall_names.h"
#include "syscalls.h"
#include "targets.h"

#define PR_SET_SUD 59
#define PR_SUD_OFF 0
#define PR_SUD_ON 1
#define RESTORE_TRIES 100

struct sys_state {
    struct sys_state *next;
    const struct target *t;
    bool handler;              /* the payload installed its SIGSYS handler */
    bool sud_on;               /* dispatch turned on in the threads */
    size_t nprogs;
};

static struct sys_state *states;

static struct sys_state *state_of(const struct target *t, bool create)
{
    for (struct sys_state *x = states; x; x = x->next)
        if (x->t == t)
            return x;
    if (!create)
        return NULL;
    struct sys_state *x = calloc(1, sizeof(*x));
    if (!x)
        return NULL;
    x->t = t;
    x->next = states;
    states = x;
    return x;
}

void syscalls_forget(struct target *t)
{
    for (struct sys_state **pp = &states; *pp; pp = &(*pp)->next)
        if ((*pp)->t == t) {
            struct sys_state *x = *pp;
            *pp = x->next;
            free(x);
            return;
        }
}

size_t syscalls_count(const struct target *t)
{
    struct sys_state *x = state_of(t, false);
    return x ? x->nprogs : 0;
}

/* Tracepoint names that differ from the __NR_ names. */
static const struct {
    const char *tp, *nr;
} aliases[] = {
    {"newstat", "stat"}, {"newlstat", "lstat"}, {"newfstat", "fstat"},
    {"newuname", "uname"}, {"sendfile64", "sendfile"}, {"umount", "umount2"},
};

int syscalls_nr(const char *name)
{
    for (size_t i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++)
        if (strcmp(name, aliases[i].tp) == 0)
            name = aliases[i].nr;
    for (size_t i = 0; i < sizeof(syscall_names) / sizeof(syscall_names[0]); i++)
        if (strcmp(name, syscall_names[i].name) == 0)
            return syscall_names[i].nr;
    return -ENOENT;
}

const char *syscalls_name(int nr)
{
    for (size_t i = 0; i < sizeof(syscall_names) / sizeof(syscall_names[0]); i++)
        if (syscall_names[i].nr == nr)
            return syscall_names[i].name;
    return NULL;
}

bool syscalls_is_kind(enum bpfg_attach_kind kind)
{
    return kind == BPFG_ATTACH_SYSCALL_ENTER || kind == BPFG_ATTACH_SYSCALL_EXIT ||
           kind == BPFG_ATTACH_RAW_SYSCALL_ENTER || kind == BPFG_ATTACH_RAW_SYSCALL_EXIT;
}

static bool is_tracepoint_section(const char *sec)
{
    return strncmp(sec, "tracepoint/", 11) == 0 || strncmp(sec, "tp/", 3) == 0;
}

static uint32_t payload_kind(const struct bpfg_obj_prog *op)
{
    bool tp = is_tracepoint_section(op->section);
    switch (op->kind) {
    case BPFG_ATTACH_SYSCALL_ENTER: return BPFG_SYS_ENTER;
    case BPFG_ATTACH_SYSCALL_EXIT: return BPFG_SYS_EXIT;
    case BPFG_ATTACH_RAW_SYSCALL_ENTER: return tp ? BPFG_SYS_RAW_ENTER : BPFG_SYS_RAWTP_ENTER;
    case BPFG_ATTACH_RAW_SYSCALL_EXIT: return tp ? BPFG_SYS_RAW_EXIT : BPFG_SYS_RAWTP_EXIT;
    default: return 0;
    }
}

int syscalls_check(const struct bpfg_obj_prog *op, char *err, size_t errlen)
{
    if (op->kind != BPFG_ATTACH_SYSCALL_ENTER && op->kind != BPFG_ATTACH_SYSCALL_EXIT)
        return 0;
    int nr = op->syscall ? syscalls_nr(op->syscall) : -ENOENT;
    if (nr < 0 || nr >= BPFG_SYS_MAX_NR) {
        snprintf(err, errlen, "program '%s' (%s): no x86-64 syscall named '%s'", op->name, op->section,
                 op->syscall ? op->syscall : "");
        return BPFG_RPC_E_NOT_FOUND;
    }
    return 0;
}

static pid_t payload_tid(const struct bpfg_stopped *st, const struct target *t)
{
    struct bpfg_payload_params p;
    if (bpfg_mem_read(st, t->inj.params, &p, sizeof(p)) != 0)
        return 0;
    return p.payload_tid;
}

/* prctl(PR_SET_SYSCALL_USER_DISPATCH, ...) on every stopped thread but
 * the payload's. Turning it on also unblocks SIGSYS in the thread (a
 * dispatch while SIGSYS is blocked kills the process). */
static int set_dispatch(struct bpfg_stopped *st, const struct target *t, bool on,
                        const struct bpfg_pmsg_syscall_reply *rep, char *err, size_t errlen)
{
    pid_t skip = payload_tid(st, t);
    char ierr[BPFG_ERRLEN];
    for (size_t i = 0; i < st->nthreads; i++) {
        if (st->threads[i].tid == skip)
            continue;
        uint64_t args[6] = {PR_SET_SUD, on ? PR_SUD_ON : PR_SUD_OFF, 0, 0, 0, 0};
        if (on) {
            args[2] = rep->exempt_base;
            args[3] = rep->exempt_len;
            args[4] = rep->selector;
            st->threads[i].sigmask &= ~(1ull << (SIGSYS - 1));
        }
        int64_t ret = 0;
        int r = bpfg_remote_syscall_on(st, i, SYS_prctl, args, &ret, ierr);
        if (r) {
            snprintf(err, errlen, "thread %d: %s", (int)st->threads[i].tid, ierr);
            return r;
        }
        if (ret < 0) {
            snprintf(err, errlen, "prctl(PR_SET_SYSCALL_USER_DISPATCH) in thread %d: %s%s", (int)st->threads[i].tid,
                     strerror((int)-ret), ret == -EINVAL ? " (kernel without CONFIG_SYSCALL_USER_DISPATCH?)" : "");
            return (int)ret;
        }
    }
    return 0;
}

int syscalls_attach(struct server *s, struct target *t, const struct reg_prog *p, char *err, size_t errlen)
{
    const struct bpfg_obj_prog *op = p->prog;
    struct sys_state *x = state_of(t, true);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct bpfg_pmsg_syscall_hook h = {.prog_id = p->id, .kind = payload_kind(op), .nr = -1};
    if (op->kind == BPFG_ATTACH_SYSCALL_ENTER || op->kind == BPFG_ATTACH_SYSCALL_EXIT)
        h.nr = syscalls_nr(op->syscall);
    struct bpfg_pmsg_syscall_reply rep;
    size_t got = 0;
    int r = targets_payload_call(s, t, BPFG_PMSG_SYSCALL_HOOK, &h, sizeof(h), &rep, sizeof(rep), &got, err, errlen);
    if (r)
        return r;
    x->handler = true;
    if (got < sizeof(rep)) {
        snprintf(err, errlen, "the payload of process %d sent a short SYSCALL_HOOK reply", (int)t->pid);
        return -EPROTO;
    }
    x->nprogs++;
    if (x->sud_on)
        return 0;
    struct bpfg_stopped st;
    char ierr[BPFG_ERRLEN];
    if ((r = bpfg_stop_process(t->pid, &st, ierr))) {
        snprintf(err, errlen, "%s", ierr);
        return r;
    }
    r = set_dispatch(&st, t, true, &rep, err, errlen);
    if (r) {
        /* whatever threads got it: make their dispatch a no-op */
        uint8_t allow = 0;
        bpfg_mem_write(&st, rep.selector, &allow, 1);
        set_dispatch(&st, t, false, NULL, ierr, sizeof(ierr));
    }
    bpfg_resume_process(&st, &t->last_stop_ns);
    if (r)
        return r;
    x->sud_on = true;
    srv_log(SRV_INFO, "target %d: syscall user dispatch on in every thread (threads stopped %llu us)", (int)t->pid,
            (unsigned long long)t->last_stop_ns / 1000);
    return 0;
}

void syscalls_detach(struct server *s, struct target *t, bool *keep_payload)
{
    struct sys_state *x = state_of(t, false);
    if (!x || !x->handler)
        return;
    /* the handler and its stubs may still be on some thread's stack */
    *keep_payload = true;
    char err[256], ierr[BPFG_ERRLEN];
    struct bpfg_pmsg_syscall_off_reply rep;
    memset(&rep, 0, sizeof(rep));
    size_t got = 0;
    int r = targets_payload_call(s, t, BPFG_PMSG_SYSCALL_OFF, NULL, 0, &rep, sizeof(rep), &got, err, sizeof(err));
    if (r) {
        srv_log(SRV_WARN, "target %d: turning syscall hooks off: %s", (int)t->pid, err);
        return;
    }
    srv_log(SRV_INFO, "target %d: syscall hooks off (%llu syscalls dispatched, %llu ran without programs: nested)",
            (int)t->pid, (unsigned long long)rep.dispatched, (unsigned long long)rep.misses);
    struct bpfg_stopped st;
    if (x->sud_on) {
        if ((r = bpfg_stop_process(t->pid, &st, ierr)) != 0) {
            srv_log(SRV_WARN, "target %d: %s", (int)t->pid, ierr);
            return;
        }
        if (set_dispatch(&st, t, false, NULL, err, sizeof(err)) != 0)
            srv_log(SRV_WARN, "target %d: turning dispatch off: %s", (int)t->pid, err);
        bpfg_resume_process(&st, NULL);
        x->sud_on = false;
    }
    if (!rep.saved_action)
        return;
    /* A SIGSYS raised by dispatch before it went off may still wait for
     * delivery in a thread (it was re-delivered on resume): our handler
     * must take it. Restore the action in a stop with none pending. */
    for (int tries = 0; tries < RESTORE_TRIES; tries++) {
        if (bpfg_stop_process(t->pid, &st, ierr) != 0)
            return;
        bool pending = false;
        for (size_t i = 0; i < st.nthreads; i++)
            pending |= st.threads[i].pending_sig == SIGSYS;
        if (!pending) {
            uint64_t args[6] = {SIGSYS, rep.saved_action, 0, 8, 0, 0};
            int64_t ret = 0;
            r = bpfg_remote_syscall_on(&st, 0, SYS_rt_sigaction, args, &ret, ierr);
            bpfg_resume_process(&st, NULL);
            if (r || ret < 0)
                srv_log(SRV_WARN, "target %d: restoring the SIGSYS action: %s", (int)t->pid,
                        r ? ierr : strerror((int)-ret));
            x->handler = false;
            return;
        }
        bpfg_resume_process(&st, NULL);
        struct timespec ms = {0, 2000000};
        nanosleep(&ms, NULL);
    }
    srv_log(SRV_WARN, "target %d: SIGSYS keeps arriving; the payload's handler stays installed", (int)t->pid);
}

struct exec_event {
    pid_t pid, tid;
    const char *path;
};

static void pack_exec(msgpack_packer *pk, void *arg)
{
    const struct exec_event *ev = arg;
    msgpack_pack_map(pk, 5);
    bpfg_pack_cstr(pk, "topic");
    bpfg_pack_cstr(pk, "target");
    bpfg_pack_cstr(pk, "pid");
    msgpack_pack_int(pk, ev->pid);
    bpfg_pack_cstr(pk, "state");
    bpfg_pack_cstr(pk, "exec");
    bpfg_pack_cstr(pk, "tid");
    msgpack_pack_int(pk, ev->tid);
    bpfg_pack_cstr(pk, "path");
    bpfg_pack_cstr(pk, ev->path);
}

void syscalls_async(struct server *s, struct target *t, const struct bpfg_pmsg_hdr *h, const char *body)
{
    if (h->type != BPFG_PMSG_EXEC || h->len < sizeof(*h) + sizeof(struct bpfg_pmsg_exec) + 1)
        return;
    const struct bpfg_pmsg_exec *e = (const void *)body;
    struct exec_event ev = {(pid_t)e->pid, (pid_t)e->tid, body + sizeof(*e)};
    srv_log(SRV_INFO, "target %d: thread %d calls execve(\"%s\"): the new image runs without hooks", (int)t->pid,
            ev.tid, ev.path);
    server_broadcast(s, SRV_TOPIC_TARGET, pack_exec, &ev);
}
