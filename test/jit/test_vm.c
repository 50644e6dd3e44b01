/* Interpreter edge cases the conformance vectors miss. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "insn.h"
#include "vm.h"

#define PROG(...) ((struct bpf_insn[]){__VA_ARGS__})
#define NINSN(p) (sizeof(p) / sizeof((p)[0]))

static struct bpfg_vm *vm;

static void setup(void)
{
    vm = bpfg_vm_new();
    cr_assert_not_null(vm);
}

static void teardown(void)
{
    bpfg_vm_free(vm);
}

TestSuite(vm, .init = setup, .fini = teardown);

/* Loads and runs a program with no context; fails the test on error. */
static uint64_t run_prog(const struct bpf_insn *insns, size_t n)
{
    uint64_t r0 = 0xdeadbeef;
    int err = bpfg_vm_load(vm, insns, n);
    cr_assert_eq(err, 0, "load failed: %s", bpfg_vm_error(vm));
    err = bpfg_vm_exec(vm, NULL, 0, &r0);
    cr_assert_eq(err, 0, "exec failed: %s", bpfg_vm_error(vm));
    return r0;
}
#define RUN(...)                              \
    ({                                        \
        struct bpf_insn p_[] = {__VA_ARGS__}; \
        run_prog(p_, NINSN(p_));              \
    })

static void expect_load_error(const struct bpf_insn *insns, size_t n, const char *needle)
{
    int err = bpfg_vm_load(vm, insns, n);
    cr_assert_lt(err, 0, "program was accepted, expected '%s'", needle);
    cr_assert(strstr(bpfg_vm_error(vm), needle), "error '%s' lacks '%s'", bpfg_vm_error(vm), needle);
}
#define LOAD_FAILS(needle, ...)                   \
    ({                                            \
        struct bpf_insn p_[] = {__VA_ARGS__};     \
        expect_load_error(p_, NINSN(p_), needle); \
    })

Test(vm, shift_amounts_are_masked)
{
    cr_expect_eq(RUN(MOV64_IMM(0, 1), ALU64_IMM(BPF_LSH, 0, 65), EXIT()), 2);
    cr_expect_eq(RUN(MOV64_IMM(0, 1), MOV64_IMM(1, 64 + 63), ALU64_REG(BPF_LSH, 0, 1), EXIT()), 1ull << 63);
    cr_expect_eq(RUN(MOV32_IMM(0, 1), ALU32_IMM(BPF_LSH, 0, 33), EXIT()), 2);
    cr_expect_eq(RUN(MOV32_IMM(0, 0x80000000), MOV64_IMM(1, 35), ALU32_REG(BPF_RSH, 0, 1), EXIT()), 0x10000000);
    cr_expect_eq(RUN(MOV32_IMM(0, 0x80000000), ALU32_IMM(BPF_ARSH, 0, 33), EXIT()), 0xc0000000);
    cr_expect_eq(RUN(LD_IMM64(0, 0x8000000000000000ull), ALU64_IMM(BPF_ARSH, 0, 127), EXIT()), UINT64_MAX);
}

Test(vm, signed_division_overflow)
{
    cr_expect_eq(RUN(LD_IMM64(0, INT64_MIN), SDIV64_IMM(0, -1), EXIT()), (uint64_t)INT64_MIN);
    cr_expect_eq(RUN(LD_IMM64(0, INT64_MIN), SMOD64_IMM(0, -1), EXIT()), 0);
    cr_expect_eq(RUN(MOV32_IMM(0, INT32_MIN), SDIV32_IMM(0, -1), EXIT()), (uint32_t)INT32_MIN);
    cr_expect_eq(RUN(MOV32_IMM(0, INT32_MIN), SMOD32_IMM(0, -1), EXIT()), 0);
    cr_expect_eq(RUN(MOV64_IMM(0, -7), SDIV64_IMM(0, 2), EXIT()), (uint64_t)-3);
    cr_expect_eq(RUN(MOV64_IMM(0, -7), SMOD64_IMM(0, 2), EXIT()), (uint64_t)-1);
}

Test(vm, division_by_zero_does_not_trap)
{
    cr_expect_eq(RUN(MOV64_IMM(0, 42), MOV64_IMM(1, 0), ALU64_REG(BPF_DIV, 0, 1), EXIT()), 0);
    cr_expect_eq(RUN(MOV64_IMM(0, -42), MOV64_IMM(1, 0), ALU64_REG(BPF_MOD, 0, 1), EXIT()), (uint64_t)-42);
    /* ALU32 modulo by zero keeps the low half and zeroes the high half. */
    cr_expect_eq(RUN(MOV64_IMM(0, -42), MOV64_IMM(1, 0), ALU32_REG(BPF_MOD, 0, 1), EXIT()), (uint32_t)-42);
    cr_expect_eq(RUN(MOV64_IMM(0, 42), SDIV64_IMM(0, 0), EXIT()), 0);
}

