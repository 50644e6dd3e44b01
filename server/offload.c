/* Kernel uprobes of unmodified tools served in userspace. See offload.h.
 *
 * One offload is the kernel uprobes one tool holds at one file offset (a
 * uprobe and a uretprobe: funclatency's pair). Their programs are read
 * back from the kernel, made portable again (helper addresses to helper
 * ids, the verifier's inlined map lookups back to helper calls, map ids to
 * the kernel maps themselves) and attached in every managed process where
 * the kernel placed its breakpoint. While offloaded the server holds a
 * copy of each of the tool's perf event fds (pidfd_getfd), so the uprobe
 * stays registered until the int3 has been written back. */
#define _GNU_SOURCE
#include "offload.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kernel.h"
#include "log.h"
#include "procfs.h"
#include "progcheck.h"
#include "registry.h"
#include "server.h"
#include "sites.h"
#include "targets.h"
#include "tool.h"

#define SCAN_MS 500
#define MAX_EVENTS 2 /* a uprobe and a uretprobe at one address */
#define MAX_SCAN 256 /* kernel uprobe events looked at per scan */
#define MAX_MAPS 64
#define MAX_INSNS 4096
#define INT3 0xcc

struct kevent {
    pid_t tool;
    int fd;
    uint32_t prog_id;
    bool ret;
    char path[512];
    uint64_t offset;
    dev_t dev;
    ino_t ino;
};

struct offload {
    struct offload *next;
    struct kevent ev[MAX_EVENTS];
    size_t nev;
    int held[MAX_EVENTS]; /* our copies of the tool's perf fds; -1: none */
    uint32_t obj_id;      /* the programs in the registry; 0: none */
    uint32_t prog_ids[MAX_EVENTS];
    bool refused;   /* its programs cannot run here: stays in the kernel (said once) */
    bool ambiguous; /* another uprobe at its address: stays in the kernel */
    bool seen;      /* found by the current scan */
    bool stable;    /* found unchanged by two scans */
    pid_t *in;      /* processes it is served in */
    size_t nin;
};

static struct offload *offloads;
static bool enabled;
static uint64_t last_scan_ms;
/* offload_take_breakpoint's permission: the attach under way */
static struct {
    pid_t pid;
    uint64_t addr;
    uint8_t file_byte;
} taking;

void offload_enable(bool on)
{
    enabled = on;
}

bool offload_enabled(void)
{
    return enabled;
}

/* ---- finding kernel uprobes: perf event fds of every process ---- */

static bool same_event(const struct kevent *a, const struct kevent *b)
{
    return a->tool == b->tool && a->fd == b->fd && a->prog_id == b->prog_id && a->ret == b->ret &&
           a->offset == b->offset && a->dev == b->dev && a->ino == b->ino;
}

/* The uprobe behind fd of pid, if it is one with a BPF program. */
static bool query_event(pid_t pid, int fd, struct kevent *e)
{
    uint32_t len = sizeof(e->path), type = 0;
    __u64 offset = 0, addr = 0;
    struct stat st;
    memset(e, 0, sizeof(*e));
    if (bpf_task_fd_query(pid, fd, 0, e->path, &len, &e->prog_id, &type, &offset, &addr) != 0 || !e->prog_id ||
        (type != BPF_FD_TYPE_UPROBE && type != BPF_FD_TYPE_URETPROBE) || stat(e->path, &st) != 0)
        return false;
    e->tool = pid, e->fd = fd, e->ret = type == BPF_FD_TYPE_URETPROBE, e->offset = offset;
    e->dev = st.st_dev, e->ino = st.st_ino;
    return true;
}

static void scan_process(pid_t pid, struct kevent *evs, size_t *n)
{
    char dir[64], link[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(dir);
    if (!d)
        return;
    for (struct dirent *de; *n < MAX_SCAN && (de = readdir(d));) {
        ssize_t k = readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1);
        if (k <= 0)
            continue;
        link[k] = 0;
        if (strcmp(link, "anon_inode:[perf_event]") == 0 && query_event(pid, atoi(de->d_name), &evs[*n]))
            (*n)++;
    }
    closedir(d);
}

static size_t scan_all(struct kevent *evs)
{
    size_t n = 0;
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    for (struct dirent *de; (de = readdir(d));) {
        pid_t pid = (pid_t)atoi(de->d_name);
        if (pid > 0 && pid != getpid() && !tools_has_pid(pid))
            scan_process(pid, evs, &n);
    }
    closedir(d);
    return n;
}

/* ---- reading a program back from the kernel ---- */

