/* Payload messages on a unix stream socket (abi/payload_abi.h: struct
 * bpfg_pmsg_hdr, then the body; an fd travels with SCM_RIGHTS on the
 * first bytes): framing, and requests awaiting their reply. Shared by the
 * payload socket (targets.c) and the tool channel (tool.c). */
#ifndef BPFGRAFT_SERVER_PMSG_H
#define BPFGRAFT_SERVER_PMSG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "payload_abi.h"

/* Sends h (h->len already set), then len body bytes, with fd if >= 0,
 * waiting at most timeout_ms for room each time the socket is full.
 * 0 or a negative errno (-ETIMEDOUT). */
int pmsg_write(int sock, const struct bpfg_pmsg_hdr *h, const void *body, size_t len, int fd, int timeout_ms);
/* The same with nfds (<= PMSG_MAX_FDS) fds attached, in order. */
#define PMSG_MAX_FDS 32 /* a MAP_TICKETS reply's (BPFG_TOOL_TICKETS_MAX) */
int pmsg_write_fds(int sock, const struct bpfg_pmsg_hdr *h, const void *body, size_t len, const int *fds, size_t nfds,
                   int timeout_ms);

/* Reads exactly len bytes within timeout_ms; -EPIPE at end of stream. */
int pmsg_read_full(int sock, void *buf, size_t len, int timeout_ms);

/* Reads one message: the header, then the body into a malloc'd
 * NUL-terminated *body (the caller frees it), each within timeout_ms.
 * 0, or a negative errno (-EBADMSG: a length out of bounds) and NULL. */
int pmsg_recv(int sock, struct bpfg_pmsg_hdr *h, char **body, int timeout_ms);

/* The far end of requests: a payload, by its connection. Messages that
 * arrive while a request waits for its reply (trace lines, syscall events)
 * go to async, which the caller's policy handles. */
struct pmsg_peer {
    int sock;
    pid_t pid;      /* named in error messages */
    uint32_t *seq;  /* the connection's last sequence number */
    int timeout_ms; /* for the request and for each message back */
    void (*async)(void *arg, const struct bpfg_pmsg_hdr *h, char *body);
    void *arg;
};

/* Sends a request (with fd if >= 0) and waits for its reply. Returns the
 * payload's status, err getting its text, or a negative errno when the
 * payload could not be talked to. A successful reply's body goes to out
 * (up to outlen bytes; *outgot says how many it had) when out is not NULL. */
int pmsg_call(const struct pmsg_peer *p, uint16_t type, const void *body, size_t len, int fd, void *out, size_t outlen,
              size_t *outgot, char *err, size_t errlen);

#endif
