/* The server's state: loaded objects, their programs and maps, by stable id.
 *
 * The registry is the single owner of every bpfg_obj and bpfg_map handle;
 * everything else refers to entries by id. Ids start at 1 and are never
 * reused while the server runs.
 */
#ifndef BPFGRAFT_SERVER_REGISTRY_H
#define BPFGRAFT_SERVER_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "maps.h"
#include "objload.h"

struct kernel_obj;

struct reg_map {
    uint32_t id;
    uint32_t obj_id;
    char name[BPFG_MAP_NAME_LEN];
    enum bpfg_map_kind kind;
    uint32_t btf_key_type_id, btf_value_type_id;
    struct bpfg_map *map; /* owned */
    bool adopted;         /* map.adopt: a pinned kernel map, which objects loaded later use by name */
};

struct reg_prog {
    uint32_t id;
    uint32_t obj_id;
    const struct bpfg_obj_prog *prog; /* points into the object */
};

struct reg_object {
    uint32_t id;
    char *name;
    char *path;           /* NULL when loaded from bytes */
    struct bpfg_obj *obj; /* owned */
    uint32_t *map_ids;    /* by the object's map index */
    size_t map_cnt;
    uint32_t *prog_ids;
    size_t prog_cnt;
    size_t map_cap, prog_cap; /* registry_new_object: room in obj->maps/progs */
    /* owned: its programs and maps in the kernel (kernel.h), or NULL */
    struct kernel_obj *kernel;
};

#define REG_SPARES 64 /* a tool's start: libbpf's probes and its maps, a region and a record each */

struct registry {
    struct reg_object **objects;
    size_t nobjects;
    struct reg_map **maps;
    size_t nmaps;
    struct reg_prog **progs;
    size_t nprogs;
    uint32_t next_id[3]; /* objects, maps, programs */
    int map_dirfd;       /* >= 0: maps of loaded objects are files there, named
                          * by id (state.c); -1: memfds */
    uint32_t force_id;   /* != 0: the next new object, map or program built
                          * piece by piece takes this id, and a map reopens
                          * its region file (a tool restored after a restart) */
    /* registry_load: where programs userspace cannot run go */
    enum bpfg_kernel_mode kernel_mode;
    int adopt_fd; /* >= 0: the next registry_add_map takes this kernel map (map.adopt) or ticket region */
    /* Empty files "PID.N" in spare_dirfd (state.c; -1: none), made while
     * the server is idle: a new region (renamed into map_dirfd) or a
     * tool's record (state_write) takes one instead of making an inode
     * (most of a tool's BPF_MAP_CREATE on a disk-backed state directory). */
    int spare_dirfd;
    struct reg_spare {
        int fd;
        uint32_t seq; /* N of its name */
    } spares[REG_SPARES];
    uint32_t nspares, spare_seq;
    bool spares_failed; /* one could not be made: no more tries */
};

/* An object loaded again after a restart (state.c): its ids, and its maps'
 * regions, files `<id>` in map_dirfd, reopened with their data instead of
 * created. */
struct reg_restore {
    uint32_t obj_id;
    size_t nmaps, nprogs;
    char (*map_names)[BPFG_MAP_NAME_LEN];
    uint32_t *map_ids;  /* by name */
    uint32_t *prog_ids; /* by the object's program index */
};

void registry_init(struct registry *r);
void registry_destroy(struct registry *r); /* removes its spare files */

/* Whether the spare files want topping up (both dirfds set, fewer than
 * REG_SPARES, none failed), and one more made: 0 or a negative errno
 * (then no more are tried). */
bool registry_spares_low(const struct registry *r);
int registry_make_spare(struct registry *r);
/* The oldest spare file: its fd (the caller's now) and its name in
 * spare_dirfd, or -1 when there is none. */
int registry_take_spare(struct registry *r, char *name, size_t len);

/* Loads an object from a path or bytes, creating its maps. On failure
 * returns a negative errno and writes the reason into err. */
int registry_load(struct registry *r, const char *path, const void *data, size_t len, const char *name,
                  struct reg_object **out, char *err, size_t errlen);
/* The same, with the ids and maps of restore (registry_load with NULL). */
int registry_load_as(struct registry *r, const char *path, const void *data, size_t len, const char *name,
                     const struct reg_restore *restore, struct reg_object **out, char *err, size_t errlen);
int registry_unload(struct registry *r, uint32_t obj_id);

struct reg_object *registry_object(const struct registry *r, uint32_t id);
struct reg_map *registry_map(const struct registry *r, uint32_t id);
struct reg_prog *registry_prog(const struct registry *r, uint32_t id);

/* Objects built piece by piece (`bpfgraft run`: a libbpf tool's bpf()
 * calls). The object starts empty with room for max_maps maps and
 * max_progs programs: entries never move, so reg_prog.prog stays valid. */
int registry_new_object(struct registry *r, const char *name, size_t max_maps, size_t max_progs,
                        struct reg_object **out);
/* Creates a map in o from spec; -E2BIG when o is full. */
/* A map ticket of a `bpfgraft run` tool: a map id taken now and its
 * region file, empty, which the tool lays a map out in (then
 * registry_add_map with force_id and adopt_fd). The file's fd or -errno
 * (-EOPNOTSUPP without a state directory). forced: a restored ticket's
 * id, its file reopened. */
int registry_map_ticket(struct registry *r, uint32_t forced, uint32_t *id);
/* The file of a ticket never used (no map of that id): removed. */
void registry_drop_ticket(struct registry *r, uint32_t id);
int registry_add_map(struct registry *r, struct reg_object *o, const struct bpfg_map_spec *spec,
                     enum bpfg_map_kind kind, struct reg_map **out, char *err, size_t errlen);
/* Adds a program to o, taking ownership of prog's strings and insns (prog
 * is zeroed); -E2BIG when o is full (prog untouched). */
int registry_add_prog(struct registry *r, struct reg_object *o, struct bpfg_obj_prog *prog, struct reg_prog **out);
/* Index of map id in o's map list, or -ENOENT. */
int registry_object_map_index(const struct reg_object *o, uint32_t map_id);

/* By name: -ENOENT if none, -EEXIST if several (ambiguous). */
int registry_map_by_name(const struct registry *r, const char *name, struct reg_map **out);
int registry_prog_by_name(const struct registry *r, const char *name, struct reg_prog **out);

#endif
