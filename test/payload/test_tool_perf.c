/* Tool mode's perf ring writer (payload/tool_core.c) against a reader that
 * walks the ring exactly like libbpf's perf_buffer (perf_event_read_simple
 * and __perf_buffer__process_record): wrap-around, lost records, and a
 * concurrent reader. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "tool.h"

#define PAGE 4096ul

/* libbpf's record views */
struct perf_sample_raw {
    struct perf_event_header header;
    uint32_t size;
    char data[];
};

struct perf_sample_lost {
    struct perf_event_header header;
    uint64_t id;
    uint64_t lost;
    uint64_t sample_id;
};

struct seen {
    uint32_t samples;
    uint64_t lost;
    uint32_t next_seq; /* expected sequence number in the next sample */
    uint32_t bad;      /* samples whose payload did not check out */
    uint32_t last_raw_size;
    uint8_t last[256];
};

/* A sample's payload: u32 seq, then (size - 4) bytes of seq * 7 + i. */
static uint32_t fill(uint8_t *buf, uint32_t seq, uint32_t size)
{
    memcpy(buf, &seq, 4);
    for (uint32_t i = 4; i < size; i++)
        buf[i] = (uint8_t)(seq * 7 + i);
    return size;
}

static uint32_t size_of(uint32_t seq)
{
    return 4 + (seq * 13) % 200; /* 4..203 bytes, every alignment */
}

static void on_record(struct perf_event_header *e, struct seen *s)
{
    if (e->type == PERF_RECORD_SAMPLE) {
        struct perf_sample_raw *r = (struct perf_sample_raw *)e;
        uint32_t seq;
        memcpy(&seq, r->data, 4);
        uint32_t want = size_of(seq);
        /* the kernel's raw size includes the padding to 8 bytes */
        bool ok = r->size == ((want + 4 + 7) & ~7u) - 4 && e->size == 8 + 4 + r->size &&
                  e->misc == PERF_RECORD_MISC_USER && seq == s->next_seq;
        for (uint32_t i = 4; ok && i < want; i++)
            ok = (uint8_t)r->data[i] == (uint8_t)(seq * 7 + i);
        for (uint32_t i = want; ok && i < r->size; i++)
            ok = r->data[i] == 0;
        if (!ok)
            s->bad++;
        s->samples++;
        s->next_seq = seq + 1;
        s->last_raw_size = r->size;
        memcpy(s->last, r->data, r->size < sizeof(s->last) ? r->size : sizeof(s->last));
    } else if (e->type == PERF_RECORD_LOST) {
        struct perf_sample_lost *l = (struct perf_sample_lost *)e;
        if (e->size != 24)
            s->bad++;
        s->lost += l->lost;
    } else {
        s->bad++;
    }
}

/* libbpf's perf_event_read_simple: records that wrap are copied out. */
static void read_ring(void *mmap_mem, size_t mmap_size, size_t page_size, struct seen *s)
{
    struct perf_event_mmap_page *header = mmap_mem;
    uint64_t data_head = __atomic_load_n(&header->data_head, __ATOMIC_ACQUIRE);
    uint64_t data_tail = header->data_tail;
    uint8_t *base = (uint8_t *)header + page_size;
    static uint8_t copy[65536];
    while (data_head != data_tail) {
        struct perf_event_header *ehdr = (void *)(base + (data_tail & (mmap_size - 1)));
        size_t ehdr_size = ehdr->size;
        if ((uint8_t *)ehdr + ehdr_size > base + mmap_size) {
            size_t len_first = (size_t)(base + mmap_size - (uint8_t *)ehdr);
            memcpy(copy, ehdr, len_first);
            memcpy(copy + len_first, base, ehdr_size - len_first);
            ehdr = (void *)copy;
        }
        on_record(ehdr, s);
        data_tail += ehdr_size;
    }
    __atomic_store_n(&header->data_tail, data_tail, __ATOMIC_RELEASE);
}

static void *new_ring(struct tool_perf_ring *r, size_t data_pages)
{
    size_t len = PAGE * (1 + data_pages);
    void *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(mem, MAP_FAILED);
    memset(mem, 0xa5, len); /* init must not rely on zeroed memory */
    cr_assert_eq(tool_perf_ring_init(r, mem, len, PAGE), 0);
    return mem;
}

Test(tool_perf, init_header)
{
    struct tool_perf_ring r;
    void *mem = new_ring(&r, 2);
    struct perf_event_mmap_page *p = mem;
    cr_assert_eq(p->data_offset, PAGE);
    cr_assert_eq(p->data_size, 2 * PAGE);
    cr_assert_eq(p->data_head, 0);
    cr_assert_eq(p->data_tail, 0);
    cr_assert_not(tool_perf_pending(&r));
    uint8_t buf[PAGE * 4];
    cr_assert_eq(tool_perf_ring_init(&r, buf, PAGE * 4, PAGE), -EINVAL, "3 data pages is not a power of two");
    cr_assert_eq(tool_perf_ring_init(&r, buf, PAGE, PAGE), -EINVAL, "no data page");
    cr_assert_eq(tool_perf_ring_init(&r, buf, PAGE + 2048, PAGE), -EINVAL, "partial page");
    munmap(mem, 3 * PAGE);
}

