/* skel-opensnoop: every open()/openat() with its result, from the syscall
 * tracepoints through a BPF ring buffer (libbpf-tools' opensnoop).
 *
 *   skel-opensnoop [-p PID] [-x] [-d SECONDS] [-v]
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "common.h"
#include "opensnoop.skel.h"

#define NAME_MAX 255

/* Must match struct event in opensnoop.bpf.c. */
struct event {
    __u32 pid, tid;
    int ret;
    int flags;
    char comm[16];
    char fname[NAME_MAX + 1];
};

struct env {
    struct skel_options common;
    bool failed;
    bool use_poll;
};

/* What the wait loop needs: the ring buffer and how to wait on it. */
struct events_reader {
    struct ring_buffer *rb;
    int map_fd;
    bool use_poll;
};

/* What -h (and a wrong option, on stderr) prints after "Usage: PROG ". */
static const char usage_text[] = "[-p PID] [-x] [-d SECONDS] [-P] [-v]\n"
                                 "Trace open() and openat() system calls.\n\n"
                                 "  -p PID      trace only this process\n"
                                 "  -x          show only failed opens\n"
                                 "  -d SECONDS  stop after this long (default: until Ctrl-C)\n"
                                 "  -P          wait with poll(2) on the ring buffer's map fd, not epoll\n"
                                 "  -v          show libbpf's messages\n";

static int take_tool_option(int opt, const char *arg, void *tool_env)
{
    struct env *env = tool_env;

    (void)arg;
    switch (opt) {
    case 'x': env->failed = true; return 0;
    case 'P': env->use_poll = true; return 0;
    default: return SKEL_OPT_UNKNOWN;
    }
}

static int handle_event(void *ctx, void *data, size_t len)
{
    const struct event *e = data;
    int fd, err;

    (void)ctx;
    if (len < sizeof(*e))
        return 0;
    fd = e->ret >= 0 ? e->ret : -1;
    err = e->ret >= 0 ? 0 : -e->ret;
    /* the strings come from BPF already terminated, but do not trust it */
    printf("%-7u %-16.16s %3d %3d %.*s\n", e->pid, e->comm, fd, err, (int)sizeof(e->fname), e->fname);
    return 0;
}

static int poll_events(void *ctx, int timeout_ms)
{
    const struct events_reader *r = ctx;
    struct pollfd pfd = {r->map_fd, POLLIN, 0};
    int n;

    if (!r->use_poll)
        return ring_buffer__poll(r->rb, timeout_ms);
    /* what loaders without libbpf's epoll do: poll the map fd */
    n = poll(&pfd, 1, timeout_ms);
    return n < 0 ? -errno : n > 0 ? ring_buffer__consume(r->rb) : 0;
}

int main(int argc, char **argv)
{
    struct env env = {0};
    struct opensnoop_bpf *skel = NULL;
    struct ring_buffer *rb = NULL;
    struct events_reader reader;
    int err;

    if (skel_start(argc, argv, "p:xd:Pvh", usage_text, &env.common, take_tool_option, &env))
        return 2;
    if (skel_install_signals("skel-opensnoop"))
        return 1;
    skel = opensnoop_bpf__open();
    if (!skel)
        return skel_errno_error("skel-opensnoop: opening the BPF object") ? 1 : 0;
    skel->rodata->targ_pid = env.common.pid;
    skel->rodata->targ_failed = env.failed;
    err = opensnoop_bpf__load(skel);
    if (err) {
        fprintf(stderr, "skel-opensnoop: loading the BPF object: %s\n", strerror(-err));
        goto out;
    }
    err = opensnoop_bpf__attach(skel);
    if (err) {
        fprintf(stderr, "skel-opensnoop: attaching the tracepoints: %s%s\n", strerror(-err),
                err == -ENOENT ? " (is tracefs mounted on /sys/kernel/tracing?)" : "");
        goto out;
    }
    rb = ring_buffer__new(bpf_map__fd(skel->maps.events), handle_event, NULL, NULL);
    if (!rb) {
        err = skel_errno_error("skel-opensnoop: creating the ring buffer");
        goto out;
    }

    printf("%-7s %-16s %3s %3s %s\n", "PID", "COMM", "FD", "ERR", "PATH");
    reader = (struct events_reader){rb, bpf_map__fd(skel->maps.events), env.use_poll};
    err = skel_poll_for(env.common.duration, poll_events, &reader);
    if (err) {
        fprintf(stderr, "skel-opensnoop: polling the ring buffer: %s\n", strerror(-err));
        goto out;
    }
    /* whatever is still queued when the time is up */
    err = ring_buffer__consume(rb);
    err = err < 0 ? err : 0;
out:
    ring_buffer__free(rb);
    opensnoop_bpf__destroy(skel);
    return err ? 1 : 0;
}
