/* The control socket loop: accept clients, read requests, dispatch, stream
 * events, shut down cleanly on SIGTERM/SIGINT. Single-threaded; every
 * socket is nonblocking so one slow client never stalls the others. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "methods.h"
#include "server.h"
#include "stacksyms.h"
#include "adopt.h"
#include "state.h"
#include "tiering.h"
#include "tool.h"
#include "execwatch.h"
#include "kernel.h"
#include "binwide.h"
#include "offload.h"

#define MAX_PENDING_OUT (64u << 20) /* a client this far behind is dropped */
#define EVENT_TICK_MS 10
#define TLS_HANDSHAKE_MS 10000 /* a TCP peer gets this long to prove who it is */

/* epoll data: small tags for the fixed fds, client pointers otherwise. */
#define TAG_LISTEN ((void *)1)
#define TAG_SIGNAL ((void *)2)
#define TAG_TIMER ((void *)3)
#define TAG_PAYLOAD ((void *)4) /* the payload socket: reconnecting payloads (adopt.c) */
#define TAG_TLS ((void *)5)     /* --listen: TLS clients */

uint64_t server_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int epoll_add(int epfd, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) ? -errno : 0;
}

/* The lock file beside the socket makes a second instance refuse to start
 * instead of stealing the socket; the pid in it names the owner. */
static int take_lock(struct server *s)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
    snprintf(path, sizeof(path), "%s.lock", s->cfg.socket_path);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        int err = -errno;
        srv_log(SRV_ERROR, "cannot open lock file %s: %s", path, strerror(errno));
        return err;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char pid[32] = "?";
        ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
        if (n > 0)
            pid[strcspn(pid, "\n")] = 0;
        srv_log(SRV_ERROR, "another bpfgraftd (pid %s) is already serving %s", n > 0 ? pid : "?", s->cfg.socket_path);
        close(fd);
        return -EADDRINUSE;
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)len, 0) != len)
        srv_log(SRV_WARN, "cannot write pid to %s: %s", path, strerror(errno));
    s->lock_fd = fd;
    return 0;
}

static int make_socket_dir(const char *sock_path)
{
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    snprintf(dir, sizeof(dir), "%s", sock_path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = 0;
    if (mkdir(dir, 0700) == 0) {
        srv_log(SRV_INFO, "created %s (0700)", dir);
        return 0;
    }
    if (errno == EEXIST)
        return 0;
    int err = -errno;
    srv_log(SRV_ERROR, "cannot create socket directory %s: %s", dir, strerror(errno));
    return err;
}

static int listen_socket(struct server *s)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(s->cfg.socket_path) >= sizeof(addr.sun_path)) {
        srv_log(SRV_ERROR, "socket path %s is too long", s->cfg.socket_path);
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, s->cfg.socket_path);
    if (s->cfg.takeover) { /* the old daemon's, never closed: clients waited in its backlog */
        s->listen_fd = s->cfg.takeover->control_fd;
        return 0;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* We hold the lock: a socket file left here is a dead instance's. */
    if (unlink(s->cfg.socket_path) == 0)
        srv_log(SRV_INFO, "removed stale socket %s", s->cfg.socket_path);
    mode_t old = umask(0177);
    int rc = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    umask(old);
    if (rc != 0 || chmod(s->cfg.socket_path, s->cfg.socket_mode) != 0 ||
        (s->cfg.socket_gid != (gid_t)-1 && chown(s->cfg.socket_path, (uid_t)-1, s->cfg.socket_gid) != 0) ||
        listen(fd, 128) != 0) {
        int err = -errno;
        srv_log(SRV_ERROR, "cannot serve %s: %s", s->cfg.socket_path, strerror(errno));
        close(fd);
        return err;
    }
    s->listen_fd = fd;
    return 0;
}

/* The audit log: --audit-log, else the system's for the default socket,
 * else beside the state (test and second servers keep theirs apart). */
