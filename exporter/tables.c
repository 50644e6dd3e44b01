/* Configured metrics from map contents (see tables.h). */
#include "tables.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "labels.h"
#include "prom.h"

struct exp_tables {
    const struct exp_config *cfg;
    const char *ns;
    struct exp_label_cache *cache;
    char **last_err; /* per metric: what was last reported, or NULL */
};

/* One map entry: its labels (the bucket's apart) and value. */
struct row {
    char *labels;
    int64_t bucket;
    uint64_t value;
};

struct rows {
    struct row *v;
    size_t n, cap;
};

/* What one metric's scrape works with. */
struct table_read {
    const struct exp_metric *m;
    struct exp_label_span *spans;
    struct btf *btf;
    struct sbuf err;
};

struct exp_tables *exp_tables_new(const struct exp_config *cfg, const char *namespace)
{
    struct exp_tables *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    *t = (struct exp_tables){.cfg = cfg, .ns = namespace};
    t->cache = exp_label_cache_new();
    t->last_err = calloc(cfg->nmetrics + 1, sizeof(*t->last_err));
    if (!t->cache || !t->last_err) {
        exp_tables_free(t);
        return NULL;
    }
    return t;
}

void exp_tables_free(struct exp_tables *t)
{
    if (!t)
        return;
    for (size_t i = 0; t->last_err && i < t->cfg->nmetrics; i++)
        free(t->last_err[i]);
    free(t->last_err);
    exp_label_cache_free(t->cache);
    free(t);
}

/* Prints a metric's problem when it is new; msg NULL: the metric is fine. */
static void report(struct exp_tables *t, size_t i, const char *msg)
{
    char **last = &t->last_err[i];
    if (msg && (!*last || strcmp(*last, msg)))
        fprintf(stderr, "bpfgraft-exporter: %s: %s\n", t->cfg->metrics[i].name, msg);
    if (!msg && *last)
        fprintf(stderr, "bpfgraft-exporter: %s: exported again\n", t->cfg->metrics[i].name);
    free(*last);
    *last = msg ? strdup(msg) : NULL;
}

/* The map called name: own_object's if it has one, else the newest. */
static const msgpack_object *find_map(const msgpack_object *maps, const char *name, uint64_t own_object)
{
    const msgpack_object *best = NULL;
    uint64_t best_id = 0, id, obj;
    for (uint32_t i = 0; maps && maps->type == MSGPACK_OBJECT_ARRAY && i < maps->via.array.size; i++) {
        const msgpack_object *m = &maps->via.array.ptr[i];
        const msgpack_object *n = obj_get(m, "name");
        if (!n || !bpfg_obj_str_eq(n, name) || !obj_u64(m, "id", &id))
            continue;
        if (own_object && obj_u64(m, "object", &obj) && obj == own_object)
            return m;
        if (!best || id > best_id) {
            best = m;
            best_id = id;
        }
    }
    return best;
}

static bool needs_btf(const struct exp_metric *m)
{
    for (size_t i = 0; i < m->nlabels; i++) {
        if (!m->labels[i].size)
            return true;
    }
    return false;
}

/* The BTF of the map's object, or NULL (no BTF; said in r->err). */
static struct btf *object_btf(struct cli_conn *c, const msgpack_object *map, struct sbuf *err)
{
    uint64_t obj;
    struct bpfg_rpc_msg resp;
    char why[512];
    if (!obj_u64(map, "object", &obj))
        return NULL;
    if (exp_call(c, "object.btf", "id", obj, &resp, why, sizeof(why))) {
        sbuf_printf(err, "object.btf: %s", why);
        return NULL;
    }
    const msgpack_object *b = obj_get(&resp.params, "btf");
    struct btf *btf = NULL;
    if (b && b->type == MSGPACK_OBJECT_BIN && b->via.bin.size) {
        btf = btf__new(b->via.bin.ptr, b->via.bin.size);
        if (libbpf_get_error(btf))
            btf = NULL;
    }
    bpfg_rpc_msg_release(&resp);
    return btf;
}