Test(vm, alu32_results_are_zero_extended)
{
    cr_expect_eq(RUN(MOV32_IMM(0, -1), EXIT()), 0xffffffffull);
    cr_expect_eq(RUN(MOV64_IMM(0, -1), ALU32_IMM(BPF_ADD, 0, 1), EXIT()), 0);
    cr_expect_eq(RUN(MOV64_IMM(0, -1), ALU32_IMM(BPF_NEG, 0, 0), EXIT()), 1);
    cr_expect_eq(RUN(LD_IMM64(0, 0xffffffff00000005ull), ALU32_IMM(BPF_MUL, 0, 3), EXIT()), 15);
    /* movsx32 sign-extends into 32 bits only. */
    cr_expect_eq(RUN(MOV64_IMM(1, 0x80), INSN(BPF_ALU | BPF_X | BPF_MOV, 0, 1, 8, 0), EXIT()), 0xffffff80ull);
}

Test(vm, byte_swaps)
{
    cr_expect_eq(RUN(LD_IMM64(0, 0x1122334455667788ull), INSN(BPF_ALU | BPF_END | BPF_TO_BE, 0, 0, 0, 16), EXIT()),
                 0x8877);
    cr_expect_eq(RUN(LD_IMM64(0, 0x1122334455667788ull), INSN(BPF_ALU | BPF_END | BPF_TO_LE, 0, 0, 0, 32), EXIT()),
                 0x55667788);
    cr_expect_eq(RUN(LD_IMM64(0, 0x1122334455667788ull), INSN(EBPF_ALU_BSWAP, 0, 0, 0, 64), EXIT()),
                 0x8877665544332211ull);
}

Test(vm, stack_bounds_are_checked)
{
    /* The last byte of the frame is fine, the first byte above it is not. */
    cr_expect_eq(RUN(ST_IMM(BPF_B, 10, -1, 7), LDX(BPF_B, 0, 10, -1), EXIT()), 7);
    cr_expect_eq(RUN(ST_IMM(BPF_DW, 10, -512, 9), LDX(BPF_DW, 0, 10, -512), EXIT()), 9);

    struct bpf_insn above[] = {LDX(BPF_W, 0, 10, 0), EXIT()};
    uint64_t r0;
    cr_assert_eq(bpfg_vm_load(vm, above, NINSN(above)), 0);
    cr_expect_eq(bpfg_vm_exec(vm, NULL, 0, &r0), -EFAULT);
    cr_expect(strstr(bpfg_vm_error(vm), "instruction 0: out-of-bounds read of 4 bytes"), "%s", bpfg_vm_error(vm));

    struct bpf_insn below[] = {MOV64_IMM(0, 0), ST_IMM(BPF_DW, 10, -520, 1), EXIT()};
    cr_assert_eq(bpfg_vm_load(vm, below, NINSN(below)), 0);
    cr_expect_eq(bpfg_vm_exec(vm, NULL, 0, &r0), -EFAULT);
    cr_expect(strstr(bpfg_vm_error(vm), "instruction 1: out-of-bounds write of 8 bytes"), "%s", bpfg_vm_error(vm));
}

