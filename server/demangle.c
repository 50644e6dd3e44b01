/* Rust demangling (demangle.h), after rustc-demangle's alternate form.
 *
 * Legacy: `_ZN` length-prefixed elements `E`, the last one the hash
 * `h<16 hex>` (which is how a Rust name is told from a C++ one), joined by
 * `::` without the hash, `$LT$`-style escapes and `..` decoded. v0
 * (RFC 2603): a recursive-descent printer of paths, types and consts,
 * crate disambiguators left out; punycode identifiers are not decoded
 * (the name stays mangled). Names come from the target's files: every
 * backreference must point before itself and recursion is bounded, so a
 * crafted name fails to parse instead of looping or overflowing. */
#include "demangle.h"

#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 64

struct out {
    char *s;
    size_t len, n; /* capacity (with the NUL), used */
    bool off;      /* printing suppressed (v0's impl paths) */
};

static void put(struct out *o, const char *p, size_t n)
{
    if (o->off)
        return;
    for (size_t i = 0; i < n && o->n + 1 < o->len; i++)
        o->s[o->n++] = p[i];
    o->s[o->n] = 0;
}

static void puts_(struct out *o, const char *p)
{
    put(o, p, strlen(p));
}

static void put_u64(struct out *o, uint64_t v)
{
    char b[24];
    size_t i = sizeof(b);
    do
        b[--i] = (char)('0' + v % 10);
    while ((v /= 10));
    put(o, b + i, sizeof(b) - i);
}

/* code point c as UTF-8 */
static void put_char(struct out *o, uint32_t c)
{
    char b[4];
    size_t n = c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4;
    static const uint8_t lead[] = {0, 0, 0xc0, 0xe0, 0xf0};
    for (size_t i = n; i-- > 1; c >>= 6)
        b[i] = (char)(0x80 | (c & 0x3f));
    b[0] = (char)(lead[n] | c);
    put(o, b, n);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* ---- legacy ---- */

static bool is_hash(const char *p, size_t n)
{
    if (n != 17 || p[0] != 'h')
        return false;
    for (size_t i = 1; i < n; i++)
        if (hexval(p[i]) < 0)
            return false;
    return true;
}

/* "$LT$" and the like at p (n bytes, p[0] == '$'): the bytes used, 0 for
 * an unknown escape. */
static size_t legacy_escape(struct out *o, const char *p, size_t n)
{
    static const char *const names[][2] = {{"SP", "@"}, {"BP", "*"}, {"RF", "&"}, {"LT", "<"},
                                           {"GT", ">"}, {"LP", "("}, {"RP", ")"}, {"C", ","}};
    const char *end = memchr(p + 1, '$', n - 1);
    if (!end)
        return 0;
    size_t k = (size_t)(end - p - 1);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strlen(names[i][0]) == k && memcmp(p + 1, names[i][0], k) == 0) {
            puts_(o, names[i][1]);
            return k + 2;
        }
    if (k < 2 || k > 7 || p[1] != 'u')
        return 0;
    uint32_t c = 0;
    for (size_t i = 2; i <= k; i++) {
        if (hexval(p[i]) < 0)
            return 0;
        c = c * 16 + (uint32_t)hexval(p[i]);
    }
    if (c > 0x10ffff || (c >= 0xd800 && c < 0xe000))
        return 0;
    put_char(o, c);
    return k + 2;
}

static void legacy_element(struct out *o, const char *p, size_t n)
{
    if (n >= 2 && p[0] == '_' && p[1] == '$')
        p++, n--;
    while (n) {
        size_t used = 1;
        if (p[0] == '.' && n >= 2 && p[1] == '.') {
            puts_(o, "::");
            used = 2;
        } else if (p[0] == '$' && (used = legacy_escape(o, p, n)) == 0) {
            put(o, p, n); /* as rustc-demangle: the rest as it is */
            return;
        } else if (p[0] != '$') {
            put(o, p, 1);
        }
        p += used, n -= used;
    }
}

