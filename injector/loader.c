/* Loading the payload into a stopped process: a memfd holding the payload
 * ELF, segments mapped from it, relocations applied through /proc/PID/mem,
 * parameters filled in, and the payload thread started with a raw clone.
 */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "injector.h"
#include "internal.h"
#include "procfs.h"

#define PAGE 4096ull
#define PAYLOAD_STACK (256u * 1024)
#define PAGE_DOWN(x) ((x) & ~(PAGE - 1))
#define PAGE_UP(x) (((x) + PAGE - 1) & ~(PAGE - 1))

static int read_whole(const char *path, uint8_t **buf, size_t *len, char *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bpfg_inj_fail(err, -errno, "cannot open %s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 || st.st_size > (64 << 20)) {
        close(fd);
        return bpfg_inj_fail(err, -EINVAL, "%s is not a usable ELF file", path);
    }
    *buf = malloc((size_t)st.st_size);
    if (!*buf) {
        close(fd);
        return bpfg_inj_fail(err, -ENOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, *buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            close(fd);
            free(*buf);
            *buf = NULL;
            return bpfg_inj_fail(err, -e, "cannot read %s: %s", path, strerror(e));
        }
        got += (size_t)n;
    }
    close(fd);
    *len = got;
    return 0;
}

/* A parsed ELF image (the payload, or a library of the target). */
struct elf_view {
    const uint8_t *data;
    size_t len;
    const Elf64_Ehdr *eh;
    const Elf64_Phdr *ph;
    const Elf64_Shdr *sh;
};

static int elf_open(struct elf_view *v, const uint8_t *data, size_t len)
{
    v->data = data;
    v->len = len;
    v->eh = (const Elf64_Ehdr *)data;
    if (len < sizeof(Elf64_Ehdr) || memcmp(data, ELFMAG, SELFMAG) != 0 || v->eh->e_ident[EI_CLASS] != ELFCLASS64 ||
        v->eh->e_machine != EM_X86_64)
        return -ENOEXEC;
    if (v->eh->e_phoff + (uint64_t)v->eh->e_phnum * sizeof(Elf64_Phdr) > len ||
        v->eh->e_shoff + (uint64_t)v->eh->e_shnum * sizeof(Elf64_Shdr) > len)
        return -ENOEXEC;
    v->ph = (const Elf64_Phdr *)(data + v->eh->e_phoff);
    v->sh = (const Elf64_Shdr *)(data + v->eh->e_shoff);
    return 0;
}

/* Value of a defined symbol in .dynsym (or .symtab); 0 if absent. */
static uint64_t elf_symbol(const struct elf_view *v, const char *name)
{
    for (int pass = 0; pass < 2; pass++) {
        uint32_t want = pass == 0 ? SHT_DYNSYM : SHT_SYMTAB;
        for (unsigned i = 0; i < v->eh->e_shnum; i++) {
            const Elf64_Shdr *s = &v->sh[i];
            if (s->sh_type != want || s->sh_link >= v->eh->e_shnum || s->sh_entsize != sizeof(Elf64_Sym))
                continue;
            const Elf64_Shdr *strs = &v->sh[s->sh_link];
            if (s->sh_offset + s->sh_size > v->len || strs->sh_offset + strs->sh_size > v->len)
                continue;
            const Elf64_Sym *syms = (const Elf64_Sym *)(v->data + s->sh_offset);
            const char *str = (const char *)(v->data + strs->sh_offset);
            for (size_t k = 0; k < s->sh_size / sizeof(Elf64_Sym); k++) {
                if (syms[k].st_shndx == SHN_UNDEF || syms[k].st_name >= strs->sh_size)
                    continue;
                if (strcmp(str + syms[k].st_name, name) == 0)
                    return syms[k].st_value;
            }
        }
    }
    return 0;
}

