/* Attached processes: injecting the payload, sending it maps and programs,
 * installing and removing uprobe/uretprobe hooks, detaching, and noticing
 * targets that exit. */
#ifndef BPFGRAFT_SERVER_TARGETS_H
#define BPFGRAFT_SERVER_TARGETS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hookgen.h"
#include "injector.h"
#include <msgpack.h>

struct server;

#define TARGET_MAX_HOOKS 512

#define TARGET_HOOK_PROGS 8 /* entry + return programs sharing one site */

struct target_hook {
    bool used;
    uint32_t index; /* payload hook slot */
    uint32_t nprogs;
    uint32_t prog_ids[TARGET_HOOK_PROGS];
    uint32_t kinds[TARGET_HOOK_PROGS];   /* enum bpfg_hook_kind */
    uint64_t cookies[TARGET_HOOK_PROGS]; /* bpf_get_attach_cookie of each */
    uint64_t sems[TARGET_HOOK_PROGS];    /* the USDT semaphore each counts in (0: none) */
    struct bpfg_hook_plan plan;
    size_t stub_size; /* bytes allocated at plan.stub_addr; kept after the hook is
                                * removed (!used) until the slot is reused or the payload goes */
};

#define TARGET_MAGIC 0x54524754u /* epoll tag: a target, not a client */

/* Where the payload of one target mapped a map (its MAP reply, payload_abi.h). */
struct target_map_addr {
    bool known; /* false: an older payload said nothing */
    uint64_t handle, value_area, value_size;
};

struct target {
    uint32_t magic; /* first: epoll data points here */
    struct target *next;
    pid_t pid;
    uid_t uid;
    int sock;  /* connection from the payload */
    int pidfd; /* the process: readable once it exited (a fork may keep sock open) */
    struct bpfg_injected inj;
    uint32_t payload_tid;
    uint32_t seq;
    uint32_t *maps_sent;
    struct target_map_addr *map_addrs; /* parallel to maps_sent */
    size_t nmaps_sent;
    uint32_t *progs_sent;
    uint8_t *progs_engine; /* parallel to progs_sent: enum bpfg_engine it runs on, | TARGET_ENGINE_LLVM_DUE */
    size_t nprogs_sent;
    struct target_hook hooks[TARGET_MAX_HOOKS];
    size_t nhooks;
    uint32_t next_hook;      /* where the search for a free hook slot starts (round robin) */
    uint64_t attached_at_ms; /* wall clock of the attach: unix epoch, ms */
    uint64_t last_stop_ns;   /* how long threads stayed stopped at the last patch */
    uint64_t trace_lines;
    uint64_t thread_table; /* payload's uretprobe shadow stacks (payload_abi.h) */
    uint64_t hook_table;   /* payload's hook slots (payload_abi.h), for their miss counters */
    uint64_t stats_table;  /* payload's stats table (payload_abi.h section 9; stats.h) */
    uint32_t max_threads, shadow_depth;
    uint64_t uret_trampolines; /* payload's word: depth 0's return trampoline (payload_abi.h) */
    uint64_t unwind_page;      /* the unwind page's rw page, once a uretprobe set it up */
    bool gdb_file;             /* the gdb file of the unwind page is written */
    bool pidns;                /* runs in another pid namespace: the payload gets our ids */
    uint64_t pidns_hash;       /* of the last thread list sent */
    uint64_t pidns_sent_ms;
    uint64_t trap_action; /* the target's SIGTRAP action in the payload (payload_abi.h; any hook), 0 none */
    uint64_t token;       /* of the attach: the payload says it again when it reconnects */
    /* Restarts (adopt.c): how a restarted server took the target over
     * ("" attached by this server, "record", "inventory"), and whether the
     * payload had gone inert (its programs no longer run). */
    char adopted[12];
    bool inert;
    uint32_t foreign_abi; /* a payload of another ABI (adopt.c): listed, only detach restores its bytes */
    /* attached only because a tool named it (-p PID): detached when no
     * tool wants it any more, unless someone attached it on their own */
    bool for_tools;
    bool ustack;        /* the payload has user-stack tables (ustack.h) */
    bool ustack_stale;  /* it asked for fresh ones */
    uint64_t ustack_ms; /* when they were last made */
    /* A record (state.c) is this struct's bytes: append new fields here,
     * after every older one, so an older build's record is a prefix that
     * a newer server reads with the new fields zero. */
    /* Re-injection (reinject.c): the other-ABI payload this one replaced
     * (its base; its uprobe entry while hooks' stubs may still enter it);
     * on the old payload's record, the new payload's token while a
     * re-injection is under way; no record is written while held. */
    uint64_t replaced_base, replaced_entry, reinject_token;
    bool record_held;
};