Test(tool_perf, one_sample_kernel_format)
{
    struct tool_perf_ring r;
    void *mem = new_ring(&r, 1);
    cr_assert_eq(tool_perf_write_sample(&r, "hello", 5), 0);
    cr_assert(tool_perf_pending(&r));
    struct perf_event_mmap_page *p = mem;
    cr_assert_eq(p->data_head, 24, "8 header + 4 size + 5 data padded to 12");
    struct perf_sample_raw *s = (void *)((uint8_t *)mem + PAGE);
    cr_assert_eq(s->header.type, PERF_RECORD_SAMPLE);
    cr_assert_eq(s->header.size, 24);
    cr_assert_eq(s->size, 12);
    cr_assert_eq(memcmp(s->data, "hello\0\0\0\0\0\0\0", 12), 0);
    /* an exactly aligned payload gets no padding */
    cr_assert_eq(tool_perf_write_sample(&r, "abcd", 4), 0);
    cr_assert_eq(p->data_head, 24 + 16);
    munmap(mem, 2 * PAGE);
}

Test(tool_perf, wraparound_in_order)
{
    struct tool_perf_ring r;
    void *mem = new_ring(&r, 1); /* 4 KiB of data: wraps every ~30 records */
    struct seen s = {0};
    uint8_t buf[256];
    uint32_t seq = 0;
    for (int round = 0; round < 2000; round++) {
        /* write a burst that fits, then read it all */
        for (int k = 0; k < 1 + round % 17; k++) {
            uint32_t n = fill(buf, seq, size_of(seq));
            cr_assert_eq(tool_perf_write_sample(&r, buf, n), 0, "record %u must fit", seq);
            seq++;
        }
        read_ring(mem, PAGE, PAGE, &s);
    }
    cr_assert_eq(s.bad, 0);
    cr_assert_eq(s.samples, seq);
    cr_assert_eq(s.lost, 0);
    struct perf_event_mmap_page *p = mem;
    cr_assert_gt(p->data_head, 100 * PAGE, "the ring wrapped many times");
    munmap(mem, 2 * PAGE);
}

