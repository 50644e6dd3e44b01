/* bpfgraftd's TLS listener (`--listen tcp://ADDR:PORT` with --tls-cert,
 * --tls-key, --tls-client-ca): mutual TLS 1.3 only (tls/tls.h); the
 * certificate files are read again on SIGHUP. */
#ifndef BPFGRAFT_SERVER_TLSLISTEN_H
#define BPFGRAFT_SERVER_TLSLISTEN_H

#include <stddef.h>

#include "tls.h"

struct tls_listener {
    int fd; /* -1: no --listen */
    bpfg_tls_ctx *ctx;
    const char *cert, *key, *client_ca;
    char addr[128]; /* as given, for logs */
};

/* Checks the files and listens on url (tcp://HOST:PORT, tcp://[V6]:PORT):
 * on *inherited (a listening socket of the daemon taken over; then set to
 * -1, l owns it) if it is bound to url's address, so connections waiting
 * in its backlog are served, else on a new socket. Returns 0 or a
 * negative errno with the reason in err. */
int tlsl_open(struct tls_listener *l, const char *url, const char *cert, const char *key, const char *client_ca,
              int *inherited, char *err, size_t errlen);
/* Reads the certificate files again; the old ones stay on failure.
 * Connections made before keep their session. */
int tlsl_reload(struct tls_listener *l, char *err, size_t errlen);
/* One pending connection: its nonblocking socket (caller owns it), its
 * session (handshake on the first reads) and "ADDR:PORT" of the peer.
 * -EAGAIN when none is waiting, -ECONNABORTED when this one could not be
 * taken (closed; try the next), another negative errno when accept fails. */
int tlsl_accept(struct tls_listener *l, int *fd, struct bpfg_tls **tls, char *peer, size_t peer_len, char *err,
                size_t errlen);
void tlsl_close(struct tls_listener *l);

#endif
