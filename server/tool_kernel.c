/* The kernel part of `bpfgraft run` tools. See tool_kernel.h. */
#define _GNU_SOURCE
#include "tool_kernel.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "maps.h"
#include "objload.h"
#include "payload_abi.h"
#include "registry.h"
#include "server.h"
#include "targets.h"

#define KLOG_SIZE (256u << 10)
#define KLOG_TAIL 1500 /* of the kernel verifier's log, in the error */

struct tk_map {
    uint32_t obj_id, map_id;
    uint32_t type; /* the tool's type when bpfgraft's differs, else 0 */
    int fd;        /* the kernel map, -1 not made yet */
};

struct tk_prog {
    uint32_t obj_id, prog_id;
    int fd;
};

struct tk_link {
    uint32_t obj_id, link_id;
    int fd;      /* bpf link */
    int perf_fd; /* its perf event, -1 none (raw tracepoints) */
};

static struct tk_map *maps;
static size_t nmaps;
static struct tk_prog *progs;
static size_t nprogs;
static struct tk_link *links;
static size_t nlinks;

static int grow(void **arr, size_t n, size_t size)
{
    void *g = realloc(*arr, (n + 1) * size);
    if (!g)
        return -ENOMEM;
    *arr = g;
    return 0;
}

static struct tk_map *map_rec(uint32_t obj_id, uint32_t map_id)
{
    for (size_t i = 0; i < nmaps; i++)
        if (maps[i].obj_id == obj_id && maps[i].map_id == map_id)
            return &maps[i];
    return NULL;
}

static struct tk_map *map_rec_new(uint32_t obj_id, uint32_t map_id)
{
    struct tk_map *m = map_rec(obj_id, map_id);
    if (m || grow((void **)&maps, nmaps, sizeof(*maps)))
        return m;
    maps[nmaps] = (struct tk_map){obj_id, map_id, 0, -1};
    return &maps[nmaps++];
}

int tool_kernel_note_type(uint32_t obj_id, uint32_t map_id, uint32_t type)
{
    struct tk_map *m = map_rec_new(obj_id, map_id);
    if (!m)
        return -ENOMEM;
    m->type = type;
    return 0;
}

/* ---- maps made the kernel's ---- */

/* A process other than the tool holds the map (a userspace program of the
 * tool attached there): its region cannot turn into the kernel's. */
static pid_t map_user(struct server *s, uint32_t map_id, pid_t tool_pid)
{
    for (struct target *t = s->targets.list; t; t = t->next)
        for (size_t i = 0; t->pid != tool_pid && i < t->nmaps_sent; i++)
            if (t->maps_sent[i] == map_id)
                return t->pid;
    return 0;
}

#define KERNEL_MAP_FLAGS                                                                                 \
    (BPF_F_NO_PREALLOC | BPF_F_NO_COMMON_LRU | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG | BPF_F_ZERO_SEED | \
     BPF_F_MMAPABLE | BPF_F_INNER_MAP)

static int create_like(const struct bpfg_map_info *info, uint32_t type, char *err, size_t errlen)
{
    uint32_t flags = info->map_flags & KERNEL_MAP_FLAGS;
    if (type == BPF_MAP_TYPE_ARRAY)
        flags |= BPF_F_MMAPABLE; /* so targets and the payload map its values */
    /* bpfgraft's map_extra of other types is its own (perf ring sizes) */
    LIBBPF_OPTS(bpf_map_create_opts, mo, .map_flags = flags,
                .map_extra = type == BPF_MAP_TYPE_BLOOM_FILTER ? info->map_extra : 0);
    int fd = bpf_map_create(type, info->name, info->key_size, info->value_size, info->max_entries, &mo);
    if (fd < 0)
        return srv_efail(err, errlen, -errno, "kernel: cannot create map '%s' (%s) for the kernel program: %s",
                         info->name, bpfg_map_type_name(type), strerror(errno));
    return fd;
}

