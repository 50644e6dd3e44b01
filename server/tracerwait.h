/* Attachments waiting for a process another tracer holds (ptrace): a
 * tool's probe for such a pid is pending until that tracer lets go, then
 * the process is attached for the tools (polled on the server's tick).
 * `bpftrace -c CMD` with usdt probes stops its child at the end of its
 * execve, attaches, then detaches it; under the kernel the probes are in
 * place before the child's first instruction. Here a process the tool
 * itself holds in that stop is parked at its first instruction
 * (injector.h, bpfg_park_exec), so it is caught exactly there as at exec
 * (execwatch.c), its first probe hits included. */
#ifndef BPFGRAFT_SERVER_TRACERWAIT_H
#define BPFGRAFT_SERVER_TRACERWAIT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct server;

/* The pid of the process that ptrace-holds pid if it is not bpfgraftd,
 * else 0. */
pid_t tracerwait_holder(pid_t pid);
/* Waits for pid's tracer to let go (once per pid; tool is the tool that
 * wants it). 0 or a negative errno with a message. */
int tracerwait_add(struct server *s, pid_t pid, pid_t tool, char *err, size_t errlen);
/* Timer: processes let go are attached for the tools that still want
 * them; those gone are forgotten. */
void tracerwait_tick(struct server *s);
/* Server stop: parked processes still held get their bytes back; those
 * already let go are unparked and let go. */
void tracerwait_destroy(struct server *s);

#endif
