/* The exporter's calls to bpfgraftd: a method with no parameter or one
 * named id, over cli/'s connection; a broken connection is closed so
 * the next call dials again (bpfgraftd restarts, takeovers). */
#ifndef BPFGRAFT_EXPORTER_CALL_H
#define BPFGRAFT_EXPORTER_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "client.h"

/* Calls method, with {param: id} when param is not NULL. Returns 0 with
 * the answer in *resp (released by the caller), or -1 with the server's
 * error or the transport's failure in err. */
int exp_call(struct cli_conn *c, const char *method, const char *param, uint64_t id, struct bpfg_rpc_msg *resp,
             char *err, size_t errlen);

/* Sends a request begun with cli_begin; the same results as exp_call. */
int exp_call_out(struct cli_conn *c, struct bpfg_rpc_out *out, struct bpfg_rpc_msg *resp, char *err, size_t errlen);

#endif