struct kprog {
    struct bpf_insn *insns;
    uint32_t insn_cnt;
    uint32_t map_ids[MAX_MAPS]; /* all the program holds (read_prog) */
    uint32_t nmaps;
    uint32_t type;
    char name[BPF_OBJ_NAME_LEN];
};

static int read_prog(uint32_t id, struct kprog *kp, char *err, size_t errlen)
{
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0)
        return srv_efail(err, errlen, -errno, "program %u: %s", id, strerror(errno));
    struct bpf_prog_info info;
    uint32_t len = sizeof(info);
    memset(&info, 0, sizeof(info));
    int r = bpf_obj_get_info_by_fd(fd, &info, &len) ? -errno : 0;
    if (!r && (info.xlated_prog_len == 0 || info.xlated_prog_len > MAX_INSNS * sizeof(struct bpf_insn) ||
               info.nr_map_ids > MAX_MAPS))
        r = srv_efail(err, errlen, -E2BIG, "program %u: %u bytes of instructions, %u maps", id, info.xlated_prog_len,
                      info.nr_map_ids);
    kp->insn_cnt = info.xlated_prog_len / sizeof(struct bpf_insn);
    kp->nmaps = info.nr_map_ids;
    kp->type = info.type;
    memcpy(kp->name, info.name, sizeof(kp->name));
    if (!r && !(kp->insns = calloc(kp->insn_cnt, sizeof(struct bpf_insn))))
        r = -ENOMEM;
    if (!r) {
        memset(&info, 0, sizeof(info));
        info.xlated_prog_len = kp->insn_cnt * sizeof(struct bpf_insn);
        info.xlated_prog_insns = (uint64_t)(uintptr_t)kp->insns;
        info.nr_map_ids = kp->nmaps;
        info.map_ids = (uint64_t)(uintptr_t)kp->map_ids;
        len = sizeof(info);
        r = bpf_obj_get_info_by_fd(fd, &info, &len) ? -errno : 0;
    }
    close(fd);
    if (r && !err[0])
        srv_efail(err, errlen, r, "program %u: reading its instructions: %s", id, strerror(-r));
    return r;
}

/* Kernel symbol names of the call targets of kp: names[i] for insn i.
 * Two passes over kallsyms: __bpf_call_base (calls are relative to it),
 * then the targets. Returns how many were named, or -ENOENT. */
static int call_names(const struct kprog *kp, char (*names)[64])
{
    FILE *f = fopen("/proc/kallsyms", "re");
    if (!f)
        return -errno;
    char line[512], sym[256];
    unsigned long long addr, base = 0;
    int seen = 0;
    while (!base && fgets(line, sizeof(line), f))
        if (sscanf(line, "%llx %*c %255s", &addr, sym) == 2 && strcmp(sym, "__bpf_call_base") == 0)
            base = addr;
    rewind(f);
    while (base && fgets(line, sizeof(line), f)) {
        if (sscanf(line, "%llx %*c %255s", &addr, sym) != 2)
            continue;
        for (uint32_t i = 0; i < kp->insn_cnt; i++) {
            const struct bpf_insn *in = &kp->insns[i];
            if (in->code == (BPF_JMP | BPF_CALL) && in->src_reg == 0 && !names[i][0] &&
                base + (unsigned long long)(long long)in->imm == addr) {
                snprintf(names[i], 64, "%.*s", (int)strcspn(sym, "."), sym);
                seen++;
            }
        }
    }
    fclose(f);
    return base ? seen : -ENOENT;
}

/* The helper id a kernel function stands for, or 0. */
static int32_t helper_of(const char *name)
{
    static const struct {
        const char *suffix;
        int32_t id;
    } map_ops[] = {
        {"_map_lookup_elem", BPF_FUNC_map_lookup_elem}, {"_map_update_elem", BPF_FUNC_map_update_elem},
        {"_map_delete_elem", BPF_FUNC_map_delete_elem}, {"_map_push_elem", BPF_FUNC_map_push_elem},
        {"_map_pop_elem", BPF_FUNC_map_pop_elem},       {"_map_peek_elem", BPF_FUNC_map_peek_elem},
    };
    size_t n = strlen(name);
    if (strncmp(name, "__", 2) != 0)
        for (size_t i = 0; i < sizeof(map_ops) / sizeof(map_ops[0]); i++) {
            size_t k = strlen(map_ops[i].suffix);
            if (n > k && strcmp(name + n - k, map_ops[i].suffix) == 0)
                return map_ops[i].id;
        }
    if (strcmp(name, "bpf_probe_read_compat") == 0)
        return BPF_FUNC_probe_read;
    if (strcmp(name, "bpf_probe_read_compat_str") == 0)
        return BPF_FUNC_probe_read_str;
    for (uint32_t id = 1; id < __BPF_FUNC_MAX_ID; id++) {
        const char *h = progcheck_helper_name(id);
        if (h && strncmp(name, "bpf_", 4) == 0 && strcmp(name + 4, h) == 0)
            return (int32_t)id;
    }
    return 0;
}

