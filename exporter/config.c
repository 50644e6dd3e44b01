/* ebpf_exporter's YAML config read with libyaml's document API: every
 * node keeps its line, so each error names the line it is about. */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct parse {
    yaml_document_t doc;
    const char *path;
    char *err;
    size_t errlen;
};

static const char *const decoder_names[] = {
    [EXP_DEC_UINT] = "uint", [EXP_DEC_STRING] = "string", [EXP_DEC_HEX] = "hex",
    [EXP_DEC_PID] = "pid",   [EXP_DEC_KSYM] = "ksym",     [EXP_DEC_STATIC_MAP] = "static_map",
};

const char *exp_decoder_name(enum exp_decoder_kind kind)
{
    return decoder_names[kind];
}

static int line_of(const yaml_node_t *n)
{
    return (int)n->start_mark.line + 1;
}

__attribute__((format(printf, 3, 4))) static int fail(struct parse *p, const yaml_node_t *n, const char *fmt, ...)
{
    int off = snprintf(p->err, p->errlen, "%s:%d: ", p->path, line_of(n));
    if (off < 0 || (size_t)off >= p->errlen)
        return -EINVAL;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + off, p->errlen - (size_t)off, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static yaml_node_t *node(struct parse *p, int id)
{
    return yaml_document_get_node(&p->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int want(struct parse *p, const yaml_node_t *n, yaml_node_type_t type, const char *what)
{
    static const char *const kinds[] = {
        [YAML_SCALAR_NODE] = "a value", [YAML_SEQUENCE_NODE] = "a list", [YAML_MAPPING_NODE] = "a mapping"};
    if (n->type == type)
        return 0;
    return fail(p, n, "%s must be %s", what, kinds[type]);
}

static size_t seq_len(const yaml_node_t *n)
{
    return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

static int dup_str(struct parse *p, const yaml_node_t *n, const char *what, char **out)
{
    int r = want(p, n, YAML_SCALAR_NODE, what);
    if (r)
        return r;
    free(*out);
    *out = strdup(scalar(n));
    return *out ? 0 : -ENOMEM;
}

static int parse_int(struct parse *p, const yaml_node_t *n, const char *what, int64_t min, int64_t *out)
{
    int r = want(p, n, YAML_SCALAR_NODE, what);
    if (r)
        return r;
    char *end;
    errno = 0;
    long long v = strtoll(scalar(n), &end, 0);
    if (errno || end == scalar(n) || *end || v < min)
        return fail(p, n, "%s must be an integer >= %lld, not '%s'", what, (long long)min, scalar(n));
    *out = v;
    return 0;
}

static int parse_double(struct parse *p, const yaml_node_t *n, const char *what, double *out)
{
    int r = want(p, n, YAML_SCALAR_NODE, what);
    if (r)
        return r;
    char *end;
    double v = strtod(scalar(n), &end);
    if (end == scalar(n) || *end || !isfinite(v) || v <= 0)
        return fail(p, n, "%s must be a positive number, not '%s'", what, scalar(n));
    *out = v;
    return 0;
}

static int parse_bool(struct parse *p, const yaml_node_t *n, const char *what, bool *out)
{
    int r = want(p, n, YAML_SCALAR_NODE, what);
    if (r)
        return r;
    const char *s = scalar(n);
    if (!strcmp(s, "true") || !strcmp(s, "false")) {
        *out = s[0] == 't';
        return 0;
    }
    return fail(p, n, "%s must be true or false, not '%s'", what, s);
}

/* Prometheus names: [a-zA-Z_:][a-zA-Z0-9_:]* (labels: no ':'). */
static bool valid_name(const char *s, bool colons)
{
    if (!*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++) {
        bool ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
                  (colons && *s == ':');
        if (!ok)
            return false;
    }
    return true;
}

typedef int (*pair_fn)(struct parse *p, const char *key, yaml_node_t *k, yaml_node_t *v, void *obj);

/* Calls fn for each key: value of mapping n (keys must be plain values). */
static int each_pair(struct parse *p, yaml_node_t *n, const char *what, pair_fn fn, void *obj)
{
    int r = want(p, n, YAML_MAPPING_NODE, what);
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; !r && pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = node(p, pr->key), *v = node(p, pr->value);
        if (!scalar(k))
            return fail(p, k, "%s: keys must be plain names", what);
        r = fn(p, scalar(k), k, v, obj);
    }
    return r;
}

static int static_map_pairs(struct parse *p, yaml_node_t *n, struct exp_decoder *d)
{
    int r = want(p, n, YAML_MAPPING_NODE, "static_map");
    if (r)
        return r;
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    d->pairs = calloc(count ? count : 1, sizeof(*d->pairs));
    if (!d->pairs)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
        struct exp_map_pair *m = &d->pairs[d->npairs++];
        if ((r = dup_str(p, node(p, pr->key), "a static_map key", &m->from)) ||
            (r = dup_str(p, node(p, pr->value), "a static_map value", &m->to)))
            return r;
    }
    return 0;
}

static int decoder_kind(struct parse *p, yaml_node_t *v, enum exp_decoder_kind *kind)
{
    int r = want(p, v, YAML_SCALAR_NODE, "a decoder's name");
    if (r)
        return r;
    for (size_t i = 0; i < sizeof(decoder_names) / sizeof(decoder_names[0]); i++) {
        if (!strcmp(scalar(v), decoder_names[i])) {
            *kind = (enum exp_decoder_kind)i;
            return 0;
        }
    }
    return fail(p, v, "unknown decoder '%s' (known: uint, string, hex, pid, ksym, static_map)", scalar(v));
}

static int decoder_pair(struct parse *p, const char *key, yaml_node_t *k, yaml_node_t *v, void *obj)
{
    struct exp_decoder *d = obj;
    if (!strcmp(key, "name"))
        return decoder_kind(p, v, &d->kind);
    if (!strcmp(key, "static_map"))
        return static_map_pairs(p, v, d);
    if (!strcmp(key, "allow_unknown"))
        return parse_bool(p, v, "allow_unknown", &d->allow_unknown);
    return fail(p, k, "unknown decoder key '%s' (expected name, static_map, allow_unknown)", key);
}

static int parse_decoders(struct parse *p, yaml_node_t *n, struct exp_label *l)
{
    int r = want(p, n, YAML_SEQUENCE_NODE, "decoders");
    if (r)
        return r;
    if (!seq_len(n))
        return fail(p, n, "label '%s' has no decoders", l->name ? l->name : "?");
    l->decoders = calloc(seq_len(n), sizeof(*l->decoders));
    if (!l->decoders)
        return -ENOMEM;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *dn = node(p, *it);
        struct exp_decoder *d = &l->decoders[l->ndecoders++];
        d->kind = (enum exp_decoder_kind) - 1;
        if ((r = each_pair(p, dn, "a decoder", decoder_pair, d)))
            return r;
        if (d->kind == (enum exp_decoder_kind) - 1)
            return fail(p, dn, "a decoder needs a name");
        if (d->kind == EXP_DEC_STATIC_MAP && !d->pairs)
            return fail(p, dn, "decoder static_map needs a static_map: mapping");
    }
    return 0;
}

static int label_pair(struct parse *p, const char *key, yaml_node_t *k, yaml_node_t *v, void *obj)
{
    struct exp_label *l = obj;
    int64_t x;
    int r;
    if (!strcmp(key, "name"))
        return dup_str(p, v, "a label's name", &l->name);
    if (!strcmp(key, "size") || !strcmp(key, "padding")) {
        if ((r = parse_int(p, v, key, key[0] == 's' ? 1 : 0, &x)))
            return r;
        if (x > 4096)
            return fail(p, v, "%s %lld is larger than any map key", key, (long long)x);
        *(key[0] == 's' ? &l->size : &l->padding) = (uint32_t)x;
        return 0;
    }
    if (!strcmp(key, "decoders"))
        return parse_decoders(p, v, l);
    return fail(p, k, "unknown label key '%s' (expected name, size, padding, decoders)", key);
}

static int parse_labels(struct parse *p, yaml_node_t *n, struct exp_metric *m)
{
    int r = want(p, n, YAML_SEQUENCE_NODE, "labels");
    if (r)
        return r;
    m->labels = calloc(seq_len(n) ? seq_len(n) : 1, sizeof(*m->labels));
    if (!m->labels)
        return -ENOMEM;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *ln = node(p, *it);
        struct exp_label *l = &m->labels[m->nlabels++];
        l->line = line_of(ln);
        if ((r = each_pair(p, ln, "a label", label_pair, l)))
            return r;
        if (!l->name || !valid_name(l->name, false) || !strncmp(l->name, "__", 2))
            return fail(p, ln, "a label needs a name of letters, digits and '_' (not starting with '__')");
        if (!l->decoders)
            return fail(p, ln, "label '%s' has no decoders", l->name);
    }
    return 0;
}

