/* Tool mode: the server side of `bpfgraft run` (tool.h, abi/payload_abi.h). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include "adopt.h"
#include "execwatch.h"
#include "log.h"
#include "maps.h"
#include "payload_abi.h"
#include "pmsg.h"
#include "progcheck.h"
#include "procfs.h"
#include "registry.h"
#include "server.h"
#include "symbols.h"
#include "syscalls.h"
#include "state.h"
#include "targets.h"
#include "tool.h"
#include "tool_kernel.h"
#include "tool_priv.h"
#include "tracerwait.h"
#include "verifier.h"

#define TOOL_MAX_INSNS 1000000
#define TOOL_ADOPT_WAIT_MS 3000 /* payloads reconnect every 100 ms */
#define CHAN_TIMEOUT_MS 2000
#define TP_SYNTH_BASE 0x7e000000u /* ids TP_ID makes up when tracefs is not mounted */

struct tp_name {
    uint32_t id;
    char name[96];
};

static struct tool *tools;
static struct tp_name *tp_names; /* ids TP_ID made up */
static size_t ntp_names;
static bool applying;            /* attaching a link: no recursion through targets_attach */
static bool release_due;         /* a tool ended: release_tool_targets at the next tools_reap */
static bool kernel_maps_changed; /* the request being served made maps the kernel's */

static struct tool *tool_of_pid(pid_t pid)
{
    for (struct tool *tl = tools; tl; tl = tl->next)
        if (!tl->dead && tl->pid == pid)
            return tl;
    return NULL;
}

/* The payload ABI of tl's process: its tool channel's requests and
 * replies are that ABI's (abi/payload_abi.h section 7). */
static uint32_t tool_abi(const struct tool *tl)
{
    return tl->abi ? tl->abi : adopt_payload_abi();
}

/* A program or link only the kernel can run makes maps kernel maps, which
 * a payload of ABI 2 cannot be told (its replies have no flags). */
static int refuse_kernel(const struct tool *tl, const char *what, char *err, size_t errlen)
{
    if (tool_abi(tl) >= 3)
        return 0;
    size_t n = strlen(err);
    snprintf(err + n, errlen - n,
             "%s%s: only the kernel can run it, and the tool's payload speaks payload ABI %u, "
             "which has no kernel maps",
             n ? "; " : "", what, tool_abi(tl));
    return -EOPNOTSUPP;
}

static uint32_t read_sysfs_u32(const char *path, const char *prefix)
{
    char buf[64] = "";
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    if (!fgets(buf, sizeof(buf), f))
        buf[0] = 0;
    fclose(f);
    size_t n = strlen(prefix);
    if (strncmp(buf, prefix, n) != 0)
        return 0;
    return (uint32_t)strtoul(buf + n, NULL, 10);
}

/* ---- channel I/O ---- */

static int chan_reply(struct tool *tl, uint32_t seq, int status, const void *body, size_t len, int fd)
{
    struct bpfg_pmsg_hdr h = {
        .len = (uint32_t)(sizeof(h) + len), .type = BPFG_PMSG_REPLY, .seq = seq, .status = status};
    return pmsg_write(tl->chan, &h, body, len, fd, CHAN_TIMEOUT_MS);
}

/* ---- maps ---- */

static enum bpfg_map_kind map_kind_of(const struct bpfg_tool_map_create *c, const char *name)
{
    /* libbpf names global data maps "<object prefix>.rodata" etc. */
    if (c->map_type != BPF_MAP_TYPE_ARRAY || c->max_entries != 1 || !(c->map_flags & BPF_F_MMAPABLE))
        return BPFG_MAP_USER;
    const char *dot = strchr(name, '.');
    if (!dot)
        return BPFG_MAP_USER;
    if (strncmp(dot, ".rodata", 7) == 0)
        return BPFG_MAP_RODATA;
    if (strncmp(dot, ".kconfig", 8) == 0)
        return BPFG_MAP_KCONFIG;
    if (strncmp(dot, ".bss", 4) == 0)
        return BPFG_MAP_BSS;
    if (strncmp(dot, ".data", 5) == 0)
        return BPFG_MAP_DATA;
    return BPFG_MAP_USER;
}

static const struct tool_btf *btf_by_id(const struct tool *tl, uint32_t id)
{
    for (size_t i = 0; i < tl->nbtfs; i++)
        if (tl->btfs[i].id == id)
            return &tl->btfs[i];
    return NULL;
}

/* The map c describes, made (or, s->reg.adopt_fd set, taken from that
 * region) in the tool's object. */
static int map_create(struct server *s, struct tool *tl, struct bpfg_tool_map_create c, uint32_t *id, int *fd,
                      char *err, size_t errlen)
{
    char name[17];
    memcpy(name, c.name, 16);
    name[16] = 0;
    struct reg_object *o = registry_object(&s->reg, tl->obj_id);
    if (!o)
        return srv_efail(err, errlen, -ENOENT, "the tool's object is gone");
    enum bpfg_map_kind kind = map_kind_of(&c, name);
    struct bpfg_map_spec spec = {
        .type = c.map_type,
        .key_size = c.key_size,
        .value_size = c.value_size,
        .max_entries = c.max_entries,
        .map_flags = c.map_flags,
        .map_extra = c.map_extra,
        .name = name,
        .btf_key_type_id = c.btf_key_type_id,
        .btf_value_type_id = c.btf_value_type_id,
    };
    if (kind != BPFG_MAP_USER)
        spec.map_flags |= BPFG_F_GLOBAL_DATA;
    if (c.map_type == BPF_MAP_TYPE_CGROUP_ARRAY) {
        /* tools create it for an optional cgroup filter (off unless asked
         * for): a plain array of the same shape holds what they store;
         * bpf_current_task_under_cgroup stays unavailable */
        spec.type = BPF_MAP_TYPE_ARRAY;
    }
    if (c.map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY) {
        /* one ring per CPU, whatever the key/value sizes say */
        spec.max_entries = c.max_entries ? c.max_entries : bpfg_possible_cpus();
    }
    if (strcmp(bpfg_map_type_name(spec.type), "unknown") == 0) {
        const char *tn = libbpf_bpf_map_type_str(c.map_type);
        return srv_efail(err, errlen, -EINVAL, "map '%s': map type %s is not available in bpfgraft yet", name,
                         tn ? tn : "unknown");
    }
    if (bpfg_map_type_is_outer(c.map_type)) {
        /* the inner map template: the map inner_map_fd named */
        struct reg_map *in = registry_map(&s->reg, c.inner_map_id);
        struct bpfg_map_info ii;
        if (!in)
            return srv_efail(err, errlen, -EBADF, "map '%s': no inner map %u", name, c.inner_map_id);
        bpfg_map_get_info(in->map, &ii);
        spec.inner = (struct bpfg_map_inner){ii.type, ii.key_size, ii.value_size, ii.max_entries, ii.map_flags};
    }
    struct reg_map *m;
    int r = registry_add_map(&s->reg, o, &spec, kind, &m, err, errlen);
    if (!r && spec.type != c.map_type && (r = tool_kernel_note_type(o->id, m->id, c.map_type)) != 0)
        srv_efail(err, errlen, r, "out of memory");
    if (r)
        return r;
    if (c.btf_id && !o->obj->btf) {
        /* the tool's own BTF types its maps for `bpfgraft map dump` */
        const struct tool_btf *b = btf_by_id(tl, c.btf_id);
        if (b)
            o->obj->btf = btf__new(b->data, (uint32_t)b->len);
        if (o->obj->btf && libbpf_get_error(o->obj->btf))
            o->obj->btf = NULL;
        if (o->obj->btf)
            tl->obj_btf_id = c.btf_id;
    }
    *id = m->id;
    *fd = bpfg_map_fd(m->map);
    srv_log(SRV_DEBUG, "tool %d: map %u '%s' (%s)", (int)tl->pid, m->id, name, bpfg_map_type_name(c.map_type));
    return 0;
}

static int do_map_create(struct server *s, struct tool *tl, const uint8_t *body, size_t len, uint32_t *id, int *fd,
                         char *err, size_t errlen)
{
    struct bpfg_tool_map_create c;
    if (len < sizeof(c))
        return srv_efail(err, errlen, -EINVAL, "MAP_CREATE: short request");
    memcpy(&c, body, sizeof(c));
    return map_create(s, tl, c, id, fd, err, errlen);
}

/* ---- map tickets (server/README.md, "Map tickets of run tools") ---- */

