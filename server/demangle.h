/* Rust symbol names as rustc-demangle's alternate form prints them
 * (`{:#}`: no hashes): legacy `_ZN...17h<16 hex>E` and v0 `_R...`. For
 * symbolized frames (symbolize.c); C++ names stay __cxa_demangle's. */
#ifndef BPFGRAFT_SERVER_DEMANGLE_H
#define BPFGRAFT_SERVER_DEMANGLE_H

#include <stdbool.h>
#include <stddef.h>

/* name demangled into out (len bytes, NUL-terminated, cut to fit): true
 * for a Rust name; false for anything else or a name that does not parse
 * (out then holds nothing to use). */
bool rust_demangle(const char *name, char *out, size_t len);

#endif
