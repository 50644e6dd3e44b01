/* Syscall hooks of attached targets: programs of the sections
 * tracepoint/syscalls/sys_{enter,exit}_NAME, tracepoint/raw_syscalls/
 * sys_{enter,exit} and raw_tracepoint/sys_{enter,exit}, run by the
 * payload's SIGSYS handler on Syscall User Dispatch (payload/syscall.c).
 *
 * Attaching the first one turns dispatch on in every thread of the target
 * (a remote prctl on each stopped thread; threads created later turn it on
 * themselves); detaching turns it off everywhere and puts the target's
 * SIGSYS action back. The payload then stays mapped: a thread may still
 * be inside its handler or blocked in a syscall the handler made. */
#ifndef BPFGRAFT_SERVER_SYSCALLS_H
#define BPFGRAFT_SERVER_SYSCALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "injector.h"
#include "objload.h"
#include "payload_abi.h"

struct server;
struct target;
struct reg_prog;

/* x86-64 syscall number of a tracepoint name ("openat", "newstat"), or
 * -ENOENT. */
int syscalls_nr(const char *name);

bool syscalls_is_kind(enum bpfg_attach_kind kind);
/* Tool mode (tool.h): the payload installed its handler (rep is its
 * TOOL_MODE reply); dispatch goes on in every thread. 0 or -errno + err. */
int syscalls_tool_dispatch(struct server *s, struct target *t, const struct bpfg_pmsg_syscall_reply *rep, char *err,
                           size_t errlen);
/* Removes one syscall program from t (no-op if it is not one); with the
 * last one gone rewritten sites are put back, dispatch stays on with the
 * payload letting every syscall through. */
void syscalls_remove_prog(struct server *s, struct target *t, uint32_t prog_id);
/* An inert payload adopted with its record (targets_rearm): its syscall
 * programs (dropped when it went inert) attached again; how many. */
size_t syscalls_rearm(struct server *s, struct target *t);

/* Validates a program of a syscall kind before anything is touched: an
 * RPC error code with err set, or 0. */
int syscalls_check(const struct bpfg_obj_prog *op, char *err, size_t errlen);
/* Hooks an already sent program (maps and code are in the payload).
 * Returns 0 or a negative errno with err set. */
int syscalls_attach(struct server *s, struct target *t, const struct reg_prog *p, char *err, size_t errlen);
/* Before the payload is told to go: dispatch off in every thread, SIGSYS
 * action restored. *keep_payload: the payload image must stay mapped. */
void syscalls_detach(struct server *s, struct target *t, bool *keep_payload);
/* An asynchronous message of the payload (BPFG_PMSG_EXEC). */
void syscalls_async(struct server *s, struct target *t, const struct bpfg_pmsg_hdr *h, const char *body);
/* The target is gone: forget its state. */
void syscalls_forget(struct target *t);
/* Number of syscall programs attached to t (for target.list). */
size_t syscalls_count(const struct target *t);
/* Rewritten syscall sites currently in place (the fast path). */
size_t syscalls_sites(const struct target *t);
/* bpfgraftd --syscall-rewrite=on|off: whether new syscall hooks rewrite
 * the sites SUD catches (default on). */
void syscalls_set_rewrite(bool on);

/* targets.c: a request to t's payload and its reply (body into out). */
int targets_payload_call(struct server *s, struct target *t, uint16_t type, const void *body, size_t len, void *out,
                         size_t outlen, size_t *outgot, char *err, size_t errlen);

/* Re-injection (reinject.c): t's payload replaces rec's: SYSCALL_TAKEOVER
 * naming rec's image (not for a pure Go process: no dispatch, no
 * handler), rec's syscall programs hooked again, rec's sites and stub
 * pages t's (nothing enters t's payload yet). 0, or -EOPNOTSUPP (why in
 * err: a record without its program ids) or another -errno. */
int syscalls_reinject(struct server *s, struct target *t, const struct target *rec, char *err, size_t errlen);
/* Why rec's syscall hooks cannot be re-injected, or NULL. */
const char *syscalls_not_reinjectable(const struct target *rec);
/* A re-injection failed before t's record: its detach leaves dispatch,
 * the SIGSYS action and the sites to the replaced payload. */
void syscalls_keep_dispatch(struct target *t);
/* Moving the threads, the SIGSYS action and the sites' stubs of a
 * re-injected target to its payload: begin (payload thread running: asks
 * it again for its handler; a Go process: the replaced image's extent
 * from its mappings), then stopped, with every thread stopped (step after
 * each write; a Go process has its stubs alone moved). */
struct syscalls_takeover {
    bool needed;
    struct bpfg_pmsg_syscall_takeover_reply rep;
};
int syscalls_takeover_begin(struct server *s, struct target *t, struct syscalls_takeover *tk, char *err, size_t errlen);
int syscalls_takeover_stopped(struct bpfg_stopped *st, struct target *t, const struct syscalls_takeover *tk,
                              void (*step)(void), char *err, size_t errlen);

/* Restarts (state.c): t's syscall state as bytes, and back. */
int syscalls_export(const struct target *t, void **buf, size_t *len);
int syscalls_import(struct target *t, const void *buf, size_t len);

#endif
