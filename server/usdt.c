/* USDT notes, argument specs and semaphores (usdt.h). */
#include "usdt.h"

#include "symbols.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

_Static_assert(sizeof(struct usdt_arg_spec) == 16, "usdt.bpf.h's struct __bpf_usdt_arg_spec");
_Static_assert(sizeof(struct usdt_spec) == 208, "usdt.bpf.h's struct __bpf_usdt_spec");

int usdt_sem_add(pid_t pid, uint64_t addr, int delta, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    uint16_t v;
    int r = 0;
    if (pread(fd, &v, sizeof(v), (off_t)addr) != (ssize_t)sizeof(v))
        r = -EFAULT;
    if (!r) {
        int next = (int)v + delta;
        v = (uint16_t)(next < 0 ? 0 : next > UINT16_MAX ? UINT16_MAX : next);
        if (pwrite(fd, &v, sizeof(v), (off_t)addr) != (ssize_t)sizeof(v))
            r = -EFAULT;
    }
    close(fd);
    if (r)
        snprintf(err, errlen, "cannot update the USDT semaphore at 0x%llx in process %d", (unsigned long long)addr,
                 (int)pid);
    return r;
}

/* ---- argument specs: "SIZE@OPERAND" (libbpf's parse_usdt_arg, x86-64) ---- */

/* pt_regs offsets of the x86-64 registers under each of their names */
static const struct {
    int16_t off;
    const char *names[4];
} regs[] = {
    {128, {"rip"}},
    {80, {"rax", "eax", "ax", "al"}},
    {40, {"rbx", "ebx", "bx", "bl"}},
    {88, {"rcx", "ecx", "cx", "cl"}},
    {96, {"rdx", "edx", "dx", "dl"}},
    {104, {"rsi", "esi", "si", "sil"}},
    {112, {"rdi", "edi", "di", "dil"}},
    {32, {"rbp", "ebp", "bp", "bpl"}},
    {152, {"rsp", "esp", "sp", "spl"}},
    {72, {"r8", "r8d", "r8w", "r8b"}},
    {64, {"r9", "r9d", "r9w", "r9b"}},
    {56, {"r10", "r10d", "r10w", "r10b"}},
    {48, {"r11", "r11d", "r11w", "r11b"}},
    {24, {"r12", "r12d", "r12w", "r12b"}},
    {16, {"r13", "r13d", "r13w", "r13b"}},
    {8, {"r14", "r14d", "r14w", "r14b"}},
    {0, {"r15", "r15d", "r15w", "r15b"}},
};

static int reg_off(const char *name, int16_t *off)
{
    for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
        for (int k = 0; k < 4 && regs[i].names[k]; k++)
            if (strcmp(name, regs[i].names[k]) == 0) {
                *off = regs[i].off;
                return 0;
            }
    return -EINVAL;
}

static int parse_arg(const char *tok, struct usdt_arg_spec *a)
{
    int sz, len = 0;
    long long v;
    char reg[16];
    if (sscanf(tok, "%d@%lld(%%%15[^)])%n", &sz, &v, reg, &len) == 3 && !tok[len]) {
        a->arg_type = 2;
        a->val_off = (uint64_t)v;
    } else if (sscanf(tok, "%d@(%%%15[^)])%n", &sz, reg, &len) == 2 && !tok[len]) {
        a->arg_type = 2;
        a->val_off = 0;
    } else if (sscanf(tok, "%d@%%%15s%n", &sz, reg, &len) == 2 && !tok[len]) {
        a->arg_type = 1;
        a->val_off = 0;
    } else if (sscanf(tok, "%d@$%lld%n", &sz, &v, &len) == 2 && !tok[len]) {
        a->arg_type = 0;
        a->val_off = (uint64_t)v;
        reg[0] = 0;
    } else {
        return -EINVAL;
    }
    int bytes = sz < 0 ? -sz : sz;
    if ((bytes != 1 && bytes != 2 && bytes != 4 && bytes != 8) || (reg[0] && reg_off(reg, &a->reg_off)))
        return -EINVAL;
    a->arg_signed = sz < 0;
    a->arg_bitshift = (int8_t)(64 - bytes * 8);
    return 0;
}

static int parse_args(const char *args, struct usdt_spec *spec, char *err, size_t errlen)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", args);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        if (spec->arg_cnt == USDT_MAX_ARGS || parse_arg(tok, &spec->args[spec->arg_cnt])) {
            snprintf(err, errlen, "USDT argument '%s' of '%s': not a form libbpf's specs express", tok, args);
            return -EINVAL;
        }
        spec->arg_cnt++;
    }
    return 0;
}

/* ---- .note.stapsdt ---- */

/* A virtual address of the file as a file offset (its PT_LOAD). */
static int vaddr_to_off(Elf *e, uint64_t vaddr, uint64_t *off)
{
    size_t n;
    if (elf_getphdrnum(e, &n))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(e, (int)i, &ph) && ph.p_type == PT_LOAD && vaddr >= ph.p_vaddr &&
            vaddr < ph.p_vaddr + ph.p_memsz) {
            *off = vaddr - ph.p_vaddr + ph.p_offset;
            return 0;
        }
    }
    return -ENOENT;
}

struct note_scan {
    const char *provider, *name;
    uint64_t sdt_base; /* .stapsdtbase's address: prelink moved the file if it differs */
    struct usdt_site *sites;
    size_t n;
};

