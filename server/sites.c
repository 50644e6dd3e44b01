/* The choice between a jmp and a trap for each uprobe (sites.h). The
 * branch index of a mapped file is built from the target's own memory
 * (the code as it runs) and kept for the next probes of the same file. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "injector.h"
#include "procfs.h"
#include "sites.h"
#include "symbols.h"

#define CACHED 4
#define MAX_EXEC 16
#define MAX_IMAGE (512ull << 20)

struct image {
    pid_t pid;
    uint64_t inode, base;
    uint8_t *bytes;
    size_t len;
    struct bpfg_text_range exec[MAX_EXEC];
    size_t nexec;
    struct bpfg_branch_index ix;
};

static struct image cache[CACHED];
static unsigned next_slot;

struct file_maps {
    uint64_t addr, inode;
    unsigned dev_major, dev_minor;
    uint64_t lo, hi;
    struct bpfg_procfs_map m[64];
    size_t n;
};

static int which_file(const struct bpfg_procfs_map *m, void *arg)
{
    struct file_maps *f = arg;
    if (f->addr < m->start || f->addr >= m->end)
        return 0;
    if (m->path[0] != '/' || !m->inode)
        return -ENOENT; /* anonymous code (a JIT's): no file to analyse */
    f->inode = m->inode, f->dev_major = m->dev_major, f->dev_minor = m->dev_minor;
    return 1;
}

static int file_mapping(const struct bpfg_procfs_map *m, void *arg)
{
    struct file_maps *f = arg;
    if (m->inode != f->inode || m->dev_major != f->dev_major || m->dev_minor != f->dev_minor || f->n == 64)
        return 0;
    f->m[f->n] = *m;
    f->m[f->n++].path = "";
    f->lo = f->n == 1 ? m->start : f->lo;
    f->hi = m->end;
    return 0;
}

static void image_free(struct image *im)
{
    free(im->bytes);
    bpfg_branch_index_free(&im->ix);
    memset(im, 0, sizeof(*im));
}

/* Reads the file's readable mappings; records its executable ranges. */
static int image_read(pid_t pid, const struct file_maps *f, struct image *im)
{
    im->len = (size_t)(f->hi - f->lo);
    if (im->len > MAX_IMAGE || !(im->bytes = calloc(1, im->len)))
        return -ENOMEM;
    im->pid = pid, im->inode = f->inode, im->base = f->lo;
    for (size_t i = 0; i < f->n; i++) {
        const struct bpfg_procfs_map *m = &f->m[i];
        if (m->perms[0] != 'r')
            continue;
        struct iovec local = {im->bytes + (m->start - f->lo), (size_t)(m->end - m->start)};
        struct iovec remote = {(void *)(uintptr_t)m->start, local.iov_len};
        if (process_vm_readv(pid, &local, 1, &remote, 1, 0) != (ssize_t)local.iov_len)
            return errno ? -errno : -EIO;
        if (m->perms[2] == 'x' && im->nexec < MAX_EXEC)
            im->exec[im->nexec++] = (struct bpfg_text_range){m->start, m->end};
    }
    struct bpfg_text_image ti = {im->base, im->bytes, im->len, im->exec, im->nexec};
    return bpfg_branch_index_build(&ti, &im->ix);
}

/* The image and branch index of the file mapped at addr, or NULL. */
static struct image *image_at(pid_t pid, uint64_t addr)
{
    struct file_maps f = {.addr = addr};
    if (bpfg_procfs_maps(pid, which_file, &f) != 1 || bpfg_procfs_maps(pid, file_mapping, &f) < 0 || !f.n)
        return NULL;
    for (int i = 0; i < CACHED; i++)
        if (cache[i].bytes && cache[i].pid == pid && cache[i].inode == f.inode && cache[i].base == f.lo &&
            cache[i].len == f.hi - f.lo)
            return &cache[i];
    struct image *im = &cache[next_slot++ % CACHED];
    image_free(im);
    if (image_read(pid, &f, im)) {
        image_free(im);
        return NULL;
    }
    return im;
}

void sites_forget(pid_t pid)
{
    for (int i = 0; i < CACHED; i++)
        if (cache[i].bytes && (!pid || cache[i].pid == pid))
            image_free(&cache[i]);
}

