/* BPF object loader: libbpf over an emulated bpf(). See objload.h. */
#define _GNU_SOURCE
#include "objload.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bpf_emu.h"

#ifndef EM_BPF
#define EM_BPF 247
#endif
#define OBJ_MAX_FILE_BYTES (256u << 20)
#define MSG_CAP 2048

/* libbpf's warnings during one load, joined with "; ". */
struct msgbuf {
    char text[MSG_CAP];
    size_t len;
};

static __thread struct msgbuf *load_msgs;
static libbpf_print_fn_t prev_print;

static int capture_print(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    struct msgbuf *m = load_msgs;
    char line[512];

    if (!m) /* another thread's libbpf use: leave it as it was */
        return prev_print ? prev_print(level, fmt, ap) : 0;
    if (level != LIBBPF_WARN)
        return 0;
    vsnprintf(line, sizeof(line), fmt, ap);
    char *s = line;
    if (strncmp(s, "libbpf: ", 8) == 0)
        s += 8;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' '))
        s[--n] = '\0';
    if (!n || m->len + 3 >= sizeof(m->text))
        return 0;
    int w = snprintf(m->text + m->len, sizeof(m->text) - m->len, "%s%s", m->len ? "; " : "", s);
    if (w > 0)
        m->len += (size_t)w < sizeof(m->text) - m->len ? (size_t)w : sizeof(m->text) - m->len - 1;
    return 0;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (!err || !errlen)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- section names ------------------------------------------------------ */

const char *bpfg_attach_kind_name(enum bpfg_attach_kind kind)
{
    switch (kind) {
    case BPFG_ATTACH_UPROBE: return "uprobe";
    case BPFG_ATTACH_URETPROBE: return "uretprobe";
    case BPFG_ATTACH_SYSCALL_ENTER: return "syscall_enter";
    case BPFG_ATTACH_SYSCALL_EXIT: return "syscall_exit";
    case BPFG_ATTACH_RAW_SYSCALL_ENTER: return "raw_syscall_enter";
    case BPFG_ATTACH_RAW_SYSCALL_EXIT: return "raw_syscall_exit";
    case BPFG_ATTACH_TIMER: return "timer";
    default: return "unsupported";
    }
}

/* s is word alone or word/REST (libbpf's "word+" section forms). */
static bool sec_is(const char *s, const char *word, const char **rest)
{
    size_t n = strlen(word);

    if (strncmp(s, word, n) != 0 || (s[n] != '\0' && s[n] != '/'))
        return false;
    *rest = s[n] ? s + n + 1 : s + n;
    return true;
}

static int unsupported(struct bpfg_obj_prog *p, const char *fmt, ...)
{
    va_list ap;

    p->kind = BPFG_ATTACH_UNSUPPORTED;
    va_start(ap, fmt);
    int r = vasprintf(&p->error, fmt, ap);
    va_end(ap);
    if (r < 0) {
        p->error = NULL;
        return -ENOMEM;
    }
    return 0;
}

static bool valid_ident(const char *s, const char *extra)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && !strchr(extra, *s))
            return false;
    return true;
}

/* uprobe spec as libbpf reads it: BINARY:FUNC[+OFFSET], BINARY up to the
 * first ':' (so SEC("uprobe//bin/true:main") names /bin/true). */
static int parse_uprobe(const char *sec, const char *spec, bool ret, struct bpfg_obj_prog *p)
{
    const char *colon = strchr(spec, ':');
    uint64_t off = 0;

    p->kind = ret ? BPFG_ATTACH_URETPROBE : BPFG_ATTACH_UPROBE;
    if (!*spec)
        return 0; /* bare SEC("uprobe"): target given at attach */
    if (!colon || colon == spec)
        return unsupported(p, "section '%s': expected %s/BINARY:FUNCTION[+OFFSET]", sec, ret ? "uretprobe" : "uprobe");
    const char *fn = colon + 1, *plus = strchr(fn, '+');
    size_t fnlen = plus ? (size_t)(plus - fn) : strlen(fn);
    if (plus) {
        char *end;
        errno = 0;
        off = strtoull(plus + 1, &end, 0);
        if (errno || end == plus + 1 || *end)
            return unsupported(p, "section '%s': bad offset '%s'", sec, plus + 1);
        if (ret && off)
            return unsupported(p, "section '%s': uretprobes do not support an offset", sec);
    }
    p->target_binary = strndup(spec, (size_t)(colon - spec));
    p->target_func = strndup(fn, fnlen);
    if (!p->target_binary || !p->target_func)
        return -ENOMEM;
    if (!valid_ident(p->target_func, ".@"))
        return unsupported(p, "section '%s': bad function name '%s'", sec, p->target_func);
    p->target_offset = off;
    return 0;
}

/* usdt[/BINARY:PROVIDER:NAME] (libbpf's form): an entry program at every
 * site of that probe; target_func holds "PROVIDER:NAME". */
static int parse_usdt(const char *sec, const char *spec, struct bpfg_obj_prog *p)
{
    const char *last = strrchr(spec, ':');
    const char *mid = last && last > spec ? memrchr(spec, ':', (size_t)(last - spec)) : NULL;
    if (*spec && (!mid || mid == spec || mid + 1 == last || !last[1]))
        return unsupported(p, "section '%s': expected usdt/BINARY:PROVIDER:NAME", sec);
    p->kind = BPFG_ATTACH_UPROBE;
    p->usdt = true;
    if (!*spec)
        return 0; /* bare SEC("usdt"): target given at attach */
    p->target_binary = strndup(spec, (size_t)(mid - spec));
    p->target_func = strdup(mid + 1);
    return p->target_binary && p->target_func ? 0 : -ENOMEM;
}

