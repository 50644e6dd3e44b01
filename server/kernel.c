/* Kernel programs and shared kernel maps of loaded objects. See kernel.h. */
#define _GNU_SOURCE
#include "kernel.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "log.h"
#include "progcheck.h"

#define KLOG_CAP 4096
#define BPFFS "/sys/fs/bpf"
#define PIN_ROOT BPFFS "/bpfgraft"

struct kernel_obj {
    struct bpf_object *bo; /* NULL: re-adopted from its pins by a restarted server */
    struct bpf_link **links;
    size_t nlinks;
    char *pin_dir; /* its pins (links, programs, maps), NULL: none */
};

int kernel_mode_parse(const char *s, enum bpfg_kernel_mode *mode)
{
    static const char *const names[] = {
        [BPFG_KERNEL_NEVER] = "never", [BPFG_KERNEL_AUTO] = "auto", [BPFG_KERNEL_ALWAYS] = "always"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0) {
            *mode = (enum bpfg_kernel_mode)i;
            return 0;
        }
    return -EINVAL;
}

void kernel_obj_free(struct kernel_obj *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->nlinks; i++) {
        if (k->pin_dir) /* pinned: it stays attached for the next server */
            bpf_link__disconnect(k->links[i]);
        bpf_link__destroy(k->links[i]);
    }
    free(k->links);
    bpf_object__close(k->bo);
    free(k->pin_dir);
    free(k);
}

/* ---- which program runs where, which map both sides use ---- */

static bool is_call(const struct bpf_insn *in)
{
    return in->code == (BPF_JMP | BPF_CALL) && in->src_reg == 0;
}

/* The first helper p calls that bpfgraft does not serve, or 0. */
static int32_t kernel_only_helper(const struct bpfg_obj_prog *p)
{
    for (size_t i = 0; p->insns && i < p->insn_cnt; i++)
        if (is_call(&p->insns[i]) && !progcheck_helper_name((uint32_t)p->insns[i].imm))
            return p->insns[i].imm;
    return 0;
}

static void mark_helper_users(struct reg_object *o)
{
    for (size_t i = 0; i < o->obj->prog_cnt; i++) {
        struct bpfg_obj_prog *p = &o->obj->progs[i];
        int32_t id = p->kernel ? 0 : kernel_only_helper(p);
        if (id) {
            srv_log(SRV_INFO, "object '%s': program '%s' calls helper %d, which only the kernel has: it runs there",
                    o->name, p->name, id);
            p->kernel = true;
        }
    }
}

static bool has_kernel_prog(const struct bpfg_obj *obj)
{
    for (size_t i = 0; i < obj->prog_cnt; i++)
        if (obj->progs[i].kernel)
            return true;
    return false;
}

/* Whether a userspace program refers to map index mi. */
static bool user_uses_map(const struct bpfg_obj *obj, size_t mi)
{
    for (size_t i = 0; i < obj->prog_cnt; i++) {
        const struct bpfg_obj_prog *p = &obj->progs[i];
        for (size_t k = 0; !p->kernel && p->insns && k < p->insn_cnt; k++) {
            const struct bpf_insn *in = &p->insns[k];
            bool ld = in->code == (BPF_LD | BPF_IMM | BPF_DW) &&
                      (in->src_reg == BPF_PSEUDO_MAP_IDX || in->src_reg == BPF_PSEUDO_MAP_IDX_VALUE);
            if (ld && (size_t)in->imm == mi)
                return true;
        }
    }
    return false;
}

/* Whether a kernel program of bo refers to the kernel map with id map_id. */
static bool kernel_uses_map(struct bpf_object *bo, uint32_t map_id)
{
    struct bpf_program *bp;
    bpf_object__for_each_program(bp, bo)
    {
        uint32_t ids[64];
        struct bpf_prog_info info;
        uint32_t len = sizeof(info);
        if (bpf_program__fd(bp) < 0)
            continue;
        memset(&info, 0, sizeof(info));
        info.nr_map_ids = sizeof(ids) / sizeof(ids[0]);
        info.map_ids = (uint64_t)(uintptr_t)ids;
        if (bpf_obj_get_info_by_fd(bpf_program__fd(bp), &info, &len) != 0)
            continue;
        for (uint32_t i = 0; i < info.nr_map_ids && i < sizeof(ids) / sizeof(ids[0]); i++)
            if (ids[i] == map_id)
                return true;
    }
    return false;
}