/* One NT_STAPSDT note: loc, base, semaphore, then provider, name, args. */
static int take_note(Elf *e, struct note_scan *ns, const uint8_t *desc, size_t len, char *err, size_t errlen)
{
    uint64_t a[3];
    if (len < sizeof(a) + 3)
        return 0;
    memcpy(a, desc, sizeof(a));
    const char *prov = (const char *)desc + sizeof(a), *end = (const char *)desc + len;
    const char *nm = prov + strnlen(prov, (size_t)(end - prov)) + 1;
    const char *args = nm < end ? nm + strnlen(nm, (size_t)(end - nm)) + 1 : end;
    if (args >= end || strcmp(prov, ns->provider) || strcmp(nm, ns->name))
        return 0;
    uint64_t loc = a[0] + (ns->sdt_base && a[1] ? ns->sdt_base - a[1] : 0);
    struct usdt_site site = {0};
    if (vaddr_to_off(e, loc, &site.loc_off) || (a[2] && vaddr_to_off(e, a[2], &site.sem_off))) {
        snprintf(err, errlen, "USDT %s:%s at 0x%llx is outside the file's segments", prov, nm, (unsigned long long)loc);
        return -EINVAL;
    }
    int r = parse_args(args, &site.spec, err, errlen);
    struct usdt_site *grown = r ? NULL : realloc(ns->sites, (ns->n + 1) * sizeof(*grown));
    if (!r && !grown)
        r = -ENOMEM;
    if (r)
        return r;
    ns->sites = grown;
    ns->sites[ns->n++] = site;
    return 0;
}

static int scan_section(Elf *e, Elf_Scn *scn, struct note_scan *ns, char *err, size_t errlen)
{
    Elf_Data *d = elf_getdata(scn, NULL);
    size_t off = 0, name_off, desc_off;
    GElf_Nhdr nh;
    while (d && (off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
        if (nh.n_type != 3 || nh.n_namesz != 8 || memcmp((char *)d->d_buf + name_off, "stapsdt", 8))
            continue;
        int r = take_note(e, ns, (const uint8_t *)d->d_buf + desc_off, nh.n_descsz, err, errlen);
        if (r)
            return r;
    }
    return 0;
}

static int scan_elf(Elf *e, struct note_scan *ns, char *err, size_t errlen)
{
    size_t shstrndx;
    if (elf_getshdrstrndx(e, &shstrndx))
        return -EINVAL;
    Elf_Scn *notes = NULL;
    for (Elf_Scn *scn = elf_nextscn(e, NULL); scn; scn = elf_nextscn(e, scn)) {
        GElf_Shdr sh;
        const char *sname = gelf_getshdr(scn, &sh) ? elf_strptr(e, shstrndx, sh.sh_name) : NULL;
        if (sname && strcmp(sname, ".stapsdt.base") == 0)
            ns->sdt_base = sh.sh_addr;
        if (sname && sh.sh_type == SHT_NOTE && strcmp(sname, ".note.stapsdt") == 0)
            notes = scn;
    }
    return notes ? scan_section(e, notes, ns, err, errlen) : 0;
}

int usdt_find(const char *path, const char *provider, const char *name, struct usdt_site **out, size_t *n, char *err,
              size_t errlen)
{
    struct note_scan ns = {provider, name, 0, NULL, 0};
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    elf_version(EV_CURRENT);
    Elf *e = elf_begin(fd, ELF_C_READ, NULL);
    int r = e && elf_kind(e) == ELF_K_ELF ? scan_elf(e, &ns, err, errlen) : -ENOEXEC;
    if (r == -ENOEXEC)
        snprintf(err, errlen, "%s is not an ELF file", path);
    if (!r && !ns.n) {
        snprintf(err, errlen, "%s has no USDT probe %s:%s", path, provider, name);
        r = -ENOENT;
    }
    if (e)
        elf_end(e);
    close(fd);
    if (r) {
        free(ns.sites);
        return r;
    }
    *out = ns.sites;
    *n = ns.n;
    return 0;
}

static int runtime_addrs(pid_t pid, const char *binary, struct usdt_site *sites, size_t n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        int r = sym_resolve_file_offset(pid, binary, sites[i].loc_off, &sites[i].addr, err, errlen);
        if (!r && sites[i].sem_off)
            r = sym_resolve_data_offset(pid, binary, sites[i].sem_off, &sites[i].sem, err, errlen);
        if (r)
            return r;
    }
    return 0;
}

int usdt_sites(pid_t pid, const char *binary, const char *probe, struct usdt_site **out, size_t *n, char *err,
               size_t errlen)
{
    char provider[128], path[PATH_MAX + 32], exe[PATH_MAX] = "";
    const char *colon = strchr(probe, ':');
    if (!colon || colon == probe || !colon[1] || (size_t)(colon - probe) >= sizeof(provider)) {
        snprintf(err, errlen, "USDT probe '%s': expected PROVIDER:NAME", probe);
        return -EINVAL;
    }
    snprintf(provider, sizeof(provider), "%.*s", (int)(colon - probe), probe);
    if (!binary[0]) {
        snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
        ssize_t len = readlink(path, exe, sizeof(exe) - 1);
        if (len <= 0) {
            snprintf(err, errlen, "no process with pid %d", (int)pid);
            return -ESRCH;
        }
        exe[len] = 0;
        binary = exe;
    } else if (binary[0] != '/') {
        snprintf(err, errlen, "USDT binary '%s': give an absolute path", binary);
        return -EINVAL;
    }
    snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pid, binary);
    int r = usdt_find(path, provider, colon + 1, out, n, err, errlen);
    if (!r && (r = runtime_addrs(pid, binary, *out, *n, err, errlen)) != 0) {
        free(*out);
        *out = NULL;
    }
    return r;
}
