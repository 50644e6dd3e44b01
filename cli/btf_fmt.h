/* Keys and values by their BTF types, the way `bpftool map dump` shows
 * them: ints in decimal, char arrays as strings, structs as {field: value},
 * arrays as lists. The BTF itself is parsed by libbpf. */
#ifndef BPFGRAFT_CLI_BTF_FMT_H
#define BPFGRAFT_CLI_BTF_FMT_H

#include <stddef.h>
#include <stdint.h>

#include "out.h"

struct btf;

/* Appends the size bytes at data, typed as type_id, as a JSON value.
 * Returns 0, or -EINVAL when the type cannot describe the bytes (no such
 * type, size mismatch, a kind that has no value): sb is then unchanged and
 * the caller prints hex instead. */
int btf_fmt_json(struct sbuf *sb, const struct btf *btf, uint32_t type_id, const void *data, size_t size);

/* Parses a KEY or VALUE given on the command line into out[size].
 * Accepted, whatever the type: "hex:0a0b..", one argument of
 * space-separated bytes "0x01 0x00 ..", or size arguments "0x01" "0x00" ..
 * (taken only when at least min_rest arguments remain after them). Typed:
 * an integer (decimal, 0x hex, negative; enum names) for int and enum types
 * or, without BTF (btf NULL or type_id 0), for sizes 1/2/4/8; a string for
 * char arrays. Returns how many arguments were used (>= 1), or -EINVAL
 * with a message in err. */
int btf_parse_arg(const struct btf *btf, uint32_t type_id, size_t size, char **argv, int argc, int min_rest,
                  uint8_t *out, char *err, size_t errlen);

#endif