static int remote(struct bpfg_stopped *st, long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                  uint64_t a5, int64_t *ret, const char *what, char *err)
{
    const uint64_t args[6] = {a0, a1, a2, a3, a4, a5};
    int r = bpfg_remote_syscall(st, nr, args, ret, err);
    if (r)
        return r;
    if (*ret < 0 && *ret > -4096)
        return bpfg_inj_fail(err, (int)*ret, "%s in process %d failed: %s", what, (int)st->pid, strerror((int)-*ret));
    return 0;
}

static int remote_mmap(struct bpfg_stopped *st, uint64_t addr, uint64_t len, int prot, int flags, int fd, uint64_t off,
                       uint64_t *out, char *err)
{
    int64_t ret;
    int r =
        remote(st, SYS_mmap, addr, len, (uint64_t)prot, (uint64_t)flags, (uint64_t)(int64_t)fd, off, &ret, "mmap", err);
    if (!r)
        *out = (uint64_t)ret;
    return r;
}

/* Writes the bytes into a fresh memfd of the target: returns the target's fd. */
static int remote_memfd(struct bpfg_stopped *st, const uint8_t *data, size_t len, int *fd_out, char *err)
{
    static const char name[] = "bpfgraft-payload";
    /* The name goes below the stopped thread's stack red zone: that memory
     * is unused while the thread is stopped. */
    uint64_t scratch = (st->threads[0].regs.rsp - 512) & ~15ull;
    uint8_t saved[sizeof(name)];
    int r = bpfg_mem_read(st, scratch, saved, sizeof(saved));
    if (!r)
        r = bpfg_mem_write(st, scratch, name, sizeof(name));
    if (r)
        return bpfg_inj_fail(err, r, "cannot write to the stack of thread %d: %s", (int)st->threads[0].tid,
                             strerror(-r));
    int64_t fd;
    r = remote(st, SYS_memfd_create, scratch, MFD_CLOEXEC, 0, 0, 0, 0, &fd, "memfd_create", err);
    bpfg_mem_write(st, scratch, saved, sizeof(saved));
    if (r)
        return r;

    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)st->pid, (int)fd);
    int local = open(path, O_WRONLY | O_CLOEXEC);
    if (local < 0) {
        r = bpfg_inj_fail(err, -errno, "cannot open %s: %s", path, strerror(errno));
    } else {
        size_t done = 0;
        while (done < len && !r) {
            ssize_t n = write(local, data + done, len - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                r = bpfg_inj_fail(err, n < 0 ? -errno : -EIO, "writing the payload into %s: %s", path, strerror(errno));
            else
                done += (size_t)n;
        }
        close(local);
    }
    if (r) {
        int64_t ignored;
        remote(st, SYS_close, (uint64_t)fd, 0, 0, 0, 0, 0, &ignored, "close", NULL);
        return r;
    }
    *fd_out = (int)fd;
    return 0;
}

static int segment_prot(uint32_t flags)
{
    return ((flags & PF_R) ? PROT_READ : 0) | ((flags & PF_W) ? PROT_WRITE : 0) | ((flags & PF_X) ? PROT_EXEC : 0);
}

/* Applies R_X86_64_RELATIVE relocations (the only kind a freestanding
 * -fPIC payload linked with -Bsymbolic has). */