static int open_audit(struct server *s)
{
    char path[4200], err[4400];
    if (s->cfg.audit_path)
        snprintf(path, sizeof(path), "%s", s->cfg.audit_path);
    else if (strcmp(s->cfg.socket_path, SRV_DEFAULT_SOCKET) == 0)
        snprintf(path, sizeof(path), "%s", AUDIT_DEFAULT_FILE);
    else
        snprintf(path, sizeof(path), "%s/audit.log", s->cfg.state_dir);
    int r = audit_open(&s->audit, path, err, sizeof(err));
    if (r)
        srv_log(SRV_ERROR, "%s", err);
    return r;
}

static void add_handed_clients(struct server *s);

/* --listen: mutual TLS on TCP beside the unix socket. */
static int open_tls(struct server *s)
{
    char err[512];
    int taken = s->cfg.takeover ? s->cfg.takeover->tcp_fd : -1; /* ours now, as its other sockets */
    int r = 0;
    if (s->cfg.listen_url)
        r = tlsl_open(&s->tls, s->cfg.listen_url, s->cfg.tls_cert, s->cfg.tls_key, s->cfg.tls_client_ca, &taken, err,
                      sizeof(err));
    if (r)
        srv_log(SRV_ERROR, "%s", err);
    else if (s->cfg.listen_url)
        srv_log(SRV_INFO, "listening on %s (TLS 1.3, client certificates of %s)%s", s->cfg.listen_url,
                s->cfg.tls_client_ca, s->cfg.takeover && taken < 0 ? " on the socket taken over" : "");
    if (taken >= 0)
        close(taken);
    return r;
}

int server_init(struct server *s, const struct srv_config *cfg)
{
    memset(s, 0, sizeof(*s));
    s->cfg = *cfg;
    if (!s->cfg.socket_path)
        s->cfg.socket_path = SRV_DEFAULT_SOCKET;
    if (!s->cfg.state_dir) {
        /* beside the socket: two servers never share their state */
        snprintf(s->state_dir, sizeof(s->state_dir), "%s", s->cfg.socket_path);
        char *slash = strrchr(s->state_dir, '/');
        if (slash)
            *slash = 0;
        else
            snprintf(s->state_dir, sizeof(s->state_dir), ".");
        s->cfg.state_dir = s->state_dir[0] ? s->state_dir : "/";
    }
    if (!s->cfg.socket_mode)
        s->cfg.socket_mode = 0600;
    if (!s->cfg.max_clients)
        s->cfg.max_clients = 256;
    s->epfd = s->listen_fd = s->signal_fd = s->timer_fd = s->lock_fd = s->tls.fd = -1;
    s->targets.listen_fd = -1;
    s->state_fd = -1;
    s->audit.fd = -1;
    stats_init(&s->stats);
    s->start_ms = server_now_ms();
    s->next_client_id = 1;
    registry_init(&s->reg);

    char aerr[512];
    int err = access_load(&s->access, s->cfg.access_path, aerr, sizeof(aerr));
    if (err) {
        srv_log(SRV_ERROR, "access file: %s", aerr);
        goto fail;
    }
    if (s->access.enabled)
        srv_log(SRV_INFO, "access control: %zu rules from %s", s->access.nrules,
                s->cfg.access_path ? s->cfg.access_path : ACCESS_DEFAULT_FILE);
    err = make_socket_dir(s->cfg.socket_path);
    if (!err)
        err = take_lock(s);
    if (!err)
        err = listen_socket(s);
    if (!err)
        err = open_tls(s);
    if (err)
        goto fail;
    err = targets_init(&s->targets, s->cfg.socket_path, s->cfg.payload_path ? s->cfg.payload_path : "",
                       s->cfg.takeover ? s->cfg.takeover->payload_fd : -1);
    if (err) {
        srv_log(SRV_ERROR, "cannot listen for payloads: %s", strerror(-err));
        goto fail;
    }
    targets_set_cache_dir(&s->targets, s->cfg.cache_dir, s->cfg.jit_archive);
    s->targets.orphan_grace_ms = s->cfg.orphan_grace_ms;
    /* before the state: a restored tool puts its exec marks in the loop */
    if ((s->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        err = -errno;
        srv_log(SRV_ERROR, "event loop setup: %s", strerror(errno));
        goto fail;
    }
    if ((err = state_init(s)) || (err = open_audit(s)))
        goto fail;
    stats_restore(s); /* before any target is adopted: each gets the switch */

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 ||
        (s->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
        (s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) < 0) {
        err = -errno;
        srv_log(SRV_ERROR, "event loop setup: %s", strerror(errno));
        goto fail;
    }
    struct itimerspec tick = {.it_interval = {0, EVENT_TICK_MS * 1000000L}, .it_value = {0, EVENT_TICK_MS * 1000000L}};
    if (timerfd_settime(s->timer_fd, 0, &tick, NULL) != 0 ||
        (err = epoll_add(s->epfd, s->listen_fd, EPOLLIN, TAG_LISTEN)) ||
        (err = epoll_add(s->epfd, s->signal_fd, EPOLLIN, TAG_SIGNAL)) ||
        (err = epoll_add(s->epfd, s->timer_fd, EPOLLIN, TAG_TIMER)) ||
        (err = epoll_add(s->epfd, s->targets.listen_fd, EPOLLIN, TAG_PAYLOAD)) ||
        (s->tls.fd >= 0 && (err = epoll_add(s->epfd, s->tls.fd, EPOLLIN, TAG_TLS)))) {
        err = err ? err : -errno;
        srv_log(SRV_ERROR, "event loop setup: %s", strerror(-err));
        goto fail;
    }
    add_handed_clients(s);
    srv_log(SRV_INFO, "bpfgraftd %s listening on %s (mode %04o), pid %d", SRV_VERSION, s->cfg.socket_path,
            (unsigned)s->cfg.socket_mode, (int)getpid());
    return 0;
fail:
    server_destroy(s);
    return err;
}

static void client_free(struct server *s, struct srv_client *c)
{
    struct srv_client **pp = &s->clients;
    while (*pp && *pp != c)
        pp = &(*pp)->next;
    if (*pp)
        *pp = c->next;
    s->nclients--;
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, bpfg_rpc_conn_fd(c->conn), NULL);
    if (c->tls)
        srv_log(SRV_INFO, "client %u (TLS %s) disconnected", c->id, c->remote_addr);
    else
        srv_log(SRV_INFO, "client %u (pid %d uid %u) disconnected", c->id, (int)c->pid, (unsigned)c->uid);
    bpfg_rpc_conn_free(c->conn);
    server_forget_events(s, c);
    free(c);
}

