#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cfi.h"
#include "procfs.h"
#include "symbols.h"

struct mapping {
    uint64_t start, end, offset;
    uint64_t inode;
    bool writable; /* private and writable: where the process's own data is */
    char path[512];
};

struct mapping_search {
    const char *binary;
    bool by_inode;
    ino_t inode;
    struct mapping *out;
    size_t max, n;
};

static bool private_writable(const struct bpfg_procfs_map *pm)
{
    return pm->perms[1] == 'w' && pm->perms[3] == 'p';
}

static int collect_mapping(const struct bpfg_procfs_map *pm, void *arg)
{
    struct mapping_search *ms = arg;
    if (ms->n == ms->max)
        return 1;
    if (pm->path[0] != '/')
        return 0;
    bool match;
    if (ms->by_inode) {
        match = pm->inode == (uint64_t)ms->inode;
    } else {
        const char *base = strrchr(pm->path, '/');
        match = strcmp(pm->path, ms->binary) == 0 || (base && strcmp(base + 1, ms->binary) == 0);
    }
    if (match) {
        struct mapping *m = &ms->out[ms->n++];
        *m = (struct mapping){pm->start, pm->end, pm->offset, pm->inode, private_writable(pm), ""};
        snprintf(m->path, sizeof(m->path), "%s", pm->path);
    }
    return 0;
}

/* The file mappings of pid that belong to one file (matched by inode when
 * we can stat the binary, else by path or file name). */
static int find_mappings(pid_t pid, const char *binary, struct mapping *out, size_t max, size_t *n, char *path_out,
                         size_t path_len)
{
    char exe[512] = "";
    struct stat want = {0};
    bool by_inode = false, want_exe = !binary || !binary[0] || strcmp(binary, "self") == 0;

    if (want_exe) {
        char link[64];
        snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
        ssize_t len = readlink(link, exe, sizeof(exe) - 1);
        if (len <= 0)
            return -ESRCH;
        exe[len] = 0;
        binary = exe;
    }
    if (binary[0] == '/') {
        char inside[640];
        snprintf(inside, sizeof(inside), "/proc/%d/root%s", (int)pid, binary);
        by_inode = stat(inside, &want) == 0;
    }
    struct mapping_search ms = {binary, by_inode, want.st_ino, out, max, 0};
    int r = bpfg_procfs_maps(pid, collect_mapping, &ms);
    if (r < 0)
        return r == -ENOENT ? -ESRCH : r;
    *n = ms.n;
    if (!*n)
        return -ENOENT;
    snprintf(path_out, path_len, "/proc/%d/root%s", (int)pid, out[0].path);
    return 0;
}

/* Strips "@VERSION" / "@@VERSION" from a requested symbol name. */
static void base_name(const char *func, char *buf, size_t len)
{
    snprintf(buf, len, "%s", func);
    char *at = strchr(buf, '@');
    if (at)
        *at = 0;
}

/* Finds the symbol's virtual address in the ELF file. */
static int elf_lookup(Elf *e, const char *name, uint64_t *vaddr)
{
    Elf_Scn *scn = NULL;
    int found = 0;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) || !sh.sh_entsize)
            continue;
        Elf_Data *data = elf_getdata(scn, NULL);
        if (!data)
            continue;
        size_t count = sh.sh_size / sh.sh_entsize;
        for (size_t i = 0; i < count; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(data, (int)i, &sym) || sym.st_shndx == SHN_UNDEF || !sym.st_value)
                continue;
            int type = GELF_ST_TYPE(sym.st_info);
            if (type != STT_FUNC && type != STT_NOTYPE)
                continue;
            const char *s = elf_strptr(e, sh.sh_link, sym.st_name);
            if (!s || strcmp(s, name) != 0)
                continue;
            *vaddr = sym.st_value;
            found = 1;
            if (GELF_ST_BIND(sym.st_info) == STB_GLOBAL)
                return 0; /* prefer the global definition */
        }
    }
    return found ? 0 : -ENOENT;
}

