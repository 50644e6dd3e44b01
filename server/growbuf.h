/* A growable byte buffer that remembers its first allocation failure, so
 * a caller appends freely and checks once at the end. */
#ifndef BPFGRAFT_GROWBUF_H
#define BPFGRAFT_GROWBUF_H

#include <stddef.h>

struct growbuf {
    char *p; /* always NUL-terminated after len once anything was put */
    size_t len, cap;
    int err; /* 0 or -ENOMEM; once set, puts are ignored */
};

void growbuf_put(struct growbuf *b, const void *data, size_t n);
void growbuf_putf(struct growbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void growbuf_free(struct growbuf *b);

#endif
