/* Label values from a map key: where each label's bytes are (the label
 * sizes, as ebpf_exporter; or the key's BTF fields of the labels' names),
 * then the label's decoders applied in order. */
#ifndef BPFGRAFT_EXPORTER_LABELS_H
#define BPFGRAFT_EXPORTER_LABELS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "out.h"

struct btf;

/* The bytes of one label in a key. */
struct exp_label_span {
    uint32_t off, size;
};

/* Lays m's labels over a key of key_size bytes: with every label's size
 * given, one after the other (plus padding), covering the key exactly;
 * otherwise each is the key's BTF struct field of its name, or the whole
 * key when the key is no struct and there is one label. spans has
 * m->nlabels entries. -EINVAL with the reason in err. */
int exp_label_spans(const struct exp_metric *m, const struct btf *btf, uint32_t key_type, uint32_t key_size,
                    struct exp_label_span *spans, char *err, size_t errlen);

/* Caches the decoders keep between scrapes (comm of pids, kallsyms). */
struct exp_label_cache;
struct exp_label_cache *exp_label_cache_new(void);
void exp_label_cache_free(struct exp_label_cache *c);

/* Decodes label l from size bytes at data into out (reset first; text,
 * printable ASCII). Returns 0, or -EINVAL with the reason in out. */
int exp_label_decode(struct exp_label_cache *c, const struct exp_label *l, const uint8_t *data, size_t size,
                     struct sbuf *out);

#endif
