/* Tool mode, the parts that make no syscall (tool.h): the tool's fd table
 * and the writer of its perf rings. Compiled into the payload and, as is,
 * into test/payload/test_tool_*.c. */
#include <errno.h>
#include <string.h>

#include "tool.h"

/* ---- perf rings ----
 * The kernel's layout: struct perf_event_mmap_page, then a power-of-two
 * data area the records wrap around in; the writer owns data_head, the
 * reader data_tail. Records are 8-byte aligned, so a header never wraps. */

#define ROUND8(x) (((x) + 7u) & ~7u)

struct sample_hdr {
    struct perf_event_header h;
    uint32_t raw_size;
};

struct lost_rec {
    struct perf_event_header h;
    uint64_t id;
    uint64_t lost;
};

int tool_perf_ring_init(struct tool_perf_ring *r, void *base, uint64_t len, uint64_t page_size)
{
    uint64_t size = len - page_size;
    if (len <= page_size || (size & (size - 1)) || size % page_size)
        return -EINVAL;
    struct perf_event_mmap_page *p = base;
    memset(p, 0, sizeof(*p));
    p->version = 0;
    p->compat_version = 0;
    p->data_offset = page_size;
    p->data_size = size;
    r->page = p;
    r->data = (uint8_t *)base + page_size;
    r->size = size;
    r->lost = 0;
    return 0;
}

static void ring_put(struct tool_perf_ring *r, uint64_t pos, const void *src, size_t n)
{
    uint64_t off = pos & (r->size - 1);
    size_t first = n < r->size - off ? n : (size_t)(r->size - off);
    memcpy(r->data + off, src, first);
    if (n > first)
        memcpy(r->data, (const uint8_t *)src + first, n - first);
}

static void ring_zero(struct tool_perf_ring *r, uint64_t pos, size_t n)
{
    static const uint8_t zeros[8];
    if (n)
        ring_put(r, pos, zeros, n);
}

/* Free bytes; a data_tail the tool scribbled on reads as "full". */
static uint64_t ring_room(const struct tool_perf_ring *r, uint64_t head)
{
    uint64_t tail = __atomic_load_n(&r->page->data_tail, __ATOMIC_ACQUIRE);
    uint64_t used = head - tail;
    return used > r->size ? 0 : r->size - used;
}

bool tool_perf_flush_lost(struct tool_perf_ring *r)
{
    if (!r->lost)
        return true;
    uint64_t head = r->page->data_head; /* ours alone */
    struct lost_rec rec = {.h = {.type = PERF_RECORD_LOST, .misc = 0, .size = sizeof(rec)}, .id = 0, .lost = r->lost};
    if (ring_room(r, head) < sizeof(rec))
        return false;
    ring_put(r, head, &rec, sizeof(rec));
    __atomic_store_n(&r->page->data_head, head + sizeof(rec), __ATOMIC_RELEASE);
    r->lost = 0;
    return true;
}

int tool_perf_write_sample(struct tool_perf_ring *r, const void *raw, uint32_t size)
{
    /* the kernel counts the padding in the raw size */
    uint64_t raw_size = ROUND8((uint64_t)size + 4) - 4;
    uint64_t rec = sizeof(struct perf_event_header) + 4 + raw_size;
    if (!tool_perf_flush_lost(r) || rec > 0xffff) {
        r->lost++;
        return -ENOSPC;
    }
    uint64_t head = r->page->data_head;
    if (ring_room(r, head) < rec) {
        r->lost++;
        return -ENOSPC;
    }
    struct sample_hdr h = {.h = {.type = PERF_RECORD_SAMPLE, .misc = PERF_RECORD_MISC_USER, .size = (uint16_t)rec},
                           .raw_size = (uint32_t)raw_size};
    ring_put(r, head, &h, sizeof(h));
    ring_put(r, head + sizeof(h), raw, size);
    ring_zero(r, head + sizeof(h) + size, (size_t)(raw_size - size));
    __atomic_store_n(&r->page->data_head, head + rec, __ATOMIC_RELEASE);
    return 0;
}