int bpfg_obj_parse_section(const char *sec, struct bpfg_obj_prog *p)
{
    const char *rest;

    if (sec_is(sec, "usdt", &rest))
        return parse_usdt(sec, rest, p);

    if (sec_is(sec, "uprobe", &rest))
        return parse_uprobe(sec, rest, false, p);
    if (sec_is(sec, "uprobe.s", &rest)) {
        p->sleepable = true;
        return parse_uprobe(sec, rest, false, p);
    }
    if (sec_is(sec, "uretprobe", &rest))
        return parse_uprobe(sec, rest, true, p);
    if (sec_is(sec, "uretprobe.s", &rest)) {
        p->sleepable = true;
        return parse_uprobe(sec, rest, true, p);
    }
    if ((sec_is(sec, "tracepoint", &rest) || sec_is(sec, "tp", &rest)) && *rest) {
        const char *name;
        if (sec_is(rest, "syscalls", &name)) {
            enum bpfg_attach_kind k = BPFG_ATTACH_UNSUPPORTED;
            if (strncmp(name, "sys_enter_", 10) == 0)
                k = BPFG_ATTACH_SYSCALL_ENTER, name += 10;
            else if (strncmp(name, "sys_exit_", 9) == 0)
                k = BPFG_ATTACH_SYSCALL_EXIT, name += 9;
            if (k != BPFG_ATTACH_UNSUPPORTED && valid_ident(name, "")) {
                p->kind = k;
                p->syscall = strdup(name);
                return p->syscall ? 0 : -ENOMEM;
            }
        } else if (sec_is(rest, "raw_syscalls", &name)) {
            if (strcmp(name, "sys_enter") == 0) {
                p->kind = BPFG_ATTACH_RAW_SYSCALL_ENTER;
                return 0;
            }
            if (strcmp(name, "sys_exit") == 0) {
                p->kind = BPFG_ATTACH_RAW_SYSCALL_EXIT;
                return 0;
            }
        }
        return unsupported(p,
                           "section '%s': tracepoint '%s' is not available in userspace "
                           "(only syscalls/sys_enter_NAME, syscalls/sys_exit_NAME, "
                           "raw_syscalls/sys_enter|sys_exit)",
                           sec, rest);
    }
    if (sec_is(sec, "raw_tracepoint", &rest) || sec_is(sec, "raw_tp", &rest)) {
        if (strcmp(rest, "sys_enter") == 0) {
            p->kind = BPFG_ATTACH_RAW_SYSCALL_ENTER;
            return 0;
        }
        if (strcmp(rest, "sys_exit") == 0) {
            p->kind = BPFG_ATTACH_RAW_SYSCALL_EXIT;
            return 0;
        }
        return unsupported(p,
                           "section '%s': raw tracepoint '%s' is not available in userspace "
                           "(only sys_enter, sys_exit)",
                           sec, rest);
    }
    size_t typelen = strcspn(sec, "/");
    return unsupported(p,
                       "section '%s': %.*s programs are not available in userspace "
                       "(supported: uprobe, uretprobe, tracepoint/syscalls/sys_enter_*|sys_exit_*, "
                       "raw_tracepoint/sys_enter|sys_exit)",
                       sec, (int)typelen, sec);
}

/* ---- maps --------------------------------------------------------------- */

int bpfg_obj_default_create_map(void *user, const struct bpfg_map_def *def)
{
    char name[64];
    uint64_t size = 0;

    (void)user;
    if (def->type == BPF_MAP_TYPE_ARRAY || def->type == BPF_MAP_TYPE_PERCPU_ARRAY) {
        size = (((uint64_t)def->value_size + 7) & ~7ull) * def->max_entries;
        size = (size + 4095) & ~4095ull;
    }
    if (def->init_size > size)
        return -EINVAL;
    snprintf(name, sizeof(name), "bpfg-map-%s", def->name);
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (ftruncate(fd, (off_t)size) < 0 ||
        (def->init_size && pwrite(fd, def->init_data, def->init_size, 0) != (ssize_t)def->init_size)) {
        int err = errno ? -errno : -EIO;
        close(fd);
        return err;
    }
    return fd;
}

static enum bpfg_map_kind map_kind(const struct bpf_map *m)
{
    const char *name = bpf_map__name(m);

    if (!bpf_map__is_internal(m))
        return BPFG_MAP_USER;
    if (strstr(name, ".rodata"))
        return BPFG_MAP_RODATA;
    if (strstr(name, ".bss"))
        return BPFG_MAP_BSS;
    if (strstr(name, ".kconfig"))
        return BPFG_MAP_KCONFIG;
    return BPFG_MAP_DATA;
}

/* ---- the object ----------------------------------------------------------- */

void bpfg_obj_free(struct bpfg_obj *obj)
{
    if (!obj)
        return;
    for (size_t i = 0; i < obj->map_cnt; i++) {
        struct bpfg_obj_map *m = &obj->maps[i];
        free(m->name);
        free(m->init_data);
        free(m->init_slots);
        if (m->fd >= 0)
            close(m->fd);
    }
    for (size_t i = 0; i < obj->prog_cnt; i++) {
        struct bpfg_obj_prog *p = &obj->progs[i];
        free(p->name);
        free(p->section);
        free(p->error);
        free(p->target_binary);
        free(p->target_func);
        free(p->syscall);
        free(p->license);
        free(p->insns);
    }
    free(obj->maps);
    free(obj->progs);
    btf__free(obj->btf);
    free(obj->name);
    free(obj);
}

int bpfg_obj_map_index(const struct bpfg_obj *obj, const char *name)
{
    for (size_t i = 0; i < obj->map_cnt; i++)
        if (strcmp(obj->maps[i].name, name) == 0)
            return (int)i;
    return -ENOENT;
}

/* Cheap checks libbpf would report less clearly (or not survive). */
static int check_elf(const void *buf, size_t len, char *err, size_t errlen)
{
    const unsigned char *b = buf;

    if (!buf || len == 0) {
        set_err(err, errlen, "empty object: no bytes given");
        return -EINVAL;
    }
    if (len < sizeof(Elf64_Ehdr) || memcmp(b, ELFMAG, SELFMAG) != 0) {
        set_err(err, errlen, "not an ELF file (%zu bytes, bad magic or too short)", len);
        return -EINVAL;
    }
    if (b[EI_CLASS] != ELFCLASS64) {
        set_err(err, errlen, "not a BPF object: 32-bit ELF");
        return -EINVAL;
    }
    Elf64_Ehdr eh;
    memcpy(&eh, b, sizeof(eh));
    if (b[EI_DATA] != ELFDATA2LSB) {
        set_err(err, errlen, "not a BPF object for this host: big-endian ELF");
        return -EINVAL;
    }
    if (eh.e_machine != EM_BPF) {
        set_err(err, errlen, "not a BPF object: ELF machine %u, expected EM_BPF (%u)", eh.e_machine, EM_BPF);
        return -EINVAL;
    }
    if (eh.e_type != ET_REL) {
        set_err(err, errlen, "not a BPF object file: ELF type %u, expected ET_REL (a clang -c output)", eh.e_type);
        return -EINVAL;
    }
    if (eh.e_shoff == 0 || eh.e_shoff > len || eh.e_shentsize != sizeof(Elf64_Shdr) ||
        (uint64_t)eh.e_shnum * sizeof(Elf64_Shdr) > len - eh.e_shoff) {
        set_err(err, errlen, "truncated or corrupt ELF: section header table outside the %zu-byte file", len);
        return -EINVAL;
    }
    return 0;
}

