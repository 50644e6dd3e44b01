/* bpfgraftd --takeover (takeover.h). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "takeover.h"

static int fail(char *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, 256, fmt, ap);
    va_end(ap);
    return code;
}

/* The pid in socket_path.lock (take_lock in server.c writes it). */
static int lock_owner(const char *socket_path, pid_t *pid, char *err)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8], buf[32] = "";
    snprintf(path, sizeof(path), "%s.lock", socket_path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, -errno, "no daemon to take over on %s (%s: %s)", socket_path, path, strerror(errno));
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    *pid = n > 0 ? (pid_t)atoi(buf) : 0;
    return *pid > 0 ? 0 : fail(err, -ESRCH, "%s names no daemon", path);
}

/* 1 if fd is a listening AF_UNIX socket bound to name (a leading '@':
 * abstract), 0 if not. */
static int listens_on(int fd, const char *name)
{
    struct sockaddr_un a;
    socklen_t len = sizeof(a);
    int on = 0;
    socklen_t olen = sizeof(on);
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0 || a.sun_family != AF_UNIX ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) != 0 || !on)
        return 0;
    size_t plen = len - offsetof(struct sockaddr_un, sun_path);
    if (name[0] == '@')
        return plen == strlen(name) && a.sun_path[0] == 0 && memcmp(a.sun_path + 1, name + 1, plen - 1) == 0;
    return strnlen(a.sun_path, plen) == strlen(name) && strncmp(a.sun_path, name, plen) == 0;
}

/* 1 if fd is a listening TCP socket (the TLS listener), 0 if not. */
static int listens_tcp(int fd)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof(a);
    int on = 0;
    socklen_t olen = sizeof(on);
    return getsockname(fd, (struct sockaddr *)&a, &len) == 0 && (a.ss_family == AF_INET || a.ss_family == AF_INET6) &&
           getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) == 0 && on;
}

/* Keeps fd if it is one of the listening sockets still missing. */
static void sort_socket(int fd, const char *socket_path, const char *payload_name, struct takeover *out)
{
    if (out->control_fd < 0 && listens_on(fd, socket_path))
        out->control_fd = fd;
    else if (out->payload_fd < 0 && listens_on(fd, payload_name))
        out->payload_fd = fd;
    else if (out->tcp_fd < 0 && listens_tcp(fd))
        out->tcp_fd = fd;
    else
        close(fd);
}

/* Copies the old daemon's listening sockets (pidfd_getfd): control and
 * payload, and its TLS listener if it has one. */
static int take_sockets(int pidfd, const char *socket_path, const char *payload_name, struct takeover *out, char *err)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)out->old_pid);
    DIR *d = opendir(dir);
    if (!d)
        return fail(err, -errno, "cannot list %s: %s", dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d))) {
        int n = atoi(de->d_name);
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        int fd = (int)syscall(SYS_pidfd_getfd, pidfd, n, 0);
        if (fd >= 0)
            sort_socket(fd, socket_path, payload_name, out);
    }
    closedir(d);
    if (out->control_fd >= 0 && out->payload_fd >= 0)
        return 0;
    return fail(err, -ENOENT, "daemon %d holds no listening socket on %s and %s (not a bpfgraftd of this version?)",
                (int)out->old_pid, socket_path, payload_name);
}

/* The abstract name the daemon new_pid receives the clients of the one
 * it takes over from on (both sides compute it). */
static socklen_t handover_addr(const char *socket_path, pid_t new_pid, struct sockaddr_un *a)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "bpfgraft-handover/%d%s", (int)new_pid, socket_path);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(a->sun_path) - 1 ? (size_t)n : sizeof(a->sun_path) - 2;
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

static int handover_listen(const char *socket_path, char *err)
{
    struct sockaddr_un a;
    socklen_t len = handover_addr(socket_path, getpid(), &a);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, len) != 0 || listen(fd, 1) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return fail(err, -e, "handover socket: %s", strerror(e));
    }
    return fd;
}

static pid_t peer_pid(int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 ? cred.pid : -1;
}

/* One handed-over client: its description and its fd; 0 at the end. */
static int receive_one(int conn, struct takeover *out)
{
    struct takeover_client c;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } ctl;
    struct iovec iov = {&c, sizeof(c)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
    ssize_t n = recvmsg(conn, &m, MSG_CMSG_CLOEXEC);
    struct cmsghdr *h = n > 0 ? CMSG_FIRSTHDR(&m) : NULL;
    if (!h || h->cmsg_type != SCM_RIGHTS || h->cmsg_len != CMSG_LEN(sizeof(int)))
        return n > 0 ? -EBADMSG : n == 0 ? 0 : -errno;
    memcpy(&c.fd, CMSG_DATA(h), sizeof(int));
    struct takeover_client *grown = realloc(out->clients, (out->nclients + 1) * sizeof(*grown));
    if (n != (ssize_t)sizeof(c) || !grown) {
        close(c.fd);
        if (grown)
            out->clients = grown;
        return n != (ssize_t)sizeof(c) ? -EBADMSG : -ENOMEM;
    }
    out->clients = grown;
    out->clients[out->nclients++] = c;
    return 1;
}

