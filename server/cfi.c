/* .eh_frame / .debug_frame to user-stack rows (cfi.h). A DWARF CFA
 * program interpreter that keeps only what an x86-64 walk needs: the CFA
 * rule, rbp's save slot and whether the return address is defined. */
#define _GNU_SOURCE
#include "cfi.h"

#include <errno.h>
#include <gelf.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16
#define STATE_STACK 16

/* ---- reading ---- */

struct rd {
    const uint8_t *p, *end;
    bool bad;
};

static uint64_t rd_fixed(struct rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return 0;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)r->p[i] << (8 * i);
    r->p += n;
    return v;
}

static uint64_t rd_uleb(struct rd *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; !r->bad; shift += 7) {
        uint8_t b = (uint8_t)rd_fixed(r, 1);
        if (shift < 64)
            v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    return v;
}

static int64_t rd_sleb(struct rd *r)
{
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b = 0;
    do {
        b = (uint8_t)rd_fixed(r, 1);
        if (shift < 64)
            v |= (uint64_t)(b & 0x7f) << shift;
        shift += 7;
    } while ((b & 0x80) && !r->bad);
    if (shift < 64 && (b & 0x40))
        v |= ~0ull << shift;
    return (int64_t)v;
}

/* A section: its bytes and where they are loaded (for pc-relative
 * pointers); eh: .eh_frame's conventions, else .debug_frame's. */
struct sec {
    const uint8_t *data;
    size_t size;
    uint64_t vaddr;
    bool eh;
};

/* A DW_EH_PE_* encoded pointer. */
static uint64_t rd_ptr(struct rd *r, uint8_t enc, const struct sec *s)
{
    if (enc == 0xff)
        return 0;
    uint64_t at = s->vaddr + (uint64_t)(r->p - s->data), v;
    switch (enc & 0x0f) {
    case 0x00: v = rd_fixed(r, 8); break;
    case 0x01: v = rd_uleb(r); break;
    case 0x02: v = rd_fixed(r, 2); break;
    case 0x03: v = rd_fixed(r, 4); break;
    case 0x04: v = rd_fixed(r, 8); break;
    case 0x09: v = (uint64_t)rd_sleb(r); break;
    case 0x0a: v = (uint64_t)(int16_t)rd_fixed(r, 2); break;
    case 0x0b: v = (uint64_t)(int32_t)rd_fixed(r, 4); break;
    case 0x0c: v = rd_fixed(r, 8); break;
    default: r->bad = true; return 0;
    }
    if ((enc & 0x70) == 0x10)
        v += at;
    else if ((enc & 0x70) != 0)
        r->bad = true; /* datarel, textrel, funcrel: not used on x86-64 */
    if (enc & 0x80)
        r->bad = true; /* indirect: would need the loaded image */
    return v;
}

/* ---- CIEs and FDEs ---- */

struct cie {
    uint64_t caf;
    int64_t daf;
    uint64_t ra_reg;
    uint8_t fde_enc;
    bool aug_z, signal;
    const uint8_t *insns, *insns_end;
};

struct fde {
    uint64_t start, end;
    int prio; /* 0 .eh_frame, 1 .debug_frame: the first wins an overlap */
    struct cie cie;
    const uint8_t *insns, *insns_end;
    const struct sec *sec;
};

struct fde_list {
    struct fde *v;
    size_t n, cap;
};

/* An entry's extent: *body after the length, *next after the entry. */
static bool entry_bounds(const struct sec *s, size_t off, const uint8_t **body, const uint8_t **next)
{
    struct rd r = {s->data + off, s->data + s->size, false};
    uint64_t len = rd_fixed(&r, 4);
    if (len == 0xffffffffu)
        len = rd_fixed(&r, 8);
    if (r.bad || len == 0 || len > (uint64_t)(r.end - r.p))
        return false;
    *body = r.p;
    *next = r.p + len;
    return true;
}