static int validate_btf(const void *data, size_t size, const void *ext, size_t ext_size, char *err, size_t errlen);

/* libbpf 1.1 trusts the ELF's internal references (it crashes on a NULL
 * section or symbol name, a symbol in a missing section, a relocation past
 * the symbol table). Everything it follows is checked here first, with
 * libelf, so bad input gets an error naming the problem. */
static int validate_elf(const void *buf, size_t len, char *err, size_t errlen)
{
    Elf *elf;
    Elf_Scn *scn = NULL;
    size_t shnum, shstrndx, symtab_idx = 0, nsyms = 0, btf_size = 0, ext_size = 0;
    const void *btf_data = NULL, *ext_data = NULL;
    int r = -EINVAL;

    if (elf_version(EV_CURRENT) == EV_NONE) {
        set_err(err, errlen, "libelf: %s", elf_errmsg(-1));
        return -EINVAL;
    }
    elf = elf_memory((char *)buf, len);
    if (!elf) {
        set_err(err, errlen, "corrupt ELF: %s", elf_errmsg(-1));
        return -EINVAL;
    }
    if (elf_kind(elf) != ELF_K_ELF || elf_getshdrnum(elf, &shnum) < 0 || elf_getshdrstrndx(elf, &shstrndx) < 0 ||
        shstrndx == 0 || shstrndx >= shnum) {
        set_err(err, errlen, "corrupt ELF: bad section header table or names section");
        goto out;
    }
    while ((scn = elf_nextscn(elf, scn))) {
        size_t idx = elf_ndxscn(scn);
        GElf_Shdr sh;
        const char *name;
        if (!gelf_getshdr(scn, &sh) || !(name = elf_strptr(elf, shstrndx, sh.sh_name))) {
            set_err(err, errlen, "corrupt ELF: section %zu has no valid header or name", idx);
            goto out;
        }
        if (sh.sh_type != SHT_NOBITS && (sh.sh_offset > len || sh.sh_size > len - sh.sh_offset)) {
            set_err(err, errlen, "truncated or corrupt ELF: section '%s' (%zu) lies outside the %zu-byte file", name,
                    idx, len);
            goto out;
        }
        if (sh.sh_link >= shnum || ((sh.sh_type == SHT_REL || sh.sh_type == SHT_RELA) && sh.sh_info >= shnum)) {
            set_err(err, errlen, "corrupt ELF: section '%s' links to a missing section", name);
            goto out;
        }
        if ((strcmp(name, ".BTF") == 0 || strcmp(name, ".BTF.ext") == 0) && sh.sh_type != SHT_PROGBITS) {
            set_err(err, errlen, "corrupt ELF: section '%s' holds no data", name);
            goto out;
        }
        if (strcmp(name, ".BTF") == 0) {
            btf_data = (const char *)buf + sh.sh_offset;
            btf_size = sh.sh_size;
        } else if (strcmp(name, ".BTF.ext") == 0) {
            ext_data = (const char *)buf + sh.sh_offset;
            ext_size = sh.sh_size;
        }
        if ((sh.sh_flags & SHF_EXECINSTR) && sh.sh_type == SHT_PROGBITS && sh.sh_size % 8) {
            set_err(err, errlen, "corrupt ELF: program section '%s' is not a whole number of instructions", name);
            goto out;
        }
        if (sh.sh_type == SHT_SYMTAB) {
            GElf_Shdr strsh;
            Elf_Scn *strscn = elf_getscn(elf, sh.sh_link);
            if (symtab_idx) {
                set_err(err, errlen, "corrupt ELF: more than one symbol table");
                goto out;
            }
            if (sh.sh_entsize != sizeof(Elf64_Sym) || sh.sh_size % sizeof(Elf64_Sym) || !strscn ||
                !gelf_getshdr(strscn, &strsh) || strsh.sh_type != SHT_STRTAB) {
                set_err(err, errlen, "corrupt ELF: malformed symbol table '%s'", name);
                goto out;
            }
            symtab_idx = idx;
            nsyms = sh.sh_size / sizeof(Elf64_Sym);
        }
    }
    if (!symtab_idx) {
        set_err(err, errlen, "not a BPF object: no symbol table");
        goto out;
    }
    if (btf_data && validate_btf(btf_data, btf_size, ext_data, ext_size, err, errlen) < 0)
        goto out;

    /* Symbols: named, in an existing section, programs inside their section. */
    Elf_Scn *symscn = elf_getscn(elf, symtab_idx);
    GElf_Shdr symsh;
    Elf_Data *syms = elf_getdata(symscn, NULL);
    gelf_getshdr(symscn, &symsh);
    if (!syms || syms->d_size < nsyms * sizeof(Elf64_Sym)) {
        set_err(err, errlen, "corrupt ELF: unreadable symbol table");
        goto out;
    }
    for (size_t i = 1; i < nsyms; i++) {
        GElf_Sym sym;
        const char *sname;
        if (!gelf_getsym(syms, (int)i, &sym) || !(sname = elf_strptr(elf, symsh.sh_link, sym.st_name))) {
            set_err(err, errlen, "corrupt ELF: symbol %zu has no valid name", i);
            goto out;
        }
        if (sym.st_shndx != SHN_UNDEF && sym.st_shndx < SHN_LORESERVE && sym.st_shndx >= shnum) {
            set_err(err, errlen, "corrupt ELF: symbol '%s' is in missing section %u", sname, sym.st_shndx);
            goto out;
        }
        if (GELF_ST_TYPE(sym.st_info) == STT_FUNC && sym.st_shndx != SHN_UNDEF && sym.st_shndx < shnum) {
            GElf_Shdr fsh;
            if (!gelf_getshdr(elf_getscn(elf, sym.st_shndx), &fsh) || sym.st_value % 8 || sym.st_size % 8 ||
                sym.st_value > fsh.sh_size || sym.st_size > fsh.sh_size - sym.st_value) {
                set_err(err, errlen, "corrupt ELF: function '%s' lies outside its section", sname);
                goto out;
            }
        }
    }

    /* Relocations: well-formed entries naming existing symbols, at
     * instruction boundaries inside the section they patch. */
    scn = NULL;
    while ((scn = elf_nextscn(elf, scn))) {
        GElf_Shdr sh, tsh;
        gelf_getshdr(scn, &sh);
        if (sh.sh_type != SHT_REL)
            continue;
        const char *name = elf_strptr(elf, shstrndx, sh.sh_name);
        Elf_Data *d = elf_getdata(scn, NULL);
        if (sh.sh_link != symtab_idx || sh.sh_entsize != sizeof(Elf64_Rel) || sh.sh_size % sizeof(Elf64_Rel) ||
            (sh.sh_size && (!d || d->d_size < sh.sh_size)) || !gelf_getshdr(elf_getscn(elf, sh.sh_info), &tsh)) {
            set_err(err, errlen, "corrupt ELF: malformed relocation section '%s'", name);
            goto out;
        }
        bool code = tsh.sh_flags & SHF_EXECINSTR;
        for (size_t i = 0; i < sh.sh_size / sizeof(Elf64_Rel); i++) {
            GElf_Rel rel;
            if (!gelf_getrel(d, (int)i, &rel)) {
                set_err(err, errlen, "corrupt ELF: unreadable relocation %zu in '%s'", i, name);
                goto out;
            }
            size_t symi = GELF_R_SYM(rel.r_info);
            if (symi >= nsyms || (code && symi == 0)) {
                set_err(err, errlen,
                        "relocation %zu in '%s' refers to symbol #%zu, which does not exist "
                        "(the symbol table has %zu)",
                        i, name, symi, nsyms);
                goto out;
            }
            if (code && (rel.r_offset % 8 || rel.r_offset >= tsh.sh_size)) {
                set_err(err, errlen, "corrupt ELF: relocation %zu in '%s' is outside its program", i, name);
                goto out;
            }
        }
    }
    r = 0;
out:
    elf_end(elf);
    return r;
}

