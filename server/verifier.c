/* The bpfgraft verifier (see verifier.h).
 *
 * Layout: tnum (known bits) and scalar bounds; register and state
 * helpers; the static pass (opcodes, jumps, subprograms, reachability);
 * memory access checks; ALU; helper prototypes and calls; conditional
 * jumps; state pruning; the main exploration loop; the kernel cross-check.
 */
#define _GNU_SOURCE
#include "verifier.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <bpf/btf.h>

#include "asm.h"
#include "ebpf.h"
#include "objload.h"

#define COMPLEXITY_LIMIT 1000000 /* processed instructions, like the kernel */
#define MAX_PENDING 8192         /* branches waiting to be explored */
#define MAX_STATES_PER_INSN 64   /* stored states per prune point */
#define MAX_REFS 16              /* live ring buffer records per path */
#define MAX_VAR_OFF (1 << 29)    /* BPF_MAX_VAR_OFF */
#define STACK_SLOTS (EBPF_STACK_SIZE / 8)

#define U32_MAX 0xffffffffULL
#define S64_MIN INT64_MIN
#define S64_MAX INT64_MAX

/* ---------------------------------------------------------------- tnum */

struct tnum {
    uint64_t value, mask; /* mask bits unknown, value bits known */
};

static struct tnum tn(uint64_t v, uint64_t m)
{
    return (struct tnum){v, m};
}
static struct tnum tnum_const(uint64_t v)
{
    return tn(v, 0);
}
static const struct tnum tnum_unknown = {0, ~0ULL};
static bool tnum_is_const(struct tnum a)
{
    return !a.mask;
}

static struct tnum tnum_range(uint64_t min, uint64_t max)
{
    uint64_t chi = min ^ max;
    if (!chi)
        return tnum_const(min);
    int bits = 64 - __builtin_clzll(chi);
    if (bits > 63)
        return tnum_unknown;
    uint64_t delta = (1ULL << bits) - 1;
    return tn(min & ~delta, delta);
}

static struct tnum tnum_add(struct tnum a, struct tnum b)
{
    uint64_t sm = a.mask + b.mask, sv = a.value + b.value;
    uint64_t chi = (sm + sv) ^ sv;
    uint64_t mu = chi | a.mask | b.mask;
    return tn(sv & ~mu, mu);
}

static struct tnum tnum_sub(struct tnum a, struct tnum b)
{
    uint64_t dv = a.value - b.value;
    uint64_t chi = (dv + a.mask) ^ (dv - b.mask);
    uint64_t mu = chi | a.mask | b.mask;
    return tn(dv & ~mu, mu);
}

static struct tnum tnum_and(struct tnum a, struct tnum b)
{
    uint64_t v = a.value & b.value;
    return tn(v, (a.value | a.mask) & (b.value | b.mask) & ~v);
}

static struct tnum tnum_or(struct tnum a, struct tnum b)
{
    uint64_t v = a.value | b.value;
    return tn(v, (a.mask | b.mask) & ~v);
}

static struct tnum tnum_xor(struct tnum a, struct tnum b)
{
    uint64_t mu = a.mask | b.mask;
    return tn((a.value ^ b.value) & ~mu, mu);
}

static struct tnum tnum_lsh(struct tnum a, unsigned s)
{
    return tn(a.value << s, a.mask << s);
}
static struct tnum tnum_rsh(struct tnum a, unsigned s)
{
    return tn(a.value >> s, a.mask >> s);
}
static struct tnum tnum_arsh(struct tnum a, unsigned s)
{
    return tn((uint64_t)((int64_t)a.value >> s), (uint64_t)((int64_t)a.mask >> s));
}

static struct tnum tnum_mul(struct tnum a, struct tnum b)
{
    uint64_t acc_v = a.value * b.value;
    struct tnum acc_m = tnum_const(0);
    while (a.value || a.mask) {
        if (a.value & 1)
            acc_m = tnum_add(acc_m, tn(0, b.mask));
        else if (a.mask & 1)
            acc_m = tnum_add(acc_m, tn(0, b.value | b.mask));
        a = tnum_rsh(a, 1);
        b = tnum_lsh(b, 1);
    }
    return tnum_add(tnum_const(acc_v), acc_m);
}

static struct tnum tnum_intersect(struct tnum a, struct tnum b)
{
    uint64_t v = a.value | b.value, mu = a.mask & b.mask;
    return tn(v & ~mu, mu);
}

static struct tnum tnum_cast32(struct tnum a)
{
    return tn(a.value & U32_MAX, a.mask & U32_MAX);
}

/* b is a subset of a */
static bool tnum_in(struct tnum a, struct tnum b)
{
    if (b.mask & ~a.mask)
        return false;
    return (b.value & ~a.mask) == a.value;
}

/* ------------------------------------------------------------ registers */

enum rtype {
    NOT_INIT,
    SCALAR,
    PTR_CTX,
    PTR_STACK,
    CONST_MAP,
    PTR_MAP_VALUE,
    PTR_MAP_VALUE_OR_NULL,
    PTR_MEM, /* ring buffer record */
    PTR_MEM_OR_NULL,
    CONST_MAP_OR_NULL, /* map-in-map lookup: the inner map, or NULL */
    PTR_FUNC,          /* lddw BPF_PSEUDO_FUNC: a callback; off = its first insn */
    PTR_MAP_KEY,       /* bpf_for_each_map_elem's key: read-only, key_size of map */
};

static const char *const rtype_names[] = {
    [NOT_INIT] = "?",
    [SCALAR] = "scalar",
    [PTR_CTX] = "ctx",
    [PTR_STACK] = "fp",
    [CONST_MAP] = "map_ptr",
    [PTR_MAP_VALUE] = "map_value",
    [PTR_MAP_VALUE_OR_NULL] = "map_value_or_null",
    [PTR_MEM] = "ringbuf_mem",
    [PTR_MEM_OR_NULL] = "ringbuf_mem_or_null",
    [CONST_MAP_OR_NULL] = "map_ptr_or_null",
    [PTR_FUNC] = "func",
    [PTR_MAP_KEY] = "map_key",
};

struct reg {
    uint8_t type;
    uint8_t frameno;   /* PTR_STACK: the frame it points into */
    int32_t off;       /* pointers: fixed offset */
    uint32_t map;      /* CONST_MAP, PTR_MAP_VALUE*: map index */
    uint32_t mem_size; /* PTR_MEM*: record size */
    uint32_t id;       /* OR_NULL: registers sharing a NULL check */
    uint32_t ref;      /* PTR_MEM*: the acquired reference */
    struct tnum var;   /* scalars: value; pointers: variable offset */
    uint64_t umin, umax;
    int64_t smin, smax;
};

static bool is_ptr(const struct reg *r)
{
    return r->type > SCALAR;
}
static bool is_or_null(const struct reg *r)
{
    return r->type == PTR_MAP_VALUE_OR_NULL || r->type == PTR_MEM_OR_NULL || r->type == CONST_MAP_OR_NULL;
}

static void set_bounds_unknown(struct reg *r)
{
    r->var = tnum_unknown;
    r->umin = 0;
    r->umax = UINT64_MAX;
    r->smin = S64_MIN;
    r->smax = S64_MAX;
}

static void mark_unknown(struct reg *r)
{
    memset(r, 0, sizeof(*r));
    r->type = SCALAR;
    set_bounds_unknown(r);
}

static void set_bounds_const(struct reg *r, uint64_t v)
{
    r->var = tnum_const(v);
    r->umin = r->umax = v;
    r->smin = r->smax = (int64_t)v;
}

static void mark_const(struct reg *r, uint64_t v)
{
    memset(r, 0, sizeof(*r));
    r->type = SCALAR;
    set_bounds_const(r, v);
}

static void mark_ptr(struct reg *r, enum rtype t)
{
    memset(r, 0, sizeof(*r));
    r->type = (uint8_t)t;
    set_bounds_const(r, 0);
}

static bool reg_is_const(const struct reg *r)
{
    return r->type == SCALAR && tnum_is_const(r->var);
}

/* Kernel-style bound synchronisation: tnum -> bounds, signed <-> unsigned,
 * bounds -> tnum. */
static void sync_bounds(struct reg *r)
{
    struct tnum v = r->var;
    int64_t tsmin = (int64_t)(v.value | (v.mask & (1ULL << 63)));
    int64_t tsmax = (int64_t)(v.value | (v.mask & (uint64_t)S64_MAX));
    if (tsmin > r->smin)
        r->smin = tsmin;
    if (tsmax < r->smax)
        r->smax = tsmax;
    if (v.value > r->umin)
        r->umin = v.value;
    if ((v.value | v.mask) < r->umax)
        r->umax = v.value | v.mask;

    if (r->smin >= 0 || r->smax < 0) {
        uint64_t lo = (uint64_t)r->smin > r->umin ? (uint64_t)r->smin : r->umin;
        uint64_t hi = (uint64_t)r->smax < r->umax ? (uint64_t)r->smax : r->umax;
        r->umin = lo;
        r->smin = (int64_t)lo;
        r->umax = hi;
        r->smax = (int64_t)hi;
    } else if ((int64_t)r->umax >= 0) {
        r->smin = (int64_t)r->umin;
        uint64_t hi = (uint64_t)r->smax < r->umax ? (uint64_t)r->smax : r->umax;
        r->umax = hi;
        r->smax = (int64_t)hi;
    } else if ((int64_t)r->umin < 0) {
        uint64_t lo = (uint64_t)r->smin > r->umin ? (uint64_t)r->smin : r->umin;
        r->umin = lo;
        r->smin = (int64_t)lo;
        r->smax = (int64_t)r->umax;
    }
    if (r->umin <= r->umax)
        r->var = tnum_intersect(r->var, tnum_range(r->umin, r->umax));
    v = r->var;
    if (v.value > r->umin)
        r->umin = v.value;
    if ((v.value | v.mask) < r->umax)
        r->umax = v.value | v.mask;
}

static bool bounds_sane(const struct reg *r)
{
    return r->umin <= r->umax && r->smin <= r->smax && !(r->var.value & r->var.mask) && r->var.value <= r->umax &&
           (r->var.value | r->var.mask) >= r->umin;
}

/* Scalar truncated to its low 32 bits (zero-extended). */
static void trunc32(struct reg *r)
{
    if (r->umax <= U32_MAX && r->umin <= r->umax) {
        r->smin = (int64_t)r->umin;
        r->smax = (int64_t)r->umax;
        r->var = tnum_cast32(r->var);
        sync_bounds(r);
        return;
    }
    uint64_t lo = 0, hi = U32_MAX;
    if (r->umin <= r->umax && (r->umin >> 32) == (r->umax >> 32)) {
        lo = r->umin & U32_MAX;
        hi = r->umax & U32_MAX;
    }
    r->var = tnum_cast32(r->var);
    r->umin = lo;
    r->umax = hi;
    r->smin = (int64_t)lo;
    r->smax = (int64_t)hi;
    sync_bounds(r);
}

/* --------------------------------------------------------------- state */

struct frame {
    struct reg regs[EBPF_NREGS];
    uint8_t stype[EBPF_STACK_SIZE]; /* byte at fp-512+i */
    struct reg spill[STACK_SLOTS];  /* valid where stype says SPILL */
    int callsite;                   /* insn of the call, -1 in the main program */
    int subprog;
    int callback;     /* helper id when this frame is a callback the helper runs, else 0 */
    int cb_ctx_frame; /* callback: the frame its ctx points into, -1 if none */
};

enum { STK_INVALID, STK_MISC, STK_ZERO, STK_SPILL };

struct checkpoint;

struct state {
    struct frame *fr[EBPF_MAX_CALL_DEPTH];
    int nframes;
    uint32_t refs[MAX_REFS]; /* live ring buffer records (reference ids) */
    int ref_insn[MAX_REFS];
    int nrefs;
    struct checkpoint *parent; /* nearest stored state on this path */
    int insn;                  /* pending states: where to resume */
    /* the bpf_spin_lock held (at most one): map index + 1 (0 = none), and
     * the id of the map value pointer it was taken through */
    uint32_t lock_map, lock_id;
};

struct checkpoint {
    struct state st;
    uint32_t branches;       /* live paths still below this state */
    struct checkpoint *next; /* same instruction */
};

struct subprog {
    int start, end; /* [start, end) */
    int depth;      /* deepest stack byte used */
};

struct vctx {
    const struct bpf_insn *insns;
    int n;
    const struct bpfg_verify_env *env;
    struct bpfg_verify_result *res;
    uint32_t ctx_size;
    bool *prune;     /* per insn */
    int *subprog_of; /* per insn */
    struct subprog *subs;
    int nsubs;
    struct checkpoint **explored; /* per insn */
    int *nexplored;
    struct state **pending;
    int npending, cap_pending;
    struct state *cur;
    int insn; /* being checked */
    uint32_t next_id;
    uint64_t processed;
};

static struct frame *frame_new(void)
{
    return calloc(1, sizeof(struct frame));
}

static void state_free(struct state *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->nframes; i++)
        free(s->fr[i]);
    free(s);
}

static void state_release_frames(struct state *s)
{
    for (int i = 0; i < s->nframes; i++)
        free(s->fr[i]);
    s->nframes = 0;
}

static int state_copy(struct state *dst, const struct state *src)
{
    struct state tmp = *src;
    for (int i = 0; i < src->nframes; i++) {
        tmp.fr[i] = malloc(sizeof(struct frame));
        if (!tmp.fr[i]) {
            for (int k = 0; k < i; k++)
                free(tmp.fr[k]);
            return -ENOMEM;
        }
        memcpy(tmp.fr[i], src->fr[i], sizeof(struct frame));
    }
    *dst = tmp;
    return 0;
}

static struct state *state_dup(const struct state *src)
{
    struct state *s = malloc(sizeof(*s));
    if (!s)
        return NULL;
    if (state_copy(s, src)) {
        free(s);
        return NULL;
    }
    return s;
}

static struct frame *curf(struct vctx *v)
{
    return v->cur->fr[v->cur->nframes - 1];
}
static struct reg *R(struct vctx *v, int regno)
{
    return &curf(v)->regs[regno];
}

/* -------------------------------------------------------------- errors */

static void fmt_reg(char *buf, size_t len, const struct reg *r)
{
    switch (r->type) {
    case SCALAR:
        if (tnum_is_const(r->var))
            snprintf(buf, len, "%" PRId64, (int64_t)r->var.value);
        else if (r->umin == 0 && r->umax == UINT64_MAX && r->smin == S64_MIN && r->smax == S64_MAX)
            snprintf(buf, len, "scalar()");
        else
            snprintf(buf, len, "scalar(smin=%" PRId64 ",smax=%" PRId64 ",umin=%" PRIu64 ",umax=%" PRIu64 ")", r->smin,
                     r->smax, r->umin, r->umax);
        return;
    case PTR_STACK: snprintf(buf, len, "fp%d", r->off); return;
    case CONST_MAP: snprintf(buf, len, "map_ptr(map=%u)", r->map); return;
    case CONST_MAP_OR_NULL: snprintf(buf, len, "map_ptr_or_null(map=%u,id=%u)", r->map, r->id); return;
    default: break;
    }
    int k = snprintf(buf, len, "%s(", rtype_names[r->type]);
    if (k < 0 || (size_t)k >= len)
        return;
    buf += k;
    len -= (size_t)k;
    if (r->type == PTR_MAP_VALUE || r->type == PTR_MAP_VALUE_OR_NULL)
        k = snprintf(buf, len, "map=%u,", r->map);
    else if (r->type == PTR_MEM || r->type == PTR_MEM_OR_NULL)
        k = snprintf(buf, len, "ref=%u,size=%u,", r->ref, r->mem_size);
    else
        k = 0;
    if (k < 0 || (size_t)k >= len)
        return;
    buf += k;
    len -= (size_t)k;
    if (r->id)
        k = snprintf(buf, len, "id=%u,", r->id);
    else
        k = 0;
    if (k < 0 || (size_t)k >= len)
        return;
    buf += k;
    len -= (size_t)k;
    if (tnum_is_const(r->var))
        snprintf(buf, len, "off=%d)", r->off + (int32_t)r->var.value);
    else
        snprintf(buf, len, "off=%d,var=[%" PRId64 ",%" PRIu64 "])", r->off, r->smin, r->umax);
}

