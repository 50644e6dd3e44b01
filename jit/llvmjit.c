/* The LLVM JIT: IR construction, optimisation, object emission and the
 * in-house linker that turns the object into a flat PIC blob. See
 * llvmjit.h for the contract.
 *
 * IR shape. Every eBPF function (instruction 0, call-local targets, lddw
 * BPF_PSEUDO_FUNC targets) becomes
 *
 *   i64 status fn(i64 *io, i8 *fp, i64 depth, i8 *table, i8 *run_user)
 *
 * io holds r0..r9 on entry (the interpreter shares registers with the
 * callee) and receives r0..r5 on exit (the caller sees them). fp is r10,
 * the top of the function's 512-byte frame. status is 0, STATUS_UNWIND, or
 * a fault word; a caller returns any non-zero status at once, which
 * unwinds every frame. The exported entry allocates the 8 x 512 stack,
 * calls the function of instruction 0 and turns the status into the
 * {r0, fault} pair of x86jit.h. A program of one function that nothing
 * calls is emitted into the entry instead (emit_entry: fused), its
 * returns branching to the entry's epilogue. Function bodies are the instructions
 * reachable from their entry, so code shared by two functions is simply
 * duplicated.
 */
#include <elf.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <llvm-c/Core.h>
#include <llvm-c/Error.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <llvm/Config/llvm-config.h>

#include "llvmjit.h"

/* Must match jit/vm.c: lddw BPF_PSEUDO_FUNC yields FUNC_TAG | insn index. */
#define FUNC_TAG_HI16 0xbfc0u
#define STATUS_UNWIND 1
#define ENTRY_NAME "bpfg_entry"
#define HELPER_SLOT 16 /* sizeof(struct bpfg_x86jit_helper) */

_Static_assert(sizeof(struct bpfg_x86jit_helper) == HELPER_SLOT, "helper table layout");

struct lj {
    const struct bpf_insn *insns; /* resolved */
    size_t n;
    const struct bpfg_llvmjit_opts *opts;
    struct bpfg_llvmjit_stats *stats;
    char *err;
    size_t errlen;

    LLVMContextRef C;
    LLVMModuleRef M;
    LLVMBuilderRef B;
    LLVMTypeRef i1, i8, i16, i32, i64, i8p, i64p, sub_ty, helper_ty, entry_ty;

    uint32_t *funcs; /* function entries, funcs[0] = 0 */
    size_t nfuncs;
    int32_t *func_of; /* pc -> index in funcs, -1 */
    LLVMValueRef *fns;
    uint8_t *leader;       /* per pc */
    uint32_t *callx_funcs; /* callx may reach these (x86jit's rule) */
    size_t ncallx_funcs;

    /* the function being emitted */
    LLVMValueRef fn, io, fp, depth, table, run_user;
    LLVMValueRef regs[10];
    /* Registers within one block, in a one-function program: the value
     * each holds (NULL: not read or written yet in cur_bb) and which are
     * not yet stored to their alloca. Reads reuse the value, writes are
     * stored once, before the block's branch (flush): SROA then has a load
     * per register and block at most, and a store per register written.
     * Not in programs of several functions: the inliner weighs callees
     * as emitted, and fewer loads and stores would change what it
     * inlines (callbacks.bpf.o's probe_entry grew by 184 bytes). */
    LLVMValueRef cur[10];
    uint16_t dirty;
    LLVMBasicBlockRef cur_bb;
    LLVMValueRef call_io; /* caller side of bpf-to-bpf calls */
    /* a one-function program is emitted into the entry itself: its
     * returns branch to `done`, the entry's epilogue, status and r0 in
     * the phis done_st, done_r0; its registers start from init (no io) */
    LLVMBasicBlockRef done;
    LLVMValueRef done_st, done_r0, init[10];
    LLVMBasicBlockRef *bb; /* per pc */
    uint8_t *reach;        /* per pc */
    bool terminated;
    bool memory_loop; /* a loop loads or stores: worth unrolling */
    bool goto_loop;   /* a goto closes a loop (its test at the top): rotate */
    bool known[11];
    uint64_t kval[11];
    int32_t kpc[11];             /* relocatable: the lddw a known value came from, or -1 */
    const struct bpf_insn *orig; /* as given: which lddw are map references */
    struct bpfg_vm *vm;          /* the validated program */
    int prog;                    /* its index in a batch (names), -1 alone */
};

