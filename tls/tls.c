/* Mutual TLS 1.3 sessions over OpenSSL for rpc connections. */
#define _GNU_SOURCE
#include "tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

struct bpfg_tls {
    SSL *ssl;
    char err[200];
};

/* OpenSSL writes with write(2): a peer that is gone must not kill a
 * client that keeps SIGPIPE's default action (the CLI). SIGPIPE is
 * blocked around each call and one it raised is taken away. */
struct pipe_guard {
    sigset_t old;
    bool was_pending;
};

static void guard_begin(struct pipe_guard *g)
{
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &g->old);
}

static void guard_end(const struct pipe_guard *g)
{
    sigset_t pipe, pending;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    if (!g->was_pending && sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE)) {
        struct timespec now = {0, 0};
        sigtimedwait(&pipe, NULL, &now);
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* OpenSSL's oldest queued reason (else what), into err; clears the queue. */
static void take_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    const char *reason = e ? ERR_reason_error_string(e) : NULL;
    if (reason)
        snprintf(err, errlen, "%s: %s", what, reason);
    else
        snprintf(err, errlen, "%s", what);
    ERR_clear_error();
}

static SSL_CTX *ctx_fail(SSL_CTX *ctx, char *err, size_t errlen, const char *what, const char *file)
{
    char why[160];
    take_error(why, sizeof(why), file ? file : what);
    snprintf(err, errlen, "%s%s%s", file ? what : "", file ? " " : "", why);
    SSL_CTX_free(ctx);
    return NULL;
}

/* TLS 1.3 only, own certificate and key, the peer's CA, the peer verified. */
static SSL_CTX *new_ctx(const SSL_METHOD *method, const char *cert, const char *key, const char *ca, char *err,
                        size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(method);
    if (!ctx)
        return ctx_fail(NULL, err, errlen, "cannot make a TLS context", NULL);
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
        return ctx_fail(ctx, err, errlen, "TLS 1.3 is not available", NULL);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1)
        return ctx_fail(ctx, err, errlen, "certificate", cert);
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
        return ctx_fail(ctx, err, errlen, "private key", key);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return ctx_fail(ctx, err, errlen, "the key does not match the certificate", key);
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1)
        return ctx_fail(ctx, err, errlen, "CA certificate", ca);
    /* a peer gone without close_notify is an end of stream: framing
     * catches a truncated message */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    return ctx;
}

bpfg_tls_ctx *bpfg_tls_server_ctx(const char *cert, const char *key, const char *client_ca, char *err, size_t errlen)
{
    SSL_CTX *ctx = new_ctx(TLS_server_method(), cert, key, client_ca, err, errlen);
    if (!ctx)
        return NULL;
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca);
    if (!names)
        return ctx_fail(ctx, err, errlen, "client CA names", client_ca);
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* no resumption: no tickets to write after the handshake */
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    return ctx;
}

bpfg_tls_ctx *bpfg_tls_client_ctx(const char *cert, const char *key, const char *ca, char *err, size_t errlen)
{
    SSL_CTX *ctx = new_ctx(TLS_client_method(), cert, key, ca, err, errlen);
    if (ctx)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
}

void bpfg_tls_ctx_free(bpfg_tls_ctx *ctx)
{
    SSL_CTX_free(ctx);
}

static struct bpfg_tls *new_session(SSL_CTX *ctx, int fd, char *err, size_t errlen)
{
    ERR_clear_error();
    struct bpfg_tls *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "%s", strerror(ENOMEM));
        return NULL;
    }
    t->ssl = SSL_new(ctx);
    if (!t->ssl || !SSL_set_fd(t->ssl, fd)) {
        take_error(err, errlen, "cannot make a TLS session");
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    return t;
}

struct bpfg_tls *bpfg_tls_accept(bpfg_tls_ctx *ctx, int fd, char *err, size_t errlen)
{
    struct bpfg_tls *t = new_session(ctx, fd, err, errlen);
    if (t)
        SSL_set_accept_state(t->ssl);
    return t;
}

/* The server's certificate must name host: an IP SAN for an address, else
 * a DNS SAN (or CN); the name also goes out as SNI. */
static int expect_host(SSL *ssl, const char *host)
{
    unsigned char addr[16];
    if (inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    return SSL_set_tlsext_host_name(ssl, host) && SSL_set1_host(ssl, host);
}

static void tls_free(void *ctx);

struct bpfg_tls *bpfg_tls_connect(bpfg_tls_ctx *ctx, int fd, const char *host, char *err, size_t errlen)
{
    struct bpfg_tls *t = new_session(ctx, fd, err, errlen);
    if (!t)
        return NULL;
    if (!expect_host(t->ssl, host)) {
        take_error(err, errlen, "cannot set the expected server name");
        tls_free(t);
        return NULL;
    }
    struct pipe_guard g;
    guard_begin(&g);
    int ok = SSL_connect(t->ssl) == 1;
    guard_end(&g);
    if (ok)
        return t;
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK)
        snprintf(err, errlen, "TLS handshake: the server's certificate: %s", X509_verify_cert_error_string(v));
    else
        take_error(err, errlen, "TLS handshake");
    tls_free(t);
    return NULL;
}