void server_forget_events(struct server *s, const void *tag)
{
    for (int k = 0; k < s->batch_len; k++)
        if (s->batch[k].data.ptr == tag)
            s->batch[k].data.ptr = NULL;
}

void server_destroy(struct server *s)
{
    while (s->clients)
        client_free(s, s->clients);
    /* Leave every target as we found it: tools' programs out, hooks
     * removed, payload gone. */
    offload_stop(s); /* kernel uprobes handed back first */
    tools_destroy(s);
    execwatch_destroy(s);
    binwide_destroy();
    targets_destroy(s, s->detach_on_stop);
    if (s->detach_on_stop)
        kernel_unpin_all(&s->reg); /* kernel programs end with the objects */
    registry_destroy(&s->reg);
    access_free(&s->access);
    audit_close(&s->audit);
    stats_close(&s->stats);
    tlsl_close(&s->tls);
    if (s->detach_on_stop)
        state_clear(s);
    state_close(s);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        if (!s->handover_ms) /* taken over: the socket is the new daemon's */
            unlink(s->cfg.socket_path);
    }
    if (s->lock_fd >= 0) {
        char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
        snprintf(path, sizeof(path), "%s.lock", s->cfg.socket_path);
        unlink(path);
        close(s->lock_fd);
    }
    if (s->signal_fd >= 0)
        close(s->signal_fd);
    if (s->timer_fd >= 0)
        close(s->timer_fd);
    if (s->epfd >= 0)
        close(s->epfd);
    s->listen_fd = s->lock_fd = s->signal_fd = s->timer_fd = s->epfd = -1;
}

/* The peer's supplementary groups, for group roles; beyond 32 (or on a
 * kernel without SO_PEERGROUPS) only the primary group counts. */