static void fmt_state(struct vctx *v, char *buf, size_t len)
{
    size_t pos = 0;
    buf[0] = 0;
    if (!v->cur || !v->cur->nframes)
        return;
    struct frame *f = curf(v);
    if (v->cur->nframes > 1)
        pos += (size_t)snprintf(buf, len, "frame%d: ", v->cur->nframes - 1);
    for (int i = 0; i < EBPF_NREGS && pos < len; i++) {
        if (f->regs[i].type == NOT_INIT)
            continue;
        char rb[160];
        fmt_reg(rb, sizeof(rb), &f->regs[i]);
        int k = snprintf(buf + pos, len - pos, "%sR%d=%s", pos ? " " : "", i, rb);
        if (k < 0)
            return;
        pos += (size_t)k;
    }
    /* stack slots in use, newest frame: fp-8=mmmmmmmm / fp-16=<spilled reg> */
    for (int s = STACK_SLOTS - 1; s >= 0 && pos < len; s--) {
        const uint8_t *t = &f->stype[s * 8];
        bool any = false;
        for (int b = 0; b < 8; b++)
            any |= t[b] != STK_INVALID;
        if (!any)
            continue;
        int off = -(EBPF_STACK_SIZE - s * 8);
        char sb[160];
        if (t[0] == STK_SPILL && t[7] == STK_SPILL) {
            fmt_reg(sb, sizeof(sb), &f->spill[s]);
        } else {
            static const char ch[] = {'?', 'm', '0', 's'};
            for (int b = 0; b < 8; b++)
                sb[b] = ch[t[7 - b]];
            sb[8] = 0;
        }
        int k = snprintf(buf + pos, len - pos, " fp%d=%s", off, sb);
        if (k < 0)
            return;
        pos += (size_t)k;
    }
}

