#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernel.h"
#include "log.h"
#include "registry.h"

enum { ID_OBJECT, ID_MAP, ID_PROG };

void registry_init(struct registry *r)
{
    memset(r, 0, sizeof(*r));
    for (int i = 0; i < 3; i++)
        r->next_id[i] = 1;
    r->map_dirfd = -1;
    r->spare_dirfd = -1;
    r->adopt_fd = -1;
}

static int push(void ***arr, size_t *n, void *item)
{
    void **bigger = realloc(*arr, (*n + 1) * sizeof(void *));
    if (!bigger)
        return -ENOMEM;
    *arr = bigger;
    bigger[(*n)++] = item;
    return 0;
}

static void remove_at(void **arr, size_t *n, size_t i)
{
    memmove(&arr[i], &arr[i + 1], (*n - i - 1) * sizeof(void *));
    (*n)--;
}

/* Map creation callback of the loader: our maps are memfd regions; the
 * object receives a dup of the region's fd and the registry keeps the
 * handle, matched up by fd after the load. */
struct create_ctx {
    struct bpfg_map **handles;
    size_t n;
    char *err;
    size_t errlen;
    int dirfd;                         /* registry.map_dirfd */
    const struct reg_restore *restore; /* NULL: a new object */
    const struct registry *reg;        /* its adopted maps */
};

/* A saved map name against an object's: the registry keeps the kernel's
 * BPF_OBJ_NAME_LEN - 1 characters (libbpf's "__bpf_usdt_specs" is kept as
 * "__bpf_usdt_spec"). */
static bool same_map_name(const char *saved, const char *name)
{
    return strcmp(saved, name) == 0 ||
           (strlen(saved) == BPF_OBJ_NAME_LEN - 1 && !strncmp(saved, name, BPF_OBJ_NAME_LEN - 1));
}

/* A map of a restored object: its region file, data and all. */
static int reopen_map(struct create_ctx *ctx, const char *name, struct bpfg_map **map)
{
    const struct reg_restore *rs = ctx->restore;
    for (size_t i = 0; i < rs->nmaps; i++) {
        if (!same_map_name(rs->map_names[i], name))
            continue;
        char file[16];
        snprintf(file, sizeof(file), "%u", rs->map_ids[i]);
        int fd = openat(ctx->dirfd, file, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
            snprintf(ctx->err, ctx->errlen, "map '%s': region %u: %s", name, rs->map_ids[i], strerror(errno));
            return -errno;
        }
        int err = bpfg_map_upgrade_fd(fd, true); /* a region of an older build's layout */
        if (!err)
            err = bpfg_map_open_fd(fd, map);
        close(fd);
        if (err)
            snprintf(ctx->err, ctx->errlen, "map '%s': region %u: %s", name, rs->map_ids[i], bpfg_map_last_error());
        return err;
    }
    snprintf(ctx->err, ctx->errlen, "map '%s' has no saved region", name);
    return -ENOENT;
}

/* A new map region: a file in the state directory, named by inode until
 * its id is known (registry_load renames it), or a memfd. */
static int new_map(struct create_ctx *ctx, const struct bpfg_map_spec *spec, struct bpfg_map **map)
{
    if (ctx->dirfd < 0)
        return bpfg_map_create(spec, map);
    char tmp[48], file[48];
    static unsigned counter;
    snprintf(tmp, sizeof(tmp), "new.%d.%u", (int)getpid(), counter++);
    int err = bpfg_map_create_in(spec, ctx->dirfd, tmp, map);
    struct stat st;
    if (err)
        return err;
    if (fstat(bpfg_map_fd(*map), &st) != 0 || (snprintf(file, sizeof(file), "ino.%lu", (unsigned long)st.st_ino),
                                               renameat(ctx->dirfd, tmp, ctx->dirfd, file) != 0)) {
        err = -errno;
        unlinkat(ctx->dirfd, tmp, 0);
        bpfg_map_close(*map);
        return err;
    }
    return 0;
}

