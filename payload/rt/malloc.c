/* An mmap-backed allocator for setup work on the payload thread (program
 * and map handles). Power-of-two size classes from 64 KiB chunks, big
 * blocks straight from mmap; one spinlock, since nothing on the hot path
 * allocates. Memory of small classes is recycled, never returned. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "rt.h"

#define HDR 16u       /* keeps 16-byte alignment */
#define MIN_SHIFT 5u  /* 32 bytes, header included */
#define MAX_SHIFT 12u /* 4096: bigger blocks get their own mmap */
#define NCLASSES (MAX_SHIFT - MIN_SHIFT + 1)
#define CHUNK (64u * 1024)
#define BIG_TAG 0xffu
#define PAGE_UP(x) (((x) + 4095u) & ~(size_t)4095u)

struct block_hdr {
    size_t size;  /* usable bytes (big: mapping length - HDR) */
    uint32_t cls; /* class index or BIG_TAG */
    uint32_t magic;
};

#define MAGIC 0x6d616c6cu

struct free_node {
    struct free_node *next;
};

static struct free_node *free_lists[NCLASSES];
static uint8_t *chunk_cur, *chunk_end;
static int heap_lock;

static void lock(void)
{
    while (__atomic_exchange_n(&heap_lock, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&heap_lock, __ATOMIC_RELAXED))
            __builtin_ia32_pause();
}

static void unlock(void)
{
    __atomic_store_n(&heap_lock, 0, __ATOMIC_RELEASE);
}

static void *raw_map(size_t len)
{
    long r = rt_sys6(SYS_mmap, 0, (long)len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (rt_is_err(r)) {
        errno = (int)-r;
        return NULL;
    }
    return (void *)r;
}

void *malloc(size_t n)
{
    if (n > (SIZE_MAX >> 1)) {
        errno = ENOMEM;
        return NULL;
    }
    size_t need = n + HDR;
    unsigned cls = 0;
    while (cls < NCLASSES && ((size_t)1 << (cls + MIN_SHIFT)) < need)
        cls++;
    struct block_hdr *h;
    if (cls == NCLASSES) {
        size_t len = PAGE_UP(need);
        h = raw_map(len);
        if (!h)
            return NULL;
        h->size = len - HDR;
        h->cls = BIG_TAG;
    } else {
        size_t bsize = (size_t)1 << (cls + MIN_SHIFT);
        lock();
        struct free_node *f = free_lists[cls];
        if (f) {
            free_lists[cls] = f->next;
            h = (struct block_hdr *)f;
        } else {
            if ((size_t)(chunk_end - chunk_cur) < bsize) {
                uint8_t *c = raw_map(CHUNK);
                if (!c) {
                    unlock();
                    return NULL;
                }
                chunk_cur = c; /* the tail of the old chunk is dropped */
                chunk_end = c + CHUNK;
            }
            h = (struct block_hdr *)chunk_cur;
            chunk_cur += bsize;
        }
        unlock();
        h->size = bsize - HDR;
        h->cls = cls;
    }
    h->magic = MAGIC;
    return (uint8_t *)h + HDR;
}

static struct block_hdr *hdr_of(void *p)
{
    return (struct block_hdr *)((uint8_t *)p - HDR);
}

void free(void *p)
{
    if (!p)
        return;
    struct block_hdr *h = hdr_of(p);
    if (h->magic != MAGIC)
        __builtin_trap(); /* a corrupt heap inside a target must not go on */
    h->magic = 0;
    if (h->cls == BIG_TAG) {
        rt_sys2(SYS_munmap, (long)h, (long)(h->size + HDR));
        return;
    }
    struct free_node *f = (struct free_node *)h;
    lock();
    f->next = free_lists[h->cls];
    free_lists[h->cls] = f;
    unlock();
}

void *calloc(size_t nmemb, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(nmemb, size, &n)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = malloc(n);
    if (p)
        memset(p, 0, n);
    return p;
}

void *realloc(void *p, size_t n)
{
    if (!p)
        return malloc(n);
    if (!n) {
        free(p);
        return NULL;
    }
    size_t have = hdr_of(p)->size;
    if (n <= have)
        return p;
    void *q = malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, have);
    free(p);
    return q;
}
