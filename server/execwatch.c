/* Exec-time catching of processes for binary-wide probes (execwatch.h). */
#define _GNU_SOURCE
#include "execwatch.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "binwide.h"
#include "injector.h"
#include "log.h"
#include "procfs.h"
#include "server.h"
#include "targets.h"
#include "tool.h"

struct watch {
    char *path;
    unsigned refs;
    struct watch *next;
};

static struct {
    uint32_t magic; /* first: the epoll tag points here */
    int fd;
    struct watch *list;
    unsigned all; /* holders of the every-mount marks (execwatch_add_all) */
    pid_t *queue; /* seized, their exec allowed: still to catch */
    size_t nqueue;
    bool catching; /* in catch_queued: no nesting */
} ew = {EXECWATCH_MAGIC, -1, NULL, 0, NULL, 0, false};

static void wait_hook(void *arg);

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
    bpfg_set_exec_wait_hook(wait_hook, NULL);
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

/* A mount point of /proc/self/mountinfo (field 5, octal escapes undone). */
static void mount_point(const char *line, char *out, size_t outlen)
{
    const char *p = line;
    for (int field = 0; field < 4 && p; field++)
        if ((p = strchr(p, ' ')))
            p++;
    size_t n = 0;
    while (p && *p && *p != ' ' && n + 1 < outlen) {
        if (p[0] == '\\' && p[1] >= '0' && p[1] <= '3' && p[2] && p[3]) {
            out[n++] = (char)((p[1] - '0') * 64 + (p[2] - '0') * 8 + (p[3] - '0'));
            p += 4;
        } else {
            out[n++] = *p++;
        }
    }
    out[n] = 0;
}

/* Exec marks on every mount of our mount namespace; how many took. */
static size_t mark_mounts(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return 0;
    size_t marked = 0;
    char line[4096], mp[PATH_MAX];
    while (fgets(line, sizeof(line), f)) {
        mount_point(line, mp, sizeof(mp));
        if (mp[0] == '/' && fanotify_mark(ew.fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC_PERM, AT_FDCWD, mp) == 0)
            marked++;
        else if (mp[0] == '/')
            srv_log(SRV_DEBUG, "exec mark on mount %s: %s", mp, strerror(errno)); /* e.g. hidden under another */
    }
    fclose(f);
    return marked;
}

static bool catch_all = true;

void execwatch_set_catch_all(bool on)
{
    catch_all = on;
}

int execwatch_add_all(struct server *s, char *err, size_t errlen)
{
    if (!catch_all)
        return srv_efail(err, errlen, -EPERM, "off (bpfgraftd --catch-new-processes=off)");
    if (ew.all) {
        ew.all++;
        return 0;
    }
    int r = open_fanotify(s, err, errlen);
    if (r)
        return r;
    size_t n = mark_mounts();
    if (!n)
        return srv_efail(err, errlen, -EPERM, "no mount of bpfgraftd's mount namespace takes an exec mark");
    ew.all = 1;
    srv_log(SRV_INFO, "every process starting a program (%zu mounts watched) is caught at exec", n);
    return 0;
}

void execwatch_remove_all(struct server *s)
{
    (void)s;
    if (!ew.all || --ew.all)
        return;
    if (fanotify_mark(ew.fd, FAN_MARK_FLUSH | FAN_MARK_MOUNT, 0, AT_FDCWD, NULL) != 0)
        srv_log(SRV_ERROR, "removing the exec marks of every mount: %s", strerror(errno));
    srv_log(SRV_INFO, "new processes are no longer caught at exec but for probed binaries");
}

/* Whether the file being exec'd is a program we can catch: an x86-64 ELF
 * file or a script (whose interpreter's exec comes as its own event). A
 * file the kernel will refuse would leave us waiting for an exec that
 * never completes. */
static bool runnable_file(int fd)
{
    unsigned char h[20];
    if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h))
        return false;
    if (h[0] == '#' && h[1] == '!')
        return true;
    uint16_t machine;
    memcpy(&machine, h + 18, sizeof(machine));
    return !memcmp(h, ELFMAG, SELFMAG) && h[EI_CLASS] == ELFCLASS64 && machine == EM_X86_64;
}

/* Programs that join or make mount or user namespaces, which the kernel
 * allows a single-threaded process only: with the payload's thread their
 * setns()/unshare() would fail (EINVAL), so the every-mount watch leaves
 * them alone (a probe on their own file still catches them). */
static const char *const ns_programs[] = {"nsenter", "unshare",        "runc",      "crun",      "bwrap",
                                          "conmon",  "systemd-nspawn", "firejail",  "newuidmap", "newgidmap",
                                          "podman",  "lxc-start",      "lxc-attach"};

/* Whether the file of an exec event is one to catch. */
static bool wanted_file(int fd)
{
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof(path) - 1);
    if (n <= 0 || !runnable_file(fd))
        return false;
    path[n] = 0;
    if (find(path))
        return true;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (size_t i = 0; i < sizeof(ns_programs) / sizeof(ns_programs[0]); i++)
        if (!strcmp(base, ns_programs[i]))
            return false;
    return true;
}

/* Execs let go uncaught, still under way: the kernel opens the program's
 * interpreter (ld.so, a script's) holding the process's cred_guard_mutex,
 * which PTRACE_SEIZE takes too, so those later opens of the same exec must
 * not be seized. An exec is known by the pid and its program before the
 * exec (/proc/PID/exe, read without that lock), for a few seconds. */