/* A map of the object named like an adopted kernel map: a handle on that
 * map (1), after checking the definitions match; 0 when none is adopted. */
static int adopted_map(struct create_ctx *ctx, const struct bpfg_map_def *def, struct bpfg_map **map)
{
    for (size_t i = 0; def->kind == BPFG_MAP_USER && i < ctx->reg->nmaps; i++) {
        const struct reg_map *a = ctx->reg->maps[i];
        struct bpfg_map_info in;
        if (!a->adopted || !same_map_name(a->name, def->name))
            continue;
        bpfg_map_get_info(a->map, &in);
        if (in.type != def->type || in.key_size != def->key_size || in.value_size != def->value_size ||
            in.max_entries != def->max_entries) {
            snprintf(ctx->err, ctx->errlen,
                     "map '%s': the adopted kernel map of that name is a %s of %u/%u-byte keys/values and %u "
                     "entries; the object defines a %s of %u/%u and %u",
                     def->name, bpfg_map_type_name(in.type), in.key_size, in.value_size, in.max_entries,
                     bpfg_map_type_name(def->type), def->key_size, def->value_size, def->max_entries);
            return -EINVAL;
        }
        int err = bpfg_map_open_fd(bpfg_map_fd(a->map), map);
        return err ? err : 1;
    }
    return 0;
}

static int create_map(void *user, const struct bpfg_map_def *def)
{
    struct create_ctx *ctx = user;
    struct bpfg_map_spec spec = {
        .type = def->type,
        .key_size = def->key_size,
        .value_size = def->value_size,
        .max_entries = def->max_entries,
        .map_flags = def->flags,
        .map_extra = def->map_extra,
        .name = def->name,
        .btf_key_type_id = def->btf_key_type_id,
        .btf_value_type_id = def->btf_value_type_id,
        .inner = {def->inner.type, def->inner.key_size, def->inner.value_size, def->inner.max_entries,
                  def->inner.flags},
    };
    if (def->kind != BPFG_MAP_USER) {
        spec.map_flags |= BPFG_F_GLOBAL_DATA;
        if (def->kind == BPFG_MAP_RODATA || def->kind == BPFG_MAP_KCONFIG)
            spec.map_flags |= BPF_F_RDONLY_PROG;
    }
    struct bpfg_map *map;
    int err = ctx->restore ? 0 : adopted_map(ctx, def, &map);
    if (err < 0)
        return err;
    if (!err)
        err = ctx->restore ? reopen_map(ctx, def->name, &map) : new_map(ctx, &spec, &map);
    else
        err = 0;
    if (err) {
        if (!ctx->restore)
            snprintf(ctx->err, ctx->errlen, "map '%s': %s", def->name, bpfg_map_last_error());
        return err;
    }
    if (def->init_data && def->init_size && !ctx->restore) {
        size_t size;
        void *area = bpfg_map_value_area(map, &size, NULL);
        if (!area || size < def->init_size) {
            bpfg_map_close(map);
            snprintf(ctx->err, ctx->errlen, "map '%s': no room for its initial data", def->name);
            return -EINVAL;
        }
        memcpy(area, def->init_data, def->init_size);
    }
    if ((def->kind == BPFG_MAP_RODATA || def->kind == BPFG_MAP_KCONFIG) && !ctx->restore)
        bpfg_map_freeze(map);
    int fd = dup(bpfg_map_fd(map));
    void **grown = fd >= 0 ? realloc(ctx->handles, (ctx->n + 1) * sizeof(void *)) : NULL;
    if (!grown) {
        err = fd < 0 ? -errno : -ENOMEM;
        if (fd >= 0)
            close(fd);
        bpfg_map_close(map);
        return err;
    }
    ctx->handles = (struct bpfg_map **)grown;
    ctx->handles[ctx->n++] = map;
    return fd;
}

