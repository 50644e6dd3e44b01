/* Kernel maps behind a bpfgraft handle: a bpf map fd (from the kernel's
 * bpf(), passed like a region's memfd) that userspace programs, the server
 * and the CLI use through the same bpfg_map_* calls.
 *
 * BPF_F_MMAPABLE arrays are mapped and served by the array code itself:
 * lookups are pointers into the kernel's own pages, as fast as ours. Hash
 * and LRU hash maps go through bpf() for every operation (a syscall each;
 * bpfgraft-bench maps measures it); a lookup copies the value into one of
 * KSLOTS per-handle slots and returns that slot, so writes through the
 * returned pointer stay local (programs must update_elem to change a
 * kernel hash value). Other kernel map types are refused.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

#define KSLOTS 64u

static long kbpf(int cmd, union bpf_attr *attr)
{
    long r = syscall(__NR_bpf, cmd, attr, sizeof(*attr));
    return r < 0 ? -errno : r;
}

static uint8_t *kslot(struct bpfg_map *m)
{
    uint32_t i = atomic_fetch_add_explicit(&m->kslot_next, 1, memory_order_relaxed) % KSLOTS;
    return m->data + (uint64_t)i * m->value_stride;
}

static int kelem(struct bpfg_map *m, int cmd, const void *key, void *value, uint64_t flags)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)m->fd;
    a.key = (uint64_t)(uintptr_t)key;
    a.value = (uint64_t)(uintptr_t)value;
    a.flags = flags;
    return (int)kbpf(cmd, &a);
}

static void *khash_lookup(struct bpfg_map *m, const void *key)
{
    uint8_t *v = kslot(m);
    return kelem(m, BPF_MAP_LOOKUP_ELEM, key, v, 0) ? NULL : v;
}

static int khash_update(struct bpfg_map *m, const void *key, const void *value, uint64_t flags, uint32_t cpu)
{
    (void)cpu;
    return kelem(m, BPF_MAP_UPDATE_ELEM, key, (void *)value, flags);
}

static int khash_delete(struct bpfg_map *m, const void *key)
{
    return kelem(m, BPF_MAP_DELETE_ELEM, key, NULL, 0);
}

static int khash_lookup_copy(struct bpfg_map *m, const void *key, void *value)
{
    return kelem(m, BPF_MAP_LOOKUP_ELEM, key, value, 0);
}

static int khash_lookup_and_delete(struct bpfg_map *m, const void *key, void *value)
{
    return kelem(m, BPF_MAP_LOOKUP_AND_DELETE_ELEM, key, value, 0);
}

static int khash_next_key(struct bpfg_map *m, const void *key, void *next)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)m->fd;
    a.key = (uint64_t)(uintptr_t)key;
    a.next_key = (uint64_t)(uintptr_t)next;
    return (int)kbpf(BPF_MAP_GET_NEXT_KEY, &a);
}

/* The kernel keeps no count we can read: walk the keys. */
static uint64_t khash_entries(struct bpfg_map *m)
{
    uint8_t *keys = malloc(2 * (size_t)m->key_size);
    uint64_t n = 0;
    if (!keys)
        return 0;
    for (const void *prev = NULL; n < m->max_entries; prev = keys + (n & 1) * m->key_size, n++)
        if (khash_next_key(m, prev, keys + ((n + 1) & 1) * m->key_size) != 0)
            break;
    free(keys);
    return n;
}

static const struct map_ops khash_ops = {
    .entries = khash_entries,
    .lookup = khash_lookup,
    .update = khash_update,
    .delete = khash_delete,
    .lookup_copy = khash_lookup_copy,
    .lookup_and_delete = khash_lookup_and_delete,
    .get_next_key = khash_next_key,
};

static int kinfo(int fd, struct bpf_map_info *info)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    memset(info, 0, sizeof(*info));
    a.info.bpf_fd = (uint32_t)fd;
    a.info.info_len = sizeof(*info);
    a.info.info = (uint64_t)(uintptr_t)info;
    return (int)kbpf(BPF_OBJ_GET_INFO_BY_FD, &a);
}