/* Where the labels are in this map's keys; -EINVAL with r->err. */
static int locate_labels(struct table_read *r, struct cli_conn *c, const msgpack_object *map)
{
    uint64_t key_size = 0, key_type = 0;
    char why[512];
    if (!obj_u64(map, "key_size", &key_size)) {
        sbuf_puts(&r->err, "map.list gives no key_size");
        return -EINVAL;
    }
    obj_u64(map, "btf_key_type_id", &key_type);
    if (needs_btf(r->m))
        r->btf = object_btf(c, map, &r->err);
    if (r->err.len)
        return -EINVAL;
    int rc = exp_label_spans(r->m, r->btf, (uint32_t)key_type, (uint32_t)key_size, r->spans, why, sizeof(why));
    if (rc)
        sbuf_puts(&r->err, why);
    return rc;
}

static uint64_t le_u64(const msgpack_object *b)
{
    uint64_t v = 0;
    size_t n = b->via.bin.size < 8 ? b->via.bin.size : 8;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | (uint8_t)b->via.bin.ptr[i];
    return v;
}

/* The entry's value; a per-CPU map's values summed. */
static bool entry_value(const msgpack_object *e, uint64_t *v)
{
    const msgpack_object *x = obj_get(e, "value"), *xs = obj_get(e, "values");
    *v = 0;
    if (x && x->type == MSGPACK_OBJECT_BIN) {
        *v = le_u64(x);
        return true;
    }
    if (!xs || xs->type != MSGPACK_OBJECT_ARRAY)
        return false;
    for (uint32_t i = 0; i < xs->via.array.size; i++) {
        if (xs->via.array.ptr[i].type == MSGPACK_OBJECT_BIN)
            *v += le_u64(&xs->via.array.ptr[i]);
    }
    return true;
}

/* Room for n rows (one per dumped entry). */
static int rows_init(struct rows *rows, size_t n)
{
    rows->v = n ? calloc(n, sizeof(*rows->v)) : NULL;
    rows->cap = rows->v ? n : 0;
    return n && !rows->v ? -ENOMEM : 0;
}

/* The bucket label's text as a number. */
static int bucket_of(const struct sbuf *text, int64_t *bucket)
{
    char *end;
    errno = 0;
    long long b = strtoll(text->s, &end, 0);
    if (errno || end == text->s || *end)
        return -EINVAL;
    *bucket = b;
    return 0;
}

/* Decodes one key's labels into *labels and, for a histogram, *bucket. */
static int key_labels(struct exp_tables *t, struct table_read *r, const msgpack_object *key, struct sbuf *labels,
                      int64_t *bucket)
{
    const struct exp_metric *m = r->m;
    struct sbuf v = {0};
    int rc = 0;
    for (size_t i = 0; i < m->nlabels && !rc; i++) {
        const struct exp_label_span *s = &r->spans[i];
        if ((uint64_t)s->off + s->size > key->via.bin.size) {
            sbuf_printf(&r->err, "a key of %u bytes is shorter than label %s needs", key->via.bin.size,
                        m->labels[i].name);
            rc = -EINVAL;
        } else if ((rc = exp_label_decode(t->cache, &m->labels[i], (const uint8_t *)key->via.bin.ptr + s->off, s->size,
                                          &v))) {
            sbuf_printf(&r->err, "label %s: %s", m->labels[i].name, v.s);
        } else if (m->kind == EXP_HISTOGRAM && i == m->nlabels - 1) {
            if ((rc = bucket_of(&v, bucket)))
                sbuf_printf(&r->err, "bucket label %s decodes to '%s', not a number", m->labels[i].name, v.s);
        } else {
            prom_label(labels, m->labels[i].name, v.s);
        }
    }
    sbuf_free(&v);
    return rc;
}

