/* bpfgraft-bench vm: compute programs in the interpreter against the same
 * algorithms as native C (this file is compiled with -O2), in one run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asm.h"
#include "bench.h"
#include "vm.h"

#define MEM_SIZE 8192

struct vm_case {
    const char *name;
    const char *asm_text;
    uint64_t (*native)(uint8_t *mem, size_t len);
    void (*init)(uint8_t *mem);
};

/* ---- sum: a tight arithmetic loop ---- */
static const char sum_asm[] =
    "mov %r0, 0\n"
    "mov %r1, 0\n"
    "loop:\n"
    "add %r0, %r1\n"
    "add %r1, 1\n"
    "jlt %r1, 10000, loop\n"
    "exit\n";

static volatile uint64_t sum_limit = 10000;

static __attribute__((noinline)) uint64_t sum_native(uint8_t *mem, size_t len)
{
    (void)mem, (void)len;
    uint64_t r = 0, n = sum_limit;
    for (uint64_t i = 0; i < n; i++) {
        r += i;
        bench_keep(r);   /* keep the loop: no closed form, as in the VM */
    }
    return r;
}

/* ---- log2: floor(log2(x)) of 1024 64-bit ints by binary search ---- */
static const char log2_asm[] =
    "mov %r0, 0\n"
    "mov %r6, %r1\n"
    "mov %r7, %r1\n"
    "add %r7, %r2\n"
    "next:\n"
    "ldxdw %r3, [%r6+0]\n"
    "mov %r4, 0\n"
    "mov %r5, %r3\n"
    "rsh %r5, 32\n"
    "jeq %r5, 0, l16\n"
    "add %r4, 32\n"
    "mov %r3, %r5\n"
    "l16:\n"
    "mov %r5, %r3\n"
    "rsh %r5, 16\n"
    "jeq %r5, 0, l8\n"
    "add %r4, 16\n"
    "mov %r3, %r5\n"
    "l8:\n"
    "mov %r5, %r3\n"
    "rsh %r5, 8\n"
    "jeq %r5, 0, l4\n"
    "add %r4, 8\n"
    "mov %r3, %r5\n"
    "l4:\n"
    "mov %r5, %r3\n"
    "rsh %r5, 4\n"
    "jeq %r5, 0, l2\n"
    "add %r4, 4\n"
    "mov %r3, %r5\n"
    "l2:\n"
    "mov %r5, %r3\n"
    "rsh %r5, 2\n"
    "jeq %r5, 0, l1\n"
    "add %r4, 2\n"
    "mov %r3, %r5\n"
    "l1:\n"
    "mov %r5, %r3\n"
    "rsh %r5, 1\n"
    "jeq %r5, 0, done\n"
    "add %r4, 1\n"
    "done:\n"
    "add %r0, %r4\n"
    "add %r6, 8\n"
    "jlt %r6, %r7, next\n"
    "exit\n";

static __attribute__((noinline)) uint64_t log2_native(uint8_t *mem, size_t len)
{
    uint64_t total = 0;
    for (size_t off = 0; off + 8 <= len; off += 8) {
        uint64_t x, r = 0;
        memcpy(&x, mem + off, 8);
        if (x >> 32) { r += 32; x >>= 32; }
        if (x >> 16) { r += 16; x >>= 16; }
        if (x >> 8) { r += 8; x >>= 8; }
        if (x >> 4) { r += 4; x >>= 4; }
        if (x >> 2) { r += 2; x >>= 2; }
        if (x >> 1) { r += 1; }
        total += r;
    }
    return total;
}

static void log2_init(uint8_t *mem)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t off = 0; off < MEM_SIZE; off += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t v = x >> (x & 63);
        memcpy(mem + off, &v, 8);
    }
}

/* ---- prime: sieve of Eratosthenes over the buffer, count primes ---- */
static const char prime_asm[] =
    "mov %r3, 0\n"
    "clear:\n"
    "mov %r4, %r1\n"
    "add %r4, %r3\n"
    "stdw [%r4+0], 0\n"
    "add %r3, 8\n"
    "jlt %r3, %r2, clear\n"
    "mov %r6, 2\n"
    "mov %r0, 0\n"
    "outer:\n"
    "jge %r6, %r2, end\n"
    "mov %r3, %r1\n"
    "add %r3, %r6\n"
    "ldxb %r4, [%r3+0]\n"
    "jne %r4, 0, skip\n"
    "add %r0, 1\n"
    "mov %r5, %r6\n"
    "mul %r5, %r6\n"
    "inner:\n"
    "jge %r5, %r2, skip\n"
    "mov %r3, %r1\n"
    "add %r3, %r5\n"
    "stb [%r3+0], 1\n"
    "add %r5, %r6\n"
    "ja inner\n"
    "skip:\n"
    "add %r6, 1\n"
    "ja outer\n"
    "end:\n"
    "exit\n";

