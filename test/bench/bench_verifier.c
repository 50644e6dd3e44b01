/* bpfgraft-bench verifier: time to verify each sample program (built by
 * cmake/bpf.cmake, relocated by the object loader) against the kernel
 * verifier's BPF_PROG_LOAD of the same program (as root), in one run.
 * The kernel figure includes creating the program's maps and loading
 * without a log; the target for bpfgraft is <= 10 ms per sample. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "bench_client.h"
#include "objload.h"
#include "verifier.h"

static const char *const samples[] = {"malloc", "funclatency", "bashreadline", "errinject"};

static int bench_prog(struct bench_ctx *ctx, const char *sample, const struct bpfg_obj *obj,
                      const struct bpfg_obj_prog *p)
{
    struct bpfg_verify_env env;
    struct bpfg_verify_map *maps;
    int err = bpfg_verify_env_for_prog(obj, p, &env, &maps);
    if (err) {
        free(maps);
        return err == -EOPNOTSUPP ? 0 : err;
    }
    env.allow_override_return = true;
    struct bpfg_verify_result *res = malloc(sizeof(*res));
    if (!res) {
        free(maps);
        return -ENOMEM;
    }
    int runs = bench_quick(ctx) ? 20 : 500;
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < runs && !err; i++)
        err = bpfg_verify(p->insns, p->insn_cnt, &env, res);
    double ours = (double)(bench_now_ns() - t0) / runs / 1000.0;
    if (err) {
        fprintf(stderr, "bench verifier: %s/%s rejected: %s\n", sample, p->name, res->msg);
        free(res);
        free(maps);
        return err;
    }
    char name[64];
    snprintf(name, sizeof(name), "%s/%s", sample, p->name);
    double kernel = 0;
    int kruns = bench_quick(ctx) ? 5 : 100, kerr = 0;
    if (geteuid() == 0) {
        t0 = bench_now_ns();
        for (int i = 0; i < kruns; i++)
            kerr = bpfg_verify_kernel(p->insns, p->insn_cnt, &env, NULL, 0) ? -1 : kerr;
        kernel = (double)(bench_now_ns() - t0) / kruns / 1000.0;
    }
    if (geteuid() == 0 && !kerr)
        bench_report(ctx, name, "verify", ours, "us", "kernel BPF_PROG_LOAD", kernel);
    else
        bench_report(ctx, name, "verify", ours, "us", NULL, 0);
    if (kerr)
        bench_note(ctx, "%s: the kernel rejects it (kernel-only restriction), no baseline", name);
    bench_note(ctx, "%s: %zu insns, %llu processed, %u states, stack %u", name, p->insn_cnt,
               (unsigned long long)res->insns_processed, res->states, res->stack_depth);
    free(res);
    free(maps);
    return 0;
}

static int run(struct bench_ctx *ctx)
{
    int err = 0;
    for (size_t k = 0; k < sizeof(samples) / sizeof(samples[0]) && !err; k++) {
        char name[64], path[PATH_MAX], msg[1024];
        snprintf(name, sizeof(name), "%s.bpf.o", samples[k]);
        if ((err = bench_find_file(path, sizeof(path), name))) {
            fprintf(stderr, "bench verifier: %s not built (target sample_%s)\n", name, samples[k]);
            return err;
        }
        struct bpfg_obj *obj = bpfg_obj_open_file(path, NULL, msg, sizeof(msg));
        if (!obj) {
            fprintf(stderr, "bench verifier: %s: %s\n", path, msg);
            return -ENOENT;
        }
        for (size_t i = 0; i < obj->prog_cnt && !err; i++)
            err = bench_prog(ctx, samples[k], obj, &obj->progs[i]);
        bpfg_obj_free(obj);
    }
    return err;
}

const struct bench_suite bench_suite_verifier = {"verifier", "verify each sample program vs. the kernel's verifier",
                                                 run};
