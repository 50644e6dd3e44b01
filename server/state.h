/* What bpfgraftd keeps across restarts, in STATE_DIR/restart/
 * (server/README.md, "Restarts"):
 *   objects/ID.o, objects/ID.meta   loaded objects: their bytes, name, path
 *                                   and the ids of their maps and programs
 *   maps/ID                         the map regions (tmpfs files, not memfds)
 *   targets/PID                     one record per attached process
 *   tools/PID                       one record per `bpfgraft run` tool (tool.c)
 * A new server reloads the objects with the same ids and reopens their maps
 * with their data; payloads that reconnect are matched with their records
 * (adopt.c). */
#ifndef BPFGRAFT_SERVER_STATE_H
#define BPFGRAFT_SERVER_STATE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct server;
struct target;
struct reg_object;

#define STATE_SUBDIR "restart"

/* Creates the directories, points the registry's maps there and loads the
 * objects a previous server left (logged; a broken one is skipped).
 * Returns 0 or a negative errno. */
int state_init(struct server *s);
void state_close(struct server *s);

/* An object was loaded (bytes: what was loaded, or NULL to read o->path). */
void state_object_loaded(struct server *s, const struct reg_object *o, const void *bytes, size_t len);
void state_object_unloaded(struct server *s, uint32_t obj_id);
/* Forgets every object and map (shutdown --detach): the next server starts
 * empty. */
void state_clear(struct server *s);

/* Files of other parts in STATE_DIR/restart/SUB (sub: "tools"): written
 * through a temporary name, read whole (NUL-terminated, malloc'd), removed,
 * listed (names not starting with '.'). Negative errnos. */
int state_write(struct server *s, const char *sub, const char *name, const void *buf, size_t len);
int state_read(struct server *s, const char *sub, const char *name, char **buf, size_t *len);
void state_remove(struct server *s, const char *sub, const char *name);
void state_each(struct server *s, const char *sub, void (*fn)(struct server *s, const char *name));

/* The record of a target: written after each change, removed at detach or
 * exit. */
void state_save_target(struct server *s, const struct target *t);
void state_forget_target(struct server *s, pid_t pid);
/* Fills t (already holding pid, sock, and what HELLO said) from its record
 * when one exists for this payload (same load address and token).
 * Returns 0, -ENOENT (no usable record) or another negative errno. */
int state_load_target(struct server *s, struct target *t, uint64_t token);
/* What pid's record says of a re-injection (reinject.c): the base of the
 * payload it replaced, the token of one under way (0: none). */
void state_reinjection(struct server *s, pid_t pid, uint64_t *replaced_base, uint64_t *reinject_token);

#endif
