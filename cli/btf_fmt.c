/* Typed printing and parsing of map keys and values (see btf_fmt.h). */
#include "btf_fmt.h"

#include <bpf/btf.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NEST 32 /* BTF can describe silly depths; output stays bounded */

/* Skips typedefs, const/volatile/restrict and type tags. */
static const struct btf_type *resolve(const struct btf *btf, uint32_t *id)
{
    for (int i = 0; i < MAX_NEST; i++) {
        const struct btf_type *t = btf__type_by_id(btf, *id);
        if (!t)
            return NULL;
        if (!btf_is_mod(t) && !btf_is_typedef(t) && !btf_is_type_tag(t) && !btf_is_var(t))
            return t;
        *id = t->type;
    }
    return NULL;
}

/* Little-endian unsigned of nbits starting bit_off bits into data. */
static int read_bits(const uint8_t *data, size_t avail, uint32_t bit_off, uint32_t nbits, uint64_t *v)
{
    if (nbits == 0 || nbits > 64 || (size_t)bit_off + nbits > avail * 8)
        return -EINVAL;
    unsigned __int128 acc = 0;
    uint32_t first = bit_off / 8, last = (bit_off + nbits - 1) / 8;
    for (uint32_t i = last + 1; i-- > first;)
        acc = (acc << 8) | data[i];
    acc >>= bit_off % 8;
    *v = nbits == 64 ? (uint64_t)acc : (uint64_t)acc & ((1ull << nbits) - 1);
    return 0;
}

static bool is_char_type(const struct btf *btf, const struct btf_type *t)
{
    if (!btf_is_int(t) || t->size != 1)
        return false;
    const char *name = btf__name_by_offset(btf, t->name_off);
    return (btf_int_encoding(t) & BTF_INT_CHAR) || (name && strstr(name, "char"));
}

static int fmt_type(struct sbuf *sb, const struct btf *btf, uint32_t id, const uint8_t *data, size_t avail,
                    uint32_t bit_off, uint32_t bitfield, int depth);

static int fmt_int(struct sbuf *sb, const struct btf_type *t, const uint8_t *data, size_t avail, uint32_t bit_off,
                   uint32_t bitfield)
{
    uint8_t enc = btf_int_encoding(t);
    uint32_t nbits = bitfield ? bitfield : btf_int_bits(t);
    bit_off += btf_int_offset(t);
    if (nbits > 64) { /* __int128: hex, most significant byte first */
        if (bit_off % 8 || nbits % 8 || bit_off / 8 + nbits / 8 > avail)
            return -EINVAL;
        sbuf_puts(sb, "\"0x");
        for (uint32_t i = nbits / 8; i-- > 0;)
            sbuf_printf(sb, "%02x", data[bit_off / 8 + i]);
        sbuf_putc(sb, '"');
        return 0;
    }
    uint64_t v;
    if (read_bits(data, avail, bit_off, nbits, &v))
        return -EINVAL;
    if (enc & BTF_INT_BOOL) {
        sbuf_puts(sb, v ? "true" : "false");
    } else if ((enc & BTF_INT_SIGNED) && nbits < 64 && (v >> (nbits - 1)) & 1) {
        sbuf_printf(sb, "%" PRId64, (int64_t)(v | ~((1ull << nbits) - 1)));
    } else if (enc & BTF_INT_SIGNED) {
        sbuf_printf(sb, "%" PRId64, (int64_t)v);
    } else {
        sbuf_printf(sb, "%" PRIu64, v);
    }
    return 0;
}

static int fmt_enum(struct sbuf *sb, const struct btf *btf, const struct btf_type *t, const uint8_t *data, size_t avail,
                    uint32_t bit_off, uint32_t bitfield)
{
    uint32_t nbits = bitfield ? bitfield : t->size * 8;
    uint64_t v;
    if (read_bits(data, avail, bit_off, nbits, &v))
        return -EINVAL;
    uint16_t n = btf_vlen(t);
    for (uint16_t i = 0; i < n; i++) {
        uint64_t ev;
        uint32_t name_off;
        if (btf_is_enum(t)) {
            ev = (uint32_t)btf_enum(t)[i].val;
            name_off = btf_enum(t)[i].name_off;
        } else {
            ev = btf_enum64_value(&btf_enum64(t)[i]);
            name_off = btf_enum64(t)[i].name_off;
        }
        if (nbits < 64)
            ev &= (1ull << nbits) - 1;
        if (ev == v) {
            const char *name = btf__name_by_offset(btf, name_off);
            sbuf_json_str(sb, name ? name : "", name ? strlen(name) : 0);
            return 0;
        }
    }
    bool neg = btf_kflag(t) && nbits < 64 && (v >> (nbits - 1)) & 1;
    if (neg)
        sbuf_printf(sb, "%" PRId64, (int64_t)(v | ~((1ull << nbits) - 1)));
    else
        sbuf_printf(sb, "%" PRIu64, v);
    return 0;
}