static int ticket_add(struct tool *tl, uint32_t id)
{
    uint32_t *grown = realloc(tl->tickets, (tl->ntickets + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    tl->tickets = grown;
    tl->tickets[tl->ntickets++] = id;
    return 0;
}

/* Whether id was a ticket of tl (it is not any more). */
static bool ticket_take(struct tool *tl, uint32_t id)
{
    for (size_t i = 0; i < tl->ntickets; i++)
        if (tl->tickets[i] == id) {
            tl->tickets[i] = tl->tickets[--tl->ntickets];
            return true;
        }
    return false;
}

int tool_ticket_restore(struct server *s, struct tool *tl, uint32_t id)
{
    uint32_t got;
    int fd = registry_map_ticket(&s->reg, id, &got);
    if (fd < 0)
        return fd;
    close(fd);
    return ticket_add(tl, id);
}

bool tools_hold_ticket(uint32_t id)
{
    for (struct tool *tl = tools; tl; tl = tl->next)
        for (size_t i = 0; i < tl->ntickets; i++)
            if (tl->tickets[i] == id)
                return true;
    return false;
}

static void tickets_drop(struct server *s, struct tool *tl)
{
    for (size_t i = 0; i < tl->ntickets; i++)
        registry_drop_ticket(&s->reg, tl->tickets[i]);
    tl->ntickets = 0;
}

/* A ticket's file sized and its header page allocated now, in the server,
 * not in the tool's create (server/README.md, "What a create costs"). A
 * failure leaves it empty, or sparse: the payload then sizes it or
 * allocates the page itself, as with an older server. */
static bool ticket_size(int fd)
{
    static const uint8_t zero[4096];
    if (ftruncate(fd, BPFG_TOOL_TICKET_SIZE) != 0)
        return false;
    if (pwrite(fd, zero, sizeof(zero), 0) != (ssize_t)sizeof(zero))
        srv_log(SRV_DEBUG, "map ticket: the header page is left to the tool (%s)", strerror(errno));
    return true;
}

/* MAP_TICKETS: up to the wanted count (and the object's room for maps),
 * their files' fds in fds[]. */
static int do_map_tickets(struct server *s, struct tool *tl, const uint8_t *body, size_t len,
                          struct bpfg_tool_tickets *t, int *fds, char *err, size_t errlen)
{
    uint32_t want;
    const struct reg_object *o = registry_object(&s->reg, tl->obj_id);
    if (len < sizeof(want) || !o)
        return srv_efail(err, errlen, -EINVAL, "MAP_TICKETS: %s", o ? "short request" : "the tool's object is gone");
    memcpy(&want, body, sizeof(want));
    bool sized = want & BPFG_TOOL_TICKETS_SIZED;
    want &= ~BPFG_TOOL_TICKETS_SIZED;
    size_t room = TOOL_MAX_MAPS - o->map_cnt > tl->ntickets ? TOOL_MAX_MAPS - o->map_cnt - tl->ntickets : 0;
    want = want < BPFG_TOOL_TICKETS_MAX ? want : BPFG_TOOL_TICKETS_MAX;
    want = want < room ? want : (uint32_t)room;
    int r = 0;
    for (t->count = 0; t->count < want && !r; t->count++) {
        int fd = registry_map_ticket(&s->reg, 0, &t->ids[t->count]);
        if (fd < 0 || (r = ticket_add(tl, t->ids[t->count])) != 0) {
            r = fd < 0 ? fd : r;
            if (fd >= 0)
                close(fd);
            registry_drop_ticket(&s->reg, t->ids[t->count]);
            break;
        }
        sized = sized && ticket_size(fd);
        fds[t->count] = fd;
    }
    if (!t->count)
        return srv_efail(err, errlen, r ? r : -ENOSPC, "no map tickets: %s",
                         r ? strerror(-r) : "the tool has its most maps");
    t->count |= sized ? BPFG_TOOL_TICKETS_SIZED : 0;
    return 0;
}

/* MAP_MADE (no reply): the ticket's region joins the tool's object as
 * its header describes it. Again for a map it has (a new server): nothing. */
static int do_map_made(struct server *s, struct tool *tl, const uint8_t *body, size_t len, char *err, size_t errlen)
{
    struct bpfg_tool_map_made mm;
    if (len < sizeof(mm))
        return srv_efail(err, errlen, -EINVAL, "MAP_MADE: short request");
    memcpy(&mm, body, sizeof(mm));
    const struct reg_map *have = registry_map(&s->reg, mm.id);
    if (have && have->obj_id == tl->obj_id)
        return 1; /* nothing new to record */
    if (!ticket_take(tl, mm.id))
        return srv_efail(err, errlen, -ENOENT, "MAP_MADE: %u is not a map ticket of this tool", mm.id);
    char file[16];
    snprintf(file, sizeof(file), "%u", mm.id);
    int fd = openat(s->reg.map_dirfd, file, O_RDWR | O_CLOEXEC), r;
    struct bpfg_map *map = NULL;
    if (fd < 0 || (r = bpfg_map_open_fd(fd, &map)) != 0) {
        r = fd < 0 ? -errno : r;
        srv_efail(err, errlen, r, "map %u: %s", mm.id, fd < 0 ? strerror(-r) : bpfg_map_last_error());
    } else {
        struct bpfg_map_info in;
        bpfg_map_get_info(map, &in);
        bpfg_map_close(map);
        struct bpfg_tool_map_create c = {.map_type = in.type,
                                         .key_size = in.key_size,
                                         .value_size = in.value_size,
                                         .max_entries = in.max_entries,
                                         .map_flags = in.map_flags,
                                         .btf_id = mm.btf_id,
                                         .btf_key_type_id = in.btf_key_type_id,
                                         .btf_value_type_id = in.btf_value_type_id,
                                         .map_extra = in.map_extra};
        memcpy(c.name, in.name, sizeof(c.name));
        uint32_t id;
        int ignored;
        s->reg.force_id = mm.id;
        s->reg.adopt_fd = fd;
        r = map_create(s, tl, c, &id, &ignored, err, errlen);
        s->reg.force_id = 0;
        s->reg.adopt_fd = -1;
    }
    if (fd >= 0)
        close(fd);
    if (r)
        registry_drop_ticket(&s->reg, mm.id);
    return r;
}

/* Frozen read-only global data is known to the verifier, as in the kernel
 * (libbpf freezes .rodata before loading the programs). */
static void refresh_rodata(struct server *s, struct reg_object *o)
{
    for (size_t i = 0; i < o->map_cnt; i++) {
        struct bpfg_obj_map *om = &o->obj->maps[i];
        if (om->kind != BPFG_MAP_RODATA && om->kind != BPFG_MAP_KCONFIG)
            continue;
        struct reg_map *m = registry_map(&s->reg, o->map_ids[i]);
        struct bpfg_map_info info;
        size_t size = 0;
        if (!m)
            continue;
        bpfg_map_get_info(m->map, &info);
        void *area = bpfg_map_value_area(m->map, &size, NULL);
        if (!info.frozen || !area || om->init_data)
            continue;
        size = size < om->value_size ? size : om->value_size;
        om->init_data = malloc(size);
        if (om->init_data) {
            memcpy(om->init_data, area, size);
            om->init_size = size;
        }
    }
}

/* ---- programs ---- */

static const char *prog_type_name(uint32_t t)
{
    switch (t) {
    case BPF_PROG_TYPE_KPROBE: return "kprobe";
    case BPF_PROG_TYPE_TRACEPOINT: return "tracepoint";
    case BPF_PROG_TYPE_RAW_TRACEPOINT: return "raw_tracepoint";
    case BPF_PROG_TYPE_PERF_EVENT: return "perf_event";
    case BPF_PROG_TYPE_TRACING: return "tracing (fentry/fexit/tp_btf)";
    case BPF_PROG_TYPE_LSM: return "lsm";
    case BPF_PROG_TYPE_EXT: return "ext (freplace)";
    case BPF_PROG_TYPE_STRUCT_OPS: return "struct_ops";
    default: return "other";
    }
}

/* Instructions no path reaches become `ja -1`, as the kernel's dead code
 * sanitizing does: what frozen .rodata switched off (a helper bpfgraft
 * lacks, e.g. a cgroup filter) must not stop the engines from loading it. */
static void sanitize_dead_code(struct bpf_insn *insns, size_t n, const uint8_t *reached)
{
    for (size_t i = 0; i < n; i++) {
        bool wide = insns[i].code == (BPF_LD | BPF_IMM | BPF_DW) && i + 1 < n;
        if (!reached[i]) {
            insns[i] = (struct bpf_insn){.code = BPF_JMP | BPF_JA, .off = -1};
            if (wide)
                insns[i + 1] = (struct bpf_insn){.code = BPF_JMP | BPF_JA, .off = -1};
        }
        if (wide)
            i++;
    }
}

/* Verifies p against o's maps; sanitize: then turn its dead code off (the
 * copy that runs: verifying it again would find unreachable code). */
static int verify(struct server *s, struct reg_object *o, struct bpfg_obj_prog *p, bool sanitize,
                  int32_t *kernel_helper, char *err, size_t errlen)
{
    refresh_rodata(s, o);
    struct bpfg_verify_env env;
    struct bpfg_verify_map *maps = NULL;
    int e = bpfg_verify_env_for_prog(o->obj, p, &env, &maps);
    if (e) {
        free(maps);
        return e == -EOPNOTSUPP ? 0 : srv_efail(err, errlen, e, "out of memory");
    }
    struct progcheck_options opt;
    progcheck_get_options(&opt);
    env.allow_probe_write_user = opt.allow_probe_write_user;
    env.allow_override_return = opt.allow_override_return;
    env.kernel_check = opt.kernel_check;
    struct bpfg_verify_result *res = malloc(sizeof(*res));
    if (!res) {
        free(maps);
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    }
    env.reached = calloc(p->insn_cnt, 1);
    e = env.reached ? bpfg_verify(p->insns, p->insn_cnt, &env, res) : -ENOMEM;
    if (!e && sanitize)
        sanitize_dead_code(p->insns, p->insn_cnt, env.reached);
    if (kernel_helper)
        *kernel_helper = res->kernel_helper;
    free(env.reached);
    if (e == -ENOMEM)
        srv_efail(err, errlen, e, "out of memory");
    else if (e)
        e = srv_efail(err, errlen, -EACCES, "bpfgraft verifier: program '%s': %s", p->name, res->msg);
    free(res);
    free(maps);
    return e;
}

/* lddw map references carry map ids (the payload translated the tool's
 * fds); the registry's programs use indices into the object's maps. */
static int translate_insns(const struct reg_object *o, struct bpf_insn *insns, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        struct bpf_insn *in = &insns[i];
        if (in->code != (BPF_LD | BPF_IMM | BPF_DW))
            continue;
        if (i + 1 >= n)
            return srv_efail(err, errlen, -EINVAL, "insn %zu: lddw without its second half", i);
        switch (in->src_reg) {
        case 0:
        case BPF_PSEUDO_FUNC: break;
        case BPF_PSEUDO_MAP_FD:
        case BPF_PSEUDO_MAP_VALUE: {
            int idx = registry_object_map_index(o, (uint32_t)in->imm);
            if (idx < 0)
                return srv_efail(err, errlen, -EBADF, "insn %zu: map %u is not one of this tool's maps", i,
                                 (uint32_t)in->imm);
            in->src_reg = in->src_reg == BPF_PSEUDO_MAP_FD ? BPF_PSEUDO_MAP_IDX : BPF_PSEUDO_MAP_IDX_VALUE;
            in->imm = idx;
            break;
        }
        case BPF_PSEUDO_BTF_ID:
            return srv_efail(err, errlen, -EOPNOTSUPP,
                             "insn %zu: kernel symbols (__ksym variables) do not exist in userspace", i);
        default: return srv_efail(err, errlen, -EINVAL, "insn %zu: lddw with unknown src_reg %u", i, in->src_reg);
        }
        i++;
    }
    return 0;
}

static int dup_str(char **out, const char *s)
{
    *out = strdup(s);
    return *out ? 0 : -ENOMEM;
}

static int do_prog_load(struct server *s, struct tool *tl, const uint8_t *body, size_t len, uint32_t *id, char *err,
                        size_t errlen)
{
    struct bpfg_tool_prog_load pl;
    if (len < sizeof(pl))
        return srv_efail(err, errlen, -EINVAL, "PROG_LOAD: short request");
    memcpy(&pl, body, sizeof(pl));
    if (!pl.insn_cnt || pl.insn_cnt > TOOL_MAX_INSNS ||
        len - sizeof(pl) != (size_t)pl.insn_cnt * sizeof(struct bpf_insn))
        return srv_efail(err, errlen, pl.insn_cnt > TOOL_MAX_INSNS ? -E2BIG : -EINVAL,
                         "PROG_LOAD: %u instructions in %zu bytes", pl.insn_cnt, len - sizeof(pl));
    struct reg_object *o = registry_object(&s->reg, tl->obj_id);
    if (!o)
        return srv_efail(err, errlen, -ENOENT, "the tool's object is gone");
    char name[17], license[65];
    memcpy(name, pl.name, 16);
    name[16] = 0;
    memcpy(license, pl.license, 64);
    license[64] = 0;

    enum bpfg_attach_kind kind;
    switch (pl.prog_type) {
    case BPF_PROG_TYPE_KPROBE: kind = BPFG_ATTACH_UPROBE; break;
    case BPF_PROG_TYPE_TRACEPOINT: kind = BPFG_ATTACH_SYSCALL_ENTER; break;
    case BPF_PROG_TYPE_RAW_TRACEPOINT: kind = BPFG_ATTACH_RAW_SYSCALL_ENTER; break;
    case BPF_PROG_TYPE_PERF_EVENT: kind = BPFG_ATTACH_TIMER; break; /* a timer in the tool (interval:) */
    case BPF_PROG_TYPE_TRACING:
    case BPF_PROG_TYPE_LSM:
    case BPF_PROG_TYPE_EXT:
    case BPF_PROG_TYPE_STRUCT_OPS:
        return srv_efail(err, errlen, -EOPNOTSUPP,
                         "bpfgraft: program '%s': type %s attaches to the kernel and cannot run in userspace", name,
                         prog_type_name(pl.prog_type));
    default:
        /* socket filters and the like: libbpf's feature probes. Loaded,
         * never attachable. */
        kind = BPFG_ATTACH_UNSUPPORTED;
        break;
    }
    struct bpfg_obj_prog p;
    memset(&p, 0, sizeof(p));
    p.kind = kind;
    p.prog_type = pl.prog_type;
    p.expected_attach_type = pl.expected_attach_type;
    p.insn_cnt = pl.insn_cnt;
    p.insns = malloc(len - sizeof(pl));
    char section[64];
    snprintf(section, sizeof(section), "tool:%s", prog_type_name(pl.prog_type));
    int r = p.insns ? 0 : -ENOMEM;
    if (!r)
        memcpy(p.insns, body + sizeof(pl), len - sizeof(pl));
    if (!r && (r = dup_str(&p.name, name[0] ? name : "prog")) == 0 && (r = dup_str(&p.section, section)) == 0 &&
        (r = dup_str(&p.license, license)) == 0 && kind == BPFG_ATTACH_UNSUPPORTED)
        r = dup_str(&p.error, "a program type bpfgraft does not run (loaded for a feature probe)");
    if (r)
        srv_efail(err, errlen, r, "out of memory");
    if (!r)
        r = translate_insns(o, p.insns, p.insn_cnt, err, errlen);
    int kfd = -1;
    if (!r && kind != BPFG_ATTACH_UNSUPPORTED) {
        int32_t khelper = 0;
        r = verify(s, o, &p, false, &khelper, err, errlen);
        if (r == -EACCES && khelper && tool_abi(tl) < 3) {
            r = refuse_kernel(tl, "the program calls a kernel helper", err, errlen);
        } else if (r == -EACCES && khelper) {
            /* a helper only the kernel has, on a path the program takes */
            srv_log(SRV_INFO, "tool %d: program '%s' calls kernel helper %d: it runs in the kernel", (int)tl->pid, name,
                    khelper);
            kfd = tool_kernel_load(s, o, tl->pid, &p, &kernel_maps_changed, err, errlen);
            r = kfd < 0 ? kfd : 0;
            p.kernel = kfd >= 0;
        } else if (r == -EACCES && kind != BPFG_ATTACH_UPROBE) {
            /* Which tracepoint a (raw) tracepoint program reads is known only
             * at attach, where it is verified again against that context: a
             * program for a kernel tracepoint then fails with that reason,
             * not with one about the syscall layout tried here. */
            srv_log(SRV_DEBUG, "tool %d: program '%s' verified at attach (%s)", (int)tl->pid, name, err);
            r = 0;
        }
    }
    struct reg_prog *rp = NULL;
    if (!r && (r = registry_add_prog(&s->reg, o, &p, &rp)) != 0)
        srv_efail(err, errlen, r, r == -E2BIG ? "at most %d programs per tool" : "out of memory", TOOL_MAX_PROGS);
    if (r) {
        if (kfd >= 0)
            close(kfd);
        free(p.name);
        free(p.section);
        free(p.license);
        free(p.error);
        free(p.insns);
        return r;
    }
    if (kfd >= 0 && (r = tool_kernel_keep_prog(o->id, rp->id, kfd)) != 0)
        return srv_efail(err, errlen, r, "out of memory");
    *id = rp->id;
    srv_log(SRV_DEBUG, "tool %d: program %u '%s' (%s, %u insns)", (int)tl->pid, rp->id, name,
            prog_type_name(pl.prog_type), pl.insn_cnt);
    return 0;
}

static int do_btf_load(struct tool *tl, const uint8_t *body, size_t len, uint32_t *id, char *err, size_t errlen)
{
    struct btf *b = btf__new(body, (uint32_t)len);
    if (!b || libbpf_get_error(b))
        return srv_efail(err, errlen, -EINVAL, "BTF_LOAD: malformed BTF (%zu bytes)", len);
    btf__free(b);
    struct tool_btf *grown = realloc(tl->btfs, (tl->nbtfs + 1) * sizeof(*grown));
    void *copy = grown ? malloc(len) : NULL;
    if (grown)
        tl->btfs = grown;
    if (!copy)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    memcpy(copy, body, len);
    *id = (uint32_t)tl->nbtfs + 1;
    tl->btfs[tl->nbtfs++] = (struct tool_btf){*id, copy, len};
    return 0;
}

/* ---- tracepoints ---- */

static const char *const tracefs_roots[] = {"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"};

/* "syscalls/sys_enter_openat" etc.: the kinds bpfgraft runs. */
static int classify_tp(const char *name, enum bpfg_attach_kind *kind, char *syscall, size_t slen, char *err,
                       size_t errlen)
{
    if (strcmp(name, "raw_syscalls/sys_enter") == 0 || strcmp(name, "raw_syscalls/sys_exit") == 0) {
        *kind = name[17] == 'n' ? BPFG_ATTACH_RAW_SYSCALL_ENTER : BPFG_ATTACH_RAW_SYSCALL_EXIT;
        syscall[0] = 0;
        return 0;
    }
    const char *rest = NULL;
    if (strncmp(name, "syscalls/sys_enter_", 19) == 0) {
        *kind = BPFG_ATTACH_SYSCALL_ENTER;
        rest = name + 19;
    } else if (strncmp(name, "syscalls/sys_exit_", 18) == 0) {
        *kind = BPFG_ATTACH_SYSCALL_EXIT;
        rest = name + 18;
    }
    if (!rest)
        return srv_efail(err, errlen, -EOPNOTSUPP,
                         "tracepoint %s is in the kernel: bpfgraft has syscalls/* and raw_syscalls/* in userspace",
                         name);
    if (syscalls_nr(rest) < 0)
        return srv_efail(err, errlen, -ENOENT, "tracepoint %s: no syscall '%s' on x86-64", name, rest);
    snprintf(syscall, slen, "%s", rest);
    return 0;
}

static int tp_id_of(const char *name, uint32_t *id, char *err, size_t errlen)
{
    enum bpfg_attach_kind kind;
    char sc[64];
    int r = classify_tp(name, &kind, sc, sizeof(sc), err, errlen);
    if (r)
        return r;
    for (size_t i = 0; i < ntp_names; i++)
        if (strcmp(tp_names[i].name, name) == 0) {
            *id = tp_names[i].id;
            return 0;
        }
    struct tp_name *grown = realloc(tp_names, (ntp_names + 1) * sizeof(*grown));
    if (!grown)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    tp_names = grown;
    struct tp_name *t = &tp_names[ntp_names];
    t->id = TP_SYNTH_BASE + (uint32_t)ntp_names;
    snprintf(t->name, sizeof(t->name), "%s", name);
    ntp_names++;
    *id = t->id;
    return 0;
}

/* The name of a tracepoint id: one TP_ID made up, or the kernel's (the
 * tool read tracefs itself). */
static int tp_name_of(uint32_t id, char *out, size_t outlen)
{
    for (size_t i = 0; i < ntp_names; i++)
        if (tp_names[i].id == id) {
            snprintf(out, outlen, "%s", tp_names[i].name);
            return 0;
        }
    static const char *const cats[] = {"syscalls", "raw_syscalls"};
    for (size_t r = 0; r < 2; r++)
        for (size_t c = 0; c < 2; c++) {
            char dir[128];
            snprintf(dir, sizeof(dir), "%s/%s", tracefs_roots[r], cats[c]);
            DIR *d = opendir(dir);
            if (!d)
                continue;
            struct dirent *e;
            while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                    continue;
                char path[512];
                snprintf(path, sizeof(path), "%s/%s/id", dir, e->d_name);
                if (read_sysfs_u32(path, "") == id && id) {
                    snprintf(out, outlen, "%s/%.64s", cats[c], e->d_name);
                    closedir(d);
                    return 0;
                }
            }
            closedir(d);
        }
    return -ENOENT;
}