static void nops(struct bpf_insn *insns, uint32_t from, uint32_t to)
{
    for (uint32_t i = from; i < to; i++)
        insns[i] = (struct bpf_insn){.code = BPF_JMP | BPF_JA};
}

static void set_call(struct bpf_insn *in, int32_t id)
{
    *in = (struct bpf_insn){.code = BPF_JMP | BPF_CALL, .imm = id};
}

/* The verifier's inlined array lookup (array_map_gen_lookup) at i, after
 * `r1 = map`: r1 += value offset; r0 = *(u32 *)(r2 + 0); if r0 >= max
 * goto +N; ...; r0 = 0. Becomes the helper call it was. */
static bool undo_array_lookup(struct bpf_insn *insns, uint32_t n, uint32_t i)
{
    const struct bpf_insn *in = &insns[i];
    if (i < 2 || i + 3 >= n || insns[i - 2].code != (BPF_LD | BPF_IMM | BPF_DW) || insns[i - 2].dst_reg != 1 ||
        in->code != (BPF_ALU64 | BPF_ADD | BPF_K) || in->dst_reg != 1 || in[1].code != (BPF_LDX | BPF_MEM | BPF_W) ||
        in[1].dst_reg != 0 || in[1].src_reg != 2 || in[1].off || in[2].code != (BPF_JMP | BPF_JGE | BPF_K) ||
        in[2].dst_reg != 0 || (in[2].off != 3 && in[2].off != 4))
        return false;
    uint32_t end = i + 2 + (uint32_t)in[2].off + 1; /* r0 = 0 */
    if (end >= n || insns[end].code != (BPF_ALU64 | BPF_MOV | BPF_K) || insns[end].dst_reg != 0)
        return false;
    set_call(&insns[i], BPF_FUNC_map_lookup_elem);
    nops(insns, i + 1, end + 1);
    return true;
}

/* Calls: kernel addresses to helper ids; the inlined hash lookup (call
 * __htab_map_lookup_elem; if r0 == 0 goto +N; N insns) back to a call. */
static int fix_calls(struct kprog *kp, char (*names)[64], char *err, size_t errlen)
{
    for (uint32_t i = 0; i < kp->insn_cnt; i++) {
        struct bpf_insn *in = &kp->insns[i];
        if (in->code == (BPF_ALU64 | BPF_ADD | BPF_K) && undo_array_lookup(kp->insns, kp->insn_cnt, i))
            continue;
        if (in->code != (BPF_JMP | BPF_CALL))
            continue;
        if (in->src_reg != 0)
            return srv_efail(err, errlen, -EOPNOTSUPP, "insn %u: a call to a %s", i,
                             in->src_reg == BPF_PSEUDO_CALL ? "subprogram" : "kernel function (kfunc)");
        bool htab = strcmp(names[i], "__htab_map_lookup_elem") == 0;
        int32_t id = htab ? BPF_FUNC_map_lookup_elem : helper_of(names[i]);
        if (!id)
            return srv_efail(err, errlen, -EOPNOTSUPP, "insn %u: calls %s, which bpfgraft does not serve", i,
                             names[i][0] ? names[i] : "an unknown kernel function");
        set_call(in, id);
        if (htab && i + 1 < kp->insn_cnt && in[1].code == (BPF_JMP | BPF_JEQ | BPF_K) && in[1].dst_reg == 0 &&
            in[1].off > 0 && i + 2 + (uint32_t)in[1].off <= kp->insn_cnt)
            nops(kp->insns, i + 1, i + 2 + (uint32_t)in[1].off);
        else if (htab)
            return srv_efail(err, errlen, -EOPNOTSUPP, "insn %u: an inlined hash lookup of an unknown shape", i);
    }
    return 0;
}

/* lddw of maps keep the kernel's map ids (union_maps makes them indices);
 * anything else the kernel resolved (kernel addresses, BTF ids, probe
 * loads) stays in the kernel. */
