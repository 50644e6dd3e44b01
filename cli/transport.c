/* Remote bpfgraftd over the system's ssh client, and the remote end's
 * stdio bridge (bpfgraft dial-stdio). */
#define _GNU_SOURCE
#include "transport.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SSH_PREFIX "ssh://"
#define TLS_PREFIX "tcps://"

static int parse_fail(char *err, size_t errlen, const char *url, const char *why)
{
    snprintf(err, errlen, "bad --host %s: %s (want ssh://[user@]host[:port][/socket] or tcps://host:port)", url, why);
    return -EINVAL;
}

static int copy_part(char *dst, size_t len, const char *s, size_t n)
{
    if (n >= len)
        return -E2BIG;
    memcpy(dst, s, n);
    dst[n] = 0;
    return 0;
}

/* host, [v6], host:port or [v6]:port */
static int parse_hostport(const char *s, size_t n, struct cli_host *h, char *err, size_t errlen, const char *url)
{
    const char *colon = NULL;
    if (n && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return parse_fail(err, errlen, url, "unclosed [");
        if (copy_part(h->host, sizeof(h->host), s + 1, (size_t)(close - s - 1)))
            return parse_fail(err, errlen, url, "host name too long");
        if (close + 1 < s + n && close[1] != ':')
            return parse_fail(err, errlen, url, "junk after ]");
        colon = close + 1 < s + n ? close + 1 : NULL;
    } else {
        colon = memchr(s, ':', n);
        if (copy_part(h->host, sizeof(h->host), s, colon ? (size_t)(colon - s) : n))
            return parse_fail(err, errlen, url, "host name too long");
    }
    if (!h->host[0] || h->host[0] == '-')
        return parse_fail(err, errlen, url, "no host name");
    if (h->host[strspn(h->host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%")])
        return parse_fail(err, errlen, url, "bad character in the host name");
    if (!colon)
        return 0;
    size_t plen = (size_t)(s + n - colon - 1);
    if (copy_part(h->port, sizeof(h->port), colon + 1, plen) || !plen || strspn(h->port, "0123456789") != plen ||
        atoi(h->port) < 1 || atoi(h->port) > 65535)
        return parse_fail(err, errlen, url, "port must be 1..65535");
    return 0;
}

/* tcps://host:port: no user, no path, a port always. */
static int parse_tls(const char *url, struct cli_host *h, char *err, size_t errlen)
{
    const char *s = url + strlen(TLS_PREFIX);
    h->tls = true;
    if (strpbrk(s, "@/"))
        return parse_fail(err, errlen, url, "tcps:// takes no user and no socket path");
    int r = parse_hostport(s, strlen(s), h, err, errlen, url);
    if (!r && !h->port[0])
        return parse_fail(err, errlen, url, "tcps:// needs a port");
    return r;
}

int transport_parse(const char *url, struct cli_host *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof(*h));
    if (strncmp(url, TLS_PREFIX, strlen(TLS_PREFIX)) == 0)
        return parse_tls(url, h, err, errlen);
    if (strncmp(url, SSH_PREFIX, strlen(SSH_PREFIX)) != 0)
        return parse_fail(err, errlen, url, "unknown scheme");
    const char *s = url + strlen(SSH_PREFIX);
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    const char *at = memchr(s, '@', n);
    if (at) {
        if (at == s || copy_part(h->user, sizeof(h->user), s, (size_t)(at - s)) || h->user[0] == '-')
            return parse_fail(err, errlen, url, "bad user name");
        n -= (size_t)(at + 1 - s);
        s = at + 1;
    }
    int r = parse_hostport(s, n, h, err, errlen, url);
    if (r || !slash || !slash[1])
        return r;
    /* The path goes into a remote shell command inside single quotes. */
    if (strchr(slash, '\'') || copy_part(h->socket, sizeof(h->socket), slash, strlen(slash)))
        return parse_fail(err, errlen, url, "socket path too long or has a quote");
    return 0;
}

/* argv of ssh, without argv[0]: [-l USER] [-p PORT] -- HOST COMMAND */
static int ssh_args(const struct cli_host *h, char *cmd, size_t cmdlen, const char **argv)
{
    int n = 0;
    if (h->user[0]) {
        argv[n++] = "-l";
        argv[n++] = h->user;
    }
    if (h->port[0]) {
        argv[n++] = "-p";
        argv[n++] = h->port;
    }
    argv[n++] = "--";
    argv[n++] = h->host;
    if (h->socket[0])
        snprintf(cmd, cmdlen, "bpfgraft --socket '%s' dial-stdio", h->socket);
    else
        snprintf(cmd, cmdlen, "bpfgraft dial-stdio");
    argv[n++] = cmd;
    argv[n] = NULL;
    return n;
}

static void exec_ssh(const struct cli_host *h)
{
    char cmd[512];
    const char *argv[16];
    const char *custom = getenv("BPFGRAFT_SSH_COMMAND");
    int n = ssh_args(h, cmd, sizeof(cmd), argv + 3);
    if (custom && *custom) {
        char script[4096];
        snprintf(script, sizeof(script), "%s \"$@\"", custom);
        argv[0] = "/bin/sh";
        argv[1] = "-c";
        argv[2] = script;
        /* $0 of the script, then ssh's arguments */
        memmove(argv + 4, argv + 3, (size_t)(n + 1) * sizeof(char *));
        argv[3] = "ssh";
        execv("/bin/sh", (char **)argv);
        fprintf(stderr, "bpfgraft: /bin/sh: %s\n", strerror(errno));
    } else {
        argv[2] = "ssh";
        execvp("ssh", (char **)argv + 2);
        fprintf(stderr, "bpfgraft: cannot run ssh: %s\n", strerror(errno));
    }
    _exit(127);
}

int transport_ssh_open(const struct cli_host *h, pid_t *child)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        int err = -errno;
        fprintf(stderr, "bpfgraft: socketpair: %s\n", strerror(errno));
        return err;
    }
    pid_t pid = fork();
    if (pid < 0) {
        int err = -errno;
        fprintf(stderr, "bpfgraft: fork: %s\n", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        return err;
    }
    if (pid == 0) {
        /* dup2 clears FD_CLOEXEC on the copies */
        if (dup2(sv[1], 0) < 0 || dup2(sv[1], 1) < 0)
            _exit(127);
        exec_ssh(h);
    }
    close(sv[1]);
    *child = pid;
    return sv[0];
}

static int dial_tcp(const struct cli_host *h)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV}, *ai = NULL;
    int g = getaddrinfo(h->host, h->port, &hints, &ai);
    if (g) {
        fprintf(stderr, "bpfgraft: %s: %s\n", h->host, gai_strerror(g));
        return -EHOSTUNREACH;
    }
    int r = -EHOSTUNREACH;
    for (const struct addrinfo *a = ai; a; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        int one = 1; /* a request waits for its answer: no Nagle delay */
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) == 0 &&
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0) {
            freeaddrinfo(ai);
            return fd;
        }
        r = -errno;
        if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(ai);
    fprintf(stderr, "bpfgraft: cannot connect to %s port %s: %s\n", h->host, h->port, strerror(-r));
    return r;
}

