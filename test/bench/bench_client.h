/* Shared by bpfgraft-bench suites that talk to a real bpfgraftd: starting
 * and stopping one on a temporary socket, and making RPC calls. */
#ifndef BPFGRAFT_BENCH_CLIENT_H
#define BPFGRAFT_BENCH_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "rpc.h"
#include "transport.h"

struct rconn {
    struct bpfg_rpc_conn *c;
    uint32_t next_id;
    pid_t ssh;             /* rconnect_remote's ssh process, or 0 */
    bpfg_tls_ctx *tls_ctx; /* rconnect_remote's TLS context, or NULL */
};

int rconnect(const char *path, struct rconn *r);
/* To a --host URL (cli/transport.h), as bpfgraft --host: through ssh, or
 * TLS with the files tls names (tcps://). */
int rconnect_remote(const char *url, const struct cli_tls_files *tls, struct rconn *r);
void rclose(struct rconn *r);
/* Starts [0, id, method, [{...nparams...}]]: the caller packs the pairs. */
void begin(struct rconn *r, struct bpfg_rpc_out *out, const char *method, uint32_t nparams);
/* Sends out (destroyed) and waits for the answer: 0 with *resp, -EREMOTEIO
 * for an error answer (printed), or a transport errno. */
int rcall(struct rconn *r, struct bpfg_rpc_out *out, struct bpfg_rpc_msg *resp);

/* rcall for a call whose answer is not needed: 0 or rcall's error. */
int rcall_discard(struct rconn *r, struct bpfg_rpc_out *out);
/* Copies the bin value under key in resp's params, which must be len bytes
 * long, into buf: 0 or -EBADMSG. */
int bench_resp_bin(const struct bpfg_rpc_msg *resp, const char *key, void *buf, size_t len);

struct server {
    pid_t pid;
    char dir[64];
    char sock[128];
    const char *const *extra; /* more arguments of bpfgraftd (NULL-terminated), or NULL */
    const char *parent;       /* where the temporary directory is made (NULL: /tmp) */
};

/* Starts bin (bpfgraftd) on a socket in a new temporary directory, which
 * is also its state directory. */
int server_start(struct server *s, const char *bin);
void server_stop(struct server *s);

/* Starts an object.load request of path under name, for rcall. */
void begin_object_load(struct rconn *r, struct bpfg_rpc_out *out, const char *path, const char *name);
/* object.load of path under name. */
int bench_load_object(struct rconn *r, const char *path, const char *name);

/* The u64 at key 0 of an array map: read it (*value), or reset it to 0. */
int bench_map_counter(struct rconn *r, const char *map, uint64_t *value, bool reset);

/* Path of the file a suite needs (bpfgraftd, a victim, a BPF object), in the
 * build tree or an install, found from this executable; -ENOENT if absent. */
int bench_find_file(char *out, size_t len, const char *name);
/* bench_find_file for each (char *out, const char *name) pair of the
 * arguments, up to a NULL out; every out is len bytes long. 0 or the
 * first error. */
int bench_find_files(size_t len, ...) __attribute__((sentinel));

#endif
