/* Internals shared by the payload's parts: programs, the per-run context
 * handed to helpers, the hook and thread tables, the trace ring. */
#ifndef BPFGRAFT_PAYLOAD_H
#define BPFGRAFT_PAYLOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "maps.h"
#include "payload_abi.h"
#include "vm.h"
#include "x86jit.h" /* the calling convention of native code */

#define MAX_PROGS 256
#define MAX_MAPS 256
#define MAX_TAIL_CALLS 33
#define MAX_RB_RESERVED 8

/* Code a PROG_SWAP replaced: a thread may still run it (main.c). */
struct code_old {
    void *map;
    size_t len;
    struct code_old *next;
};

struct prog {
    uint32_t id;
    uint32_t flags;
    struct bpfg_vm *vm;
    uint32_t nmaps;
    struct bpfg_map **maps; /* map_ids[] of the PROG message, resolved */
    bpfg_x86jit_fn code;    /* native code (PROG_CODE); NULL: the interpreter. Atomic: PROG_SWAP */
    void *code_map;         /* its r-x mapping of the server's memfd */
    size_t code_map_len;
    struct code_old *code_old;     /* mappings PROG_SWAP replaced: unmapped with the program */
    uint32_t engine;               /* enum bpfg_engine */
    struct bpfg_prog_stats *stats; /* its slot of bpfg_stats (payload_abi.h section 9) */
};

/* The code of the probe and syscall hot paths, kept together (the linker
 * groups .text.hot first): a thread coming back from a syscall has lost
 * its TLB entries where the kernel has page-table isolation without PCID,
 * and each page it touches then costs a walk. */
#define PAYLOAD_HOT __attribute__((section(".text.hot")))
/* The flags and tables every probe hit and hooked syscall reads, for the
 * same reason: the linker gathers this section of every file into one
 * output section, which check-freestanding.cmake checks fits one page. */
#define PAYLOAD_HOT_DATA __attribute__((section("bpfg_hot")))
/* The stats table (10 KiB), in a section of its own that the linker puts
 * right after bpfg_hot: its first cache line, the enabled word, is on
 * the hot page too (checked with bpfg_hot). */
#define PAYLOAD_HOT_STATS __attribute__((section("bpfg_hot_stats"), aligned(64)))

/* One program run on a target thread; helpers receive it as their user
 * pointer through bpfg_vm_exec_ctx(). */
struct bpfg_exec {
    struct bpfg_pt_regs *regs;
    void *ctx; /* the program's context when not regs (syscall tracepoints) */
    uint32_t ctx_len;
    struct bpfg_hook_slot *hook;
    bool entry; /* an entry program (override_return allowed) */
    bool override;
    uint64_t override_rc;
    struct prog *tail_next; /* set by bpf_tail_call */
    uint32_t tail_count;
    int32_t signal;     /* bpf_send_signal*: sent once the run is over */
    bool signal_thread; /* to this thread only (else the process) */
    uint64_t cookie;    /* bpf_get_attach_cookie: the running attachment's */
    uint32_t nrb;
    struct {
        void *data;
        struct bpfg_map *map;
    } rb[MAX_RB_RESERVED];
    struct bpfg_map_run cpus; /* per-CPU map slots this run claimed (cpus.n set) */
};

/* main.c: loaded programs and maps, owned by the payload thread. The
 * program table is read lock-free by tail calls. */
struct prog *payload_prog_by_id(uint32_t id);
struct bpfg_map *payload_map_by_id(uint32_t id);

/* helpers.c */
void helpers_init(void); /* once, at start (finds glibc's per-thread tid) */
/* The offset of glibc's tid in a thread's TCB (struct pthread), 0 when
 * unknown. */
uint32_t helpers_tcb_tid_offset(void);
/* tgid << 32 | tid in the process's own pid namespace (the maps' locks) */
uint64_t payload_local_pid_tid(void);
int helpers_register(struct bpfg_vm *vm);
/* BPFG_PMSG_PIDNS (payload thread): the target's ids in the initial pid
 * namespace. 0 or -errno with err set. */
