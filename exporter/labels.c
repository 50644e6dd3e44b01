/* Map keys to label values (see labels.h). */
#include "labels.h"

#include <bpf/btf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COMM_CACHE 4096 /* pids remembered; the cache starts over when full */

struct comm_entry {
    uint64_t pid;
    char comm[17];
};

struct ksym {
    uint64_t addr;
    char *name;
};

struct exp_label_cache {
    struct comm_entry comms[COMM_CACHE];
    size_t ncomms;
    struct ksym *syms; /* sorted by address; loaded on first use */
    size_t nsyms;
    bool syms_loaded;
};

struct exp_label_cache *exp_label_cache_new(void)
{
    return calloc(1, sizeof(struct exp_label_cache));
}

void exp_label_cache_free(struct exp_label_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->nsyms; i++)
        free(c->syms[i].name);
    free(c->syms);
    free(c);
}

/* ---- where the labels are ---- */

static int spans_by_size(const struct exp_metric *m, uint32_t key_size, struct exp_label_span *spans, char *err,
                         size_t errlen)
{
    uint64_t off = 0;
    for (size_t i = 0; i < m->nlabels; i++) {
        spans[i] = (struct exp_label_span){(uint32_t)off, m->labels[i].size};
        off += (uint64_t)m->labels[i].size + m->labels[i].padding;
    }
    if (off == key_size)
        return 0;
    snprintf(err, errlen, "labels of %s cover %" PRIu64 " bytes, but table %s has %u-byte keys", m->name, off, m->table,
             key_size);
    return -EINVAL;
}

/* The key's BTF field called name: its byte offset and size. */
static int btf_field(const struct btf *btf, const struct btf_type *t, const char *name, struct exp_label_span *s)
{
    const struct btf_member *mem = btf_members(t);
    for (uint16_t i = 0; i < btf_vlen(t); i++, mem++) {
        const char *n = btf__name_by_offset(btf, mem->name_off);
        if (!n || strcmp(n, name))
            continue;
        uint32_t bits = btf_member_bit_offset(t, i);
        long size = btf__resolve_size(btf, mem->type);
        if (bits % 8 || btf_member_bitfield_size(t, i) || size <= 0)
            return -EINVAL; /* bitfields are not bytes */
        *s = (struct exp_label_span){bits / 8, (uint32_t)size};
        return 0;
    }
    return -ENOENT;
}

static int spans_by_btf(const struct exp_metric *m, const struct btf *btf, uint32_t key_type, uint32_t key_size,
                        struct exp_label_span *spans, char *err, size_t errlen)
{
    int32_t id = btf ? btf__resolve_type(btf, key_type) : -ENOENT;
    const struct btf_type *t = id > 0 ? btf__type_by_id(btf, (uint32_t)id) : NULL;
    if (!t || (!btf_is_struct(t) && !btf_is_union(t))) {
        if (m->nlabels == 1) {
            spans[0] = (struct exp_label_span){0, key_size};
            return 0;
        }
        snprintf(err, errlen, "labels of %s give no size and table %s's key is not a struct with BTF", m->name,
                 m->table);
        return -EINVAL;
    }
    for (size_t i = 0; i < m->nlabels; i++) {
        const struct exp_label *l = &m->labels[i];
        int r = btf_field(btf, t, l->name, &spans[i]);
        if (!r && (!l->size || l->size == spans[i].size) && spans[i].off + spans[i].size <= key_size)
            continue;
        snprintf(err, errlen, "label %s of %s: table %s's key has no byte-sized field %s%s", l->name, m->name, m->table,
                 l->name, !r ? " of that size" : "");
        return -EINVAL;
    }
    return 0;
}

int exp_label_spans(const struct exp_metric *m, const struct btf *btf, uint32_t key_type, uint32_t key_size,
                    struct exp_label_span *spans, char *err, size_t errlen)
{
    for (size_t i = 0; i < m->nlabels; i++) {
        if (!m->labels[i].size)
            return spans_by_btf(m, btf, key_type, key_size, spans, err, errlen);
    }
    return spans_by_size(m, key_size, spans, err, errlen);
}

/* ---- decoders: each turns the previous one's output (the first: the
 * key's bytes) into text ---- */