/* The entries of one dump as rows; an entry that does not decode is
 * skipped (r->err says why). */
static void dump_rows(struct exp_tables *t, struct table_read *r, const msgpack_object *entries, struct rows *rows)
{
    struct sbuf labels = {0};
    for (uint32_t i = 0; entries && entries->type == MSGPACK_OBJECT_ARRAY && i < entries->via.array.size; i++) {
        const msgpack_object *e = &entries->via.array.ptr[i], *key = obj_get(e, "key");
        int64_t bucket = 0;
        uint64_t value;
        sbuf_reset(&labels);
        if (!key || key->type != MSGPACK_OBJECT_BIN || !entry_value(e, &value))
            continue;
        size_t err_len = r->err.len;
        if (key_labels(t, r, key, &labels, &bucket)) {
            if (err_len) { /* the first entry's reason is enough */
                r->err.len = err_len;
                r->err.s[err_len] = 0;
            }
            continue;
        }
        char *copy = strdup(labels.s ? labels.s : "");
        if (!copy || rows->n == rows->cap) {
            free(copy);
            sbuf_puts(&r->err, "out of memory");
            break;
        }
        rows->v[rows->n++] = (struct row){copy, bucket, value};
    }
    sbuf_free(&labels);
}

static int cmp_row(const void *a, const void *b)
{
    const struct row *x = a, *y = b;
    int c = strcmp(x->labels, y->labels);
    return c ? c : (x->bucket > y->bucket) - (x->bucket < y->bucket);
}

static void metric_name(const struct exp_tables *t, const struct exp_metric *m, const char *suffix, struct sbuf *sb)
{
    sbuf_reset(sb);
    sbuf_printf(sb, "%s%s%s%s", t->ns, *t->ns ? "_" : "", m->name, suffix);
}

/* Counters: rows with the same labels add up (keys decoding alike). */
static void write_counter(const struct exp_tables *t, const struct exp_metric *m, const struct rows *rows,
                          struct sbuf *out)
{
    struct sbuf name = {0};
    metric_name(t, m, "", &name);
    prom_family(out, name.s, "counter", m->help);
    for (size_t i = 0; i < rows->n;) {
        uint64_t sum = 0;
        size_t j = i;
        for (; j < rows->n && !strcmp(rows->v[j].labels, rows->v[i].labels); j++)
            sum += rows->v[j].value;
        prom_sample_u64(out, name.s, rows->v[i].labels, sum);
        i = j;
    }
    sbuf_free(&name);
}

/* A bucket's upper bound, as ebpf_exporter: exp2 2^b, linear b; times the multiplier. */
static double bucket_le(const struct exp_metric *m, int64_t b)
{
    double x = m->bucket_type == EXP_BUCKET_EXP2 ? exp2((double)b) : (double)b;
    return x * m->bucket_multiplier;
}

/* One label set's histogram from counts[bucket - bucket_min]; sum is
 * the optional bucket_max + 1 key's value (0 without it). */
static void write_one_histogram(const struct exp_metric *m, const char *name, const char *labels,
                                const uint64_t *counts, uint64_t sum, struct sbuf *out)
{
    struct sbuf lb = {0}, le = {0}, series = {0};
    uint64_t total = 0;
    sbuf_printf(&series, "%s_bucket", name);
    for (int64_t b = m->bucket_min; b <= m->bucket_max + 1; b++) {
        bool inf = b > m->bucket_max;
        total += inf ? 0 : counts[b - m->bucket_min];
        sbuf_reset(&le);
        if (inf)
            sbuf_puts(&le, "+Inf");
        else
            prom_float(&le, bucket_le(m, b));
        sbuf_reset(&lb);
        sbuf_puts(&lb, labels);
        prom_label(&lb, "le", le.s);
        prom_sample_u64(out, series.s, lb.s, total);
    }
    sbuf_reset(&series);
    sbuf_printf(&series, "%s_sum", name);
    prom_sample(out, series.s, labels, (double)sum * m->bucket_multiplier);
    sbuf_reset(&series);
    sbuf_printf(&series, "%s_count", name);
    prom_sample_u64(out, series.s, labels, total);
    sbuf_free(&lb);
    sbuf_free(&le);
    sbuf_free(&series);
}

