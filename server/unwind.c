/* Uretprobes and the target's stack walkers (unwind.h). The payload maps
 * and registers the return trampolines' tables (payload/unwind.c); this
 * side finds, in the target's mappings, what they are registered with. */
#define _GNU_SOURCE
#include "unwind.h"

#include <dirent.h>
#include <gelf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "procfs.h"
#include "symbols.h"

#define PAGE 4096
#define ENTRIES_SIZE (BPFG_UNWIND_TRAMPS * BPFG_UNWIND_ENTRY)
#define MAX_OBJECTS 16

static uint64_t lookup(pid_t pid, const char *path, const char *name)
{
    char ierr[256];
    uint64_t addr = 0;
    return sym_resolve(pid, path, name, 0, &addr, ierr, sizeof(ierr)) == 0 ? addr : 0;
}

/* ---- Go ---- */

int unwind_check_function(pid_t pid, uint64_t func, char *err, size_t errlen)
{
    uint64_t lo = 0, hi = 0;
    int r = sym_go_text(pid, func, &lo, &hi);
    if (r == -ENOENT || (!r && (func < lo || func >= hi)))
        return 0; /* not Go code (C of a cgo binary included) */
    snprintf(err, errlen,
             "uretprobe at 0x%llx in process %d refused: it is Go code%s, whose stack walker (the garbage "
             "collector, stack growth, panics, runtime.Callers) cannot be told about a replaced return address "
             "and would abort the process; use a uprobe there",
             (unsigned long long)func, (int)pid,
             r ? " (a Go binary whose .gopclntab this bpfgraft does not read: all of it is taken as Go code)" : "");
    return -EOPNOTSUPP;
}

/* ---- the unwinders ---- */

struct objects {
    char exe[PATH_MAX];
    char paths[MAX_OBJECTS][PATH_MAX];
    size_t n;
};

/* Objects that may hold an unwinder: the executable (a static libgcc_eh)
 * and libgcc_s / LLVM's or nongnu libunwind by name. */
static bool may_unwind(const struct objects *o, const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strcmp(path, o->exe) == 0 || strncmp(base, "libgcc_s", 8) == 0 || strncmp(base, "libunwind", 9) == 0;
}

static int collect_object(const struct bpfg_procfs_map *m, void *arg)
{
    struct objects *o = arg;
    if (m->path[0] != '/' || m->perms[2] != 'x' || !may_unwind(o, m->path))
        return 0;
    for (size_t i = 0; i < o->n; i++)
        if (strcmp(o->paths[i], m->path) == 0)
            return 0;
    if (o->n < MAX_OBJECTS)
        snprintf(o->paths[o->n++], PATH_MAX, "%s", m->path);
    return 0;
}

static int add_to(uint64_t *list, size_t max, uint64_t fn)
{
    for (size_t i = 0; i < max; i++)
        if (!list[i] || list[i] == fn) {
            list[i] = fn;
            return 0;
        }
    return -ENOSPC;
}

/* One object's unwinder: LLVM's libunwind, nongnu libunwind or libgcc
 * (libgcc_s or linked in). -EOPNOTSUPP when it unwinds but none fits. */
static int describe_object(pid_t pid, const char *path, struct bpfg_pmsg_unwind *m, char *err, size_t errlen)
{
    uint64_t fn;
    int r = 0;
    if ((fn = lookup(pid, path, "__unw_add_dynamic_fde")))
        r = add_to(m->llvm, BPFG_UNWIND_OTHER_MAX, fn);
    else if ((fn = lookup(pid, path, "_U_dyn_register")))
        r = add_to(m->libunwind, BPFG_UNWIND_OTHER_MAX, fn);
    else if ((fn = lookup(pid, path, "__register_frame_info")))
        r = add_to(m->gcc, BPFG_UNWIND_GCC_MAX, fn);
    else if (lookup(pid, path, "_Unwind_RaiseException"))
        r = -EOPNOTSUPP;
    if (r)
        snprintf(err, errlen,
                 "uretprobes in process %d refused: the unwinder in %s (C++ exceptions, backtrace) cannot be "
                 "given the return trampolines' unwind tables%s",
                 (int)pid, path, r == -ENOSPC ? " (too many unwinders)" : " (no registration function)");
    return r ? -EOPNOTSUPP : 0;
}

struct unwind_page_search {
    uint64_t page;
};

static int find_page(const struct bpfg_procfs_map *m, void *arg)
{
    struct unwind_page_search *s = arg;
    if (strncmp(m->path, "/memfd:" BPFG_UNWIND_NAME, sizeof("/memfd:" BPFG_UNWIND_NAME) - 1) != 0 ||
        strcmp(m->perms, "rw-p") != 0)
        return 0;
    s->page = m->start;
    return 1;
}

/* ---- gdb: where glibc's r_debug chain starts (DT_DEBUG) ---- */

