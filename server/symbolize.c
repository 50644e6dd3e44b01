/* Symbolization (symbolize.h). Symbols of every source of a file merged
 * into one array sorted by address; a lookup is a binary search. */
#define _GNU_SOURCE
#include "symbolize.h"

#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demangle.h"
#include "procfs.h"

#define MAX_MINIDEBUG (64u << 20)

struct sym {
    uint64_t addr, size;
    char *name; /* owned */
};

struct symfile {
    char *path;
    struct sym *syms;
    size_t n, cap;
    bool loaded;
};

struct zmap {
    uint64_t start, end, off, bias;
    bool have_bias;
    struct symfile *file; /* shared among mappings of one path */
};

struct symz {
    pid_t pid;
    struct zmap *maps;
    size_t nmaps;
    struct symfile **files;
    size_t nfiles;
};

bool symz_mapping_bias(Elf *e, uint64_t start, uint64_t off, uint64_t *bias)
{
    size_t n;
    if (elf_getphdrnum(e, &n))
        return false;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e, i, &ph) || ph.p_type != PT_LOAD || !(ph.p_flags & PF_X))
            continue;
        if ((ph.p_offset & ~0xfffull) <= off && off < ph.p_offset + ph.p_filesz) {
            *bias = start - (ph.p_vaddr - ph.p_offset + off);
            return true;
        }
    }
    return false;
}

/* ---- symbols of one ELF image ---- */

static void add_sym(struct symfile *f, uint64_t addr, uint64_t size, const char *name)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 256;
        struct sym *v = realloc(f->syms, cap * sizeof(*v));
        if (!v)
            return;
        f->syms = v;
        f->cap = cap;
    }
    char *copy = strdup(name);
    if (copy)
        f->syms[f->n++] = (struct sym){addr, size, copy};
}

/* Function symbols of the sections of type type (SHT_SYMTAB, SHT_DYNSYM);
 * true when there was such a section with symbols. */
static bool read_symtab(Elf *e, Elf64_Word type, struct symfile *f)
{
    Elf_Scn *scn = NULL;
    bool any = false;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type != type || !sh.sh_entsize)
            continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        size_t count = sh.sh_size / sh.sh_entsize;
        for (size_t i = 0; d && i < count; i++) {
            GElf_Sym s;
            const char *name;
            if (!gelf_getsym(d, (int)i, &s) || GELF_ST_TYPE(s.st_info) != STT_FUNC || !s.st_value ||
                !(name = elf_strptr(e, sh.sh_link, s.st_name)) || !*name)
                continue;
            add_sym(f, s.st_value, s.st_size, name);
            any = true;
        }
    }
    return any;
}

/* .gnu_debugdata: an xz-compressed ELF holding the .symtab strip left out. */
static void read_minidebuginfo(Elf *e, struct symfile *f)
{
    size_t shstrndx;
    Elf_Scn *scn = NULL;
    if (elf_getshdrstrndx(e, &shstrndx))
        return;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        const char *name;
        if (!gelf_getshdr(scn, &sh) || !(name = elf_strptr(e, shstrndx, sh.sh_name)) || strcmp(name, ".gnu_debugdata"))
            continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        size_t cap = MAX_MINIDEBUG, inpos = 0, outpos = 0;
        uint64_t memlimit = UINT64_MAX;
        uint8_t *out = d ? malloc(cap) : NULL;
        if (out &&
            lzma_stream_buffer_decode(&memlimit, 0, NULL, d->d_buf, &inpos, d->d_size, out, &outpos, cap) == LZMA_OK) {
            Elf *mini = elf_memory((char *)out, outpos);
            if (mini) {
                read_symtab(mini, SHT_SYMTAB, f);
                elf_end(mini);
            }
        }
        free(out);
        return;
    }
}

size_t symz_build_id(Elf *e, uint8_t *id, size_t max)
{
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
            continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        GElf_Nhdr nh;
        size_t off = 0, name_off, desc_off;
        while (d && (off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
            if (nh.n_type != NT_GNU_BUILD_ID || nh.n_descsz < 2)
                continue;
            size_t n = nh.n_descsz < max ? nh.n_descsz : max;
            memcpy(id, (const uint8_t *)d->d_buf + desc_off, n);
            return n;
        }
    }
    return 0;
}

/* /usr/lib/debug/.build-id/xx/yyyy.debug of e's build id, if installed. */
static void read_debug_file(Elf *e, struct symfile *f)
{
    uint8_t id[64];
    size_t n = symz_build_id(e, id, sizeof(id));
    if (!n)
        return;
    char path[256];
    int len = snprintf(path, sizeof(path), "/usr/lib/debug/.build-id/%02x/", id[0]);
    for (size_t i = 1; i < n && len < 200; i++)
        len += snprintf(path + len, sizeof(path) - (size_t)len, "%02x", id[i]);
    snprintf(path + len, sizeof(path) - (size_t)len, ".debug");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    Elf *de = fd < 0 ? NULL : elf_begin(fd, ELF_C_READ_MMAP, NULL);
    if (de) {
        read_symtab(de, SHT_SYMTAB, f);
        elf_end(de);
    }
    if (fd >= 0)
        close(fd);
}

