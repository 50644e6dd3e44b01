/* Runtime metrics from bpfgraftd's list calls (see runtime.h). */
#include "runtime.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

/* A number an answer holds (field NULL: the constant 1 of an info metric),
 * exported as name divided by divisor (ms, us, ns to seconds). */
struct field_metric {
    const char *field, *name, *type, *help;
    double divisor;
};

static const struct field_metric status_metrics[] = {
    {"uptime_ms", "bpfgraft_uptime_seconds", "gauge", "Time since bpfgraftd started.", 1e3},
    {"objects", "bpfgraft_objects", "gauge", "BPF objects loaded.", 1},
    {"programs", "bpfgraft_programs", "gauge", "Programs loaded.", 1},
    {"maps", "bpfgraft_maps", "gauge", "Maps.", 1},
    {"targets", "bpfgraft_targets", "gauge", "Processes attached.", 1},
    {"clients", "bpfgraft_clients", "gauge", "Clients connected to the control socket.", 1},
    {"stats_enabled", "bpfgraft_stats_enabled", "gauge", "1 while program run counts and times are collected.", 1},
};

static const struct field_metric stop_metrics[] = {
    {"count", "bpfgraft_ptrace_stops_total", "counter", "Ptrace stops of target threads by bpfgraftd.", 1},
    {"total_us", "bpfgraft_ptrace_stop_seconds_total", "counter", "Time target threads spent in those stops.", 1e6},
    {"longest_us", "bpfgraft_ptrace_stop_longest_seconds", "gauge", "The longest of those stops.", 1e6},
};

static const char *const prog_labels[] = {"id", "name", NULL};
static const struct field_metric prog_metrics[] = {
    {NULL, "bpfgraft_program_info", "gauge", "A loaded program: its object, kind and where it runs.", 1},
    {"run_cnt", "bpfgraft_program_runs_total", "counter", "Runs of the program (while statistics are on).", 1},
    {"run_time_ns", "bpfgraft_program_run_seconds_total", "counter",
     "Time spent running the program (while statistics are on).", 1e9},
};
static const char *const prog_info_labels[] = {"id", "name", "object", "kind", "runs", NULL};

static const char *const target_labels[] = {"pid", "comm", NULL};
static const struct field_metric target_metrics[] = {
    {"syscall_programs", "bpfgraft_target_syscall_programs", "gauge", "Syscall programs in the process.", 1},
};

static const char *const hook_labels[] = {"pid", "comm", "prog", "address", "kind", NULL};
static const struct field_metric hook_metrics[] = {
    {"hits", "bpfgraft_hook_hits_total", "counter", "Times the hook ran its programs.", 1},
    {"misses", "bpfgraft_hook_misses_total", "counter", "Times the hook could not run its programs.", 1},
};

static const char *const map_labels[] = {"id", "name", "type", NULL};
static const struct field_metric map_metrics[] = {
    {"max_entries", "bpfgraft_map_max_entries", "gauge", "The map's capacity.", 1},
    {"entries", "bpfgraft_map_entries", "gauge", "Entries in use.", 1},
    {"lost", "bpfgraft_map_lost_total", "counter", "Records a ring or perf buffer dropped.", 1},
};

/* One listed thing and the labels it gives; parent adds its own first
 * (a hook's process). */
struct item {
    const msgpack_object *obj, *parent;
};

struct item_set {
    const struct item *items;
    size_t n;
    const char *const *labels;        /* fields of obj (after parent's) */
    const char *const *parent_labels; /* fields of parent, or NULL */
};

