/* The hook table and the handlers that run on target threads.
 *
 * Only the payload thread writes hook slots; handlers read them without
 * locks. A program pointer is published with a release store and cleared
 * before the program is freed; the thread table's per-thread `seq` (odd
 * while a handler runs) lets the payload thread wait for a grace period
 * before freeing (hooks_quiesce), like RCU. The order "seq store, then
 * program loads" on a handler's side needs a full barrier; when the kernel
 * has membarrier(PRIVATE_EXPEDITED) the payload thread issues it for all
 * threads at once (before reading the seqs) instead, and handlers pay
 * nothing for it.
 *
 * uretprobes replace the return address on the stack with the return
 * trampoline of the thread's slot in the unwind page (unwind.h), whose
 * unwind tables lead the target's unwinders to the original kept in the
 * thread's shadow stack, and which tells the return path the slot. Entries are ordered by stack address; frames
 * abandoned by longjmp or exceptions are recognised because their slot
 * lies below the current stack pointer, and dropped (counted per hook). */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <linux/membarrier.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>

#include "payload.h"
#include "rt/rt.h"
#include "unwind.h"

struct bpfg_hook_slot bpfg_hooks[BPFG_MAX_HOOKS];
struct bpfg_thread_slot bpfg_threads[BPFG_MAX_THREADS];
/* Right after the hot data (payload.h, PAYLOAD_HOT_STATS): its enabled
 * word, which every hit and program run reads, on the hot page. */
PAYLOAD_HOT_STATS struct bpfg_stats_table bpfg_stats = {.max_progs = BPFG_STATS_MAX_PROGS};
_Static_assert(BPFG_STATS_MAX_PROGS == MAX_PROGS, "a stats slot per program slot");

/* Shadow entries farther than this from the current stack pointer are not
 * on the same stack (e.g. a signal handler on an alternate stack) and are
 * neither dropped nor matched. */
#define SAME_STACK_WINDOW (256ull << 20)
#define THREAD_PROBES 64

PAYLOAD_HOT_DATA bool hooks_use_membarrier;

/* How handlers find their thread's key (thread_key). */
enum { KEY_SYSCALL, KEY_RDFSBASE, KEY_FS0 }; /* 0: always correct; entry.h: T_KEY_* */
/* read by the entry code too (entry.h: T_KEY_*) */
PAYLOAD_HOT_DATA uint8_t bpfg_key_method __attribute__((visibility("hidden")));
/* rt_lahf, copied beside bpfg_key_method for the entry code's flags
 * restore (entry.h: RESTORE_SCRATCH): one data page fewer on a hit */
PAYLOAD_HOT_DATA uint8_t bpfg_entry_lahf __attribute__((visibility("hidden")));
/* The key a uretprobe's return checks its trampoline's slot with (entry.h:
 * SWITCH_STACK ret=1): glibc's %fs:0 (~0.5 ns against ~4.4 for rdfsbase
 * on the Intel bench VM) where the process has glibc, as a thread that
 * reached a trampoline entered its probe with a nonzero fs base; 0: the
 * full lookup. */
PAYLOAD_HOT_DATA uint8_t bpfg_ret_key_method __attribute__((visibility("hidden")));
PAYLOAD_HOT_DATA uint64_t hooks_hstacks;