Test(tool_perf, full_ring_counts_lost_then_reports)
{
    struct tool_perf_ring r;
    void *mem = new_ring(&r, 1);
    struct perf_event_mmap_page *p = mem;
    uint8_t buf[256] = {0};
    /* 36 records of 112 bytes, then 4 of 16: exactly 4096 bytes */
    for (int i = 0; i < 36; i++)
        cr_assert_eq(tool_perf_write_sample(&r, buf, 100), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(tool_perf_write_sample(&r, buf, 4), 0);
    cr_assert_eq(p->data_head, 4096);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(tool_perf_write_sample(&r, buf, 4), -ENOSPC);
    cr_assert_eq(r.lost, 10);
    cr_assert_not(tool_perf_flush_lost(&r), "no room for the LOST record yet");
    cr_assert_eq(r.lost, 10);
    cr_assert_eq(p->data_head, 4096, "nothing written");

    struct seen s = {0};
    read_ring(mem, PAGE, PAGE, &s);
    cr_assert_eq(s.samples, 40);
    cr_assert_eq(s.lost, 0);
    /* the next sample: LOST first, then the sample */
    uint32_t seq = 1000;
    uint32_t n = fill(buf, seq, size_of(seq));
    cr_assert_eq(tool_perf_write_sample(&r, buf, n), 0);
    cr_assert_eq(r.lost, 0);
    struct perf_event_header *first = (void *)((uint8_t *)mem + PAGE + (4096 & (PAGE - 1)));
    cr_assert_eq(first->type, PERF_RECORD_LOST);
    struct seen s2 = {.next_seq = seq};
    read_ring(mem, PAGE, PAGE, &s2);
    cr_assert_eq(s2.lost, 10);
    cr_assert_eq(s2.samples, 1);
    cr_assert_eq(s2.bad, 0);
    munmap(mem, 2 * PAGE);
}

/* A loss while some room is left: the LOST record goes in as soon as it
 * fits, before the next sample (as in the kernel). */
Test(tool_perf, lost_record_uses_leftover_room)
{
    struct tool_perf_ring r;
    void *mem = new_ring(&r, 1);
    uint8_t buf[256] = {0};
    uint32_t ok = 0, dropped = 0;
    for (int i = 0; i < 50; i++) {
        if (tool_perf_write_sample(&r, buf, 100) == 0)
            ok++;
        else
            dropped++;
    }
    cr_assert_eq(ok, 36);
    struct seen s = {0};
    read_ring(mem, PAGE, PAGE, &s);
    cr_assert_eq(s.samples, 36);
    cr_assert_eq(s.lost + r.lost, dropped, "every drop is reported or pending");
    cr_assert_gt(s.lost, 0, "64 bytes were left: a LOST record fit");
    cr_assert(tool_perf_flush_lost(&r));
    read_ring(mem, PAGE, PAGE, &s);
    cr_assert_eq(s.lost, dropped);
    munmap(mem, 2 * PAGE);
}

Test(tool_perf, flush_lost_alone)
{
    struct tool_perf_ring r;
    void *mem = new_ring(&r, 1);
    r.lost = 7;
    cr_assert(tool_perf_flush_lost(&r));
    cr_assert_eq(r.lost, 0);
    cr_assert(tool_perf_pending(&r));
    struct seen s = {0};
    read_ring(mem, PAGE, PAGE, &s);
    cr_assert_eq(s.lost, 7);
    cr_assert_eq(s.samples, 0);
    cr_assert_eq(s.bad, 0);
    cr_assert_not(tool_perf_pending(&r));
    cr_assert(tool_perf_flush_lost(&r), "nothing pending is success");
    munmap(mem, 2 * PAGE);
}

Test(tool_perf, oversized_and_scribbled_tail)
{
    struct tool_perf_ring r;
    void *mem = new_ring(&r, 32); /* 128 KiB */
    static uint8_t big[70000];
    cr_assert_eq(tool_perf_write_sample(&r, big, sizeof(big)), -ENOSPC, "records are at most 64 KiB");
    cr_assert_eq(r.lost, 1);
    struct perf_event_mmap_page *p = mem;
    uint64_t head = p->data_head;
    p->data_tail = head + 12345; /* a tail ahead of head: treated as full */
    cr_assert_eq(tool_perf_write_sample(&r, "x", 1), -ENOSPC);
    cr_assert_eq(p->data_head, head, "nothing written over the reader's data");
    munmap(mem, 33 * PAGE);
}

/* One writer thread, one libbpf-style reader thread. */
struct race {
    struct tool_perf_ring r;
    void *mem;
    uint32_t total;
    volatile int done;
};

static void *writer(void *arg)
{
    struct race *rc = arg;
    uint8_t buf[256];
    uint32_t seq = 0;
    while (seq < rc->total) {
        uint32_t n = fill(buf, seq, size_of(seq));
        if (tool_perf_write_sample(&rc->r, buf, n) == 0)
            seq++;
        else
            rc->r.lost = 0; /* full: retry the same record (not a loss in this test) */
    }
    __atomic_store_n(&rc->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

Test(tool_perf, concurrent_reader)
{
    struct race rc = {.total = 200000};
    rc.mem = new_ring(&rc.r, 2);
    struct seen s = {0};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, writer, &rc), 0);
    while (!__atomic_load_n(&rc.done, __ATOMIC_ACQUIRE) || tool_perf_pending(&rc.r))
        read_ring(rc.mem, 2 * PAGE, PAGE, &s);
    pthread_join(t, NULL);
    read_ring(rc.mem, 2 * PAGE, PAGE, &s);
    cr_assert_eq(s.bad, 0);
    cr_assert_eq(s.samples, rc.total);
    munmap(rc.mem, 3 * PAGE);
}

/* A kernel event's ring (the same format: written here by the writer the
 * tests above check against libbpf's reader) emptied into the tool's ring
 * by tool_perf_copy, both wrapping at different places: every sample
 * arrives whole and in order, the kernel ring's lost count is carried
 * over, and the kernel ring's data_tail moves so it never fills up. */
Test(tool_perf, copy_from_a_kernel_ring)
{
    struct tool_perf_ring kr, tr;
    void *kmem = new_ring(&kr, 1), *tmem = new_ring(&tr, 2);
    struct seen s = {0};
    uint8_t buf[256];
    uint32_t seq = 0;
    uint64_t dropped = 0;
    for (int round = 0; round < 500; round++) {
        for (int k = 0; k < 1 + round % 47; k++) {
            uint32_t n = fill(buf, seq, size_of(seq));
            if (tool_perf_write_sample(&kr, buf, n) == 0)
                seq++;
            else
                dropped++; /* the kernel ring is full: counted, reported by its LOST record */
        }
        tool_perf_flush_lost(&kr);
        tool_perf_copy(&tr, &kr);
        cr_assert_not(tool_perf_pending(&kr), "the kernel ring is empty after a copy");
        read_ring(tmem, 2 * PAGE, PAGE, &s);
    }
    tool_perf_flush_lost(&tr);
    read_ring(tmem, 2 * PAGE, PAGE, &s);
    cr_assert_eq(s.bad, 0);
    cr_assert_eq(s.samples, seq);
    cr_assert_gt(dropped, 0, "the bursts overflowed the kernel ring");
    cr_assert_eq(s.lost, dropped, "every loss in the kernel ring is reported in the tool's");
    cr_assert_gt(((struct perf_event_mmap_page *)kmem)->data_tail, 50 * PAGE, "the kernel ring wrapped many times");
    munmap(kmem, 2 * PAGE);
    munmap(tmem, 3 * PAGE);
}
