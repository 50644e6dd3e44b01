/* Tool mode: the event bridge. PERF_EVENT_ARRAY records move into the
 * tool's perf rings, and ring buffer and perf ring fds are stood in for
 * in epoll by eventfds readable while the ring holds data; epoll and poll
 * waits are cut into slices to notice new data. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include "payload.h"
#include "rt/rt.h"
#include "tool_priv.h"

#define MAX_WATCH 1024
#define MAX_PERF_MAPS 64
#define EPOLL_SLICE_MS 10
#define POLLIN_ 0x001
#define POLLRDNORM_ 0x040

#define EPOLL_CTL_ADD_ 1
#define EPOLL_CTL_DEL_ 2
#define EPOLL_CTL_MOD_ 3
#define EFD_NONBLOCK_ O_NONBLOCK
#define EFD_CLOEXEC_ O_CLOEXEC

/* epoll watch list and PERF_EVENT_ARRAY maps: no references, entries are
 * removed (under the table lock) before a file is destroyed. */
static struct tool_file *watch[MAX_WATCH];
static uint32_t watch_n;
static struct tool_file *perf_maps[MAX_PERF_MAPS];
static uint32_t perf_maps_n;

static void list_del(struct tool_file **list, uint32_t cap, uint32_t *n, struct tool_file *f)
{
    for (uint32_t i = 0; i < cap; i++)
        if (list[i] == f) {
            list[i] = NULL;
            __atomic_store_n(n, *n - 1, __ATOMIC_RELAXED);
        }
}

static bool list_add(struct tool_file **list, uint32_t cap, uint32_t *n, struct tool_file *f)
{
    for (uint32_t i = 0; i < cap; i++)
        if (!list[i]) {
            list[i] = f;
            __atomic_store_n(n, *n + 1, __ATOMIC_RELAXED);
            return true;
        }
    return false;
}

bool events_add_perf_map(struct tool_file *f)
{
    return list_add(perf_maps, MAX_PERF_MAPS, &perf_maps_n, f);
}

void events_forget(struct tool_file *f)
{
    if (f->watched)
        list_del(watch, MAX_WATCH, &watch_n, f);
    if (f->kind == TK_MAP && f->map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY)
        list_del(perf_maps, MAX_PERF_MAPS, &perf_maps_n, f);
}

/* ---- the perf bridge and epoll ---- */

static struct tool_file *ring_for(struct tool_file *m, int cpu)
{
    if (cpu >= 0 && (uint32_t)cpu < m->max_entries && m->rings[cpu] && m->rings[cpu]->ring.page)
        return m->rings[cpu];
    for (uint32_t i = 0; i < m->max_entries; i++)
        if (m->rings[i] && m->rings[i]->ring.page)
            return m->rings[i];
    return NULL;
}

static void bridge_sample(void *ctx, int cpu, void *data, uint32_t size)
{
    struct tool_file *r = ring_for(ctx, cpu);
    if (r)
        tool_perf_write_sample(&r->ring, data, size);
}

static void bridge_lost(void *ctx, int cpu, uint64_t lost)
{
    struct tool_file *r = ring_for(ctx, cpu);
    if (r)
        r->ring.lost += lost;
}

/* A kernel perf array (tool_kernel.c): each slot's kernel ring into the
 * tool's. */
static void bridge_kernel(struct tool_file *m)
{
    for (uint32_t i = 0; i < m->max_entries; i++) {
        struct tool_file *r = m->rings[i];
        if (r && r->kring.page && r->ring.page)
            tool_perf_copy(&r->ring, &r->kring);
    }
}

/* Moves the records of the PERF_EVENT_ARRAY maps into the tool's perf
 * rings (table lock held: rings and maps stay while we write). A map none
 * of whose slots has a mapped ring keeps its records. */
static void bridge(void)
{
    for (uint32_t i = 0; i < MAX_PERF_MAPS; i++) {
        struct tool_file *m = perf_maps[i];
        if (m && m->rings && m->kfd >= 0)
            bridge_kernel(m);
        else if (m && m->rings && ring_for(m, 0))
            bpfg_perf_consume(m->map, bridge_sample, bridge_lost, m);
    }
}

static bool ring_has_data(struct tool_file *f)
{
    if (f->kind == TK_PERF_RING) {
        if (f->ring.page)
            tool_perf_flush_lost(&f->ring);
        return tool_perf_pending(&f->ring);
    }
    if (f->krb_cons)
        kernel_ring_drain(f);
    return f->rb_prod && __atomic_load_n(f->rb_prod, __ATOMIC_ACQUIRE) != __atomic_load_n(f->rb_cons, __ATOMIC_ACQUIRE);
}

/* Each watched ring's eventfd is readable exactly while the ring holds
 * data. Only we read or write these eventfds, so a flag says their state. */
