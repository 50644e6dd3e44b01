/* Whole-binary branch analysis: where control can enter a mapped file's
 * code other than by falling through (hookgen.h, bpfg_branch_index). One
 * linear sweep over each executable range with the Zydis decoder; jump
 * tables are read from the same image. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <Zydis/Zydis.h>

#include "hookgen.h"

#define TABLE_MAX 4096 /* entries read per jump table */

struct vec {
    uint64_t *v;
    size_t n, cap;
};

static int push(struct vec *x, uint64_t a)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 1024;
        uint64_t *v = realloc(x->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        x->v = v, x->cap = cap;
    }
    x->v[x->n++] = a;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void sort_unique(struct vec *x)
{
    if (!x->n)
        return;
    qsort(x->v, x->n, sizeof(uint64_t), cmp_u64);
    size_t k = 1;
    for (size_t i = 1; i < x->n; i++)
        if (x->v[i] != x->v[k - 1])
            x->v[k++] = x->v[i];
    x->n = k;
}

struct scan {
    const struct bpfg_text_image *img;
    struct vec targets, unknown, tables;
    struct vec leas; /* pairs: lea address, table address (not in code) */
};

static bool in_exec(const struct bpfg_text_image *img, uint64_t a)
{
    for (size_t i = 0; i < img->nexec; i++)
        if (a >= img->exec[i].lo && a < img->exec[i].hi)
            return true;
    return false;
}

static bool in_image(const struct bpfg_text_image *img, uint64_t a, size_t len)
{
    return a >= img->base && a - img->base <= img->len && img->len - (a - img->base) >= len;
}

/* Entries of a table at `table`: width 4 (offsets from the table) or 8
 * (absolute addresses), read while they point into code. Returns how many. */
static int read_table(struct scan *sc, uint64_t table, int width, size_t *found)
{
    const struct bpfg_text_image *img = sc->img;
    *found = 0;
    for (size_t k = 0; k < TABLE_MAX && in_image(img, table + k * width, width); k++) {
        const uint8_t *p = img->bytes + (table + k * width - img->base);
        uint64_t target;
        if (width == 4) {
            int32_t e;
            memcpy(&e, p, 4);
            target = table + (uint64_t)(int64_t)e;
        } else {
            memcpy(&target, p, 8);
        }
        if (!in_exec(img, target))
            break;
        if (push(&sc->targets, target))
            return -ENOMEM;
        (*found)++;
    }
    return 0;
}

/* An indirect jmp: through a RIP-relative slot (a GOT entry: a tail call
 * to a function's entry), an absolute table, or unknown. */
static int indirect_jmp(struct scan *sc, const ZydisDecodedInstruction *in, const ZydisDecodedOperand *op, uint64_t at)
{
    if (op->type == ZYDIS_OPERAND_TYPE_MEMORY) {
        if (op->mem.base == ZYDIS_REGISTER_RIP)
            return 0;
        if (op->mem.base == ZYDIS_REGISTER_NONE && op->mem.index != ZYDIS_REGISTER_NONE && op->mem.scale == 8 &&
            op->mem.disp.has_displacement) {
            size_t found;
            int r = read_table(sc, (uint64_t)op->mem.disp.value, 8, &found);
            if (r || found)
                return r;
        }
        if (op->mem.index == ZYDIS_REGISTER_NONE && op->mem.base != ZYDIS_REGISTER_NONE)
            return 0; /* through a pointer in memory: a function's entry */
    }
    (void)in;
    return push(&sc->unknown, at);
}

/* A RIP-relative address: code (computed goto), or maybe a jump table. */
static int rip_address(struct scan *sc, const ZydisDecodedInstruction *in, uint64_t at)
{
    uint64_t a = at + in->length + (uint64_t)in->raw.disp.value;
    if (in_exec(sc->img, a))
        return push(&sc->targets, a);
    if (in->mnemonic != ZYDIS_MNEMONIC_LEA || !in_image(sc->img, a, 4))
        return 0;
    int r = push(&sc->leas, at);
    return r ? r : push(&sc->leas, a);
}

static int one_insn(struct scan *sc, const ZydisDecodedInstruction *in, const ZydisDecodedOperand *ops, uint64_t at)
{
    bool branch = in->meta.category == ZYDIS_CATEGORY_UNCOND_BR || in->meta.category == ZYDIS_CATEGORY_COND_BR ||
                  in->meta.category == ZYDIS_CATEGORY_CALL;
    for (unsigned i = 0; i < in->operand_count_visible; i++) {
        const ZydisDecodedOperand *op = &ops[i];
        if (op->type == ZYDIS_OPERAND_TYPE_IMMEDIATE && op->imm.is_relative)
            return push(&sc->targets, at + in->length + (uint64_t)op->imm.value.s);
        if (branch && in->meta.category == ZYDIS_CATEGORY_UNCOND_BR)
            return indirect_jmp(sc, in, op, at);
        if (op->type == ZYDIS_OPERAND_TYPE_MEMORY && op->mem.base == ZYDIS_REGISTER_RIP)
            return rip_address(sc, in, at);
    }
    return 0;
}