static bool parse_augmentation(struct rd *r, const char *aug, const struct sec *s, struct cie *c)
{
    c->aug_z = aug[0] == 'z';
    const uint8_t *after = NULL;
    if (c->aug_z) {
        uint64_t len = rd_uleb(r);
        if (r->bad || len > (uint64_t)(r->end - r->p))
            return false;
        after = r->p + len;
    }
    for (const char *a = aug + c->aug_z; *a && !r->bad; a++) {
        if (*a == 'R')
            c->fde_enc = (uint8_t)rd_fixed(r, 1);
        else if (*a == 'L')
            rd_fixed(r, 1);
        else if (*a == 'P') {
            uint8_t enc = (uint8_t)rd_fixed(r, 1);
            rd_ptr(r, enc & 0x7f, s); /* the personality's address is not needed */
        } else if (*a == 'S')
            c->signal = true;
        else if (*a != 'B' && !c->aug_z)
            return false; /* unknown and not skippable */
    }
    if (after)
        r->p = after;
    return !r->bad;
}

static bool parse_cie(const struct sec *s, const uint8_t *body, const uint8_t *next, struct cie *c)
{
    struct rd r = {body, next, false};
    *c = (struct cie){.fde_enc = s->eh ? 0 : 0x00};
    uint64_t id = rd_fixed(&r, 4);
    if (id != (s->eh ? 0 : 0xffffffffu))
        return false;
    uint8_t version = (uint8_t)rd_fixed(&r, 1);
    const char *aug = (const char *)r.p;
    size_t alen = strnlen(aug, (size_t)(r.end - r.p));
    if (alen == (size_t)(r.end - r.p))
        return false;
    r.p += alen + 1;
    if (strstr(aug, "eh"))
        rd_fixed(&r, 8);
    if (version >= 4)
        rd_fixed(&r, 2); /* address and segment selector sizes */
    c->caf = rd_uleb(&r);
    c->daf = rd_sleb(&r);
    c->ra_reg = version == 1 ? rd_fixed(&r, 1) : rd_uleb(&r);
    if (aug[0] && !parse_augmentation(&r, aug, s, c))
        return false;
    c->insns = r.p;
    c->insns_end = next;
    return !r.bad;
}

static int push_fde(struct fde_list *l, const struct fde *f)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        struct fde *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *f;
    return 0;
}

/* One FDE whose entry body starts at body (its CIE pointer). */
static int parse_fde(const struct sec *s, const uint8_t *body, const uint8_t *next, int prio, struct fde_list *l)
{
    struct rd r = {body, next, false};
    uint64_t ptr = rd_fixed(&r, 4);
    size_t cie_off = s->eh ? (size_t)(body - s->data) - (size_t)ptr : (size_t)ptr;
    const uint8_t *cbody, *cnext;
    struct fde f = {.prio = prio, .sec = s};
    if ((s->eh && ptr > (size_t)(body - s->data)) || cie_off >= s->size || !entry_bounds(s, cie_off, &cbody, &cnext) ||
        !parse_cie(s, cbody, cnext, &f.cie))
        return 0; /* a broken entry: its function gets no rows */
    uint8_t enc = s->eh ? f.cie.fde_enc : 0x00;
    f.start = rd_ptr(&r, enc, s);
    f.end = f.start + rd_ptr(&r, enc & 0x0f, s);
    if (f.cie.aug_z) {
        uint64_t alen = rd_uleb(&r);
        if (alen > (uint64_t)(r.end - r.p))
            return 0;
        r.p += alen;
    }
    if (r.bad || f.end <= f.start || f.end > UINT32_MAX)
        return 0;
    f.insns = r.p;
    f.insns_end = next;
    return push_fde(l, &f);
}

