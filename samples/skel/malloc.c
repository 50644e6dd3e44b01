/* skel-malloc: counts malloc() calls and bytes per process with a uprobe
 * on libc's malloc, printed every interval (bcc's memleak/mallocstacks in
 * miniature). The BPF side is samples/malloc/malloc.bpf.c unchanged.
 *
 *   skel-malloc [-p PID] [-b LIBC] [-i SECONDS] [-d SECONDS] [-v]
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "common.h"
#include "malloc.skel.h"

#define DEFAULT_LIBC "/lib/x86_64-linux-gnu/libc.so.6"

struct env {
    struct skel_options common; /* pid 0: every process mapping the library */
    const char *binary;         /* NULL: resolve from the pid */
    long interval;
};

/* What was printed last for one pid, so each interval shows a delta. */
struct seen {
    __u32 pid;
    __u64 calls, bytes;
    char comm[16];
};

struct table {
    struct seen *v;
    size_t len, cap;
};

/* What -h (and a wrong option, on stderr) prints after "Usage: PROG ". */
static const char usage_text[] = "[-p PID] [-b LIBC] [-i SECONDS] [-d SECONDS] [-v]\n"
                                 "Count malloc() calls and bytes per process.\n\n"
                                 "  -p PID      trace only this process (default: every process)\n"
                                 "  -b LIBC     library holding malloc (default: the libc PID maps,\n"
                                 "              else " DEFAULT_LIBC ")\n"
                                 "  -i SECONDS  print interval (default 1)\n"
                                 "  -d SECONDS  stop after this long (default: until Ctrl-C)\n"
                                 "  -v          show libbpf's messages\n";

static int take_tool_option(int opt, const char *arg, void *tool_env)
{
    struct env *env = tool_env;

    switch (opt) {
    case 'b': env->binary = arg; return 0;
    case 'i': return skel_parse_seconds(arg, &env->interval);
    default: return SKEL_OPT_UNKNOWN;
    }
}

static bool is_libc(const char *path)
{
    const char *base = strrchr(path, '/');

    base = base ? base + 1 : path;
    return !strncmp(base, "libc.so", 7) || (!strncmp(base, "libc-", 5) && strstr(base, ".so"));
}

/* Finds the libc that pid has mapped. The path is reached through
 * /proc/PID/root when it does not exist here (a process in a container). */
static int resolve_libc(pid_t pid, char *buf, size_t len)
{
    char maps[64], line[PATH_MAX + 128];
    int ret = -ENOENT;
    FILE *f;

    snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pid);
    f = fopen(maps, "re");
    if (!f)
        return -errno;
    while (fgets(line, sizeof(line), f)) {
        char *path = strchr(line, '/');

        if (!path)
            continue;
        path[strcspn(path, "\n")] = '\0';
        if (!is_libc(path))
            continue;
        if (access(path, R_OK) == 0)
            snprintf(buf, len, "%s", path);
        else
            snprintf(buf, len, "/proc/%d/root%s", (int)pid, path);
        ret = 0;
        break;
    }
    fclose(f);
    return ret;
}

static struct seen *table_get(struct table *t, __u32 pid)
{
    struct seen *s;
    char path[64];
    FILE *f;

    for (size_t i = 0; i < t->len; i++)
        if (t->v[i].pid == pid)
            return &t->v[i];
    if (t->len == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        struct seen *v = realloc(t->v, cap * sizeof(*v));

        if (!v)
            return NULL;
        t->v = v;
        t->cap = cap;
    }
    s = &t->v[t->len++];
    memset(s, 0, sizeof(*s));
    s->pid = pid;
    /* the name is taken when first seen: a process may exit before the end */
    snprintf(path, sizeof(path), "/proc/%u/comm", pid);
    f = fopen(path, "re");
    if (!f || !fgets(s->comm, sizeof(s->comm), f))
        snprintf(s->comm, sizeof(s->comm), "?");
    s->comm[strcspn(s->comm, "\n")] = '\0';
    if (f)
        fclose(f);
    return s;
}

/* One line per process that called malloc since the last print (always one
 * line for -p, zeros included). */