static void peer_groups(int fd, struct srv_client *c)
{
    socklen_t len = sizeof(c->groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
        c->ngroups = len / sizeof(gid_t);
    else
        srv_log(SRV_DEBUG, "client %u: SO_PEERGROUPS: %s", c->id, strerror(errno));
}

/* A client on fd (owned: closed when refused); who names it in logs.
 * NULL when refused (logged). */
static struct srv_client *add_client(struct server *s, int fd, const char *who)
{
    if (s->nclients >= s->cfg.max_clients) {
        srv_log(SRV_WARN, "refusing client %s: %zu clients connected", who, s->nclients);
        close(fd);
        return NULL;
    }
    struct srv_client *c = calloc(1, sizeof(*c));
    struct bpfg_rpc_conn *conn = c ? bpfg_rpc_conn_new(fd, s->cfg.max_msg) : NULL;
    if (!conn || epoll_add(s->epfd, fd, EPOLLIN | EPOLLRDHUP, c) != 0) {
        srv_log(SRV_WARN, "refusing client %s: out of resources", who);
        if (conn)
            bpfg_rpc_conn_free(conn); /* closes fd */
        else
            close(fd);
        free(c);
        return NULL;
    }
    c->magic = CLIENT_MAGIC;
    c->conn = conn;
    c->id = s->next_client_id++;
    c->next = s->clients;
    s->clients = c;
    s->nclients++;
    return c;
}

/* A unix-socket client on fd, named by its credentials (SO_PEERCRED). */
static struct srv_client *add_unix_client(struct server *s, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        srv_log(SRV_WARN, "SO_PEERCRED: %s; refusing client", strerror(errno));
        close(fd);
        return NULL;
    }
    char who[32];
    snprintf(who, sizeof(who), "pid %d", (int)cred.pid);
    struct srv_client *c = add_client(s, fd, who);
    if (!c)
        return NULL;
    c->pid = cred.pid;
    c->uid = cred.uid;
    c->gid = cred.gid;
    peer_groups(fd, c);
    srv_log(SRV_INFO, "client %u connected (pid %d uid %u)", c->id, (int)c->pid, (unsigned)c->uid);
    return c;
}

static void accept_clients(struct server *s)
{
    for (;;) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                srv_log(SRV_WARN, "accept: %s", strerror(errno));
            return;
        }
        add_unix_client(s, fd);
    }
}

/* --takeover: the clients the old daemon handed over (takeover.h), served
 * on as if they had connected to us; what they sent meanwhile waits in
 * their sockets. */
static void add_handed_clients(struct server *s)
{
    const struct takeover *tk = s->cfg.takeover;
    for (size_t i = 0; tk && i < tk->nclients; i++) {
        const struct takeover_client *h = &tk->clients[i];
        struct srv_client *c = add_unix_client(s, h->fd);
        if (!c)
            continue;
        c->topics = h->topics;
        c->remote = h->remote;
        memcpy(c->remote_via, h->remote_via, sizeof(c->remote_via));
        memcpy(c->remote_addr, h->remote_addr, sizeof(c->remote_addr));
        c->remote_via[sizeof(c->remote_via) - 1] = c->remote_addr[sizeof(c->remote_addr) - 1] = 0;
    }
    if (tk && tk->nclients)
        srv_log(SRV_INFO, "%zu client(s) handed over by pid %d", tk->nclients, (int)tk->old_pid);
}

/* TLS clients: remote peers (no fd passing) named by their certificate,
 * known once the handshake is done (tls_identify). */
static void accept_tls_clients(struct server *s)
{
    for (;;) {
        char peer[80], err[256];
        struct bpfg_tls *tls;
        int fd;
        int r = tlsl_accept(&s->tls, &fd, &tls, peer, sizeof(peer), err, sizeof(err));
        if (r == -EAGAIN)
            return;
        if (r) {
            srv_log(SRV_WARN, "TLS: %s", err);
            if (r != -ECONNABORTED)
                return;
            continue;
        }
        struct srv_client *c = add_client(s, fd, peer);
        if (!c) {
            bpfg_tls_io.free(tls);
            continue;
        }
        bpfg_rpc_conn_set_io(c->conn, &bpfg_tls_io, tls);
        c->tls = tls;
        c->tls_deadline_ms = server_now_ms() + TLS_HANDSHAKE_MS;
        c->remote = true;
        snprintf(c->remote_via, sizeof(c->remote_via), "tls");
        snprintf(c->remote_addr, sizeof(c->remote_addr), "%s", peer);
        srv_log(SRV_INFO, "client %u connected (TLS from %s)", c->id, peer);
    }
}