static int apply_relocations(struct bpfg_stopped *st, const struct elf_view *v, uint64_t base, char *err)
{
    uint64_t rela = 0, relasz = 0;
    for (unsigned i = 0; i < v->eh->e_phnum; i++) {
        if (v->ph[i].p_type != PT_DYNAMIC)
            continue;
        if (v->ph[i].p_offset + v->ph[i].p_filesz > v->len)
            return bpfg_inj_fail(err, -ENOEXEC, "payload: bad PT_DYNAMIC");
        const Elf64_Dyn *d = (const Elf64_Dyn *)(v->data + v->ph[i].p_offset);
        for (size_t k = 0; k < v->ph[i].p_filesz / sizeof(*d) && d[k].d_tag != DT_NULL; k++) {
            if (d[k].d_tag == DT_RELA)
                rela = d[k].d_un.d_ptr;
            else if (d[k].d_tag == DT_RELASZ)
                relasz = d[k].d_un.d_val;
            else if (d[k].d_tag == DT_NEEDED || d[k].d_tag == DT_REL || d[k].d_tag == DT_JMPREL)
                return bpfg_inj_fail(err, -ENOEXEC, "payload is not freestanding (dynamic tag %lld)",
                                     (long long)d[k].d_tag);
        }
    }
    /* rela is a vaddr: find its file offset through the PT_LOADs */
    uint64_t off = 0;
    bool found = relasz == 0;
    for (unsigned i = 0; i < v->eh->e_phnum && !found; i++) {
        const Elf64_Phdr *p = &v->ph[i];
        if (p->p_type == PT_LOAD && rela >= p->p_vaddr && rela + relasz <= p->p_vaddr + p->p_filesz) {
            off = p->p_offset + (rela - p->p_vaddr);
            found = true;
        }
    }
    if (!found || off + relasz > v->len)
        return bpfg_inj_fail(err, -ENOEXEC, "payload: relocations outside the file");
    const Elf64_Rela *r = (const Elf64_Rela *)(v->data + off);
    for (size_t i = 0; i < relasz / sizeof(*r); i++) {
        uint32_t type = (uint32_t)ELF64_R_TYPE(r[i].r_info);
        if (type == R_X86_64_NONE)
            continue;
        if (type != R_X86_64_RELATIVE)
            return bpfg_inj_fail(err, -ENOEXEC, "payload has relocation type %u (only RELATIVE is supported)", type);
        uint64_t value = base + (uint64_t)r[i].r_addend;
        int w = bpfg_mem_write(st, base + r[i].r_offset, &value, sizeof(value));
        if (w)
            return bpfg_inj_fail(err, w, "relocating the payload: %s", strerror(-w));
    }
    return 0;
}

static bool is_libc(const char *file, const char *unused)
{
    (void)unused;
    const char *base_name = strrchr(file, '/');
    return base_name && (strcmp(base_name, "/libc.so.6") == 0 || strncmp(base_name, "/libc-2.", 8) == 0);
}

static bool is_file(const char *file, const char *want)
{
    return strcmp(file, want) == 0;
}

struct mapping_search {
    bool (*match)(const char *file, const char *arg);
    const char *arg;
    uint64_t *base;
    char *file;
    size_t len;
};

static int first_match(const struct bpfg_procfs_map *m, void *arg)
{
    struct mapping_search *ms = arg;
    if (m->offset != 0 || !ms->match(m->path, ms->arg))
        return 0;
    *ms->base = m->start;
    snprintf(ms->file, ms->len, "%s", m->path);
    return 1;
}

/* The first mapping of pid at file offset 0 whose path `match` accepts:
 * its start address and path. */
static int find_mapping(pid_t pid, bool (*match)(const char *file, const char *arg), const char *arg, uint64_t *base,
                        char *file_out, size_t outlen)
{
    struct mapping_search ms = {match, arg, base, file_out, outlen};
    int r = bpfg_procfs_maps(pid, first_match, &ms);
    return r < 0 ? r : r ? 0 : -ENOENT;
}

/* Where the target's glibc functions are: libc.so.6 (read through
 * /proc/PID/root, so another mount namespace works), or else the executable
 * itself when it is statically linked (its symbols found only when it kept
 * its symbol table; 0 base for a fixed-address ET_EXEC). */
