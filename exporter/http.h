/* The exporter's HTTP side: one listening TCP socket, one request per
 * connection (Connection: close), served in turn. */
#ifndef BPFGRAFT_EXPORTER_HTTP_H
#define BPFGRAFT_EXPORTER_HTTP_H

#include <stddef.h>

#include "out.h"

/* Listens on "HOST:PORT" ("127.0.0.1:9435", "[::1]:0", ":9435" for every
 * address; port 0 picks one). Returns the socket or a negative errno with
 * the reason in err. */
int exp_http_listen(const char *addr, char *err, size_t errlen);

/* "HOST:PORT" a listening socket is bound to. */
void exp_http_bound(int fd, char *buf, size_t len);

/* Writes a scrape's body (Prometheus text) into body. */
typedef void (*exp_http_render)(void *ctx, struct sbuf *body);

/* Reads one request from client (5 s at most) and answers it: GET or
 * HEAD /metrics with render's text, / with a pointer there, else 404 or
 * 405. Closes client. */
void exp_http_serve(int client, exp_http_render render, void *ctx);

#endif