static int bucket_type(struct parse *p, yaml_node_t *v, struct exp_metric *m)
{
    int r = want(p, v, YAML_SCALAR_NODE, "bucket_type");
    if (r)
        return r;
    if (!strcmp(scalar(v), "exp2") || !strcmp(scalar(v), "linear")) {
        m->bucket_type = scalar(v)[0] == 'e' ? EXP_BUCKET_EXP2 : EXP_BUCKET_LINEAR;
        return 0;
    }
    return fail(p, v, "unknown bucket_type '%s' (known: exp2, linear)", scalar(v));
}

static int histogram_pair(struct parse *p, const char *key, yaml_node_t *v, struct exp_metric *m)
{
    if (!strcmp(key, "bucket_type"))
        return bucket_type(p, v, m);
    if (!strcmp(key, "bucket_min"))
        return parse_int(p, v, key, 0, &m->bucket_min);
    if (!strcmp(key, "bucket_max"))
        return parse_int(p, v, key, 0, &m->bucket_max);
    if (!strcmp(key, "bucket_multiplier"))
        return parse_double(p, v, key, &m->bucket_multiplier);
    return 1; /* not a histogram key */
}

static int metric_pair(struct parse *p, const char *key, yaml_node_t *k, yaml_node_t *v, void *obj)
{
    struct exp_metric *m = obj;
    if (!strcmp(key, "name"))
        return dup_str(p, v, "a metric's name", &m->name);
    if (!strcmp(key, "help"))
        return dup_str(p, v, "help", &m->help);
    if (!strcmp(key, "table"))
        return dup_str(p, v, "table", &m->table);
    if (!strcmp(key, "labels"))
        return parse_labels(p, v, m);
    int r = m->kind == EXP_HISTOGRAM ? histogram_pair(p, key, v, m) : 1;
    if (r <= 0)
        return r;
    return fail(p, k, "unknown %s key '%s' (expected name, help, table, labels%s)",
                m->kind == EXP_HISTOGRAM ? "histogram" : "counter", key,
                m->kind == EXP_HISTOGRAM ? ", bucket_type, bucket_min, bucket_max, bucket_multiplier" : "");
}