Test(vm, context_bounds_are_checked)
{
    uint8_t ctx[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    struct bpf_insn ok[] = {LDX(BPF_W, 0, 1, 4), EXIT()};
    struct bpf_insn bad[] = {LDX(BPF_W, 0, 1, 5), EXIT()};
    uint64_t r0;
    cr_assert_eq(bpfg_vm_load(vm, ok, NINSN(ok)), 0);
    cr_assert_eq(bpfg_vm_exec(vm, ctx, sizeof(ctx), &r0), 0);
    cr_expect_eq(r0, 0x08070605);
    cr_assert_eq(bpfg_vm_load(vm, bad, NINSN(bad)), 0);
    cr_expect_eq(bpfg_vm_exec(vm, ctx, sizeof(ctx), &r0), -EFAULT);
}

Test(vm, registered_regions_and_write_protection)
{
    static uint64_t table[4] = {10, 20, 30, 40};
    struct bpf_insn read[] = {LD_IMM64(1, (uintptr_t)&table[0]), LDX(BPF_DW, 0, 1, 16), EXIT()};
    struct bpf_insn write[] = {LD_IMM64(1, (uintptr_t)&table[0]), ST_IMM(BPF_DW, 1, 8, 5), MOV64_IMM(0, 0), EXIT()};
    uint64_t r0;

    cr_assert_eq(bpfg_vm_load(vm, read, NINSN(read)), 0);
    cr_expect_eq(bpfg_vm_exec(vm, NULL, 0, &r0), -EFAULT, "unregistered memory must be refused");
    cr_assert_eq(bpfg_vm_add_region(vm, table, sizeof(table), false), 0);
    cr_assert_eq(bpfg_vm_exec(vm, NULL, 0, &r0), 0);
    cr_expect_eq(r0, 30);

    cr_assert_eq(bpfg_vm_load(vm, write, NINSN(write)), 0);
    cr_expect_eq(bpfg_vm_exec(vm, NULL, 0, &r0), -EFAULT, "read-only region was written");
    cr_expect_eq(table[1], 20);

    bpfg_vm_set_checked(vm, false);
    cr_assert_eq(bpfg_vm_exec(vm, NULL, 0, &r0), 0);
    cr_expect_eq(table[1], 5, "unchecked mode writes directly");
    table[1] = 20;
}

/* r0 = depth: each function calls the next, the last one returns. */
static size_t build_call_chain(struct bpf_insn *p, int calls)
{
    size_t n = 0;
    for (int i = 0; i < calls; i++) {
        p[n++] = CALL_LOCAL(2); /* to the next function */
        p[n++] = ALU64_IMM(BPF_ADD, 0, 1);
        p[n++] = EXIT();
    }
    p[n++] = MOV64_IMM(0, 0);
    p[n++] = EXIT();
    return n;
}

Test(vm, call_depth_limit)
{
    struct bpf_insn p[64];
    size_t n = build_call_chain(p, EBPF_MAX_CALL_DEPTH - 1);
    uint64_t r0;
    cr_assert_eq(bpfg_vm_load(vm, p, n), 0, "%s", bpfg_vm_error(vm));
    cr_assert_eq(bpfg_vm_exec(vm, NULL, 0, &r0), 0, "%s", bpfg_vm_error(vm));
    cr_expect_eq(r0, EBPF_MAX_CALL_DEPTH - 1);

    n = build_call_chain(p, EBPF_MAX_CALL_DEPTH);
    cr_assert_eq(bpfg_vm_load(vm, p, n), 0, "%s", bpfg_vm_error(vm));
    cr_expect_eq(bpfg_vm_exec(vm, NULL, 0, &r0), -E2BIG);
    cr_expect(strstr(bpfg_vm_error(vm), "call depth exceeds 8"), "%s", bpfg_vm_error(vm));
}

Test(vm, frames_have_own_stack_and_callee_saved_registers)
{
    uint64_t r = RUN(MOV64_IMM(6, 100), ST_IMM(BPF_DW, 10, -8, 1), CALL_LOCAL(4),
                     LDX(BPF_DW, 1, 10, -8), /* caller's slot untouched: 1 */
                     ALU64_REG(BPF_ADD, 0, 1), ALU64_REG(BPF_ADD, 0, 6), EXIT(),
                     /* callee: clobbers r6 and its own [r10-8] */
                     MOV64_IMM(6, 7), ST_IMM(BPF_DW, 10, -8, 1000), LDX(BPF_DW, 0, 10, -8), EXIT());
    cr_expect_eq(r, 1000 + 1 + 100);
}

static uint64_t helper_sum(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, void *user)
{
    return a + b + c + d + e + *(uint64_t *)user;
}

static uint64_t helper_identity(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, void *user)
{
    (void)b, (void)c, (void)d, (void)e, (void)user;
    return a;
}

Test(vm, helpers_and_unwind)
{
    uint64_t bias = 1000;
    cr_assert_eq(bpfg_vm_register_helper(vm, 7, "sum", helper_sum, &bias), 0);
    cr_expect_str_eq(bpfg_vm_helper_name(vm, 7), "sum");
    cr_expect_null(bpfg_vm_helper_name(vm, 8));
    cr_expect_eq(bpfg_vm_register_helper(vm, BPFG_MAX_HELPERS, "x", helper_sum, NULL), -EINVAL);
    cr_expect_eq(RUN(MOV64_IMM(1, 1), MOV64_IMM(2, 2), MOV64_IMM(3, 3), MOV64_IMM(4, 4), MOV64_IMM(5, 5),
                     CALL_HELPER(7), EXIT()),
                 1015);

    cr_assert_eq(bpfg_vm_register_helper(vm, 5, "unwind", helper_identity, NULL), 0);
    cr_assert_eq(bpfg_vm_set_unwind_helper(vm, 5), 0);
    cr_expect_eq(RUN(MOV64_IMM(1, 0), CALL_HELPER(5), MOV64_IMM(0, 2), EXIT()), 0);
    cr_expect_eq(RUN(MOV64_IMM(1, 3), CALL_HELPER(5), MOV64_IMM(0, 2), EXIT()), 2);
    /* callx through a register holding the helper id */
    cr_expect_eq(RUN(MOV64_IMM(1, 9), MOV64_IMM(2, 5), CALLX(2), EXIT()), 9);
}

static uint64_t helper_user_tag(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, void *user)
{
    (void)b, (void)c, (void)d, (void)e;
    return a + (user ? *(uint64_t *)user : 0);
}

Test(vm, exec_ctx_passes_per_run_user_pointer)
{
    uint64_t reg_user = 100, run_user = 5000;
    cr_assert_eq(bpfg_vm_register_helper(vm, 7, "tag", helper_user_tag, &reg_user), 0);
    struct bpf_insn p[] = {MOV64_IMM(1, 1), CALL_HELPER(7), EXIT()};
    cr_assert_eq(bpfg_vm_load(vm, p, NINSN(p)), 0, "%s", bpfg_vm_error(vm));
    uint64_t r0 = 0;
    cr_assert_eq(bpfg_vm_exec_ctx(vm, NULL, 0, &run_user, &r0), 0, "%s", bpfg_vm_error(vm));
    cr_expect_eq(r0, 5001, "helper must get the per-run pointer");
    /* NULL is a valid per-run pointer too: it replaces the registration's */
    cr_assert_eq(bpfg_vm_exec_ctx(vm, NULL, 0, NULL, &r0), 0);
    cr_expect_eq(r0, 1);
    /* plain exec keeps the registration's pointer */
    cr_assert_eq(bpfg_vm_exec(vm, NULL, 0, &r0), 0);
    cr_expect_eq(r0, 101);
    /* r1 = ctx as with bpfg_vm_exec */
    uint64_t ctx = 0;
    struct bpf_insn q[] = {MOV64_REG(0, 1), EXIT()};
    cr_assert_eq(bpfg_vm_load(vm, q, NINSN(q)), 0);
    cr_assert_eq(bpfg_vm_exec_ctx(vm, &ctx, sizeof(ctx), &run_user, &r0), 0);
    cr_expect_eq(r0, (uint64_t)(uintptr_t)&ctx);
}

Test(vm, callx_to_local_function)
{
    /* lddw BPF_PSEUDO_FUNC gives a callable function reference. */
    cr_expect_eq(RUN(LD_IMM64_RAW(3, BPF_PSEUDO_FUNC, 4, 0), MOV64_IMM(1, 20), CALLX(3), EXIT(), MOV64_REG(0, 1),
                     ALU64_IMM(BPF_ADD, 0, 22), EXIT()),
                 42);
}

static int resolver(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    (void)imm1;
    if (src_reg != BPF_PSEUDO_MAP_FD || imm0 != 3)
        return -ENOENT;
    *value = *(uint64_t *)user;
    return 0;
}

Test(vm, lddw_pseudo_forms_use_resolver)
{
    struct bpf_insn p[] = {LD_IMM64_RAW(0, BPF_PSEUDO_MAP_FD, 3, 0), EXIT()};
    struct bpf_insn missing[] = {LD_IMM64_RAW(0, BPF_PSEUDO_MAP_FD, 4, 0), EXIT()};
    uint64_t mapval = 0x1234567890ull, r0;

    expect_load_error(p, NINSN(p), "instruction 0: lddw pseudo form 1");
    bpfg_vm_set_ld64_resolver(vm, resolver, &mapval);
    cr_assert_eq(bpfg_vm_load(vm, p, NINSN(p)), 0, "%s", bpfg_vm_error(vm));
    cr_assert_eq(bpfg_vm_exec(vm, NULL, 0, &r0), 0);
    cr_expect_eq(r0, mapval);
    expect_load_error(missing, NINSN(missing), "cannot resolve lddw pseudo form 1 imm 4");
}

Test(vm, atomics_32_and_64)
{
    cr_expect_eq(RUN(ST_IMM(BPF_DW, 10, -8, -1), MOV64_IMM(1, 1), ATOMIC(BPF_W, BPF_ADD | BPF_FETCH, 10, 1, -8),
                     LDX(BPF_DW, 0, 10, -8), ALU64_REG(BPF_ADD, 0, 1), EXIT()),
                 0xffffffff00000000ull + 0xffffffffull);
    cr_expect_eq(RUN(ST_IMM(BPF_DW, 10, -8, 5), MOV64_IMM(0, 5), MOV64_IMM(1, 9),
                     ATOMIC(BPF_DW, BPF_CMPXCHG, 10, 1, -8), LDX(BPF_DW, 1, 10, -8), ALU64_IMM(BPF_LSH, 0, 8),
                     ALU64_REG(BPF_OR, 0, 1), EXIT()),
                 (5 << 8) | 9);
}

Test(vm, load_errors_name_the_instruction)
{
    cr_expect_lt(bpfg_vm_load(vm, NULL, 0), 0);
    cr_expect(strstr(bpfg_vm_error(vm), "empty program"));

    LOAD_FAILS("instruction 1: unknown opcode 0xff", MOV64_IMM(0, 0), INSN(0xff, 0, 0, 0, 0), EXIT());
    LOAD_FAILS("instruction 0: r10 is read-only", MOV64_IMM(10, 0), EXIT());
    LOAD_FAILS("instruction 0: bad source register r11", ALU64_REG(BPF_ADD, 0, 11), EXIT());
    LOAD_FAILS("instruction 1: jump out of range", MOV64_IMM(0, 0), JA(5), EXIT());
    LOAD_FAILS("instruction 0: jump out of range", JMP_IMM(BPF_JEQ, 0, 0, -2), EXIT());
    LOAD_FAILS("jump into the middle of lddw", JA(1), LD_IMM64(0, 1), EXIT());
    LOAD_FAILS("instruction 0: lddw split", INSN(BPF_LD | BPF_DW | BPF_IMM, 0, 0, 0, 1), MOV64_IMM(0, 1), EXIT());
    LOAD_FAILS("instruction 1: lddw split: program ends", MOV64_IMM(0, 0), INSN(BPF_LD | BPF_DW | BPF_IMM, 0, 0, 0, 1));
    LOAD_FAILS("no exit instruction", MOV64_IMM(0, 0), JA(-2));
    LOAD_FAILS("instruction 2: falling off the end", EXIT(), MOV64_IMM(0, 0), MOV64_IMM(0, 1));
    LOAD_FAILS("instruction 0: call to unknown helper 99", CALL_HELPER(99), EXIT());
    LOAD_FAILS("legacy packet access", INSN(BPF_LD | BPF_ABS | BPF_W, 0, 0, 0, 0), EXIT());
    LOAD_FAILS("unknown atomic operation", ATOMIC(BPF_DW, 0x77, 10, 1, -8), EXIT());
}

Test(vm, failed_load_keeps_previous_program)
{
    cr_expect_eq(RUN(MOV64_IMM(0, 11), EXIT()), 11);
    struct bpf_insn bad[] = {INSN(0xff, 0, 0, 0, 0), EXIT()};
    uint64_t r0;
    cr_assert_lt(bpfg_vm_load(vm, bad, NINSN(bad)), 0);
    cr_assert_eq(bpfg_vm_exec(vm, NULL, 0, &r0), 0);
    cr_expect_eq(r0, 11);
}

struct thread_arg {
    struct bpfg_vm *vm;
    uint64_t input;
    uint64_t result;
    int err;
};

static void *run_thread(void *p)
{
    struct thread_arg *a = p;
    for (int i = 0; i < 10000 && !a->err; i++)
        a->err = bpfg_vm_exec(a->vm, &a->input, sizeof(a->input), &a->result);
    return NULL;
}

Test(vm, concurrent_exec_on_one_program)
{
    /* r0 = sum(0..input) via a stack-resident accumulator */
    struct bpf_insn p[] = {
        LDX(BPF_DW, 6, 1, 0),      ST_IMM(BPF_DW, 10, -8, 0),
        JMP_IMM(BPF_JEQ, 6, 0, 5), LDX(BPF_DW, 0, 10, -8),
        ALU64_REG(BPF_ADD, 0, 6),  STX(BPF_DW, 10, 0, -8),
        ALU64_IMM(BPF_SUB, 6, 1),  JA(-6),
        LDX(BPF_DW, 0, 10, -8),    EXIT(),
    };
    cr_assert_eq(bpfg_vm_load(vm, p, NINSN(p)), 0, "%s", bpfg_vm_error(vm));
    struct thread_arg args[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct thread_arg){.vm = vm, .input = 100 * (i + 1)};
        cr_assert_eq(pthread_create(&th[i], NULL, run_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        cr_expect_eq(args[i].err, 0);
        cr_expect_eq(args[i].result, args[i].input * (args[i].input + 1) / 2);
    }
}
