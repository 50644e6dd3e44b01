/* `bpfgraft run -- TOOL`: unmodified libbpf tools whose BPF side bpfgraft
 * serves (abi/payload_abi.h, "tool mode").
 *
 * The tool is started like `bpfgraft start` and switched to tool mode
 * before its first instruction: its payload serves map element commands
 * itself and asks the server, over a private socketpair (the tool
 * channel), to create maps, load programs (verified like object.load)
 * and BTF, and to attach programs. Everything a tool creates lives in one
 * registry object, "tool:COMM:PID", freed when the tool exits.
 *
 * Attachments (links) follow perf_event_open's scope: pid > 0 names one
 * process, attached on the spot for the tool if bpfgraft does not manage
 * it (and caught at exec if it has not exec'd the probed binary yet: bpftrace
 * -c); pid -1 means every managed process that is not itself a tool and,
 * for a uprobe, every process mapping the binary, now (attached for the
 * tool) and later (execwatch.h; a library's: every new process is caught and
 * those that map it at their entry point kept), for a syscall tracepoint of
 * a root tool, every process started later (execwatch_add_all); a process attached afterwards
 * (`bpfgraft attach PID`) gets the running tools' links. Processes
 * attached for tools are detached when no tool wants them any more. When the tool exits its programs leave every process; the
 * processes keep running with whatever else is attached to them. */
#ifndef BPFGRAFT_SERVER_TOOL_H
#define BPFGRAFT_SERVER_TOOL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <msgpack.h>

struct server;
struct target;

#define TOOL_MAGIC 0x544f4f4cu /* epoll tag: a tool channel */

/* Switches the just-injected target t (stopped at its entry point) to
 * tool mode. 0, or a negative errno with err set. */
int tools_begin(struct server *s, struct target *t, int engine, char *err, size_t errlen);
/* The tool channel whose epoll tag is tag is readable. */
void tools_readable(struct server *s, void *tag);
/* A process became managed: running tools' links whose scope covers it
 * are attached there (failures are logged). */
void tools_target_added(struct server *s, struct target *t);
/* A target is going away (exit or detach): a tool ends; links forget it. */
void tools_target_gone(struct server *s, struct target *t);
/* Frees tools that ended (outside the epoll batch that saw them end). */
void tools_reap(struct server *s);
/* Server stop: with detach_on_stop every tool ends, else each is only
 * forgotten here (running on, recorded for the next server). */
void tools_destroy(struct server *s);
/* Restarts (server/README.md): the tools a previous server recorded, each
 * waiting for its process (state_init, before unowned map files go). */
void tools_restore(struct server *s);
/* A payload was adopted (adopt.c): a tool's process gets a new channel;
 * another target rejoins the links whose programs it holds, loses those
 * of tools that ended meanwhile, and gets links it lacks. */
void tools_adopted(struct server *s, struct target *t);
/* Timer: a restored tool whose process has not come back ends. */
void tools_tick(struct server *s);
/* The oldest payload ABI whose tool channel this server speaks (ABI 2:
 * requests 64-70, abi/payload_abi.h section 7): a restarted server adopts
 * a tool whose payload is of an ABI from it to its own (adopt.c). */
#define TOOLS_OLDEST_ABI 2u
bool tools_speak_abi(uint32_t abi);
/* Whether pid is a running tool (in no one's scope but its own). */
bool tools_has_pid(pid_t pid);
/* Whether a process caught at exec (stopped at its entry point) is in a
 * running tool's scope: a link for its pid, a system-wide syscall link,
 * or a pid -1 uprobe on a file it maps. */
bool tools_want_new(pid_t pid);
/* Whether a running tool has a link for pid or attached in it. */
bool tools_want_pid(pid_t pid);
/* Detaches processes attached for tools or scopes (for_tools) that nothing
 * runs in and no tool wants any more. */
void tools_release_targets(struct server *s);
/* tool.list: [{pid, object, links: [{id, kind, target, pid, attached: [pid]}]}] */
void tools_pack_list(struct server *s, msgpack_packer *pk);
/* Whether map id is a ticket a tool holds (its region file is kept). */
bool tools_hold_ticket(uint32_t id);

#endif