/* ---- links ---- */

static bool link_has(const struct tool_link *l, pid_t pid)
{
    for (size_t i = 0; i < l->nin; i++)
        if (l->in[i] == pid)
            return true;
    return false;
}

static int rpc_to_errno(int code)
{
    switch (code) {
    case BPFG_RPC_E_NOT_FOUND: return -ENOENT;
    case BPFG_RPC_E_PERMISSION: return -EPERM;
    case BPFG_RPC_E_EXISTS: return -EEXIST;
    case BPFG_RPC_E_UNSUPPORTED: return -EOPNOTSUPP;
    case BPFG_RPC_E_BUSY: return -EBUSY;
    default: return -EINVAL;
    }
}

/* A uprobe's file as the tool named it, resolved as the kernel resolves it:
 * in the tool's context (bpftrace's BEGIN names /proc/self/exe). */
static int tool_path(pid_t tool, const char *name, char *out, size_t outlen)
{
    char in[PATH_MAX];
    const char *rest = NULL;
    if (!strncmp(name, "/proc/self/", 11))
        rest = name + 11;
    else if (!strncmp(name, "/proc/thread-self/", 18))
        rest = name + 18;
    if (rest)
        snprintf(in, sizeof(in), "/proc/%d/%s", (int)tool, rest);
    else if (name[0] != '/') /* as the kernel: from the caller's working directory */
        snprintf(in, sizeof(in), "/proc/%d/cwd/%s", (int)tool, name);
    else
        snprintf(in, sizeof(in), "%s", name);
    struct stat st;
    if (!name[0] || outlen < PATH_MAX || stat(in, &st) != 0)
        return -ENOENT;
    if (!realpath(in, out))
        return -errno;
    return 0;
}