static void free_object(struct reg_object *o)
{
    if (!o)
        return;
    kernel_obj_free(o->kernel);
    bpfg_obj_free(o->obj);
    free(o->name);
    free(o->path);
    free(o->map_ids);
    free(o->prog_ids);
    free(o);
}

/* Finds the handle created for the object's map: its fd is a dup of the
 * handle's, so both name the same memfd inode. */
static struct bpfg_map *take_handle(struct create_ctx *ctx, int fd)
{
    struct stat want, have;
    if (fstat(fd, &want) != 0)
        return NULL;
    for (size_t i = 0; i < ctx->n; i++) {
        if (!ctx->handles[i] || fstat(bpfg_map_fd(ctx->handles[i]), &have) != 0)
            continue;
        /* kernel maps share one anonymous inode: the same open file, then */
        bool same = S_ISREG(want.st_mode) ||
                    syscall(SYS_kcmp, getpid(), getpid(), KCMP_FILE, fd, bpfg_map_fd(ctx->handles[i])) == 0;
        if (same && have.st_ino == want.st_ino && have.st_dev == want.st_dev) {
            struct bpfg_map *m = ctx->handles[i];
            ctx->handles[i] = NULL;
            return m;
        }
    }
    return NULL;
}

/* Map-in-map slots the object initialises (`.values = {...}`): the inner
 * maps' ids, as libbpf's update with their fds does in the kernel. */
static void fill_inner_slots(struct registry *r, struct reg_object *o)
{
    for (size_t i = 0; i < o->map_cnt; i++) {
        const struct bpfg_obj_map *om = &o->obj->maps[i];
        struct reg_map *outer = registry_map(r, o->map_ids[i]);
        for (uint32_t k = 0; outer && k < om->init_slots_cnt; k++) {
            int32_t j = om->init_slots[k];
            struct reg_map *in = j >= 0 ? registry_map(r, o->map_ids[j]) : NULL;
            struct bpfg_map_info info;
            if (!in)
                continue;
            bpfg_map_get_info(in->map, &info);
            int e = bpfg_map_inner_check(outer->map, &info);
            if (!e)
                e = bpfg_map_update_copy(outer->map, &k, &in->id, BPF_ANY);
            if (e)
                srv_log(SRV_WARN, "map '%s': slot %u: inner map '%s': %s", outer->name, k, in->name, strerror(-e));
        }
    }
}

int registry_load(struct registry *r, const char *path, const void *data, size_t len, const char *name,
                  struct reg_object **out, char *err, size_t errlen)
{
    return registry_load_as(r, path, data, len, name, NULL, out, err, errlen);
}

static uint32_t restored_map_id(const struct reg_restore *rs, const char *name)
{
    for (size_t i = 0; i < rs->nmaps; i++)
        if (same_map_name(rs->map_names[i], name))
            return rs->map_ids[i];
    return 0;
}

/* Removes a map's region file (named by fmt: "ino.%lu" of the region's
 * inode, or "%u" of id); the region lives on while mapped. */
static void drop_map_file(const struct registry *r, struct bpfg_map *map, const char *fmt, uint32_t id)
{
    struct stat st;
    char file[48];
    if (r->map_dirfd < 0 || fstat(bpfg_map_fd(map), &st) != 0)
        return;
    if (id)
        snprintf(file, sizeof(file), fmt, id);
    else
        snprintf(file, sizeof(file), fmt, (unsigned long)st.st_ino);
    struct stat have;
    /* only the file of this very region (a tool's memfd map has none) */
    if (fstatat(r->map_dirfd, file, &have, 0) == 0 && have.st_ino == st.st_ino && have.st_dev == st.st_dev)
        unlinkat(r->map_dirfd, file, 0);
}

/* Ids: the next ones, or those of a restored object (the counters then
 * move past them). Map files named by inode get their id as name. */
static uint32_t take_id(struct registry *r, int kind, uint32_t forced)
{
    if (!forced)
        return r->next_id[kind]++;
    if (forced >= r->next_id[kind])
        r->next_id[kind] = forced + 1;
    return forced;
}

