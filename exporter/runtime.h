/* The runtime's own metrics: bpfgraftd's status, programs, attached
 * processes and their hooks, maps. Statistics fields the server does not
 * return (older servers, statistics off) are left out, not zeroed. */
#ifndef BPFGRAFT_EXPORTER_RUNTIME_H
#define BPFGRAFT_EXPORTER_RUNTIME_H

#include <msgpack.h>

#include "out.h"

/* The answers of one scrape's list calls (NULL: that call failed). */
struct exp_runtime_state {
    const msgpack_object *status;  /* server.status */
    const msgpack_object *progs;   /* prog.list */
    const msgpack_object *targets; /* target.list */
    const msgpack_object *maps;    /* map.list */
};

/* Appends the runtime's metric families to out. */
void exp_runtime_write(const struct exp_runtime_state *s, struct sbuf *out);

#endif