/* Notes that link l is attached in process pid. */
static int link_record(struct tool_link *l, pid_t pid, char *err, size_t errlen)
{
    pid_t *grown = realloc(l->in, (l->nin + 1) * sizeof(pid_t));
    if (!grown)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    l->in = grown;
    l->in[l->nin++] = pid;
    return 0;
}

/* Attaches link in t if t is in its scope. 0 also when out of scope. */
static int link_apply(struct server *s, struct tool *tl, struct tool_link *l, struct target *t, char *err,
                      size_t errlen)
{
    /* a tool is in no one's scope but its own, by pid (bpftrace's BEGIN);
     * a payload of another ABI takes nothing */
    if ((l->pid > 0 && t->pid != l->pid) || (tool_of_pid(t->pid) && l->pid != tl->pid) || link_has(l, t->pid) ||
        t->foreign_abi)
        return 0;
    if (l->pid <= 0 && l->binary && !sym_maps_binary(t->pid, l->binary))
        return 0;
    applying = true;
    int code = targets_attach(s, t->pid, 0, 0, &l->prog_id, 1, NULL, tl->engine, l->cookie, err, errlen);
    applying = false;
    if (code)
        return rpc_to_errno(code);
    if ((code = link_record(l, t->pid, err, errlen)) != 0) {
        targets_remove_progs(s, t, &l->prog_id, 1, NULL, 0);
        return code;
    }
    srv_log(SRV_INFO, "tool %d: link %u (program %u) attached in process %d", (int)tl->pid, l->id, l->prog_id,
            (int)t->pid);
    return 0;
}

/* A tool's -p PID of a process not yet managed: attached on the spot, as
 * under the kernel perf_event_open needs nothing prepared, if the tool's
 * user may ptrace it (else EACCES, the kernel's answer). */
static int attach_for_tool(struct server *s, struct tool *tl, pid_t pid, struct target **out, char *err, size_t errlen)
{
    uid_t uid, euid, suid;
    if (bpfg_procfs_uids(tl->pid, &uid, &euid, &suid) != 0)
        return srv_efail(err, errlen, -ESRCH, "the tool's process %d is gone", (int)tl->pid);
    int code = targets_attach(s, pid, uid, tl->pid, NULL, 0, NULL, tl->engine, 0, err, errlen);
    if (code)
        return code == BPFG_RPC_E_PERMISSION ? -EACCES : code == BPFG_RPC_E_NOT_FOUND ? -ESRCH : rpc_to_errno(code);
    if (!(*out = targets_find(&s->targets, pid)))
        return srv_efail(err, errlen, -ESRCH, "process %d ended while being attached", (int)pid);
    (*out)->for_tools = true;
    srv_log(SRV_INFO, "tool %d: process %d attached for it; it leaves with the last tool that wants it", (int)tl->pid,
            (int)pid);
    return 0;
}

/* A tool's -p PID of a process another tracer holds (bpftrace -c CMD with
 * usdt probes stops its child at exec while it attaches): the link waits
 * until that tracer lets go (tracerwait.c), if the tool's user may trace
 * the process. */
static int wait_for_tracer(struct server *s, struct tool *tl, pid_t pid, char *err, size_t errlen)
{
    uid_t uid, euid, suid;
    if (bpfg_procfs_uids(tl->pid, &uid, &euid, &suid) != 0)
        return srv_efail(err, errlen, -ESRCH, "the tool's process %d is gone", (int)tl->pid);
    int r = targets_may_trace(pid, uid, tl->pid, err, errlen);
    if (r)
        return r == -EPERM ? -EACCES : r;
    return tracerwait_add(s, pid, tl->pid, err, errlen);
}

bool tools_want_new(pid_t pid)
{
    for (struct tool *tl = tools; tl; tl = tl->next)
        for (size_t i = 0; !tl->dead && i < tl->nlinks; i++) {
            const struct tool_link *l = tl->links[i];
            if (l->pid == pid || (l->pid <= 0 && l->watching_all && !l->binary))
                return true;
            if (l->pid <= 0 && l->binary && sym_maps_binary(pid, l->binary))
                return true;
        }
    return false;
}

bool tools_want_pid(pid_t pid)
{
    for (struct tool *tl = tools; tl; tl = tl->next)
        for (size_t i = 0; !tl->dead && i < tl->nlinks; i++)
            if (tl->links[i]->pid == pid || link_has(tl->links[i], pid))
                return true;
    return false;
}

/* Processes attached only for tools are detached once no tool wants them
 * and nothing else runs in them, until `until` (ms; at least one). True
 * when time ran out before every one was seen. */
static bool release_tool_targets(struct server *s, uint64_t until)
{
    for (struct target *t = s->targets.list, *next; t; t = next) {
        next = t->next;
        if (!t->for_tools || tools_want_pid(t->pid) || t->nhooks || syscalls_count(t))
            continue;
        pid_t pid = t->pid;
        char why[256];
        if (targets_detach(s, pid, 0, 0, why, sizeof(why)) != 0)
            srv_log(SRV_WARN, "process %d, attached for tools: detach failed: %s", (int)pid, why);
        else
            srv_log(SRV_INFO, "process %d: detached, no tool wants it any more", (int)pid);
        if (server_now_ms() >= until)
            return true;
    }
    return false;
}

#define REACH_SYNC_MS 1000 /* in the tool's request: a few processes are all attached when it returns */
#define REACH_TICK_MS 20   /* then on each tick, the server's other work going on in between */
#define RETIRE_TICK_MS 20  /* an ended tool's programs leaving processes, on each tick */
#define DETACH_SYNC_MS 200 /* in a tool's link close: a few processes are done when it returns */

/* The next process of link l's reach, attached for the tool if it still
 * runs the binary and bpfgraft does not manage it meanwhile. */
static void reach_next(struct server *s, struct tool *tl, struct tool_link *l)
{
    char err[512];
    struct target *t;
    pid_t pid = l->reach[--l->nreach];
    if (targets_find(&s->targets, pid) || tool_of_pid(pid) || !sym_maps_binary(pid, l->binary))
        return;
    if (attach_for_tool(s, tl, pid, &t, err, sizeof(err)) != 0 || link_apply(s, tl, l, t, err, sizeof(err)) != 0)
        srv_log(SRV_WARN, "tool %d: link %u not attached in process %d: %s", (int)tl->pid, l->id, (int)pid, err);
}

/* Attaches processes of l's reach until `until` (at least one). True
 * when the time ran out. */
static bool reach_until(struct server *s, struct tool *tl, struct tool_link *l, uint64_t until)
{
    while (l->nreach) {
        reach_next(s, tl, l);
        if (server_now_ms() >= until)
            return true;
    }
    return false;
}

static bool is_syscall_kind(enum bpfg_attach_kind kind)
{
    return kind == BPFG_ATTACH_SYSCALL_ENTER || kind == BPFG_ATTACH_SYSCALL_EXIT ||
           kind == BPFG_ATTACH_RAW_SYSCALL_ENTER || kind == BPFG_ATTACH_RAW_SYSCALL_EXIT;
}

/* A shared library by its name (NAME.so, NAME.so.N): processes map it, a
 * probe on it cannot wait for its exec. */
static bool is_library(const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    const char *so = strstr(base, ".so");
    return so && (so[3] == 0 || so[3] == '.');
}

/* A system-wide syscall tracepoint or library uprobe (pid -1) of a root
 * tool, as under the kernel: also every process started after it
 * (execwatch_add_all; a library's: those that map it at their entry
 * point, tools_want_new); syscall tracepoints do not attach the
 * processes running before them (server/README.md, "Tools and new
 * processes"). A tool of another user, which the kernel would refuse a
 * system-wide tracepoint, reaches the managed processes only. */
static void link_watch_all(struct server *s, struct tool *tl, struct tool_link *l)
{
    uid_t uid = 1, euid = 1, suid = 1;
    char err[512];
    if (bpfg_procfs_uids(tl->pid, &uid, &euid, &suid) != 0 || euid != 0)
        srv_log(SRV_INFO, "tool %d: link %u: not root: reaches the processes bpfgraft manages only", (int)tl->pid,
                l->id);
    else if (execwatch_add_all(s, err, sizeof(err)) == 0)
        l->watching_all = true;
    else
        srv_log(SRV_WARN, "tool %d: link %u: processes started later are not caught: %s", (int)tl->pid, l->id, err);
}

/* pid -1 on a binary, as under the kernel: every process running it now
 * (attached for the tool where bpfgraft does not manage it yet: for up to
 * REACH_SYNC_MS in the request, the rest a few each tick, as each attach
 * stops and injects a process and hundreds at once kept the server from
 * answering anyone for minutes) and every one started later
 * (execwatch.c). */
static void link_reach_binary(struct server *s, struct tool *tl, struct tool_link *l)
{
    char err[512];
    if (is_library(l->binary))
        link_watch_all(s, tl, l);
    else if (execwatch_add(s, l->binary, err, sizeof(err)) == 0)
        l->watching = true;
    else
        srv_log(SRV_WARN, "tool %d: link %u: processes starting %s later are not caught: %s", (int)tl->pid, l->id,
                l->binary, err);
    DIR *d = opendir("/proc");
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid <= 0 || pid == getpid() || pid == tl->pid || tool_of_pid(pid) || targets_find(&s->targets, pid) ||
            !sym_maps_binary(pid, l->binary))
            continue;
        pid_t *grown = realloc(l->reach, (l->nreach + 1) * sizeof(pid_t));
        if (!grown) {
            srv_log(SRV_WARN, "tool %d: link %u not attached in process %d: out of memory", (int)tl->pid, l->id,
                    (int)pid);
            continue;
        }
        l->reach = grown;
        l->reach[l->nreach++] = pid;
    }
    closedir(d);
    if (reach_until(s, tl, l, server_now_ms() + REACH_SYNC_MS))
        srv_log(SRV_INFO, "tool %d: link %u: %zu more process(es) running %s attached in the background", (int)tl->pid,
                l->id, l->nreach, l->binary);
}

static void reach_some(struct server *s)
{
    uint64_t until = server_now_ms() + REACH_TICK_MS;
    for (struct tool *tl = tools; tl; tl = tl->next)
        for (size_t i = 0; !tl->dead && !tl->pending && i < tl->nlinks; i++)
            if (reach_until(s, tl, tl->links[i], until))
                return;
}

/* l catches no more processes. */
static void link_unwatch(struct server *s, struct tool_link *l)
{
    if (l->watching)
        execwatch_remove(s, l->binary);
    if (l->watching_all)
        execwatch_remove_all(s);
    l->watching = l->watching_all = false;
    l->nreach = 0;
}

/* What an ended tool (or a closed link) leaves to the tick, RETIRE_TICK_MS
 * at a time, in order: its programs leave each process (prog_id), its maps
 * leave each process (prog_id 0), its object is unloaded (pid 0); then the
 * processes attached for it are released. Done at once, hundreds of
 * processes kept the server from answering anyone for half a minute. */