struct targets {
    struct target *list;
    size_t count;
    int listen_fd;         /* abstract socket payloads connect to */
    char listen_name[108]; /* "@bpfgraft-payload:<control socket>" */
    char payload_path[4096];
    char cache_dir[4096];   /* compiled-code cache (LLVM); opened at first use */
    char jit_archive[4096]; /* `bpfgraft compile` output imported into it */
    void *jitcache;         /* struct bpfg_jitcache *, when LLVM is built */
    bool jitcache_failed;
    uint32_t orphan_grace_ms; /* payloads go inert this long after losing us (0: never) */
};

/* Where compiled code is cached (before the first attach). */
void targets_set_cache_dir(struct targets *t, const char *dir, const char *archive);

/* The payload socket's abstract name for a control socket ("@..."). */
void targets_listen_name(const char *control_socket, char *buf, size_t len);
int targets_init(struct targets *t, const char *control_socket, const char *payload_path, int inherited_fd);

/* Engines ("llvm", "x86", "interp"; enum bpfg_engine; "tiered"). A requested engine
 * that cannot take a program falls back (llvm -> x86 -> interp) with the
 * reason logged. */
#define TARGET_ENGINE_DEFAULT (-1) /* targets_attach: the server's default */
/* "tiered": x86 code at the attach, LLVM's swapped in after it (tiering.h). */
#define TARGET_ENGINE_TIERED 3
/* progs_engine flag: runs x86 code, LLVM code owed (tiered; kept in the
 * target's record, so that a restarted server does the swap: adopt.c). */
#define TARGET_ENGINE_LLVM_DUE 0x80
int targets_engine_parse(const char *name); /* enum bpfg_engine, TIERED, or -EINVAL */
const char *targets_engine_name(int engine);
/* The default for attaches that name no engine (bpfgraftd --engine); llvm
 * unless set. */
void targets_set_default_engine(int engine);
/* detach: every target is detached (bpfgraft shutdown --detach); else
 * they stay attached, their payloads waiting for the next server. */
void targets_destroy(struct server *s, bool detach);
/* Adds a target whose payload is connected (inject, adopt.c): epoll, its
 * pidfd, the list; announces event ("attached", "adopted"). */
void targets_add(struct server *s, struct target *t, const char *event);
/* An adopted payload that had gone inert: its hooks get back the programs
 * its record names (no stop: the sites are still patched). Syscall
 * programs stay off (detach and attach again). Returns how
 * many programs run again; t->inert is cleared once one does. */
size_t targets_rearm(struct server *s, struct target *t);
/* Re-injection (reinject.c): a payload of this server's ABI injected into
 * rec's process, given rec's programs, maps and hook slots (same indexes,
 * same stubs: nothing enters it until they are re-pointed), token its
 * token, replaced_base and replaced_entry rec's (a uretprobe gets an
 * unwind page of its own: the old payload's frames return through its
 * page); its record is held. *out: the new target, listed (NULL if
 * none). 0 or a negative errno with err. */
int targets_reinject(struct server *s, const struct target *rec, uint64_t token, struct target **out, char *err,
                     size_t errlen);
