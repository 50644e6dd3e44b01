/* Payload message framing (pmsg.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "pmsg.h"

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int pmsg_write(int sock, const struct bpfg_pmsg_hdr *h, const void *body, size_t len, int fd, int timeout_ms)
{
    struct iovec iov[2] = {{(void *)h, sizeof(*h)}, {(void *)body, len}};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctrl;
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
    if (fd >= 0) {
        mh.msg_control = ctrl.buf;
        mh.msg_controllen = sizeof(ctrl.buf);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof(int));
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
        mh.msg_control = NULL;   /* the fd went with the first bytes */
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
