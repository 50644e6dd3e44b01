/* The unwind page (unwind.h). A uretprobe replaces a return address with
 * the trampoline of its thread's slot, so the return path knows the slot
 * without looking it up; one FDE covers every trampoline and tells an
 * unwinder where the original is: a DWARF expression that, given the CFA
 * (the caller's sp), reads the word at CFA - 8 (the trampoline's address,
 * or the slot index the trampoline stored over it), and searches that
 * slot's live shadow-stack entries for the one whose slot is CFA - 8. The
 * page is never unmapped: libgcc cannot forget a registration without
 * calling free(), which the payload thread (no glibc TLS) must not, so the
 * next payload adopts it instead. */
#define _GNU_SOURCE
#include "unwind.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "payload.h"
#include "rt/rt.h"

extern char bpfg_uretprobe_return[];

#define PAGE 4096
#define TEXT_SIZE BPFG_UNWIND_TEXT
#define MAP_SIZE (PAGE + TEXT_SIZE)
#define ENTRIES_SIZE (BPFG_UNWIND_TRAMPS * BPFG_UNWIND_ENTRY)
#define RA_OFF 1       /* the return address is entry + 1: an unwinder looks up ra - 1 */
#define TRAMPS_LOG2 10 /* the search's bounds checks are shifts: DWARF compares are signed */

_Static_assert(sizeof(struct bpfg_unwind_data) <= PAGE, "the unwind data fits its page");
_Static_assert(BPFG_UNWIND_TRAMPS == 1u << TRAMPS_LOG2, "TRAMPS_LOG2");
_Static_assert(BPFG_UNWIND_TRAMPS == BPFG_MAX_THREADS, "a trampoline per thread slot");

uint64_t unwind_ret0 __attribute__((visibility("hidden")));
static struct bpfg_unwind_data *data;
static uint8_t *text;
static uint64_t fde_addr; /* the one FDE of the plain .eh_frame */

/* The two flavours of the tables (payload_abi.h: BPFG_UNWIND_EH_FRAME_GCC). */
enum flavour { PLAIN, GCC };

/* ---- building the tables ---- */

struct buf {
    uint8_t *p;
    size_t n, cap;
    bool overflow;
};

static void put(struct buf *b, const void *v, size_t n)
{
    if (b->n + n > b->cap) {
        b->overflow = true;
        return;
    }
    memcpy(b->p + b->n, v, n);
    b->n += n;
}

static void u8(struct buf *b, uint8_t v)
{
    put(b, &v, 1);
}
static void u32(struct buf *b, uint32_t v)
{
    put(b, &v, 4);
}
static void u64(struct buf *b, uint64_t v)
{
    put(b, &v, 8);
}

static void uleb(struct buf *b, uint64_t v)
{
    do {
        uint8_t c = v & 0x7f;
        v >>= 7;
        u8(b, v ? c | 0x80 : c);
    } while (v);
}

/* A DW_OP_skip/bra operand from here back to target. */
static void jump_back(struct buf *b, size_t target)
{
    int16_t off = (int16_t)((long)target - (long)(b->n + 2));
    put(b, &off, 2);
}

/* Fills in a forward DW_OP_skip/bra operand left at `at`. */
static void patch16(struct buf *b, size_t at, size_t target)
{
    int16_t off = (int16_t)((long)target - (long)(at + 2));
    if (at + 2 <= b->n)
        memcpy(b->p + at, &off, 2);
}

enum {
    OP_addr = 0x03,
    OP_deref = 0x06,
    OP_constu = 0x10,
    OP_dup = 0x12,
    OP_drop = 0x13,
    OP_pick = 0x15,
    OP_minus = 0x1c,
    OP_mul = 0x1e,
    OP_plus = 0x22,
    OP_plus_uconst = 0x23,
    OP_shl = 0x24,
    OP_shr = 0x25,
    OP_bra = 0x28,
    OP_eq = 0x29,
    OP_lt = 0x2d,
    OP_skip = 0x2f,
    OP_lit0 = 0x30,
    OP_lit1 = 0x31,
    OP_lit8 = 0x38,
    OP_lit16 = 0x40,
    OP_deref_size = 0x94,
    CFA_def_cfa = 0x0c,
    CFA_def_cfa_offset = 0x0e,
    CFA_expression = 0x10,
    CFA_val_expression = 0x16,
    CFA_advance_loc = 0x40,
};