/* The element at *p ("<decimal><bytes>"): its bytes, or false. */
static bool legacy_next(const char **p, const char **elem, size_t *n)
{
    size_t v = 0;
    const char *q = *p;
    if (*q < '1' || *q > '9')
        return false;
    while (*q >= '0' && *q <= '9' && v < 4096)
        v = v * 10 + (size_t)(*q++ - '0');
    if (v >= 4096 || strnlen(q, v) < v)
        return false;
    *elem = q;
    *n = v;
    *p = q + v;
    return true;
}

static bool legacy(const char *name, struct out *o)
{
    const char *p = strncmp(name, "_ZN", 3) == 0 ? name + 3 : strncmp(name, "__ZN", 4) == 0 ? name + 4 : NULL;
    const char *elem, *last = NULL;
    size_t n, last_n = 0, count = 0;
    for (const char *q = p; q && *q != 'E'; count++, last = elem, last_n = n)
        if (!legacy_next(&q, &elem, &n))
            return false;
    if (!p || !count || !is_hash(last, last_n) || (last[last_n + 1] && last[last_n + 1] != '.'))
        return false;
    for (size_t i = 0; i + 1 < count; i++) {
        legacy_next(&p, &elem, &n);
        if (i)
            puts_(o, "::");
        legacy_element(o, elem, n);
    }
    return true;
}

/* ---- v0 ---- */

struct v0 {
    const char *s; /* after "_R" */
    size_t n, pos;
    struct out *o;
    int depth;
    uint32_t binders; /* lifetimes bound so far (for 'a, 'b, ...) */
};

static char peek(const struct v0 *v)
{
    return v->pos < v->n ? v->s[v->pos] : 0;
}

static bool eat(struct v0 *v, char c)
{
    if (peek(v) != c || !c)
        return false;
    v->pos++;
    return true;
}

/* <base-62-number>: digits then "_" ("_" is 0, "0_" is 1, ...). */
static bool base62(struct v0 *v, uint64_t *x)
{
    uint64_t r = 0;
    if (eat(v, '_')) {
        *x = 0;
        return true;
    }
    for (char c; (c = peek(v)) != '_'; v->pos++) {
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'z' ? c - 'a' + 10
                : c >= 'A' && c <= 'Z' ? c - 'A' + 36
                                       : -1;
        if (d < 0 || r > (UINT64_MAX - 62) / 62)
            return false;
        r = r * 62 + (uint64_t)d;
    }
    v->pos++;
    *x = r + 1;
    return true;
}

/* [tag <base-62-number>]: 0 when absent, else the number + 1. */
static bool opt_base62(struct v0 *v, char tag, uint64_t *x)
{
    *x = 0;
    if (!eat(v, tag))
        return true;
    if (!base62(v, x))
        return false;
    (*x)++;
    return true;
}

/* <undisambiguated-identifier>, punycode refused. */
static bool ident(struct v0 *v, const char **p, size_t *n)
{
    size_t len = 0;
    if (peek(v) == 'u' || peek(v) < '0' || peek(v) > '9')
        return false;
    if (eat(v, '0'))
        len = 0;
    else
        while (peek(v) >= '0' && peek(v) <= '9' && len < 4096)
            len = len * 10 + (size_t)(v->s[v->pos++] - '0');
    eat(v, '_');
    if (len > v->n - v->pos)
        return false;
    *p = v->s + v->pos;
    *n = len;
    v->pos += len;
    return true;
}

static bool path(struct v0 *v, bool in_value);
static bool type(struct v0 *v);
static bool constant(struct v0 *v);

/* B <base-62-number> (the B read): moves to what it points at, strictly
 * backwards and within the depth bound; *back is where to come back to. */
static bool backref_enter(struct v0 *v, size_t *back)
{
    size_t at = v->pos - 1;
    uint64_t to;
    if (!base62(v, &to) || to >= at || v->depth >= MAX_DEPTH)
        return false;
    *back = v->pos;
    v->pos = (size_t)to;
    v->depth++;
    return true;
}

static bool backref_leave(struct v0 *v, size_t back, bool ok)
{
    v->depth--;
    v->pos = back;
    return ok;
}

/* B <base-62-number>: parse what it points at with fn, then come back. */
static bool backref(struct v0 *v, bool (*fn)(struct v0 *, bool), bool arg)
{
    size_t back;
    return backref_enter(v, &back) && backref_leave(v, back, fn(v, arg));
}

