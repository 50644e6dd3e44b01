/* Catching processes as they start a binary that tools probe in every
 * process (a uprobe with pid -1 on a path): a fanotify exec-permission
 * mark on each such file. The execve waits for our answer; we trace the
 * process (ptrace), allow the exec, run it to its entry point (libraries
 * mapped, none of its code run yet), attach it for the tools and let it
 * go. A process of a marked binary pays a few ms at exec; every other
 * process pays nothing. A process that exec's while it is a target is
 * caught again (its payload went with the old program). */
#ifndef BPFGRAFT_SERVER_EXECWATCH_H
#define BPFGRAFT_SERVER_EXECWATCH_H

#include <stdbool.h>
#include <stddef.h>

struct server;

#define EXECWATCH_MAGIC 0x45584543u /* epoll tag: the fanotify descriptor */

/* Marks path (counted: each add needs a remove). 0 or a negative errno
 * with a message. */
int execwatch_add(struct server *s, const char *path, char *err, size_t errlen);
void execwatch_remove(struct server *s, const char *path);
/* Every process that starts a program in bpfgraftd's mount namespace (a
 * tool's system-wide syscall tracepoint): exec marks on each of its
 * mounts (counted like execwatch_add). 0 or a negative errno. */
int execwatch_add_all(struct server *s, char *err, size_t errlen);
/* bpfgraftd --catch-new-processes=off: execwatch_add_all refuses. */
void execwatch_set_catch_all(bool on);
void execwatch_remove_all(struct server *s);
/* Catches processes seized while the server waited for another exec. */
void execwatch_tick(struct server *s);
/* The epoll tag's descriptor is readable: handles every queued exec. */
void execwatch_readable(struct server *s);
void execwatch_destroy(struct server *s);

#endif