int helpers_set_pidns(const void *body, size_t len, char *err, size_t errlen);
/* A thread id as the kernel's helpers give it (initial pid namespace). */
uint32_t helpers_host_tid(uint32_t tid);
/* Sends the signal a program asked for with bpf_send_signal(_thread), if
 * any; called after the thread left the handler's critical section. The
 * test is inline: nearly every run asks for none. */
void helpers_deliver_signal(const struct bpfg_exec *ex);
static inline __attribute__((always_inline)) void helpers_send_signal(const struct bpfg_exec *ex)
{
    if (__builtin_expect(ex->signal != 0, 0))
        helpers_deliver_signal(ex);
}
/* The helper table native code receives (indexed by helper id). */
extern struct bpfg_x86jit_helper helpers_table[BPFG_MAX_HELPERS];
/* Runs a program and the programs it tail-calls. */
void helpers_run(struct prog *p, struct bpfg_exec *ex);
/* Ends a run that left ring buffer reservations, per-CPU slot claims or
 * a tail call behind: releases them, returns the next program or NULL. */
struct prog *helpers_run_end(struct bpfg_exec *ex);

/* hooks.c: the statistics table (payload_abi.h section 9), which the
 * server reads and switches. */
extern struct bpfg_stats_table bpfg_stats;
static inline __attribute__((always_inline)) bool stats_on(void)
{
    return __builtin_expect(bpfg_stats.enabled != 0, 0);
}

/* A program and the programs it tail-calls, inlined: the common end (no
 * reservation kept, no tail call) costs two loads. */
static inline __attribute__((always_inline)) void helpers_run_body(struct prog *p, struct bpfg_exec *ex)
{
    ex->tail_count = 0;
    do {
        ex->tail_next = NULL;
        /* run errors (e.g. an unknown helper via callx) just end the run,
         * as in the interpreter */
        void *ctx = ex->ctx ? ex->ctx : (void *)ex->regs;
        size_t ctx_len = ex->ctx ? ex->ctx_len : sizeof(*ex->regs);
        /* one load: PROG_SWAP may replace the code during the run */
        bpfg_x86jit_fn code = __atomic_load_n(&p->code, __ATOMIC_ACQUIRE);
        if (code) {
            (void)code(ctx, ctx_len, helpers_table, ex);
        } else {
            uint64_t ret;
            bpfg_vm_exec_ctx(p->vm, ctx, ctx_len, ex, &ret);
        }
        if (__builtin_expect(!ex->nrb && !ex->tail_next && !ex->cpus.n, 1))
            return;
        p = helpers_run_end(ex);
    } while (p);
}

/* helpers_run_body counted and timed in p's statistics (stats on). */
void helpers_run_timed(struct prog *p, struct bpfg_exec *ex);

/* helpers_run() for the hook handlers' hot path: with statistics off, one
 * predictable branch more than the run itself. */
static inline __attribute__((always_inline)) void helpers_run_hot(struct prog *p, struct bpfg_exec *ex)
{
    if (stats_on())
        helpers_run_timed(p, ex);
    else
        helpers_run_body(p, ex);
}

/* trace ring (helpers.c): producers on any thread, one consumer */
struct trace_line {
    uint32_t pid, tid, len;
    char text[BPFG_TRACE_LINE];
};
bool trace_ring_pop(struct trace_line *out);
uint64_t trace_ring_take_dropped(void);

/* hooks.c */
void hooks_init(void); /* payload thread, before the first hook */
extern struct bpfg_hook_slot bpfg_hooks[BPFG_MAX_HOOKS];
/* main.c: the injector's parameters; trap.c reads the patch journal */
extern struct bpfg_payload_params bpfg_payload_params __attribute__((visibility("default")));
/* hidden: an extern of default visibility is reached through the GOT,
 * one more page (a TLB walk after each syscall) on the syscall hot path */
extern struct bpfg_thread_slot bpfg_threads[BPFG_MAX_THREADS] __attribute__((visibility("hidden")));
/* Set once by hooks_init, before any hook is active: the handler stacks'
 * reservation (0: none, every hit a miss) and whether grace periods use
 * membarrier (handlers then need no locked instruction). */