static void op_addr(struct buf *b, const void *p)
{
    u8(b, OP_addr);
    u64(b, (uint64_t)(uintptr_t)p);
}

/* [cfa key] -> [cfa key t]: the thread slot named by the word at key,
 * a trampoline's address or (once the trampoline ran its store) the slot
 * index itself; a jump to *to_none when it names none. */
static void emit_slot_of(struct buf *b, size_t *to_none)
{
    u8(b, OP_dup);
    u8(b, OP_deref);
    u8(b, OP_dup);
    u8(b, OP_constu);
    uleb(b, TRAMPS_LOG2);
    u8(b, OP_shr);
    u8(b, OP_bra);
    put(b, &(int16_t){3}, 2); /* not an index: over the skip */
    u8(b, OP_skip);
    size_t to_index = b->n;
    put(b, &(int16_t){0}, 2);
    op_addr(b, (const void *)(uintptr_t)((uint64_t)(uintptr_t)text + RA_OFF));
    u8(b, OP_minus);
    u8(b, OP_constu);
    uleb(b, 4); /* log2 BPFG_UNWIND_ENTRY */
    u8(b, OP_shr);
    patch16(b, to_index, b->n);
    u8(b, OP_dup);
    u8(b, OP_constu);
    uleb(b, TRAMPS_LOG2);
    u8(b, OP_shr);
    u8(b, OP_bra);
    *to_none = b->n;
    put(b, &(int16_t){0}, 2);
    u8(b, OP_constu);
    uleb(b, sizeof(struct bpfg_thread_slot));
    u8(b, OP_mul);
    op_addr(b, &data->threads);
    u8(b, OP_deref);
    u8(b, OP_plus);
}

/* The address of the original return address for a frame whose return
 * address is a trampoline: CFA on the stack in, the address out
 * (&data->zero when no live entry matches: unwinders stop there). */
static void emit_search(struct buf *b, enum flavour f)
{
    _Static_assert(BPFG_UNWIND_ENTRY == 16, "the index is (address - ret0) >> 4");
    /* The CFA stays below: libgcc's DW_OP_pick refuses to copy the
     * bottom entry (it asserts offset < depth - 1). */
    u8(b, OP_dup);
    u8(b, f == GCC ? OP_lit16 : OP_lit8);
    u8(b, OP_minus); /* key = sp - 8, the return address's slot */
    size_t to_none;
    emit_slot_of(b, &to_none); /* [cfa key t] */
    u8(b, OP_dup);
    u8(b, OP_plus_uconst);
    uleb(b, offsetof(struct bpfg_thread_slot, depth));
    u8(b, OP_deref_size);
    u8(b, 4);
    u8(b, OP_constu);
    uleb(b, sizeof(struct bpfg_shadow_entry));
    u8(b, OP_mul);
    u8(b, OP_pick);
    u8(b, 1);
    u8(b, OP_plus);
    u8(b, OP_plus_uconst);
    uleb(b, offsetof(struct bpfg_thread_slot, stack)); /* [cfa key t end] */
    u8(b, OP_pick);
    u8(b, 1);
    u8(b, OP_plus_uconst);
    uleb(b, offsetof(struct bpfg_thread_slot, stack)); /* [cfa key t end e] */
    size_t loop = b->n;
    u8(b, OP_dup);
    u8(b, OP_pick);
    u8(b, 2);
    u8(b, OP_lt);
    u8(b, OP_bra);
    put(b, &(int16_t){3}, 2); /* e < end: over the skip */
    u8(b, OP_skip);
    size_t to_end = b->n;
    put(b, &(int16_t){0}, 2);
    u8(b, OP_dup);
    u8(b, OP_plus_uconst);
    uleb(b, offsetof(struct bpfg_shadow_entry, slot));
    u8(b, OP_deref);
    u8(b, OP_pick);
    u8(b, 4);
    u8(b, OP_eq);
    u8(b, OP_bra);
    size_t to_found = b->n;
    put(b, &(int16_t){0}, 2);
    u8(b, OP_plus_uconst);
    uleb(b, sizeof(struct bpfg_shadow_entry));
    u8(b, OP_skip);
    jump_back(b, loop);
    patch16(b, to_none, b->n);
    patch16(b, to_end, b->n);
    op_addr(b, &data->zero);
    patch16(b, to_found, b->n); /* e is &e->ret (offset 0): the end */
    _Static_assert(offsetof(struct bpfg_shadow_entry, ret) == 0, "the search yields &entry->ret");
}

