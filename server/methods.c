/* RPC method table and handlers. Every handler receives validated named
 * arguments; on failure it returns an error code with call->err set and the
 * dispatcher turns that into an error response. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/btf.h>

#include "access.h"
#include "asm.h"
#include "binwide.h"
#include "injector.h"
#include "kernel.h"
#include "log.h"
#include "methods.h"
#include "progcheck.h"
#include "stacksyms.h"
#include "state.h"
#include "symbolize.h"
#include "tool.h"

enum ptype { P_STR, P_BIN, P_UINT, P_BOOL, P_REF, P_ARRAY };

static const char *const ptype_names[] = {
    [P_STR] = "str", [P_BIN] = "bin", [P_UINT] = "uint", [P_BOOL] = "bool", [P_REF] = "uint|str", [P_ARRAY] = "array",
};

struct param {
    const char *name;
    enum ptype type;
    bool required;
};

#define MAX_PARAMS 6

struct srv_call {
    struct server *s;
    struct srv_client *c;
    const msgpack_object *args[MAX_PARAMS]; /* by the method's param index */
    int send_fd;
    char err[2048];
};

struct method {
    const char *name;
    int (*fn)(struct srv_call *call, msgpack_packer *pk);
    struct param params[MAX_PARAMS];
    const char *result;
    const char *doc;
    int since;
};

static int fail(struct srv_call *call, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct srv_call *call, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(call->err, sizeof(call->err), fmt, ap);
    va_end(ap);
    return code;
}

static int errno_code(int err)
{
    switch (err) {
    case -ENOENT: return BPFG_RPC_E_NOT_FOUND;
    case -EEXIST: return BPFG_RPC_E_EXISTS;
    case -EPERM:
    case -EACCES: return BPFG_RPC_E_PERMISSION;
    case -EINVAL:
    case -E2BIG: return BPFG_RPC_E_INVALID_PARAMS;
    case -EOPNOTSUPP: return BPFG_RPC_E_UNSUPPORTED;
    case -EBUSY:
    case -EAGAIN: return BPFG_RPC_E_BUSY;
    default: return BPFG_RPC_E_INTERNAL;
    }
}

/* ---- packing helpers ---- */

static void kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    bpfg_pack_cstr(pk, k);
    bpfg_pack_cstr(pk, v);
}

static void kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    bpfg_pack_cstr(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void pack_map_entry(msgpack_packer *pk, const struct reg_map *m)
{
    struct bpfg_map_info info;
    bpfg_map_get_info(m->map, &info);
    bool percpu = info.value_copy_size != info.value_size;
    bool ring = info.type == BPF_MAP_TYPE_RINGBUF || info.type == BPF_MAP_TYPE_PERF_EVENT_ARRAY;
    msgpack_pack_map(pk, ring ? 14 : 13);
    kv_u64(pk, "id", m->id);
    bpfg_pack_cstr(pk, "kernel"); /* a kernel map (object.load kernel) */
    bpfg_map_is_kernel(m->map) ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    kv_str(pk, "name", m->name);
    kv_str(pk, "type", bpfg_map_type_name(info.type));
    kv_u64(pk, "key_size", info.key_size);
    kv_u64(pk, "value_size", info.value_size);
    kv_u64(pk, "max_entries", info.max_entries);
    kv_u64(pk, "flags", info.map_flags & ~BPFG_F_GLOBAL_DATA); /* the kernel's BPF_F_* only */
    kv_u64(pk, "object", m->obj_id);
    kv_u64(pk, "btf_key_type_id", m->btf_key_type_id);
    kv_u64(pk, "btf_value_type_id", m->btf_value_type_id);
    kv_u64(pk, "percpu_slots", percpu ? info.nr_cpus : 0);
    kv_u64(pk, "entries", bpfg_map_entries(m->map));
    if (ring) /* records dropped, the buffer full */
        kv_u64(pk, "lost", bpfg_map_lost(m->map));
}

/* run_cnt, run_time_ns: the kernel's for a kernel program, else the sum
 * over every target (stats.c). */
static void prog_run_stats(struct server *s, const struct reg_prog *p, struct stats_run *run)
{
    const struct reg_object *o = registry_object(&s->reg, p->obj_id);
    *run = (struct stats_run){0, 0};
    if (p->prog->kernel)
        kernel_prog_stats(o ? o->kernel : NULL, p->prog->name, &run->run_cnt, &run->run_time_ns);
    else
        stats_prog_total(s, p->id, run);
}

/* show: with the per-target counters ("targets") */
static void pack_prog_entry(msgpack_packer *pk, struct server *s, const struct reg_prog *p, bool show)
{
    const struct bpfg_obj_prog *op = p->prog;
    char target[512] = "";
    if (op->target_binary && op->target_func)
        snprintf(target, sizeof(target), op->target_offset ? "%s:%s+%llu" : "%s:%s", op->target_binary, op->target_func,
                 (unsigned long long)op->target_offset);
    else if (op->syscall)
        snprintf(target, sizeof(target), "%s", op->syscall);
    struct stats_run run;
    prog_run_stats(s, p, &run);
    msgpack_pack_map(pk, show ? 13 : 12);
    kv_u64(pk, "id", p->id);
    kv_str(pk, "name", op->name);
    kv_u64(pk, "object", p->obj_id);
    kv_str(pk, "section", op->section);
    kv_str(pk, "kind", op->kernel && op->kind == BPFG_ATTACH_UNSUPPORTED ? "kernel" : bpfg_attach_kind_name(op->kind));
    kv_str(pk, "runs", op->kernel ? "kernel" : op->kind == BPFG_ATTACH_UNSUPPORTED ? "nowhere" : "userspace");
    kv_str(pk, "target", target);
    kv_u64(pk, "insns", op->insn_cnt);
    kv_str(pk, "license", op->license ? op->license : "");
    kv_str(pk, "error", op->error);
    kv_u64(pk, "run_cnt", run.run_cnt);
    kv_u64(pk, "run_time_ns", run.run_time_ns);
    if (show) {
        bpfg_pack_cstr(pk, "targets");
        stats_pack_prog_targets(s, p->id, pk);
    }
}

static void pack_object_entry(msgpack_packer *pk, struct server *s, const struct reg_object *o)
{
    msgpack_pack_map(pk, 5);
    kv_u64(pk, "id", o->id);
    kv_str(pk, "name", o->name);
    kv_str(pk, "path", o->path);
    bpfg_pack_cstr(pk, "programs");
    msgpack_pack_array(pk, o->prog_cnt);
    for (size_t i = 0; i < o->prog_cnt; i++)
        pack_prog_entry(pk, s, registry_prog(&s->reg, o->prog_ids[i]), false);
    bpfg_pack_cstr(pk, "maps");
    msgpack_pack_array(pk, o->map_cnt);
    for (size_t i = 0; i < o->map_cnt; i++)
        pack_map_entry(pk, registry_map(&s->reg, o->map_ids[i]));
}

/* Appends bytes that are already msgpack (packed elsewhere) as they are. */
static void append_packed(msgpack_packer *pk, const char *data, size_t len)
{
    if (len)
        pk->callback(pk->data, data, len);
}

/* ---- argument helpers ---- */

static int arg_string(struct srv_call *call, int idx, char *buf, size_t len)
{
    int err = bpfg_obj_strcpy(call->args[idx], buf, len);
    if (err == -E2BIG)
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "string argument longer than %zu bytes", len - 1);
    if (err)
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "string argument contains a NUL byte");
    return 0;
}