extern uint64_t hooks_hstacks;
extern bool hooks_use_membarrier;

/* The slot of the thread running on the handler stack that p is on: the
 * entry code checked its owner, no second lookup. */
static inline __attribute__((always_inline)) struct bpfg_thread_slot *hooks_stack_slot(const void *p)
{
    return &bpfg_threads[((uint64_t)(uintptr_t)p - hooks_hstacks) / BPFG_HANDLER_STACK_STRIDE];
}

/* Enters handler context; false if this thread is already inside one (a
 * hooked function called from a helper or a signal handler). */
static inline __attribute__((always_inline)) bool hooks_thread_enter(struct bpfg_thread_slot *t)
{
    uint32_t seq = __atomic_load_n(&t->seq, __ATOMIC_RELAXED);
    if (seq & 1)
        return false;
    if (hooks_use_membarrier) {
        /* hooks_quiesce's membarrier orders this store before our loads */
        __atomic_store_n(&t->seq, seq + 1, __ATOMIC_RELAXED);
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
    } else {
        /* a locked add: the seq store is ordered before the program loads */
        __atomic_fetch_add(&t->seq, 1, __ATOMIC_SEQ_CST);
    }
    return true;
}

static inline __attribute__((always_inline)) void hooks_thread_leave(struct bpfg_thread_slot *t)
{
    __atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_RELEASE);
}

/* Sets every field of a run but rb[] (only read below nrb), one store
 * each: a {...} initialiser or a memset becomes a rep stos, which cost
 * more than the rest of an empty program's run. */
static inline __attribute__((always_inline)) void hooks_exec_init(struct bpfg_exec *ex, struct bpfg_pt_regs *regs,
                                                                  struct bpfg_hook_slot *h, bool entry)
{
    ex->regs = regs;
    ex->ctx = NULL;
    ex->ctx_len = 0;
    ex->hook = h;
    __asm__("" : "+r"(entry)); /* else entry and override merge into a constant read from .rodata */
    ex->entry = entry;
    ex->override = false;
    ex->override_rc = 0;
    ex->tail_next = NULL;
    ex->tail_count = 0;
    ex->signal = 0;
    ex->nrb = 0;
    ex->cookie = 0;
    ex->cpus.n = 0;
}
/* The uprobe handler the trap probes' SIGTRAP handler (trap.c) calls with
 * regs on the handler stack; the entry code (start.S) calls
 * bpfg_uprobe_hit, the same with the hook's word and the thread's slot. */
long bpfg_uprobe_handler(struct bpfg_pt_regs *regs, uint64_t *resume);
long bpfg_uprobe_hit(struct bpfg_pt_regs *regs, uint64_t *resume, uint64_t word, struct bpfg_thread_slot *t);
void bpfg_uprobe_miss(uint64_t *word);
/* The handler stack's sp (0: none) and the thread's slot, in rax and rdx
 * for the entry code (entry.h: SWITCH_STACK). */
struct hooks_hstack {
    uint64_t sp;
    struct bpfg_thread_slot *slot;
};
struct hooks_hstack bpfg_handler_stack(uint64_t sp);
int hooks_add(uint32_t index, uint32_t kind, struct prog *p, uint64_t site, uint64_t resume, uint64_t cookie, char *err,
              size_t errlen);
void hooks_remove(uint32_t index);
void hooks_remove_all(void);
bool hooks_use_prog(const struct prog *p);
/* Waits until every handler that was running has finished (a grace
 * period). Returns false on timeout. */
bool hooks_quiesce(int timeout_ms);
/* The return address a stack walker read at stack address slot: value,
 * or, when value is a uretprobe's trampoline, the original it replaced
 * (from the shadow stack of the thread regs belong to; on its handler
 * stack). */
uint64_t hooks_real_return(const struct bpfg_pt_regs *regs, uint64_t slot, uint64_t value);
/* The first return trampoline's address (0: none yet): a walker calls
 * hooks_real_return only for values within BPFG_UNWIND_TRAMPS trampolines
 * of it. */
uint64_t hooks_trampolines(void);

#endif
