/* Checks an object's programs before the server accepts them: structure
 * (opcodes, registers, jumps, exits), helper calls limited to the helpers
 * bpfgraft implements, and map references within the object. The verifier
 * deepens this to full safety checks. */
#ifndef BPFGRAFT_SERVER_PROGCHECK_H
#define BPFGRAFT_SERVER_PROGCHECK_H

#include <stddef.h>
#include <stdint.h>

#include "registry.h"

/* Name of a helper bpfgraft provides in targets, or NULL if it provides none
 * with this id. */
const char *progcheck_helper_name(uint32_t id);

/* 0, or -ENOEXEC with a message naming the program and instruction. */
int progcheck_object(const struct registry *r, const struct reg_object *o, char *err, size_t errlen);

#endif
