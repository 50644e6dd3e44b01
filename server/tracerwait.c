/* Attachments waiting for another tracer to let a process go
 * (tracerwait.h). */
#define _GNU_SOURCE
#include "tracerwait.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "injector.h"
#include "log.h"
#include "procfs.h"
#include "server.h"
#include "targets.h"
#include "tool.h"

struct waiting {
    pid_t pid;
    bool parked; /* at its first instruction: caught there as at exec */
    struct bpfg_park park;
    struct waiting *next;
};

static struct waiting *waiting;

pid_t tracerwait_holder(pid_t pid)
{
    int tracer = 0;
    if (bpfg_procfs_status_int(pid, 0, "TracerPid", &tracer) != 0)
        return 0;
    return tracer > 0 && tracer != getpid() ? tracer : 0;
}

int tracerwait_add(struct server *s, pid_t pid, pid_t tool, char *err, size_t errlen)
{
    (void)s;
    for (struct waiting *w = waiting; w; w = w->next)
        if (w->pid == pid)
            return 0;
    pid_t holder = tracerwait_holder(pid);
    if (!holder)
        return srv_efail(err, errlen, -EAGAIN, "process %d is not held by another tracer", (int)pid);
    struct waiting *w = calloc(1, sizeof(*w));
    if (!w)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    char ierr[BPFG_ERRLEN];
    /* only the tool's own child (bpftrace -c): another tracer (a debugger
     * that continues it) would find it sleeping in the loop */
    int r = holder == tool ? bpfg_park_exec(pid, &w->park, ierr) : -EAGAIN;
    if (r && r != -EAGAIN) {
        free(w);
        return srv_efail(err, errlen, r, "%s", ierr);
    }
    w->pid = pid;
    w->parked = r == 0;
    w->next = waiting;
    waiting = w;
    char comm[32] = "";
    bpfg_procfs_comm(holder, comm, sizeof(comm));
    srv_log(SRV_INFO, "process %d is traced by %d (%s): attached for the tools once it lets go%s", (int)pid,
            (int)holder, comm[0] ? comm : "?", w->parked ? " (parked at its first instruction)" : "");
    return 0;
}

/* Let go by its tracer: attached for the tools that want it (a parked
 * one at its entry point, before any of its code), else only let go. */
static void resolve(struct server *s, const struct waiting *w)
{
    char err[512], ierr[BPFG_ERRLEN];
    bool wanted = tools_want_pid(w->pid);
    if (w->parked) {
        if (bpfg_unpark_to_entry(w->pid, &w->park, ierr) != 0)
            srv_log(SRV_WARN, "process %d, let go by its tracer: %s", (int)w->pid, ierr);
        else if (!wanted)
            bpfg_release_started(w->pid);
        else if (targets_attach_caught(s, w->pid, err, sizeof(err)) != 0)
            srv_log(SRV_WARN, "process %d, let go by its tracer: %s", (int)w->pid, err);
        return;
    }
    if (!wanted)
        return;
    int code = targets_attach(s, w->pid, 0, 0, NULL, 0, NULL, TARGET_ENGINE_DEFAULT, 0, err, sizeof(err));
    struct target *t = code ? NULL : targets_find(&s->targets, w->pid);
    if (t)
        t->for_tools = true;
    else
        srv_log(SRV_WARN, "process %d, let go by its tracer: %s", (int)w->pid, err);
}

void tracerwait_tick(struct server *s)
{
    for (struct waiting **pp = &waiting, *w; (w = *pp);) {
        bool gone = kill(w->pid, 0) != 0 && errno == ESRCH;
        if (!gone && tracerwait_holder(w->pid)) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        if (!gone)
            resolve(s, w);
        free(w);
    }
}

void tracerwait_destroy(struct server *s)
{
    (void)s;
    while (waiting) {
        struct waiting *w = waiting;
        waiting = w->next;
        char ierr[BPFG_ERRLEN];
        if (w->parked && bpfg_park_undo(w->pid, &w->park) != 0 && !tracerwait_holder(w->pid) &&
            bpfg_unpark_to_entry(w->pid, &w->park, ierr) == 0)
            bpfg_release_started(w->pid);
        free(w);
    }
}