static int collect_fdes(const struct sec *s, int prio, struct fde_list *l)
{
    size_t off = 0;
    while (off + 4 <= s->size) {
        const uint8_t *body, *next;
        if (!entry_bounds(s, off, &body, &next))
            break; /* the terminator, or a truncated section */
        uint64_t id = (uint64_t)body[0] | (uint64_t)body[1] << 8 | (uint64_t)body[2] << 16 | (uint64_t)body[3] << 24;
        bool is_cie = s->eh ? id == 0 : id == 0xffffffffu;
        if (!is_cie && (size_t)(next - body) >= 4) {
            int r = parse_fde(s, body, next, prio, l);
            if (r)
                return r;
        }
        off = (size_t)(next - s->data);
    }
    return 0;
}

/* ---- the CFA program ---- */

enum cfa_kind { CFA_REG, CFA_PLT, CFA_OTHER };
enum rule_kind { RULE_SAME, RULE_OFFSET, RULE_UNDEFINED, RULE_OTHER };

struct frame_state {
    uint8_t cfa_kind;
    uint64_t cfa_reg;
    int64_t cfa_off;
    uint8_t rbp, ra; /* enum rule_kind */
    int64_t rbp_off, ra_off;
};

struct run {
    const struct fde *f;
    uint64_t loc;
    struct frame_state st, init;
    struct frame_state saved[STATE_STACK];
    int nsaved;
    struct cfi_rows *out;
    bool bad;
};

static int push_row(struct cfi_rows *o, const struct bpfg_ustack_row *row)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 1024;
        struct bpfg_ustack_row *v = realloc(o->rows, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        o->rows = v;
        o->cap = cap;
    }
    o->rows[o->n++] = *row;
    return 0;
}

static struct bpfg_ustack_row to_row(const struct frame_state *st, bool signal, uint64_t pc)
{
    struct bpfg_ustack_row row = {.pc = (uint32_t)pc, .cfa_rule = BPFG_USTACK_CFA_NONE};
    if (st->ra == RULE_UNDEFINED)
        row.cfa_rule = BPFG_USTACK_CFA_END;
    else if (signal)
        row.cfa_rule = BPFG_USTACK_CFA_SIGNAL;
    else if (st->ra == RULE_OFFSET && st->ra_off == -8 && st->cfa_kind == CFA_PLT)
        row.cfa_rule = BPFG_USTACK_CFA_PLT;
    else if (st->ra == RULE_OFFSET && st->ra_off == -8 && st->cfa_kind == CFA_REG &&
             (st->cfa_reg == REG_RSP || st->cfa_reg == REG_RBP) && st->cfa_off == (int32_t)st->cfa_off)
        row.cfa_rule = st->cfa_reg == REG_RSP ? BPFG_USTACK_CFA_RSP : BPFG_USTACK_CFA_RBP;
    if (row.cfa_rule == BPFG_USTACK_CFA_RSP || row.cfa_rule == BPFG_USTACK_CFA_RBP ||
        row.cfa_rule == BPFG_USTACK_CFA_PLT)
        row.cfa_off = (int32_t)st->cfa_off;
    if (st->rbp == RULE_OFFSET && st->rbp_off == (int16_t)st->rbp_off && row.cfa_rule != BPFG_USTACK_CFA_NONE) {
        row.rbp_saved = 1;
        row.rbp_off = (int16_t)st->rbp_off;
    }
    return row;
}

static bool same_rule(const struct bpfg_ustack_row *a, const struct bpfg_ustack_row *b)
{
    return a->cfa_rule == b->cfa_rule && a->cfa_off == b->cfa_off && a->rbp_saved == b->rbp_saved &&
           a->rbp_off == b->rbp_off;
}

/* The state so far holds from run->loc up to next. */
static void advance_to(struct run *r, uint64_t next)
{
    if (r->loc < r->f->end && next > r->loc) {
        struct bpfg_ustack_row row = to_row(&r->st, r->f->cie.signal, r->loc);
        struct cfi_rows *o = r->out;
        if (o->n && o->rows[o->n - 1].pc == row.pc)
            o->rows[o->n - 1] = row;
        else if (!o->n || !same_rule(&o->rows[o->n - 1], &row) || o->rows[o->n - 1].pc > row.pc)
            r->bad |= push_row(o, &row) != 0;
    }
    if (next > r->loc)
        r->loc = next;
}