static bool btf_name_ok(const struct btf *btf, uint32_t off)
{
    return btf__name_by_offset(btf, off) != NULL;
}

/* .BTF.ext as the kernel's btf.rst describes it: a header, then func_info,
 * line_info and CO-RE relocation blocks, each a record size followed by
 * {section name, count, records} groups. */
struct ext_hdr {
    uint16_t magic;
    uint8_t version, flags;
    uint32_t hdr_len;
    uint32_t func_off, func_len, line_off, line_len;
    uint32_t core_off, core_len; /* absent in short headers */
};

/* Which u32 words of a record are string offsets / type ids, per block. */
static const struct ext_block {
    size_t hdr_field_off;
    uint32_t min_rec;
    uint8_t str_mask, type_mask;
} ext_blocks[] = {
    {offsetof(struct ext_hdr, func_off), 8, 0x0, 0x2},  /* insn_off, type_id */
    {offsetof(struct ext_hdr, line_off), 16, 0x6, 0x0}, /* insn_off, file, line, col */
    {offsetof(struct ext_hdr, core_off), 16, 0x4, 0x2}, /* insn_off, type_id, access, kind */
};

/* libbpf 1.1 trusts the names and ids in .BTF.ext too (and leaks its CO-RE
 * candidate cache on a bad section name). btf_ext__new() checks the layout
 * first; the walk below only follows references. */
static int validate_btf_ext(const struct btf *btf, const void *data, size_t size)
{
    struct btf_ext *ext = btf_ext__new(data, (uint32_t)size);
    struct ext_hdr h = {0};
    const unsigned char *p = data;
    uint32_t ntypes = btf__type_cnt(btf);

    if (!ext)
        return -EINVAL;
    btf_ext__free(ext);
    memcpy(&h, p, size < sizeof(h) ? size : sizeof(h));
    if (h.hdr_len > size || h.hdr_len < offsetof(struct ext_hdr, core_off))
        return -EINVAL;
    for (size_t b = 0; b < 3; b++) {
        const struct ext_block *eb = &ext_blocks[b];
        uint32_t off, len;
        if (eb->hdr_field_off + 8 > h.hdr_len)
            continue; /* block not in this header version */
        memcpy(&off, (const char *)&h + eb->hdr_field_off, 4);
        memcpy(&len, (const char *)&h + eb->hdr_field_off + 4, 4);
        if (!len)
            continue;
        if ((uint64_t)h.hdr_len + off + len > size || len < 4)
            return -EINVAL;
        const unsigned char *q = p + h.hdr_len + off, *end = q + len;
        uint32_t rec;
        memcpy(&rec, q, 4);
        q += 4;
        if (rec < eb->min_rec || rec % 4)
            return -EINVAL;
        while (q < end) {
            uint32_t name, cnt;
            if (end - q < 8)
                return -EINVAL;
            memcpy(&name, q, 4);
            memcpy(&cnt, q + 4, 4);
            q += 8;
            if (!btf_name_ok(btf, name) || (uint64_t)cnt * rec > (uint64_t)(end - q))
                return -EINVAL;
            for (uint32_t i = 0; i < cnt; i++, q += rec) {
                uint32_t insn_off;
                memcpy(&insn_off, q, 4);
                if (insn_off % 8) /* libbpf 1.1 leaks on this one */
                    return -EINVAL;
                for (unsigned w = 0; w < 4 && w * 4 + 4 <= rec; w++) {
                    uint32_t v;
                    memcpy(&v, q + w * 4, 4);
                    if (((eb->str_mask >> w) & 1) && !btf_name_ok(btf, v))
                        return -EINVAL;
                    if (((eb->type_mask >> w) & 1) && v >= ntypes)
                        return -EINVAL;
                }
            }
        }
    }
    return 0;
}

/* libbpf 1.1 follows BTF names and type ids without checking them (a bad
 * one is a NULL strcmp). btf__new() checks the layout; this checks that
 * every name and every referenced type exists. */
