/* `bpfgraft attach --path BINARY OBJ`: the native CLI's binary-wide scope,
 * as a kernel uprobe with pid -1 on a file. The programs go into every
 * process mapping BINARY now and into every process that execs it later
 * (caught at exec by execwatch.h, before its first instruction), and into
 * a process mapping it that is attached later by other means. Processes
 * brought in for it leave with it (`bpfgraft detach --path BINARY`) unless
 * they were attached on their own or a tool still wants them. Not kept
 * across server restarts: the programs stay in the processes, new
 * processes are no longer caught. */
#ifndef BPFGRAFT_SERVER_BINWIDE_H
#define BPFGRAFT_SERVER_BINWIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <msgpack.h>

struct server;
struct target;

/* What targets_attach takes, for every process of path (absolute). Returns
 * 0 or an RPC error code with err set; *nproc: processes attached now. */
struct binwide_req {
    const char *path;
    uid_t uid;  /* the caller: processes it may not trace are skipped */
    pid_t peer; /* its pid (CAP_SYS_PTRACE is checked on it) */
    const uint32_t *ids;
    size_t nids;
    const char *target_spec;
    int engine;
    uint64_t cookie;
};
int binwide_attach(struct server *s, const struct binwide_req *req, size_t *nproc, char *err, size_t errlen);
/* Ends the scope on path: the programs leave every process it put them in.
 * 0 or an RPC error code; *nproc: processes they left. */
int binwide_detach(struct server *s, const char *path, uid_t uid, size_t *nproc, char *err, size_t errlen);
/* A process became managed (or got programs): binary-wide scopes whose file
 * it maps attach there (failures are logged). */
void binwide_target_added(struct server *s, struct target *t);
/* Whether a process caught at exec maps a scope's file. */
bool binwide_wants(pid_t pid);
/* A target is going away: scopes forget it. */
void binwide_target_gone(const struct target *t);
/* Whether a scope holds programs of object obj_id (it cannot be unloaded). */
bool binwide_uses_object(uint32_t obj_id);
/* [{path, object, programs, processes: [pid]}] */
void binwide_pack_list(msgpack_packer *pk);
void binwide_destroy(void);

#endif