/* The header page (a description like a region's, for get_info) and the
 * lookup slots, in one private mapping. */
static int kheader(struct bpfg_map *m, const struct bpf_map_info *info)
{
    m->base_len = HDR_SIZE + ROUNDUP((size_t)KSLOTS * m->value_stride, REGION_PAGE);
    void *p = mmap(NULL, m->base_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        m->base = NULL;
        map_set_error("kernel map: mmap: %s", strerror(errno));
        return -errno;
    }
    m->base = p;
    m->hdr = (struct region_hdr *)m->base;
    m->st = (struct region_state *)(m->base + STATE_OFF);
    m->data = m->base + HDR_SIZE;
    /* what get_info reports; the rest of the geometry is the handle's */
    m->hdr->nr_cpus = 1;
    m->hdr->btf_key_type_id = info->btf_key_type_id;
    m->hdr->btf_value_type_id = info->btf_value_type_id;
    memcpy(m->hdr->name, info->name, sizeof(m->hdr->name) - 1);
    return 0;
}

/* An mmapable array's values, mapped from the kernel (read-only when the
 * map is frozen, e.g. .rodata: then it counts as frozen here too). */
static int kmap_values(struct bpfg_map *m)
{
    size_t len = ROUNDUP((size_t)m->value_stride * m->max_entries, REGION_PAGE);
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
    if (p == MAP_FAILED) {
        p = mmap(NULL, len, PROT_READ, MAP_SHARED, m->fd, 0);
        if (p == MAP_FAILED) {
            map_set_error("kernel array: mmap: %s", strerror(errno));
            return -errno;
        }
        atomic_store(&m->st->frozen, 1);
    }
    m->ring_bases = calloc(1, sizeof(*m->ring_bases));
    if (!m->ring_bases) {
        munmap(p, len);
        return -ENOMEM;
    }
    /* mapping 1 (bpfg_map_mapping): a VM that bounds-checks sees it */
    m->ring_bases[0] = p;
    m->n_rings = 1;
    m->ring_map_len = len;
    m->data = p;
    m->ops = &array_ops;
    return 0;
}

static int kernel_ops(struct bpfg_map *m)
{
    if (m->type == BPF_MAP_TYPE_ARRAY && (m->map_flags & BPF_F_MMAPABLE))
        return kmap_values(m);
    if (m->type == BPF_MAP_TYPE_HASH || m->type == BPF_MAP_TYPE_LRU_HASH) {
        m->ops = &khash_ops;
        return 0;
    }
    map_set_error("kernel map: type %s%s is not supported in userspace programs (arrays need BPF_F_MMAPABLE)",
                  bpfg_map_type_name(m->type), m->type == BPF_MAP_TYPE_ARRAY ? " without BPF_F_MMAPABLE" : "");
    return -EOPNOTSUPP;
}

int map_open_kernel(int fd, struct bpfg_map **out)
{
    struct bpf_map_info info;
    int err = kinfo(fd, &info);
    if (err) {
        map_set_error("fd %d is neither a map region nor a kernel map: %s", fd, strerror(-err));
        close(fd);
        return err == -EINVAL ? -EBADMSG : err;
    }
    struct bpfg_map *m = calloc(1, sizeof(*m));
    if (!m) {
        close(fd);
        return -ENOMEM;
    }
    *m = (struct bpfg_map){.fd = fd,
                           .kernel = true,
                           .type = info.type,
                           .key_size = info.key_size,
                           .value_size = info.value_size,
                           .max_entries = info.max_entries,
                           .map_flags = info.map_flags,
                           .nr_cpus = 1,
                           .n_elems = info.max_entries,
                           .elem_size = ROUND8(info.value_size),
                           .value_stride = ROUND8(info.value_size),
                           .key_stride = ROUND8(info.key_size)};
    err = kheader(m, &info);
    if (!err)
        err = kernel_ops(m);
    if (err) {
        bpfg_map_close(m);
        return err;
    }
    *out = m;
    return 0;
}

bool bpfg_map_is_kernel(const struct bpfg_map *map)
{
    return map->kernel;
}
