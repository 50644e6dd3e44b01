/* The CLI's connection to bpfgraftd: one blocking unix socket, requests
 * answered in order. */
#ifndef BPFGRAFT_CLI_CLIENT_H
#define BPFGRAFT_CLI_CLIENT_H

#include <stdint.h>
#include <sys/types.h>

#include "rpc.h"
#include "transport.h"

#define BPFGRAFT_DEFAULT_SOCKET "/run/bpfgraft/control.sock"

struct cli_conn {
    struct bpfg_rpc_conn *rpc;
    const char *path;         /* the socket, or the --host URL */
    const char *host;         /* --host URL (transport.h); NULL: the local socket */
    pid_t ssh;                /* the ssh process of a remote connection, or 0 */
    struct cli_tls_files tls; /* tcps:// hosts */
    bpfg_tls_ctx *tls_ctx;    /* of a tcps:// connection (its session belongs to rpc) */
    uint32_t next_id;
};

/* An error answered by the server: [code, message]. */
struct cli_error {
    int code;
    char message[1024];
};

/* host: a --host URL (checked by transport_parse) or NULL for path; tls:
 * the files of a tcps:// host (copied; NULL: none). */
void cli_init(struct cli_conn *c, const char *path, const char *host, const struct cli_tls_files *tls);
/* Connects (cli_call does it on first use); on failure prints why, naming
 * the socket, and returns -errno. */
int cli_connect(struct cli_conn *c);
void cli_close(struct cli_conn *c);

/* Starts a request: the caller then packs nparams name/value pairs into
 * out->pk (nparams 0 sends params []). */
void cli_begin(struct cli_conn *c, struct bpfg_rpc_out *out, const char *method, uint32_t nparams);

/* Sends the request in out (and destroys it) and waits for its answer,
 * skipping notifications. Returns 0 with the result in resp->params (the
 * caller releases resp), 1 for an error answer (filled into *err, resp
 * released), or a negative errno for a transport failure (printed). */
int cli_call(struct cli_conn *c, struct bpfg_rpc_out *out, struct bpfg_rpc_msg *resp, struct cli_error *err);

/* Next message of any kind; 1 with *msg filled, or a negative errno. */
int cli_recv(struct cli_conn *c, struct bpfg_rpc_msg *msg);

#endif