struct retire_step {
    pid_t pid;
    uint32_t prog_id;
    uint32_t obj_id;
};
static struct retire_step *steps;
static size_t nsteps, steps_done;

static void step_add(pid_t pid, uint32_t prog_id, uint32_t obj_id)
{
    struct retire_step *grown = realloc(steps, (nsteps + 1) * sizeof(*grown));
    if (!grown) {
        srv_log(SRV_ERROR, "out of memory: program %u of an ended tool stays in process %d", prog_id, (int)pid);
        return;
    }
    steps = grown;
    steps[nsteps++] = (struct retire_step){pid, prog_id, obj_id};
}

static void step_run(struct server *s, const struct retire_step *st)
{
    struct reg_object *o = registry_object(&s->reg, st->obj_id);
    struct target *t = st->pid ? targets_find(&s->targets, st->pid) : NULL;
    if (!st->pid && o)
        registry_unload(&s->reg, st->obj_id);
    else if (t && st->prog_id)
        targets_remove_progs(s, t, &st->prog_id, 1, NULL, 0);
    else if (t && o)
        targets_remove_progs(s, t, NULL, 0, o->map_ids, o->map_cnt);
}

/* Runs steps until `until` (at least one); true when time ran out. */
static bool steps_run(struct server *s, uint64_t until)
{
    while (steps_done < nsteps) {
        struct retire_step st = steps[steps_done++];
        step_run(s, &st);
        if (server_now_ms() >= until && steps_done < nsteps)
            return true;
    }
    nsteps = steps_done = 0;
    return false;
}

/* A link the tool closed: its program leaves the processes it is in, for
 * up to DETACH_SYNC_MS in the request (a few processes: gone when the
 * tool's close returns, as under the kernel), the rest as retire steps. */
static void link_remove(struct server *s, struct tool_link *l, uint32_t obj_id)
{
    link_unwatch(s, l);
    uint64_t until = server_now_ms() + DETACH_SYNC_MS;
    size_t k = 0;
    while (k < l->nin) {
        struct target *t = targets_find(&s->targets, l->in[k++]);
        if (t)
            targets_remove_progs(s, t, &l->prog_id, 1, NULL, 0);
        if (server_now_ms() >= until)
            break;
    }
    for (; k < l->nin; k++)
        step_add(l->in[k], l->prog_id, obj_id);
    l->nin = 0;
    release_due = true;
}

static void link_free(struct tool_link *l)
{
    if (!l)
        return;
    free(l->binary);
    free(l->in);
    free(l->reach);
    free(l);
}

static int clone_prog(const struct bpfg_obj_prog *src, enum bpfg_attach_kind kind, const char *binary, uint64_t offset,
                      const char *syscall, struct bpfg_obj_prog *dst)
{
    memset(dst, 0, sizeof(*dst));
    char section[600];
    if (binary)
        snprintf(section, sizeof(section), "%s/%.500s@0x%llx", kind == BPFG_ATTACH_URETPROBE ? "uretprobe" : "uprobe",
                 binary, (unsigned long long)offset);
    else if (syscall && syscall[0])
        snprintf(section, sizeof(section), "tracepoint/syscalls/sys_%s_%s",
                 kind == BPFG_ATTACH_SYSCALL_ENTER ? "enter" : "exit", syscall);
    else if (kind == BPFG_ATTACH_TIMER)
        snprintf(section, sizeof(section), "perf_event/timer@%lluns", (unsigned long long)offset);
    else
        snprintf(section, sizeof(section), "%s/%s",
                 src->prog_type == BPF_PROG_TYPE_RAW_TRACEPOINT ? "raw_tracepoint" : "tracepoint/raw_syscalls",
                 kind == BPFG_ATTACH_RAW_SYSCALL_ENTER ? "sys_enter" : "sys_exit");
    dst->kind = kind;
    dst->prog_type = src->prog_type;
    dst->expected_attach_type = src->expected_attach_type;
    dst->insn_cnt = src->insn_cnt;
    dst->target_offset = offset;
    dst->target_file_offset = binary != NULL;
    dst->insns = malloc(src->insn_cnt * sizeof(struct bpf_insn));
    int r = dst->insns ? 0 : -ENOMEM;
    if (!r) {
        memcpy(dst->insns, src->insns, src->insn_cnt * sizeof(struct bpf_insn));
        r = dup_str(&dst->name, src->name);
    }
    if (!r)
        r = dup_str(&dst->section, section);
    if (!r)
        r = dup_str(&dst->license, src->license ? src->license : "");
    if (!r && binary)
        r = dup_str(&dst->target_binary, binary);
    if (!r && syscall && syscall[0])
        r = dup_str(&dst->syscall, syscall);
    if (r) {
        free(dst->insns);
        free(dst->name);
        free(dst->section);
        free(dst->license);
        free(dst->target_binary);
        free(dst->syscall);
        memset(dst, 0, sizeof(*dst));
    }
    return r;
}

/* ---- links of kernel programs (tool_kernel.h) ---- */

/* Where only the kernel can run a program: a kernel tracepoint, and the
 * exit of execve (a successful one returns into a new image, where no
 * payload is). */
static bool kernel_only_attach(const struct bpfg_tool_attach *a, const char *name, char *tp, size_t tplen)
{
    if (a->kind == BPFG_TOOL_RAW_TRACEPOINT)
        return strcmp(name, "sys_enter") != 0 && strcmp(name, "sys_exit") != 0;
    if (a->kind != BPFG_TOOL_TRACEPOINT)
        return false;
    if (tp_name_of(a->tp_id, tp, tplen) != 0)
        return a->tp_id < TP_SYNTH_BASE; /* not a syscall's: a kernel tracepoint */
    return !strcmp(tp, "syscalls/sys_exit_execve") || !strcmp(tp, "syscalls/sys_exit_execveat");
}

/* The program goes to the kernel now (its maps made the kernel's). */
static int load_in_kernel(struct server *s, struct tool *tl, struct reg_object *o, const struct reg_prog *lp, char *err,
                          size_t errlen)
{
    int fd = tool_kernel_load(s, o, tl->pid, lp->prog, &kernel_maps_changed, err, errlen);
    if (fd < 0)
        return fd;
    int r = tool_kernel_keep_prog(o->id, lp->id, fd);
    if (r)
        return srv_efail(err, errlen, r, "out of memory");
    for (size_t i = 0; i < o->prog_cnt; i++)
        if (o->prog_ids[i] == lp->id)
            o->obj->progs[i].kernel = true; /* prog list: RUNS kernel */
    return 0;
}

/* 1 when the attachment is userspace's; else the kernel attaches it:
 * 0 (link id in *id) or a negative errno. */
static int attach_kernel(struct server *s, struct tool *tl, struct reg_object *o, const struct reg_prog *lp,
                         const struct bpfg_tool_attach *a, const char *name, uint32_t *id, char *err, size_t errlen)
{
    char tp[96] = "", path[PATH_MAX];
    bool kernel_prog = tool_kernel_has_prog(lp->id);
    if (!kernel_only_attach(a, name, tp, sizeof(tp)) && !kernel_prog)
        return 1;
    err[0] = 0;
    int r = refuse_kernel(tl, "the attachment", err, errlen);
    if (r)
        return r;
    if (!tp[0])
        snprintf(tp, sizeof(tp), "tracepoint id %u", a->tp_id);
    struct tool_kernel_attach ka = {
        .kind = a->kind,
        .pid = a->pid,
        .name = a->kind == BPFG_TOOL_RAW_TRACEPOINT ? name : tp,
        .tp_id = a->tp_id < TP_SYNTH_BASE ? a->tp_id : 0,
        .offset = a->offset,
        .ref_ctr = a->ref_ctr_offset,
        .cookie = a->cookie,
        .probe_type = read_sysfs_u32("/sys/bus/event_source/devices/uprobe/type", ""),
        .retprobe_bit = read_sysfs_u32("/sys/bus/event_source/devices/uprobe/format/retprobe", "config:")};
    if (a->kind == BPFG_TOOL_UPROBE || a->kind == BPFG_TOOL_URETPROBE) {
        if (tool_path(tl->pid, name, path, sizeof(path)) != 0)
            return srv_efail(err, errlen, -ENOENT, "uprobe: no file '%s'", name);
        ka.name = path;
    } else if (a->kind == BPFG_TOOL_TIMER) {
        return srv_efail(err, errlen, -EOPNOTSUPP, "program '%s' runs in the kernel: bpfgraft has no kernel timers",
                         lp->prog->name);
    }
    r = kernel_prog ? 0 : load_in_kernel(s, tl, o, lp, err, errlen);
    if (!r && !(r = tool_kernel_attach(o->id, lp->id, tl->next_link_id + 1, &ka, err, errlen)))
        *id = ++tl->next_link_id;
    return r;
}