static void align8(struct buf *b)
{
    while (b->n % 8)
        u8(b, 0); /* DW_CFA_nop */
}

static void patch_len(struct buf *b, size_t at)
{
    uint32_t len = (uint32_t)(b->n - at - 4);
    if (at + 4 <= b->n)
        memcpy(b->p + at, &len, 4);
}

/* CIE "zR", absolute pointers; CFA = rsp at the trampoline (the caller's
 * sp after its callee's ret). */
static void emit_cie(struct buf *b)
{
    size_t at = b->n;
    u32(b, 0);
    u32(b, 0); /* CIE id */
    u8(b, 1);  /* version */
    put(b, "zR", 3);
    uleb(b, 1);  /* code alignment */
    u8(b, 0x78); /* data alignment: sleb128 -8 */
    uleb(b, 16); /* the return address column: rip */
    uleb(b, 1);  /* augmentation data: */
    u8(b, 0x00); /* FDE pointers DW_EH_PE_absptr */
    u8(b, CFA_def_cfa);
    uleb(b, 7); /* rsp */
    uleb(b, 0);
    align8(b);
    patch_len(b, at);
}

/* The rules throughout a trampoline (sp = the caller's sp after its
 * callee's ret; the trampoline does not move it): CFA = sp (plain) or
 * sp + 8 (libgcc), caller's rsp = sp, return address found by the search. */
static void emit_rules(struct buf *b, enum flavour f)
{
    uint8_t expr_bytes[160];
    struct buf expr = {expr_bytes, 0, sizeof(expr_bytes), false};
    emit_search(&expr, f);
    b->overflow |= expr.overflow;
    if (f == GCC) {
        u8(b, CFA_def_cfa_offset);
        uleb(b, 8);
        u8(b, CFA_val_expression);
        uleb(b, 7);
        uleb(b, 2);
        u8(b, OP_lit8);
        u8(b, OP_minus); /* rsp = CFA - 8 */
    }
    u8(b, CFA_expression);
    uleb(b, 16);
    uleb(b, expr.n);
    put(b, expr.p, expr.n);
}

static void emit_fde(struct buf *b, enum flavour f)
{
    size_t at = b->n;
    if (f == PLAIN)
        fde_addr = (uint64_t)(uintptr_t)(b->p + at);
    u32(b, 0);
    u32(b, (uint32_t)(at + 4)); /* back to the CIE at offset 0 */
    u64(b, (uint64_t)(uintptr_t)text);
    u64(b, ENTRIES_SIZE);
    uleb(b, 0); /* no augmentation data */
    emit_rules(b, f);
    align8(b);
    patch_len(b, at);
}

/* int3 (never run; it puts ra - 1 inside the entry), movq $slot,-8(%rsp)
 * (over the return address just used: the caller's red zone, dead since
 * its call; sp stays, so one CFI row holds throughout), jmp *common(%rip). */
static void emit_entry(uint8_t *e, uint32_t slot)
{
    static const uint8_t movq[] = {0x48, 0xc7, 0x44, 0x24, 0xf8};
    e[0] = 0xcc;
    memcpy(e + 1, movq, sizeof(movq));
    memcpy(e + 6, &slot, 4);
    e[10] = 0xff;
    e[11] = 0x25;
    int32_t rel = (int32_t)((uint8_t *)&data->common - (e + 16));
    memcpy(e + 12, &rel, 4);
    _Static_assert(BPFG_UNWIND_ENTRY == 16, "the entry's 16 bytes");
}

static bool build_eh_frame(enum flavour f)
{
    size_t at = f == GCC ? BPFG_UNWIND_EH_FRAME_GCC : BPFG_UNWIND_EH_FRAME;
    struct buf b = {text + at, 0, f == GCC ? BPFG_UNWIND_TEXT - at : BPFG_UNWIND_EH_FRAME_GCC - at, false};
    emit_cie(&b);
    emit_fde(&b, f);
    u32(&b, 0); /* the end of .eh_frame for __register_frame_info */
    return !b.overflow;
}

/* nongnu libunwind's binary search table: {start, fde} offsets from text. */
static void build_search_table(void)
{
    uint32_t *t = (uint32_t *)(void *)(text + BPFG_UNWIND_TABLE);
    t[0] = 0;
    t[1] = (uint32_t)(fde_addr - (uint64_t)(uintptr_t)text);
}

