/* Running JIT output inside the test process. bpfgraft itself never runs
 * compiled programs in its own process (the payload maps them in the
 * target); the tests, benchmarks and the conformance runner do, with these.
 * The LLVM JIT's blobs have the x86 JIT's format, so both run alike. */
#ifndef BPFGRAFT_TEST_JIT_RUN_H
#define BPFGRAFT_TEST_JIT_RUN_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "x86jit.h"
#ifdef BPFGRAFT_HAVE_LLVM
#include "llvmjit.h"
#endif

/* The code mapped executable in this process (mmap RW, copy, mprotect RX). */
struct bpfg_x86jit_image {
    void *addr;
    size_t size;
    bpfg_x86jit_fn fn;
};

/* 0 or a negative errno; img is empty on failure (unmapping it is a no-op). */
static inline int bpfg_x86jit_map_exec(const struct bpfg_x86jit_code *code, struct bpfg_x86jit_image *img)
{
    *img = (struct bpfg_x86jit_image){0};
    if (!code->buf || !code->len)
        return -EINVAL;
    size_t size = code->len;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    memcpy(p, code->buf, code->len);
    if (mprotect(p, size, PROT_READ | PROT_EXEC)) {
        int err = -errno;
        munmap(p, size);
        return err;
    }
    img->addr = p;
    img->size = size;
    img->fn = (bpfg_x86jit_fn)p;
    return 0;
}

static inline void bpfg_x86jit_unmap(struct bpfg_x86jit_image *img)
{
    if (!img || !img->addr)
        return;
    munmap(img->addr, img->size);
    img->addr = NULL;
    img->fn = NULL;
}

/* Runs an image: 0 and *r0, or the run error's negative errno (and the
 * instruction in *fault_insn when not NULL). */
static inline int bpfg_x86jit_run(const struct bpfg_x86jit_image *img, void *ctx, size_t len,
                                  const struct bpfg_x86jit_helper *table, void *run_user, uint64_t *r0,
                                  uint32_t *fault_insn)
{
    struct bpfg_x86jit_result res = img->fn(ctx, len, table, run_user);
    *r0 = res.r0;
    if (fault_insn)
        *fault_insn = (uint32_t)(res.fault >> 32);
    return (int32_t)(uint32_t)res.fault;
}

#ifdef BPFGRAFT_HAVE_LLVM
/* bpfg_llvmjit_compile_blob for running here: the code alone (free with
 * bpfg_x86jit_code_free), its slots already holding this compilation's
 * values. */
static inline int bpfg_llvmjit_compile(const struct bpf_insn *insns, size_t n, const struct bpfg_llvmjit_opts *opts,
                                       struct bpfg_x86jit_code *out, struct bpfg_llvmjit_stats *stats, char *err,
                                       size_t errlen)
{
    struct bpfg_llvmjit_blob blob;
    int ret = bpfg_llvmjit_compile_blob(insns, n, opts, &blob, stats, err, errlen);
    free(blob.relocs);
    *out = blob.code;
    return ret;
}
#endif

#endif
