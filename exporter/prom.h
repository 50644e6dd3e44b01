/* Prometheus text exposition format 0.0.4: metric families, samples,
 * label escaping and float formatting. */
#ifndef BPFGRAFT_EXPORTER_PROM_H
#define BPFGRAFT_EXPORTER_PROM_H

#include <stdint.h>

#include "out.h"

#define PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* # HELP and # TYPE lines (type: counter, gauge, histogram). */
void prom_family(struct sbuf *sb, const char *name, const char *type, const char *help);

/* Appends name="value" (escaped) to a label list, comma-separated. */
void prom_label(struct sbuf *labels, const char *name, const char *value);

/* One sample line: name{labels} value; labels may be empty or NULL. */
void prom_sample(struct sbuf *sb, const char *name, const char *labels, double v);
void prom_sample_u64(struct sbuf *sb, const char *name, const char *labels, uint64_t v);

/* The shortest decimal that reads back as v (Go's strconv 'g' -1). */
void prom_float(struct sbuf *sb, double v);

#endif
