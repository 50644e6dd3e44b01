/* skel-bashreadline: every line interactive bash reads, from a uretprobe
 * on readline() through a perf buffer (libbpf-tools' bashreadline).
 *
 *   skel-bashreadline [-p PID] [-b BINARY | -s SHLIB] [-d SECONDS] [-v]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>

#include "../bashreadline/line_event.h"
#include "common.h"
#include "bashreadline.skel.h"

#define DEFAULT_BINARY "/bin/bash"

struct env {
    struct skel_options common;
    const char *binary;
};

/* What -h (and a wrong option, on stderr) prints after "Usage: PROG ". */
static const char usage_text[] = "[-p PID] [-b BINARY | -s SHLIB] [-d SECONDS] [-v]\n"
                                 "Print the commands entered in interactive bash shells.\n\n"
                                 "  -p PID      trace only this bash process\n"
                                 "  -b BINARY   binary defining readline (default " DEFAULT_BINARY ")\n"
                                 "  -s SHLIB    the same, for a bash linked against libreadline.so\n"
                                 "  -d SECONDS  stop after this long (default: until Ctrl-C)\n"
                                 "  -v          show libbpf's messages\n";

static int take_tool_option(int opt, const char *arg, void *tool_env)
{
    struct env *env = tool_env;

    if (opt != 'b' && opt != 's')
        return SKEL_OPT_UNKNOWN;
    env->binary = arg;
    return 0;
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

static int poll_perf_buffer(void *pb, int timeout_ms)
{
    return perf_buffer__poll(pb, timeout_ms);
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
    int err;

    if (skel_start(argc, argv, "p:b:s:d:vh", usage_text, &env.common, take_tool_option, &env))
        return 2;
    if (skel_install_signals("skel-bashreadline"))
        return 1;
    skel = bashreadline_bpf__open_and_load();
    if (!skel)
        return skel_errno_error("skel-bashreadline: loading the BPF object") ? 1 : 0;
    skel->links.bash_readline = bpf_program__attach_uprobe_opts(
        skel->progs.bash_readline, env.common.pid ? env.common.pid : -1, env.binary, 0, &uopts);
    if (!skel->links.bash_readline) {
        err = skel_errno_error("skel-bashreadline: attaching to readline in %s", env.binary);
        goto out;
    }
    pb = perf_buffer__new(bpf_map__fd(skel->maps.lines), 16, handle_event, handle_lost, NULL, NULL);
    if (!pb) {
        err = skel_errno_error("skel-bashreadline: creating the perf buffer");
        goto out;
    }

    printf("%-9s %-7s %s\n", "TIME", "PID", "COMMAND");
    err = skel_poll_for(env.common.duration, poll_perf_buffer, pb);
    if (err) {
        fprintf(stderr, "skel-bashreadline: polling the perf buffer: %s\n", strerror(-err));
        goto out;
    }
    err = perf_buffer__consume(pb);
    err = err < 0 ? err : 0;
out:
    perf_buffer__free(pb);
    bashreadline_bpf__destroy(skel);
    return err ? 1 : 0;
}
