/* skel-opensnoop: every open()/openat() with its result, from the syscall
 * tracepoints through a BPF ring buffer (libbpf-tools' opensnoop).
 *
 *   skel-opensnoop [-p PID] [-x] [-d SECONDS] [-v]
 */
#include <errno.h>
#include <getopt.h>
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
    pid_t pid;
    bool failed;
    long duration;
    bool verbose;
    bool use_poll;
};

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "Usage: %s [-p PID] [-x] [-d SECONDS] [-P] [-v]\n"
            "Trace open() and openat() system calls.\n\n"
            "  -p PID      trace only this process\n"
            "  -x          show only failed opens\n"
            "  -d SECONDS  stop after this long (default: until Ctrl-C)\n"
            "  -P          wait with poll(2) on the ring buffer's map fd, not epoll\n"
            "  -v          show libbpf's messages\n",
            prog);
}

static int parse_args(int argc, char **argv, struct env *env)
{
    int c;

    while ((c = getopt(argc, argv, "p:xd:Pvh")) != -1) {
        switch (c) {
        case 'p':
            if (skel_parse_pid(optarg, &env->pid))
                goto bad;
            break;
        case 'x': env->failed = true; break;
        case 'd':
            if (skel_parse_seconds(optarg, &env->duration))
                goto bad;
            break;
        case 'v': env->verbose = true; break;
        case 'P': env->use_poll = true; break;
        case 'h': usage(stdout, argv[0]); exit(0);
        default: usage(stderr, argv[0]); return -EINVAL;
        }
    }
    if (optind != argc) {
        usage(stderr, argv[0]);
        return -EINVAL;
    }
    return 0;
bad:
    fprintf(stderr, "%s: invalid argument for -%c: '%s'\n", argv[0], c, optarg);
    return -EINVAL;
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

int main(int argc, char **argv)
{
    struct env env = {0};
    struct opensnoop_bpf *skel = NULL;
    struct ring_buffer *rb = NULL;
    long long deadline = -1;
    int err;

    skel_line_buffer_stdout();
    if (parse_args(argc, argv, &env))
        return 2;
    skel_setup_libbpf(env.verbose);

    err = skel_install_signals();
    if (err) {
        fprintf(stderr, "skel-opensnoop: sigaction: %s\n", strerror(-err));
        return 1;
    }
    skel = opensnoop_bpf__open();
    if (!skel) {
        err = -errno;
        fprintf(stderr, "skel-opensnoop: opening the BPF object: %s\n", strerror(errno));
        goto out;
    }
    skel->rodata->targ_pid = env.pid;
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
        err = -errno;
        fprintf(stderr, "skel-opensnoop: creating the ring buffer: %s\n", strerror(errno));
        goto out;
    }

    printf("%-7s %-16s %3s %3s %s\n", "PID", "COMM", "FD", "ERR", "PATH");
    if (env.duration)
        deadline = skel_now_ms() + env.duration * 1000;
    while (!skel_exiting) {
        long long wait = skel_remaining_ms(deadline, 100);

        if (deadline >= 0 && wait == 0)
            break;
        if (env.use_poll) {
            /* what loaders without libbpf's epoll do: poll the map fd */
            struct pollfd pfd = {bpf_map__fd(skel->maps.events), POLLIN, 0};
            err = poll(&pfd, 1, (int)(wait < 100 ? wait : 100));
            err = err < 0 ? -errno : err > 0 ? ring_buffer__consume(rb) : 0;
        } else {
            err = ring_buffer__poll(rb, (int)(wait < 100 ? wait : 100));
        }
        if (err == -EINTR) {
            err = 0;
            continue;
        }
        if (err < 0) {
            fprintf(stderr, "skel-opensnoop: polling the ring buffer: %s\n", strerror(-err));
            goto out;
        }
        err = 0;
    }
    /* whatever is still queued when the time is up */
    err = ring_buffer__consume(rb);
    err = err < 0 ? err : 0;
out:
    ring_buffer__free(rb);
    opensnoop_bpf__destroy(skel);
    return err ? 1 : 0;
}
