/* Mutual TLS 1.3 for the control protocol (OpenSSL): bpfgraftd's
 * `--listen tcp://` and clients' `--host tcps://`. Only TLS 1.3, and both
 * sides present a certificate the other's CA signed; there is no plaintext
 * TCP mode. A TLS connection is an rpc connection whose bytes go through
 * bpfg_tls_io (proto/rpc.h, struct bpfg_rpc_io). */
#ifndef BPFGRAFT_TLS_H
#define BPFGRAFT_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "rpc.h"

struct ssl_ctx_st;
typedef struct ssl_ctx_st bpfg_tls_ctx; /* OpenSSL's SSL_CTX */
struct bpfg_tls;                        /* one session */

/* Contexts from PEM files: the own certificate (chain) and key, and the CA
 * the peer's certificate must be signed by. NULL with the reason in err. */
bpfg_tls_ctx *bpfg_tls_server_ctx(const char *cert, const char *key, const char *client_ca, char *err, size_t errlen);
bpfg_tls_ctx *bpfg_tls_client_ctx(const char *cert, const char *key, const char *ca, char *err, size_t errlen);
void bpfg_tls_ctx_free(bpfg_tls_ctx *ctx);

/* A session over the connected socket fd (not owned): the server side
 * shakes hands on its first reads (nonblocking); the client side shakes
 * hands now (blocking) and checks that the server's certificate names
 * host (DNS or IP SAN, else CN). NULL with the reason in err. */
struct bpfg_tls *bpfg_tls_accept(bpfg_tls_ctx *ctx, int fd, char *err, size_t errlen);
struct bpfg_tls *bpfg_tls_connect(bpfg_tls_ctx *ctx, int fd, const char *host, char *err, size_t errlen);

/* The io of a session for bpfg_rpc_conn_set_io (ctx: the session). why
 * gives OpenSSL's reason for the last failure, e.g. "TLS: tlsv13 alert
 * certificate required"; free sends close_notify when it can, never
 * blocking, and frees the session. */
extern const struct bpfg_rpc_io bpfg_tls_io;

/* Whether the handshake is done. */
bool bpfg_tls_ready(const struct bpfg_tls *t);

/* The peer's certificate after the handshake: its subject as an RFC 2253
 * string ("CN=alice,O=ops") and its subject alternative names as
 * "DNS:host", "IP:127.0.0.1", "email:a@b", "URI:spiffe://..", separated
 * by '\n'. -ENOENT before the handshake completed or without one. */
int bpfg_tls_peer(const struct bpfg_tls *t, char *subject, size_t subject_len, char *sans, size_t sans_len);

#endif