/* Histograms: rows sorted by labels then bucket; buckets outside
 * [bucket_min, bucket_max + 1] are ignored, as ebpf_exporter does. */
static void write_histogram(const struct exp_tables *t, const struct exp_metric *m, const struct rows *rows,
                            struct sbuf *out)
{
    size_t nb = (size_t)(m->bucket_max - m->bucket_min + 1);
    uint64_t *counts = calloc(nb, sizeof(*counts));
    struct sbuf name = {0};
    metric_name(t, m, "", &name);
    prom_family(out, name.s, "histogram", m->help);
    for (size_t i = 0; counts && i < rows->n;) {
        uint64_t sum = 0;
        size_t j = i;
        memset(counts, 0, nb * sizeof(*counts));
        for (; j < rows->n && !strcmp(rows->v[j].labels, rows->v[i].labels); j++) {
            int64_t b = rows->v[j].bucket;
            if (b == m->bucket_max + 1)
                sum += rows->v[j].value;
            else if (b >= m->bucket_min && b <= m->bucket_max)
                counts[b - m->bucket_min] += rows->v[j].value;
        }
        write_one_histogram(m, name.s, rows->v[i].labels, counts, sum, out);
        i = j;
    }
    free(counts);
    sbuf_free(&name);
}

static void free_rows(struct rows *rows)
{
    for (size_t i = 0; i < rows->n; i++)
        free(rows->v[i].labels);
    free(rows->v);
}

/* The rows of metric r->m from its map; r->err says what went wrong. */
static void read_table(struct exp_tables *t, struct table_read *r, struct cli_conn *c, const msgpack_object *maps,
                       uint64_t own_object, struct rows *rows)
{
    const msgpack_object *map = find_map(maps, r->m->table, own_object);
    uint64_t id;
    char why[512];
    struct bpfg_rpc_msg resp;
    if (!map || !obj_u64(map, "id", &id)) {
        sbuf_printf(&r->err, "no map called %s (table) is loaded", r->m->table);
        return;
    }
    if (locate_labels(r, c, map))
        return;
    if (exp_call(c, "map.dump", "map", id, &resp, why, sizeof(why))) {
        sbuf_printf(&r->err, "map.dump %s: %s", r->m->table, why);
        return;
    }
    const msgpack_object *entries = obj_get(&resp.params, "entries");
    if (rows_init(rows, entries && entries->type == MSGPACK_OBJECT_ARRAY ? entries->via.array.size : 0))
        sbuf_puts(&r->err, "out of memory");
    else
        dump_rows(t, r, entries, rows);
    bpfg_rpc_msg_release(&resp);
    qsort(rows->v, rows->n, sizeof(*rows->v), cmp_row);
}

void exp_tables_write(struct exp_tables *t, struct cli_conn *c, const msgpack_object *maps, uint64_t own_object,
                      struct sbuf *out)
{
    for (size_t i = 0; i < t->cfg->nmetrics; i++) {
        const struct exp_metric *m = &t->cfg->metrics[i];
        struct table_read r = {.m = m, .spans = calloc(m->nlabels, sizeof(*r.spans))};
        struct rows rows = {0};
        if (r.spans)
            read_table(t, &r, c, maps, own_object, &rows);
        else
            sbuf_puts(&r.err, "out of memory");
        if (m->kind == EXP_COUNTER)
            write_counter(t, m, &rows, out);
        else
            write_histogram(t, m, &rows, out);
        report(t, i, r.err.len ? r.err.s : NULL);
        free_rows(&rows);
        btf__free(r.btf);
        free(r.spans);
        sbuf_free(&r.err);
    }
}