static int fail(struct lj *j, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct lj *j, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (j->errlen)
        vsnprintf(j->err, j->errlen, fmt, ap);
    va_end(ap);
    return err;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* ---- LLVM set-up ------------------------------------------------------- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_status;
static char host_triple[128], host_cpu[128], *host_features;
static char version_text[32];

/* Process-wide LLVM options, set once (an unknown option would exit the
 * process, hence the version checks).
 *
 * SimplifyCFG turns if-then diamonds into selects up to this cost (LLVM's
 * default 4). x86 lowers them to cmov chains that serialise a loop on
 * data-dependent values, where the branches gcc keeps are predicted:
 * log2_1k_ints ran 1.22x native with the default, 0.77x with 1 (one
 * speculated instruction: min/max and the like stay branch-free); the
 * option exists in LLVM 10-18.
 *
 * Codegen passes with nothing to do on this JIT's IR, left out of the
 * pipeline every compile builds (scheduling a pass is itself a cost: half
 * of an empty program's codegen is building the pass manager): constant
 * hoisting (x86 immediates are cheap), memcmp merging and sqrt inlining
 * (no libcalls), reduction expansion (no vector reductions: no
 * vectoriser), AVX-512 mask domain reassignment, the post-RA scheduler
 * (off on x86 anyway). Checked on LLVM 14 only: the 7 bpfgraft-bench jit
 * programs compile to the same bytes, 0.25-0.35 M instructions fewer
 * per compile (callgrind).
 *
 * Also on LLVM 14 (jit/README.md, "Fixed costs and the IR we emit"):
 * InstCombine stops after one iteration instead of running again to
 * confirm its fixpoint (upstream's default since LLVM 18); early
 * if-conversion is not scheduled (x86 never enables it); pre-RA tail
 * duplication and post-RA machine LICM are left out. With these the 7
 * programs at levels 1-3 and the 76 blobs of the project's BPF objects
 * compile to the same bytes (but one immediate in map_loop at level 3);
 * 2-5% fewer instructions a compile together. */
static void set_llvm_options(void)
{
#if LLVM_VERSION_MAJOR >= 10 && LLVM_VERSION_MAJOR <= 18
    const char *const args[] = {
        "bpfgraft",
        "-two-entry-phi-node-folding-threshold=1",
#if LLVM_VERSION_MAJOR == 14
        "-disable-constant-hoisting",
        "-disable-mergeicmps",
        "-disable-partial-libcall-inlining",
        "-disable-expand-reductions",
        "-disable-x86-domain-reassignment",
        "-disable-post-ra",
        "-instcombine-max-iterations=1",
        "-disable-early-ifcvt",
        "-disable-early-taildup",
        "-disable-postra-machine-licm",
#endif
    };
    LLVMParseCommandLineOptions((int)(sizeof(args) / sizeof(args[0])), args, NULL);
#endif
}

static void llvm_init(void)
{
    if (LLVMInitializeNativeTarget() || LLVMInitializeNativeAsmPrinter()) {
        init_status = -ENOSYS;
        return;
    }
    char *t = LLVMGetDefaultTargetTriple(), *cpu = LLVMGetHostCPUName();
    snprintf(host_triple, sizeof(host_triple), "%s", t);
    snprintf(host_cpu, sizeof(host_cpu), "%s", cpu);
    LLVMDisposeMessage(t);
    LLVMDisposeMessage(cpu);
    char *f = LLVMGetHostCPUFeatures();
    host_features = strdup(f ? f : "");
    LLVMDisposeMessage(f);
    if (!host_features)
        init_status = -ENOMEM;
    snprintf(version_text, sizeof(version_text), "LLVM %s", LLVM_VERSION_STRING);
    set_llvm_options();
}

static LLVMTargetMachineRef make_tm(int opt, char *err, size_t errlen)
{
    LLVMTargetRef target;
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(host_triple, &target, &msg)) {
        snprintf(err, errlen, "LLVM target %s: %s", host_triple, msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return NULL;
    }
    LLVMCodeGenOptLevel level = opt >= 3   ? LLVMCodeGenLevelAggressive
                                : opt == 1 ? LLVMCodeGenLevelLess
                                           : LLVMCodeGenLevelDefault;
    LLVMTargetMachineRef tm =
        LLVMCreateTargetMachine(target, host_triple, host_cpu, host_features, level, LLVMRelocPIC, LLVMCodeModelSmall);
    if (!tm)
        snprintf(err, errlen, "cannot create an LLVM target machine for %s", host_triple);
    return tm;
}

/* Target machines outlive compiles: creating one (subtarget, features)
 * is a fixed cost per program otherwise. A machine serves one compile at
 * a time, so each is taken from the pool and given back; the pool keeps
 * up to TM_POOL per codegen level, the rest are disposed of. */
#define TM_POOL 4
#define TM_LEVELS 4
static pthread_mutex_t tm_lock = PTHREAD_MUTEX_INITIALIZER;
static LLVMTargetMachineRef tm_pool[TM_LEVELS][TM_POOL];
static int tm_free[TM_LEVELS];

static LLVMTargetMachineRef take_tm(int opt, char *err, size_t errlen)
{
    int lvl = opt >= TM_LEVELS ? TM_LEVELS - 1 : opt;
    LLVMTargetMachineRef tm = NULL;
    pthread_mutex_lock(&tm_lock);
    if (tm_free[lvl])
        tm = tm_pool[lvl][--tm_free[lvl]];
    pthread_mutex_unlock(&tm_lock);
    return tm ? tm : make_tm(opt, err, errlen);
}

static void give_tm(int opt, LLVMTargetMachineRef tm)
{
    int lvl = opt >= TM_LEVELS ? TM_LEVELS - 1 : opt;
    pthread_mutex_lock(&tm_lock);
    if (tm_free[lvl] < TM_POOL) {
        tm_pool[lvl][tm_free[lvl]++] = tm;
        tm = NULL;
    }
    pthread_mutex_unlock(&tm_lock);
    if (tm)
        LLVMDisposeTargetMachine(tm);
}

/* LLVM contexts outlive compiles too (creating and disposing of one is
 * 0.07-0.12 M instructions, 1% of a compile). A context keeps every
 * type and constant a compile made, so it serves CTX_USES compiles and
 * is then disposed of; a single compile's module is disposed of before
 * its context goes back. */
#define CTX_POOL 4
#define CTX_USES 64
static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static LLVMContextRef ctx_pool[CTX_POOL];
static int ctx_uses[CTX_POOL], ctx_free;

static LLVMContextRef take_ctx(int *uses)
{
    LLVMContextRef C = NULL;
    *uses = 0;
    pthread_mutex_lock(&ctx_lock);
    if (ctx_free) {
        ctx_free--;
        C = ctx_pool[ctx_free];
        *uses = ctx_uses[ctx_free];
    }
    pthread_mutex_unlock(&ctx_lock);
    return C ? C : LLVMContextCreate();
}

static void give_ctx(LLVMContextRef C, int uses)
{
    pthread_mutex_lock(&ctx_lock);
    if (uses < CTX_USES && ctx_free < CTX_POOL) {
        ctx_pool[ctx_free] = C;
        ctx_uses[ctx_free++] = uses;
        C = NULL;
    }
    pthread_mutex_unlock(&ctx_lock);
    if (C)
        LLVMContextDispose(C);
}

/* The optimisation pipeline of levels 1 and 2: what the eBPF programs'
 * code gains from, at a fraction of default<O2>'s time (compile time is
 * attach latency). Inline the entry's call, promote the register allocas,
 * fold, hoist loop invariants, remove redundant loads, unroll small loops
 * of constant trip count that touch memory (memcpy_4k's word loop: 2.4x
 * faster), rotate loops a goto closes (the test at the top: strcmp_4k's
 * byte loop, three branches a byte to two, 2.06 -> 1.39 us; prime_sieve
 * 12.9 -> 10.9 us; 11-14% more instructions a compile for these two,
 * none for programs without such a loop). Left out: the other loop
 * rewriters (induction variables, vectorisers), the interprocedural
 * passes (one module, internal
 * functions) and the repeated cleanups: bpfgraft-bench jit measured them
 * at 3-5 ms a program for run times no better on its programs, and the
 * induction-variable rewrite made prime_sieve 2.2x slower on AMD EPYC.
 * Unrolling is the dearest pass left (callgrind: 45% of a compile's
 * instructions, most of them in codegen of the unrolled body): a loop of
 * register arithmetic gains nothing from it (sum_loop_10k: 31.6 M
 * instructions to compile unrolled, 7.3 M not, same run time), nor does
 * runtime unrolling of the programs' length-bound loops, so level 2 unrolls
 * only programs with a loop that loads or stores, without runtime
 * unrolling and peeling, and level 1 never. A single-function program needs
 * no inliner: it is emitted into the entry (emit_entry). Level 3 is LLVM's default<O3>. */
#define LEAN_INLINE "cgscc(inline),"
#define LEAN_ROTATE "loop(loop-rotate),"
#define LEAN_UNROLL ",loop-unroll<O2;no-runtime;no-peeling>"
#define LEAN(inl, rot, unroll) \
    inl "function(sroa,early-cse,instcombine,simplifycfg," rot "loop-mssa(licm),gvn,instcombine,simplifycfg" unroll ")"

static const char *lean_pipeline(bool fused, bool rotate, bool unroll)
{
    static const char *const p[2][2][2] = {
        {{LEAN(LEAN_INLINE, "", ""), LEAN(LEAN_INLINE, "", LEAN_UNROLL)},
         {LEAN(LEAN_INLINE, LEAN_ROTATE, ""), LEAN(LEAN_INLINE, LEAN_ROTATE, LEAN_UNROLL)}},
        {{LEAN("", "", ""), LEAN("", "", LEAN_UNROLL)},
         {LEAN("", LEAN_ROTATE, ""), LEAN("", LEAN_ROTATE, LEAN_UNROLL)}},
    };
    return p[fused][rotate][unroll];
}

/* ---- IR helpers -------------------------------------------------------- */

static LLVMValueRef c64(struct lj *j, uint64_t v)
{
    return LLVMConstInt(j->i64, v, false);
}
static LLVMValueRef c32(struct lj *j, uint32_t v)
{
    return LLVMConstInt(j->i32, v, false);
}

/* The register cache belongs to the block being emitted: another block
 * starts empty (flush() ran before the branch that left the last one). */
static void cache_sync(struct lj *j)
{
    LLVMBasicBlockRef bb = LLVMGetInsertBlock(j->B);
    if (bb != j->cur_bb) {
        memset(j->cur, 0, sizeof(j->cur));
        j->dirty = 0;
        j->cur_bb = bb;
    }
}

static LLVMValueRef get_reg(struct lj *j, int r)
{
    if (r == BPF_REG_10)
        return LLVMBuildPtrToInt(j->B, j->fp, j->i64, "r10");
    if (!j->done)
        return LLVMBuildLoad2(j->B, j->i64, j->regs[r], "");
    cache_sync(j);
    if (!j->cur[r])
        j->cur[r] = LLVMBuildLoad2(j->B, j->i64, j->regs[r], "");
    return j->cur[r];
}

static void set_reg(struct lj *j, int r, LLVMValueRef v)
{
    j->known[r] = false;
    j->kpc[r] = -1;
    if (!j->done) {
        LLVMBuildStore(j->B, v, j->regs[r]);
        return;
    }
    cache_sync(j);
    j->cur[r] = v;
    j->dirty |= (uint16_t)(1u << r);
}

/* Stores the registers written in this block; call before any branch to
 * a block that may read them (not before a return: nothing reads them). */
static void flush(struct lj *j)
{
    cache_sync(j);
    for (int r = 0; r < 10; r++)
        if (j->dirty & (1u << r))
            LLVMBuildStore(j->B, j->cur[r], j->regs[r]);
    j->dirty = 0;
}

static bool is_map_ref(const struct bpf_insn *orig)
{
    return orig->code == (BPF_LD | BPF_IMM | BPF_DW) && orig->src_reg && orig->src_reg != BPF_PSEUDO_FUNC;
}

/* relocatable_maps: a target-specific value lives in a slot of the blob,
 * read by the code, so the blob can be rebound to another target's
 * addresses. Hidden visibility: PC-relative access, never through a GOT;
 * external linkage: the optimiser cannot assume the value. */
static LLVMValueRef slot_load(struct lj *j, size_t pc, int kind, uint64_t init)
{
    char name[64];
    if (j->prog < 0)
        snprintf(name, sizeof(name), "bpfg_slot_%zu_%d", pc, kind);
    else
        snprintf(name, sizeof(name), "bpfg_slot_%d_%zu_%d", j->prog, pc, kind);
    LLVMValueRef g = LLVMGetNamedGlobal(j->M, name);
    if (!g) {
        g = LLVMAddGlobal(j->M, j->i64, name);
        LLVMSetInitializer(g, c64(j, init));
        LLVMSetVisibility(g, LLVMHiddenVisibility);
        LLVMSetSection(g, ".bpfg_slots");
        LLVMSetAlignment(g, 8);
    }
    return LLVMBuildLoad2(j->B, j->i64, g, "");
}

static LLVMTypeRef int_of_size(struct lj *j, uint8_t size)
{
    switch (size) {
    case BPF_B: return j->i8;
    case BPF_H: return j->i16;
    case BPF_W: return j->i32;
    default: return j->i64;
    }
}

/* A pointer to an integer of type ty at reg + off. r10-based accesses stay
 * derived from the frame alloca, so alias analysis sees the stack. */
static LLVMValueRef mem_ptr(struct lj *j, int reg, int16_t off, LLVMTypeRef ty)
{
    LLVMTypeRef pty = LLVMPointerType(ty, 0);
    if (reg == BPF_REG_10) {
        LLVMValueRef idx = c64(j, (uint64_t)(int64_t)off);
        LLVMValueRef p = LLVMBuildGEP2(j->B, j->i8, j->fp, &idx, 1, "");
        return LLVMBuildBitCast(j->B, p, pty, "");
    }
    LLVMValueRef a = LLVMBuildAdd(j->B, get_reg(j, reg), c64(j, (uint64_t)(int64_t)off), "");
    return LLVMBuildIntToPtr(j->B, a, pty, "");
}

static LLVMValueRef call_intrinsic(struct lj *j, const char *name, LLVMTypeRef ty, LLVMValueRef *args, unsigned nargs)
{
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(j->M, id, &ty, 1);
    LLVMTypeRef fty = LLVMIntrinsicGetType(j->C, id, &ty, 1);
    return LLVMBuildCall2(j->B, fty, fn, args, nargs, "");
}

static LLVMBasicBlockRef new_bb(struct lj *j, const char *name)
{
    return LLVMAppendBasicBlockInContext(j->C, j->fn, name);
}

/* Returns status from the eBPF function being emitted (r0: fused, the
 * program's result; NULL for 0). */
static void emit_ret(struct lj *j, LLVMValueRef status, LLVMValueRef r0)
{
    if (!j->done) {
        LLVMBuildRet(j->B, status);
        return;
    }
    LLVMBasicBlockRef here = LLVMGetInsertBlock(j->B);
    LLVMValueRef r0v = r0 ? r0 : c64(j, 0);
    LLVMAddIncoming(j->done_st, &status, &here, 1);
    LLVMAddIncoming(j->done_r0, &r0v, &here, 1);
    LLVMBuildBr(j->B, j->done);
}

/* Branches to a block returning `status` when cond holds. */
static void ret_if(struct lj *j, LLVMValueRef cond, LLVMValueRef status)
{
    LLVMBasicBlockRef out = new_bb(j, "stop"), cont = new_bb(j, "");
    cache_sync(j);
    LLVMBuildCondBr(j->B, cond, out, cont);
    LLVMPositionBuilderAtEnd(j->B, out);
    emit_ret(j, status, NULL);
    LLVMPositionBuilderAtEnd(j->B, cont);
    j->cur_bb = cont; /* only reached from the block before: its values hold, unstored ones too */
}

static LLVMValueRef fault_word(struct lj *j, size_t pc, int err)
{
    return c64(j, (uint64_t)pc << 32 | (uint32_t)-err);
}

static void fault_if(struct lj *j, LLVMValueRef cond, size_t pc, int err)
{
    ret_if(j, cond, fault_word(j, pc, err));
}

/* ---- ALU ------------------------------------------------------------------ */

static LLVMValueRef divmod(struct lj *j, bool is_mod, bool sign, LLVMValueRef dst, LLVMValueRef src, LLVMTypeRef ty)
{
    LLVMBuilderRef B = j->B;
    LLVMValueRef zero = LLVMConstInt(ty, 0, false), one = LLVMConstInt(ty, 1, false);
    LLVMValueRef is0 = LLVMBuildICmp(B, LLVMIntEQ, src, zero, "");
    LLVMValueRef by0 = is_mod ? dst : zero; /* RFC 9669: x / 0 = 0, x % 0 = x */
    if (!sign) {
        LLVMValueRef safe = LLVMBuildSelect(B, is0, one, src, "");
        LLVMValueRef q = is_mod ? LLVMBuildURem(B, dst, safe, "") : LLVMBuildUDiv(B, dst, safe, "");
        return LLVMBuildSelect(B, is0, by0, q, "");
    }
    LLVMValueRef m1 = LLVMBuildICmp(B, LLVMIntEQ, src, LLVMConstAllOnes(ty), "");
    LLVMValueRef safe = LLVMBuildSelect(B, LLVMBuildOr(B, is0, m1, ""), one, src, "");
    LLVMValueRef q = is_mod ? LLVMBuildSRem(B, dst, safe, "") : LLVMBuildSDiv(B, dst, safe, "");
    /* INT_MIN / -1 wraps to INT_MIN (= -x), x % -1 = 0, without UB */
    LLVMValueRef bym1 = is_mod ? zero : LLVMBuildSub(B, zero, dst, "");
    q = LLVMBuildSelect(B, m1, bym1, q, "");
    return LLVMBuildSelect(B, is0, by0, q, "");
}

static LLVMValueRef bswap(struct lj *j, LLVMValueRef v64, int width)
{
    LLVMTypeRef ty = width == 16 ? j->i16 : width == 32 ? j->i32 : j->i64;
    LLVMValueRef v = width == 64 ? v64 : LLVMBuildTrunc(j->B, v64, ty, "");
    v = call_intrinsic(j, "llvm.bswap", ty, &v, 1);
    return width == 64 ? v : LLVMBuildZExt(j->B, v, j->i64, "");
}

static LLVMValueRef trunc_zext(struct lj *j, LLVMValueRef v, LLVMTypeRef ty)
{
    return LLVMBuildZExt(j->B, LLVMBuildTrunc(j->B, v, ty, ""), j->i64, "");
}

static void emit_alu(struct lj *j, const struct bpf_insn *in)
{
    LLVMBuilderRef B = j->B;
    bool is64 = BPF_CLASS(in->code) == BPF_ALU64;
    uint8_t op = BPF_OP(in->code);
    int dst = in->dst_reg;

    if (op == BPF_END) {
        LLVMValueRef v = get_reg(j, dst);
        if (is64 || BPF_SRC(in->code) == BPF_TO_BE)
            v = bswap(j, v, in->imm);
        else if (in->imm != 64)
            v = trunc_zext(j, v, in->imm == 16 ? j->i16 : j->i32);
        set_reg(j, dst, v);
        return;
    }

    LLVMTypeRef ty = is64 ? j->i64 : j->i32;
    LLVMValueRef src;
    if (BPF_SRC(in->code) == BPF_X) {
        src = get_reg(j, in->src_reg);
        if (!is64)
            src = LLVMBuildTrunc(B, src, j->i32, "");
    } else {
        src = is64 ? c64(j, (uint64_t)(int64_t)in->imm) : c32(j, (uint32_t)in->imm);
    }

    if (op == BPF_MOV) {
        LLVMValueRef v = src;
        if (in->off == 8 || in->off == 16 || in->off == 32)
            v = LLVMBuildSExt(B,
                              LLVMBuildTrunc(B, src,
                                             in->off == 8    ? j->i8
                                             : in->off == 16 ? j->i16
                                                             : j->i32,
                                             ""),
                              ty, "");
        if (!is64)
            v = LLVMBuildZExt(B, v, j->i64, "");
        set_reg(j, dst, v);
        if (BPF_SRC(in->code) == BPF_K) {
            j->known[dst] = true;
            j->kval[dst] = is64 ? (uint64_t)(int64_t)in->imm : (uint32_t)in->imm;
        }
        return;
    }

    LLVMValueRef d = get_reg(j, dst), v;
    if (!is64)
        d = LLVMBuildTrunc(B, d, j->i32, "");
    LLVMValueRef mask = LLVMConstInt(ty, is64 ? 63 : 31, false);
    switch (op) {
    case BPF_ADD: v = LLVMBuildAdd(B, d, src, ""); break;
    case BPF_SUB: v = LLVMBuildSub(B, d, src, ""); break;
    case BPF_MUL: v = LLVMBuildMul(B, d, src, ""); break;
    case BPF_OR: v = LLVMBuildOr(B, d, src, ""); break;
    case BPF_AND: v = LLVMBuildAnd(B, d, src, ""); break;
    case BPF_XOR: v = LLVMBuildXor(B, d, src, ""); break;
    case BPF_LSH: v = LLVMBuildShl(B, d, LLVMBuildAnd(B, src, mask, ""), ""); break;
    case BPF_RSH: v = LLVMBuildLShr(B, d, LLVMBuildAnd(B, src, mask, ""), ""); break;
    case BPF_ARSH: v = LLVMBuildAShr(B, d, LLVMBuildAnd(B, src, mask, ""), ""); break;
    case BPF_NEG: v = LLVMBuildSub(B, LLVMConstInt(ty, 0, false), d, ""); break;
    case BPF_DIV: v = divmod(j, false, in->off == 1, d, src, ty); break;
    default: v = divmod(j, true, in->off == 1, d, src, ty); break; /* BPF_MOD */
    }
    if (!is64)
        v = LLVMBuildZExt(B, v, j->i64, "");
    set_reg(j, dst, v);
}

/* ---- memory --------------------------------------------------------------- */

static void emit_ldx(struct lj *j, const struct bpf_insn *in)
{
    LLVMTypeRef ty = int_of_size(j, BPF_SIZE(in->code));
    LLVMValueRef v = LLVMBuildLoad2(j->B, ty, mem_ptr(j, in->src_reg, in->off, ty), "");
    LLVMSetAlignment(v, 1);
    if (ty != j->i64)
        v = BPF_MODE(in->code) == BPF_MEMSX ? LLVMBuildSExt(j->B, v, j->i64, "") : LLVMBuildZExt(j->B, v, j->i64, "");
    set_reg(j, in->dst_reg, v);
}

static void emit_store(struct lj *j, const struct bpf_insn *in)
{
    LLVMTypeRef ty = int_of_size(j, BPF_SIZE(in->code));
    LLVMValueRef v = BPF_CLASS(in->code) == BPF_ST ? c64(j, (uint64_t)(int64_t)in->imm) : get_reg(j, in->src_reg);
    if (ty != j->i64)
        v = LLVMBuildTrunc(j->B, v, ty, "");
    LLVMValueRef st = LLVMBuildStore(j->B, v, mem_ptr(j, in->dst_reg, in->off, ty));
    LLVMSetAlignment(st, 1);
}

static void emit_atomic(struct lj *j, const struct bpf_insn *in, size_t pc)
{
    LLVMBuilderRef B = j->B;
    bool w64 = BPF_SIZE(in->code) == BPF_DW;
    LLVMTypeRef ty = w64 ? j->i64 : j->i32;
    LLVMValueRef addr = LLVMBuildAdd(B, get_reg(j, in->dst_reg), c64(j, (uint64_t)(int64_t)in->off), "");
    LLVMValueRef mis = LLVMBuildAnd(B, addr, c64(j, w64 ? 7 : 3), "");
    fault_if(j, LLVMBuildICmp(B, LLVMIntNE, mis, c64(j, 0), ""), pc, EFAULT);
    LLVMValueRef p = LLVMBuildIntToPtr(B, addr, LLVMPointerType(ty, 0), "");
    LLVMValueRef src = get_reg(j, in->src_reg);
    if (!w64)
        src = LLVMBuildTrunc(B, src, j->i32, "");

    if (in->imm == BPF_CMPXCHG) {
        LLVMValueRef expected = get_reg(j, BPF_REG_0);
        if (!w64)
            expected = LLVMBuildTrunc(B, expected, j->i32, "");
        LLVMValueRef x = LLVMBuildAtomicCmpXchg(B, p, expected, src, LLVMAtomicOrderingSequentiallyConsistent,
                                                LLVMAtomicOrderingSequentiallyConsistent, false);
        LLVMValueRef old = LLVMBuildExtractValue(B, x, 0, "");
        set_reg(j, BPF_REG_0, w64 ? old : LLVMBuildZExt(B, old, j->i64, ""));
        return;
    }
    LLVMAtomicRMWBinOp op;
    switch (in->imm & ~BPF_FETCH) {
    case BPF_ADD: op = LLVMAtomicRMWBinOpAdd; break;
    case BPF_OR: op = LLVMAtomicRMWBinOpOr; break;
    case BPF_AND: op = LLVMAtomicRMWBinOpAnd; break;
    case BPF_XOR: op = LLVMAtomicRMWBinOpXor; break;
    default: op = LLVMAtomicRMWBinOpXchg; break; /* BPF_XCHG */
    }
    LLVMValueRef old = LLVMBuildAtomicRMW(B, op, p, src, LLVMAtomicOrderingSequentiallyConsistent, false);
    if ((in->imm & BPF_FETCH) || in->imm == BPF_XCHG)
        set_reg(j, in->src_reg, w64 ? old : LLVMBuildZExt(B, old, j->i64, ""));
}

/* ---- calls ---------------------------------------------------------------- */

/* Calls the helper whose table slot is `slot` (an i8* into the table), or
 * the known address `direct`; returns r0. */
static LLVMValueRef call_helper(struct lj *j, LLVMValueRef slot, uint64_t direct, size_t pc)
{
    LLVMBuilderRef B = j->B;
    LLVMTypeRef fpty = LLVMPointerType(j->helper_ty, 0);
    LLVMValueRef fn, user;
    if (direct) {
        fn = LLVMConstIntToPtr(c64(j, direct), fpty);
    } else {
        LLVMValueRef pfn = LLVMBuildBitCast(B, slot, LLVMPointerType(fpty, 0), "");
        fn = LLVMBuildLoad2(B, fpty, pfn, "fn");
        fault_if(j, LLVMBuildIsNull(B, fn, ""), pc, EINVAL);
    }
    if (j->opts->jit.per_run_user) {
        user = j->run_user;
    } else {
        LLVMValueRef off = c64(j, 8);
        LLVMValueRef pu = LLVMBuildGEP2(B, j->i8, slot, &off, 1, "");
        user = LLVMBuildLoad2(B, j->i8p, LLVMBuildBitCast(B, pu, LLVMPointerType(j->i8p, 0), ""), "user");
    }
    LLVMValueRef args[6];
    for (int r = 1; r <= 5; r++)
        args[r - 1] = get_reg(j, r);
    args[5] = user;
    return LLVMBuildCall2(B, j->helper_ty, fn, args, 6, "");
}

static LLVMValueRef table_slot(struct lj *j, LLVMValueRef id)
{
    LLVMValueRef off = LLVMBuildMul(j->B, id, c64(j, HELPER_SLOT), "");
    return LLVMBuildGEP2(j->B, j->i8, j->table, &off, 1, "slot");
}

/* bpf_map_lookup_elem on a known ARRAY: r0 = key < max ? base + key * stride : 0 */
static bool inline_lookup(struct lj *j, uint32_t id)
{
    struct bpfg_jit_map_info mi;
    if (!j->known[BPF_REG_1] || !bpfg_jit_inline_array(&j->opts->jit, id, j->kval[BPF_REG_1], &mi))
        return false;
    int32_t kpc = j->kpc[BPF_REG_1];
    if (j->opts->relocatable_maps && kpc < 0)
        return false;
    uint64_t stride = mi.value_stride;
    LLVMBuilderRef B = j->B;
    LLVMValueRef kp = LLVMBuildIntToPtr(B, get_reg(j, BPF_REG_2), LLVMPointerType(j->i32, 0), "");
    LLVMValueRef key = LLVMBuildLoad2(B, j->i32, kp, "key");
    LLVMSetAlignment(key, 1);
    LLVMValueRef in_range = LLVMBuildICmp(B, LLVMIntULT, key, c32(j, mi.max_entries), "");
    LLVMValueRef vbase = j->opts->relocatable_maps
                             ? slot_load(j, (size_t)kpc, BPFG_LLVMJIT_RELOC_ARRAY_BASE, mi.value_base)
                             : c64(j, mi.value_base);
    LLVMValueRef addr =
        LLVMBuildAdd(B, vbase, LLVMBuildMul(B, LLVMBuildZExt(B, key, j->i64, ""), c64(j, stride), ""), "");
    set_reg(j, BPF_REG_0, LLVMBuildSelect(B, in_range, addr, c64(j, 0), ""));
    if (j->stats)
        j->stats->inlined_lookups++;
    return true;
}

static void emit_helper_call(struct lj *j, uint32_t id, size_t pc)
{
    if (inline_lookup(j, id))
        return;
    uint64_t direct = j->opts->helper_addr ? j->opts->helper_addr[id] : 0;
    LLVMValueRef slot = NULL;
    if (!direct || !j->opts->jit.per_run_user)
        slot = table_slot(j, c64(j, id));
    if (direct && j->stats)
        j->stats->direct_calls++;
    LLVMValueRef r0 = call_helper(j, slot, direct, pc);
    set_reg(j, BPF_REG_0, r0);
    if (j->opts->jit.has_unwind && id == j->opts->jit.unwind_id)
        ret_if(j, LLVMBuildIsNull(j->B, r0, ""), c64(j, STATUS_UNWIND));
}

/* bpf-to-bpf call of function index f: a frame below ours, r6..r9 kept. */
static void emit_local_call(struct lj *j, size_t f, size_t pc)
{
    LLVMBuilderRef B = j->B;
    LLVMValueRef depth = LLVMBuildAdd(B, j->depth, c64(j, 1), "");
    fault_if(j, LLVMBuildICmp(B, LLVMIntUGE, depth, c64(j, EBPF_MAX_CALL_DEPTH), ""), pc, E2BIG);
    LLVMValueRef slots[10];
    for (int r = 0; r < 10; r++) {
        LLVMValueRef idx = c64(j, (uint64_t)r);
        slots[r] = LLVMBuildGEP2(B, j->i64, j->call_io, &idx, 1, "");
        LLVMBuildStore(B, get_reg(j, r), slots[r]);
    }
    LLVMValueRef off = c64(j, (uint64_t)-EBPF_STACK_SIZE);
    LLVMValueRef args[5] = {
        j->call_io, LLVMBuildGEP2(B, j->i8, j->fp, &off, 1, ""), depth, j->table, j->run_user,
    };
    LLVMValueRef st = LLVMBuildCall2(B, j->sub_ty, j->fns[f], args, 5, "");
    ret_if(j, LLVMBuildICmp(B, LLVMIntNE, st, c64(j, 0), ""), st);
    for (int r = 0; r <= 5; r++)
        set_reg(j, r, LLVMBuildLoad2(B, j->i64, slots[r], ""));
}

static void emit_callx(struct lj *j, const struct bpf_insn *in, size_t pc)
{
    LLVMBuilderRef B = j->B;
    LLVMValueRef v = get_reg(j, in->dst_reg);
    LLVMBasicBlockRef as_func = new_bb(j, "callx_func"), as_helper = new_bb(j, "callx_helper"),
                      done = new_bb(j, "callx_done");
    LLVMValueRef hi = LLVMBuildLShr(B, v, c64(j, 48), "");
    flush(j);
    LLVMBuildCondBr(B, LLVMBuildICmp(B, LLVMIntEQ, hi, c64(j, FUNC_TAG_HI16), ""), as_func, as_helper);

    /* a function reference: only the program's known function entries */
    LLVMPositionBuilderAtEnd(B, as_func);
    LLVMBasicBlockRef bad = new_bb(j, "callx_bad");
    LLVMValueRef idx = LLVMBuildAnd(B, v, c64(j, 0x0000ffffffffffffull), "");
    LLVMValueRef sw = LLVMBuildSwitch(B, idx, bad, (unsigned)j->ncallx_funcs);
    for (size_t i = 0; i < j->ncallx_funcs; i++) {
        LLVMBasicBlockRef c = new_bb(j, "callx_case");
        LLVMAddCase(sw, c64(j, j->callx_funcs[i]), c);
        LLVMPositionBuilderAtEnd(B, c);
        emit_local_call(j, (size_t)j->func_of[j->callx_funcs[i]], pc);
        flush(j);
        LLVMBuildBr(B, done);
    }
    LLVMPositionBuilderAtEnd(B, bad);
    emit_ret(j, fault_word(j, pc, EINVAL), NULL);

    /* a helper id */
    LLVMPositionBuilderAtEnd(B, as_helper);
    fault_if(j, LLVMBuildICmp(B, LLVMIntUGE, v, c64(j, BPFG_MAX_HELPERS), ""), pc, EINVAL);
    LLVMValueRef r0 = call_helper(j, table_slot(j, v), 0, pc);
    set_reg(j, BPF_REG_0, r0);
    if (j->opts->jit.has_unwind) {
        LLVMValueRef is_unwind = LLVMBuildICmp(B, LLVMIntEQ, v, c64(j, j->opts->jit.unwind_id), "");
        ret_if(j, LLVMBuildAnd(B, is_unwind, LLVMBuildIsNull(B, r0, ""), ""), c64(j, STATUS_UNWIND));
    }
    flush(j);
    LLVMBuildBr(B, done);
    LLVMPositionBuilderAtEnd(B, done);
}

static void emit_exit(struct lj *j)
{
    if (j->done) { /* fused: nobody reads r1..r5 */
        emit_ret(j, c64(j, 0), get_reg(j, 0));
        return;
    }
    for (int r = 0; r <= 5; r++) {
        LLVMValueRef idx = c64(j, (uint64_t)r);
        LLVMBuildStore(j->B, get_reg(j, r), LLVMBuildGEP2(j->B, j->i64, j->io, &idx, 1, ""));
    }
    emit_ret(j, c64(j, 0), NULL);
}

/* ---- jumps ---------------------------------------------------------------- */

static void emit_cond_jump(struct lj *j, const struct bpf_insn *in, size_t pc)
{
    LLVMBuilderRef B = j->B;
    bool is32 = BPF_CLASS(in->code) == BPF_JMP32;
    uint8_t op = BPF_OP(in->code);
    LLVMValueRef a = get_reg(j, in->dst_reg);
    LLVMValueRef b = BPF_SRC(in->code) == BPF_X ? get_reg(j, in->src_reg) : c64(j, (uint64_t)(int64_t)in->imm);
    if (is32) {
        a = LLVMBuildTrunc(B, a, j->i32, "");
        b = LLVMBuildTrunc(B, b, j->i32, "");
    }
    LLVMValueRef cond;
    if (op == BPF_JSET) {
        cond = LLVMBuildICmp(B, LLVMIntNE, LLVMBuildAnd(B, a, b, ""), LLVMConstInt(LLVMTypeOf(a), 0, false), "");
    } else {
        LLVMIntPredicate p;
        switch (op) {
        case BPF_JEQ: p = LLVMIntEQ; break;
        case BPF_JNE: p = LLVMIntNE; break;
        case BPF_JGT: p = LLVMIntUGT; break;
        case BPF_JGE: p = LLVMIntUGE; break;
        case BPF_JLT: p = LLVMIntULT; break;
        case BPF_JLE: p = LLVMIntULE; break;
        case BPF_JSGT: p = LLVMIntSGT; break;
        case BPF_JSGE: p = LLVMIntSGE; break;
        case BPF_JSLT: p = LLVMIntSLT; break;
        default: p = LLVMIntSLE; break;
        }
        cond = LLVMBuildICmp(B, p, a, b, "");
    }
    flush(j);
    LLVMBuildCondBr(B, cond, j->bb[pc + 1 + in->off], j->bb[pc + 1]);
    j->terminated = true;
}

/* ---- functions -------------------------------------------------------------- */

static bool is_lddw(const struct bpf_insn *in)
{
    return in->code == (BPF_LD | BPF_IMM | BPF_DW);
}

static bool is_cond_jump(const struct bpf_insn *in)
{
    uint8_t cls = BPF_CLASS(in->code), op = BPF_OP(in->code);
    return (cls == BPF_JMP || cls == BPF_JMP32) && op != BPF_JA && op != BPF_EXIT && op != BPF_CALL;
}

static bool is_ja(const struct bpf_insn *in)
{
    return in->code == (BPF_JMP | BPF_JA) || in->code == (BPF_JMP32 | BPF_JA);
}

static size_t ja_target(const struct bpf_insn *in, size_t pc)
{
    return (size_t)((int64_t)pc + 1 + (BPF_CLASS(in->code) == BPF_JMP32 ? in->imm : in->off));
}

/* Marks the instructions reachable from entry (iterative, worklist). */
static int mark_reachable(struct lj *j, size_t entry)
{
    size_t *stack = malloc(j->n * sizeof(*stack)), sp = 0;
    if (!stack)
        return -ENOMEM;
    memset(j->reach, 0, j->n);
    j->reach[entry] = 1;
    stack[sp++] = entry;
    while (sp) {
        size_t pc = stack[--sp], next[2];
        int nn = 0;
        const struct bpf_insn *in = &j->insns[pc];
        if (is_ja(in)) {
            next[nn++] = ja_target(in, pc);
        } else if (in->code == (BPF_JMP | BPF_EXIT)) {
            /* no successor */
        } else if (is_cond_jump(in)) {
            next[nn++] = pc + 1;
            next[nn++] = (size_t)((int64_t)pc + 1 + in->off);
        } else {
            next[nn++] = pc + (is_lddw(in) ? 2 : 1);
        }
        for (int k = 0; k < nn; k++) {
            if (next[k] < j->n && !j->reach[next[k]]) {
                j->reach[next[k]] = 1;
                stack[sp++] = next[k];
            }
        }
    }
    free(stack);
    return 0;
}

static int emit_function(struct lj *j, size_t f)
{
    LLVMBuilderRef B = j->B;
    size_t entry = j->funcs[f];
    int ret = mark_reachable(j, entry);
    if (ret)
        return ret;
    if (!j->done) { /* its own LLVM function; fused: emit_entry set these */
        j->fn = j->fns[f];
        j->io = LLVMGetParam(j->fn, 0);
        j->fp = LLVMGetParam(j->fn, 1);
        j->depth = LLVMGetParam(j->fn, 2);
        j->table = LLVMGetParam(j->fn, 3);
        j->run_user = LLVMGetParam(j->fn, 4);
        LLVMPositionBuilderAtEnd(B, new_bb(j, "start"));
    }
    /* The register allocas stay in the function's first block (SROA
     * promotes only those); fused, at its head, where the inliner put
     * them: SROA's phi order follows, and LSR's choice of induction
     * variable with it (strcmp_4k's loop got two adds for an inc). */
    LLVMBasicBlockRef first = LLVMGetInsertBlock(B);
    if (j->done)
        LLVMPositionBuilderBefore(B, LLVMGetFirstInstruction(first));
    for (int r = 0; r < 10; r++)
        j->regs[r] = LLVMBuildAlloca(B, j->i64, "");
    j->call_io = LLVMBuildAlloca(B, LLVMArrayType(j->i64, 10), "call_io");
    LLVMPositionBuilderAtEnd(B, first);
    j->call_io = LLVMBuildBitCast(B, j->call_io, j->i64p, "");
    for (int r = 0; r < 10; r++) {
        LLVMValueRef idx = c64(j, (uint64_t)r);
        LLVMValueRef v =
            j->done ? j->init[r] : LLVMBuildLoad2(B, j->i64, LLVMBuildGEP2(B, j->i64, j->io, &idx, 1, ""), "");
        LLVMBuildStore(B, v, j->regs[r]);
    }
    for (size_t pc = 0; pc < j->n; pc++)
        j->bb[pc] = j->reach[pc] && (j->leader[pc] || pc == entry) ? new_bb(j, "") : NULL;
    LLVMBuildBr(B, j->bb[entry]);
    j->terminated = true;
    memset(j->known, 0, sizeof(j->known));

    for (size_t pc = 0; pc < j->n; pc++) {
        if (!j->reach[pc])
            continue;
        const struct bpf_insn *in = &j->insns[pc];
        if (j->bb[pc]) {
            if (!j->terminated) {
                flush(j);
                LLVMBuildBr(B, j->bb[pc]);
            }
            LLVMPositionBuilderAtEnd(B, j->bb[pc]);
            j->terminated = false;
            memset(j->known, 0, sizeof(j->known));
        } else if (j->terminated) {
            return fail(j, -EINVAL, "instruction %zu: internal error: unreachable block", pc);
        }
        switch (BPF_CLASS(in->code)) {
        case BPF_ALU:
        case BPF_ALU64: emit_alu(j, in); break;
        case BPF_LD: { /* only lddw survives validation */
            uint64_t v = (uint64_t)(uint32_t)in->imm | (uint64_t)(uint32_t)in[1].imm << 32;
            bool reloc = j->opts->relocatable_maps && is_map_ref(&j->orig[pc]);
            set_reg(j, in->dst_reg, reloc ? slot_load(j, pc, BPFG_LLVMJIT_RELOC_LDDW, v) : c64(j, v));
            j->known[in->dst_reg] = true;
            j->kval[in->dst_reg] = v;
            j->kpc[in->dst_reg] = reloc ? (int32_t)pc : -1;
            pc++;
            break;
        }
        case BPF_LDX: emit_ldx(j, in); break;
        case BPF_ST: emit_store(j, in); break;
        case BPF_STX:
            if (BPF_MODE(in->code) == BPF_ATOMIC)
                emit_atomic(j, in, pc);
            else
                emit_store(j, in);
            break;
        default: { /* BPF_JMP, BPF_JMP32 */
            uint8_t op = BPF_OP(in->code);
            if (op == BPF_JA) {
                flush(j);
                LLVMBuildBr(B, j->bb[ja_target(in, pc)]);
                j->terminated = true;
            } else if (op == BPF_EXIT) {
                emit_exit(j);
                j->terminated = true;
            } else if (op == BPF_CALL) {
                if (BPF_SRC(in->code) == BPF_X)
                    emit_callx(j, in, pc);
                else if (in->src_reg == BPF_PSEUDO_CALL)
                    emit_local_call(j, (size_t)j->func_of[pc + 1 + in->imm], pc);
                else
                    emit_helper_call(j, (uint32_t)in->imm, pc);
                for (int r = 0; r <= 5; r++)
                    j->known[r] = false;
            } else {
                emit_cond_jump(j, in, pc);
            }
            break;
        }
        }
    }
    if (!j->terminated)
        return fail(j, -EINVAL, "internal error: function at %zu falls off the end", entry);
    return 0;
}

static void add_fn_attr(struct lj *j, LLVMValueRef fn, const char *name, const char *value)
{
    LLVMAttributeRef a;
    if (value) {
        a = LLVMCreateStringAttribute(j->C, name, (unsigned)strlen(name), value, (unsigned)strlen(value));
    } else {
        unsigned kind = LLVMGetEnumAttributeKindForName(name, strlen(name));
        a = LLVMCreateEnumAttribute(j->C, kind, 0);
    }
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
}

/* Attributes every function gets: no libcalls (memset/memcpy would be
 * external symbols), address 0 is an address like any other (no UB), no
 * unwind tables, no jump tables (compare chains measured faster on the
 * eBPF-shaped switches of the benchmarks, and the blob needs no data
 * relocations then; the linker still handles PC-relative .rodata). */
static void fn_attrs(struct lj *j, LLVMValueRef fn)
{
    add_fn_attr(j, fn, "no-builtins", "");
    add_fn_attr(j, fn, "null_pointer_is_valid", NULL);
    add_fn_attr(j, fn, "nounwind", NULL);
    add_fn_attr(j, fn, "no-jump-tables", "true");
}

/* The entry's end: status st, r0 -> {r0, fault}. */
static void emit_entry_result(struct lj *j, LLVMValueRef st, LLVMValueRef r0)
{
    LLVMBuilderRef B = j->B;
    r0 = LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntEQ, st, c64(j, 0), ""), r0, c64(j, 0), "");
    LLVMValueRef fault =
        LLVMBuildSelect(B, LLVMBuildICmp(B, LLVMIntEQ, st, c64(j, STATUS_UNWIND), ""), c64(j, 0), st, "");
    LLVMTypeRef rty = LLVMGetReturnType(j->entry_ty);
    LLVMValueRef res = LLVMGetUndef(rty);
    res = LLVMBuildInsertValue(B, res, r0, 0, "");
    res = LLVMBuildInsertValue(B, res, fault, 1, "");
    LLVMBuildRet(B, res);
}

