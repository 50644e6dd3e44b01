/* BLOOM_FILTER: the kernel's bloom_filter.c, bit for bit.
 *
 * A bit array of a power of two bits (at least 64) sized like the kernel's:
 * max_entries * nr_hash_funcs * 7 / 5 bits, rounded up. Bit i of the value
 * is set by jhash2 (value_size % 4 == 0) or jhash with seed hash_seed + i,
 * masked; hash_seed is 0 with BPF_F_ZERO_SEED, so such a filter answers
 * exactly as the kernel's does, false positives included.
 *
 * No lock: push sets bits with atomic ORs, peek tests them. A pusher killed
 * midway leaves a subset of its bits set, which at worst is a false
 * positive: nothing to repair.
 */
#include "internal.h"

#define BLOOM_FLAGS \
    (BPF_F_NUMA_NODE | BPF_F_ZERO_SEED | BPF_F_RDONLY | BPF_F_WRONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY_PROG)
#define BLOOM_DEFAULT_HASHES 5
#define KMALLOC_MAX (4u << 20)

static uint32_t nr_hashes(uint64_t map_extra)
{
    return map_extra ? (uint32_t)map_extra : BLOOM_DEFAULT_HASHES;
}

static int bloom_check(const struct bpfg_map_spec *s)
{
    if (s->value_size > KMALLOC_MAX)
        return -E2BIG;
    if (s->key_size != 0 || s->value_size == 0 || s->max_entries == 0 || (s->map_flags & ~BLOOM_FLAGS) ||
        (s->map_flags & BPF_F_RDONLY && s->map_flags & BPF_F_WRONLY) ||
        (s->map_flags & BPF_F_RDONLY_PROG && s->map_flags & BPF_F_WRONLY_PROG) || (s->map_extra & ~0xfull))
        return -EINVAL;
    return 0;
}

/* Bytes of the bit array: the kernel's computation. */
static uint64_t bitset_bytes(const struct bpfg_map_spec *s)
{
    uint64_t bits = (uint64_t)s->max_entries * nr_hashes(s->map_extra);
    if (bits > UINT32_MAX || (bits / 5) * 7 > UINT32_MAX || (bits / 5) * 7 > (1ull << 31))
        return 1ull << 29; /* 2^32 bits */
    bits = (bits / 5) * 7;
    uint64_t n = 64;
    while (n < bits)
        n <<= 1;
    return n / 8;
}

static void bloom_layout(const struct bpfg_map_spec *s, struct layout *lo)
{
    lo->n_locks = 0;
    lo->locks_off = HDR_SIZE;
    lo->n_buckets = nr_hashes(s->map_extra);
    lo->data_off = HDR_SIZE;
    lo->data_size = bitset_bytes(s);
    lo->n_elems = (uint32_t)(lo->data_size * 8 - 1); /* the bit mask */
    lo->region_size = ROUNDUP(lo->data_off + lo->data_size, REGION_PAGE);
}

static inline uint32_t rol32(uint32_t w, unsigned s)
{
    return (w << s) | (w >> (32 - s));
}

#define JHASH_INITVAL 0xdeadbeefu
#define JMIX(a, b, c)                                                                                           \
    do {                                                                                                        \
        a -= c, a ^= rol32(c, 4), c += b, b -= a, b ^= rol32(a, 6), a += c, c -= b, c ^= rol32(b, 8), b += a;   \
        a -= c, a ^= rol32(c, 16), c += b, b -= a, b ^= rol32(a, 19), a += c, c -= b, c ^= rol32(b, 4), b += a; \
    } while (0)
#define JFINAL(a, b, c)                                                                                             \
    do {                                                                                                            \
        c ^= b, c -= rol32(b, 14), a ^= c, a -= rol32(c, 11), b ^= a, b -= rol32(a, 25), c ^= b, c -= rol32(b, 16); \
        a ^= c, a -= rol32(c, 4), b ^= a, b -= rol32(a, 14), c ^= b, c -= rol32(b, 24);                             \
    } while (0)