static int sweep(struct scan *sc, const struct bpfg_text_range *rg, const ZydisDecoder *dec)
{
    const struct bpfg_text_image *img = sc->img;
    ZydisDecodedInstruction in;
    ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
    for (uint64_t at = rg->lo; at < rg->hi;) {
        const uint8_t *p = img->bytes + (at - img->base);
        size_t left = (size_t)(rg->hi - at);
        if (!ZYAN_SUCCESS(ZydisDecoderDecodeFull(dec, p, left, &in, ops))) {
            int r = push(&sc->unknown, at);
            if (r)
                return r;
            at++;
            continue;
        }
        int r = one_insn(sc, &in, ops, at);
        if (r)
            return r;
        at += in.length;
    }
    return 0;
}

/* The tables the leas name: their entries are targets, their leas
 * explain a function's indirect jmps. */
static int lea_tables(struct scan *sc)
{
    for (size_t i = 0; i + 1 < sc->leas.n; i += 2) {
        size_t found;
        int r = read_table(sc, sc->leas.v[i + 1], 4, &found);
        if (!r && found)
            r = push(&sc->tables, sc->leas.v[i]);
        if (r)
            return r;
    }
    return 0;
}

int bpfg_branch_index_build(const struct bpfg_text_image *img, struct bpfg_branch_index *ix)
{
    ZydisDecoder dec;
    struct scan sc = {.img = img};
    memset(ix, 0, sizeof(*ix));
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
        return -EINVAL;
    int r = 0;
    for (size_t i = 0; i < img->nexec && !r; i++)
        if (in_image(img, img->exec[i].lo, (size_t)(img->exec[i].hi - img->exec[i].lo)))
            r = sweep(&sc, &img->exec[i], &dec);
    if (!r)
        r = lea_tables(&sc);
    free(sc.leas.v);
    if (r) {
        free(sc.targets.v), free(sc.unknown.v), free(sc.tables.v);
        return r;
    }
    sort_unique(&sc.targets), sort_unique(&sc.unknown), sort_unique(&sc.tables);
    *ix = (struct bpfg_branch_index){sc.targets.v, sc.targets.n, sc.unknown.v, sc.unknown.n, sc.tables.v, sc.tables.n};
    return 0;
}

void bpfg_branch_index_free(struct bpfg_branch_index *ix)
{
    free(ix->targets), free(ix->unknown), free(ix->tables);
    memset(ix, 0, sizeof(*ix));
}

/* The first element of v[n] >= a, or NULL. */
static const uint64_t *lower_bound(const uint64_t *v, size_t n, uint64_t a)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < a)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n ? &v[lo] : NULL;
}

static bool any_in(const uint64_t *v, size_t n, uint64_t lo, uint64_t hi, uint64_t *at)
{
    const uint64_t *p = lower_bound(v, n, lo);
    if (!p || *p >= hi)
        return false;
    *at = *p;
    return true;
}

bool bpfg_bytes_unentered(const struct bpfg_branch_index *ix, uint64_t site, size_t len, uint64_t lo, uint64_t hi,
                          char *why, size_t whylen)
{
    uint64_t at;
    if (any_in(ix->targets, ix->ntargets, site + 1, site + len, &at)) {
        snprintf(why, whylen, "code branches to 0x%llx, inside the bytes a jmp would replace", (unsigned long long)at);
        return false;
    }
    if (site < lo || site + len > hi) {
        snprintf(why, whylen, "the bytes a jmp would replace run past the function's end");
        return false;
    }
    if (any_in(ix->unknown, ix->nunknown, lo, hi, &at) && !any_in(ix->tables, ix->ntables, lo, hi, &at)) {
        snprintf(why, whylen, "the function has an indirect jump or bytes whose targets are unknown (0x%llx)",
                 (unsigned long long)at);
        return false;
    }
    return true;
}

bool bpfg_jmp_provably_safe(const struct bpfg_branch_index *ix, const struct bpfg_hook_plan *plan, uint64_t lo,
                            uint64_t hi, char *why, size_t whylen)
{
    return bpfg_bytes_unentered(ix, plan->site, plan->patch_len, lo, hi, why, whylen);
}

