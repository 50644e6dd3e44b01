/* bpfgraft-exporter's configuration: ebpf_exporter's YAML (metrics:
 * counters and histograms over named maps, labels decoded from the key),
 * plus the optional object to load and process to attach it to. */
#ifndef BPFGRAFT_EXPORTER_CONFIG_H
#define BPFGRAFT_EXPORTER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum exp_decoder_kind {
    EXP_DEC_UINT,       /* little-endian unsigned -> decimal */
    EXP_DEC_STRING,     /* bytes up to the first NUL */
    EXP_DEC_HEX,        /* bytes as lowercase hex */
    EXP_DEC_PID,        /* a pid -> its comm (/proc/PID/comm) */
    EXP_DEC_KSYM,       /* a kernel address -> its symbol (/proc/kallsyms) */
    EXP_DEC_STATIC_MAP, /* a value -> its name in static_map */
};

struct exp_map_pair {
    char *from, *to;
};

struct exp_decoder {
    enum exp_decoder_kind kind;
    struct exp_map_pair *pairs; /* static_map */
    size_t npairs;
    bool allow_unknown; /* static_map: an unlisted value passes as is (else "unknown:VALUE") */
};

struct exp_label {
    char *name;
    uint32_t size;    /* bytes of the key; 0: taken from the key's BTF */
    uint32_t padding; /* bytes skipped after it */
    struct exp_decoder *decoders;
    size_t ndecoders;
    int line;
};

enum exp_metric_kind { EXP_COUNTER, EXP_HISTOGRAM };
enum exp_bucket_type { EXP_BUCKET_EXP2, EXP_BUCKET_LINEAR };

struct exp_metric {
    enum exp_metric_kind kind;
    char *name, *help, *table;
    struct exp_label *labels; /* histograms: the last one is the bucket */
    size_t nlabels;
    enum exp_bucket_type bucket_type;
    int64_t bucket_min, bucket_max;
    double bucket_multiplier;
    int line;
};

struct exp_config {
    struct exp_metric *metrics;
    size_t nmetrics;
    char *object;       /* object: a .bpf.o to load (NULL: none) */
    char *target;       /* target: where its programs go ("BINARY:FUNCTION"), or NULL */
    int64_t attach_pid; /* attach: the process to attach it to, or 0 */
};

/* Reads path into *c. On failure returns -EINVAL (-errno when the file
 * cannot be read) with "PATH:LINE: what is wrong" in err; *c is then
 * empty. */
int exp_config_load(const char *path, struct exp_config *c, char *err, size_t errlen);
void exp_config_free(struct exp_config *c);

/* The name a decoder is written with in the YAML. */
const char *exp_decoder_name(enum exp_decoder_kind kind);

#endif