static void name_map_file(const struct registry *r, const struct reg_map *m)
{
    struct stat st;
    char from[48], to[16];
    if (r->map_dirfd < 0 || fstat(bpfg_map_fd(m->map), &st) != 0)
        return;
    snprintf(from, sizeof(from), "ino.%lu", (unsigned long)st.st_ino);
    snprintf(to, sizeof(to), "%u", m->id);
    if (renameat(r->map_dirfd, from, r->map_dirfd, to) != 0 && errno != ENOENT)
        srv_log(SRV_WARN, "map %u: naming its region file: %s", m->id, strerror(errno));
}

int registry_load_as(struct registry *r, const char *path, const void *data, size_t len, const char *name,
                     const struct reg_restore *restore, struct reg_object **out, char *err, size_t errlen)
{
    struct create_ctx ctx = {.err = err, .errlen = errlen, .dirfd = r->map_dirfd, .restore = restore, .reg = r};
    struct bpfg_obj_opts opts = {.name = name, .create_map = create_map, .user = &ctx, .kernel = r->kernel_mode};
    struct bpfg_obj *obj;
    int ret = 0;

    err[0] = 0;
    obj = path ? bpfg_obj_open_file(path, &opts, err, errlen) : bpfg_obj_open_mem(data, len, &opts, err, errlen);
    if (!obj) {
        ret = errno ? -errno : -EINVAL;
        goto fail_handles;
    }
    /* The loader creates maps in its own order: one handle per map. */
    if (ctx.n != obj->map_cnt) {
        snprintf(err, errlen, "internal: %zu maps created for %zu map definitions", ctx.n, obj->map_cnt);
        ret = -EPROTO;
        goto fail_obj;
    }

    struct bpfg_map **handles = calloc(obj->map_cnt + 1, sizeof(*handles));
    if (!handles) {
        ret = -ENOMEM;
        goto fail_obj;
    }
    for (size_t i = 0; i < obj->map_cnt; i++) {
        handles[i] = take_handle(&ctx, obj->maps[i].fd);
        if (!handles[i]) {
            snprintf(err, errlen, "internal: no region for map '%s'", obj->maps[i].name);
            for (size_t k = 0; k < i; k++)
                bpfg_map_close(handles[k]);
            free(handles);
            ret = -EPROTO;
            goto fail_obj;
        }
    }
    /* Every handle now lives in handles[]; ctx keeps none. */
    free(ctx.handles);
    ctx.handles = handles;
    ctx.n = obj->map_cnt;

    struct reg_object *o = calloc(1, sizeof(*o));
    if (!o) {
        ret = -ENOMEM;
        goto fail_obj;
    }
    o->obj = obj;
    o->name = strdup(obj->name ? obj->name : "obj");
    o->path = path ? strdup(path) : NULL;
    o->map_ids = calloc(obj->map_cnt + 1, sizeof(uint32_t));
    o->prog_ids = calloc(obj->prog_cnt + 1, sizeof(uint32_t));
    if (!o->name || (path && !o->path) || !o->map_ids || !o->prog_ids) {
        free_object(o); /* frees obj too */
        ret = -ENOMEM;
        goto fail_handles;
    }

    /* Allocate every entry before publishing any, so failure leaves the
     * registry untouched. */
    size_t nm = obj->map_cnt, np = obj->prog_cnt;
    struct reg_map **maps = calloc(nm + 1, sizeof(*maps));
    struct reg_prog **progs = calloc(np + 1, sizeof(*progs));
    void **mgrow = realloc(r->maps, (r->nmaps + nm + 1) * sizeof(void *));
    if (mgrow)
        r->maps = (struct reg_map **)mgrow;
    void **pgrow = realloc(r->progs, (r->nprogs + np + 1) * sizeof(void *));
    if (pgrow)
        r->progs = (struct reg_prog **)pgrow;
    ret = (!maps || !progs || !mgrow || !pgrow) ? -ENOMEM : 0;
    for (size_t i = 0; i < nm && !ret; i++)
        if (!(maps[i] = calloc(1, sizeof(**maps))))
            ret = -ENOMEM;
    for (size_t i = 0; i < np && !ret; i++)
        if (!(progs[i] = calloc(1, sizeof(**progs))))
            ret = -ENOMEM;
    if (!ret)
        ret = push((void ***)&r->objects, &r->nobjects, o);
    if (ret) {
        for (size_t i = 0; maps && i < nm; i++)
            free(maps[i]);
        for (size_t i = 0; progs && i < np; i++)
            free(progs[i]);
        free(maps);
        free(progs);
        free_object(o);
        goto fail_handles;
    }

    o->id = take_id(r, ID_OBJECT, restore ? restore->obj_id : 0);
    for (size_t i = 0; i < nm; i++) {
        const struct bpfg_obj_map *om = &obj->maps[i];
        struct reg_map *m = maps[i];
        m->id = take_id(r, ID_MAP, restore ? restored_map_id(restore, om->name) : 0);
        m->obj_id = o->id;
        snprintf(m->name, sizeof(m->name), "%s", om->name);
        m->kind = om->kind;
        m->btf_key_type_id = om->btf_key_type_id;
        m->btf_value_type_id = om->btf_value_type_id;
        m->map = ctx.handles[i];
        ctx.handles[i] = NULL;
        if (!restore)
            name_map_file(r, m);
        o->map_ids[i] = m->id;
        r->maps[r->nmaps++] = m;
    }
    o->map_cnt = nm;
    fill_inner_slots(r, o);
    for (size_t i = 0; i < np; i++) {
        struct reg_prog *p = progs[i];
        p->id = take_id(r, ID_PROG, restore && i < restore->nprogs ? restore->prog_ids[i] : 0);
        p->obj_id = o->id;
        p->prog = &obj->progs[i];
        o->prog_ids[i] = p->id;
        r->progs[r->nprogs++] = p;
    }
    o->prog_cnt = np;
    free(maps);
    free(progs);
    free(ctx.handles);
    srv_log(SRV_INFO, "object %u '%s' loaded: %zu programs, %zu maps%s%s", o->id, o->name, np, nm, path ? " from " : "",
            path ? path : "");
    *out = o;
    return 0;

fail_obj:
    bpfg_obj_free(obj);
fail_handles:
    for (size_t i = 0; i < ctx.n; i++) {
        if (ctx.handles[i] && !restore)
            drop_map_file(r, ctx.handles[i], "ino.%lu", 0);
        bpfg_map_close(ctx.handles[i]);
    }
    free(ctx.handles);
    if (!err[0])
        snprintf(err, errlen, "%s", strerror(-ret));
    return ret;
}

