/* The record a tool leaves for a restarted server (tool_priv.h;
 * server/README.md, "Restarts"): STATE_DIR/restart/tools/PID holds what
 * only the server knew of a `bpfgraft run` tool (its object's maps and
 * programs with their ids, its BTF, its links); the maps' data is in their
 * region files, STATE_DIR/restart/maps/ID, reopened as they are. A plain
 * little-endian stream: u32/u64 fields, strings and blobs as u32 length
 * then bytes (0xffffffff: NULL). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>

#include "growbuf.h"
#include "log.h"
#include "registry.h"
#include "server.h"
#include "tool.h"
#include "tool_priv.h"

#define TREC_MAGIC 0x4c4f4f54u /* "TOOL" */
#define TREC_VERSION 2         /* 2: map tickets at the end */
#define TREC_NULL 0xffffffffu

/* ---- writing ---- */

static void put_u32(struct growbuf *w, uint32_t v)
{
    growbuf_put(w, &v, sizeof(v));
}

static void put_u64(struct growbuf *w, uint64_t v)
{
    growbuf_put(w, &v, sizeof(v));
}

static void put_blob(struct growbuf *w, const void *data, size_t n)
{
    put_u32(w, data ? (uint32_t)n : TREC_NULL);
    if (data)
        growbuf_put(w, data, n);
}

static void put_str(struct growbuf *w, const char *s)
{
    put_blob(w, s, s ? strlen(s) : 0);
}

static void pack_map(struct growbuf *w, uint32_t id, const struct bpfg_obj_map *m)
{
    uint32_t f[] = {id,          (uint32_t)m->kind,  m->type,
                    m->key_size, m->value_size,      m->max_entries,
                    m->flags,    m->btf_key_type_id, m->btf_value_type_id};
    growbuf_put(w, f, sizeof(f));
    put_u64(w, m->map_extra);
    put_str(w, m->name);
}

static void pack_prog(struct growbuf *w, uint32_t id, const struct bpfg_obj_prog *p)
{
    uint32_t f[] = {id, (uint32_t)p->kind, p->prog_type, p->expected_attach_type, p->target_file_offset};
    growbuf_put(w, f, sizeof(f));
    put_u64(w, p->target_offset);
    put_str(w, p->name);
    put_str(w, p->section);
    put_str(w, p->error);
    put_str(w, p->license);
    put_str(w, p->target_binary);
    put_str(w, p->syscall);
    put_blob(w, p->insns, p->insn_cnt * sizeof(struct bpf_insn));
}

static void pack_links(struct growbuf *w, const struct tool *tl)
{
    put_u32(w, (uint32_t)tl->nlinks);
    for (size_t i = 0; i < tl->nlinks; i++) {
        const struct tool_link *l = tl->links[i];
        uint32_t f[] = {l->id, l->prog_id, (uint32_t)l->kind, (uint32_t)l->pid};
        growbuf_put(w, f, sizeof(f));
        put_u64(w, l->offset);
        put_str(w, l->binary);
    }
}

int tool_record_pack(struct server *s, const struct tool *tl, char **buf, size_t *len)
{
    const struct reg_object *o = registry_object(&s->reg, tl->obj_id);
    struct growbuf w = {0};
    uint32_t head[] = {TREC_MAGIC, TREC_VERSION,     (uint32_t)tl->pid, (uint32_t)tl->engine,
                       tl->obj_id, tl->next_link_id, tl->obj_btf_id};
    growbuf_put(&w, head, sizeof(head));
    put_u64(&w, tl->token);
    put_str(&w, tl->name);
    put_u32(&w, (uint32_t)tl->nbtfs);
    for (size_t i = 0; i < tl->nbtfs; i++) {
        put_u32(&w, tl->btfs[i].id);
        put_blob(&w, tl->btfs[i].data, tl->btfs[i].len);
    }
    put_u32(&w, o ? (uint32_t)o->map_cnt : 0);
    for (size_t i = 0; o && i < o->map_cnt; i++)
        pack_map(&w, o->map_ids[i], &o->obj->maps[i]);
    put_u32(&w, o ? (uint32_t)o->prog_cnt : 0);
    for (size_t i = 0; o && i < o->prog_cnt; i++)
        pack_prog(&w, o->prog_ids[i], &o->obj->progs[i]);
    pack_links(&w, tl);
    put_u32(&w, (uint32_t)tl->ntickets);
    for (size_t i = 0; i < tl->ntickets; i++)
        put_u32(&w, tl->tickets[i]);
    if (w.err) {
        int err = w.err;
        growbuf_free(&w);
        return err;
    }
    *buf = w.p;
    *len = w.len;
    return 0;
}

