/* LPM_TRIE: the kernel's lpm_trie.c (a path-compressed binary trie whose
 * intermediate nodes always have two children), on node indices in the
 * region.
 *
 * Keys are struct bpf_lpm_trie_key_u8: u32 prefixlen, then data_size bytes
 * compared most significant bit first. Lookup returns the entry with the
 * longest prefix matching the key (up to the key's prefixlen); update and
 * delete act on the exact prefix; get_next_key walks in the kernel's
 * postorder (more specific prefixes first).
 *
 * Writers hold lock 0 and make the trie's sequence counter odd while they
 * change it; lock-free readers retry when it moved (a seqlock), so a reader
 * never follows a half-made change. Crash safety: node states say what
 * each node is (FREE, NEW, LIVE entry, IM intermediate); an entry becomes
 * LIVE before it is linked and stops being LIVE before it is unlinked. A
 * writer killed anywhere leaves the lock owner-dead and the counter odd:
 * the repair pass rebuilds the trie from the LIVE nodes (the newest of two
 * with the same prefix wins: a replace that was cut short) and puts every
 * other node on the free list. Readers that see the counter odd for long
 * take the lock, which runs that repair.
 */
#include "internal.h"

#define LPM_FLAGS \
    (BPF_F_NO_PREALLOC | BPF_F_NUMA_NODE | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
#define LPM_DATA_MAX 256u
#define LPM_VAL_MAX ((4u << 20) - LPM_DATA_MAX - 40u) /* KMALLOC_MAX_SIZE - data - node */
#define MAX_PLEN (8u * LPM_DATA_MAX)
#define READ_RETRIES 64

enum { TN_FREE, TN_NEW, TN_LIVE, TN_IM };

struct tnode {
    _Atomic uint32_t child[2]; /* node index or NIL */
    _Atomic uint32_t prefixlen;
    _Atomic uint32_t state; /* TN_* */
    uint64_t stamp;         /* insert sequence (LIVE nodes) */
    uint32_t free_next;
    uint32_t pad;
    /* data[ROUND8(data_size)], value[ROUND8(value_size)] */
};

static int lpm_check(const struct bpfg_map_spec *s)
{
    if (s->max_entries == 0 || !(s->map_flags & BPF_F_NO_PREALLOC) || (s->map_flags & ~LPM_FLAGS) ||
        (s->map_flags & BPF_F_RDONLY && s->map_flags & BPF_F_WRONLY) ||
        (s->map_flags & BPF_F_RDONLY_PROG && s->map_flags & BPF_F_WRONLY_PROG) || s->key_size < 5 ||
        s->key_size > 4 + LPM_DATA_MAX || s->value_size < 1 || s->value_size > LPM_VAL_MAX)
        return -EINVAL;
    uint64_t elem = sizeof(struct tnode) + ROUND8(s->key_size - 4) + ROUND8(s->value_size);
    if (s->max_entries > (UINT32_MAX - 1) / 2 || elem * (2ull * s->max_entries + 1) > (1ull << 38))
        return -E2BIG;
    return 0;
}

/* Nodes: every entry and intermediate node (at most 2 * max_entries - 1)
 * plus the two an update takes before it knows whether it needs them. */
static void lpm_layout(const struct bpfg_map_spec *s, struct layout *lo)
{
    lo->n_locks = 1;
    lo->locks_off = HDR_SIZE;
    lo->n_elems = 2 * s->max_entries + 1;
    lo->elem_size = (uint32_t)(sizeof(struct tnode) + ROUND8(s->key_size - 4) + ROUND8(s->value_size));
    lo->data_off = ROUNDUP(lo->locks_off + 2ull * LOCK_STRIDE, 64);
    lo->data_size = (uint64_t)lo->n_elems * lo->elem_size;
    lo->region_size = ROUNDUP(lo->data_off + lo->data_size, REGION_PAGE);
}

static void lpm_init(struct bpfg_map *m)
{
    atomic_store(&m->st->t_root, NIL);
    atomic_store(&m->st->t_free, NIL);
    atomic_store(&m->st->t_bump, 0);
    atomic_store(&m->st->t_seq, 0);
    atomic_store(&m->st->count, 0);
}

static inline struct tnode *N(struct bpfg_map *m, uint32_t i)
{
    return (struct tnode *)(m->data + (uint64_t)i * m->elem_size);
}

static inline uint8_t *ndata(struct tnode *n)
{
    return (uint8_t *)(n + 1);
}

static inline uint8_t *nval(struct bpfg_map *m, struct tnode *n)
{
    return (uint8_t *)(n + 1) + ROUND8(m->key_size - 4);
}

static inline uint32_t max_plen(const struct bpfg_map *m)
{
    return 8 * (m->key_size - 4);
}

static inline uint32_t extract_bit(const uint8_t *d, uint32_t i)
{
    return (d[i / 8] >> (7 - i % 8)) & 1;
}

static inline uint32_t plen_of(const struct bpfg_map *m, struct tnode *n)
{
    uint32_t p = atomic_load_explicit(&n->prefixlen, memory_order_relaxed);
    return p < max_plen(m) ? p : max_plen(m);
}

/* Leading bits the node's prefix and the key have in common, at most the
 * shorter prefix length (the kernel's longest_prefix_match). */
static uint32_t match(const struct bpfg_map *m, struct tnode *n, uint32_t plen, const uint8_t *key)
{
    uint32_t np = plen_of(m, n), limit = np < plen ? np : plen, i = 0;
    const uint8_t *d = ndata(n);
    for (; i + 64 <= limit; i += 64) {
        uint64_t a, b;
        memcpy(&a, d + i / 8, 8);
        memcpy(&b, key + i / 8, 8);
        if (a != b)
            return i + (uint32_t)__builtin_clzll(__builtin_bswap64(a ^ b));
    }
    for (; i < limit; i += 8) {
        uint32_t x = (uint32_t)(d[i / 8] ^ key[i / 8]);
        if (x) {
            uint32_t r = i + (uint32_t)__builtin_clz(x) - 24;
            return r < limit ? r : limit;
        }
    }
    return limit;
}

static inline uint32_t next_idx(struct bpfg_map *m, _Atomic uint32_t *slot, uint32_t *steps)
{
    uint32_t i = atomic_load_explicit(slot, memory_order_acquire);
    if (i != NIL && (i >= m->n_elems || ++*steps > max_plen(m) + 1))
        return NIL; /* corrupt or changing under us: the caller's check decides */
    return i;
}

/* Longest-prefix search (the kernel's trie_lookup_elem). */
static uint32_t trie_find(struct bpfg_map *m, uint32_t plen, const uint8_t *key)
{
    uint32_t steps = 0, found = NIL;
    uint32_t i = next_idx(m, &m->st->t_root, &steps);
    while (i != NIL) {
        struct tnode *n = N(m, i);
        uint32_t np = plen_of(m, n), ml = match(m, n, plen, key);
        bool live = atomic_load_explicit(&n->state, memory_order_relaxed) == TN_LIVE;
        if (ml == max_plen(m)) {
            found = live ? i : found;
            break;
        }
        if (ml < np)
            break;
        if (live)
            found = i;
        i = next_idx(m, &n->child[extract_bit(key, np)], &steps);
    }
    return found;
}

/* ---- writers: lock 0, sequence counter odd while changing ---- */

static int trie_lock(struct bpfg_map *m)
{
    int err = map_lock_checked(m, 0);
    if (err)
        return err;
    uint32_t s = atomic_load_explicit(&m->st->t_seq, memory_order_relaxed);
    atomic_store_explicit(&m->st->t_seq, (s | 1), memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    return 0;
}

static void trie_unlock(struct bpfg_map *m)
{
    uint32_t s = atomic_load_explicit(&m->st->t_seq, memory_order_relaxed);
    atomic_store_explicit(&m->st->t_seq, (s | 1) + 1, memory_order_release);
    map_unlock(m, 0);
}

static uint32_t node_alloc(struct bpfg_map *m)
{
    return map_pool_alloc(m, offsetof(struct tnode, free_next));
}

static void node_free(struct bpfg_map *m, uint32_t i)
{
    atomic_store_explicit(&N(m, i)->state, TN_FREE, memory_order_relaxed);
    map_pool_free(m, i, offsetof(struct tnode, free_next));
}

/* Room for one more entry: the kernel's trie_check_add_elem. */
static int add_check(struct bpfg_map *m, uint64_t flags)
{
    if (flags == BPF_EXIST)
        return -ENOENT;
    uint32_t c = atomic_load_explicit(&m->st->count, memory_order_relaxed);
    if (c >= m->max_entries)
        return -ENOSPC;
    atomic_store_explicit(&m->st->count, c + 1, memory_order_relaxed);
    return 0;
}

static inline void set_state(struct tnode *n, uint32_t s)
{
    atomic_store_explicit(&n->state, s, memory_order_relaxed);
}

static inline void link_to(_Atomic uint32_t *slot, uint32_t i)
{
    atomic_store_explicit(slot, i, memory_order_release);
}

/* Walks to where prefix (plen, key) belongs: *slot_out is the link to the
 * node found there (NIL: an empty slot), *ml its common prefix length. */
static uint32_t walk_insert(struct bpfg_map *m, uint32_t plen, const uint8_t *key, _Atomic uint32_t **slot_out,
                            uint32_t *ml)
{
    _Atomic uint32_t *slot = &m->st->t_root;
    uint32_t steps = 0, i;
    *ml = 0;
    while ((i = next_idx(m, slot, &steps)) != NIL) {
        struct tnode *n = N(m, i);
        *ml = match(m, n, plen, key);
        if (plen_of(m, n) != *ml || plen_of(m, n) == plen)
            break;
        slot = &n->child[extract_bit(key, plen_of(m, n))];
    }
    *slot_out = slot;
    return i;
}

/* Links the filled node nn (the kernel's trie_update_elem). *spare is a
 * free node for an intermediate node (used: set to NIL). Returns 0, a
 * negative errno, or 1 when repair keeps a newer entry instead of nn. */
static int trie_insert(struct bpfg_map *m, uint32_t nn, uint64_t flags, uint32_t *spare, bool repair)
{
    struct tnode *n = N(m, nn);
    const uint8_t *key = ndata(n);
    uint32_t plen = plen_of(m, n), ml, b;
    _Atomic uint32_t *slot;
    uint32_t i = walk_insert(m, plen, key, &slot, &ml);
    int err;
    atomic_store_explicit(&n->child[0], NIL, memory_order_relaxed);
    atomic_store_explicit(&n->child[1], NIL, memory_order_relaxed);
    if (i == NIL) {
        if ((err = add_check(m, flags)))
            return err;
        set_state(n, TN_LIVE);
        link_to(slot, nn);
        return 0;
    }
    struct tnode *o = N(m, i);
    if (plen_of(m, o) == ml) { /* the same prefix: replace the node */
        if (atomic_load(&o->state) == TN_LIVE) {
            if (flags == BPF_NOEXIST)
                return -EEXIST;
            if (repair && o->stamp > n->stamp)
                return 1;
        } else if ((err = add_check(m, flags))) {
            return err;
        }
        atomic_store_explicit(&n->child[0], atomic_load(&o->child[0]), memory_order_relaxed);
        atomic_store_explicit(&n->child[1], atomic_load(&o->child[1]), memory_order_relaxed);
        set_state(n, TN_LIVE);
        link_to(slot, nn);
        node_free(m, i);
        return 0;
    }
    if ((err = add_check(m, flags)))
        return err;
    if (ml == plen) { /* the new prefix covers the node */
        b = extract_bit(ndata(o), ml);
        atomic_store_explicit(&n->child[b], i, memory_order_relaxed);
        set_state(n, TN_LIVE);
        link_to(slot, nn);
        return 0;
    }
    uint32_t im = *spare != NIL ? *spare : node_alloc(m);
    if (im == NIL) {
        atomic_fetch_sub(&m->st->count, 1);
        atomic_store(&m->st->needs_repair, 1);
        return -ENOSPC;
    }
    *spare = NIL;
    struct tnode *t = N(m, im);
    set_state(t, TN_IM);
    atomic_store_explicit(&t->prefixlen, ml, memory_order_relaxed);
    memcpy(ndata(t), ndata(o), m->key_size - 4);
    b = extract_bit(key, ml);
    atomic_store_explicit(&t->child[b], nn, memory_order_relaxed);
    atomic_store_explicit(&t->child[!b], i, memory_order_relaxed);
    set_state(n, TN_LIVE);
    link_to(slot, im);
    return 0;
}

static void fill_node(struct bpfg_map *m, uint32_t i, const void *key, const void *value)
{
    struct tnode *n = N(m, i);
    uint32_t plen;
    memcpy(&plen, key, 4);
    set_state(n, TN_NEW);
    atomic_store_explicit(&n->prefixlen, plen, memory_order_relaxed);
    n->stamp = atomic_fetch_add_explicit(&m->st->t_stamp, 1, memory_order_relaxed) + 1;
    memcpy(ndata(n), (const uint8_t *)key + 4, m->key_size - 4);
    memcpy(nval(m, n), value, m->value_size);
}

static int lpm_update_once(struct bpfg_map *m, const void *key, const void *value, uint64_t flags)
{
    int err = trie_lock(m);
    if (err)
        return err;
    uint32_t nn = node_alloc(m), spare = node_alloc(m);
    /* Decided before the insert, which may use up the spare (NIL then too):
     * only a pool short of nodes means leaks to repair. */
    bool short_of_nodes = nn == NIL || spare == NIL;
    if (short_of_nodes) {
        err = -ENOMEM; /* nodes leaked by a dead writer: the caller repairs */
    } else {
        fill_node(m, nn, key, value);
        err = trie_insert(m, nn, flags, &spare, false);
        if (err)
            node_free(m, nn);
    }
    if (spare != NIL)
        node_free(m, spare);
    if (short_of_nodes)
        atomic_store(&m->st->needs_repair, 1);
    trie_unlock(m);
    return err;
}

static int lpm_update(struct bpfg_map *m, const void *key, const void *value, uint64_t flags, uint32_t cpu)
{
    (void)cpu;
    uint32_t plen;
    memcpy(&plen, key, 4);
    if (flags > BPF_EXIST || plen > max_plen(m))
        return -EINVAL;
    int err = lpm_update_once(m, key, value, flags);
    if (err == -ENOMEM && map_repair_if_needed(m) == 0)
        err = lpm_update_once(m, key, value, flags);
    return err == -ENOMEM ? -ENOSPC : err;
}

/* Unlinks entry i (the kernel's trie_delete_elem). trim: the link to i,
 * trim2: the link to its parent p. */
static void trie_unlink(struct bpfg_map *m, uint32_t i, _Atomic uint32_t *trim, uint32_t p, _Atomic uint32_t *trim2)
{
    struct tnode *n = N(m, i);
    uint32_t c0 = atomic_load(&n->child[0]), c1 = atomic_load(&n->child[1]);
    atomic_fetch_sub(&m->st->count, 1);
    if (c0 != NIL && c1 != NIL) {
        set_state(n, TN_IM);
        return;
    }
    set_state(n, TN_FREE); /* no longer an entry, before it is unlinked */
    if (p != NIL && atomic_load(&N(m, p)->state) == TN_IM && c0 == NIL && c1 == NIL) {
        struct tnode *pn = N(m, p);
        uint32_t sib = atomic_load(&pn->child[0]) == i ? atomic_load(&pn->child[1]) : atomic_load(&pn->child[0]);
        link_to(trim2, sib);
        node_free(m, p);
    } else {
        link_to(trim, c0 != NIL ? c0 : c1);
    }
    node_free(m, i);
}

static int lpm_delete(struct bpfg_map *m, const void *key)
{
    uint32_t plen, steps = 0, ml = 0, p = NIL, i;
    memcpy(&plen, key, 4);
    const uint8_t *d = (const uint8_t *)key + 4;
    if (plen > max_plen(m))
        return -EINVAL;
    int err = trie_lock(m);
    if (err)
        return err;
    _Atomic uint32_t *trim = &m->st->t_root, *trim2 = trim;
    while ((i = next_idx(m, trim, &steps)) != NIL) {
        struct tnode *n = N(m, i);
        ml = match(m, n, plen, d);
        if (plen_of(m, n) != ml || plen_of(m, n) == plen)
            break;
        p = i;
        trim2 = trim;
        trim = &n->child[extract_bit(d, plen_of(m, n))];
    }
    if (i == NIL || plen_of(m, N(m, i)) != plen || ml != plen || atomic_load(&N(m, i)->state) != TN_LIVE)
        err = -ENOENT;
    else
        trie_unlink(m, i, trim, p, trim2);
    trie_unlock(m);
    return err;
}

/* ---- readers ---- */

/* Runs find under the sequence counter; NIL and *ok false when a writer
 * kept changing the trie (or one died): the caller takes the lock. */
static uint32_t find_seq(struct bpfg_map *m, const void *key, uint32_t *seq, bool *ok)
{
    uint32_t plen;
    memcpy(&plen, key, 4);
    for (int t = 0; t < READ_RETRIES; t++) {
        uint32_t s = atomic_load_explicit(&m->st->t_seq, memory_order_acquire);
        if (s & 1) {
            __builtin_ia32_pause();
            continue;
        }
        uint32_t i = trie_find(m, plen, (const uint8_t *)key + 4);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&m->st->t_seq, memory_order_relaxed) == s) {
            *seq = s;
            *ok = true;
            return i;
        }
    }
    *ok = false;
    return NIL;
}

