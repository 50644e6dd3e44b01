/* Output helpers of the bpfgraft CLI: a growable string, JSON encoding of
 * msgpack results, and a readable text rendering of arbitrary results. */
#ifndef BPFGRAFT_CLI_OUT_H
#define BPFGRAFT_CLI_OUT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* A NUL-terminated growable string. Allocation failure is fatal (the CLI
 * prints and exits): output code stays free of error plumbing. */
struct sbuf {
    char *s;
    size_t len, cap;
};

void sbuf_free(struct sbuf *sb);
void sbuf_reset(struct sbuf *sb);
void sbuf_putn(struct sbuf *sb, const char *s, size_t n);
void sbuf_puts(struct sbuf *sb, const char *s);
void sbuf_putc(struct sbuf *sb, char c);
void sbuf_printf(struct sbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A JSON string literal, quotes included. Bytes that are not printable
 * ASCII are escaped as \u00XX. */
void sbuf_json_str(struct sbuf *sb, const char *s, size_t n);
/* Bytes as lowercase hex; sep (may be 0) between bytes. */
void sbuf_hex(struct sbuf *sb, const void *data, size_t n, char sep);
/* A duration for people, two units at most: "412us", "3.5ms", "45s",
 * "3m12s", "2h05m", "3d04h". */
void sbuf_duration(struct sbuf *sb, uint64_t us);

/* msgpack object as JSON: bin becomes a hex string, map keys strings. */
void json_from_obj(struct sbuf *sb, const msgpack_object *o);

/* Readable rendering of any result ("key: value" lines, nested indented). */
void text_print_obj(FILE *f, const msgpack_object *o, int indent);
/* The same, leaving out a map's keys listed in skip (NULL-terminated). */
void text_print_obj_except(FILE *f, const msgpack_object *o, int indent, const char *const *skip);
/* One scalar or short value on one line (JSON-like, str unquoted if bare). */
void text_inline_obj(struct sbuf *sb, const msgpack_object *o, bool quote_str);

/* Convenience lookups on result maps. */
const msgpack_object *obj_get(const msgpack_object *map, const char *key);
/* Field as a C string ("-" when absent or nil; numbers printed). Uses a
 * rotating set of static buffers: fine for a few fields per printf. */
const char *obj_str(const msgpack_object *map, const char *key);
bool obj_u64(const msgpack_object *map, const char *key, uint64_t *v);

#endif