static int fmt_array(struct sbuf *sb, const struct btf *btf, const struct btf_type *t, const uint8_t *data,
                     size_t avail, int depth)
{
    const struct btf_array *arr = btf_array(t);
    uint32_t elem = arr->type;
    const struct btf_type *et = resolve(btf, &elem);
    long esize = btf__resolve_size(btf, arr->type);
    if (!et || esize < 0 || (size_t)esize * arr->nelems > avail)
        return -EINVAL;

    /* char[N]: a string when the bytes up to the first NUL are printable
     * and nothing but NULs follows (otherwise it holds binary data). */
    if (is_char_type(btf, et)) {
        size_t n = arr->nelems, len = strnlen((const char *)data, n);
        bool text = true;
        for (size_t i = 0; i < n && text; i++)
            text = i < len ? isprint(data[i]) || data[i] == '\t' || data[i] == '\n' : data[i] == 0;
        if (text) {
            sbuf_json_str(sb, (const char *)data, len);
            return 0;
        }
    }
    sbuf_putc(sb, '[');
    for (uint32_t i = 0; i < arr->nelems; i++) {
        if (i)
            sbuf_puts(sb, ", ");
        int err = fmt_type(sb, btf, arr->type, data + (size_t)i * esize, (size_t)esize, 0, 0, depth + 1);
        if (err)
            return err;
    }
    sbuf_putc(sb, ']');
    return 0;
}

/* Members as "name": value pairs; anonymous struct/union members are
 * flattened into their parent, as C lets you name their fields directly. */
static int fmt_members(struct sbuf *sb, const struct btf *btf, const struct btf_type *t, const uint8_t *data,
                       size_t avail, uint32_t base_bit, bool *first, int depth)
{
    const struct btf_member *m = btf_members(t);
    for (uint16_t i = 0; i < btf_vlen(t); i++, m++) {
        uint32_t off = base_bit + btf_member_bit_offset(t, i);
        uint32_t bsz = btf_member_bitfield_size(t, i);
        const char *name = btf__name_by_offset(btf, m->name_off);
        uint32_t mid = m->type;
        const struct btf_type *mt = resolve(btf, &mid);
        if (!mt)
            return -EINVAL;
        if ((!name || !*name) && btf_is_composite(mt)) {
            int err = fmt_members(sb, btf, mt, data, avail, off, first, depth + 1);
            if (err)
                return err;
            continue;
        }
        if (!*first)
            sbuf_puts(sb, ", ");
        *first = false;
        sbuf_json_str(sb, name ? name : "", name ? strlen(name) : 0);
        sbuf_puts(sb, ": ");
        int err;
        if (bsz) {
            err = fmt_type(sb, btf, m->type, data, avail, off, bsz, depth + 1);
        } else {
            if (off % 8 || off / 8 > avail)
                return -EINVAL;
            err = fmt_type(sb, btf, m->type, data + off / 8, avail - off / 8, 0, 0, depth + 1);
        }
        if (err)
            return err;
    }
    return 0;
}

static int fmt_datasec(struct sbuf *sb, const struct btf *btf, const struct btf_type *t, const uint8_t *data,
                       size_t avail, int depth)
{
    const struct btf_var_secinfo *vs = btf_var_secinfos(t);
    sbuf_putc(sb, '{');
    for (uint16_t i = 0; i < btf_vlen(t); i++, vs++) {
        const struct btf_type *var = btf__type_by_id(btf, vs->type);
        if (!var || (size_t)vs->offset + vs->size > avail)
            return -EINVAL;
        const char *name = btf__name_by_offset(btf, var->name_off);
        if (i)
            sbuf_puts(sb, ", ");
        sbuf_json_str(sb, name ? name : "", name ? strlen(name) : 0);
        sbuf_puts(sb, ": ");
        int err = fmt_type(sb, btf, vs->type, data + vs->offset, vs->size, 0, 0, depth + 1);
        if (err)
            return err;
    }
    sbuf_putc(sb, '}');
    return 0;
}