/* File offset of a virtual address, through the PT_LOAD headers; *seg:
 * the file offset its segment's mapping starts at (page-aligned). */
static int vaddr_to_offset(Elf *e, uint64_t vaddr, uint64_t *off, uint64_t *seg)
{
    size_t n;
    if (elf_getphdrnum(e, &n) != 0)
        return -ENOEXEC;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
            continue;
        if (vaddr >= ph.p_vaddr && vaddr < ph.p_vaddr + ph.p_memsz) {
            *off = vaddr - ph.p_vaddr + ph.p_offset;
            *seg = ph.p_offset & ~(uint64_t)4095;
            return 0;
        }
    }
    return -ENOENT;
}

/* ---- Go: .gopclntab, the function table every Go binary keeps for its
 * runtime (also when stripped with -ldflags=-s -w): names and extents of
 * its Go functions. Layout of Go 1.18 and later (runtime/symtab.go). ---- */

#define GOPCLN_GO118 0xfffffff0u
#define GOPCLN_GO120 0xfffffff1u
#define GOPCLN_HEADER 72 /* magic, 2 pads, minLC, ptrSize, 8 words */

struct gopcln {
    const uint8_t *p;
    size_t size;
    uint64_t text;      /* runtime.text: function entries are offsets from it */
    uint64_t nfunc;     /* functab has nfunc + 1 entries: the last is the end */
    uint64_t funcnames; /* offsets into p */
    uint64_t functab;
};

static uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static uint32_t le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static Elf_Scn *section_named(Elf *e, const char *name, GElf_Shdr *sh)
{
    size_t shstrndx;
    if (elf_getshdrstrndx(e, &shstrndx) != 0)
        return NULL;
    Elf_Scn *scn = NULL;
    const char *n;
    while ((scn = elf_nextscn(e, scn)))
        if (gelf_getshdr(scn, sh) && (n = elf_strptr(e, shstrndx, sh->sh_name)) && strcmp(n, name) == 0)
            return scn;
    return NULL;
}

/* The file's table: -ENOENT when it has none (not Go), -ENOTSUP for a
 * table of another Go version, -ENOEXEC for one that does not hold. */
static int gopcln_open(Elf *e, struct gopcln *g)
{
    GElf_Shdr sh;
    Elf_Scn *scn = section_named(e, ".gopclntab", &sh);
    Elf_Data *d = scn ? elf_getdata(scn, NULL) : NULL;
    if (!d || !d->d_buf)
        return -ENOENT;
    const uint8_t *p = d->d_buf;
    if (d->d_size < GOPCLN_HEADER || (le32(p) != GOPCLN_GO118 && le32(p) != GOPCLN_GO120) || p[7] != 8)
        return -ENOTSUP;
    *g = (struct gopcln){p, d->d_size, le64(p + 24), le64(p + 8), le64(p + 32), le64(p + 64)};
    if (!g->text && section_named(e, ".text", &sh)) /* PIE: set by a relocation */
        g->text = sh.sh_addr;
    if (g->funcnames >= g->size || g->functab >= g->size || (g->size - g->functab) / 8 <= g->nfunc)
        return -ENOEXEC;
    return 0;
}

static uint64_t gopcln_entry(const struct gopcln *g, uint64_t i)
{
    return g->text + le32(g->p + g->functab + 8 * i);
}

/* Function i's name, or NULL where the table does not hold one. */
static const char *gopcln_name(const struct gopcln *g, uint64_t i)
{
    uint64_t func = g->functab + le32(g->p + g->functab + 8 * i + 4);
    if (func + 8 > g->size)
        return NULL;
    uint64_t name = g->funcnames + (uint64_t)(int64_t)(int32_t)le32(g->p + func + 4);
    return name < g->size && memchr(g->p + name, 0, g->size - name) ? (const char *)g->p + name : NULL;
}

