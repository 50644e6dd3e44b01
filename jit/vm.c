/* The eBPF interpreter: program validation at load time, execution with
 * optional bounds checking of every memory access.
 *
 * Load-time checks are structural only (opcodes, registers, jump targets,
 * lddw pairs, exits); proving a program safe is the verifier's job. Checked
 * mode is the safety net for programs run without the verifier (tests,
 * conformance vectors, debugging).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vm.h"
#include "callbacks.h"

#define ERR_LEN 256

/* lddw of a BPF_PSEUDO_FUNC yields this tag plus the target instruction
 * index, so callx can tell a bpf-to-bpf function from a helper id. */
#define FUNC_TAG 0xbfc0000000000000ull
#define FUNC_TAG_MASK 0xffff000000000000ull

struct helper_slot {
    bpfg_helper_fn fn;
    void *user;
    char name[32];
};

struct region {
    uintptr_t start;
    uintptr_t end;
    bool writable;
};

struct bpfg_vm {
    struct bpf_insn *insns;
    size_t n;
    struct bpf_insn *lowered; /* callbacks lowered, lddw unresolved; NULL if none */
    struct helper_slot helpers[BPFG_MAX_HELPERS];
    int64_t unwind_id; /* -1: none */
    bpfg_ld64_resolver resolver;
    void *resolver_user;
    bool checked;
    struct region *regions;
    size_t nregions;
    size_t cap_regions;
    char err[ERR_LEN];
};

/* Run errors are per thread: one program may run on many threads at once. */
static __thread struct {
    const struct bpfg_vm *vm;
    char msg[ERR_LEN];
} run_err;

static int load_error(struct bpfg_vm *vm, int err, size_t pc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int load_error(struct bpfg_vm *vm, int err, size_t pc, const char *fmt, ...)
{
    va_list ap;
    int len = snprintf(vm->err, sizeof(vm->err), "instruction %zu: ", pc);
    va_start(ap, fmt);
    vsnprintf(vm->err + len, sizeof(vm->err) - (size_t)len, fmt, ap);
    va_end(ap);
    return err;
}

static int run_error(const struct bpfg_vm *vm, int err, size_t pc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), cold, noinline));

static int run_error(const struct bpfg_vm *vm, int err, size_t pc, const char *fmt, ...)
{
    va_list ap;
    int len = snprintf(run_err.msg, sizeof(run_err.msg), "instruction %zu: ", pc);
    va_start(ap, fmt);
    vsnprintf(run_err.msg + len, sizeof(run_err.msg) - (size_t)len, fmt, ap);
    va_end(ap);
    run_err.vm = vm;
    return err;
}

struct bpfg_vm *bpfg_vm_new(void)
{
    struct bpfg_vm *vm = calloc(1, sizeof(*vm));
    if (!vm)
        return NULL;
    vm->unwind_id = -1;
    vm->checked = true;
    return vm;
}

void bpfg_vm_free(struct bpfg_vm *vm)
{
    if (!vm)
        return;
    if (run_err.vm == vm)
        run_err.vm = NULL;
    free(vm->insns);
    free(vm->lowered);
    free(vm->regions);
    free(vm);
}

const char *bpfg_vm_error(const struct bpfg_vm *vm)
{
    if (run_err.vm == vm)
        return run_err.msg;
    return vm->err;
}

int bpfg_vm_register_helper(struct bpfg_vm *vm, uint32_t id, const char *name, bpfg_helper_fn fn, void *user)
{
    if (id >= BPFG_MAX_HELPERS || !fn)
        return -EINVAL;
    vm->helpers[id].fn = fn;
    vm->helpers[id].user = user;
    snprintf(vm->helpers[id].name, sizeof(vm->helpers[id].name), "%s", name ? name : "");
    return 0;
}

const char *bpfg_vm_helper_name(const struct bpfg_vm *vm, uint32_t id)
{
    if (id >= BPFG_MAX_HELPERS || !vm->helpers[id].fn)
        return NULL;
    return vm->helpers[id].name;
}

int bpfg_vm_set_unwind_helper(struct bpfg_vm *vm, uint32_t id)
{
    if (id >= BPFG_MAX_HELPERS)
        return -EINVAL;
    vm->unwind_id = id;
    return 0;
}

void bpfg_vm_set_ld64_resolver(struct bpfg_vm *vm, bpfg_ld64_resolver fn, void *user)
{
    vm->resolver = fn;
    vm->resolver_user = user;
}

