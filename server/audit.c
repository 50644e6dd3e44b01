/* The audit log: JSON lines appended with one write each (O_APPEND keeps
 * concurrent writers' lines whole), mirrored to syslog. */
#define _GNU_SOURCE
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "growbuf.h"
#include "rpc.h"

#define AUDIT_BIN_SHOWN 64         /* bytes of a bin parameter written as hex */
#define AUDIT_READ_MAX (64u << 20) /* the newest 64 MiB of the file are searched */

static void put_json_str(struct growbuf *l, const char *s, size_t n)
{
    growbuf_put(l, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            growbuf_putf(l, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            growbuf_putf(l, "\\u%04x", c);
        else
            growbuf_put(l, (const char *)&c, 1);
    }
    growbuf_put(l, "\"", 1);
}

/* A parameter as JSON: bin as hex (object bytes: their size only). */
static void put_value(struct growbuf *l, const msgpack_object *o, int depth)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: growbuf_put(l, "null", 4); break;
    case MSGPACK_OBJECT_BOOLEAN: growbuf_put(l, o->via.boolean ? "true" : "false", o->via.boolean ? 4 : 5); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: growbuf_putf(l, "%" PRIu64, o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: growbuf_putf(l, "%" PRId64, o->via.i64); break;
    case MSGPACK_OBJECT_STR: put_json_str(l, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN:
        if (o->via.bin.size > AUDIT_BIN_SHOWN) {
            growbuf_putf(l, "\"<%u bytes>\"", o->via.bin.size);
            break;
        }
        growbuf_put(l, "\"hex:", 5);
        for (uint32_t i = 0; i < o->via.bin.size; i++)
            growbuf_putf(l, "%02x", (unsigned char)o->via.bin.ptr[i]);
        growbuf_put(l, "\"", 1);
        break;
    case MSGPACK_OBJECT_ARRAY:
        growbuf_put(l, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size && depth < 4; i++) {
            if (i)
                growbuf_put(l, ", ", 2);
            put_value(l, &o->via.array.ptr[i], depth + 1);
        }
        growbuf_put(l, "]", 1);
        break;
    default: growbuf_put(l, "\"?\"", 3); break;
    }
}

/* The named arguments: params is [] or [{name: value}]. */
static void put_params(struct growbuf *l, const msgpack_object *params)
{
    growbuf_put(l, "{", 1);
    const msgpack_object *m =
        params->type == MSGPACK_OBJECT_ARRAY && params->via.array.size == 1 ? &params->via.array.ptr[0] : NULL;
    for (uint32_t i = 0; m && m->type == MSGPACK_OBJECT_MAP && i < m->via.map.size; i++) {
        const msgpack_object_kv *kv = &m->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR)
            continue;
        if (l->len && l->p[l->len - 1] != '{')
            growbuf_put(l, ", ", 2);
        put_json_str(l, kv->key.via.str.ptr, kv->key.via.str.size);
        growbuf_put(l, ": ", 2);
        put_value(l, &kv->val, 0);
    }
    growbuf_put(l, "}", 1);
}

void audit_target_of(const msgpack_object *params, struct audit_target *t)
{
    t->pid = -1;
    t->comm[0] = 0;
    const msgpack_object *m =
        params->type == MSGPACK_OBJECT_ARRAY && params->via.array.size == 1 ? &params->via.array.ptr[0] : NULL;
    const msgpack_object *pid = m && m->type == MSGPACK_OBJECT_MAP ? bpfg_obj_map_get(m, "pid") : NULL;
    uint64_t v;
    if (!pid || bpfg_obj_u64(pid, &v) || v > 0x7fffffff)
        return;
    t->pid = (int64_t)v;
    char path[64];
    snprintf(path, sizeof(path), "/proc/%" PRId64 "/comm", t->pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, t->comm, sizeof(t->comm) - 1);
    close(fd);
    t->comm[n > 0 ? n : 0] = 0;
    t->comm[strcspn(t->comm, "\n")] = 0;
}