static int fmt_type(struct sbuf *sb, const struct btf *btf, uint32_t id, const uint8_t *data, size_t avail,
                    uint32_t bit_off, uint32_t bitfield, int depth)
{
    if (depth > MAX_NEST)
        return -EINVAL;
    const struct btf_type *t = resolve(btf, &id);
    if (!t || id == 0)
        return -EINVAL;
    if (btf_is_int(t))
        return fmt_int(sb, t, data, avail, bit_off, bitfield);
    if (btf_is_any_enum(t))
        return fmt_enum(sb, btf, t, data, avail, bit_off, bitfield);
    if (bitfield || bit_off)
        return -EINVAL; /* only ints and enums can be bitfields */
    if (btf_is_ptr(t)) {
        uint64_t v;
        if (read_bits(data, avail, 0, 64, &v))
            return -EINVAL;
        sbuf_printf(sb, "\"0x%" PRIx64 "\"", v);
        return 0;
    }
    if (btf_is_float(t)) {
        if (t->size == 4 && avail >= 4) {
            float f;
            memcpy(&f, data, 4);
            sbuf_printf(sb, "%.9g", (double)f);
        } else if (t->size == 8 && avail >= 8) {
            double d;
            memcpy(&d, data, 8);
            sbuf_printf(sb, "%.17g", d);
        } else {
            return -EINVAL;
        }
        return 0;
    }
    if (btf_is_array(t))
        return fmt_array(sb, btf, t, data, avail, depth);
    if (btf_is_composite(t)) {
        if (t->size > avail)
            return -EINVAL;
        bool first = true;
        sbuf_putc(sb, '{');
        int err = fmt_members(sb, btf, t, data, avail, 0, &first, depth);
        if (err)
            return err;
        sbuf_putc(sb, '}');
        return 0;
    }
    if (btf_is_datasec(t))
        return fmt_datasec(sb, btf, t, data, avail, depth);
    return -EINVAL; /* void, fwd, func: nothing to show */
}

int btf_fmt_json(struct sbuf *sb, const struct btf *btf, uint32_t type_id, const void *data, size_t size)
{
    if (!btf || !type_id)
        return -EINVAL;
    long tsize = btf__resolve_size(btf, type_id);
    if (tsize < 0 || (size_t)tsize != size)
        return -EINVAL;
    size_t start = sb->len;
    int err = fmt_type(sb, btf, type_id, data, size, 0, 0, 0);
    if (err) {
        sb->len = start;
        if (sb->s)
            sb->s[start] = 0;
    }
    return err;
}

/* ---- parsing ------------------------------------------------------------ */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* "0x1f", "1f" or "f": one byte. */
static bool parse_byte_tok(const char *s, size_t n, uint8_t *b)
{
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2, n -= 2;
    if (n < 1 || n > 2)
        return false;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        int h = hexval((unsigned char)s[i]);
        if (h < 0)
            return false;
        v = v * 16 + h;
    }
    *b = (uint8_t)v;
    return true;
}

static bool is_byte_arg(const char *s)
{
    uint8_t b;
    return s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && parse_byte_tok(s, strlen(s), &b);
}

/* Space-separated bytes in one string; -1 when it is not that form. */
static int parse_byte_list(const char *s, uint8_t *out, size_t size, char *err, size_t errlen)
{
    size_t n = 0;
    while (*s) {
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            break;
        const char *tok = s;
        while (*s && *s != ' ' && *s != '\t')
            s++;
        uint8_t b;
        if (!parse_byte_tok(tok, (size_t)(s - tok), &b))
            return -1;
        if (n < size)
            out[n] = b;
        n++;
    }
    if (n != size) {
        snprintf(err, errlen, "%zu bytes given, %zu expected", n, size);
        return -EINVAL;
    }
    return 1;
}

static int parse_hex_prefixed(const char *s, uint8_t *out, size_t size, char *err, size_t errlen)
{
    size_t n = 0;
    int hi = -1;
    for (; *s; s++) {
        if (*s == ' ' || *s == ':' || *s == '_')
            continue;
        int h = hexval((unsigned char)*s);
        if (h < 0) {
            snprintf(err, errlen, "'%c' is not a hex digit", *s);
            return -EINVAL;
        }
        if (hi < 0) {
            hi = h;
            continue;
        }
        if (n < size)
            out[n] = (uint8_t)(hi << 4 | h);
        n++;
        hi = -1;
    }
    if (hi >= 0) {
        snprintf(err, errlen, "odd number of hex digits");
        return -EINVAL;
    }
    if (n != size) {
        snprintf(err, errlen, "%zu bytes given, %zu expected", n, size);
        return -EINVAL;
    }
    return 1;
}

static void put_le(uint8_t *out, size_t size, uint64_t v)
{
    for (size_t i = 0; i < size; i++, v >>= 8)
        out[i] = (uint8_t)v;
}