static bool number_of(const msgpack_object *o, const char *field, double *v)
{
    const msgpack_object *x = field ? obj_get(o, field) : NULL;
    if (!field) {
        *v = 1;
        return true;
    }
    if (!x)
        return false;
    if (x->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *v = (double)x->via.u64;
    else if (x->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = (double)x->via.i64;
    else if (x->type == MSGPACK_OBJECT_FLOAT32 || x->type == MSGPACK_OBJECT_FLOAT64)
        *v = x->via.f64;
    else if (x->type == MSGPACK_OBJECT_BOOLEAN)
        *v = x->via.boolean;
    else
        return false;
    return true;
}

static void add_labels(struct sbuf *sb, const msgpack_object *o, const char *const *fields)
{
    char hex[24];
    uint64_t addr;
    for (; fields && *fields; fields++) {
        bool is_addr = !strcmp(*fields, "address") && obj_u64(o, *fields, &addr);
        if (is_addr) /* code addresses read as the maps and disassembly show them */
            snprintf(hex, sizeof(hex), "0x%" PRIx64, addr);
        prom_label(sb, *fields, is_addr ? hex : obj_str(o, *fields));
    }
}

static void write_sample(struct sbuf *out, const struct field_metric *m, const char *labels, const msgpack_object *o,
                         double v)
{
    const msgpack_object *x = m->field ? obj_get(o, m->field) : NULL;
    if (m->divisor == 1 && x && x->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        prom_sample_u64(out, m->name, labels, x->via.u64); /* exact beyond 2^53 */
    else
        prom_sample(out, m->name, labels, v / m->divisor);
}

/* The fields of one answer (server.status, its stops), unlabelled. */
static void write_fields(struct sbuf *out, const msgpack_object *o, const struct field_metric *ms, size_t n)
{
    for (size_t i = 0; o && i < n; i++) {
        double v;
        if (!number_of(o, ms[i].field, &v))
            continue;
        prom_family(out, ms[i].name, ms[i].type, ms[i].help);
        write_sample(out, &ms[i], NULL, o, v);
    }
}

static void write_labelled(struct sbuf *out, const struct field_metric *m, const struct item_set *s,
                           const char *const *labels)
{
    bool header = false;
    struct sbuf lb = {0};
    for (size_t i = 0; i < s->n; i++) {
        double v;
        if (!number_of(s->items[i].obj, m->field, &v))
            continue;
        if (!header)
            prom_family(out, m->name, m->type, m->help);
        header = true;
        sbuf_reset(&lb);
        if (s->parent_labels)
            add_labels(&lb, s->items[i].parent, s->parent_labels);
        add_labels(&lb, s->items[i].obj, labels);
        write_sample(out, m, lb.s, s->items[i].obj, v);
    }
    sbuf_free(&lb);
}

/* Each metric over every item that has its field; none: no family. */
static void write_set(struct sbuf *out, const struct item_set *s, const struct field_metric *ms, size_t n,
                      const char *const *info_labels)
{
    for (size_t i = 0; i < n; i++)
        write_labelled(out, &ms[i], s, ms[i].field ? s->labels : info_labels);
}

static size_t array_len(const msgpack_object *a)
{
    return a && a->type == MSGPACK_OBJECT_ARRAY ? a->via.array.size : 0;
}

/* The list's elements as items; NULL when empty (or out of memory). */
static struct item *list_items(const msgpack_object *list, size_t *n)
{
    *n = array_len(list);
    struct item *items = *n ? calloc(*n, sizeof(*items)) : NULL;
    for (size_t i = 0; items && i < *n; i++)
        items[i].obj = &list->via.array.ptr[i];
    if (!items)
        *n = 0;
    return items;
}

/* Every hook of every target, with its target as parent. */
static struct item *hook_items(const msgpack_object *targets, size_t *n)
{
    size_t total = 0, k = 0;
    for (size_t i = 0; i < array_len(targets); i++)
        total += array_len(obj_get(&targets->via.array.ptr[i], "hooks"));
    struct item *items = total ? calloc(total, sizeof(*items)) : NULL;
    for (size_t i = 0; items && i < array_len(targets); i++) {
        const msgpack_object *t = &targets->via.array.ptr[i], *hooks = obj_get(t, "hooks");
        for (size_t j = 0; j < array_len(hooks); j++)
            items[k++] = (struct item){&hooks->via.array.ptr[j], t};
    }
    *n = items ? total : 0;
    return items;
}

static void write_list(struct sbuf *out, const msgpack_object *list, const char *const *labels,
                       const struct field_metric *ms, size_t n, const char *const *info_labels)
{
    struct item_set s = {.labels = labels};
    struct item *items = list_items(list, &s.n);
    s.items = items;
    write_set(out, &s, ms, n, info_labels);
    free(items);
}

static void write_hooks(struct sbuf *out, const msgpack_object *targets)
{
    struct item_set s = {.labels = hook_labels + 2, .parent_labels = target_labels};
    struct item *items = hook_items(targets, &s.n);
    s.items = items;
    write_set(out, &s, hook_metrics, sizeof(hook_metrics) / sizeof(hook_metrics[0]), NULL);
    free(items);
}

/* How many hooks each process has. */
static void write_hook_counts(struct sbuf *out, const msgpack_object *targets)
{
    if (!targets)
        return;
    prom_family(out, "bpfgraft_target_hooks", "gauge", "Hooks (a program at an address) in an attached process.");
    struct sbuf lb = {0};
    for (size_t i = 0; i < array_len(targets); i++) {
        const msgpack_object *t = &targets->via.array.ptr[i];
        sbuf_reset(&lb);
        add_labels(&lb, t, target_labels);
        prom_sample_u64(out, "bpfgraft_target_hooks", lb.s, array_len(obj_get(t, "hooks")));
    }
    sbuf_free(&lb);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

void exp_runtime_write(const struct exp_runtime_state *s, struct sbuf *out)
{
    prom_family(out, "bpfgraft_up", "gauge", "1 when bpfgraftd answered this scrape.");
    prom_sample(out, "bpfgraft_up", NULL, s->status ? 1 : 0);
    write_fields(out, s->status, status_metrics, N(status_metrics));
    write_fields(out, s->status ? obj_get(s->status, "stops") : NULL, stop_metrics, N(stop_metrics));
    write_list(out, s->progs, prog_labels, prog_metrics, N(prog_metrics), prog_info_labels);
    write_hook_counts(out, s->targets);
    write_list(out, s->targets, target_labels, target_metrics, N(target_metrics), NULL);
    write_hooks(out, s->targets);
    write_list(out, s->maps, map_labels, map_metrics, N(map_metrics), NULL);
}
