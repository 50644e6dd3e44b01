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
#include "rpc.h"
#include "runtime.h"

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
    expect_error(
        "metrics:\n  counters:\n    - {name: a, help: h, table: t}\n  histograms:\n"
        "    - {name: a, help: h, table: t, bucket_max: 2, labels: [{name: b, size: 4, decoders: [{name: uint}]}]}\n",
        5, "metric 'a' is defined twice (first on line 3)");
    expect_error("metrics:\n  histograms:\n    - name: h\n      help: h\n      table: t\n      bucket_max: 2\n"
                 "      labels:\n        - {name: le, size: 4, decoders: [{name: uint}]}\n"
                 "        - {name: bucket, size: 4, decoders: [{name: uint}]}\n",
                 3, "label 'le' is the buckets' own");
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

/* The runtime's answers as msgpack objects, with or without the
 * statistics fields (run_cnt, hits, entries, lost, stats_enabled). */
struct answers {
    msgpack_sbuffer buf[4];
    msgpack_unpacked un[4];
};

static void pack_kv_u64(msgpack_packer *pk, const char *k, uint64_t v)
{
    bpfg_pack_cstr(pk, k);
    msgpack_pack_uint64(pk, v);
}

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    bpfg_pack_cstr(pk, k);
    bpfg_pack_cstr(pk, v);
}

static void pack_answers(msgpack_packer pk[4], bool stats)
{
    msgpack_pack_map(&pk[0], stats ? 2 : 1); /* server.status */
    pack_kv_u64(&pk[0], "programs", 1);
    if (stats) {
        bpfg_pack_cstr(&pk[0], "stats_enabled");
        msgpack_pack_true(&pk[0]);
    }
    msgpack_pack_array(&pk[1], 1); /* prog.list */
    msgpack_pack_map(&pk[1], stats ? 4 : 2);
    pack_kv_u64(&pk[1], "id", 7);
    pack_kv_str(&pk[1], "name", "count");
    if (stats) {
        pack_kv_u64(&pk[1], "run_cnt", 42);
        pack_kv_u64(&pk[1], "run_time_ns", 1500000000);
    }
    msgpack_pack_array(&pk[2], 1); /* target.list */
    msgpack_pack_map(&pk[2], 3);
    pack_kv_u64(&pk[2], "pid", 99);
    pack_kv_str(&pk[2], "comm", "app");
    bpfg_pack_cstr(&pk[2], "hooks");
    msgpack_pack_array(&pk[2], 1);
    msgpack_pack_map(&pk[2], stats ? 5 : 4);
    pack_kv_u64(&pk[2], "prog", 7);
    pack_kv_u64(&pk[2], "address", 0x401000);
    pack_kv_str(&pk[2], "kind", "uprobe");
    pack_kv_u64(&pk[2], "misses", 2);
    if (stats)
        pack_kv_u64(&pk[2], "hits", 40);
    msgpack_pack_array(&pk[3], 1); /* map.list */
    msgpack_pack_map(&pk[3], stats ? 6 : 4);
    pack_kv_u64(&pk[3], "id", 3);
    pack_kv_str(&pk[3], "name", "events");
    pack_kv_str(&pk[3], "type", "ringbuf");
    pack_kv_u64(&pk[3], "max_entries", 4096);
    if (stats) {
        pack_kv_u64(&pk[3], "entries", 0);
        pack_kv_u64(&pk[3], "lost", 5);
    }
}

static void runtime_text(bool stats, struct sbuf *out)
{
    struct answers a;
    msgpack_packer pk[4];
    for (int i = 0; i < 4; i++) {
        msgpack_sbuffer_init(&a.buf[i]);
        msgpack_packer_init(&pk[i], &a.buf[i], msgpack_sbuffer_write);
    }
    pack_answers(pk, stats);
    const msgpack_object *o[4];
    for (int i = 0; i < 4; i++) {
        msgpack_unpacked_init(&a.un[i]);
        cr_assert_eq(msgpack_unpack_next(&a.un[i], a.buf[i].data, a.buf[i].size, NULL), MSGPACK_UNPACK_SUCCESS);
        o[i] = &a.un[i].data;
    }
    struct exp_runtime_state s = {o[0], o[1], o[2], o[3]};
    exp_runtime_write(&s, out);
    for (int i = 0; i < 4; i++) {
        msgpack_unpacked_destroy(&a.un[i]);
        msgpack_sbuffer_destroy(&a.buf[i]);
    }
}

static const char *const stats_lines[] = {
    "bpfgraft_stats_enabled 1\n",
    "bpfgraft_program_runs_total{id=\"7\",name=\"count\"} 42\n",
    "bpfgraft_program_run_seconds_total{id=\"7\",name=\"count\"} 1.5\n",
    "bpfgraft_hook_hits_total{pid=\"99\",comm=\"app\",prog=\"7\",address=\"0x401000\",kind=\"uprobe\"} 40\n",
    "bpfgraft_map_entries{id=\"3\",name=\"events\",type=\"ringbuf\"} 0\n",
    "bpfgraft_map_lost_total{id=\"3\",name=\"events\",type=\"ringbuf\"} 5\n",
};

Test(runtime, statistics_when_the_server_returns_them)
{
    struct sbuf with = {0}, without = {0};
    runtime_text(true, &with);
    runtime_text(false, &without);
    for (size_t i = 0; i < sizeof(stats_lines) / sizeof(stats_lines[0]); i++) {
        cr_assert(strstr(with.s, stats_lines[i]), "missing %s in:\n%s", stats_lines[i], with.s);
        char family[96];
        snprintf(family, sizeof(family), "# TYPE %.*s ", (int)strcspn(stats_lines[i], "{ "), stats_lines[i]);
        cr_assert_null(strstr(without.s, family), "%s without the field:\n%s", family, without.s);
    }
    const char *misses =
        "bpfgraft_hook_misses_total{pid=\"99\",comm=\"app\",prog=\"7\",address=\"0x401000\",kind=\"uprobe\"} 2\n";
    cr_assert(strstr(with.s, misses) && strstr(without.s, misses), "%s", without.s);
    cr_assert(strstr(without.s, "bpfgraft_map_max_entries{id=\"3\",name=\"events\",type=\"ringbuf\"} 4096\n"));
    cr_assert(strstr(without.s, "bpfgraft_up 1\n"));
    sbuf_free(&with);
    sbuf_free(&without);
}

Test(runtime, server_away)
{
    struct sbuf out = {0};
    struct exp_runtime_state s = {0};
    exp_runtime_write(&s, &out);
    cr_assert(strstr(out.s, "bpfgraft_up 0\n"), "%s", out.s);
    cr_assert_null(strstr(out.s, "bpfgraft_programs"), "%s", out.s);
    sbuf_free(&out);
}
