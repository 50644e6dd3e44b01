/* Remote bpfgraftd: `--host ssh://[user@]host[:port][/socket]` runs the
 * system's ssh client with `bpfgraft [--socket S] dial-stdio` on the host;
 * dial-stdio bridges its stdio to that host's control socket.
 * `--host tcps://host:port` is mutual TLS 1.3 to a bpfgraftd --listen
 * (tls/tls.h) with the --tls-cert, --tls-key and --tls-ca files. */
#ifndef BPFGRAFT_CLI_TRANSPORT_H
#define BPFGRAFT_CLI_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "tls.h"

struct cli_host {
    bool tls; /* tcps:// (else ssh://) */
    char user[64];
    char host[256];
    char port[8];
    char socket[256]; /* the remote control socket; "" = the remote default */
};

/* Parses a --host URL; -EINVAL with the reason in err. */
int transport_parse(const char *url, struct cli_host *h, char *err, size_t errlen);

/* Starts ssh (or $BPFGRAFT_SSH_COMMAND, run by /bin/sh like GIT_SSH_COMMAND)
 * with its stdin and stdout on one end of a socketpair. Returns the other
 * end, *child the ssh process; or a negative errno (printed). */
int transport_ssh_open(const struct cli_host *h, pid_t *child);

/* The client's certificate, key and the CA the server's certificate must
 * be signed by (PEM files). */
struct cli_tls_files {
    const char *cert, *key, *ca;
};

/* Connects to a tcps:// host and shakes hands (the server's certificate
 * must name the host). Returns the socket with *session to route it
 * through (bpfg_tls_io) and *ctx to free after it, or a negative errno
 * (printed). */
int transport_tls_open(const struct cli_host *h, const struct cli_tls_files *f, bpfg_tls_ctx **ctx,
                       struct bpfg_tls **session);

/* Reaps the ssh process once its socket is closed: it ends when the remote
 * side sees EOF; killed after a few seconds. */
void transport_ssh_close(pid_t child);

/* Copies stdin to sock and sock to stdout until sock ends (dial-stdio).
 * Descriptors the server passes (SCM_RIGHTS) are closed: they cannot
 * cross. Returns 0 or a negative errno (printed). */
int transport_bridge_stdio(int sock);

#endif