static int check_loads(const struct kprog *kp, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < kp->insn_cnt; i++) {
        const struct bpf_insn *in = &kp->insns[i];
        uint8_t mode = BPF_MODE(in->code), cls = BPF_CLASS(in->code);
        if ((cls == BPF_LDX || cls == BPF_ST || cls == BPF_STX) && mode != BPF_MEM && mode != BPF_ATOMIC)
            return srv_efail(err, errlen, -EOPNOTSUPP, "insn %u: a kernel memory access (mode 0x%x)", i, mode);
        if (in->code != (BPF_LD | BPF_IMM | BPF_DW))
            continue;
        if (i + 1 >= kp->insn_cnt ||
            (in->src_reg && in->src_reg != BPF_PSEUDO_MAP_FD && in->src_reg != BPF_PSEUDO_MAP_VALUE))
            return srv_efail(err, errlen, -EOPNOTSUPP, "insn %u: a 64-bit load of kind %u", i, in->src_reg);
        i++;
    }
    return 0;
}

/* Adds kp's map references to ids (the object's maps) and makes them
 * indices there. */
static int union_maps(struct kprog *kp, uint32_t *ids, uint32_t *nids, char *err, size_t errlen)
{
    for (uint32_t i = 0; i + 1 < kp->insn_cnt; i++) {
        struct bpf_insn *in = &kp->insns[i];
        if (in->code != (BPF_LD | BPF_IMM | BPF_DW))
            continue;
        if (in->src_reg == BPF_PSEUDO_MAP_FD || in->src_reg == BPF_PSEUDO_MAP_VALUE) {
            uint32_t k = 0;
            while (k < *nids && ids[k] != (uint32_t)in->imm)
                k++;
            if (k == MAX_MAPS)
                return srv_efail(err, errlen, -E2BIG, "more than %d maps", MAX_MAPS);
            if (k == *nids)
                ids[(*nids)++] = (uint32_t)in->imm;
            in->src_reg = in->src_reg == BPF_PSEUDO_MAP_FD ? BPF_PSEUDO_MAP_IDX : BPF_PSEUDO_MAP_IDX_VALUE;
            in->imm = (int32_t)k;
        }
        i++;
    }
    return 0;
}

/* The program of kernel id, as bpfgraft runs it (map references are
 * kernel map ids until union_maps). */
static int portable_prog(uint32_t id, struct kprog *kp, char *err, size_t errlen)
{
    int r = read_prog(id, kp, err, errlen);
    if (r)
        return r;
    if (kp->type != BPF_PROG_TYPE_KPROBE)
        return srv_efail(err, errlen, -EOPNOTSUPP, "program %u is not a kprobe-type program", id);
    char(*names)[64] = calloc(kp->insn_cnt, 64);
    if (!names)
        return -ENOMEM;
    r = call_names(kp, names);
    if (r < 0)
        srv_efail(err, errlen, r, "/proc/kallsyms: no __bpf_call_base (needed to name helper calls)");
    else
        r = fix_calls(kp, names, err, errlen);
    free(names);
    return r ? r : check_loads(kp, err, errlen);
}

/* ---- the registry object of an offload ---- */

static int add_maps(struct registry *reg, struct reg_object *o, const uint32_t *ids, uint32_t n, char *err,
                    size_t errlen)
{
    for (uint32_t i = 0; i < n; i++) {
        int fd = bpf_map_get_fd_by_id(ids[i]);
        if (fd < 0)
            return srv_efail(err, errlen, -errno, "map %u: %s", ids[i], strerror(errno));
        struct bpf_map_info info;
        uint32_t len = sizeof(info);
        memset(&info, 0, sizeof(info));
        int r = bpf_obj_get_info_by_fd(fd, &info, &len) ? -errno : 0;
        char name[BPFG_MAP_NAME_LEN];
        snprintf(name, sizeof(name), "%s", info.name[0] ? info.name : "kmap");
        struct reg_map *m;
        if (!r)
            r = kernel_add_map(reg, o, fd, &info, name, &m, err, errlen);
        else
            srv_efail(err, errlen, r, "map %u: %s", ids[i], strerror(-r));
        close(fd);
        if (r)
            return r;
    }
    return 0;
}

/* forced: the program id to take (one a killed server's copy runs under
 * in a process: offload_readopt), 0 a new one. */
static int add_prog(struct registry *reg, struct reg_object *o, struct kprog *kp, const struct kevent *e,
                    uint32_t forced, uint32_t *id)
{
    struct bpfg_obj_prog p;
    char section[600];
    memset(&p, 0, sizeof(p));
    snprintf(section, sizeof(section), "%s/%.500s@0x%llx", e->ret ? "uretprobe" : "uprobe", e->path,
             (unsigned long long)e->offset);
    p.kind = e->ret ? BPFG_ATTACH_URETPROBE : BPFG_ATTACH_UPROBE;
    p.prog_type = BPF_PROG_TYPE_KPROBE;
    p.insn_cnt = kp->insn_cnt;
    p.insns = kp->insns;
    p.target_offset = e->offset;
    p.target_file_offset = true;
    p.name = strdup(kp->name[0] ? kp->name : "kernel_uprobe");
    p.section = strdup(section);
    p.license = strdup("GPL"); /* the kernel accepted it with its helpers */
    p.target_binary = strdup(e->path);
    struct reg_prog *rp = NULL;
    reg->force_id = forced;
    int r = p.name && p.section && p.license && p.target_binary ? registry_add_prog(reg, o, &p, &rp) : -ENOMEM;
    reg->force_id = 0;
    if (r) {
        free(p.name), free(p.section), free(p.license), free(p.target_binary);
        return r;
    }
    kp->insns = NULL; /* the registry's now */
    *id = rp->id;
    return 0;
}