/* Whether a jmp is provably safe at addr; else why not. */
static bool jmp_ok(const struct image *im, bool known, uint64_t lo, uint64_t hi, uint64_t addr, const uint8_t *code,
                   size_t have, struct bpfg_hook_plan *plan, char *why, size_t whylen)
{
    char ierr[256];
    if (!known || !im) {
        snprintf(why, whylen, "no function symbol of a mapped file covers it: its code cannot be analysed");
        return false;
    }
    if (addr != lo) {
        snprintf(why, whylen,
                 "it is not a function's entry (+0x%llx): a jmp there could land on live red-zone "
                 "data or bytes another branch enters",
                 (unsigned long long)(addr - lo));
        return false;
    }
    if (bpfg_hook_plan(addr, code, have, plan, ierr)) {
        snprintf(why, whylen, "%s", ierr);
        return false;
    }
    return bpfg_jmp_provably_safe(&im->ix, plan, lo, hi, why, whylen);
}

/* The 5 bytes at addr in pid, as they are now. */
static int read_live(pid_t pid, uint64_t addr, uint8_t out[BPFG_HOP_SLOT_LEN])
{
    struct iovec local = {out, BPFG_HOP_SLOT_LEN}, remote = {(void *)(uintptr_t)addr, BPFG_HOP_SLOT_LEN};
    ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    return n == BPFG_HOP_SLOT_LEN ? 0 : n < 0 ? -errno : -EIO;
}

/* A hop at the entry lo of the function [lo, hi): a short jmp to 5 bytes
 * of the padding after it that no code reaches and no other hop uses
 * (the bytes there are still those of the image: padding). */
static bool hop_ok(pid_t pid, const struct image *im, uint64_t lo, uint64_t hi, const uint8_t *code, size_t have,
                   struct bpfg_hook_plan *plan, char *why, size_t whylen)
{
    char ierr[BPFG_ERRLEN];
    uint64_t next = 0;
    if (sym_next_start(pid, hi, &next) || next > im->base + im->len) {
        snprintf(why, whylen, "no symbol after the function bounds its padding");
        return false;
    }
    if (!bpfg_padding_unreachable(&im->ix, im->bytes + (lo - im->base), lo, hi, next, why, whylen))
        return false;
    for (uint64_t slot = hi; slot + BPFG_HOP_SLOT_LEN <= next && slot <= lo + 2 + INT8_MAX; slot++) {
        uint8_t now[BPFG_HOP_SLOT_LEN];
        if (read_live(pid, slot, now) || memcmp(now, im->bytes + (slot - im->base), sizeof(now)))
            continue; /* another hop's jmp */
        if (bpfg_hook_plan_hop(lo, code, have, slot, now, plan, ierr)) {
            snprintf(why, whylen, "%s", ierr);
            return false;
        }
        return bpfg_bytes_unentered(&im->ix, plan->site, plan->insn_len, lo, hi, why, whylen);
    }
    snprintf(why, whylen, "no 5 free bytes of padding within a short jmp's reach");
    return false;
}

int sites_plan(pid_t pid, uint64_t addr, const uint8_t *code, size_t have, struct bpfg_hook_plan *plan, char *why,
               size_t whylen, char *err)
{
    uint64_t lo = 0, hi = 0;
    bool known = sym_function_at(pid, addr, &lo, &hi) == 0;
    struct image *im = known ? image_at(pid, addr) : NULL;
    if (im && lo >= im->base && hi - im->base <= im->len &&
        !bpfg_insn_boundary(im->bytes + (lo - im->base), (size_t)(hi - lo), lo, addr)) {
        snprintf(err, BPFG_ERRLEN, "0x%llx is not an instruction boundary of the function at 0x%llx",
                 (unsigned long long)addr, (unsigned long long)lo);
        return -EINVAL;
    }
    if (jmp_ok(im, known, lo, hi, addr, code, have, plan, why, whylen))
        return 0;
    /* a hop only at an entry: the stub's push must not land on a leaf
     * function's red zone */
    char hwhy[BPFG_ERRLEN];
    if (im && addr == lo && hop_ok(pid, im, lo, hi, code, have, plan, hwhy, sizeof(hwhy)))
        return 0;
    if (im && addr == lo) {
        size_t n = strlen(why);
        snprintf(why + n, whylen - n, "; no short jmp: %s", hwhy);
    }
    return bpfg_hook_plan_trap(addr, code, have, plan, err);
}