static int do_attach(struct server *s, struct tool *tl, const uint8_t *body, size_t len, uint32_t *id, char *err,
                     size_t errlen)
{
    struct bpfg_tool_attach a;
    if (len < sizeof(a) + 1 || body[len - 1] != 0)
        return srv_efail(err, errlen, -EINVAL, "ATTACH: malformed request");
    memcpy(&a, body, sizeof(a));
    const char *name = (const char *)body + sizeof(a);
    struct reg_object *o = registry_object(&s->reg, tl->obj_id);
    struct reg_prog *lp = registry_prog(&s->reg, a.prog_id);
    if (!o || !lp || lp->obj_id != tl->obj_id)
        return srv_efail(err, errlen, -EBADF, "ATTACH: program %u is not one of this tool's", a.prog_id);
    const struct bpfg_obj_prog *op = lp->prog;
    if (op->kind == BPFG_ATTACH_UNSUPPORTED)
        return srv_efail(err, errlen, -EINVAL, "program '%s' of type %u cannot be attached", op->name, op->prog_type);
    int kr = attach_kernel(s, tl, o, lp, &a, name, id, err, errlen);
    if (kr <= 0)
        return kr;

    enum bpfg_attach_kind kind;
    char syscall[64] = "", tpname[96] = "", path[PATH_MAX];
    const char *binary = NULL;
    uint32_t want_type;
    switch (a.kind) {
    case BPFG_TOOL_UPROBE:
    case BPFG_TOOL_URETPROBE: {
        want_type = BPF_PROG_TYPE_KPROBE;
        kind = a.kind == BPFG_TOOL_UPROBE ? BPFG_ATTACH_UPROBE : BPFG_ATTACH_URETPROBE;
        if (tool_path(tl->pid, name, path, sizeof(path)) != 0)
            return srv_efail(err, errlen, -ENOENT, "uprobe: no file '%s'", name);
        binary = path;
        break;
    }
    case BPFG_TOOL_TRACEPOINT:
        want_type = BPF_PROG_TYPE_TRACEPOINT;
        if (tp_name_of(a.tp_id, tpname, sizeof(tpname)) != 0)
            return srv_efail(err, errlen, -ENOENT, "tracepoint id %u is not a syscalls/raw_syscalls tracepoint",
                             a.tp_id);
        {
            int r = classify_tp(tpname, &kind, syscall, sizeof(syscall), err, errlen);
            if (r)
                return r;
        }
        break;
    case BPFG_TOOL_RAW_TRACEPOINT:
        want_type = BPF_PROG_TYPE_RAW_TRACEPOINT;
        if (strcmp(name, "sys_enter") == 0)
            kind = BPFG_ATTACH_RAW_SYSCALL_ENTER;
        else if (strcmp(name, "sys_exit") == 0)
            kind = BPFG_ATTACH_RAW_SYSCALL_EXIT;
        else
            return srv_efail(err, errlen, -EOPNOTSUPP,
                             "raw tracepoint '%s' is in the kernel: bpfgraft has sys_enter and sys_exit in userspace",
                             name);
        break;
    case BPFG_TOOL_TIMER:
        if (tl->abi) /* nothing but the tool channel goes to its payload */
            return srv_efail(err, errlen, -EOPNOTSUPP,
                             "a timer runs in the tool's own payload, which speaks payload ABI %u: this server "
                             "sends it nothing but tool channel replies",
                             tl->abi);
        want_type = BPF_PROG_TYPE_PERF_EVENT;
        kind = BPFG_ATTACH_TIMER;
        a.pid = tl->pid; /* it runs in the tool, on its payload thread */
        break;
    default: return srv_efail(err, errlen, -EINVAL, "ATTACH: unknown kind %u", a.kind);
    }
    if (op->prog_type != want_type)
        return srv_efail(err, errlen, -EINVAL, "program '%s' is a %s program, not %s", op->name,
                         prog_type_name(op->prog_type), prog_type_name(want_type));
    if (a.pid > 0 && a.pid == tl->pid && !binary && kind != BPFG_ATTACH_TIMER)
        return srv_efail(err, errlen, -EINVAL, "a tool cannot trace its own syscalls under bpfgraft");
    if (a.pid > 0 && a.pid != tl->pid && tool_of_pid(a.pid))
        return srv_efail(err, errlen, -EINVAL, "process %d is another bpfgraft tool", (int)a.pid);
    struct target *only = a.pid > 0 ? targets_find(&s->targets, a.pid) : NULL;
    /* a pid that has not exec'd the binary yet (bpftrace -c CMD): caught
     * when it does, as the kernel's uprobe fires once it runs there */
    bool before_exec = a.pid > 0 && binary && !sym_maps_binary(a.pid, binary);
    bool held = a.pid > 0 && !only && !before_exec && tracerwait_holder(a.pid);
    int r = held ? wait_for_tracer(s, tl, a.pid, err, errlen) : 0;
    if (r)
        return r;
    if (a.pid > 0 && !only && !before_exec && !held && (r = attach_for_tool(s, tl, a.pid, &only, err, errlen)) != 0)
        return r;

    struct bpfg_obj_prog copy;
    r = clone_prog(op, kind, binary, a.offset, syscall, &copy);
    if (r)
        return srv_efail(err, errlen, r, "out of memory");
    copy.ref_ctr_offset = binary ? a.ref_ctr_offset : 0;
    if ((r = verify(s, o, &copy, true, NULL, err, errlen)) != 0) {
        char *name_copy = copy.name;
        copy.name = NULL;
        free(name_copy);
        free(copy.section);
        free(copy.license);
        free(copy.insns);
        free(copy.target_binary);
        free(copy.syscall);
        return r;
    }
    struct reg_prog *cp = NULL;
    struct tool_link *l = calloc(1, sizeof(*l));
    struct tool_link **grown = l ? realloc(tl->links, (tl->nlinks + 1) * sizeof(*grown)) : NULL;
    if (grown)
        tl->links = grown;
    if (!grown || (binary && !(l->binary = strdup(binary))) || (r = registry_add_prog(&s->reg, o, &copy, &cp)) != 0) {
        free(copy.name);
        free(copy.section);
        free(copy.license);
        free(copy.insns);
        free(copy.target_binary);
        free(copy.syscall);
        link_free(l);
        return srv_efail(err, errlen, r == -E2BIG ? -E2BIG : -ENOMEM,
                         r == -E2BIG ? "too many programs in this tool" : "out of memory");
    }
    l->id = ++tl->next_link_id;
    l->prog_id = cp->id;
    l->kind = kind;
    l->pid = a.pid > 0 ? a.pid : -1;
    l->offset = a.offset;
    l->cookie = a.cookie;
    if (before_exec) {
        if ((r = execwatch_add(s, binary, err, errlen)) != 0) {
            link_free(l);
            return r;
        }
        l->watching = true;
    } else if (held) {
        /* attached when its tracer lets go (tracerwait_tick) */
    } else if (kind == BPFG_ATTACH_TIMER) {
        if ((r = targets_add_timer(s, only, l->prog_id, a.offset, tl->engine, err, errlen)) != 0 ||
            (r = link_record(l, only->pid, err, errlen)) != 0) {
            link_free(l);
            return r;
        }
    } else if (only) {
        r = link_apply(s, tl, l, only, err, errlen);
        if (r) {
            link_free(l);
            return r;
        }
    } else {
        for (struct target *t = s->targets.list; t; t = t->next) {
            char why[512];
            if (link_apply(s, tl, l, t, why, sizeof(why)) != 0)
                srv_log(SRV_WARN, "tool %d: link %u not attached in process %d: %s", (int)tl->pid, l->id, (int)t->pid,
                        why);
        }
        if (binary)
            link_reach_binary(s, tl, l);
        else if (is_syscall_kind(kind))
            link_watch_all(s, tl, l);
    }
    tl->links[tl->nlinks++] = l;
    *id = l->id;
    srv_log(SRV_INFO, "tool %d: link %u: program '%s' on %s%s%s, %s, in %zu process(es)", (int)tl->pid, l->id, op->name,
            bpfg_attach_kind_name(kind), binary || syscall[0] ? " " : "", binary ? binary : syscall,
            l->pid > 0 ? "one process" : "every attached process", l->nin);
    return 0;
}

static int do_detach(struct server *s, struct tool *tl, const uint8_t *body, size_t len, char *err, size_t errlen)
{
    struct bpfg_tool_release rel;
    if (len < sizeof(rel))
        return srv_efail(err, errlen, -EINVAL, "DETACH: short request");
    memcpy(&rel, body, sizeof(rel));
    for (size_t i = 0; i < tl->nlinks; i++) {
        struct tool_link *l = tl->links[i];
        if (l->id != rel.id)
            continue;
        link_remove(s, l, tl->obj_id);
        link_free(l);
        memmove(&tl->links[i], &tl->links[i + 1], (tl->nlinks - i - 1) * sizeof(*tl->links));
        tl->nlinks--;
        return 0;
    }
    if (tool_kernel_detach(tl->obj_id, rel.id) == 0)
        return 0;
    return srv_efail(err, errlen, -ENOENT, "DETACH: no link %u", rel.id);
}

/* ---- restarts (tool_state.c) ---- */

static void tool_save(struct server *s, const struct tool *tl)
{
    char *buf = NULL, name[16];
    size_t len = 0;
    int err = tool_record_pack(s, tl, &buf, &len);
    snprintf(name, sizeof(name), "%d", (int)tl->pid);
    if (!err)
        err = state_write(s, "tools", name, buf, len);
    if (err)
        srv_log(SRV_WARN, "tool %d: its record for restarts: %s", (int)tl->pid, strerror(-err));
    free(buf);
}

static void tool_forget(struct server *s, const struct tool *tl)
{
    char name[16];
    snprintf(name, sizeof(name), "%d", (int)tl->pid);
    state_remove(s, "tools", name);
}

/* ---- requests ---- */

/* KERNEL_MAPS and MAP_FD: the payload learns which of the tool's maps are
 * kernel maps now, and gets their fds. True when h was one of them. */
static bool serve_kernel_maps(struct tool *tl, const struct bpfg_pmsg_hdr *h, const uint8_t *body, size_t len)
{
    struct bpfg_tool_release q;
    uint32_t *ids = NULL;
    size_t n = 0;
    int r;
    if (h->type == BPFG_TOOL_KERNEL_MAPS) {
        r = tool_kernel_map_ids(tl->obj_id, &ids, &n);
        r = r ? chan_reply(tl, h->seq, r, "out of memory", 14, -1) : chan_reply(tl, h->seq, 0, ids, n * 4, -1);
    } else if (h->type == BPFG_TOOL_MAP_FD && len >= sizeof(q)) {
        memcpy(&q, body, sizeof(q));
        struct bpfg_tool_id_reply rep = {.id = q.id};
        int fd = tool_kernel_map_fd(tl->obj_id, q.id);
        r = fd < 0 ? chan_reply(tl, h->seq, fd, "not a kernel map", 17, -1)
                   : chan_reply(tl, h->seq, 0, &rep, sizeof(rep), fd);
    } else {
        return false;
    }
    free(ids);
    if (r)
        srv_log(SRV_WARN, "tool %d: reply: %s", (int)tl->pid, strerror(-r));
    return true;
}

/* MAP_TICKETS and MAP_MADE. True when h was one of them. */
static bool serve_tickets(struct server *s, struct tool *tl, const struct bpfg_pmsg_hdr *h, const uint8_t *body,
                          size_t len)
{
    char err[256] = "";
    int r;
    if (h->type == BPFG_TOOL_MAP_MADE) {
        if ((r = do_map_made(s, tl, body, len, err, sizeof(err))) < 0)
            srv_log(SRV_WARN, "tool %d: %s", (int)tl->pid, err);
        if (r == 0)
            tool_save(s, tl);
        return true;
    }
    if (h->type != BPFG_TOOL_MAP_TICKETS)
        return false;
    struct bpfg_tool_tickets t = {0};
    int fds[BPFG_TOOL_TICKETS_MAX];
    if ((r = do_map_tickets(s, tl, body, len, &t, fds, err, sizeof(err))) == 0)
        tool_save(s, tl); /* before the reply: a restart knows the tickets */
    size_t blen = r ? strlen(err) + 1 : sizeof(t);
    struct bpfg_pmsg_hdr rh = {
        .len = (uint32_t)(sizeof(rh) + blen), .type = BPFG_PMSG_REPLY, .seq = h->seq, .status = r};
    uint32_t n = r ? 0 : t.count & ~BPFG_TOOL_TICKETS_SIZED;
    int w = pmsg_write_fds(tl->chan, &rh, r ? (const void *)err : &t, blen, fds, n, CHAN_TIMEOUT_MS);
    for (uint32_t i = 0; i < n; i++)
        close(fds[i]);
    if (w)
        srv_log(SRV_WARN, "tool %d: reply: %s", (int)tl->pid, strerror(-w));
    return true;
}

