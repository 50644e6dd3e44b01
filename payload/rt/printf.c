/* A small printf core: flags - 0 # + space, width and precision (numbers
 * or *), lengths hh h l ll z j t, conversions d i u x X o c s p %. The
 * same core formats bpf_trace_printk/bpf_snprintf, whose arguments are
 * u64 values and whose %s pointers are untrusted. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "rt.h"

struct out {
    char *buf;
    size_t size, len;
};

static void put(struct out *o, char c)
{
    if (o->len + 1 < o->size)
        o->buf[o->len] = c;
    o->len++;
}

static void pad(struct out *o, char c, int n)
{
    while (n-- > 0)
        put(o, c);
}

static bool next_arg(struct rt_fmt_args *a, int len, bool is_signed, uint64_t *v)
{
    if (!a->ap) {
        if (a->used >= a->n)
            return false;
        *v = a->arr[a->used++];
    } else if (len >= 2) { /* l, ll, z, j, t: 64-bit on x86-64 */
        *v = va_arg(*a->ap, uint64_t);
        return true;
    } else {
        unsigned int x = va_arg(*a->ap, unsigned int);
        *v = is_signed ? (uint64_t)(int64_t)(int)x : x;
    }
    /* narrow to the length modifier, as printf would */
    switch (len) {
    case -2: *v = is_signed ? (uint64_t)(int64_t)(int8_t)*v : (uint8_t)*v; break;
    case -1: *v = is_signed ? (uint64_t)(int64_t)(int16_t)*v : (uint16_t)*v; break;
    case 0: *v = is_signed ? (uint64_t)(int64_t)(int32_t)*v : (uint32_t)*v; break;
    default: break;
    }
    return true;
}

int rt_format(char *buf, size_t size, const char *fmt, struct rt_fmt_args *args)
{
    struct out o = {buf, size, 0};
    const bool bpf = args->ap == NULL;

    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            put(&o, *p);
            continue;
        }
        p++;
        bool left = false, zero = false, alt = false, plus = false, space = false;
        for (;; p++) {
            if (*p == '-')
                left = true;
            else if (*p == '0')
                zero = true;
            else if (*p == '#')
                alt = true;
            else if (*p == '+')
                plus = true;
            else if (*p == ' ')
                space = true;
            else
                break;
        }
        int width = 0, prec = -1;
        if (*p == '*') {
            uint64_t w;
            if (!next_arg(args, 0, true, &w))
                return -22;
            width = (int)w;
            if (width < 0) {
                left = true;
                width = -width;
            }
            p++;
        } else {
            while (*p >= '0' && *p <= '9')
                width = width * 10 + (*p++ - '0');
        }
        if (*p == '.') {
            p++;
            prec = 0;
            if (*p == '*') {
                uint64_t w;
                if (!next_arg(args, 0, true, &w))
                    return -22;
                prec = (int)w < 0 ? -1 : (int)w;
                p++;
            } else {
                while (*p >= '0' && *p <= '9')
                    prec = prec * 10 + (*p++ - '0');
            }
        }
        int len = 0; /* -2 hh, -1 h, 0 int, 1 l, 2 ll/z/j/t */
        if (*p == 'h') {
            len = -1;
            if (*++p == 'h') {
                len = -2;
                p++;
            }
        } else if (*p == 'l') {
            len = 2;
            if (*++p == 'l')
                p++;
        } else if (*p == 'z' || *p == 'j' || *p == 't') {
            len = 2;
            p++;
        }
        char c = *p;
        if (!c)
            break;
        char tmp[72];
        const char *s = tmp;
        int slen = 0;
        const char *prefix = "";
        uint64_t v;
        switch (c) {
        case '%': put(&o, '%'); continue;
        case 'c':
            if (!next_arg(args, 0, false, &v))
                return -22;
            tmp[0] = (char)v;
            slen = 1;
            zero = false;
            break;
        case 's': {
            if (!next_arg(args, 2, false, &v))
                return -22;
            if (bpf) {
                /* untrusted pointer: copy it safely, as the kernel does */
                long n = v ? rt_safe_read_str(tmp, (const void *)(uintptr_t)v, sizeof(tmp)) : -14;
                if (n < 0) {
                    s = "(fault)";
                    slen = 7;
                } else {
                    slen = (int)n - 1;
                }
            } else {
                s = v ? (const char *)(uintptr_t)v : "(null)";
                slen = (int)strnlen(s, prec >= 0 ? (size_t)prec : SIZE_MAX);
            }
            if (prec >= 0 && slen > prec)
                slen = prec;
            zero = false;
            break;
        }
        case 'd':
        case 'i':
        case 'u':
        case 'x':
        case 'X':
        case 'o':
        case 'p': {
            bool sign = c == 'd' || c == 'i';
            if (c == 'p') {
                len = 2;
                alt = true;
            }
            if (!next_arg(args, len, sign, &v))
                return -22;
            bool neg = sign && (int64_t)v < 0;
            uint64_t u = neg ? -v : v;
            unsigned base = c == 'o' ? 8 : (c == 'x' || c == 'X' || c == 'p') ? 16 : 10;
            const char *digits = c == 'X' ? "0123456789ABCDEF" : "0123456789abcdef";
            char *e = tmp + sizeof(tmp);
            char *d = e;
            if (c == 'p' && !v) {
                s = "(nil)";
                slen = 5;
                zero = false;
                break;
            }
            while (u) {
                *--d = digits[u % base];
                u /= base;
            }
            int ndig = (int)(e - d);
            int minimum = prec >= 0 ? prec : 1;
            if (prec == 0 && v == 0)
                minimum = 0;
            while (ndig < minimum && d > tmp) {
                *--d = '0';
                ndig++;
            }
            if (prec >= 0)
                zero = false;
            if (neg)
                prefix = "-";
            else if (sign && plus)
                prefix = "+";
            else if (sign && space)
                prefix = " ";
            else if (alt && base == 16 && v)
                prefix = c == 'X' ? "0X" : "0x";
            else if (alt && base == 8 && *d != '0')
                prefix = "0";
            s = d;
            slen = ndig;
            break;
        }
        default:
            if (bpf)
                return -22;
            /* unknown conversion: print it verbatim */
            put(&o, '%');
            put(&o, c);
            continue;
        }
        int plen = (int)strlen(prefix);
        int fill = width - slen - plen;
        if (!left && !zero)
            pad(&o, ' ', fill);
        for (int i = 0; i < plen; i++)
            put(&o, prefix[i]);
        if (!left && zero)
            pad(&o, '0', fill);
        for (int i = 0; i < slen; i++)
            put(&o, s[i]);
        if (left)
            pad(&o, ' ', fill);
    }
    if (o.size)
        o.buf[o.len < o.size ? o.len : o.size - 1] = 0;
    return o.len > 0x7fffffff ? 0x7fffffff : (int)o.len;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
    va_list copy;
    va_copy(copy, ap);
    struct rt_fmt_args a = {.ap = &copy};
    int r = rt_format(buf, size, fmt, &a);
    va_end(copy);
    return r;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    return r;
}