/* ---- reading ---- */

struct rbuf {
    const char *p, *end;
    int err;
};

static void get(struct rbuf *r, void *out, size_t n)
{
    if (r->err || (size_t)(r->end - r->p) < n) {
        r->err = r->err ? r->err : -EBADMSG;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->p += n;
}

static uint32_t get_u32(struct rbuf *r)
{
    uint32_t v;
    get(r, &v, sizeof(v));
    return v;
}

static uint64_t get_u64(struct rbuf *r)
{
    uint64_t v;
    get(r, &v, sizeof(v));
    return v;
}

/* A malloc'd copy (NUL-terminated) or NULL (saved NULL, or r->err). */
static char *get_blob(struct rbuf *r, size_t *len)
{
    uint32_t n = get_u32(r);
    if (r->err || n == TREC_NULL)
        return NULL;
    if ((size_t)(r->end - r->p) < n) {
        r->err = -EBADMSG;
        return NULL;
    }
    char *out = malloc((size_t)n + 1);
    if (!out) {
        r->err = -ENOMEM;
        return NULL;
    }
    memcpy(out, r->p, n);
    out[n] = 0;
    r->p += n;
    if (len)
        *len = n;
    return out;
}

static void unpack_btfs(struct rbuf *r, struct tool *tl)
{
    uint32_t n = get_u32(r);
    if (r->err || n > 4096 || !(tl->btfs = calloc(n + 1, sizeof(*tl->btfs)))) {
        r->err = r->err ? r->err : n > 4096 ? -EBADMSG : -ENOMEM;
        return;
    }
    for (uint32_t i = 0; i < n && !r->err; i++) {
        struct tool_btf *b = &tl->btfs[i];
        b->id = get_u32(r);
        b->data = get_blob(r, &b->len);
        if (!r->err && !b->data)
            r->err = -EBADMSG;
        tl->nbtfs += !r->err;
    }
}

/* Reopens one map's region with its saved id (registry force_id). */
static void unpack_map(struct server *s, struct rbuf *r, struct reg_object *o, char *why, size_t whylen)
{
    uint32_t f[9];
    get(r, f, sizeof(f));
    uint64_t extra = get_u64(r);
    char *name = get_blob(r, NULL);
    struct bpfg_map_spec spec = {.type = f[2],
                                 .key_size = f[3],
                                 .value_size = f[4],
                                 .max_entries = f[5],
                                 .map_flags = f[6],
                                 .btf_key_type_id = f[7],
                                 .btf_value_type_id = f[8],
                                 .map_extra = extra,
                                 .name = name ? name : ""};
    struct reg_map *m;
    if (!r->err) {
        s->reg.force_id = f[0];
        r->err = registry_add_map(&s->reg, o, &spec, (enum bpfg_map_kind)f[1], &m, why, whylen);
        s->reg.force_id = 0;
    }
    free(name);
}

static void unpack_prog(struct server *s, struct rbuf *r, struct reg_object *o)
{
    uint32_t f[5];
    struct bpfg_obj_prog p;
    memset(&p, 0, sizeof(p));
    get(r, f, sizeof(f));
    p.kind = (enum bpfg_attach_kind)f[1];
    p.prog_type = f[2];
    p.expected_attach_type = f[3];
    p.target_file_offset = f[4] != 0;
    p.target_offset = get_u64(r);
    p.name = get_blob(r, NULL);
    p.section = get_blob(r, NULL);
    p.error = get_blob(r, NULL);
    p.license = get_blob(r, NULL);
    p.target_binary = get_blob(r, NULL);
    p.syscall = get_blob(r, NULL);
    size_t bytes = 0;
    p.insns = (struct bpf_insn *)get_blob(r, &bytes);
    p.insn_cnt = bytes / sizeof(struct bpf_insn);
    struct reg_prog *rp;
    if (!r->err) {
        s->reg.force_id = f[0];
        r->err = registry_add_prog(&s->reg, o, &p, &rp);
        s->reg.force_id = 0;
    }
    /* taken (zeroed) on success */
    free(p.name), free(p.section), free(p.error), free(p.license);
    free(p.target_binary), free(p.syscall), free(p.insns);
}

static void unpack_links(struct rbuf *r, struct tool *tl)
{
    uint32_t n = get_u32(r);
    if (r->err || n > TOOL_MAX_PROGS || !(tl->links = calloc(n + 1, sizeof(*tl->links)))) {
        r->err = r->err ? r->err : n > TOOL_MAX_PROGS ? -EBADMSG : -ENOMEM;
        return;
    }
    for (uint32_t i = 0; i < n && !r->err; i++) {
        struct tool_link *l = calloc(1, sizeof(*l));
        uint32_t f[4];
        get(r, f, sizeof(f));
        if (!l) {
            r->err = -ENOMEM;
            return;
        }
        *l = (struct tool_link){
            .id = f[0], .prog_id = f[1], .kind = (enum bpfg_attach_kind)f[2], .pid = (pid_t)f[3], .offset = get_u64(r)};
        l->binary = get_blob(r, NULL);
        tl->links[tl->nlinks++] = l;
    }
}

/* Map tickets (version 2): ids kept for the tool, their files reopened. A
 * lost one is only logged: the tool's MAP_MADE of it is refused. */
static void unpack_tickets(struct server *s, struct rbuf *r, struct tool *tl)
{
    uint32_t n = get_u32(r);
    if (!r->err && n > TOOL_MAX_MAPS)
        r->err = -EBADMSG;
    for (uint32_t i = 0; i < n && !r->err; i++) {
        uint32_t id = get_u32(r);
        int err = r->err ? 0 : tool_ticket_restore(s, tl, id);
        if (err)
            srv_log(SRV_WARN, "tool %d: map ticket %u: %s", (int)tl->pid, id, strerror(-err));
    }
}

/* The object's BTF (map dump's types) from the tool's BTF it named. */
static void object_btf(struct tool *tl, struct reg_object *o)
{
    for (size_t i = 0; i < tl->nbtfs && tl->obj_btf_id && !o->obj->btf; i++)
        if (tl->btfs[i].id == tl->obj_btf_id) {
            o->obj->btf = btf__new(tl->btfs[i].data, (uint32_t)tl->btfs[i].len);
            if (libbpf_get_error(o->obj->btf))
                o->obj->btf = NULL;
        }
}

static void unpack_object(struct server *s, struct rbuf *r, struct tool *tl, char *why, size_t whylen)
{
    struct reg_object *o = NULL;
    s->reg.force_id = tl->obj_id;
    int err = registry_object(&s->reg, tl->obj_id)
                  ? -EEXIST
                  : registry_new_object(&s->reg, tl->name, TOOL_MAX_MAPS, TOOL_MAX_PROGS, &o);
    s->reg.force_id = 0;
    if (err) {
        r->err = err;
        snprintf(why, whylen, "object %u: %s", tl->obj_id, strerror(-err));
        tl->obj_id = 0; /* not the tool's: the caller must not unload it */
        return;
    }
    uint32_t nmaps = get_u32(r);
    for (uint32_t i = 0; i < nmaps && !r->err; i++)
        unpack_map(s, r, o, why, whylen);
    uint32_t nprogs = r->err ? 0 : get_u32(r);
    for (uint32_t i = 0; i < nprogs && !r->err; i++)
        unpack_prog(s, r, o);
    if (!r->err)
        object_btf(tl, o);
}

int tool_record_unpack(struct server *s, const char *buf, size_t len, struct tool **out, char *why, size_t whylen)
{
    struct rbuf r = {buf, buf + len, 0};
    uint32_t head[7];
    get(&r, head, sizeof(head));
    if (r.err || head[0] != TREC_MAGIC || head[1] < 1 || head[1] > TREC_VERSION)
        return snprintf(why, whylen, "not a tool record of this version"), -EBADMSG;
    struct tool *tl = calloc(1, sizeof(*tl));
    if (!tl)
        return snprintf(why, whylen, "out of memory"), -ENOMEM;
    *tl = (struct tool){.magic = TOOL_MAGIC,
                        .pid = (pid_t)head[2],
                        .chan = -1,
                        .engine = (int)head[3],
                        .obj_id = head[4],
                        .next_link_id = head[5],
                        .obj_btf_id = head[6],
                        .pending = true};
    tl->token = get_u64(&r);
    char *name = get_blob(&r, NULL);
    snprintf(tl->name, sizeof(tl->name), "%s", name ? name : "tool");
    free(name);
    unpack_btfs(&r, tl);
    if (!r.err)
        unpack_object(s, &r, tl, why, whylen);
    if (!r.err)
        unpack_links(&r, tl);
    if (!r.err && head[1] >= 2)
        unpack_tickets(s, &r, tl);
    if (r.err && !why[0])
        snprintf(why, whylen, "%s", r.err == -EBADMSG ? "a truncated or corrupt record" : strerror(-r.err));
    *out = tl; /* the caller frees what was built on failure too */
    return r.err;
}