static int validate_btf(const void *data, size_t size, const void *ext, size_t ext_size, char *err, size_t errlen)
{
    struct btf *btf = btf__new(data, (uint32_t)size);
    int r = -EINVAL;

    if (!btf) {
        set_err(err, errlen, "corrupt .BTF section: %s", strerror(errno));
        return -EINVAL;
    }
    uint32_t n = btf__type_cnt(btf);
    for (uint32_t id = 1; id < n; id++) {
        const struct btf_type *t = btf__type_by_id(btf, id);
        bool ok = t && btf_name_ok(btf, t->name_off);
        uint16_t vlen = t ? btf_vlen(t) : 0;
        switch (t ? btf_kind(t) : BTF_KIND_UNKN) {
        case BTF_KIND_PTR:
        case BTF_KIND_TYPEDEF:
        case BTF_KIND_VOLATILE:
        case BTF_KIND_CONST:
        case BTF_KIND_RESTRICT:
        case BTF_KIND_FUNC:
        case BTF_KIND_VAR:
        case BTF_KIND_DECL_TAG:
        case BTF_KIND_TYPE_TAG:
        case BTF_KIND_FUNC_PROTO: ok = ok && t->type < n; break;
        case BTF_KIND_ARRAY: ok = ok && btf_array(t)->type < n && btf_array(t)->index_type < n; break;
        default: break;
        }
        if (!ok)
            goto bad;
        if (btf_is_composite(t)) {
            const struct btf_member *m = btf_members(t);
            for (uint16_t i = 0; i < vlen; i++)
                if (!btf_name_ok(btf, m[i].name_off) || m[i].type >= n)
                    goto bad;
        } else if (btf_is_func_proto(t)) {
            const struct btf_param *p = btf_params(t);
            for (uint16_t i = 0; i < vlen; i++)
                if (!btf_name_ok(btf, p[i].name_off) || p[i].type >= n)
                    goto bad;
        } else if (btf_is_enum(t)) {
            const struct btf_enum *e = btf_enum(t);
            for (uint16_t i = 0; i < vlen; i++)
                if (!btf_name_ok(btf, e[i].name_off))
                    goto bad;
        } else if (btf_is_enum64(t)) {
            const struct btf_enum64 *e = btf_enum64(t);
            for (uint16_t i = 0; i < vlen; i++)
                if (!btf_name_ok(btf, e[i].name_off))
                    goto bad;
        } else if (btf_is_datasec(t)) {
            const struct btf_var_secinfo *v = btf_var_secinfos(t);
            for (uint16_t i = 0; i < vlen; i++)
                if (v[i].type >= n)
                    goto bad;
        }
        continue;
    bad:
        set_err(err, errlen, "corrupt .BTF section: type %u refers to a missing name or type", id);
        goto out;
    }
    if (ext && validate_btf_ext(btf, ext, ext_size) < 0) {
        set_err(err, errlen, "corrupt .BTF.ext section: bad header, record or reference into .BTF");
        goto out;
    }
    r = 0;
out:
    btf__free(btf);
    return r;
}

/* ---- legacy "maps" section ------------------------------------------------ */

/* struct bpf_map_def of libbpf 0.x: the fields that matter, in order. */
static const char *const legacy_fields[] = {"type", "key_size", "value_size", "max_entries", "map_flags"};
#define LEGACY_DEF_SIZE (5 * sizeof(uint32_t))

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* Finds section name's index, 0 if absent. */
static size_t find_section(Elf *elf, size_t shstrndx, const char *name)
{
    Elf_Scn *scn = NULL;
    GElf_Shdr sh;

    while ((scn = elf_nextscn(elf, scn))) {
        const char *n = gelf_getshdr(scn, &sh) ? elf_strptr(elf, shstrndx, sh.sh_name) : NULL;
        if (n && strcmp(n, name) == 0)
            return elf_ndxscn(scn);
    }
    return 0;
}

/* The object's value of symbol name in section shndx, or -ENOENT. */
static int64_t symbol_value(Elf *elf, size_t shndx, const char *name)
{
    Elf_Scn *scn = NULL;
    GElf_Shdr sh;

    while ((scn = elf_nextscn(elf, scn))) {
        if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB)
            continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        for (size_t i = 1; d && i < sh.sh_size / sizeof(Elf64_Sym); i++) {
            GElf_Sym sym;
            const char *n;
            if (gelf_getsym(d, (int)i, &sym) && sym.st_shndx == shndx &&
                (n = elf_strptr(elf, sh.sh_link, sym.st_name)) && strcmp(n, name) == 0)
                return (int64_t)sym.st_value;
        }
    }
    return -ENOENT;
}

/* libbpf 1.x refuses the legacy "maps" section. Rewrites the object so
 * each struct bpf_map_def there becomes the BTF-defined map libbpf would
 * have made of it: the section is renamed ".maps" and the BTF gets, per
 * map, a struct of `int (*field)[value]` members (all at offset 0, so the
 * struct still fits the 20-byte definition) that the "maps" DATASEC, now
 * called ".maps", points to. Returns 0 and a new buffer in *out (NULL if
 * the object has no legacy maps), or -errno with err set. */