/* Rejects at the current instruction: "insn N: <disasm>: <reason> (state)". */
static int reject(struct vctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int reject(struct vctx *v, const char *fmt, ...)
{
    char reason[512], dis[96], st[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (v->insn < 0) {
        snprintf(v->res->msg, sizeof(v->res->msg), "%s", reason);
        return -EINVAL;
    }
    if (bpfg_disasm_insn(v->insns, (size_t)v->n, (size_t)v->insn, dis, sizeof(dis)) < 0)
        snprintf(dis, sizeof(dis), "(%02x)", v->insns[v->insn].code);
    fmt_state(v, st, sizeof(st));
    snprintf(v->res->msg, sizeof(v->res->msg), "insn %d: %s: %s%s%s%s", v->insn, dis, reason, st[0] ? " [" : "", st,
             st[0] ? "]" : "");
    return -EINVAL;
}

/* -------------------------------------------------------- static checks */

static bool is_ldimm64(const struct bpf_insn *i)
{
    return i->code == (BPF_LD | BPF_IMM | BPF_DW);
}
static bool is_pseudo_call(const struct bpf_insn *i)
{
    return i->code == (BPF_JMP | BPF_CALL) && i->src_reg == BPF_PSEUDO_CALL;
}

/* Opcode and reserved-field validity. */
static bool is_pseudo_func(const struct bpf_insn *i)
{
    return is_ldimm64(i) && i->src_reg == BPF_PSEUDO_FUNC;
}

/* Calls and callback references both enter a subprogram: its first insn,
 * or -1 when insn i is neither. */
static int subprog_entry(const struct bpf_insn *insns, int i)
{
    if (is_pseudo_call(&insns[i]) || is_pseudo_func(&insns[i]))
        return i + insns[i].imm + 1;
    return -1;
}

static int check_opcode(struct vctx *v, int i)
{
    const struct bpf_insn *in = &v->insns[i];
    uint8_t cls = ebpf_class(in->code), op = in->code & 0xf0, src = in->code & 0x08;
    if (in->dst_reg >= EBPF_NREGS || in->src_reg >= EBPF_NREGS)
        return reject(v, "R%d is invalid", in->dst_reg >= EBPF_NREGS ? in->dst_reg : in->src_reg);
    switch (cls) {
    case BPF_ALU:
    case BPF_ALU64:
        if (op == BPF_END) {
            if (in->imm != 16 && in->imm != 32 && in->imm != 64)
                return reject(v, "invalid BPF_END imm %d", in->imm);
            if (cls == BPF_ALU64 && src)
                return reject(v, "unknown opcode %02x", in->code);
            return 0;
        }
        if (op > BPF_ARSH)
            return reject(v, "unknown opcode %02x", in->code);
        if (op == BPF_NEG && (src || in->src_reg || in->imm))
            return reject(v, "BPF_NEG uses reserved fields");
        if ((op == BPF_DIV || op == BPF_MOD) && in->off > 1)
            return reject(v, "BPF_ALU uses reserved fields");
        if (op == BPF_MOV && in->off &&
            !(src && (in->off == 8 || in->off == 16 || (in->off == 32 && cls == BPF_ALU64))))
            return reject(v, "BPF_MOV uses reserved fields");
        if (op != BPF_DIV && op != BPF_MOD && op != BPF_MOV && in->off)
            return reject(v, "BPF_ALU uses reserved fields");
        if (src && in->imm)
            return reject(v, "BPF_ALU uses reserved fields");
        if (!src && in->src_reg)
            return reject(v, "BPF_ALU uses reserved fields");
        return 0;
    case BPF_LDX:
        if ((in->code & 0xe0) != BPF_MEM && (in->code & 0xe0) != BPF_MEMSX)
            return reject(v, "unknown opcode %02x", in->code);
        if ((in->code & 0xe0) == BPF_MEMSX && (in->code & 0x18) == BPF_DW)
            return reject(v, "unknown opcode %02x", in->code);
        if (in->imm)
            return reject(v, "BPF_LDX uses reserved fields");
        return 0;
    case BPF_ST:
        if ((in->code & 0xe0) != BPF_MEM || in->src_reg)
            return reject(v, "BPF_ST uses reserved fields");
        return 0;
    case BPF_STX:
        if ((in->code & 0xe0) == BPF_MEM) {
            if (in->imm)
                return reject(v, "BPF_STX uses reserved fields");
            return 0;
        }
        if ((in->code & 0xe0) == BPF_ATOMIC) {
            uint8_t sz = in->code & 0x18;
            if (sz != BPF_W && sz != BPF_DW)
                return reject(v, "invalid atomic operand size");
            int32_t a = in->imm & ~BPF_FETCH;
            if (a != BPF_ADD && a != BPF_OR && a != BPF_AND && a != BPF_XOR && in->imm != BPF_XCHG &&
                in->imm != BPF_CMPXCHG)
                return reject(v, "BPF_ATOMIC uses invalid atomic opcode %02x", in->imm);
            return 0;
        }
        return reject(v, "unknown opcode %02x", in->code);
    case BPF_LD:
        if (is_ldimm64(in)) {
            if (i + 1 >= v->n || v->insns[i + 1].code || v->insns[i + 1].dst_reg || v->insns[i + 1].src_reg ||
                v->insns[i + 1].off)
                return reject(v, "invalid bpf_ld_imm64 insn");
            if (in->off)
                return reject(v, "invalid bpf_ld_imm64 insn");
            return 0;
        }
        return reject(v, "unknown opcode %02x (legacy packet loads are not supported)", in->code);
    case BPF_JMP:
    case BPF_JMP32:
        if (op == BPF_EXIT) {
            if (cls != BPF_JMP || src || in->imm || in->off || in->src_reg || in->dst_reg)
                return reject(v, "BPF_EXIT uses reserved fields");
            return 0;
        }
        if (op == BPF_CALL) {
            if (cls != BPF_JMP || src || in->off || in->dst_reg)
                return reject(v, "BPF_CALL uses reserved fields");
            if (in->src_reg == BPF_PSEUDO_KFUNC_CALL)
                return reject(v, "kernel function calls are not supported");
            if (in->src_reg != 0 && in->src_reg != BPF_PSEUDO_CALL)
                return reject(v, "BPF_CALL uses reserved fields");
            return 0;
        }
        if (op == BPF_JA) {
            if (src || in->src_reg || in->dst_reg || (cls == BPF_JMP && in->imm) || (cls == BPF_JMP32 && in->off))
                return reject(v, "BPF_JA uses reserved fields");
            return 0;
        }
        if (op == 0xe0 || op == 0xf0 || op == BPF_EXIT)
            return reject(v, "unknown opcode %02x", in->code);
        if (!src && in->src_reg)
            return reject(v, "BPF_JMP/JMP32 uses reserved fields");
        if (src && in->imm)
            return reject(v, "BPF_JMP/JMP32 uses reserved fields");
        return 0;
    }
    return reject(v, "unknown opcode %02x", in->code);
}

static bool is_cond_jmp(const struct bpf_insn *in)
{
    uint8_t cls = ebpf_class(in->code), op = in->code & 0xf0;
    return (cls == BPF_JMP || cls == BPF_JMP32) && op != BPF_JA && op != BPF_CALL && op != BPF_EXIT;
}

static int jump_target(const struct bpf_insn *in, int i)
{
    if (ebpf_class(in->code) == BPF_JMP32 && (in->code & 0xf0) == BPF_JA)
        return i + in->imm + 1;
    return i + in->off + 1;
}

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Opcodes, subprograms, jumps in range and inside their subprogram, no
 * falling off the end, no unreachable instruction, no recursion. */
static int check_static(struct vctx *v)
{
    int n = v->n;
    int *starts = malloc(sizeof(int) * (size_t)(n + 1));
    if (!starts)
        return -ENOMEM;
    int ns = 0;
    starts[ns++] = 0;
    bool *second = calloc((size_t)n, sizeof(bool)); /* second half of lddw */
    if (!second) {
        free(starts);
        return -ENOMEM;
    }
    int err = 0;
    for (int i = 0; i < n && !err; i++) {
        v->insn = i;
        if ((err = check_opcode(v, i)))
            break;
        int t = subprog_entry(v->insns, i);
        if (t != -1 && (t < 0 || t >= n)) {
            err = reject(v, "%s to invalid destination", is_pseudo_call(&v->insns[i]) ? "call" : "callback");
            break;
        }
        if (t != -1)
            starts[ns++] = t;
        if (is_ldimm64(&v->insns[i]))
            second[++i] = true;
    }
    if (!err) {
        qsort(starts, (size_t)ns, sizeof(int), cmp_int);
        int k = 0;
        for (int i = 0; i < ns; i++)
            if (!k || starts[k - 1] != starts[i])
                starts[k++] = starts[i];
        ns = k;
        v->subs = calloc((size_t)ns, sizeof(struct subprog));
        if (!v->subs)
            err = -ENOMEM;
        v->nsubs = ns;
    }
    for (int s = 0; s < ns && !err; s++) {
        v->subs[s].start = starts[s];
        v->subs[s].end = s + 1 < ns ? starts[s + 1] : n;
        if (second[starts[s]]) {
            v->insn = starts[s];
            err = reject(v, "call into the middle of ldimm64 insn %d", starts[s] - 1);
        }
        for (int i = v->subs[s].start; i < v->subs[s].end; i++)
            v->subprog_of[i] = s;
    }
    /* jumps: in range, within the subprogram, not into an lddw */
    for (int i = 0; i < n && !err; i++) {
        const struct bpf_insn *in = &v->insns[i];
        v->insn = i;
        if (second[i])
            continue;
        uint8_t cls = ebpf_class(in->code), op = in->code & 0xf0;
        if ((cls == BPF_JMP || cls == BPF_JMP32) && op != BPF_CALL && op != BPF_EXIT) {
            int t = jump_target(in, i);
            const struct subprog *sp = &v->subs[v->subprog_of[i]];
            if (t < sp->start || t >= sp->end) {
                err = reject(v, "jump out of range from insn %d to %d", i, t);
                break;
            }
            if (second[t]) {
                err = reject(v, "jump into the middle of ldimm64 insn %d", t - 1);
                break;
            }
            v->prune[t] = true;
            if (is_cond_jmp(in))
                v->prune[i + 1] = true;
        }
        if (is_pseudo_call(in) && i + 1 < n)
            v->prune[i + 1] = true;
    }
    /* each subprogram ends in exit or an unconditional jump */
    for (int s = 0; s < ns && !err; s++) {
        int last = v->subs[s].end - 1;
        const struct bpf_insn *in = &v->insns[last];
        v->insn = -1;
        if (second[last] || (in->code != (BPF_JMP | BPF_EXIT) && (in->code & 0xf7) != (BPF_JMP | BPF_JA)))
            err = reject(v, "last insn is not an exit or jmp (insn %d falls off the end)", last);
    }
    /* reachability: depth-first over fall-through, jumps and calls */
    if (!err) {
        uint8_t *seen = calloc((size_t)n, 1);
        int *work = malloc(sizeof(int) * (size_t)n * 2 + sizeof(int));
        if (!seen || !work) {
            err = -ENOMEM;
        } else {
            int top = 0;
            work[top++] = 0;
            seen[0] = 1;
#define PUSH(t)                \
    do {                       \
        if (!seen[t]) {        \
            seen[t] = 1;       \
            work[top++] = (t); \
        }                      \
    } while (0)
            while (top) {
                int i = work[--top];
                const struct bpf_insn *in = &v->insns[i];
                uint8_t cls = ebpf_class(in->code), op = in->code & 0xf0;
                if (is_ldimm64(in)) {
                    seen[i + 1] = 1;
                    if (is_pseudo_func(in))
                        PUSH(i + in->imm + 1);
                    if (i + 2 < n)
                        PUSH(i + 2);
                    continue;
                }
                if ((cls == BPF_JMP || cls == BPF_JMP32) && op == BPF_EXIT)
                    continue;
                if ((cls == BPF_JMP || cls == BPF_JMP32) && op == BPF_JA) {
                    PUSH(jump_target(in, i));
                    continue;
                }
                if (is_cond_jmp(in))
                    PUSH(jump_target(in, i));
                if (is_pseudo_call(in))
                    PUSH(i + in->imm + 1);
                if (i + 1 < n)
                    PUSH(i + 1);
            }
#undef PUSH
            for (int i = 0; i < n; i++)
                if (!seen[i]) {
                    v->insn = -1;
                    err = reject(v, "unreachable insn %d", i);
                    break;
                }
        }
        free(seen);
        free(work);
    }
    /* recursion: a cycle in the call graph */
    if (!err && ns > 1) {
        /* iterative DFS colouring over subprograms */
        uint8_t *color = calloc((size_t)ns, 1);
        int *stk = malloc(sizeof(int) * (size_t)ns), *pos = malloc(sizeof(int) * (size_t)ns);
        if (!color || !stk || !pos) {
            err = -ENOMEM;
        } else {
            for (int root = 0; root < ns && !err; root++) {
                if (color[root])
                    continue;
                int top = 0;
                stk[top] = root;
                pos[top++] = v->subs[root].start;
                color[root] = 1;
                while (top && !err) {
                    int s = stk[top - 1];
                    int i = pos[top - 1];
                    if (i >= v->subs[s].end) {
                        color[s] = 2;
                        top--;
                        continue;
                    }
                    pos[top - 1] = i + 1;
                    if (second[i] || subprog_entry(v->insns, i) < 0)
                        continue;
                    int callee = v->subprog_of[subprog_entry(v->insns, i)];
                    if (color[callee] == 1) {
                        v->insn = -1;
                        err = reject(v, "recursive call from insn %d", i);
                    } else if (!color[callee]) {
                        color[callee] = 1;
                        stk[top] = callee;
                        pos[top++] = v->subs[callee].start;
                    }
                }
            }
        }
        free(color);
        free(stk);
        free(pos);
    }
    free(second);
    free(starts);
    return err;
}

/* Largest combined stack of any call chain (each frame rounded up to 32
 * bytes like the kernel's), which must stay within 512 bytes. */
static int check_stack_total(struct vctx *v)
{
    int *best = calloc((size_t)v->nsubs, sizeof(int));
    if (!best)
        return -ENOMEM;
    /* the call graph is acyclic (recursion was rejected): relax until stable */
    for (int round = 0; round <= v->nsubs; round++) {
        bool changed = false;
        for (int s = 0; s < v->nsubs; s++) {
            int own = (v->subs[s].depth + 31) / 32 * 32;
            int worst = own;
            for (int i = v->subs[s].start; i < v->subs[s].end; i++) {
                /* a callback runs below its caller, like a callee */
                if (subprog_entry(v->insns, i) < 0)
                    continue;
                int callee = v->subprog_of[subprog_entry(v->insns, i)];
                if (own + best[callee] > worst)
                    worst = own + best[callee];
            }
            if (worst != best[s]) {
                best[s] = worst;
                changed = true;
            }
        }
        if (!changed)
            break;
    }
    int total = best[0];
    free(best);
    v->res->stack_depth = (uint32_t)total;
    if (total > EBPF_STACK_SIZE) {
        v->insn = -1;
        return reject(v, "combined stack size of the call chain is %d. Too large", total);
    }
    return 0;
}

/* ------------------------------------------------------ memory accesses */

static const char *map_type_ok_for_value(uint32_t t)
{
    switch (t) {
    case BPF_MAP_TYPE_RINGBUF: return "ringbuf";
    case BPF_MAP_TYPE_PERF_EVENT_ARRAY: return "perf_event_array";
    case BPF_MAP_TYPE_PROG_ARRAY: return "prog_array";
    case BPF_MAP_TYPE_STACK_TRACE: return "stack_trace";
    case BPF_MAP_TYPE_QUEUE: return "queue";
    case BPF_MAP_TYPE_STACK: return "stack";
    default: return NULL;
    }
}

/* Byte range [lo, hi) a pointer access touches, relative to the start of
 * its region; rejects negative or unbounded variable offsets. */
static int var_range(struct vctx *v, int regno, const struct reg *r, int off, int size, int64_t *lo, int64_t *hi)
{
    if (r->smin < 0 && !tnum_is_const(r->var))
        return reject(v, "R%d min value is negative, either use unsigned index or do a if (index >=0) check.", regno);
    if (r->umax >= MAX_VAR_OFF && !tnum_is_const(r->var))
        return reject(v, "R%d unbounded memory access, make sure to bounds check any such access", regno);
    int64_t base = (int64_t)r->off + off;
    if (tnum_is_const(r->var)) {
        *lo = base + (int64_t)r->var.value;
        *hi = *lo + size;
    } else {
        *lo = base + r->smin;
        *hi = base + (int64_t)r->umax + size;
    }
    return 0;
}

static int stack_access_off(struct vctx *v, int regno, const struct reg *r, int off, int size, int *out)
{
    if (!tnum_is_const(r->var))
        return reject(v, "R%d variable stack access prohibited (var_off=[%" PRId64 ",%" PRIu64 "])", regno, r->smin,
                      r->umax);
    int64_t o = (int64_t)r->off + off + (int64_t)r->var.value;
    if (o < -EBPF_STACK_SIZE || o + size > 0 || size <= 0)
        return reject(v, "invalid stack off=%" PRId64 " size=%d", o, size);
    *out = (int)o;
    return 0;
}

static void note_depth(struct vctx *v, const struct reg *r, int lo)
{
    /* the frame the pointer points into belongs to the subprogram running in it */
    struct frame *f = v->cur->fr[r->frameno];
    struct subprog *sp = &v->subs[f->subprog];
    if (-lo > sp->depth)
        sp->depth = -lo;
}

/* Stack write of size bytes at o (relative to fp). src is the stored
 * register (NULL for an immediate; zero says whether it stores 0). */
static int stack_write(struct vctx *v, const struct reg *ptr, int o, int size, const struct reg *src, bool zero)
{
    struct frame *f = v->cur->fr[ptr->frameno];
    int idx = EBPF_STACK_SIZE + o;
    int slot = idx / 8;
    note_depth(v, ptr, o);
    if (src && src->type == PTR_STACK && src->frameno > ptr->frameno)
        return reject(v, "cannot spill pointers to stack into stack frame of the caller");
    if (size == 8 && idx % 8 == 0 && src) {
        f->spill[slot] = *src;
        memset(&f->stype[idx], STK_SPILL, 8);
        return 0;
    }
    if (src && is_ptr(src))
        zero = false;
    /* partial overwrite of a spilled register: what remains is plain bytes */
    for (int s = idx / 8; s <= (idx + size - 1) / 8; s++)
        if (f->stype[s * 8] == STK_SPILL || f->stype[s * 8 + 7] == STK_SPILL) {
            bool was_zero = reg_is_const(&f->spill[s]) && f->spill[s].var.value == 0;
            for (int b = 0; b < 8; b++)
                if (f->stype[s * 8 + b] == STK_SPILL)
                    f->stype[s * 8 + b] = was_zero ? STK_ZERO : STK_MISC;
        }
    memset(&f->stype[idx], zero ? STK_ZERO : STK_MISC, (size_t)size);
    return 0;
}

static int stack_read(struct vctx *v, int regno, const struct reg *ptr, int o, int size, struct reg *dst, bool sx)
{
    struct frame *f = v->cur->fr[ptr->frameno];
    int idx = EBPF_STACK_SIZE + o;
    int slot = idx / 8;
    note_depth(v, ptr, o);
    if (size == 8 && idx % 8 == 0 && f->stype[idx] == STK_SPILL) {
        for (int b = 0; b < 8; b++)
            if (f->stype[idx + b] != STK_SPILL)
                return reject(v, "corrupted spill memory");
        if (dst)
            *dst = f->spill[slot];
        return 0;
    }
    bool all_zero = true;
    for (int b = idx; b < idx + size; b++) {
        uint8_t t = f->stype[b];
        if (t == STK_INVALID)
            return reject(v, "invalid read from stack off %d+%d size %d", o, b - idx, size);
        if (t == STK_SPILL) {
            const struct reg *sp = &f->spill[b / 8];
            if (is_ptr(sp))
                return reject(v, "invalid size of register fill (R%d reads %d bytes of a spilled %s)", regno, size,
                              rtype_names[sp->type]);
            if (!(reg_is_const(sp) && sp->var.value == 0))
                all_zero = false;
        } else if (t != STK_ZERO) {
            all_zero = false;
        }
    }
    if (!dst)
        return 0;
    if (all_zero) {
        mark_const(dst, 0);
        return 0;
    }
    /* a narrow aligned read of a spilled constant scalar stays known */
    if (f->stype[slot * 8] == STK_SPILL && f->stype[slot * 8 + 7] == STK_SPILL && reg_is_const(&f->spill[slot]) &&
        !sx && idx % 8 == 0) {
        uint64_t val = f->spill[slot].var.value;
        if (size < 8)
            val &= (1ULL << (size * 8)) - 1;
        mark_const(dst, val);
        return 0;
    }
    mark_unknown(dst);
    return 0;
}

/* Result of loading size bytes of unknown memory. */
static void mark_loaded(struct reg *dst, int size, bool sx)
{
    mark_unknown(dst);
    if (size == 8)
        return;
    if (sx) {
        int64_t lim = (int64_t)1 << (size * 8 - 1);
        dst->smin = -lim;
        dst->smax = lim - 1;
        dst->umin = 0;
        dst->umax = UINT64_MAX;
    } else {
        dst->umax = (1ULL << (size * 8)) - 1;
        dst->var = tnum_range(0, dst->umax);
    }
    sync_bounds(dst);
}

/* bpf_for_each_map_elem's key: read-only, key_size bytes. */
static int check_map_key(struct vctx *v, int regno, const struct reg *r, int off, int size, bool write)
{
    uint32_t ks = v->env->maps[r->map].key_size;
    int64_t lo = 0, hi = 0;
    if (write)
        return reject(v, "R%d: the map key bpf_for_each_map_elem gives is read-only", regno);
    int err = var_range(v, regno, r, off, size, &lo, &hi);
    if (err)
        return err;
    if (lo < 0 || hi > ks)
        return reject(v, "invalid access to map key, key_size=%u off=%" PRId64 " size=%d", ks, lo, size);
    return 0;
}

/* Does [lo, hi) of a map value overlap its bpf_spin_lock? */
static bool touches_spin_lock(const struct bpfg_verify_map *m, int64_t lo, int64_t hi)
{
    int64_t at = (int64_t)m->spin_lock - 1;
    return m->spin_lock && lo < at + 4 && hi > at;
}

/* Loads into / stores from regno's pointer at insn offset off. For loads
 * dst receives the value; for stores src is what is stored (NULL: imm). */
static int check_mem(struct vctx *v, int regno, int off, int size, bool write, struct reg *dst, const struct reg *src,
                     bool zero, bool sx)
{
    struct reg *r = R(v, regno);
    int64_t lo = 0, hi = 0;
    switch (r->type) {
    case NOT_INIT: return reject(v, "R%d !read_ok", regno);
    case PTR_STACK: {
        int o = 0;
        int err = stack_access_off(v, regno, r, off, size, &o);
        if (err)
            return err;
        if (o % size)
            return reject(v, "misaligned stack access off %d size %d", o, size);
        struct reg ptr = *r;
        return write ? stack_write(v, &ptr, o, size, src, zero) : stack_read(v, regno, &ptr, o, size, dst, sx);
    }
    case PTR_CTX: {
        if (!tnum_is_const(r->var) || r->var.value)
            return reject(v, "variable ctx access var_off=[%" PRId64 ",%" PRIu64 "] disallowed", r->smin, r->umax);
        /* like the kernel: fields are read through the unmodified pointer,
         * which is what rewriting ctx accesses relies on */
        if (r->off)
            return reject(v, "dereference of modified ctx ptr R%d off=%d disallowed", regno, r->off);
        int64_t o = off;
        bool tp = v->env->kind == BPFG_VERIFY_SYSCALL_ENTER || v->env->kind == BPFG_VERIFY_SYSCALL_EXIT;
        if (write || o < (tp ? 8 : 0) || o + size > v->ctx_size || o % size)
            return reject(v, "invalid bpf_context access off=%" PRId64 " size=%d%s", o, size,
                          write ? " (the context is read-only)" : "");
        if (dst)
            mark_loaded(dst, size, sx);
        return 0;
    }
    case PTR_MAP_VALUE: {
        const struct bpfg_verify_map *m = &v->env->maps[r->map];
        if (write && (m->flags & BPF_F_RDONLY_PROG))
            return reject(v, "write into map forbidden, value_size=%u off=%d size=%d", m->value_size, r->off + off,
                          size);
        int err = var_range(v, regno, r, off, size, &lo, &hi);
        if (err)
            return err;
        if (lo < 0 || hi > m->value_size)
            return reject(v, "invalid access to map value, value_size=%u off=%" PRId64 " size=%d", m->value_size, lo,
                          size);
        if (touches_spin_lock(m, lo, hi))
            return reject(v, "bpf_spin_lock cannot be accessed directly by load/store");
        if (dst) {
            /* constants of a frozen read-only map are known */
            if (!write && (m->flags & BPF_F_RDONLY_PROG) && m->data && lo + size <= (int64_t)m->data_size &&
                hi - lo == size && !sx) {
                uint64_t val = 0;
                memcpy(&val, (const uint8_t *)m->data + lo, (size_t)size);
                mark_const(dst, val);
            } else {
                mark_loaded(dst, size, sx);
            }
        }
        return 0;
    }
    case PTR_MEM: {
        int err = var_range(v, regno, r, off, size, &lo, &hi);
        if (err)
            return err;
        if (lo < 0 || hi > r->mem_size)
            return reject(v, "invalid access to memory, mem_size=%u off=%" PRId64 " size=%d", r->mem_size, lo, size);
        if (dst)
            mark_loaded(dst, size, sx);
        return 0;
    }
    case PTR_MAP_KEY: {
        int err = check_map_key(v, regno, r, off, size, write);
        if (!err && dst)
            mark_loaded(dst, size, sx);
        return err;
    }
    default: return reject(v, "R%d invalid mem access '%s'", regno, rtype_names[r->type]);
    }
}

static int check_reg_read(struct vctx *v, int regno)
{
    if (R(v, regno)->type == NOT_INIT)
        return reject(v, "R%d !read_ok", regno);
    return 0;
}

static int check_reg_write(struct vctx *v, int regno)
{
    if (regno == BPF_REG_10)
        return reject(v, "frame pointer is read only");
    return 0;
}

static int do_ldx(struct vctx *v, const struct bpf_insn *in)
{
    static const int sizes[4] = {4, 2, 1, 8}; /* W H B DW */
    int size = sizes[(in->code >> 3) & 3];
    bool sx = (in->code & 0xe0) == BPF_MEMSX;
    int err;
    if ((err = check_reg_read(v, in->src_reg)) || (err = check_reg_write(v, in->dst_reg)))
        return err;
    struct reg val;
    if ((err = check_mem(v, in->src_reg, in->off, size, false, &val, NULL, false, sx)))
        return err;
    *R(v, in->dst_reg) = val;
    return 0;
}

static int do_store(struct vctx *v, const struct bpf_insn *in)
{
    static const int sizes[4] = {4, 2, 1, 8};
    int size = sizes[(in->code >> 3) & 3];
    int err;
    if ((err = check_reg_read(v, in->dst_reg)))
        return err;
    if (ebpf_class(in->code) == BPF_ST) {
        struct reg imm;
        mark_const(&imm, (uint64_t)(int64_t)in->imm);
        if (size == 8)
            return check_mem(v, in->dst_reg, in->off, size, true, NULL, &imm, in->imm == 0, false);
        return check_mem(v, in->dst_reg, in->off, size, true, NULL, NULL, in->imm == 0, false);
    }
    if ((err = check_reg_read(v, in->src_reg)))
        return err;
    struct reg src = *R(v, in->src_reg);
    bool zero = reg_is_const(&src) && src.var.value == 0;
    if ((in->code & 0xe0) == BPF_MEM)
        return check_mem(v, in->dst_reg, in->off, size, true, NULL, size == 8 ? &src : NULL, zero, false);

    /* atomics: read and write of the same location */
    struct reg *d = R(v, in->dst_reg);
    if (d->type == PTR_CTX)
        return reject(v, "BPF_ATOMIC stores into R%d ctx is not allowed", in->dst_reg);
    if (in->imm == BPF_CMPXCHG && (err = check_reg_read(v, BPF_REG_0)))
        return err;
    if (is_ptr(&src))
        return reject(v, "R%d leaks addr into mem", in->src_reg);
    struct reg old;
    if ((err = check_mem(v, in->dst_reg, in->off, size, false, &old, NULL, false, false)) ||
        (err = check_mem(v, in->dst_reg, in->off, size, true, NULL, NULL, false, false)))
        return err;
    if (in->imm == BPF_CMPXCHG) {
        mark_loaded(R(v, BPF_REG_0), size, false);
    } else if (in->imm & BPF_FETCH) {
        if ((err = check_reg_write(v, in->src_reg)))
            return err;
        mark_loaded(R(v, in->src_reg), size, false);
    }
    return 0;
}

/* ----------------------------------------------------------------- ALU */

static void scalar_binop(struct reg *d, const struct reg *s, uint8_t op, bool is64, int16_t off)
{
    struct reg a = *d, b = *s;
    if (!is64) {
        trunc32(&a);
        trunc32(&b);
    }
    unsigned bits = is64 ? 64 : 32;
    struct reg r;
    mark_unknown(&r);
    switch (op) {
    case BPF_ADD:
        r.var = tnum_add(a.var, b.var);
        if (!__builtin_add_overflow(a.smin, b.smin, &r.smin) && !__builtin_add_overflow(a.smax, b.smax, &r.smax)) {
        } else {
            r.smin = S64_MIN;
            r.smax = S64_MAX;
        }
        if (!__builtin_add_overflow(a.umin, b.umin, &r.umin) && !__builtin_add_overflow(a.umax, b.umax, &r.umax)) {
        } else {
            r.umin = 0;
            r.umax = UINT64_MAX;
        }
        break;
    case BPF_SUB:
        r.var = tnum_sub(a.var, b.var);
        if (__builtin_sub_overflow(a.smin, b.smax, &r.smin) || __builtin_sub_overflow(a.smax, b.smin, &r.smax)) {
            r.smin = S64_MIN;
            r.smax = S64_MAX;
        }
        if (a.umin < b.umax) {
            r.umin = 0;
            r.umax = UINT64_MAX;
        } else {
            r.umin = a.umin - b.umax;
            r.umax = a.umax - b.umin;
        }
        break;
    case BPF_MUL:
        r.var = tnum_mul(a.var, b.var);
        if (a.smin >= 0 && b.smin >= 0 && a.umax <= U32_MAX && b.umax <= U32_MAX) {
            r.umin = a.umin * b.umin;
            r.umax = a.umax * b.umax;
            r.smin = (int64_t)r.umin;
            r.smax = (int64_t)r.umax;
        }
        break;
    case BPF_DIV:
    case BPF_MOD:
        if (off) { /* sdiv/smod */
            if (reg_is_const(&a) && reg_is_const(&b)) {
                int64_t x = is64 ? (int64_t)a.var.value : (int32_t)a.var.value;
                int64_t y = is64 ? (int64_t)b.var.value : (int32_t)b.var.value;
                int64_t q;
                if (y == 0)
                    q = op == BPF_DIV ? 0 : x;
                else if (y == -1)
                    q = op == BPF_DIV ? (int64_t)(0 - (uint64_t)x) : 0;
                else
                    q = op == BPF_DIV ? x / y : x % y;
                set_bounds_const(&r, (uint64_t)q);
            }
            break;
        }
        if (reg_is_const(&b) && b.var.value) {
            uint64_t c = b.var.value;
            if (op == BPF_DIV) {
                r.umin = a.umin / c;
                r.umax = a.umax / c;
            } else {
                r.umin = 0;
                r.umax = a.umax < c - 1 ? a.umax : c - 1;
                if (reg_is_const(&a)) {
                    r.umin = r.umax = a.var.value % c;
                }
            }
        } else if (reg_is_const(&b)) { /* by zero: div gives 0, mod keeps dst */
            if (op == BPF_DIV)
                set_bounds_const(&r, 0);
            else
                r = a;
        } else {
            r.umin = 0;
            r.umax = a.umax;
        }
        r.var = tnum_range(r.umin, r.umax);
        break;
    case BPF_AND:
        r.var = tnum_and(a.var, b.var);
        r.umin = r.var.value;
        r.umax = a.umax < b.umax ? a.umax : b.umax;
        break;
    case BPF_OR:
        r.var = tnum_or(a.var, b.var);
        r.umin = a.umin > b.umin ? a.umin : b.umin;
        r.umax = r.var.value | r.var.mask;
        break;
    case BPF_XOR:
        r.var = tnum_xor(a.var, b.var);
        r.umin = r.var.value;
        r.umax = r.var.value | r.var.mask;
        break;
    case BPF_LSH:
    case BPF_RSH:
    case BPF_ARSH:
        if (!reg_is_const(&b) || b.var.value >= bits)
            break; /* unknown */
        {
            unsigned sh = (unsigned)b.var.value;
            if (op == BPF_LSH) {
                r.var = tnum_lsh(a.var, sh);
                if (!is64)
                    r.var = tnum_cast32(r.var);
                if (sh && a.umax > (UINT64_MAX >> sh)) {
                } else if (is64 || (a.umax << sh) <= U32_MAX) {
                    r.umin = a.umin << sh;
                    r.umax = a.umax << sh;
                }
            } else if (op == BPF_RSH) {
                r.var = tnum_rsh(a.var, sh);
                r.umin = a.umin >> sh;
                r.umax = a.umax >> sh;
            } else if (is64) {
                r.var = tnum_arsh(a.var, sh);
                r.smin = a.smin >> sh;
                r.smax = a.smax >> sh;
            } else if (!(a.var.mask & (1ULL << 31)) && !(a.var.value & (1ULL << 31))) {
                r.var = tnum_rsh(a.var, sh); /* sign bit known 0: a logical shift */
                r.umin = a.umin >> sh;
                r.umax = a.umax >> sh;
            } else if (reg_is_const(&a)) {
                set_bounds_const(&r, (uint32_t)((int32_t)a.var.value >> sh));
            }
        }
        break;
    }
    sync_bounds(&r);
    if (!is64)
        trunc32(&r);
    *d = r;
}

static int do_alu(struct vctx *v, const struct bpf_insn *in)
{
    bool is64 = ebpf_class(in->code) == BPF_ALU64;
    uint8_t op = in->code & 0xf0;
    bool use_reg = in->code & BPF_X;
    int err;
    struct reg *d = R(v, in->dst_reg);

    if (op == BPF_END) {
        if ((err = check_reg_read(v, in->dst_reg)) || (err = check_reg_write(v, in->dst_reg)))
            return err;
        if (is_ptr(d)) {
            mark_unknown(d);
            return 0;
        }
        bool to_le = !(in->code & BPF_X) || is64; /* bswap (ALU64) always swaps */
        if (reg_is_const(d)) {
            uint64_t x = d->var.value;
            bool swap = is64 || !to_le; /* x86-64 is little-endian */
            if (in->imm == 16)
                x = swap ? __builtin_bswap16((uint16_t)x) : (uint16_t)x;
            else if (in->imm == 32)
                x = swap ? __builtin_bswap32((uint32_t)x) : (uint32_t)x;
            else
                x = swap ? __builtin_bswap64(x) : x;
            mark_const(d, x);
        } else {
            mark_unknown(d);
            if (in->imm < 64) {
                d->umax = (1ULL << in->imm) - 1;
                d->var = tnum_range(0, d->umax);
                sync_bounds(d);
            }
        }
        return 0;
    }
    if (op == BPF_NEG) {
        if ((err = check_reg_read(v, in->dst_reg)) || (err = check_reg_write(v, in->dst_reg)))
            return err;
        if (is_ptr(d))
            return reject(v, "R%d pointer arithmetic with neg operator prohibited", in->dst_reg);
        if (reg_is_const(d))
            mark_const(d, is64 ? 0 - d->var.value : (uint32_t)(0 - d->var.value));
        else
            mark_unknown(d);
        if (!is64)
            trunc32(d);
        return 0;
    }
    if (use_reg && (err = check_reg_read(v, in->src_reg)))
        return err;
    if ((err = check_reg_write(v, in->dst_reg)))
        return err;

    struct reg src;
    if (use_reg)
        src = *R(v, in->src_reg);
    else
        mark_const(&src, is64 ? (uint64_t)(int64_t)in->imm : (uint32_t)in->imm);

    if (op == BPF_MOV) {
        if (use_reg && in->off) { /* movsx */
            if (is_ptr(&src)) {
                mark_unknown(d);
                return 0;
            }
            int bits = in->off;
            if (reg_is_const(&src)) {
                int64_t x = bits == 8    ? (int8_t)src.var.value
                            : bits == 16 ? (int16_t)src.var.value
                                         : (int32_t)src.var.value;
                mark_const(d, is64 ? (uint64_t)x : (uint32_t)x);
            } else {
                mark_unknown(d);
                int64_t lim = (int64_t)1 << (bits - 1);
                if (src.umax < (uint64_t)lim) {
                    *d = src; /* non-negative and narrow: unchanged */
                } else {
                    d->smin = -lim;
                    d->smax = lim - 1;
                    sync_bounds(d);
                }
                if (!is64)
                    trunc32(d);
            }
            return 0;
        }
        if (is64) {
            *d = src;
            return 0;
        }
        if (is_ptr(&src)) {
            mark_unknown(d); /* the low half of an address is a number */
            trunc32(d);
            return 0;
        }
        *d = src;
        d->id = 0;
        trunc32(d);
        return 0;
    }

    if ((err = check_reg_read(v, in->dst_reg)))
        return err;
    /* pointer arithmetic */
    if (is_ptr(d) || is_ptr(&src)) {
        if (!is64) {
            if (op == BPF_SUB && is_ptr(d) && is_ptr(&src)) {
                mark_unknown(d);
                trunc32(d);
                return 0;
            }
            return reject(v, "R%d 32-bit pointer arithmetic prohibited", in->dst_reg);
        }
        if (is_ptr(d) && is_ptr(&src)) {
            if (op == BPF_SUB) { /* distance between two pointers: a number */
                mark_unknown(d);
                return 0;
            }
            return reject(v, "R%d pointer %s pointer prohibited", in->dst_reg, op == BPF_ADD ? "+=" : "op");
        }
        struct reg ptr = is_ptr(d) ? *d : src;
        struct reg sc = is_ptr(d) ? src : *d;
        int ptrreg = is_ptr(d) ? in->dst_reg : in->src_reg;
        if (op != BPF_ADD && !(op == BPF_SUB && is_ptr(d))) {
            if (op == BPF_AND || op == BPF_OR || op == BPF_XOR)
                return reject(v, "R%d bitwise operator %s on pointer prohibited", in->dst_reg,
                              op == BPF_AND  ? "&="
                              : op == BPF_OR ? "|="
                                             : "^=");
            return reject(v, "R%d pointer arithmetic with %s operator prohibited", in->dst_reg,
                          op == BPF_MUL    ? "*="
                          : op == BPF_DIV  ? "/="
                          : op == BPF_MOD  ? "%="
                          : op == BPF_LSH  ? "<<="
                          : op == BPF_RSH  ? ">>="
                          : op == BPF_ARSH ? "s>>="
                                           : "-=");
        }
        if (is_or_null(&ptr))
            return reject(v, "R%d pointer arithmetic on %s prohibited, null-check it first", ptrreg,
                          rtype_names[ptr.type]);
        if (ptr.type == CONST_MAP || ptr.type == PTR_FUNC)
            return reject(v, "R%d pointer arithmetic on %s prohibited", ptrreg, rtype_names[ptr.type]);
        /* ctx plus a variable offset is allowed, as in the kernel (usdt.bpf.h
         * reads a register at a spec's offset with bpf_probe_read_kernel);
         * check_mem and ctx arguments refuse it */
        if (reg_is_const(&sc)) {
            int64_t c = (int64_t)sc.var.value;
            if (op == BPF_SUB)
                c = -c;
            int64_t no = (int64_t)ptr.off + c;
            if (no <= -MAX_VAR_OFF || no >= MAX_VAR_OFF)
                return reject(v, "value %" PRId64 " makes %s pointer be out of bounds", c, rtype_names[ptr.type]);
            ptr.off = (int32_t)no;
        } else {
            struct reg varo;
            mark_unknown(&varo);
            varo.var = ptr.var;
            varo.umin = ptr.umin;
            varo.umax = ptr.umax;
            varo.smin = ptr.smin;
            varo.smax = ptr.smax;
            scalar_binop(&varo, &sc, op, true, 0);
            ptr.var = varo.var;
            ptr.umin = varo.umin;
            ptr.umax = varo.umax;
            ptr.smin = varo.smin;
            ptr.smax = varo.smax;
        }
        *d = ptr;
        return 0;
    }
    scalar_binop(d, &src, op, is64, in->off);
    return 0;
}

/* ------------------------------------------------------------- helpers */

enum arg {
    A_NONE,
    A_ANY,
    A_MAP,             /* ARG_CONST_MAP_PTR */
    A_KEY,             /* ARG_PTR_TO_MAP_KEY */
    A_VALUE,           /* ARG_PTR_TO_MAP_VALUE */
    A_UNINIT_VALUE,    /* ARG_PTR_TO_UNINIT_MAP_VALUE */
    A_MEM,             /* ARG_PTR_TO_MEM | MEM_RDONLY, size in the next arg */
    A_MEM_OR_NULL,     /* same, may be NULL with size 0 */
    A_UNINIT_MEM,      /* ARG_PTR_TO_UNINIT_MEM, written by the helper */
    A_OUT_MEM_OR_NULL, /* snprintf's out buffer */
    A_SIZE,            /* ARG_CONST_SIZE */
    A_SIZE0,           /* ARG_CONST_SIZE_OR_ZERO */
    A_CTX,
    A_ALLOC_SIZE,    /* ARG_CONST_ALLOC_SIZE_OR_ZERO */
    A_RINGBUF_REL,   /* ARG_PTR_TO_ALLOC_MEM | OBJ_RELEASE */
    A_CONST_STR,     /* ARG_PTR_TO_CONST_STR */
    A_LONG_OUT,      /* ARG_PTR_TO_LONG: 8 bytes the helper writes */
    A_FUNC,          /* ARG_PTR_TO_FUNC: a callback */
    A_STACK_OR_NULL, /* ARG_PTR_TO_STACK_OR_NULL: a callback's context */
    A_SPIN_LOCK,     /* ARG_PTR_TO_SPIN_LOCK */
};

enum ret { RET_INT, RET_VOID, RET_MAP_VALUE_OR_NULL, RET_RINGBUF_OR_NULL };

struct proto {
    int id;
    const char *name;
    enum ret ret;
    enum arg args[5];
    int8_t ret_le_size; /* returns at most the size in this arg (1-based), e.g. *_str */
};

/* The kernel's bpf_func_proto of every helper bpfgraft provides. */
static const struct proto protos[] = {
    {BPF_FUNC_map_lookup_elem, "map_lookup_elem", RET_MAP_VALUE_OR_NULL, {A_MAP, A_KEY}, 0},
    {BPF_FUNC_map_update_elem, "map_update_elem", RET_INT, {A_MAP, A_KEY, A_VALUE, A_ANY}, 0},
    {BPF_FUNC_map_delete_elem, "map_delete_elem", RET_INT, {A_MAP, A_KEY}, 0},
    {BPF_FUNC_probe_read, "probe_read", RET_INT, {A_UNINIT_MEM, A_SIZE0, A_ANY}, 0},
    {BPF_FUNC_ktime_get_ns, "ktime_get_ns", RET_INT, {0}, 0},
    {BPF_FUNC_trace_printk, "trace_printk", RET_INT, {A_MEM, A_SIZE}, 0}, /* args 3-5: DONTCARE */
    {BPF_FUNC_get_prandom_u32, "get_prandom_u32", RET_INT, {0}, 0},
    {BPF_FUNC_get_smp_processor_id, "get_smp_processor_id", RET_INT, {0}, 0},
    {BPF_FUNC_tail_call, "tail_call", RET_VOID, {A_CTX, A_MAP, A_ANY}, 0},
    {BPF_FUNC_get_current_pid_tgid, "get_current_pid_tgid", RET_INT, {0}, 0},
    {BPF_FUNC_get_current_uid_gid, "get_current_uid_gid", RET_INT, {0}, 0},
    {BPF_FUNC_get_current_comm, "get_current_comm", RET_INT, {A_UNINIT_MEM, A_SIZE}, 0},
    {BPF_FUNC_perf_event_output, "perf_event_output", RET_INT, {A_CTX, A_MAP, A_ANY, A_MEM, A_SIZE0}, 0},
    {BPF_FUNC_get_stackid, "get_stackid", RET_INT, {A_CTX, A_MAP, A_ANY}, 0},
    {BPF_FUNC_probe_write_user, "probe_write_user", RET_INT, {A_ANY, A_MEM, A_SIZE}, 0},
    {BPF_FUNC_probe_read_str, "probe_read_str", RET_INT, {A_UNINIT_MEM, A_SIZE0, A_ANY}, 2},
    {BPF_FUNC_override_return, "override_return", RET_INT, {A_CTX, A_ANY}, 0},
    {BPF_FUNC_get_stack, "get_stack", RET_INT, {A_CTX, A_UNINIT_MEM, A_SIZE0, A_ANY}, 3},
    {BPF_FUNC_map_push_elem, "map_push_elem", RET_INT, {A_MAP, A_VALUE, A_ANY}, 0},
    {BPF_FUNC_map_pop_elem, "map_pop_elem", RET_INT, {A_MAP, A_UNINIT_VALUE}, 0},
    {BPF_FUNC_map_peek_elem, "map_peek_elem", RET_INT, {A_MAP, A_UNINIT_VALUE}, 0},
    {BPF_FUNC_probe_read_user, "probe_read_user", RET_INT, {A_UNINIT_MEM, A_SIZE0, A_ANY}, 0},
    {BPF_FUNC_probe_read_user_str, "probe_read_user_str", RET_INT, {A_UNINIT_MEM, A_SIZE0, A_ANY}, 2},
    {BPF_FUNC_probe_read_kernel, "probe_read_kernel", RET_INT, {A_UNINIT_MEM, A_SIZE0, A_ANY}, 0},
    {BPF_FUNC_probe_read_kernel_str, "probe_read_kernel_str", RET_INT, {A_UNINIT_MEM, A_SIZE0, A_ANY}, 2},
    {BPF_FUNC_ktime_get_boot_ns, "ktime_get_boot_ns", RET_INT, {0}, 0},
    {BPF_FUNC_ringbuf_output, "ringbuf_output", RET_INT, {A_MAP, A_MEM, A_SIZE0, A_ANY}, 0},
    {BPF_FUNC_ringbuf_reserve, "ringbuf_reserve", RET_RINGBUF_OR_NULL, {A_MAP, A_ALLOC_SIZE, A_ANY}, 0},
    {BPF_FUNC_ringbuf_submit, "ringbuf_submit", RET_VOID, {A_RINGBUF_REL, A_ANY}, 0},
    {BPF_FUNC_ringbuf_discard, "ringbuf_discard", RET_VOID, {A_RINGBUF_REL, A_ANY}, 0},
    {BPF_FUNC_ringbuf_query, "ringbuf_query", RET_INT, {A_MAP, A_ANY}, 0},
    {BPF_FUNC_snprintf, "snprintf", RET_INT, {A_OUT_MEM_OR_NULL, A_SIZE0, A_CONST_STR, A_MEM_OR_NULL, A_SIZE0}, 2},
    {BPF_FUNC_get_func_ip, "get_func_ip", RET_INT, {A_CTX}, 0},
    {BPF_FUNC_get_attach_cookie, "get_attach_cookie", RET_INT, {A_CTX}, 0},
    {BPF_FUNC_send_signal, "send_signal", RET_INT, {A_ANY}, 0},
    {BPF_FUNC_send_signal_thread, "send_signal_thread", RET_INT, {A_ANY}, 0},
    {BPF_FUNC_ktime_get_coarse_ns, "ktime_get_coarse_ns", RET_INT, {0}, 0},
    {BPF_FUNC_strncmp, "strncmp", RET_INT, {A_MEM, A_SIZE, A_CONST_STR}, 0},
    {BPF_FUNC_get_func_arg, "get_func_arg", RET_INT, {A_CTX, A_ANY, A_LONG_OUT}, 0},
    {BPF_FUNC_get_func_ret, "get_func_ret", RET_INT, {A_CTX, A_LONG_OUT}, 0},
    {BPF_FUNC_loop, "loop", RET_INT, {A_ANY, A_FUNC, A_STACK_OR_NULL, A_ANY}, 0},
    {BPF_FUNC_for_each_map_elem, "for_each_map_elem", RET_INT, {A_MAP, A_FUNC, A_STACK_OR_NULL, A_ANY}, 0},
    {BPF_FUNC_spin_lock, "spin_lock", RET_VOID, {A_SPIN_LOCK}, 0},
    {BPF_FUNC_spin_unlock, "spin_unlock", RET_VOID, {A_SPIN_LOCK}, 0},
};

static const struct proto *find_proto(int id)
{
    for (size_t i = 0; i < sizeof(protos) / sizeof(protos[0]); i++)
        if (protos[i].id == id)
            return &protos[i];
    return NULL;
}

/* Which helpers a map type may be used with, and the reverse
 * (check_map_func_compatibility, reduced to the helpers above). */
static int check_map_func(struct vctx *v, const struct proto *p, uint32_t map)
{
    uint32_t t = v->env->maps[map].type;
    int f = p->id;
    bool ok = true;
    switch (t) {
    case BPF_MAP_TYPE_RINGBUF:
        ok = f == BPF_FUNC_ringbuf_output || f == BPF_FUNC_ringbuf_reserve || f == BPF_FUNC_ringbuf_query;
        break;
    case BPF_MAP_TYPE_PERF_EVENT_ARRAY: ok = f == BPF_FUNC_perf_event_output; break;
    case BPF_MAP_TYPE_PROG_ARRAY: ok = f == BPF_FUNC_tail_call; break;
    case BPF_MAP_TYPE_STACK_TRACE: ok = f == BPF_FUNC_get_stackid; break;
    case BPF_MAP_TYPE_QUEUE:
    case BPF_MAP_TYPE_STACK:
        ok = f == BPF_FUNC_map_push_elem || f == BPF_FUNC_map_pop_elem || f == BPF_FUNC_map_peek_elem;
        break;
    case BPF_MAP_TYPE_BLOOM_FILTER: ok = f == BPF_FUNC_map_push_elem || f == BPF_FUNC_map_peek_elem; break;
    case BPF_MAP_TYPE_ARRAY_OF_MAPS:
    case BPF_MAP_TYPE_HASH_OF_MAPS: ok = f == BPF_FUNC_map_lookup_elem; break;
    default: break;
    }
    if (f == BPF_FUNC_for_each_map_elem) /* the types whose elements the payload can walk */
        ok = t == BPF_MAP_TYPE_ARRAY || t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_HASH ||
             t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_HASH || t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
    if (ok) {
        switch (f) {
        case BPF_FUNC_ringbuf_output:
        case BPF_FUNC_ringbuf_reserve:
        case BPF_FUNC_ringbuf_query: ok = t == BPF_MAP_TYPE_RINGBUF; break;
        case BPF_FUNC_perf_event_output: ok = t == BPF_MAP_TYPE_PERF_EVENT_ARRAY; break;
        case BPF_FUNC_tail_call: ok = t == BPF_MAP_TYPE_PROG_ARRAY; break;
        case BPF_FUNC_get_stackid: ok = t == BPF_MAP_TYPE_STACK_TRACE; break;
        case BPF_FUNC_map_pop_elem: ok = t == BPF_MAP_TYPE_QUEUE || t == BPF_MAP_TYPE_STACK; break;
        case BPF_FUNC_map_push_elem:
        case BPF_FUNC_map_peek_elem:
            ok = t == BPF_MAP_TYPE_QUEUE || t == BPF_MAP_TYPE_STACK || t == BPF_MAP_TYPE_BLOOM_FILTER;
            break;
        default: break;
        }
    }
    if (!ok)
        return reject(v, "cannot pass map_type %u into func bpf_%s#%d", t, p->name, f);
    return 0;
}

/* Helper access to [ptr, ptr+size) for reading (initialised) or writing. */
static int check_helper_mem(struct vctx *v, int regno, uint64_t size_max, bool write, bool zero_ok)
{
    struct reg *r = R(v, regno);
    if (size_max == 0 && zero_ok)
        return 0;
    if (size_max >= MAX_VAR_OFF)
        return reject(v, "R%d unbounded memory access", regno + 1);
    int size = (int)size_max;
    int64_t lo = 0, hi = 0;
    switch (r->type) {
    case PTR_STACK: {
        int o = 0;
        int err = stack_access_off(v, regno, r, 0, size, &o);
        if (err) {
            if (!tnum_is_const(r->var))
                return err;
            return reject(v, "invalid indirect access to stack R%d off=%d size=%d", regno, r->off + (int)r->var.value,
                          size);
        }
        struct frame *f = v->cur->fr[r->frameno];
        int idx = EBPF_STACK_SIZE + o;
        note_depth(v, r, o);
        if (write) {
            for (int b = idx; b < idx + size; b++)
                f->stype[b] = STK_MISC;
            /* slots partially overwritten lose their spilled register */
            for (int s = idx / 8; s <= (idx + size - 1) / 8; s++)
                for (int b = 0; b < 8; b++)
                    if (f->stype[s * 8 + b] == STK_SPILL)
                        f->stype[s * 8 + b] = STK_MISC;
            return 0;
        }
        for (int b = idx; b < idx + size; b++)
            if (f->stype[b] == STK_INVALID)
                return reject(v, "invalid indirect read from stack R%d off %d+%d size %d", regno, o, b - idx, size);
        return 0;
    }
    case PTR_MAP_VALUE: {
        const struct bpfg_verify_map *m = &v->env->maps[r->map];
        if (write && (m->flags & BPF_F_RDONLY_PROG))
            return reject(v, "write into map forbidden, value_size=%u off=%d size=%d", m->value_size, r->off, size);
        int err = var_range(v, regno, r, 0, size, &lo, &hi);
        if (err)
            return err;
        if (lo < 0 || hi > m->value_size)
            return reject(v, "invalid access to map value, value_size=%u off=%" PRId64 " size=%d", m->value_size, lo,
                          size);
        if (write && touches_spin_lock(m, lo, hi))
            return reject(v, "bpf_spin_lock cannot be written by a helper");
        return 0;
    }
    case PTR_MEM: {
        int err = var_range(v, regno, r, 0, size, &lo, &hi);
        if (err)
            return err;
        if (lo < 0 || hi > r->mem_size)
            return reject(v, "invalid access to memory, mem_size=%u off=%" PRId64 " size=%d", r->mem_size, lo, size);
        return 0;
    }
    case PTR_MAP_KEY: return check_map_key(v, regno, r, 0, size, write);
    case NOT_INIT: return reject(v, "R%d !read_ok", regno);
    default: return reject(v, "R%d type=%s expected=fp, map_value, ringbuf_mem", regno, rtype_names[r->type]);
    }
}

static bool is_mem_arg(enum arg a)
{
    return a == A_MEM || a == A_MEM_OR_NULL || a == A_UNINIT_MEM || a == A_OUT_MEM_OR_NULL;
}

static int state_add_ref(struct vctx *v, uint32_t id)
{
    if (v->cur->nrefs >= MAX_REFS)
        return reject(v, "too many ring buffer records held at once (max %d)", MAX_REFS);
    v->cur->refs[v->cur->nrefs] = id;
    v->cur->ref_insn[v->cur->nrefs++] = v->insn;
    return 0;
}

static void for_each_reg(struct state *s, void (*fn)(struct reg *, void *), void *arg)
{
    for (int f = 0; f < s->nframes; f++) {
        for (int i = 0; i < EBPF_NREGS; i++)
            fn(&s->fr[f]->regs[i], arg);
        for (int k = 0; k < STACK_SLOTS; k++)
            if (s->fr[f]->stype[k * 8] == STK_SPILL)
                fn(&s->fr[f]->spill[k], arg);
    }
}

static void invalidate_ref(struct reg *r, void *arg)
{
    uint32_t ref = *(uint32_t *)arg;
    if ((r->type == PTR_MEM || r->type == PTR_MEM_OR_NULL) && r->ref == ref)
        mark_unknown(r); /* like the kernel for privileged programs: a number now */
}

static int release_ref(struct vctx *v, uint32_t ref)
{
    struct state *s = v->cur;
    for (int i = 0; i < s->nrefs; i++) {
        if (s->refs[i] != ref)
            continue;
        s->refs[i] = s->refs[s->nrefs - 1];
        s->ref_insn[i] = s->ref_insn[s->nrefs - 1];
        s->nrefs--;
        for_each_reg(s, invalidate_ref, &ref);
        return 0;
    }
    return reject(v, "release of unacquired reference id=%u", ref);
}

/* The kernel's helper names, for messages about the ones bpfgraft lacks. */
#define BPFG_HELPER_NAME(x) [BPF_FUNC_##x] = #x
static const char *const kernel_helper_names[] = {__BPF_FUNC_MAPPER(BPFG_HELPER_NAME)};
#undef BPFG_HELPER_NAME

/* A map-in-map lookup returns the inner map or NULL (the kernel's
 * map_ptr_or_null); after the NULL check it is a map_ptr of the inner map
 * template, usable with the helpers its type allows. */
static int ret_inner_map(struct vctx *v, struct reg *r0, uint32_t map)
{
    uint32_t inner = v->env->maps[map].inner;
    if (!inner)
        return reject(v, "map %u: map-in-map without an inner map template", map);
    mark_ptr(r0, CONST_MAP_OR_NULL);
    r0->map = inner - 1;
    r0->id = ++v->next_id;
    return 0;
}

/* bpf_spin_lock/unlock: the lock field of a map value, exactly; one lock
 * at a time, released through the same value pointer. */
static int check_spin_lock(struct vctx *v, const struct proto *p, int regno)
{
    const struct reg *r = R(v, regno);
    if (r->type != PTR_MAP_VALUE)
        return reject(v, "R%d type=%s expected=map_value", regno, rtype_names[r->type]);
    const struct bpfg_verify_map *m = &v->env->maps[r->map];
    if (!m->spin_lock)
        return reject(v, "map %u: its value has no struct bpf_spin_lock (BTF)", r->map);
    if (!tnum_is_const(r->var) || r->off + (int64_t)r->var.value != (int64_t)m->spin_lock - 1)
        return reject(v, "R%d does not point at the value's bpf_spin_lock (offset %u)", regno, m->spin_lock - 1);
    struct state *s = v->cur;
    if (p->id == BPF_FUNC_spin_lock) {
        if (s->lock_map)
            return reject(v, "Locking two bpf_spin_locks are not allowed");
        s->lock_map = r->map + 1;
        s->lock_id = r->id;
        return 0;
    }
    if (!s->lock_map)
        return reject(v, "bpf_spin_unlock without taking a lock");
    if (s->lock_map != r->map + 1 || s->lock_id != r->id)
        return reject(v, "bpf_spin_unlock of different lock");
    s->lock_map = 0;
    s->lock_id = 0;
    return 0;
}

static bool in_callback(const struct vctx *v)
{
    for (int i = 0; i < v->cur->nframes; i++)
        if (v->cur->fr[i]->callback)
            return true;
    return false;
}

/* What a callback may have written through its ctx is unknown to every
 * later reader: the frame keeps which bytes were written, not their types. */
static void havoc_frame(struct frame *f)
{
    for (int i = 0; i < EBPF_STACK_SIZE; i++)
        if (f->stype[i] == STK_SPILL || f->stype[i] == STK_ZERO)
            f->stype[i] = STK_MISC;
}

/* The callback's arguments as the helper passes them. */
static void callback_args(const struct proto *p, int map, const struct frame *caller, struct frame *cb)
{
    struct reg ctx = caller->regs[3];
    if (p->id == BPF_FUNC_loop) {
        mark_unknown(&cb->regs[1]); /* the index: 0 .. BPF_MAX_LOOPS-1 */
        cb->regs[1].umax = (1u << 23) - 1;
        sync_bounds(&cb->regs[1]);
        cb->regs[2] = ctx;
        return;
    }
    mark_ptr(&cb->regs[1], CONST_MAP);
    cb->regs[1].map = (uint32_t)map;
    mark_ptr(&cb->regs[2], PTR_MAP_KEY);
    cb->regs[2].map = (uint32_t)map;
    mark_ptr(&cb->regs[3], PTR_MAP_VALUE);
    cb->regs[3].map = (uint32_t)map;
    cb->regs[4] = ctx;
}

/* bpf_loop, bpf_for_each_map_elem: the callback is checked as a call from
 * here with the helper's arguments, and returns to after the helper. It
 * may run any number of times (zero too), so the frame its ctx points
 * into is havocked before and after it: a sound fixpoint in one pass. */
static int push_callback(struct vctx *v, const struct proto *p, int map)
{
    struct state *s = v->cur;
    struct frame *caller = curf(v);
    /* the engines run a callback through one more frame (jit/callbacks.c) */
    if (s->nframes + 2 > EBPF_MAX_CALL_DEPTH)
        return reject(v, "the call stack of %d frames is too deep", s->nframes + 2);
    if (s->nrefs)
        return reject(v, "bpf_%s while a ring buffer record is held", p->name);
    struct frame *cb = frame_new();
    if (!cb)
        return -ENOMEM;
    int target = caller->regs[2].off;
    cb->callsite = v->insn;
    cb->subprog = v->subprog_of[target];
    cb->callback = p->id;
    cb->cb_ctx_frame = caller->regs[3].type == PTR_STACK ? caller->regs[3].frameno : -1;
    if (cb->cb_ctx_frame >= 0)
        havoc_frame(s->fr[cb->cb_ctx_frame]);
    callback_args(p, map, caller, cb);
    mark_ptr(&cb->regs[BPF_REG_10], PTR_STACK);
    cb->regs[BPF_REG_10].frameno = (uint8_t)s->nframes;
    s->fr[s->nframes++] = cb;
    v->insn = target;
    return 0;
}

/* A callback's exit: back after the helper, whose result is a count or an
 * error. */
static int callback_exit(struct vctx *v)
{
    struct state *s = v->cur;
    struct frame *f = curf(v);
    const struct reg *r0 = &f->regs[0];
    if (r0->type != SCALAR || r0->umax > 1)
        return reject(v, "callback of bpf_%s must return 0 or 1 (R0 %s)",
                      f->callback == BPF_FUNC_loop ? "loop" : "for_each_map_elem", rtype_names[r0->type]);
    if (s->nrefs)
        return reject(v, "Unreleased reference id=%u alloc_insn=%d in a callback", s->refs[0], s->ref_insn[0]);
    int callsite = f->callsite, ctx_frame = f->cb_ctx_frame;
    free(f);
    s->fr[--s->nframes] = NULL;
    if (ctx_frame >= 0)
        havoc_frame(s->fr[ctx_frame]);
    struct frame *caller = curf(v);
    mark_unknown(&caller->regs[0]);
    for (int i = 1; i <= 5; i++)
        memset(&caller->regs[i], 0, sizeof(struct reg));
    v->insn = callsite + 1;
    return 0;
}

static int do_helper_call(struct vctx *v, const struct bpf_insn *in)
{
    const struct proto *p = find_proto(in->imm);
    size_t nnames = sizeof(kernel_helper_names) / sizeof(kernel_helper_names[0]);
    if (!p && in->imm > 0 && (size_t)in->imm < nnames && kernel_helper_names[in->imm]) {
        v->res->kernel_helper = in->imm;
        return reject(v, "invalid func unknown#%d (bpf_%s: a kernel helper bpfgraft does not provide in userspace)",
                      in->imm, kernel_helper_names[in->imm]);
    }
    if (!p)
        return reject(v, "invalid func unknown#%d", in->imm);
    if (p->id == BPF_FUNC_probe_write_user && !v->env->allow_probe_write_user)
        return reject(v, "program of this type cannot use helper bpf_probe_write_user#%d (not enabled)", p->id);
    /* Overriding means skipping a call: a function entry (uprobe) or a
     * syscall about to run (sys_enter, raw or not). Return probes and
     * sys_exit come too late. */
    bool can_override = v->env->kind == BPFG_VERIFY_UPROBE || v->env->kind == BPFG_VERIFY_SYSCALL_ENTER ||
                        v->env->kind == BPFG_VERIFY_RAW_TP;
    if (p->id == BPF_FUNC_override_return && (!v->env->allow_override_return || !can_override))
        return reject(
            v,
            "program of this type cannot use helper bpf_override_return#%d (uprobes and sys_enter only, when enabled)",
            p->id);
    if (p->id == BPF_FUNC_get_func_ip && v->env->kind != BPFG_VERIFY_UPROBE && v->env->kind != BPFG_VERIFY_URETPROBE)
        return reject(v, "program of this type cannot use helper bpf_get_func_ip#%d", p->id);
    if (p->id == BPF_FUNC_get_func_arg && v->env->kind != BPFG_VERIFY_UPROBE)
        return reject(v,
                      "program of this type cannot use helper bpf_get_func_arg#%d (uprobes only: arguments are "
                      "in registers at a function's entry)",
                      p->id);
    if (p->id == BPF_FUNC_get_func_ret && v->env->kind != BPFG_VERIFY_URETPROBE)
        return reject(v, "program of this type cannot use helper bpf_get_func_ret#%d (uretprobes only)", p->id);
    if (p->id == BPF_FUNC_tail_call && in_callback(v))
        return reject(v, "tail_call is not allowed inside a callback");
    if (v->cur->lock_map && p->id != BPF_FUNC_spin_unlock && p->id != BPF_FUNC_spin_lock)
        return reject(v, "function calls are not allowed while holding a lock (bpf_%s)", p->name);

    int map = -1;
    uint64_t alloc_size = 0;
    uint32_t release = 0;
    int err;
    for (int a = 0; a < 5 && p->args[a] != A_NONE; a++) {
        int regno = a + 1;
        struct reg *r = R(v, regno);
        enum arg kind = p->args[a];
        if (r->type == NOT_INIT)
            return reject(v, "R%d !read_ok", regno);
        switch (kind) {
        case A_ANY: break;
        case A_MAP:
            if (r->type != CONST_MAP)
                return reject(v, "R%d type=%s expected=map_ptr", regno, rtype_names[r->type]);
            map = (int)r->map;
            if ((err = check_map_func(v, p, r->map)))
                return err;
            break;
        case A_KEY:
        case A_VALUE:
        case A_UNINIT_VALUE: {
            if (map < 0)
                return reject(v, "invalid map_ptr to access map->%s", kind == A_KEY ? "key" : "value");
            const struct bpfg_verify_map *m = &v->env->maps[map];
            if (r->type != PTR_STACK && r->type != PTR_MAP_VALUE && !(r->type == PTR_MAP_KEY && kind == A_KEY))
                return reject(v, "R%d type=%s expected=fp, map_value", regno, rtype_names[r->type]);
            if ((err = check_helper_mem(v, regno, kind == A_KEY ? m->key_size : m->value_size, kind == A_UNINIT_VALUE,
                                        false)))
                return err;
            break;
        }
        case A_MEM:
        case A_MEM_OR_NULL:
        case A_UNINIT_MEM:
        case A_OUT_MEM_OR_NULL:
            if ((kind == A_MEM_OR_NULL || kind == A_OUT_MEM_OR_NULL) && reg_is_const(r) && r->var.value == 0)
                break; /* NULL: the size must be 0, checked with the size */
            if (r->type != PTR_STACK && r->type != PTR_MAP_VALUE && r->type != PTR_MEM &&
                !(r->type == PTR_MAP_KEY && kind == A_MEM))
                return reject(v, "R%d type=%s expected=fp, map_value, ringbuf_mem", regno, rtype_names[r->type]);
            break;
        case A_SIZE:
        case A_SIZE0: {
            if (r->type != SCALAR)
                return reject(v, "R%d type=%s expected=scalar", regno, rtype_names[r->type]);
            struct reg *mem = R(v, regno - 1);
            enum arg mk = p->args[a - 1];
            if (r->smin < 0)
                return reject(v, "R%d min value is negative, either use unsigned or 'var &= const'", regno);
            if (r->umin == 0 && kind == A_SIZE)
                return reject(v, "invalid zero-sized read");
            if (r->umax >= MAX_VAR_OFF)
                return reject(v, "R%d unbounded memory access, use 'var &= const' or 'if (var < const)'", regno);
            if ((mk == A_MEM_OR_NULL || mk == A_OUT_MEM_OR_NULL) && reg_is_const(mem) && mem->var.value == 0) {
                if (r->umax != 0)
                    return reject(v, "R%d is NULL but R%d size may be non-zero", regno - 1, regno);
                break;
            }
            if (is_mem_arg(mk) &&
                (err = check_helper_mem(v, regno - 1, r->umax, mk == A_UNINIT_MEM || mk == A_OUT_MEM_OR_NULL,
                                        kind == A_SIZE0)))
                return err;
            break;
        }
        case A_CTX:
            if (r->type != PTR_CTX)
                return reject(v, "R%d type=%s expected=ctx", regno, rtype_names[r->type]);
            if (r->off || !tnum_is_const(r->var) || r->var.value)
                return reject(v, "dereference of modified ctx ptr R%d off=%d disallowed", regno, r->off);
            break;
        case A_ALLOC_SIZE:
            if (!reg_is_const(r))
                return reject(v, "R%d is not a known constant'", regno);
            alloc_size = r->var.value;
            if (alloc_size >= MAX_VAR_OFF)
                return reject(v, "R%d unbounded memory access", regno);
            break;
        case A_RINGBUF_REL:
            if (r->type != PTR_MEM)
                return reject(v, "R%d type=%s expected=ringbuf_mem", regno, rtype_names[r->type]);
            if (r->off || !tnum_is_const(r->var) || r->var.value)
                return reject(v, "R%d must have zero offset when passed to release func", regno);
            release = r->ref;
            break;
        case A_LONG_OUT:
            if (r->type != PTR_STACK && r->type != PTR_MAP_VALUE)
                return reject(v, "R%d type=%s expected=fp, map_value", regno, rtype_names[r->type]);
            if (!tnum_is_const(r->var) || (r->off + (int64_t)r->var.value) % 8)
                return reject(v, "R%d: a u64 the helper writes must be 8-byte aligned at a constant offset", regno);
            if ((err = check_helper_mem(v, regno, 8, true, false)))
                return err;
            break;
        case A_FUNC:
            if (r->type != PTR_FUNC)
                return reject(v, "R%d type=%s expected=func", regno, rtype_names[r->type]);
            break;
        case A_STACK_OR_NULL:
            if (r->type != PTR_STACK && !(reg_is_const(r) && r->var.value == 0))
                return reject(v, "R%d type=%s expected=fp or NULL", regno, rtype_names[r->type]);
            break;
        case A_SPIN_LOCK:
            if ((err = check_spin_lock(v, p, regno)))
                return err;
            break;
        case A_CONST_STR: {
            if (r->type != PTR_MAP_VALUE)
                return reject(v, "R%d type=%s expected=map_value", regno, rtype_names[r->type]);
            const struct bpfg_verify_map *m = &v->env->maps[r->map];
            if (!(m->flags & BPF_F_RDONLY_PROG))
                return reject(v, "R%d does not point to a readonly map'", regno);
            if (!tnum_is_const(r->var))
                return reject(v, "R%d is not a constant address'", regno);
            int64_t o = r->off + (int64_t)r->var.value;
            if (o < 0 || o >= m->value_size)
                return reject(v, "invalid access to map value, value_size=%u off=%" PRId64 " size=1", m->value_size, o);
            if (m->data) {
                const char *s = (const char *)m->data + o;
                if (o >= (int64_t)m->data_size || !memchr(s, 0, m->data_size - (size_t)o))
                    return reject(v, "string is not zero-terminated");
            }
            break;
        }
        default: break;
        }
    }

    if (p->id == BPF_FUNC_tail_call && v->cur->nrefs)
        return reject(v, "tail_call would lead to reference leak");
    if (p->id == BPF_FUNC_loop || p->id == BPF_FUNC_for_each_map_elem)
        return push_callback(v, p, map);
    if (release && (err = release_ref(v, release)))
        return err;

    /* clobber r1-r5, set r0 */
    struct frame *f = curf(v);
    uint64_t ret_max = 0;
    if (p->ret_le_size) {
        struct reg *sz = &f->regs[p->ret_le_size];
        ret_max = sz->umax;
    }
    for (int i = 1; i <= 5; i++)
        memset(&f->regs[i], 0, sizeof(struct reg));
    struct reg *r0 = &f->regs[0];
    switch (p->ret) {
    case RET_VOID: memset(r0, 0, sizeof(*r0)); break;
    case RET_INT:
        mark_unknown(r0);
        if (p->ret_le_size) {
            r0->smax = (int64_t)ret_max;
            sync_bounds(r0);
        }
        if (p->id == BPF_FUNC_get_smp_processor_id || p->id == BPF_FUNC_get_prandom_u32) {
            r0->umax = U32_MAX;
            sync_bounds(r0);
        }
        break;
    case RET_MAP_VALUE_OR_NULL:
        if (map_type_ok_for_value(v->env->maps[map].type))
            return reject(v, "cannot look up values of a %s map", map_type_ok_for_value(v->env->maps[map].type));
        if (v->env->maps[map].type == BPF_MAP_TYPE_ARRAY_OF_MAPS || v->env->maps[map].type == BPF_MAP_TYPE_HASH_OF_MAPS)
            return ret_inner_map(v, r0, (uint32_t)map);
        mark_ptr(r0, PTR_MAP_VALUE_OR_NULL);
        r0->map = (uint32_t)map;
        r0->id = ++v->next_id;
        break;
    case RET_RINGBUF_OR_NULL:
        mark_ptr(r0, PTR_MEM_OR_NULL);
        r0->mem_size = (uint32_t)alloc_size;
        r0->id = ++v->next_id;
        r0->ref = r0->id;
        if ((err = state_add_ref(v, r0->ref)))
            return err;
        break;
    }
    return 0;
}

/* ------------------------------------------------------ calls and exit */

static int do_local_call(struct vctx *v, const struct bpf_insn *in)
{
    struct state *s = v->cur;
    if (s->nframes >= EBPF_MAX_CALL_DEPTH)
        return reject(v, "the call stack of %d frames is too deep", s->nframes + 1);
    if (s->lock_map)
        return reject(v, "function calls are not allowed while holding a lock");
    int target = v->insn + in->imm + 1;
    struct frame *caller = curf(v);
    struct frame *callee = frame_new();
    if (!callee)
        return -ENOMEM;
    callee->callsite = v->insn;
    callee->subprog = v->subprog_of[target];
    for (int i = 1; i <= 5; i++)
        callee->regs[i] = caller->regs[i];
    mark_ptr(&callee->regs[BPF_REG_10], PTR_STACK);
    callee->regs[BPF_REG_10].frameno = (uint8_t)s->nframes;
    s->fr[s->nframes++] = callee;
    /* the caller's r1-r5 are the callee's now; in the caller they are gone
     * once the call returns */
    v->insn = target;
    return 0;
}

static int check_exit(struct vctx *v, bool *path_done)
{
    struct state *s = v->cur;
    struct frame *f = curf(v);
    *path_done = false;
    if (f->regs[0].type == NOT_INIT)
        return reject(v, "R0 !read_ok");
    if (s->lock_map)
        return reject(v, "bpf_spin_unlock is missing");
    if (f->callback)
        return callback_exit(v);
    if (s->nframes > 1) {
        struct reg r0 = f->regs[0];
        if (r0.type == PTR_STACK && r0.frameno == s->nframes - 1)
            return reject(v, "cannot return stack pointer to the caller");
        int callsite = f->callsite;
        free(f);
        s->fr[--s->nframes] = NULL;
        struct frame *caller = curf(v);
        caller->regs[0] = r0;
        for (int i = 1; i <= 5; i++)
            memset(&caller->regs[i], 0, sizeof(struct reg));
        v->insn = callsite + 1;
        return 0;
    }
    if (s->nrefs)
        return reject(v, "Unreleased reference id=%u alloc_insn=%d", s->refs[0], s->ref_insn[0]);
    *path_done = true;
    return 0;
}

/* --------------------------------------------------- conditional jumps */

/* 1 taken, 0 not taken, -1 unknown; a op b for scalars. */
static int branch_taken(const struct reg *a, const struct reg *b, uint8_t op)
{
    switch (op) {
    case BPF_JEQ:
        if (tnum_is_const(a->var) && tnum_is_const(b->var))
            return a->var.value == b->var.value;
        if (a->umin > b->umax || a->umax < b->umin || a->smin > b->smax || a->smax < b->smin)
            return 0;
        if ((a->var.value ^ b->var.value) & ~(a->var.mask | b->var.mask))
            return 0;
        return -1;
    case BPF_JNE: {
        int t = branch_taken(a, b, BPF_JEQ);
        return t < 0 ? t : !t;
    }
    case BPF_JGT:
        if (a->umin > b->umax)
            return 1;
        if (a->umax <= b->umin)
            return 0;
        return -1;
    case BPF_JGE:
        if (a->umin >= b->umax)
            return 1;
        if (a->umax < b->umin)
            return 0;
        return -1;
    case BPF_JLT: return branch_taken(b, a, BPF_JGT);
    case BPF_JLE: return branch_taken(b, a, BPF_JGE);
    case BPF_JSGT:
        if (a->smin > b->smax)
            return 1;
        if (a->smax <= b->smin)
            return 0;
        return -1;
    case BPF_JSGE:
        if (a->smin >= b->smax)
            return 1;
        if (a->smax < b->smin)
            return 0;
        return -1;
    case BPF_JSLT: return branch_taken(b, a, BPF_JSGT);
    case BPF_JSLE: return branch_taken(b, a, BPF_JSGE);
    case BPF_JSET:
        if (tnum_is_const(b->var) && (a->var.value & b->var.value))
            return 1;
        if (!((a->var.value | a->var.mask) & (b->var.value | b->var.mask)))
            return 0;
        return -1;
    }
    return -1;
}

static uint8_t negate_op(uint8_t op)
{
    switch (op) {
    case BPF_JEQ: return BPF_JNE;
    case BPF_JNE: return BPF_JEQ;
    case BPF_JGT: return BPF_JLE;
    case BPF_JGE: return BPF_JLT;
    case BPF_JLT: return BPF_JGE;
    case BPF_JLE: return BPF_JGT;
    case BPF_JSGT: return BPF_JSLE;
    case BPF_JSGE: return BPF_JSLT;
    case BPF_JSLT: return BPF_JSGE;
    case BPF_JSLE: return BPF_JSGT;
    }
    return op;
}

static uint64_t umax2(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}
static uint64_t umin2(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}
static int64_t smax2(int64_t a, int64_t b)
{
    return a > b ? a : b;
}
static int64_t smin2(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* Refines a and b assuming "a op b" holds. Returns false if impossible. */
static bool refine(struct reg *a, struct reg *b, uint8_t op)
{
    switch (op) {
    case BPF_JEQ: {
        uint64_t lo = umax2(a->umin, b->umin), hi = umin2(a->umax, b->umax);
        int64_t slo = smax2(a->smin, b->smin), shi = smin2(a->smax, b->smax);
        struct tnum t = tnum_intersect(a->var, b->var);
        if ((a->var.value ^ b->var.value) & ~(a->var.mask | b->var.mask))
            return false;
        a->umin = b->umin = lo;
        a->umax = b->umax = hi;
        a->smin = b->smin = slo;
        a->smax = b->smax = shi;
        a->var = b->var = t;
        break;
    }
    case BPF_JNE:
        if (tnum_is_const(b->var)) {
            uint64_t c = b->var.value;
            if (a->umin == c) {
                if (c == UINT64_MAX)
                    return false;
                a->umin++;
            }
            if (a->umax == c) {
                if (c == 0)
                    return false;
                a->umax--;
            }
            if (a->smin == (int64_t)c) {
                if ((int64_t)c == S64_MAX)
                    return false;
                a->smin++;
            }
            if (a->smax == (int64_t)c) {
                if ((int64_t)c == S64_MIN)
                    return false;
                a->smax--;
            }
        }
        break;
    case BPF_JGT:
        if (b->umin == UINT64_MAX || a->umax == 0)
            return false;
        a->umin = umax2(a->umin, b->umin + 1);
        b->umax = umin2(b->umax, a->umax - 1);
        break;
    case BPF_JGE:
        a->umin = umax2(a->umin, b->umin);
        b->umax = umin2(b->umax, a->umax);
        break;
    case BPF_JLT: return refine(b, a, BPF_JGT);
    case BPF_JLE: return refine(b, a, BPF_JGE);
    case BPF_JSGT:
        if (b->smin == S64_MAX || a->smax == S64_MIN)
            return false;
        a->smin = smax2(a->smin, b->smin + 1);
        b->smax = smin2(b->smax, a->smax - 1);
        break;
    case BPF_JSGE:
        a->smin = smax2(a->smin, b->smin);
        b->smax = smin2(b->smax, a->smax);
        break;
    case BPF_JSLT: return refine(b, a, BPF_JSGT);
    case BPF_JSLE: return refine(b, a, BPF_JSGE);
    case BPF_JSET:
        if (tnum_is_const(b->var) && b->var.value && !(b->var.value & (b->var.value - 1)))
            a->var = tnum_or(a->var, b->var); /* that single bit is set */
        break;
    }
    sync_bounds(a);
    sync_bounds(b);
    return bounds_sane(a) && bounds_sane(b);
}

/* Refines for "!(a op b)"; JSET's negation clears the bits. */
static bool refine_not(struct reg *a, struct reg *b, uint8_t op)
{
    if (op == BPF_JSET) {
        if (tnum_is_const(b->var)) {
            a->var = tnum_and(a->var, tnum_const(~b->var.value));
            sync_bounds(a);
        }
        return bounds_sane(a);
    }
    return refine(a, b, negate_op(op));
}

struct null_mark {
    uint32_t id;
    bool is_null;
    const struct bpfg_verify_env *env;
};

static void mark_null_fn(struct reg *r, void *arg)
{
    struct null_mark *m = arg;
    if (!is_or_null(r) || r->id != m->id)
        return;
    if (m->is_null) {
        mark_const(r, 0);
        return;
    }
    bool keep_id = r->type == PTR_MAP_VALUE_OR_NULL && m->env->maps[r->map].spin_lock;
    r->type = r->type == PTR_MAP_VALUE_OR_NULL ? PTR_MAP_VALUE : r->type == CONST_MAP_OR_NULL ? CONST_MAP : PTR_MEM;
    if (!keep_id) /* a lock is released through the pointer it was taken by */
        r->id = 0;
}

static void mark_null(const struct vctx *v, struct state *s, uint32_t id, uint32_t ref, bool is_null)
{
    struct null_mark m = {id, is_null, v->env};
    for_each_reg(s, mark_null_fn, &m);
    if (is_null && ref) { /* a NULL record needs no release */
        for (int i = 0; i < s->nrefs; i++)
            if (s->refs[i] == ref) {
                s->refs[i] = s->refs[s->nrefs - 1];
                s->ref_insn[i] = s->ref_insn[s->nrefs - 1];
                s->nrefs--;
                break;
            }
    }
}

static int push_state(struct vctx *v, int insn, struct state **out)
{
    if (v->npending >= MAX_PENDING) {
        v->res->err = -E2BIG;
        return reject(v, "The sequence of %d jumps is too complex.", v->npending);
    }
    if (v->npending == v->cap_pending) {
        int nc = v->cap_pending ? v->cap_pending * 2 : 64;
        struct state **np = realloc(v->pending, sizeof(*np) * (size_t)nc);
        if (!np)
            return -ENOMEM;
        v->pending = np;
        v->cap_pending = nc;
    }
    struct state *s = state_dup(v->cur);
    if (!s)
        return -ENOMEM;
    s->insn = insn;
    v->pending[v->npending++] = s;
    if ((uint32_t)v->npending > v->res->peak_pending)
        v->res->peak_pending = (uint32_t)v->npending;
    if (s->parent)
        s->parent->branches++;
    *out = s;
    return 0;
}

static void drop_pending_top(struct vctx *v)
{
    struct state *s = v->pending[--v->npending];
    if (s->parent)
        s->parent->branches--; /* never explored: not a live path */
    state_free(s);
}

/* Conditional jump: decides or refines, pushes the other side if both are
 * possible. On return v->insn is where the current path goes next, or -2
 * when the path is infeasible. */
static int do_cond_jmp(struct vctx *v, const struct bpf_insn *in)
{
    bool is32 = ebpf_class(in->code) == BPF_JMP32;
    uint8_t op = in->code & 0xf0;
    int target = jump_target(in, v->insn), fall = v->insn + 1;
    int err;
    if ((err = check_reg_read(v, in->dst_reg)))
        return err;
    if ((in->code & BPF_X) && (err = check_reg_read(v, in->src_reg)))
        return err;
    struct reg *a = R(v, in->dst_reg);
    struct reg bimm;
    struct reg *b;
    if (in->code & BPF_X) {
        b = R(v, in->src_reg);
    } else {
        mark_const(&bimm, is32 ? (uint32_t)in->imm : (uint64_t)(int64_t)in->imm);
        b = &bimm;
    }

    int taken = -1;
    bool can_refine = false;
    if (is_ptr(a) || is_ptr(b)) {
        struct reg *p = is_ptr(a) ? a : b, *o = is_ptr(a) ? b : a;
        bool vs_zero = !is_ptr(o) && reg_is_const(o) && o->var.value == 0;
        if (is_or_null(p) && vs_zero && !is32 && (op == BPF_JEQ || op == BPF_JNE)) {
            /* NULL check: the == side sees NULL, the != side the object */
            uint32_t id = p->id, ref = p->ref;
            struct state *other;
            int null_insn = op == BPF_JEQ ? target : fall, obj_insn = op == BPF_JEQ ? fall : target;
            if ((err = push_state(v, null_insn, &other)))
                return err;
            mark_null(v, other, id, ref, true);
            mark_null(v, v->cur, id, ref, false);
            v->insn = obj_insn;
            return 0;
        }
        if (!is_or_null(p) && p->type != SCALAR && vs_zero && !is32 && (op == BPF_JEQ || op == BPF_JNE))
            taken = op == BPF_JNE; /* a valid pointer is never NULL */
    } else if (!is32) {
        taken = branch_taken(a, b, op);
        can_refine = true;
    } else {
        /* 32-bit compare: exact on values known to fit in 32 bits */
        struct reg a32 = *a, b32 = *b;
        trunc32(&a32);
        trunc32(&b32);
        bool sgn = op == BPF_JSGT || op == BPF_JSGE || op == BPF_JSLT || op == BPF_JSLE;
        bool fits = sgn ? a->umax <= (uint64_t)INT32_MAX && b->umax <= (uint64_t)INT32_MAX
                        : a->umax <= U32_MAX && b->umax <= U32_MAX;
        if (fits) {
            taken = branch_taken(a, b, op);
            can_refine = true;
        } else if (!sgn) {
            taken = branch_taken(&a32, &b32, op);
        } else if (a32.umax <= (uint64_t)INT32_MAX && b32.umax <= (uint64_t)INT32_MAX) {
            taken = branch_taken(&a32, &b32, op);
        }
    }
    if (taken == 1) {
        v->insn = target;
        return 0;
    }
    if (taken == 0) {
        v->insn = fall;
        return 0;
    }
    if (!can_refine || ((in->code & BPF_X) && in->dst_reg == in->src_reg)) {
        struct state *other;
        if ((err = push_state(v, target, &other)))
            return err;
        v->insn = fall;
        return 0;
    }
    /* explore the taken side later, refined; the fall-through side now */
    struct state *other;
    if ((err = push_state(v, target, &other)))
        return err;
    struct frame *of = other->fr[other->nframes - 1];
    struct reg *oa = &of->regs[in->dst_reg];
    struct reg *ob = (in->code & BPF_X) ? &of->regs[in->src_reg] : &bimm;
    struct reg bsave = bimm;
    bool ok_taken = refine(oa, ob, op);
    bimm = bsave;
    if (!ok_taken)
        drop_pending_top(v);
    bool ok_fall = refine_not(a, b, op);
    v->insn = ok_fall ? fall : -2;
    return 0;
}

/* ------------------------------------------------------------- pruning */

struct idmap {
    uint32_t old[64], cur[64];
    int n;
};

static bool check_ids(struct idmap *m, uint32_t old, uint32_t cur)
{
    if (!old && !cur)
        return true;
    if (!old || !cur)
        return false;
    for (int i = 0; i < m->n; i++) {
        if (m->old[i] == old)
            return m->cur[i] == cur;
        if (m->cur[i] == cur)
            return false;
    }
    if (m->n == 64)
        return false;
    m->old[m->n] = old;
    m->cur[m->n++] = cur;
    return true;
}

static bool range_within(const struct reg *old, const struct reg *cur)
{
    return old->umin <= cur->umin && old->umax >= cur->umax && old->smin <= cur->smin && old->smax >= cur->smax &&
           tnum_in(old->var, cur->var);
}

static bool same_range(const struct reg *old, const struct reg *cur)
{
    return old->umin == cur->umin && old->umax == cur->umax && old->smin == cur->smin && old->smax == cur->smax &&
           old->var.value == cur->var.value && old->var.mask == cur->var.mask;
}

/* Whatever was safe for old is safe for cur (exact: they are the same). */
static bool regsafe(const struct reg *old, const struct reg *cur, struct idmap *m, bool exact)
{
    if (old->type == NOT_INIT && !exact)
        return true;
    if (old->type != cur->type)
        return false;
    switch (old->type) {
    case NOT_INIT: return true;
    case SCALAR: return exact ? same_range(old, cur) : range_within(old, cur);
    case PTR_CTX: return old->off == cur->off && (exact ? same_range(old, cur) : range_within(old, cur));
    case PTR_STACK:
        return old->off == cur->off && old->frameno == cur->frameno &&
               (exact ? same_range(old, cur) : range_within(old, cur));
    case CONST_MAP: return old->map == cur->map;
    case PTR_FUNC: return old->off == cur->off;
    case PTR_MAP_KEY:
        return old->map == cur->map && old->off == cur->off && (exact ? same_range(old, cur) : range_within(old, cur));
    case CONST_MAP_OR_NULL: return old->map == cur->map && check_ids(m, old->id, cur->id);
    case PTR_MAP_VALUE:
    case PTR_MAP_VALUE_OR_NULL:
    case PTR_MEM:
    case PTR_MEM_OR_NULL:
        if (old->off != cur->off || old->map != cur->map || old->mem_size != cur->mem_size)
            return false;
        if (exact ? !same_range(old, cur) : !range_within(old, cur))
            return false;
        return check_ids(m, old->id, cur->id) && check_ids(m, old->ref, cur->ref);
    }
    return false;
}

static bool stacksafe(const struct frame *old, const struct frame *cur, struct idmap *m, bool exact)
{
    for (int i = 0; i < EBPF_STACK_SIZE; i++) {
        uint8_t o = old->stype[i], c = cur->stype[i];
        if (o == STK_INVALID && !exact)
            continue;
        if (o == STK_SPILL && c == STK_SPILL) {
            if (i % 8 == 0 && !regsafe(&old->spill[i / 8], &cur->spill[i / 8], m, exact))
                return false;
            continue;
        }
        if (o == c)
            continue;
        if (exact)
            return false;
        if (o == STK_MISC && (c == STK_ZERO || (c == STK_SPILL && cur->spill[i / 8].type == SCALAR)))
            continue;
        if (o == STK_SPILL && old->spill[i / 8].type == SCALAR && !tnum_is_const(old->spill[i / 8].var) &&
            old->spill[i / 8].umin == 0 && old->spill[i / 8].umax == UINT64_MAX && (c == STK_MISC || c == STK_ZERO))
            continue;
        return false;
    }
    return true;
}

static bool states_equal(const struct state *old, const struct state *cur, bool exact)
{
    if (old->nframes != cur->nframes || old->nrefs != cur->nrefs || old->lock_map != cur->lock_map)
        return false;
    struct idmap m = {.n = 0};
    for (int f = 0; f < old->nframes; f++) {
        const struct frame *a = old->fr[f], *b = cur->fr[f];
        if (a->callsite != b->callsite || a->callback != b->callback || a->cb_ctx_frame != b->cb_ctx_frame)
            return false;
        for (int i = 0; i < EBPF_NREGS; i++)
            if (!regsafe(&a->regs[i], &b->regs[i], &m, exact))
                return false;
        if (!stacksafe(a, b, &m, exact))
            return false;
    }
    if (old->lock_map && !check_ids(&m, old->lock_id, cur->lock_id))
        return false;
    for (int i = 0; i < old->nrefs; i++) {
        bool found = false;
        for (int k = 0; k < m.n && !found; k++)
            found = m.old[k] == old->refs[i];
        if (!found)
            return false;
    }
    return true;
}

/* The path ended: branch counts of its stored ancestors go down. */
static void path_done(struct checkpoint *c)
{
    while (c) {
        if (--c->branches)
            break;
        c = c->st.parent;
    }
}

/* 1 when cur is covered by a completed stored state (prune), 0 to go on. */
static int is_state_visited(struct vctx *v, int insn)
{
    for (struct checkpoint *c = v->explored[insn]; c; c = c->next) {
        if (c->branches) {
            /* still being explored: cur is its descendant on a loop */
            if (states_equal(&c->st, v->cur, true))
                return reject(v, "infinite loop detected at insn %d", insn);
            continue;
        }
        if (states_equal(&c->st, v->cur, false))
            return 1;
    }
    if (v->nexplored[insn] >= MAX_STATES_PER_INSN)
        return 0;
    struct checkpoint *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    if (state_copy(&c->st, v->cur)) {
        free(c);
        return -ENOMEM;
    }
    c->branches = 1;
    c->st.parent = v->cur->parent;
    v->cur->parent = c;
    c->next = v->explored[insn];
    v->explored[insn] = c;
    v->nexplored[insn]++;
    v->res->states++;
    return 0;
}

/* ----------------------------------------------------------- main loop */

static uint32_t ctx_size_of(enum bpfg_verify_kind k)
{
    switch (k) {
    case BPFG_VERIFY_UPROBE:
    case BPFG_VERIFY_URETPROBE: return 168; /* struct pt_regs */
    case BPFG_VERIFY_SYSCALL_ENTER: return 16 + 6 * 8;
    case BPFG_VERIFY_SYSCALL_EXIT: return 24;
    case BPFG_VERIFY_RAW_TP: return 16;           /* u64 args[2] */
    case BPFG_VERIFY_PERF_EVENT: return 168 + 16; /* pt_regs, sample_period, addr */
    }
    return 0;
}

static int do_ld_imm64(struct vctx *v, const struct bpf_insn *in)
{
    int err;
    if ((err = check_reg_write(v, in->dst_reg)))
        return err;
    struct reg *d = R(v, in->dst_reg);
    if (in->src_reg == 0) {
        mark_const(d, (uint32_t)in->imm | ((uint64_t)(uint32_t)in[1].imm << 32));
        return 0;
    }
    if (in->src_reg == BPF_PSEUDO_FUNC) {
        mark_ptr(d, PTR_FUNC);
        d->off = v->insn + in->imm + 1; /* a subprogram start (check_static) */
        return 0;
    }
    if (in->src_reg != BPF_PSEUDO_MAP_IDX && in->src_reg != BPF_PSEUDO_MAP_IDX_VALUE)
        return reject(v, "unsupported lddw pseudo source %d (map references must be map indices)", in->src_reg);
    if (in->imm < 0 || (size_t)in->imm >= v->env->map_cnt)
        return reject(v, "map index %d out of range (%zu maps)", in->imm, v->env->map_cnt);
    const struct bpfg_verify_map *m = &v->env->maps[in->imm];
    if (in->src_reg == BPF_PSEUDO_MAP_IDX) {
        mark_ptr(d, CONST_MAP);
        d->map = (uint32_t)in->imm;
        return 0;
    }
    if (m->type != BPF_MAP_TYPE_ARRAY || m->max_entries != 1)
        return reject(v, "map %d: direct value access needs a single-entry array", in->imm);
    if (in[1].imm < 0 || (uint32_t)in[1].imm >= m->value_size)
        return reject(v, "direct value offset of %d is not allowed", in[1].imm);
    mark_ptr(d, PTR_MAP_VALUE);
    d->map = (uint32_t)in->imm;
    d->off = in[1].imm;
    return 0;
}

static int do_check(struct vctx *v)
{
    struct state *init = calloc(1, sizeof(*init));
    if (!init)
        return -ENOMEM;
    init->fr[0] = frame_new();
    if (!init->fr[0]) {
        free(init);
        return -ENOMEM;
    }
    init->nframes = 1;
    init->fr[0]->callsite = -1;
    mark_ptr(&init->fr[0]->regs[BPF_REG_1], PTR_CTX);
    mark_ptr(&init->fr[0]->regs[BPF_REG_10], PTR_STACK);
    v->cur = init;
    v->insn = 0;
    int err = 0;

    for (;;) {
        bool end = false;
        if (v->insn == -2) {
            end = true; /* infeasible branch */
        } else {
            if (++v->processed > COMPLEXITY_LIMIT) {
                err = reject(v, "BPF program is too large. Processed %d insn", COMPLEXITY_LIMIT);
                v->res->err = -E2BIG;
                break;
            }
            int i = v->insn;
            if (v->prune[i]) {
                int r = is_state_visited(v, i);
                if (r < 0) {
                    err = r;
                    break;
                }
                if (r == 1)
                    end = true;
            }
        }
        if (!end) {
            const struct bpf_insn *in = &v->insns[v->insn];
            uint8_t cls = ebpf_class(in->code), op = in->code & 0xf0;
            if (v->env->reached)
                v->env->reached[v->insn] = 1;
            int next = v->insn + 1;
            switch (cls) {
            case BPF_ALU:
            case BPF_ALU64:
                err = do_alu(v, in);
                v->insn = next;
                break;
            case BPF_LDX:
                err = do_ldx(v, in);
                v->insn = next;
                break;
            case BPF_ST:
            case BPF_STX:
                err = do_store(v, in);
                v->insn = next;
                break;
            case BPF_LD:
                err = do_ld_imm64(v, in);
                v->insn = v->insn + 2;
                break;
            default: /* JMP, JMP32 */
                if (op == BPF_JA) {
                    v->insn = jump_target(in, v->insn);
                } else if (op == BPF_CALL) {
                    if (in->src_reg == BPF_PSEUDO_CALL) {
                        err = do_local_call(v, in);
                    } else {
                        int at = v->insn;
                        err = do_helper_call(v, in);
                        if (v->insn == at) /* else it entered a callback */
                            v->insn = next;
                    }
                } else if (op == BPF_EXIT) {
                    err = check_exit(v, &end);
                } else {
                    err = do_cond_jmp(v, in);
                }
                break;
            }
            if (err)
                break;
        }
        if (!end)
            continue;
        path_done(v->cur->parent);
        state_free(v->cur);
        v->cur = NULL;
        if (!v->npending)
            break;
        v->cur = v->pending[--v->npending];
        v->insn = v->cur->insn;
    }
    return err;
}

static void vctx_free(struct vctx *v)
{
    state_free(v->cur);
    for (int i = 0; i < v->npending; i++)
        state_free(v->pending[i]);
    free(v->pending);
    if (v->explored)
        for (int i = 0; i < v->n; i++)
            for (struct checkpoint *c = v->explored[i], *nx; c; c = nx) {
                nx = c->next;
                state_release_frames(&c->st);
                free(c);
            }
    free(v->explored);
    free(v->nexplored);
    free(v->prune);
    free(v->subprog_of);
    free(v->subs);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int bpfg_verify(const struct bpf_insn *insns, size_t n, const struct bpfg_verify_env *env,
                struct bpfg_verify_result *res)
{
    uint64_t t0 = now_ns();
    memset(res, 0, sizeof(*res));
    res->kernel_verdict = 1;
    struct vctx v = {.insns = insns, .n = (int)n, .env = env, .res = res, .insn = -1};
    int err = 0;
    if (!n) {
        snprintf(res->msg, sizeof(res->msg), "empty program");
        err = -EINVAL;
        goto out;
    }
    if (n > 1000000) {
        snprintf(res->msg, sizeof(res->msg), "program of %zu insns is too large", n);
        err = -E2BIG;
        goto out;
    }
    v.ctx_size = ctx_size_of(env->kind);
    v.prune = calloc(n, sizeof(bool));
    v.subprog_of = calloc(n, sizeof(int));
    v.explored = calloc(n, sizeof(*v.explored));
    v.nexplored = calloc(n, sizeof(int));
    if (!v.prune || !v.subprog_of || !v.explored || !v.nexplored) {
        err = -ENOMEM;
        goto out;
    }
    if ((err = check_static(&v)))
        goto out;
    if ((err = do_check(&v)))
        goto out;
    if ((err = check_stack_total(&v)))
        goto out;
    if (env->kernel_check) {
        char kmsg[1024];
        res->kernel_verdict = bpfg_verify_kernel(insns, n, env, kmsg, sizeof(kmsg));
        if (res->kernel_verdict) {
            snprintf(res->msg, sizeof(res->msg), "rejected by the kernel verifier: %s", kmsg);
            err = -EINVAL;
        }
    }
out:
    if (err == -ENOMEM && !res->msg[0])
        snprintf(res->msg, sizeof(res->msg), "out of memory");
    if (err && !res->err)
        res->err = err; /* else -E2BIG, recorded where the limit hit */
    if (!err)
        res->err = 0;
    res->insns_processed = v.processed;
    vctx_free(&v);
    res->ok = !err;
    res->time_ns = now_ns() - t0;
    return err ? res->err : 0;
}

/* --------------------------------------------------- kernel cross-check */

static long sys_bpf(int cmd, union bpf_attr *attr, unsigned size)
{
    return syscall(__NR_bpf, cmd, attr, size);
}

int bpfg_verify_kernel(const struct bpf_insn *insns, size_t n, const struct bpfg_verify_env *env, char *msg,
                       size_t msglen)
{
    int *fds = calloc(env->map_cnt ? env->map_cnt : 1, sizeof(int));
    struct bpf_insn *copy = malloc(n * sizeof(*copy));
    bool want_log = msglen > 0;
    char *log = malloc(want_log ? 1 << 20 : 1);
    int err = 0;
    if (want_log)
        msg[0] = 0;
    if (!fds || !copy || !log) {
        if (want_log)
            snprintf(msg, msglen, "out of memory");
        err = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < env->map_cnt; i++)
        fds[i] = -1;
    for (size_t i = 0; i < env->map_cnt; i++) {
        const struct bpfg_verify_map *m = &env->maps[i];
        union bpf_attr a;
        memset(&a, 0, sizeof(a));
        a.map_type = m->type;
        a.key_size = m->key_size;
        a.value_size = m->value_size;
        a.max_entries = m->max_entries;
        a.map_flags = m->flags & ~(1U << 30); /* BPFG_F_GLOBAL_DATA is ours */
        if (m->type == BPF_MAP_TYPE_PERF_EVENT_ARRAY && !a.max_entries)
            a.max_entries = (uint32_t)sysconf(_SC_NPROCESSORS_CONF);
        fds[i] = (int)sys_bpf(BPF_MAP_CREATE, &a, sizeof(a));
        if (fds[i] < 0) {
            err = -errno;
            if (want_log)
                snprintf(msg, msglen, "map %zu: kernel map create failed: %s", i, strerror(errno));
            goto out;
        }
        if (m->data && (m->flags & BPF_F_RDONLY_PROG) && m->type == BPF_MAP_TYPE_ARRAY) {
            uint32_t zero = 0;
            memset(&a, 0, sizeof(a));
            a.map_fd = (uint32_t)fds[i];
            a.key = (uint64_t)(uintptr_t)&zero;
            a.value = (uint64_t)(uintptr_t)m->data;
            if (sys_bpf(BPF_MAP_UPDATE_ELEM, &a, sizeof(a)) == 0) {
                memset(&a, 0, sizeof(a));
                a.map_fd = (uint32_t)fds[i];
                sys_bpf(BPF_MAP_FREEZE, &a, sizeof(a));
            }
        }
    }
    memcpy(copy, insns, n * sizeof(*copy));
    for (size_t i = 0; i + 1 < n; i++) {
        if (!is_ldimm64(&copy[i]))
            continue;
        uint8_t s = copy[i].src_reg;
        if ((s == BPF_PSEUDO_MAP_IDX || s == BPF_PSEUDO_MAP_IDX_VALUE) && copy[i].imm >= 0 &&
            (size_t)copy[i].imm < env->map_cnt) {
            copy[i].src_reg = s == BPF_PSEUDO_MAP_IDX ? BPF_PSEUDO_MAP_FD : BPF_PSEUDO_MAP_VALUE;
            copy[i].imm = fds[copy[i].imm];
        }
        i++;
    }
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    switch (env->kind) {
    case BPFG_VERIFY_UPROBE:
    case BPFG_VERIFY_URETPROBE: a.prog_type = BPF_PROG_TYPE_KPROBE; break;
    case BPFG_VERIFY_SYSCALL_ENTER:
    case BPFG_VERIFY_SYSCALL_EXIT: a.prog_type = BPF_PROG_TYPE_TRACEPOINT; break;
    case BPFG_VERIFY_RAW_TP: a.prog_type = BPF_PROG_TYPE_RAW_TRACEPOINT; break;
    case BPFG_VERIFY_PERF_EVENT: a.prog_type = BPF_PROG_TYPE_PERF_EVENT; break;
    }
    a.insns = (uint64_t)(uintptr_t)copy;
    a.insn_cnt = (uint32_t)n;
    a.license = (uint64_t)(uintptr_t) "GPL";
    log[0] = 0;
    if (want_log) {
        a.log_buf = (uint64_t)(uintptr_t)log;
        a.log_size = 1 << 20;
        a.log_level = 1;
    }
    int fd = (int)sys_bpf(BPF_PROG_LOAD, &a, sizeof(a));
    if (fd >= 0) {
        close(fd);
        goto out;
    }
    err = -errno;
    if (!want_log)
        goto out;
    if (err == -ENOSPC) { /* log too small for a huge exploration: retry without */
        a.log_buf = 0;
        a.log_size = 0;
        a.log_level = 0;
        fd = (int)sys_bpf(BPF_PROG_LOAD, &a, sizeof(a));
        if (fd >= 0) {
            close(fd);
            err = 0;
            goto out;
        }
        err = -errno;
    }
    /* the reason is the last non-empty lines of the log */
    size_t len = strlen(log);
    while (len && log[len - 1] == '\n')
        log[--len] = 0;
    const char *tail = log;
    int lines = 0;
    for (size_t k = len; k > 0; k--)
        if (log[k - 1] == '\n' && ++lines == 2) {
            tail = log + k;
            break;
        }
    snprintf(msg, msglen, "%s%s", tail[0] ? tail : "", tail[0] ? "" : strerror(-err));
    for (char *c = msg; *c; c++)
        if (*c == '\n')
            *c = ' ';
out:
    if (fds)
        for (size_t i = 0; i < env->map_cnt; i++)
            if (fds[i] >= 0)
                close(fds[i]);
    free(fds);
    free(copy);
    free(log);
    return err;
}

/* 1 + offset of the struct bpf_spin_lock among the value's top-level
 * members (where the kernel looks for it), 0 if none. */
static uint32_t spin_lock_of(const struct btf *btf, uint32_t value_type_id)
{
    if (!btf || !value_type_id)
        return 0;
    int id = btf__resolve_type(btf, value_type_id);
    const struct btf_type *t = id > 0 ? btf__type_by_id(btf, (uint32_t)id) : NULL;
    if (!t || !btf_is_struct(t))
        return 0;
    const struct btf_member *mem = btf_members(t);
    for (uint16_t i = 0; i < btf_vlen(t); i++) {
        int mid = btf__resolve_type(btf, mem[i].type);
        const struct btf_type *mt = mid > 0 ? btf__type_by_id(btf, (uint32_t)mid) : NULL;
        if (mt && btf_is_struct(mt) && !strcmp(btf__name_by_offset(btf, mt->name_off), "bpf_spin_lock"))
            return btf_member_bit_offset(t, i) / 8 + 1;
    }
    return 0;
}

int bpfg_verify_env_for_prog(const struct bpfg_obj *obj, const struct bpfg_obj_prog *prog, struct bpfg_verify_env *env,
                             struct bpfg_verify_map **maps)
{
    memset(env, 0, sizeof(*env));
    *maps = NULL;
    bool tp = prog->prog_type == BPF_PROG_TYPE_TRACEPOINT;
    switch (prog->kind) {
    case BPFG_ATTACH_UPROBE: env->kind = BPFG_VERIFY_UPROBE; break;
    case BPFG_ATTACH_URETPROBE: env->kind = BPFG_VERIFY_URETPROBE; break;
    case BPFG_ATTACH_SYSCALL_ENTER: env->kind = BPFG_VERIFY_SYSCALL_ENTER; break;
    case BPFG_ATTACH_SYSCALL_EXIT: env->kind = BPFG_VERIFY_SYSCALL_EXIT; break;
    /* tracepoint/raw_syscalls/... gets the tracepoint record, raw_tp args[2] */
    case BPFG_ATTACH_RAW_SYSCALL_ENTER: env->kind = tp ? BPFG_VERIFY_SYSCALL_ENTER : BPFG_VERIFY_RAW_TP; break;
    case BPFG_ATTACH_RAW_SYSCALL_EXIT: env->kind = tp ? BPFG_VERIFY_SYSCALL_EXIT : BPFG_VERIFY_RAW_TP; break;
    case BPFG_ATTACH_TIMER: env->kind = BPFG_VERIFY_PERF_EVENT; break;
    default: return -EOPNOTSUPP;
    }
    if (!obj->map_cnt)
        return 0;
    /* map-in-map templates after the maps: index map_cnt + i for map i */
    struct bpfg_verify_map *m = calloc(2 * obj->map_cnt, sizeof(*m));
    if (!m)
        return -ENOMEM;
    for (size_t i = 0; i < obj->map_cnt; i++) {
        const struct bpfg_obj_map *om = &obj->maps[i];
        m[i].type = om->type;
        m[i].key_size = om->key_size;
        m[i].value_size = om->value_size;
        m[i].max_entries = om->max_entries;
        m[i].flags = om->flags;
        m[i].spin_lock = spin_lock_of(obj->btf, om->btf_value_type_id);
        if (om->kind == BPFG_MAP_RODATA || om->kind == BPFG_MAP_KCONFIG) {
            m[i].flags |= BPF_F_RDONLY_PROG;
            m[i].data = om->init_data;
            m[i].data_size = om->init_size;
        }
        if (om->type == BPF_MAP_TYPE_ARRAY_OF_MAPS || om->type == BPF_MAP_TYPE_HASH_OF_MAPS) {
            struct bpfg_verify_map *t = &m[obj->map_cnt + i];
            t->type = om->inner.type;
            t->key_size = om->inner.key_size;
            t->value_size = om->inner.value_size;
            t->max_entries = om->inner.max_entries;
            t->flags = om->inner.flags;
            m[i].inner = (uint32_t)(obj->map_cnt + i + 1);
        }
    }
    env->maps = m;
    env->map_cnt = obj->map_cnt;
    *maps = m;
    return 0;
}
