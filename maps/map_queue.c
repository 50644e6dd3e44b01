/* QUEUE and STACK: a circular buffer of max_entries + 1 slots, like the
 * kernel's queue_stack_maps.c, under one robust mutex.
 *
 * Crash safety: a push copies into the free slot at `head` and then
 * publishes it by storing the new head; a pop copies out and then stores
 * the new tail (queue) or head (stack). Each step is one store of an index,
 * so a holder killed anywhere leaves a valid buffer (at worst the element
 * an overwriting push had just dropped is gone). The repair pass only
 * resets indices that are out of range.
 */
#include "internal.h"

#define QS_FLAGS (BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)

static int qs_check(const struct bpfg_map_spec *s)
{
    if (s->key_size != 0 || s->value_size == 0 || s->max_entries == 0 || (s->map_flags & ~QS_FLAGS))
        return -EINVAL;
    if ((uint64_t)ROUND8(s->value_size) * ((uint64_t)s->max_entries + 1) > (1ull << 36) || s->max_entries == UINT32_MAX)
        return -E2BIG;
    return 0;
}

static void qs_layout(const struct bpfg_map_spec *s, struct layout *lo)
{
    lo->n_locks = 1;
    lo->locks_off = HDR_SIZE;
    lo->n_elems = s->max_entries + 1;
    lo->elem_size = ROUND8(s->value_size);
    lo->data_off = ROUNDUP(lo->locks_off + 2ull * LOCK_STRIDE, 64);
    lo->data_size = (uint64_t)lo->n_elems * lo->elem_size;
    lo->region_size = ROUNDUP(lo->data_off + lo->data_size, REGION_PAGE);
}

static void qs_init(struct bpfg_map *m)
{
    atomic_store(&m->st->q_head, 0);
    atomic_store(&m->st->q_tail, 0);
}

static int qs_repair(struct bpfg_map *m)
{
    if (atomic_load(&m->st->q_head) >= m->n_elems || atomic_load(&m->st->q_tail) >= m->n_elems)
        qs_init(m);
    return 0;
}

static uint8_t *slot(struct bpfg_map *m, uint32_t i)
{
    return m->data + (uint64_t)i * m->elem_size;
}

/* Locks and loads indices; out-of-range values (a corrupt region) are reset. */
static int qs_lock(struct bpfg_map *m, uint32_t *head, uint32_t *tail)
{
    int err = map_lock_checked(m, 0);
    if (err)
        return err;
    *head = atomic_load_explicit(&m->st->q_head, memory_order_relaxed);
    *tail = atomic_load_explicit(&m->st->q_tail, memory_order_relaxed);
    if (*head >= m->n_elems || *tail >= m->n_elems) {
        qs_init(m);
        *head = *tail = 0;
    }
    return 0;
}

static int qs_push(struct bpfg_map *m, const void *value, uint64_t flags)
{
    if ((flags & BPF_NOEXIST) || flags > BPF_EXIST)
        return -EINVAL;
    uint32_t head, tail, size = m->n_elems;
    int err = qs_lock(m, &head, &tail);
    if (err)
        return err;
    if ((head + 1) % size == tail) {
        if (!(flags & BPF_EXIST)) {
            map_unlock(m, 0);
            return -E2BIG;
        }
        /* Full and BPF_EXIST: drop the oldest element. */
        tail = (tail + 1) % size;
        atomic_store_explicit(&m->st->q_tail, tail, memory_order_release);
    }
    memcpy(slot(m, head), value, m->value_size);
    atomic_store_explicit(&m->st->q_head, (head + 1) % size, memory_order_release);
    map_unlock(m, 0);
    return 0;
}

static int queue_pop(struct bpfg_map *m, void *value, bool remove)
{
    uint32_t head, tail;
    int err = qs_lock(m, &head, &tail);
    if (err)
        return err;
    if (head == tail) {
        map_unlock(m, 0);
        return -ENOENT;
    }
    memcpy(value, slot(m, tail), m->value_size);
    if (remove)
        atomic_store_explicit(&m->st->q_tail, (tail + 1) % m->n_elems, memory_order_release);
    map_unlock(m, 0);
    return 0;
}

static int stack_pop(struct bpfg_map *m, void *value, bool remove)
{
    uint32_t head, tail;
    int err = qs_lock(m, &head, &tail);
    if (err)
        return err;
    if (head == tail) {
        map_unlock(m, 0);
        return -ENOENT;
    }
    uint32_t i = head ? head - 1 : m->n_elems - 1;
    memcpy(value, slot(m, i), m->value_size);
    if (remove)
        atomic_store_explicit(&m->st->q_head, i, memory_order_release);
    map_unlock(m, 0);
    return 0;
}

static int qs_delete(struct bpfg_map *m, const void *key)
{
    (void)m;
    (void)key;
    return -EINVAL;
}

static int qs_get_next_key(struct bpfg_map *m, const void *key, void *next)
{
    (void)m;
    (void)key;
    (void)next;
    return -EINVAL;
}

const struct map_ops queue_ops = {
    .check = qs_check,
    .layout = qs_layout,
    .init = qs_init,
    .repair = qs_repair,
    .push = qs_push,
    .pop = queue_pop,
    .delete = qs_delete,
    .get_next_key = qs_get_next_key,
};

const struct map_ops stack_ops = {
    .check = qs_check,
    .layout = qs_layout,
    .init = qs_init,
    .repair = qs_repair,
    .push = qs_push,
    .pop = stack_pop,
    .delete = qs_delete,
    .get_next_key = qs_get_next_key,
};