/* An integer of size bytes: decimal or 0x hex, negative in two's complement. */
static int parse_int(const char *s, size_t size, bool is_signed, uint8_t *out, char *err, size_t errlen)
{
    if (size != 1 && size != 2 && size != 4 && size != 8) {
        snprintf(err, errlen, "integers of %zu bytes are given as hex:...", size);
        return -EINVAL;
    }
    uint64_t max = size == 8 ? UINT64_MAX : (1ull << (size * 8)) - 1;
    char *end;
    errno = 0;
    uint64_t v;
    if (s[0] == '-') {
        long long sv = strtoll(s, &end, 0);
        int64_t min = size == 8 ? INT64_MIN : -(int64_t)(1ull << (size * 8 - 1));
        if (errno || *end || end == s || sv < min) {
            snprintf(err, errlen, "'%s' is not a %zu-byte integer", s, size);
            return -EINVAL;
        }
        v = (uint64_t)sv;
    } else {
        v = strtoull(s, &end, 0);
        if (errno || *end || end == s || v > max || !isdigit((unsigned char)s[0])) {
            snprintf(err, errlen, "'%s' is not a %zu-byte %sinteger", s, size, is_signed ? "" : "unsigned ");
            return -EINVAL;
        }
    }
    put_le(out, size, v);
    return 1;
}

static int parse_enum(const struct btf *btf, const struct btf_type *t, const char *s, uint8_t *out, size_t size,
                      char *err, size_t errlen)
{
    for (uint16_t i = 0; i < btf_vlen(t); i++) {
        uint32_t name_off = btf_is_enum(t) ? btf_enum(t)[i].name_off : btf_enum64(t)[i].name_off;
        const char *name = btf__name_by_offset(btf, name_off);
        if (name && strcmp(name, s) == 0) {
            uint64_t v = btf_is_enum(t) ? (uint64_t)(int64_t)btf_enum(t)[i].val : btf_enum64_value(&btf_enum64(t)[i]);
            put_le(out, size, v);
            return 1;
        }
    }
    return parse_int(s, size, btf_kflag(t), out, err, errlen);
}

int btf_parse_arg(const struct btf *btf, uint32_t type_id, size_t size, char **argv, int argc, int min_rest,
                  uint8_t *out, char *err, size_t errlen)
{
    if (argc < 1) {
        snprintf(err, errlen, "missing argument");
        return -EINVAL;
    }
    const char *s = argv[0];
    memset(out, 0, size);

    if (strncmp(s, "hex:", 4) == 0)
        return parse_hex_prefixed(s + 4, out, size, err, errlen);
    if (strchr(s, ' ')) {
        int r = parse_byte_list(s, out, size, err, errlen);
        if (r != -1)
            return r;
    }
    /* bpftool style: one argument per byte. */
    if (size > 1 && argc - (int)size >= min_rest && is_byte_arg(s)) {
        bool all = true;
        for (size_t i = 0; i < size && all; i++)
            all = is_byte_arg(argv[i]) && parse_byte_tok(argv[i], strlen(argv[i]), &out[i]);
        if (all)
            return (int)size;
        memset(out, 0, size);
    }

    uint32_t id = type_id;
    const struct btf_type *t = btf && type_id ? resolve(btf, &id) : NULL;
    if (!t)
        return parse_int(s, size, true, out, err, errlen);
    if (btf_is_int(t) && t->size == size && btf_int_bits(t) <= 64)
        return parse_int(s, size, btf_int_encoding(t) & BTF_INT_SIGNED, out, err, errlen);
    if (btf_is_any_enum(t) && t->size == size)
        return parse_enum(btf, t, s, out, size, err, errlen);
    if (btf_is_array(t)) {
        uint32_t eid = btf_array(t)->type;
        const struct btf_type *et = resolve(btf, &eid);
        if (et && is_char_type(btf, et) && btf_array(t)->nelems == size) {
            size_t len = strlen(s);
            if (len > size) {
                snprintf(err, errlen, "'%s' is longer than %zu characters", s, size);
                return -EINVAL;
            }
            memcpy(out, s, len);
            return 1;
        }
    }
    const char *name = btf__name_by_offset(btf, t->name_off);
    snprintf(err, errlen, "cannot read '%s' as %s%s%s: give the %zu bytes as hex:0a0b... or \"0x0a 0x0b ...\"", s,
             btf_is_struct(t)  ? "struct"
             : btf_is_union(t) ? "union"
                               : "this type",
             name && *name ? " " : "", name ? name : "", size);
    return -EINVAL;
}