static int arg_map(struct srv_call *call, int idx, struct reg_map **out)
{
    const msgpack_object *o = call->args[idx];
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *out = o->via.u64 <= UINT32_MAX ? registry_map(&call->s->reg, (uint32_t)o->via.u64) : NULL;
        if (!*out)
            return fail(call, BPFG_RPC_E_NOT_FOUND, "no map with id %llu", (unsigned long long)o->via.u64);
        return 0;
    }
    char name[256];
    int err = arg_string(call, idx, name, sizeof(name));
    if (err)
        return err;
    err = registry_map_by_name(&call->s->reg, name, out);
    if (err == -ENOENT)
        return fail(call, BPFG_RPC_E_NOT_FOUND, "no map named '%s'", name);
    if (err == -EEXIST) {
        char ids[256] = "";
        size_t len = 0;
        const struct registry *r = &call->s->reg;
        for (size_t i = 0; i < r->nmaps && len < sizeof(ids) - 16; i++)
            if (strcmp(r->maps[i]->name, name) == 0)
                len += (size_t)snprintf(ids + len, sizeof(ids) - len, "%s%u", len ? ", " : "", r->maps[i]->id);
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "map name '%s' is ambiguous: use one of the ids %s", name, ids);
    }
    return 0;
}

static int arg_prog(struct srv_call *call, int idx, struct reg_prog **out)
{
    const msgpack_object *o = call->args[idx];
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *out = o->via.u64 <= UINT32_MAX ? registry_prog(&call->s->reg, (uint32_t)o->via.u64) : NULL;
        if (!*out)
            return fail(call, BPFG_RPC_E_NOT_FOUND, "no program with id %llu", (unsigned long long)o->via.u64);
        return 0;
    }
    char name[256];
    int err = arg_string(call, idx, name, sizeof(name));
    if (err)
        return err;
    err = registry_prog_by_name(&call->s->reg, name, out);
    if (err == -ENOENT)
        return fail(call, BPFG_RPC_E_NOT_FOUND, "no program named '%s'", name);
    if (err == -EEXIST) {
        char ids[256] = "";
        size_t len = 0;
        const struct registry *r = &call->s->reg;
        for (size_t i = 0; i < r->nprogs && len < sizeof(ids) - 16; i++)
            if (strcmp(r->progs[i]->prog->name, name) == 0)
                len += (size_t)snprintf(ids + len, sizeof(ids) - len, "%s%u", len ? ", " : "", r->progs[i]->id);
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "program name '%s' is ambiguous: use one of the ids %s", name,
                    ids);
    }
    return 0;
}

/* A key argument must have exactly the map's key size. */
static int arg_bytes(struct srv_call *call, int idx, const char *what, size_t want, const void **data)
{
    const msgpack_object *o = call->args[idx];
    if (o->via.bin.size != want)
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "%s is %u bytes, the map takes %zu", what, o->via.bin.size, want);
    *data = o->via.bin.ptr;
    return 0;
}

/* ---- handlers ---- */

static int m_api_info(struct srv_call *call, msgpack_packer *pk);
static int m_audit_read(struct srv_call *call, msgpack_packer *pk);

/* server.shutdown: stops the server after this answer; with detach every
 * target is detached and the state directory emptied (a stop for good),
 * without (as SIGTERM) targets stay attached for the next server. */
static int m_server_shutdown(struct srv_call *call, msgpack_packer *pk)
{
    bool detach = call->args[0] && call->args[0]->via.boolean;
    srv_log(SRV_INFO, "client %u: shutdown%s", call->c->id, detach ? " --detach: detaching every target" : "");
    call->s->stop = true;
    call->s->detach_on_stop = detach;
    msgpack_pack_true(pk);
    return 0;
}

static int m_server_status(struct srv_call *call, msgpack_packer *pk)
{
    struct server *s = call->s;
    struct bpfg_stop_tally stops;
    bpfg_stop_tally(&stops);
    msgpack_pack_map(pk, 11);
    kv_str(pk, "version", SRV_VERSION);
    kv_u64(pk, "pid", (uint64_t)getpid());
    kv_u64(pk, "uptime_ms", server_now_ms() - s->start_ms);
    kv_str(pk, "socket", s->cfg.socket_path);
    kv_u64(pk, "objects", s->reg.nobjects);
    kv_u64(pk, "programs", s->reg.nprogs);
    kv_u64(pk, "maps", s->reg.nmaps);
    kv_u64(pk, "targets", s->targets.count);
    kv_u64(pk, "clients", s->nclients);
    bpfg_pack_cstr(pk, "stats_enabled");
    s->stats.enabled ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    /* every ptrace stop of a target's threads this server made */
    bpfg_pack_cstr(pk, "stops");
    msgpack_pack_map(pk, 3);
    kv_u64(pk, "count", stops.stops);
    kv_u64(pk, "longest_us", stops.longest_ns / 1000);
    kv_u64(pk, "total_us", stops.total_ns / 1000);
    return 0;
}

static struct access_peer peer_of(const struct srv_client *c)
{
    return (struct access_peer){c->uid, c->gid, c->groups, c->ngroups, c->tls != NULL, c->subject, c->sans};
}

/* stats.set: program run counts and times, hook hits, in every target */
static int m_stats_set(struct srv_call *call, msgpack_packer *pk)
{
    stats_set(call->s, call->args[0]->via.boolean);
    msgpack_pack_map(pk, 1);
    bpfg_pack_cstr(pk, "enabled");
    call->s->stats.enabled ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    return 0;
}

static int m_object_load(struct srv_call *call, msgpack_packer *pk)
{
    char path[4096], name[64];
    const void *data = NULL;
    size_t len = 0;
    bool has_path = call->args[0], has_data = call->args[1];
    int err;

    if (has_path == has_data)
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "give exactly one of 'path' and 'data'");
    if (has_path) {
        if ((err = arg_string(call, 0, path, sizeof(path))))
            return err;
        if (path[0] != '/')
            return fail(call, BPFG_RPC_E_INVALID_PARAMS, "path '%s' must be absolute", path);
    } else {
        data = call->args[1]->via.bin.ptr;
        len = call->args[1]->via.bin.size;
    }
    if (call->args[2] && (err = arg_string(call, 2, name, sizeof(name))))
        return err;
    enum bpfg_kernel_mode mode = BPFG_KERNEL_AUTO;
    char mode_name[16];
    if (call->args[3] &&
        ((err = arg_string(call, 3, mode_name, sizeof(mode_name))) || kernel_mode_parse(mode_name, &mode) != 0))
        return err ? err
                   : fail(call, BPFG_RPC_E_INVALID_PARAMS, "kernel '%s': expected auto, never or always", mode_name);
    struct access_peer peer = peer_of(call->c);
    if (!access_unrestricted(&call->s->access, &peer)) { /* kernel programs see every process */
        if (mode == BPFG_KERNEL_ALWAYS)
            return fail(call, BPFG_RPC_E_FORBIDDEN,
                        "kernel=always: an operate role restricted by targets: loads "
                        "no kernel program");
        mode = BPFG_KERNEL_NEVER;
    }

    struct reg_object *o;
    char why[4096];
    call->s->reg.kernel_mode = mode;
    err = registry_load(&call->s->reg, has_path ? path : NULL, data, len, call->args[2] ? name : NULL, &o, why,
                        sizeof(why));
    call->s->reg.kernel_mode = BPFG_KERNEL_NEVER;
    if (err) {
        srv_log(SRV_WARN, "client %u: object.load failed: %s", call->c->id, why);
        if (err == -ENOMEM)
            return fail(call, BPFG_RPC_E_INTERNAL, "%s", why);
        if (has_path && (err == -ENOENT || err == -EACCES))
            return fail(call, BPFG_RPC_E_NOT_FOUND, "%s: %s", path, why);
        return fail(call, BPFG_RPC_E_BAD_OBJECT, "%s", why);
    }
    err = kernel_load(&call->s->reg, o, mode, data, len, why, sizeof(why));
    if (err) {
        srv_log(SRV_WARN, "client %u: object '%s': %s", call->c->id, o->name, why);
        registry_unload(&call->s->reg, o->id);
        return fail(call, err == -ENOMEM ? BPFG_RPC_E_INTERNAL : BPFG_RPC_E_BAD_OBJECT, "%s", why);
    }
    err = progcheck_object(&call->s->reg, o, why, sizeof(why));
    if (err) {
        srv_log(SRV_WARN, "client %u: object '%s' rejected: %s", call->c->id, o->name, why);
        registry_unload(&call->s->reg, o->id);
        return fail(call, BPFG_RPC_E_VERIFIER, "%s", why);
    }
    state_object_loaded(call->s, o, data, len);
    pack_object_entry(pk, call->s, o);
    return 0;
}

