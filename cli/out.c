/* Output helpers of the bpfgraft CLI. */
#include "out.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "rpc.h"

static void oom(void)
{
    fputs("bpfgraft: out of memory\n", stderr);
    exit(1);
}

void sbuf_free(struct sbuf *sb)
{
    free(sb->s);
    memset(sb, 0, sizeof(*sb));
}

void sbuf_reset(struct sbuf *sb)
{
    sb->len = 0;
    if (sb->s)
        sb->s[0] = 0;
}

static void reserve(struct sbuf *sb, size_t more)
{
    if (sb->len + more + 1 <= sb->cap)
        return;
    size_t cap = sb->cap ? sb->cap : 64;
    while (cap < sb->len + more + 1)
        cap *= 2;
    char *s = realloc(sb->s, cap);
    if (!s)
        oom();
    sb->s = s;
    sb->cap = cap;
}

void sbuf_putn(struct sbuf *sb, const char *s, size_t n)
{
    reserve(sb, n);
    memcpy(sb->s + sb->len, s, n);
    sb->len += n;
    sb->s[sb->len] = 0;
}

void sbuf_puts(struct sbuf *sb, const char *s)
{
    sbuf_putn(sb, s, strlen(s));
}
void sbuf_putc(struct sbuf *sb, char c)
{
    sbuf_putn(sb, &c, 1);
}

void sbuf_printf(struct sbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    reserve(sb, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(sb->s + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

void sbuf_json_str(struct sbuf *sb, const char *s, size_t n)
{
    sbuf_putc(sb, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sbuf_puts(sb, "\\\""); break;
        case '\\': sbuf_puts(sb, "\\\\"); break;
        case '\n': sbuf_puts(sb, "\\n"); break;
        case '\t': sbuf_puts(sb, "\\t"); break;
        case '\r': sbuf_puts(sb, "\\r"); break;
        default:
            /* Non-ASCII bytes are escaped one by one: the output is valid
             * JSON whatever the bytes (they need not be UTF-8). */
            if (c < 0x20 || c >= 0x7f)
                sbuf_printf(sb, "\\u%04x", c);
            else
                sbuf_putc(sb, (char)c);
        }
    }
    sbuf_putc(sb, '"');
}

void sbuf_hex(struct sbuf *sb, const void *data, size_t n, char sep)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        if (i && sep)
            sbuf_putc(sb, sep);
        sbuf_printf(sb, "%02x", p[i]);
    }
}

void sbuf_duration(struct sbuf *sb, uint64_t us)
{
    uint64_t s = us / 1000000, m = s / 60, h = m / 60, d = h / 24;
    if (us < 1000)
        sbuf_printf(sb, "%lluus", (unsigned long long)us);
    else if (us < 10000)
        sbuf_printf(sb, "%llu.%llums", (unsigned long long)us / 1000, (unsigned long long)us / 100 % 10);
    else if (!s)
        sbuf_printf(sb, "%llums", (unsigned long long)us / 1000);
    else if (!m)
        sbuf_printf(sb, "%llus", (unsigned long long)s);
    else if (!h)
        sbuf_printf(sb, "%llum%02llus", (unsigned long long)m, (unsigned long long)s % 60);
    else if (!d)
        sbuf_printf(sb, "%lluh%02llum", (unsigned long long)h, (unsigned long long)m % 60);
    else
        sbuf_printf(sb, "%llud%02lluh", (unsigned long long)d, (unsigned long long)h % 24);
}

