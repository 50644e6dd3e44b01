/* The on-disk JIT cache and blob archives. See jitcache.h.
 *
 * Record (cache entry file, and each archive entry after its name):
 *   "BPFGJIT1", key[16], u64 code_len, u32 nrelocs, u32 nprogs,
 *   u64 checksum (FNV-1a of code, relocs and table), code, relocs (3 x u32
 *   each), then for a batch (nprogs > 0; 0 is one program, entry at 0) its
 *   table: nprogs x (u32 entry_off, u32 reloc_end).
 * Archive: "BPFGJAR1", u32 count, u32 reserved, then per entry u16
 * name_len, name, record. Little-endian (x86-64 only).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jitcache.h"

#define REC_MAGIC "BPFGJIT1"
#define AR_MAGIC "BPFGJAR1"
#define MAX_CODE (64u << 20)
#define MAX_RELOCS (1u << 20)

struct rec_hdr {
    char magic[8];
    uint8_t key[16];
    uint64_t code_len;
    uint32_t nrelocs;
    uint32_t nprogs; /* a batch's, 0 for one program */
    uint64_t checksum;
};

struct bpfg_jitcache {
    char *dir;
};

struct bpfg_jitarchive {
    FILE *f;
    char *path;
    uint32_t count;
    int err;
};

static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
    const uint8_t *s = p;
    for (size_t i = 0; i < len; i++)
        h = (h ^ s[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t checksum(const struct bpfg_llvmjit_blob *b, const struct bpfg_llvmjit_batch *batch)
{
    uint64_t h = fnv(0xcbf29ce484222325ull, b->code.buf, b->code.len);
    h = fnv(h, b->relocs, b->nrelocs * sizeof(*b->relocs));
    if (batch) {
        h = fnv(h, batch->entry_off, batch->nprogs * sizeof(uint32_t));
        h = fnv(h, batch->reloc_end, batch->nprogs * sizeof(uint32_t));
    }
    return h;
}

static int write_all(FILE *f, const void *p, size_t len)
{
    if (len && fwrite(p, 1, len, f) != len)
        return errno ? -errno : -EIO;
    return 0;
}

static int read_all(FILE *f, void *p, size_t len)
{
    if (len && fread(p, 1, len, f) != len)
        return ferror(f) ? -EIO : -EBADMSG;
    return 0;
}

/* batch NULL: one program's blob b; else b is &batch->blob. */
static int write_record(FILE *f, const uint8_t key[16], const struct bpfg_llvmjit_blob *b,
                        const struct bpfg_llvmjit_batch *batch)
{
    struct rec_hdr h = {.code_len = b->code.len,
                        .nrelocs = (uint32_t)b->nrelocs,
                        .nprogs = batch ? (uint32_t)batch->nprogs : 0,
                        .checksum = checksum(b, batch)};
    memcpy(h.magic, REC_MAGIC, 8);
    memcpy(h.key, key, 16);
    int ret = write_all(f, &h, sizeof(h)) ?: write_all(f, b->code.buf, b->code.len)
                                         ?: write_all(f, b->relocs, b->nrelocs * sizeof(*b->relocs));
    if (!ret && batch)
        ret = write_all(f, batch->entry_off, batch->nprogs * sizeof(uint32_t))
                  ?: write_all(f, batch->reloc_end, batch->nprogs * sizeof(uint32_t));
    return ret;
}

/* A batch's table: allocated, read and checked against its blob. */
static int read_table(FILE *f, uint32_t nprogs, struct bpfg_llvmjit_batch *batch)
{
    if (!nprogs || nprogs > BPFG_LLVMJIT_MAX_BATCH)
        return -EBADMSG;
    batch->nprogs = nprogs;
    batch->entry_off = malloc(nprogs * sizeof(uint32_t));
    batch->reloc_end = malloc(nprogs * sizeof(uint32_t));
    if (!batch->entry_off || !batch->reloc_end)
        return -ENOMEM;
    int ret = read_all(f, batch->entry_off, nprogs * sizeof(uint32_t))
                  ?: read_all(f, batch->reloc_end, nprogs * sizeof(uint32_t));
    for (uint32_t i = 0; !ret && i < nprogs; i++)
        if (batch->entry_off[i] >= batch->blob.code.len || batch->reloc_end[i] > batch->blob.nrelocs ||
            (i && batch->reloc_end[i] < batch->reloc_end[i - 1]))
            ret = -EBADMSG;
    return ret;
}

/* Reads one record into b (batch NULL: it must be one program's) or into
 * batch (b is &batch->blob: it must be a batch); key_out receives its
 * key. -EBADMSG if malformed or of the other kind. */
static int read_record(FILE *f, uint8_t key_out[16], struct bpfg_llvmjit_blob *b, struct bpfg_llvmjit_batch *batch)
{
    struct rec_hdr h;
    memset(b, 0, sizeof(*b));
    int ret = read_all(f, &h, sizeof(h));
    if (ret)
        return ret;
    if (memcmp(h.magic, REC_MAGIC, 8) || !h.code_len || h.code_len > MAX_CODE || h.nrelocs > MAX_RELOCS ||
        !h.nprogs != !batch)
        return -EBADMSG;
    b->code.buf = malloc(h.code_len);
    b->relocs = h.nrelocs ? malloc(h.nrelocs * sizeof(*b->relocs)) : NULL;
    if (!b->code.buf || (h.nrelocs && !b->relocs)) {
        bpfg_llvmjit_blob_free(b);
        return -ENOMEM;
    }
    b->code.len = h.code_len;
    b->nrelocs = h.nrelocs;
    ret = read_all(f, b->code.buf, b->code.len) ?: read_all(f, b->relocs, b->nrelocs * sizeof(*b->relocs));
    if (!ret && batch)
        ret = read_table(f, h.nprogs, batch);
    if (!ret && checksum(b, batch) != h.checksum)
        ret = -EBADMSG;
    for (size_t i = 0; !ret && i < b->nrelocs; i++)
        if ((uint64_t)b->relocs[i].offset + 8 > b->code.len)
            ret = -EBADMSG;
    if (ret) {
        if (batch)
            bpfg_llvmjit_batch_free(batch);
        else
            bpfg_llvmjit_blob_free(b);
        return ret;
    }
    memcpy(key_out, h.key, 16);
    return 0;
}

/* ---- the cache directory ------------------------------------------------ */

static int mkdirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return -ENOMEM;
    int ret = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s)
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0700) && errno != EEXIST) {
            ret = -errno;
            break;
        }
        if (!c)
            break;
        *s = c;
    }
    free(p);
    return ret;
}