/* The exported entry: stack, registers, then the call of function 0 and
 * its result; or, fused (one function, no calls), function 0's body in
 * place of the call, so no inliner has to copy it (8% of a compile). */
static int emit_entry(struct lj *j, LLVMValueRef entry, bool fused)
{
    LLVMBuilderRef B = j->B;
    LLVMPositionBuilderAtEnd(B, LLVMAppendBasicBlockInContext(j->C, entry, "entry"));
    LLVMValueRef stack = LLVMBuildAlloca(B, LLVMArrayType(j->i8, EBPF_STACK_SIZE * EBPF_MAX_CALL_DEPTH), "stack");
    LLVMSetAlignment(stack, 16);
    LLVMValueRef io = NULL;
    for (int r = 0; r < 10; r++)
        j->init[r] = r == 1   ? LLVMBuildPtrToInt(B, LLVMGetParam(entry, 0), j->i64, "")
                     : r == 2 ? LLVMGetParam(entry, 1)
                              : c64(j, 0);
    if (!fused) { /* r0..r9 in, r0..r5 out */
        io = LLVMBuildBitCast(B, LLVMBuildAlloca(B, LLVMArrayType(j->i64, 10), "io"), j->i64p, "");
        for (int r = 0; r < 10; r++) {
            LLVMValueRef idx = c64(j, (uint64_t)r);
            LLVMBuildStore(B, j->init[r], LLVMBuildGEP2(B, j->i64, io, &idx, 1, ""));
        }
    }
    LLVMValueRef top = c64(j, EBPF_STACK_SIZE * EBPF_MAX_CALL_DEPTH);
    LLVMValueRef base = LLVMBuildBitCast(B, stack, j->i8p, "");
    LLVMValueRef args[5] = {
        io, LLVMBuildGEP2(B, j->i8, base, &top, 1, "fp"), c64(j, 0), LLVMGetParam(entry, 2), LLVMGetParam(entry, 3),
    };
    if (!fused) {
        LLVMValueRef st = LLVMBuildCall2(B, j->sub_ty, j->fns[0], args, 5, "");
        emit_entry_result(j, st, LLVMBuildLoad2(B, j->i64, io, ""));
        return 0;
    }
    j->fn = entry;
    j->io = args[0];
    j->fp = args[1];
    j->depth = args[2];
    j->table = args[3];
    j->run_user = args[4];
    LLVMBasicBlockRef body = LLVMGetInsertBlock(B);
    j->done = LLVMAppendBasicBlockInContext(j->C, entry, "done");
    LLVMPositionBuilderAtEnd(B, j->done);
    j->done_st = LLVMBuildPhi(B, j->i64, "status");
    j->done_r0 = LLVMBuildPhi(B, j->i64, "r0");
    LLVMPositionBuilderAtEnd(B, body);
    int ret = emit_function(j, 0);
    if (ret)
        return ret;
    LLVMMoveBasicBlockAfter(j->done, LLVMGetLastBasicBlock(entry));
    LLVMPositionBuilderAtEnd(B, j->done);
    emit_entry_result(j, j->done_st, j->done_r0);
    return 0;
}

