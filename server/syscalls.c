/* Syscall hooks of attached targets (see syscalls.h and payload/syscall.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#include "hookgen.h"
#include "log.h"
#include "procfs.h"
#include "server.h"
#include "state.h"
#include "syscall_names.h"
#include "sites.h"
#include "symbols.h"
#include "syscalls.h"
#include "targets.h"

#define PR_SET_SUD 59
#define PR_SUD_OFF 0
#define PR_SUD_ON 1
#define RESTORE_TRIES 100
#define STUB_PAGE 4096
#define TEXT_PAGE 4096
#define MAX_STUB_PAGES 64
#define MAX_SYS_PROGS 64 /* program ids kept for re-arming */
#define MAX_SITES (MAX_STUB_PAGES * (STUB_PAGE / BPFG_SYS_STUB_SIZE))
#define BRANCH_WINDOW 65536 /* bytes each side scanned for branches into a site */
#define REACH (1ll << 31)

/* A rewritten syscall site (`mov $nr,%eax; syscall` -> `jmp stub`). */
struct sys_site {
    uint64_t addr;
    uint8_t orig[5];
    uint8_t jmp[5];
};

struct stub_page {
    uint64_t addr;
    size_t used;
};

struct sys_state {
    struct sys_state *next;
    const struct target *t;
    bool handler; /* the payload installed its SIGSYS handler */
    bool sud_on;  /* dispatch turned on in the threads */
    size_t nprogs;
    uint64_t fast_entry; /* bpfg_sys_fast_entry; 0: no rewriting */
    uint64_t selector;   /* the dispatch switch in the target */
    struct sys_site *sites;
    size_t nsites, cap;
    size_t refused;
    struct stub_page pages[MAX_STUB_PAGES];
    size_t npages;
    /* not in records of servers before re-arming (SYS_STATE_V1) */
    uint32_t prog_ids[MAX_SYS_PROGS]; /* the syscall programs, for syscalls_rearm */
    size_t nids;
    bool keep; /* not in records: a failed re-injection's payload, whose detach leaves dispatch alone */
};

/* A record's struct ends here; the sites follow, then nids program ids. */
#define SYS_STATE_V1 offsetof(struct sys_state, prog_ids)

static bool rewrite_sites = true;

static void restore_sites(struct bpfg_stopped *st, struct sys_state *x, pid_t pid);

void syscalls_set_rewrite(bool on)
{
    rewrite_sites = on;
}

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
            free(x->sites);
            free(x);
            return;
        }
}

/* The state of t's syscall hooks as bytes (state.c: a restarted server
 * imports them): the struct up to SYS_STATE_V1, its rewritten sites, its
 * program ids. *buf is NULL and *len 0 when t has none. */
int syscalls_export(const struct target *t, void **buf, size_t *len)
{
    struct sys_state *x = state_of(t, false);
    *buf = NULL;
    *len = 0;
    if (!x)
        return 0;
    size_t sites = x->nsites * sizeof(*x->sites), ids = x->nids * sizeof(x->prog_ids[0]);
    uint8_t *b = malloc(SYS_STATE_V1 + sites + ids);
    if (!b)
        return -ENOMEM;
    memcpy(b, x, SYS_STATE_V1);
    if (sites)
        memcpy(b + SYS_STATE_V1, x->sites, sites);
    memcpy(b + SYS_STATE_V1 + sites, x->prog_ids, ids);
    *buf = b;
    *len = SYS_STATE_V1 + sites + ids;
    return 0;
}

int syscalls_import(struct target *t, const void *buf, size_t len)
{
    struct sys_state in = {0};
    if (!len)
        return 0;
    if (len < SYS_STATE_V1)
        return -EBADMSG;
    memcpy(&in, buf, SYS_STATE_V1);
    size_t site_bytes = in.nsites * sizeof(*in.sites);
    size_t id_bytes = in.nsites > MAX_SITES || len < SYS_STATE_V1 + site_bytes ? 1 : len - SYS_STATE_V1 - site_bytes;
    if (id_bytes % sizeof(in.prog_ids[0]) || id_bytes > sizeof(in.prog_ids))
        return -EBADMSG;
    in.nids = id_bytes / sizeof(in.prog_ids[0]); /* 0 in a record of an older server: not re-armed */
    memcpy(in.prog_ids, (const uint8_t *)buf + SYS_STATE_V1 + site_bytes, id_bytes);
    struct sys_state *x = state_of(t, true);
    struct sys_site *sites = in.nsites ? malloc(in.nsites * sizeof(*sites)) : NULL;
    if (!x || (in.nsites && !sites)) {
        free(sites);
        return -ENOMEM;
    }
    if (in.nsites)
        memcpy(sites, (const uint8_t *)buf + SYS_STATE_V1, in.nsites * sizeof(*sites));
    struct sys_state *next = x->next;
    free(x->sites);
    *x = in;
    x->next = next;
    x->t = t;
    x->sites = sites;
    x->cap = in.nsites;
    return 0;
}

size_t syscalls_count(const struct target *t)
{
    struct sys_state *x = state_of(t, false);
    return x ? x->nprogs : 0;
}

size_t syscalls_sites(const struct target *t)
{
    struct sys_state *x = state_of(t, false);
    return x ? x->nsites : 0;
}

