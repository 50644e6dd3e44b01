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
/* sites_file_byte: a kernel uprobe's int3 images show as the file's byte */
static struct {
    pid_t pid;
    uint64_t addr;
    uint8_t byte;
} file_byte;

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
    if (file_byte.pid == pid && file_byte.addr >= im->base && file_byte.addr < im->base + im->len)
        im->bytes[file_byte.addr - im->base] = file_byte.byte;
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

void sites_file_byte(pid_t pid, uint64_t addr, uint8_t byte)
{
    file_byte.pid = pid, file_byte.addr = addr, file_byte.byte = byte;
    if (pid)
        sites_forget(pid);
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
    if (bpfg_hook_plan(addr, code, have, plan, ierr)) {
        snprintf(why, whylen, "%s", ierr);
        return false;
    }
    return bpfg_jmp_provably_safe(&im->ix, plan, lo, hi, why, whylen);
}

/* Whether the len bytes at addr in pid are still those of the image. */
static bool unchanged(pid_t pid, const struct image *im, uint64_t addr, size_t len)
{
    uint8_t now[2 * BPFG_HOP_SLOT_LEN];
    struct iovec local = {now, len}, remote = {(void *)(uintptr_t)addr, len};
    return len <= sizeof(now) && addr >= im->base && process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len &&
           !memcmp(now, im->bytes + (addr - im->base), len);
}

static const uint8_t *image_bytes(const struct image *im, uint64_t addr)
{
    return im->bytes + (addr - im->base);
}

/* Bytes around the function [lo, hi) no code reaches, where a hop's slot
 * may go: the padding after it and before it (up to the neighbouring
 * functions, whose last instruction must not fall through into it) and
 * the padding inside it after a jmp or ret. Returns how many ranges. */
static size_t dead_ranges(pid_t pid, const struct image *im, uint64_t lo, uint64_t hi, struct bpfg_text_range *out,
                          size_t max)
{
    char why[BPFG_ERRLEN];
    uint64_t next = 0, plo = 0, phi = 0;
    size_t n = 0;
    if (!sym_next_start(pid, hi, &next) && next <= im->base + im->len &&
        bpfg_padding_unreachable(&im->ix, image_bytes(im, lo), lo, hi, next, why, sizeof(why)))
        out[n++] = (struct bpfg_text_range){hi, next};
    if (!sym_function_before(pid, lo, &plo, &phi) && plo >= im->base && !sym_next_start(pid, phi, &next) &&
        next == lo && bpfg_padding_unreachable(&im->ix, image_bytes(im, plo), plo, phi, lo, why, sizeof(why)))
        out[n++] = (struct bpfg_text_range){phi, lo};
    return n + bpfg_dead_runs(&im->ix, image_bytes(im, lo), lo, hi, out + n, max - n);
}

/* The first slot of r within a short jmp's reach of the one at addr whose
 * bytes, and the 4 before them (where another hop's jmp would overlap
 * them), are still those of the image, or 0. */
static uint64_t free_slot(pid_t pid, const struct image *im, const struct bpfg_text_range *r, uint64_t addr)
{
    uint64_t from = addr + 2 + INT8_MIN > r->lo ? addr + 2 + INT8_MIN : r->lo;
    for (uint64_t slot = from; slot + BPFG_HOP_SLOT_LEN <= r->hi && slot <= addr + 2 + INT8_MAX; slot++) {
        if (slot < addr + 2 && slot + BPFG_HOP_SLOT_LEN > addr)
            continue; /* over the site itself */
        if (unchanged(pid, im, slot - (BPFG_HOP_SLOT_LEN - 1), 2 * BPFG_HOP_SLOT_LEN - 1))
            return slot;
    }
    return 0;
}

/* A hop at addr in the function [lo, hi): a short jmp to 5 bytes no code
 * reaches and no other hop uses (dead_ranges). */