static int m_object_list(struct srv_call *call, msgpack_packer *pk)
{
    const struct registry *r = &call->s->reg;
    msgpack_pack_array(pk, r->nobjects);
    for (size_t i = 0; i < r->nobjects; i++)
        pack_object_entry(pk, call->s, r->objects[i]);
    return 0;
}

static int m_object_unload(struct srv_call *call, msgpack_packer *pk)
{
    uint64_t id = call->args[0]->via.u64;
    struct reg_object *o = id <= UINT32_MAX ? registry_object(&call->s->reg, (uint32_t)id) : NULL;
    if (o && binwide_uses_object(o->id))
        return fail(call, BPFG_RPC_E_BUSY, "object %u has a binary-wide attachment: detach --path first", o->id);
    /* programs running in a process keep their object: detach first */
    for (struct target *t = call->s->targets.list; o && t; t = t->next)
        for (size_t h = 0; h < TARGET_MAX_HOOKS; h++)
            for (uint32_t k = 0; t->hooks[h].used && k < t->hooks[h].nprogs; k++) {
                struct reg_prog *p = registry_prog(&call->s->reg, t->hooks[h].prog_ids[k]);
                if (p && p->obj_id == o->id)
                    return fail(call, BPFG_RPC_E_BUSY, "object %u has programs attached to process %d: detach first",
                                o->id, (int)t->pid);
            }
    if (!o)
        return fail(call, BPFG_RPC_E_NOT_FOUND, "no object with id %llu", (unsigned long long)id);
    state_object_unloaded(call->s, (uint32_t)id); /* first: a crash now leaves no half-removed object */
    if (registry_unload(&call->s->reg, (uint32_t)id) != 0)
        return fail(call, BPFG_RPC_E_NOT_FOUND, "no object with id %llu", (unsigned long long)id);
    msgpack_pack_true(pk);
    return 0;
}

static int m_object_btf(struct srv_call *call, msgpack_packer *pk)
{
    uint64_t id = call->args[0]->via.u64;
    struct reg_object *o = id <= UINT32_MAX ? registry_object(&call->s->reg, (uint32_t)id) : NULL;
    if (!o)
        return fail(call, BPFG_RPC_E_NOT_FOUND, "no object with id %llu", (unsigned long long)id);
    msgpack_pack_map(pk, 1);
    bpfg_pack_cstr(pk, "btf");
    uint32_t size = 0;
    const void *raw = o->obj->btf ? btf__raw_data(o->obj->btf, &size) : NULL;
    if (raw)
        bpfg_pack_bin(pk, raw, size);
    else
        msgpack_pack_nil(pk);
    return 0;
}

static int m_prog_list(struct srv_call *call, msgpack_packer *pk)
{
    const struct registry *r = &call->s->reg;
    msgpack_pack_array(pk, r->nprogs);
    for (size_t i = 0; i < r->nprogs; i++)
        pack_prog_entry(pk, call->s, r->progs[i], false);
    return 0;
}

static int m_prog_show(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_prog *p;
    int err = arg_prog(call, 0, &p);
    if (err)
        return err;
    pack_prog_entry(pk, call->s, p, true);
    return 0;
}

static int m_prog_dump(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_prog *p;
    int err = arg_prog(call, 0, &p);
    if (err)
        return err;
    const struct bpfg_obj_prog *op = p->prog;
    if (!op->insns)
        return fail(call, BPFG_RPC_E_UNSUPPORTED, "program '%s' was not loaded: %s", op->name,
                    op->error ? op->error : "no instructions");
    char *text = bpfg_disasm(op->insns, op->insn_cnt);
    if (!text)
        return fail(call, BPFG_RPC_E_INTERNAL, "out of memory");
    msgpack_pack_map(pk, 4);
    kv_u64(pk, "id", p->id);
    kv_str(pk, "name", op->name);
    bpfg_pack_cstr(pk, "insns");
    bpfg_pack_bin(pk, op->insns, op->insn_cnt * sizeof(struct bpf_insn));
    kv_str(pk, "text", text);
    free(text);
    return 0;
}

static int m_map_list(struct srv_call *call, msgpack_packer *pk)
{
    const struct registry *r = &call->s->reg;
    msgpack_pack_array(pk, r->nmaps);
    for (size_t i = 0; i < r->nmaps; i++)
        pack_map_entry(pk, r->maps[i]);
    return 0;
}

static int m_map_show(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_map *m;
    int err = arg_map(call, 0, &m);
    if (err)
        return err;
    pack_map_entry(pk, m);
    return 0;
}

static bool is_keyed(uint32_t type)
{
    switch (type) {
    case BPF_MAP_TYPE_RINGBUF:
    case BPF_MAP_TYPE_PERF_EVENT_ARRAY:
    case BPF_MAP_TYPE_QUEUE:
    case BPF_MAP_TYPE_STACK:
    case BPF_MAP_TYPE_BLOOM_FILTER: return false;
    default: return true;
    }
}

/* Packs one value: a bin, or for per-CPU maps a list of per-CPU bins. */
static void pack_value(msgpack_packer *pk, const struct bpfg_map_info *info, const uint8_t *value)
{
    if (info->value_copy_size == info->value_size) {
        bpfg_pack_cstr(pk, "value");
        bpfg_pack_bin(pk, value, info->value_size);
        return;
    }
    uint32_t stride = (info->value_size + 7) & ~7u;
    bpfg_pack_cstr(pk, "values");
    msgpack_pack_array(pk, info->nr_cpus);
    for (uint32_t cpu = 0; cpu < info->nr_cpus; cpu++)
        bpfg_pack_bin(pk, value + (size_t)cpu * stride, info->value_size);
}

static int keyed_map(struct srv_call *call, struct reg_map **m, struct bpfg_map_info *info)
{
    int err = arg_map(call, 0, m);
    if (err)
        return err;
    bpfg_map_get_info((*m)->map, info);
    if (!is_keyed(info->type))
        return fail(call, BPFG_RPC_E_UNSUPPORTED, "map '%s' is a %s: it has no keys", (*m)->name,
                    bpfg_map_type_name(info->type));
    return 0;
}