static bool type_fn(struct v0 *v, bool unused)
{
    (void)unused;
    return type(v);
}

static bool const_fn(struct v0 *v, bool unused)
{
    (void)unused;
    return constant(v);
}

static void lifetime_name(struct v0 *v, uint64_t lt)
{
    if (!lt) {
        puts_(v->o, "'_");
        return;
    }
    uint64_t depth = v->binders >= lt ? v->binders - lt : UINT64_MAX;
    char name[3] = {'\'', (char)('a' + depth), 0};
    if (depth < 26)
        puts_(v->o, name);
    else
        puts_(v->o, "'_");
}

static bool generic_arg(struct v0 *v)
{
    uint64_t lt;
    if (eat(v, 'L')) {
        if (!base62(v, &lt))
            return false;
        lifetime_name(v, lt);
        return true;
    }
    return eat(v, 'K') ? constant(v) : type(v);
}

/* {<generic-arg>} E, comma separated */
static bool generic_args(struct v0 *v)
{
    for (int i = 0; !eat(v, 'E'); i++) {
        if (i)
            puts_(v->o, ", ");
        if (!peek(v) || !generic_arg(v))
            return false;
    }
    return true;
}

static bool nested(struct v0 *v, bool in_value)
{
    char ns = peek(v);
    uint64_t dis;
    const char *name;
    size_t n;
    if (!((ns >= 'A' && ns <= 'Z') || (ns >= 'a' && ns <= 'z')))
        return false;
    v->pos++;
    if (!path(v, in_value) || !opt_base62(v, 's', &dis) || !ident(v, &name, &n))
        return false;
    if (ns >= 'a' && ns <= 'z') {
        if (n)
            puts_(v->o, "::");
        put(v->o, name, n);
        return true;
    }
    puts_(v->o, ns == 'C' ? "::{closure" : ns == 'S' ? "::{shim" : "::{");
    if (ns != 'C' && ns != 'S')
        put(v->o, &ns, 1);
    if (n) {
        puts_(v->o, ":");
        put(v->o, name, n);
    }
    puts_(v->o, "#");
    put_u64(v->o, dis);
    puts_(v->o, "}");
    return true;
}

/* M and X: the impl's own path is not printed, then <T> or <T as Trait>. */
static bool impl_path(struct v0 *v, char tag)
{
    uint64_t dis;
    bool off = v->o->off;
    v->o->off = true;
    bool ok = opt_base62(v, 's', &dis) && path(v, false);
    v->o->off = off;
    if (!ok)
        return false;
    puts_(v->o, "<");
    if (!type(v))
        return false;
    if (tag == 'X') {
        puts_(v->o, " as ");
        if (!path(v, false))
            return false;
    }
    puts_(v->o, ">");
    return true;
}

static bool path_body(struct v0 *v, bool in_value, char tag)
{
    uint64_t dis;
    const char *name;
    size_t n;
    switch (tag) {
    case 'C':
        if (!opt_base62(v, 's', &dis) || !ident(v, &name, &n))
            return false;
        put(v->o, name, n);
        return true;
    case 'M':
    case 'X': return impl_path(v, tag);
    case 'Y':
        puts_(v->o, "<");
        if (!type(v))
            return false;
        puts_(v->o, " as ");
        if (!path(v, false))
            return false;
        puts_(v->o, ">");
        return true;
    case 'N': return nested(v, in_value);
    case 'I':
        if (!path(v, in_value))
            return false;
        puts_(v->o, in_value ? "::<" : "<");
        if (!generic_args(v))
            return false;
        puts_(v->o, ">");
        return true;
    case 'B': return backref(v, path, in_value);
    default: return false;
    }
}

static bool path(struct v0 *v, bool in_value)
{
    if (v->depth >= MAX_DEPTH || v->pos >= v->n)
        return false;
    v->depth++;
    bool ok = path_body(v, in_value, v->s[v->pos++]);
    v->depth--;
    return ok;
}