static void resolve_libc(pid_t pid, struct bpfg_libc_imports *imp)
{
    uint64_t base = 0;
    char file[768], path[1024], exe[768];
    uint8_t *data = NULL;
    size_t len;
    struct elf_view v;
    memset(imp, 0, sizeof(*imp));
    bool shared = find_mapping(pid, is_libc, NULL, &base, file, sizeof(file)) == 0;
    if (shared) {
        snprintf(path, sizeof(path), "/proc/%d/root%s", (int)pid, file);
    } else {
        char link[64];
        snprintf(link, sizeof(link), "/proc/%d/exe", (int)pid);
        ssize_t n = readlink(link, exe, sizeof(exe) - 1);
        if (n <= 0)
            return;
        exe[n] = 0;
        if (find_mapping(pid, is_file, exe, &base, file, sizeof(file)) != 0)
            return;
        snprintf(path, sizeof(path), "%s", link);
    }
    if (read_whole(path, &data, &len, NULL) != 0)
        return; /* the payload runs without shared locks */
    /* a static executable: glibc's, not musl's (the maps' mutexes have
     * glibc's layout) */
    if (elf_open(&v, data, len) == 0 && (shared || elf_symbol(&v, "__libc_setup_tls"))) {
        if (!shared && v.eh->e_type == ET_EXEC)
            base = 0;
        uint64_t a;
        if ((a = elf_symbol(&v, "pthread_mutex_lock")))
            imp->pthread_mutex_lock = base + a;
        if ((a = elf_symbol(&v, "pthread_mutex_trylock")))
            imp->pthread_mutex_trylock = base + a;
        if ((a = elf_symbol(&v, "pthread_mutex_unlock")))
            imp->pthread_mutex_unlock = base + a;
        if ((a = elf_symbol(&v, "pthread_mutex_consistent")))
            imp->pthread_mutex_consistent = base + a;
        /* where glibc keeps each thread's tid (libthread_db's descriptor):
         * bpf_get_current_pid_tgid reads it instead of making a syscall */
        if ((a = elf_symbol(&v, "_thread_db_pthread_tid")))
            imp->thread_db_pthread_tid = base + a;
    }
    free(data);
}