/* DW_OP sequence of the PLT's CFA (glibc's and binutils' PLT eh_frame):
 * breg7 8; breg16 0; lit15; and; litN; ge; lit3; shl; plus. */
static bool plt_expression(const uint8_t *e, uint64_t len, int64_t *threshold)
{
    static const uint8_t head[] = {0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a};
    static const uint8_t tail[] = {0x2a, 0x33, 0x24, 0x22};
    if (len != sizeof(head) + 1 + sizeof(tail) || memcmp(e, head, sizeof(head)) ||
        memcmp(e + sizeof(head) + 1, tail, sizeof(tail)) || e[sizeof(head)] < 0x30 || e[sizeof(head)] > 0x4f)
        return false;
    *threshold = e[sizeof(head)] - 0x30;
    return true;
}

static void set_rule(struct frame_state *st, uint64_t reg, uint8_t kind, int64_t off)
{
    if (reg == REG_RBP) {
        st->rbp = kind;
        st->rbp_off = off;
    } else if (reg == REG_RA) {
        st->ra = kind;
        st->ra_off = off;
    }
}

static void restore_rule(struct run *r, uint64_t reg)
{
    if (reg == REG_RBP) {
        r->st.rbp = r->init.rbp;
        r->st.rbp_off = r->init.rbp_off;
    } else if (reg == REG_RA) {
        r->st.ra = r->init.ra;
        r->st.ra_off = r->init.ra_off;
    }
}

static void def_cfa_expression(struct run *r, struct rd *in)
{
    uint64_t len = rd_uleb(in);
    if (len > (uint64_t)(in->end - in->p)) {
        in->bad = true;
        return;
    }
    int64_t threshold;
    if (plt_expression(in->p, len, &threshold)) {
        r->st.cfa_kind = CFA_PLT;
        r->st.cfa_off = threshold;
    } else
        r->st.cfa_kind = CFA_OTHER;
    in->p += len;
}

static void skip_block(struct rd *in)
{
    uint64_t len = rd_uleb(in);
    if (len > (uint64_t)(in->end - in->p))
        in->bad = true;
    else
        in->p += len;
}