static int m_map_lookup(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_map *m;
    struct bpfg_map_info info;
    const void *key = NULL;
    int err = keyed_map(call, &m, &info);
    if (err || (err = arg_bytes(call, 1, "key", info.key_size, &key)))
        return err;
    uint8_t *value = malloc(info.value_copy_size ? info.value_copy_size : 1);
    if (!value)
        return fail(call, BPFG_RPC_E_INTERNAL, "out of memory");
    err = bpfg_map_lookup_copy(m->map, key, value);
    if (err) {
        free(value);
        return fail(call, errno_code(err), err == -ENOENT ? "key not found in map '%s'" : "lookup in map '%s': %s",
                    m->name, strerror(-err));
    }
    msgpack_pack_map(pk, 2);
    bpfg_pack_cstr(pk, "key");
    bpfg_pack_bin(pk, key, info.key_size);
    pack_value(pk, &info, value);
    free(value);
    return 0;
}

/* Map-in-map values are inner map ids: a map of this server that matches
 * the template. */
static int check_inner(struct srv_call *call, struct reg_map *outer, const void *value)
{
    uint32_t id;
    memcpy(&id, value, 4);
    struct reg_map *in = registry_map(&call->s->reg, id);
    if (!in)
        return fail(call, errno_code(-EBADF), "map '%s': no inner map with id %u", outer->name, id);
    struct bpfg_map_info ii;
    bpfg_map_get_info(in->map, &ii);
    if (bpfg_map_inner_check(outer->map, &ii))
        return fail(call, errno_code(-EINVAL), "map '%s': map %u '%s' does not match its inner map template",
                    outer->name, id, in->name);
    return 0;
}

static int m_map_update(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_map *m;
    struct bpfg_map_info info;
    const void *key = NULL, *value = NULL;
    int err = keyed_map(call, &m, &info);
    if (err || (err = arg_bytes(call, 1, "key", info.key_size, &key)) ||
        (err = arg_bytes(call, 2, "value", info.value_copy_size, &value)))
        return err;
    uint64_t flags = call->args[3] ? call->args[3]->via.u64 : BPF_ANY;
    if (bpfg_map_type_is_outer(info.type) && (err = check_inner(call, m, value)))
        return err;
    err = bpfg_map_update_copy(m->map, key, value, flags);
    if (err) {
        const char *why = err == -EEXIST   ? "key already exists (flags say it must not)"
                          : err == -ENOENT ? "key does not exist (flags say it must)"
                          : err == -E2BIG  ? "map is full"
                                           : strerror(-err);
        return fail(call, errno_code(err), "update of map '%s': %s", m->name, why);
    }
    msgpack_pack_true(pk);
    return 0;
}

static int m_map_delete(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_map *m;
    struct bpfg_map_info info;
    const void *key = NULL;
    int err = keyed_map(call, &m, &info);
    if (err || (err = arg_bytes(call, 1, "key", info.key_size, &key)))
        return err;
    err = bpfg_map_delete_copy(m->map, key);
    if (err)
        return fail(call, errno_code(err), err == -ENOENT ? "key not found in map '%s'" : "delete in map '%s': %s",
                    m->name, strerror(-err));
    msgpack_pack_true(pk);
    return 0;
}

/* "frames": one "function+0xoff (file)" per address of the stack. */
static void pack_frames(msgpack_packer *pk, struct stack_syms *ss, const uint8_t *value, uint32_t size)
{
    bpfg_pack_cstr(pk, "frames");
    stack_syms_pack(pk, ss, value, size);
}

static int m_map_dump(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_map *m;
    struct bpfg_map_info info;
    int err = keyed_map(call, &m, &info);
    if (err)
        return err;
    uint64_t max = call->args[1] ? call->args[1]->via.u64 : UINT64_MAX;
    /* Stay well inside the message limit whatever the map holds. */
    size_t per_entry = info.key_size + info.value_copy_size + 16 + 8 * info.nr_cpus;
    uint64_t by_size = (call->s->cfg.max_msg ? call->s->cfg.max_msg : BPFG_RPC_MAX_MSG_DEFAULT) / 2 / per_entry;
    if (max > by_size)
        max = by_size;

    uint8_t *keys = malloc((size_t)info.key_size * 2 + 1);
    uint8_t *value = malloc(info.value_copy_size + 1);
    msgpack_sbuffer entries;
    msgpack_packer epk;
    msgpack_sbuffer_init(&entries);
    msgpack_packer_init(&epk, &entries, msgpack_sbuffer_write);
    if (!keys || !value) {
        err = fail(call, BPFG_RPC_E_INTERNAL, "out of memory");
        goto out;
    }
    bool stacks = info.type == BPF_MAP_TYPE_STACK_TRACE;
    struct stack_syms ss = {0};
    if (stacks)
        stack_syms_open(call->s, m->id, &ss);
    uint8_t *prev = keys, *next = keys + info.key_size;
    uint64_t count = 0;
    bool truncated = false, first = true;
    for (;;) {
        err = bpfg_map_get_next_key(m->map, first ? NULL : prev, next);
        if (err == -ENOENT) {
            err = 0;
            break;
        }
        if (err) {
            err = fail(call, errno_code(err), "iterating map '%s': %s", m->name, strerror(-err));
            goto out;
        }
        first = false;
        if (count == max) {
            truncated = true;
            break;
        }
        /* A key deleted between get_next_key and lookup is skipped. */
        if (bpfg_map_lookup_copy(m->map, next, value) == 0) {
            msgpack_pack_map(&epk, stacks ? 3 : 2);
            bpfg_pack_cstr(&epk, "key");
            bpfg_pack_bin(&epk, next, info.key_size);
            pack_value(&epk, &info, value);
            if (stacks)
                pack_frames(&epk, &ss, value, info.value_size);
            count++;
        }
        uint8_t *t = prev;
        prev = next;
        next = t;
    }
    msgpack_pack_map(pk, 2);
    bpfg_pack_cstr(pk, "entries");
    msgpack_pack_array(pk, count);
    append_packed(pk, entries.data, entries.size);
    bpfg_pack_cstr(pk, "truncated");
    if (truncated)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
out:
    stack_syms_close(&ss);
    msgpack_sbuffer_destroy(&entries);
    free(keys);
    free(value);
    return err;
}

static int m_map_pop(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_map *m;
    int err = arg_map(call, 0, &m);
    if (err)
        return err;
    struct bpfg_map_info info;
    bpfg_map_get_info(m->map, &info);
    if (info.type != BPF_MAP_TYPE_QUEUE && info.type != BPF_MAP_TYPE_STACK)
        return fail(call, BPFG_RPC_E_UNSUPPORTED, "map '%s' is a %s, not a queue or stack", m->name,
                    bpfg_map_type_name(info.type));
    uint8_t *value = malloc(info.value_size + 1);
    if (!value)
        return fail(call, BPFG_RPC_E_INTERNAL, "out of memory");
    err = bpfg_map_lookup_and_delete_copy(m->map, NULL, value);
    if (err) {
        free(value);
        return fail(call, errno_code(err), err == -ENOENT ? "map '%s' is empty" : "pop from map '%s': %s", m->name,
                    strerror(-err));
    }
    msgpack_pack_map(pk, 1);
    bpfg_pack_cstr(pk, "value");
    bpfg_pack_bin(pk, value, info.value_size);
    free(value);
    return 0;
}