int transport_tls_open(const struct cli_host *h, const struct cli_tls_files *f, bpfg_tls_ctx **ctx,
                       struct bpfg_tls **session)
{
    char err[512];
    if (!f->cert || !f->key || !f->ca) {
        fprintf(stderr, "bpfgraft: tcps:// needs --tls-cert, --tls-key and --tls-ca (or $BPFGRAFT_TLS_CERT, "
                        "$BPFGRAFT_TLS_KEY, $BPFGRAFT_TLS_CA)\n");
        return -EINVAL;
    }
    *ctx = bpfg_tls_client_ctx(f->cert, f->key, f->ca, err, sizeof(err));
    if (!*ctx) {
        fprintf(stderr, "bpfgraft: %s\n", err);
        return -EINVAL;
    }
    int fd = dial_tcp(h);
    *session = fd >= 0 ? bpfg_tls_connect(*ctx, fd, h->host, err, sizeof(err)) : NULL;
    if (fd >= 0 && !*session) {
        fprintf(stderr, "bpfgraft: %s port %s: %s\n", h->host, h->port, err);
        close(fd);
        fd = -ECONNREFUSED;
    }
    if (fd < 0) {
        bpfg_tls_ctx_free(*ctx);
        *ctx = NULL;
    }
    return fd;
}

void transport_ssh_close(pid_t child)
{
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 500; i++) {
        pid_t r = waitpid(child, NULL, WNOHANG);
        if (r == child || (r < 0 && errno != EINTR))
            return;
        nanosleep(&tick, NULL);
    }
    kill(child, SIGTERM);
    while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
        ;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One read of sock, its passed fds closed; bytes read or -errno. */
static ssize_t recv_no_fds(int sock, char *buf, size_t len)
{
    union {
        char space[CMSG_SPACE(16 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {buf, len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space, .msg_controllen = sizeof(ctl)};
    ssize_t n = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC);
    if (n < 0)
        return -errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            close(fd);
        }
    }
    return n;
}

/* Moves one read's worth from src to dst: bytes moved, 0 at EOF, -errno. */
static ssize_t pump(int src, int dst, bool src_is_sock)
{
    char buf[65536];
    ssize_t n = src_is_sock ? recv_no_fds(src, buf, sizeof(buf)) : read(src, buf, sizeof(buf));
    if (n < 0 && !src_is_sock)
        n = -errno;
    if (n == -EINTR)
        return 1; /* nothing moved; poll again */
    if (n <= 0)
        return n;
    int r = write_all(dst, buf, (size_t)n);
    return r ? r : n;
}

int transport_bridge_stdio(int sock)
{
    struct pollfd p[2] = {{.fd = 0, .events = POLLIN}, {.fd = sock, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "bpfgraft dial-stdio: poll: %s\n", strerror(errno));
            return -errno;
        }
        if (p[1].revents) {
            ssize_t n = pump(sock, 1, true);
            if (n <= 0) { /* the server closed, or stdout is gone */
                if (n < 0 && n != -EPIPE && n != -ECONNRESET)
                    fprintf(stderr, "bpfgraft dial-stdio: %s\n", strerror((int)-n));
                return n < 0 && n != -EPIPE && n != -ECONNRESET ? (int)n : 0;
            }
        }
        if (p[0].revents) {
            ssize_t n = pump(0, sock, false);
            if (n < 0) {
                fprintf(stderr, "bpfgraft dial-stdio: %s\n", strerror((int)-n));
                return (int)n;
            }
            if (n == 0) { /* the client is done: let the server finish */
                shutdown(sock, SHUT_WR);
                p[0].fd = -1;
            }
        }
    }
}