static int build_text(void)
{
    _Static_assert(ENTRIES_SIZE <= BPFG_UNWIND_TABLE && BPFG_UNWIND_TABLE + 8 <= BPFG_UNWIND_EH_FRAME, "layout");
    for (uint32_t i = 0; i < BPFG_UNWIND_TRAMPS; i++)
        emit_entry(text + i * BPFG_UNWIND_ENTRY, i);
    if (!build_eh_frame(PLAIN) || !build_eh_frame(GCC))
        return -ENOSPC;
    build_search_table();
    return 0;
}

/* ---- the page ---- */

/* The plain FDE of a page a payload of this layout built. */
static void find_fdes(void)
{
    const uint8_t *p = text + BPFG_UNWIND_EH_FRAME;
    uint32_t len;
    memcpy(&len, p, 4);
    fde_addr = (uint64_t)(uintptr_t)(p + 4 + len); /* after the CIE */
}

static bool adopt(uint64_t page)
{
    struct bpfg_unwind_data *d = (struct bpfg_unwind_data *)(uintptr_t)page;
    if (!page || d->magic != BPFG_UNWIND_MAGIC || d->version != BPFG_UNWIND_VERSION || d->page_size != PAGE)
        return false;
    data = d;
    text = (uint8_t *)d + PAGE;
    find_fdes();
    return true;
}

static int map_page(char *err, size_t errlen)
{
    long fd = rt_sys2(SYS_memfd_create, (long)BPFG_UNWIND_NAME, MFD_CLOEXEC);
    if (rt_is_err(fd))
        return snprintf(err, errlen, "unwind page: memfd_create: %s", strerror((int)-fd)), (int)fd;
    long r = rt_sys2(SYS_ftruncate, fd, MAP_SIZE);
    long m = rt_is_err(r) ? r : rt_sys6(SYS_mmap, 0, MAP_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    rt_sys1(SYS_close, fd);
    if (rt_is_err(m))
        return snprintf(err, errlen, "unwind page: %s", strerror((int)-m)), (int)m;
    data = (struct bpfg_unwind_data *)m;
    text = (uint8_t *)m + PAGE;
    data->page_size = PAGE;
    data->version = BPFG_UNWIND_VERSION;
    r = build_text();
    if (!r)
        r = rt_sys3(SYS_mprotect, (long)text, TEXT_SIZE, PROT_READ | PROT_EXEC);
    if (rt_is_err(r)) {
        rt_sys2(SYS_munmap, m, MAP_SIZE);
        data = NULL;
        return snprintf(err, errlen, "unwind page: tables: %s", strerror((int)-r)), (int)r;
    }
    __atomic_store_n(&data->magic, BPFG_UNWIND_MAGIC, __ATOMIC_RELEASE);
    return 0;
}

/* Points the page's trampolines and search at this payload (an adopted
 * page's were another payload's). */
static void point_at_threads(void)
{
    data->common = (uint64_t)(uintptr_t)bpfg_uretprobe_return;
    __atomic_store_n(&data->threads, (uint64_t)(uintptr_t)bpfg_threads, __ATOMIC_RELEASE);
}

/* ---- registration ---- */

static bool registered_with(const uint64_t *with, size_t n, uint64_t fn)
{
    for (size_t i = 0; i < n; i++)
        if (with[i] == fn)
            return true;
    return false;
}

static int free_place(const uint64_t *with, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!with[i])
            return (int)i;
    return -1;
}

static void register_gcc(uint64_t fn)
{
    int k = free_place(data->gcc_with, BPFG_UNWIND_GCC_MAX);
    if (!fn || k < 0 || registered_with(data->gcc_with, BPFG_UNWIND_GCC_MAX, fn))
        return;
    ((void (*)(const void *, void *))(uintptr_t)fn)(text + BPFG_UNWIND_EH_FRAME_GCC, data->gcc_object[k]);
    data->gcc_with[k] = fn;
}

static void register_llvm(uint64_t fn)
{
    int k = free_place(data->llvm_with, BPFG_UNWIND_OTHER_MAX);
    if (!fn || k < 0 || registered_with(data->llvm_with, BPFG_UNWIND_OTHER_MAX, fn))
        return;
    ((void (*)(uint64_t))(uintptr_t)fn)(fde_addr);
    data->llvm_with[k] = fn;
}