/* Whether function 0 is all: no other function, and nothing calls it
 * (a recursive program, a callx through a function reference). */
static bool fusable(const struct lj *j)
{
    if (j->nfuncs != 1 || j->ncallx_funcs)
        return false;
    for (size_t pc = 0; pc < j->n; pc++)
        if (j->insns[pc].code == (BPF_JMP | BPF_CALL) && j->insns[pc].src_reg == BPF_PSEUDO_CALL)
            return false;
    return true;
}

static int build_module(struct lj *j)
{
    LLVMContextRef C = j->C;
    j->i1 = LLVMInt1TypeInContext(C);
    j->i8 = LLVMInt8TypeInContext(C);
    j->i16 = LLVMInt16TypeInContext(C);
    j->i32 = LLVMInt32TypeInContext(C);
    j->i64 = LLVMInt64TypeInContext(C);
    j->i8p = LLVMPointerType(j->i8, 0);
    j->i64p = LLVMPointerType(j->i64, 0);
    LLVMTypeRef sub_args[5] = {j->i64p, j->i8p, j->i64, j->i8p, j->i8p};
    j->sub_ty = LLVMFunctionType(j->i64, sub_args, 5, false);
    LLVMTypeRef h_args[6] = {j->i64, j->i64, j->i64, j->i64, j->i64, j->i8p};
    j->helper_ty = LLVMFunctionType(j->i64, h_args, 6, false);
    LLVMTypeRef res_fields[2] = {j->i64, j->i64};
    LLVMTypeRef e_args[4] = {j->i8p, j->i64, j->i8p, j->i8p};
    j->entry_ty = LLVMFunctionType(LLVMStructTypeInContext(C, res_fields, 2, false), e_args, 4, false);

    /* the entry first: it lands at offset 0 of .text; in a batch every
     * name carries the program's index, so the modules link */
    char name[48];
    if (j->prog < 0)
        snprintf(name, sizeof(name), "%s", ENTRY_NAME);
    else
        snprintf(name, sizeof(name), "%s_%d", ENTRY_NAME, j->prog);
    LLVMValueRef entry = LLVMAddFunction(j->M, name, j->entry_ty);
    fn_attrs(j, entry);
    bool fused = fusable(j);
    for (size_t f = 0; f < j->nfuncs && !fused; f++) {
        if (j->prog < 0)
            snprintf(name, sizeof(name), "bpf_func_%u", j->funcs[f]);
        else
            snprintf(name, sizeof(name), "bpf_func_%d_%u", j->prog, j->funcs[f]);
        j->fns[f] = LLVMAddFunction(j->M, name, j->sub_ty);
        LLVMSetLinkage(j->fns[f], LLVMInternalLinkage);
        fn_attrs(j, j->fns[f]);
    }
    int ret = emit_entry(j, entry, fused);
    if (ret || fused)
        return ret;
    for (size_t f = 0; f < j->nfuncs && !ret; f++)
        ret = emit_function(j, f);
    return ret;
}