/* The pin of kind ("prog", "link", "map") name in dir: KIND_NAME, dots
 * made '_' (bpffs refuses names with dots: "connlat.rodata"). */
static void pin_path(char *out, size_t len, const char *dir, const char *kind, const char *name)
{
    int n = snprintf(out, len, "%.3000s/%s_", dir, kind);
    for (char *p = out + n; *name && p + 1 < out + len; p++, name++) {
        *p = *name == '.' ? '_' : *name;
        p[1] = 0;
    }
}

static int pinned_prog(const struct kernel_obj *k, const char *name)
{
    char path[PATH_MAX];
    pin_path(path, sizeof(path), k->pin_dir, "prog", name);
    return bpf_obj_get(path);
}

int kernel_prog_stats(const struct kernel_obj *k, const char *name, uint64_t *run_cnt, uint64_t *run_time_ns)
{
    struct bpf_program *bp = k && k->bo ? bpf_object__find_program_by_name(k->bo, name) : NULL;
    int fd = bp ? bpf_program__fd(bp) : k && k->pin_dir ? pinned_prog(k, name) : -1;
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    memset(&info, 0, sizeof(info));
    int r = fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? 0 : -ENOENT;
    if (!bp && fd >= 0)
        close(fd);
    if (r)
        return r;
    *run_cnt = info.run_cnt;
    *run_time_ns = info.run_time_ns;
    return 0;
}

/* ---- the libbpf load against the kernel ---- */

static __thread char *klog;

static int kernel_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (!klog || level == LIBBPF_DEBUG)
        return 0;
    size_t n = strlen(klog);
    if (n + 1 < KLOG_CAP)
        vsnprintf(klog + n, KLOG_CAP - n, fmt, ap);
    return 0;
}

/* Only the kernel programs load; arrays become BPF_F_MMAPABLE so targets
 * and the server map them; maps that are kernel maps already (adopted)
 * are reused. */
static int select_parts(const struct registry *r, struct bpf_object *bo, const struct reg_object *o)
{
    const struct bpfg_obj *obj = o->obj;
    struct bpf_program *bp;
    bpf_object__for_each_program(bp, bo)
    {
        bool kernel = false;
        for (size_t i = 0; i < obj->prog_cnt; i++)
            if (strcmp(obj->progs[i].name, bpf_program__name(bp)) == 0)
                kernel = obj->progs[i].kernel;
        bpf_program__set_autoload(bp, kernel);
    }
    for (size_t i = 0; i < obj->map_cnt; i++) {
        struct bpf_map *bm = bpf_object__find_map_by_name(bo, obj->maps[i].name);
        struct reg_map *m = registry_map(r, o->map_ids[i]);
        if (bm && m && bpfg_map_is_kernel(m->map)) {
            int e = bpf_map__reuse_fd(bm, bpfg_map_fd(m->map));
            if (e)
                return e;
        } else if (bm && bpf_map__type(bm) == BPF_MAP_TYPE_ARRAY) {
            bpf_map__set_map_flags(bm, bpf_map__map_flags(bm) | BPF_F_MMAPABLE);
        }
    }
    return 0;
}

static struct bpf_object *kernel_open_load(const struct registry *r, const struct reg_object *o, const void *data,
                                           size_t len, char *err, size_t errlen)
{
    char log[KLOG_CAP] = "";
    LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = o->name);
    klog = log;
    libbpf_print_fn_t prev = libbpf_set_print(kernel_print);
    struct bpf_object *bo = o->path ? bpf_object__open_file(o->path, &oo) : bpf_object__open_mem(data, len, &oo);
    int e = bo ? 0 : -errno;
    if (bo && !(e = select_parts(r, bo, o)))
        e = bpf_object__load(bo);
    libbpf_set_print(prev);
    klog = NULL;
    if (e) {
        size_t n = strlen(log);
        while (n && log[n - 1] == '\n')
            log[--n] = 0;
        snprintf(err, errlen, "kernel: cannot load the kernel programs of '%s': %s%s%s", o->name, strerror(-e),
                 n ? ": " : "", log);
        bpf_object__close(bo);
        errno = -e;
        return NULL;
    }
    return bo;
}

