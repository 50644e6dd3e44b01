/* Prometheus text format writer (see prom.h). */
#include "prom.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>

/* help: backslash and newline escaped; label values: also the quote. */
static void escaped(struct sbuf *sb, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            sbuf_puts(sb, "\\\\");
        else if (*s == '\n')
            sbuf_puts(sb, "\\n");
        else if (quote && *s == '"')
            sbuf_puts(sb, "\\\"");
        else
            sbuf_putc(sb, *s);
    }
}

void prom_family(struct sbuf *sb, const char *name, const char *type, const char *help)
{
    sbuf_printf(sb, "# HELP %s ", name);
    escaped(sb, help, false);
    sbuf_printf(sb, "\n# TYPE %s %s\n", name, type);
}

void prom_label(struct sbuf *labels, const char *name, const char *value)
{
    sbuf_printf(labels, "%s%s=\"", labels->len ? "," : "", name);
    escaped(labels, value, true);
    sbuf_putc(labels, '"');
}

void prom_float(struct sbuf *sb, double v)
{
    if (isnan(v)) {
        sbuf_puts(sb, "NaN");
        return;
    }
    if (isinf(v)) {
        sbuf_puts(sb, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof(buf), "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    sbuf_puts(sb, buf);
}

static void sample_name(struct sbuf *sb, const char *name, const char *labels)
{
    if (labels && *labels)
        sbuf_printf(sb, "%s{%s} ", name, labels);
    else
        sbuf_printf(sb, "%s ", name);
}

void prom_sample(struct sbuf *sb, const char *name, const char *labels, double v)
{
    sample_name(sb, name, labels);
    prom_float(sb, v);
    sbuf_putc(sb, '\n');
}

void prom_sample_u64(struct sbuf *sb, const char *name, const char *labels, uint64_t v)
{
    sample_name(sb, name, labels);
    sbuf_printf(sb, "%" PRIu64 "\n", v);
}