/* unw_dyn_info_t, UNW_INFO_FORMAT_REMOTE_TABLE (libunwind-dynamic.h). */
static void register_libunwind(uint64_t fn)
{
    int k = free_place(data->unw_with, BPFG_UNWIND_OTHER_MAX);
    if (!fn || k < 0 || registered_with(data->unw_with, BPFG_UNWIND_OTHER_MAX, fn))
        return;
    uint64_t *di = data->unw_info[k];
    memset(di, 0, sizeof(data->unw_info[k]));
    di[2] = (uint64_t)(uintptr_t)text;                /* start_ip */
    di[3] = (uint64_t)(uintptr_t)text + ENTRIES_SIZE; /* end_ip */
    di[5] = 2;                                        /* format: REMOTE_TABLE */
    di[8] = (uint64_t)(uintptr_t)text;                /* segbase */
    di[9] = 8 / sizeof(uint64_t);                     /* table_len, in words: one entry */
    di[10] = (uint64_t)(uintptr_t)(text + BPFG_UNWIND_TABLE);
    ((void (*)(void *))(uintptr_t)fn)(di);
    data->unw_with[k] = fn;
}

/* ---- gdb's list of shared objects (struct r_debug_extended) ---- */

enum { RD_VERSION, RD_MAP, RD_BRK, RD_STATE, RD_LDBASE, RD_NEXT }; /* words */

/* Appends the page's namespace to the r_debug chain at head, once: glibc
 * only ever writes r_next of its own last node (a dlmopen), gdb follows
 * r_next from a head whose r_version is 2 or more. */
static void gdb_append(uint64_t head)
{
    uint64_t *node = data->gdb_node, *h = (uint64_t *)(uintptr_t)head;
    node[RD_VERSION] = 2;
    node[RD_BRK] = h[RD_BRK];
    node[RD_STATE] = 0; /* RT_CONSISTENT */
    node[RD_LDBASE] = h[RD_LDBASE];
    node[RD_NEXT] = 0;
    uint64_t *p = h;
    for (int n = 0; n < 256 && __atomic_load_n(&p[RD_NEXT], __ATOMIC_ACQUIRE); n++)
        p = (uint64_t *)(uintptr_t)__atomic_load_n(&p[RD_NEXT], __ATOMIC_ACQUIRE);
    __atomic_store_n(&p[RD_NEXT], (uint64_t)(uintptr_t)node, __ATOMIC_RELEASE);
    uint32_t *version = (uint32_t *)h;
    if (__atomic_load_n(version, __ATOMIC_ACQUIRE) < 2)
        __atomic_store_n(version, 2, __ATOMIC_RELEASE);
    data->gdb_head = head;
}

static void gdb_link(const struct bpfg_pmsg_unwind *m)
{
    if (!m->r_debug || !m->gdb_path[0] || (data->gdb_head && data->gdb_head != m->r_debug))
        return;
    memcpy(data->gdb_path, m->gdb_path, sizeof(data->gdb_path));
    data->gdb_path[sizeof(data->gdb_path) - 1] = 0;
    memset(data->gdb_map, 0, sizeof(data->gdb_map));
    data->gdb_map[1] = (uint64_t)(uintptr_t)data->gdb_path; /* l_name; l_addr 0: the file is ET_EXEC */
    __atomic_store_n(&data->gdb_node[RD_MAP], (uint64_t)(uintptr_t)data->gdb_map, __ATOMIC_RELEASE);
    if (!data->gdb_head)
        gdb_append(m->r_debug);
}

int unwind_setup(const struct bpfg_pmsg_unwind *m, char *err, size_t errlen, uint64_t *page)
{
    if (!data && !adopt(m->page)) {
        int r = map_page(err, errlen);
        if (r)
            return r;
    }
    if (!unwind_ret0) {
        point_at_threads();
        __atomic_store_n(&unwind_ret0, (uint64_t)(uintptr_t)text + RA_OFF, __ATOMIC_RELEASE);
    }
    for (int i = 0; i < BPFG_UNWIND_GCC_MAX; i++)
        register_gcc(m->gcc[i]);
    for (int i = 0; i < BPFG_UNWIND_OTHER_MAX; i++) {
        register_llvm(m->llvm[i]);
        register_libunwind(m->libunwind[i]);
    }
    gdb_link(m);
    *page = (uint64_t)(uintptr_t)data;
    return 0;
}