int registry_new_object(struct registry *r, const char *name, size_t max_maps, size_t max_progs,
                        struct reg_object **out)
{
    struct reg_object *o = calloc(1, sizeof(*o));
    struct bpfg_obj *obj = calloc(1, sizeof(*obj));
    if (!o || !obj) {
        free(o);
        free(obj);
        return -ENOMEM;
    }
    o->obj = obj;
    obj->name = strdup(name);
    o->name = strdup(name);
    obj->maps = calloc(max_maps + 1, sizeof(*obj->maps));
    obj->progs = calloc(max_progs + 1, sizeof(*obj->progs));
    o->map_ids = calloc(max_maps + 1, sizeof(uint32_t));
    o->prog_ids = calloc(max_progs + 1, sizeof(uint32_t));
    if (!obj->name || !o->name || !obj->maps || !obj->progs || !o->map_ids || !o->prog_ids ||
        push((void ***)&r->objects, &r->nobjects, o) != 0) {
        free_object(o);
        return -ENOMEM;
    }
    o->map_cap = max_maps;
    o->prog_cap = max_progs;
    o->id = take_id(r, ID_OBJECT, r->force_id);
    *out = o;
    return 0;
}

/* ---- spare files ---- */

static void spare_name(uint32_t seq, char *name, size_t len)
{
    snprintf(name, len, "%d.%u", (int)getpid(), seq);
}