static int m_map_push(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_map *m;
    int err = arg_map(call, 0, &m);
    if (err)
        return err;
    struct bpfg_map_info info;
    bpfg_map_get_info(m->map, &info);
    if (info.type != BPF_MAP_TYPE_QUEUE && info.type != BPF_MAP_TYPE_STACK)
        return fail(call, BPFG_RPC_E_UNSUPPORTED, "map '%s' is a %s, not a queue or stack", m->name,
                    bpfg_map_type_name(info.type));
    const void *value = NULL;
    if ((err = arg_bytes(call, 1, "value", info.value_size, &value)))
        return err;
    uint64_t flags = call->args[2] ? call->args[2]->via.u64 : 0;
    /* a NULL key is how the syscall side pushes (BPF_MAP_UPDATE_ELEM) */
    err = bpfg_map_update_copy(m->map, NULL, value, flags);
    if (err)
        return fail(call, errno_code(err), "push to map '%s': %s", m->name,
                    err == -E2BIG ? "the map is full (flags 2 = BPF_EXIST overwrites the oldest)" : strerror(-err));
    msgpack_pack_true(pk);
    return 0;
}

static int m_map_fd(struct srv_call *call, msgpack_packer *pk)
{
    struct reg_map *m;
    int err = arg_map(call, 0, &m);
    if (err)
        return err;
    if (call->c->remote)
        return fail(call, BPFG_RPC_E_UNSUPPORTED,
                    "map.fd passes a file descriptor, which cannot cross a remote (%s) connection: "
                    "read the map with map.lookup or map.dump",
                    call->c->remote_via);
    call->send_fd = bpfg_map_fd(m->map);
    pack_map_entry(pk, m);
    return 0;
}

static int m_map_adopt(struct srv_call *call, msgpack_packer *pk)
{
    char path[4096], name[BPFG_MAP_NAME_LEN], why[512];
    struct reg_map *m;
    int err = arg_string(call, 0, path, sizeof(path));
    if (!err)
        err = arg_string(call, 1, name, sizeof(name));
    if (err)
        return err;
    err = kernel_adopt_map(&call->s->reg, path, name, &m, why, sizeof(why));
    if (err)
        return fail(call,
                    err == -ENOENT   ? BPFG_RPC_E_NOT_FOUND
                    : err == -EEXIST ? BPFG_RPC_E_INVALID_PARAMS
                                     : BPFG_RPC_E_UNSUPPORTED,
                    "%s", why);
    pack_map_entry(pk, m);
    return 0;
}

/* The programs to attach: the listed ones (ids or names within the
 * object), or every uprobe/uretprobe program of the object. */
static int attach_programs(struct srv_call *call, struct reg_object **obj_out, uint32_t *ids, size_t *n)
{
    struct reg_object *o = NULL;
    const msgpack_object *obj = call->args[1];
    *n = 0;
    if (!obj) {
        /* no object: the process only joins bpfgraft (and running tools' scope) */
        *obj_out = NULL;
        return 0;
    }
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        o = obj->via.u64 <= UINT32_MAX ? registry_object(&call->s->reg, (uint32_t)obj->via.u64) : NULL;
    } else {
        for (size_t i = 0; i < call->s->reg.nobjects; i++)
            if (bpfg_obj_str_eq(obj, call->s->reg.objects[i]->name))
                o = call->s->reg.objects[i];
    }
    if (!o)
        return fail(call, BPFG_RPC_E_NOT_FOUND, "no such object (see object.list)");
    *n = 0;
    const msgpack_object *list = call->args[2];
    if (list) {
        if (list->via.array.size > 64)
            return fail(call, BPFG_RPC_E_INVALID_PARAMS, "at most 64 programs per attach");
        for (uint32_t i = 0; i < list->via.array.size; i++) {
            const msgpack_object *e = &list->via.array.ptr[i];
            struct reg_prog *p = NULL;
            if (e->type == MSGPACK_OBJECT_POSITIVE_INTEGER && e->via.u64 <= UINT32_MAX)
                p = registry_prog(&call->s->reg, (uint32_t)e->via.u64);
            else
                for (size_t k = 0; k < o->prog_cnt && !p; k++)
                    if (bpfg_obj_str_eq(e, o->obj->progs[k].name))
                        p = registry_prog(&call->s->reg, o->prog_ids[k]);
            if (!p || p->obj_id != o->id)
                return fail(call, BPFG_RPC_E_NOT_FOUND, "program %u of the list is not in object '%s'", i, o->name);
            if (p->prog->kernel)
                return fail(call, BPFG_RPC_E_UNSUPPORTED,
                            "program '%s' runs in the kernel, attached there at load (object.load kernel)",
                            p->prog->name);
            ids[(*n)++] = p->id;
        }
    } else {
        for (size_t k = 0; k < o->prog_cnt && *n < 64; k++) {
            enum bpfg_attach_kind kind = o->obj->progs[k].kind;
            if (kind != BPFG_ATTACH_UNSUPPORTED && !o->obj->progs[k].kernel) /* uprobes and syscall tracepoints */
                ids[(*n)++] = o->prog_ids[k];
        }
        if (!*n)
            return fail(call, BPFG_RPC_E_UNSUPPORTED, "object '%s' has no program that can be attached", o->name);
    }
    *obj_out = o;
    return 0;
}

/* The 'target' (args[3]) and 'engine' (args[4]) of the attach methods. */
static int attach_options(struct srv_call *call, char *target, size_t target_len, int *engine)
{
    char engine_name[16];
    int err;
    if (call->args[3] && (err = arg_string(call, 3, target, target_len)))
        return err;
    *engine = TARGET_ENGINE_DEFAULT;
    if (call->args[4]) {
        if ((err = arg_string(call, 4, engine_name, sizeof(engine_name))))
            return err;
        if ((*engine = targets_engine_parse(engine_name)) < 0)
            return fail(call, BPFG_RPC_E_INVALID_PARAMS, "unknown engine '%s' (engines: llvm, x86, interp, tiered)",
                        engine_name);
    }
    return 0;
}

static int attach_or_start(struct srv_call *call, msgpack_packer *pk, bool start)
{
    uint64_t pid = call->args[0]->via.u64;
    if (pid == 0 || pid > INT32_MAX)
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "bad pid %llu", (unsigned long long)pid);
    struct reg_object *o;
    uint32_t ids[64];
    size_t n = 0;
    int err = attach_programs(call, &o, ids, &n);
    if (err)
        return err;
    char target[512] = "";
    int engine;
    if ((err = attach_options(call, target, sizeof(target), &engine)))
        return err;
    uint64_t cookie = !start && call->args[5] ? call->args[5]->via.u64 : 0;
    int code = start ? targets_start(call->s, (pid_t)pid, call->c->uid, call->c->pid, ids, n, target, engine, false,
                                     call->err, sizeof(call->err))
                     : targets_attach(call->s, (pid_t)pid, call->c->uid, call->c->pid, ids, n, target, engine, cookie,
                                      call->err, sizeof(call->err));
    if (code)
        return code;
    struct target *t = targets_find(&call->s->targets, (pid_t)pid);
    if (t) /* attached on its own now: it stays when the tools end */
        t->for_tools = false;
    msgpack_pack_map(pk, 2);
    kv_u64(pk, "pid", pid);
    kv_u64(pk, "programs", n);
    return 0;
}

static int m_target_attach(struct srv_call *call, msgpack_packer *pk)
{
    return attach_or_start(call, pk, false);
}

