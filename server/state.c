/* The state directory of restarts (state.h). Every file is written to a
 * temporary name and renamed into place, so a server killed at any moment
 * leaves either the old or the new version. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernel.h"
#include "log.h"
#include "maps.h"
#include "registry.h"
#include "server.h"
#include "state.h"
#include "syscalls.h"
#include "targets.h"
#include "tool.h"

#define REC_MAGIC 0x43455247u /* "GREC" */
#define REC_VERSION 1
/* struct target's size in the oldest build whose records this one reads:
 * the fields up to the re-injection ones (targets.h) */
#define REC_OLDEST_TARGET_SIZE offsetof(struct target, replaced_base)

static const char *const subdirs[] = {"objects", "maps", "targets", "tools", "settings", "spares"};

static int mkdir_at(int dirfd, const char *name)
{
    if (mkdirat(dirfd, name, 0700) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Writes the parts to fd and closes it. */
static int write_parts(int fd, const void *const *parts, const size_t *lens, size_t nparts)
{
    int err = 0;
    for (size_t i = 0; i < nparts && !err; i++) {
        const char *p = parts[i];
        for (size_t left = lens[i]; left && !err;) {
            ssize_t n = write(fd, p, left);
            if (n < 0 && errno != EINTR)
                err = -errno;
            else if (n > 0)
                p += n, left -= (size_t)n;
        }
    }
    if (close(fd) != 0 && !err)
        err = -errno;
    return err;
}

/* Moves fromdir/from to todir/to, replacing what is there at once. Over
 * an existing file it swaps the two (RENAME_EXCHANGE) and unlinks the old
 * one: ext4 answers a rename over an existing file by starting the new
 * file's writeback (auto_da_alloc), 0.1-3 ms a record on a request's path
 * against ~20 us. A kill at any moment still leaves the old or the new
 * version; after a power loss the new one may be empty (no record was
 * ever fsynced: that writeback was started, never waited for). */
static int replace_at(int fromdir, const char *from, int todir, const char *to)
{
    if (renameat2(fromdir, from, todir, to, RENAME_EXCHANGE) == 0) {
        unlinkat(fromdir, from, 0); /* now the old version */
        return 0;
    }
    if (errno != ENOENT && errno != EINVAL) /* EINVAL: no exchange on this file system */
        return -errno;
    return renameat(fromdir, from, todir, to) != 0 ? -errno : 0;
}

/* Writes the parts to dir/name through a temporary file. */
static int write_file(int dirfd, const char *name, const void *const *parts, const size_t *lens, size_t nparts)
{
    char tmp[64];
    snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int err = write_parts(fd, parts, lens, nparts);
    if (!err)
        err = replace_at(dirfd, tmp, dirfd, name);
    if (err)
        unlinkat(dirfd, tmp, 0);
    return err;
}

/* The whole of dir/name in a malloc'd buffer (NUL-terminated). */
static int read_file(int dirfd, const char *name, char **out, size_t *len)
{
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0)
        return -errno;
    if (fstat(fd, &st) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    ssize_t n = buf ? pread(fd, buf, (size_t)st.st_size, 0) : -1;
    int err = !buf ? -ENOMEM : n != st.st_size ? (n < 0 ? -errno : -EIO) : 0;
    close(fd);
    if (err) {
        free(buf);
        return err;
    }
    buf[n] = 0;
    *out = buf;
    *len = (size_t)n;
    return 0;
}

static int sub_fd(const struct server *s, const char *name)
{
    return openat(s->state_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* ---- objects ---- */

static char *meta_text(const struct server *s, const struct reg_object *o)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        return NULL;
    fprintf(f, "name %s\npath %s\n", o->name, o->path ? o->path : "-");
    for (size_t i = 0; i < o->map_cnt; i++) {
        const struct reg_map *m = registry_map(&s->reg, o->map_ids[i]);
        if (m)
            fprintf(f, "map %u %s\n", m->id, m->name);
    }
    for (size_t i = 0; i < o->prog_cnt; i++)
        fprintf(f, "prog %u\n", o->prog_ids[i]);
    return fclose(f) == 0 ? text : (free(text), NULL);
}

void state_object_loaded(struct server *s, const struct reg_object *o, const void *bytes, size_t len)
{
    char name[32], *data = NULL, *meta = NULL;
    int dir = sub_fd(s, "objects"), err = dir < 0 ? -errno : 0;
    if (!err && !bytes)
        err = read_file(AT_FDCWD, o->path, &data, &len);
    if (!err && !(meta = meta_text(s, o)))
        err = -ENOMEM;
    if (!err) {
        const void *part[] = {bytes ? bytes : data};
        snprintf(name, sizeof(name), "%u.o", o->id);
        err = write_file(dir, name, part, &len, 1);
    }
    if (!err) {
        const void *part[] = {meta};
        size_t mlen = strlen(meta);
        snprintf(name, sizeof(name), "%u.meta", o->id);
        err = write_file(dir, name, part, &mlen, 1);
    }
    if (err)
        srv_log(SRV_WARN, "object %u will not survive a restart: %s", o->id, strerror(-err));
    free(data);
    free(meta);
    if (dir >= 0)
        close(dir);
}

void state_object_unloaded(struct server *s, uint32_t obj_id)
{
    char name[32];
    int dir = sub_fd(s, "objects");
    if (dir < 0)
        return;
    snprintf(name, sizeof(name), "%u.meta", obj_id);
    unlinkat(dir, name, 0);
    snprintf(name, sizeof(name), "%u.o", obj_id);
    unlinkat(dir, name, 0);
    close(dir);
}

struct meta {
    char name[256], path[4096];
    struct reg_restore rs;
};

static void meta_free(struct meta *m)
{
    free(m->rs.map_names);
    free(m->rs.map_ids);
    free(m->rs.prog_ids);
}

static int meta_line(struct meta *m, const char *line)
{
    unsigned id;
    char word[256];
    if (sscanf(line, "name %255s", m->name) == 1 || sscanf(line, "path %4095s", m->path) == 1)
        return 0;
    if (sscanf(line, "prog %u", &id) == 1) {
        uint32_t *ids = realloc(m->rs.prog_ids, (m->rs.nprogs + 1) * sizeof(*ids));
        if (!ids)
            return -ENOMEM;
        m->rs.prog_ids = ids;
        ids[m->rs.nprogs++] = id;
        return 0;
    }
    if (sscanf(line, "map %u %255s", &id, word) != 2)
        return line[0] ? -EBADMSG : 0;
    uint32_t *ids = realloc(m->rs.map_ids, (m->rs.nmaps + 1) * sizeof(*ids));
    if (ids)
        m->rs.map_ids = ids;
    char(*names)[BPFG_MAP_NAME_LEN] = realloc(m->rs.map_names, (m->rs.nmaps + 1) * sizeof(*names));
    if (names)
        m->rs.map_names = names;
    if (!ids || !names)
        return -ENOMEM;
    snprintf(names[m->rs.nmaps], sizeof(names[0]), "%.*s", BPFG_MAP_NAME_LEN - 1, word);
    ids[m->rs.nmaps++] = id;
    return 0;
}

static int parse_meta(char *text, struct meta *m)
{
    int err = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && !err; line = strtok_r(NULL, "\n", &save))
        err = meta_line(m, line);
    return err;
}

/* Every region of the object is of this layout or can be converted (maps
 * of layout 3 but hash ones): else it is not restored, and none of its
 * regions is converted (so none is pruned: another layout's are kept). */
static int check_layouts(struct server *s, const struct meta *m, char *why, size_t whylen)
{
    for (size_t i = 0; i < m->rs.nmaps; i++) {
        char file[16];
        snprintf(file, sizeof(file), "%u", m->rs.map_ids[i]);
        int fd = openat(s->reg.map_dirfd, file, O_RDONLY | O_CLOEXEC);
        int err = fd >= 0 ? bpfg_map_upgrade_fd(fd, false) : 0; /* a missing one: the load says so */
        if (fd >= 0)
            close(fd);
        if (err) {
            snprintf(why, whylen, "map '%s': region %s: %s", m->rs.map_names[i], file, bpfg_map_last_error());
            return err;
        }
    }
    return 0;
}

/* Loads objects/ID.o again with the ids and maps of objects/ID.meta. */
static int restore_object(struct server *s, int dir, uint32_t id)
{
    char name[32], *text = NULL, *data = NULL, why[512] = "";
    size_t len;
    struct meta m = {.rs.obj_id = id};
    snprintf(name, sizeof(name), "%u.meta", id);
    int err = read_file(dir, name, &text, &len);
    if (!err)
        err = parse_meta(text, &m);
    snprintf(name, sizeof(name), "%u.o", id);
    if (!err)
        err = check_layouts(s, &m, why, sizeof(why));
    if (!err)
        err = read_file(dir, name, &data, &len);
    struct reg_object *o = NULL;
    if (!err)
        err = registry_load_as(&s->reg, NULL, data, len, m.name, &m.rs, &o, why, sizeof(why));
    if (!err && strcmp(m.path, "-") != 0 && !(o->path = strdup(m.path)))
        err = -ENOMEM;
    if (!err)
        err = kernel_restore(&s->reg, o); /* its pinned kernel part */
    if (err)
        srv_log(SRV_ERROR, "object %u of the previous server cannot be restored: %s", id,
                why[0] ? why : strerror(-err));
    else
        srv_log(SRV_INFO, "object %u '%s' restored (%zu maps with their data, %zu programs)", id, o->name, o->map_cnt,
                o->prog_cnt);
    meta_free(&m);
    free(text);
    free(data);
    return err;
}

static int restore_objects(struct server *s)
{
    int dir = sub_fd(s, "objects");
    DIR *d = dir >= 0 ? fdopendir(dir) : NULL;
    if (!d) {
        if (dir >= 0)
            close(dir);
        return -errno;
    }
    for (struct dirent *de; (de = readdir(d));) {
        unsigned id;
        char tail[8];
        if (sscanf(de->d_name, "%u.met%1s", &id, tail) == 2 && strcmp(tail, "a") == 0)
            restore_object(s, dirfd(d), id);
    }
    closedir(d);
    return 0;
}

/* A region of another layout version no restored object owns (its object
 * was refused: a hash map of layout 3): its data is kept, not pruned. */
static bool foreign_layout(DIR *d, const char *name)
{
    int fd = openat(dirfd(d), name, O_RDONLY | O_CLOEXEC);
    int version = fd >= 0 ? bpfg_map_file_layout(fd) : 0;
    if (fd >= 0)
        close(fd);
    if (version > 0 && version != BPFG_MAP_LAYOUT_VERSION)
        srv_log(SRV_WARN, "map region %s (layout version %d, this build reads %d) kept in the state directory", name,
                version, BPFG_MAP_LAYOUT_VERSION);
    return version > 0 && version != BPFG_MAP_LAYOUT_VERSION;
}

/* Region files no restored object owns (a server killed during a load,
 * or the object could not be restored) are removed, but for those of
 * another layout version. */
static void prune_maps(struct server *s)
{
    int dir = sub_fd(s, "maps");
    DIR *d = dir >= 0 ? fdopendir(dir) : NULL;
    if (!d) {
        if (dir >= 0)
            close(dir);
        return;
    }
    for (struct dirent *de; (de = readdir(d));) {
        unsigned id;
        char extra;
        if (de->d_name[0] == '.')
            continue;
        if (sscanf(de->d_name, "%u%c", &id, &extra) == 1 &&
            (registry_map(&s->reg, id) || tools_hold_ticket(id) || foreign_layout(d, de->d_name)))
            continue;
        unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

static DIR *open_sub(struct server *s, const char *sub);

/* Spare region files "PID.N" of servers gone (killed: a stopped one
 * removes its own) are removed; a live one's (a takeover) are its. */
static void prune_spares(struct server *s)
{
    DIR *d = open_sub(s, "spares");
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        int pid;
        if (de->d_name[0] != '.' &&
            (sscanf(de->d_name, "%d.", &pid) != 1 || pid <= 0 || (kill(pid, 0) != 0 && errno == ESRCH)))
            unlinkat(dirfd(d), de->d_name, 0);
    }
    closedir(d);
}

int state_init(struct server *s)
{
    const char *base = s->cfg.state_dir;
    s->state_fd = -1;
    if (mkdir(base, 0700) != 0 && errno != EEXIST)
        return -errno;
    int bfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int err = bfd < 0 ? -errno : mkdir_at(bfd, STATE_SUBDIR);
    if (!err && (s->state_fd = openat(bfd, STATE_SUBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        err = -errno;
    if (bfd >= 0)
        close(bfd);
    for (size_t i = 0; !err && i < sizeof(subdirs) / sizeof(subdirs[0]); i++)
        err = mkdir_at(s->state_fd, subdirs[i]);
    if (!err && (s->reg.map_dirfd = sub_fd(s, "maps")) < 0)
        err = -errno;
    if (!err && (s->reg.spare_dirfd = sub_fd(s, "spares")) < 0)
        err = -errno;
    if (err) {
        srv_log(SRV_ERROR, "state directory %s/%s: %s", base, STATE_SUBDIR, strerror(-err));
        return err;
    }
    restore_objects(s);
    tools_restore(s); /* their maps too, before the unowned ones go */
    prune_maps(s);
    prune_spares(s);
    return 0;
}

void state_close(struct server *s)
{
    if (s->reg.map_dirfd >= 0)
        close(s->reg.map_dirfd);
    if (s->reg.spare_dirfd >= 0)
        close(s->reg.spare_dirfd);
    if (s->state_fd >= 0)
        close(s->state_fd);
    s->reg.map_dirfd = s->reg.spare_dirfd = s->state_fd = -1;
}

static DIR *open_sub(struct server *s, const char *sub)
{
    int dir = s->state_fd < 0 ? -1 : sub_fd(s, sub);
    DIR *d = dir >= 0 ? fdopendir(dir) : NULL;
    if (!d && dir >= 0)
        close(dir);
    return d;
}

static void clear_dir(struct server *s, const char *name)
{
    DIR *d = open_sub(s, name);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            unlinkat(dirfd(d), de->d_name, 0);
    closedir(d);
}

void state_clear(struct server *s)
{
    if (s->state_fd < 0)
        return;
    for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++)
        clear_dir(s, subdirs[i]);
}

/* ---- files of other parts (tools) ---- */

int state_write(struct server *s, const char *sub, const char *name, const void *buf, size_t len)
{
    int dir = s->state_fd < 0 ? -1 : sub_fd(s, sub);
    if (dir < 0)
        return s->state_fd < 0 ? -EBADF : -errno;
    const void *parts[] = {buf};
    char spare[48];
    int fd = registry_take_spare(&s->reg, spare, sizeof(spare)), err;
    if (fd < 0) {
        err = write_file(dir, name, parts, &len, 1);
    } else { /* a record on a request's path: no inode made */
        err = write_parts(fd, parts, &len, 1);
        if (!err)
            err = replace_at(s->reg.spare_dirfd, spare, dir, name);
        if (err)
            unlinkat(s->reg.spare_dirfd, spare, 0);
    }
    close(dir);
    return err;
}

int state_read(struct server *s, const char *sub, const char *name, char **buf, size_t *len)
{
    int dir = s->state_fd < 0 ? -1 : sub_fd(s, sub);
    if (dir < 0)
        return s->state_fd < 0 ? -EBADF : -errno;
    int err = read_file(dir, name, buf, len);
    close(dir);
    return err;
}

void state_remove(struct server *s, const char *sub, const char *name)
{
    int dir = s->state_fd < 0 ? -1 : sub_fd(s, sub);
    if (dir < 0)
        return;
    unlinkat(dir, name, 0);
    close(dir);
}

void state_each(struct server *s, const char *sub, void (*fn)(struct server *s, const char *name))
{
    DIR *d = open_sub(s, sub);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));)
        if (de->d_name[0] != '.')
            fn(s, de->d_name);
    closedir(d);
}

/* ---- target records ---- */

struct rec_hdr {
    uint32_t magic, version;
    uint32_t target_size, sys_size;
    uint64_t token;
    uint64_t nmaps, nprogs;
};

void state_save_target(struct server *s, const struct target *t)
{
    char name[16];
    void *sys = NULL;
    size_t sys_len = 0;
    if (t->record_held)
        return;
    int dir = sub_fd(s, "targets");
    int err = dir < 0 ? -errno : syscalls_export(t, &sys, &sys_len);
    struct rec_hdr h = {REC_MAGIC, REC_VERSION, sizeof(*t), (uint32_t)sys_len, t->token, t->nmaps_sent, t->nprogs_sent};
    const void *parts[] = {&h, t, t->maps_sent, t->map_addrs, t->progs_sent, t->progs_engine, sys};
    size_t lens[] = {sizeof(h),
                     sizeof(*t),
                     t->nmaps_sent * sizeof(*t->maps_sent),
                     t->nmaps_sent * sizeof(*t->map_addrs),
                     t->nprogs_sent * sizeof(*t->progs_sent),
                     t->nprogs_sent * sizeof(*t->progs_engine),
                     sys_len};
    snprintf(name, sizeof(name), "%d", (int)t->pid);
    if (!err)
        err = write_file(dir, name, parts, lens, sizeof(lens) / sizeof(lens[0]));
    if (err)
        srv_log(SRV_WARN, "target %d: its record for restarts: %s", (int)t->pid, strerror(-err));
    free(sys);
    if (dir >= 0)
        close(dir);
}

void state_forget_target(struct server *s, pid_t pid)
{
    char name[16];
    int dir = sub_fd(s, "targets");
    if (dir < 0)
        return;
    snprintf(name, sizeof(name), "%d", (int)pid);
    unlinkat(dir, name, 0);
    close(dir);
}

/* Takes n bytes at *p (bounded by end) into a new buffer. */
static void *take(const char **p, const char *end, size_t n, int *err)
{
    if (*err || (size_t)(end - *p) < n) {
        *err = *err ? *err : -EBADMSG;
        return NULL;
    }
    void *out = malloc(n ? n : 1);
    if (!out) {
        *err = -ENOMEM;
        return NULL;
    }
    memcpy(out, *p, n);
    *p += n;
    return out;
}

static int apply_record(struct target *t, const char *buf, size_t len)
{
    const char *p = buf + sizeof(struct rec_hdr), *end = buf + len;
    const struct rec_hdr *h = (const void *)buf;
    int err = 0;
    struct target *rec = take(&p, end, h->target_size, &err);
    if (rec && h->target_size < sizeof(*rec)) { /* an older build's: new fields zero */
        struct target *full = realloc(rec, sizeof(*rec));
        if (full)
            memset((char *)full + h->target_size, 0, sizeof(*full) - h->target_size);
        else
            free(rec), err = -ENOMEM;
        rec = full;
    }
    t->maps_sent = take(&p, end, h->nmaps * sizeof(*t->maps_sent), &err);
    t->map_addrs = take(&p, end, h->nmaps * sizeof(*t->map_addrs), &err);
    t->progs_sent = take(&p, end, h->nprogs * sizeof(*t->progs_sent), &err);
    t->progs_engine = take(&p, end, h->nprogs * sizeof(*t->progs_engine), &err);
    if (!err)
        err = syscalls_import(t, p, (size_t)(end - p));
    if (!err) {
        t->nmaps_sent = h->nmaps;
        t->nprogs_sent = h->nprogs;
        t->inj = rec->inj;
        memcpy(t->hooks, rec->hooks, sizeof(t->hooks));
        t->nhooks = rec->nhooks;
        t->next_hook = rec->next_hook;
        t->attached_at_ms = rec->attached_at_ms;
        t->unwind_page = rec->unwind_page;
        t->gdb_file = rec->gdb_file;
        t->pidns = rec->pidns;
        t->trap_action = rec->trap_action;
        t->replaced_base = rec->replaced_base;
        t->replaced_entry = rec->replaced_entry;
        t->reinject_token = rec->reinject_token;
    }
    free(rec);
    return err;
}

/* The record of pid, whole and of this server's layout, into *buf. */
static int read_record(struct server *s, pid_t pid, char **buf)
{
    char name[16];
    size_t len = 0;
    int dir = sub_fd(s, "targets");
    snprintf(name, sizeof(name), "%d", (int)pid);
    int err = dir < 0 ? -errno : read_file(dir, name, buf, &len);
    if (dir >= 0)
        close(dir);
    if (err)
        return err == -ENOENT ? -ENOENT : err;
    const struct rec_hdr *h = (const void *)*buf;
    if (len < sizeof(*h) || h->magic != REC_MAGIC || h->version != REC_VERSION ||
        h->target_size < REC_OLDEST_TARGET_SIZE || h->target_size > sizeof(struct target) ||
        len < sizeof(*h) + h->target_size) {
        free(*buf);
        *buf = NULL;
        return -ENOENT; /* another layout */
    }
    return (int)len;
}

int state_load_target(struct server *s, struct target *t, uint64_t token)
{
    char *buf = NULL;
    int len = read_record(s, t->pid, &buf);
    if (len < 0)
        return len;
    const struct rec_hdr *h = (const void *)buf;
    const struct target *rec = (const void *)(buf + sizeof(*h));
    int err = h->token != token || rec->inj.base != t->inj.base ? -ENOENT /* an earlier process with this pid */
                                                                : apply_record(t, buf, (size_t)len);
    free(buf);
    return err;
}

void state_reinjection(struct server *s, pid_t pid, uint64_t *replaced_base, uint64_t *reinject_token)
{
    char *buf = NULL;
    *replaced_base = *reinject_token = 0;
    if (read_record(s, pid, &buf) < 0)
        return;
    const struct rec_hdr *h = (const void *)buf;
    const struct target *rec = (const void *)(buf + sizeof(*h));
    if (h->target_size == sizeof(*rec)) { /* an older build's record has no re-injection */
        *replaced_base = rec->replaced_base;
        *reinject_token = rec->reinject_token;
    }
    free(buf);
}