/* The values the tool stored before (.rodata, prefilled maps). */
static int copy_values(struct bpfg_map *from, int to, const struct bpfg_map_info *info, char *err, size_t errlen)
{
    size_t ks = info->key_size ? info->key_size : 1;
    uint8_t *buf = malloc(2 * ks + info->value_copy_size + 8);
    if (!buf)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    uint8_t *key = buf, *next = buf + ks, *val = next + ks;
    int r = 0;
    for (bool first = true; !r && bpfg_map_get_next_key(from, first ? NULL : key, next) == 0; first = false) {
        memcpy(key, next, ks);
        if (bpfg_map_lookup_copy(from, key, val) == 0 && bpf_map_update_elem(to, key, val, BPF_ANY) != 0)
            r = srv_efail(err, errlen, -errno, "kernel: map '%s': copying a value: %s", info->name, strerror(errno));
    }
    free(buf);
    if (!r && info->frozen && bpf_map_freeze(to) != 0)
        r = srv_efail(err, errlen, -errno, "kernel: map '%s': freeze: %s", info->name, strerror(errno));
    return r;
}

static bool copies(uint32_t type)
{
    return type != BPF_MAP_TYPE_PERF_EVENT_ARRAY && type != BPF_MAP_TYPE_CGROUP_ARRAY && type != BPF_MAP_TYPE_RINGBUF;
}

/* The registry's handle becomes one on the kernel map where the maps
 * library has one (arrays mmapped, hashes through bpf()): map dump and
 * userspace programs then see what the kernel writes. */
static void registry_to_kernel(struct reg_map *m, int fd)
{
    struct bpfg_map *km;
    if (bpfg_map_open_fd(fd, &km) != 0) {
        srv_log(SRV_INFO, "map '%s' lives in the kernel only (%s)", m->name, bpfg_map_last_error());
        return;
    }
    bpfg_map_close(m->map);
    m->map = km;
}

static int make_kernel_map(struct server *s, uint32_t obj_id, uint32_t map_id, pid_t tool_pid, bool *changed, char *err,
                           size_t errlen)
{
    struct tk_map *rec = map_rec(obj_id, map_id);
    if (rec && rec->fd >= 0)
        return rec->fd;
    struct reg_map *m = registry_map(&s->reg, map_id);
    if (!m)
        return srv_efail(err, errlen, -EBADF, "map %u is gone", map_id);
    pid_t user = map_user(s, map_id, tool_pid);
    if (user)
        return srv_efail(err, errlen, -EBUSY,
                         "map '%s' is used by a userspace program in process %d already: it cannot become the "
                         "kernel map a kernel program needs",
                         m->name, (int)user);
    if (!(rec = map_rec_new(obj_id, map_id)))
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    struct bpfg_map_info info;
    bpfg_map_get_info(m->map, &info);
    uint32_t type = rec->type ? rec->type : info.type;
    int fd;
    if (bpfg_map_is_kernel(m->map)) { /* adopted, or an object's kernel map */
        if ((fd = fcntl(bpfg_map_fd(m->map), F_DUPFD_CLOEXEC, 3)) < 0)
            return srv_efail(err, errlen, -errno, "dup: %s", strerror(errno));
    } else if ((fd = create_like(&info, type, err, errlen)) < 0) {
        return fd;
    }
    int r = bpfg_map_is_kernel(m->map) || !copies(type) ? 0 : copy_values(m->map, fd, &info, err, errlen);
    if (r) {
        close(fd);
        return r;
    }
    if (!bpfg_map_is_kernel(m->map))
        registry_to_kernel(m, fd);
    rec->fd = fd;
    *changed = true;
    srv_log(SRV_INFO, "tool object %u: map '%s' is a kernel map now (a kernel program uses it)", obj_id, m->name);
    return fd;
}

/* ---- programs ---- */

static int kernel_insns(struct server *s, struct reg_object *o, pid_t tool_pid, struct bpf_insn *in, size_t n,
                        bool *changed, char *err, size_t errlen)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (in[i].code != (BPF_LD | BPF_IMM | BPF_DW))
            continue;
        uint8_t src = in[i].src_reg;
        if (src == BPF_PSEUDO_MAP_IDX || src == BPF_PSEUDO_MAP_IDX_VALUE) {
            if ((size_t)in[i].imm >= o->map_cnt)
                return srv_efail(err, errlen, -EINVAL, "insn %zu: no map %d", i, in[i].imm);
            int fd = make_kernel_map(s, o->id, o->map_ids[in[i].imm], tool_pid, changed, err, errlen);
            if (fd < 0)
                return fd;
            in[i].src_reg = src == BPF_PSEUDO_MAP_IDX ? BPF_PSEUDO_MAP_FD : BPF_PSEUDO_MAP_VALUE;
            in[i].imm = fd;
        }
        i++;
    }
    return 0;
}