static int convert_legacy_maps(const void *buf, size_t len, void **out, size_t *outlen, char *err, size_t errlen)
{
    Elf *elf = elf_memory((char *)buf, len);
    size_t shnum, shstrndx, maps_idx, btf_idx;
    struct btf *btf = NULL;
    unsigned char *nb = NULL;
    int r = -EINVAL;

    *out = NULL;
    if (!elf || elf_getshdrnum(elf, &shnum) < 0 || elf_getshdrstrndx(elf, &shstrndx) < 0) {
        set_err(err, errlen, "corrupt ELF: %s", elf_errmsg(-1));
        goto out;
    }
    maps_idx = find_section(elf, shstrndx, "maps");
    if (!maps_idx) {
        r = 0;
        goto out;
    }
    btf_idx = find_section(elf, shstrndx, ".BTF");
    Elf64_Ehdr eh;
    memcpy(&eh, buf, sizeof(eh));
    const Elf64_Shdr *shdrs = (const Elf64_Shdr *)((const char *)buf + eh.e_shoff);
    Elf64_Shdr msh, bsh, ssh;
    memcpy(&msh, &shdrs[maps_idx], sizeof(msh));
    if (!btf_idx || eh.e_shnum != shnum || find_section(elf, shstrndx, ".maps")) {
        set_err(err, errlen,
                "legacy 'maps' section (struct bpf_map_def) is not supported by libbpf 1.x "
                "and cannot be converted without BTF (compile with -g) or beside a '.maps' section; "
                "use BTF-defined maps in SEC(\".maps\")");
        r = -EOPNOTSUPP;
        goto out;
    }
    memcpy(&bsh, &shdrs[btf_idx], sizeof(bsh));
    memcpy(&ssh, &shdrs[shstrndx], sizeof(ssh));
    if (msh.sh_type != SHT_PROGBITS) {
        set_err(err, errlen, "legacy 'maps' section holds no map definitions");
        goto out;
    }
    btf = btf__new((const char *)buf + bsh.sh_offset, (uint32_t)bsh.sh_size);
    int sec_id = btf ? btf__find_by_name_kind(btf, "maps", BTF_KIND_DATASEC) : -1;
    int int_id = btf ? btf__add_int(btf, "int", 4, BTF_INT_SIGNED) : -1;
    int dot_maps = btf ? btf__add_str(btf, ".maps") : -1;
    if (sec_id <= 0 || int_id <= 0 || dot_maps <= 0) {
        set_err(err, errlen, "legacy 'maps' section: no BTF DATASEC describes it");
        goto out;
    }
    uint16_t nvars = btf_vlen(btf__type_by_id(btf, sec_id));
    for (uint16_t i = 0; i < nvars; i++) {
        /* Re-read each time: btf__add_*() may move the type data. */
        const struct btf_var_secinfo *vi = &btf_var_secinfos(btf__type_by_id(btf, sec_id))[i];
        const struct btf_type *var = btf__type_by_id(btf, vi->type);
        const char *name = var && btf_is_var(var) ? btf__name_by_offset(btf, var->name_off) : NULL;
        int64_t off = name ? symbol_value(elf, maps_idx, name) : -ENOENT;
        if (off < 0 || (uint64_t)off > msh.sh_size || msh.sh_size - (uint64_t)off < LEGACY_DEF_SIZE) {
            set_err(err, errlen, "legacy 'maps' section: map %u (%s) has no %zu-byte definition", i, name ? name : "?",
                    LEGACY_DEF_SIZE);
            goto out;
        }
        uint32_t vals[5];
        memcpy(vals, (const char *)buf + msh.sh_offset + off, sizeof(vals));
        int fields[5];
        for (int f = 0; f < 5; f++) {
            int arr = btf__add_array(btf, int_id, int_id, vals[f]);
            fields[f] = arr > 0 ? btf__add_ptr(btf, arr) : arr;
            if (fields[f] <= 0)
                goto nomem;
        }
        int st = btf__add_struct(btf, NULL, LEGACY_DEF_SIZE);
        if (st <= 0)
            goto nomem;
        for (int f = 0; f < 5; f++)
            if (btf__add_field(btf, legacy_fields[f], fields[f], 0, 0) < 0)
                goto nomem;
        int nv = btf__add_var(btf, name, BTF_VAR_GLOBAL_ALLOCATED, st);
        if (nv <= 0)
            goto nomem;
        struct btf_var_secinfo *wvi = (struct btf_var_secinfo *)&btf_var_secinfos(btf__type_by_id(btf, sec_id))[i];
        wvi->type = (uint32_t)nv;
        wvi->offset = (uint32_t)off;
        wvi->size = LEGACY_DEF_SIZE;
    }
    ((struct btf_type *)btf__type_by_id(btf, sec_id))->name_off = (uint32_t)dot_maps;

    uint32_t btf_sz;
    const void *raw = btf__raw_data(btf, &btf_sz);
    if (!raw)
        goto nomem;
    /* Old file, new BTF, names plus ".maps", new section headers. */
    size_t o_btf = align8(len), o_str = o_btf + align8(btf_sz);
    size_t str_sz = ssh.sh_size + sizeof(".maps");
    size_t o_sh = o_str + align8(str_sz), total = o_sh + shnum * sizeof(Elf64_Shdr);
    nb = calloc(1, total);
    if (!nb)
        goto nomem;
    memcpy(nb, buf, len);
    memcpy(nb + o_btf, raw, btf_sz);
    memcpy(nb + o_str, (const char *)buf + ssh.sh_offset, ssh.sh_size);
    memcpy(nb + o_str + ssh.sh_size, ".maps", sizeof(".maps"));
    memcpy(nb + o_sh, shdrs, shnum * sizeof(Elf64_Shdr));
    Elf64_Shdr *nsh = (Elf64_Shdr *)(nb + o_sh);
    nsh[btf_idx].sh_offset = o_btf;
    nsh[btf_idx].sh_size = btf_sz;
    nsh[shstrndx].sh_offset = o_str;
    nsh[shstrndx].sh_size = str_sz;
    nsh[maps_idx].sh_name = (uint32_t)ssh.sh_size;
    ((Elf64_Ehdr *)nb)->e_shoff = o_sh;
    *out = nb;
    *outlen = total;
    r = 0;
    goto out;
nomem:
    set_err(err, errlen, "legacy 'maps' section: cannot build BTF map definitions: %s",
            strerror(errno ? errno : ENOMEM));
    r = -ENOMEM;
out:
    btf__free(btf);
    if (elf)
        elf_end(elf);
    return r;
}

/* Rewrites the fd-based lddw forms libbpf emits into map indices. */
static int rewrite_map_refs(struct bpfg_obj_prog *p, const int *map_fds, size_t nmaps, char *err, size_t errlen)
{
    for (size_t i = 0; i < p->insn_cnt; i++) {
        struct bpf_insn *in = &p->insns[i];
        if (in->code != (BPF_LD | BPF_IMM | BPF_DW))
            continue;
        if (i + 1 >= p->insn_cnt) {
            set_err(err, errlen, "program '%s': lddw at the last instruction", p->name);
            return -EINVAL;
        }
        if (in->src_reg == BPF_PSEUDO_MAP_FD || in->src_reg == BPF_PSEUDO_MAP_VALUE) {
            size_t m = 0;
            while (m < nmaps && map_fds[m] != in->imm)
                m++;
            if (m == nmaps) {
                set_err(err, errlen, "program '%s': instruction %zu references an unknown map", p->name, i);
                return -EINVAL;
            }
            in->src_reg = in->src_reg == BPF_PSEUDO_MAP_FD ? BPF_PSEUDO_MAP_IDX : BPF_PSEUDO_MAP_IDX_VALUE;
            in->imm = (int32_t)m;
        }
        i++;
    }
    return 0;
}

/* Map-in-map: the inner map template (libbpf destroys its own copy once
 * the outer map exists; the emulation kept what inner_map_fd named). */
static void collect_inner(struct bpfg_obj_map *m, const struct bpfg_emu_map *em)
{
    m->inner = (struct bpfg_obj_inner_map){.type = em->inner_type,
                                           .key_size = em->inner_key_size,
                                           .value_size = em->inner_value_size,
                                           .max_entries = em->inner_max_entries,
                                           .flags = em->inner_flags};
}