bool registry_spares_low(const struct registry *r)
{
    return r->map_dirfd >= 0 && r->spare_dirfd >= 0 && r->nspares < REG_SPARES && !r->spares_failed;
}

int registry_make_spare(struct registry *r)
{
    char name[48];
    if (!registry_spares_low(r))
        return 0;
    uint32_t seq = r->spare_seq++;
    spare_name(seq, name, sizeof(name));
    int fd = openat(r->spare_dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        r->spares_failed = true;
        return -errno;
    }
    r->spares[r->nspares++] = (struct reg_spare){fd, seq};
    return 0;
}

int registry_take_spare(struct registry *r, char *name, size_t len)
{
    if (!r->nspares)
        return -1;
    struct reg_spare sp = r->spares[0];
    memmove(&r->spares[0], &r->spares[1], --r->nspares * sizeof(r->spares[0]));
    spare_name(sp.seq, name, len);
    return sp.fd;
}

static void spares_remove(struct registry *r)
{
    char name[48];
    while (r->nspares) {
        int fd = registry_take_spare(r, name, sizeof(name));
        unlinkat(r->spare_dirfd, name, 0);
        close(fd);
    }
}

/* An empty region file for map id: a spare, else a new one in
 * map_dirfd; its name goes to tmp, its directory to *dir. fd or -errno. */