static int gopcln_lookup(Elf *e, const char *name, uint64_t *vaddr)
{
    struct gopcln g;
    if (gopcln_open(e, &g))
        return -ENOENT;
    for (uint64_t i = 0; i < g.nfunc; i++) {
        const char *n = gopcln_name(&g, i);
        if (n && strcmp(n, name) == 0) {
            *vaddr = gopcln_entry(&g, i);
            return 0;
        }
    }
    return -ENOENT;
}

/* The Go function containing vaddr: from its entry to the next one's
 * (its padding included, int3s the linker puts there). */
static int gopcln_function_at(Elf *e, uint64_t vaddr, uint64_t *lo, uint64_t *hi)
{
    struct gopcln g;
    if (gopcln_open(e, &g) || !g.nfunc || vaddr < gopcln_entry(&g, 0) || vaddr >= gopcln_entry(&g, g.nfunc))
        return -ENOENT;
    uint64_t a = 0, b = g.nfunc; /* entry(a) <= vaddr < entry(b) */
    while (b - a > 1) {
        uint64_t m = a + (b - a) / 2;
        *(gopcln_entry(&g, m) <= vaddr ? &a : &b) = m;
    }
    *lo = gopcln_entry(&g, a), *hi = gopcln_entry(&g, b);
    return 0;
}

static int go_text_fn(Elf *e, uint64_t vaddr, uint64_t *lo, uint64_t *hi)
{
    struct gopcln g;
    int r = gopcln_open(e, &g);
    (void)vaddr;
    if (r)
        return r;
    if (!g.nfunc)
        return -ENOENT;
    *lo = gopcln_entry(&g, 0), *hi = gopcln_entry(&g, g.nfunc);
    return 0;
}

int sym_resolve(pid_t pid, const char *binary, const char *func, uint64_t offset, uint64_t *addr, char *err,
                size_t errlen)
{
    struct mapping maps[64];
    size_t nmaps = 0;
    char path[640];
    int r = find_mappings(pid, binary, maps, 64, &nmaps, path, sizeof(path));
    if (r == -ESRCH) {
        snprintf(err, errlen, "no process with pid %d", (int)pid);
        return r;
    }
    if (r) {
        snprintf(err, errlen, "'%s' is not mapped in process %d", binary && binary[0] ? binary : "self", (int)pid);
        return -ENOENT;
    }
    if (elf_version(EV_CURRENT) == EV_NONE) {
        snprintf(err, errlen, "libelf: %s", elf_errmsg(-1));
        return -EINVAL;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -errno;
    }
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    if (!e || elf_kind(e) != ELF_K_ELF) {
        snprintf(err, errlen, "%s is not an ELF file", maps[0].path);
        r = -ENOEXEC;
        goto out;
    }

    uint64_t vaddr = 0;
    char name[256];
    char *end;
    base_name(func, name, sizeof(name));
    if (strncmp(name, "0x", 2) == 0 && (vaddr = strtoull(name, &end, 16), *end == 0)) {
        /* a raw address for stripped binaries */
    } else if (elf_lookup(e, name, &vaddr) != 0 && gopcln_lookup(e, name, &vaddr) != 0) {
        snprintf(err, errlen, "no function '%s' in %s", name, maps[0].path);
        r = -ENOENT;
        goto out;
    }
    vaddr += offset;
    uint64_t file_off, seg_off;
    if (vaddr_to_offset(e, vaddr, &file_off, &seg_off) != 0) {
        snprintf(err, errlen, "address 0x%llx is outside the segments of %s", (unsigned long long)vaddr, maps[0].path);
        r = -ENOENT;
        goto out;
    }
    /* lld lays segments out with vaddr != offset, and the page holding the
     * end of one segment and the start of the next is mapped by both: the
     * mapping of vaddr's own segment first (the other one's copy of the
     * bytes is not the code that runs), else any holding the offset (a
     * mapping the kernel merged with the one before) */
    r = -ENOENT;
    for (int pass = 0; pass < 2 && r; pass++)
        for (size_t i = 0; i < nmaps && r; i++)
            if (file_off >= maps[i].offset && file_off < maps[i].offset + (maps[i].end - maps[i].start) &&
                (pass || maps[i].offset >= seg_off)) {
                *addr = maps[i].start + (file_off - maps[i].offset);
                r = 0;
            }
    if (r)
        snprintf(err, errlen, "'%s' of %s is not mapped in process %d", name, maps[0].path, (int)pid);
out:
    if (e)
        elf_end(e);
    close(fd);
    return r;
}