/* Decodes [from, to) of code (which starts at base) one instruction at a
 * time; returns the end reached (== to when exact) and the last one. */
static uint64_t decode_run(const ZydisDecoder *dec, const uint8_t *code, uint64_t base, uint64_t from, uint64_t to,
                           bool nops_only, ZydisDecodedInstruction *last)
{
    uint64_t at = from;
    while (at < to) {
        ZydisDecodedInstruction in;
        if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(dec, NULL, code + (at - base), (size_t)(to - at), &in)))
            return at;
        if (nops_only && in.mnemonic != ZYDIS_MNEMONIC_NOP && in.mnemonic != ZYDIS_MNEMONIC_INT3)
            return at;
        *last = in;
        at += in.length;
    }
    return at;
}

/* Whether execution never goes on after this instruction. */
static bool ends_flow(const ZydisDecodedInstruction *in)
{
    return in->meta.category == ZYDIS_CATEGORY_RET || in->meta.category == ZYDIS_CATEGORY_UNCOND_BR ||
           in->mnemonic == ZYDIS_MNEMONIC_INT3 || in->mnemonic == ZYDIS_MNEMONIC_UD2 ||
           in->mnemonic == ZYDIS_MNEMONIC_HLT;
}

bool bpfg_padding_unreachable(const struct bpfg_branch_index *ix, const uint8_t *code, uint64_t lo, uint64_t hi,
                              uint64_t next, char *why, size_t whylen)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction last = {0};
    uint64_t at;
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)) || hi <= lo ||
        next <= hi) {
        snprintf(why, whylen, "no padding after the function");
        return false;
    }
    if (decode_run(&dec, code, lo, lo, hi, false, &last) != hi || !ends_flow(&last)) {
        snprintf(why, whylen, "the function's last instruction does not end at 0x%llx with a return or jmp",
                 (unsigned long long)hi);
        return false;
    }
    if ((at = decode_run(&dec, code, lo, hi, next, true, &last)) != next) {
        snprintf(why, whylen, "0x%llx, after the function, is not padding", (unsigned long long)at);
        return false;
    }
    if (any_in(ix->targets, ix->ntargets, hi, next, &at) || any_in(ix->unknown, ix->nunknown, hi, next, &at)) {
        snprintf(why, whylen, "code branches to 0x%llx, in the padding after the function", (unsigned long long)at);
        return false;
    }
    return true;
}

static bool is_padding(const ZydisDecodedInstruction *in)
{
    return in->mnemonic == ZYDIS_MNEMONIC_NOP || in->mnemonic == ZYDIS_MNEMONIC_INT3;
}

/* Adds [a, b) cut at the first address control enters, if still long enough. */
static size_t add_run(const struct bpfg_branch_index *ix, uint64_t a, uint64_t b, struct bpfg_text_range *out, size_t n,
                      size_t max)
{
    uint64_t at;
    if (any_in(ix->targets, ix->ntargets, a, b, &at))
        b = at;
    if (n < max && b >= a + BPFG_HOP_SLOT_LEN)
        out[n++] = (struct bpfg_text_range){a, b};
    return n;
}

size_t bpfg_dead_runs(const struct bpfg_branch_index *ix, const uint8_t *code, uint64_t lo, uint64_t hi,
                      struct bpfg_text_range *out, size_t max)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction in;
    uint64_t at;
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)) ||
        (any_in(ix->unknown, ix->nunknown, lo, hi, &at) && !any_in(ix->tables, ix->ntables, lo, hi, &at)))
        return 0;
    size_t n = 0;
    bool ended = false; /* the last instruction does not fall through */
    uint64_t run = 0;   /* start of the current dead run, or 0 */
    for (at = lo; at < hi; at += in.length) {
        if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, NULL, code + (at - lo), (size_t)(hi - at), &in)))
            return 0;
        if (run && !is_padding(&in))
            n = add_run(ix, run, at, out, n, max), run = 0;
        if (!run && ended && is_padding(&in))
            run = at;
        ended = ends_flow(&in);
    }
    return run ? add_run(ix, run, hi, out, n, max) : n;
}

bool bpfg_insn_boundary(const uint8_t *code, size_t len, uint64_t lo, uint64_t addr)
{
    ZydisDecoder dec;
    ZydisDecodedInstruction in;
    if (!ZYAN_SUCCESS(ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)))
        return false;
    uint64_t at = lo;
    while (at < addr && at - lo < len) {
        if (!ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(&dec, NULL, code + (at - lo), len - (at - lo), &in)))
            return false;
        at += in.length;
    }
    return at == addr;
}