/* A tool whose payload is of ABI 2 sends requests 64-70 only: a later
 * one is refused (MAP_MADE, which has no reply, ignored), as a server of
 * ABI 2 would. True when h was one. */
static bool refuse_newer(struct tool *tl, const struct bpfg_pmsg_hdr *h)
{
    if (tool_abi(tl) >= 3 || (h->type >= BPFG_TOOL_MAP_CREATE && h->type <= BPFG_TOOL_RELEASE))
        return false;
    char err[160];
    snprintf(err, sizeof(err), "request %u is not one of payload ABI %u's tool channel", h->type, tool_abi(tl));
    srv_log(SRV_DEBUG, "tool %d: %s", (int)tl->pid, err);
    int r = h->type == BPFG_TOOL_MAP_MADE ? 0 : chan_reply(tl, h->seq, -EOPNOTSUPP, err, strlen(err) + 1, -1);
    if (r)
        srv_log(SRV_WARN, "tool %d: reply: %s", (int)tl->pid, strerror(-r));
    return true;
}

static void serve(struct server *s, struct tool *tl, const struct bpfg_pmsg_hdr *h, const uint8_t *body, size_t len)
{
    char err[2048] = "";
    struct bpfg_tool_id_reply rep = {0};
    int fd = -1, r;
    bool with_id = true;
    if (refuse_newer(tl, h) || serve_kernel_maps(tl, h, body, len) || serve_tickets(s, tl, h, body, len))
        return;
    kernel_maps_changed = false;
    switch (h->type) {
    case BPFG_TOOL_MAP_CREATE: r = do_map_create(s, tl, body, len, &rep.id, &fd, err, sizeof(err)); break;
    case BPFG_TOOL_PROG_LOAD: r = do_prog_load(s, tl, body, len, &rep.id, err, sizeof(err)); break;
    case BPFG_TOOL_BTF_LOAD: r = do_btf_load(tl, body, len, &rep.id, err, sizeof(err)); break;
    case BPFG_TOOL_ATTACH: r = do_attach(s, tl, body, len, &rep.id, err, sizeof(err)); break;
    case BPFG_TOOL_DETACH:
        r = do_detach(s, tl, body, len, err, sizeof(err));
        with_id = false;
        break;
    case BPFG_TOOL_TP_ID: {
        char name[96];
        if (!len || len >= sizeof(name) || memchr(body, 0, len) == NULL) {
            r = srv_efail(err, sizeof(err), -EINVAL, "TP_ID: malformed name");
            break;
        }
        memcpy(name, body, len);
        r = tp_id_of(name, &rep.id, err, sizeof(err));
        break;
    }
    case BPFG_TOOL_RELEASE:
        /* maps, programs and BTF live as long as the tool (its object) */
        r = 0;
        with_id = false;
        break;
    default: r = srv_efail(err, sizeof(err), -EOPNOTSUPP, "unknown tool request %u", h->type); break;
    }
    /* also a process attached for an attach that then failed */
    if ((h->type == BPFG_TOOL_ATTACH || h->type == BPFG_TOOL_DETACH) &&
        release_tool_targets(s, server_now_ms() + RETIRE_TICK_MS))
        release_due = true;
    if (!r && h->type != BPFG_TOOL_TP_ID && h->type != BPFG_TOOL_RELEASE)
        tool_save(s, tl); /* before the reply: what the tool holds, a restart knows */
    rep.flags = kernel_maps_changed ? BPFG_TOOL_F_KERNEL_MAPS : 0; /* also after a failure: the maps stay */
    if (r) {
        srv_log(SRV_DEBUG, "tool %d: request %u failed: %s", (int)tl->pid, h->type, err);
        r = chan_reply(tl, h->seq, r, err, strlen(err) + 1, -1);
    } else {
        r = chan_reply(tl, h->seq, 0, with_id ? &rep : NULL, with_id ? sizeof(rep) : 0, fd);
    }
    if (r)
        srv_log(SRV_WARN, "tool %d: reply: %s", (int)tl->pid, strerror(-r));
}

void tools_readable(struct server *s, void *tag)
{
    struct tool *tl = tag;
    if (tl->dead || tl->chan < 0)
        return;
    struct bpfg_pmsg_hdr h;
    char *body;
    int r = pmsg_recv(tl->chan, &h, &body, CHAN_TIMEOUT_MS);
    if (r) {
        if (r != -EPIPE)
            srv_log(SRV_WARN, "tool %d: channel: %s; closing it", (int)tl->pid, strerror(-r));
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, tl->chan, NULL);
        close(tl->chan);
        tl->chan = -1;
        return;
    }
    serve(s, tl, &h, (const uint8_t *)body, h.len - sizeof(h));
    free(body);
}

/* ---- lifecycle ---- */

int tools_begin(struct server *s, struct target *t, int engine, char *err, size_t errlen)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return srv_efail(err, errlen, -errno, "socketpair: %s", strerror(errno));
    struct tool *tl = calloc(1, sizeof(*tl));
    if (!tl) {
        close(sv[0]);
        close(sv[1]);
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    }
    tl->magic = TOOL_MAGIC;
    tl->pid = t->pid;
    tl->chan = sv[0];
    tl->engine = engine;
    char comm[32];
    if (bpfg_procfs_comm(t->pid, comm, sizeof(comm)) != 0 || !comm[0])
        snprintf(comm, sizeof(comm), "tool");
    snprintf(tl->name, sizeof(tl->name), "tool:%s:%d", comm, (int)t->pid);

    struct bpfg_pmsg_tool_mode mode = {
        .uprobe_type = read_sysfs_u32("/sys/bus/event_source/devices/uprobe/type", ""),
        .kprobe_type = read_sysfs_u32("/sys/bus/event_source/devices/kprobe/type", ""),
        .retprobe_bit = read_sysfs_u32("/sys/bus/event_source/devices/uprobe/format/retprobe", "config:"),
        .nr_cpus = bpfg_possible_cpus(),
    };
    struct bpfg_pmsg_syscall_reply rep;
    memset(&rep, 0, sizeof(rep));
    size_t got = 0;
    struct reg_object *o = NULL;
    int r = targets_payload_call_fd(s, t, BPFG_PMSG_TOOL_MODE, &mode, sizeof(mode), sv[1], &rep, sizeof(rep), &got, err,
                                    errlen);
    close(sv[1]);
    if (!r && got < offsetof(struct bpfg_pmsg_syscall_reply, fast_entry))
        r = srv_efail(err, errlen, -EPROTO, "short TOOL_MODE reply");
    if (!r)
        r = syscalls_tool_dispatch(s, t, &rep, err, errlen);
    if (!r && (r = registry_new_object(&s->reg, tl->name, TOOL_MAX_MAPS, TOOL_MAX_PROGS, &o)) != 0)
        srv_efail(err, errlen, r, "out of memory");
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = tl};
    if (!r && epoll_ctl(s->epfd, EPOLL_CTL_ADD, tl->chan, &ev) != 0)
        r = srv_efail(err, errlen, -errno, "epoll: %s", strerror(errno));
    if (r) {
        if (o)
            registry_unload(&s->reg, o->id);
        close(tl->chan);
        free(tl);
        return r;
    }
    tl->obj_id = o->id;
    tl->token = t->token;
    tl->next = tools;
    tools = tl;
    tool_save(s, tl);
    srv_log(SRV_INFO, "tool %d (%s): bpf() served by bpfgraft, object %u", (int)t->pid, comm, o->id);
    return 0;
}

void tools_target_added(struct server *s, struct target *t)
{
    if (applying || tool_of_pid(t->pid))
        return;
    for (struct tool *tl = tools; tl; tl = tl->next) {
        if (tl->dead)
            continue;
        for (size_t i = 0; i < tl->nlinks; i++) {
            char why[512];
            if (link_apply(s, tl, tl->links[i], t, why, sizeof(why)) != 0)
                srv_log(SRV_WARN, "tool %d: link %u not attached in process %d: %s", (int)tl->pid, tl->links[i]->id,
                        (int)t->pid, why);
        }
    }
}

/* Frees what the tool holds here (links, BTF, channel); not its object. */
static void tool_release(struct server *s, struct tool *tl)
{
    for (size_t i = 0; i < tl->nlinks; i++)
        link_free(tl->links[i]);
    free(tl->links);
    tl->links = NULL;
    tl->nlinks = 0;
    for (size_t i = 0; i < tl->nbtfs; i++)
        free(tl->btfs[i].data);
    free(tl->btfs);
    tl->btfs = NULL;
    tl->nbtfs = 0;
    free(tl->tickets);
    tl->tickets = NULL;
    tl->ntickets = 0;
    if (tl->chan >= 0) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, tl->chan, NULL);
        close(tl->chan);
        tl->chan = -1;
    }
    tl->dead = true;
}

/* Programs and maps of tools that ended while some targets were still to
 * be adopted (a tool that exited while no server ran): they leave those
 * targets when they come back (tools_adopted). */
static uint32_t *retired_progs, *retired_maps;
static size_t nretired_progs, nretired_maps;

static void retire_ids(uint32_t **list, size_t *n, const uint32_t *ids, size_t cnt)
{
    if (!cnt) /* realloc to 0 bytes frees the list and returns NULL */
        return;
    uint32_t *grown = realloc(*list, (*n + cnt) * sizeof(uint32_t));
    if (!grown) {
        srv_log(SRV_WARN, "out of memory: %zu ids of an ended tool stay where targets are not adopted yet", cnt);
        return;
    }
    memcpy(grown + *n, ids, cnt * sizeof(uint32_t));
    *list = grown;
    *n += cnt;
}

static void tool_end(struct server *s, struct tool *tl)
{
    struct reg_object *o = registry_object(&s->reg, tl->obj_id);
    size_t first = nsteps;
    for (size_t i = 0; i < tl->nlinks; i++) {
        struct tool_link *l = tl->links[i];
        link_unwatch(s, l);
        for (size_t k = 0; k < l->nin; k++)
            step_add(l->in[k], l->prog_id, tl->obj_id);
        l->nin = 0;
    }
    if (o)
        for (struct target *t = s->targets.list; t; t = t->next)
            if (t->pid != tl->pid)
                step_add(t->pid, 0, o->id);
    tool_kernel_forget(tl->obj_id);
    if (o && tl->pending) {
        retire_ids(&retired_progs, &nretired_progs, o->prog_ids, o->prog_cnt);
        retire_ids(&retired_maps, &nretired_maps, o->map_ids, o->map_cnt);
    }
    if (o)
        step_add(0, 0, o->id);
    tickets_drop(s, tl);
    tool_release(s, tl);
    tool_forget(s, tl);
    srv_log(SRV_INFO, "tool %d: ended; its programs leave every process (%zu steps, in the background)", (int)tl->pid,
            nsteps - first);
    release_due = true; /* after the steps, on the tick: tool_end may run inside a target's teardown */
}