static int check_histogram(struct parse *p, yaml_node_t *n, struct exp_metric *m)
{
    if (!m->nlabels)
        return fail(p, n, "histogram '%s' needs labels, the last one its bucket", m->name);
    if (m->bucket_max <= m->bucket_min)
        return fail(p, n, "histogram '%s': bucket_max (%lld) must be above bucket_min (%lld)", m->name,
                    (long long)m->bucket_max, (long long)m->bucket_min);
    if (m->bucket_max - m->bucket_min > 4096)
        return fail(p, n, "histogram '%s' has more than 4096 buckets", m->name);
    for (size_t i = 0; i + 1 < m->nlabels; i++) {
        if (!strcmp(m->labels[i].name, "le"))
            return fail(p, n, "histogram '%s': label 'le' is the buckets' own", m->name);
    }
    return 0;
}

/* Each metric once: a second family of a name is no Prometheus text. */
static int check_unique(struct parse *p, yaml_node_t *n, const struct exp_config *c, const struct exp_metric *m)
{
    for (const struct exp_metric *o = c->metrics; o < m; o++) {
        if (!strcmp(o->name, m->name))
            return fail(p, n, "metric '%s' is defined twice (first on line %d)", m->name, o->line);
    }
    return 0;
}

static int check_metric(struct parse *p, yaml_node_t *n, struct exp_metric *m)
{
    const char *kind = m->kind == EXP_HISTOGRAM ? "histogram" : "counter";
    if (!m->name)
        return fail(p, n, "a %s needs a name", kind);
    if (!valid_name(m->name, true))
        return fail(p, n, "%s name '%s' is not a Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)", kind, m->name);
    if (!m->help)
        return fail(p, n, "%s '%s' needs help", kind, m->name);
    if (!m->table)
        return fail(p, n, "%s '%s' needs a table (the map to read)", kind, m->name);
    return m->kind == EXP_HISTOGRAM ? check_histogram(p, n, m) : 0;
}