static int prog_load(const struct bpfg_obj_prog *p, const struct bpf_insn *insns, char *err, size_t errlen)
{
    LIBBPF_OPTS(bpf_prog_load_opts, po, .expected_attach_type = p->expected_attach_type);
    int fd = bpf_prog_load(p->prog_type, p->name, p->license ? p->license : "", insns, p->insn_cnt, &po);
    if (fd >= 0)
        return fd;
    int e = errno;
    char *log = malloc(KLOG_SIZE);
    if (log) { /* again, for the kernel verifier's log */
        LIBBPF_OPTS(bpf_prog_load_opts, lo, .expected_attach_type = p->expected_attach_type, .log_buf = log,
                    .log_size = KLOG_SIZE, .log_level = 1);
        log[0] = 0;
        fd = bpf_prog_load(p->prog_type, p->name, p->license ? p->license : "", insns, p->insn_cnt, &lo);
    }
    if (fd >= 0) {
        free(log);
        return fd;
    }
    size_t n = log ? strlen(log) : 0;
    srv_efail(err, errlen, -e, "kernel: program '%s' was refused by the kernel: %s%s%s", p->name, strerror(e),
              n ? ":\n" : "",
              n > KLOG_TAIL ? log + n - KLOG_TAIL
              : n           ? log
                            : "");
    free(log);
    return -e;
}

int tool_kernel_load(struct server *s, struct reg_object *o, pid_t tool_pid, const struct bpfg_obj_prog *p,
                     bool *maps_changed, char *err, size_t errlen)
{
    struct bpf_insn *insns = malloc(p->insn_cnt * sizeof(*insns));
    if (!insns)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    memcpy(insns, p->insns, p->insn_cnt * sizeof(*insns));
    int fd = kernel_insns(s, o, tool_pid, insns, p->insn_cnt, maps_changed, err, errlen);
    if (!fd)
        fd = prog_load(p, insns, err, errlen);
    free(insns);
    if (fd >= 0)
        srv_log(SRV_INFO, "tool object %u: program '%s' loaded into the kernel", o->id, p->name);
    return fd;
}

int tool_kernel_keep_prog(uint32_t obj_id, uint32_t prog_id, int fd)
{
    if (grow((void **)&progs, nprogs, sizeof(*progs))) {
        close(fd);
        return -ENOMEM;
    }
    progs[nprogs++] = (struct tk_prog){obj_id, prog_id, fd};
    return 0;
}

static int prog_fd(uint32_t prog_id)
{
    for (size_t i = 0; i < nprogs; i++)
        if (progs[i].prog_id == prog_id)
            return progs[i].fd;
    return -1;
}

bool tool_kernel_has_prog(uint32_t prog_id)
{
    return prog_fd(prog_id) >= 0;
}

/* ---- links ---- */

static int tracepoint_id(const char *name, char *err, size_t errlen)
{
    static const char *const roots[] = {"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"};
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        char path[512], buf[32] = "";
        snprintf(path, sizeof(path), "%s/%s/id", roots[i], name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        bool ok = fgets(buf, sizeof(buf), f) != NULL;
        fclose(f);
        if (ok)
            return atoi(buf);
    }
    return srv_efail(err, errlen, -ENOENT, "kernel tracepoint %s: no id in tracefs (is it mounted?)", name);
}

static int perf_open(const struct tool_kernel_attach *a, char *err, size_t errlen)
{
    struct perf_event_attr pa;
    memset(&pa, 0, sizeof(pa));
    pa.size = sizeof(pa);
    pa.sample_period = 1;
    pa.wakeup_events = 1;
    if (a->kind == BPFG_TOOL_TRACEPOINT) {
        int id = a->tp_id ? (int)a->tp_id : tracepoint_id(a->name, err, errlen);
        if (id < 0)
            return id;
        pa.type = PERF_TYPE_TRACEPOINT;
        pa.config = (uint64_t)id;
    } else {
        pa.type = a->probe_type;
        pa.config = (a->kind == BPFG_TOOL_URETPROBE ? 1ull << a->retprobe_bit : 0) | a->ref_ctr << 32;
        pa.config1 = (uint64_t)(uintptr_t)a->name;
        pa.config2 = a->offset;
    }
    int pid = a->pid > 0 ? a->pid : -1;
    int fd = (int)syscall(SYS_perf_event_open, &pa, pid, pid > 0 ? -1 : 0, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0)
        return srv_efail(err, errlen, -errno, "kernel: perf_event_open of %s: %s", a->name, strerror(errno));
    return fd;
}

