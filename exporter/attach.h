/* The object the exporter loads and attaches itself (--object/--attach,
 * or the config's object/attach/target), and takes away when it ends. */
#ifndef BPFGRAFT_EXPORTER_ATTACH_H
#define BPFGRAFT_EXPORTER_ATTACH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "client.h"

struct exp_attachment {
    uint64_t object; /* loaded by the exporter, or 0 */
    int64_t pid;     /* attached by the exporter, or 0 */
    bool detach;     /* the process was not attached before: detach it at the end */
};

/* Loads path's bytes (object.load, so --host works too) and, when pid is
 * not 0, attaches its programs there (target: for sections that name no
 * function, or NULL). Returns 0, or -1 with the reason in err (what was
 * done is undone). */
int exp_attach_setup(struct cli_conn *c, const char *path, int64_t pid, const char *target, struct exp_attachment *a,
                     char *err, size_t errlen);

/* Detaches the process if the exporter brought it in, then unloads the
 * object; problems are printed. */
void exp_attach_teardown(struct cli_conn *c, struct exp_attachment *a);

#endif
