/* bpfgraft-bench tool: a libbpf tool's own bpf() calls (maps created,
 * programs loaded, map elements read and written by the tool) served by
 * bpfgraft (`bpfgraft run`) against the kernel, with the same probe
 * binary (tool_probe.c) run both ways in one go. Under bpfgraft a bpf()
 * site of the tool traps once (Syscall User Dispatch) and is rewritten
 * into a jump to the payload; map element commands are then served inside
 * the tool on the shared region, maps are made there in map tickets
 * (server/README.md), the others are served by bpfgraftd. bpfgraftd's
 * state directory (where map regions live) is on a tmpfs, as its default
 * /run/bpfgraft is on a systemd host; BPF_MAP_CREATE is measured again
 * with it on /tmp (a disk on Debian). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "bench_client.h"

#define NFIGS 7
static const char *const keys[NFIGS] = {"create_us",      "prog_load_us",   "array_lookup_ns", "array_update_ns",
                                        "hash_lookup_ns", "hash_update_ns", "get_next_key_ns"};
static const char *const names[NFIGS] = {"BPF_MAP_CREATE (array 1024)", "BPF_PROG_LOAD (2 insns, verified)",
                                         "MAP_LOOKUP_ELEM array",       "MAP_UPDATE_ELEM array",
                                         "MAP_LOOKUP_ELEM hash 4k",     "MAP_UPDATE_ELEM hash 4k",
                                         "MAP_GET_NEXT_KEY hash"};

/* Runs argv, reads its one line of "key=value" figures. */
static int run_probe(char *const argv[], double out[NFIGS])
{
    int p[2];
    if (pipe(p) != 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    char buf[1024];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof(buf) - 1 && (n = read(p[0], buf + got, sizeof(buf) - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = 0;
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -EIO;
    for (int i = 0; i < NFIGS; i++) {
        char *at = strstr(buf, keys[i]);
        if (!at)
            return -EPROTO;
        out[i] = strtod(at + strlen(keys[i]) + 1, NULL);
    }
    return 0;
}

/* probe's figures under `bpfgraft run`, a bpfgraftd of its own with its
 * state directory in parent. */
static int run_under(const char *server_bin, const char *cli, char *probe, char *iters, const char *parent,
                     double out[NFIGS])
{
    struct server srv = {.pid = -1, .parent = parent};
    int err = server_start(&srv, server_bin);
    if (err)
        return err;
    char *gargv[] = {(char *)cli, "--socket", srv.sock, "run", "--", probe, iters, NULL};
    err = run_probe(gargv, out);
    server_stop(&srv);
    return err;
}

static bool on_tmpfs(const char *dir)
{
    struct statfs st;
    return statfs(dir, &st) == 0 && st.f_type == TMPFS_MAGIC;
}

static int run(struct bench_ctx *ctx)
{
    char probe[4096], cli[4096], server_bin[4096], iters[32];
    int err;
    if ((err = bench_find_files(sizeof(probe), probe, "bpfgraft-bench-tool", cli, "bpfgraft", server_bin, "bpfgraftd",
                                NULL))) {
        bench_note(ctx, "tool: bpfgraft-bench-tool, bpfgraft or bpfgraftd not built");
        return err;
    }
    snprintf(iters, sizeof(iters), "%d", bench_quick(ctx) ? 5000 : 200000);
    double kernel[NFIGS], ours[NFIGS];
    char *kargv[] = {probe, iters, NULL};
    if ((err = run_probe(kargv, kernel))) {
        bench_note(ctx, "tool: the probe failed under the kernel (%s)", strerror(-err));
        return err;
    }
    const char *shm = on_tmpfs("/dev/shm") ? "/dev/shm" : NULL;
    double disk[NFIGS];
    err = run_under(server_bin, cli, probe, iters, shm, ours);
    if (!err && shm)
        err = run_under(server_bin, cli, probe, iters, NULL, disk);
    if (err) {
        bench_note(ctx, "tool: the probe failed under bpfgraft run (%s)", strerror(-err));
        return err;
    }
    for (int i = 0; i < NFIGS; i++) {
        const char *unit = strstr(keys[i], "_us") ? "us/call" : "ns/call";
        bench_report(ctx, names[i], "kernel", kernel[i], unit, NULL, 0);
        bench_report(ctx, names[i], shm ? "bpfgraft run" : "bpfgraft run, state on /tmp", ours[i], unit, "kernel",
                     kernel[i]);
        if (i == 0 && shm)
            bench_report(ctx, names[i], "bpfgraft run, state on /tmp", disk[i], unit, "kernel", kernel[i]);
    }
    bench_note(ctx, "tool: element commands run in the tool on the map region, reached through its rewritten "
                    "syscall() site (rewritten as the tool starts); maps are laid out in the tool in a map ticket "
                    "(one round trip to bpfgraftd per batch of 8, 16 or 32 tickets, which it sizes) in bpfgraftd's "
                    "state directory (a tmpfs, as "
                    "/run/bpfgraft, unless said), programs go to bpfgraftd over a socket and are verified there; "
                    "create/load: median of 50 calls, each with its close");
    return 0;
}

const struct bench_suite bench_suite_tool = {"tool", "a libbpf tool's bpf() calls: bpfgraft run vs the kernel", run};
