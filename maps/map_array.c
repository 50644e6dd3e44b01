/* ARRAY, PERCPU_ARRAY (and global-data arrays) and PROG_ARRAY.
 *
 * Elements are preallocated and never move, so lookup is an index check and
 * an address computation: lock-free, no syscall. Updates copy in place like
 * the kernel's array map (values of up to 8 bytes are single stores).
 */
#include "internal.h"

#define ARRAY_FLAGS                                                                                           \
    (BPF_F_NUMA_NODE | BPF_F_MMAPABLE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG | \
     BPF_F_INNER_MAP | BPF_F_PRESERVE_ELEMS | BPFG_F_GLOBAL_DATA)
#define MAX_REGION (1ull << 38)
#define PCPU_MAX_VALUE (32u * 1024) /* the kernel's PCPU_MIN_UNIT_SIZE */

static bool is_percpu(const struct bpfg_map_spec *s)
{
    return s->type == BPF_MAP_TYPE_PERCPU_ARRAY;
}

/* PROG_ARRAY and ARRAY_OF_MAPS: a u32 id per slot (0 = empty). */
static bool is_id_array(uint32_t type)
{
    return type == BPF_MAP_TYPE_PROG_ARRAY || type == BPF_MAP_TYPE_ARRAY_OF_MAPS;
}

static int array_check(const struct bpfg_map_spec *s)
{
    if (s->type == BPF_MAP_TYPE_ARRAY_OF_MAPS &&
        (s->value_size != 4 || (s->map_flags & (BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG))))
        return -EINVAL;
    if (s->type != BPF_MAP_TYPE_ARRAY && (s->map_flags & (BPF_F_MMAPABLE | BPF_F_INNER_MAP)))
        return -EINVAL;
    if (s->type == BPF_MAP_TYPE_ARRAY_OF_MAPS && map_inner_template_check(s))
        return -EINVAL;
    if (s->key_size != 4 || s->value_size == 0 || s->max_entries == 0 || (s->map_flags & ~ARRAY_FLAGS))
        return -EINVAL;
    if (is_percpu(s) && (s->map_flags & (BPF_F_MMAPABLE | BPFG_F_GLOBAL_DATA)))
        return -EINVAL;
    if ((s->map_flags & BPFG_F_GLOBAL_DATA) && s->max_entries != 1)
        return -EINVAL;
    if (s->type == BPF_MAP_TYPE_PROG_ARRAY && s->value_size != 4)
        return -EINVAL;
    if (is_percpu(s) && s->value_size > PCPU_MAX_VALUE)
        return -E2BIG;
    uint64_t elem = ROUND8((uint64_t)s->value_size) * (is_percpu(s) ? s->nr_cpus : 1);
    if (elem * s->max_entries > MAX_REGION)
        return -E2BIG;
    return 0;
}

static void array_layout(const struct bpfg_map_spec *s, struct layout *lo)
{
    lo->n_locks = 0;
    lo->locks_off = HDR_SIZE;
    lo->n_elems = s->max_entries;
    lo->elem_size = is_id_array(s->type) ? 4 : ROUND8(s->value_size) * (is_percpu(s) ? s->nr_cpus : 1);
    lo->data_off = HDR_SIZE; /* page aligned: mmapable value area */
    lo->data_size = (uint64_t)lo->elem_size * s->max_entries;
    lo->region_size = ROUNDUP(lo->data_off + lo->data_size, REGION_PAGE);
}

static inline uint8_t *elem_at(struct bpfg_map *m, uint32_t i)
{
    return m->data + (uint64_t)i * m->elem_size;
}

static void *array_lookup(struct bpfg_map *m, const void *key)
{
    uint32_t i;
    memcpy(&i, key, 4);
    if (i >= m->max_entries)
        return NULL;
    return elem_at(m, i);
}

static void *percpu_array_lookup_cpu(struct bpfg_map *m, const void *key, uint32_t cpu)
{
    uint32_t i;
    memcpy(&i, key, 4);
    if (i >= m->max_entries)
        return NULL;
    return elem_at(m, i) + (uint64_t)cpu * m->value_stride;
}

static void *percpu_array_lookup(struct bpfg_map *m, const void *key)
{
    return percpu_array_lookup_cpu(m, key, map_current_cpu(m));
}

static int check_update(struct bpfg_map *m, const void *key, uint64_t flags, uint32_t *idx)
{
    if (flags > BPF_EXIST) /* includes BPF_F_LOCK: no bpf_spin_lock here */
        return -EINVAL;
    memcpy(idx, key, 4);
    if (*idx >= m->max_entries)
        return -E2BIG;
    if (flags == BPF_NOEXIST)
        return -EEXIST;
    return 0;
}

static void copy_value(void *dst, const void *src, uint32_t size)
{
    /* Aligned single stores for the common small sizes: readers never see
     * half of a counter. */
    switch (size) {
    case 4: atomic_store_explicit((_Atomic uint32_t *)dst, *(const uint32_t *)src, memory_order_relaxed); break;
    case 8: atomic_store_explicit((_Atomic uint64_t *)dst, *(const uint64_t *)src, memory_order_relaxed); break;
    default: memcpy(dst, src, size);
    }
}

static int array_update(struct bpfg_map *m, const void *key, const void *value, uint64_t flags, uint32_t cpu)
{
    uint32_t i;
    int err = check_update(m, key, flags, &i);
    if (err)
        return err;
    (void)cpu;
    uint32_t v4 = 0;
    uint64_t v8 = 0;
    /* The caller's value may be unaligned; bounce small ones. */
    if (m->value_size == 4) {
        memcpy(&v4, value, 4);
        value = &v4;
    } else if (m->value_size == 8) {
        memcpy(&v8, value, 8);
        value = &v8;
    }
    copy_value(elem_at(m, i), value, m->value_size);
    return 0;
}