void bpfg_vm_set_checked(struct bpfg_vm *vm, bool checked)
{
    vm->checked = checked;
}

int bpfg_vm_add_region(struct bpfg_vm *vm, const void *addr, size_t len, bool writable)
{
    uintptr_t start = (uintptr_t)addr;
    if (!addr || !len || start + len < start)
        return -EINVAL;
    if (vm->nregions == vm->cap_regions) {
        size_t cap = vm->cap_regions ? vm->cap_regions * 2 : 8;
        struct region *r = realloc(vm->regions, cap * sizeof(*r));
        if (!r)
            return -ENOMEM;
        vm->regions = r;
        vm->cap_regions = cap;
    }
    vm->regions[vm->nregions++] = (struct region){start, start + len, writable};
    return 0;
}

const struct bpf_insn *bpfg_vm_insns(const struct bpfg_vm *vm)
{
    return vm->insns;
}

size_t bpfg_vm_insn_count(const struct bpfg_vm *vm)
{
    return vm->n;
}

const struct bpf_insn *bpfg_vm_lowered_insns(const struct bpfg_vm *vm)
{
    return vm->lowered;
}

/* ---- load-time validation ------------------------------------------- */

static bool is_wide_ldimm(const struct bpf_insn *in)
{
    return in->code == (BPF_LD | BPF_IMM | BPF_DW);
}

static int check_alu(struct bpfg_vm *vm, size_t pc, const struct bpf_insn *in)
{
    bool is64 = BPF_CLASS(in->code) == BPF_ALU64;
    uint8_t op = BPF_OP(in->code);
    bool src_reg = BPF_SRC(in->code) == BPF_X;

    if (in->dst_reg == BPF_REG_10)
        return load_error(vm, -EINVAL, pc, "r10 is read-only (frame pointer)");
    if (src_reg && in->src_reg > BPF_REG_10)
        return load_error(vm, -EINVAL, pc, "bad source register r%u", in->src_reg);
    if (!src_reg && in->src_reg != 0 && op != BPF_END)
        return load_error(vm, -EINVAL, pc, "reserved source register field set (%u)", in->src_reg);

    switch (op) {
    case BPF_ADD:
    case BPF_SUB:
    case BPF_MUL:
    case BPF_OR:
    case BPF_AND:
    case BPF_LSH:
    case BPF_RSH:
    case BPF_XOR:
    case BPF_ARSH:
        if (in->off != 0)
            return load_error(vm, -EINVAL, pc, "nonzero offset %d on ALU op 0x%02x", in->off, in->code);
        return 0;
    case BPF_DIV:
    case BPF_MOD:
        if (in->off != 0 && in->off != 1)
            return load_error(vm, -EINVAL, pc, "bad offset %d on div/mod (0 or 1)", in->off);
        return 0;
    case BPF_NEG:
        if (src_reg || in->off != 0)
            return load_error(vm, -EINVAL, pc, "malformed neg 0x%02x", in->code);
        return 0;
    case BPF_MOV:
        if (in->off == 0)
            return 0;
        if (!src_reg)
            return load_error(vm, -EINVAL, pc, "movsx needs a source register");
        if (in->off == 8 || in->off == 16 || (is64 && in->off == 32))
            return 0;
        return load_error(vm, -EINVAL, pc, "bad movsx width %d", in->off);
    case BPF_END:
        if (in->src_reg != 0 || in->off != 0)
            return load_error(vm, -EINVAL, pc, "malformed byte swap");
        if (is64 && BPF_SRC(in->code) != BPF_TO_LE)
            return load_error(vm, -EINVAL, pc, "unknown opcode 0x%02x", in->code);
        if (in->imm != 16 && in->imm != 32 && in->imm != 64)
            return load_error(vm, -EINVAL, pc, "bad byte swap width %d", in->imm);
        return 0;
    default: return load_error(vm, -EINVAL, pc, "unknown opcode 0x%02x", in->code);
    }
}

static int check_jump_target(struct bpfg_vm *vm, size_t pc, int64_t target, const struct bpf_insn *insns, size_t n)
{
    if (target < 0 || (uint64_t)target >= n)
        return load_error(vm, -EINVAL, pc, "jump out of range (to %lld of %zu)", (long long)target, n);
    if (target > 0 && is_wide_ldimm(&insns[target - 1]))
        return load_error(vm, -EINVAL, pc, "jump into the middle of lddw at %lld", (long long)target - 1);
    return 0;
}