void tools_target_gone(struct server *s, struct target *t)
{
    struct tool *tl = tool_of_pid(t->pid);
    if (tl) {
        tool_end(s, tl);
        return;
    }
    for (tl = tools; tl; tl = tl->next)
        for (size_t i = 0; i < tl->nlinks; i++) {
            struct tool_link *l = tl->links[i];
            for (size_t k = 0; k < l->nin; k++)
                if (l->in[k] == t->pid) {
                    l->in[k] = l->in[--l->nin];
                    break;
                }
        }
}

void tools_reap(struct server *s)
{
    (void)s;
    for (struct tool **pp = &tools; *pp;) {
        struct tool *tl = *pp;
        if (!tl->dead) {
            pp = &tl->next;
            continue;
        }
        *pp = tl->next;
        free(tl);
    }
}

void tools_destroy(struct server *s)
{
    /* a restart (not shutdown --detach) keeps tools running and recorded:
     * the next server adopts them */
    for (struct tool *tl = tools; tl; tl = tl->next)
        if (!tl->dead && s->detach_on_stop)
            tool_end(s, tl);
        else if (!tl->dead)
            tool_release(s, tl);
    steps_run(s, UINT64_MAX); /* stopping: what the ended tools left, at once */
    free(steps);
    steps = NULL;
    nsteps = steps_done = 0;
    tools_reap(s);
    tracerwait_destroy(s);
    free(tp_names);
    tp_names = NULL;
    ntp_names = 0;
    free(retired_progs);
    free(retired_maps);
    retired_progs = retired_maps = NULL;
    nretired_progs = nretired_maps = 0;
}

/* ---- restarts: tools adopted again ---- */

/* Binary-wide links (pid -1), system-wide syscall links and those waiting
 * for a pid's exec of their binary catch processes at exec again (the previous server's fanotify
 * mark went with it; processes started meanwhile were not caught). */
static void watch_again(struct server *s, struct tool *tl)
{
    for (size_t i = 0; i < tl->nlinks; i++) {
        struct tool_link *l = tl->links[i];
        char err[512];
        if (l->pid <= 0 && (l->binary ? is_library(l->binary) : is_syscall_kind(l->kind))) {
            link_watch_all(s, tl, l);
            continue;
        }
        if (!l->binary || (l->pid > 0 && sym_maps_binary(l->pid, l->binary)))
            continue;
        if (execwatch_add(s, l->binary, err, sizeof(err)) == 0)
            l->watching = true;
        else
            srv_log(SRV_WARN, "tool %d: link %u: processes starting %s are not caught any more: %s", (int)tl->pid,
                    l->id, l->binary, err);
    }
}

static void restore_one(struct server *s, const char *name)
{
    char *buf = NULL, why[512] = "";
    size_t len = 0;
    struct tool *tl = NULL;
    int err = state_read(s, "tools", name, &buf, &len);
    if (!err)
        err = tool_record_unpack(s, buf, len, &tl, why, sizeof(why));
    free(buf);
    if (err) {
        srv_log(SRV_ERROR, "tool record %s of the previous server cannot be restored: %s", name,
                why[0] ? why : strerror(-err));
        if (tl && registry_object(&s->reg, tl->obj_id))
            registry_unload(&s->reg, tl->obj_id);
        if (tl)
            tool_release(s, tl), free(tl);
        state_remove(s, "tools", name);
        return;
    }
    tl->pending_ms = server_now_ms();
    tl->next = tools;
    tools = tl;
    srv_log(SRV_INFO, "tool %d (%s): restored (object %u, %zu links); waiting for its process", (int)tl->pid, tl->name,
            tl->obj_id, tl->nlinks);
    watch_again(s, tl);
}

void tools_restore(struct server *s)
{
    state_each(s, "tools", restore_one);
}

static bool holds_prog(const struct target *t, uint32_t id)
{
    for (size_t i = 0; i < t->nprogs_sent; i++)
        if (t->progs_sent[i] == id)
            return true;
    return false;
}

/* The tool's process came back: a new tool channel for it. */
static void tool_readopt(struct server *s, struct tool *tl, struct target *t)
{
    char err[512] = "";
    int sv[2] = {-1, -1}, r = tl->token == t->token ? 0 : srv_efail(err, sizeof(err), -ESRCH, "another payload");
    if (!r && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        r = srv_efail(err, sizeof(err), -errno, "socketpair: %s", strerror(errno));
    if (!r)
        r = targets_payload_call_fd(s, t, BPFG_PMSG_TOOL_CHAN, NULL, 0, sv[1], NULL, 0, NULL, err, sizeof(err));
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = tl};
    if (!r && epoll_ctl(s->epfd, EPOLL_CTL_ADD, sv[0], &ev) != 0)
        r = srv_efail(err, sizeof(err), -errno, "epoll: %s", strerror(errno));
    if (sv[1] >= 0)
        close(sv[1]);
    if (r) {
        if (sv[0] >= 0)
            close(sv[0]);
        srv_log(SRV_WARN, "tool %d: cannot be adopted again (%s): it ends", (int)tl->pid, err);
        tool_end(s, tl);
        return;
    }
    tl->chan = sv[0];
    tl->pending = false;
    srv_log(SRV_INFO, "tool %d (%s): adopted again after %llu ms: its bpf() calls are served again", (int)tl->pid,
            tl->name, (unsigned long long)(server_now_ms() - tl->pending_ms));
}

/* Links: the adopted target is in those whose program it holds. */
static void links_rejoin(struct tool *tl, struct target *t)
{
    for (size_t i = 0; i < tl->nlinks; i++) {
        struct tool_link *l = tl->links[i];
        pid_t *grown;
        if (link_has(l, t->pid) || !holds_prog(t, l->prog_id))
            continue;
        if (!(grown = realloc(l->in, (l->nin + 1) * sizeof(pid_t))))
            continue; /* attached there, not listed */
        l->in = grown;
        l->in[l->nin++] = t->pid;
    }
}

void tools_adopted(struct server *s, struct target *t)
{
    struct tool *tl = tool_of_pid(t->pid);
    if (tl) {
        tl->abi = t->foreign_abi; /* adopt.c: only an ABI whose tool channel we speak */
        if (tl->pending)
            tool_readopt(s, tl, t);
        return;
    }
    bool retired = false;
    for (size_t i = 0; i < nretired_progs && !retired; i++)
        retired = holds_prog(t, retired_progs[i]);
    if (retired || nretired_maps)
        targets_remove_progs(s, t, retired_progs, nretired_progs, retired_maps, nretired_maps);
    for (tl = tools; tl; tl = tl->next)
        if (!tl->dead)
            links_rejoin(tl, t);
    tools_target_added(s, t);
}

/* Ended tools' steps, then the release of the processes they leave. */
static void retire_some(struct server *s)
{
    uint64_t until = server_now_ms() + RETIRE_TICK_MS;
    if (!steps_run(s, until) && release_due)
        release_due = release_tool_targets(s, until);
}

void tools_tick(struct server *s)
{
    tracerwait_tick(s);
    reach_some(s);
    retire_some(s);
    uint64_t now = server_now_ms();
    for (struct tool *tl = tools; tl; tl = tl->next) {
        if (tl->dead || !tl->pending || now - tl->pending_ms < TOOL_ADOPT_WAIT_MS)
            continue;
        const struct target *t = targets_find(&s->targets, tl->pid);
        if (t && t->foreign_abi) /* adopt.c: an ABI whose tool channel we do not speak */
            srv_log(SRV_WARN,
                    "tool %d (%s): its payload speaks payload ABI %u, whose tool channel this server does not speak "
                    "(it speaks payload ABIs %u to %u): refused, left as it is; its links in other processes end",
                    (int)tl->pid, tl->name, t->foreign_abi, TOOLS_OLDEST_ABI, adopt_payload_abi());
        else
            srv_log(SRV_WARN,
                    "tool %d (%s): its process did not come back within %d ms (it exited while no server "
                    "ran): it ends",
                    (int)tl->pid, tl->name, TOOL_ADOPT_WAIT_MS);
        tool_end(s, tl);
    }
}

bool tools_speak_abi(uint32_t abi)
{
    return abi >= TOOLS_OLDEST_ABI && abi <= adopt_payload_abi();
}

bool tools_has_pid(pid_t pid)
{
    return tool_of_pid(pid) != NULL;
}

void tools_release_targets(struct server *s)
{
    release_tool_targets(s, UINT64_MAX);
}

void tools_pack_list(struct server *s, msgpack_packer *pk)
{
    size_t n = 0;
    for (struct tool *tl = tools; tl; tl = tl->next)
        n += !tl->dead;
    msgpack_pack_array(pk, n);
    for (struct tool *tl = tools; tl; tl = tl->next) {
        if (tl->dead)
            continue;
        msgpack_pack_map(pk, 5);
        bpfg_pack_cstr(pk, "pid");
        msgpack_pack_int(pk, tl->pid);
        bpfg_pack_cstr(pk, "state"); /* "adopting": restored after a restart, its process not back yet */
        bpfg_pack_cstr(pk, tl->pending ? "adopting" : "running");
        bpfg_pack_cstr(pk, "name");
        bpfg_pack_cstr(pk, tl->name);
        bpfg_pack_cstr(pk, "object");
        msgpack_pack_uint32(pk, tl->obj_id);
        bpfg_pack_cstr(pk, "links");
        msgpack_pack_array(pk, tl->nlinks);
        for (size_t i = 0; i < tl->nlinks; i++) {
            const struct tool_link *l = tl->links[i];
            struct reg_prog *p = registry_prog(&s->reg, l->prog_id);
            msgpack_pack_map(pk, 6);
            bpfg_pack_cstr(pk, "id");
            msgpack_pack_uint32(pk, l->id);
            bpfg_pack_cstr(pk, "prog");
            msgpack_pack_uint32(pk, l->prog_id);
            bpfg_pack_cstr(pk, "kind");
            bpfg_pack_cstr(pk, bpfg_attach_kind_name(l->kind));
            bpfg_pack_cstr(pk, "target");
            bpfg_pack_cstr(pk, p ? p->prog->section : "");
            bpfg_pack_cstr(pk, "pid");
            msgpack_pack_int(pk, l->pid);
            bpfg_pack_cstr(pk, "attached");
            msgpack_pack_array(pk, l->nin);
            for (size_t k = 0; k < l->nin; k++)
                msgpack_pack_int(pk, l->in[k]);
        }
    }
}