static int make_object(struct server *s, struct offload *of, struct kprog *kp, const uint32_t *ids, uint32_t nids,
                       const uint32_t *forced, char *err, size_t errlen)
{
    char name[96];
    snprintf(name, sizeof(name), "offload:%d:0x%llx", (int)of->ev[0].tool, (unsigned long long)of->ev[0].offset);
    struct reg_object *o = NULL;
    int r = registry_new_object(&s->reg, name, nids, of->nev, &o);
    if (r)
        return srv_efail(err, errlen, r, "out of memory");
    r = add_maps(&s->reg, o, ids, nids, err, errlen);
    for (size_t i = 0; !r && i < of->nev; i++)
        if ((r = add_prog(&s->reg, o, &kp[i], &of->ev[i], forced[i], &of->prog_ids[i])) != 0)
            srv_efail(err, errlen, r, "out of memory");
    if (!r)
        r = progcheck_object(&s->reg, o, err, errlen);
    if (r)
        registry_unload(&s->reg, o->id);
    else
        of->obj_id = o->id;
    return r;
}

/* One object per offload: the programs of its events over the maps they
 * use (kernel maps, the same ones). */
static int build(struct server *s, struct offload *of, const uint32_t *forced, char *err, size_t errlen)
{
    struct kprog kp[MAX_EVENTS];
    uint32_t ids[MAX_MAPS], nids = 0;
    memset(kp, 0, sizeof(kp));
    int r = 0;
    for (size_t i = 0; !r && i < of->nev; i++)
        if ((r = portable_prog(of->ev[i].prog_id, &kp[i], err, errlen)) == 0)
            r = union_maps(&kp[i], ids, &nids, err, errlen);
    if (!r)
        r = make_object(s, of, kp, ids, nids, forced, err, errlen);
    for (size_t i = 0; i < MAX_EVENTS; i++)
        free(kp[i].insns);
    return r;
}

/* ---- where the kernel's breakpoint is ---- */

struct where {
    const struct kevent *e;
    uint64_t addr;
};

static int find_mapping(const struct bpfg_procfs_map *m, void *arg)
{
    struct where *w = arg;
    if (m->inode != (uint64_t)w->e->ino || makedev(m->dev_major, m->dev_minor) != (uint64_t)w->e->dev ||
        w->e->offset < m->offset || w->e->offset >= m->offset + (m->end - m->start) || m->perms[2] != 'x')
        return 0;
    w->addr = m->start + (w->e->offset - m->offset);
    return 1;
}

static int read_byte(const char *path, uint64_t at, uint8_t *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = pread(fd, b, 1, (off_t)at) == 1 ? 0 : -EIO;
    close(fd);
    return r;
}

static int write_byte(pid_t pid, uint64_t at, uint8_t b)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = pwrite(fd, &b, 1, (off_t)at) == 1 ? 0 : -EIO;
    close(fd);
    return r;
}

/* Where e's file offset is in pid when the kernel's int3 is there (the
 * uprobe covers pid), else 0; the file's own byte in *file_byte. */
static uint64_t breakpoint_in(pid_t pid, const struct kevent *e, uint8_t *file_byte)
{
    struct where w = {e, 0};
    char mem[64];
    uint8_t now;
    snprintf(mem, sizeof(mem), "/proc/%d/mem", (int)pid);
    if (bpfg_procfs_maps(pid, find_mapping, &w) != 1 || read_byte(mem, w.addr, &now) != 0 ||
        read_byte(e->path, e->offset, file_byte) != 0)
        return 0;
    return now == INT3 && *file_byte != INT3 ? w.addr : 0;
}

bool offload_take_breakpoint(pid_t pid, uint64_t addr, uint8_t *code, size_t have)
{
    if (!taking.pid || pid != taking.pid || addr != taking.addr || !have || code[0] != INT3)
        return false;
    code[0] = taking.file_byte;
    sites_file_byte(pid, addr, taking.file_byte);
    return true;
}

/* ---- serving and handing back ---- */

