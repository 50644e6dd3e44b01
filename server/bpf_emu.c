/* Userspace emulation of bpf() for libbpf's load path. See bpf_emu.h. */
#define _GNU_SOURCE
#include "bpf_emu.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A command no kernel knows: answered only by __wrap_syscall, to check
 * that the link-time wrapping is in effect. */
#define EMU_PING_CMD 0x7e57b0f0
#define EMU_PING_REPLY 0x600df00dL

#define EMU_MAX_INSNS 1000000
#define offsetofend(T, m) (offsetof(T, m) + sizeof(((T *)0)->m))
#define EMU_MAX_MAP_BYTES (1ull << 30)
#define EMU_MAX_BTF_BYTES (64u << 20)

enum emu_kind { EMU_MAP, EMU_PROG, EMU_BTF };

struct emu_obj {
    int fd;
    dev_t dev; /* identity of the memfd behind fd, so a fd */
    ino_t ino; /* number reused after libbpf's close() is not ours */
    enum emu_kind kind;
    uint32_t id;
    union {
        struct bpfg_emu_map map;
        struct bpfg_emu_prog prog;
        struct {
            void *data;
            uint32_t size;
        } btf;
    };
};

struct bpfg_emu {
    struct emu_obj *objs;
    size_t n, cap;
    uint32_t next_id;
    bool trace;
};

static pthread_mutex_t emu_lock = PTHREAD_MUTEX_INITIALIZER;
static __thread struct bpfg_emu *emu_active;

long __real_syscall(long number, ...);
long __wrap_syscall(long number, ...);

static void obj_release(struct emu_obj *o)
{
    if (o->kind == EMU_PROG) {
        free(o->prog.license);
        free(o->prog.insns);
    } else if (o->kind == EMU_BTF) {
        free(o->btf.data);
    } else {
        free(o->map.slot_keys);
        free(o->map.slot_fds);
    }
    memset(o, 0, sizeof(*o));
    o->fd = -1;
}

/* The live record for fd: same number and still the same memfd. */
static struct emu_obj *obj_find(struct bpfg_emu *emu, int fd)
{
    struct stat st;

    if (fd < 0)
        return NULL;
    for (size_t i = 0; i < emu->n; i++) {
        struct emu_obj *o = &emu->objs[i];
        if (o->fd != fd)
            continue;
        if (fstat(fd, &st) < 0 || st.st_dev != o->dev || st.st_ino != o->ino)
            return NULL;
        return o;
    }
    return NULL;
}

/* A fresh memfd of size bytes, numbered >= 3 (libbpf would dup lower
 * numbers away from stdio, and the dup would not be in our table), and its
 * record. A record with the same fd number is stale: the kernel only hands
 * out numbers that were closed. */
static struct emu_obj *obj_new(struct bpfg_emu *emu, enum emu_kind kind, uint64_t size)
{
    static const char *names[] = {"bpfg-emu-map", "bpfg-emu-prog", "bpfg-emu-btf"};
    struct emu_obj *o = NULL;
    struct stat st;
    int fd = memfd_create(names[kind], MFD_CLOEXEC);

    if (fd < 0)
        return NULL;
    if (fd < 3) {
        int hi = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        int saved = errno;
        close(fd);
        errno = saved;
        if (hi < 0)
            return NULL;
        fd = hi;
    }
    if (ftruncate(fd, (off_t)size) < 0 || fstat(fd, &st) < 0)
        goto fail;
    for (size_t i = 0; i < emu->n; i++) {
        if (emu->objs[i].fd == fd) {
            obj_release(&emu->objs[i]);
            o = &emu->objs[i];
            break;
        }
    }
    if (!o) {
        if (emu->n == emu->cap) {
            size_t cap = emu->cap ? emu->cap * 2 : 16;
            struct emu_obj *objs = realloc(emu->objs, cap * sizeof(*objs));
            if (!objs)
                goto fail;
            emu->objs = objs;
            emu->cap = cap;
        }
        o = &emu->objs[emu->n++];
    }
    memset(o, 0, sizeof(*o));
    o->fd = fd;
    o->dev = st.st_dev;
    o->ino = st.st_ino;
    o->kind = kind;
    o->id = ++emu->next_id;
    return o;
fail:;
    int saved = errno;
    close(fd);
    errno = saved;
    return NULL;
}

static uint64_t array_elem_size(const struct bpfg_emu_map *m)
{
    return ((uint64_t)m->value_size + 7) & ~7ull;
}

static bool is_array(uint32_t type)
{
    return type == BPF_MAP_TYPE_ARRAY || type == BPF_MAP_TYPE_PERCPU_ARRAY;
}