static int check_jmp(struct bpfg_vm *vm, size_t pc, const struct bpf_insn *insns, size_t n)
{
    const struct bpf_insn *in = &insns[pc];
    bool is32 = BPF_CLASS(in->code) == BPF_JMP32;
    uint8_t op = BPF_OP(in->code);
    bool src_reg = BPF_SRC(in->code) == BPF_X;

    switch (op) {
    case BPF_JA:
        if (src_reg || in->dst_reg || in->src_reg)
            return load_error(vm, -EINVAL, pc, "malformed ja");
        return check_jump_target(vm, pc, (int64_t)pc + 1 + (is32 ? in->imm : in->off), insns, n);
    case BPF_EXIT:
        if (is32 || src_reg || in->dst_reg || in->src_reg || in->off || in->imm)
            return load_error(vm, -EINVAL, pc, "malformed exit");
        return 0;
    case BPF_CALL:
        if (is32)
            return load_error(vm, -EINVAL, pc, "unknown opcode 0x%02x", in->code);
        if (src_reg) { /* callx: target in dst_reg */
            if (in->dst_reg > BPF_REG_9 || in->src_reg || in->off || in->imm)
                return load_error(vm, -EINVAL, pc, "malformed callx");
            return 0;
        }
        if (in->src_reg == BPF_PSEUDO_CALL)
            return check_jump_target(vm, pc, (int64_t)pc + 1 + in->imm, insns, n);
        if (in->src_reg != 0)
            return load_error(vm, -EINVAL, pc, "unsupported call kind %u (kfuncs are not available)", in->src_reg);
        if (in->imm < 0 || in->imm >= BPFG_MAX_HELPERS || !vm->helpers[in->imm].fn)
            return load_error(vm, -EINVAL, pc, "call to unknown helper %d", in->imm);
        return 0;
    case BPF_JEQ:
    case BPF_JGT:
    case BPF_JGE:
    case BPF_JSET:
    case BPF_JNE:
    case BPF_JSGT:
    case BPF_JSGE:
    case BPF_JLT:
    case BPF_JLE:
    case BPF_JSLT:
    case BPF_JSLE:
        if (in->dst_reg > BPF_REG_10)
            return load_error(vm, -EINVAL, pc, "bad destination register r%u", in->dst_reg);
        if (src_reg && in->src_reg > BPF_REG_10)
            return load_error(vm, -EINVAL, pc, "bad source register r%u", in->src_reg);
        return check_jump_target(vm, pc, (int64_t)pc + 1 + in->off, insns, n);
    default: return load_error(vm, -EINVAL, pc, "unknown opcode 0x%02x", in->code);
    }
}

static int check_mem(struct bpfg_vm *vm, size_t pc, const struct bpf_insn *in)
{
    uint8_t cls = BPF_CLASS(in->code), mode = BPF_MODE(in->code), size = BPF_SIZE(in->code);

    if (in->dst_reg > BPF_REG_10)
        return load_error(vm, -EINVAL, pc, "bad destination register r%u", in->dst_reg);
    if (in->src_reg > BPF_REG_10)
        return load_error(vm, -EINVAL, pc, "bad source register r%u", in->src_reg);

    switch (cls) {
    case BPF_LDX:
        if (in->dst_reg == BPF_REG_10)
            return load_error(vm, -EINVAL, pc, "r10 is read-only (frame pointer)");
        if (in->imm)
            return load_error(vm, -EINVAL, pc, "nonzero immediate on load");
        if (mode == BPF_MEM || (mode == BPF_MEMSX && size != BPF_DW))
            return 0;
        break;
    case BPF_ST:
        if (in->src_reg)
            return load_error(vm, -EINVAL, pc, "reserved source register field set (%u)", in->src_reg);
        if (mode == BPF_MEM)
            return 0;
        break;
    case BPF_STX:
        if (mode == BPF_MEM) {
            if (in->imm)
                return load_error(vm, -EINVAL, pc, "nonzero immediate on store");
            return 0;
        }
        if (mode == BPF_ATOMIC) {
            if (size != BPF_W && size != BPF_DW)
                return load_error(vm, -EINVAL, pc, "atomic op needs 32 or 64-bit size");
            switch (in->imm) {
            case BPF_ADD:
            case BPF_OR:
            case BPF_AND:
            case BPF_XOR:
            case BPF_ADD | BPF_FETCH:
            case BPF_OR | BPF_FETCH:
            case BPF_AND | BPF_FETCH:
            case BPF_XOR | BPF_FETCH:
            case BPF_XCHG:
            case BPF_CMPXCHG: return 0;
            default: return load_error(vm, -EINVAL, pc, "unknown atomic operation 0x%x", in->imm);
            }
        }
        break;
    }
    if (cls == BPF_LD && (mode == BPF_ABS || mode == BPF_IND))
        return load_error(vm, -EINVAL, pc, "legacy packet access (ld_abs/ld_ind) is not supported");
    return load_error(vm, -EINVAL, pc, "unknown opcode 0x%02x", in->code);
}