static const char *basic_type(char c)
{
    static const char *const names[26] = {
        ['a' - 'a'] = "i8",  ['b' - 'a'] = "bool", ['c' - 'a'] = "char",  ['d' - 'a'] = "f64",   ['e' - 'a'] = "str",
        ['f' - 'a'] = "f32", ['h' - 'a'] = "u8",   ['i' - 'a'] = "isize", ['j' - 'a'] = "usize", ['l' - 'a'] = "i32",
        ['m' - 'a'] = "u32", ['n' - 'a'] = "i128", ['o' - 'a'] = "u128",  ['s' - 'a'] = "i16",   ['t' - 'a'] = "u16",
        ['u' - 'a'] = "()",  ['v' - 'a'] = "...",  ['x' - 'a'] = "i64",   ['y' - 'a'] = "u64",   ['z' - 'a'] = "!",
        ['p' - 'a'] = "_",
    };
    return c >= 'a' && c <= 'z' ? names[c - 'a'] : NULL;
}

/* [G <base-62-number>]: lifetimes a binder brings in (for<'a, ...>). */
static bool binder(struct v0 *v)
{
    uint64_t k;
    if (!opt_base62(v, 'G', &k))
        return false;
    if (k > 26)
        return false;
    if (k) {
        puts_(v->o, "for<");
        for (uint64_t i = 0; i < k; i++) {
            if (i)
                puts_(v->o, ", ");
            v->binders++;
            lifetime_name(v, 1);
        }
        puts_(v->o, "> ");
    }
    return true;
}

static bool fn_sig(struct v0 *v)
{
    uint32_t saved = v->binders;
    if (!binder(v))
        return false;
    if (eat(v, 'U'))
        puts_(v->o, "unsafe ");
    if (eat(v, 'K')) {
        const char *abi = "C";
        size_t n = 1;
        if (!eat(v, 'C') && !ident(v, &abi, &n))
            return false;
        puts_(v->o, "extern \"");
        for (size_t i = 0; i < n; i++)
            put(v->o, abi[i] == '_' ? "-" : abi + i, 1);
        puts_(v->o, "\" ");
    }
    puts_(v->o, "fn(");
    for (int i = 0; !eat(v, 'E'); i++) {
        if (i)
            puts_(v->o, ", ");
        if (!peek(v) || !type(v))
            return false;
    }
    puts_(v->o, ")");
    if (eat(v, 'u')) {
        v->binders = saved;
        return true;
    }
    puts_(v->o, " -> ");
    bool ok = type(v);
    v->binders = saved;
    return ok;
}

/* A dyn trait's path, its generic args left open when it has some: true
 * in *open. */
static bool dyn_trait_path(struct v0 *v, bool *open)
{
    if (eat(v, 'I')) {
        if (!path(v, false))
            return false;
        puts_(v->o, "<");
        *open = true;
        return generic_args(v);
    }
    if (peek(v) == 'B') {
        size_t back;
        v->pos++;
        return backref_enter(v, &back) && backref_leave(v, back, dyn_trait_path(v, open));
    }
    return path(v, false);
}

static bool dyn_trait(struct v0 *v)
{
    bool open = false;
    if (!dyn_trait_path(v, &open))
        return false;
    while (eat(v, 'p')) {
        const char *name;
        size_t n;
        puts_(v->o, open ? ", " : "<");
        open = true;
        if (!ident(v, &name, &n))
            return false;
        put(v->o, name, n);
        puts_(v->o, " = ");
        if (!type(v))
            return false;
    }
    if (open)
        puts_(v->o, ">");
    return true;
}

static bool dyn_bounds(struct v0 *v)
{
    uint32_t saved = v->binders;
    uint64_t lt;
    puts_(v->o, "dyn ");
    if (!binder(v))
        return false;
    for (int i = 0; !eat(v, 'E'); i++) {
        if (i)
            puts_(v->o, " + ");
        if (!peek(v) || !dyn_trait(v))
            return false;
    }
    v->binders = saved;
    if (!eat(v, 'L') || !base62(v, &lt))
        return false;
    if (lt) {
        puts_(v->o, " + ");
        lifetime_name(v, lt);
    }
    return true;
}

static bool ref_type(struct v0 *v, bool mut)
{
    uint64_t lt = 0;
    puts_(v->o, "&");
    if (eat(v, 'L')) {
        if (!base62(v, &lt))
            return false;
        if (lt) {
            lifetime_name(v, lt);
            puts_(v->o, " ");
        }
    }
    if (mut)
        puts_(v->o, "mut ");
    return type(v);
}