static long emu_map_create(struct bpfg_emu *emu, const union bpf_attr *a)
{
    struct bpfg_emu_map m = {
        .type = a->map_type,
        .key_size = a->key_size,
        .value_size = a->value_size,
        .max_entries = a->max_entries,
        .flags = a->map_flags,
        .btf_key_type_id = a->btf_key_type_id,
        .btf_value_type_id = a->btf_value_type_id,
        .map_extra = a->map_extra,
    };
    uint64_t size = 0;

    memcpy(m.name, a->map_name, sizeof(m.name) - 1);
    if (m.type == BPF_MAP_TYPE_ARRAY_OF_MAPS || m.type == BPF_MAP_TYPE_HASH_OF_MAPS) {
        /* libbpf destroys the template map right after: keep its shape */
        struct emu_obj *in = obj_find(emu, (int)a->inner_map_fd);
        if (!in || in->kind != EMU_MAP)
            return -EBADF;
        m.inner_type = in->map.type;
        m.inner_key_size = in->map.key_size;
        m.inner_value_size = in->map.value_size;
        m.inner_max_entries = in->map.max_entries;
        m.inner_flags = in->map.flags;
    }
    if (is_array(m.type)) {
        if (m.key_size != 4 || m.value_size == 0 || m.max_entries == 0)
            return -EINVAL;
        size = array_elem_size(&m) * m.max_entries;
        if (size > EMU_MAX_MAP_BYTES)
            return -E2BIG;
        size = (size + 4095) & ~4095ull; /* mmap covers whole pages */
    }
    struct emu_obj *o = obj_new(emu, EMU_MAP, size);
    if (!o)
        return -errno;
    o->map = m;
    return o->fd;
}

/* A map-in-map slot libbpf fills at load: recorded for the loader. */
static long emu_outer_update(struct bpfg_emu_map *m, const union bpf_attr *a)
{
    uint32_t key;
    int fd;
    if (!a->key || !a->value || m->key_size != 4)
        return -EINVAL;
    memcpy(&key, (const void *)(uintptr_t)a->key, 4);
    memcpy(&fd, (const void *)(uintptr_t)a->value, 4);
    uint32_t *keys = realloc(m->slot_keys, (m->nslots + 1) * sizeof(*keys));
    if (!keys)
        return -ENOMEM;
    m->slot_keys = keys;
    int *fds = realloc(m->slot_fds, (m->nslots + 1) * sizeof(*fds));
    if (!fds)
        return -ENOMEM;
    m->slot_fds = fds;
    keys[m->nslots] = key;
    fds[m->nslots++] = fd;
    return 0;
}

static long emu_map_elem(struct bpfg_emu *emu, int cmd, const union bpf_attr *a)
{
    struct emu_obj *o = obj_find(emu, (int)a->map_fd);
    uint32_t idx;

    if (!o || o->kind != EMU_MAP)
        return -EBADF;
    struct bpfg_emu_map *m = &o->map;
    if (cmd == BPF_MAP_FREEZE) {
        m->frozen = true;
        return 0;
    }
    if (cmd == BPF_MAP_UPDATE_ELEM && (m->type == BPF_MAP_TYPE_ARRAY_OF_MAPS || m->type == BPF_MAP_TYPE_HASH_OF_MAPS))
        return emu_outer_update(m, a);
    if (!is_array(m->type)) {
        /* Only arrays are filled during a load (global data); other maps
         * start empty, and their contents live in the server's maps. */
        return cmd == BPF_MAP_UPDATE_ELEM ? 0 : -ENOENT;
    }
    if (cmd == BPF_MAP_DELETE_ELEM)
        return -EINVAL;
    if (!a->key)
        idx = UINT32_MAX; /* GET_NEXT_KEY from the start */
    else
        memcpy(&idx, (const void *)(uintptr_t)a->key, sizeof(idx));
    if (cmd == BPF_MAP_GET_NEXT_KEY) {
        uint32_t next = idx + 1; /* wraps to 0 from the start */
        if (next >= m->max_entries)
            return -ENOENT;
        memcpy((void *)(uintptr_t)a->next_key, &next, sizeof(next));
        return 0;
    }
    if (!a->key || !a->value)
        return -EFAULT;
    if (idx >= m->max_entries)
        return cmd == BPF_MAP_UPDATE_ELEM ? -E2BIG : -ENOENT;
    off_t off = (off_t)(idx * array_elem_size(m));
    void *val = (void *)(uintptr_t)a->value;
    ssize_t r;
    if (cmd == BPF_MAP_LOOKUP_ELEM) {
        r = pread(o->fd, val, m->value_size, off);
    } else {
        if (m->frozen)
            return -EPERM;
        if (a->flags == BPF_NOEXIST)
            return -EEXIST;
        r = pwrite(o->fd, val, m->value_size, off);
    }
    if (r < 0)
        return -errno;
    return r == (ssize_t)m->value_size ? 0 : -EIO;
}