int bpfg_inject_payload(struct bpfg_stopped *st, const struct bpfg_inject_opts *opts, struct bpfg_injected *out,
                        char *err)
{
    uint8_t *img = NULL;
    size_t len = 0;
    struct elf_view v;
    int r, memfd = -1;
    int64_t ignored;

    memset(out, 0, sizeof(*out));
    if ((r = read_whole(opts->payload_path, &img, &len, err)))
        return r;
    if (elf_open(&v, img, len) != 0 || v.eh->e_type != ET_DYN) {
        r = bpfg_inj_fail(err, -ENOEXEC, "%s is not an x86-64 shared object", opts->payload_path);
        goto out;
    }
    uint64_t span = 0;
    for (unsigned i = 0; i < v.eh->e_phnum; i++)
        if (v.ph[i].p_type == PT_LOAD && v.ph[i].p_vaddr + v.ph[i].p_memsz > span)
            span = v.ph[i].p_vaddr + v.ph[i].p_memsz;
    uint64_t sym_params = elf_symbol(&v, BPFG_PAYLOAD_SYM_PARAMS);
    uint64_t sym_start = elf_symbol(&v, BPFG_PAYLOAD_SYM_START);
    uint64_t sym_uprobe = elf_symbol(&v, BPFG_PAYLOAD_SYM_UPROBE);
    uint64_t sym_uret = elf_symbol(&v, BPFG_PAYLOAD_SYM_URETPROBE);
    if (!span || !sym_params || !sym_start) {
        r = bpfg_inj_fail(err, -ENOEXEC, "%s is not a bpfgraft payload (symbols missing)", opts->payload_path);
        goto out;
    }
    span = PAGE_UP(span);

    if ((r = remote_memfd(st, img, len, &memfd, err)))
        goto out;
    uint64_t base = 0;
    if ((r = remote_mmap(st, 0, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &base, err)))
        goto out;
    out->base = base;
    out->size = span;

    /* Map every segment writable first, relocate, then set final rights. */
    for (unsigned i = 0; i < v.eh->e_phnum; i++) {
        const Elf64_Phdr *p = &v.ph[i];
        if (p->p_type != PT_LOAD)
            continue;
        uint64_t start = PAGE_DOWN(p->p_vaddr), file_end = p->p_vaddr + p->p_filesz;
        uint64_t map_len = PAGE_UP(file_end) - start, got;
        if (p->p_filesz && (r = remote_mmap(st, base + start, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED,
                                            memfd, PAGE_DOWN(p->p_offset), &got, err)))
            goto undo;
        if (p->p_memsz > p->p_filesz) {
            /* .bss: zero the rest of the last file page, map the pages after it */
            static const uint8_t zeros[PAGE];
            uint64_t zero_len = PAGE_UP(file_end) - file_end;
            if (p->p_filesz && zero_len && (r = bpfg_mem_write(st, base + file_end, zeros, zero_len))) {
                r = bpfg_inj_fail(err, r, "clearing payload .bss: %s", strerror(-r));
                goto undo;
            }
            uint64_t anon = p->p_filesz ? PAGE_UP(file_end) : start;
            uint64_t end = PAGE_UP(p->p_vaddr + p->p_memsz);
            if (end > anon && (r = remote_mmap(st, base + anon, end - anon, PROT_READ | PROT_WRITE,
                                               MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS, -1, 0, &got, err)))
                goto undo;
        }
    }
    if ((r = apply_relocations(st, &v, base, err)))
        goto undo;
    for (unsigned i = 0; i < v.eh->e_phnum; i++) {
        const Elf64_Phdr *p = &v.ph[i];
        if (p->p_type != PT_LOAD)
            continue;
        uint64_t start = PAGE_DOWN(p->p_vaddr), end = PAGE_UP(p->p_vaddr + p->p_memsz);
        if ((r = remote(st, SYS_mprotect, base + start, end - start, (uint64_t)segment_prot(p->p_flags), 0, 0, 0,
                        &ignored, "mprotect", err)))
            goto undo;
    }
    remote(st, SYS_close, (uint64_t)memfd, 0, 0, 0, 0, 0, &ignored, "close", NULL);
    memfd = -1;

    uint64_t stack;
    if ((r = remote_mmap(st, 0, PAYLOAD_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0,
                         &stack, err)))
        goto undo;
    out->stack_base = stack;
    out->stack_size = PAYLOAD_STACK;
    /* reserved only: the payload makes a slot's stack writable on first use */
    if ((r = remote_mmap(st, 0, BPFG_HANDLER_STACKS_SIZE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0,
                         &out->hstacks_base, err)))
        goto undo;
    out->hstacks_size = BPFG_HANDLER_STACKS_SIZE;
    out->params = base + sym_params;
    out->uprobe_entry = sym_uprobe ? base + sym_uprobe : 0;
    out->uretprobe_return = sym_uret ? base + sym_uret : 0;

    struct bpfg_payload_params params;
    memset(&params, 0, sizeof(params));
    params.magic = BPFG_PAYLOAD_MAGIC;
    params.version = BPFG_PAYLOAD_ABI_VERSION;
    params.load_base = base;
    params.load_size = span;
    params.stack_base = stack;
    params.stack_size = PAYLOAD_STACK;
    params.handler_stacks = out->hstacks_base;
    params.handler_stacks_size = out->hstacks_size;
    snprintf(params.server_socket, sizeof(params.server_socket), "%s", opts->server_socket);
    params.server_uid = opts->server_uid;
    params.token = opts->token;
    params.orphan_grace_ms = opts->orphan_grace_ms;
    resolve_libc(st->pid, &params.libc);
    params.state = BPFG_PAYLOAD_LOADED;
    if ((r = bpfg_mem_write(st, out->params, &params, sizeof(params)))) {
        r = bpfg_inj_fail(err, r, "writing payload parameters: %s", strerror(-r));
        goto undo;
    }

    /* Start the payload thread: bpfg_payload_start does the clone; the
     * child inherits the all-blocked signal mask set for injected code, the
     * caller jumps to the rescue path (r12, set by bpfg_remote_run). The
     * clone is made from the new image, exempt from no thread's dispatch:
     * on a thread without (another payload's, in a process with syscall
     * hooks), else it raises SIGSYS with every signal blocked. */
    size_t on = bpfg_inj_undispatched(st);
    struct user_regs_struct regs = st->threads[on].regs, after;
    regs.rip = base + sym_start;
    regs.rax = SYS_clone;
    regs.rdi = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
    regs.rsi = (stack + PAYLOAD_STACK - 64) & ~15ull;
    regs.rdx = 0;
    regs.r10 = 0;
    regs.r8 = 0;
    regs.r13 = out->params;
    if ((r = bpfg_inj_run_on(st, on, &regs, &after, err)))
        goto undo;
    if ((int64_t)after.rax < 0) {
        r = bpfg_inj_fail(err, (int)after.rax, "clone in process %d failed: %s", (int)st->pid,
                          strerror((int)-(int64_t)after.rax));
        goto undo;
    }
    r = 0;
    goto out;

undo:
    if (memfd >= 0)
        remote(st, SYS_close, (uint64_t)memfd, 0, 0, 0, 0, 0, &ignored, "close", NULL);
    if (out->base)
        remote(st, SYS_munmap, out->base, out->size, 0, 0, 0, 0, &ignored, "munmap", NULL);
    if (out->stack_base)
        remote(st, SYS_munmap, out->stack_base, out->stack_size, 0, 0, 0, 0, &ignored, "munmap", NULL);
    if (out->hstacks_base)
        remote(st, SYS_munmap, out->hstacks_base, out->hstacks_size, 0, 0, 0, 0, &ignored, "munmap", NULL);
    memset(out, 0, sizeof(*out));
out:
    free(img);
    return r;
}