static uint32_t find_locked(struct bpfg_map *m, const void *key, int *err)
{
    uint32_t plen;
    memcpy(&plen, key, 4);
    if ((*err = map_lock_checked(m, 0)))
        return NIL;
    return trie_find(m, plen, (const uint8_t *)key + 4);
}

static void *lpm_lookup(struct bpfg_map *m, const void *key)
{
    uint32_t plen, seq, i;
    bool ok;
    int err;
    memcpy(&plen, key, 4);
    if (plen > max_plen(m))
        return NULL;
    i = find_seq(m, key, &seq, &ok);
    if (!ok) {
        i = find_locked(m, key, &err);
        if (err)
            return NULL;
        map_unlock(m, 0);
    }
    return i == NIL ? NULL : nval(m, N(m, i));
}

static int lpm_lookup_copy(struct bpfg_map *m, const void *key, void *value)
{
    uint32_t plen, seq, i;
    bool ok;
    int err;
    memcpy(&plen, key, 4);
    if (plen > max_plen(m))
        return -ENOENT;
    for (int t = 0; t < 4; t++) {
        i = find_seq(m, key, &seq, &ok);
        if (!ok)
            break;
        if (i == NIL)
            return -ENOENT;
        memcpy(value, nval(m, N(m, i)), m->value_size);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&m->st->t_seq, memory_order_relaxed) == seq)
            return 0;
    }
    i = find_locked(m, key, &err);
    if (err)
        return err;
    if (i != NIL)
        memcpy(value, nval(m, N(m, i)), m->value_size);
    map_unlock(m, 0);
    return i == NIL ? -ENOENT : 0;
}