static int percpu_array_update(struct bpfg_map *m, const void *key, const void *value, uint64_t flags, uint32_t cpu)
{
    uint32_t i;
    int err = check_update(m, key, flags, &i);
    if (err)
        return err;
    uint8_t *e = elem_at(m, i);
    if (cpu != MAP_CPU_ALL) {
        memcpy(e + (uint64_t)map_update_slot(m, cpu) * m->value_stride, value, m->value_size);
        return 0;
    }
    /* Syscall side: one ROUND8(value_size) slot per CPU, like the kernel. */
    for (uint32_t c = 0; c < m->nr_cpus; c++)
        memcpy(e + (uint64_t)c * m->value_stride, (const uint8_t *)value + (uint64_t)c * m->value_stride,
               m->value_size);
    return 0;
}

static int array_lookup_copy(struct bpfg_map *m, const void *key, void *value)
{
    uint32_t i;
    memcpy(&i, key, 4);
    if (i >= m->max_entries)
        return -ENOENT;
    memcpy(value, elem_at(m, i), m->value_size);
    return 0;
}

static int percpu_array_lookup_copy(struct bpfg_map *m, const void *key, void *value)
{
    uint32_t i;
    memcpy(&i, key, 4);
    if (i >= m->max_entries)
        return -ENOENT;
    memcpy(value, elem_at(m, i), (uint64_t)m->value_stride * m->nr_cpus);
    return 0;
}

static int array_delete(struct bpfg_map *m, const void *key)
{
    (void)m;
    (void)key;
    return -EINVAL;
}

static int array_get_next_key(struct bpfg_map *m, const void *key, void *next)
{
    uint32_t i = 0, n;
    if (key)
        memcpy(&i, key, 4);
    if (!key || i >= m->max_entries) {
        n = 0;
    } else {
        if (i == m->max_entries - 1)
            return -ENOENT;
        n = i + 1;
    }
    memcpy(next, &n, 4);
    return 0;
}

/* PROG_ARRAY: slot = program id (0 = empty), swapped with one store.
 * ARRAY_OF_MAPS likewise holds inner map ids. */
static _Atomic uint32_t *prog_slot(struct bpfg_map *m, uint32_t i)
{
    return (_Atomic uint32_t *)(m->data + (uint64_t)i * 4);
}

static int prog_array_update(struct bpfg_map *m, const void *key, const void *value, uint64_t flags, uint32_t cpu)
{
    uint32_t i, id;
    if (cpu != MAP_CPU_ALL || flags != BPF_ANY) /* the syscall side only */
        return -EINVAL;
    memcpy(&i, key, 4);
    memcpy(&id, value, 4);
    if (i >= m->max_entries)
        return -E2BIG;
    if (!id)
        return -EINVAL;
    atomic_store_explicit(prog_slot(m, i), id, memory_order_release);
    return 0;
}

static int prog_array_delete(struct bpfg_map *m, const void *key)
{
    uint32_t i;
    memcpy(&i, key, 4);
    if (i >= m->max_entries)
        return -E2BIG;
    return atomic_exchange(prog_slot(m, i), 0) ? 0 : -ENOENT;
}

static int prog_array_lookup_copy(struct bpfg_map *m, const void *key, void *value)
{
    uint32_t i;
    memcpy(&i, key, 4);
    if (i >= m->max_entries)
        return -ENOENT;
    uint32_t id = atomic_load_explicit(prog_slot(m, i), memory_order_acquire);
    if (!id)
        return -ENOENT;
    memcpy(value, &id, 4);
    return 0;
}

/* Arrays: the cursor is the next index. */
static int array_elem_at(struct bpfg_map *m, uint64_t *cursor, void **key, void **value)
{
    if (*cursor >= m->max_entries)
        return -ENOENT;
    uint8_t *v = elem_at(m, (uint32_t)*cursor);
    if (m->type == BPF_MAP_TYPE_PERCPU_ARRAY)
        v += (uint64_t)map_current_cpu(m) * m->value_stride;
    *key = NULL;
    *value = v;
    (*cursor)++;
    return 0;
}

const struct map_ops array_ops = {
    .check = array_check,
    .layout = array_layout,
    .lookup = array_lookup,
    .elem_at = array_elem_at,
    .update = array_update,
    .delete = array_delete,
    .lookup_copy = array_lookup_copy,
    .get_next_key = array_get_next_key,
};

const struct map_ops percpu_array_ops = {
    .check = array_check,
    .layout = array_layout,
    .lookup = percpu_array_lookup,
    .lookup_cpu = percpu_array_lookup_cpu,
    .elem_at = array_elem_at,
    .update = percpu_array_update,
    .delete = array_delete,
    .lookup_copy = percpu_array_lookup_copy,
    .get_next_key = array_get_next_key,
};

static int no_lookup_and_delete(struct bpfg_map *m, const void *key, void *value)
{
    (void)m;
    (void)key;
    (void)value;
    return -ENOTSUPP; /* what the kernel's bpf(2) says for arrays */
}

const struct map_ops array_of_maps_ops = {
    .lookup_and_delete = no_lookup_and_delete,
    .check = array_check,
    .layout = array_layout,
    .lookup = array_lookup, /* the slot: u32 inner map id, 0 = none */
    .update = prog_array_update,
    .delete = prog_array_delete,
    .lookup_copy = prog_array_lookup_copy,
    .get_next_key = array_get_next_key,
};

const struct map_ops prog_array_ops = {
    .check = array_check,
    .layout = array_layout,
    .update = prog_array_update,
    .delete = prog_array_delete,
    .lookup_copy = prog_array_lookup_copy,
    .get_next_key = array_get_next_key,
};
