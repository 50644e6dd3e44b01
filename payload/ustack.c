/* User stacks by CFI (ustack.h). The walk: find the pc's module (binary
 * search over the sorted modules), its row (binary search), compute the
 * CFA from rsp or rbp, read the return address at CFA - 8 and rbp where
 * the row says it was saved. Stack reads are checked against the
 * process's rw ranges of the table, so a bad rsp or rbp ends the walk
 * instead of faulting the target. */
#include "ustack.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "payload.h"
#include "rt/rt.h"

#define MAX_DEPTH 128
/* struct rt_sigframe at __restore_rt: rsp points at the ucontext, whose
 * mcontext (after flags, link and stack_t) holds the interrupted gregs. */
#define UC_GREGS 40
#define GREG_RBP 10
#define GREG_RSP 15
#define GREG_RIP 16

static const struct bpfg_ustack_hdr *table; /* published with release */
static size_t table_len;
static const void *stale_seen;     /* a walk's table that lacked a pc */
static const void *stale_reported; /* payload thread only */

struct walk {
    const struct bpfg_ustack_hdr *t;
    const struct bpfg_ustack_mod *mods;
    const struct bpfg_ustack_range *ranges;
    const struct bpfg_ustack_row *rows;
    const uint32_t *index;
    uint64_t lo, hi;  /* the rw range of the last read */
    uint64_t ret0;    /* hooks_trampolines() */
    uint64_t last_pc; /* the last lookup's pc and result */
    const struct bpfg_ustack_row *last_row;
    const struct bpfg_ustack_mod *last_mod;
};

/* Row lookups cached by pc for every walk and thread: an entry is one
 * word, (module index + 1) << PC_CACHE_ROW_BITS | row index in the
 * module, stored and loaded whole (racing stores never mix two lookups)
 * and checked against the current tables before use: its module holds
 * the pc and its row is the last at or below it, so an entry of older
 * tables or of another pc is a miss, never a wrong row. Saves the two
 * binary searches of every frame that is not a recursion's. */
#define PC_CACHE_BITS 10
#define PC_CACHE_ROW_BITS 40
static uint64_t pc_cache[1u << PC_CACHE_BITS];

/* ---- tables ---- */

static bool table_valid(const struct bpfg_ustack_hdr *h, size_t len)
{
    if (len < sizeof(*h) || h->magic != BPFG_USTACK_MAGIC || h->version != BPFG_USTACK_VERSION)
        return false;
    uint64_t need = sizeof(*h) + (uint64_t)h->nmods * sizeof(struct bpfg_ustack_mod) +
                    (uint64_t)h->nranges * sizeof(struct bpfg_ustack_range) +
                    (uint64_t)h->nrows * sizeof(struct bpfg_ustack_row) + (uint64_t)h->nindex * 4;
    if (need != h->size || need > len)
        return false;
    const struct bpfg_ustack_mod *m = (const void *)(h + 1);
    const uint32_t *index = (const void *)((const uint8_t *)h + need - (uint64_t)h->nindex * 4);
    for (uint32_t i = 0; i < h->nmods; i++) {
        if ((uint64_t)m[i].first_row + m[i].nrows > h->nrows || (m[i].nrows && !m[i].npages) ||
            (uint64_t)m[i].first_index + m[i].npages > h->nindex)
            return false;
        for (uint32_t k = 0; k < m[i].npages; k++)
            if (index[m[i].first_index + k] >= m[i].nrows)
                return false;
    }
    return true;
}