static int attach_all(struct kernel_obj *k, const char *name, char *err, size_t errlen)
{
    struct bpf_program *bp;
    size_t n = 0;
    bpf_object__for_each_program(bp, k->bo) n++;
    k->links = calloc(n + 1, sizeof(*k->links));
    if (!k->links)
        return -ENOMEM;
    bpf_object__for_each_program(bp, k->bo)
    {
        if (bpf_program__fd(bp) < 0)
            continue;
        struct bpf_link *l = bpf_program__attach(bp);
        if (l) {
            k->links[k->nlinks++] = l;
            continue;
        }
        int e = errno;
        if (e == EOPNOTSUPP || e == ESRCH) { /* no target in its section: loaded, not attached */
            srv_log(SRV_INFO, "object '%s': kernel program '%s' loaded, not attached (section '%s')", name,
                    bpf_program__name(bp), bpf_program__section_name(bp));
            continue;
        }
        snprintf(err, errlen, "kernel: cannot attach program '%s' (section '%s'): %s", bpf_program__name(bp),
                 bpf_program__section_name(bp), strerror(e));
        return -e;
    }
    return 0;
}

/* Maps the kernel programs use: the registry's handle becomes one on the
 * kernel map (the memfd region goes), so map dump and userspace programs
 * see what the kernel programs write. A map only the kernel uses whose
 * type has no such handle keeps its (unused) region; one both sides use
 * fails the load. */
static int take_kernel_map(struct reg_object *o, struct reg_map *m, int fd, bool shared, char *err, size_t errlen)
{
    struct bpfg_map *km;
    int e = bpfg_map_open_fd(fd, &km);
    if (e && shared) {
        snprintf(err, errlen, "map '%s' is used by kernel and userspace programs: %s", m->name, bpfg_map_last_error());
        return e;
    }
    if (e) {
        srv_log(SRV_INFO, "object '%s': map '%s' lives in the kernel only (%s)", o->name, m->name,
                bpfg_map_last_error());
        return 0;
    }
    bpfg_map_close(m->map);
    m->map = km;
    srv_log(SRV_INFO, "object '%s': map '%s' is the kernel's%s", o->name, m->name,
            shared ? ", shared with userspace programs" : "");
    return 0;
}

static int share_maps(struct registry *r, struct reg_object *o, struct bpf_object *bo, char *err, size_t errlen)
{
    for (size_t i = 0; i < o->obj->map_cnt; i++) {
        struct bpf_map *bm = bpf_object__find_map_by_name(bo, o->obj->maps[i].name);
        struct bpf_map_info info;
        uint32_t len = sizeof(info);
        memset(&info, 0, sizeof(info));
        if (!bm || bpf_obj_get_info_by_fd(bpf_map__fd(bm), &info, &len) != 0 || !kernel_uses_map(bo, info.id))
            continue;
        int e =
            take_kernel_map(o, registry_map(r, o->map_ids[i]), bpf_map__fd(bm), user_uses_map(o->obj, i), err, errlen);
        if (e)
            return e;
    }
    return 0;
}

/* ---- pins: the kernel part outlives the server (server/README.md) ---- */

/* PIN_ROOT/DEV-INO/OBJ, DEV-INO naming the state directory's maps: servers
 * with state directories of their own never meet, a restarted one finds
 * its pins again. -ENOENT without a state directory (nothing outlives). */
static int pin_dir_of(const struct registry *r, uint32_t obj_id, char *out, size_t outlen)
{
    struct stat st;
    if (r->map_dirfd < 0 || fstat(r->map_dirfd, &st) != 0)
        return -ENOENT;
    snprintf(out, outlen, "%s/%llx-%llx/%u", PIN_ROOT, (unsigned long long)st.st_dev, (unsigned long long)st.st_ino,
             obj_id);
    return 0;
}

static int ensure_bpffs(void)
{
    struct statfs sf;
    if (statfs(BPFFS, &sf) == 0 && sf.f_type == BPF_FS_MAGIC)
        return 0;
    if ((mkdir(BPFFS, 0700) != 0 && errno != EEXIST) || mount("bpf", BPFFS, "bpf", 0, "mode=0700") != 0)
        return -errno;
    srv_log(SRV_INFO, "no bpffs was mounted: mounted one at %s for the pins of kernel programs", BPFFS);
    return 0;
}