void hooks_init(void)
{
    /* rdfsbase first, although a load of glibc's fs:0 (the TCB's self
     * pointer) is ~1 ns cheaper: a thread whose fs base is still 0 gets key
     * 0 (a miss) instead of a fault. */
    bpfg_entry_lahf = rt_lahf;
    if (rt_hwcap2 & 2) /* HWCAP2_FSGSBASE */
        bpfg_key_method = KEY_RDFSBASE;
    else if (rt_params->libc.pthread_mutex_lock)
        bpfg_key_method = KEY_FS0;
    else
        bpfg_key_method = KEY_SYSCALL;
    bpfg_ret_key_method = rt_params->libc.pthread_mutex_lock ? KEY_FS0 : bpfg_key_method;
    if (rt_params->handler_stacks_size >= BPFG_HANDLER_STACKS_SIZE)
        hooks_hstacks = rt_params->handler_stacks;
    long r = rt_sys3(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    if (rt_is_err(r) || !(r & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
        return;
    hooks_use_membarrier = !rt_is_err(rt_sys3(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0));
}

/* ---- thread slots ---- */

static inline __attribute__((always_inline)) uint64_t thread_key(void)
{
    uint64_t k;
    if (__builtin_expect(bpfg_key_method == KEY_RDFSBASE, 1)) {
        __asm__ volatile("rdfsbase %0" : "=r"(k)); /* no memory access at all */
        return k;
    }
    if (bpfg_key_method == KEY_FS0) {
        __asm__ volatile("mov %%fs:0, %0" : "=r"(k));
        return k;
    }
    long r = rt_sys2(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, (long)&k);
    return rt_is_err(r) ? 0 : k;
}

static inline uint32_t thread_hash(uint64_t self)
{
    return (uint32_t)((self * 0x9e3779b97f4a7c15ull) >> 40);
}

/* The probing after a first-probe miss, and claiming a free slot. */
static __attribute__((noinline)) struct bpfg_thread_slot *thread_slot_slow(uint64_t self)
{
    if (!self)
        return NULL;
    uint32_t h = thread_hash(self);
    for (uint32_t i = 0; i < THREAD_PROBES; i++) {
        struct bpfg_thread_slot *t = &bpfg_threads[(h + i) % BPFG_MAX_THREADS];
        uint64_t o = __atomic_load_n(&t->owner, __ATOMIC_ACQUIRE);
        if (o == self)
            return t;
        if (o == 0) {
            uint64_t expected = 0;
            if (__atomic_compare_exchange_n(&t->owner, &expected, self, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                return t;
            if (expected == self)
                return t;
        }
    }
    return NULL;
}

/* A thread keeps its slot, which is nearly always the first probe. */
static inline __attribute__((always_inline)) struct bpfg_thread_slot *thread_slot(void)
{
    uint64_t self = thread_key();
    struct bpfg_thread_slot *t = &bpfg_threads[thread_hash(self) % BPFG_MAX_THREADS];
    if (__builtin_expect(self && __atomic_load_n(&t->owner, __ATOMIC_ACQUIRE) == self, 1))
        return t;
    return thread_slot_slow(self);
}

/* Whether the top entry of t's shadow stack is a frame that is gone (left
 * by an exception or longjmp, its programs never run): its slot is at or
 * below sp, on the same stack. */
static inline __attribute__((always_inline)) bool shadow_top_gone(const struct bpfg_thread_slot *t, uint64_t sp,
                                                                  bool inclusive)
{
    if (!t->depth)
        return false;
    const struct bpfg_shadow_entry *e = &t->stack[t->depth - 1];
    bool gone = inclusive ? e->slot <= sp : e->slot < sp;
    return gone && sp - e->slot <= SAME_STACK_WINDOW;
}

static __attribute__((noinline)) void shadow_drop_gone(struct bpfg_thread_slot *t, uint64_t sp, bool inclusive)
{
    while (shadow_top_gone(t, sp, inclusive)) {
        const struct bpfg_shadow_entry *e = &t->stack[t->depth - 1];
        if (e->hook_index < BPFG_MAX_HOOKS)
            __atomic_fetch_add(&bpfg_hooks[e->hook_index].dropped, 1, __ATOMIC_RELAXED);
        t->depth--;
    }
}

/* Drops the gone entries; the test inline, as nearly no hit has any. */
static inline __attribute__((always_inline)) void shadow_drop_below(struct bpfg_thread_slot *t, uint64_t sp,
                                                                    bool inclusive)
{
    if (__builtin_expect(shadow_top_gone(t, sp, inclusive), 0))
        shadow_drop_gone(t, sp, inclusive);
}

static PAYLOAD_HOT void miss(struct bpfg_hook_slot *h, struct bpfg_thread_slot *t)
{
    __atomic_fetch_add(&h->misses, 1, __ATOMIC_RELAXED);
    if (t)
        t->misses++;
}

/* ---- handler stacks (payload_abi.h: BPFG_HANDLER_STACK_*) ----
 *
 * The entry code (entry.h: SWITCH_STACK) finds a thread's slot and stack
 * inline; the first time, and for threads whose key needs a syscall, it
 * calls bpfg_handler_stack on the target's stack, so that and what it
 * calls keep small frames (payload/README.md: the stack budget). */
_Static_assert(sizeof(struct bpfg_thread_slot) == 800, "entry.h: T_SLOT_SIZE");
_Static_assert(offsetof(struct bpfg_thread_slot, listed) == 24, "entry.h: T_LISTED");
_Static_assert(BPFG_MAX_THREADS == 1024, "entry.h: T_SLOTS_MASK");
_Static_assert(BPFG_HANDLER_STACK_SIZE == 0x20000, "entry.h: HSTACK_SIZE");
_Static_assert(BPFG_HANDLER_STACK_STRIDE == 0x21000 && BPFG_HANDLER_STACK_GUARD == 0x1000, "entry.h: HSTACK_*");

/* Bits of a slot's `listed` word (payload_abi.h). The stack's bit sits
 * beside the owner the entry code checks: one cache line and one page
 * (a TLB walk after every syscall where the kernel has page-table
 * isolation without PCID) fewer than a table of stack tops. Set by the
 * slot's own thread only. (Bit 0 listed the slot for the unwind page's
 * search of version 1.) */
#define LISTED_HSTACK 2ull /* entry.h: T_HSTACK_READY */

static __attribute__((noinline)) bool hstack_prepare(struct bpfg_thread_slot *t, uint64_t lo)
{
    long r = rt_sys3(SYS_mprotect, (long)lo, BPFG_HANDLER_STACK_SIZE, PROT_READ | PROT_WRITE);
    if (rt_is_err(r))
        return false;
    __atomic_store_n(&t->listed, t->listed | LISTED_HSTACK, __ATOMIC_RELEASE);
    return true;
}

/* The stack pointer the handler is to run on (16-aligned), or 0 if the
 * thread has none (a miss), and the thread's slot. A thread already on its
 * handler stack (a signal handler that interrupted a handler reached a
 * probe) goes on below sp. */
struct hooks_hstack bpfg_handler_stack(uint64_t sp)
{
    struct bpfg_thread_slot *t = thread_slot();
    if (!t || !hooks_hstacks)
        return (struct hooks_hstack){0, t};
    size_t i = (size_t)(t - bpfg_threads);
    uint64_t lo = hooks_hstacks + i * BPFG_HANDLER_STACK_STRIDE + BPFG_HANDLER_STACK_GUARD;
    if (sp - lo < BPFG_HANDLER_STACK_SIZE)
        return (struct hooks_hstack){sp & ~15ull, t};
    if (!(__atomic_load_n(&t->listed, __ATOMIC_ACQUIRE) & LISTED_HSTACK) && !hstack_prepare(t, lo))
        return (struct hooks_hstack){0, t};
    return (struct hooks_hstack){lo + BPFG_HANDLER_STACK_SIZE, t};
}

/* A list is a prefix: hooks_add fills the first free entry, hooks_remove
 * clears them all. So the run ends at the first empty entry (a hook being
 * removed may then skip the programs after it), and is inline: a hit
 * with one program reads two entries and makes no call but the program's
 * (~2 ns less than a loop over the four in a function of its own). */
static inline __attribute__((always_inline)) void run_list(uint64_t *list, const uint64_t *cookies,
                                                           struct bpfg_exec *ex)
{
    for (int i = 0; i < BPFG_HOOK_MAX_PROGS; i++) {
        struct prog *p = (struct prog *)(uintptr_t)__atomic_load_n(&list[i], __ATOMIC_ACQUIRE);
        if (!p)
            return;
        ex->cookie = cookies[i]; /* written before list[i] was published */
        helpers_run_hot(p, ex);
    }
}

static inline bool any_prog(const uint64_t *list)
{
    _Static_assert(BPFG_HOOK_MAX_PROGS == 4, "any_prog reads four words");
    /* one test instead of a loop's four branches */
    return (__atomic_load_n(&list[0], __ATOMIC_ACQUIRE) | __atomic_load_n(&list[1], __ATOMIC_ACQUIRE) |
            __atomic_load_n(&list[2], __ATOMIC_ACQUIRE) | __atomic_load_n(&list[3], __ATOMIC_ACQUIRE)) != 0;
}

static PAYLOAD_HOT struct bpfg_hook_slot *hook_resume(uint64_t index, uint64_t *resume)
{
    if (index >= BPFG_MAX_HOOKS)
        __builtin_trap(); /* a stub we did not make: nowhere to continue */
    if (stats_on())
        __atomic_fetch_add(&bpfg_stats.hook_hits[index], 1, __ATOMIC_RELAXED);
    struct bpfg_hook_slot *h = &bpfg_hooks[index];
    *resume = __atomic_load_n(&h->resume, __ATOMIC_ACQUIRE);
    if (!*resume)
        __builtin_trap();
    return h;
}

/* Called by bpfg_uprobe_entry, on the target's stack, when the thread has
 * no handler stack: the hit is skipped. *word holds the hook index and
 * receives the resume address. */
void bpfg_uprobe_miss(uint64_t *word)
{
    miss(hook_resume(*word & ~(uint64_t)BPFG_HOOK_INDEX_MID, word), NULL);
}

/* Called by bpfg_uprobe_entry on the thread's handler stack with the
 * word its stub pushed (the hook index) and the thread's slot in
 * registers: read back from regs, each would wait for a store to
 * forward, and the slot for a division, before any hook data could load.
 * Returns 1 to return to the caller with regs->ax (bpf_override_return),
 * 0 to continue at the resume address, which it stores in *resume (on the
 * target's stack, read by the entry code's jmp). */
PAYLOAD_HOT long bpfg_uprobe_hit(struct bpfg_pt_regs *regs, uint64_t *resume, uint64_t word, struct bpfg_thread_slot *t)
{
    /* a stub inside a function stepped over the red zone (payload_abi.h) */
    bool mid = word & BPFG_HOOK_INDEX_MID;
    uint64_t index = word & ~(uint64_t)BPFG_HOOK_INDEX_MID;
    struct bpfg_hook_slot *h = hook_resume(index, resume);
    regs->ip = h->site;
    regs->orig_ax = index;
    if (mid)
        regs->sp += 128;

    /* lists are prefixes (run_list): the first entry says whether any */
    bool has_entry = __atomic_load_n(&h->entry_progs[0], __ATOMIC_ACQUIRE) != 0;
    bool has_ret = __atomic_load_n(&h->ret_progs[0], __ATOMIC_ACQUIRE) != 0;
    if (!has_entry && !has_ret) {
        miss(h, NULL); /* inert, or a thread that reached the site as it was unhooked */
        return 0;
    }
    if (!hooks_thread_enter(t)) {
        miss(h, t);
        return 0;
    }
    struct bpfg_exec ex;
    hooks_exec_init(&ex, regs, h, true);
    if (has_entry)
        run_list(h->entry_progs, h->entry_cookies, &ex);
    ex.override &= !mid; /* mid-function: no call to return from */
    if (has_ret && !ex.override) {
        uint64_t slot = regs->sp;
        shadow_drop_below(t, slot, true);
        uint64_t ret0 = __atomic_load_n(&unwind_ret0, __ATOMIC_ACQUIRE);
        if (t->depth < BPFG_SHADOW_DEPTH && ret0) {
            uint32_t depth = t->depth;
            struct bpfg_shadow_entry *e = &t->stack[depth];
            e->ret = *(uint64_t *)slot;
            e->slot = slot;
            e->hook_index = (uint32_t)index;
            /* entry first: a server reading the table sees no trampoline
             * address without its entry */
            __atomic_store_n(&t->depth, depth + 1, __ATOMIC_RELEASE);
            *(uint64_t *)slot = BPFG_UNWIND_RET(ret0, t - bpfg_threads); /* the thread's own */
        } else {
            miss(h, t);
        }
    }
    hooks_thread_leave(t);
    helpers_send_signal(&ex);
    if (ex.override) {
        regs->ax = ex.override_rc;
        return 1;
    }
    return 0;
}

long bpfg_uprobe_handler(struct bpfg_pt_regs *regs, uint64_t *resume)
{
    return bpfg_uprobe_hit(regs, resume, regs->orig_ax, hooks_stack_slot(regs));
}

static void fatal_no_entry(uint64_t sp) __attribute__((noreturn, cold));

static void fatal_no_entry(uint64_t sp)
{
    /* The original return address is lost: nothing sane can continue. Say
     * why where the server looks, then crash the thread loudly. */
    if (rt_params)
        snprintf(rt_params->error, sizeof(rt_params->error), "uretprobe: no shadow-stack entry for return at sp 0x%llx",
                 (unsigned long long)sp);
    __builtin_trap();
}

/* Called by bpfg_uretprobe_return when the thread has no handler stack,
 * which it had when the entry pushed the frame: cannot happen (a thread
 * returning through another thread's trampoline, a fiber moved between
 * threads, is looked up as itself and meets no entry below). */
void bpfg_uretprobe_lost(uint64_t *slot) __attribute__((noreturn));

void bpfg_uretprobe_lost(uint64_t *slot)
{
    fatal_no_entry((uint64_t)(uintptr_t)slot);
}

/* Called by bpfg_uretprobe_return with the thread's slot; returns the
 * original return address. */
PAYLOAD_HOT uint64_t bpfg_uretprobe_handler(struct bpfg_pt_regs *regs, struct bpfg_thread_slot *t)
{
    uint64_t slot = regs->sp - 8;
    shadow_drop_below(t, slot, false);
    if (!t->depth || t->stack[t->depth - 1].slot != slot)
        fatal_no_entry(slot);
    struct bpfg_shadow_entry e = t->stack[t->depth - 1];
    __atomic_store_n(&t->depth, t->depth - 1, __ATOMIC_RELEASE);
    regs->ip = e.ret;
    if (e.hook_index < BPFG_MAX_HOOKS && hooks_thread_enter(t)) {
        struct bpfg_hook_slot *h = &bpfg_hooks[e.hook_index];
        struct bpfg_exec ex;
        hooks_exec_init(&ex, regs, h, false);
        run_list(h->ret_progs, h->ret_cookies, &ex);
        hooks_thread_leave(t);
        helpers_send_signal(&ex);
    }
    return e.ret;
}

uint64_t hooks_real_return(const struct bpfg_pt_regs *regs, uint64_t slot, uint64_t value)
{
    uint64_t ret0 = __atomic_load_n(&unwind_ret0, __ATOMIC_ACQUIRE);
    if (!ret0 || value < ret0 || value - ret0 >= BPFG_UNWIND_TRAMPS * BPFG_UNWIND_ENTRY ||
        (value - ret0) % BPFG_UNWIND_ENTRY || (uint64_t)(uintptr_t)regs - hooks_hstacks >= BPFG_HANDLER_STACKS_SIZE)
        return value;
    const struct bpfg_thread_slot *t = hooks_stack_slot(regs);
    if ((value - ret0) / BPFG_UNWIND_ENTRY != (uint64_t)(t - bpfg_threads))
        return value; /* another thread's trampoline: not a frame of this thread's entries */
    for (uint32_t k = t->depth; k-- > 0;)
        if (t->stack[k].slot == slot)
            return t->stack[k].ret;
    return value;
}

uint64_t hooks_trampolines(void)
{
    return __atomic_load_n(&unwind_ret0, __ATOMIC_ACQUIRE);
}

/* ---- table management (payload thread only) ---- */

int hooks_add(uint32_t index, uint32_t kind, struct prog *p, uint64_t site, uint64_t resume, uint64_t cookie, char *err,
              size_t errlen)
{
    if (index >= BPFG_MAX_HOOKS) {
        snprintf(err, errlen, "hook index %u out of range (max %u)", index, BPFG_MAX_HOOKS);
        return -EINVAL;
    }
    if (kind != BPFG_HOOK_UPROBE && kind != BPFG_HOOK_URETPROBE) {
        snprintf(err, errlen, "unknown hook kind %u", kind);
        return -EINVAL;
    }
    if (!site || !resume) {
        snprintf(err, errlen, "hook %u: site and resume addresses are required", index);
        return -EINVAL;
    }
    struct bpfg_hook_slot *h = &bpfg_hooks[index];
    bool used = any_prog(h->entry_progs) || any_prog(h->ret_progs);
    if (used && (h->site != site || h->resume != resume)) {
        snprintf(err, errlen, "hook slot %u is in use for site 0x%llx", index, (unsigned long long)h->site);
        return -EBUSY;
    }
    uint64_t *list = kind == BPFG_HOOK_UPROBE ? h->entry_progs : h->ret_progs;
    uint64_t *cookies = kind == BPFG_HOOK_UPROBE ? h->entry_cookies : h->ret_cookies;
    int free_at = -1;
    for (int i = 0; i < BPFG_HOOK_MAX_PROGS; i++) {
        if (list[i] == (uint64_t)(uintptr_t)p && cookies[i] == cookie) { /* another cookie: another link */
            snprintf(err, errlen, "program %u is already attached to hook %u with that cookie", p->id, index);
            return -EEXIST;
        }
        if (!list[i] && free_at < 0)
            free_at = i;
    }
    if (free_at < 0) {
        snprintf(err, errlen, "hook %u already has %d programs of this kind", index, BPFG_HOOK_MAX_PROGS);
        return -ENOSPC;
    }
    if (!used) {
        __atomic_store_n(&h->site, site, __ATOMIC_RELEASE);
        __atomic_store_n(&h->resume, resume, __ATOMIC_RELEASE);
    }
    __atomic_store_n(&cookies[free_at], cookie, __ATOMIC_RELAXED); /* published by the store below */
    __atomic_store_n(&list[free_at], (uint64_t)(uintptr_t)p, __ATOMIC_SEQ_CST);
    return 0;
}

void hooks_remove(uint32_t index)
{
    if (index >= BPFG_MAX_HOOKS)
        return;
    struct bpfg_hook_slot *h = &bpfg_hooks[index];
    for (int i = 0; i < BPFG_HOOK_MAX_PROGS; i++) {
        __atomic_store_n(&h->entry_progs[i], 0, __ATOMIC_SEQ_CST);
        __atomic_store_n(&h->ret_progs[i], 0, __ATOMIC_SEQ_CST);
    }
}

void hooks_remove_all(void)
{
    for (uint32_t i = 0; i < BPFG_MAX_HOOKS; i++)
        hooks_remove(i);
}

bool hooks_use_prog(const struct prog *p)
{
    uint64_t v = (uint64_t)(uintptr_t)p;
    for (uint32_t i = 0; i < BPFG_MAX_HOOKS; i++)
        for (int k = 0; k < BPFG_HOOK_MAX_PROGS; k++)
            if (bpfg_hooks[i].entry_progs[k] == v || bpfg_hooks[i].ret_progs[k] == v)
                return true;
    return false;
}

bool hooks_quiesce(int timeout_ms)
{
    static uint32_t snap[BPFG_MAX_THREADS];
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    /* A full barrier on every thread: a handler either already shows an
     * odd seq below, or loads the program pointers after our clearing. */
    if (hooks_use_membarrier && rt_is_err(rt_sys3(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0)))
        __builtin_trap(); /* registered, so it cannot fail; never guess */
    for (uint32_t i = 0; i < BPFG_MAX_THREADS; i++)
        snap[i] = __atomic_load_n(&bpfg_threads[i].seq, __ATOMIC_SEQ_CST);
    for (int waited = 0;; waited++) {
        bool busy = false;
        for (uint32_t i = 0; i < BPFG_MAX_THREADS && !busy; i++)
            busy = (snap[i] & 1) && __atomic_load_n(&bpfg_threads[i].seq, __ATOMIC_ACQUIRE) == snap[i];
        if (!busy)
            return true;
        if (waited >= timeout_ms)
            return false;
        struct timespec ts = {0, 1000000};
        rt_sys2(SYS_nanosleep, (long)&ts, 0);
    }
}