/* Frees t's tables of the maps and programs sent to its payload (not t). */
void targets_free_sent(struct target *t);
/* Saves t's record for restarts (state.c). */
void targets_save(struct server *s, const struct target *t);

/* Attaches the given programs (ids) of an object to pid; target_spec
 * ("binary:function[+off]", may be NULL) is used for programs whose
 * section names no target. On failure returns an RPC error code with err
 * set; on success fills nothing else (target_list shows the result).
 * engine: enum bpfg_engine or TARGET_ENGINE_DEFAULT, for programs not yet
 * loaded in that process (a loaded one keeps the engine it got). cookie:
 * what bpf_get_attach_cookie returns in these attachments. */
int targets_attach(struct server *s, pid_t pid, uid_t peer_uid, pid_t peer_pid, const uint32_t *prog_ids, size_t nprogs,
                   const char *target_spec, int engine, uint64_t cookie, char *err, size_t errlen);
/* 0 if peer_uid (of process peer_pid) may trace pid, as targets_attach
 * checks; else -EPERM or -ESRCH with err set. */
int targets_may_trace(pid_t pid, uid_t peer_uid, pid_t peer_pid, char *err, size_t errlen);
/* Runs program prog_id in t's payload thread every period_ns (a tool's
 * cpu-clock perf event: bpftrace's interval:). 0 or a negative errno. */
int targets_add_timer(struct server *s, struct target *t, uint32_t prog_id, uint64_t period_ns, int engine, char *err,
                      size_t errlen);
/* A process execwatch.c caught at exec: stopped at its entry point and
 * traced by us (bpfg_exec_to_entry). Attaches it for the running tools
 * (it leaves with the last tool that wants it) and lets it go. 0 or an
 * RPC error code with a message. */
int targets_attach_caught(struct server *s, pid_t pid, char *err, size_t errlen);
/* Target t exec'd a new program (execwatch.c saw the exec complete): its
 * payload went with the old image; t is forgotten as if it had exited. */
void targets_forget_exec(struct server *s, struct target *t);
/* `bpfgraft start`: pid is a child of the peer that stopped itself just
 * before execve. Runs it to its entry point, attaches the programs there
 * (before main), then lets it go. Returns an RPC error code or 0. */
int targets_start(struct server *s, pid_t pid, uid_t peer_uid, pid_t peer_pid, const uint32_t *prog_ids, size_t nprogs,
                  const char *target_spec, int engine, bool tool, char *err, size_t errlen);
/* tool: `bpfgraft run` (tool.h): the process is a libbpf tool whose bpf()
 * the server serves; it is switched to tool mode before it runs. */

/* Takes programs (and then maps nothing uses) out of one target, leaving
 * the rest attached: sites of hooks left empty are put back. Returns 0 or
 * the first error (logged; the others are still done). */
int targets_remove_progs(struct server *s, struct target *t, const uint32_t *ids, size_t n, const uint32_t *map_ids,
                         size_t nmaps);
/* targets_payload_call with an fd passed along (SCM_RIGHTS). */
int targets_payload_call_fd(struct server *s, struct target *t, uint16_t type, const void *body, size_t len, int fd,
                            void *out, size_t outlen, size_t *outgot, char *err, size_t errlen);
int targets_detach(struct server *s, pid_t pid, uid_t peer_uid, pid_t peer_pid, char *err, size_t errlen);
/* Periodic work (the server's event tick): lets go of threads a stop gave
 * up on (bpfg_reap_abandoned), refreshes the thread ids of targets in
 * other pid namespaces. */
void targets_tick(struct server *s);
struct target *targets_find(struct targets *t, pid_t pid);

/* The payload connection of t is readable (epoll). Returns false when the
 * target is gone and was cleaned up. */
bool targets_readable(struct server *s, struct target *t);

void targets_pack_list(struct server *s, msgpack_packer *pk);

#endif
