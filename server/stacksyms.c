/* Stack maps symbolized (stacksyms.h).
 *
 * Which record fields are stack ids: a ring buffer or perf record carries
 * no type, so its type is found in its object's BTF: the first struct of
 * exactly the record's size that has integer members (4 or 8 bytes, not
 * bit fields) whose names end in "stack_id" or "stackid" (stack_id,
 * user_stack_id, kern_stackid, ...), the names bcc's and libbpf-tools'
 * records give what bpf_get_stackid returned. Each such member names a
 * stack in the object's first STACK_TRACE map. The struct must be in the
 * object's BTF: as a map's value type, or through a global such as
 * libbpf-tools' `const struct event *unused`. */
#include "stacksyms.h"

#include <bpf/btf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"
#include "registry.h"
#include "symbolize.h"

#define MAX_ID_FIELDS 8

struct id_field {
    const char *name; /* in the object's BTF */
    uint32_t off, size;
    bool is_signed;
};

struct record_stacks {
    struct server *s;
    const struct btf *btf;
    struct reg_map *stack_map;
    struct stack_syms syms;
    bool syms_open;
    size_t fields_for; /* the record size fields[] describe; 0: none yet */
    struct id_field fields[MAX_ID_FIELDS];
    size_t nfields;
};

void stack_syms_open(struct server *s, uint32_t map_id, struct stack_syms *ss)
{
    ss->n = 0;
    for (struct target *t = s->targets.list; t && ss->n < STACK_SYM_PROCS; t = t->next)
        for (size_t i = 0; i < t->nmaps_sent; i++)
            if (t->maps_sent[i] == map_id && symz_open(t->pid, &ss->z[ss->n]) == 0) {
                ss->n++;
                break;
            }
}

void stack_syms_close(struct stack_syms *ss)
{
    for (size_t i = 0; i < ss->n; i++)
        symz_close(ss->z[i]);
    ss->n = 0;
}

void stack_syms_pack(msgpack_packer *pk, struct stack_syms *ss, const uint8_t *value, uint32_t size)
{
    uint32_t n = 0;
    while (n < size / 8 && ((const uint64_t *)(const void *)value)[n])
        n++;
    msgpack_pack_array(pk, n);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t a;
        memcpy(&a, value + 8 * i, 8);
        struct symz *z = ss->n ? ss->z[0] : NULL;
        for (size_t k = 1; k < ss->n && !symz_knows(z, a); k++)
            z = ss->z[k];
        char text[512];
        if (z)
            symz_frame(z, a, i > 0, text, sizeof(text));
        else
            snprintf(text, sizeof(text), "0x%llx", (unsigned long long)a);
        bpfg_pack_cstr(pk, text);
    }
}

/* ---- stack ids in records ---- */

static struct reg_map *first_stack_map(struct server *s, const struct reg_object *o)
{
    for (size_t i = 0; i < o->map_cnt; i++) {
        struct reg_map *m = registry_map(&s->reg, o->map_ids[i]);
        struct bpfg_map_info info;
        if (!m)
            continue;
        bpfg_map_get_info(m->map, &info);
        if (info.type == BPF_MAP_TYPE_STACK_TRACE)
            return m;
    }
    return NULL;
}

struct record_stacks *record_stacks_open(struct server *s, uint32_t map_id)
{
    struct reg_map *m = registry_map(&s->reg, map_id);
    struct reg_object *o = m ? registry_object(&s->reg, m->obj_id) : NULL;
    struct reg_map *stacks = o && o->obj && o->obj->btf ? first_stack_map(s, o) : NULL;
    if (!stacks)
        return NULL;
    struct record_stacks *rs = calloc(1, sizeof(*rs));
    if (rs)
        *rs = (struct record_stacks){.s = s, .btf = o->obj->btf, .stack_map = stacks};
    return rs;
}

void record_stacks_close(struct record_stacks *rs)
{
    if (!rs)
        return;
    if (rs->syms_open)
        stack_syms_close(&rs->syms);
    free(rs);
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

/* st's stack id members into rs->fields; how many. */
static size_t id_fields(struct record_stacks *rs, const struct btf_type *st)
{
    const struct btf_member *mb = btf_members(st);
    size_t n = 0;
    for (uint16_t i = 0; i < btf_vlen(st) && n < MAX_ID_FIELDS; i++) {
        const char *name = btf__name_by_offset(rs->btf, mb[i].name_off);
        int tid = btf__resolve_type(rs->btf, mb[i].type);
        const struct btf_type *t = tid > 0 ? btf__type_by_id(rs->btf, (uint32_t)tid) : NULL;
        uint32_t bit = btf_member_bit_offset(st, i);
        if (!name || !t || !btf_is_int(t) || (t->size != 4 && t->size != 8) || bit % 8 ||
            btf_member_bitfield_size(st, i) || (!ends_with(name, "stack_id") && !ends_with(name, "stackid")))
            continue;
        rs->fields[n++] = (struct id_field){name, bit / 8, t->size, (btf_int_encoding(t) & BTF_INT_SIGNED) != 0};
    }
    return n;
}

size_t record_stacks_count(struct record_stacks *rs, size_t size)
{
    if (!rs || !size)
        return 0;
    if (rs->fields_for == size)
        return rs->nfields;
    rs->fields_for = size;
    rs->nfields = 0;
    uint32_t cnt = btf__type_cnt(rs->btf);
    for (uint32_t id = 1; id < cnt && !rs->nfields; id++) {
        const struct btf_type *t = btf__type_by_id(rs->btf, id);
        if (btf_is_struct(t) && t->size == size)
            rs->nfields = id_fields(rs, t);
    }
    return rs->nfields;
}

static int64_t field_value(const struct id_field *f, const uint8_t *data)
{
    if (f->size == 8) {
        int64_t v;
        memcpy(&v, data + f->off, 8);
        return v;
    }
    uint32_t v;
    memcpy(&v, data + f->off, 4);
    return f->is_signed ? (int32_t)v : (int64_t)v;
}

void record_stacks_pack(struct record_stacks *rs, msgpack_packer *pk, const void *data, size_t size)
{
    struct bpfg_map_info info;
    bpfg_map_get_info(rs->stack_map->map, &info);
    uint8_t *value = calloc(1, info.value_size);
    size_t n = record_stacks_count(rs, size);
    if (n && !rs->syms_open) {
        stack_syms_open(rs->s, rs->stack_map->id, &rs->syms);
        rs->syms_open = true;
    }
    bpfg_pack_cstr(pk, "stacks");
    msgpack_pack_map(pk, n);
    for (size_t i = 0; i < n; i++) {
        int64_t id = field_value(&rs->fields[i], data);
        uint32_t key = (uint32_t)id;
        bpfg_pack_cstr(pk, rs->fields[i].name);
        if (value && id >= 0 && id <= UINT32_MAX && bpfg_map_lookup_copy(rs->stack_map->map, &key, value) == 0)
            stack_syms_pack(pk, &rs->syms, value, info.value_size);
        else
            msgpack_pack_array(pk, 0);
    }
    free(value);
}