void json_from_obj(struct sbuf *sb, const msgpack_object *o)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: sbuf_puts(sb, "null"); break;
    case MSGPACK_OBJECT_BOOLEAN: sbuf_puts(sb, o->via.boolean ? "true" : "false"); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: sbuf_printf(sb, "%" PRIu64, o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: sbuf_printf(sb, "%" PRId64, o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: sbuf_printf(sb, "%.17g", o->via.f64); break;
    case MSGPACK_OBJECT_STR: sbuf_json_str(sb, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN:
        sbuf_putc(sb, '"');
        sbuf_hex(sb, o->via.bin.ptr, o->via.bin.size, 0);
        sbuf_putc(sb, '"');
        break;
    case MSGPACK_OBJECT_EXT:
        sbuf_putc(sb, '"');
        sbuf_hex(sb, o->via.ext.ptr, o->via.ext.size, 0);
        sbuf_putc(sb, '"');
        break;
    case MSGPACK_OBJECT_ARRAY:
        sbuf_putc(sb, '[');
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                sbuf_puts(sb, ", ");
            json_from_obj(sb, &o->via.array.ptr[i]);
        }
        sbuf_putc(sb, ']');
        break;
    case MSGPACK_OBJECT_MAP:
        sbuf_putc(sb, '{');
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i)
                sbuf_puts(sb, ", ");
            if (kv->key.type == MSGPACK_OBJECT_STR) {
                json_from_obj(sb, &kv->key);
            } else { /* JSON keys are strings: quote whatever it is */
                struct sbuf k = {0};
                json_from_obj(&k, &kv->key);
                sbuf_json_str(sb, k.s, k.len);
                sbuf_free(&k);
            }
            sbuf_puts(sb, ": ");
            json_from_obj(sb, &kv->val);
        }
        sbuf_putc(sb, '}');
        break;
    }
}

static bool bare_word(const char *s, size_t n)
{
    if (!n)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

void text_inline_obj(struct sbuf *sb, const msgpack_object *o, bool quote_str)
{
    if (o->type == MSGPACK_OBJECT_STR && !quote_str && bare_word(o->via.str.ptr, o->via.str.size)) {
        sbuf_putn(sb, o->via.str.ptr, o->via.str.size);
        return;
    }
    if (o->type == MSGPACK_OBJECT_NIL) {
        sbuf_putc(sb, '-');
        return;
    }
    json_from_obj(sb, o);
}

static bool is_scalar(const msgpack_object *o)
{
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!is_scalar(&o->via.array.ptr[i]))
                return false;
        return true;
    }
    return o->type != MSGPACK_OBJECT_MAP;
}

static bool key_in(const msgpack_object *key, const char *const *keys)
{
    for (size_t i = 0; keys && keys[i]; i++)
        if (key->type == MSGPACK_OBJECT_STR && key->via.str.size == strlen(keys[i]) &&
            memcmp(key->via.str.ptr, keys[i], key->via.str.size) == 0)
            return true;
    return false;
}

void text_print_obj(FILE *f, const msgpack_object *o, int indent)
{
    text_print_obj_except(f, o, indent, NULL);
}

void text_print_obj_except(FILE *f, const msgpack_object *o, int indent, const char *const *skip)
{
    struct sbuf sb = {0};
    if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (key_in(&kv->key, skip))
                continue;
            sbuf_reset(&sb);
            text_inline_obj(&sb, &kv->key, false);
            fprintf(f, "%*s%s:", indent, "", sb.s);
            if (is_scalar(&kv->val)) {
                sbuf_reset(&sb);
                text_inline_obj(&sb, &kv->val, false);
                fprintf(f, " %s\n", sb.s);
            } else {
                fputc('\n', f);
                text_print_obj(f, &kv->val, indent + 2);
            }
        }
    } else if (o->type == MSGPACK_OBJECT_ARRAY && !is_scalar(o)) {
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            fprintf(f, "%*s-\n", indent, "");
            text_print_obj(f, &o->via.array.ptr[i], indent + 2);
        }
    } else {
        text_inline_obj(&sb, o, false);
        fprintf(f, "%*s%s\n", indent, "", sb.s);
    }
    sbuf_free(&sb);
}

const msgpack_object *obj_get(const msgpack_object *map, const char *key)
{
    return bpfg_obj_map_get(map, key);
}

const char *obj_str(const msgpack_object *map, const char *key)
{
    static char bufs[8][256];
    static unsigned next;
    char *buf = bufs[next++ % 8];
    const msgpack_object *o = obj_get(map, key);
    if (!o || o->type == MSGPACK_OBJECT_NIL || (o->type == MSGPACK_OBJECT_STR && !o->via.str.size))
        return "-";
    struct sbuf sb = {0};
    text_inline_obj(&sb, o, false);
    snprintf(buf, sizeof(bufs[0]), "%s", sb.s ? sb.s : "");
    sbuf_free(&sb);
    return buf;
}

bool obj_u64(const msgpack_object *map, const char *key, uint64_t *v)
{
    const msgpack_object *o = obj_get(map, key);
    return o && bpfg_obj_u64(o, v) == 0;
}
