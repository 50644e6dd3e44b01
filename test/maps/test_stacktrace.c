/* STACK_TRACE (maps/map_stacktrace.c): bpf_get_stackid's semantics
 * (same stack same id, -EEXIST on a collision, BPF_F_REUSE_STACKID,
 * BPF_F_FAST_STACK_CMP, -ENOMEM), the syscall side and creation against
 * the kernel's stack maps, and the kernel's ids for the kernel's stacks
 * (SIGKILLed inserters: test_maptypes_stress.c). */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "criterion_facts.h"
#include "maps.h"
#include "maps_testutil.h"

#define DEPTH 8

static void expect_stack(struct bpfg_map *m, uint32_t id, const uint64_t *ips, uint32_t n)
{
    uint64_t got[DEPTH] = {0}, want[DEPTH] = {0};
    memcpy(want, ips, n * 8);
    cr_assert_eq(bpfg_map_lookup_copy(m, &id, got), 0);
    cr_assert_arr_eq(got, want, sizeof(got), "stack %u differs (zero-padded)", id);
}

/* One bucket: every stack has id 0; one element. */
Test(stacktrace, collisions)
{
    struct bpfg_map *m = stack_map_create(1, DEPTH);
    uint64_t a[DEPTH], b[DEPTH];
    stack_fill(a, 5, 1);
    stack_fill(b, 6, 2);
    cr_assert_eq(bpfg_map_stackid(m, a, 5, 0), 0);
    cr_assert_eq(bpfg_map_stackid(m, a, 5, 0), 0, "the same stack, the same id");
    cr_assert_eq(bpfg_map_stackid(m, b, 6, 0), -EEXIST, "another stack in the id");
    cr_assert_eq(bpfg_map_stackid(m, a, 4, 0), -EEXIST, "a shorter stack is another stack");
    cr_assert_eq(bpfg_map_stackid(m, b, 6, BPF_F_FAST_STACK_CMP), -EEXIST, "fast compare: the hash differs");
    cr_assert_eq(bpfg_map_stackid(m, a, 5, BPF_F_FAST_STACK_CMP), 0);
    /* the kernel takes the new element before it frees the old one */
    cr_assert_eq(bpfg_map_stackid(m, b, 6, BPF_F_REUSE_STACKID), -ENOMEM, "reuse needs a free element");
    expect_stack(m, 0, a, 5);
    cr_assert_eq(bpfg_map_stackid(m, b, DEPTH + 1, 0), -EINVAL, "deeper than the value");
    bpfg_map_close(m);
}

/* Two buckets, two elements: a stack that collides replaces the other
 * with BPF_F_REUSE_STACKID. */
Test(stacktrace, reuse)
{
    struct bpfg_map *m = stack_map_create(2, DEPTH);
    uint64_t a[DEPTH], b[DEPTH];
    stack_fill(a, DEPTH, 1);
    int id = bpfg_map_stackid(m, a, DEPTH, 0), r = 0;
    cr_assert_geq(id, 0);
    for (uint64_t base = 2; base < 100 && r != -EEXIST; base++) {
        stack_fill(b, DEPTH, base);
        r = bpfg_map_stackid(m, b, DEPTH, 0);
        uint32_t other = (uint32_t)r;
        if (r >= 0) /* the other id: only a's may stay */
            cr_assert_eq(bpfg_map_delete_elem(m, &other), 0);
    }
    cr_assert_eq(r, -EEXIST, "a stack of a's id");
    cr_assert_eq(bpfg_map_stackid(m, b, DEPTH, BPF_F_REUSE_STACKID), id, "reuse replaces");
    expect_stack(m, (uint32_t)id, b, DEPTH);
    cr_assert_eq(bpfg_map_stackid(m, a, DEPTH, BPF_F_REUSE_STACKID), id, "and back: the old element was freed");
    expect_stack(m, (uint32_t)id, a, DEPTH);
    bpfg_map_close(m);
}