static int empty_region_file(struct registry *r, uint32_t id, char *tmp, size_t len, int *dir)
{
    int fd = registry_take_spare(r, tmp, len);
    *dir = r->spare_dirfd;
    if (fd >= 0)
        return fd;
    snprintf(tmp, len, "new.%d.%u", (int)getpid(), id);
    *dir = r->map_dirfd;
    fd = openat(*dir, tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    return fd < 0 ? -errno : fd;
}

/* A new region file `file`: a spare renamed, else made (tmp then renamed). */
static int new_region_file(struct registry *r, const struct bpfg_map_spec *spec, const char *file, uint32_t id,
                           struct bpfg_map **map)
{
    char tmp[48];
    int dir, fd = empty_region_file(r, id, tmp, sizeof(tmp), &dir);
    if (fd < 0)
        return fd;
    int err = bpfg_map_create_fd(spec, fd, map);
    close(fd);
    if (!err && renameat(dir, tmp, r->map_dirfd, file) != 0) {
        err = -errno;
        bpfg_map_close(*map);
    }
    if (err)
        unlinkat(dir, tmp, 0);
    return err;
}

int registry_map_ticket(struct registry *r, uint32_t forced, uint32_t *id)
{
    char file[16], tmp[48];
    if (r->map_dirfd < 0)
        return -EOPNOTSUPP; /* memfd regions: nothing a tool could lay out for a restart to find */
    *id = take_id(r, ID_MAP, forced);
    snprintf(file, sizeof(file), "%u", *id);
    if (forced) {
        int fd = openat(r->map_dirfd, file, O_RDWR | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
    }
    int dir, fd = empty_region_file(r, *id, tmp, sizeof(tmp), &dir);
    if (fd >= 0 && renameat(dir, tmp, r->map_dirfd, file) != 0) {
        int err = -errno;
        unlinkat(dir, tmp, 0);
        close(fd);
        return err;
    }
    return fd;
}

void registry_drop_ticket(struct registry *r, uint32_t id)
{
    char file[16];
    snprintf(file, sizeof(file), "%u", id);
    if (r->map_dirfd >= 0 && !registry_map(r, id))
        unlinkat(r->map_dirfd, file, 0);
}

/* The region of a map of a built object: the file `id` in the state
 * directory (a restarted server reopens it, r->force_id set: restoring),
 * or a memfd. */
static int tool_region(struct registry *r, const struct bpfg_map_spec *spec, uint32_t id, struct bpfg_map **map)
{
    char file[16];
    if (r->adopt_fd >= 0)
        return bpfg_map_open_fd(r->adopt_fd, map);
    if (r->map_dirfd < 0)
        return bpfg_map_create(spec, map);
    snprintf(file, sizeof(file), "%u", id);
    if (r->force_id) {
        int fd = openat(r->map_dirfd, file, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return -errno;
        int err = bpfg_map_upgrade_fd(fd, true); /* a region of an older build's layout */
        if (!err)
            err = bpfg_map_open_fd(fd, map);
        close(fd);
        return err;
    }
    return new_region_file(r, spec, file, id, map);
}

int registry_add_map(struct registry *r, struct reg_object *o, const struct bpfg_map_spec *spec,
                     enum bpfg_map_kind kind, struct reg_map **out, char *err, size_t errlen)
{
    if (o->map_cnt >= o->map_cap) {
        snprintf(err, errlen, "at most %zu maps per object", o->map_cap);
        return -E2BIG;
    }
    struct reg_map *m = calloc(1, sizeof(*m));
    char *name = strdup(spec->name ? spec->name : "");
    void **grown = m && name ? realloc(r->maps, (r->nmaps + 1) * sizeof(void *)) : NULL;
    if (!grown) {
        free(m);
        free(name);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->maps = (struct reg_map **)grown;
    struct bpfg_map *map;
    uint32_t id = take_id(r, ID_MAP, r->force_id);
    int e = tool_region(r, spec, id, &map);
    int fd = e ? -1 : dup(bpfg_map_fd(map));
    if (e || fd < 0) {
        if (!e) {
            e = -errno;
            bpfg_map_close(map);
        }
        snprintf(err, errlen, "map '%s': %s", name,
                 e == -EINVAL || e == -EPROTONOSUPPORT ? bpfg_map_last_error() : strerror(-e));
        free(m);
        free(name);
        return e;
    }
    struct bpfg_obj_map *om = &o->obj->maps[o->map_cnt];
    *om = (struct bpfg_obj_map){.name = name,
                                .kind = kind,
                                .type = spec->type,
                                .key_size = spec->key_size,
                                .value_size = spec->value_size,
                                .max_entries = spec->max_entries,
                                .flags = spec->map_flags,
                                .btf_key_type_id = spec->btf_key_type_id,
                                .btf_value_type_id = spec->btf_value_type_id,
                                .map_extra = spec->map_extra,
                                .inner = {spec->inner.type, spec->inner.key_size, spec->inner.value_size,
                                          spec->inner.max_entries, spec->inner.map_flags},
                                .fd = fd};
    m->id = id;
    m->obj_id = o->id;
    snprintf(m->name, sizeof(m->name), "%s", name);
    m->kind = kind;
    m->btf_key_type_id = spec->btf_key_type_id;
    m->btf_value_type_id = spec->btf_value_type_id;
    m->map = map;
    o->map_ids[o->map_cnt++] = m->id;
    o->obj->map_cnt++;
    r->maps[r->nmaps++] = m;
    *out = m;
    return 0;
}

int registry_add_prog(struct registry *r, struct reg_object *o, struct bpfg_obj_prog *prog, struct reg_prog **out)
{
    if (o->prog_cnt >= o->prog_cap)
        return -E2BIG;
    struct reg_prog *p = calloc(1, sizeof(*p));
    void **grown = p ? realloc(r->progs, (r->nprogs + 1) * sizeof(void *)) : NULL;
    if (!grown) {
        free(p);
        return -ENOMEM;
    }
    r->progs = (struct reg_prog **)grown;
    o->obj->progs[o->prog_cnt] = *prog;
    memset(prog, 0, sizeof(*prog));
    o->obj->prog_cnt++;
    p->id = take_id(r, ID_PROG, r->force_id);
    p->obj_id = o->id;
    p->prog = &o->obj->progs[o->prog_cnt];
    o->prog_ids[o->prog_cnt++] = p->id;
    r->progs[r->nprogs++] = p;
    *out = p;
    return 0;
}

int registry_object_map_index(const struct reg_object *o, uint32_t map_id)
{
    for (size_t i = 0; i < o->map_cnt; i++)
        if (o->map_ids[i] == map_id)
            return (int)i;
    return -ENOENT;
}

static int unload(struct registry *r, uint32_t obj_id, bool remove_files);

int registry_unload(struct registry *r, uint32_t obj_id)
{
    return unload(r, obj_id, true);
}

static int unload(struct registry *r, uint32_t obj_id, bool remove_files)
{
    size_t oi;
    for (oi = 0; oi < r->nobjects && r->objects[oi]->id != obj_id; oi++)
        ;
    if (oi == r->nobjects)
        return -ENOENT;
    struct reg_object *o = r->objects[oi];
    for (size_t i = r->nmaps; i-- > 0;) {
        if (r->maps[i]->obj_id != obj_id)
            continue;
        if (remove_files)
            drop_map_file(r, r->maps[i]->map, "%u", r->maps[i]->id);
        bpfg_map_close(r->maps[i]->map);
        free(r->maps[i]);
        remove_at((void **)r->maps, &r->nmaps, i);
    }
    for (size_t i = r->nprogs; i-- > 0;) {
        if (r->progs[i]->obj_id != obj_id)
            continue;
        free(r->progs[i]);
        remove_at((void **)r->progs, &r->nprogs, i);
    }
    remove_at((void **)r->objects, &r->nobjects, oi);
    if (remove_files) /* unloaded for good, not a server stop */
        kernel_unpin(o->kernel);
    srv_log(SRV_INFO, "object %u '%s' unloaded", o->id, o->name);
    free_object(o);
    return 0;
}

void registry_destroy(struct registry *r)
{
    /* the region files stay: a restarted server reopens them */
    spares_remove(r);
    while (r->nobjects)
        unload(r, r->objects[r->nobjects - 1]->id, false);
    free(r->objects);
    free(r->maps);
    free(r->progs);
    int map_dirfd = r->map_dirfd, spare_dirfd = r->spare_dirfd; /* state.c's */
    memset(r, 0, sizeof(*r));
    r->map_dirfd = map_dirfd;
    r->spare_dirfd = spare_dirfd;
}

struct reg_object *registry_object(const struct registry *r, uint32_t id)
{
    for (size_t i = 0; i < r->nobjects; i++)
        if (r->objects[i]->id == id)
            return r->objects[i];
    return NULL;
}

struct reg_map *registry_map(const struct registry *r, uint32_t id)
{
    for (size_t i = 0; i < r->nmaps; i++)
        if (r->maps[i]->id == id)
            return r->maps[i];
    return NULL;
}

struct reg_prog *registry_prog(const struct registry *r, uint32_t id)
{
    for (size_t i = 0; i < r->nprogs; i++)
        if (r->progs[i]->id == id)
            return r->progs[i];
    return NULL;
}

int registry_map_by_name(const struct registry *r, const char *name, struct reg_map **out)
{
    int found = 0;
    for (size_t i = 0; i < r->nmaps; i++)
        if (strcmp(r->maps[i]->name, name) == 0 && found++ == 0)
            *out = r->maps[i];
    return found == 1 ? 0 : found ? -EEXIST : -ENOENT;
}

int registry_prog_by_name(const struct registry *r, const char *name, struct reg_prog **out)
{
    int found = 0;
    for (size_t i = 0; i < r->nprogs; i++)
        if (strcmp(r->progs[i]->prog->name, name) == 0 && found++ == 0)
            *out = r->progs[i];
    return found == 1 ? 0 : found ? -EEXIST : -ENOENT;
}