static bool served_in(const struct offload *of, pid_t pid)
{
    for (size_t i = 0; i < of->nin; i++)
        if (of->in[i] == pid)
            return true;
    return false;
}

/* Copies of the tool's perf fds: the uprobe stays registered (and its
 * breakpoint may be written back) until we close them. */
static int hold_events(struct offload *of)
{
    int pidfd = (int)syscall(SYS_pidfd_open, of->ev[0].tool, 0);
    if (pidfd < 0)
        return -errno;
    int r = 0;
    for (size_t i = 0; !r && i < of->nev; i++)
        if (of->held[i] < 0 && (of->held[i] = (int)syscall(SYS_pidfd_getfd, pidfd, of->ev[i].fd, 0)) < 0)
            r = -errno;
    close(pidfd);
    return r;
}

static void release_events(struct offload *of)
{
    for (size_t i = 0; i < MAX_EVENTS; i++) {
        if (of->held[i] >= 0)
            close(of->held[i]);
        of->held[i] = -1;
    }
}

/* Whether t has a hook of bpfgraft's own whose patch covers addr (the
 * kernel wrote its int3 over it: not ours to take). */
static bool hooked_at(const struct target *t, uint64_t addr)
{
    for (size_t i = 0; i < TARGET_MAX_HOOKS; i++) {
        const struct bpfg_hook_plan *p = &t->hooks[i].plan;
        if (t->hooks[i].used && addr >= p->site && addr < p->site + p->patch_len)
            return true;
    }
    return false;
}

static void serve_in(struct server *s, struct offload *of, struct target *t)
{
    uint8_t file_byte;
    uint64_t addr = breakpoint_in(t->pid, &of->ev[0], &file_byte);
    pid_t *grown;
    char err[512];
    if (!addr || hooked_at(t, addr) || !(grown = realloc(of->in, (of->nin + 1) * sizeof(pid_t))))
        return;
    of->in = grown;
    int r = hold_events(of);
    if (r) {
        srv_log(SRV_WARN, "offload: tool %d's uprobe at %s+0x%llx: cannot hold its perf events: %s",
                (int)of->ev[0].tool, of->ev[0].path, (unsigned long long)of->ev[0].offset, strerror(-r));
        return;
    }
    taking.pid = t->pid, taking.addr = addr, taking.file_byte = file_byte;
    int code = targets_attach(s, t->pid, 0, 0, of->prog_ids, of->nev, NULL, TARGET_ENGINE_DEFAULT, 0, err, sizeof(err));
    taking.pid = 0;
    sites_file_byte(0, 0, 0);
    if (code) {
        srv_log(SRV_WARN, "offload: tool %d's uprobe at %s+0x%llx stays in the kernel for process %d: %s",
                (int)of->ev[0].tool, of->ev[0].path, (unsigned long long)of->ev[0].offset, (int)t->pid, err);
        return;
    }
    of->in[of->nin++] = t->pid;
    srv_log(SRV_INFO, "offload: tool %d's kernel uprobe%s at %s+0x%llx served in process %d (programs %u%s)",
            (int)of->ev[0].tool, of->nev > 1 ? "s" : "", of->ev[0].path, (unsigned long long)of->ev[0].offset,
            (int)t->pid, of->prog_ids[0], of->nev > 1 ? " and more" : "");
}

/* The kernel's int3 again where pid has the file's byte (no hook of ours
 * left there), while our fds keep the uprobe registered. */
static void restore_breakpoint(const struct offload *of, pid_t pid)
{
    struct where w = {&of->ev[0], 0};
    char mem[64];
    uint8_t file_byte, now;
    snprintf(mem, sizeof(mem), "/proc/%d/mem", (int)pid);
    if (bpfg_procfs_maps(pid, find_mapping, &w) != 1 || read_byte(of->ev[0].path, of->ev[0].offset, &file_byte) ||
        read_byte(mem, w.addr, &now) || now != file_byte)
        return;
    if (write_byte(pid, w.addr, INT3) != 0)
        srv_log(SRV_WARN, "offload: process %d: cannot write the kernel's breakpoint back", (int)pid);
}

/* The hook goes (the file's bytes back), then the kernel's int3. */
static void hand_back_in(struct server *s, struct offload *of, pid_t pid)
{
    struct target *t = targets_find(&s->targets, pid);
    if (!t || targets_remove_progs(s, t, of->prog_ids, of->nev, NULL, 0) != 0)
        return;
    restore_breakpoint(of, pid);
    srv_log(SRV_INFO, "offload: tool %d's uprobe at %s+0x%llx handed back to the kernel in process %d",
            (int)of->ev[0].tool, of->ev[0].path, (unsigned long long)of->ev[0].offset, (int)pid);
}

