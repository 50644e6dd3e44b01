/* bpfgraftd --takeover: a new daemon takes the listening sockets of the
 * running one (pidfd_getfd: they are never closed, so clients queue in the
 * backlog instead of being refused), listens on a handover socket of its
 * own and asks the old one to go (SIGUSR2: it stops accepting, finishes
 * the requests under way, sends every accepted connection over the
 * handover socket, closes for good only those still busy after
 * TAKEOVER_DRAIN_MS, and exits leaving every target attached and the
 * socket file in place); once it has exited the new one starts as after a
 * restart: state reloaded, the handed-over clients served on, payloads
 * reconnect to the socket it now holds and are adopted. */
#ifndef BPFGRAFT_SERVER_TAKEOVER_H
#define BPFGRAFT_SERVER_TAKEOVER_H

#include <stdint.h>
#include <sys/types.h>

#define TAKEOVER_DRAIN_MS 250
#define TAKEOVER_WAIT_MS 10000

/* What the old daemon knew of a client connection it hands over. */
struct takeover_client {
    int fd; /* the receiver's; unused by the sender */
    uint32_t topics;
    uint8_t remote;
    char remote_via[16];
    char remote_addr[80];
};

struct takeover {
    pid_t old_pid;
    int control_fd;                  /* the control socket, listening */
    int payload_fd;                  /* the payload socket (targets.h), listening */
    int tcp_fd;                      /* its TLS listener (--listen); -1: none */
    struct takeover_client *clients; /* handed over, connected */
    size_t nclients;
};

/* Takes the sockets of the daemon serving socket_path and waits for it to
 * exit. 0, or a negative errno with err (256 bytes) saying why; the old
 * daemon is left running if it was not yet asked to go. */
int takeover_run(const char *socket_path, const char *payload_name, struct takeover *out, char *err);

/* The old daemon's side: sends the n connected client fds (fds[i] with
 * what[i]) to the handover socket of the daemon new_pid taking over
 * socket_path. 0 or a negative errno with err (256 bytes). */
int takeover_send_clients(const char *socket_path, pid_t new_pid, const int *fds, const struct takeover_client *what,
                          size_t n, char *err);

/* Closes what takeover_run left to the caller and was not used. */
void takeover_release(struct takeover *t);

#endif