/* The old daemon's connection on the handover socket, if it is there:
 * every client it sends. */
static void receive_clients(int lfd, struct takeover *out)
{
    int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (conn < 0)
        return;
    struct timeval tv = {2, 0}; /* it sends everything at once, then closes */
    if (peer_pid(conn) == out->old_pid && setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == 0)
        while (receive_one(conn, out) > 0)
            ;
    close(conn);
}

/* Asks the old daemon to go and waits until it has exited, taking the
 * clients it hands over on the way. */
static int retire(int pidfd, int lfd, struct takeover *out, char *err)
{
    pid_t pid = out->old_pid;
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGUSR2, NULL, 0) != 0)
        return fail(err, -errno, "cannot signal daemon %d: %s", (int)pid, strerror(errno));
    struct pollfd p[2] = {{.fd = pidfd, .events = POLLIN}, {.fd = lfd, .events = POLLIN}};
    for (;;) {
        int r = poll(p, 2, TAKEOVER_WAIT_MS);
        if (r > 0 && (p[1].revents & POLLIN)) {
            receive_clients(lfd, out);
            p[1].fd = -1;
            continue;
        }
        if (r > 0) {
            if (p[1].fd >= 0)
                receive_clients(lfd, out); /* sent just before it exited */
            return 0;
        }
        if (r == 0)
            return fail(err, -ETIMEDOUT, "daemon %d did not exit within %d ms", (int)pid, TAKEOVER_WAIT_MS);
        if (errno != EINTR)
            return fail(err, -errno, "waiting for daemon %d: %s", (int)pid, strerror(errno));
    }
}

void takeover_release(struct takeover *t)
{
    if (t->control_fd >= 0)
        close(t->control_fd);
    if (t->payload_fd >= 0)
        close(t->payload_fd);
    if (t->tcp_fd >= 0)
        close(t->tcp_fd);
    for (size_t i = 0; i < t->nclients; i++)
        if (t->clients[i].fd >= 0)
            close(t->clients[i].fd);
    free(t->clients);
    t->clients = NULL;
    t->nclients = 0;
    t->control_fd = t->payload_fd = t->tcp_fd = -1;
}

int takeover_run(const char *socket_path, const char *payload_name, struct takeover *out, char *err)
{
    *out = (struct takeover){.control_fd = -1, .payload_fd = -1, .tcp_fd = -1};
    int r = lock_owner(socket_path, &out->old_pid, err);
    if (r)
        return r;
    int pidfd = (int)syscall(SYS_pidfd_open, out->old_pid, 0);
    if (pidfd < 0)
        return fail(err, -errno, "daemon %d: %s", (int)out->old_pid, strerror(errno));
    int lfd = -1;
    r = take_sockets(pidfd, socket_path, payload_name, out, err);
    if (!r && (r = lfd = handover_listen(socket_path, err)) >= 0)
        r = retire(pidfd, lfd, out, err);
    close(pidfd);
    if (lfd >= 0)
        close(lfd);
    if (r)
        takeover_release(out);
    return r;
}

int takeover_send_clients(const char *socket_path, pid_t new_pid, const int *fds, const struct takeover_client *what,
                          size_t n, char *err)
{
    struct sockaddr_un a;
    socklen_t len = handover_addr(socket_path, new_pid, &a);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    int e = s < 0 ? errno : connect(s, (struct sockaddr *)&a, len) != 0 ? errno : peer_pid(s) != new_pid ? EPERM : 0;
    if (e) {
        if (s >= 0)
            close(s);
        return fail(err, -e, "handover socket of daemon %d: %s", (int)new_pid, strerror(e));
    }
    int r = 0;
    for (size_t i = 0; i < n && !r; i++) {
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int))];
        } ctl;
        memset(&ctl, 0, sizeof(ctl));
        struct iovec iov = {(void *)&what[i], sizeof(what[i])};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
        struct cmsghdr *h = CMSG_FIRSTHDR(&m);
        h->cmsg_level = SOL_SOCKET;
        h->cmsg_type = SCM_RIGHTS;
        h->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(h), &fds[i], sizeof(int));
        if (sendmsg(s, &m, MSG_NOSIGNAL) != (ssize_t)sizeof(what[i]))
            r = fail(err, -errno, "sending client %zu of %zu: %s", i + 1, n, strerror(errno));
    }
    close(s);
    return r;
}