int bpfg_payload_status(pid_t pid, const struct bpfg_injected *inj, uint32_t *state, char *msg, size_t msglen)
{
    char path[64];
    struct bpfg_payload_params p;
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ESRCH : -errno;
    ssize_t n = pread(fd, &p, sizeof(p), (off_t)inj->params);
    int e = errno;
    close(fd);
    if (n != (ssize_t)sizeof(p))
        return n < 0 ? -e : -EFAULT;
    *state = p.state;
    if (msg && msglen) {
        p.error[sizeof(p.error) - 1] = 0;
        snprintf(msg, msglen, "%s", p.error);
    }
    return 0;
}

/* A remote munmap must not remove the page its own code runs from when
 * that is the fallback site (the first executable mapping, which may be
 * the range being freed): move the site to an executable mapping outside. */
static int keep_syscall_site_outside(struct bpfg_stopped *st, uint64_t lo, uint64_t hi, char *err)
{
    /* the vDSO first: else the site chosen here (the executable's first
     * bytes: .init, then the PLT) took the rescue code for every call, and
     * a tracer killed meanwhile left it there for the threads to run */
    bpfg_inj_place_rescue(st);
    if (st->rescue || (st->syscall_site && !bpfg_rescue_in_text(st, lo, hi)))
        return 0;
    int r = bpfg_inj_code_site(st->pid, lo, hi, &st->syscall_site);
    if (r)
        return bpfg_inj_fail(err, r, "cannot read /proc/%d/maps: %s", (int)st->pid, strerror(-r));
    return st->syscall_site ? 0
                            : bpfg_inj_fail(err, -ENOEXEC, "process %d has no other executable mapping", (int)st->pid);
}