static int resolve_ldimm(struct bpfg_vm *vm, size_t pc, struct bpf_insn *insns, size_t n)
{
    struct bpf_insn *in = &insns[pc];
    struct bpf_insn *next = &insns[pc + 1];
    uint64_t value;

    if (in->dst_reg >= BPF_REG_10)
        return load_error(vm, -EINVAL, pc, "bad destination register r%u", in->dst_reg);
    if (in->off)
        return load_error(vm, -EINVAL, pc, "nonzero offset on lddw");
    if (next->code || next->dst_reg || next->src_reg || next->off)
        return load_error(vm, -EINVAL, pc, "lddw split: second half at %zu is not a continuation", pc + 1);
    if (in->src_reg == 0)
        return 0;
    if (in->src_reg == BPF_PSEUDO_FUNC) {
        int64_t target = (int64_t)pc + 1 + in->imm;
        int err = check_jump_target(vm, pc, target, insns, n);
        if (err)
            return err;
        value = FUNC_TAG | (uint64_t)target;
    } else {
        if (!vm->resolver)
            return load_error(vm, -EINVAL, pc, "lddw pseudo form %u (map or BTF reference) with nothing to resolve it",
                              in->src_reg);
        int err = vm->resolver(vm->resolver_user, in->src_reg, in->imm, next->imm, &value);
        if (err)
            return load_error(vm, err, pc, "cannot resolve lddw pseudo form %u imm %d: %s", in->src_reg, in->imm,
                              strerror(-err));
    }
    /* The private copy becomes a plain 64-bit immediate load. */
    in->src_reg = 0;
    in->imm = (int32_t)(uint32_t)value;
    next->imm = (int32_t)(uint32_t)(value >> 32);
    return 0;
}

int bpfg_vm_load(struct bpfg_vm *vm, const struct bpf_insn *src, size_t n)
{
    vm->err[0] = 0;
    if (run_err.vm == vm)
        run_err.vm = NULL;
    if (!src || n == 0)
        return load_error(vm, -EINVAL, 0, "empty program");
    if (n > BPFG_MAX_INSNS)
        return load_error(vm, -E2BIG, 0, "program has %zu instructions, limit is %d", n, BPFG_MAX_INSNS);

    struct bpf_insn *insns = malloc(n * sizeof(*insns)), *lowered = NULL;
    if (!insns)
        return -ENOMEM;
    memcpy(insns, src, n * sizeof(*insns));
    size_t n0 = n;
    int err = bpfg_lower_callbacks(&insns, &n);
    if (!err && n != n0 && (lowered = malloc(n * sizeof(*lowered))) != NULL)
        memcpy(lowered, insns, n * sizeof(*lowered));
    if (err || (n != n0 && !lowered)) {
        free(insns);
        return -ENOMEM;
    }

    bool has_exit = false;
    for (size_t pc = 0; pc < n && !err; pc++) {
        struct bpf_insn *in = &insns[pc];
        switch (BPF_CLASS(in->code)) {
        case BPF_ALU:
        case BPF_ALU64: err = check_alu(vm, pc, in); break;
        case BPF_JMP:
        case BPF_JMP32:
            err = check_jmp(vm, pc, insns, n);
            has_exit |= in->code == (BPF_JMP | BPF_EXIT);
            break;
        case BPF_LD:
            if (!is_wide_ldimm(in)) {
                err = check_mem(vm, pc, in);
                break;
            }
            if (pc + 1 >= n) {
                err = load_error(vm, -EINVAL, pc, "lddw split: program ends after its first half");
                break;
            }
            err = resolve_ldimm(vm, pc, insns, n);
            pc++;
            break;
        default: err = check_mem(vm, pc, in); break;
        }
    }
    if (!err && !has_exit)
        err = load_error(vm, -EINVAL, n - 1, "program has no exit instruction");
    if (!err) {
        const struct bpf_insn *last = &insns[n - 1];
        bool ends = last->code == (BPF_JMP | BPF_EXIT) || last->code == (BPF_JMP | BPF_JA) ||
                    last->code == (BPF_JMP32 | BPF_JA);
        if (!ends || (n >= 2 && is_wide_ldimm(&insns[n - 2])))
            err = load_error(vm, -EINVAL, n - 1, "falling off the end: last instruction is not exit or ja");
    }
    if (err) {
        free(insns);
        free(lowered);
        return err;
    }
    free(vm->insns);
    free(vm->lowered);
    vm->insns = insns;
    vm->lowered = lowered;
    vm->n = n;
    return 0;
}