/* mkdir -p of dir (below BPFFS), each 0700. */
static int make_dirs(char *dir)
{
    for (char *p = dir + strlen(BPFFS) + 1;; p++) {
        char c = *p;
        if (c != '/' && c != 0)
            continue;
        *p = 0;
        int e = mkdir(dir, 0700) == 0 || errno == EEXIST ? 0 : -errno;
        *p = c;
        if (e || !c)
            return e;
    }
}

/* Its files, then dir and its parents up to PIN_ROOT while empty. */
static void remove_pins(char *dir)
{
    DIR *d = opendir(dir);
    for (struct dirent *de; d && (de = readdir(d));)
        if (de->d_name[0] != '.')
            unlinkat(dirfd(d), de->d_name, 0);
    if (d)
        closedir(d);
    for (char *slash; strcmp(dir, BPFFS) != 0 && rmdir(dir) == 0 && (slash = strrchr(dir, '/'));)
        *slash = 0;
}

static int pin_one(int fd, const char *dir, const char *kind, const char *name)
{
    char path[PATH_MAX];
    pin_path(path, sizeof(path), dir, kind, name);
    int e = bpf_obj_pin(fd, path);
    if (e)
        srv_log(SRV_WARN, "pinning %s: %s", path, strerror(-e));
    return e;
}

/* Programs and links, and the maps the kernel programs use. */
static int pin_parts(const struct kernel_obj *k, const char *dir)
{
    struct bpf_program *bp;
    struct bpf_map *bm;
    int e = 0;
    bpf_object__for_each_program(bp, k->bo) if (!e && bpf_program__fd(bp) >= 0) e =
        pin_one(bpf_program__fd(bp), dir, "prog", bpf_program__name(bp));
    for (size_t i = 0; !e && i < k->nlinks; i++) {
        char n[24];
        snprintf(n, sizeof(n), "%zu", i);
        e = pin_one(bpf_link__fd(k->links[i]), dir, "link", n);
    }
    bpf_object__for_each_map(bm, k->bo)
    {
        struct bpf_map_info info;
        uint32_t len = sizeof(info);
        memset(&info, 0, sizeof(info));
        if (!e && bpf_map__fd(bm) >= 0 && bpf_obj_get_info_by_fd(bpf_map__fd(bm), &info, &len) == 0 &&
            kernel_uses_map(k->bo, info.id))
            e = pin_one(bpf_map__fd(bm), dir, "map", bpf_map__name(bm));
    }
    return e;
}

static void kernel_pin(const struct registry *r, const struct reg_object *o, struct kernel_obj *k)
{
    char dir[PATH_MAX];
    if (pin_dir_of(r, o->id, dir, sizeof(dir)) != 0)
        return;
    remove_pins(dir); /* a server killed before it recorded the object left them */
    int e = ensure_bpffs();
    if (!e && !(e = make_dirs(dir)) && !(e = pin_parts(k, dir)) && !(k->pin_dir = strdup(dir)))
        e = -ENOMEM;
    if (e) {
        srv_log(SRV_WARN, "object '%s': its kernel part is not pinned (%s): it ends with this server", o->name,
                strerror(-e));
        remove_pins(dir);
        return;
    }
    srv_log(SRV_INFO, "object %u '%s': kernel programs, links and maps pinned in %s", o->id, o->name, dir);
}

void kernel_unpin(struct kernel_obj *k)
{
    if (!k || !k->pin_dir)
        return;
    remove_pins(k->pin_dir);
    free(k->pin_dir);
    k->pin_dir = NULL;
}

void kernel_unpin_all(struct registry *r)
{
    for (size_t i = 0; i < r->nobjects; i++)
        kernel_unpin(r->objects[i]->kernel);
}

/* The pinned maps of o replace its restored regions. */
static size_t readopt_maps(struct registry *r, struct reg_object *o, const char *dir)
{
    size_t n = 0;
    for (size_t i = 0; i < o->obj->map_cnt; i++) {
        char path[PATH_MAX], err[256];
        pin_path(path, sizeof(path), dir, "map", o->obj->maps[i].name);
        int fd = bpf_obj_get(path);
        struct reg_map *m = registry_map(r, o->map_ids[i]);
        if (fd < 0 || !m)
            continue;
        if (take_kernel_map(o, m, fd, false, err, sizeof(err)) == 0 && bpfg_map_is_kernel(m->map))
            n++;
        close(fd);
    }
    return n;
}