static bool tuple_type(struct v0 *v)
{
    int i = 0;
    puts_(v->o, "(");
    for (; !eat(v, 'E'); i++) {
        if (i)
            puts_(v->o, ", ");
        if (!peek(v) || !type(v))
            return false;
    }
    puts_(v->o, i == 1 ? ",)" : ")");
    return true;
}

static bool type_body(struct v0 *v, char tag)
{
    const char *basic = basic_type(tag);
    if (basic) {
        puts_(v->o, basic);
        return true;
    }
    switch (tag) {
    case 'R':
    case 'Q': return ref_type(v, tag == 'Q');
    case 'P':
    case 'O': puts_(v->o, tag == 'P' ? "*const " : "*mut "); return type(v);
    case 'A':
    case 'S':
        puts_(v->o, "[");
        if (!type(v))
            return false;
        if (tag == 'A') {
            puts_(v->o, "; ");
            if (!constant(v))
                return false;
        }
        puts_(v->o, "]");
        return true;
    case 'T': return tuple_type(v);
    case 'F': return fn_sig(v);
    case 'D': return dyn_bounds(v);
    case 'B': return backref(v, type_fn, false);
    default: v->pos--; return path(v, false);
    }
}

static bool type(struct v0 *v)
{
    if (v->depth >= MAX_DEPTH || v->pos >= v->n)
        return false;
    v->depth++;
    bool ok = type_body(v, v->s[v->pos++]);
    v->depth--;
    return ok;
}

/* <const-data> of an integer, bool or char type ty. */
static bool const_data(struct v0 *v, char ty)
{
    bool neg = eat(v, 'n');
    uint64_t x = 0;
    size_t digits = 0;
    for (int d; (d = hexval(peek(v))) >= 0; v->pos++, digits++) {
        if (x >> 60)
            return false; /* wider than 64 bits: not printed */
        x = x << 4 | (uint64_t)d;
    }
    if (!eat(v, '_') || (neg && !strchr("aslxin", ty)))
        return false;
    if (ty == 'b') {
        if (x > 1)
            return false;
        puts_(v->o, x ? "true" : "false");
    } else if (ty == 'c') {
        if (x > 0x10ffff || (x >= 0xd800 && x < 0xe000))
            return false;
        puts_(v->o, "'");
        put_char(v->o, (uint32_t)x);
        puts_(v->o, "'");
    } else {
        if (neg)
            puts_(v->o, "-");
        put_u64(v->o, x);
    }
    return digits > 0 || x == 0;
}

static bool constant(struct v0 *v)
{
    if (v->depth >= MAX_DEPTH || v->pos >= v->n)
        return false;
    char ty = v->s[v->pos++];
    if (ty == 'B')
        return backref(v, const_fn, false);
    if (ty == 'p') {
        puts_(v->o, "_");
        return true;
    }
    if (!strchr("hmtyjoaslxinbc", ty))
        return false;
    return const_data(v, ty);
}

static bool v0(const char *name, struct out *o)
{
    if (strncmp(name, "_R", 2) != 0)
        return false;
    struct v0 v = {.s = name + 2, .n = strlen(name + 2), .o = o};
    const char *dot = memchr(v.s, '.', v.n); /* a ".llvm.123" suffix */
    if (dot)
        v.n = (size_t)(dot - v.s);
    if (peek(&v) >= '0' && peek(&v) <= '9')
        return false; /* an encoding version: none is defined */
    if (!path(&v, true))
        return false;
    if (v.pos < v.n) { /* the instantiating crate, not printed */
        o->off = true;
        bool ok = path(&v, false);
        o->off = false;
        if (!ok)
            return false;
    }
    return v.pos == v.n;
}

bool rust_demangle(const char *name, char *out, size_t len)
{
    if (!len)
        return false;
    struct out o = {out, len, 0, false};
    out[0] = 0;
    if (legacy(name, &o))
        return true;
    o = (struct out){out, len, 0, false};
    out[0] = 0;
    return v0(name, &o);
}