int bpfg_unload_payload(struct bpfg_stopped *st, const struct bpfg_injected *inj, char *err)
{
    pid_t tid;
    int64_t ignored;
    if (bpfg_any_thread_in(st, inj->base, inj->base + inj->size, &tid))
        return bpfg_inj_fail(err, -EBUSY, "thread %d is executing payload code", (int)tid);
    if (bpfg_inj_dispatch_in(st, inj->base, inj->base + inj->size, &tid))
        return bpfg_inj_fail(err, -EBUSY, "thread %d has Syscall User Dispatch on, pointing into the payload",
                             (int)tid);
    int r = keep_syscall_site_outside(st, inj->base, inj->base + inj->size, err);
    if (!r)
        r = remote(st, SYS_munmap, inj->base, inj->size, 0, 0, 0, 0, &ignored, "munmap", err);
    if (!r)
        r = remote(st, SYS_munmap, inj->stack_base, inj->stack_size, 0, 0, 0, 0, &ignored, "munmap", err);
    if (!r && inj->hstacks_base)
        r = remote(st, SYS_munmap, inj->hstacks_base, inj->hstacks_size, 0, 0, 0, 0, &ignored, "munmap", err);
    return r;
}

struct gap_search {
    uint64_t near, len, lo_limit, hi_limit;
    uint64_t prev_end, best, best_dist;
};

/* The free range [gap_lo, gap_hi) as a candidate: its end nearest to
 * near, one guard page in. */
static void consider_gap(struct gap_search *g, uint64_t gap_lo, uint64_t gap_hi)
{
    uint64_t near = g->near, len = g->len;
    if (gap_hi <= gap_lo || gap_hi - gap_lo < len + 2 * PAGE)
        return;
    uint64_t cand = near < gap_lo ? gap_lo + PAGE : gap_hi - PAGE - len;
    if (near >= gap_lo && near < gap_hi)
        cand = PAGE_DOWN(near) + len + PAGE <= gap_hi ? PAGE_DOWN(near) : gap_hi - PAGE - len;
    uint64_t dist = cand > near ? cand - near : near - cand;
    if (cand >= g->lo_limit && cand + len <= g->hi_limit && dist < g->best_dist) {
        g->best = cand;
        g->best_dist = dist;
    }
}

static int gap_before(const struct bpfg_procfs_map *m, void *arg)
{
    struct gap_search *g = arg;
    consider_gap(g, g->prev_end, m->start);
    g->prev_end = m->end;
    return 0;
}

int bpfg_remote_alloc_near(struct bpfg_stopped *st, uint64_t near, size_t len, uint64_t *addr, char *err)
{
    const uint64_t reach = (1ull << 31) - (1ull << 24); /* stay safely inside rel32 */
    struct gap_search g = {.near = near,
                           .len = PAGE_UP(len),
                           .lo_limit = near > reach ? near - reach : PAGE * 16,
                           .hi_limit = near + reach,
                           .prev_end = PAGE * 16,
                           .best_dist = UINT64_MAX};
    len = g.len;
    /* Gaps between mappings, and after the last one; nearest to `near` wins. */
    int r = bpfg_procfs_maps(st->pid, gap_before, &g);
    if (r)
        return bpfg_inj_fail(err, r, "cannot read /proc/%d/maps: %s", (int)st->pid, strerror(-r));
    consider_gap(&g, g.prev_end, 0x7ffffffff000ull);
    uint64_t best = g.best;
    if (!best)
        return bpfg_inj_fail(err, -ENOMEM, "no free address range within 2 GiB of 0x%llx", (unsigned long long)near);
    uint64_t got;
    r = remote_mmap(st, best, len, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0,
                    &got, err);
    if (r)
        return r;
    *addr = got;
    return 0;
}

int bpfg_remote_free(struct bpfg_stopped *st, uint64_t addr, size_t len, char *err)
{
    int64_t ignored;
    int r = keep_syscall_site_outside(st, addr, addr + PAGE_UP(len), err);
    if (r)
        return r;
    return remote(st, SYS_munmap, addr, PAGE_UP(len), 0, 0, 0, 0, &ignored, "munmap", err);
}

/* ---- payloads whose first connection failed ---- */

#define STALE_MAX 8

struct payload_images {
    uint64_t base[STALE_MAX];
    size_t n;
};

static int payload_image(const struct bpfg_procfs_map *m, void *arg)
{
    struct payload_images *pi = arg;
    if (m->offset == 0 && strstr(m->path, "/memfd:bpfgraft-payload") == m->path && pi->n < STALE_MAX)
        pi->base[pi->n++] = m->start;
    return 0;
}

