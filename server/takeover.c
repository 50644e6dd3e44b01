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

/* Copies the old daemon's two listening sockets (pidfd_getfd). */
static int take_sockets(int pidfd, const char *socket_path, const char *payload_name, struct takeover *out, char *err)
{
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)out->old_pid);
    DIR *d = opendir(dir);
    if (!d)
        return fail(err, -errno, "cannot list %s: %s", dir, strerror(errno));
    struct dirent *de;
    while ((de = readdir(d)) && (out->control_fd < 0 || out->payload_fd < 0)) {
        int n = atoi(de->d_name);
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        int fd = (int)syscall(SYS_pidfd_getfd, pidfd, n, 0);
        if (fd < 0)
            continue;
        if (out->control_fd < 0 && listens_on(fd, socket_path))
            out->control_fd = fd;
        else if (out->payload_fd < 0 && listens_on(fd, payload_name))
            out->payload_fd = fd;
        else
            close(fd);
    }
    closedir(d);
    if (out->control_fd >= 0 && out->payload_fd >= 0)
        return 0;
    return fail(err, -ENOENT, "daemon %d holds no listening socket on %s and %s (not a bpfgraftd of this version?)",
                (int)out->old_pid, socket_path, payload_name);
}

/* Asks the old daemon to go and waits until it has exited. */
static int retire(int pidfd, pid_t pid, char *err)
{
    if (syscall(SYS_pidfd_send_signal, pidfd, SIGUSR2, NULL, 0) != 0)
        return fail(err, -errno, "cannot signal daemon %d: %s", (int)pid, strerror(errno));
    struct pollfd p = {.fd = pidfd, .events = POLLIN};
    for (;;) {
        int r = poll(&p, 1, TAKEOVER_WAIT_MS);
        if (r > 0)
            return 0;
        if (r == 0)
            return fail(err, -ETIMEDOUT, "daemon %d did not exit within %d ms", (int)pid, TAKEOVER_WAIT_MS);
        if (errno != EINTR)
            return fail(err, -errno, "waiting for daemon %d: %s", (int)pid, strerror(errno));
    }
}

int takeover_run(const char *socket_path, const char *payload_name, struct takeover *out, char *err)
{
    out->control_fd = out->payload_fd = -1;
    int r = lock_owner(socket_path, &out->old_pid, err);
    if (r)
        return r;
    int pidfd = (int)syscall(SYS_pidfd_open, out->old_pid, 0);
    if (pidfd < 0)
        return fail(err, -errno, "daemon %d: %s", (int)out->old_pid, strerror(errno));
    r = take_sockets(pidfd, socket_path, payload_name, out, err);
    if (!r)
        r = retire(pidfd, out->old_pid, err);
    close(pidfd);
    if (r && out->control_fd >= 0)
        close(out->control_fd);
    if (r && out->payload_fd >= 0)
        close(out->payload_fd);
    if (r)
        out->control_fd = out->payload_fd = -1;
    return r;
}