static int read_mem(pid_t pid, uint64_t addr, void *buf, size_t len)
{
    struct iovec local = {buf, len}, remote = {(void *)(uintptr_t)addr, len};
    return process_vm_readv(pid, &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -EFAULT;
}

static int auxv_phdr(pid_t pid, uint64_t *phdr, uint64_t *phnum)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/auxv", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    uint64_t av[2];
    *phdr = *phnum = 0;
    while (read(fd, av, sizeof(av)) == (ssize_t)sizeof(av) && av[0] != AT_NULL) {
        if (av[0] == AT_PHDR)
            *phdr = av[1];
        else if (av[0] == AT_PHNUM)
            *phnum = av[1];
    }
    close(fd);
    return *phdr && *phnum ? 0 : -ENOENT;
}

/* The executable's dynamic section, in memory. */
static uint64_t dynamic_address(pid_t pid)
{
    uint64_t phdr = 0, phnum = 0, dyn = 0, bias = 0;
    if (auxv_phdr(pid, &phdr, &phnum) != 0 || phnum > 64)
        return 0;
    Elf64_Phdr ph[64];
    if (read_mem(pid, phdr, ph, phnum * sizeof(ph[0])) != 0)
        return 0;
    for (uint64_t i = 0; i < phnum; i++) {
        if (ph[i].p_type == PT_PHDR)
            bias = phdr - ph[i].p_vaddr;
        else if (ph[i].p_type == PT_DYNAMIC)
            dyn = ph[i].p_vaddr;
    }
    return dyn ? dyn + bias : 0;
}

static uint64_t r_debug_address(pid_t pid)
{
    uint64_t dyn = dynamic_address(pid);
    for (int i = 0; dyn && i < 512; i++) {
        Elf64_Dyn d;
        if (read_mem(pid, dyn + (uint64_t)i * sizeof(d), &d, sizeof(d)) != 0 || d.d_tag == DT_NULL)
            return 0;
        if (d.d_tag == DT_DEBUG)
            return d.d_un.d_ptr;
    }
    return 0;
}

/* struct r_debug_extended's r_next came with glibc 2.35, like
 * _dl_find_object: without it the chain cannot be extended. */
static bool has_r_next(pid_t pid)
{
    return lookup(pid, "libc.so.6", "_dl_find_object") != 0;
}

/* C++ exceptions with no unwinder in sight: a static, stripped executable
 * whose libgcc cannot be found to register with. */
static int check_hidden_unwinder(pid_t pid, const struct bpfg_pmsg_unwind *m, char *err, size_t errlen)
{
    if (m->gcc[0] || m->llvm[0] || m->libunwind[0] || !sym_exe_has_section(pid, ".gcc_except_table"))
        return 0;
    snprintf(err, errlen,
             "uretprobes in process %d refused: its executable catches exceptions (.gcc_except_table) but carries "
             "its unwinder without symbols (static and stripped), which cannot be given the return trampolines' "
             "unwind tables",
             (int)pid);
    return -EOPNOTSUPP;
}

int unwind_describe(pid_t pid, const char *gdb_path, struct bpfg_pmsg_unwind *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    struct objects *o = calloc(1, sizeof(*o));
    if (!o)
        return snprintf(err, errlen, "out of memory"), -ENOMEM;
    char link[64];
    snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
    ssize_t n = readlink(link, o->exe, sizeof(o->exe) - 1);
    o->exe[n > 0 ? n : 0] = 0;
    int r = bpfg_procfs_maps(pid, collect_object, o);
    if (r < 0)
        snprintf(err, errlen, "process %d: reading its mappings: %s", (int)pid, strerror(-r));
    for (size_t i = 0; !r && i < o->n; i++)
        r = describe_object(pid, o->paths[i], m, err, errlen);
    free(o);
    if (!r)
        r = check_hidden_unwinder(pid, m, err, errlen);
    if (r)
        return r;
    struct unwind_page_search ps = {0};
    bpfg_procfs_maps(pid, find_page, &ps);
    m->page = ps.page;
    if (gdb_path && strlen(gdb_path) < sizeof(m->gdb_path) && has_r_next(pid)) {
        m->r_debug = r_debug_address(pid);
        snprintf(m->gdb_path, sizeof(m->gdb_path), "%s", gdb_path);
    }
    return 0;
}

/* ---- the gdb file ---- */

struct gdb_image {
    uint64_t text, eh_addr;
    uint8_t eh_frame[PAGE];
    size_t eh_len;
    Elf64_Sym syms[BPFG_UNWIND_TRAMPS + 1];
    char strtab[BPFG_UNWIND_TRAMPS * 40 + 1];
    size_t strtab_len;
};

static const char shstrtab[] = "\0.text\0.eh_frame\0.symtab\0.strtab\0.shstrtab";
enum { SH_TEXT = 1, SH_EH = 7, SH_SYMTAB = 17, SH_STRTAB = 25, SH_SHSTRTAB = 33 };

/* The plain .eh_frame the payload built: CIE and FDEs up to the zero
 * terminator. */
static int eh_frame_length(const uint8_t *p, size_t max, size_t *len)
{
    size_t at = 0;
    for (int n = 0; n <= 2; n++) { /* the CIE, the FDE, the terminator */
        uint32_t l;
        if (at + 4 > max)
            return -EBADMSG;
        memcpy(&l, p + at, 4);
        at += 4;
        if (!l) {
            *len = at;
            return 0;
        }
        at += l;
    }
    return -EBADMSG;
}