static __attribute__((noinline)) uint64_t prime_native(uint8_t *mem, size_t len)
{
    uint64_t count = 0;
    memset(mem, 0, len);
    for (size_t i = 2; i < len; i++) {
        if (mem[i])
            continue;
        count++;
        for (size_t j = i * i; j < len; j += i)
            mem[j] = 1;
    }
    return count;
}

/* ---- memcpy: copy 4 KiB in 8-byte words ---- */
static const char memcpy_asm[] =
    "mov %r3, 0\n"
    "loop:\n"
    "mov %r4, %r1\n"
    "add %r4, %r3\n"
    "ldxdw %r5, [%r4+0]\n"
    "stxdw [%r4+4096], %r5\n"
    "add %r3, 8\n"
    "jlt %r3, 4096, loop\n"
    "mov %r0, %r5\n"
    "exit\n";

static __attribute__((noinline)) uint64_t memcpy_native(uint8_t *mem, size_t len)
{
    (void)len;
    uint64_t last;
    memcpy(mem + 4096, mem, 4096);
    memcpy(&last, mem + 4096 + 4088, 8);
    return last;
}

/* ---- strcmp: two equal 4095-character strings ---- */
static const char strcmp_asm[] =
    "mov %r3, %r1\n"
    "mov %r4, %r1\n"
    "add %r4, 4096\n"
    "loop:\n"
    "ldxb %r5, [%r3+0]\n"
    "ldxb %r6, [%r4+0]\n"
    "jne %r5, %r6, diff\n"
    "jeq %r5, 0, same\n"
    "add %r3, 1\n"
    "add %r4, 1\n"
    "ja loop\n"
    "diff:\n"
    "mov %r0, %r5\n"
    "sub %r0, %r6\n"
    "exit\n"
    "same:\n"
    "mov %r0, 0\n"
    "exit\n";

static __attribute__((noinline)) uint64_t strcmp_native(uint8_t *mem, size_t len)
{
    (void)len;
    return (uint64_t)(int64_t)strcmp((const char *)mem, (const char *)mem + 4096);
}

static void strings_init(uint8_t *mem)
{
    for (size_t i = 0; i < 4095; i++)
        mem[i] = mem[4096 + i] = (uint8_t)('a' + i % 26);
    mem[4095] = mem[8191] = 0;
}

static const struct vm_case cases[] = {
    {"sum_loop_10k", sum_asm, sum_native, NULL},
    {"log2_1k_ints", log2_asm, log2_native, log2_init},
    {"prime_sieve_8k", prime_asm, prime_native, NULL},
    {"memcpy_4k", memcpy_asm, memcpy_native, log2_init},
    {"strcmp_4k", strcmp_asm, strcmp_native, strings_init},
};

/* Runs fn until at least min_ns passed; returns ns per run. */
static double time_native(const struct vm_case *c, uint8_t *mem, uint64_t min_ns, uint64_t *result)
{
    uint64_t (*volatile fn)(uint8_t *, size_t) = c->native;
    uint64_t runs = 0, start = bench_now_ns(), now;
    do {
        for (int i = 0; i < 16; i++)
            *result = fn(mem, MEM_SIZE);
        runs += 16;
        now = bench_now_ns();
    } while (now - start < min_ns);
    return (double)(now - start) / (double)runs;
}

static int time_vm(struct bpfg_vm *vm, uint8_t *mem, uint64_t min_ns, uint64_t *result, double *ns)
{
    uint64_t runs = 0, start = bench_now_ns(), now;
    do {
        for (int i = 0; i < 16; i++) {
            int err = bpfg_vm_exec(vm, mem, MEM_SIZE, result);
            if (err)
                return err;
        }
        runs += 16;
        now = bench_now_ns();
    } while (now - start < min_ns);
    *ns = (double)(now - start) / (double)runs;
    return 0;
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
    "vm", "eBPF interpreter vs native C on compute programs", bench_vm_run,
};