static int link_open(int pfd, int prog, const struct tool_kernel_attach *a, char *err, size_t errlen)
{
    if (a->kind == BPFG_TOOL_RAW_TRACEPOINT) {
        int fd = bpf_raw_tracepoint_open(a->name, prog);
        return fd >= 0 ? fd : srv_efail(err, errlen, -errno, "kernel: raw tracepoint %s: %s", a->name, strerror(errno));
    }
    LIBBPF_OPTS(bpf_link_create_opts, lo, .perf_event.bpf_cookie = a->cookie);
    int fd = bpf_link_create(prog, pfd, BPF_PERF_EVENT, &lo);
    if (fd < 0)
        return srv_efail(err, errlen, -errno, "kernel: attaching to %s: %s", a->name, strerror(errno));
    return fd;
}

int tool_kernel_attach(uint32_t obj_id, uint32_t prog_id, uint32_t link_id, const struct tool_kernel_attach *a,
                       char *err, size_t errlen)
{
    int prog = prog_fd(prog_id);
    if (prog < 0)
        return srv_efail(err, errlen, -EBADF, "program %u is not in the kernel", prog_id);
    if (grow((void **)&links, nlinks, sizeof(*links)))
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    int pfd = a->kind == BPFG_TOOL_RAW_TRACEPOINT ? -1 : perf_open(a, err, errlen);
    if (pfd < -1)
        return pfd;
    int fd = link_open(pfd, prog, a, err, errlen);
    if (fd < 0) {
        if (pfd >= 0)
            close(pfd);
        return fd;
    }
    links[nlinks++] = (struct tk_link){obj_id, link_id, fd, pfd};
    srv_log(SRV_INFO, "tool object %u: link %u: kernel program %u attached by the kernel to %s", obj_id, link_id,
            prog_id, a->name);
    return 0;
}

static void link_close(size_t i)
{
    close(links[i].fd);
    if (links[i].perf_fd >= 0)
        close(links[i].perf_fd);
    links[i] = links[--nlinks];
}

int tool_kernel_detach(uint32_t obj_id, uint32_t link_id)
{
    for (size_t i = 0; i < nlinks; i++)
        if (links[i].obj_id == obj_id && links[i].link_id == link_id) {
            link_close(i);
            return 0;
        }
    return -ENOENT;
}

/* ---- the payload's questions, the end ---- */

int tool_kernel_map_ids(uint32_t obj_id, uint32_t **ids, size_t *n)
{
    *ids = NULL;
    *n = 0;
    for (size_t i = 0; i < nmaps; i++) {
        if (maps[i].obj_id != obj_id || maps[i].fd < 0)
            continue;
        if (grow((void **)ids, *n, sizeof(**ids))) {
            free(*ids);
            *ids = NULL;
            *n = 0;
            return -ENOMEM;
        }
        (*ids)[(*n)++] = maps[i].map_id;
    }
    return 0;
}

int tool_kernel_map_fd(uint32_t obj_id, uint32_t map_id)
{
    struct tk_map *m = map_rec(obj_id, map_id);
    return m && m->fd >= 0 ? m->fd : -ENOENT;
}

void tool_kernel_forget(uint32_t obj_id)
{
    for (size_t i = nlinks; i-- > 0;)
        if (links[i].obj_id == obj_id)
            link_close(i);
    for (size_t i = nprogs; i-- > 0;)
        if (progs[i].obj_id == obj_id) {
            close(progs[i].fd);
            progs[i] = progs[--nprogs];
        }
    for (size_t i = nmaps; i-- > 0;)
        if (maps[i].obj_id == obj_id) {
            if (maps[i].fd >= 0)
                close(maps[i].fd);
            maps[i] = maps[--nmaps];
        }
}