static void put_time(struct growbuf *l, uint64_t ms)
{
    time_t sec = (time_t)(ms / 1000);
    struct tm tm;
    char buf[32];
    gmtime_r(&sec, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    growbuf_putf(l, "{\"time\": \"%s.%03uZ\", \"time_ms\": %" PRIu64, buf, (unsigned)(ms % 1000), ms);
}

static void put_who(struct growbuf *l, const struct audit_who *who)
{
    if (who->subject) {
        growbuf_put(l, ", \"who\": {\"subject\": ", 21);
        put_json_str(l, who->subject, strlen(who->subject));
    } else {
        growbuf_putf(l, ", \"who\": {\"uid\": %u, \"pid\": %d", (unsigned)who->uid, (int)who->pid);
    }
    if (who->remote) {
        growbuf_put(l, ", \"remote\": ", 12);
        put_json_str(l, who->remote, strlen(who->remote));
    }
    growbuf_put(l, "}", 1);
}

static int append(struct audit *a, const char *s, size_t len)
{
    ssize_t n = write(a->fd, s, len);
    if (n < 0)
        return -errno;
    return (size_t)n == len ? 0 : -ENOSPC; /* a short append: the disk is full */
}

int audit_write(struct audit *a, const struct audit_who *who, const char *method, const msgpack_object *params,
                const struct audit_target *t, int code, const char *message)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct growbuf l = {0};
    put_time(&l, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
    put_who(&l, who);
    growbuf_putf(&l, ", \"method\": \"%s\", \"params\": ", method);
    put_params(&l, params);
    if (t->pid >= 0) {
        growbuf_putf(&l, ", \"target\": {\"pid\": %" PRId64 ", \"comm\": ", t->pid);
        put_json_str(&l, t->comm, strlen(t->comm));
        growbuf_put(&l, "}", 1);
    }
    growbuf_put(&l, ", \"result\": ", 12);
    put_json_str(&l, code ? bpfg_rpc_error_name(code) : "ok", strlen(code ? bpfg_rpc_error_name(code) : "ok"));
    if (code) {
        growbuf_put(&l, ", \"error\": ", 11);
        put_json_str(&l, message, strlen(message));
    }
    growbuf_put(&l, "}\n", 2);
    int r = l.err ? l.err : a->fd < 0 ? -EBADF : append(a, l.p, l.len);
    if (!l.err)
        syslog(LOG_AUTHPRIV | LOG_NOTICE, "%.*s", (int)l.len - 1, l.p);
    growbuf_free(&l);
    return r;
}

static int make_dir(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = 0;
    if (mkdir(dir, 0700) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

int audit_open(struct audit *a, const char *path, char *err, size_t errlen)
{
    a->fd = -1;
    snprintf(a->path, sizeof(a->path), "%s", path);
    int r = make_dir(path);
    if (!r) {
        a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        r = a->fd < 0 ? -errno : 0;
    }
    if (r) {
        snprintf(err, errlen, "audit log %s: %s", path, strerror(-r));
        return r;
    }
    openlog("bpfgraftd", LOG_PID, LOG_AUTHPRIV);
    return 0;
}

void audit_close(struct audit *a)
{
    if (a->fd >= 0)
        close(a->fd);
    a->fd = -1;
}

/* The newest AUDIT_READ_MAX bytes of the file, from a line start. */
static char *read_tail(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    off_t from = st.st_size > (off_t)AUDIT_READ_MAX ? st.st_size - (off_t)AUDIT_READ_MAX : 0;
    size_t want = (size_t)(st.st_size - from);
    char *buf = malloc(want + 1);
    ssize_t n = buf ? pread(fd, buf, want, from) : -1;
    close(fd);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    char *start = from ? strchr(buf, '\n') : buf;
    *len = start ? (size_t)n - (size_t)(start - buf) - (from ? 1 : 0) : 0;
    if (start && from)
        memmove(buf, start + 1, *len + 1);
    return buf;
}

static uint64_t line_time(const char *s)
{
    const char *t = strstr(s, "\"time_ms\": ");
    return t ? strtoull(t + 11, NULL, 10) : 0;
}

int audit_read(const struct audit *a, uint64_t since_ms, size_t max, msgpack_packer *pk, bool *truncated)
{
    size_t len = 0;
    char *buf = read_tail(a->path, &len);
    if (!buf)
        return -errno ? -errno : -EIO;
    /* Walk back from the newest line while the lines fit in max. */
    size_t first = len, used = 0;
    uint32_t n = 0;
    *truncated = false;
    while (first > 0) {
        size_t end = first - (buf[first - 1] == '\n');
        size_t start = end;
        while (start > 0 && buf[start - 1] != '\n')
            start--;
        if (end == start || line_time(buf + start) < since_ms)
            break;
        if (used + (end - start) > max) {
            *truncated = true;
            break;
        }
        used += end - start;
        n++;
        first = start;
    }
    msgpack_pack_array(pk, n);
    for (char *p = buf + first; n--;) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        bpfg_pack_strn(pk, p, l);
        p += l + 1;
    }
    free(buf);
    return 0;
}