int kernel_restore(struct registry *r, struct reg_object *o)
{
    char dir[PATH_MAX];
    struct stat st;
    if (pin_dir_of(r, o->id, dir, sizeof(dir)) != 0 || stat(dir, &st) != 0)
        return 0;
    struct kernel_obj *k = calloc(1, sizeof(*k));
    if (!k || !(k->pin_dir = strdup(dir))) {
        free(k);
        return -ENOMEM;
    }
    size_t nprogs = 0;
    for (size_t i = 0; i < o->obj->prog_cnt; i++) {
        int fd = pinned_prog(k, o->obj->progs[i].name);
        if (fd >= 0) {
            close(fd);
            o->obj->progs[i].kernel = true;
            nprogs++;
        }
    }
    size_t nmaps = readopt_maps(r, o, dir);
    o->kernel = k;
    srv_log(SRV_INFO, "object %u '%s': %zu kernel programs (attached all along) and %zu kernel maps re-adopted from %s",
            o->id, o->name, nprogs, nmaps, dir);
    return 0;
}

int kernel_load(struct registry *r, struct reg_object *o, enum bpfg_kernel_mode mode, const void *data, size_t len,
                char *err, size_t errlen)
{
    if (mode == BPFG_KERNEL_AUTO)
        mark_helper_users(o);
    if (mode == BPFG_KERNEL_NEVER || !has_kernel_prog(o->obj))
        return 0;
    struct kernel_obj *k = calloc(1, sizeof(*k));
    if (!k)
        return -ENOMEM;
    k->bo = kernel_open_load(r, o, data, len, err, errlen);
    if (!k->bo) {
        int e = errno ? -errno : -EINVAL;
        free(k);
        return e;
    }
    int e = attach_all(k, o->name, err, errlen);
    if (!e)
        e = share_maps(r, o, k->bo, err, errlen);
    if (e) {
        kernel_obj_free(k);
        return e;
    }
    o->kernel = k;
    srv_log(SRV_INFO, "object %u '%s': %zu kernel programs attached", o->id, o->name, k->nlinks);
    kernel_pin(r, o, k);
    return 0;
}

int kernel_add_map(struct registry *r, struct reg_object *o, int fd, const struct bpf_map_info *info, const char *name,
                   struct reg_map **out, char *err, size_t errlen)
{
    struct bpfg_map_spec spec = {.type = info->type,
                                 .key_size = info->key_size,
                                 .value_size = info->value_size,
                                 .max_entries = info->max_entries,
                                 .map_flags = info->map_flags,
                                 .name = name};
    r->adopt_fd = fd;
    int e = registry_add_map(r, o, &spec, BPFG_MAP_USER, out, err, errlen);
    r->adopt_fd = -1;
    return e;
}

int kernel_adopt_map(struct registry *r, const char *path, const char *name, struct reg_map **out, char *err,
                     size_t errlen)
{
    struct bpf_map_info info;
    uint32_t len = sizeof(info);
    struct reg_map *m;
    if (registry_map_by_name(r, name, &m) != -ENOENT) {
        snprintf(err, errlen, "a map named '%s' exists already", name);
        return -EEXIST;
    }
    int fd = bpf_obj_get(path);
    memset(&info, 0, sizeof(info));
    if (fd < 0 || bpf_obj_get_info_by_fd(fd, &info, &len) != 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, fd < 0 ? strerror(e) : "not a BPF map");
        if (fd >= 0)
            close(fd);
        return fd < 0 ? -e : -EINVAL;
    }
    struct reg_object *o;
    int e = registry_new_object(r, name, 1, 0, &o);
    if (!e && (e = kernel_add_map(r, o, fd, &info, name, &m, err, errlen)))
        registry_unload(r, o->id);
    close(fd);
    if (e)
        return e;
    m->adopted = true;
    o->path = strdup(path);
    srv_log(SRV_INFO, "map '%s' adopted from %s (kernel map id %u, %s)", name, path, info.id,
            bpfg_map_type_name(info.type));
    *out = m;
    return 0;
}