static void image_symbols(struct gdb_image *im)
{
    im->strtab_len = 1;
    for (int d = 0; d < BPFG_UNWIND_TRAMPS; d++) {
        Elf64_Sym *s = &im->syms[d + 1];
        s->st_name = (uint32_t)im->strtab_len;
        s->st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC);
        s->st_shndx = 1;
        s->st_value = im->text + (uint64_t)d * BPFG_UNWIND_ENTRY;
        s->st_size = BPFG_UNWIND_ENTRY;
        im->strtab_len += (size_t)sprintf(im->strtab + im->strtab_len, "bpfgraft_uretprobe_return_%d", d) + 1;
    }
}

static int write_image(const struct gdb_image *im, int fd)
{
    Elf64_Ehdr eh = {.e_type = ET_EXEC, .e_machine = EM_X86_64, .e_version = EV_CURRENT};
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_ehsize = sizeof(eh);
    eh.e_shentsize = sizeof(Elf64_Shdr);
    eh.e_shnum = 6;
    eh.e_shstrndx = 5;
    size_t eh_off = sizeof(eh), sym_off = (eh_off + im->eh_len + 7) & ~7ul;
    size_t str_off = sym_off + sizeof(im->syms), shs_off = str_off + im->strtab_len;
    eh.e_shoff = (shs_off + sizeof(shstrtab) + 7) & ~7ul;
    Elf64_Shdr sh[6] = {
        {0},
        {SH_TEXT, SHT_NOBITS, SHF_ALLOC | SHF_EXECINSTR, im->text, eh_off, ENTRIES_SIZE, 0, 0, 16, 0},
        {SH_EH, SHT_PROGBITS, SHF_ALLOC, im->eh_addr, eh_off, im->eh_len, 0, 0, 8, 0},
        {SH_SYMTAB, SHT_SYMTAB, 0, 0, sym_off, sizeof(im->syms), 4, 1, 8, sizeof(Elf64_Sym)},
        {SH_STRTAB, SHT_STRTAB, 0, 0, str_off, im->strtab_len, 0, 0, 1, 0},
        {SH_SHSTRTAB, SHT_STRTAB, 0, 0, shs_off, sizeof(shstrtab), 0, 0, 1, 0},
    };
    struct {
        const void *p;
        size_t len, off;
    } parts[] = {{&eh, sizeof(eh), 0},
                 {im->eh_frame, im->eh_len, eh_off},
                 {im->syms, sizeof(im->syms), sym_off},
                 {im->strtab, im->strtab_len, str_off},
                 {shstrtab, sizeof(shstrtab), shs_off},
                 {sh, sizeof(sh), eh.e_shoff}};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        if (pwrite(fd, parts[i].p, parts[i].len, (off_t)parts[i].off) != (ssize_t)parts[i].len)
            return -errno ? -errno : -EIO;
    return 0;
}

int unwind_write_gdb_file(pid_t pid, uint64_t page, const char *path, char *err, size_t errlen)
{
    struct gdb_image *im = calloc(1, sizeof(*im));
    if (!im)
        return snprintf(err, errlen, "out of memory"), -ENOMEM;
    im->text = page + PAGE;
    im->eh_addr = im->text + BPFG_UNWIND_EH_FRAME;
    uint32_t version = 0;
    int r = read_mem(pid, page + offsetof(struct bpfg_unwind_data, version), &version, sizeof(version));
    if (!r && version != BPFG_UNWIND_VERSION)
        r = -EPROTO; /* another layout (an older payload's page) */
    if (!r)
        r = read_mem(pid, im->eh_addr, im->eh_frame, PAGE);
    if (!r)
        r = eh_frame_length(im->eh_frame, PAGE, &im->eh_len);
    if (r) {
        free(im);
        return snprintf(err, errlen, "process %d: reading the unwind page: %s", (int)pid, strerror(-r)), r;
    }
    image_symbols(im);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    r = fd < 0 ? -errno : write_image(im, fd);
    if (fd >= 0 && close(fd) != 0 && !r)
        r = -errno;
    if (!r && rename(tmp, path) != 0)
        r = -errno;
    if (r) {
        unlink(tmp);
        snprintf(err, errlen, "writing %s: %s", path, strerror(-r));
    }
    free(im);
    return r;
}

void unwind_gdb_path(const char *dir, pid_t pid, char *buf, size_t len)
{
    snprintf(buf, len, "%s/unwind-%d.elf", dir, (int)pid);
}

void unwind_remove_stale(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int pid;
        char proc[64], file[PATH_MAX];
        if (sscanf(e->d_name, "unwind-%d.elf", &pid) != 1)
            continue;
        snprintf(proc, sizeof(proc), "/proc/%d", pid);
        snprintf(file, sizeof(file), "%s/%s", dir, e->d_name);
        if (access(proc, F_OK) != 0)
            unlink(file);
    }
    closedir(d);
}