static void refresh(void)
{
    tool_fdt_lock();
    if (__atomic_load_n(&perf_maps_n, __ATOMIC_RELAXED))
        bridge();
    for (uint32_t i = 0; i < MAX_WATCH; i++) {
        struct tool_file *f = watch[i];
        if (!f || f->evfd < 0)
            continue;
        bool data = ring_has_data(f);
        if (data && !f->signalled) {
            uint64_t one = 1;
            f->signalled = rt_sys3(SYS_write, f->evfd, (long)&one, 8) == 8;
        } else if (!data && f->signalled) {
            uint64_t v;
            rt_sys3(SYS_read, f->evfd, (long)&v, 8);
            f->signalled = false;
        }
    }
    tool_fdt_unlock();
}

bool do_epoll_ctl(const uint64_t a[6], long *ret)
{
    int op = (int)a[1], fd = (int)a[2];
    if (!tool_fdt_peek(fd))
        return false;
    struct tool_file *f = tool_fdt_get(fd);
    if (!f)
        return false;
    if (f->kind != TK_PERF_RING && !(f->kind == TK_MAP && f->map_type == BPF_MAP_TYPE_RINGBUF)) {
        file_put(f);
        return false;
    }
    if (f->evfd < 0) {
        long e = rt_sys2(SYS_eventfd2, 0, EFD_NONBLOCK_ | EFD_CLOEXEC_);
        if (rt_is_err(e)) {
            file_put(f);
            *ret = e;
            return true;
        }
        tool_fdt_lock();
        if (f->evfd < 0) {
            f->evfd = (int)e;
            e = -1;
        }
        tool_fdt_unlock();
        if (e >= 0)
            rt_sys1(SYS_close, e);
    }
    long r = rt_sys4(SYS_epoll_ctl, (long)a[0], op, f->evfd, (long)a[3]);
    if (!rt_is_err(r) && (op == EPOLL_CTL_ADD_ || op == EPOLL_CTL_MOD_)) {
        tool_fdt_lock();
        if (!f->watched)
            f->watched = list_add(watch, MAX_WATCH, &watch_n, f);
        tool_fdt_unlock();
        if (!f->watched)
            say("more than %d rings watched: data on the others will not wake epoll", MAX_WATCH);
    }
    file_put(f);
    *ret = r;
    return true;
}

/* A struct timespec timeout of the tool (epoll_pwait2, ppoll) in ns;
 * NULL: -1 (forever). 0, -EFAULT or -EINVAL as the kernel answers. */
static long user_timeout(uint64_t uts, int64_t *ns)
{
    struct timespec ts;
    if (!uts) {
        *ns = -1;
        return 0;
    }
    if (uread(&ts, (const void *)(uintptr_t)uts, sizeof(ts)))
        return -EFAULT;
    if (ts.tv_sec < 0 || ts.tv_nsec < 0 || ts.tv_nsec >= 1000000000)
        return -EINVAL;
    *ns = ts.tv_sec > 1000000000 ? INT64_MAX : ts.tv_sec * 1000000000ll + ts.tv_nsec;
    return 0;
}

/* The signal mask of a sliced wait. A signal handled between two slices
 * would be a lost wakeup (the tool's wait would go on where the kernel's
 * returns EINTR), so the tool's signals are blocked outside the slices and
 * each slice waits with the mask the tool waits with (its own, or the one
 * it passed to epoll_pwait/ppoll): they arrive only inside a slice, which
 * returns EINTR. Faults and SIGSYS are never blocked. */
struct wait_mask {
    uint64_t old, during;
};

#define SIGBIT(n) (1ull << ((n)-1))
#define NEVER_BLOCKED                                                                                         \
    (SIGBIT(SIGSYS) | SIGBIT(SIGKILL) | SIGBIT(SIGSTOP) | SIGBIT(SIGILL) | SIGBIT(SIGTRAP) | SIGBIT(SIGBUS) | \
     SIGBIT(SIGFPE) | SIGBIT(SIGSEGV))

static void wait_mask_begin(struct wait_mask *w, long user_mask, long size)
{
    uint64_t block = ~NEVER_BLOCKED;
    if (rt_is_err(rt_sys4(SYS_rt_sigprocmask, 0 /* SIG_BLOCK */, (long)&block, (long)&w->old, 8)))
        w->old = 0;
    w->during = w->old;
    if (user_mask && size == 8 && uread(&w->during, (const void *)(uintptr_t)user_mask, 8))
        w->during = w->old;
    w->during &= ~NEVER_BLOCKED;
}

static void wait_mask_end(const struct wait_mask *w)
{
    rt_sys4(SYS_rt_sigprocmask, 2 /* SIG_SETMASK */, (long)&w->old, 0, 8);
}

/* epoll_wait / epoll_pwait / epoll_pwait2 while rings are watched: the
 * wait is cut into slices of at most 10 ms, refreshing the rings' eventfds
 * (and moving perf records) before each. */
