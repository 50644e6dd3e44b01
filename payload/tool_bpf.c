/* Tool mode: bpf(). Map element commands run here on the map regions;
 * creating maps, loading programs and BTF and attaching go to the server
 * over the tool channel. Also the mmap of map fds (kernel view). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "payload.h"
#include "rt/rt.h"
#include "tool_priv.h"

#define MAX_INSNS 1000000u
#define ROUNDUP_PAGE(x) (((x) + PAGE - 1) & ~(PAGE - 1))

/* A small buffer on the stack, a big one from the heap. */
struct xbuf {
    uint8_t *p;
    uint8_t stack[256] __attribute__((aligned(8)));
};

/* Not `= {0}`: zeroing the array cost more than the map operation of a
 * small key or value. */
static void xbuf_init(struct xbuf *b)
{
    b->p = NULL;
}

static void *xbuf_get(struct xbuf *b, size_t n)
{
    b->p = n <= sizeof(b->stack) ? b->stack : calloc(1, n);
    return b->p;
}

static void xbuf_free(struct xbuf *b)
{
    if (b->p && b->p != b->stack)
        free(b->p);
    b->p = NULL;
}

/* ---- bpf(): objects created by the server ---- */

/* A PROG_LOAD or ATTACH that made maps the kernel's says so (a failed one
 * may have made some before failing). */
static void sync_kernel_maps(const struct reply *rep)
{
    struct bpfg_tool_id_reply idr = {0};
    if (!rep->body)
        return; /* no server */
    if (!rep->status && rep->len >= sizeof(idr))
        memcpy(&idr, rep->body, sizeof(idr));
    if (rep->status || (idr.flags & BPFG_TOOL_F_KERNEL_MAPS))
        kernel_maps_sync();
}

/* The tool's fd for map (id), made as at asked: fd, or a negative errno
 * with map and fd released. */
static long map_install(const union bpf_attr *at, uint32_t id, uint32_t btf_id, int fd, struct bpfg_map *map)
{
    struct tool_file *f = file_new(TK_MAP);
    if (!f) {
        bpfg_map_close(map);
        rt_sys1(SYS_close, fd);
        return -ENOMEM;
    }
    f->map = map;
    struct bpfg_map_info info;
    bpfg_map_get_info(f->map, &info);
    f->id = id;
    f->map_type = at->map_type;
    f->key_size = at->key_size;
    f->value_size = at->value_size;
    f->max_entries = info.max_entries;
    f->map_flags = at->map_flags;
    f->map_extra = at->map_extra;
    f->btf_id = btf_id;
    f->btf_key_type_id = at->btf_key_type_id;
    f->btf_value_type_id = at->btf_value_type_id;
    f->value_copy = info.value_copy_size;
    memcpy(f->name, at->map_name, sizeof(f->name));
    f->name[sizeof(f->name) - 1] = 0;
    if (info.type == BPF_MAP_TYPE_RINGBUF) {
        struct bpfg_ringbuf_view v;
        if (bpfg_ringbuf_get_view(f->map, &v) == 0) {
            f->rb_cons = v.consumer_pos;
            f->rb_prod = v.producer_pos;
        }
    }
    if (info.type == BPF_MAP_TYPE_PERF_EVENT_ARRAY) {
        f->rings = calloc(f->max_entries ? f->max_entries : 1, sizeof(*f->rings));
        tool_fdt_lock();
        bool listed = f->rings && events_add_perf_map(f);
        tool_fdt_unlock();
        if (!listed) {
            file_put(f); /* releases the map */
            rt_sys1(SYS_close, fd);
            return -ENOMEM;
        }
    }
    return file_install(fd, f);
}

/* Maps the payload lays out itself in a ticket: those the server takes
 * as they are (not libbpf's global data "X.rodata" etc., whose kind the
 * server decides, nor the types it changes or completes). */
static bool ticket_fits(const union bpf_attr *at)
{
    return !bpfg_map_type_is_outer(at->map_type) && at->map_type != BPF_MAP_TYPE_CGROUP_ARRAY &&
           at->map_type != BPF_MAP_TYPE_PERF_EVENT_ARRAY && !memchr(at->map_name, '.', sizeof(at->map_name));
}

/* MAP_CREATE in a ticket, no round trip: the fd, or -EAGAIN for the
 * server's way (no ticket, or a map the library refuses: the server then
 * says why). */
static long map_create_ticket(const union bpf_attr *at, uint32_t btf_id)
{
    struct map_ticket t;
    if (!ticket_fits(at) || ticket_take(&t) != 0)
        return -EAGAIN;
    char name[sizeof(at->map_name)];
    memcpy(name, at->map_name, sizeof(name));
    name[sizeof(name) - 1] = 0;
    struct bpfg_map_spec spec = {.type = at->map_type,
                                 .key_size = at->key_size,
                                 .value_size = at->value_size,
                                 .max_entries = at->max_entries,
                                 .map_flags = at->map_flags,
                                 .map_extra = at->map_extra,
                                 .name = name,
                                 .btf_key_type_id = at->btf_key_type_id,
                                 .btf_value_type_id = at->btf_value_type_id};
    struct bpfg_map *map;
    /* not prepared yet: here (a file the server sized needs only the mmap) */
    int err =
        t.base || ticket_prepare(&t) == 0 ? bpfg_map_create_mapped(&spec, t.fd, t.base, t.len, t.seed, &map) : -E2BIG;
    if (err == -E2BIG) /* too big for it (its mapping is gone), or not mapped: the file emptied */
        err = rt_sys2(SYS_ftruncate, t.fd, 0) ? -EIO : bpfg_map_create_fd(&spec, t.fd, &map);
    if (err) {
        ticket_return(t.id, t.fd);
        return -EAGAIN;
    }
    struct bpfg_tool_map_made made = {.id = t.id, .btf_id = btf_id};
    if (chan_map_made(&made) != 0) {
        bpfg_map_close(map);
        ticket_return(t.id, t.fd);
        return -EAGAIN;
    }
    return map_install(at, t.id, btf_id, t.fd, map);
}

