/* bpfgraftd --takeover: a new daemon takes the listening sockets of the
 * running one (pidfd_getfd: they are never closed, so clients queue in the
 * backlog instead of being refused), asks it to go (SIGUSR2: it stops
 * accepting, lets its clients finish for up to TAKEOVER_DRAIN_MS and exits
 * leaving every target attached and the socket file in place) and waits
 * for it to exit; then it starts as after a restart: state reloaded,
 * payloads reconnect to the socket it now holds and are adopted. */
#ifndef BPFGRAFT_SERVER_TAKEOVER_H
#define BPFGRAFT_SERVER_TAKEOVER_H

#include <sys/types.h>

#define TAKEOVER_DRAIN_MS 250
#define TAKEOVER_WAIT_MS 10000

struct takeover {
    pid_t old_pid;
    int control_fd; /* the control socket, listening */
    int payload_fd; /* the payload socket (targets.h), listening */
};

/* Takes the sockets of the daemon serving socket_path and waits for it to
 * exit. 0, or a negative errno with err (256 bytes) saying why; the old
 * daemon is left running if it was not yet asked to go. */
int takeover_run(const char *socket_path, const char *payload_name, struct takeover *out, char *err);

#endif