/* The peer's certificate, read once its first request arrives (the
 * handshake is done by then). */
static void tls_identify(struct srv_client *c)
{
    if (!c->tls || c->tls_known)
        return;
    c->tls_known = true;
    if (bpfg_tls_peer(c->tls, c->subject, sizeof(c->subject), c->sans, sizeof(c->sans)) != 0)
        c->subject[0] = c->sans[0] = 0;
    srv_log(SRV_INFO, "client %u: TLS from %s: subject \"%s\"", c->id, c->remote_addr, c->subject);
}

static void update_out_interest(struct server *s, struct srv_client *c)
{
    bool want = bpfg_rpc_pending(c->conn) > 0;
    if (want == c->want_out)
        return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, bpfg_rpc_conn_fd(c->conn), &ev) == 0)
        c->want_out = want;
}

/* Writes what is queued. Returns false if the client must be dropped. */
static bool client_flush(struct server *s, struct srv_client *c)
{
    int r = bpfg_rpc_flush(c->conn);
    if (r < 0) {
        if (r != -EPIPE && r != -ECONNRESET)
            srv_log(SRV_WARN, "client %u: write: %s", c->id, strerror(-r));
        return false;
    }
    if (bpfg_rpc_pending(c->conn) > MAX_PENDING_OUT) {
        srv_log(SRV_WARN, "client %u: dropped, %zu bytes unread", c->id, bpfg_rpc_pending(c->conn));
        return false;
    }
    if (c->closing && !bpfg_rpc_pending(c->conn))
        return false;
    update_out_interest(s, c);
    return true;
}

static void queue_out(struct srv_client *c, struct bpfg_rpc_out *out, int fd)
{
    int err = bpfg_rpc_queue(c->conn, out, fd);
    if (err) {
        srv_log(SRV_WARN, "client %u: cannot queue response: %s", c->id, strerror(-err));
        c->closing = true;
    }
}

static void answer_protocol_error(struct srv_client *c, const struct bpfg_rpc_msg *msg, int code, bool close_after)
{
    struct bpfg_rpc_out out;
    bpfg_rpc_out_init(&out);
    bpfg_rpc_pack_error(&out, msg ? msg->msgid : 0, code, "%s", bpfg_rpc_conn_error(c->conn));
    queue_out(c, &out, -1);
    bpfg_rpc_out_destroy(&out);
    if (close_after)
        c->closing = true;
    srv_log(SRV_WARN, "client %u: %s: %s%s", c->id, bpfg_rpc_error_name(code), bpfg_rpc_conn_error(c->conn),
            close_after ? "; closing" : "");
}

/* Reads and answers every complete request. Returns false to drop the client. */
static bool client_readable(struct server *s, struct srv_client *c)
{
    bool read = true;
    for (int handled = 0; handled < 64 && !c->closing; handled++) {
        struct bpfg_rpc_msg msg;
        int r = bpfg_rpc_recv(c->conn, &msg, read);
        read = false;
        if (r == 0) {
            bpfg_rpc_msg_release(&msg);
            break;
        }
        if (r == -EPIPE || r == -ECONNRESET) {
            bpfg_rpc_msg_release(&msg);
            return false;
        }
        if (r == -EPROTO) {
            answer_protocol_error(c, &msg, BPFG_RPC_E_INVALID_REQUEST, false);
        } else if (r == -EMSGSIZE) {
            answer_protocol_error(c, NULL, BPFG_RPC_E_TOO_LARGE, true);
        } else if (r == -EBADMSG) {
            answer_protocol_error(c, NULL, BPFG_RPC_E_PARSE, true);
        } else if (r < 0) {
            srv_log(SRV_WARN, "client %u: %s", c->id, bpfg_rpc_conn_error(c->conn));
            bpfg_rpc_msg_release(&msg);
            return false;
        } else if (msg.kind != BPFG_RPC_REQUEST) {
            /* Clients send requests only; a notification or response is
             * answered as an invalid request when it carries a msgid. */
            if (msg.kind == BPFG_RPC_RESPONSE) {
                struct bpfg_rpc_out out;
                bpfg_rpc_out_init(&out);
                bpfg_rpc_pack_error(&out, msg.msgid, BPFG_RPC_E_INVALID_REQUEST, "the server takes requests only");
                queue_out(c, &out, -1);
                bpfg_rpc_out_destroy(&out);
            }
        } else {
            struct bpfg_rpc_out out;
            int fd;
            tls_identify(c);
            bpfg_rpc_out_init(&out);
            methods_dispatch(s, c, &msg, &out, &fd);
            queue_out(c, &out, fd);
            bpfg_rpc_out_destroy(&out);
        }
        bpfg_rpc_msg_release(&msg);
    }
    return client_flush(s, c);
}

