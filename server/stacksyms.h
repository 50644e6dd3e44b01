/* Stack maps' addresses as "function+0xoff (file)": the frames map.dump
 * adds to a STACK_TRACE map's entries, and the stacks events add to ring
 * buffer and perf records that carry stack ids (the rule: stacksyms.c). */
#ifndef BPFGRAFT_SERVER_STACKSYMS_H
#define BPFGRAFT_SERVER_STACKSYMS_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "server.h"

/* Symbolizers of the processes that have stack map map_id (the first
 * whose mappings hold an address names it). */
#define STACK_SYM_PROCS 8

struct stack_syms {
    struct symz *z[STACK_SYM_PROCS];
    size_t n;
};

void stack_syms_open(struct server *s, uint32_t map_id, struct stack_syms *ss);
void stack_syms_close(struct stack_syms *ss);

/* The stack in value (size bytes of addresses, ended by a zero) as an
 * array of "function+0xoff (file)" strings. */
void stack_syms_pack(msgpack_packer *pk, struct stack_syms *ss, const uint8_t *value, uint32_t size);

/* The records of ring buffer or perf map map_id: NULL when its object has
 * no STACK_TRACE map or no BTF (no record can name a stack). */
struct record_stacks *record_stacks_open(struct server *s, uint32_t map_id);
void record_stacks_close(struct record_stacks *rs); /* NULL is fine */

/* How many stack id fields a record of size bytes has (0 with rs NULL). */
size_t record_stacks_count(struct record_stacks *rs, size_t size);

/* "stacks": {field: [frames]} of the record (record_stacks_count > 0): each
 * stack id field's stack, empty for an id the map lacks (a negative one:
 * bpf_get_stackid's error). */
void record_stacks_pack(struct record_stacks *rs, msgpack_packer *pk, const void *data, size_t size);

#endif