/* A failed SSL_read/SSL_write as the rpc io convention wants it. */
static long io_fail(struct bpfg_tls *t, int ret, bool reading)
{
    int e = SSL_get_error(t->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return -EAGAIN;
    if (e == SSL_ERROR_ZERO_RETURN)
        return reading ? 0 : -EPIPE;
    if (e == SSL_ERROR_SYSCALL && errno) {
        int err = errno;
        snprintf(t->err, sizeof(t->err), "%s", strerror(err));
        ERR_clear_error();
        return -err;
    }
    if (e == SSL_ERROR_SYSCALL && reading)
        return 0;
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK)
        snprintf(t->err, sizeof(t->err), "TLS: the peer's certificate: %s", X509_verify_cert_error_string(v));
    else
        take_error(t->err, sizeof(t->err), "TLS");
    return -ECONNABORTED; /* not -EPROTO: rpc's "not a msgpack-rpc message" */
}

static long tls_recv(void *ctx, void *buf, size_t len)
{
    struct bpfg_tls *t = ctx;
    struct pipe_guard g;
    ERR_clear_error();
    guard_begin(&g); /* a read may answer with an alert or key update */
    errno = 0;
    int n = SSL_read(t->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    long r = n > 0 ? n : io_fail(t, n, true);
    guard_end(&g);
    return r;
}

static long tls_send(void *ctx, const void *buf, size_t len)
{
    struct bpfg_tls *t = ctx;
    struct pipe_guard g;
    ERR_clear_error();
    guard_begin(&g);
    errno = 0;
    int n = SSL_write(t->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    long r = n > 0 ? n : io_fail(t, n, false);
    guard_end(&g);
    return r;
}

/* After a refusal: what the peer sent meanwhile (its first request) is
 * read away, so closing sends a FIN behind our alert instead of a reset
 * that could destroy the alert before the peer reads why. */
static void drain(SSL *ssl)
{
    char buf[4096];
    int fd = SSL_get_fd(ssl);
    for (int i = 0; fd >= 0 && i < 16 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++)
        ;
}

static void tls_free(void *ctx)
{
    struct bpfg_tls *t = ctx;
    if (!t)
        return;
    struct pipe_guard g;
    guard_begin(&g);
    if (SSL_is_init_finished(t->ssl) && !t->err[0])
        SSL_shutdown(t->ssl); /* close_notify once; never waits for the peer's */
    else if (t->err[0])
        drain(t->ssl);
    guard_end(&g);
    SSL_free(t->ssl);
    ERR_clear_error();
    free(t);
}

static const char *tls_why(const void *ctx)
{
    return ((const struct bpfg_tls *)ctx)->err;
}

const struct bpfg_rpc_io bpfg_tls_io = {tls_recv, tls_send, tls_why, tls_free};

/* "TYPE:value" of one general name we print, or -1 for other kinds. */
static int put_san(const GENERAL_NAME *g, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    const ASN1_STRING *s = NULL;
    const char *kind = g->type == GEN_DNS ? "DNS" : g->type == GEN_EMAIL ? "email" : g->type == GEN_URI ? "URI" : NULL;
    if (kind) {
        s = g->d.ia5;
        return snprintf(out, len, "%s:%.*s", kind, ASN1_STRING_length(s), (const char *)ASN1_STRING_get0_data(s));
    }
    if (g->type != GEN_IPADD)
        return -1;
    s = g->d.ip;
    int fam = ASN1_STRING_length(s) == 4 ? AF_INET : ASN1_STRING_length(s) == 16 ? AF_INET6 : 0;
    if (!fam || !inet_ntop(fam, ASN1_STRING_get0_data(s), ip, sizeof(ip)))
        return -1;
    return snprintf(out, len, "IP:%s", ip);
}

static void put_sans(X509 *cert, char *sans, size_t len)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;
    sans[0] = 0;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names); i++) {
        char one[512];
        int n = put_san(sk_GENERAL_NAME_value(names, i), one, sizeof(one));
        if (n < 0 || (size_t)n >= sizeof(one) || memchr(one, '\n', (size_t)n) || used + (size_t)n + 2 > len)
            continue;
        used += (size_t)snprintf(sans + used, len - used, "%s%s", used ? "\n" : "", one);
    }
    GENERAL_NAMES_free(names);
}

static int put_subject(X509 *cert, char *subject, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return -ENOMEM;
    int n = X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
    char *data;
    long size = BIO_get_mem_data(b, &data);
    if (n >= 0)
        snprintf(subject, len, "%.*s", (int)size, data);
    BIO_free(b);
    return n >= 0 ? 0 : -EINVAL;
}

bool bpfg_tls_ready(const struct bpfg_tls *t)
{
    return SSL_is_init_finished(t->ssl);
}

int bpfg_tls_peer(const struct bpfg_tls *t, char *subject, size_t subject_len, char *sans, size_t sans_len)
{
    if (!SSL_is_init_finished(t->ssl))
        return -ENOENT;
    X509 *cert = SSL_get1_peer_certificate(t->ssl);
    if (!cert)
        return -ENOENT;
    int r = put_subject(cert, subject, subject_len);
    put_sans(cert, sans, sans_len);
    X509_free(cert);
    ERR_clear_error();
    return r;
}