/* Tracepoint names that differ from the __NR_ names. */
static const struct {
    const char *tp, *nr;
} aliases[] = {
    {"newstat", "stat"},   {"newlstat", "lstat"},      {"newfstat", "fstat"},
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
static int dispatch_threads(struct bpfg_stopped *st, const struct target *t, bool on,
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

/* dispatch_threads with the selector at ALLOW until every thread is put
 * back: a thread whose dispatch is on returns from its prctl into the
 * injector's rescue path, whose rt_sigprocmask (outside the exempt region)
 * would raise SIGSYS with every signal blocked, killing the process, if
 * the server died there. Killed meanwhile, the selector stays ALLOW (the
 * programs miss syscalls, nothing dies) until the payload reconnects and
 * blocks again (payload/syscall.c, syscall_reconnected). */
static int set_dispatch(struct bpfg_stopped *st, const struct target *t, bool on,
                        const struct bpfg_pmsg_syscall_reply *rep, char *err, size_t errlen)
{
    uint8_t sel = 0, allow = 0;
    int r = on ? bpfg_mem_read(st, rep->selector, &sel, 1) : 0;
    if (!r && sel != allow)
        r = bpfg_mem_write(st, rep->selector, &allow, 1);
    if (r) {
        snprintf(err, errlen, "cannot set the dispatch selector: %s", strerror(-r));
        return r;
    }
    r = dispatch_threads(st, t, on, rep, err, errlen);
    int w = sel != allow ? bpfg_mem_write(st, rep->selector, &sel, 1) : 0;
    if (w && !r) {
        snprintf(err, errlen, "cannot set the dispatch selector back: %s", strerror(-w));
        r = w;
    }
    return r;
}

static int go_rewrite(struct server *s, struct target *t, struct sys_state *x, char *err, size_t errlen);

/* The program is in the payload's lists: the first one rewrites every
 * site, and a failure takes it out again. Go's rt_sigreturn (the end of
 * each of its signal handlers) is not rewritten: reached from a handler
 * that interrupted a probe, its stub would start at the top of the
 * handler stack the probe is still on; its own programs are refused. */
static int go_attach(struct server *s, struct target *t, struct sys_state *x, uint32_t prog_id, int nr, char *err,
                     size_t errlen)
{
    int r = 0;
    if (nr == SYS_rt_sigreturn) {
        snprintf(err, errlen, "its rt_sigreturn is left unhooked (payload/README.md, \"Go and Rust targets\")");
        r = -EOPNOTSUPP;
    } else if (!x->fast_entry) {
        snprintf(err, errlen, "the payload of process %d cannot rewrite syscall sites (too old)", (int)t->pid);
        r = -EOPNOTSUPP;
    } else if (!x->nsites) {
        r = go_rewrite(s, t, x, err, errlen);
    }
    if (r) {
        char e0[BPFG_ERRLEN];
        snprintf(e0, sizeof(e0), "%s", err);
        syscalls_remove_prog(s, t, prog_id);
        snprintf(err, errlen, "syscall tracepoints in Go process %d refused: %s", (int)t->pid, e0);
    }
    return r;
}

/* The SYSCALL_HOOK message of program p (go: without dispatch). */
static struct bpfg_pmsg_syscall_hook hook_msg(const struct reg_prog *p, bool go)
{
    const struct bpfg_obj_prog *op = p->prog;
    struct bpfg_pmsg_syscall_hook h = {.prog_id = p->id,
                                       .kind = payload_kind(op),
                                       .nr = -1,
                                       .flags = (rewrite_sites ? BPFG_SYS_F_REWRITE : 0) |
                                                (go ? BPFG_SYS_F_NO_DISPATCH : 0)};
    if (op->kind == BPFG_ATTACH_SYSCALL_ENTER || op->kind == BPFG_ATTACH_SYSCALL_EXIT)
        h.nr = syscalls_nr(op->syscall);
    return h;
}

int syscalls_attach(struct server *s, struct target *t, const struct reg_prog *p, char *err, size_t errlen)
{
    /* Go's handlers run on their own signal stack (SA_ONSTACK) and end in
     * rt_sigreturn, which SUD turns into a second SIGSYS: its sites are
     * all rewritten instead (go_rewrite) */
    bool go = sym_exe_has_section(t->pid, ".gopclntab");
    if (go && !rewrite_sites) {
        snprintf(err, errlen,
                 "syscall tracepoints in process %d refused: it is a Go program, whose syscall sites must be "
                 "rewritten (bpfgraftd runs with --syscall-rewrite=off)",
                 (int)t->pid);
        return -EOPNOTSUPP;
    }
    struct sys_state *x = state_of(t, true);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    struct bpfg_pmsg_syscall_hook h = hook_msg(p, go);
    struct bpfg_pmsg_syscall_reply rep;
    memset(&rep, 0, sizeof(rep));
    size_t got = 0;
    int r = targets_payload_call(s, t, BPFG_PMSG_SYSCALL_HOOK, &h, sizeof(h), &rep, sizeof(rep), &got, err, errlen);
    if (r)
        return r;
    x->handler = true;
    if (got < offsetof(struct bpfg_pmsg_syscall_reply, fast_entry)) {
        snprintf(err, errlen, "the payload of process %d sent a short SYSCALL_HOOK reply", (int)t->pid);
        return -EPROTO;
    }
    x->nprogs++;
    if (x->nids < MAX_SYS_PROGS)
        x->prog_ids[x->nids++] = p->id;
    /* an older payload's reply ends before fast_entry: no rewriting */
    x->fast_entry = got >= sizeof(rep) && rewrite_sites ? rep.fast_entry : 0;
    x->selector = rep.selector;
    if (go)
        return go_attach(s, t, x, p->id, h.nr, err, errlen);
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

static size_t rewrite_stopped(struct server *s, struct target *t, struct bpfg_stopped *st, struct sys_state *x,
                              const uint64_t *sites, size_t n);

/* glibc functions whose syscall sites a libbpf tool makes hot, by their
 * number (-1: syscall(), the number in rax; libbpf makes bpf() and
 * perf_event_open() through it). */
static const struct {
    const char *fn;
    int nr;
} tool_hot[] = {
    {"syscall", -1},
    {"close", SYS_close},           /* each map, program and link fd the tool drops */
    {"ioctl", SYS_ioctl},           /* perf events: enable, set BPF */
    {"epoll_wait", SYS_epoll_wait}, /* ring and perf buffer polling */
};

#define TOOL_FN_BYTES 128

/* The sites of function fn (one of the two forms, number nr) in the
 * stopped tool, added to sites[*n] (up to max). */
static void glibc_sites(struct bpfg_stopped *st, pid_t pid, const char *fn, int nr, uint64_t *sites, size_t *n,
                        size_t max)
{
    uint64_t at, lo, hi;
    uint8_t code[TOOL_FN_BYTES];
    char why[BPFG_ERRLEN];
    if (sym_resolve(pid, "libc.so.6", fn, 0, &at, why, sizeof(why)) != 0)
        return;
    size_t len = sizeof(code);
    if (sym_function_at(pid, at, &lo, &hi) == 0 && hi > at && hi - at < len)
        len = (size_t)(hi - at);
    if (len < 7 || bpfg_mem_read(st, at, code, len) != 0)
        return;
    for (size_t i = 0; i + 7 <= len && *n < max; i++) {
        uint32_t imm;
        memcpy(&imm, code + i + 1, 4);
        bool form = nr < 0 ? memcmp(code + i, BPFG_SYS_SITE_R9_LOAD, 5) == 0 : code[i] == 0xb8 && imm == (uint32_t)nr;
        if (form && code[i + 5] == 0x0f && code[i + 6] == 0x05)
            sites[(*n)++] = at + i;
    }
}

/* A tool's hot syscall sites (tool_hot) are rewritten now, in the stop
 * that turns dispatch on, so that none of those calls ever traps. Found by
 * their first SIGSYS they were reported up to the payload's 50 ms poll
 * later and rewritten in a stop of their own (~4 ms on the loaded bench
 * VM): the first 10-25 thousand map calls went through SIGSYS
 * (bpfgraft-bench --quick tool measured that), and so did every close of
 * the bench's 50 map creates. The tool's other sites are still found that
 * way. */
static void tool_early_sites(struct server *s, struct target *t, struct sys_state *x, struct bpfg_stopped *st)
{
    uint64_t sites[16];
    size_t n = 0;
    if (!x->fast_entry)
        return;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; i < sizeof(tool_hot) / sizeof(tool_hot[0]); i++)
        glibc_sites(st, t->pid, tool_hot[i].fn, tool_hot[i].nr, sites, &n, sizeof(sites) / sizeof(sites[0]));
    size_t done = n ? rewrite_stopped(s, t, st, x, sites, n) : 0;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long us = (t1.tv_sec - t0.tv_sec) * 1000000 + (t1.tv_nsec - t0.tv_nsec) / 1000;
    srv_log(SRV_DEBUG, "tool %d: %zu of %zu glibc syscall sites rewritten before the tool's first call (%ld us)",
            (int)t->pid, done, n, us);
}

int syscalls_tool_dispatch(struct server *s, struct target *t, const struct bpfg_pmsg_syscall_reply *rep, char *err,
                           size_t errlen)
{
    struct sys_state *x = state_of(t, true);
    if (!x) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    x->handler = true;
    x->selector = rep->selector;
    if (!x->fast_entry && rewrite_sites) /* a payload before tool-mode rewriting replies 0 */
        x->fast_entry = rep->fast_entry;
    if (x->sud_on)
        return 0;
    struct bpfg_stopped st;
    char ierr[BPFG_ERRLEN];
    int r = bpfg_stop_process(t->pid, &st, ierr);
    if (r) {
        snprintf(err, errlen, "%s", ierr);
        return r;
    }
    r = set_dispatch(&st, t, true, rep, err, errlen);
    if (!r)
        tool_early_sites(s, t, x, &st);
    bpfg_resume_process(&st, &t->last_stop_ns);
    if (!r)
        x->sud_on = true;
    return r;
}

static void forget_id(struct sys_state *x, uint32_t prog_id)
{
    for (size_t i = 0; i < x->nids; i++)
        if (x->prog_ids[i] == prog_id) {
            x->prog_ids[i] = x->prog_ids[--x->nids];
            return;
        }
}

size_t syscalls_rearm(struct server *s, struct target *t)
{
    struct sys_state *x = state_of(t, false);
    if (!x || !x->nids)
        return 0;
    uint32_t ids[MAX_SYS_PROGS];
    size_t n = x->nids, armed = 0;
    memcpy(ids, x->prog_ids, n * sizeof(ids[0]));
    x->nids = x->nprogs = 0; /* syscalls_attach counts them again */
    for (size_t i = 0; i < n; i++) {
        struct reg_prog *p = registry_prog(&s->reg, ids[i]);
        char err[BPFG_ERRLEN] = "its object is gone";
        if (p && syscalls_attach(s, t, p, err, sizeof(err)) == 0)
            armed++;
        else
            srv_log(SRV_WARN, "target %d: syscall program %u stays off: %s", (int)t->pid, ids[i], err);
    }
    return armed;
}

void syscalls_remove_prog(struct server *s, struct target *t, uint32_t prog_id)
{
    struct sys_state *x = state_of(t, false);
    if (!x || !x->nprogs)
        return;
    struct bpfg_pmsg_syscall_unhook u = {prog_id};
    char err[256], ierr[BPFG_ERRLEN];
    size_t got = 0;
    if (targets_payload_call(s, t, BPFG_PMSG_SYSCALL_UNHOOK, &u, sizeof(u), NULL, 0, &got, err, sizeof(err)) != 0)
        return; /* not one of its syscall programs */
    forget_id(x, prog_id);
    if (--x->nprogs)
        return;
    /* The last one: the payload's selector now lets every syscall through
     * (no signal); rewritten sites go back to the original code. Dispatch
     * and the handler stay for the next program. */
    struct bpfg_stopped st;
    if (x->nsites && bpfg_stop_process(t->pid, &st, ierr) == 0) {
        restore_sites(&st, x, t->pid);
        bpfg_resume_process(&st, NULL);
    }
    srv_log(SRV_INFO, "target %d: no syscall program left", (int)t->pid);
}

/* ---- rewritten syscall sites (payload_abi.h: BPFG_PMSG_SYS_SITES) ---- */

struct exec_map {
    uint64_t start, end;
};

struct code_lookup {
    uint64_t addr, len;
    struct exec_map *m;
    bool ok;
};

static int holding(const struct bpfg_procfs_map *pm, void *arg)
{
    struct code_lookup *cl = arg;
    if (cl->addr < pm->start || cl->addr >= pm->end)
        return 0;
    const char *name = pm->path;
    cl->ok = cl->addr + cl->len <= pm->end && pm->perms[2] == 'x' && name[0] == '/' &&
             strncmp(name, "/memfd:", 7) != 0 && !strstr(name, "(deleted)");
    cl->m->start = pm->start;
    cl->m->end = pm->end;
    return 1;
}

/* The file-backed executable mapping holding [addr, addr + len), from
 * /proc/PID/maps. Anonymous code (JIT), memfds (our payload, JIT caches)
 * and the vDSO are refused: their code may change under us. */
static bool file_code_mapping(pid_t pid, uint64_t addr, size_t len, struct exec_map *m)
{
    struct code_lookup cl = {addr, len, m, false};
    bpfg_procfs_maps(pid, holding, &cl);
    return cl.ok;
}

/* Conservative: any byte sequence in buf (code at base) that would be a
 * direct jmp/jcc/call/loop landing inside (site, site + 7), decoded from
 * every offset, refuses the site. A false alarm only keeps a site on the
 * signal path. */
static bool branch_into(const uint8_t *buf, size_t len, uint64_t base, uint64_t site)
{
    for (size_t i = 0; i + 2 <= len; i++) {
        uint64_t at = base + i, target;
        uint8_t op = buf[i];
        if (op == 0xeb || (op >= 0x70 && op <= 0x7f) || (op >= 0xe0 && op <= 0xe3)) {
            target = at + 2 + (uint64_t)(int64_t)(int8_t)buf[i + 1];
            if (target > site && target < site + 7)
                return true;
        }
        int32_t rel;
        if ((op == 0xe8 || op == 0xe9) && i + 5 <= len) {
            memcpy(&rel, buf + i + 1, 4);
            target = at + 5 + (uint64_t)(int64_t)rel;
            if (target > site && target < site + 7)
                return true;
        }
        if (op == 0x0f && (buf[i + 1] & 0xf0) == 0x80 && i + 6 <= len) {
            memcpy(&rel, buf + i + 2, 4);
            target = at + 6 + (uint64_t)(int64_t)rel;
            if (target > site && target < site + 7)
                return true;
        }
    }
    return false;
}

static bool reaches(uint64_t from, uint64_t to)
{
    int64_t d = (int64_t)(to - from);
    return d > -REACH + 4096 && d < REACH - 4096;
}

/* A stub page near site, mapped by a remote mmap on threads[0]: the
 * payload's thread has no dispatch. Another thread has (the injector runs
 * its syscalls in the exempt region when the kernel says where that is,
 * Linux 6.6): syscalls are allowed while it runs (every thread is stopped;
 * a server killed meanwhile leaves them allowed, uncounted, until the
 * payload reconnects). */
static int alloc_stub_page(struct bpfg_stopped *st, struct sys_state *x, bool payload_thread, uint64_t site,
                           uint64_t *addr, char *ierr)
{
    if (payload_thread)
        return bpfg_remote_alloc_near(st, site, STUB_PAGE, addr, ierr);
    uint8_t allow = 0, block = 1;
    int r = bpfg_mem_write(st, x->selector, &allow, 1);
    if (r)
        return r;
    r = bpfg_remote_alloc_near(st, site, STUB_PAGE, addr, ierr);
    int w = bpfg_mem_write(st, x->selector, &block, 1);
    if (w && !r) {
        snprintf(ierr, BPFG_ERRLEN, "cannot turn dispatch back on: %s", strerror(-w));
        bpfg_remote_free(st, *addr, STUB_PAGE, NULL);
        r = w;
    }
    return r;
}

/* A stub slot within reach of site (allocating a page near it if needed). */
static int stub_for(struct bpfg_stopped *st, struct sys_state *x, pid_t payload, uint64_t site, uint64_t *stub,
                    char *ierr)
{
    for (size_t i = 0; i < x->npages; i++)
        if (x->pages[i].used + BPFG_SYS_STUB_SIZE <= STUB_PAGE && reaches(site, x->pages[i].addr)) {
            *stub = x->pages[i].addr + x->pages[i].used;
            x->pages[i].used += BPFG_SYS_STUB_SIZE;
            return 0;
        }
    if (x->npages == MAX_STUB_PAGES) {
        snprintf(ierr, BPFG_ERRLEN, "%d stub pages in use", MAX_STUB_PAGES);
        return -ENOSPC;
    }
    /* The remote syscall runs on threads[0]. The payload thread has no
     * dispatch, so the selector stays blocking: run it there. */
    size_t pt = st->nthreads;
    for (size_t i = 0; i < st->nthreads; i++)
        if (st->threads[i].tid == payload)
            pt = i;
    struct bpfg_thread t0 = st->threads[0];
    if (pt < st->nthreads) {
        st->threads[0] = st->threads[pt];
        st->threads[pt] = t0;
    }
    uint64_t addr;
    int r = alloc_stub_page(st, x, pt < st->nthreads, site, &addr, ierr);
    if (pt < st->nthreads) {
        st->threads[pt] = st->threads[0];
        st->threads[0] = t0;
    }
    if (r)
        return r;
    x->pages[x->npages].addr = addr;
    x->pages[x->npages].used = BPFG_SYS_STUB_SIZE;
    x->npages++;
    *stub = addr;
    return 0;
}

/* code: the site's first 7 bytes, one of the two forms (payload_abi.h);
 * load_first: the second shape whatever the first byte (Go sites). */
static void build_stub(uint8_t *b, uint64_t stub, uint64_t site, const uint8_t *code, uint64_t entry, bool load_first)
{
    static const uint8_t head[] = {0x48, 0x8d, 0x64, 0x24, 0x80};          /* lea -0x80(%rsp),%rsp */
    static const uint8_t tail[] = {0x48, 0x8d, 0xa4, 0x24, 0x80, 0, 0, 0}; /* lea 0x80(%rsp),%rsp */
    int32_t rel;
    memset(b, 0xcc, BPFG_SYS_STUB_SIZE);
    bool nr_in_rax = code[0] != 0xb8 || load_first;
    memcpy(b, nr_in_rax ? code : head, 5);     /* the displaced load first: it reads above rsp */
    memcpy(b + 5, nr_in_rax ? head : code, 5); /* or the site's own mov $nr,%eax */
    b[10] = 0xff, b[11] = 0x15;                /* call *16(%rip) */
    rel = 32 - BPFG_SYS_STUB_RET_OFF;
    memcpy(b + 12, &rel, 4);
    memcpy(b + BPFG_SYS_STUB_RET_OFF, tail, 8);
    b[24] = 0xe9; /* jmp site + 7 */
    rel = (int32_t)(int64_t)(site + 7 - (stub + 29));
    memcpy(b + 25, &rel, 4);
    memcpy(b + 32, &entry, 8);
    memcpy(b + BPFG_SYS_STUB_SITE_OFF, &site, 8);
}

/* A site checked and recorded, its stub built, not yet written. */
struct planned_site {
    uint64_t site, stub;
    uint8_t sb[BPFG_SYS_STUB_SIZE];
    uint64_t pre; /* a Go site's pre-stub (its displaced instructions), 0: none */
    uint8_t pb[BPFG_SYS_STUB_SIZE];
};

static int check_branches(struct bpfg_stopped *st, const struct exec_map *m, uint64_t site, char *why)
{
    uint64_t lo = site > m->start + BRANCH_WINDOW ? site - BRANCH_WINDOW : m->start;
    uint64_t hi = site + 7 + BRANCH_WINDOW < m->end ? site + 7 + BRANCH_WINDOW : m->end;
    uint8_t *buf = malloc(hi - lo);
    if (!buf)
        return snprintf(why, BPFG_ERRLEN, "out of memory"), -ENOMEM;
    int r = bpfg_mem_read(st, lo, buf, hi - lo);
    bool branch = !r && branch_into(buf, hi - lo, lo, site);
    free(buf);
    if (r)
        return snprintf(why, BPFG_ERRLEN, "cannot read the code around it"), r;
    if (branch)
        return snprintf(why, BPFG_ERRLEN, "a branch nearby may land inside it"), -EINVAL;
    return 0;
}

/* Checks one site of the stopped process, and whether its 7 bytes are one
 * of the two forms (payload_abi.h). */
static int check_site(struct bpfg_stopped *st, pid_t pid, uint64_t site, uint8_t code[7], char *why)
{
    struct exec_map m;
    uint32_t nr;
    if (!file_code_mapping(pid, site, 7, &m))
        return snprintf(why, BPFG_ERRLEN, "not in a file-backed executable mapping"), -EPERM;
    if (bpfg_mem_read(st, site, code, 7) != 0)
        return snprintf(why, BPFG_ERRLEN, "unreadable"), -EFAULT;
    /* a page-crossing jmp is two writes, which a killed server could tear
     * (the threads then run half a jmp); within a page it is one */
    if (site / TEXT_PAGE != (site + 4) / TEXT_PAGE)
        return snprintf(why, BPFG_ERRLEN, "its jmp would cross a page boundary"), -EINVAL;
    memcpy(&nr, code + 1, 4);
    bool imm = code[0] == 0xb8 && !bpfg_sys_slow_only(nr), r9 = memcmp(code, BPFG_SYS_SITE_R9_LOAD, 5) == 0;
    if (code[5] != 0x0f || code[6] != 0x05 || !(imm || r9))
        return snprintf(why, BPFG_ERRLEN, "not a `mov $nr,%%eax; syscall` of a plain syscall nor glibc's syscall()"),
               -EINVAL;
    int r = check_branches(st, &m, site, why);
    if (!r && bpfg_any_thread_in(st, site + 1, site + 5, NULL))
        return snprintf(why, BPFG_ERRLEN, "a thread is inside it"), -EBUSY;
    return r;
}

/* Room for one more record in x->sites. */
static int reserve_site(struct sys_state *x, char *why)
{
    if (x->nsites < x->cap)
        return 0;
    size_t cap = x->cap ? 2 * x->cap : 64;
    struct sys_site *n = realloc(x->sites, cap * sizeof(*n));
    if (!n)
        return snprintf(why, BPFG_ERRLEN, "out of memory"), -ENOMEM;
    x->sites = n;
    x->cap = cap;
    return 0;
}

/* The record of a site whose first 5 bytes (orig) become a jmp to dest. */
static void record_site(struct sys_state *x, uint64_t site, const uint8_t *orig, uint64_t dest)
{
    struct sys_site *rec = &x->sites[x->nsites++];
    int32_t rel = (int32_t)(int64_t)(dest - (site + 5));
    rec->addr = site;
    memcpy(rec->orig, orig, 5);
    rec->jmp[0] = 0xe9;
    memcpy(rec->jmp + 1, &rel, 4);
}

/* Checks one site, gives it a stub and records it (x->sites) before any
 * byte is written: a server killed between the record and the write
 * leaves a record whose restore writes the original bytes over
 * themselves, never a patched site no record knows. 1 if it is already
 * rewritten. */
static int plan_site(struct bpfg_stopped *st, struct sys_state *x, pid_t pid, pid_t payload, uint64_t site,
                     struct planned_site *p, char *why)
{
    uint8_t code[7];
    for (size_t i = 0; i < x->nsites; i++)
        if (x->sites[i].addr == site)
            return 1;
    int r = check_site(st, pid, site, code, why);
    if (!r)
        r = reserve_site(x, why);
    if (!r)
        r = stub_for(st, x, payload, site, &p->stub, why);
    if (r)
        return r;
    p->site = site;
    p->pre = 0;
    build_stub(p->sb, p->stub, site, code, x->fast_entry, false);
    record_site(x, site, code, p->stub);
    return 0;
}

static struct sys_site *site_record(struct sys_state *x, uint64_t site)
{
    for (size_t i = 0; i < x->nsites; i++)
        if (x->sites[i].addr == site)
            return &x->sites[i];
    return NULL;
}

/* Writes a planned site: the stub first (the process is stopped, so the
 * order is not seen), then the jmp, one write within a page (check_site):
 * a server killed at any instant leaves the site whole, old or new. On
 * failure its record goes. */
static int patch_site(struct bpfg_stopped *st, struct sys_state *x, const struct planned_site *p, char *why)
{
    struct sys_site *rec = site_record(x, p->site);
    uint64_t entry = p->pre ? p->pre : p->stub; /* where the site's jmp goes */
    struct bpfg_text_write w[2] = {{p->stub, 0, sizeof(p->sb), p->sb, p->sb},
                                   {p->site, entry, sizeof(rec->jmp), rec->orig, rec->jmp}};
    int r = p->pre ? bpfg_mem_write(st, p->pre, p->pb, sizeof(p->pb)) : 0;
    if (!r)
        r = bpfg_text_poke(st, 0, &w[0], 1);
    if (!r)
        r = bpfg_text_poke(st, 0, &w[1], 1);
    if (!r)
        return 0;
    if (bpfg_mem_write(st, p->site, rec->orig, sizeof(rec->orig)) == 0) /* a partial write undone */
        *rec = x->sites[--x->nsites];
    return snprintf(why, BPFG_ERRLEN, "writing: %s", strerror(-r)), r;
}

static void log_site(const struct target *t, const struct sys_state *x, uint64_t site, int r, const char *why)
{
    if (r) {
        srv_log(SRV_DEBUG, "target %d: syscall site 0x%llx stays on the signal path: %s", (int)t->pid,
                (unsigned long long)site, why);
        return;
    }
    const struct sys_site *rec = site_record((struct sys_state *)x, site);
    uint32_t nr;
    memcpy(&nr, rec->orig + 1, 4);
    if (rec->orig[0] == 0xb8)
        srv_log(SRV_DEBUG, "target %d: syscall site 0x%llx (nr %u) rewritten", (int)t->pid, (unsigned long long)site,
                nr);
    else
        srv_log(SRV_DEBUG, "target %d: syscall site 0x%llx (number in rax) rewritten", (int)t->pid,
                (unsigned long long)site);
}

/* Saves the target's record with the planned sites, then writes them:
 * how many were written. */
static size_t write_planned(struct server *s, struct target *t, struct bpfg_stopped *st, struct sys_state *x,
                            const struct planned_site *plan, size_t planned)
{
    char why[BPFG_ERRLEN];
    size_t done = 0;
    if (planned)
        state_save_target(s, t);
    for (size_t i = 0; i < planned; i++) {
        int r = patch_site(st, x, &plan[i], why);
        x->refused += r != 0;
        done += r == 0;
        log_site(t, x, plan[i].site, r, why);
    }
    return done;
}

/* Plans every site, saves the target's record with them, then writes. */
static size_t rewrite_stopped(struct server *s, struct target *t, struct bpfg_stopped *st, struct sys_state *x,
                              const uint64_t *sites, size_t n)
{
    char why[BPFG_ERRLEN];
    struct planned_site *plan = calloc(n, sizeof(*plan));
    size_t planned = 0, done;
    pid_t payload = payload_tid(st, t);
    for (size_t i = 0; plan && i < n && x->nsites < MAX_SITES; i++) {
        int r = plan_site(st, x, t->pid, payload, sites[i], &plan[planned], why);
        if (r < 0) {
            x->refused++;
            log_site(t, x, sites[i], r, why);
        }
        planned += r == 0;
    }
    done = write_planned(s, t, st, x, plan, planned);
    free(plan);
    return done;
}

static void rewrite(struct server *s, struct target *t, struct sys_state *x, const uint64_t *sites, size_t n)
{
    struct bpfg_stopped st;
    char ierr[BPFG_ERRLEN];
    if (bpfg_stop_process(t->pid, &st, ierr) != 0) {
        srv_log(SRV_WARN, "target %d: cannot stop it to rewrite syscall sites: %s", (int)t->pid, ierr);
        return;
    }
    size_t done = rewrite_stopped(s, t, &st, x, sites, n);
    uint64_t ns = 0;
    bpfg_resume_process(&st, &ns);
    srv_log(SRV_DEBUG, "target %d: %zu of %zu syscall sites rewritten (threads stopped %llu us)", (int)t->pid, done, n,
            (unsigned long long)ns / 1000);
}

/* ---- Go: every site rewritten up front, no dispatch ----
 *
 * A pure Go binary makes its syscalls from a few assembly functions of its
 * own text (no libc, no code made at run time; vDSO calls are not
 * syscalls), so all of them are found by decoding its functions
 * (.gopclntab's extents) and rewritten before the first program runs;
 * Syscall User Dispatch, whose SIGSYS Go's SA_ONSTACK handlers cannot live
 * with, stays off. Any code that could make a syscall unseen (a site that
 * cannot be rewritten, bytes that do not decode, another executable file
 * mapped: cgo's libc) refuses the attach, naming it. */

#define GO_SITES_MAX 4096
#define GO_FUNC_MAX (1u << 20)
#define GO_BUSY_TRIES 20

struct go_scan {
    pid_t pid;
    struct bpfg_sys_site_plan *sites;
    size_t n;
    char *err;
    size_t errlen;
};

static int go_function(void *arg, const char *name, uint64_t lo, uint64_t hi)
{
    struct go_scan *g = arg;
    char why[BPFG_ERRLEN] = "";
    size_t len = (size_t)(hi - lo), found = 0;
    if (!len)
        return 0;
    uint8_t *code = len <= GO_FUNC_MAX ? malloc(len) : NULL;
    struct iovec local = {code, len}, remote = {(void *)(uintptr_t)lo, len};
    int r = !code ? -ENOMEM : process_vm_readv(g->pid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
    if (r)
        snprintf(why, sizeof(why), "cannot read its %zu bytes: %s", len, strerror(-r));
    else
        r = bpfg_sys_sites_scan(code, len, lo, g->sites + g->n, GO_SITES_MAX - g->n, &found, why, sizeof(why));
    for (size_t i = 0; !r && i < found; i++) {
        const struct bpfg_sys_site_plan *p = &g->sites[g->n + i];
        if (!sites_unentered(g->pid, p->patch, (size_t)(p->syscall + 2 - p->patch), lo, hi, why, sizeof(why)))
            r = -EINVAL;
    }
    free(code);
    g->n += found;
    if (r)
        snprintf(g->err, g->errlen, "a syscall site of Go function %s (0x%llx) cannot be rewritten: %s", name,
                 (unsigned long long)lo, why);
    return r;
}

struct exe_maps {
    char exe[512];
    uint64_t text; /* an executable mapping of it */
    char *err;
    size_t errlen;
};

/* Executable mappings: the program's own, else anonymous ones (our stubs)
 * and the vDSO; any other file (cgo's libc) has syscalls we would miss. */
static int exec_mapping(const struct bpfg_procfs_map *m, void *arg)
{
    struct exe_maps *e = arg;
    if (m->perms[2] != 'x' || !m->path[0] || m->path[0] == '[' || strncmp(m->path, "/memfd:", 7) == 0)
        return 0;
    if (strcmp(m->path, e->exe) == 0) {
        e->text = e->text ? e->text : m->start;
        return 0;
    }
    snprintf(e->err, e->errlen,
             "it maps %s, whose syscalls would be missed (cgo): syscall tracepoints need a pure Go program", m->path);
    return -EOPNOTSUPP;
}

/* Every syscall site of the Go process, planned: *out (caller frees), *n
 * of them. Its code does not change while it runs (no JIT; the server
 * makes its own patches one at a time): no stop needed. */
static int go_scan_sites(pid_t pid, struct bpfg_sys_site_plan **out, size_t *n, char *err, size_t errlen)
{
    struct exe_maps e = {.err = err, .errlen = errlen};
    char link[64];
    snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
    ssize_t l = readlink(link, e.exe, sizeof(e.exe) - 1);
    if (l < 0)
        return snprintf(err, errlen, "%s: %s", link, strerror(errno)), -errno;
    e.exe[l] = 0;
    int r = bpfg_procfs_maps(pid, exec_mapping, &e);
    if (r)
        return r < 0 && r != -EOPNOTSUPP ? (snprintf(err, errlen, "reading its mappings: %s", strerror(-r)), r) : r;
    struct go_scan g = {pid, calloc(GO_SITES_MAX, sizeof(*g.sites)), 0, err, errlen};
    if (!g.sites)
        return snprintf(err, errlen, "out of memory"), -ENOMEM;
    r = e.text ? sym_go_functions(pid, e.text, go_function, &g) : -ENOENT;
    if (r && !err[0])
        snprintf(err, errlen, "its Go functions cannot be read from .gopclntab: %s", strerror(-r));
    if (r) {
        free(g.sites);
        return r < 0 ? r : -EINVAL;
    }
    *out = g.sites;
    *n = g.n;
    return 0;
}

/* The stub (and pre-stub) of one Go site, recorded like plan_site's. */
static int plan_go_site(struct bpfg_stopped *st, struct sys_state *x, pid_t payload,
                        const struct bpfg_sys_site_plan *gp, struct planned_site *p, char *why)
{
    static const uint8_t nop5[5] = {0x0f, 0x1f, 0x44, 0x00, 0x00};
    uint8_t code[7] = {0xb8, 0, 0, 0, 0, 0x0f, 0x05}, orig[5];
    if (bpfg_mem_read(st, gp->patch, orig, sizeof(orig)) != 0)
        return snprintf(why, BPFG_ERRLEN, "unreadable"), -EFAULT;
    if (bpfg_any_thread_in(st, gp->patch + 1, gp->syscall, NULL))
        return snprintf(why, BPFG_ERRLEN, "a thread is inside it"), -EBUSY;
    int r = reserve_site(x, why);
    if (!r)
        r = stub_for(st, x, payload, gp->patch, &p->stub, why);
    p->pre = 0;
    if (!r && gp->nr < 0 && gp->ndisplaced != 5)
        r = stub_for(st, x, payload, gp->patch, &p->pre, why);
    if (r)
        return r;
    if (p->pre && !reaches(p->pre + gp->ndisplaced + 5, p->stub))
        return snprintf(why, BPFG_ERRLEN, "its two stubs are out of each other's reach"), -ERANGE;
    if (gp->nr >= 0)
        memcpy(code + 1, &(uint32_t){(uint32_t)gp->nr}, 4);
    else
        memcpy(code, p->pre ? nop5 : gp->displaced, 5);
    if (p->pre) {
        int32_t rel = (int32_t)(int64_t)(p->stub - (p->pre + gp->ndisplaced + 5));
        memset(p->pb, 0xcc, sizeof(p->pb));
        memcpy(p->pb, gp->displaced, gp->ndisplaced);
        p->pb[gp->ndisplaced] = 0xe9;
        memcpy(p->pb + gp->ndisplaced + 1, &rel, 4);
    }
    p->site = gp->patch;
    build_stub(p->sb, p->stub, gp->syscall - 5, code, x->fast_entry, true);
    record_site(x, gp->patch, orig, p->pre ? p->pre : p->stub);
    return 0;
}

/* Plans the ng sites gs of the stopped process (plan: ng entries); none
 * is recorded if one fails. */
static int go_plan_all(struct bpfg_stopped *st, struct sys_state *x, pid_t payload, const struct bpfg_sys_site_plan *gs,
                       size_t ng, struct planned_site *plan, size_t *planned, char *err, size_t errlen)
{
    size_t before = x->nsites, npages = x->npages, used[MAX_STUB_PAGES];
    char why[BPFG_ERRLEN];
    int r = 0;
    for (size_t i = 0; i < npages; i++)
        used[i] = x->pages[i].used;
    *planned = 0;
    for (size_t i = 0; !r && i < ng; i++) {
        if (gs[i].nr == SYS_rt_sigreturn)
            continue; /* go_attach */
        if ((r = plan_go_site(st, x, payload, &gs[i], &plan[(*planned)++], why)))
            snprintf(err, errlen, "the syscall site at 0x%llx cannot be rewritten: %s",
                     (unsigned long long)gs[i].syscall, why);
    }
    if (r) {
        x->nsites = before; /* nothing was written: the records and stub slots go */
        for (size_t i = 0; i < x->npages; i++)
            x->pages[i].used = i < npages ? used[i] : 0;
    }
    return r;
}

/* Writes the planned sites gs with the process stopped; a thread inside
 * one's displaced bytes makes it try again a little later. */
static int go_write_all(struct server *s, struct target *t, struct sys_state *x, const struct bpfg_sys_site_plan *gs,
                        size_t n, struct planned_site *plan, char *err, size_t errlen)
{
    for (int tries = 0;; tries++) {
        struct bpfg_stopped st;
        char ierr[BPFG_ERRLEN];
        int r = bpfg_stop_process(t->pid, &st, ierr);
        if (r)
            return snprintf(err, errlen, "%s", ierr), r;
        size_t planned = 0;
        r = go_plan_all(&st, x, payload_tid(&st, t), gs, n, plan, &planned, err, errlen);
        size_t done = r ? 0 : write_planned(s, t, &st, x, plan, planned);
        uint64_t ns = 0;
        bpfg_resume_process(&st, &ns);
        if (r == -EBUSY && tries < GO_BUSY_TRIES) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
            continue;
        }
        if (!r && done < planned)
            r = -EIO, snprintf(err, errlen, "%zu of %zu syscall sites could not be written", planned - done, planned);
        if (!r)
            srv_log(SRV_INFO,
                    "target %d: Go program: %zu of its %zu syscall sites rewritten (not rt_sigreturn), no dispatch "
                    "(threads stopped %llu us)",
                    (int)t->pid, done, n, (unsigned long long)ns / 1000);
        return r;
    }
}

/* Rewrites every syscall site of the Go process t (none rewritten yet). */
static int go_rewrite(struct server *s, struct target *t, struct sys_state *x, char *err, size_t errlen)
{
    struct bpfg_sys_site_plan *gs = NULL;
    size_t n = 0;
    err[0] = 0;
    int r = go_scan_sites(t->pid, &gs, &n, err, errlen);
    struct planned_site *plan = r ? NULL : calloc(n ? n : 1, sizeof(*plan));
    if (!r && !plan)
        r = -ENOMEM, snprintf(err, errlen, "out of memory");
    if (!r)
        r = go_write_all(s, t, x, gs, n, plan, err, errlen);
    free(plan);
    free(gs);
    return r;
}

/* Puts the original bytes back (process stopped). The stubs stay mapped:
 * a thread blocked in a syscall made from the fast path returns into one. */
static void restore_sites(struct bpfg_stopped *st, struct sys_state *x, pid_t pid)
{
    size_t bad = 0;
    for (size_t i = 0; i < x->nsites; i++) {
        uint8_t now[5];
        /* the library may have been unloaded (and something else mapped
         * there): only our own jmp is put back */
        if (bpfg_mem_read(st, x->sites[i].addr, now, 5) != 0 || memcmp(now, x->sites[i].jmp, 5) != 0)
            continue;
        struct bpfg_text_write w = {x->sites[i].addr, 0, 5, x->sites[i].jmp, x->sites[i].orig};
        if (bpfg_text_poke(st, 0, &w, 1) != 0)
            bad++;
    }
    if (bad)
        srv_log(SRV_WARN, "target %d: %zu rewritten syscall sites could not be restored", (int)pid, bad);
    else if (x->nsites)
        srv_log(SRV_INFO, "target %d: %zu rewritten syscall sites restored (%zu stayed on the signal path)", (int)pid,
                x->nsites, x->refused);
    x->nsites = 0;
}

/* Dispatch off in every thread (off where it was off is a no-op). */
static void dispatch_off(struct target *t, struct sys_state *x)
{
    char err[256], ierr[BPFG_ERRLEN];
    struct bpfg_stopped st;
    if (bpfg_stop_process(t->pid, &st, ierr) != 0) {
        srv_log(SRV_WARN, "target %d: %s", (int)t->pid, ierr);
        return;
    }
    if (set_dispatch(&st, t, false, NULL, err, sizeof(err)) != 0)
        srv_log(SRV_WARN, "target %d: turning dispatch off: %s", (int)t->pid, err);
    bpfg_resume_process(&st, NULL);
    if (x)
        x->sud_on = false;
}

/* A SIGSYS raised by dispatch before it went off may still wait for
 * delivery in a thread (it was re-delivered on resume): our handler must
 * take it. Restores the action in a stop with none pending. */
static void restore_sigsys_action(struct target *t, struct sys_state *x, uint64_t action)
{
    char ierr[BPFG_ERRLEN];
    struct bpfg_stopped st;
    for (int tries = 0; tries < RESTORE_TRIES; tries++) {
        if (bpfg_stop_process(t->pid, &st, ierr) != 0)
            return;
        if (!bpfg_any_signal_queued(&st, SIGSYS, NULL)) {
            uint64_t args[6] = {SIGSYS, action, 0, 8, 0, 0};
            int64_t ret = 0;
            int r = bpfg_remote_syscall_on(&st, 0, SYS_rt_sigaction, args, &ret, ierr);
            bpfg_resume_process(&st, NULL);
            if (r || ret < 0)
                srv_log(SRV_WARN, "target %d: restoring the SIGSYS action: %s", (int)t->pid,
                        r ? ierr : strerror((int)-ret));
            if (x)
                x->handler = false;
            return;
        }
        bpfg_resume_process(&st, NULL);
        struct timespec ms = {0, 2000000};
        nanosleep(&ms, NULL);
    }
    srv_log(SRV_WARN, "target %d: SIGSYS keeps arriving; the payload's handler stays installed", (int)t->pid);
}

/* Also for a payload whose syscall hooks the record lacks (a server killed
 * while adding them): the payload says whether its handler is installed. */
void syscalls_detach(struct server *s, struct target *t, bool *keep_payload)
{
    struct sys_state *x = state_of(t, false);
    bool known = x && x->handler;
    *keep_payload |= known; /* the handler and its stubs may still be on some thread's stack */
    if (x && x->keep) {     /* the threads and sites are still the replaced payload's */
        *keep_payload = true;
        size_t got = 0;
        char e[256];
        if (targets_payload_call(s, t, BPFG_PMSG_SYSCALL_OFF, NULL, 0, NULL, 0, &got, e, sizeof(e)) != 0)
            srv_log(SRV_WARN, "target %d: turning its syscall hooks off: %s", (int)t->pid, e);
        return;
    }
    char err[256], ierr[BPFG_ERRLEN];
    struct bpfg_stopped st;
    /* first, while dispatch is still on: the restored sites raise SIGSYS
     * again until it goes off */
    if (known && x->nsites) {
        if (bpfg_stop_process(t->pid, &st, ierr) == 0) {
            restore_sites(&st, x, t->pid);
            bpfg_resume_process(&st, NULL);
        } else {
            srv_log(SRV_WARN, "target %d: cannot stop it to restore syscall sites: %s", (int)t->pid, ierr);
        }
    }
    if (known)
        x->fast_entry = 0; /* sites reported from now on are ignored */
    struct bpfg_pmsg_syscall_off_reply rep;
    memset(&rep, 0, sizeof(rep));
    size_t got = 0;
    int r = targets_payload_call(s, t, BPFG_PMSG_SYSCALL_OFF, NULL, 0, &rep, sizeof(rep), &got, err, sizeof(err));
    if (r && known)
        srv_log(SRV_WARN, "target %d: turning syscall hooks off: %s", (int)t->pid, err);
    if (r || (!known && !rep.saved_action))
        return;
    *keep_payload = true;
    srv_log(SRV_INFO, "target %d: syscall hooks off (%llu syscalls dispatched, %llu ran without programs: nested)%s",
            (int)t->pid, (unsigned long long)rep.dispatched, (unsigned long long)rep.misses,
            known ? "" : "; its record did not have them (a server was killed adding them)");
    if (!known || x->sud_on)
        dispatch_off(t, x);
    if (rep.saved_action)
        restore_sigsys_action(t, x, rep.saved_action);
}

/* ---- re-injection (reinject.c, server/README.md "Re-injection") ---- */

#define PTRACE_SET_SUD_CONFIG 0x4210 /* PTRACE_SET_SYSCALL_USER_DISPATCH_CONFIG, Linux 6.6 */
#define PTRACE_GET_SUD_CONFIG 0x4211

struct sud_config {
    uint64_t mode, selector, offset, len;
};

/* SYSCALL_TAKEOVER (m all 0: asked again). */
static int takeover_call(struct server *s, struct target *t, const struct bpfg_pmsg_syscall_takeover *m,
                         struct syscalls_takeover *tk, char *err, size_t errlen)
{
    size_t got = 0;
    memset(tk, 0, sizeof(*tk));
    int r = targets_payload_call(s, t, BPFG_PMSG_SYSCALL_TAKEOVER, m, sizeof(*m), &tk->rep, sizeof(tk->rep), &got, err,
                                 errlen);
    if (!r && got < sizeof(tk->rep))
        r = -EPROTO, snprintf(err, errlen, "short SYSCALL_TAKEOVER reply");
    tk->needed = !r;
    return r;
}

/* rec's state for t, the selector and fast entry t's payload's. */
static int copy_state(struct target *t, const struct sys_state *old, const struct bpfg_pmsg_syscall_reply *rep)
{
    struct sys_state *x = state_of(t, true);
    struct sys_site *sites = old->nsites ? malloc(old->nsites * sizeof(*sites)) : NULL;
    if (!x || (old->nsites && !sites)) {
        free(sites);
        return -ENOMEM;
    }
    if (old->nsites)
        memcpy(sites, old->sites, old->nsites * sizeof(*sites));
    struct sys_state *next = x->next;
    free(x->sites);
    *x = *old;
    x->next = next;
    x->t = t;
    x->sites = sites;
    x->cap = old->nsites;
    x->handler = true;
    x->selector = rep->selector;
    x->fast_entry = old->fast_entry ? rep->fast_entry : 0;
    return 0;
}

/* A pure Go process: its syscall hooks have no dispatch, every site of
 * its binary rewritten up front (syscalls_attach). */
static bool is_go(const struct target *t)
{
    return sym_exe_has_section(t->pid, ".gopclntab");
}

const char *syscalls_not_reinjectable(const struct target *rec)
{
    const struct sys_state *old = state_of(rec, false);
    if (!old || (!old->nprogs && !old->nsites))
        return NULL;
    if (old->nids != old->nprogs)
        return "its record does not name all its syscall programs (written by a server before re-arming)";
    if (!old->sud_on && !is_go(rec))
        return "its syscall hooks run without dispatch in a process that is not pure Go (a server was killed "
               "turning it on)";
    return NULL;
}

int syscalls_reinject(struct server *s, struct target *t, const struct target *rec, char *err, size_t errlen)
{
    const struct sys_state *old = state_of(rec, false);
    if (!old || (!old->nprogs && !old->nsites))
        return 0;
    const char *why = syscalls_not_reinjectable(rec);
    if (why)
        return snprintf(err, errlen, "%s", why), -EOPNOTSUPP;
    /* Go (no dispatch): no handler to take over, the programs hooked as
     * syscalls_attach does; the stubs move in syscalls_takeover_stopped */
    bool go = !old->sud_on;
    struct syscalls_takeover tk;
    struct bpfg_pmsg_syscall_takeover m = {rec->inj.base, rec->inj.size, old->selector};
    memset(&tk, 0, sizeof(tk));
    int r = go ? 0 : takeover_call(s, t, &m, &tk, err, errlen);
    for (size_t i = 0; i < old->nids && !r; i++) {
        struct reg_prog *p = registry_prog(&s->reg, old->prog_ids[i]);
        struct bpfg_pmsg_syscall_hook h = p ? hook_msg(p, go) : (struct bpfg_pmsg_syscall_hook){0};
        struct bpfg_pmsg_syscall_reply rep;
        size_t got = 0;
        h.flags |= go ? BPFG_SYS_F_REWRITE : 0; /* its sites are rewritten whatever --syscall-rewrite says */
        r = p ? targets_payload_call(s, t, BPFG_PMSG_SYSCALL_HOOK, &h, sizeof(h), &rep, sizeof(rep), &got, err, errlen)
              : (snprintf(err, errlen, "syscall program %u of its record is not loaded", old->prog_ids[i]), -ENOENT);
        if (!r && got == sizeof(rep) && go)
            tk.rep.sys = rep;
        else if (!r && got == sizeof(rep))
            tk.rep.sys.fast_entry = rep.fast_entry;
    }
    if (!r && go && old->nsites && !tk.rep.sys.fast_entry)
        r = -EPROTO, snprintf(err, errlen, "its payload has no fast entry for the Go process's rewritten sites");
    if (!r && (r = copy_state(t, old, &tk.rep.sys)))
        snprintf(err, errlen, "out of memory");
    return r;
}

void syscalls_keep_dispatch(struct target *t)
{
    struct sys_state *x = state_of(t, true);
    if (x)
        x->keep = true;
}

struct image_walk {
    uint64_t base, end;
    char first[256]; /* the file mapped at base */
};

/* The mappings of one file from base on, each at its offset from base. */
static int image_part(const struct bpfg_procfs_map *m, void *arg)
{
    struct image_walk *w = arg;
    if (m->end <= w->base)
        return 0;
    if (!w->end && m->start == w->base && !m->offset) {
        snprintf(w->first, sizeof(w->first), "%s", m->path);
        w->end = m->end;
        return 0;
    }
    if (!w->end || m->start != w->end || m->offset != m->start - w->base || strcmp(m->path, w->first))
        return 1;
    w->end = m->end;
    return 0;
}

/* A Go process's takeover (no dispatch): the stubs alone move, from the
 * replaced payload's image (where the old payload is mapped for good:
 * its extent from /proc/PID/maps) to t's fast entry. */
static int go_takeover(const struct target *t, const struct sys_state *x, struct syscalls_takeover *tk, char *err,
                       size_t errlen)
{
    struct image_walk w = {.base = t->replaced_base};
    int r = bpfg_procfs_maps(t->pid, image_part, &w);
    if (r < 0)
        return snprintf(err, errlen, "reading its mappings: %s", strerror(-r)), r;
    if (!w.end)
        return snprintf(err, errlen, "the replaced payload at 0x%llx is not mapped", (unsigned long long)w.base),
               -ENOENT;
    tk->needed = true;
    tk->rep.sys.fast_entry = x->fast_entry;
    tk->rep.old_base = w.base;
    tk->rep.old_len = w.end - w.base;
    return 0;
}

int syscalls_takeover_begin(struct server *s, struct target *t, struct syscalls_takeover *tk, char *err, size_t errlen)
{
    struct sys_state *x = state_of(t, false);
    memset(tk, 0, sizeof(*tk));
    if (x && !x->sud_on && x->nsites && x->fast_entry && t->replaced_base)
        return go_takeover(t, x, tk, err, errlen);
    if (!x || !x->sud_on)
        return 0;
    struct bpfg_pmsg_syscall_takeover again = {0};
    return takeover_call(s, t, &again, tk, err, errlen);
}

/* In the replaced payload's image. */
static bool in_old(const struct syscalls_takeover *tk, uint64_t ip)
{
    return ip - tk->rep.old_base < tk->rep.old_len;
}

/* Each thread whose dispatch is on gets t's selector and the region
 * [lo, lo + len), each by one ptrace request. */
static int move_threads(const struct bpfg_stopped *st, const struct syscalls_takeover *tk, uint64_t lo, uint64_t len,
                        void (*step)(void), char *err, size_t errlen)
{
    for (size_t i = 0; i < st->nthreads; i++) {
        pid_t tid = st->threads[i].tid;
        struct sud_config c;
        if (ptrace(PTRACE_GET_SUD_CONFIG, tid, (void *)sizeof(c), &c) != 0)
            return snprintf(err, errlen, "thread %d: reading its dispatch: %s", (int)tid, strerror(errno)), -errno;
        if (!c.mode || (c.selector == tk->rep.sys.selector && c.offset == lo && c.len == len))
            continue;
        struct sud_config now = {c.mode, tk->rep.sys.selector, lo, len};
        if (ptrace(PTRACE_SET_SUD_CONFIG, tid, (void *)sizeof(now), &now) != 0)
            return snprintf(err, errlen, "thread %d: setting its dispatch: %s", (int)tid, strerror(errno)), -errno;
        step();
    }
    return 0;
}

/* The process's SIGSYS action becomes the payload's handler (a remote
 * rt_sigaction on its own thread, which has no dispatch). */
static int move_action(struct bpfg_stopped *st, const struct target *t, const struct syscalls_takeover *tk, char *err,
                       size_t errlen)
{
    pid_t payload = payload_tid(st, t);
    size_t at = 0;
    for (size_t i = 0; i < st->nthreads; i++)
        if (st->threads[i].tid == payload)
            at = i;
    uint64_t args[6] = {SIGSYS, tk->rep.action, 0, 8, 0, 0};
    int64_t ret = 0;
    char ierr[BPFG_ERRLEN];
    int r = bpfg_remote_syscall_on(st, at, SYS_rt_sigaction, args, &ret, ierr);
    if (r || ret < 0)
        return snprintf(err, errlen, "installing its SIGSYS handler: %s", r ? ierr : strerror((int)-ret)),
               r ? r : (int)ret;
    return 0;
}

/* Each stub slot whose entry word names the other payload's code now
 * names t's fast entry: one 8-byte write within the stub. */
static int move_stubs(struct bpfg_stopped *st, const struct sys_state *x, const struct syscalls_takeover *tk,
                      void (*step)(void), char *err, size_t errlen)
{
    for (size_t p = 0; p < x->npages && x->fast_entry; p++)
        for (size_t off = 0; off + BPFG_SYS_STUB_SIZE <= x->pages[p].used; off += BPFG_SYS_STUB_SIZE) {
            uint64_t at = x->pages[p].addr + off + 32, entry; /* build_stub's entry word */
            int r = bpfg_mem_read(st, at, &entry, sizeof(entry));
            if (!r && in_old(tk, entry))
                r = bpfg_mem_write(st, at, &x->fast_entry, sizeof(x->fast_entry));
            if (r)
                return snprintf(err, errlen, "re-pointing the stub at 0x%llx: %s", (unsigned long long)at - 32,
                                strerror(-r)),
                       r;
            if (in_old(tk, entry))
                step();
        }
    return 0;
}

/* Widened: each thread's region covers both images (a thread in either
 * payload's code is exempt whichever handler the action names), then
 * the action and the stubs move, then each region is t's image alone
 * (the old payload's code, where a thread may still return, has its
 * syscalls made without programs by t's handler: SYSCALL_TAKEOVER). A
 * kill between any two writes leaves a state where every thread's
 * syscalls are counted once. */
int syscalls_takeover_stopped(struct bpfg_stopped *st, struct target *t, const struct syscalls_takeover *tk,
                              void (*step)(void), char *err, size_t errlen)
{
    struct sys_state *x = state_of(t, false);
    if (!tk->needed || !x)
        return 0;
    if (!x->sud_on) /* Go: no dispatch, no action; the stubs alone */
        return move_stubs(st, x, tk, step, err, errlen);
    const struct bpfg_pmsg_syscall_reply *own = &tk->rep.sys;
    uint64_t lo = own->exempt_base < tk->rep.old_base ? own->exempt_base : tk->rep.old_base;
    uint64_t hi = own->exempt_base + own->exempt_len, old_hi = tk->rep.old_base + tk->rep.old_len;
    hi = hi > old_hi ? hi : old_hi;
    int r = move_threads(st, tk, lo, hi - lo, step, err, errlen);
    if (!r && !(r = move_action(st, t, tk, err, errlen)))
        step();
    if (!r)
        r = move_stubs(st, x, tk, step, err, errlen);
    return r ? r : move_threads(st, tk, own->exempt_base, own->exempt_len, step, err, errlen);
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
    if (h->type == BPFG_PMSG_SYS_SITES) {
        struct sys_state *x = state_of(t, false);
        size_t n = (h->len - sizeof(*h)) / sizeof(uint64_t);
        if (!x || !x->fast_entry || !n)
            return;
        uint64_t *sites = malloc(n * sizeof(*sites));
        if (!sites)
            return;
        memcpy(sites, body, n * sizeof(*sites)); /* body may be unaligned */
        rewrite(s, t, x, sites, n);
        free(sites);
        return;
    }
    if (h->type != BPFG_PMSG_EXEC || h->len < sizeof(*h) + sizeof(struct bpfg_pmsg_exec) + 1)
        return;
    const struct bpfg_pmsg_exec *e = (const void *)body;
    struct exec_event ev = {(pid_t)e->pid, (pid_t)e->tid, body + sizeof(*e)};
    srv_log(SRV_INFO, "target %d: thread %d calls execve(\"%s\"): the new image runs without hooks", (int)t->pid,
            ev.tid, ev.path);
    server_broadcast(s, SRV_TOPIC_TARGET, pack_exec, &ev);
}