static void offload_free(struct server *s, struct offload *of)
{
    for (size_t i = 0; i < of->nin; i++)
        hand_back_in(s, of, of->in[i]);
    release_events(of);
    if (of->obj_id)
        registry_unload(&s->reg, of->obj_id);
    free(of->in);
    free(of);
}

/* ---- the scan: events grouped by tool and address ---- */

static bool same_place(const struct kevent *a, const struct kevent *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->offset == b->offset;
}

static struct offload *group_of(struct offload *list, const struct kevent *e)
{
    for (struct offload *of = list; of; of = of->next)
        if (of->ev[0].tool == e->tool && same_place(&of->ev[0], e))
            return of;
    return NULL;
}

/* A tool's second uprobe of one kind at an address, or another tool's
 * uprobe there: which of them covers which process cannot be told from
 * the breakpoint, so all of them stay in the kernel. */
static void add_event(struct offload **list, const struct kevent *e)
{
    struct offload *of = group_of(*list, e);
    if (!of) {
        if (!(of = calloc(1, sizeof(*of))))
            return;
        of->held[0] = of->held[1] = -1;
        of->next = *list;
        *list = of;
    }
    for (size_t i = 0; i < of->nev; i++)
        if (of->ev[i].ret == e->ret)
            of->ambiguous = true;
    if (of->nev < MAX_EVENTS)
        of->ev[of->nev++] = *e;
    for (struct offload *o = *list; o; o = o->next)
        if (o != of && same_place(&o->ev[0], e))
            o->ambiguous = of->ambiguous = true;
}

static bool same_set(const struct offload *a, const struct offload *b)
{
    if (a->nev != b->nev || a->ambiguous != b->ambiguous)
        return false;
    for (size_t i = 0; i < a->nev; i++) {
        size_t k = 0;
        while (k < b->nev && !same_event(&a->ev[i], &b->ev[k]))
            k++;
        if (k == b->nev)
            return false;
    }
    return true;
}

/* Takes the group of fresh equal to of out of fresh; whether there was one. */
static bool take_equal(struct offload **fresh, const struct offload *of)
{
    for (struct offload **pp = fresh; *pp; pp = &(*pp)->next)
        if (same_set(*pp, of)) {
            struct offload *f = *pp;
            *pp = f->next;
            free(f);
            return true;
        }
    return false;
}

static void say_refused(const struct offload *of, const char *why)
{
    srv_log(SRV_INFO, "offload: tool %d's kernel uprobe at %s+0x%llx stays in the kernel: %s", (int)of->ev[0].tool,
            of->ev[0].path, (unsigned long long)of->ev[0].offset, why);
}

static bool wants_offload(const struct offload *of, const struct target *t)
{
    return !t->foreign_abi && !t->inert && t->pid != of->ev[0].tool && !tools_has_pid(t->pid) && !served_in(of, t->pid);
}

/* Processes served that are no longer targets (detached, exited): the
 * kernel's breakpoint back where the process still runs. */
static void forget_gone(struct server *s, struct offload *of)
{
    size_t k = 0;
    for (size_t i = 0; i < of->nin; i++) {
        if (targets_find(&s->targets, of->in[i]))
            of->in[k++] = of->in[i];
        else
            restore_breakpoint(of, of->in[i]);
    }
    of->nin = k;
}

/* ---- offloads a killed server left running ---- */

/* Whether prog id is of's or unknown (a killed server's). */
static bool left_over(struct server *s, const struct offload *of, uint32_t id)
{
    for (size_t i = 0; of->obj_id && i < of->nev; i++)
        if (of->prog_ids[i] == id)
            return true;
    return !registry_prog(&s->reg, id);
}

/* The hook at of's address in t whose programs the registry does not know
 * (or of's took their ids over), as many as of's events: the copy a
 * killed server left serving the tool's uprobe there (its jmp, not the
 * kernel's int3). NULL: none. */
static const struct target_hook *stale_hook(struct server *s, const struct offload *of, const struct target *t)
{
    struct where w = {&of->ev[0], 0};
    if (bpfg_procfs_maps(t->pid, find_mapping, &w) != 1)
        return NULL;
    for (size_t i = 0; i < TARGET_MAX_HOOKS; i++) {
        const struct target_hook *h = &t->hooks[i];
        if (!h->used || h->plan.func != w.addr)
            continue;
        bool stale = h->nprogs == of->nev;
        for (uint32_t k = 0; stale && k < h->nprogs; k++)
            stale = left_over(s, of, h->prog_ids[k]);
        return stale ? h : NULL;
    }
    return NULL;
}