/* The extended (low 6 bits) opcodes. */
static void op_extended(struct run *r, struct rd *in, uint8_t op)
{
    const struct cie *c = &r->f->cie;
    struct frame_state *st = &r->st;
    uint64_t reg;
    switch (op) {
    case 0x00: break; /* nop */
    case 0x01: advance_to(r, rd_ptr(in, c->fde_enc, r->f->sec)); break;
    case 0x02: advance_to(r, r->loc + rd_fixed(in, 1) * c->caf); break;
    case 0x03: advance_to(r, r->loc + rd_fixed(in, 2) * c->caf); break;
    case 0x04: advance_to(r, r->loc + rd_fixed(in, 4) * c->caf); break;
    case 0x05: reg = rd_uleb(in), set_rule(st, reg, RULE_OFFSET, (int64_t)rd_uleb(in) * c->daf); break;
    case 0x06: restore_rule(r, rd_uleb(in)); break;
    case 0x07: set_rule(st, rd_uleb(in), RULE_UNDEFINED, 0); break;
    case 0x08: set_rule(st, rd_uleb(in), RULE_SAME, 0); break;
    case 0x09: reg = rd_uleb(in), rd_uleb(in), set_rule(st, reg, RULE_OTHER, 0); break;
    case 0x0a:
        if (r->nsaved < STATE_STACK)
            r->saved[r->nsaved] = *st;
        r->nsaved++;
        break;
    case 0x0b:
        if (r->nsaved > 0 && --r->nsaved < STATE_STACK)
            *st = r->saved[r->nsaved];
        else
            in->bad = true;
        break;
    case 0x0c: st->cfa_kind = CFA_REG, st->cfa_reg = rd_uleb(in), st->cfa_off = (int64_t)rd_uleb(in); break;
    case 0x0d: st->cfa_reg = rd_uleb(in); break;
    case 0x0e: st->cfa_off = (int64_t)rd_uleb(in); break;
    case 0x0f: def_cfa_expression(r, in); break;
    case 0x10: reg = rd_uleb(in), skip_block(in), set_rule(st, reg, RULE_OTHER, 0); break;
    case 0x11: reg = rd_uleb(in), set_rule(st, reg, RULE_OFFSET, rd_sleb(in) * c->daf); break;
    case 0x12: st->cfa_kind = CFA_REG, st->cfa_reg = rd_uleb(in), st->cfa_off = rd_sleb(in) * c->daf; break;
    case 0x13: st->cfa_off = rd_sleb(in) * c->daf; break;
    case 0x14: reg = rd_uleb(in), rd_uleb(in), set_rule(st, reg, RULE_OTHER, 0); break;
    case 0x15: reg = rd_uleb(in), rd_sleb(in), set_rule(st, reg, RULE_OTHER, 0); break;
    case 0x16: reg = rd_uleb(in), skip_block(in), set_rule(st, reg, RULE_OTHER, 0); break;
    case 0x2e: rd_uleb(in); break; /* GNU_args_size */
    case 0x2f: reg = rd_uleb(in), set_rule(st, reg, RULE_OFFSET, -(int64_t)rd_uleb(in) * c->daf); break;
    default: in->bad = true;
    }
}

static void run_program(struct run *r, const uint8_t *p, const uint8_t *end)
{
    struct rd in = {p, end, false};
    const struct cie *c = &r->f->cie;
    while (in.p < in.end && !in.bad && !r->bad) {
        uint8_t op = (uint8_t)rd_fixed(&in, 1);
        switch (op >> 6) {
        case 1: advance_to(r, r->loc + (op & 0x3f) * c->caf); break;
        case 2: set_rule(&r->st, op & 0x3f, RULE_OFFSET, (int64_t)rd_uleb(&in) * c->daf); break;
        case 3: restore_rule(r, op & 0x3f); break;
        default: op_extended(r, &in, op);
        }
    }
    if (in.bad) /* from here on the rules are unknown */
        r->st.cfa_kind = CFA_OTHER;
}

static int rows_of_fde(const struct fde *f, struct cfi_rows *out)
{
    struct run r = {.f = f, .loc = f->start, .out = out};
    r.st.ra = f->cie.ra_reg == REG_RA ? RULE_SAME : RULE_OTHER;
    run_program(&r, f->cie.insns, f->cie.insns_end);
    r.init = r.st;
    r.nsaved = 0;
    run_program(&r, f->insns, f->insns_end);
    advance_to(&r, f->end);
    return r.bad ? -ENOMEM : 0;
}

/* ---- the file ---- */

static int fde_order(const void *a, const void *b)
{
    const struct fde *x = a, *y = b;
    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->prio - y->prio;
}

static int rows_of_fdes(struct fde_list *l, struct cfi_rows *out)
{
    qsort(l->v, l->n, sizeof(*l->v), fde_order);
    uint64_t covered = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct fde *f = &l->v[i];
        if (f->start < covered)
            continue;
        int r = rows_of_fde(f, out);
        if (r)
            return r;
        covered = f->end;
        bool joined = i + 1 < l->n && l->v[i + 1].start == f->end;
        struct bpfg_ustack_row gap = {.pc = (uint32_t)f->end, .cfa_rule = BPFG_USTACK_CFA_NONE};
        if (!joined && push_row(out, &gap))
            return -ENOMEM;
    }
    return 0;
}