static bool is_memory_access(const struct bpf_insn *in)
{
    uint8_t cls = BPF_CLASS(in->code);
    return cls == BPF_LDX || cls == BPF_ST || cls == BPF_STX;
}

/* Whether a backward jump at pc to target closes a loop that loads or
 * stores (the loop is taken as the instructions between them). */
static bool loop_touches_memory(const struct bpf_insn *insns, size_t target, size_t pc)
{
    for (size_t i = target; i <= pc; i++)
        if (is_memory_access(&insns[i]))
            return true;
    return false;
}

static void note_jump(struct lj *j, const struct bpf_insn *orig, size_t pc, size_t target)
{
    j->leader[target] = 1;
    if (target <= pc && !j->memory_loop)
        j->memory_loop = loop_touches_memory(orig, target, pc);
}

/* Function entries and jump targets, from the original instructions (the
 * resolved copy no longer says which lddw was a BPF_PSEUDO_FUNC). */
static int analyse(struct lj *j, const struct bpf_insn *orig)
{
    size_t n = j->n;
    uint8_t *is_func = calloc(n, 1), *callx_ok = calloc(n, 1);
    j->func_of = malloc(n * sizeof(*j->func_of));
    j->leader = calloc(n, 1);
    j->reach = calloc(n, 1);
    j->bb = calloc(n, sizeof(*j->bb));
    int ret = -ENOMEM;
    if (!is_func || !callx_ok || !j->func_of || !j->leader || !j->reach || !j->bb)
        goto out;
    is_func[0] = 1;
    for (size_t pc = 0; pc < n; pc++) {
        const struct bpf_insn *in = &orig[pc];
        bool local_call = in->code == (BPF_JMP | BPF_CALL) && in->src_reg == BPF_PSEUDO_CALL;
        if (local_call || (is_lddw(in) && in->src_reg == BPF_PSEUDO_FUNC)) {
            is_func[pc + 1 + in->imm] = 1; /* validated in range */
            callx_ok[pc + 1 + in->imm] = 1;
        }
        if (is_ja(in)) {
            note_jump(j, orig, pc, ja_target(in, pc));
            j->goto_loop |= ja_target(in, pc) <= pc;
            if (pc + 1 < n)
                j->leader[pc + 1] = 1;
        } else if (is_cond_jump(in)) {
            note_jump(j, orig, pc, (size_t)((int64_t)pc + 1 + in->off));
            j->leader[pc + 1] = 1;
        } else if (in->code == (BPF_JMP | BPF_EXIT) && pc + 1 < n) {
            j->leader[pc + 1] = 1;
        }
        if (is_lddw(in))
            pc++;
    }
    for (size_t pc = 0; pc < n; pc++) {
        j->func_of[pc] = -1;
        j->nfuncs += is_func[pc];
        j->ncallx_funcs += callx_ok[pc];
    }
    j->funcs = malloc(j->nfuncs * sizeof(*j->funcs));
    j->fns = calloc(j->nfuncs, sizeof(*j->fns));
    j->callx_funcs = malloc((j->ncallx_funcs + 1) * sizeof(*j->callx_funcs));
    if (!j->funcs || !j->fns || !j->callx_funcs)
        goto out;
    size_t f = 0, c = 0;
    for (size_t pc = 0; pc < n; pc++) {
        if (is_func[pc]) {
            j->func_of[pc] = (int32_t)f;
            j->funcs[f++] = (uint32_t)pc;
        }
        if (callx_ok[pc])
            j->callx_funcs[c++] = (uint32_t)pc;
    }
    ret = 0;
out:
    free(is_func);
    free(callx_ok);
    return ret;
}