static int resolve_offset_in(pid_t pid, const char *binary, uint64_t file_off, bool writable, uint64_t *addr, char *err,
                             size_t errlen)
{
    struct mapping maps[64];
    size_t nmaps = 0;
    char path[640];
    int r = find_mappings(pid, binary, maps, 64, &nmaps, path, sizeof(path));
    if (r == -ESRCH) {
        snprintf(err, errlen, "no process with pid %d", (int)pid);
        return r;
    }
    if (r) {
        snprintf(err, errlen, "'%s' is not mapped in process %d", binary, (int)pid);
        return -ENOENT;
    }
    for (size_t i = 0; i < nmaps; i++) {
        if (writable && !maps[i].writable)
            continue;
        if (file_off >= maps[i].offset && file_off < maps[i].offset + (maps[i].end - maps[i].start)) {
            *addr = maps[i].start + (file_off - maps[i].offset);
            return 0;
        }
    }
    snprintf(err, errlen, "offset 0x%llx of %s is not mapped%s in process %d", (unsigned long long)file_off, binary,
             writable ? " writable" : "", (int)pid);
    return -ENOENT;
}

int sym_resolve_file_offset(pid_t pid, const char *binary, uint64_t file_off, uint64_t *addr, char *err, size_t errlen)
{
    return resolve_offset_in(pid, binary, file_off, false, addr, err, errlen);
}

int sym_resolve_data_offset(pid_t pid, const char *binary, uint64_t file_off, uint64_t *addr, char *err, size_t errlen)
{
    return resolve_offset_in(pid, binary, file_off, true, addr, err, errlen);
}

bool sym_maps_binary(pid_t pid, const char *binary)
{
    struct mapping maps[4];
    size_t n = 0;
    char path[640];
    return binary && binary[0] == '/' && find_mappings(pid, binary, maps, 4, &n, path, sizeof(path)) == 0;
}

struct addr_search {
    uint64_t addr;
    struct mapping m;
};

static int mapping_of(const struct bpfg_procfs_map *pm, void *arg)
{
    struct addr_search *as = arg;
    if (as->addr < pm->start || as->addr >= pm->end || pm->path[0] != '/')
        return 0;
    as->m = (struct mapping){pm->start, pm->end, pm->offset, pm->inode, private_writable(pm), ""};
    snprintf(as->m.path, sizeof(as->m.path), "%s", pm->path);
    return 1;
}

/* The sized function symbol containing vaddr, or (before) the one ending
 * last at or before vaddr. */
static int symtab_function_near(Elf *e, uint64_t vaddr, bool before, uint64_t *lo, uint64_t *hi)
{
    Elf_Scn *scn = NULL;
    uint64_t best_end = 0;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        Elf_Data *data;
        if (!gelf_getshdr(scn, &sh) || (sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) || !sh.sh_entsize ||
            !(data = elf_getdata(scn, NULL)))
            continue;
        for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(data, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
                sym.st_shndx == SHN_UNDEF || !sym.st_size)
                continue;
            uint64_t end = sym.st_value + sym.st_size;
            if (!before && vaddr >= sym.st_value && vaddr - sym.st_value < sym.st_size) {
                *lo = sym.st_value, *hi = end;
                return 0;
            }
            if (before && end <= vaddr && end > best_end)
                *lo = sym.st_value, *hi = best_end = end;
        }
    }
    return best_end ? 0 : -ENOENT;
}

/* Whether vaddr is in a .plt* section: one FDE covers all its stubs,
 * which are entered at addresses only the GOT holds. */