#define SKIPPED_EXECS 64
#define SKIPPED_EXEC_MS 5000
static struct skipped_exec {
    pid_t pid;
    dev_t dev;
    ino_t ino;
    uint64_t until_ms;
} skipped[SKIPPED_EXECS];
static size_t skipped_next;

static bool exe_of(pid_t pid, struct stat *st)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    return stat(path, st) == 0;
}

static struct skipped_exec *skipped_find(pid_t pid, const struct stat *st)
{
    uint64_t now = server_now_ms();
    for (size_t i = 0; i < SKIPPED_EXECS; i++) {
        struct skipped_exec *e = &skipped[i];
        if (e->pid == pid && e->dev == st->st_dev && e->ino == st->st_ino && e->until_ms > now)
            return e;
    }
    return NULL;
}

static void skip_exec(pid_t pid, const struct stat *st)
{
    struct skipped_exec *e = skipped_find(pid, st);
    if (!e)
        e = &skipped[skipped_next++ % SKIPPED_EXECS];
    *e = (struct skipped_exec){pid, st->st_dev, st->st_ino, server_now_ms() + SKIPPED_EXEC_MS};
}

/* Whether pid is one to catch at this exec of the file fd. */
static bool wanted(pid_t pid, int fd)
{
    int tracer = 0;
    struct stat st;
    if (pid == getpid() || !exe_of(pid, &st) || skipped_find(pid, &st))
        return false; /* the server, a process gone, or a later open of an exec let go */
    if (bpfg_procfs_status_int(pid, 0, "TracerPid", &tracer) != 0 || tracer != 0)
        return false; /* a tracer (we, catching it already: its interpreter's open) has it */
    if (!tools_has_pid(pid) && wanted_file(fd))
        return true;
    skip_exec(pid, &st);
    return false;
}

/* Seizes pid if it is one to catch, before its exec is allowed, so that
 * it stops before the first instruction of the new program. */
static bool seize_if_wanted(pid_t pid, int fd)
{
    if (!wanted(pid, fd))
        return false;
    char ierr[BPFG_ERRLEN] = "";
    pid_t *grown = realloc(ew.queue, (ew.nqueue + 1) * sizeof(*grown));
    if (grown)
        ew.queue = grown;
    if (!grown || bpfg_exec_seize(pid, ierr) != 0) {
        srv_log(SRV_WARN, "process %d starts a watched program but cannot be caught: %s", (int)pid,
                grown ? ierr : "out of memory");
        struct stat st;
        if (exe_of(pid, &st))
            skip_exec(pid, &st);
        return false;
    }
    ew.queue[ew.nqueue++] = pid;
    return true;
}

static void on_exec(const struct fanotify_event_metadata *m)
{
    seize_if_wanted(m->pid, m->fd);
    struct fanotify_response rsp = {.fd = m->fd, .response = FAN_ALLOW};
    if (write(ew.fd, &rsp, sizeof(rsp)) != (ssize_t)sizeof(rsp))
        srv_log(SRV_ERROR, "allowing the exec of process %d: %s", (int)m->pid, strerror(errno));
    close(m->fd);
}

/* Answers every queued exec event (seizing those to catch). */
static void drain(void)
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
                on_exec(m);
            else
                close(m->fd);
        }
    }
}

/* While an exec is awaited: execs of others (and the interpreter's open
 * of this one) are answered, not left waiting for us. */
static void wait_hook(void *arg)
{
    struct pollfd p = {ew.fd, POLLIN, 0};
    (void)arg;
    if (ew.fd >= 0 && poll(&p, 1, 1) == 1)
        drain();
}

/* Runs a seized pid through its exec to its entry point and attaches it;
 * a target that exec'd is forgotten first (its payload is gone). */
static void catch_one(struct server *s, pid_t pid)
{
    char ierr[BPFG_ERRLEN] = "", err[512];
    if (bpfg_exec_to_entry(pid, ierr) != 0) {
        srv_log(SRV_WARN, "process %d: not caught at its entry point: %s", (int)pid, ierr);
        return;
    }
    struct target *old = targets_find(&s->targets, pid);
    if (old)
        targets_forget_exec(s, old);
    if (!tools_want_new(pid) && !binwide_wants(pid)) {
        bpfg_release_started(pid); /* maps no probed library: let go, nothing injected */
        return;
    }
    if (targets_attach_caught(s, pid, err, sizeof(err)) != 0)
        srv_log(SRV_WARN, "process %d, caught at exec: %s", (int)pid, err);
}

static void catch_queued(struct server *s)
{
    if (ew.catching)
        return;
    ew.catching = true;
    while (ew.nqueue) {
        pid_t pid = ew.queue[0];
        memmove(ew.queue, ew.queue + 1, --ew.nqueue * sizeof(*ew.queue));
        catch_one(s, pid);
    }
    ew.catching = false;
}

void execwatch_readable(struct server *s)
{
    drain();
    catch_queued(s);
}

void execwatch_tick(struct server *s)
{
    catch_queued(s);
}

void execwatch_destroy(struct server *s)
{
    bpfg_set_exec_wait_hook(NULL, NULL);
    free(ew.queue); /* seized processes left: our exit lets them go */
    ew.queue = NULL;
    ew.nqueue = 0;
    ew.all = 0;
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