/* scope.attach: args as target.attach's, a path for the pid. */
static int m_scope_attach(struct srv_call *call, msgpack_packer *pk)
{
    char path[PATH_MAX], target[512] = "";
    struct reg_object *o;
    uint32_t ids[64];
    size_t n = 0, nproc = 0;
    int engine, err;
    if ((err = arg_string(call, 0, path, sizeof(path))) ||
        (err = attach_options(call, target, sizeof(target), &engine)))
        return err;
    if (!call->args[1])
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "scope.attach needs an object");
    if ((err = attach_programs(call, &o, ids, &n)))
        return err;
    struct binwide_req req = {path, call->c->uid, call->c->pid, ids,
                              n,    target,       engine,       call->args[5] ? call->args[5]->via.u64 : 0};
    int code = binwide_attach(call->s, &req, &nproc, call->err, sizeof(call->err));
    if (code)
        return code;
    msgpack_pack_map(pk, 3);
    bpfg_pack_cstr(pk, "path");
    bpfg_pack_cstr(pk, path);
    kv_u64(pk, "programs", n);
    kv_u64(pk, "processes", nproc);
    return 0;
}

static int m_scope_detach(struct srv_call *call, msgpack_packer *pk)
{
    char path[PATH_MAX];
    size_t nproc = 0;
    int err = arg_string(call, 0, path, sizeof(path));
    if (err)
        return err;
    int code = binwide_detach(call->s, path, call->c->uid, &nproc, call->err, sizeof(call->err));
    if (code)
        return code;
    msgpack_pack_map(pk, 1);
    kv_u64(pk, "processes", nproc);
    return 0;
}

static int m_scope_list(struct srv_call *call, msgpack_packer *pk)
{
    (void)call;
    binwide_pack_list(pk);
    return 0;
}

static int m_target_start(struct srv_call *call, msgpack_packer *pk)
{
    if (!call->args[1])
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "target.start needs an object (tool.start runs a libbpf tool)");
    return attach_or_start(call, pk, true);
}

static int m_tool_start(struct srv_call *call, msgpack_packer *pk)
{
    uint64_t pid = call->args[0]->via.u64;
    if (pid == 0 || pid > INT32_MAX)
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "bad pid %llu", (unsigned long long)pid);
    char engine_name[16];
    int err, engine = TARGET_ENGINE_DEFAULT;
    if (call->args[1]) {
        if ((err = arg_string(call, 1, engine_name, sizeof(engine_name))))
            return err;
        if ((engine = targets_engine_parse(engine_name)) < 0)
            return fail(call, BPFG_RPC_E_INVALID_PARAMS, "unknown engine '%s' (engines: llvm, x86, interp, tiered)",
                        engine_name);
    }
    int code = targets_start(call->s, (pid_t)pid, call->c->uid, call->c->pid, NULL, 0, NULL, engine, true, call->err,
                             sizeof(call->err));
    if (code)
        return code;
    msgpack_pack_map(pk, 1);
    kv_u64(pk, "pid", pid);
    return 0;
}

static int m_tool_list(struct srv_call *call, msgpack_packer *pk)
{
    tools_pack_list(call->s, pk);
    return 0;
}

static int m_target_detach(struct srv_call *call, msgpack_packer *pk)
{
    uint64_t pid = call->args[0]->via.u64;
    if (pid == 0 || pid > INT32_MAX)
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "bad pid %llu", (unsigned long long)pid);
    int code = targets_detach(call->s, (pid_t)pid, call->c->uid, call->c->pid, call->err, sizeof(call->err));
    if (code)
        return code;
    msgpack_pack_true(pk);
    return 0;
}

static int m_target_list(struct srv_call *call, msgpack_packer *pk)
{
    targets_pack_list(call->s, pk);
    return 0;
}

static int m_events_subscribe(struct srv_call *call, msgpack_packer *pk)
{
    static const struct {
        const char *name;
        unsigned bit;
    } topics[] = {
        {"trace", SRV_TOPIC_TRACE},
        {"ringbuf", SRV_TOPIC_RINGBUF},
        {"target", SRV_TOPIC_TARGET},
    };
    unsigned mask = 0;
    const msgpack_object *list = call->args[0];
    if (!list) {
        mask = SRV_TOPIC_ALL;
    } else {
        for (uint32_t i = 0; i < list->via.array.size; i++) {
            const msgpack_object *t = &list->via.array.ptr[i];
            unsigned bit = 0;
            for (size_t k = 0; k < sizeof(topics) / sizeof(topics[0]); k++)
                if (bpfg_obj_str_eq(t, topics[k].name))
                    bit = topics[k].bit;
            if (!bit)
                return fail(call, BPFG_RPC_E_INVALID_PARAMS, "unknown topic (topics: trace, ringbuf, target)");
            mask |= bit;
        }
    }
    call->c->topics |= mask;
    msgpack_pack_true(pk);
    return 0;
}

static int m_session_remote(struct srv_call *call, msgpack_packer *pk)
{
    char via[sizeof(call->c->remote_via)], addr[sizeof(call->c->remote_addr)] = "";
    int err = arg_string(call, 0, via, sizeof(via));
    if (!err && call->args[1])
        err = arg_string(call, 1, addr, sizeof(addr));
    if (err)
        return err;
    if (call->c->remote)
        return fail(call, BPFG_RPC_E_EXISTS, "this connection is already remote (%s)", call->c->remote_via);
    call->c->remote = true;
    memcpy(call->c->remote_via, via, sizeof(via));
    memcpy(call->c->remote_addr, addr, sizeof(addr));
    srv_log(SRV_INFO, "client %u: remote via %s from %s", call->c->id, via, addr[0] ? addr : "?");
    msgpack_pack_true(pk);
    return 0;
}

static int m_events_unsubscribe(struct srv_call *call, msgpack_packer *pk)
{
    call->c->topics = 0;
    msgpack_pack_true(pk);
    return 0;
}

#define REQ true
#define OPT false