/* The program id of h that serves event e (by kind), 0 none. */
static uint32_t stale_id(const struct target_hook *h, const struct kevent *e)
{
    for (uint32_t k = 0; k < h->nprogs; k++)
        if (h->kinds[k] == (e->ret ? BPFG_HOOK_URETPROBE : BPFG_HOOK_UPROBE))
            return h->prog_ids[k];
    return 0;
}

/* The ids the killed server's copies run under, for of's programs to take
 * (0 each: none found, or the id is taken meanwhile). */
static void readopt_ids(struct server *s, const struct offload *of, uint32_t *forced)
{
    for (struct target *t = s->targets.list; t; t = t->next) {
        const struct target_hook *h = stale_hook(s, of, t);
        for (size_t i = 0; h && i < of->nev; i++) {
            uint32_t id = stale_id(h, &of->ev[i]);
            forced[i] = id && !registry_prog(&s->reg, id) ? id : 0;
        }
        if (h)
            return;
    }
}

/* A killed server's copy in t: served on as ours when its programs are
 * of's (their ids taken over: nothing changes in t), else its hook goes
 * and the kernel's int3 comes back (the next scan offloads it anew).
 * False when t has none. */
static bool readopt_in(struct server *s, struct offload *of, struct target *t)
{
    const struct target_hook *h = stale_hook(s, of, t);
    pid_t *grown;
    if (!h || hold_events(of) != 0 || !(grown = realloc(of->in, (of->nin + 1) * sizeof(pid_t))))
        return h != NULL;
    of->in = grown;
    bool same = true;
    for (size_t i = 0; i < of->nev; i++)
        same = same && stale_id(h, &of->ev[i]) == of->prog_ids[i];
    if (same) {
        of->in[of->nin++] = t->pid;
        srv_log(SRV_INFO,
                "offload: tool %d's uprobe at %s+0x%llx: the copy a killed server left in process %d is "
                "served on (programs %u%s)",
                (int)of->ev[0].tool, of->ev[0].path, (unsigned long long)of->ev[0].offset, (int)t->pid, of->prog_ids[0],
                of->nev > 1 ? " and more" : "");
        return true;
    }
    uint32_t ids[TARGET_HOOK_PROGS];
    size_t n = h->nprogs;
    memcpy(ids, h->prog_ids, n * sizeof(ids[0]));
    if (targets_remove_progs(s, t, ids, n, NULL, 0) == 0)
        restore_breakpoint(of, t->pid);
    srv_log(SRV_INFO,
            "offload: tool %d's uprobe at %s+0x%llx: the copy a killed server left in process %d is "
            "handed back to the kernel",
            (int)of->ev[0].tool, of->ev[0].path, (unsigned long long)of->ev[0].offset, (int)t->pid);
    return true;
}

static void serve(struct server *s, struct offload *of, bool just_stable)
{
    char err[512] = "";
    uint32_t forced[MAX_EVENTS] = {0};
    if (of->ambiguous || of->refused) {
        if (of->ambiguous && just_stable)
            say_refused(of, "another uprobe of the same kind or of another tool is at that address");
        return;
    }
    if (!of->obj_id)
        readopt_ids(s, of, forced);
    if (!of->obj_id && build(s, of, forced, err, sizeof(err)) != 0) {
        of->refused = true;
        say_refused(of, err);
        return;
    }
    forget_gone(s, of);
    for (struct target *t = s->targets.list; t; t = t->next)
        if (wants_offload(of, t) && !readopt_in(s, of, t))
            serve_in(s, of, t);
}

void offload_tick(struct server *s)
{
    uint64_t now = server_now_ms();
    if (!enabled || now - last_scan_ms < SCAN_MS)
        return;
    last_scan_ms = now;
    struct kevent *evs = calloc(MAX_SCAN, sizeof(*evs));
    if (!evs)
        return;
    size_t n = scan_all(evs);
    struct offload *fresh = NULL;
    for (size_t i = 0; i < n; i++)
        add_event(&fresh, &evs[i]);
    free(evs);
    for (struct offload **pp = &offloads; *pp;) {
        struct offload *of = *pp;
        if (take_equal(&fresh, of)) {
            bool just = !of->stable;
            of->stable = true;
            serve(s, of, just);
            pp = &of->next;
        } else { /* closed or changed: handed back, seen anew next time */
            *pp = of->next;
            offload_free(s, of);
        }
    }
    for (struct offload *f = fresh, *next; f; f = next) {
        next = f->next;
        f->next = offloads;
        offloads = f;
    }
}

void offload_stop(struct server *s)
{
    while (offloads) {
        struct offload *of = offloads;
        offloads = of->next;
        offload_free(s, of);
    }
}