/* ---- validation ------------------------------------------------------------ */

/* ---- linking the object into a flat blob ------------------------------------ */

static bool is_slot_section(const char *name)
{
    return !strcmp(name, ".bpfg_slots");
}

struct symtab {
    const Elf64_Sym *syms;
    size_t nsyms;
    const char *strtab;
    size_t strsize;
    const uint64_t *base; /* per section: its offset in the blob, or UINT64_MAX */
    size_t shnum;
};

static const char *sym_name(const struct symtab *st, size_t s)
{
    return st->syms[s].st_name < st->strsize ? st->strtab + st->syms[s].st_name : "";
}

/* The symbol's offset in the blob (before any jump in front), or -1. */
static int64_t sym_offset(const struct symtab *st, size_t s)
{
    const Elf64_Sym *sym = &st->syms[s];
    if (sym->st_shndx >= st->shnum || st->base[sym->st_shndx] == UINT64_MAX)
        return -1;
    return (int64_t)(st->base[sym->st_shndx] + sym->st_value);
}

static int64_t find_entry(const struct symtab *st, const char *name)
{
    int64_t entry = -1;
    for (size_t s = 0; s < st->nsyms; s++)
        if (!strcmp(sym_name(st, s), name) && sym_offset(st, s) >= 0)
            entry = sym_offset(st, s);
    return entry;
}

/* A batch: bpfg_entry_<i> of every program. */
static int batch_entries(const struct symtab *st, struct bpfg_llvmjit_batch *b, char *err, size_t errlen)
{
    for (size_t i = 0; i < b->nprogs; i++) {
        char name[48];
        snprintf(name, sizeof(name), "%s_%zu", ENTRY_NAME, i);
        int64_t off = find_entry(st, name);
        if (off < 0 || off > UINT32_MAX) {
            snprintf(err, errlen, "object has no %s", name);
            return -EINVAL;
        }
        b->entry_off[i] = (uint32_t)off;
    }
    return 0;
}

/* A slot's program (0 alone), instruction and kind from its name:
 * bpfg_slot_<insn>_<kind>, in a batch bpfg_slot_<prog>_<insn>_<kind>. */
static bool parse_slot(const char *name, bool batch, unsigned *prog, unsigned *insn, unsigned *kind)
{
    *prog = 0;
    if (batch)
        return sscanf(name, "bpfg_slot_%u_%u_%u", prog, insn, kind) == 3;
    return sscanf(name, "bpfg_slot_%u_%u", insn, kind) == 2;
}

/* The relocatable slots into out->relocs; in a batch ordered by program
 * (symbol order within one), batch->reloc_end[i] closing program i's. */
static int collect_slots(const struct symtab *st, uint64_t shift, struct bpfg_llvmjit_blob *out,
                         struct bpfg_llvmjit_batch *batch, char *err, size_t errlen)
{
    size_t nslots = 0, nprogs = batch ? batch->nprogs : 1;
    for (size_t s = 0; s < st->nsyms; s++)
        nslots += !strncmp(sym_name(st, s), "bpfg_slot_", 10);
    if (!nslots)
        return 0;
    out->relocs = calloc(nslots, sizeof(*out->relocs));
    if (!out->relocs)
        return -ENOMEM;
    for (size_t p = 0; p < nprogs; p++) {
        for (size_t s = 0; s < st->nsyms; s++) {
            unsigned prog, insn, kind;
            if (!parse_slot(sym_name(st, s), batch, &prog, &insn, &kind) || prog != p)
                continue;
            int64_t off = sym_offset(st, s);
            if (off < 0 || (uint64_t)off + shift > UINT32_MAX) {
                snprintf(err, errlen, "slot %s outside the blob", sym_name(st, s));
                return -EINVAL;
            }
            out->relocs[out->nrelocs++] = (struct bpfg_llvmjit_reloc){(uint32_t)((uint64_t)off + shift), insn, kind};
        }
        if (batch)
            batch->reloc_end[p] = (uint32_t)out->nrelocs;
    }
    return 0;
}

/* Links the object into one blob: out, or batch->blob with every
 * program's entry (batch NULL: one program, its entry at offset 0). */