static const struct method methods[] = {
    {"api.info",
     m_api_info,
     {{0}},
     "{api_level, version, methods, errors}",
     "Describes every method, its parameters and the error codes.",
     1},
    {"server.status",
     m_server_status,
     {{0}},
     "{version, pid, uptime_ms, socket, objects, programs, maps, targets, clients, stats_enabled, stops: {count, "
     "longest_us, total_us}}",
     "Server health and counts.",
     1},
    {"server.shutdown",
     m_server_shutdown,
     {{"detach", P_BOOL, OPT}},
     "true",
     "Stops the server. detach: detach every target and forget loaded objects (a stop for good); "
     "otherwise targets stay attached and objects stay for the next server (a restart).",
     1},
    {"stats.set",
     m_stats_set,
     {{"enabled", P_BOOL, REQ}},
     "{enabled}",
     "Switches program statistics (run_cnt, run_time_ns, hook hits) in every target, now and attached later; "
     "off by default, as the kernel's kernel.bpf_stats_enabled.",
     1},
    {"object.load",
     m_object_load,
     {{"path", P_STR, OPT}, {"data", P_BIN, OPT}, {"name", P_STR, OPT}, {"kernel", P_STR, OPT}},
     "object",
     "Loads a BPF ELF object from an absolute path or bytes; creates its maps, checks its programs. "
     "kernel: auto (default; programs userspace cannot run go to the kernel), never, always.",
     1},
    {"object.list", m_object_list, {{0}}, "[object]", "Lists loaded objects with their programs and maps.", 1},
    {"object.unload", m_object_unload, {{"id", P_UINT, REQ}}, "true", "Removes an object, its programs and maps.", 1},
    {"object.btf", m_object_btf, {{"id", P_UINT, REQ}}, "{btf: bin|nil}", "The object's raw BTF.", 1},
    {"prog.list", m_prog_list, {{0}}, "[prog]", "Lists programs.", 1},
    {"prog.show", m_prog_show, {{"prog", P_REF, REQ}}, "prog", "One program.", 1},
    {"prog.dump",
     m_prog_dump,
     {{"prog", P_REF, REQ}},
     "{id, name, insns: bin, text}",
     "A program's instructions and their disassembly.",
     1},
    {"map.list", m_map_list, {{0}}, "[map]", "Lists maps.", 1},
    {"map.show", m_map_show, {{"map", P_REF, REQ}}, "map", "One map.", 1},
    {"map.lookup",
     m_map_lookup,
     {{"map", P_REF, REQ}, {"key", P_BIN, REQ}},
     "{key, value | values}",
     "Looks a key up; per-CPU maps return every CPU's value.",
     1},
    {"map.update",
     m_map_update,
     {{"map", P_REF, REQ}, {"key", P_BIN, REQ}, {"value", P_BIN, REQ}, {"flags", P_UINT, OPT}},
     "true",
     "Creates or updates an element (flags: 0 any, 1 noexist, 2 exist).",
     1},
    {"map.delete", m_map_delete, {{"map", P_REF, REQ}, {"key", P_BIN, REQ}}, "true", "Deletes an element.", 1},
    {"map.dump",
     m_map_dump,
     {{"map", P_REF, REQ}, {"max", P_UINT, OPT}},
     "{entries: [{key, value | values}], truncated}",
     "Every element of a keyed map.",
     1},
    {"map.adopt",
     m_map_adopt,
     {{"path", P_STR, REQ}, {"name", P_STR, REQ}},
     "map",
     "Adopts the kernel map pinned at path (bpffs) as map and object `name`; objects loaded later that define "
     "a map of that name use it.",
     1},
    {"map.pop", m_map_pop, {{"map", P_REF, REQ}}, "{value}", "Pops a queue or stack.", 1},
    {"map.push",
     m_map_push,
     {{"map", P_REF, REQ}, {"value", P_BIN, REQ}, {"flags", P_UINT, OPT}},
     "true",
     "Pushes onto a queue or stack (flags 2, BPF_EXIST: overwrite the oldest when full).",
     1},
    {"map.fd",
     m_map_fd,
     {{"map", P_REF, REQ}},
     "map (+ memfd via SCM_RIGHTS)",
     "Hands the map's memfd to a local client.",
     1},
    {"target.attach",
     m_target_attach,
     {{"pid", P_UINT, REQ},
      {"object", P_REF, OPT},
      {"programs", P_ARRAY, OPT},
      {"target", P_STR, OPT},
      {"engine", P_STR, OPT},
      {"cookie", P_UINT, OPT}},
     "{pid, programs}",
     "Attaches an object's uprobe/uretprobe programs (all, or the listed ones) to a running "
     "process (no object: the process only joins bpfgraft, and running tools' links attach there); 'target' "
     "(\"binary:function[+off]\") serves programs whose section names none; 'engine' "
     "(llvm, x86, interp, tiered: x86 at once and llvm swapped in after the reply; default: the server's) "
     "compiles them for the process, falling back as needed; "
     "'cookie' is what bpf_get_attach_cookie returns in these attachments (default 0).",
     1},
    {"target.start",
     m_target_start,
     {{"pid", P_UINT, REQ},
      {"object", P_REF, REQ},
      {"programs", P_ARRAY, OPT},
      {"target", P_STR, OPT},
      {"engine", P_STR, OPT}},
     "{pid, programs}",
     "`bpfgraft start`: pid is the caller's child, stopped by SIGSTOP just before execve; "
     "the programs are attached at its entry point, before main, then it runs.",
     1},
    {"scope.attach",
     m_scope_attach,
     {{"path", P_STR, REQ},
      {"object", P_REF, REQ},
      {"programs", P_ARRAY, OPT},
      {"target", P_STR, OPT},
      {"engine", P_STR, OPT},
      {"cookie", P_UINT, OPT}},
     "{path, programs, processes}",
     "Binary-wide: attaches as target.attach in every process mapping the file at 'path' now and in every "
     "process that execs it later (caught before its first instruction), until scope.detach.",
     1},
    {"scope.detach",
     m_scope_detach,
     {{"path", P_STR, REQ}},
     "{processes}",
     "Ends a binary-wide attachment: its programs leave every process; processes it brought in are detached.",
     1},
    {"scope.list",
     m_scope_list,
     {{0}},
     "[{path, object, programs, processes}]",
     "Binary-wide attachments and the processes they are in.",
     1},
    {"target.detach", m_target_detach, {{"pid", P_UINT, REQ}}, "true", "Detaches from a process.", 1},
    {"target.list", m_target_list, {{0}}, "[target]", "Lists attached processes.", 1},
    {"tool.start",
     m_tool_start,
     {{"pid", P_UINT, REQ}, {"engine", P_STR, OPT}},
     "{pid}",
     "`bpfgraft run`: pid is the caller's child, stopped by SIGSTOP just before it execs a libbpf tool; the "
     "tool's bpf() calls are then served by bpfgraft (tool.h), its programs attach to attached processes.",
     1},
    {"tool.list",
     m_tool_list,
     {{0}},
     "[{pid, name, object, links: [{id, prog, kind, target, pid, attached}]}]",
     "Running tools and where their programs are attached.",
     1},
    {"events.subscribe",
     m_events_subscribe,
     {{"topics", P_ARRAY, OPT}},
     "true",
     "Streams notifications [2, \"event\", [{topic, ...}]] on this connection.",
     1},
    {"events.unsubscribe", m_events_unsubscribe, {{0}}, "true", "Stops notifications.", 1},
    {"audit.read",
     m_audit_read,
     {{"since", P_UINT, OPT}, {"max", P_UINT, OPT}},
     "{lines: [str], truncated}",
     "The audit log's lines written at or after since (unix ms), the newest max bytes (default and at most 8 MiB).",
     1},
    {"session.remote",
     m_session_remote,
     {{"transport", P_STR, REQ}, {"address", P_STR, OPT}},
     "true",
     "Said first by a bridge (bpfgraft dial-stdio) that speaks for a remote caller: the connection is marked "
     "remote for good (no fd passing: map.fd is refused), the address is logged.",
     1},
};

#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

static int m_api_info(struct srv_call *call, msgpack_packer *pk)
{
    (void)call;
    msgpack_pack_map(pk, 4);
    kv_u64(pk, "api_level", SRV_API_LEVEL);
    kv_str(pk, "version", SRV_VERSION);
    bpfg_pack_cstr(pk, "methods");
    msgpack_pack_array(pk, NMETHODS);
    for (size_t i = 0; i < NMETHODS; i++) {
        const struct method *m = &methods[i];
        size_t np = 0;
        while (np < MAX_PARAMS && m->params[np].name)
            np++;
        msgpack_pack_map(pk, 5);
        kv_str(pk, "name", m->name);
        bpfg_pack_cstr(pk, "params");
        msgpack_pack_array(pk, np);
        for (size_t k = 0; k < np; k++) {
            msgpack_pack_map(pk, 3);
            kv_str(pk, "name", m->params[k].name);
            kv_str(pk, "type", ptype_names[m->params[k].type]);
            bpfg_pack_cstr(pk, "required");
            if (m->params[k].required)
                msgpack_pack_true(pk);
            else
                msgpack_pack_false(pk);
        }
        kv_str(pk, "result", m->result);
        kv_u64(pk, "since", (uint64_t)m->since);
        kv_str(pk, "doc", m->doc);
    }
    bpfg_pack_cstr(pk, "errors");
    msgpack_pack_array(pk, BPFG_RPC_E_LAST);
    for (int code = 1; code <= BPFG_RPC_E_LAST; code++) {
        msgpack_pack_map(pk, 2);
        kv_u64(pk, "code", (uint64_t)code);
        kv_str(pk, "name", bpfg_rpc_error_name(code));
    }
    return 0;
}