static bool thread_stopped(const struct bpfg_stopped *st, int32_t tid)
{
    for (size_t i = 0; i < st->nthreads; i++)
        if (st->threads[i].tid == tid)
            return true;
    return false;
}

/* The parameters of the payload image at base, read up to the fields
 * every ABI version has; false if they are not a payload's. */
static bool read_params(const struct bpfg_stopped *st, uint64_t base, uint64_t sym_params,
                        struct bpfg_payload_params *p)
{
    return bpfg_mem_read(st, base + sym_params, p, offsetof(struct bpfg_payload_params, error)) == 0 &&
           p->magic == BPFG_PAYLOAD_MAGIC && p->load_base == base;
}

/* The payload (parameters p, at params) if it never served a server and
 * its thread is gone. */
static bool failed_payload(const struct bpfg_stopped *st, const struct bpfg_payload_params *p, uint64_t params,
                           struct bpfg_injected *inj)
{
    if ((p->state != BPFG_PAYLOAD_FAILED && p->state != BPFG_PAYLOAD_LOADED) ||
        (p->payload_tid > 0 && thread_stopped(st, p->payload_tid)))
        return false;
    *inj = (struct bpfg_injected){.base = p->load_base,
                                  .size = p->load_size,
                                  .stack_base = p->stack_base,
                                  .stack_size = p->stack_size,
                                  .hstacks_base = p->handler_stacks,
                                  .hstacks_size = p->handler_stacks_size,
                                  .params = params};
    return true;
}

/* A payload of this ABI whose thread runs (started, serving, orphaned or
 * inert): a server will adopt it when it reconnects. */
static bool live_payload(const struct bpfg_stopped *st, const struct bpfg_payload_params *p)
{
    bool running = p->state == BPFG_PAYLOAD_RUNNING || p->state == BPFG_PAYLOAD_CONNECTED ||
                   p->state == BPFG_PAYLOAD_ORPHAN || p->state == BPFG_PAYLOAD_INERT;
    return p->version == BPFG_PAYLOAD_ABI_VERSION && running && p->payload_tid > 0 &&
           thread_stopped(st, p->payload_tid);
}

int bpfg_remove_failed_payloads(struct bpfg_stopped *st, const char *payload_path, struct bpfg_payload_scan *scan,
                                char *err)
{
    uint8_t *img = NULL;
    size_t len = 0;
    struct elf_view v;
    struct payload_images pi = {0};
    memset(scan, 0, sizeof(*scan));
    int r = read_whole(payload_path, &img, &len, err);
    if (r)
        return r;
    uint64_t sym_params = elf_open(&v, img, len) == 0 ? elf_symbol(&v, BPFG_PAYLOAD_SYM_PARAMS) : 0;
    free(img);
    if (!sym_params)
        return bpfg_inj_fail(err, -ENOEXEC, "%s is not a bpfgraft payload (symbols missing)", payload_path);
    if ((r = bpfg_procfs_maps(st->pid, payload_image, &pi)) < 0)
        return bpfg_inj_fail(err, r, "reading the mappings of process %d: %s", (int)st->pid, strerror(-r));
    for (size_t i = 0; i < pi.n; i++) {
        struct bpfg_payload_params p;
        struct bpfg_injected inj;
        if (!read_params(st, pi.base[i], sym_params, &p))
            continue;
        bool failed = failed_payload(st, &p, pi.base[i] + sym_params, &inj);
        if (failed && bpfg_unload_payload(st, &inj, err) == 0)
            scan->removed++;
        else if ((failed || live_payload(st, &p)) && !scan->live++) /* failed: a thread just started in it */
            snprintf(scan->live_socket, sizeof(scan->live_socket), "%.*s", (int)sizeof(p.server_socket) - 1,
                     p.server_socket);
    }
    return 0;
}