static bool in_plt_section(Elf *e, uint64_t vaddr)
{
    size_t shstrndx;
    Elf_Scn *scn = NULL;
    if (elf_getshdrstrndx(e, &shstrndx))
        return true;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        const char *name;
        if (gelf_getshdr(scn, &sh) && (sh.sh_flags & SHF_ALLOC) && vaddr >= sh.sh_addr &&
            vaddr - sh.sh_addr < sh.sh_size)
            return !(name = elf_strptr(e, shstrndx, sh.sh_name)) || strncmp(name, ".plt", 4) == 0;
    }
    return true;
}

/* The function containing vaddr, or (before) the one ending last at or
 * before it: by its sized symbol, else (stripped code) by its FDE, as
 * perf and the kernel's sframe unwinder bound functions. */
static int elf_function_near(Elf *e, uint64_t vaddr, bool before, uint64_t *lo, uint64_t *hi)
{
    int r = symtab_function_near(e, vaddr, before, lo, hi);
    uint64_t flo, fhi;
    if ((r == 0 && !before) || cfi_fde_extent(e, vaddr, before ? CFI_FDE_BEFORE : CFI_FDE_AT, &flo, &fhi) != 0 ||
        in_plt_section(e, flo) || (r == 0 && fhi <= *hi))
        return r;
    *lo = flo, *hi = fhi;
    return 0;
}

/* The virtual address of file offset off through the PT_LOAD headers. */
static int offset_to_vaddr(Elf *e, uint64_t off, uint64_t *vaddr)
{
    size_t n;
    if (elf_getphdrnum(e, &n) != 0)
        return -ENOEXEC;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && off >= ph.p_offset &&
            off < ph.p_offset + ph.p_filesz) {
            *vaddr = off - ph.p_offset + ph.p_vaddr;
            return 0;
        }
    }
    return -ENOENT;
}

/* The lowest symbol (of any type but section and file), allocated
 * section or FDE that starts at vaddr or after it. */
static int elf_next_start(Elf *e, uint64_t vaddr, uint64_t *next)
{
    uint64_t best = UINT64_MAX;
    Elf_Scn *scn = NULL;
    while ((scn = elf_nextscn(e, scn))) {
        GElf_Shdr sh;
        Elf_Data *data;
        if (!gelf_getshdr(scn, &sh))
            continue;
        if ((sh.sh_flags & SHF_ALLOC) && sh.sh_addr >= vaddr && sh.sh_addr < best)
            best = sh.sh_addr;
        if ((sh.sh_type != SHT_SYMTAB && sh.sh_type != SHT_DYNSYM) || !sh.sh_entsize ||
            !(data = elf_getdata(scn, NULL)))
            continue;
        for (size_t i = 0; i < sh.sh_size / sh.sh_entsize; i++) {
            GElf_Sym sym;
            if (!gelf_getsym(data, (int)i, &sym) || sym.st_shndx == SHN_UNDEF || sym.st_shndx == SHN_ABS ||
                GELF_ST_TYPE(sym.st_info) == STT_SECTION || GELF_ST_TYPE(sym.st_info) == STT_FILE)
                continue;
            if (sym.st_value >= vaddr && sym.st_value < best)
                best = sym.st_value;
        }
    }
    uint64_t flo, fhi;
    if (!cfi_fde_extent(e, vaddr, CFI_FDE_NEXT, &flo, &fhi) && flo < best)
        best = flo;
    if (best == UINT64_MAX)
        return -ENOENT;
    *next = best;
    return 0;
}

/* Runs fn on the ELF file mapped at runtime address addr with addr's
 * file virtual address; its result, with *bias = addr - vaddr. */
