/* Python function calls of running python3.11 processes, like bcc's
 * ucalls/uflow: per function (file, name, first line) the calls, and the
 * latency of those whose entry was seen, from python's USDT probes.
 *
 * Python 3.11 inlines Python-to-Python calls in its eval loop: there
 * function__entry fires only while the `line` probe is enabled (the loop
 * then takes its tracing path, where every frame start, generator resumes
 * included, fires it), while function__return fires for every return and
 * yield. So `line` gets an empty program: attaching it raises its
 * semaphore (samples/pyflow/README.md says what that costs). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

#define NAME_LEN 64
#define MAX_DEPTH 128 /* frames timed per thread; deeper ones are counted only */

struct fkey {
    char file[NAME_LEN];
    char func[NAME_LEN];
};

struct fstat {
    u64 calls; /* returns (and yields) */
    u64 timed; /* of which the entry was seen: the latency below */
    u64 total_ns;
    u64 max_ns;
    u32 line; /* the function's first line (the least of its entries') */
    u32 pad;
};

struct frame {
    u64 ts;
    u32 line;
    u32 pad;
};

struct pystack {
    u32 depth; /* frames entered and not returned, deeper than MAX_DEPTH too */
    u32 pad;
    struct frame frames[MAX_DEPTH];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, u32); /* thread id */
    __type(value, struct pystack);
} stacks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __type(key, struct fkey);
    __type(value, struct fstat);
} calls SEC(".maps");

static struct pystack empty_stack;
static struct fstat empty_stat;

/* map[key], made from init if missing. */
static __always_inline void *lookup_or_init(void *map, const void *key, const void *init)
{
    void *v = bpf_map_lookup_elem(map, key);
    if (v)
        return v;
    bpf_map_update_elem(map, key, init, BPF_NOEXIST);
    return bpf_map_lookup_elem(map, key);
}

SEC("usdt//usr/bin/python3.11:python:function__entry")
int BPF_USDT(py_entry, const char *file, const char *func, int line)
{
    u32 tid = (u32)bpf_get_current_pid_tgid();
    struct pystack *st = lookup_or_init(&stacks, &tid, &empty_stack);
    if (!st)
        return 0;
    u32 d = st->depth;
    if (d < MAX_DEPTH) {
        st->frames[d].ts = bpf_ktime_get_ns();
        st->frames[d].line = (u32)line;
    }
    st->depth = d + 1;
    return 0;
}

static struct fstat *stat_of(const char *file, const char *func)
{
    struct fkey key = {};
    bpf_probe_read_user_str(key.file, sizeof(key.file), file);
    bpf_probe_read_user_str(key.func, sizeof(key.func), func);
    return lookup_or_init(&calls, &key, &empty_stat);
}

SEC("usdt//usr/bin/python3.11:python:function__return")
int BPF_USDT(py_return, const char *file, const char *func, int line)
{
    u64 now = bpf_ktime_get_ns();
    struct fstat *fs = stat_of(file, func);
    if (!fs)
        return 0;
    __sync_fetch_and_add(&fs->calls, 1);
    struct pystack *st = bpf_map_lookup_elem(&stacks, &(u32){(u32)bpf_get_current_pid_tgid()});
    if (!st || st->depth == 0)
        return 0; /* entered before the probes were attached */
    u32 d = --st->depth;
    if (d >= MAX_DEPTH)
        return 0;
    u64 ns = now - st->frames[d].ts;
    __sync_fetch_and_add(&fs->timed, 1);
    __sync_fetch_and_add(&fs->total_ns, ns);
    if (ns > fs->max_ns)
        fs->max_ns = ns;
    if (!fs->line || st->frames[d].line < fs->line)
        fs->line = st->frames[d].line; /* a generator's resumes: its first line is the least */
    return 0;
}

/* Attached for its semaphore only (see above). */
SEC("usdt//usr/bin/python3.11:python:line")
int py_line(struct pt_regs *ctx)
{
    return 0;
}