static int link_object(const uint8_t *obj, size_t size, struct bpfg_llvmjit_blob *out, struct bpfg_llvmjit_batch *batch,
                       char *err, size_t errlen)
{
    const Elf64_Ehdr *eh = (const void *)obj;
    if (size < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG) || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        eh->e_type != ET_REL || eh->e_machine != EM_X86_64 || eh->e_shentsize != sizeof(Elf64_Shdr) ||
        eh->e_shoff > size || (size - eh->e_shoff) / sizeof(Elf64_Shdr) < eh->e_shnum) {
        snprintf(err, errlen, "LLVM emitted an unexpected object file");
        return -EINVAL;
    }
    const Elf64_Shdr *sh = (const void *)(obj + eh->e_shoff);
    size_t shnum = eh->e_shnum;
    for (size_t i = 0; i < shnum; i++)
        if (sh[i].sh_type != SHT_NOBITS && (sh[i].sh_offset > size || sh[i].sh_size > size - sh[i].sh_offset)) {
            snprintf(err, errlen, "object section %zu out of bounds", i);
            return -EINVAL;
        }
    const char *shstr = eh->e_shstrndx < shnum && sh[eh->e_shstrndx].sh_type == SHT_STRTAB
                            ? (const char *)obj + sh[eh->e_shstrndx].sh_offset
                            : NULL;
    uint64_t *base = malloc(shnum * sizeof(*base));
    uint8_t *buf = NULL;
    int ret = -EINVAL;
    if (!base) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }

    /* layout: code first (the entry is the first function), then data */
    size_t len = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < shnum; i++) {
            if (pass == 0)
                base[i] = UINT64_MAX;
            const char *name = shstr && sh[i].sh_name < sh[eh->e_shstrndx].sh_size ? shstr + sh[i].sh_name : "";
            if (!(sh[i].sh_flags & SHF_ALLOC) || !strcmp(name, ".eh_frame") || !sh[i].sh_size)
                continue;
            if (!!(sh[i].sh_flags & SHF_EXECINSTR) != (pass == 0))
                continue;
            if (((sh[i].sh_flags & SHF_WRITE) && !is_slot_section(name)) || sh[i].sh_type == SHT_NOBITS) {
                snprintf(err, errlen, "object has writable data (section %s)", name);
                goto out;
            }
            uint64_t align = sh[i].sh_addralign ? sh[i].sh_addralign : 1;
            if (align > 4096 || (align & (align - 1))) {
                snprintf(err, errlen, "section %s: alignment %lu", name, (unsigned long)align);
                goto out;
            }
            len = (len + align - 1) & ~(align - 1);
            base[i] = len;
            len += sh[i].sh_size;
        }
    }
    buf = calloc(1, len + 16);
    if (!buf) {
        ret = -ENOMEM;
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < shnum; i++)
        if (base[i] != UINT64_MAX)
            memcpy(buf + 16 + base[i], obj + sh[i].sh_offset, sh[i].sh_size);

    /* the symbol table and the entries */
    struct symtab st = {.base = base, .shnum = shnum};
    for (size_t i = 0; i < shnum; i++) {
        if (sh[i].sh_type == SHT_SYMTAB && sh[i].sh_link < shnum) {
            st.syms = (const void *)(obj + sh[i].sh_offset);
            st.nsyms = sh[i].sh_size / sizeof(Elf64_Sym);
            st.strtab = (const char *)obj + sh[sh[i].sh_link].sh_offset;
            st.strsize = sh[sh[i].sh_link].sh_size;
        }
    }
    int64_t entry = batch ? 0 : find_entry(&st, ENTRY_NAME);
    if (entry < 0) {
        snprintf(err, errlen, "object has no %s", ENTRY_NAME);
        goto out;
    }
    if (batch && (ret = batch_entries(&st, batch, err, errlen)))
        goto out;
    /* a single program's code moves 16 bytes down when a jump goes in
     * front of its entry (below) */
    ret = collect_slots(&st, entry == 0 ? 0 : 16, out, batch, err, errlen);
    if (ret)
        goto out;
    ret = -EINVAL;

    /* PC-relative relocations inside the blob only */
    for (size_t i = 0; i < shnum; i++) {
        if (sh[i].sh_type == SHT_REL) {
            snprintf(err, errlen, "object has REL relocations");
            goto out;
        }
        if (sh[i].sh_type != SHT_RELA || sh[i].sh_info >= shnum || base[sh[i].sh_info] == UINT64_MAX)
            continue;
        const Elf64_Shdr *target = &sh[sh[i].sh_info];
        const Elf64_Rela *rel = (const void *)(obj + sh[i].sh_offset);
        for (size_t r = 0; r < sh[i].sh_size / sizeof(*rel); r++) {
            uint32_t type = ELF64_R_TYPE(rel[r].r_info);
            size_t si = ELF64_R_SYM(rel[r].r_info);
            if (si >= st.nsyms) {
                snprintf(err, errlen, "relocation with bad symbol %zu", si);
                goto out;
            }
            const Elf64_Sym *sym = &st.syms[si];
            const char *sname = sym->st_name < st.strsize ? st.strtab + sym->st_name : "?";
            if (sym->st_shndx == SHN_UNDEF || sym->st_shndx >= shnum || base[sym->st_shndx] == UINT64_MAX) {
                snprintf(err, errlen, "code references the external symbol '%s'", sname);
                goto out;
            }
            int64_t S = (int64_t)(base[sym->st_shndx] + sym->st_value);
            int64_t P = (int64_t)(base[sh[i].sh_info] + rel[r].r_offset);
            int64_t v = S + rel[r].r_addend - P;
            size_t width = type == R_X86_64_PC64 ? 8 : 4;
            if (rel[r].r_offset > target->sh_size || target->sh_size - rel[r].r_offset < width) {
                snprintf(err, errlen, "relocation out of its section");
                goto out;
            }
            uint8_t *at = buf + 16 + P;
            if (type == R_X86_64_PC32 || type == R_X86_64_PLT32) {
                if (v < INT32_MIN || v > INT32_MAX) {
                    snprintf(err, errlen, "relocation overflow");
                    goto out;
                }
                int32_t v32 = (int32_t)v;
                memcpy(at, &v32, 4);
            } else if (type == R_X86_64_PC64) {
                memcpy(at, &v, 8);
            } else {
                snprintf(err, errlen, "unsupported relocation type %u against '%s' (not PC-relative)", type, sname);
                goto out;
            }
        }
    }

    /* the entry must be at offset 0: a jump in front when it is not */
    if (entry == 0) {
        memmove(buf, buf + 16, len);
    } else {
        int32_t rel = (int32_t)(16 + entry - 5);
        memset(buf, 0xcc, 16);
        buf[0] = 0xe9;
        memcpy(buf + 1, &rel, 4);
        len += 16;
    }
    out->code.buf = buf;
    out->code.len = len;
    buf = NULL;
    ret = 0;
out:
    if (ret) {
        free(out->relocs);
        out->relocs = NULL;
        out->nrelocs = 0;
    }
    free(buf);
    free(base);
    return ret;
}

/* ---- driver ------------------------------------------------------------------ */

static void lj_free(struct lj *j)
{
    free(j->funcs);
    free(j->func_of);
    free(j->fns);
    free(j->leader);
    free(j->callx_funcs);
    free(j->bb);
    free(j->reach);
    if (j->B)
        LLVMDisposeBuilder(j->B);
    if (j->M)
        LLVMDisposeModule(j->M);
    bpfg_vm_free(j->vm);
}

static int lj_init(char *err, size_t errlen)
{
    pthread_once(&init_once, llvm_init);
    if (init_status && errlen)
        snprintf(err, errlen, "LLVM native target unavailable");
    return init_status;
}

/* Validates orig and translates it into j->M, a module of j->C of its own,
 * optimised with the pipeline its own shape chooses (so programs of a
 * batch are optimised exactly as alone). */
static int build_prog(struct lj *j, const struct bpf_insn *orig, size_t n, LLVMTargetMachineRef tm, int opt)
{
    int ret = bpfg_x86jit_validate(orig, n, &j->opts->jit, &j->vm, j->err, j->errlen);
    if (ret)
        return ret;
    j->insns = bpfg_vm_insns(j->vm);
    j->orig = bpfg_vm_lowered_insns(j->vm) ? bpfg_vm_lowered_insns(j->vm) : orig; /* callback stubs appended */
    j->n = bpfg_vm_insn_count(j->vm);

    double t0 = now_ms();
    j->M = LLVMModuleCreateWithNameInContext("bpf", j->C);
    j->B = LLVMCreateBuilderInContext(j->C);
    if (analyse(j, j->orig))
        return fail(j, -ENOMEM, "out of memory");
    ret = build_module(j);
    if (ret)
        return ret;
    LLVMSetTarget(j->M, host_triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(j->M, td);
    LLVMDisposeTargetData(td);
    double t1 = now_ms();
    j->stats->ir_ms += t1 - t0;

    LLVMPassBuilderOptionsRef pbo = LLVMCreatePassBuilderOptions();
    const char *pipeline =
        opt >= 3 ? "default<O3>" : lean_pipeline(fusable(j), j->goto_loop, opt == 2 && j->memory_loop);
    LLVMErrorRef perr = LLVMRunPasses(j->M, pipeline, tm, pbo);
    LLVMDisposePassBuilderOptions(pbo);
    if (perr) {
        char *m = LLVMGetErrorMessage(perr);
        ret = fail(j, -EINVAL, "LLVM optimisation failed: %s", m);
        LLVMDisposeErrorMessage(m);
        return ret;
    }
    j->stats->opt_ms += now_ms() - t1;
    return 0;
}

/* Codegen of M and the link into out (batch: every program's entry). */
static int emit_and_link(LLVMTargetMachineRef tm, LLVMModuleRef M, struct bpfg_llvmjit_blob *out,
                         struct bpfg_llvmjit_batch *batch, struct bpfg_llvmjit_stats *stats, char *err, size_t errlen)
{
    char *msg = NULL;
    LLVMMemoryBufferRef obj = NULL;
    double t2 = now_ms();
    if (getenv("BPFG_LLVMJIT_DUMP_IR")) /* debugging: the optimised IR on stderr */
        LLVMDumpModule(M);
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, M, LLVMObjectFile, &msg, &obj)) {
        snprintf(err, errlen, "LLVM code generation failed: %s", msg ? msg : "?");
        LLVMDisposeMessage(msg);
        return -EINVAL;
    }
    double t3 = now_ms();
    stats->codegen_ms += t3 - t2;
    int ret = link_object((const uint8_t *)LLVMGetBufferStart(obj), LLVMGetBufferSize(obj), out, batch, err, errlen);
    stats->link_ms += now_ms() - t3;
    LLVMDisposeMemoryBuffer(obj);
    return ret;
}

int bpfg_llvmjit_compile_blob(const struct bpf_insn *orig, size_t n, const struct bpfg_llvmjit_opts *opts,
                              struct bpfg_llvmjit_blob *out, struct bpfg_llvmjit_stats *stats, char *err, size_t errlen)
{
    static const struct bpfg_llvmjit_opts no_opts;
    struct bpfg_llvmjit_stats dummy;
    struct lj j = {
        .opts = opts ? opts : &no_opts, .stats = stats ? stats : &dummy, .err = err, .errlen = errlen, .prog = -1};

    memset(out, 0, sizeof(*out));
    memset(j.stats, 0, sizeof(*j.stats));
    if (errlen)
        err[0] = '\0';
    int ret = lj_init(err, errlen);
    if (ret)
        return ret;
    int opt = j.opts->opt_level ? j.opts->opt_level : 2;
    LLVMTargetMachineRef tm = take_tm(opt, err, errlen);
    if (!tm)
        return -ENOSYS;
    int uses;
    j.C = take_ctx(&uses);
    ret = build_prog(&j, orig, n, tm, opt);
    if (!ret)
        ret = emit_and_link(tm, j.M, out, NULL, j.stats, err, errlen);
    give_tm(opt, tm);
    lj_free(&j);
    give_ctx(j.C, uses + 1);
    return ret;
}

/* A link error is reported through the context; without a handler LLVM
 * prints it and exits the process. With this one LLVMLinkModules2 returns
 * the failure, which add_to_batch reports. */
static void on_diagnostic(LLVMDiagnosticInfoRef di, void *user)
{
    (void)di, (void)user;
}