static int no_lookup_and_delete(struct bpfg_map *m, const void *key, void *value)
{
    (void)m;
    (void)key;
    (void)value;
    return -ENOTSUPP;
}

/* First entry in postorder under node i (the kernel's find_leftmost). */
static uint32_t leftmost(struct bpfg_map *m, uint32_t i)
{
    uint32_t steps = 0, found = NIL;
    while (i != NIL && i < m->n_elems && steps++ <= max_plen(m) + 1) {
        struct tnode *n = N(m, i);
        if (atomic_load(&n->state) == TN_IM) {
            i = atomic_load(&n->child[0]);
        } else {
            found = i;
            i = atomic_load(&n->child[0]);
            if (i == NIL)
                i = atomic_load(&n->child[1]);
        }
    }
    return found;
}

/* The entry after `key` in postorder, or the first when key is absent. */
static uint32_t next_entry(struct bpfg_map *m, const void *key)
{
    uint32_t root = atomic_load(&m->st->t_root), plen, path[MAX_PLEN + 2], depth = 0, i = root, ml = 0;
    if (!key || root == NIL || root >= m->n_elems)
        return root == NIL ? NIL : leftmost(m, root);
    memcpy(&plen, key, 4);
    const uint8_t *d = (const uint8_t *)key + 4;
    if (plen > max_plen(m))
        return leftmost(m, root);
    while (i != NIL && i < m->n_elems && depth <= max_plen(m)) {
        struct tnode *n = N(m, i);
        path[depth++] = i;
        ml = match(m, n, plen, d);
        if (plen_of(m, n) != ml || plen_of(m, n) == plen)
            break;
        i = atomic_load(&n->child[extract_bit(d, plen_of(m, n))]);
    }
    if (i == NIL || i >= m->n_elems || plen_of(m, N(m, i)) != plen || ml != plen ||
        atomic_load(&N(m, i)->state) != TN_LIVE)
        return leftmost(m, root);
    for (; depth > 1; depth--) {
        struct tnode *p = N(m, path[depth - 2]);
        uint32_t c1 = atomic_load(&p->child[1]);
        if (atomic_load(&p->child[0]) == path[depth - 1] && c1 != NIL)
            return leftmost(m, c1);
        if (atomic_load(&p->state) == TN_LIVE)
            return path[depth - 2];
    }
    return NIL;
}

