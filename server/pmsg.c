/* Payload message framing (pmsg.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "pmsg.h"

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int pmsg_write(int sock, const struct bpfg_pmsg_hdr *h, const void *body, size_t len, int fd, int timeout_ms)
{
    return pmsg_write_fds(sock, h, body, len, &fd, fd >= 0, timeout_ms);
}

int pmsg_write_fds(int sock, const struct bpfg_pmsg_hdr *h, const void *body, size_t len, const int *fds, size_t nfds,
                   int timeout_ms)
{
    struct iovec iov[2] = {{(void *)h, sizeof(*h)}, {(void *)body, len}};
    union {
        char buf[CMSG_SPACE(sizeof(int) * PMSG_MAX_FDS)];
        struct cmsghdr align;
    } ctrl;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (nfds > PMSG_MAX_FDS)
        return -EINVAL;
    if (nfds) {
        mh.msg_control = ctrl.buf;
        mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
        memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
    }
    size_t total = sizeof(*h) + len, sent = 0;
    while (sent < total) {
        ssize_t r = sendmsg(sock, &mh, MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                struct pollfd p = {sock, POLLOUT, 0};
                if (poll(&p, 1, timeout_ms) <= 0)
                    return -ETIMEDOUT;
                continue;
            }
            return -errno;
        }
        sent += (size_t)r;
        mh.msg_control = NULL; /* the fd went with the first bytes */
        mh.msg_controllen = 0;
        /* advance the iovecs */
        size_t skip = (size_t)r;
        for (size_t i = 0; i < mh.msg_iovlen && skip; i++) {
            size_t take = skip < iov[i].iov_len ? skip : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + take;
            iov[i].iov_len -= take;
            skip -= take;
        }
    }
    return 0;
}

int pmsg_read_full(int sock, void *buf, size_t len, int timeout_ms)
{
    size_t got = 0;
    uint64_t deadline = mono_ms() + (uint64_t)timeout_ms;
    while (got < len) {
        ssize_t r = recv(sock, (char *)buf + got, len - got, MSG_DONTWAIT);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            return -EPIPE;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        uint64_t now = mono_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        struct pollfd p = {sock, POLLIN, 0};
        poll(&p, 1, (int)(deadline - now));
    }
    return 0;
}

/* Sends one message of type under the next sequence number (++*seq, which
 * its reply carries back). 0 or a negative errno. */
static int pmsg_send(int sock, uint32_t *seq, uint16_t type, const void *body, size_t len, int fd, int timeout_ms)
{
    struct bpfg_pmsg_hdr h = {.len = (uint32_t)(sizeof(h) + len), .type = type, .seq = *seq + 1};
    int r = pmsg_write(sock, &h, body, len, fd, timeout_ms);
    *seq = h.seq;
    return r;
}

int pmsg_recv(int sock, struct bpfg_pmsg_hdr *h, char **body, int timeout_ms)
{
    *body = NULL;
    int r = pmsg_read_full(sock, h, sizeof(*h), timeout_ms);
    if (r)
        return r;
    if (h->len < sizeof(*h) || h->len > BPFG_PMSG_MAX)
        return -EBADMSG;
    size_t len = h->len - sizeof(*h);
    *body = malloc(len + 1);
    if (!*body)
        return -ENOMEM;
    r = pmsg_read_full(sock, *body, len, timeout_ms);
    if (r) {
        free(*body);
        *body = NULL;
        return r;
    }
    (*body)[len] = 0;
    return 0;
}

int pmsg_call(const struct pmsg_peer *p, uint16_t type, const void *body, size_t len, int fd, void *out, size_t outlen,
              size_t *outgot, char *err, size_t errlen)
{
    int r = pmsg_send(p->sock, p->seq, type, body, len, fd, p->timeout_ms);
    if (r)
        return srv_efail(err, errlen, r, "cannot talk to the payload in %d: %s", (int)p->pid, strerror(-r));
    uint32_t seq = *p->seq;
    for (;;) {
        struct bpfg_pmsg_hdr h;
        char *reply;
        r = pmsg_recv(p->sock, &h, &reply, p->timeout_ms);
        if (r)
            return srv_efail(err, errlen, r, "no reply from the payload in %d: %s", (int)p->pid, strerror(-r));
        if (h.type == BPFG_PMSG_REPLY && h.seq == seq) {
            if (h.status) {
                snprintf(err, errlen, "%s", reply[0] ? reply : strerror(-h.status));
            } else if (out) {
                size_t got = h.len - sizeof(h);
                memcpy(out, reply, got < outlen ? got : outlen);
                *outgot = got;
            }
            free(reply);
            return h.status;
        }
        p->async(p->arg, &h, reply);
        free(reply);
    }
}