/* Program i of a batch into M (the first one becomes M). */
static int add_to_batch(LLVMContextRef C, LLVMModuleRef *M, const struct bpfg_llvmjit_prog *prog, size_t i,
                        const struct bpfg_llvmjit_opts *opts, LLVMTargetMachineRef tm, int opt,
                        struct bpfg_llvmjit_stats *stats, char *err, size_t errlen)
{
    char why[512] = "";
    struct lj j = {.opts = opts, .stats = stats, .err = why, .errlen = sizeof(why), .prog = (int)i, .C = C};
    int ret = build_prog(&j, prog->insns, prog->n, tm, opt);
    if (ret) {
        snprintf(err, errlen, "program %zu of the batch: %s", i, why);
        lj_free(&j);
        return ret;
    }
    LLVMModuleRef m = j.M;
    j.M = NULL;
    lj_free(&j);
    if (!*M)
        *M = m;
    else if (LLVMLinkModules2(*M, m)) /* takes m, linked or not */
        return snprintf(err, errlen, "program %zu of the batch: LLVM could not link its module", i), -EINVAL;
    return 0;
}

int bpfg_llvmjit_compile_batch(const struct bpfg_llvmjit_prog *progs, size_t nprogs,
                               const struct bpfg_llvmjit_opts *opts, struct bpfg_llvmjit_batch *out,
                               struct bpfg_llvmjit_stats *stats, char *err, size_t errlen)
{
    static const struct bpfg_llvmjit_opts no_opts;
    struct bpfg_llvmjit_stats dummy;
    if (!opts)
        opts = &no_opts;
    if (!stats)
        stats = &dummy;
    memset(out, 0, sizeof(*out));
    memset(stats, 0, sizeof(*stats));
    if (errlen)
        err[0] = '\0';
    int ret = lj_init(err, errlen);
    if (ret)
        return ret;
    if (!nprogs || nprogs > BPFG_LLVMJIT_MAX_BATCH) {
        snprintf(err, errlen, "a batch holds 1 to %d programs, not %zu", BPFG_LLVMJIT_MAX_BATCH, nprogs);
        return -EINVAL;
    }
    out->entry_off = calloc(nprogs, sizeof(*out->entry_off));
    out->reloc_end = calloc(nprogs, sizeof(*out->reloc_end));
    out->nprogs = nprogs;
    if (!out->entry_off || !out->reloc_end) {
        bpfg_llvmjit_batch_free(out);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int opt = opts->opt_level ? opts->opt_level : 2;
    LLVMTargetMachineRef tm = take_tm(opt, err, errlen);
    if (!tm) {
        bpfg_llvmjit_batch_free(out);
        return -ENOSYS;
    }
    LLVMContextRef C = LLVMContextCreate();
    LLVMContextSetDiagnosticHandler(C, on_diagnostic, NULL);
    LLVMModuleRef M = NULL;
    for (size_t i = 0; i < nprogs && !ret; i++)
        ret = add_to_batch(C, &M, &progs[i], i, opts, tm, opt, stats, err, errlen);
    if (!ret)
        ret = emit_and_link(tm, M, &out->blob, out, stats, err, errlen);
    give_tm(opt, tm);
    if (M)
        LLVMDisposeModule(M);
    LLVMContextDispose(C);
    if (ret)
        bpfg_llvmjit_batch_free(out);
    return ret;
}

void bpfg_llvmjit_batch_free(struct bpfg_llvmjit_batch *b)
{
    if (!b)
        return;
    bpfg_llvmjit_blob_free(&b->blob);
    free(b->entry_off);
    free(b->reloc_end);
    memset(b, 0, sizeof(*b));
}

void bpfg_llvmjit_blob_free(struct bpfg_llvmjit_blob *blob)
{
    if (!blob)
        return;
    bpfg_x86jit_code_free(&blob->code);
    free(blob->relocs);
    blob->relocs = NULL;
    blob->nrelocs = 0;
}

/* Binds blob's slots [from, to) to insns. */
static int bind_slots(struct bpfg_llvmjit_blob *blob, size_t from, size_t to, const struct bpf_insn *insns, size_t n,
                      const struct bpfg_llvmjit_opts *opts, char *err, size_t errlen)
{
    for (size_t i = from; i < to; i++) {
        const struct bpfg_llvmjit_reloc *r = &blob->relocs[i];
        if (r->insn + 1 >= n || !is_map_ref(&insns[r->insn]) || (size_t)r->offset + 8 > blob->code.len) {
            snprintf(err, errlen, "slot %zu does not match the program (instruction %u)", i, r->insn);
            return -EINVAL;
        }
        if (!opts->jit.resolver) {
            snprintf(err, errlen, "instruction %u: no resolver to bind the map reference", r->insn);
            return -EINVAL;
        }
        const struct bpf_insn *in = &insns[r->insn];
        uint64_t v;
        int ret = opts->jit.resolver(opts->jit.resolver_user, in->src_reg, in->imm, in[1].imm, &v);
        if (ret) {
            snprintf(err, errlen, "instruction %u: cannot resolve lddw pseudo form %u: %s", r->insn, in->src_reg,
                     strerror(-ret));
            return ret;
        }
        if (r->kind == BPFG_LLVMJIT_RELOC_ARRAY_BASE) {
            struct bpfg_jit_map_info mi;
            memset(&mi, 0, sizeof(mi));
            if (!opts->jit.map_info || opts->jit.map_info(opts->jit.map_info_user, v, &mi) || !mi.value_base) {
                snprintf(err, errlen, "instruction %u: the inlined array map has no known value address", r->insn);
                return -ESTALE;
            }
            v = mi.value_base;
        } else if (r->kind != BPFG_LLVMJIT_RELOC_LDDW) {
            snprintf(err, errlen, "slot %zu: unknown kind %u", i, r->kind);
            return -EINVAL;
        }
        memcpy(blob->code.buf + r->offset, &v, 8);
    }
    return 0;
}

int bpfg_llvmjit_blob_bind(struct bpfg_llvmjit_blob *blob, const struct bpf_insn *insns, size_t n,
                           const struct bpfg_llvmjit_opts *opts, char *err, size_t errlen)
{
    return bind_slots(blob, 0, blob->nrelocs, insns, n, opts, err, errlen);
}

int bpfg_llvmjit_batch_bind(struct bpfg_llvmjit_batch *b, const struct bpfg_llvmjit_prog *progs,
                            const struct bpfg_llvmjit_opts *opts, char *err, size_t errlen)
{
    size_t from = 0;
    for (size_t i = 0; i < b->nprogs; i++) {
        size_t to = b->reloc_end[i];
        if (to < from || to > b->blob.nrelocs) {
            snprintf(err, errlen, "program %zu: slot range %zu..%zu out of order", i, from, to);
            return -EINVAL;
        }
        int ret = bind_slots(&b->blob, from, to, progs[i].insns, progs[i].n, opts, err, errlen);
        if (ret)
            return ret;
        from = to;
    }
    return 0;
}

/* ---- cache key ----------------------------------------------------------------- */

/* Two 64-bit multiplicative lanes (FNV-1a, and one with another odd
 * multiplier) and a final avalanche. Not cryptographic: accidental
 * collisions are negligible, but someone who can submit programs could
 * craft two with one key, and then get the other program's (verified)
 * code run for theirs. Documented in jitcache.h. */
struct hash128 {
    uint64_t a, b;
};

static void h_bytes(struct hash128 *h, const void *p, size_t len)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < len; i++) {
        h->a = (h->a ^ s[i]) * 0x100000001b3ull;
        h->b = (h->b + s[i] + 1) * 0x9e3779b185ebca87ull;
        h->b ^= h->b >> 29;
    }
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return x;
}

static void hash_final(const struct hash128 *h, uint8_t key[16])
{
    uint64_t a = mix(h->a ^ mix(h->b)), b = mix(h->b + 0x9e3779b97f4a7c15ull * a);
    memcpy(key, &a, 8);
    memcpy(key + 8, &b, 8);
}

int bpfg_llvmjit_key(const struct bpf_insn *insns, size_t n, const struct bpfg_llvmjit_opts *opts, uint8_t key[16],
                     char *err, size_t errlen)
{
    static const struct bpfg_llvmjit_opts no_opts;
    struct bpfg_vm *vm = NULL;
    if (!opts)
        opts = &no_opts;
    pthread_once(&init_once, llvm_init);
    int ret = bpfg_x86jit_validate(insns, n, &opts->jit, &vm, err, errlen);
    if (ret)
        return ret;
    const struct bpf_insn *r = bpfg_vm_insns(vm);
    struct hash128 h = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    h_bytes(&h, "bpfgraft-llvmjit-3", 18); /* -3: goto loops rotated */
    h_bytes(&h, version_text, strlen(version_text));
    h_bytes(&h, host_cpu, strlen(host_cpu));
    if (host_features)
        h_bytes(&h, host_features, strlen(host_features));
    uint64_t nn = n;
    h_bytes(&h, &nn, sizeof(nn));
    /* relocatable: map references by their object-level identity (the
     * original lddw pair), every other instruction as resolved */
    for (size_t pc = 0; pc < n; pc++) {
        if (opts->relocatable_maps && pc + 1 < n && is_map_ref(&insns[pc])) {
            h_bytes(&h, &insns[pc], 2 * sizeof(*insns));
            pc++;
            continue;
        }
        h_bytes(&h, &r[pc], sizeof(*r));
    }
    /* the original src_reg of lddw says which constants are functions */
    for (size_t pc = 0; pc < n; pc++)
        if (is_lddw(&insns[pc])) {
            uint8_t kind = insns[pc].src_reg;
            h_bytes(&h, &kind, 1);
        }
    /* the allowed helpers only decide validation, not code: not hashed */
    uint8_t flags[4] = {opts->jit.has_unwind, opts->jit.per_run_user, (uint8_t)opts->opt_level, opts->relocatable_maps};
    h_bytes(&h, flags, sizeof(flags));
    if (opts->jit.has_unwind)
        h_bytes(&h, &opts->jit.unwind_id, sizeof(opts->jit.unwind_id));
    if (opts->helper_addr)
        h_bytes(&h, opts->helper_addr, BPFG_MAX_HELPERS * sizeof(uint64_t));
    if (opts->jit.map_info) {
        for (size_t pc = 0; pc + 1 < n; pc++) {
            if (!is_lddw(&r[pc]))
                continue;
            uint64_t v = (uint64_t)(uint32_t)r[pc].imm | (uint64_t)(uint32_t)r[pc + 1].imm << 32;
            struct bpfg_jit_map_info mi;
            memset(&mi, 0, sizeof(mi));
            if (!opts->jit.map_info(opts->jit.map_info_user, v, &mi)) {
                if (opts->relocatable_maps)
                    mi.value_base = mi.value_base != 0; /* the address is a slot, known or not */
                h_bytes(&h, &mi, sizeof(mi));
            }
            pc++;
        }
    }
    hash_final(&h, key);
    bpfg_vm_free(vm);
    return 0;
}

void bpfg_llvmjit_batch_key(const uint8_t (*keys)[16], size_t nprogs, uint8_t key[16])
{
    struct hash128 h = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
    h_bytes(&h, "bpfgraft-llvmjit-batch-1", 24);
    uint64_t nn = nprogs;
    h_bytes(&h, &nn, sizeof(nn));
    h_bytes(&h, keys, nprogs * 16);
    hash_final(&h, key);
}