int ustack_install(int fd, char *err, size_t errlen)
{
    long end = rt_sys3(SYS_lseek, fd, 0, 2 /* SEEK_END */);
    if (rt_is_err(end) || end < (long)sizeof(struct bpfg_ustack_hdr)) {
        snprintf(err, errlen, "stack tables: bad size");
        return rt_is_err(end) ? (int)end : -EINVAL;
    }
    long addr = rt_sys6(SYS_mmap, 0, end, PROT_READ, MAP_SHARED, fd, 0);
    if (rt_is_err(addr)) {
        snprintf(err, errlen, "stack tables: mmap failed (%ld)", addr);
        return (int)addr;
    }
    if (!table_valid((const void *)addr, (size_t)end)) {
        rt_sys2(SYS_munmap, addr, end);
        snprintf(err, errlen, "stack tables: bad header (server of another version?)");
        return -EINVAL;
    }
    const struct bpfg_ustack_hdr *old = table;
    size_t old_len = table_len;
    __atomic_store_n(&table, (const struct bpfg_ustack_hdr *)addr, __ATOMIC_RELEASE);
    table_len = (size_t)end;
    /* a handler still walking the old tables keeps them until it leaves */
    if (old && hooks_quiesce(1000))
        rt_sys2(SYS_munmap, (long)old, (long)old_len);
    return 0;
}

bool ustack_take_stale(void)
{
    const void *s = __atomic_load_n(&stale_seen, __ATOMIC_RELAXED);
    if (!s || s == stale_reported || s != table)
        return false;
    stale_reported = s;
    return true;
}

void ustack_release(void)
{
    if (table)
        rt_sys2(SYS_munmap, (long)table, (long)table_len);
    table = NULL;
    table_len = 0;
}

/* ---- lookups ---- */

/* Branch-free binary searches (cmov): the last element whose key is at or
 * below the one searched, n > 0. Mispredicted branches were most of a
 * walk's time. */
static const struct bpfg_ustack_mod *last_mod_at(const struct bpfg_ustack_mod *base, uint32_t n, uint64_t pc)
{
    while (n > 1) {
        uint32_t half = n / 2;
        base = base[half].start <= pc ? base + half : base;
        n -= half;
    }
    return base;
}

static const struct bpfg_ustack_row *last_row_at(const struct bpfg_ustack_row *base, uint32_t n, uint32_t pc)
{
    while (n > 1) {
        uint32_t half = n / 2;
        base = base[half].pc <= pc ? base + half : base;
        n -= half;
    }
    return base;
}

static const struct bpfg_ustack_mod *find_mod(const struct walk *w, uint64_t pc)
{
    const struct bpfg_ustack_mod *last = w->last_mod; /* callers are mostly in the callee's module */
    if (last && last->start <= pc && pc < last->end)
        return last;
    if (!w->t->nmods)
        return NULL;
    const struct bpfg_ustack_mod *m = last_mod_at(w->mods, w->t->nmods, pc);
    return m->start <= pc && pc < m->end ? m : NULL;
}

/* The row of vaddr: binary search among the rows of its block only. */
static const struct bpfg_ustack_row *find_row(const struct walk *w, const struct bpfg_ustack_mod *m, uint64_t pc)
{
    uint64_t vaddr = pc - m->bias;
    if (!m->nrows || vaddr > UINT32_MAX || (vaddr >> BPFG_USTACK_BLOCK_SHIFT) < m->first_page)
        return NULL;
    uint64_t k = (vaddr >> BPFG_USTACK_BLOCK_SHIFT) - m->first_page;
    const uint32_t *ix = w->index + m->first_index;
    uint32_t lo = k < m->npages ? ix[k] : m->nrows - 1;
    uint32_t hi = k + 1 < m->npages ? ix[k + 1] + 1 : m->nrows;
    const struct bpfg_ustack_row *r = last_row_at(w->rows + m->first_row + lo, hi - lo, (uint32_t)vaddr);
    return r->pc <= vaddr ? r : NULL;
}

static uint64_t *pc_cache_slot(uint64_t pc)
{
    return &pc_cache[(pc * 0x9e3779b97f4a7c15ull) >> (64 - PC_CACHE_BITS)];
}