/* A kernel ring's bytes at pos, n of them, wrapping. */
static void ring_get(const struct tool_perf_ring *r, uint64_t pos, void *dst, size_t n)
{
    uint64_t off = pos & (r->size - 1);
    size_t first = n < r->size - off ? n : (size_t)(r->size - off);
    memcpy(dst, r->data + off, first);
    if (n > first)
        memcpy((uint8_t *)dst + first, r->data, n - first);
}

void tool_perf_copy(struct tool_perf_ring *dst, struct tool_perf_ring *src)
{
    static uint8_t raw[0x10000]; /* one record; callers hold the fd table lock */
    uint64_t tail = src->page->data_tail, head = __atomic_load_n(&src->page->data_head, __ATOMIC_ACQUIRE);
    while (head - tail >= sizeof(struct perf_event_header)) {
        struct sample_hdr h;
        ring_get(src, tail, &h.h, sizeof(h.h));
        if (h.h.size < sizeof(h.h) || h.h.size > head - tail)
            break;
        if (h.h.type == PERF_RECORD_SAMPLE && h.h.size >= sizeof(h)) {
            ring_get(src, tail, &h, sizeof(h));
            uint32_t n = h.raw_size <= h.h.size - sizeof(h) ? h.raw_size : (uint32_t)(h.h.size - sizeof(h));
            ring_get(src, tail + sizeof(h), raw, n);
            tool_perf_write_sample(dst, raw, n);
        } else if (h.h.type == PERF_RECORD_LOST && h.h.size >= sizeof(struct lost_rec)) {
            struct lost_rec l;
            ring_get(src, tail, &l, sizeof(l));
            dst->lost += l.lost;
        }
        tail += h.h.size;
    }
    __atomic_store_n(&src->page->data_tail, tail, __ATOMIC_RELEASE);
}

bool tool_perf_pending(const struct tool_perf_ring *r)
{
    if (!r->page)
        return false;
    return __atomic_load_n(&r->page->data_head, __ATOMIC_ACQUIRE) !=
           __atomic_load_n(&r->page->data_tail, __ATOMIC_ACQUIRE);
}

/* ---- fd table ----
 * One spinlock: every critical section is a few memory operations (no
 * syscall, nothing that could re-enter the SIGSYS handler). Slots are
 * read without it for the "is it ours" test on every intercepted call. */

static struct tool_file *files[TOOL_MAX_FDS];
static int fdt_spin;

void tool_fdt_lock(void)
{
    while (__atomic_exchange_n(&fdt_spin, 1, __ATOMIC_ACQUIRE))
        while (__atomic_load_n(&fdt_spin, __ATOMIC_RELAXED))
            __builtin_ia32_pause();
}

void tool_fdt_unlock(void)
{
    __atomic_store_n(&fdt_spin, 0, __ATOMIC_RELEASE);
}

struct tool_file *tool_fdt_peek(int fd)
{
    if ((unsigned)fd >= TOOL_MAX_FDS)
        return NULL;
    return __atomic_load_n(&files[fd], __ATOMIC_RELAXED);
}

struct tool_file *tool_fdt_get(int fd)
{
    if ((unsigned)fd >= TOOL_MAX_FDS)
        return NULL;
    tool_fdt_lock();
    struct tool_file *f = files[fd];
    if (f)
        f->refs++;
    tool_fdt_unlock();
    return f;
}

void tool_fdt_ref(struct tool_file *f)
{
    tool_fdt_lock();
    f->refs++;
    tool_fdt_unlock();
}

bool tool_fdt_put(struct tool_file *f)
{
    if (!f)
        return false;
    tool_fdt_lock();
    bool last = --f->refs == 0;
    tool_fdt_unlock();
    return last;
}

int tool_fdt_install(int fd, struct tool_file *f, struct tool_file **old)
{
    *old = NULL;
    if ((unsigned)fd >= TOOL_MAX_FDS)
        return -EMFILE;
    tool_fdt_lock();
    *old = files[fd];
    __atomic_store_n(&files[fd], f, __ATOMIC_RELEASE);
    tool_fdt_unlock();
    return 0;
}

struct tool_file *tool_fdt_remove(int fd)
{
    if ((unsigned)fd >= TOOL_MAX_FDS)
        return NULL;
    tool_fdt_lock();
    struct tool_file *f = files[fd];
    __atomic_store_n(&files[fd], NULL, __ATOMIC_RELEASE);
    tool_fdt_unlock();
    return f;
}
