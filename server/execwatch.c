/* Exec-time catching of processes for binary-wide probes (execwatch.h). */
#define _GNU_SOURCE
#include "execwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <unistd.h>

#include "injector.h"
#include "log.h"
#include "server.h"
#include "targets.h"

struct watch {
    char *path;
    unsigned refs;
    struct watch *next;
};

static struct {
    uint32_t magic; /* first: the epoll tag points here */
    int fd;
    struct watch *list;
} ew = {EXECWATCH_MAGIC, -1, NULL};

static struct watch *find(const char *path)
{
    for (struct watch *w = ew.list; w; w = w->next)
        if (!strcmp(w->path, path))
            return w;
    return NULL;
}

static int open_fanotify(struct server *s, char *err, size_t errlen)
{
    if (ew.fd >= 0)
        return 0;
    int fd = fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK, O_RDONLY | O_CLOEXEC | O_LARGEFILE);
    if (fd < 0)
        return srv_efail(err, errlen, -errno, "fanotify (to catch new processes at exec): %s", strerror(errno));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &ew};
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = errno;
        close(fd);
        return srv_efail(err, errlen, -e, "epoll: %s", strerror(e));
    }
    ew.fd = fd;
    return 0;
}

int execwatch_add(struct server *s, const char *path, char *err, size_t errlen)
{
    struct watch *w = find(path);
    if (w) {
        w->refs++;
        return 0;
    }
    int r = open_fanotify(s, err, errlen);
    if (r)
        return r;
    if (!(w = calloc(1, sizeof(*w))) || !(w->path = strdup(path))) {
        free(w);
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    }
    if (fanotify_mark(ew.fd, FAN_MARK_ADD, FAN_OPEN_EXEC_PERM, AT_FDCWD, path) != 0) {
        int e = errno;
        free(w->path);
        free(w);
        return srv_efail(err, errlen, -e, "watching %s for new processes: %s", path, strerror(e));
    }
    w->refs = 1;
    w->next = ew.list;
    ew.list = w;
    srv_log(SRV_INFO, "processes starting %s are caught at exec", path);
    return 0;
}

void execwatch_remove(struct server *s, const char *path)
{
    (void)s;
    for (struct watch **pp = &ew.list; *pp; pp = &(*pp)->next) {
        struct watch *w = *pp;
        if (strcmp(w->path, path) || --w->refs)
            continue;
        if (fanotify_mark(ew.fd, FAN_MARK_REMOVE, FAN_OPEN_EXEC_PERM, AT_FDCWD, path) != 0)
            srv_log(SRV_DEBUG, "unwatching %s: %s", path, strerror(errno)); /* e.g. the file was replaced */
        *pp = w->next;
        free(w->path);
        free(w);
        return;
    }
}

/* Traces the process before letting its exec go on, so that it stops
 * before the first instruction of the new program. */
static void on_exec(struct server *s, const struct fanotify_event_metadata *m)
{
    char ierr[BPFG_ERRLEN] = "";
    pid_t pid = m->pid;
    bool traced = pid != getpid() && !targets_find(&s->targets, pid) && bpfg_exec_seize(pid, ierr) == 0;
    struct fanotify_response rsp = {.fd = m->fd, .response = FAN_ALLOW};
    if (write(ew.fd, &rsp, sizeof(rsp)) != (ssize_t)sizeof(rsp))
        srv_log(SRV_ERROR, "allowing the exec of process %d: %s", (int)pid, strerror(errno));
    close(m->fd);
    if (!traced) {
        if (ierr[0])
            srv_log(SRV_WARN, "process %d starts a watched binary but cannot be caught: %s", (int)pid, ierr);
        return;
    }
    if (bpfg_exec_to_entry(pid, ierr) != 0) {
        srv_log(SRV_WARN, "process %d: not caught at its entry point: %s", (int)pid, ierr);
        return;
    }
    char err[512];
    if (targets_attach_caught(s, pid, err, sizeof(err)) != 0)
        srv_log(SRV_WARN, "process %d, caught at exec: %s", (int)pid, err);
}

void execwatch_readable(struct server *s)
{
    char buf[4096] __attribute__((aligned(__alignof__(struct fanotify_event_metadata))));
    for (;;) {
        ssize_t n = read(ew.fd, buf, sizeof(buf));
        if (n <= 0) {
            if (n < 0 && errno != EAGAIN && errno != EINTR)
                srv_log(SRV_ERROR, "fanotify: %s", strerror(errno));
            return;
        }
        const struct fanotify_event_metadata *m = (const void *)buf;
        for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            if (m->vers != FANOTIFY_METADATA_VERSION || m->fd < 0)
                continue;
            if (m->mask & FAN_OPEN_EXEC_PERM)
                on_exec(s, m);
            else
                close(m->fd);
        }
    }
}

void execwatch_destroy(struct server *s)
{
    while (ew.list) {
        struct watch *w = ew.list;
        ew.list = w->next;
        free(w->path);
        free(w);
    }
    if (ew.fd >= 0) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, ew.fd, NULL);
        close(ew.fd); /* pending permission events are allowed by the kernel */
        ew.fd = -1;
    }
}