static int print_interval(const struct env *env, struct malloc_bpf *skel, struct table *t)
{
    int calls_fd = bpf_map__fd(skel->maps.malloc_calls);
    int bytes_fd = bpf_map__fd(skel->maps.malloc_bytes);
    __u32 key, next, *prev = NULL;
    bool printed_target = false;
    char ts[16];
    int err;

    skel_strtime(ts, sizeof(ts));
    while ((err = bpf_map_get_next_key(calls_fd, prev, &next)) == 0) {
        __u64 calls = 0, bytes = 0;
        struct seen *s;

        key = next;
        prev = &key;
        if (bpf_map_lookup_elem(calls_fd, &key, &calls))
            continue; /* deleted meanwhile: nothing to show */
        /* the bytes entry lags the calls one by an instant at first */
        bpf_map_lookup_elem(bytes_fd, &key, &bytes);
        s = table_get(t, key);
        if (!s)
            return -ENOMEM;
        if (calls != s->calls || (env->common.pid && key == (__u32)env->common.pid)) {
            printf("%-8s %-7u %-16s %-10llu %-12llu %-12llu %llu\n", ts, key, s->comm,
                   (unsigned long long)(calls - s->calls), (unsigned long long)(bytes - s->bytes),
                   (unsigned long long)calls, (unsigned long long)bytes);
            printed_target |= env->common.pid && key == (__u32)env->common.pid;
        }
        s->calls = calls;
        s->bytes = bytes;
    }
    if (err != -ENOENT)
        return err;
    if (env->common.pid && !printed_target)
        printf("%-8s %-7d %-16s %-10d %-12d %-12d %d\n", ts, (int)env->common.pid, "-", 0, 0, 0, 0);
    return 0;
}

int main(int argc, char **argv)
{
    struct env env = {.interval = 1};
    LIBBPF_OPTS(bpf_uprobe_opts, uopts, .func_name = "malloc", .retprobe = false);
    struct malloc_bpf *skel = NULL;
    struct table seen = {0};
    char libc[PATH_MAX];
    long long deadline = -1, next_print;
    int err;

    if (skel_start(argc, argv, "p:b:i:d:vh", usage_text, &env.common, take_tool_option, &env))
        return 2;

    if (env.binary) {
        snprintf(libc, sizeof(libc), "%s", env.binary);
    } else if (!env.common.pid || resolve_libc(env.common.pid, libc, sizeof(libc))) {
        if (env.common.pid && kill(env.common.pid, 0) && errno == ESRCH) {
            fprintf(stderr, "skel-malloc: no process %d\n", (int)env.common.pid);
            return 1;
        }
        snprintf(libc, sizeof(libc), "%s", DEFAULT_LIBC);
    }

    if (skel_install_signals("skel-malloc"))
        return 1;
    skel = malloc_bpf__open_and_load();
    if (!skel)
        return skel_errno_error("skel-malloc: loading the BPF object") ? 1 : 0;
    skel->links.count_malloc = bpf_program__attach_uprobe_opts(skel->progs.count_malloc,
                                                               env.common.pid ? env.common.pid : -1, libc, 0, &uopts);
    if (!skel->links.count_malloc) {
        err = skel_errno_error("skel-malloc: attaching to malloc in %s", libc);
        goto out;
    }

    if (env.common.pid)
        printf("Tracing malloc() in %s for pid %d... Hit Ctrl-C to end.\n", libc, (int)env.common.pid);
    else
        printf("Tracing malloc() in %s for every process... Hit Ctrl-C to end.\n", libc);
    printf("%-8s %-7s %-16s %-10s %-12s %-12s %s\n", "TIME", "PID", "COMM", "CALLS", "BYTES", "TOTAL_CALLS",
           "TOTAL_BYTES");

    if (env.common.duration)
        deadline = skel_now_ms() + env.common.duration * 1000;
    next_print = skel_now_ms() + env.interval * 1000;
    while (!skel_exiting) {
        long long now = skel_now_ms(), wait = next_print - now;

        if (deadline >= 0 && deadline - now < wait)
            wait = deadline - now;
        if (wait > 0) {
            /* a signal cuts the sleep short (no SA_RESTART) */
            usleep((useconds_t)(wait > 1000 ? 1000 : wait) * 1000);
            continue;
        }
        if (deadline >= 0 && skel_now_ms() >= deadline)
            break;
        err = print_interval(&env, skel, &seen);
        if (err)
            goto fail_print;
        next_print += env.interval * 1000;
    }
    /* the last, partial interval: totals are complete once probes stop */
    bpf_link__destroy(skel->links.count_malloc);
    skel->links.count_malloc = NULL;
    err = print_interval(&env, skel, &seen);
fail_print:
    if (err)
        fprintf(stderr, "skel-malloc: reading the maps: %s\n", strerror(-err));
out:
    malloc_bpf__destroy(skel);
    free(seen.v);
    return err ? 1 : 0;
}