/* ---- execution --------------------------------------------------------- */

struct frame {
    uint64_t saved[4]; /* r6..r9 of the caller */
    uint64_t saved_r10;
    size_t return_pc;
};

struct exec_state {
    const struct bpfg_vm *vm;
    uintptr_t stack_lo; /* lowest byte of the deepest live frame */
    uintptr_t stack_hi; /* one past the top of frame 0 */
    uintptr_t ctx_lo, ctx_hi;
};

static bool access_ok(const struct exec_state *st, uintptr_t addr, size_t size, bool write)
{
    uintptr_t end = addr + size;
    if (end < addr)
        return false;
    if (addr >= st->stack_lo && end <= st->stack_hi)
        return true;
    if (addr >= st->ctx_lo && end <= st->ctx_hi)
        return true;
    for (size_t i = 0; i < st->vm->nregions; i++) {
        const struct region *r = &st->vm->regions[i];
        if (addr >= r->start && end <= r->end)
            return !write || r->writable;
    }
    return false;
}

static uint64_t bswap_width(uint64_t v, int32_t width)
{
    switch (width) {
    case 16: return __builtin_bswap16((uint16_t)v);
    case 32: return __builtin_bswap32((uint32_t)v);
    default: return __builtin_bswap64(v);
    }
}

static uint64_t trunc_width(uint64_t v, int32_t width)
{
    switch (width) {
    case 16: return (uint16_t)v;
    case 32: return (uint32_t)v;
    default: return v;
    }
}

static uint64_t load_sized(const void *p, uint8_t size)
{
    switch (size) {
    case BPF_B: {
        uint8_t v;
        memcpy(&v, p, 1);
        return v;
    }
    case BPF_H: {
        uint16_t v;
        memcpy(&v, p, 2);
        return v;
    }
    case BPF_W: {
        uint32_t v;
        memcpy(&v, p, 4);
        return v;
    }
    default: {
        uint64_t v;
        memcpy(&v, p, 8);
        return v;
    }
    }
}

static uint64_t load_signed(const void *p, uint8_t size)
{
    switch (size) {
    case BPF_B: {
        int8_t v;
        memcpy(&v, p, 1);
        return (uint64_t)(int64_t)v;
    }
    case BPF_H: {
        int16_t v;
        memcpy(&v, p, 2);
        return (uint64_t)(int64_t)v;
    }
    default: {
        int32_t v;
        memcpy(&v, p, 4);
        return (uint64_t)(int64_t)v;
    }
    }
}

static void store_sized(void *p, uint8_t size, uint64_t v)
{
    switch (size) {
    case BPF_B: {
        uint8_t x = (uint8_t)v;
        memcpy(p, &x, 1);
        break;
    }
    case BPF_H: {
        uint16_t x = (uint16_t)v;
        memcpy(p, &x, 2);
        break;
    }
    case BPF_W: {
        uint32_t x = (uint32_t)v;
        memcpy(p, &x, 4);
        break;
    }
    default: memcpy(p, &v, 8); break;
    }
}

static size_t size_bytes(uint8_t size)
{
    switch (size) {
    case BPF_B: return 1;
    case BPF_H: return 2;
    case BPF_W: return 4;
    default: return 8;
    }
}