void server_broadcast(struct server *s, unsigned topic, void (*pack)(msgpack_packer *pk, void *arg), void *arg)
{
    struct bpfg_rpc_out out;
    bool packed = false;
    for (struct srv_client *c = s->clients; c; c = c->next) {
        if (!(c->topics & topic) || c->closing)
            continue;
        if (!packed) {
            bpfg_rpc_out_init(&out);
            bpfg_rpc_begin_notification(&out, "event");
            msgpack_pack_array(&out.pk, 1);
            pack(&out.pk, arg);
            packed = true;
        }
        /* queue consumes the buffer: repack a copy for each subscriber */
        struct bpfg_rpc_out copy;
        bpfg_rpc_out_init(&copy);
        msgpack_sbuffer_write(&copy.buf, out.buf.data, out.buf.size);
        queue_out(c, &copy, -1);
        bpfg_rpc_out_destroy(&copy);
    }
    if (packed)
        bpfg_rpc_out_destroy(&out);
}

struct record_event {
    uint32_t map_id;
    int cpu;
    const void *data;
    size_t size;
    struct record_stacks *stacks; /* the record's stack ids, symbolized */
};

static void pack_record(msgpack_packer *pk, void *arg)
{
    const struct record_event *ev = arg;
    bool stacks = record_stacks_count(ev->stacks, ev->size) > 0;
    msgpack_pack_map(pk, stacks ? 5 : 4);
    bpfg_pack_cstr(pk, "topic");
    bpfg_pack_cstr(pk, "ringbuf");
    bpfg_pack_cstr(pk, "map");
    msgpack_pack_uint32(pk, ev->map_id);
    bpfg_pack_cstr(pk, "cpu");
    msgpack_pack_int(pk, ev->cpu);
    bpfg_pack_cstr(pk, "data");
    bpfg_pack_bin(pk, ev->data, ev->size);
    if (stacks)
        record_stacks_pack(ev->stacks, pk, ev->data, ev->size);
}

struct forward_ctx {
    struct server *s;
    uint32_t map_id;
    struct record_stacks *stacks;
};

static int forward_ringbuf(void *ctx, void *data, size_t size)
{
    struct forward_ctx *f = ctx;
    struct record_event ev = {f->map_id, -1, data, size, f->stacks};
    server_broadcast(f->s, SRV_TOPIC_RINGBUF, pack_record, &ev);
    return 0;
}

static void forward_perf(void *ctx, int cpu, void *data, uint32_t size)
{
    struct forward_ctx *f = ctx;
    struct record_event ev = {f->map_id, cpu, data, size, f->stacks};
    server_broadcast(f->s, SRV_TOPIC_RINGBUF, pack_record, &ev);
}

/* Ring buffer and perf records go to subscribers; without subscribers they
 * stay in the map for whoever else consumes it (a map.fd reader). */
static void forward_records(struct server *s)
{
    bool any = false;
    for (struct srv_client *c = s->clients; c; c = c->next)
        any |= (c->topics & SRV_TOPIC_RINGBUF) != 0;
    if (!any)
        return;
    for (size_t i = 0; i < s->reg.nmaps; i++) {
        struct reg_map *m = s->reg.maps[i];
        struct bpfg_map_info info;
        bpfg_map_get_info(m->map, &info);
        if (info.type != BPF_MAP_TYPE_RINGBUF && info.type != BPF_MAP_TYPE_PERF_EVENT_ARRAY)
            continue;
        struct forward_ctx f = {s, m->id, record_stacks_open(s, m->id)};
        if (info.type == BPF_MAP_TYPE_RINGBUF)
            bpfg_ringbuf_consume(m->map, forward_ringbuf, &f);
        else
            bpfg_perf_consume(m->map, forward_perf, NULL, &f);
        record_stacks_close(f.stacks);
    }
}