static bool hop_ok(pid_t pid, const struct image *im, uint64_t lo, uint64_t hi, uint64_t addr, const uint8_t *code,
                   size_t have, struct bpfg_hook_plan *plan, char *why, size_t whylen)
{
    char ierr[BPFG_ERRLEN];
    struct bpfg_text_range dead[16];
    size_t n = dead_ranges(pid, im, lo, hi, dead, sizeof(dead) / sizeof(dead[0]));
    for (size_t i = 0; i < n; i++) {
        uint64_t slot = free_slot(pid, im, &dead[i], addr);
        if (!slot)
            continue;
        if (bpfg_hook_plan_hop(addr, code, have, slot, image_bytes(im, slot), plan, ierr)) {
            snprintf(why, whylen, "%s", ierr);
            return false;
        }
        return bpfg_bytes_unentered(&im->ix, plan->site, plan->insn_len, lo, hi, why, whylen);
    }
    snprintf(why, whylen, "no 5 bytes of padding no code reaches within a short jmp's reach");
    return false;
}

/* <sys/sdt.h> marks each USDT site with a lone nop, where another probe
 * may go later: a jmp or hop never displaces one past its first
 * instruction (the later probe would land inside the patch). */
static bool covers_marker(const struct image *im, uint64_t lo, uint64_t hi, const struct bpfg_hook_plan *plan,
                          char *why, size_t whylen)
{
    uint64_t end = plan->site + (plan->hop ? plan->insn_len : plan->patch_len);
    for (uint64_t a = plan->site + 1; a < end && a < hi; a++)
        if (*image_bytes(im, a) == 0x90 && bpfg_insn_boundary(image_bytes(im, lo), (size_t)(hi - lo), lo, a)) {
            snprintf(why, whylen,
                     "its bytes hold a lone nop at 0x%llx (a USDT site's marker, where another probe "
                     "may go)",
                     (unsigned long long)a);
            return true;
        }
    return false;
}

int sites_plan(pid_t pid, uint64_t addr, const uint8_t *code, size_t have, struct bpfg_hook_plan *plan, char *why,
               size_t whylen, char *err)
{
    uint64_t lo = 0, hi = 0;
    bool known = sym_function_at(pid, addr, &lo, &hi) == 0;
    struct image *im = known ? image_at(pid, addr) : NULL;
    if (im && (lo < im->base || hi - im->base > im->len))
        im = NULL;
    if (im && !bpfg_insn_boundary(image_bytes(im, lo), (size_t)(hi - lo), lo, addr)) {
        snprintf(err, BPFG_ERRLEN, "0x%llx is not an instruction boundary of the function at 0x%llx",
                 (unsigned long long)addr, (unsigned long long)lo);
        return -EINVAL;
    }
    /* inside a function a leaf's red zone may be live: the stub steps over it */
    char hwhy[BPFG_ERRLEN] = "";
    if ((jmp_ok(im, known, lo, hi, addr, code, have, plan, why, whylen) &&
         !covers_marker(im, lo, hi, plan, why, whylen)) ||
        (im && hop_ok(pid, im, lo, hi, addr, code, have, plan, hwhy, sizeof(hwhy)) &&
         !covers_marker(im, lo, hi, plan, hwhy, sizeof(hwhy)))) {
        plan->mid = addr != lo;
        return 0;
    }
    if (im) {
        size_t n = strlen(why);
        snprintf(why + n, whylen - n, "; no short jmp: %s", hwhy);
    }
    return bpfg_hook_plan_trap(addr, code, have, plan, err);
}

bool sites_unentered(pid_t pid, uint64_t addr, size_t len, uint64_t lo, uint64_t hi, char *why, size_t whylen)
{
    const struct image *im = image_at(pid, addr);
    if (!im) {
        snprintf(why, whylen, "the file's code cannot be read for analysis");
        return false;
    }
    return bpfg_bytes_unentered(&im->ix, addr, len, lo, hi, why, whylen);
}