static void atomic_op(const struct bpf_insn *in, void *p, uint64_t *regs)
{
    uint64_t *src = &regs[in->src_reg];
    bool fetch = in->imm & BPF_FETCH;

    if (BPF_SIZE(in->code) == BPF_W) {
        uint32_t *a = p, v = (uint32_t)*src, old;
        switch (in->imm) {
        case BPF_XCHG: *src = __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); return;
        case BPF_CMPXCHG: {
            uint32_t expected = (uint32_t)regs[BPF_REG_0];
            __atomic_compare_exchange_n(a, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
            regs[BPF_REG_0] = expected;
            return;
        }
        }
        switch (in->imm & ~BPF_FETCH) {
        case BPF_ADD: old = __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); break;
        case BPF_OR: old = __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); break;
        case BPF_AND: old = __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); break;
        default: old = __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); break;
        }
        if (fetch)
            *src = old;
        return;
    }

    uint64_t *a = p, v = *src, old;
    switch (in->imm) {
    case BPF_XCHG: *src = __atomic_exchange_n(a, v, __ATOMIC_SEQ_CST); return;
    case BPF_CMPXCHG: {
        uint64_t expected = regs[BPF_REG_0];
        __atomic_compare_exchange_n(a, &expected, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
        regs[BPF_REG_0] = expected;
        return;
    }
    }
    switch (in->imm & ~BPF_FETCH) {
    case BPF_ADD: old = __atomic_fetch_add(a, v, __ATOMIC_SEQ_CST); break;
    case BPF_OR: old = __atomic_fetch_or(a, v, __ATOMIC_SEQ_CST); break;
    case BPF_AND: old = __atomic_fetch_and(a, v, __ATOMIC_SEQ_CST); break;
    default: old = __atomic_fetch_xor(a, v, __ATOMIC_SEQ_CST); break;
    }
    if (fetch)
        *src = old;
}

static bool jump_taken(uint8_t op, uint64_t a, uint64_t b, bool is32)
{
    if (is32) {
        uint32_t ua = (uint32_t)a, ub = (uint32_t)b;
        int32_t sa = (int32_t)ua, sb = (int32_t)ub;
        switch (op) {
        case BPF_JEQ: return ua == ub;
        case BPF_JNE: return ua != ub;
        case BPF_JGT: return ua > ub;
        case BPF_JGE: return ua >= ub;
        case BPF_JLT: return ua < ub;
        case BPF_JLE: return ua <= ub;
        case BPF_JSET: return (ua & ub) != 0;
        case BPF_JSGT: return sa > sb;
        case BPF_JSGE: return sa >= sb;
        case BPF_JSLT: return sa < sb;
        default: return sa <= sb; /* BPF_JSLE */
        }
    }
    int64_t sa = (int64_t)a, sb = (int64_t)b;
    switch (op) {
    case BPF_JEQ: return a == b;
    case BPF_JNE: return a != b;
    case BPF_JGT: return a > b;
    case BPF_JGE: return a >= b;
    case BPF_JLT: return a < b;
    case BPF_JLE: return a <= b;
    case BPF_JSET: return (a & b) != 0;
    case BPF_JSGT: return sa > sb;
    case BPF_JSGE: return sa >= sb;
    case BPF_JSLT: return sa < sb;
    default: return sa <= sb;
    }
}

/* One ALU instruction; returns the new destination value. Division and
 * modulo by zero follow RFC 9669: x/0 = 0, x%0 = x (ALU32 zero-extended). */
static uint64_t alu64(const struct bpf_insn *in, uint64_t dst, uint64_t src)
{
    switch (BPF_OP(in->code)) {
    case BPF_ADD: return dst + src;
    case BPF_SUB: return dst - src;
    case BPF_MUL: return dst * src;
    case BPF_DIV:
        if (!src)
            return 0;
        if (in->off) {
            if ((int64_t)src == -1)
                return -dst; /* INT64_MIN / -1 wraps to INT64_MIN */
            return (uint64_t)((int64_t)dst / (int64_t)src);
        }
        return dst / src;
    case BPF_MOD:
        if (!src)
            return dst;
        if (in->off) {
            if ((int64_t)src == -1)
                return 0;
            return (uint64_t)((int64_t)dst % (int64_t)src);
        }
        return dst % src;
    case BPF_OR: return dst | src;
    case BPF_AND: return dst & src;
    case BPF_LSH: return dst << (src & 63);
    case BPF_RSH: return dst >> (src & 63);
    case BPF_ARSH: return (uint64_t)((int64_t)dst >> (src & 63));
    case BPF_NEG: return -dst;
    case BPF_XOR: return dst ^ src;
    case BPF_MOV:
        switch (in->off) {
        case 8: return (uint64_t)(int64_t)(int8_t)src;
        case 16: return (uint64_t)(int64_t)(int16_t)src;
        case 32: return (uint64_t)(int64_t)(int32_t)src;
        default: return src;
        }
    default: /* BPF_END in ALU64: unconditional byte swap */ return bswap_width(dst, in->imm);
    }
}

