/* The RPC methods of bpfgraftd: their descriptions (served by api.info),
 * argument validation and handlers. */
#ifndef BPFGRAFT_SERVER_METHODS_H
#define BPFGRAFT_SERVER_METHODS_H

#include "server.h"

/* Handles one request: packs either the result or an error response for
 * msg->msgid into out. *send_fd is set to an fd to pass with the response
 * (borrowed; -1 for none). */
void methods_dispatch(struct server *s, struct srv_client *c, const struct bpfg_rpc_msg *msg, struct bpfg_rpc_out *out,
                      int *send_fd);

#endif