struct bpfg_jitcache *bpfg_jitcache_open(const char *dir)
{
    if (!dir)
        dir = BPFG_JITCACHE_DEFAULT_DIR;
    if (!*dir) {
        errno = EINVAL;
        return NULL;
    }
    int ret = mkdirs(dir);
    struct stat st;
    if (!ret && stat(dir, &st))
        ret = -errno;
    if (!ret && !S_ISDIR(st.st_mode))
        ret = -ENOTDIR;
    if (ret) {
        errno = -ret;
        return NULL;
    }
    struct bpfg_jitcache *c = calloc(1, sizeof(*c));
    if (!c || !(c->dir = strdup(dir))) {
        free(c);
        errno = ENOMEM;
        return NULL;
    }
    return c;
}

void bpfg_jitcache_close(struct bpfg_jitcache *c)
{
    if (!c)
        return;
    free(c->dir);
    free(c);
}

static char *entry_path(const struct bpfg_jitcache *c, const uint8_t key[16])
{
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    char *p;
    return asprintf(&p, "%s/%s.jit", c->dir, hex) < 0 ? NULL : p;
}

static int get_entry(struct bpfg_jitcache *c, const uint8_t key[16], struct bpfg_llvmjit_blob *out,
                     struct bpfg_llvmjit_batch *batch)
{
    memset(out, 0, sizeof(*out));
    char *path = entry_path(c, key);
    if (!path)
        return -ENOMEM;
    FILE *f = fopen(path, "rbe");
    if (!f) {
        int err = errno == ENOENT ? -ENOENT : -errno;
        free(path);
        return err;
    }
    uint8_t got[16];
    int ret = read_record(f, got, out, batch);
    if (!ret && memcmp(got, key, 16)) {
        if (batch)
            bpfg_llvmjit_batch_free(batch);
        else
            bpfg_llvmjit_blob_free(out);
        ret = -EBADMSG;
    }
    fclose(f);
    if (ret == -EBADMSG) { /* damaged: drop it, recompile */
        unlink(path);
        ret = -ENOENT;
    }
    free(path);
    return ret;
}