static long bpf_map_create(const union bpf_attr *at)
{
    struct bpfg_tool_map_create req;
    memset(&req, 0, sizeof(req));
    req.map_type = at->map_type;
    req.key_size = at->key_size;
    req.value_size = at->value_size;
    req.max_entries = at->max_entries;
    req.map_flags = at->map_flags;
    req.btf_key_type_id = at->btf_key_type_id;
    req.btf_value_type_id = at->btf_value_type_id;
    req.map_extra = at->map_extra;
    memcpy(req.name, at->map_name, sizeof(req.name));
    req.name[sizeof(req.name) - 1] = 0;
    if (at->btf_key_type_id || at->btf_value_type_id || at->btf_vmlinux_value_type_id) {
        struct tool_file *b = get_kind((int)at->btf_fd, TK_BTF);
        if (!b)
            return -EBADF;
        req.btf_id = b->id;
        file_put(b);
    }
    if (at->map_type == BPF_MAP_TYPE_ARRAY_OF_MAPS || at->map_type == BPF_MAP_TYPE_HASH_OF_MAPS) {
        struct tool_file *in = get_kind((int)at->inner_map_fd, TK_MAP);
        if (!in)
            return -EBADF;
        req.inner_map_id = in->id;
        file_put(in);
    }
    long made = map_create_ticket(at, req.btf_id);
    if (made != -EAGAIN)
        return made;
    struct reply rep;
    uint32_t id = 0;
    int err = chan_call(BPFG_TOOL_MAP_CREATE, &req, sizeof(req), NULL, 0, &rep);
    /* a map the tool needs (not one of libbpf's probes) that bpfgraft lacks */
    if (err && err != -ECONNRESET && rep.body && req.name[0] && strncmp(req.name, "libbpf_", 7) != 0)
        say("%s", rep.body);
    if (!err)
        err = reply_id(&rep, &id);
    if (!err && rep.fd < 0)
        err = -EPROTO;
    struct bpfg_map *map = NULL;
    if (!err && (err = bpfg_map_open_fd(rep.fd, &map)) != 0)
        say("map '%s': %s", req.name, bpfg_map_last_error());
    if (err) {
        reply_free(&rep);
        return err;
    }
    int fd = rep.fd;
    rep.fd = -1;
    reply_free(&rep);
    return map_install(at, id, req.btf_id, fd, map);
}