static uint64_t le_uint(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

/* A number: the raw little-endian bytes for the first decoder, else the
 * previous decoder's text. */
static int number_in(const struct sbuf *in, bool raw, uint64_t *v)
{
    if (raw) {
        if (in->len != 1 && in->len != 2 && in->len != 4 && in->len != 8)
            return -EINVAL;
        *v = le_uint((const uint8_t *)in->s, in->len);
        return 0;
    }
    char *end;
    errno = 0;
    *v = strtoull(in->s, &end, 0);
    return errno || end == in->s || *end ? -EINVAL : 0;
}

static const char *comm_of(struct exp_label_cache *c, uint64_t pid)
{
    for (size_t i = 0; i < c->ncomms; i++) {
        if (c->comms[i].pid == pid)
            return c->comms[i].comm;
    }
    char path[64], comm[17] = "";
    snprintf(path, sizeof(path), "/proc/%" PRIu64 "/comm", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL; /* gone: not cached, the pid may come back */
    bool ok = fgets(comm, sizeof(comm), f) != NULL;
    fclose(f);
    if (!ok)
        return NULL;
    comm[strcspn(comm, "\n")] = 0;
    if (c->ncomms == COMM_CACHE)
        c->ncomms = 0;
    struct comm_entry *e = &c->comms[c->ncomms++];
    e->pid = pid;
    memcpy(e->comm, comm, sizeof(e->comm));
    return e->comm;
}

static int cmp_ksym(const void *a, const void *b)
{
    const struct ksym *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* One /proc/kallsyms line's address and name; false for others. */
static bool ksym_line(const char *line, unsigned long long *addr, char *name)
{
    char type;
    return sscanf(line, "%llx %c %255s", addr, &type, name) == 3 && *addr;
}

/* Reads the symbols into syms (NULL: only counts them); how many. */
static size_t read_kallsyms(FILE *f, struct ksym *syms, size_t max)
{
    char line[512], name[256];
    unsigned long long addr;
    size_t n = 0;
    rewind(f);
    while (fgets(line, sizeof(line), f) && (!syms || n < max)) {
        if (!ksym_line(line, &addr, name))
            continue;
        if (syms && !(syms[n].name = strdup(name)))
            break;
        if (syms)
            syms[n].addr = addr;
        n++;
    }
    return n;
}

/* Loads /proc/kallsyms once: counted, then read (no symbols without root). */
static void load_kallsyms(struct exp_label_cache *c)
{
    c->syms_loaded = true;
    FILE *f = fopen("/proc/kallsyms", "r");
    if (!f)
        return;
    size_t n = read_kallsyms(f, NULL, 0);
    c->syms = n ? calloc(n, sizeof(*c->syms)) : NULL;
    if (c->syms)
        c->nsyms = read_kallsyms(f, c->syms, n);
    fclose(f);
    qsort(c->syms, c->nsyms, sizeof(*c->syms), cmp_ksym);
}

/* The symbol at or below addr, or NULL. */
static const char *ksym_of(struct exp_label_cache *c, uint64_t addr)
{
    if (!c->syms_loaded)
        load_kallsyms(c);
    size_t lo = 0, hi = c->nsyms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->syms[mid].addr <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo ? c->syms[lo - 1].name : NULL;
}

static int decode_number(struct exp_label_cache *c, const struct exp_decoder *d, const struct sbuf *in, bool raw,
                         struct sbuf *out)
{
    uint64_t v;
    if (number_in(in, raw, &v)) {
        sbuf_printf(out, "decoder %s needs %s", exp_decoder_name(d->kind),
                    raw ? "1, 2, 4 or 8 bytes" : "a number from the decoder before it");
        return -EINVAL;
    }
    const char *name = NULL;
    if (d->kind == EXP_DEC_UINT)
        sbuf_printf(out, "%" PRIu64, v);
    else if ((name = d->kind == EXP_DEC_PID ? comm_of(c, v) : ksym_of(c, v)))
        sbuf_puts(out, name);
    else
        sbuf_printf(out, d->kind == EXP_DEC_PID ? "unknown:%" PRIu64 : "unknown:0x%" PRIx64, v);
    return 0;
}

static void decode_static_map(const struct exp_decoder *d, const struct sbuf *in, struct sbuf *out)
{
    for (size_t i = 0; i < d->npairs; i++) {
        if (!strcmp(d->pairs[i].from, in->s)) {
            sbuf_puts(out, d->pairs[i].to);
            return;
        }
    }
    sbuf_printf(out, d->allow_unknown ? "%s" : "unknown:%s", in->s);
}

static int decode_one(struct exp_label_cache *c, const struct exp_decoder *d, const struct sbuf *in, bool raw,
                      struct sbuf *out)
{
    sbuf_reset(out);
    switch (d->kind) {
    case EXP_DEC_UINT:
    case EXP_DEC_PID:
    case EXP_DEC_KSYM: return decode_number(c, d, in, raw, out);
    case EXP_DEC_STRING: sbuf_putn(out, in->s, strnlen(in->s, in->len)); return 0;
    case EXP_DEC_HEX: sbuf_hex(out, in->s, in->len, 0); return 0;
    case EXP_DEC_STATIC_MAP: decode_static_map(d, in, out); return 0;
    }
    return -EINVAL;
}

/* Label values are text: bytes outside printable ASCII become '?'. */
static void printable(struct sbuf *sb)
{
    for (size_t i = 0; i < sb->len; i++) {
        if ((unsigned char)sb->s[i] < 0x20 || (unsigned char)sb->s[i] >= 0x7f)
            sb->s[i] = '?';
    }
}

int exp_label_decode(struct exp_label_cache *c, const struct exp_label *l, const uint8_t *data, size_t size,
                     struct sbuf *out)
{
    struct sbuf cur = {0};
    sbuf_putn(&cur, (const char *)data, size);
    int r = 0;
    for (size_t i = 0; i < l->ndecoders && !r; i++) {
        r = decode_one(c, &l->decoders[i], &cur, i == 0, out);
        struct sbuf t = cur;
        cur = *out;
        *out = t;
    }
    /* cur holds the last output (or the error) */
    struct sbuf t = cur;
    cur = *out;
    *out = t;
    sbuf_free(&cur);
    if (!r)
        printable(out);
    return r;
}