/* Events broadcast while serving someone else (a target's attach, exit,
 * trace line, ring buffer records) go out to every subscriber at each
 * tick, not only when that client next asks something. */
static void flush_clients(struct server *s)
{
    for (struct srv_client *c = s->clients, *next; c; c = next) {
        next = c->next;
        if (bpfg_rpc_pending(c->conn) && !client_flush(s, c))
            client_free(s, c);
    }
}

/* TLS clients still without a finished handshake at their deadline hold
 * a client slot for nothing: anyone can open a TCP connection. */
static void drop_slow_handshakes(struct server *s)
{
    uint64_t now = server_now_ms();
    for (struct srv_client *c = s->clients, *next; c; c = next) {
        next = c->next;
        if (!c->tls || c->tls_known || now < c->tls_deadline_ms || bpfg_tls_ready(c->tls))
            continue;
        srv_log(SRV_WARN, "client %u: no TLS handshake from %s within %d s; closing", c->id, c->remote_addr,
                TLS_HANDSHAKE_MS / 1000);
        client_free(s, c);
    }
}

/* SIGUSR2 from a --takeover daemon (takeover.h), which holds our
 * listening sockets: accept no more; the clients we have go to it
 * (handover_progress). */
static void hand_over(struct server *s, const struct signalfd_siginfo *si)
{
    if (si->ssi_uid != 0 && si->ssi_uid != getuid()) {
        srv_log(SRV_WARN, "SIGUSR2 from uid %u ignored", (unsigned)si->ssi_uid);
        return;
    }
    srv_log(SRV_INFO, "taken over by pid %u: handing over; targets stay attached", (unsigned)si->ssi_pid);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
    epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->targets.listen_fd, NULL);
    if (s->tls.fd >= 0)
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->tls.fd, NULL);
    s->handover_ms = server_now_ms() + TAKEOVER_DRAIN_MS;
    s->handover_pid = (pid_t)si->ssi_pid;
}

/* Nothing of a request read, nothing to send: the socket is all there is. */
static bool client_at_rest(const struct srv_client *c)
{
    return !c->closing && bpfg_rpc_at_rest(c->conn);
}

static void send_handed_clients(struct server *s)
{
    size_t n = s->nclients, k = 0;
    int *fds = calloc(n + 1, sizeof(*fds));
    struct takeover_client *what = calloc(n + 1, sizeof(*what));
    for (struct srv_client *c = s->clients; c && fds && what; c = c->next) {
        if (!client_at_rest(c) || c->tls)
            continue; /* busy, or TLS: its session state cannot move */
        fds[k] = bpfg_rpc_conn_fd(c->conn);
        what[k] = (struct takeover_client){.fd = -1, .topics = c->topics, .remote = c->remote};
        memcpy(what[k].remote_via, c->remote_via, sizeof(what[k].remote_via));
        memcpy(what[k].remote_addr, c->remote_addr, sizeof(what[k].remote_addr));
        k++;
    }
    char err[256] = "out of memory";
    int r = !fds || !what ? -ENOMEM
            : k           ? takeover_send_clients(s->cfg.socket_path, s->handover_pid, fds, what, k, err)
                          : 0;
    if (r)
        srv_log(SRV_WARN, "handing %zu client(s) over: %s; they are closed", k, err);
    else if (n)
        srv_log(SRV_INFO, "%zu client(s) handed over to pid %d, %zu closed busy", k, (int)s->handover_pid, n - k);
    free(fds);
    free(what);
}

/* Taken over: once no client is in the middle of a request or an answer
 * (or at the deadline) the clients at rest go to the new daemon, still
 * connected; the rest are closed; then we stop. */
static void handover_progress(struct server *s)
{
    if (!s->handover_ms || s->stop)
        return;
    bool late = server_now_ms() >= s->handover_ms;
    for (struct srv_client *c = s->clients; c && !late; c = c->next)
        if (!client_at_rest(c))
            return;
    send_handed_clients(s);
    s->stop = true;
}

