/* What bpfgraft-bench rpc needs to measure the remote transports in the
 * same run as the unix socket: a throwaway CA with server and client
 * certificates (the openssl CLI) for bpfgraftd --listen, and an sshd on
 * 127.0.0.1 with throwaway keys whose `bpfgraft dial-stdio` is this
 * build's. Everything lives in one temporary directory. */
#ifndef BPFGRAFT_BENCH_REMOTE_H
#define BPFGRAFT_BENCH_REMOTE_H

#include <stdbool.h>
#include <sys/types.h>

#include "transport.h"

struct bench_remote {
    char dir[64];
    char path[6][128];          /* ca.crt, server.crt, server.key, client.crt, client.key, ssh_config */
    struct cli_tls_files files; /* the client's, for tcps:// */
    pid_t sshd;                 /* -1: none */
    int ssh_port;
    bool made_privsep; /* /run/sshd was made for sshd: removed after */
};

/* The CA and certificates (server: IP 127.0.0.1). 0 or a negative errno
 * (printed). */
int bench_remote_pki(struct bench_remote *r);
/* bpfgraftd's --listen arguments for port (url holds the address): 8 and
 * a NULL, into argv[9]. */
void bench_remote_listen_args(const struct bench_remote *r, int port, char *url, size_t len, const char **argv);
/* sshd on 127.0.0.1 for root with one key, PATH starting with bindir;
 * sets BPFGRAFT_SSH_COMMAND so --host ssh:// reaches it. 0 or a negative
 * errno with why in err (no sshd, not root). */
int bench_remote_sshd(struct bench_remote *r, const char *bindir, char *err, size_t errlen);
/* Stops sshd and removes the directory. */
void bench_remote_end(struct bench_remote *r);

/* A TCP port free on 127.0.0.1 now, or a negative errno. */
int bench_free_port(void);

#endif