static int with_elf_at(pid_t pid, uint64_t addr, int (*fn)(Elf *, uint64_t, uint64_t *, uint64_t *), uint64_t *a,
                       uint64_t *b, uint64_t *bias)
{
    struct addr_search as = {.addr = addr};
    if (bpfg_procfs_maps(pid, mapping_of, &as) != 1 || elf_version(EV_CURRENT) == EV_NONE)
        return -ENOENT;
    char path[640];
    snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pid, as.m.path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    uint64_t file_off = addr - as.m.start + as.m.offset, vaddr = 0;
    int r = !e || elf_kind(e) != ELF_K_ELF ? -ENOEXEC : offset_to_vaddr(e, file_off, &vaddr);
    if (!r)
        r = fn(e, vaddr, a, b);
    *bias = addr - vaddr;
    if (e)
        elf_end(e);
    close(fd);
    return r;
}

static int next_start_fn(Elf *e, uint64_t vaddr, uint64_t *next, uint64_t *unused)
{
    (void)unused;
    return elf_next_start(e, vaddr, next);
}

/* A symbol's bounds, else its FDE's (elf_function_near), else a Go function's. */
static int function_at_fn(Elf *e, uint64_t vaddr, uint64_t *lo, uint64_t *hi)
{
    return elf_function_near(e, vaddr, false, lo, hi) == 0 ? 0 : gopcln_function_at(e, vaddr, lo, hi);
}

static int function_before_fn(Elf *e, uint64_t vaddr, uint64_t *lo, uint64_t *hi)
{
    return elf_function_near(e, vaddr, true, lo, hi);
}

int sym_next_start(pid_t pid, uint64_t addr, uint64_t *next)
{
    uint64_t bias = 0, unused = 0;
    int r = with_elf_at(pid, addr, next_start_fn, next, &unused, &bias);
    if (!r)
        *next += bias;
    return r;
}

static int function_query(pid_t pid, uint64_t addr, int (*fn)(Elf *, uint64_t, uint64_t *, uint64_t *), uint64_t *lo,
                          uint64_t *hi)
{
    uint64_t bias = 0;
    int r = with_elf_at(pid, addr, fn, lo, hi, &bias);
    if (!r)
        *lo += bias, *hi += bias;
    return r;
}

int sym_function_at(pid_t pid, uint64_t addr, uint64_t *lo, uint64_t *hi)
{
    return function_query(pid, addr, function_at_fn, lo, hi);
}

int sym_function_before(pid_t pid, uint64_t addr, uint64_t *lo, uint64_t *hi)
{
    return function_query(pid, addr, function_before_fn, lo, hi);
}

int sym_go_text(pid_t pid, uint64_t addr, uint64_t *lo, uint64_t *hi)
{
    return function_query(pid, addr, go_text_fn, lo, hi);
}

struct go_walk {
    sym_go_fn *fn;
    void *arg;
};

/* with_elf_at's a: the walk; b: the bias, set before the call. */
static int go_functions_fn(Elf *e, uint64_t vaddr, uint64_t *a, uint64_t *b)
{
    const struct go_walk *w = (const struct go_walk *)(uintptr_t)*a;
    struct gopcln g;
    int r = gopcln_open(e, &g);
    (void)vaddr;
    for (uint64_t i = 0; !r && i < g.nfunc; i++) {
        const char *name = gopcln_name(&g, i);
        r = w->fn(w->arg, name ? name : "?", gopcln_entry(&g, i) + *b, gopcln_entry(&g, i + 1) + *b);
    }
    return r;
}

int sym_go_functions(pid_t pid, uint64_t addr, sym_go_fn *fn, void *arg)
{
    struct go_walk w = {fn, arg};
    uint64_t a = (uint64_t)(uintptr_t)&w, lo, hi, bias = 0;
    int r = with_elf_at(pid, addr, go_text_fn, &lo, &hi, &bias); /* first the bias */
    return r ? r : with_elf_at(pid, addr, go_functions_fn, &a, &bias, &bias);
}

bool sym_exe_has_section(pid_t pid, const char *name)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || elf_version(EV_CURRENT) == EV_NONE) {
        if (fd >= 0)
            close(fd);
        return false;
    }
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    GElf_Shdr sh;
    bool found = e && elf_kind(e) == ELF_K_ELF && section_named(e, name, &sh);
    if (e)
        elf_end(e);
    close(fd);
    return found;
}
