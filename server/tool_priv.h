/* Tool mode's server side, shared by tool.c (requests, links, life) and
 * tool_state.c (the record a restarted server adopts a tool from). */
#ifndef BPFGRAFT_SERVER_TOOL_PRIV_H
#define BPFGRAFT_SERVER_TOOL_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "objload.h"

struct server;

#define TOOL_MAX_MAPS 256
#define TOOL_MAX_PROGS 512 /* loaded programs and one per attachment */

struct tool_link {
    uint32_t id;
    uint32_t prog_id; /* the attached copy, in the tool's object */
    enum bpfg_attach_kind kind;
    pid_t pid;    /* > 0: that process; -1: every one in scope */
    char *binary; /* uprobes */
    uint64_t offset;
    uint64_t cookie; /* bpf_get_attach_cookie in its attachments */
    pid_t *in;       /* processes it is attached in now */
    size_t nin;
    bool watching;     /* pid -1 on binary: new processes of it are caught (execwatch.c) */
    bool watching_all; /* pid -1 syscalls or library: every new process is caught (execwatch_add_all) */
    pid_t *reach;      /* pid -1 on binary: processes running it still to attach (a few each tick) */
    size_t nreach;
};

struct tool_btf {
    uint32_t id;
    void *data;
    size_t len;
};

struct tool {
    uint32_t magic; /* first: epoll data points here */
    struct tool *next;
    pid_t pid;
    int chan;
    int engine;
    bool dead;
    bool pending;        /* restored from its record, its process not adopted yet */
    uint64_t pending_ms; /* since when (monotonic) */
    uint64_t token;      /* of the tool process's payload (its record matches it) */
    uint32_t abi;        /* its payload's ABI when not this server's (adopted: adopt.c), else 0 */
    uint32_t obj_btf_id; /* the BTF that types the object's maps, 0 none */
    uint32_t obj_id;
    char name[64];
    struct tool_link **links;
    size_t nlinks;
    uint32_t next_link_id;
    struct tool_btf *btfs;
    size_t nbtfs;
    uint32_t *tickets; /* map ids handed out, their regions not made yet (MAP_TICKETS) */
    size_t ntickets;
};

/* ---- tool.c ---- */

/* A restored ticket (its file reopened): kept for the tool. 0 or -errno. */
int tool_ticket_restore(struct server *s, struct tool *tl, uint32_t id);

/* ---- tool_state.c ---- */

/* The record of tl (its object's maps and programs, BTF, links) in a
 * malloc'd buffer. 0 or -ENOMEM. */
int tool_record_pack(struct server *s, const struct tool *tl, char **buf, size_t *len);
/* A tool (pending) and its object, maps reopened from their region files,
 * with the ids the record gives. 0 or a negative errno with why set. */
int tool_record_unpack(struct server *s, const char *buf, size_t len, struct tool **out, char *why, size_t whylen);

#endif
