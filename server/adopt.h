/* Re-adoption of payloads after a server restart (server/README.md,
 * "Restarts"): a payload that lost its server reconnects to the payload
 * socket and says HELLO with BPFG_HELLO_F_RECONNECT and its inventory; the
 * server rebuilds the target from its record (state.c), the inventory and
 * the payload's hook table, and the target is attached again. */
#ifndef BPFGRAFT_SERVER_ADOPT_H
#define BPFGRAFT_SERVER_ADOPT_H

struct server;

/* The payload socket is readable: adopts every payload waiting there. */
void adopt_accept(struct server *s);

#endif