static long emu_prog_load(struct bpfg_emu *emu, const union bpf_attr *a)
{
    const char *lic = (const char *)(uintptr_t)a->license;

    if (a->insn_cnt == 0 || a->insn_cnt > EMU_MAX_INSNS || !a->insns)
        return -EINVAL;
    struct bpf_insn *insns = malloc(a->insn_cnt * sizeof(*insns));
    char *license = strndup(lic ? lic : "", 127);
    if (!insns || !license) {
        free(insns);
        free(license);
        return -ENOMEM;
    }
    memcpy(insns, (const void *)(uintptr_t)a->insns, a->insn_cnt * sizeof(*insns));
    struct emu_obj *o = obj_new(emu, EMU_PROG, 0);
    if (!o) {
        long err = -errno;
        free(insns);
        free(license);
        return err;
    }
    memcpy(o->prog.name, a->prog_name, sizeof(o->prog.name) - 1);
    o->prog.type = a->prog_type;
    o->prog.expected_attach_type = a->expected_attach_type;
    o->prog.flags = a->prog_flags;
    o->prog.kern_version = a->kern_version;
    o->prog.license = license;
    o->prog.insns = insns;
    o->prog.insn_cnt = a->insn_cnt;
    return o->fd;
}

static long emu_btf_load(struct bpfg_emu *emu, const union bpf_attr *a)
{
    if (!a->btf || a->btf_size == 0 || a->btf_size > EMU_MAX_BTF_BYTES)
        return -EINVAL;
    void *data = malloc(a->btf_size);
    if (!data)
        return -ENOMEM;
    memcpy(data, (const void *)(uintptr_t)a->btf, a->btf_size);
    struct emu_obj *o = obj_new(emu, EMU_BTF, 0);
    if (!o) {
        long err = -errno;
        free(data);
        return err;
    }
    o->btf.data = data;
    o->btf.size = a->btf_size;
    return o->fd;
}

/* Fills the info struct libbpf asked for, up to the length it gave. */
static long emu_get_info(struct bpfg_emu *emu, union bpf_attr *a, union bpf_attr *user)
{
    struct emu_obj *o = obj_find(emu, (int)a->info.bpf_fd);
    union {
        struct bpf_map_info map;
        struct bpf_prog_info prog;
        struct bpf_btf_info btf;
    } info;
    uint32_t len;

    if (!o)
        return -EBADF;
    memset(&info, 0, sizeof(info));
    len = a->info.info_len < sizeof(info) ? a->info.info_len : sizeof(info);
    memcpy(&info, (const void *)(uintptr_t)a->info.info, len);
    switch (o->kind) {
    case EMU_MAP: {
        struct bpf_map_info m = {
            .type = o->map.type,
            .id = o->id,
            .key_size = o->map.key_size,
            .value_size = o->map.value_size,
            .max_entries = o->map.max_entries,
            .map_flags = o->map.flags,
            .btf_key_type_id = o->map.btf_key_type_id,
            .btf_value_type_id = o->map.btf_value_type_id,
            .map_extra = o->map.map_extra,
        };
        memcpy(m.name, o->map.name, sizeof(m.name));
        info.map = m;
        len = len < sizeof(m) ? len : sizeof(m);
        break;
    }
    case EMU_PROG: {
        struct bpf_prog_info p = {.type = o->prog.type, .id = o->id};
        memcpy(p.name, o->prog.name, sizeof(p.name));
        info.prog = p;
        len = len < sizeof(p) ? len : sizeof(p);
        break;
    }
    case EMU_BTF: {
        uint64_t buf = info.btf.btf;
        uint32_t cap = info.btf.btf_size;
        if (buf && cap)
            memcpy((void *)(uintptr_t)buf, o->btf.data, cap < o->btf.size ? cap : o->btf.size);
        struct bpf_btf_info b = {.btf = buf, .btf_size = o->btf.size, .id = o->id};
        info.btf = b;
        len = len < sizeof(b) ? len : sizeof(b);
        break;
    }
    }
    memcpy((void *)(uintptr_t)a->info.info, &info, len);
    user->info.info_len = len;
    return 0;
}