/* pc's cached row and its module, or NULL on a miss. */
static const struct bpfg_ustack_row *cached_row(const struct walk *w, uint64_t pc, const struct bpfg_ustack_mod **mp)
{
    uint64_t e = __atomic_load_n(pc_cache_slot(pc), __ATOMIC_RELAXED);
    uint64_t mi = (e >> PC_CACHE_ROW_BITS) - 1, ri = e & ((1ull << PC_CACHE_ROW_BITS) - 1);
    if (!e || mi >= w->t->nmods)
        return NULL;
    const struct bpfg_ustack_mod *m = &w->mods[mi];
    uint64_t vaddr = pc - m->bias;
    if (pc < m->start || pc >= m->end || ri >= m->nrows || vaddr > UINT32_MAX)
        return NULL;
    const struct bpfg_ustack_row *r = w->rows + m->first_row + ri;
    if (r->pc > vaddr || (ri + 1 < m->nrows && r[1].pc <= vaddr))
        return NULL;
    *mp = m;
    return r;
}

static void cache_row(const struct walk *w, uint64_t pc, const struct bpfg_ustack_mod *m,
                      const struct bpfg_ustack_row *r)
{
    uint64_t mi = (uint64_t)(m - w->mods), ri = (uint64_t)(r - (w->rows + m->first_row));
    if (mi + 1 < (1ull << (64 - PC_CACHE_ROW_BITS)) && ri < (1ull << PC_CACHE_ROW_BITS))
        __atomic_store_n(pc_cache_slot(pc), (mi + 1) << PC_CACHE_ROW_BITS | ri, __ATOMIC_RELAXED);
}

/* pc's row (NULL: none) and module; false when no module holds pc. */
static bool lookup(struct walk *w, uint64_t pc, const struct bpfg_ustack_row **row)
{
    if (pc == w->last_pc) { /* recursion */
        *row = w->last_row;
        return true;
    }
    const struct bpfg_ustack_mod *m = NULL;
    const struct bpfg_ustack_row *r = cached_row(w, pc, &m);
    if (!r) {
        if (!(m = find_mod(w, pc)))
            return false;
        if ((r = find_row(w, m, pc)))
            cache_row(w, pc, m, r);
    }
    w->last_pc = pc;
    w->last_row = *row = r;
    w->last_mod = m;
    return true;
}

static bool find_range(struct walk *w, uint64_t addr)
{
    uint32_t lo = 0, hi = w->t ? w->t->nranges : 0;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        if (w->ranges[mid].start <= addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo || addr >= w->ranges[lo - 1].end)
        return false;
    w->lo = w->ranges[lo - 1].start;
    w->hi = w->ranges[lo - 1].end;
    return true;
}

/* An 8-byte stack read: direct inside a known rw range; through the
 * kernel (fault-safe) for a stack mapped since the tables were made. */
static bool read_word(struct walk *w, uint64_t addr, uint64_t *v)
{
    if (addr & 7)
        return false;
    if ((addr >= w->lo && addr + 8 <= w->hi) || (find_range(w, addr) && addr + 8 <= w->hi)) {
        *v = *(const volatile uint64_t *)addr;
        return true;
    }
    if (w->t)
        __atomic_store_n(&stale_seen, (const void *)w->t, __ATOMIC_RELAXED);
    return rt_safe_read(v, (const void *)addr, 8) == 0;
}

/* ---- the walk ---- */

struct frame {
    uint64_t pc, sp, bp;
    bool exact; /* pc is not a return address (first frame, after a signal) */
};

/* rt_sigframe: the interrupted registers. */
static bool step_signal(struct walk *w, struct frame *f)
{
    uint64_t g = f->sp + UC_GREGS;
    if (!read_word(w, g + GREG_RIP * 8, &f->pc) || !read_word(w, g + GREG_RSP * 8, &f->sp) ||
        !read_word(w, g + GREG_RBP * 8, &f->bp))
        return false;
    f->exact = true;
    return true;
}