/* Map-in-map slots libbpf filled (`.values = {...}`), by map index. */
static int collect_slots(struct bpfg_obj *obj, struct bpfg_emu *emu, const int *fds)
{
    for (size_t i = 0; i < obj->map_cnt; i++) {
        const struct bpfg_emu_map *em = bpfg_emu_map_by_fd(emu, fds[i]);
        struct bpfg_obj_map *m = &obj->maps[i];
        if (!em || !em->nslots)
            continue;
        uint32_t n = 0;
        for (uint32_t k = 0; k < em->nslots; k++)
            if (em->slot_keys[k] < m->max_entries && em->slot_keys[k] + 1 > n)
                n = em->slot_keys[k] + 1;
        m->init_slots = malloc(n * sizeof(*m->init_slots));
        if (!m->init_slots)
            return -ENOMEM;
        m->init_slots_cnt = n;
        for (uint32_t k = 0; k < n; k++)
            m->init_slots[k] = -1;
        for (uint32_t k = 0; k < em->nslots; k++)
            for (size_t j = 0; j < obj->map_cnt && em->slot_keys[k] < n; j++)
                if (fds[j] == em->slot_fds[k])
                    m->init_slots[em->slot_keys[k]] = (int32_t)j;
    }
    return 0;
}

/* Everything the object needs from libbpf's loaded state, taken while the
 * emulation still knows the fds. */
static int collect(struct bpfg_obj *obj, struct bpf_object *bo, struct bpfg_emu *emu, char *err, size_t errlen)
{
    struct bpf_map *bm;
    struct bpf_program *bp;
    int *fds = NULL;
    size_t n = 0;

    bpf_object__for_each_map(bm, bo) n++;
    obj->maps = calloc(n ? n : 1, sizeof(*obj->maps));
    fds = calloc(n ? n : 1, sizeof(*fds));
    if (!obj->maps || !fds)
        goto nomem;
    bpf_object__for_each_map(bm, bo)
    {
        struct bpfg_obj_map *m = &obj->maps[obj->map_cnt];
        m->fd = -1;
        obj->map_cnt++;
        m->name = strdup(bpf_map__name(bm));
        if (!m->name)
            goto nomem;
        m->kind = map_kind(bm);
        m->type = bpf_map__type(bm);
        m->key_size = bpf_map__key_size(bm);
        m->value_size = bpf_map__value_size(bm);
        m->max_entries = bpf_map__max_entries(bm);
        m->flags = bpf_map__map_flags(bm);
        m->btf_key_type_id = bpf_map__btf_key_type_id(bm);
        m->btf_value_type_id = bpf_map__btf_value_type_id(bm);
        m->map_extra = bpf_map__map_extra(bm);
        fds[obj->map_cnt - 1] = bpf_map__fd(bm);
        const struct bpfg_emu_map *em = bpfg_emu_map_by_fd(emu, fds[obj->map_cnt - 1]);
        if (!em) {
            set_err(err, errlen, "map '%s' was not created", m->name);
            free(fds);
            return -EINVAL;
        }
        collect_inner(m, em);
        if (m->kind != BPFG_MAP_USER) {
            size_t sz = 0;
            const void *init = bpf_map__initial_value(bm, &sz);
            if (init && sz) {
                m->init_data = malloc(sz);
                if (!m->init_data)
                    goto nomem;
                memcpy(m->init_data, init, sz);
                m->init_size = sz;
            }
        }
    }

    if (collect_slots(obj, emu, fds) < 0)
        goto nomem;

    /* progs[] was filled with names and kinds before the load. */
    size_t i = 0;
    bpf_object__for_each_program(bp, bo)
    {
        struct bpfg_obj_prog *p = &obj->progs[i++];
        if (p->kind == BPFG_ATTACH_UNSUPPORTED || p->kernel)
            continue;
        const struct bpfg_emu_prog *ep = bpfg_emu_prog_by_fd(emu, bpf_program__fd(bp));
        if (!ep) {
            set_err(err, errlen, "program '%s' was not loaded", p->name);
            free(fds);
            return -EINVAL;
        }
        p->insns = malloc(ep->insn_cnt * sizeof(*p->insns));
        p->license = strdup(ep->license);
        if (!p->insns || !p->license)
            goto nomem;
        memcpy(p->insns, ep->insns, ep->insn_cnt * sizeof(*p->insns));
        p->insn_cnt = ep->insn_cnt;
        p->prog_type = ep->type;
        p->expected_attach_type = ep->expected_attach_type;
        if (ep->kern_version)
            obj->kern_version = ep->kern_version;
        int r = rewrite_map_refs(p, fds, obj->map_cnt, err, errlen);
        if (r < 0) {
            free(fds);
            return r;
        }
    }
    free(fds);

    const struct btf *btf = bpf_object__btf(bo);
    if (btf) {
        uint32_t sz;
        const void *raw = btf__raw_data(btf, &sz);
        obj->btf = raw ? btf__new(raw, sz) : NULL;
        if (!obj->btf) {
            set_err(err, errlen, "cannot copy the object's BTF");
            return raw ? -errno : -ENOMEM;
        }
    }
    return 0;
nomem:
    free(fds);
    set_err(err, errlen, "out of memory");
    return -ENOMEM;
}

/* Whether a program goes to the kernel under mode: its error (why
 * userspace cannot run it) is then dropped. */
static bool mark_kernel(struct bpfg_obj_prog *p, enum bpfg_kernel_mode mode)
{
    if (mode == BPFG_KERNEL_NEVER || (mode == BPFG_KERNEL_AUTO && p->kind != BPFG_ATTACH_UNSUPPORTED))
        return false;
    p->kernel = true;
    free(p->error);
    p->error = NULL;
    return true;
}

