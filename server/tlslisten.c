/* The TCP listener of mutual-TLS clients. */
#define _GNU_SOURCE
#include "tlslisten.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int url_fail(char *err, size_t errlen, const char *url, const char *why)
{
    snprintf(err, errlen, "--listen %s: %s (want tcp://ADDR:PORT or tcp://[V6ADDR]:PORT)", url, why);
    return -EINVAL;
}

/* tcp://HOST:PORT into host and port. */
static int split_url(const char *url, char *host, size_t hlen, char *port, size_t plen, char *err, size_t errlen)
{
    if (strncmp(url, "tcp://", 6) != 0)
        return url_fail(err, errlen, url, "not a tcp:// address (TLS is the only TCP mode)");
    const char *s = url + 6;
    const char *colon = strrchr(s, ':');
    if (!colon || !colon[1] || strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return url_fail(err, errlen, url, "no port");
    size_t n = (size_t)(colon - s);
    if (n >= 2 && s[0] == '[' && s[n - 1] == ']')
        s++, n -= 2;
    if (!n || n >= hlen || strlen(colon + 1) >= plen)
        return url_fail(err, errlen, url, "no address, or one too long");
    memcpy(host, s, n);
    host[n] = 0;
    snprintf(port, plen, "%s", colon + 1);
    return 0;
}

static int bind_first(const struct addrinfo *ai, char *err, size_t errlen, const char *url)
{
    int r = -EADDRNOTAVAIL;
    for (; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        int one = 1;
        if (fd < 0) {
            r = -errno;
            continue;
        }
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 128) == 0)
            return fd;
        r = -errno;
        close(fd);
    }
    snprintf(err, errlen, "--listen %s: %s", url, strerror(-r));
    return r;
}

/* Whether fd is bound to ai's address (family, address and port). */
static bool bound_to(int fd, const struct addrinfo *ai)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof(a);
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0 || len != ai->ai_addrlen)
        return false;
    return memcmp(&a, ai->ai_addr, len) == 0;
}

/* A listening socket on url: *inherited (then taken: set to -1) if it is
 * bound to one of url's addresses, else a new one. */
static int listen_tcp(const char *url, int *inherited, char *err, size_t errlen)
{
    char host[256], port[16];
    int r = split_url(url, host, sizeof(host), port, sizeof(port), err, errlen);
    if (r)
        return r;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV}, *ai = NULL;
    int g = getaddrinfo(host, port, &hints, &ai);
    if (g) {
        snprintf(err, errlen, "--listen %s: %s", url, gai_strerror(g));
        return -EINVAL;
    }
    r = -1;
    for (const struct addrinfo *i = ai; *inherited >= 0 && i && r < 0; i = i->ai_next)
        if (bound_to(*inherited, i))
            r = *inherited, *inherited = -1;
    if (r < 0)
        r = bind_first(ai, err, errlen, url);
    freeaddrinfo(ai);
    return r;
}

int tlsl_open(struct tls_listener *l, const char *url, const char *cert, const char *key, const char *client_ca,
              int *inherited, char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    l->fd = -1;
    if (!cert || !key || !client_ca) {
        snprintf(err, errlen, "--listen %s needs --tls-cert, --tls-key and --tls-client-ca (no plaintext TCP)", url);
        return -EINVAL;
    }
    l->cert = cert, l->key = key, l->client_ca = client_ca;
    snprintf(l->addr, sizeof(l->addr), "%s", url);
    int fd = listen_tcp(url, inherited, err, errlen);
    if (fd < 0)
        return fd;
    l->fd = fd;
    l->ctx = bpfg_tls_server_ctx(cert, key, client_ca, err, errlen);
    if (!l->ctx) {
        tlsl_close(l);
        return -EINVAL;
    }
    return 0;
}

int tlsl_reload(struct tls_listener *l, char *err, size_t errlen)
{
    bpfg_tls_ctx *ctx = bpfg_tls_server_ctx(l->cert, l->key, l->client_ca, err, errlen);
    if (!ctx)
        return -EINVAL;
    bpfg_tls_ctx_free(l->ctx); /* sessions hold their own reference */
    l->ctx = ctx;
    return 0;
}

static void name_peer(const struct sockaddr_storage *sa, char *peer, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(peer, len, "%s:%u", ip, port);
        return;
    }
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
    snprintf(peer, len, "[%s]:%u", ip, (unsigned)ntohs(in6->sin6_port));
}

int tlsl_accept(struct tls_listener *l, int *fd, struct bpfg_tls **tls, char *peer, size_t peer_len, char *err,
                size_t errlen)
{
    struct sockaddr_storage sa;
    socklen_t salen = sizeof(sa);
    int s = accept4(l->fd, (struct sockaddr *)&sa, &salen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (s < 0) {
        int r = errno == EWOULDBLOCK || errno == EINTR ? -EAGAIN : -errno;
        snprintf(err, errlen, "accept: %s", strerror(errno));
        return r;
    }
    name_peer(&sa, peer, peer_len);
    int one = 1; /* small requests and answers: no Nagle delay behind them */
    if (setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
        snprintf(err, errlen, "%s: TCP_NODELAY: %s", peer, strerror(errno));
        close(s);
        return -ECONNABORTED;
    }
    *tls = bpfg_tls_accept(l->ctx, s, err, errlen);
    if (!*tls) {
        close(s);
        return -ECONNABORTED;
    }
    *fd = s;
    return 0;
}

void tlsl_close(struct tls_listener *l)
{
    if (l->fd >= 0)
        close(l->fd);
    bpfg_tls_ctx_free(l->ctx);
    l->fd = -1;
    l->ctx = NULL;
}