static bool type_ok(enum ptype t, const msgpack_object *o)
{
    switch (t) {
    case P_STR: return o->type == MSGPACK_OBJECT_STR;
    case P_BIN: return o->type == MSGPACK_OBJECT_BIN;
    case P_UINT: return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    case P_BOOL: return o->type == MSGPACK_OBJECT_BOOLEAN;
    case P_REF: return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER || o->type == MSGPACK_OBJECT_STR;
    default: return o->type == MSGPACK_OBJECT_ARRAY;
    }
}

/* Binds the named arguments to the method's parameters. */
static int bind_args(const struct method *m, const msgpack_object *params, struct srv_call *call)
{
    const msgpack_object *named = NULL;
    if (params->via.array.size > 1)
        return fail(call, BPFG_RPC_E_INVALID_PARAMS, "%s: params must be [] or [{name: value, ...}]", m->name);
    if (params->via.array.size == 1) {
        named = &params->via.array.ptr[0];
        if (named->type != MSGPACK_OBJECT_MAP)
            return fail(call, BPFG_RPC_E_INVALID_PARAMS, "%s: params must be [] or [{name: value, ...}]", m->name);
        for (uint32_t i = 0; i < named->via.map.size; i++) {
            const msgpack_object *k = &named->via.map.ptr[i].key;
            int idx = -1;
            for (int p = 0; p < MAX_PARAMS && m->params[p].name; p++)
                if (bpfg_obj_str_eq(k, m->params[p].name))
                    idx = p;
            if (idx < 0) {
                if (k->type == MSGPACK_OBJECT_STR)
                    return fail(call, BPFG_RPC_E_INVALID_PARAMS, "%s: unknown parameter '%.*s'", m->name,
                                (int)(k->via.str.size > 64 ? 64 : k->via.str.size), k->via.str.ptr);
                return fail(call, BPFG_RPC_E_INVALID_PARAMS, "%s: parameter names must be strings", m->name);
            }
            const msgpack_object *v = &named->via.map.ptr[i].val;
            if (v->type == MSGPACK_OBJECT_NIL)
                continue; /* nil means "not given" */
            if (!type_ok(m->params[idx].type, v))
                return fail(call, BPFG_RPC_E_INVALID_PARAMS, "%s: parameter '%s' must be %s", m->name,
                            m->params[idx].name, ptype_names[m->params[idx].type]);
            call->args[idx] = v;
        }
    }
    for (int p = 0; p < MAX_PARAMS && m->params[p].name; p++)
        if (m->params[p].required && !call->args[p])
            return fail(call, BPFG_RPC_E_INVALID_PARAMS, "%s: missing parameter '%s' (%s)", m->name, m->params[p].name,
                        ptype_names[m->params[p].type]);
    return 0;
}

/* The audit line, before the reply; a call whose line cannot be written
 * answers internal_error (its effect, if any, stays: the message says so). */
static int audit_call(struct srv_call *call, const char *method, const msgpack_object *params,
                      const struct audit_target *t, int code)
{
    char remote[sizeof(call->c->remote_via) + sizeof(call->c->remote_addr) + 2];
    snprintf(remote, sizeof(remote), "%s %s", call->c->remote_via, call->c->remote_addr);
    struct audit_who who = {call->c->uid, call->c->pid, call->c->remote ? remote : NULL,
                            call->c->tls ? call->c->subject : NULL};
    int r = audit_write(&call->s->audit, &who, method, params, t, code, call->err);
    if (!r)
        return code;
    srv_log(SRV_ERROR, "client %u: %s: audit log %s: %s", call->c->id, method, call->s->audit.path, strerror(-r));
    char was[64];
    snprintf(was, sizeof(was), "%s", code ? bpfg_rpc_error_name(code) : "done");
    return fail(call, BPFG_RPC_E_INTERNAL, "%s: %s, but the audit log %s could not be written: %s", method, was,
                call->s->audit.path, strerror(-r));
}

static int m_audit_read(struct srv_call *call, msgpack_packer *pk)
{
    uint64_t since = 0, max = 8u << 20;
    if (call->args[0])
        bpfg_obj_u64(call->args[0], &since);
    if (call->args[1])
        bpfg_obj_u64(call->args[1], &max);
    if (max > (8u << 20))
        max = 8u << 20;
    /* lines packed into a buffer of their own: the count comes first */
    msgpack_sbuffer sb;
    msgpack_packer lp;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&lp, &sb, msgpack_sbuffer_write);
    bool truncated;
    int r = audit_read(&call->s->audit, since, (size_t)max, &lp, &truncated);
    if (r) {
        msgpack_sbuffer_destroy(&sb);
        return fail(call, BPFG_RPC_E_INTERNAL, "reading %s: %s", call->s->audit.path, strerror(-r));
    }
    msgpack_pack_map(pk, 2);
    bpfg_pack_cstr(pk, "lines");
    append_packed(pk, sb.data, sb.size);
    bpfg_pack_cstr(pk, "truncated");
    if (truncated)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

void methods_dispatch(struct server *s, struct srv_client *c, const struct bpfg_rpc_msg *msg, struct bpfg_rpc_out *out,
                      int *send_fd)
{
    struct srv_call call = {.s = s, .c = c, .send_fd = -1};
    const struct method *m = NULL;
    *send_fd = -1;

    for (size_t i = 0; i < NMETHODS; i++)
        if (strlen(methods[i].name) == msg->method_len && memcmp(methods[i].name, msg->method, msg->method_len) == 0)
            m = &methods[i];
    if (!m) {
        bpfg_rpc_pack_error(out, msg->msgid, BPFG_RPC_E_NO_METHOD, "no method '%.*s' (see api.info)",
                            (int)(msg->method_len > 64 ? 64 : msg->method_len), msg->method);
        return;
    }
    struct access_peer peer = peer_of(c);
    bool audited = access_method_audited(m->name);
    struct audit_target target;
    audit_target_of(&msg->params, &target);
    int code = access_check(&s->access, &peer, m->name, call.err, sizeof(call.err));
    if (!code)
        code = access_check_process(&s->access, &peer, m->name, target.pid, call.err, sizeof(call.err));
    if (!code)
        code = bind_args(m, &msg->params, &call);
    if (!code) {
        bpfg_rpc_begin_result(out, msg->msgid);
        code = m->fn(&call, &out->pk);
    }
    if (audited)
        code = audit_call(&call, m->name, &msg->params, &target, code);
    if (code) {
        /* Drop whatever part of a result was packed; answer with the error. */
        msgpack_sbuffer_clear(&out->buf);
        bpfg_rpc_pack_error(out, msg->msgid, code, "%s", call.err);
        srv_log(SRV_DEBUG, "client %u: %s -> %s: %s", c->id, m->name, bpfg_rpc_error_name(code), call.err);
        return;
    }
    *send_fd = call.send_fd;
}
