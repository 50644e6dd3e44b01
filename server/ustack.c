/* The user-stack tables of a process (ustack.h): modules from
 * /proc/PID/maps, rows from cfi.c, one memfd. */
#define _GNU_SOURCE
#include "ustack.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cfi.h"
#include "log.h"
#include "procfs.h"
#include "symbolize.h"

struct builder {
    pid_t pid;
    struct bpfg_ustack_mod *mods;
    size_t nmods, cap_mods;
    struct bpfg_ustack_range *ranges;
    size_t nranges, cap_ranges;
    struct cfi_rows rows;
    uint32_t *index; /* block index (payload_abi.h section 8) */
    size_t nindex;
    int err;
};

static int grow(void **v, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 64;
    void *p = realloc(*v, c * size);
    if (!p)
        return -ENOMEM;
    *v = p;
    *cap = c;
    return 0;
}

/* The rows of the file mapped at m (the very file, through map_files). */
static void file_rows(struct builder *b, const struct bpfg_procfs_map *m, struct bpfg_ustack_mod *mod)
{
    char path[128], err[256];
    snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", (int)b->pid, (unsigned long long)m->start,
             (unsigned long long)m->end);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    elf_version(EV_CURRENT);
    Elf *e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
    bool ok = e && symz_mapping_bias(e, m->start, m->offset, &mod->bias);
    mod->file_off = m->offset;
    if (ok)
        mod->build_id_len = (uint32_t)symz_build_id(e, mod->build_id, sizeof(mod->build_id));
    if (e)
        elf_end(e);
    size_t first = b->rows.n;
    int r = ok ? cfi_rows_from_elf(fd, &b->rows, err, sizeof(err)) : 0;
    close(fd);
    if (r == -ENOMEM)
        b->err = r;
    else if (r)
        srv_log(SRV_DEBUG, "process %d: %s: %s (frame pointers there)", (int)b->pid, m->path, err);
    mod->first_row = (uint32_t)first;
    mod->nrows = (uint32_t)(b->rows.n - first);
}

static int add_mapping(const struct bpfg_procfs_map *m, void *arg)
{
    struct builder *b = arg;
    if (m->perms[0] == 'r' && m->perms[1] == 'w') {
        struct bpfg_ustack_range *last = b->nranges ? &b->ranges[b->nranges - 1] : NULL;
        if (last && last->end == m->start)
            last->end = m->end;
        else if (grow((void **)&b->ranges, &b->cap_ranges, b->nranges, sizeof(*b->ranges)))
            return b->err = -ENOMEM;
        else
            b->ranges[b->nranges++] = (struct bpfg_ustack_range){m->start, m->end};
    }
    if (m->perms[2] != 'x')
        return 0;
    if (grow((void **)&b->mods, &b->cap_mods, b->nmods, sizeof(*b->mods)))
        return b->err = -ENOMEM;
    struct bpfg_ustack_mod mod = {.start = m->start, .end = m->end};
    if (m->path[0] == '/' && !strstr(m->path, " (deleted)"))
        file_rows(b, m, &mod);
    b->mods[b->nmods++] = mod;
    return b->err;
}

/* The block index of every module: for block k, the last row at or
 * below its start, so a lookup binary-searches one block's rows. */
static int build_index(struct builder *b)
{
    size_t total = 0;
    for (size_t i = 0; i < b->nmods; i++) {
        struct bpfg_ustack_mod *m = &b->mods[i];
        if (!m->nrows)
            continue;
        const struct bpfg_ustack_row *r = b->rows.rows + m->first_row;
        m->first_page = r[0].pc >> BPFG_USTACK_BLOCK_SHIFT;
        m->npages = (r[m->nrows - 1].pc >> BPFG_USTACK_BLOCK_SHIFT) - m->first_page + 1;
        m->first_index = (uint32_t)total;
        total += m->npages;
    }
    b->index = calloc(total ? total : 1, sizeof(*b->index));
    if (!b->index)
        return -ENOMEM;
    b->nindex = total;
    for (size_t i = 0; i < b->nmods; i++) {
        const struct bpfg_ustack_mod *m = &b->mods[i];
        const struct bpfg_ustack_row *r = b->rows.rows + m->first_row;
        uint32_t row = 0;
        for (uint32_t k = 0; k < m->npages; k++) {
            uint64_t page = (uint64_t)(m->first_page + k) << BPFG_USTACK_BLOCK_SHIFT;
            while (row + 1 < m->nrows && r[row + 1].pc <= page)
                row++;
            b->index[m->first_index + k] = row;
        }
    }
    return 0;
}

static int write_all(int fd, const void *p, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, (const char *)p + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -errno;
        off += (size_t)w;
    }
    return 0;
}

static int write_table(const struct builder *b, int fd)
{
    struct bpfg_ustack_hdr h = {
        .magic = BPFG_USTACK_MAGIC,
        .version = BPFG_USTACK_VERSION,
        .nmods = (uint32_t)b->nmods,
        .nranges = (uint32_t)b->nranges,
        .nrows = (uint32_t)b->rows.n,
        .nindex = (uint32_t)b->nindex,
    };
    h.size = sizeof(h) + b->nmods * sizeof(*b->mods) + b->nranges * sizeof(*b->ranges) +
             b->rows.n * sizeof(*b->rows.rows) + b->nindex * sizeof(*b->index);
    int r = write_all(fd, &h, sizeof(h));
    if (!r)
        r = write_all(fd, b->mods, b->nmods * sizeof(*b->mods));
    if (!r)
        r = write_all(fd, b->ranges, b->nranges * sizeof(*b->ranges));
    if (!r)
        r = write_all(fd, b->rows.rows, b->rows.n * sizeof(*b->rows.rows));
    if (!r)
        r = write_all(fd, b->index, b->nindex * sizeof(*b->index));
    if (!r && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0)
        r = -errno;
    return r;
}

int ustack_build(pid_t pid, int *fd, char *err, size_t errlen)
{
    struct builder b = {.pid = pid};
    int r = bpfg_procfs_maps(pid, add_mapping, &b);
    if (r > 0 || b.err)
        r = b.err ? b.err : -EIO;
    if (r)
        srv_efail(err, errlen, r, "the mappings of process %d: %s", (int)pid, strerror(-r));
    if (!r && (r = build_index(&b)) != 0)
        srv_efail(err, errlen, r, "out of memory");
    int mfd = r ? -1 : memfd_create("bpfgraft-ustack", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (!r && mfd < 0)
        r = srv_efail(err, errlen, -errno, "memfd_create: %s", strerror(errno));
    if (!r && (r = write_table(&b, mfd)) != 0)
        srv_efail(err, errlen, r, "writing the stack tables: %s", strerror(-r));
    free(b.mods);
    free(b.ranges);
    free(b.index);
    cfi_rows_free(&b.rows);
    if (r && mfd >= 0)
        close(mfd);
    if (!r)
        *fd = mfd;
    return r;
}