static int lpm_get_next_key(struct bpfg_map *m, const void *key, void *next)
{
    int err = map_lock_checked(m, 0);
    if (err)
        return err;
    uint32_t i = next_entry(m, key);
    if (i != NIL) {
        struct tnode *n = N(m, i);
        uint32_t plen = atomic_load(&n->prefixlen);
        memcpy(next, &plen, 4);
        memcpy((uint8_t *)next + 4, ndata(n), m->key_size - 4);
    }
    map_unlock(m, 0);
    return i == NIL ? -ENOENT : 0;
}

/* With every lock held: rebuilds the trie from its LIVE nodes. */
static int lpm_repair(struct bpfg_map *m)
{
    uint32_t s = atomic_load(&m->st->t_seq) | 1;
    atomic_store(&m->st->t_seq, s);
    uint32_t bump = atomic_load(&m->st->t_bump);
    if (bump > m->n_elems)
        bump = m->n_elems;
    atomic_store(&m->st->t_bump, bump);
    atomic_store(&m->st->t_root, NIL);
    atomic_store(&m->st->t_free, NIL);
    atomic_store(&m->st->count, 0);
    for (uint32_t i = bump; i-- > 0;)
        if (atomic_load(&N(m, i)->state) != TN_LIVE)
            node_free(m, i);
    for (uint32_t i = 0; i < bump; i++) {
        if (atomic_load(&N(m, i)->state) != TN_LIVE)
            continue;
        uint32_t spare = NIL;
        set_state(N(m, i), TN_NEW);
        if (trie_insert(m, i, BPF_ANY, &spare, true) != 0)
            node_free(m, i); /* an older duplicate, or no room */
    }
    atomic_store(&m->st->t_seq, s + 1);
    return 0;
}

static uint64_t lpm_entries(struct bpfg_map *m)
{
    return atomic_load(&m->st->count);
}

const struct map_ops lpm_trie_ops = {
    .check = lpm_check,
    .layout = lpm_layout,
    .init = lpm_init,
    .lookup = lpm_lookup,
    .update = lpm_update,
    .delete = lpm_delete,
    .lookup_copy = lpm_lookup_copy,
    .lookup_and_delete = no_lookup_and_delete,
    .get_next_key = lpm_get_next_key,
    .repair = lpm_repair,
    .entries = lpm_entries,
};