static int put_entry(struct bpfg_jitcache *c, const uint8_t key[16], const struct bpfg_llvmjit_blob *blob,
                     const struct bpfg_llvmjit_batch *batch)
{
    char *path = entry_path(c, key), *tmp = NULL;
    if (!path || asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0) {
        free(path);
        return -ENOMEM;
    }
    int ret = 0;
    int fd = mkostemp(tmp, O_CLOEXEC);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        ret = -errno;
        if (fd >= 0) {
            close(fd);
            unlink(tmp);
        }
        goto out;
    }
    ret = write_record(f, key, blob, batch);
    if (fflush(f) && !ret)
        ret = -errno;
    if (fclose(f) && !ret)
        ret = -errno;
    if (!ret && rename(tmp, path))
        ret = -errno;
    if (ret)
        unlink(tmp);
out:
    free(tmp);
    free(path);
    return ret;
}

int bpfg_jitcache_get(struct bpfg_jitcache *c, const uint8_t key[16], struct bpfg_llvmjit_blob *out)
{
    return get_entry(c, key, out, NULL);
}

int bpfg_jitcache_put(struct bpfg_jitcache *c, const uint8_t key[16], const struct bpfg_llvmjit_blob *blob)
{
    return put_entry(c, key, blob, NULL);
}

int bpfg_jitcache_get_batch(struct bpfg_jitcache *c, const uint8_t key[16], struct bpfg_llvmjit_batch *out)
{
    memset(out, 0, sizeof(*out));
    return get_entry(c, key, &out->blob, out);
}

int bpfg_jitcache_put_batch(struct bpfg_jitcache *c, const uint8_t key[16], const struct bpfg_llvmjit_batch *batch)
{
    return put_entry(c, key, &batch->blob, batch);
}

bool bpfg_jitcache_contains(struct bpfg_jitcache *c, const uint8_t key[16])
{
    char *path = entry_path(c, key);
    bool there = path && access(path, R_OK) == 0;
    free(path);
    return there;
}

int bpfg_jitcache_compile(struct bpfg_jitcache *c, const struct bpf_insn *insns, size_t n,
                          const struct bpfg_llvmjit_opts *opts, struct bpfg_llvmjit_blob *out, bool *hit, char *err,
                          size_t errlen)
{
    uint8_t key[16];
    if (hit)
        *hit = false;
    memset(out, 0, sizeof(*out));
    int ret = bpfg_llvmjit_key(insns, n, opts, key, err, errlen);
    if (ret)
        return ret;
    ret = c ? bpfg_jitcache_get(c, key, out) : -ENOENT;
    if (!ret) {
        if (hit)
            *hit = true;
    } else if (ret == -ENOENT) {
        ret = bpfg_llvmjit_compile_blob(insns, n, opts, out, NULL, err, errlen);
        if (ret)
            return ret;
        /* a failed store only costs a recompile next time */
        if (c)
            bpfg_jitcache_put(c, key, out);
    } else {
        snprintf(err, errlen, "reading the JIT cache: %s", strerror(-ret));
        return ret;
    }
    if (opts && opts->relocatable_maps) {
        ret = bpfg_llvmjit_blob_bind(out, insns, n, opts, err, errlen);
        if (ret)
            bpfg_llvmjit_blob_free(out);
    }
    return ret;
}

/* The batch's key from its programs' keys (each validates its program). */
static int batch_key(const struct bpfg_llvmjit_prog *progs, size_t n, const struct bpfg_llvmjit_opts *opts,
                     uint8_t key[16], char *err, size_t errlen)
{
    if (!n || n > BPFG_LLVMJIT_MAX_BATCH) {
        snprintf(err, errlen, "a batch holds 1 to %d programs, not %zu", BPFG_LLVMJIT_MAX_BATCH, n);
        return -EINVAL;
    }
    uint8_t(*keys)[16] = malloc(n * 16);
    if (!keys)
        return -ENOMEM;
    int ret = 0;
    for (size_t i = 0; i < n && !ret; i++)
        ret = bpfg_llvmjit_key(progs[i].insns, progs[i].n, opts, keys[i], err, errlen);
    if (!ret)
        bpfg_llvmjit_batch_key((const uint8_t(*)[16])keys, n, key);
    free(keys);
    return ret;
}