static bool section_named(Elf *e, size_t shstrndx, const char *want, struct sec *s)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        const char *name;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type == SHT_NOBITS || !(name = elf_strptr(e, shstrndx, sh.sh_name)) ||
            strcmp(name, want))
            continue;
        if ((sh.sh_flags & SHF_COMPRESSED) && elf_compress(scn, 0, 0) < 0)
            return false;
        Elf_Data *d = elf_getdata(scn, NULL);
        if (!d || !d->d_buf)
            return false;
        *s = (struct sec){d->d_buf, d->d_size, sh.sh_addr, strcmp(want, ".eh_frame") == 0};
        return true;
    }
    return false;
}

/* The FDEs of .eh_frame, then .debug_frame; dbg must outlive l. */
static int collect_elf_fdes(Elf *e, size_t shstrndx, struct sec *eh, struct sec *dbg, struct fde_list *l)
{
    bool have_eh = section_named(e, shstrndx, ".eh_frame", eh),
         have_dbg = section_named(e, shstrndx, ".debug_frame", dbg);
    int r = have_eh ? collect_fdes(eh, 0, l) : 0;
    if (!r && have_dbg)
        r = collect_fdes(dbg, 1, l);
    return r;
}

int cfi_rows_from_elf(int fd, struct cfi_rows *out, char *err, size_t errlen)
{
    elf_version(EV_CURRENT);
    Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    size_t shstrndx;
    if (!e || elf_kind(e) != ELF_K_ELF || gelf_getclass(e) != ELFCLASS64 || elf_getshdrstrndx(e, &shstrndx)) {
        snprintf(err, errlen, "not a 64-bit ELF file: %s", elf_errmsg(-1));
        if (e)
            elf_end(e);
        return -EINVAL;
    }
    struct sec eh, dbg;
    struct fde_list l = {0};
    int r = collect_elf_fdes(e, shstrndx, &eh, &dbg, &l);
    size_t first = out->n;
    if (!r)
        r = rows_of_fdes(&l, out);
    if (r)
        out->n = first;
    free(l.v);
    elf_end(e);
    if (r)
        snprintf(err, errlen, "out of memory");
    return r;
}

/* ---- function extents ---- */

/* The FDEs of e's .eh_frame: what the loaded code is described by; eh
 * must outlive l (its FDEs point at it). */
static int eh_frame_fdes(Elf *e, struct sec *eh, struct fde_list *l)
{
    size_t shstrndx;
    if (elf_getshdrstrndx(e, &shstrndx) || !section_named(e, shstrndx, ".eh_frame", eh))
        return -ENOENT;
    return collect_fdes(eh, 0, l);
}

/* Whether f is a better answer than *best for the query: the FDE holding
 * vaddr, the one ending last at or before it, the first starting at or
 * after it. FDEs at 0 describe code the linker dropped. */
static bool fde_better(const struct fde *f, const struct fde *best, uint64_t vaddr, enum cfi_fde_query q)
{
    if (!f->start)
        return false;
    switch (q) {
    case CFI_FDE_AT: return vaddr >= f->start && vaddr < f->end;
    case CFI_FDE_BEFORE: return f->end <= vaddr && (!best || f->end > best->end);
    case CFI_FDE_NEXT: return f->start >= vaddr && (!best || f->start < best->start);
    }
    return false;
}

int cfi_fde_extent(Elf *e, uint64_t vaddr, enum cfi_fde_query q, uint64_t *lo, uint64_t *hi)
{
    struct sec eh;
    struct fde_list l = {0};
    int r = eh_frame_fdes(e, &eh, &l);
    const struct fde *best = NULL;
    for (size_t i = 0; !r && i < l.n; i++)
        if (fde_better(&l.v[i], best, vaddr, q))
            best = &l.v[i];
    if (!r && !best)
        r = -ENOENT;
    if (!r)
        *lo = best->start, *hi = best->end;
    free(l.v);
    return r;
}

void cfi_rows_free(struct cfi_rows *r)
{
    free(r->rows);
    *r = (struct cfi_rows){0};
}