/* SIGHUP: the TLS certificate files again; bad ones keep those in force. */
static void reload_tls(struct server *s)
{
    char err[512];
    if (s->tls.fd < 0)
        return;
    if (tlsl_reload(&s->tls, err, sizeof(err)))
        srv_log(SRV_ERROR, "SIGHUP: TLS certificates not reloaded, the old ones stay: %s", err);
    else
        srv_log(SRV_INFO, "SIGHUP: TLS certificates reloaded");
}

/* SIGHUP: the access file again; a bad one keeps the roles in force. */
static void reload_access(struct server *s)
{
    char err[512];
    int r = access_load(&s->access, s->cfg.access_path, err, sizeof(err));
    if (r)
        srv_log(SRV_ERROR, "SIGHUP: access file not reloaded, the old roles stay: %s", err);
    else
        srv_log(SRV_INFO, "SIGHUP: access %s (%zu rules)", s->access.enabled ? "reloaded" : "control off",
                s->access.nrules);
}

static void handle_signal(struct server *s)
{
    struct signalfd_siginfo si;
    while (read(s->signal_fd, &si, sizeof(si)) == sizeof(si)) {
        if (si.ssi_signo == SIGUSR2) {
            hand_over(s, &si);
            continue;
        }
        if (si.ssi_signo == SIGHUP) {
            reload_access(s);
            reload_tls(s);
            continue;
        }
        srv_log(SRV_INFO, "%s received: shutting down; targets stay attached for the next server",
                si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
        s->stop = true;
    }
}

int server_run(struct server *s)
{
    struct epoll_event evs[64];
    while (!s->stop) {
        tools_reap(s); /* tools that ended in the previous batch */
        bool spares_low = registry_spares_low(&s->reg);
        bool tier_due = tiering_pending(s); /* LLVM code owed: compiled between batches */
        int n = epoll_wait(s->epfd, evs, 64, spares_low || tier_due ? 0 : -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            srv_log(SRV_ERROR, "epoll_wait: %s", strerror(errno));
            return -errno;
        }
        if (n == 0 && spares_low) { /* idle: one more spare region file */
            int err = registry_make_spare(&s->reg);
            if (err)
                srv_log(SRV_WARN, "spare region files: %s; maps are created without them", strerror(-err));
            continue;
        }
        bool ticked = false;
        s->batch = evs;
        s->batch_len = n;
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (!tag)
                continue;
            if (tag == TAG_LISTEN) {
                accept_clients(s);
            } else if (tag == TAG_TLS) {
                accept_tls_clients(s);
            } else if (tag == TAG_PAYLOAD) {
                adopt_accept(s);
            } else if (tag == TAG_SIGNAL) {
                handle_signal(s);
            } else if (tag == TAG_TIMER) {
                uint64_t ticks;
                if (read(s->timer_fd, &ticks, sizeof(ticks)) > 0) {
                    forward_records(s);
                    targets_tick(s);
                    tools_tick(s);
                    execwatch_tick(s);
                    offload_tick(s);
                    ticked = true;
                }
            } else if (*(uint32_t *)tag == TOOL_MAGIC) {
                tools_readable(s, tag);
            } else if (*(uint32_t *)tag == EXECWATCH_MAGIC) {
                execwatch_readable(s);
            } else if (*(uint32_t *)tag == TARGET_MAGIC) {
                targets_readable(s, (struct target *)tag);
            } else {
                struct srv_client *c = tag;
                bool keep = true;
                if (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                    keep = client_readable(s, c);
                else if (evs[i].events & EPOLLOUT)
                    keep = client_flush(s, c);
                if (!keep)
                    client_free(s, c);
            }
        }
        s->batch_len = 0;
        if (ticked) { /* after the batch: it may free clients evs still names */
            flush_clients(s);
            drop_slow_handshakes(s);
        }
        handover_progress(s);
        if (tier_due)
            tiering_step(s); /* after the batch: its replies are out */
    }
    srv_log(SRV_INFO, "stopped: %zu objects, %zu maps released", s->reg.nobjects, s->reg.nmaps);
    return 0;
}