static uint32_t alu32(const struct bpf_insn *in, uint32_t dst, uint32_t src)
{
    switch (BPF_OP(in->code)) {
    case BPF_ADD: return dst + src;
    case BPF_SUB: return dst - src;
    case BPF_MUL: return dst * src;
    case BPF_DIV:
        if (!src)
            return 0;
        if (in->off) {
            if ((int32_t)src == -1)
                return -dst;
            return (uint32_t)((int32_t)dst / (int32_t)src);
        }
        return dst / src;
    case BPF_MOD:
        if (!src)
            return dst;
        if (in->off) {
            if ((int32_t)src == -1)
                return 0;
            return (uint32_t)((int32_t)dst % (int32_t)src);
        }
        return dst % src;
    case BPF_OR: return dst | src;
    case BPF_AND: return dst & src;
    case BPF_LSH: return dst << (src & 31);
    case BPF_RSH: return dst >> (src & 31);
    case BPF_ARSH: return (uint32_t)((int32_t)dst >> (src & 31));
    case BPF_NEG: return -dst;
    case BPF_XOR: return dst ^ src;
    default: /* BPF_MOV */
        switch (in->off) {
        case 8: return (uint32_t)(int32_t)(int8_t)src;
        case 16: return (uint32_t)(int32_t)(int16_t)src;
        default: return src;
        }
    }
}