/* max_entries 3, 4 buckets: the fourth stack of a distinct id finds no
 * element; deleting one frees it. */
Test(stacktrace, enomem_and_delete)
{
    struct bpfg_map *m = stack_map_create(3, DEPTH);
    uint64_t ips[DEPTH];
    int ids[4] = {-1, -1, -1, -1}, stored = 0, r = 0;
    for (uint64_t base = 1; base < 1000 && r != -ENOMEM; base++) {
        stack_fill(ips, DEPTH, base);
        r = bpfg_map_stackid(m, ips, DEPTH, 0);
        cr_assert(r >= 0 || r == -EEXIST || r == -ENOMEM, "stackid: %d", r);
        if (r >= 0)
            ids[stored++] = r;
    }
    cr_assert_eq(r, -ENOMEM, "a fourth id needs a fourth element");
    cr_assert_eq(stored, 3);
    uint32_t key = (uint32_t)ids[1];
    cr_assert_eq(bpfg_map_delete_elem(m, &key), 0);
    cr_assert_eq(bpfg_map_delete_elem(m, &key), -ENOENT);
    cr_assert_eq(bpfg_map_stackid(m, ips, DEPTH, 0) >= 0, 1, "the deleted stack's element is free again");
    key = 4;
    cr_assert_eq(bpfg_map_delete_elem(m, &key), -E2BIG, "an id beyond the buckets");
    bpfg_map_close(m);
}

/* A stack seen again gets its id from the memo of recent ids (keyed by
 * its first, middle and last frames) only when the id holds these very
 * frames: one that differs elsewhere, or an id deleted since, is looked
 * up the kernel's way. */
Test(stacktrace, memo_checks_every_frame)
{
    struct bpfg_map *m = stack_map_create(1, DEPTH);
    uint64_t a[DEPTH], b[DEPTH];
    stack_fill(a, DEPTH, 1);
    memcpy(b, a, sizeof(b));
    b[1] ^= 0x10; /* not a frame the memo's digest reads */
    cr_assert_eq(bpfg_map_stackid(m, a, DEPTH, 0), 0);
    cr_assert_eq(bpfg_map_stackid(m, a, DEPTH, 0), 0, "memoized");
    cr_assert_eq(bpfg_map_stackid(m, b, DEPTH, 0), -EEXIST, "same digest, another stack");
    uint32_t key = 0;
    cr_assert_eq(bpfg_map_delete_elem(m, &key), 0);
    cr_assert_eq(bpfg_map_stackid(m, b, DEPTH, 0), 0, "the id is free again");
    expect_stack(m, 0, b, DEPTH);
    cr_assert_eq(bpfg_map_stackid(m, a, DEPTH, 0), -EEXIST, "a's memo names an id holding b now");
    bpfg_map_close(m);
}

/* ---- against the kernel ---- */

Test(stacktrace_kernel, create_errors)
{
    test_needs("bpf-maps");
    struct {
        uint32_t ks, vs, n, flags;
    } c[] = {
        {4, 8, 1, 0},
        {4, 1016, 16384, 0},
        {8, 8, 1, 0},
        {4, 0, 1, 0},
        {4, 12, 1, 0},
        {4, 1024, 1, 0},
        {4, 1016, 0, 0},
        {4, 8, 1, BPF_F_NO_PREALLOC},
        {4, 8, 1, BPF_F_RDONLY},
        {4, 8, 1, BPF_F_ZERO_SEED},
        {4, 127 * 8, 1, 0},
        {4, 128 * 8, 1, 0},
    };
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_STACK_TRACE,
                                  .key_size = c[i].ks,
                                  .value_size = c[i].vs,
                                  .max_entries = c[i].n,
                                  .map_flags = c[i].flags};
        expect_create_like_kernel(&s, i);
    }
}

static int kernel_rc(int r)
{
    return r < 0 ? -errno : r;
}

