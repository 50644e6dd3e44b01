/* Payload message framing on a unix stream socket (abi/payload_abi.h:
 * struct bpfg_pmsg_hdr, then the body; an fd travels with SCM_RIGHTS on
 * the first bytes). Shared by the payload socket (targets.c) and the tool
 * channel (tool.c). */
#ifndef BPFGRAFT_SERVER_PMSG_H
#define BPFGRAFT_SERVER_PMSG_H

#include <stddef.h>

#include "payload_abi.h"

/* Sends h (h->len already set), then len body bytes, with fd if >= 0,
 * waiting at most timeout_ms for room each time the socket is full.
 * 0 or a negative errno (-ETIMEDOUT). */
int pmsg_write(int sock, const struct bpfg_pmsg_hdr *h, const void *body, size_t len, int fd, int timeout_ms);

/* Reads exactly len bytes within timeout_ms; -EPIPE at end of stream. */
int pmsg_read_full(int sock, void *buf, size_t len, int timeout_ms);

#endif
