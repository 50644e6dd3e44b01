/* bpfgraft-bench vm: compute programs in the interpreter against the same
 * algorithms as native C (this file is compiled with -O2), in one run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asm.h"
#include "bench.h"
#include "vm.h"

#include "programs.h"

/* Runs fn until at least min_ns passed; returns ns per run. */
static double time_native(const struct vm_case *c, uint8_t *mem, uint64_t min_ns, uint64_t *result)
{
    uint64_t (*volatile fn)(uint8_t *, size_t) = c->native;
    double ns;
    bench_time_runs(bench_run_native, (void *)&fn, mem, MEM_SIZE, 16, min_ns, result, &ns);
    return ns;
}

static int run_vm(void *vm, uint8_t *mem, size_t len, uint64_t *result)
{
    return bpfg_vm_exec(vm, mem, len, result);
}

static int time_vm(struct bpfg_vm *vm, uint8_t *mem, uint64_t min_ns, uint64_t *result, double *ns)
{
    return bench_time_runs(run_vm, vm, mem, MEM_SIZE, 16, min_ns, result, ns);
}

static int run_case(struct bench_ctx *ctx, const struct vm_case *c, uint8_t *mem)
{
    char err[256];
    struct bpf_insn *insns = NULL;
    size_t n = 0;
    uint64_t min_ns = bench_quick(ctx) ? 20000000ull : 300000000ull;
    int ret = bpfg_asm(c->asm_text, &insns, &n, err, sizeof(err));
    if (ret) {
        fprintf(stderr, "bench vm: %s: %s\n", c->name, err);
        return ret;
    }
    struct bpfg_vm *vm = bpfg_vm_new();
    if (!vm) {
        free(insns);
        return -ENOMEM;
    }
    ret = bpfg_vm_load(vm, insns, n);
    if (ret) {
        fprintf(stderr, "bench vm: %s: %s\n", c->name, bpfg_vm_error(vm));
        goto out;
    }

    uint64_t native_r, checked_r, fast_r;
    if (c->init)
        c->init(mem);
    double native_ns = time_native(c, mem, min_ns, &native_r);
    double checked_ns, fast_ns;
    ret = time_vm(vm, mem, min_ns, &checked_r, &checked_ns);
    if (!ret) {
        bpfg_vm_set_checked(vm, false);
        ret = time_vm(vm, mem, min_ns, &fast_r, &fast_ns);
    }
    if (ret) {
        fprintf(stderr, "bench vm: %s: %s\n", c->name, bpfg_vm_error(vm));
        goto out;
    }
    if (checked_r != native_r || fast_r != native_r) {
        fprintf(stderr, "bench vm: %s: results differ (native %llu, interp %llu/%llu)\n", c->name,
                (unsigned long long)native_r, (unsigned long long)checked_r, (unsigned long long)fast_r);
        ret = -EDOM;
        goto out;
    }
    bench_report(ctx, c->name, "native", native_ns, "ns/run", NULL, 0);
    bench_report(ctx, c->name, "interp", fast_ns, "ns/run", "native", native_ns);
    bench_report(ctx, c->name, "interp-checked", checked_ns, "ns/run", "native", native_ns);
out:
    bpfg_vm_free(vm);
    free(insns);
    return ret;
}

static int bench_vm_run(struct bench_ctx *ctx)
{
    uint8_t *mem = aligned_alloc(64, MEM_SIZE);
    if (!mem)
        return -ENOMEM;
    memset(mem, 0, MEM_SIZE);
    bench_note(ctx, "interp: unchecked interpreter; interp-checked: every access bounds-checked; native: gcc -O2");
    int ret = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]) && !ret; i++)
        ret = run_case(ctx, &cases[i], mem);
    free(mem);
    return ret;
}

const struct bench_suite bench_suite_vm = {
    "vm",
    "eBPF interpreter vs native C on compute programs",
    bench_vm_run,
};
