/* The config's metrics: each counter and histogram read from its map
 * (map.dump) and labelled from the keys (labels.h), as ebpf_exporter does
 * with kernel maps. */
#ifndef BPFGRAFT_EXPORTER_TABLES_H
#define BPFGRAFT_EXPORTER_TABLES_H

#include <msgpack.h>
#include <stdint.h>

#include "client.h"
#include "config.h"
#include "out.h"

struct exp_tables;

/* Metric names are prefixed with "NAMESPACE_" (namespace "" : none). */
struct exp_tables *exp_tables_new(const struct exp_config *cfg, const char *namespace);
void exp_tables_free(struct exp_tables *t);

/* Appends every configured metric family to out. maps is map.list's
 * answer; a table several maps are called after is the one of object
 * own_object when it has one (the object the exporter loaded), else the
 * newest. A metric whose map is missing or whose keys do not decode gets
 * no samples, and the reason goes to stderr (once, until it changes). */
void exp_tables_write(struct exp_tables *t, struct cli_conn *c, const msgpack_object *maps, uint64_t own_object,
                      struct sbuf *out);

#endif
