/* bpfgraftd's core: the control socket, client sessions, request dispatch
 * and event streaming, on one epoll loop. */
#ifndef BPFGRAFT_SERVER_H
#define BPFGRAFT_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "access.h"
#include "audit.h"
#include "registry.h"
#include "rpc.h"
#include "stats.h"
#include "takeover.h"
#include "targets.h"
#include "tlslisten.h"

#define SRV_VERSION "0.1.0"
#define SRV_API_LEVEL 1
#define SRV_DEFAULT_SOCKET "/run/bpfgraft/control.sock"
#define SRV_DEFAULT_STATE_DIR "/run/bpfgraft"

enum srv_topic {
    SRV_TOPIC_TRACE = 1u << 0,
    SRV_TOPIC_RINGBUF = 1u << 1,
    SRV_TOPIC_TARGET = 1u << 2,
    SRV_TOPIC_ALL = 7,
};

struct srv_config {
    const char *socket_path;
    mode_t socket_mode;              /* default 0600 */
    gid_t socket_gid;                /* (gid_t)-1: leave as is */
    size_t max_msg;                  /* 0: BPFG_RPC_MAX_MSG_DEFAULT */
    size_t max_clients;              /* 0: 256 */
    const char *payload_path;        /* bpfgraft-payload.so */
    const char *cache_dir;           /* compiled-code cache; NULL: /var/cache/bpfgraft */
    const char *jit_archive;         /* precompiled code to import (bpfgraft compile) */
    const char *state_dir;           /* files targets need while they live; NULL: the socket's directory */
    uint32_t orphan_grace_ms;        /* payloads without a server go inert after this (0: never) */
    const struct takeover *takeover; /* --takeover: the old daemon's sockets (takeover.h); NULL: none */
    const char *access_path;         /* --access: roles (access.h); NULL: the default file if present */
    const char *audit_path;          /* --audit-log; NULL: AUDIT_DEFAULT_FILE for the default socket, else
                                        STATE_DIR/audit.log */
    const char *listen_url;          /* --listen tcp://ADDR:PORT: mutual TLS (tlslisten.h); NULL: none */
    const char *tls_cert, *tls_key, *tls_client_ca;
};

#define CLIENT_MAGIC 0x434c4e54u

struct srv_client {
    uint32_t magic; /* first: epoll data points here */
    struct srv_client *next;
    uint32_t id;
    struct bpfg_rpc_conn *conn;
    pid_t pid;
    uid_t uid;
    gid_t gid;
    gid_t groups[32]; /* supplementary groups (SO_PEERGROUPS), for roles */
    size_t ngroups;
    unsigned topics; /* subscribed event topics */
    /* session.remote: a bridge (bpfgraft dial-stdio over ssh) speaks for a
     * remote caller: no fd passing; remote_addr names it for logs. */
    bool remote;
    char remote_via[16];
    char remote_addr[80];
    /* a TLS client (--listen): uid, gid and pid are 0, the certificate
     * names the peer for roles and the audit log once the handshake is done */
    struct bpfg_tls *tls;
    uint64_t tls_deadline_ms; /* dropped if the handshake is not done by then */
    bool tls_known;           /* subject and sans read */
    char subject[256];
    char sans[512]; /* "DNS:x\nIP:y" */
    bool closing;   /* flush what is queued, then close */
    bool want_out;  /* EPOLLOUT registered */
};

struct server {
    struct srv_config cfg;
    char state_dir[4096]; /* cfg.state_dir when it was not given */
    int epfd;
    int listen_fd;
    int signal_fd;
    int timer_fd;
    int lock_fd;
    struct tls_listener tls; /* --listen; fd -1 without */
    bool stop;
    uint64_t start_ms;
    struct srv_client *clients;
    size_t nclients;
    uint32_t next_client_id;
    struct registry reg;
    struct targets targets;
    struct access access; /* roles; reread on SIGHUP */
    struct audit audit;   /* the audit log of state-changing calls */
    struct stats stats;   /* stats.set: run counts and times, hook hits */
    int state_fd;         /* STATE_DIR/restart (state.h) */
    bool detach_on_stop;  /* server.shutdown detach: detach all, forget the state */
    uint64_t handover_ms; /* SIGUSR2 (a --takeover daemon): hand clients over once at rest or at this time; 0: no */
    pid_t handover_pid;   /* the daemon taking over */
    /* The epoll batch being handled: an object freed while it runs (a
     * target a client's detach frees) must not be met by a later event. */
    struct epoll_event *batch;
    int batch_len;
};

/* Takes the single-instance lock, creates the socket and the loop. Returns
 * 0 or a negative errno with a message logged. */
int server_init(struct server *s, const struct srv_config *cfg);
/* Runs until SIGTERM/SIGINT. */
int server_run(struct server *s);
void server_destroy(struct server *s);

uint64_t server_now_ms(void);
/* Forgets tag's events in the batch being handled: call when freeing an
 * object registered with epoll under tag. */
void server_forget_events(struct server *s, const void *tag);
/* Sends an event notification to every client subscribed to topic; the
 * caller packs the event map with pack(). */
void server_broadcast(struct server *s, unsigned topic, void (*pack)(msgpack_packer *pk, void *arg), void *arg);

#endif