int bpfg_jitcache_compile_batch(struct bpfg_jitcache *c, const struct bpfg_llvmjit_prog *progs, size_t n,
                                const struct bpfg_llvmjit_opts *opts, struct bpfg_llvmjit_batch *out, bool *hit,
                                char *err, size_t errlen)
{
    uint8_t key[16];
    if (hit)
        *hit = false;
    memset(out, 0, sizeof(*out));
    int ret = batch_key(progs, n, opts, key, err, errlen);
    if (ret)
        return ret;
    ret = c ? bpfg_jitcache_get_batch(c, key, out) : -ENOENT;
    if (!ret && out->nprogs != n) { /* a key collision of two batch sizes */
        bpfg_llvmjit_batch_free(out);
        ret = -ENOENT;
    }
    if (!ret) {
        if (hit)
            *hit = true;
    } else if (ret == -ENOENT) {
        ret = bpfg_llvmjit_compile_batch(progs, n, opts, out, NULL, err, errlen);
        if (ret)
            return ret;
        if (c) /* a failed store only costs a recompile next time */
            bpfg_jitcache_put_batch(c, key, out);
    } else {
        snprintf(err, errlen, "reading the JIT cache: %s", strerror(-ret));
        return ret;
    }
    if (opts && opts->relocatable_maps) {
        ret = bpfg_llvmjit_batch_bind(out, progs, opts, err, errlen);
        if (ret)
            bpfg_llvmjit_batch_free(out);
    }
    return ret;
}

/* ---- archives ---------------------------------------------------------- */

struct bpfg_jitarchive *bpfg_jitarchive_create(const char *path)
{
    struct bpfg_jitarchive *a = calloc(1, sizeof(*a));
    if (!a || !(a->path = strdup(path))) {
        free(a);
        errno = ENOMEM;
        return NULL;
    }
    a->f = fopen(path, "wbe");
    if (!a->f) {
        int e = errno;
        free(a->path);
        free(a);
        errno = e;
        return NULL;
    }
    uint32_t hdr[2] = {0, 0}; /* count, patched by finish */
    a->err = write_all(a->f, AR_MAGIC, 8) ?: write_all(a->f, hdr, sizeof(hdr));
    return a;
}

int bpfg_jitarchive_add(struct bpfg_jitarchive *a, const char *name, const uint8_t key[16],
                        const struct bpfg_llvmjit_blob *blob)
{
    size_t len = strlen(name);
    if (len > UINT16_MAX)
        return -ENAMETOOLONG;
    uint16_t l16 = (uint16_t)len;
    if (!a->err)
        a->err = write_all(a->f, &l16, 2) ?: write_all(a->f, name, len) ?: write_record(a->f, key, blob, NULL);
    if (!a->err)
        a->count++;
    return a->err;
}

int bpfg_jitarchive_finish(struct bpfg_jitarchive *a)
{
    int ret = a->err;
    if (!ret && (fseek(a->f, 8, SEEK_SET) || fwrite(&a->count, 4, 1, a->f) != 1))
        ret = errno ? -errno : -EIO;
    if (!ret && (fflush(a->f) || fsync(fileno(a->f))))
        ret = -errno;
    if (fclose(a->f) && !ret)
        ret = -errno;
    if (ret)
        unlink(a->path);
    free(a->path);
    free(a);
    return ret;
}

int bpfg_jitcache_import(struct bpfg_jitcache *c, const char *archive_path)
{
    FILE *f = fopen(archive_path, "rbe");
    if (!f)
        return -errno;
    char magic[8];
    uint32_t hdr[2];
    int ret = read_all(f, magic, 8) ?: read_all(f, hdr, sizeof(hdr));
    if (!ret && memcmp(magic, AR_MAGIC, 8))
        ret = -EBADMSG;
    uint32_t i = 0;
    for (; !ret && i < hdr[0]; i++) {
        uint16_t len;
        char name[256];
        uint8_t key[16];
        struct bpfg_llvmjit_blob b;
        ret = read_all(f, &len, 2);
        while (!ret && len) { /* names are informational: skip them */
            size_t chunk = len < sizeof(name) ? len : sizeof(name);
            ret = read_all(f, name, chunk);
            len = (uint16_t)(len - chunk);
        }
        if (!ret)
            ret = read_record(f, key, &b, NULL);
        if (!ret) {
            ret = bpfg_jitcache_put(c, key, &b);
            bpfg_llvmjit_blob_free(&b);
        }
    }
    fclose(f);
    return ret ? ret : (int)i;
}
