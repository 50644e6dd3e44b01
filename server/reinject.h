/* Replacing a payload of another ABI by re-injection (server/README.md,
 * "Versions"): when the state directory holds the record a previous
 * server left for it, a payload of this server's ABI is injected beside
 * it with the record's programs, maps (the same regions: counting goes on
 * in the same memory) and hook slots, and each hook's stub is re-pointed
 * from the old payload's entry to the new one's; syscall hooks (dispatch
 * in each thread, the SIGSYS action, rewritten sites) move to it too. The
 * old payload stays mapped (frames in flight may return through it). */
#ifndef BPFGRAFT_SERVER_REINJECT_H
#define BPFGRAFT_SERVER_REINJECT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct server;
struct target;
struct bpfg_pmsg_hello;

/* A payload of another ABI reconnected on fd (its HELLO's first fields in
 * hello). 0 when it was replaced (fd closed, the new target listed with
 * `adopted` "reinjected"), or had been (the record is its successor's,
 * which reconnects on its own: fd closed); else fd is left and a negative
 * errno returned:
 * -ENOENT (no record for it), -EOPNOTSUPP (what is not re-injected: a
 * Go process's syscall hooks, a record without its syscall program ids),
 * another (logged). A `bpfgraft run` tool's payload is never passed here
 * (adopt.c adopts it as it is). */
int reinject_other_abi(struct server *s, int fd, pid_t pid, uid_t uid, const struct bpfg_pmsg_hello *hello);

/* An adopted target whose record says it replaced another payload: hook
 * stubs a killed server left entering the old payload are re-pointed. */
void reinject_finish(struct server *s, struct target *t);

/* A payload of this ABI reconnecting on fd with token: true when it is
 * the new payload of a re-injection whose server was killed before its
 * record was written (the pid's record is still the old payload's, naming
 * token); it is sent DETACH and fd closed. */
bool reinject_leftover(struct server *s, int fd, pid_t pid, uint64_t token);

#endif