/* What bpf() does to an empty stack map and to ids it lacks. */
Test(stacktrace_kernel, syscall_ops_on_empty)
{
    test_needs("bpf-maps");
    int kfd = bpf_map_create(BPF_MAP_TYPE_STACK_TRACE, "s", 4, DEPTH * 8, 8, NULL);
    cr_assert_geq(kfd, 0, "%s", strerror(errno));
    struct bpfg_map *m = stack_map_create(8, DEPTH);
    uint64_t v[DEPTH] = {0};
    uint32_t next;
    for (uint32_t id = 0; id < 10; id++) {
        cr_assert_eq(bpfg_map_lookup_copy(m, &id, v), kernel_rc(bpf_map_lookup_elem(kfd, &id, v)), "lookup %u", id);
        cr_assert_eq(bpfg_map_delete_copy(m, &id), kernel_rc(bpf_map_delete_elem(kfd, &id)), "delete %u", id);
        cr_assert_eq(bpfg_map_update_copy(m, &id, v, BPF_ANY), kernel_rc(bpf_map_update_elem(kfd, &id, v, BPF_ANY)),
                     "update %u", id);
        cr_assert_eq(bpfg_map_get_next_key(m, &id, &next), kernel_rc(bpf_map_get_next_key(kfd, &id, &next)),
                     "next of %u", id);
    }
    cr_assert_eq(bpfg_map_get_next_key(m, NULL, &next), kernel_rc(bpf_map_get_next_key(kfd, NULL, &next)));
    close(kfd);
    bpfg_map_close(m);
}

/* A raw tracepoint program run by BPF_PROG_TEST_RUN: return
 * bpf_get_stackid(ctx, map, flags) of its kernel stack. */
static int stackid_prog(int map_fd, uint32_t flags)
{
    struct bpf_insn insns[] = {
        {.code = BPF_LD | BPF_DW | BPF_IMM, .dst_reg = 2, .src_reg = BPF_PSEUDO_MAP_FD, .imm = map_fd},
        {0},
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 3, .imm = (int32_t)flags},
        {.code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_get_stackid},
        {.code = BPF_JMP | BPF_EXIT},
    };
    return bpf_prog_load(BPF_PROG_TYPE_RAW_TRACEPOINT, "stackid", "GPL", insns, sizeof(insns) / sizeof(insns[0]), NULL);
}

static int run_prog(int prog)
{
    uint64_t args[4] = {0};
    LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = args, .ctx_size_in = sizeof(args));
    cr_assert_eq(bpf_prog_test_run_opts(prog, &o), 0, "test run: %s", strerror(errno));
    return (int)o.retval;
}

/* The kernel's own stacks, given to ours: the same ids (jhash2 of the
 * addresses masked to the buckets), with and without skipped frames. */
Test(stacktrace_kernel, ids_like_the_kernel)
{
    test_needs("bpf-maps");
    for (uint32_t skip = 0; skip < 3; skip++) {
        int kfd = bpf_map_create(BPF_MAP_TYPE_STACK_TRACE, "s", 4, DEPTH * 8, 1024, NULL);
        cr_assert_geq(kfd, 0, "%s", strerror(errno));
        int prog = stackid_prog(kfd, skip);
        if (prog < 0) {
            close(kfd);
            cr_skip_test("raw tracepoint program with bpf_get_stackid refused: %s", strerror(errno));
        }
        int kid = run_prog(prog);
        cr_assert_geq(kid, 0, "kernel stackid %d", kid);
        uint64_t ips[DEPTH] = {0};
        cr_assert_eq(bpf_map_lookup_elem(kfd, &kid, ips), 0);
        uint32_t n = 0;
        while (n < DEPTH && ips[n])
            n++;
        struct bpfg_map *m = stack_map_create(1024, DEPTH);
        cr_assert_eq(bpfg_map_stackid(m, ips, n, 0), kid, "skip %u: %u frames", skip, n);
        expect_stack(m, (uint32_t)kid, ips, n);
        cr_assert_eq(run_prog(prog), kid, "the kernel: the same stack again");
        bpfg_map_close(m);
        close(prog);
        close(kfd);
    }
}
