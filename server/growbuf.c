#include "growbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void growbuf_put(struct growbuf *b, const void *data, size_t n)
{
    if (b->err)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 256) + n + 1;
        char *grown = realloc(b->p, cap);
        if (!grown) {
            b->err = -ENOMEM;
            return;
        }
        b->p = grown;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
}

/* Formatted pieces are short (numbers, escapes): a line longer than the
 * stack buffer is cut there. */
void growbuf_putf(struct growbuf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    growbuf_put(b, tmp, (size_t)n >= sizeof(tmp) ? sizeof(tmp) - 1 : (size_t)n);
}

void growbuf_free(struct growbuf *b)
{
    free(b->p);
    *b = (struct growbuf){0};
}