static const char *cmd_name(int cmd)
{
    switch (cmd) {
    case BPF_MAP_CREATE: return "MAP_CREATE";
    case BPF_MAP_LOOKUP_ELEM: return "MAP_LOOKUP_ELEM";
    case BPF_MAP_UPDATE_ELEM: return "MAP_UPDATE_ELEM";
    case BPF_MAP_DELETE_ELEM: return "MAP_DELETE_ELEM";
    case BPF_MAP_GET_NEXT_KEY: return "MAP_GET_NEXT_KEY";
    case BPF_MAP_FREEZE: return "MAP_FREEZE";
    case BPF_PROG_LOAD: return "PROG_LOAD";
    case BPF_BTF_LOAD: return "BTF_LOAD";
    case BPF_OBJ_GET_INFO_BY_FD: return "OBJ_GET_INFO_BY_FD";
    case BPF_PROG_BIND_MAP: return "PROG_BIND_MAP";
    default: return "?";
    }
}

/* Returns the syscall result: >= 0, or -1 with errno set. */
static long emu_bpf(struct bpfg_emu *emu, int cmd, void *uattr, unsigned long size)
{
    union bpf_attr a;
    long r;

    if (!uattr && cmd != EMU_PING_CMD) {
        errno = EFAULT;
        return -1;
    }
    memset(&a, 0, sizeof(a));
    if (uattr)
        memcpy(&a, uattr, size < sizeof(a) ? size : sizeof(a));
    switch (cmd) {
    case EMU_PING_CMD: return EMU_PING_REPLY;
    case BPF_MAP_CREATE: r = emu_map_create(emu, &a); break;
    case BPF_MAP_LOOKUP_ELEM:
    case BPF_MAP_UPDATE_ELEM:
    case BPF_MAP_DELETE_ELEM:
    case BPF_MAP_GET_NEXT_KEY:
    case BPF_MAP_FREEZE: r = emu_map_elem(emu, cmd, &a); break;
    case BPF_PROG_LOAD: r = emu_prog_load(emu, &a); break;
    case BPF_BTF_LOAD: r = emu_btf_load(emu, &a); break;
    case BPF_OBJ_GET_INFO_BY_FD:
        r = size >= offsetofend(union bpf_attr, info) ? emu_get_info(emu, &a, uattr) : -EINVAL;
        break;
    case BPF_PROG_BIND_MAP: r = 0; break;
    case BPF_PROG_GET_NEXT_ID:
    case BPF_MAP_GET_NEXT_ID:
    case BPF_BTF_GET_NEXT_ID:
    case BPF_LINK_GET_NEXT_ID: r = -ENOENT; break; /* nothing else loaded */
    default: r = -EINVAL; break;
    }
    if (emu->trace)
        fprintf(stderr, "bpf_emu: %s (%d) -> %ld\n", cmd_name(cmd), cmd, r);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return r;
}

long __wrap_syscall(long number, ...)
{
    va_list ap;
    long a[6];

    va_start(ap, number);
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == __NR_bpf && emu_active)
        return emu_bpf(emu_active, (int)a[0], (void *)a[1], (unsigned long)a[2]);
    return __real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

int bpfg_emu_begin(struct bpfg_emu **out)
{
    struct bpfg_emu *emu = calloc(1, sizeof(*emu));
    const char *trace = getenv("BPFG_EMU_TRACE");

    if (!emu)
        return -ENOMEM;
    emu->trace = trace && *trace && strcmp(trace, "0") != 0;
    pthread_mutex_lock(&emu_lock);
    emu_active = emu;
    /* Goes through __wrap_syscall only if this executable was linked with
     * --wrap=syscall; otherwise the kernel rejects the unknown command. */
    if (syscall(__NR_bpf, EMU_PING_CMD, NULL, 0) != EMU_PING_REPLY) {
        emu_active = NULL;
        pthread_mutex_unlock(&emu_lock);
        free(emu);
        return -ENOSYS;
    }
    *out = emu;
    return 0;
}

void bpfg_emu_end(struct bpfg_emu *emu)
{
    if (!emu)
        return;
    emu_active = NULL;
    for (size_t i = 0; i < emu->n; i++) {
        struct emu_obj *o = &emu->objs[i];
        if (o->fd >= 0 && obj_find(emu, o->fd) == o)
            close(o->fd);
        obj_release(o);
    }
    free(emu->objs);
    free(emu);
    pthread_mutex_unlock(&emu_lock);
}

const struct bpfg_emu_map *bpfg_emu_map_by_fd(struct bpfg_emu *emu, int fd)
{
    struct emu_obj *o = obj_find(emu, fd);
    return o && o->kind == EMU_MAP ? &o->map : NULL;
}

const struct bpfg_emu_prog *bpfg_emu_prog_by_fd(struct bpfg_emu *emu, int fd)
{
    struct emu_obj *o = obj_find(emu, fd);
    return o && o->kind == EMU_PROG ? &o->prog : NULL;
}