static inline uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4); /* inlined in the payload too (-ffreestanding) */
    return v;
}

/* The kernel's jhash2 (length in u32 words); STACK_TRACE's hash too. */
uint32_t map_jhash2(const uint8_t *k, uint32_t words, uint32_t initval)
{
    uint32_t a, b, c;
    a = b = c = JHASH_INITVAL + (words << 2) + initval;
    for (; words > 3; words -= 3, k += 12) {
        a += get32(k), b += get32(k + 4), c += get32(k + 8);
        JMIX(a, b, c);
    }
    switch (words) {
    case 3: c += get32(k + 8); /* fallthrough */
    case 2: b += get32(k + 4); /* fallthrough */
    case 1:
        a += get32(k);
        JFINAL(a, b, c);
        break;
    default: break;
    }
    return c;
}

/* The kernel's jhash (bytes). */
static uint32_t jhash(const uint8_t *k, uint32_t len, uint32_t initval)
{
    uint32_t a, b, c;
    a = b = c = JHASH_INITVAL + len + initval;
    for (; len > 12; len -= 12, k += 12) {
        a += get32(k), b += get32(k + 4), c += get32(k + 8);
        JMIX(a, b, c);
    }
    if (!len)
        return c;
    uint8_t tail[12] = {0};
    memcpy(tail, k, len);
    a += get32(tail), b += get32(tail + 4), c += get32(tail + 8);
    JFINAL(a, b, c);
    return c;
}

static inline uint32_t bloom_bit(const struct bpfg_map *m, const void *value, uint32_t i)
{
    uint32_t h = m->value_size % 4 == 0 ? map_jhash2(value, m->value_size / 4, m->hash_seed + i)
                                        : jhash(value, m->value_size, m->hash_seed + i);
    return h & m->n_elems; /* validated at open: bits - 1 */
}

static inline _Atomic uint64_t *bloom_word(struct bpfg_map *m, uint32_t bit)
{
    return (_Atomic uint64_t *)m->data + bit / 64;
}

static int bloom_push(struct bpfg_map *m, const void *value, uint64_t flags)
{
    if (flags != BPF_ANY)
        return -EINVAL;
    for (uint32_t i = 0; i < m->n_buckets; i++) {
        uint32_t bit = bloom_bit(m, value, i);
        uint64_t b = 1ull << (bit % 64);
        if (!(atomic_load_explicit(bloom_word(m, bit), memory_order_relaxed) & b))
            atomic_fetch_or_explicit(bloom_word(m, bit), b, memory_order_relaxed);
    }
    atomic_fetch_add_explicit(&m->st->count, 1, memory_order_relaxed); /* entries: values pushed */
    return 0;
}

static uint64_t bloom_entries(struct bpfg_map *m)
{
    return atomic_load(&m->st->count);
}

/* Peek: value is the input. Pop is not a bloom filter operation. */
static int bloom_pop(struct bpfg_map *m, void *value, bool remove)
{
    if (remove)
        return -ENOTSUPP;
    for (uint32_t i = 0; i < m->n_buckets; i++) {
        uint32_t bit = bloom_bit(m, value, i);
        if (!(atomic_load_explicit(bloom_word(m, bit), memory_order_relaxed) >> (bit % 64) & 1))
            return -ENOENT;
    }
    return 0;
}

static int bloom_delete(struct bpfg_map *m, const void *key)
{
    (void)m;
    (void)key;
    return -EOPNOTSUPP;
}

static int bloom_get_next_key(struct bpfg_map *m, const void *key, void *next)
{
    (void)m;
    (void)key;
    (void)next;
    return -EOPNOTSUPP;
}

const struct map_ops bloom_ops = {
    .check = bloom_check,
    .layout = bloom_layout,
    .delete = bloom_delete,
    .get_next_key = bloom_get_next_key,
    .push = bloom_push,
    .pop = bloom_pop,
    .entries = bloom_entries,
};