bool do_epoll_wait(long nr, const uint64_t a[6], long *ret)
{
    if (!__atomic_load_n(&watch_n, __ATOMIC_RELAXED))
        return false;
    int64_t timeout_ns;
    long sigmask = 0, sigsize = 8;
    if (nr == SYS_epoll_pwait2) {
        long e = user_timeout(a[3], &timeout_ns);
        if (e) {
            *ret = e;
            return true;
        }
    } else {
        int ms = (int)a[3];
        timeout_ns = ms < 0 ? -1 : (int64_t)ms * 1000000;
    }
    if (nr != SYS_epoll_wait) {
        sigmask = (long)a[4];
        sigsize = (long)a[5];
    }
    struct wait_mask w;
    wait_mask_begin(&w, sigmask, sigsize);
    uint64_t start = rt_clock_ns(CLOCK_MONOTONIC);
    long r;
    for (;;) {
        refresh();
        long slice = EPOLL_SLICE_MS;
        if (timeout_ns >= 0) {
            int64_t left = timeout_ns - (int64_t)(rt_clock_ns(CLOCK_MONOTONIC) - start);
            if (left < 0)
                left = 0;
            int64_t ms = (left + 999999) / 1000000;
            slice = ms < slice ? (long)ms : slice;
        }
        r = rt_sys6(SYS_epoll_pwait, (long)a[0], (long)a[1], (long)a[2], slice, (long)&w.during, 8);
        if (r != 0 || slice == 0)
            break;
        if (timeout_ns >= 0 && (int64_t)(rt_clock_ns(CLOCK_MONOTONIC) - start) >= timeout_ns)
            break;
    }
    wait_mask_end(&w);
    tool_fdt_lock();
    if (__atomic_load_n(&perf_maps_n, __ATOMIC_RELAXED))
        bridge();
    tool_fdt_unlock();
    *ret = r;
    return true;
}

/* poll / ppoll naming ring buffer or perf ring fds: a memfd always polls
 * readable, so their readiness is computed from the ring (records moved by
 * the bridge first) while the kernel polls the other fds, in slices of at
 * most EPOLL_SLICE_MS as for epoll. */
#define POLL_MAX 256

struct pollfd_ {
    int fd;
    short events, revents;
};

static bool poll_ring(int fd, bool *ready)
{
    if (fd < 0 || !tool_fdt_peek(fd))
        return false;
    struct tool_file *f = tool_fdt_get(fd);
    if (!f)
        return false;
    bool ring = f->kind == TK_PERF_RING || (f->kind == TK_MAP && f->map_type == BPF_MAP_TYPE_RINGBUF);
    if (ring) {
        tool_fdt_lock();
        *ready = ring_has_data(f);
        tool_fdt_unlock();
    }
    file_put(f);
    return ring;
}

bool do_poll(long nr, const uint64_t a[6], long *ret)
{
    uint64_t nfds = a[1];
    struct pollfd_ user[POLL_MAX], kern[POLL_MAX];
    bool ours[POLL_MAX];
    if (!nfds || nfds > POLL_MAX || uread(user, (const void *)(uintptr_t)a[0], nfds * sizeof(user[0])))
        return false; /* the kernel gives the answer (or EFAULT) */
    bool any = false, dummy;
    for (uint64_t i = 0; i < nfds; i++)
        any |= ours[i] = poll_ring(user[i].fd, &dummy);
    if (!any)
        return false;
    int64_t timeout_ns;
    long sigmask = 0, sigsize = 8;
    if (nr == SYS_poll) {
        int ms = (int)a[2];
        timeout_ns = ms < 0 ? -1 : (int64_t)ms * 1000000;
    } else {
        long e = user_timeout(a[2], &timeout_ns);
        if (e) {
            *ret = e;
            return true;
        }
        sigmask = (long)a[3];
        sigsize = (long)a[4];
    }
    struct wait_mask w;
    wait_mask_begin(&w, sigmask, sigsize);
    uint64_t start = rt_clock_ns(CLOCK_MONOTONIC);
    long r;
    for (;;) {
        tool_fdt_lock();
        if (__atomic_load_n(&perf_maps_n, __ATOMIC_RELAXED))
            bridge();
        tool_fdt_unlock();
        int ready = 0;
        for (uint64_t i = 0; i < nfds; i++) {
            kern[i] = user[i];
            kern[i].revents = 0;
            if (!ours[i])
                continue;
            bool data = false;
            poll_ring(user[i].fd, &data);
            kern[i].fd = -1; /* the kernel skips it */
            user[i].revents = data ? (short)(user[i].events & (POLLIN_ | POLLRDNORM_)) : 0;
            ready += user[i].revents != 0;
        }
        int64_t slice = ready ? 0 : EPOLL_SLICE_MS * 1000000ll;
        if (timeout_ns >= 0) {
            int64_t left = timeout_ns - (int64_t)(rt_clock_ns(CLOCK_MONOTONIC) - start);
            if (left < slice)
                slice = left < 0 ? 0 : left;
        }
        struct timespec ts = {slice / 1000000000, slice % 1000000000};
        r = rt_sys5(SYS_ppoll, (long)kern, (long)nfds, (long)&ts, (long)&w.during, 8);
        if (r < 0)
            break;
        r = ready;
        for (uint64_t i = 0; i < nfds; i++)
            if (!ours[i]) {
                user[i].revents = kern[i].revents;
                r += kern[i].revents != 0;
            }
        if (r > 0 || slice == 0)
            break;
    }
    wait_mask_end(&w);
    if (r >= 0 && uwrite((void *)(uintptr_t)a[0], user, nfds * sizeof(user[0])))
        r = -EFAULT;
    *ret = r;
    return true;
}
