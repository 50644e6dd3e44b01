/* Checks an object's programs before the server accepts them: every
 * loadable program must pass the verifier (verifier.h): control flow,
 * registers, types, memory bounds, helper prototypes limited to the
 * helpers bpfgraft implements, map references within the object. */
#ifndef BPFGRAFT_SERVER_PROGCHECK_H
#define BPFGRAFT_SERVER_PROGCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/* Name of a helper bpfgraft provides in targets, or NULL if it provides none
 * with this id. */
const char *progcheck_helper_name(uint32_t id);

struct progcheck_options {
    bool allow_probe_write_user; /* default true */
    bool allow_override_return;  /* default true (uprobes only) */
    bool kernel_check;           /* bpfgraftd --verifier=kernel */
};

/* Process-wide verifier options (set once at startup). */
void progcheck_set_options(const struct progcheck_options *o);
void progcheck_get_options(struct progcheck_options *o);

/* 0, or -ENOEXEC with a message naming the program and instruction. */
int progcheck_object(const struct registry *r, const struct reg_object *o, char *err, size_t errlen);

#endif