static int parse_metrics_of(struct parse *p, yaml_node_t *n, enum exp_metric_kind kind, struct exp_config *c)
{
    int r = want(p, n, YAML_SEQUENCE_NODE, kind == EXP_HISTOGRAM ? "histograms" : "counters");
    if (r)
        return r;
    struct exp_metric *grown = realloc(c->metrics, (c->nmetrics + seq_len(n) + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    c->metrics = grown;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
        yaml_node_t *mn = node(p, *it);
        struct exp_metric *m = &c->metrics[c->nmetrics++];
        *m = (struct exp_metric){.kind = kind, .bucket_multiplier = 1, .line = line_of(mn)};
        if ((r = each_pair(p, mn, kind == EXP_HISTOGRAM ? "a histogram" : "a counter", metric_pair, m)) ||
            (r = check_metric(p, mn, m)) || (r = check_unique(p, mn, c, m)))
            return r;
    }
    return 0;
}

static int metrics_pair(struct parse *p, const char *key, yaml_node_t *k, yaml_node_t *v, void *obj)
{
    if (!strcmp(key, "counters"))
        return parse_metrics_of(p, v, EXP_COUNTER, obj);
    if (!strcmp(key, "histograms"))
        return parse_metrics_of(p, v, EXP_HISTOGRAM, obj);
    return fail(p, k, "unknown metrics key '%s' (expected counters, histograms)", key);
}

static int root_pair(struct parse *p, const char *key, yaml_node_t *k, yaml_node_t *v, void *obj)
{
    struct exp_config *c = obj;
    if (!strcmp(key, "metrics"))
        return each_pair(p, v, "metrics", metrics_pair, c);
    if (!strcmp(key, "object"))
        return dup_str(p, v, "object", &c->object);
    if (!strcmp(key, "target"))
        return dup_str(p, v, "target", &c->target);
    if (!strcmp(key, "attach"))
        return parse_int(p, v, "attach", 1, &c->attach_pid);
    return fail(p, k, "unknown key '%s' (expected metrics, object, attach, target)", key);
}

/* Loads the YAML document; a syntax error names its line. */
static int load_doc(struct parse *p, FILE *f)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return -ENOMEM;
    yaml_parser_set_input_file(&parser, f);
    int r = 0;
    if (!yaml_parser_load(&parser, &p->doc)) {
        snprintf(p->err, p->errlen, "%s:%zu: bad YAML: %s%s%s", p->path, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "syntax error", parser.context ? " " : "",
                 parser.context ? parser.context : "");
        r = -EINVAL;
    }
    yaml_parser_delete(&parser);
    return r;
}

int exp_config_load(const char *path, struct exp_config *c, char *err, size_t errlen)
{
    struct parse p = {.path = path, .err = err, .errlen = errlen};
    memset(c, 0, sizeof(*c));
    FILE *f = fopen(path, "r");
    if (!f) {
        int r = -errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return r;
    }
    int r = load_doc(&p, f);
    fclose(f);
    if (r)
        return r;
    yaml_node_t *root = yaml_document_get_root_node(&p.doc);
    if (!root) {
        snprintf(err, errlen, "%s:1: the config is empty (expected metrics: counters/histograms)", path);
        r = -EINVAL;
    } else {
        r = each_pair(&p, root, "the config", root_pair, c);
        if (!r && !c->nmetrics)
            r = fail(&p, root, "no metrics: counters or histograms defined");
    }
    yaml_document_delete(&p.doc);
    if (r)
        exp_config_free(c);
    return r;
}

static void free_label(struct exp_label *l)
{
    for (size_t i = 0; i < l->ndecoders; i++) {
        for (size_t j = 0; j < l->decoders[i].npairs; j++) {
            free(l->decoders[i].pairs[j].from);
            free(l->decoders[i].pairs[j].to);
        }
        free(l->decoders[i].pairs);
    }
    free(l->decoders);
    free(l->name);
}

void exp_config_free(struct exp_config *c)
{
    for (size_t i = 0; i < c->nmetrics; i++) {
        struct exp_metric *m = &c->metrics[i];
        for (size_t j = 0; j < m->nlabels; j++)
            free_label(&m->labels[j]);
        free(m->labels);
        free(m->name);
        free(m->help);
        free(m->table);
    }
    free(c->metrics);
    free(c->object);
    free(c->target);
    memset(c, 0, sizeof(*c));
}