/* The libbpf part, under the emulation. Returns 0 or -errno with err set. */
static int load_with_libbpf(struct bpfg_obj *obj, const void *buf, size_t len, const struct bpfg_obj_opts *opts,
                            char *err, size_t errlen)
{
    struct msgbuf msgs = {.len = 0};
    struct bpfg_emu *emu;
    struct bpf_object *bo = NULL;
    struct bpf_program *bp;
    int r = bpfg_emu_begin(&emu);

    if (r < 0) {
        set_err(err, errlen,
                r == -ENOSYS ? "bpf() emulation unavailable: executable not linked with -Wl,--wrap=syscall"
                             : "bpf() emulation: %s",
                strerror(-r));
        return r;
    }
    msgs.text[0] = '\0';
    prev_print = libbpf_set_print(capture_print);
    load_msgs = &msgs;

    LIBBPF_OPTS(bpf_object_open_opts, oo, .object_name = obj->name,
                .btf_custom_path = opts ? opts->btf_custom_path : NULL);
    bo = bpf_object__open_mem(buf, len, &oo);
    if (!bo) {
        r = errno ? -errno : -EINVAL;
        set_err(err, errlen, "cannot open BPF object: %s", msgs.len ? msgs.text : strerror(-r));
        goto out;
    }

    size_t n = 0, usable = 0, kernel = 0;
    bpf_object__for_each_program(bp, bo) n++;
    obj->progs = calloc(n ? n : 1, sizeof(*obj->progs));
    if (!obj->progs) {
        r = -ENOMEM;
        set_err(err, errlen, "out of memory");
        goto out;
    }
    const char *first_error = NULL;
    bpf_object__for_each_program(bp, bo)
    {
        struct bpfg_obj_prog *p = &obj->progs[obj->prog_cnt++];
        p->name = strdup(bpf_program__name(bp));
        p->section = strdup(bpf_program__section_name(bp));
        if (!p->name || !p->section || bpfg_obj_parse_section(p->section, p) < 0) {
            r = -ENOMEM;
            set_err(err, errlen, "out of memory");
            goto out;
        }
        if (mark_kernel(p, opts ? opts->kernel : BPFG_KERNEL_NEVER))
            kernel++;
        if (p->kind == BPFG_ATTACH_UNSUPPORTED || p->kernel) {
            bpf_program__set_autoload(bp, false);
            if (!first_error)
                first_error = p->error;
        } else {
            usable++;
        }
    }
    if (!usable && !kernel) {
        r = -EOPNOTSUPP;
        if (first_error)
            set_err(err, errlen, "no program can run in userspace: %s", first_error);
        else
            set_err(err, errlen, "object has no programs");
        goto out;
    }

    r = bpf_object__load(bo);
    if (r < 0) {
        set_err(err, errlen, "cannot load BPF object: %s", msgs.len ? msgs.text : strerror(-r));
        goto out;
    }
    r = collect(obj, bo, emu, err, errlen);
out:
    bpf_object__close(bo);
    load_msgs = NULL;
    libbpf_set_print(prev_print);
    bpfg_emu_end(emu);
    return r;
}

struct bpfg_obj *bpfg_obj_open_mem(const void *buf, size_t len, const struct bpfg_obj_opts *opts, char *err,
                                   size_t errlen)
{
    struct bpfg_obj *obj;
    int r = check_elf(buf, len, err, errlen);

    if (r == 0)
        r = validate_elf(buf, len, err, errlen);
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    void *conv = NULL;
    size_t convlen = 0;
    r = convert_legacy_maps(buf, len, &conv, &convlen, err, errlen);
    if (r < 0) {
        errno = -r;
        return NULL;
    }
    if (conv) {
        buf = conv;
        len = convlen;
    }
    obj = calloc(1, sizeof(*obj));
    if (!obj || !(obj->name = strdup(opts && opts->name ? opts->name : "obj"))) {
        free(obj);
        free(conv);
        set_err(err, errlen, "out of memory");
        errno = ENOMEM;
        return NULL;
    }
    r = load_with_libbpf(obj, buf, len, opts, err, errlen);
    free(conv);
    if (r < 0)
        goto fail;

    /* The server's maps, made only now that the whole load succeeded. */
    bpfg_create_map_fn create = opts && opts->create_map ? opts->create_map : bpfg_obj_default_create_map;
    for (size_t i = 0; i < obj->map_cnt; i++) {
        struct bpfg_obj_map *m = &obj->maps[i];
        struct bpfg_map_def def = {
            .name = m->name,
            .kind = m->kind,
            .type = m->type,
            .key_size = m->key_size,
            .value_size = m->value_size,
            .max_entries = m->max_entries,
            .flags = m->flags,
            .btf_key_type_id = m->btf_key_type_id,
            .btf_value_type_id = m->btf_value_type_id,
            .map_extra = m->map_extra,
            .init_data = m->init_data,
            .init_size = m->init_size,
            .inner = m->inner,
            .init_slots = m->init_slots,
            .init_slots_cnt = m->init_slots_cnt,
        };
        int fd = create(opts ? opts->user : NULL, &def);
        if (fd < 0) {
            r = fd;
            set_err(err, errlen, "map '%s': cannot create: %s", m->name, strerror(-r));
            goto fail;
        }
        m->fd = fd;
    }
    return obj;
fail:
    bpfg_obj_free(obj);
    errno = -r;
    return NULL;
}

struct bpfg_obj *bpfg_obj_open_file(const char *path, const struct bpfg_obj_opts *opts, char *err, size_t errlen)
{
    struct bpfg_obj_opts o = opts ? *opts : (struct bpfg_obj_opts){0};
    struct bpfg_obj *obj = NULL;
    struct stat st;
    char name[64];
    char *buf = NULL;
    int saved, fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        saved = errno;
        set_err(err, errlen, "cannot open %s: %s", path, strerror(saved));
        errno = saved;
        return NULL;
    }
    if (fstat(fd, &st) < 0) {
        saved = errno;
        set_err(err, errlen, "cannot stat %s: %s", path, strerror(saved));
        goto out;
    }
    if (!S_ISREG(st.st_mode) || st.st_size > OBJ_MAX_FILE_BYTES) {
        saved = S_ISREG(st.st_mode) ? EFBIG : EINVAL;
        set_err(err, errlen, "%s: %s", path, S_ISREG(st.st_mode) ? "file too large" : "not a regular file");
        goto out;
    }
    buf = malloc(st.st_size ? (size_t)st.st_size : 1);
    if (!buf) {
        saved = ENOMEM;
        set_err(err, errlen, "out of memory");
        goto out;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            saved = r < 0 ? errno : EIO;
            set_err(err, errlen, "cannot read %s: %s", path, r < 0 ? strerror(saved) : "short read");
            goto out;
        }
        got += (size_t)r;
    }
    if (!o.name) {
        /* "dir/foo.bpf.o" -> "foo" */
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(base, "."), base);
        o.name = name[0] ? name : "obj";
    }
    obj = bpfg_obj_open_mem(buf, got, &o, err, errlen);
    saved = errno;
out:
    free(buf);
    close(fd);
    errno = saved;
    return obj;
}
