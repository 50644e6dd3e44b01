/* skel-bashreadline: every line interactive bash reads, from a uretprobe
 * on readline() through a perf buffer (libbpf-tools' bashreadline).
 *
 *   skel-bashreadline [-p PID] [-b BINARY | -s SHLIB] [-d SECONDS] [-v]
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "../bashreadline/line_event.h"
#include "common.h"
#include "bashreadline.skel.h"

#define DEFAULT_BINARY "/bin/bash"

struct env {
    pid_t pid;
    const char *binary;
    long duration;
    bool verbose;
};

static void usage(FILE *out, const char *prog)
{
    fprintf(out,
            "Usage: %s [-p PID] [-b BINARY | -s SHLIB] [-d SECONDS] [-v]\n"
            "Print the commands entered in interactive bash shells.\n\n"
            "  -p PID      trace only this bash process\n"
            "  -b BINARY   binary defining readline (default " DEFAULT_BINARY ")\n"
            "  -s SHLIB    the same, for a bash linked against libreadline.so\n"
            "  -d SECONDS  stop after this long (default: until Ctrl-C)\n"
            "  -v          show libbpf's messages\n",
            prog);
}

static int parse_args(int argc, char **argv, struct env *env)
{
    int c;

    while ((c = getopt(argc, argv, "p:b:s:d:vh")) != -1) {
        switch (c) {
        case 'p':
            if (skel_parse_pid(optarg, &env->pid))
                goto bad;
            break;
        case 'b':
        case 's': env->binary = optarg; break;
        case 'd':
            if (skel_parse_seconds(optarg, &env->duration))
                goto bad;
            break;
        case 'v': env->verbose = true; break;
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

static void handle_event(void *ctx, int cpu, void *data, __u32 size)
{
    const struct line_event *e = data;
    char ts[16];

    (void)ctx;
    (void)cpu;
    if (size < sizeof(*e))
        return;
    skel_strtime(ts, sizeof(ts));
    printf("%-9s %-7u %.*s\n", ts, e->pid, (int)sizeof(e->line), e->line);
}

static void handle_lost(void *ctx, int cpu, __u64 count)
{
    (void)ctx;
    fprintf(stderr, "skel-bashreadline: lost %llu events on CPU %d\n", (unsigned long long)count, cpu);
}

int main(int argc, char **argv)
{
    struct env env = {.binary = DEFAULT_BINARY};
    LIBBPF_OPTS(bpf_uprobe_opts, uopts, .func_name = "readline", .retprobe = true);
    struct bashreadline_bpf *skel = NULL;
    struct perf_buffer *pb = NULL;
    long long deadline = -1;
    int err;

    skel_line_buffer_stdout();
    if (parse_args(argc, argv, &env))
        return 2;
    skel_setup_libbpf(env.verbose);

    err = skel_install_signals();
    if (err) {
        fprintf(stderr, "skel-bashreadline: sigaction: %s\n", strerror(-err));
        return 1;
    }
    skel = bashreadline_bpf__open_and_load();
    if (!skel) {
        err = -errno;
        fprintf(stderr, "skel-bashreadline: loading the BPF object: %s\n", strerror(errno));
        goto out;
    }
    skel->links.bash_readline =
        bpf_program__attach_uprobe_opts(skel->progs.bash_readline, env.pid ? env.pid : -1, env.binary, 0, &uopts);
    if (!skel->links.bash_readline) {
        err = -errno;
        fprintf(stderr, "skel-bashreadline: attaching to readline in %s: %s\n", env.binary, strerror(errno));
        goto out;
    }
    pb = perf_buffer__new(bpf_map__fd(skel->maps.lines), 16, handle_event, handle_lost, NULL, NULL);
    if (!pb) {
        err = -errno;
        fprintf(stderr, "skel-bashreadline: creating the perf buffer: %s\n", strerror(errno));
        goto out;
    }

    printf("%-9s %-7s %s\n", "TIME", "PID", "COMMAND");
    if (env.duration)
        deadline = skel_now_ms() + env.duration * 1000;
    while (!skel_exiting) {
        long long wait = skel_remaining_ms(deadline, 100);

        if (deadline >= 0 && wait == 0)
            break;
        err = perf_buffer__poll(pb, (int)(wait < 100 ? wait : 100));
        if (err == -EINTR) {
            err = 0;
            continue;
        }
        if (err < 0) {
            fprintf(stderr, "skel-bashreadline: polling the perf buffer: %s\n", strerror(-err));
            goto out;
        }
        err = 0;
    }
    err = perf_buffer__consume(pb);
    err = err < 0 ? err : 0;
out:
    perf_buffer__free(pb);
    bashreadline_bpf__destroy(skel);
    return err ? 1 : 0;
}