static bool gpl_compatible(const char *l)
{
    static const char *const ok[] = {"GPL",          "GPL v2",       "GPL and additional rights",
                                     "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!strcmp(l, ok[i]))
            return true;
    return false;
}

/* Copies a server message into the tool's log buffer, like the kernel's
 * verifier log (always NUL-terminated, truncated to log_size). */
static void copy_log(uint64_t ubuf, uint32_t size, const struct reply *rep)
{
    if (!ubuf || !size)
        return;
    const char *text = reply_text(rep);
    size_t n = strlen(text);
    if (n > size - 1)
        n = size - 1;
    char nul = 0;
    if (!uwrite((void *)(uintptr_t)ubuf, text, n))
        uwrite((void *)(uintptr_t)(ubuf + n), &nul, 1);
}

/* lddw map references: the tool's fds become the server's map ids. */
static int translate_insns(struct bpf_insn *insns, uint32_t cnt, uint64_t fd_array)
{
    for (uint32_t i = 0; i < cnt; i++) {
        struct bpf_insn *in = &insns[i];
        if (in->code != (BPF_LD | BPF_IMM | BPF_DW))
            continue;
        if (i + 1 >= cnt)
            return -EINVAL;
        int fd = in->imm;
        if (in->src_reg == BPF_PSEUDO_MAP_IDX || in->src_reg == BPF_PSEUDO_MAP_IDX_VALUE) {
            if (!fd_array)
                return -EINVAL;
            if (uread(&fd, (const void *)(uintptr_t)(fd_array + (uint64_t)(uint32_t)in->imm * 4), 4))
                return -EFAULT;
            in->src_reg = in->src_reg == BPF_PSEUDO_MAP_IDX ? BPF_PSEUDO_MAP_FD : BPF_PSEUDO_MAP_VALUE;
        }
        if (in->src_reg == BPF_PSEUDO_MAP_FD || in->src_reg == BPF_PSEUDO_MAP_VALUE) {
            struct tool_file *m = get_kind(fd, TK_MAP);
            if (!m)
                return -EBADF;
            in->imm = (int32_t)m->id;
            file_put(m);
        }
        i++;
    }
    return 0;
}

static long bpf_prog_load(const union bpf_attr *at)
{
    uint32_t cnt = at->insn_cnt;
    if (!cnt)
        return -EINVAL;
    if (cnt > MAX_INSNS)
        return -E2BIG;
    struct bpfg_tool_prog_load req;
    memset(&req, 0, sizeof(req));
    req.prog_type = at->prog_type;
    req.expected_attach_type = at->expected_attach_type;
    req.prog_flags = at->prog_flags;
    req.insn_cnt = cnt;
    req.kern_version = at->kern_version;
    req.attach_btf_id = at->attach_btf_id;
    req.log_level = at->log_level;
    memcpy(req.name, at->prog_name, sizeof(req.name));
    req.name[sizeof(req.name) - 1] = 0;
    if (at->license && rt_safe_read_str(req.license, (const void *)(uintptr_t)at->license, sizeof(req.license)) < 0)
        return -EFAULT;
    struct bpf_insn *insns = malloc((size_t)cnt * sizeof(*insns));
    if (!insns)
        return -ENOMEM;
    int err = uread(insns, (const void *)(uintptr_t)at->insns, (size_t)cnt * sizeof(*insns)) ? -EFAULT : 0;
    if (!err)
        err = translate_insns(insns, cnt, at->fd_array);
    struct reply rep = {.fd = -1};
    uint32_t id = 0;
    if (!err) {
        err = chan_call(BPFG_TOOL_PROG_LOAD, &req, sizeof(req), insns, (size_t)cnt * sizeof(*insns), &rep);
        sync_kernel_maps(&rep);
        if (err) {
            copy_log(at->log_buf, at->log_size, &rep);
        } else {
            err = reply_id(&rep, &id);
            /* no verifier log here: an empty one rather than stale bytes */
            char nul = 0;
            if (at->log_buf && at->log_size)
                uwrite((void *)(uintptr_t)at->log_buf, &nul, 1);
        }
    }
    free(insns);
    reply_free(&rep);
    if (err)
        return err;
    struct tool_file *f = file_new(TK_PROG);
    if (!f)
        return -ENOMEM;
    f->id = id;
    f->prog_type = at->prog_type;
    f->attach_type = at->expected_attach_type;
    f->insn_cnt = cnt;
    f->gpl = gpl_compatible(req.license);
    memcpy(f->name, req.name, sizeof(f->name));
    char name[40];
    snprintf(name, sizeof(name), "bpfgraft-prog:%s", req.name);
    return file_placeholder(f, name, true);
}

static long bpf_btf_load(const union bpf_attr *at)
{
    uint32_t size = at->btf_size;
    if (!size)
        return -EINVAL;
    if (size > BPFG_PMSG_MAX - 64)
        return -E2BIG;
    void *buf = malloc(size);
    if (!buf)
        return -ENOMEM;
    int err = uread(buf, (const void *)(uintptr_t)at->btf, size) ? -EFAULT : 0;
    struct reply rep = {.fd = -1};
    uint32_t id = 0;
    if (!err) {
        err = chan_call(BPFG_TOOL_BTF_LOAD, buf, size, NULL, 0, &rep);
        if (err)
            copy_log(at->btf_log_buf, at->btf_log_size, &rep);
        else
            err = reply_id(&rep, &id);
    }
    free(buf);
    reply_free(&rep);
    if (err)
        return err;
    struct tool_file *f = file_new(TK_BTF);
    if (!f)
        return -ENOMEM;
    f->id = id;
    f->btf_size = size;
    return file_placeholder(f, "bpfgraft-btf", true);
}

/* ---- attaching ---- */

/* TOOL_ATTACH; returns the link id or the server's errno (with its
 * message on the tool's stderr). */
static long attach(const struct tool_file *prog, uint32_t kind, int32_t pid, uint32_t tp_id, uint64_t offset,
                   uint64_t ref_ctr, uint64_t cookie, const char *name)
{
    struct bpfg_tool_attach req = {.prog_id = prog->id,
                                   .kind = kind,
                                   .pid = pid,
                                   .tp_id = tp_id,
                                   .offset = offset,
                                   .ref_ctr_offset = ref_ctr,
                                   .cookie = cookie};
    struct reply rep;
    uint32_t id = 0;
    int err = chan_call(BPFG_TOOL_ATTACH, &req, sizeof(req), name, strlen(name) + 1, &rep);
    sync_kernel_maps(&rep);
    if (err)
        say("%s", reply_text(&rep));
    else if ((err = reply_id(&rep, &id)) != 0)
        say("attach: malformed reply");
    reply_free(&rep);
    return err ? err : (long)id;
}

long attach_perf(const struct tool_file *prog, const struct tool_file *ev, uint64_t cookie)
{
    if (ev->kind == TK_UPROBE)
        return attach(prog, ev->retprobe ? BPFG_TOOL_URETPROBE : BPFG_TOOL_UPROBE, ev->pid, 0, ev->offset,
                      ev->ref_ctr_offset, cookie, ev->path ? ev->path : "");
    if (ev->kind == TK_TIMER)
        return attach(prog, BPFG_TOOL_TIMER, -1, 0, ev->offset, 0, cookie, "");
    return attach(prog, BPFG_TOOL_TRACEPOINT, ev->pid, ev->tp_id, 0, 0, cookie, "");
}

static long new_link(uint32_t link_id, uint32_t type, const struct tool_file *prog, struct tool_file *perf)
{
    struct tool_file *l = file_new(TK_LINK);
    if (!l) {
        chan_release(BPFG_TOOL_DETACH, BPFG_TOOL_OBJ_LINK, link_id);
        file_put(perf);
        return -ENOMEM;
    }
    l->id = link_id;
    l->link_type = type;
    l->prog_id = prog->id;
    l->perf = perf;
    return file_placeholder(l, "bpfgraft-link", true);
}

static long bpf_link_create(const union bpf_attr *at)
{
    struct tool_file *prog = get_kind((int)at->link_create.prog_fd, TK_PROG);
    if (!prog)
        return -EBADF;
    long r;
    if (at->link_create.attach_type != BPF_PERF_EVENT) {
        r = -EINVAL;
        goto out;
    }
    struct tool_file *ev = tool_fdt_get((int)at->link_create.target_fd);
    if (!ev ||
        (ev->kind != TK_UPROBE && ev->kind != TK_TRACEPOINT && ev->kind != TK_PERF_RING && ev->kind != TK_TIMER)) {
        file_put(ev);
        r = -EBADF; /* libbpf's perf-link probe counts on EBADF */
        goto out;
    }
    if (ev->kind == TK_PERF_RING || ev->attached) {
        r = ev->attached ? -EEXIST : -EINVAL;
        file_put(ev);
        goto out;
    }
    r = attach_perf(prog, ev, at->link_create.perf_event.bpf_cookie);
    if (r < 0) {
        file_put(ev);
        goto out;
    }
    ev->attached = true;
    r = new_link((uint32_t)r, BPF_LINK_TYPE_PERF_EVENT, prog, ev); /* keeps our reference of ev */
out:
    file_put(prog);
    return r;
}

static long bpf_raw_tp_open(const union bpf_attr *at)
{
    char name[128];
    if (!at->raw_tracepoint.name) {
        say("BTF-typed tracing programs (tp_btf, fentry, fexit) cannot run in userspace");
        return -EOPNOTSUPP;
    }
    if (rt_safe_read_str(name, (const void *)(uintptr_t)at->raw_tracepoint.name, sizeof(name)) < 0)
        return -EFAULT;
    struct tool_file *prog = get_kind((int)at->raw_tracepoint.prog_fd, TK_PROG);
    if (!prog)
        return -EBADF;
    long r = attach(prog, BPFG_TOOL_RAW_TRACEPOINT, -1, 0, 0, 0, 0, name);
    if (r >= 0)
        r = new_link((uint32_t)r, BPF_LINK_TYPE_RAW_TRACEPOINT, prog, NULL);
    file_put(prog);
    return r;
}

static long bpf_link_detach(const union bpf_attr *at)
{
    struct tool_file *l = get_kind((int)at->link_detach.link_fd, TK_LINK);
    if (!l)
        return -EINVAL;
    tool_fdt_lock();
    uint32_t id = l->id;
    struct tool_file *perf = l->perf;
    l->id = 0;
    l->perf = NULL;
    tool_fdt_unlock();
    chan_release(BPFG_TOOL_DETACH, BPFG_TOOL_OBJ_LINK, id);
    if (perf) {
        perf->attached = false;
        file_put(perf);
    }
    file_put(l);
    return 0;
}

/* ---- bpf(): map elements, on the region ---- */

static bool map_cmd(int cmd)
{
    switch (cmd) {
    case BPF_MAP_LOOKUP_ELEM:
    case BPF_MAP_UPDATE_ELEM:
    case BPF_MAP_DELETE_ELEM:
    case BPF_MAP_GET_NEXT_KEY:
    case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
    case BPF_MAP_FREEZE:
    case BPF_MAP_LOOKUP_BATCH:
    case BPF_MAP_LOOKUP_AND_DELETE_BATCH:
    case BPF_MAP_UPDATE_BATCH:
    case BPF_MAP_DELETE_BATCH: return true;
    default: return false;
    }
}

/* Commands on a map that became the kernel's go to the kernel (but a perf
 * array's slots, whose rings are ours: perf_array_update). */
static bool kernel_owned(const struct tool_file *f)
{
    return f->kfd >= 0 && f->map_type != BPF_MAP_TYPE_PERF_EVENT_ARRAY && f->map_type != BPF_MAP_TYPE_RINGBUF;
}

static bool batch_cmd(int cmd)
{
    return cmd == BPF_MAP_LOOKUP_BATCH || cmd == BPF_MAP_LOOKUP_AND_DELETE_BATCH || cmd == BPF_MAP_UPDATE_BATCH ||
           cmd == BPF_MAP_DELETE_BATCH;
}

static bool is_hash(uint32_t t)
{
    return t == BPF_MAP_TYPE_HASH || t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_HASH ||
           t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

static long map_arg(int fd, struct tool_file **out)
{
    struct tool_file *f = tool_fdt_get(fd);
    if (!f)
        return -EBADF;
    if (f->kind != TK_MAP) {
        file_put(f);
        return -EINVAL;
    }
    *out = f;
    return 0;
}

/* Reads a key (NULL when the map has none) into b. */
static long read_key(struct tool_file *f, uint64_t ukey, struct xbuf *b, void **key)
{
    *key = NULL;
    if (!f->key_size)
        return 0;
    if (!xbuf_get(b, f->key_size))
        return -ENOMEM;
    if (uread(b->p, (const void *)(uintptr_t)ukey, f->key_size))
        return -EFAULT;
    *key = b->p;
    return 0;
}

/* PERF_EVENT_ARRAY slots hold the tool's perf rings, locally. */
static long perf_array_update(struct tool_file *f, const void *key, const void *value, uint64_t flags)
{
    uint32_t idx, fd;
    memcpy(&idx, key, 4);
    memcpy(&fd, value, 4);
    if (flags != BPF_ANY)
        return -EINVAL;
    if (idx >= f->max_entries)
        return -E2BIG;
    struct tool_file *ring = tool_fdt_get((int)fd);
    if (!ring)
        return -EBADF;
    if (ring->kind != TK_PERF_RING) {
        file_put(ring);
        return -EINVAL;
    }
    long r = f->kfd >= 0 ? kernel_perf_slot(f, ring, idx) : 0;
    if (r) {
        file_put(ring);
        return r;
    }
    tool_fdt_lock();
    struct tool_file *old = f->rings[idx];
    f->rings[idx] = ring; /* our reference moves into the slot */
    tool_fdt_unlock();
    file_put(old);
    return 0;
}

static long perf_array_delete(struct tool_file *f, const void *key)
{
    uint32_t idx;
    memcpy(&idx, key, 4);
    if (idx >= f->max_entries)
        return -E2BIG;
    if (f->kfd >= 0)
        kernel_perf_clear(f, idx);
    tool_fdt_lock();
    struct tool_file *old = f->rings[idx];
    f->rings[idx] = NULL;
    tool_fdt_unlock();
    if (!old)
        return -ENOENT;
    file_put(old);
    return 0;
}

/* Map-in-map: the fd names an inner map matching the template; the slot
 * gets its id (the kernel checks an array's flags and index first). */
static long outer_update(struct tool_file *f, const void *key, const void *value, uint64_t flags)
{
    uint32_t fd, idx;
    memcpy(&fd, value, 4);
    memcpy(&idx, key, 4);
    if (f->map_type == BPF_MAP_TYPE_ARRAY_OF_MAPS && flags != BPF_ANY)
        return -EINVAL;
    if (f->map_type == BPF_MAP_TYPE_ARRAY_OF_MAPS && idx >= f->max_entries)
        return -E2BIG;
    struct tool_file *o = tool_fdt_get((int)fd);
    if (!o)
        return -EBADF;
    long r = -EINVAL;
    if (o->kind == TK_MAP && o->map) {
        struct bpfg_map_info info;
        bpfg_map_get_info(o->map, &info);
        r = bpfg_map_inner_check(f->map, &info);
    }
    uint32_t id = o->id;
    file_put(o);
    return r ? r : bpfg_map_update_copy(f->map, key, &id, flags);
}

/* One element update, with fd values turned into ids. */
static long elem_update(struct tool_file *f, const void *key, const void *value, uint64_t flags)
{
    uint32_t fd, id;
    switch (f->map_type) {
    case BPF_MAP_TYPE_PERF_EVENT_ARRAY: return perf_array_update(f, key, value, flags);
    case BPF_MAP_TYPE_ARRAY_OF_MAPS:
    case BPF_MAP_TYPE_HASH_OF_MAPS: return outer_update(f, key, value, flags);
    case BPF_MAP_TYPE_PROG_ARRAY: {
        memcpy(&fd, value, 4);
        uint8_t kind = f->map_type == BPF_MAP_TYPE_PROG_ARRAY ? TK_PROG : TK_MAP;
        if (f->map_type == BPF_MAP_TYPE_PROG_ARRAY && flags != BPF_ANY)
            return -EINVAL;
        struct tool_file *o = tool_fdt_get((int)fd);
        if (!o)
            return -EBADF;
        id = o->id;
        bool ok = o->kind == kind;
        file_put(o);
        if (!ok)
            return -EINVAL;
        return bpfg_map_update_copy(f->map, key, &id, flags);
    }
    default: return bpfg_map_update_copy(f->map, key, value, flags);
    }
}

static long elem_delete(struct tool_file *f, const void *key)
{
    if (f->map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY)
        return perf_array_delete(f, key);
    return bpfg_map_delete_copy(f->map, key);
}

static long elem_next_key(struct tool_file *f, const void *key, void *next)
{
    /* the kernel's hash maps: a key not in the map gives the first key
     * (bpftrace starts its walks from a zeroed key) */
    if (key && is_hash(f->map_type) && !bpfg_map_lookup_elem(f->map, key))
        key = NULL;
    if (f->map_type != BPF_MAP_TYPE_PERF_EVENT_ARRAY)
        return bpfg_map_get_next_key(f->map, key, next);
    /* the kernel's array order */
    uint32_t idx = 0, n;
    if (key)
        memcpy(&idx, key, 4);
    if (!key || idx >= f->max_entries)
        n = 0;
    else if (idx + 1 == f->max_entries)
        return -ENOENT;
    else
        n = idx + 1;
    memcpy(next, &n, 4);
    return 0;
}

static long bpf_map_elem(struct tool_file *f, int cmd, const union bpf_attr *at)
{
    long r = 0;
    struct xbuf kb, vb;
    xbuf_init(&kb);
    xbuf_init(&vb);
    void *key = NULL;
    uint64_t uval = at->value; /* next_key shares the slot */
    /* FREEZE has no key; GET_NEXT_KEY's NULL key asks for the first one */
    if (cmd != BPF_MAP_FREEZE && !(cmd == BPF_MAP_GET_NEXT_KEY && !at->key))
        r = read_key(f, at->key, &kb, &key);
    if (r)
        goto out;
    switch (cmd) {
    case BPF_MAP_LOOKUP_ELEM:
    case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
        if (at->flags & ~(uint64_t)BPF_F_LOCK) {
            r = -EINVAL;
            break;
        }
        if (!xbuf_get(&vb, f->value_copy ? f->value_copy : 1)) {
            r = -ENOMEM;
            break;
        }
        /* a bloom filter's lookup tests the value the caller gives */
        if (f->map_type == BPF_MAP_TYPE_BLOOM_FILTER && uread(vb.p, (const void *)(uintptr_t)uval, f->value_copy)) {
            r = -EFAULT;
            break;
        }
        r = cmd == BPF_MAP_LOOKUP_ELEM ? bpfg_map_lookup_copy(f->map, key, vb.p)
                                       : bpfg_map_lookup_and_delete_copy(f->map, key, vb.p);
        if (!r && uwrite((void *)(uintptr_t)uval, vb.p, f->value_copy))
            r = -EFAULT;
        break;
    case BPF_MAP_UPDATE_ELEM:
        if (!xbuf_get(&vb, f->value_copy ? f->value_copy : 1)) {
            r = -ENOMEM;
            break;
        }
        if (uread(vb.p, (const void *)(uintptr_t)uval, f->value_copy)) {
            r = -EFAULT;
            break;
        }
        r = elem_update(f, key, vb.p, at->flags);
        break;
    case BPF_MAP_DELETE_ELEM: r = elem_delete(f, key); break;
    case BPF_MAP_GET_NEXT_KEY:
        if (!xbuf_get(&vb, f->key_size ? f->key_size : 1)) {
            r = -ENOMEM;
            break;
        }
        r = elem_next_key(f, at->key ? key : NULL, vb.p);
        if (!r && uwrite((void *)(uintptr_t)at->next_key, vb.p, f->key_size))
            r = -EFAULT;
        break;
    case BPF_MAP_FREEZE: r = bpfg_map_freeze(f->map); break;
    }
out:
    xbuf_free(&kb);
    xbuf_free(&vb);
    return r;
}

static int write_count(void *uattr, uint32_t n)
{
    return uwrite((uint8_t *)uattr + offsetof(union bpf_attr, batch.count), &n, 4) ? -EFAULT : 0;
}

/* LOOKUP_BATCH / LOOKUP_AND_DELETE_BATCH. Arrays: the batch token is the
 * last key returned (the kernel's generic code). Hash maps: a u32 like the
 * kernel's bucket index, here the number of keys already returned (0 for
 * the deleting variant, whose returned keys are gone). */
static long lookup_batch(struct tool_file *f, const union bpf_attr *at, void *uattr, bool del)
{
    uint32_t max = at->batch.count, cp = 0, skip = 0;
    bool hash = is_hash(f->map_type);
    if (del && !hash)
        return -ENOTSUPP;
    if (!hash && f->map_type != BPF_MAP_TYPE_ARRAY && f->map_type != BPF_MAP_TYPE_PERCPU_ARRAY)
        return -ENOTSUPP;
    if (!max)
        return 0;
    if (write_count(uattr, 0))
        return -EFAULT;
    uint32_t ks = f->key_size, vs = f->value_copy;
    struct xbuf b;
    xbuf_init(&b);
    uint8_t *prev = xbuf_get(&b, 2 * (size_t)ks + vs);
    if (!prev)
        return -ENOMEM;
    uint8_t *key = prev + ks, *val = key + ks;
    bool have_prev = false;
    long r = 0;
    if (at->batch.in_batch) {
        if (hash)
            r = uread(&skip, (const void *)(uintptr_t)at->batch.in_batch, 4) ? -EFAULT : 0;
        else
            r = uread(prev, (const void *)(uintptr_t)at->batch.in_batch, ks) ? -EFAULT : 0;
        have_prev = !hash;
        if (del)
            skip = 0;
    }
    for (uint32_t i = 0; !r && i < skip; i++) {
        r = bpfg_map_get_next_key(f->map, have_prev ? prev : NULL, key);
        memcpy(prev, key, ks);
        have_prev = true;
    }
    while (!r && cp < max) {
        r = bpfg_map_get_next_key(f->map, have_prev ? prev : NULL, key);
        if (r)
            break;
        r = del ? bpfg_map_lookup_and_delete_copy(f->map, key, val) : bpfg_map_lookup_copy(f->map, key, val);
        memcpy(prev, key, ks);
        have_prev = true;
        if (r == -ENOENT) { /* deleted meanwhile: go on after it */
            r = 0;
            continue;
        }
        if (r)
            break;
        if (uwrite((uint8_t *)(uintptr_t)at->batch.keys + (uint64_t)cp * ks, key, ks) ||
            uwrite((uint8_t *)(uintptr_t)at->batch.values + (uint64_t)cp * vs, val, vs))
            r = -EFAULT;
        else
            cp++;
    }
    if (r != -EFAULT) {
        uint32_t token = del ? 0 : skip + cp;
        if (write_count(uattr, cp) ||
            (cp && uwrite((void *)(uintptr_t)at->batch.out_batch, hash ? (void *)&token : (void *)prev, hash ? 4 : ks)))
            r = -EFAULT;
    }
    xbuf_free(&b);
    return r;
}

static long bpf_map_batch(struct tool_file *f, int cmd, const union bpf_attr *at, void *uattr)
{
    long r = 0;
    if (at->batch.flags || (at->batch.elem_flags & ~(uint64_t)BPF_F_LOCK && cmd != BPF_MAP_UPDATE_BATCH))
        return -EINVAL;
    if (cmd == BPF_MAP_LOOKUP_BATCH || cmd == BPF_MAP_LOOKUP_AND_DELETE_BATCH)
        return lookup_batch(f, at, uattr, cmd == BPF_MAP_LOOKUP_AND_DELETE_BATCH);
    uint32_t max = at->batch.count, cp = 0, ks = f->key_size, vs = f->value_copy;
    struct xbuf b;
    xbuf_init(&b);
    uint8_t *key = xbuf_get(&b, (size_t)ks + vs + 8);
    if (!key)
        return -ENOMEM;
    uint8_t *val = key + ks;
    for (; !r && cp < max; cp++) {
        if (uread(key, (const uint8_t *)(uintptr_t)at->batch.keys + (uint64_t)cp * ks, ks)) {
            r = -EFAULT;
            break;
        }
        if (cmd == BPF_MAP_DELETE_BATCH) {
            r = elem_delete(f, key);
        } else if (uread(val, (const uint8_t *)(uintptr_t)at->batch.values + (uint64_t)cp * vs, vs)) {
            r = -EFAULT;
        } else {
            r = elem_update(f, key, val, at->batch.elem_flags);
        }
        if (r)
            break;
    }
    if (write_count(uattr, cp))
        r = -EFAULT;
    xbuf_free(&b);
    return r;
}

/* Element and batch commands: the map's file is taken once (each take is
 * the fd table's lock) and the command runs on the region, or on the
 * kernel map it became. */
static long bpf_map_cmd(int cmd, union bpf_attr *at, void *uattr, uint64_t size)
{
    bool batch = batch_cmd(cmd);
    struct tool_file *f;
    long r = map_arg((int)(batch ? at->batch.map_fd : at->map_fd), &f);
    if (r)
        return r;
    if (kernel_owned(f))
        r = kernel_map_cmd(f, cmd, batch, at, uattr, size);
    else if (batch)
        r = bpf_map_batch(f, cmd, at, uattr);
    else
        r = bpf_map_elem(f, cmd, at);
    file_put(f);
    return r;
}

/* ---- bpf(): OBJ_GET_INFO_BY_FD ---- */

static long bpf_obj_info(const union bpf_attr *at, void *uattr, uint64_t size)
{
    struct tool_file *f = tool_fdt_get((int)at->info.bpf_fd);
    if (!f) /* not ours: a kernel object, e.g. the kernel's BTF (kernel_btf_query) */
        return rt_sys3(SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, (long)uattr, (long)size);
    union {
        struct bpf_map_info map;
        struct bpf_prog_info prog;
        struct bpf_btf_info btf;
        struct bpf_link_info link;
    } info;
    memset(&info, 0, sizeof(info));
    size_t ksize = 0;
    switch (f->kind) {
    case TK_MAP:
        ksize = sizeof(info.map);
        info.map.type = f->map_type;
        info.map.id = f->id;
        info.map.key_size = f->key_size;
        info.map.value_size = f->value_size;
        info.map.max_entries = f->max_entries;
        info.map.map_flags = f->map_flags;
        memcpy(info.map.name, f->name, sizeof(info.map.name));
        info.map.btf_id = f->btf_id;
        info.map.btf_key_type_id = f->btf_key_type_id;
        info.map.btf_value_type_id = f->btf_value_type_id;
        info.map.map_extra = f->map_extra;
        break;
    case TK_PROG:
        ksize = sizeof(info.prog);
        info.prog.type = f->prog_type;
        info.prog.id = f->id;
        memcpy(info.prog.name, f->name, sizeof(info.prog.name));
        info.prog.created_by_uid = (uint32_t)rt_sys0(SYS_getuid);
        info.prog.gpl_compatible = f->gpl;
        break;
    case TK_BTF:
        ksize = sizeof(info.btf);
        info.btf.id = f->id;
        info.btf.btf_size = f->btf_size; /* the bytes themselves are not kept */
        break;
    case TK_LINK:
        ksize = sizeof(info.link);
        info.link.type = f->link_type;
        info.link.id = f->id;
        info.link.prog_id = f->prog_id;
        break;
    default: file_put(f); return -EINVAL;
    }
    file_put(f);
    uint32_t len = at->info.info_len;
    if (len > ksize) {
        /* the kernel wants the part it does not know to be zero */
        uint8_t tail[64];
        for (uint64_t off = ksize; off < len; off += sizeof(tail)) {
            size_t n = len - off < sizeof(tail) ? len - off : sizeof(tail);
            if (uread(tail, (const uint8_t *)(uintptr_t)at->info.info + off, n))
                return -EFAULT;
            for (size_t i = 0; i < n; i++)
                if (tail[i])
                    return -E2BIG;
        }
        len = (uint32_t)ksize;
    }
    if (uwrite((void *)(uintptr_t)at->info.info, &info, len) ||
        uwrite((uint8_t *)uattr + offsetof(union bpf_attr, info.info_len), &len, 4))
        return -EFAULT;
    return 0;
}

/* ---- bpf() ---- */

long do_bpf(const uint64_t a[6])
{
    int cmd = (int)a[0];
    void *uattr = (void *)(uintptr_t)a[1];
    uint64_t size = (uint32_t)a[2];
    union bpf_attr at;
    if (size > PAGE)
        return -E2BIG;
    /* the kernel wants the part of attr it does not know to be zero */
    for (uint64_t off = sizeof(at); off < size; off += 64) {
        uint8_t tail[64];
        size_t n = size - off < sizeof(tail) ? size - off : sizeof(tail);
        if (uread(tail, (uint8_t *)uattr + off, n))
            return -EFAULT;
        for (size_t i = 0; i < n; i++)
            if (tail[i])
                return -E2BIG;
    }
    if (size > sizeof(at))
        size = sizeof(at);
    memset((uint8_t *)&at + size, 0, sizeof(at) - size); /* libbpf passes only the fields it sets */
    if (uread(&at, uattr, size))
        return -EFAULT;
    if (map_cmd(cmd))
        return bpf_map_cmd(cmd, &at, uattr, size);
    switch (cmd) {
    case BPF_MAP_CREATE: return bpf_map_create(&at);
    case BPF_PROG_LOAD: return bpf_prog_load(&at);
    case BPF_BTF_LOAD: return bpf_btf_load(&at);
    case BPF_LINK_CREATE: return bpf_link_create(&at);
    case BPF_RAW_TRACEPOINT_OPEN: return bpf_raw_tp_open(&at);
    case BPF_LINK_DETACH: return bpf_link_detach(&at);
    case BPF_OBJ_GET_INFO_BY_FD: return bpf_obj_info(&at, uattr, (uint32_t)a[2]);
    case BPF_PROG_BIND_MAP:
        return 0; /* the server keeps what a program uses */
    /* The kernel's own BTF (vmlinux, modules) is what tools read to know
     * kernel types (bpftrace: tracepoint arguments); read-only queries go
     * to the kernel as they are. */
    case BPF_BTF_GET_NEXT_ID:
    case BPF_BTF_GET_FD_BY_ID: return rt_sys3(SYS_bpf, cmd, (long)uattr, (long)(uint32_t)a[2]);
    default: return -EINVAL;
    }
}

/* ---- mmap of map fds ---- */

/* Global data / BPF_F_MMAPABLE arrays: the values start at offset 0 of
 * the kernel's view. */
long mmap_array(struct tool_file *f, const uint64_t a[6])
{
    size_t size;
    uint64_t file_off;
    if (!bpfg_map_value_area(f->map, &size, &file_off))
        return -EINVAL;
    uint64_t off = a[5], len = a[1];
    if (off % PAGE || !len || off + len < off || off + len > ROUNDUP_PAGE(size))
        return -EINVAL;
    struct bpfg_map_info info;
    bpfg_map_get_info(f->map, &info);
    if (info.frozen && (a[2] & PROT_WRITE) && (a[3] & MAP_SHARED))
        return -EPERM;
    long r = f->kfd >= 0
                 ? rt_sys6(SYS_mmap, (long)a[0], (long)len, (long)a[2], (long)a[3], f->kfd, (long)off)
                 : rt_sys6(SYS_mmap, (long)a[0], (long)len, (long)a[2], (long)a[3], (long)a[4], (long)(file_off + off));
    if (!rt_is_err(r) && (a[3] & MAP_SHARED)) { /* moved onto the kernel map if it becomes one */
        f->mapped = (void *)r;
        f->mapped_len = len;
        f->mapped_off = off;
        f->mapped_prot = (long)a[2];
        f->mapped_flags = (long)a[3];
    }
    return r;
}

/* RINGBUF, kernel view: consumer page, producer page, data, data again.
 * In the region the first three are contiguous from aux_off (the
 * consumer page); the second data copy maps data_off again. Only the
 * consumer page may be writable. */
long mmap_ringbuf(struct tool_file *f, const uint64_t a[6])
{
    struct bpfg_ringbuf_file rf;
    if (bpfg_ringbuf_get_file_layout(f->map, &rf))
        return -EINVAL;
    uint64_t size = rf.size, aux_off = rf.consumer_off, data_off = rf.data_off;
    uint64_t off = a[5], len = ROUNDUP_PAGE(a[1]), end = off + len, first_end = 2 * PAGE + size;
    long prot = (long)a[2], flags = (long)a[3], fd = (long)a[4];
    if (off % PAGE || !a[1] || end < off || end > 2 * PAGE + 2 * size)
        return -EINVAL;
    if ((prot & PROT_WRITE) && (off != 0 || len != PAGE))
        return -EPERM;
    long fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);
    long base = rt_sys6(SYS_mmap, (long)a[0], (long)len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | fixed, -1, 0);
    if (rt_is_err(base))
        return base;
    long sflags = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED;
    long r = 0;
    if (off < first_end) {
        uint64_t n = (end < first_end ? end : first_end) - off;
        r = rt_sys6(SYS_mmap, base, (long)n, prot, sflags, fd, (long)(aux_off + off));
    }
    if (!rt_is_err(r) && end > first_end) {
        uint64_t from = off > first_end ? off : first_end;
        r = rt_sys6(SYS_mmap, base + (long)(from - off), (long)(end - from), prot, sflags, fd,
                    (long)(data_off + (from - first_end)));
    }
    if (rt_is_err(r)) {
        if (!fixed)
            rt_sys2(SYS_munmap, base, (long)len);
        return r;
    }
    return base;
}
