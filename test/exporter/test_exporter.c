/* bpfgraft-exporter's parts without a server: the YAML config (and its
 * errors' lines), where labels lie in a key (sizes, BTF), the decoders,
 * and the text format's numbers and escaping. */
#include <bpf/btf.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "labels.h"
#include "prom.h"

static char g_path[64];

/* Writes text to a temporary file and loads it as a config. */
static int load_text(const char *text, struct exp_config *c, char *err, size_t errlen)
{
    snprintf(g_path, sizeof(g_path), "/tmp/bpfgraft-exporter-test-XXXXXX");
    int fd = mkstemp(g_path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    int r = exp_config_load(g_path, c, err, errlen);
    unlink(g_path);
    return r;
}

static const char histogram_yaml[] = "metrics:\n"
                                     "  histograms:\n"
                                     "    - name: io_seconds\n"
                                     "      help: IO latency\n"
                                     "      table: io\n"
                                     "      bucket_type: linear\n"
                                     "      bucket_min: 1\n"
                                     "      bucket_max: 10\n"
                                     "      bucket_multiplier: 0.5\n"
                                     "      labels:\n"
                                     "        - name: op\n"
                                     "          size: 1\n"
                                     "          padding: 3\n"
                                     "          decoders:\n"
                                     "            - name: uint\n"
                                     "            - name: static_map\n"
                                     "              static_map: {1: read, 2: write}\n"
                                     "        - name: bucket\n"
                                     "          size: 4\n"
                                     "          decoders: [{name: uint}]\n";

Test(config, histogram_fields)
{
    struct exp_config c;
    char err[512] = "";
    cr_assert_eq(load_text(histogram_yaml, &c, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(c.nmetrics, 1);
    const struct exp_metric *m = &c.metrics[0];
    cr_assert_eq(m->kind, EXP_HISTOGRAM);
    cr_assert_str_eq(m->name, "io_seconds");
    cr_assert_str_eq(m->table, "io");
    cr_assert_eq(m->bucket_type, EXP_BUCKET_LINEAR);
    cr_assert_eq(m->bucket_min, 1);
    cr_assert_eq(m->bucket_max, 10);
    cr_assert_float_eq(m->bucket_multiplier, 0.5, 1e-12);
    cr_assert_eq(m->nlabels, 2);
    cr_assert_eq(m->labels[0].padding, 3);
    cr_assert_eq(m->labels[0].ndecoders, 2);
    cr_assert_eq(m->labels[0].decoders[1].kind, EXP_DEC_STATIC_MAP);
    cr_assert_eq(m->labels[0].decoders[1].npairs, 2);
    cr_assert_str_eq(m->labels[0].decoders[1].pairs[1].to, "write");
    cr_assert_eq(m->labels[1].line, 18);
    exp_config_free(&c);
}

/* The error names the file and line, and says what is wrong. */
static void expect_error(const char *text, int line, const char *what)
{
    struct exp_config c;
    char err[512] = "", want[600];
    cr_assert_eq(load_text(text, &c, err, sizeof(err)), -EINVAL, "accepted: %s", text);
    snprintf(want, sizeof(want), "%s:%d: ", g_path, line);
    cr_assert(strstr(err, want) && strstr(err, what), "error '%s' lacks '%s' and '%s'", err, want, what);
    cr_assert_eq(c.nmetrics, 0);
}

Test(config, errors_name_the_line)
{
    expect_error("metrics:\n  counters: [\n", 3, "bad YAML");
    expect_error("", 1, "empty");
    expect_error("metrics:\n  counters:\n    - name: a_total\n      help: h\n", 3, "needs a table");
    expect_error("metrics:\n  counters:\n    - name: 9bad\n      help: h\n      table: t\n", 3, "not a Prometheus");
    expect_error("metrics:\n  counters:\n    - name: a\n      help: h\n      table: t\n      labels:\n"
                 "        - name: x\n          size: 4\n          decoders: [{name: nope}]\n",
                 9, "unknown decoder 'nope'");
    expect_error("metrics:\n  counters:\n    - name: a\n      help: h\n      table: t\n      labels:\n"
                 "        - name: x\n          size: -1\n          decoders: [{name: uint}]\n",
                 8, "size must be an integer >= 1");
    expect_error("metrics:\n  histograms:\n    - name: h\n      help: h\n      table: t\n      bucket_max: 0\n"
                 "      labels: [{name: bucket, size: 4, decoders: [{name: uint}]}]\n",
                 3, "bucket_max (0) must be above bucket_min (0)");
    expect_error("programs:\n  - name: x\n", 1, "unknown key 'programs'");
}

static struct exp_label uint_label(const char *name, uint32_t size, struct exp_decoder *d, size_t nd)
{
    return (struct exp_label){.name = (char *)name, .size = size, .decoders = d, .ndecoders = nd};
}

Test(labels, spans_by_size_cover_the_key)
{
    struct exp_decoder u = {.kind = EXP_DEC_UINT};
    struct exp_label ls[] = {uint_label("a", 1, &u, 1), uint_label("b", 4, &u, 1)};
    ls[0].padding = 3;
    struct exp_metric m = {.name = "m", .table = "t", .labels = ls, .nlabels = 2};
    struct exp_label_span s[2];
    char err[256];
    cr_assert_eq(exp_label_spans(&m, NULL, 0, 8, s, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(s[1].off, 4);
    cr_assert_eq(s[1].size, 4);
    cr_assert_eq(exp_label_spans(&m, NULL, 0, 12, s, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "cover 8 bytes") && strstr(err, "12-byte keys"), "%s", err);
}

Test(labels, spans_by_btf_fields)
{
    struct btf *btf = btf__new_empty();
    int u32 = btf__add_int(btf, "unsigned int", 4, 0);
    int ch = btf__add_int(btf, "char", 1, BTF_INT_CHAR);
    int arr = btf__add_array(btf, u32, ch, 16);
    int st = btf__add_struct(btf, "key", 20);
    btf__add_field(btf, "pid", u32, 0, 0);
    btf__add_field(btf, "comm", arr, 32, 0);
    struct exp_decoder u = {.kind = EXP_DEC_UINT};
    struct exp_label ls[] = {uint_label("comm", 0, &u, 1), uint_label("pid", 0, &u, 1)};
    struct exp_metric m = {.name = "m", .table = "t", .labels = ls, .nlabels = 2};
    struct exp_label_span s[2];
    char err[256];
    cr_assert_eq(exp_label_spans(&m, btf, (uint32_t)st, 20, s, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(s[0].off, 4);
    cr_assert_eq(s[0].size, 16);
    cr_assert_eq(s[1].off, 0);
    cr_assert_eq(s[1].size, 4);
    ls[1].name = "tid";
    cr_assert_eq(exp_label_spans(&m, btf, (uint32_t)st, 20, s, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "no byte-sized field tid"), "%s", err);
    btf__free(btf);
}

static const char *decode(struct exp_label_cache *c, struct exp_decoder *d, size_t nd, const void *data, size_t n,
                          struct sbuf *out)
{
    struct exp_label l = uint_label("x", (uint32_t)n, d, nd);
    int r = exp_label_decode(c, &l, data, n, out);
    return r ? NULL : out->s;
}

Test(labels, decoders_chain)
{
    struct exp_label_cache *c = exp_label_cache_new();
    struct sbuf out = {0};
    struct exp_map_pair pairs[] = {{"1", "read"}, {"2", "write"}};
    struct exp_decoder um[] = {{.kind = EXP_DEC_UINT}, {.kind = EXP_DEC_STATIC_MAP, .pairs = pairs, .npairs = 2}};
    uint32_t v = 2;
    cr_assert_str_eq(decode(c, um, 1, &v, 4, &out), "2");
    cr_assert_str_eq(decode(c, um, 2, &v, 4, &out), "write");
    v = 7;
    cr_assert_str_eq(decode(c, um, 2, &v, 4, &out), "unknown:7");
    um[1].allow_unknown = true;
    cr_assert_str_eq(decode(c, um, 2, &v, 4, &out), "7");
    cr_assert_null(decode(c, um, 1, &v, 3, &out), "uint of 3 bytes");
    cr_assert(strstr(out.s, "1, 2, 4 or 8 bytes"), "%s", out.s);

    struct exp_decoder s = {.kind = EXP_DEC_STRING}, h = {.kind = EXP_DEC_HEX};
    cr_assert_str_eq(decode(c, &s, 1, "bash\0\0\0\0", 8, &out), "bash");
    cr_assert_str_eq(decode(c, &s, 1, "a\nb", 3, &out), "a?b");
    cr_assert_str_eq(decode(c, &h, 1, "\x01\xab", 2, &out), "01ab");

    struct exp_decoder p = {.kind = EXP_DEC_PID};
    char comm[32] = "";
    FILE *f = fopen("/proc/self/comm", "r");
    cr_assert(f && fgets(comm, sizeof(comm), f));
    fclose(f);
    comm[strcspn(comm, "\n")] = 0;
    uint32_t pid = (uint32_t)getpid();
    cr_assert_str_eq(decode(c, &p, 1, &pid, 4, &out), comm);
    pid = 0x7ffffff0; /* above pid_max's limit: no such process */
    cr_assert_str_eq(decode(c, &p, 1, &pid, 4, &out), "unknown:2147483632");
    sbuf_free(&out);
    exp_label_cache_free(c);
}

static const char *float_text(double v, struct sbuf *sb)
{
    sbuf_reset(sb);
    prom_float(sb, v);
    return sb->s;
}

Test(prom, shortest_floats_and_escaping)
{
    struct sbuf sb = {0};
    cr_assert_str_eq(float_text(1e-9, &sb), "1e-09");
    cr_assert_str_eq(float_text(0x1p31 * 1e-9, &sb), "2.147483648");
    cr_assert_str_eq(float_text(0.1 + 0.2, &sb), "0.30000000000000004");
    cr_assert_str_eq(float_text(5036 / 1000.0, &sb), "5.036");
    cr_assert_str_eq(float_text(1.0 / 0.0, &sb), "+Inf");
    sbuf_reset(&sb);
    prom_label(&sb, "a", "x\"y\\z\nw");
    prom_label(&sb, "b", "");
    cr_assert_str_eq(sb.s, "a=\"x\\\"y\\\\z\\nw\",b=\"\"");
    sbuf_reset(&sb);
    prom_family(&sb, "m_total", "counter", "two\nlines \\ here");
    cr_assert_str_eq(sb.s, "# HELP m_total two\\nlines \\\\ here\n# TYPE m_total counter\n");
    sbuf_free(&sb);
}
