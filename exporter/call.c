/* Calls to bpfgraftd (see call.h). */
#include "call.h"

#include <stdio.h>
#include <string.h>

int exp_call_out(struct cli_conn *c, struct bpfg_rpc_out *out, struct bpfg_rpc_msg *resp, char *err, size_t errlen)
{
    struct cli_error e;
    int r = cli_call(c, out, resp, &e);
    if (r == 0)
        return 0;
    if (r == 1) {
        snprintf(err, errlen, "%s (%s)", e.message, bpfg_rpc_error_name(e.code));
        return -1;
    }
    snprintf(err, errlen, "cannot reach bpfgraftd at %s: %s", c->path, strerror(-r));
    cli_close(c); /* dial again next time */
    return -1;
}

int exp_call(struct cli_conn *c, const char *method, const char *param, uint64_t id, struct bpfg_rpc_msg *resp,
             char *err, size_t errlen)
{
    struct bpfg_rpc_out out;
    cli_begin(c, &out, method, param ? 1 : 0);
    if (param) {
        bpfg_pack_cstr(&out.pk, param);
        msgpack_pack_uint64(&out.pk, id);
    }
    return exp_call_out(c, &out, resp, err, errlen);
}
