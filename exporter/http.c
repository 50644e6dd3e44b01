/* A minimal HTTP/1.1 server for /metrics (see http.h). */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "prom.h"

#define MAX_REQUEST 8192
#define IO_TIMEOUT_S 5

/* Splits "HOST:PORT" / "[HOST]:PORT"; an empty host is every address. */
static int split_addr(const char *addr, char *host, size_t hlen, const char **port)
{
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1])
        return -EINVAL;
    const char *h = addr;
    size_t n = (size_t)(colon - addr);
    if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
        h++;
        n -= 2;
    }
    if (n >= hlen)
        return -EINVAL;
    memcpy(host, h, n);
    host[n] = 0;
    *port = colon + 1;
    return 0;
}

static int bind_first(const struct addrinfo *ai, char *err, size_t errlen, const char *addr)
{
    int last = -EADDRNOTAVAIL;
    for (; ai; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last = -errno;
            continue;
        }
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0)
            return fd;
        last = -errno;
        close(fd);
    }
    snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(-last));
    return last;
}

int exp_http_listen(const char *addr, char *err, size_t errlen)
{
    char host[256];
    const char *port;
    if (split_addr(addr, host, sizeof(host), &port)) {
        snprintf(err, errlen, "--listen %s: expected HOST:PORT, [HOST]:PORT or :PORT", addr);
        return -EINVAL;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int r = getaddrinfo(*host ? host : NULL, port, &hints, &ai);
    if (r) {
        snprintf(err, errlen, "--listen %s: %s", addr, gai_strerror(r));
        return -EINVAL;
    }
    int fd = bind_first(ai, err, errlen, addr);
    freeaddrinfo(ai);
    return fd;
}

void exp_http_bound(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss = {0};
    socklen_t sl = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads until the end of the request's headers; -1 on error or overlong. */
static int read_request(int fd, char *buf, size_t len)
{
    size_t got = 0;
    while (got < len - 1) {
        ssize_t r = recv(fd, buf + got, len - 1 - got, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
        buf[got] = 0;
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return 0;
    }
    return -1;
}

static void respond(int fd, const char *status, const char *type, const struct sbuf *body, bool head)
{
    struct sbuf sb = {0};
    sbuf_printf(&sb, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", status,
                type, body->len);
    if (!head && body->len)
        sbuf_putn(&sb, body->s, body->len);
    send_all(fd, sb.s, sb.len); /* a client gone away is its own business */
    sbuf_free(&sb);
}

static void route(int fd, const char *method, const char *path, exp_http_render render, void *ctx)
{
    struct sbuf body = {0};
    bool head = !strcmp(method, "HEAD");
    if (strcmp(method, "GET") && !head) {
        sbuf_puts(&body, "only GET and HEAD\n");
        respond(fd, "405 Method Not Allowed", "text/plain", &body, false);
    } else if (!strcmp(path, "/metrics")) {
        render(ctx, &body);
        respond(fd, "200 OK", PROM_CONTENT_TYPE, &body, head);
    } else if (!strcmp(path, "/")) {
        sbuf_puts(&body, "<html><body><a href=\"/metrics\">/metrics</a></body></html>\n");
        respond(fd, "200 OK", "text/html", &body, head);
    } else {
        sbuf_puts(&body, "not found: try /metrics\n");
        respond(fd, "404 Not Found", "text/plain", &body, head);
    }
    sbuf_free(&body);
}

void exp_http_serve(int client, exp_http_render render, void *ctx)
{
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    char req[MAX_REQUEST], method[16], path[1024];
    if (setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
        setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) || read_request(client, req, sizeof(req)) ||
        sscanf(req, "%15s %1023s", method, path) != 2) {
        close(client);
        return;
    }
    path[strcspn(path, "?")] = 0; /* Prometheus sends no query; others may */
    route(client, method, path, render, ctx);
    close(client);
}
