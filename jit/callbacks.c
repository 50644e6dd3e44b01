/* bpf_loop and bpf_for_each_map_elem lowered to stubs (callbacks.h). */
#include "callbacks.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define I(c, d, s, o, i)                                                    \
    {                                                                       \
        .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) \
    }
#define MOV_X(d, s) I(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 0, 0)
#define MOV_K(d, k) I(BPF_ALU64 | BPF_MOV | BPF_K, d, 0, 0, k)
#define ADD_K(d, k) I(BPF_ALU64 | BPF_ADD | BPF_K, d, 0, 0, k)
#define JMP_K(op, d, k, o) I(BPF_JMP | (op) | BPF_K, d, 0, o, k)
#define JMP_X(op, d, s, o) I(BPF_JMP | (op) | BPF_X, d, s, o, 0)
#define CALLX(r) I(BPF_JMP | BPF_CALL | BPF_X, r, 0, 0, 0)
#define LDX_DW(d, s, o) I(BPF_LDX | BPF_MEM | BPF_DW, d, s, o, 0)
#define STX_DW(d, s, o) I(BPF_STX | BPF_MEM | BPF_DW, d, s, o, 0)
#define EXIT I(BPF_JMP | BPF_EXIT, 0, 0, 0, 0)

/* bpf_loop(u32 nr, fn, ctx, flags): the kernel's bpf_loop() in bytecode.
 * r6 = nr, r7 = i, r8 = ctx, r9 = fn (the caller's r6-r9 are preserved
 * across a local call by every engine). */
static const struct bpf_insn loop_stub[] = {
    I(BPF_ALU | BPF_MOV | BPF_X, 1, 1, 0, 0), /* nr_loops is a u32 */
    JMP_K(BPF_JNE, 4, 0, 13),                 /* flags -> -EINVAL */
    JMP_K(BPF_JGT, 1, 1 << 23, 14),           /* > BPF_MAX_LOOPS -> -E2BIG */
    MOV_X(6, 1),
    MOV_K(7, 0),
    MOV_X(8, 3),
    MOV_X(9, 2),
    JMP_X(BPF_JGE, 7, 6, 5), /* loop: */
    MOV_X(1, 7),
    MOV_X(2, 8),
    CALLX(9),
    ADD_K(7, 1),
    JMP_K(BPF_JEQ, 0, 0, -6),
    MOV_X(0, 7), /* iterations run, the stopping one included */
    EXIT,
    MOV_K(0, -EINVAL),
    EXIT,
    MOV_K(0, -E2BIG),
    EXIT,
};

/* bpf_for_each_map_elem(map, fn, ctx, flags): walks the map with
 * BPFG_FUNC_map_iter; r6 = map, r7 = fn, r8 = ctx, r9 = cursor, the count
 * at fp-8, the iterator's out[3] at fp-32. */
static const struct bpf_insn for_each_stub[] = {
    JMP_K(BPF_JNE, 4, 0, 23), /* flags -> -EINVAL */
    MOV_X(6, 1),
    MOV_X(7, 2),
    MOV_X(8, 3),
    MOV_K(9, 0),
    I(BPF_ST | BPF_MEM | BPF_DW, 10, 0, -8, 0),
    MOV_X(1, 6), /* loop: */
    MOV_X(2, 9),
    MOV_X(3, 10),
    ADD_K(3, -32),
    I(BPF_JMP | BPF_CALL, 0, 0, 0, BPFG_FUNC_map_iter),
    JMP_K(BPF_JEQ, 0, 0, 10),
    MOV_X(9, 0),
    MOV_X(1, 6),
    LDX_DW(2, 10, -32),
    LDX_DW(3, 10, -24),
    MOV_X(4, 8),
    CALLX(7),
    LDX_DW(1, 10, -8),
    ADD_K(1, 1),
    STX_DW(10, 1, -8),
    JMP_K(BPF_JEQ, 0, 0, -16),
    LDX_DW(0, 10, -8), /* elements visited, the stopping one included */
    EXIT,
    MOV_K(0, -EINVAL),
    EXIT,
};

#define NSTUB(s) (sizeof(s) / sizeof((s)[0]))

static bool is_helper_call(const struct bpf_insn *in, int id)
{
    return in->code == (BPF_JMP | BPF_CALL) && in->src_reg == 0 && in->imm == id;
}

static size_t count_calls(const struct bpf_insn *insns, size_t n, int id)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++) {
        c += is_helper_call(&insns[i], id);
        if (insns[i].code == (BPF_LD | BPF_IMM | BPF_DW))
            i++; /* the second half is data */
    }
    return c;
}

/* Points every call of helper id at the stub that starts at insn start. */
static void redirect_calls(struct bpf_insn *insns, size_t n, int id, size_t start)
{
    for (size_t i = 0; i < n; i++) {
        if (is_helper_call(&insns[i], id)) {
            insns[i].src_reg = BPF_PSEUDO_CALL;
            insns[i].imm = (int32_t)((int64_t)start - (int64_t)i - 1);
        }
        if (insns[i].code == (BPF_LD | BPF_IMM | BPF_DW))
            i++;
    }
}

int bpfg_lower_callbacks(struct bpf_insn **insns, size_t *n)
{
    bool loop = count_calls(*insns, *n, BPF_FUNC_loop) > 0;
    bool each = count_calls(*insns, *n, BPF_FUNC_for_each_map_elem) > 0;
    if (!loop && !each)
        return 0;
    size_t extra = (loop ? NSTUB(loop_stub) : 0) + (each ? NSTUB(for_each_stub) : 0);
    struct bpf_insn *p = realloc(*insns, (*n + extra) * sizeof(*p));
    if (!p)
        return -ENOMEM;
    size_t orig = *n, end = *n;
    if (loop) {
        redirect_calls(p, orig, BPF_FUNC_loop, end);
        memcpy(&p[end], loop_stub, sizeof(loop_stub));
        end += NSTUB(loop_stub);
    }
    if (each) {
        redirect_calls(p, orig, BPF_FUNC_for_each_map_elem, end);
        memcpy(&p[end], for_each_stub, sizeof(for_each_stub));
        end += NSTUB(for_each_stub);
    }
    *insns = p;
    *n = end;
    return 0;
}