static uint64_t row_cfa(const struct bpfg_ustack_row *row, const struct frame *f)
{
    switch (row->cfa_rule) {
    case BPFG_USTACK_CFA_RSP: return f->sp + (int64_t)row->cfa_off;
    case BPFG_USTACK_CFA_RBP: return f->bp + (int64_t)row->cfa_off;
    case BPFG_USTACK_CFA_PLT: return f->sp + 8 + ((f->pc & 15) >= (uint64_t)row->cfa_off ? 8 : 0);
    default: return 0;
    }
}

/* One frame up; false at the end of the stack. */
static bool step(struct walk *w, const struct bpfg_pt_regs *regs, bool entry, struct frame *f)
{
    const struct bpfg_ustack_row *row = NULL;
    uint64_t pc = f->exact ? f->pc : f->pc - 1;
    if (w->t && !lookup(w, pc, &row)) { /* code mapped since the tables were made */
        __atomic_store_n(&stale_seen, (const void *)w->t, __ATOMIC_RELAXED);
        return false;
    }
    uint8_t rule = row ? row->cfa_rule : BPFG_USTACK_CFA_NONE;
    if (rule == BPFG_USTACK_CFA_END)
        return false;
    if (rule == BPFG_USTACK_CFA_SIGNAL)
        return step_signal(w, f);
    uint64_t cfa, bp = f->bp;
    if (rule != BPFG_USTACK_CFA_NONE)
        cfa = row_cfa(row, f);
    else if (entry && f->exact && f->pc == regs->ip)
        cfa = f->sp + 8; /* a function's first instruction: [sp] is the return address */
    else if (!f->bp || !read_word(w, f->bp, &bp)) {
        /* an anonymous mapping the tables knew may be a library now */
        if (w->t && w->last_mod && !w->last_mod->nrows)
            __atomic_store_n(&stale_seen, (const void *)w->t, __ATOMIC_RELAXED);
        return false;
    } else
        cfa = f->bp + 16;
    uint64_t ra;
    if (cfa <= f->sp || !read_word(w, cfa - 8, &ra) || !ra)
        return false;
    if (row && row->rbp_saved && !read_word(w, cfa + (int64_t)row->rbp_off, &bp))
        return false;
    if (w->ret0 && ra - w->ret0 < (uint64_t)BPFG_UNWIND_TRAMPS * BPFG_UNWIND_ENTRY)
        ra = hooks_real_return(regs, cfa - 8, ra);
    *f = (struct frame){ra, cfa, bp, false};
    return true;
}

uint32_t ustack_walk(const struct bpfg_pt_regs *regs, bool entry, uint64_t *ips, uint32_t max, uint32_t skip)
{
    struct walk w = {.t = __atomic_load_n(&table, __ATOMIC_ACQUIRE), .ret0 = hooks_trampolines()};
    if (w.t) {
        w.mods = (const void *)(w.t + 1);
        w.ranges = (const void *)(w.mods + w.t->nmods);
        w.rows = (const void *)(w.ranges + w.t->nranges);
        w.index = (const void *)(w.rows + w.t->nrows);
    }
    struct frame f = {regs->ip, regs->sp, regs->bp, true};
    uint32_t n = 0, seen = 0;
    for (int depth = 0; depth < MAX_DEPTH && n < max; depth++) {
        if (seen++ >= skip)
            ips[n++] = f.pc;
        if (!step(&w, regs, entry, &f))
            break;
    }
    return n;
}

bool ustack_build_id(uint64_t ip, uint8_t id[20], uint64_t *offset)
{
    const struct bpfg_ustack_hdr *t = __atomic_load_n(&table, __ATOMIC_ACQUIRE);
    struct walk w = {.t = t, .mods = t ? (const void *)(t + 1) : NULL};
    const struct bpfg_ustack_mod *m = t ? find_mod(&w, ip) : NULL;
    if (!m || !m->build_id_len)
        return false;
    memset(id, 0, 20);
    memcpy(id, m->build_id, m->build_id_len < 20 ? m->build_id_len : 20);
    *offset = ip - m->start + m->file_off;
    return true;
}