static int sym_order(const void *a, const void *b)
{
    const struct sym *x = a, *y = b;
    return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static void load_file(struct symfile *f, Elf *e)
{
    f->loaded = true;
    if (!read_symtab(e, SHT_SYMTAB, f)) {
        read_minidebuginfo(e, f);
        read_debug_file(e, f);
    }
    read_symtab(e, SHT_DYNSYM, f);
    qsort(f->syms, f->n, sizeof(*f->syms), sym_order);
}

/* ---- the process ---- */

static struct symfile *file_for(struct symz *z, const char *path)
{
    for (size_t i = 0; i < z->nfiles; i++)
        if (strcmp(z->files[i]->path, path) == 0)
            return z->files[i];
    struct symfile **v = realloc(z->files, (z->nfiles + 1) * sizeof(*v));
    if (!v)
        return NULL;
    z->files = v;
    struct symfile *f = calloc(1, sizeof(*f));
    if (f && !(f->path = strdup(path))) {
        free(f);
        f = NULL;
    }
    if (f)
        z->files[z->nfiles++] = f;
    return f;
}

static int add_map(const struct bpfg_procfs_map *m, void *arg)
{
    struct symz *z = arg;
    if (m->perms[2] != 'x' || m->path[0] != '/' || strstr(m->path, " (deleted)"))
        return 0;
    struct zmap *v = realloc(z->maps, (z->nmaps + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    z->maps = v;
    struct symfile *f = file_for(z, m->path);
    if (!f)
        return -ENOMEM;
    z->maps[z->nmaps++] = (struct zmap){m->start, m->end, m->offset, 0, false, f};
    return 0;
}

int symz_open(pid_t pid, struct symz **out)
{
    struct symz *z = calloc(1, sizeof(*z));
    if (!z)
        return -ENOMEM;
    z->pid = pid;
    int r = bpfg_procfs_maps(pid, add_map, z);
    if (r) {
        symz_close(z);
        return r < 0 ? r : -EIO;
    }
    *out = z;
    return 0;
}

void symz_close(struct symz *z)
{
    if (!z)
        return;
    for (size_t i = 0; i < z->nfiles; i++) {
        for (size_t k = 0; k < z->files[i]->n; k++)
            free(z->files[i]->syms[k].name);
        free(z->files[i]->syms);
        free(z->files[i]->path);
        free(z->files[i]);
    }
    free(z->files);
    free(z->maps);
    free(z);
}

static struct zmap *map_at(const struct symz *z, uint64_t addr)
{
    for (size_t i = 0; i < z->nmaps; i++)
        if (z->maps[i].start <= addr && addr < z->maps[i].end)
            return &z->maps[i];
    return NULL;
}

bool symz_knows(const struct symz *z, uint64_t addr)
{
    return map_at(z, addr) != NULL;
}

/* The mapping's bias and its file's symbols, read through map_files
 * (the very file mapped) on first use. */
static void prepare(struct symz *z, struct zmap *m)
{
    if (m->have_bias && m->file->loaded)
        return;
    char path[128];
    snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", (int)z->pid, (unsigned long long)m->start,
             (unsigned long long)m->end);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        fd = open(m->file->path, O_RDONLY | O_CLOEXEC);
    elf_version(EV_CURRENT);
    Elf *e = fd < 0 ? NULL : elf_begin(fd, ELF_C_READ_MMAP, NULL);
    if (e && !m->have_bias)
        m->have_bias = symz_mapping_bias(e, m->start, m->off, &m->bias);
    if (e && !m->file->loaded)
        load_file(m->file, e);
    m->file->loaded = true;
    if (e)
        elf_end(e);
    if (fd >= 0)
        close(fd);
}

static const struct sym *sym_at(const struct symfile *f, uint64_t vaddr)
{
    size_t lo = 0, hi = f->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f->syms[mid].addr <= vaddr)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (!lo)
        return NULL;
    const struct sym *s = &f->syms[lo - 1];
    /* a sized symbol must cover vaddr; of equal addresses, prefer a sized one */
    for (size_t i = lo - 1; i > 0 && f->syms[i - 1].addr == s->addr && !s->size; i--)
        s = &f->syms[i - 1];
    return !s->size || vaddr < s->addr + s->size ? s : NULL;
}

/* libstdc++'s demangler (C ABI): a malloc'd name, or NULL. */
extern char *__cxa_demangle(const char *mangled, char *buf, size_t *len, int *status);

/* name as a C++ or Rust programmer reads it (_ZN3foo3barEv: foo::bar();
 * _ZN4core3fmt5write17h0123456789abcdefE: core::fmt::write); others as
 * they are. *owned is what to free. */
static const char *readable(const char *name, char **owned)
{
    int status = -1;
    enum { RUST_NAME_MAX = 1024 };
    if (name[0] == '_' && (name[1] == 'R' || name[1] == 'Z') && (*owned = malloc(RUST_NAME_MAX))) {
        if (rust_demangle(name, *owned, RUST_NAME_MAX))
            return *owned;
        free(*owned);
    }
    *owned = name[0] == '_' && name[1] == 'Z' ? __cxa_demangle(name, NULL, NULL, &status) : NULL;
    return *owned && status == 0 ? *owned : name;
}

void symz_frame(struct symz *z, uint64_t addr, bool ret, char *out, size_t len)
{
    uint64_t look = ret && addr ? addr - 1 : addr;
    struct zmap *m = map_at(z, look);
    if (!m) {
        snprintf(out, len, "0x%llx", (unsigned long long)addr);
        return;
    }
    prepare(z, m);
    const struct sym *s = m->have_bias ? sym_at(m->file, look - m->bias) : NULL;
    if (s) {
        char *owned;
        snprintf(out, len, "%s+0x%llx (%s)", readable(s->name, &owned), (unsigned long long)(addr - m->bias - s->addr),
                 m->file->path);
        free(owned);
    } else
        snprintf(out, len, "0x%llx (%s)", (unsigned long long)addr, m->file->path);
}
