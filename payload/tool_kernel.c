/* Tool mode: maps that became kernel maps (a kernel program of the tool
 * uses them: server/tool_kernel.c). The tool's fd stays ours; its bpf()
 * calls go to the kernel map, its mappings are moved onto it, and a
 * kernel PERF_EVENT_ARRAY gets a real perf event per ring, whose records
 * the bridge (tool_events.c) copies into the tool's ring. */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "payload.h"
#include "rt/rt.h"
#include "tool_priv.h"

#define KRING_PAGES 64 /* data pages of a kernel ring whose tool ring is not mapped yet */

/* ---- perf rings: a kernel event behind the tool's ---- */

static long open_kernel_event(struct tool_file *ring, uint32_t idx)
{
    struct perf_event_attr pa;
    memset(&pa, 0, sizeof(pa));
    pa.size = sizeof(pa);
    pa.type = PERF_TYPE_SOFTWARE;
    pa.config = PERF_COUNT_SW_BPF_OUTPUT;
    pa.sample_type = PERF_SAMPLE_RAW;
    pa.sample_period = 1;
    pa.wakeup_events = 1;
    int cpu = ring->cpu >= 0 ? ring->cpu : (int)idx;
    long fd = rt_sys5(SYS_perf_event_open, (long)&pa, -1, cpu, -1, 8 /* PERF_FLAG_FD_CLOEXEC */);
    if (rt_is_err(fd))
        return fd;
    size_t len = ring->ring_len ? ring->ring_len : (KRING_PAGES + 1) * PAGE;
    long m = rt_sys6(SYS_mmap, 0, (long)len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (rt_is_err(m)) {
        rt_sys1(SYS_close, fd);
        return m;
    }
    struct perf_event_mmap_page *pg = (void *)m;
    tool_fdt_lock();
    ring->kring = (struct tool_perf_ring){.page = pg, .data = (uint8_t *)m + pg->data_offset, .size = pg->data_size};
    ring->kring_map = (void *)m;
    ring->kring_len = len;
    ring->kevent = (int)fd;
    tool_fdt_unlock();
    rt_sys3(SYS_ioctl, fd, PERF_EVENT_IOC_ENABLE, 0);
    return 0;
}

/* Slot idx of kernel perf array f gets ring's kernel event. */
long kernel_perf_slot(struct tool_file *f, struct tool_file *ring, uint32_t idx)
{
    long r = ring->kevent >= 0 ? 0 : open_kernel_event(ring, idx);
    if (r)
        return r;
    union bpf_attr at;
    memset(&at, 0, sizeof(at));
    int32_t value = ring->kevent;
    at.map_fd = (uint32_t)f->kfd;
    at.key = (uint64_t)(uintptr_t)&idx;
    at.value = (uint64_t)(uintptr_t)&value;
    at.flags = BPF_ANY;
    return rt_sys3(SYS_bpf, BPF_MAP_UPDATE_ELEM, (long)&at, sizeof(at));
}

void kernel_perf_clear(struct tool_file *f, uint32_t idx)
{
    union bpf_attr at;
    memset(&at, 0, sizeof(at));
    at.map_fd = (uint32_t)f->kfd;
    at.key = (uint64_t)(uintptr_t)&idx;
    rt_sys3(SYS_bpf, BPF_MAP_DELETE_ELEM, (long)&at, sizeof(at));
}

/* ---- bpf() on a kernel map ---- */

long kernel_map_cmd(struct tool_file *f, int cmd, bool batch, union bpf_attr *at, void *uattr, uint64_t size)
{
    if (batch)
        at->batch.map_fd = (uint32_t)f->kfd;
    else
        at->map_fd = (uint32_t)f->kfd;
    long r = rt_sys3(SYS_bpf, cmd, (long)at, (long)size);
    /* the kernel tells how far a batch went in the attributes */
    if (batch && uwrite((uint8_t *)uattr + offsetof(union bpf_attr, batch.count), &at->batch.count, 4))
        r = -EFAULT;
    return r;
}

/* ---- the server says which maps are the kernel's ---- */

static void move_mapping(struct tool_file *f)
{
    if (!f->mapped)
        return;
    long r = rt_sys6(SYS_mmap, (long)f->mapped, (long)f->mapped_len, f->mapped_prot,
                     (f->mapped_flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED, f->kfd, (long)f->mapped_off);
    if (rt_is_err(r))
        say("map '%.16s': its mapping cannot move to the kernel map (%ld): the tool reads stale values", f->name, r);
}

/* ---- a kernel RINGBUF: its records moved into our region ----
 * The kernel takes no records from a process (BPF_MAP_TYPE_USER_RINGBUF
 * is the other way: a process produces, kernel programs drain), so the
 * tool keeps reading our region, which userspace programs write, and
 * what the kernel programs write is moved in at each wait. */

static long map_kernel_ring(struct tool_file *f)
{
    uint64_t size = f->max_entries;
    long cons = rt_sys6(SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, f->kfd, 0);
    if (rt_is_err(cons))
        return cons;
    long prod = rt_sys6(SYS_mmap, 0, (long)(PAGE + 2 * size), PROT_READ, MAP_SHARED, f->kfd, PAGE);
    if (rt_is_err(prod)) {
        rt_sys2(SYS_munmap, cons, PAGE);
        return prod;
    }
    tool_fdt_lock();
    f->krb_cons = (void *)cons;
    f->krb_prod = (void *)prod;
    tool_fdt_unlock();
    return 0;
}

static int to_region(void *ctx, void *data, size_t size)
{
    bpfg_ringbuf_output(ctx, data, size, 0); /* full: lost, as in a full kernel ring */
    return 0;
}

void kernel_ring_drain(struct tool_file *f)
{
    struct bpfg_ringbuf_view v = {.consumer_pos = f->krb_cons,
                                  .producer_pos = f->krb_prod,
                                  .data = (uint8_t *)f->krb_prod + PAGE,
                                  .size = f->max_entries};
    bpfg_ringbuf_consume_view(&v, to_region, f->map);
}

/* f becomes the kernel map fd: its mapping moves there, its perf slots
 * get kernel events, a ring buffer's records are moved to ours. */
static void become_kernel(struct tool_file *f, int fd)
{
    f->kfd = fd;
    if (f->map_type == BPF_MAP_TYPE_RINGBUF && map_kernel_ring(f))
        say("map '%.16s': the kernel ring buffer cannot be mapped: the kernel programs' records are lost", f->name);
    move_mapping(f);
    for (uint32_t i = 0; f->rings && i < f->max_entries; i++)
        if (f->rings[i] && kernel_perf_slot(f, f->rings[i], i))
            say("map '%.16s': perf ring %u is not in the kernel map: its records are lost", f->name, i);
}

static void sync_one(uint32_t id)
{
    for (int fd = 0; fd < TOOL_MAX_FDS; fd++) {
        struct tool_file *p = tool_fdt_peek(fd);
        if (!p || p->kind != TK_MAP || p->id != id || p->kfd >= 0)
            continue;
        struct tool_file *f = tool_fdt_get(fd);
        if (!f)
            continue;
        struct bpfg_tool_release q = {.kind = BPFG_TOOL_OBJ_MAP, .id = id};
        struct reply rep = {.fd = -1};
        if (f->kind == TK_MAP && f->kfd < 0 && chan_call(BPFG_TOOL_MAP_FD, &q, sizeof(q), NULL, 0, &rep) == 0 &&
            rep.fd >= 0) {
            become_kernel(f, rep.fd);
            rep.fd = -1;
        }
        reply_free(&rep);
        file_put(f);
        return;
    }
}

void kernel_maps_sync(void)
{
    struct reply rep;
    if (chan_call(BPFG_TOOL_KERNEL_MAPS, NULL, 0, NULL, 0, &rep) == 0)
        for (size_t i = 0; i + 4 <= rep.len; i += 4) {
            uint32_t id;
            memcpy(&id, rep.body + i, 4);
            sync_one(id);
        }
    reply_free(&rep);
}