static int exec(struct bpfg_vm *vm, void *ctx, size_t ctx_len, bool per_run, void *run_user, uint64_t *ret)
{
    if (!vm->insns) {
        snprintf(run_err.msg, sizeof(run_err.msg), "no program loaded");
        run_err.vm = vm;
        return -ENOENT;
    }

    uint64_t regs[EBPF_NREGS] = {0};
    uint8_t stack[EBPF_STACK_SIZE * EBPF_MAX_CALL_DEPTH] __attribute__((aligned(16)));
    struct frame frames[EBPF_MAX_CALL_DEPTH];
    size_t depth = 0;
    const struct bpf_insn *insns = vm->insns;
    const bool checked = vm->checked;
    struct exec_state st = {
        .vm = vm,
        .stack_hi = (uintptr_t)stack + sizeof(stack),
        .stack_lo = (uintptr_t)stack + sizeof(stack) - EBPF_STACK_SIZE,
        .ctx_lo = (uintptr_t)ctx,
        .ctx_hi = (uintptr_t)ctx + (ctx ? ctx_len : 0),
    };

    regs[BPF_REG_1] = (uintptr_t)ctx;
    regs[BPF_REG_2] = ctx_len;
    regs[BPF_REG_10] = st.stack_hi;

    for (size_t pc = 0;; pc++) {
        const struct bpf_insn *in = &insns[pc];
        uint8_t code = in->code;

        switch (BPF_CLASS(code)) {
        case BPF_ALU64: {
            uint64_t src = BPF_SRC(code) == BPF_X ? regs[in->src_reg] : (uint64_t)(int64_t)in->imm;
            regs[in->dst_reg] = alu64(in, regs[in->dst_reg], src);
            break;
        }
        case BPF_ALU: {
            if (BPF_OP(code) == BPF_END) {
                uint64_t v = regs[in->dst_reg];
                regs[in->dst_reg] = BPF_SRC(code) == BPF_TO_BE ? bswap_width(v, in->imm) : trunc_width(v, in->imm);
                break;
            }
            uint32_t src = BPF_SRC(code) == BPF_X ? (uint32_t)regs[in->src_reg] : (uint32_t)in->imm;
            regs[in->dst_reg] = alu32(in, (uint32_t)regs[in->dst_reg], src);
            break;
        }
        case BPF_LD: /* only lddw survives load */
            regs[in->dst_reg] = (uint64_t)(uint32_t)in->imm | ((uint64_t)(uint32_t)in[1].imm << 32);
            pc++;
            break;
        case BPF_LDX: {
            uintptr_t addr = regs[in->src_reg] + (int64_t)in->off;
            uint8_t size = BPF_SIZE(code);
            if (checked && !access_ok(&st, addr, size_bytes(size), false))
                return run_error(vm, -EFAULT, pc, "out-of-bounds read of %zu bytes at 0x%lx", size_bytes(size),
                                 (unsigned long)addr);
            regs[in->dst_reg] =
                BPF_MODE(code) == BPF_MEMSX ? load_signed((void *)addr, size) : load_sized((void *)addr, size);
            break;
        }
        case BPF_ST:
        case BPF_STX: {
            uintptr_t addr = regs[in->dst_reg] + (int64_t)in->off;
            uint8_t size = BPF_SIZE(code);
            if (checked && !access_ok(&st, addr, size_bytes(size), true))
                return run_error(vm, -EFAULT, pc, "out-of-bounds write of %zu bytes at 0x%lx", size_bytes(size),
                                 (unsigned long)addr);
            if (BPF_MODE(code) == BPF_ATOMIC) {
                if (addr & (size_bytes(size) - 1))
                    return run_error(vm, -EFAULT, pc, "misaligned atomic access at 0x%lx", (unsigned long)addr);
                atomic_op(in, (void *)addr, regs);
                break;
            }
            uint64_t v = BPF_CLASS(code) == BPF_ST ? (uint64_t)(int64_t)in->imm : regs[in->src_reg];
            store_sized((void *)addr, size, v);
            break;
        }
        case BPF_JMP:
        case BPF_JMP32: {
            uint8_t op = BPF_OP(code);
            bool is32 = BPF_CLASS(code) == BPF_JMP32;
            if (op == BPF_JA) {
                pc += is32 ? in->imm : in->off;
                break;
            }
            if (op == BPF_EXIT) {
                if (depth == 0) {
                    *ret = regs[BPF_REG_0];
                    return 0;
                }
                struct frame *f = &frames[--depth];
                memcpy(&regs[BPF_REG_6], f->saved, sizeof(f->saved));
                regs[BPF_REG_10] = f->saved_r10;
                st.stack_lo += EBPF_STACK_SIZE;
                pc = f->return_pc;
                break;
            }
            if (op == BPF_CALL) {
                size_t target;
                uint64_t id;
                if (BPF_SRC(code) == BPF_X) {
                    id = regs[in->dst_reg];
                    if ((id & FUNC_TAG_MASK) == FUNC_TAG) {
                        target = (size_t)(id & ~FUNC_TAG_MASK);
                        if (target >= vm->n)
                            return run_error(vm, -EINVAL, pc, "callx to invalid function %zu", target);
                        goto local_call;
                    }
                    if (id >= BPFG_MAX_HELPERS || !vm->helpers[id].fn)
                        return run_error(vm, -EINVAL, pc, "callx to unknown helper or function 0x%llx",
                                         (unsigned long long)id);
                } else if (in->src_reg == BPF_PSEUDO_CALL) {
                    target = pc + 1 + in->imm;
                    goto local_call;
                } else {
                    id = (uint32_t)in->imm;
                }
                const struct helper_slot *h = &vm->helpers[id];
                regs[BPF_REG_0] = h->fn(regs[1], regs[2], regs[3], regs[4], regs[5], per_run ? run_user : h->user);
                if ((int64_t)id == vm->unwind_id && regs[BPF_REG_0] == 0) {
                    *ret = 0;
                    return 0;
                }
                break;
            local_call:
                if (depth + 1 >= EBPF_MAX_CALL_DEPTH)
                    return run_error(vm, -E2BIG, pc, "call depth exceeds %d frames", EBPF_MAX_CALL_DEPTH);
                frames[depth].return_pc = pc;
                frames[depth].saved_r10 = regs[BPF_REG_10];
                memcpy(frames[depth].saved, &regs[BPF_REG_6], sizeof(frames[depth].saved));
                depth++;
                regs[BPF_REG_10] -= EBPF_STACK_SIZE;
                st.stack_lo -= EBPF_STACK_SIZE;
                pc = target - 1;
                break;
            }
            uint64_t src = BPF_SRC(code) == BPF_X ? regs[in->src_reg] : (uint64_t)(int64_t)in->imm;
            if (jump_taken(op, regs[in->dst_reg], src, is32))
                pc += in->off;
            break;
        }
        }
    }
}

int bpfg_vm_exec(struct bpfg_vm *vm, void *ctx, size_t ctx_len, uint64_t *ret)
{
    return exec(vm, ctx, ctx_len, false, NULL, ret);
}

int bpfg_vm_exec_ctx(struct bpfg_vm *vm, void *ctx, size_t ctx_len, void *exec_user, uint64_t *ret)
{
    return exec(vm, ctx, ctx_len, true, exec_user, ret);
}
