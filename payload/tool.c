/* Tool mode (payload_abi.h, "tool mode"): the BPF syscalls of an unmodified
 * libbpf tool, served inside the tool's own process.
 *
 * Everything here runs in the SIGSYS handler (or a rewritten syscall
 * site) on the tool's threads. The syscalls we make ourselves come from
 * payload text and are not dispatched again. Map element commands run
 * locally on the map regions; what needs the server (creating maps,
 * loading programs and BTF, attaching) goes over the tool channel, one
 * request at a time.
 *
 * Every fd the tool gets from us is a real fd (a map memfd from the
 * server, or a memfd placeholder named after what it stands for) so that
 * the tool's close/dup/exec handling keeps working; the fd table (tool.h)
 * says what each one is. Limits: a signal handler of the tool that calls
 * bpf() while the same thread is inside one of our calls may deadlock on
 * the channel lock (libbpf tools only set flags in signal handlers).
 *
 * This file: the entry point (tool_syscall dispatches each syscall), the
 * tool's memory and stderr, the life of a tool_file, mmap dispatch, close
 * and dup. The jobs live beside it, sharing tool_priv.h: tool_bpf.c
 * (bpf()), tool_perf.c (perf_event_open, its ioctls and mmaps, tracepoint
 * ids), tool_events.c (the perf bridge, epoll and poll), tool_chan.c (the
 * tool channel to the server).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "fault.h"
#include "payload.h"
#include "rt/rt.h"
#include "tool_priv.h"

#define MFD_CLOEXEC_ 1u
#define CLOSE_RANGE_CLOEXEC_ 4u

volatile uint8_t tool_on;

/* ---- small helpers ---- */

/* The tool's pointers are read and written fault-safe: by fault.c's copy
 * (no syscall; EFAULT, never a crash), else by process_vm_*v. Only the
 * tool's own threads come here (Syscall User Dispatch is per thread and
 * not inherited by fork), so its pid is known once: a syscall less per
 * copy than rt_safe_read. */
static long self_pid;

static long ucopy(void *local, const void *remote, size_t len, long nr)
{
    if (!len)
        return 0;
    long f = nr == SYS_process_vm_readv ? fault_copy(local, remote, len) : fault_copy((void *)remote, local, len);
    if (f != -ENOSYS)
        return f;
    struct iovec l = {local, len}, r = {(void *)remote, len};
    long pid = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);
    if (!pid)
        return nr == SYS_process_vm_readv ? rt_safe_read(local, remote, len)
                                          : rt_safe_write((void *)remote, local, len);
    return rt_sys6(nr, pid, (long)&l, 1, (long)&r, 1, 0) == (long)len ? 0 : -EFAULT;
}

long uread(void *dst, const void *src, size_t len)
{
    return ucopy(dst, src, len, SYS_process_vm_readv);
}

long uwrite(void *dst, const void *src, size_t len)
{
    return ucopy((void *)src, dst, len, SYS_process_vm_writev);
}

/* One line on the tool's stderr. */
void say(const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "bpfgraft: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(line) - 2)
        n = (int)sizeof(line) - 2;
    while (n > 0 && line[n - 1] == '\n')
        n--;
    line[n++] = '\n';
    rt_sys3(SYS_write, 2, (long)line, n);
}

int memfd(const char *name, bool cloexec)
{
    return (int)rt_sys2(SYS_memfd_create, (long)name, cloexec ? MFD_CLOEXEC_ : 0);
}

/* ---- files ---- */

struct tool_file *file_new(uint8_t kind)
{
    struct tool_file *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->refs = 1;
    f->kind = kind;
    f->evfd = -1;
    f->kfd = -1;
    f->kevent = -1;
    f->cpu = -1;
    f->pid = -1;
    return f;
}

static struct tool_file *reap_list; /* closed maps whose regions are still mapped */

void tool_reap(void)
{
    struct tool_file *f = __atomic_exchange_n(&reap_list, NULL, __ATOMIC_ACQUIRE);
    while (f) {
        struct tool_file *next = f->reap_next;
        bpfg_map_close(f->map);
        free(f);
        f = next;
    }
}

/* The last reference is gone: tell the server, free what we hold (a
 * map's region and f itself later, tool_reap). */
static void file_destroy(struct tool_file *f)
{
    struct tool_file **rings = NULL;
    tool_fdt_lock();
    events_forget(f);
    rings = f->rings;
    f->rings = NULL;
    tool_fdt_unlock();
    /* Maps, programs and BTF stay the server's until the tool exits: no
     * RELEASE (a round trip that doubled a map's create and close). */
    switch (f->kind) {
    case TK_MAP:
        for (uint32_t i = 0; rings && i < f->max_entries; i++)
            file_put(rings[i]);
        free(rings);
        if (f->kfd >= 0)
            rt_sys1(SYS_close, f->kfd);
        if (f->krb_cons)
            rt_sys2(SYS_munmap, (long)f->krb_cons, PAGE);
        if (f->krb_prod)
            rt_sys2(SYS_munmap, (long)f->krb_prod, (long)(PAGE + 2 * (uint64_t)f->max_entries));
        break;
    case TK_PROG:
    case TK_BTF: break;
    case TK_LINK:
        chan_release(BPFG_TOOL_DETACH, BPFG_TOOL_OBJ_LINK, f->id);
        if (f->perf) {
            f->perf->attached = false;
            file_put(f->perf);
        }
        break;
    case TK_UPROBE:
    case TK_TRACEPOINT:
        chan_release(BPFG_TOOL_DETACH, BPFG_TOOL_OBJ_LINK, f->link_id);
        free(f->path);
        break;
    case TK_PERF_RING:
        if (f->ring_map)
            rt_sys2(SYS_munmap, (long)f->ring_map, (long)f->ring_len);
        if (f->kring_map)
            rt_sys2(SYS_munmap, (long)f->kring_map, (long)f->kring_len);
        if (f->kevent >= 0)
            rt_sys1(SYS_close, f->kevent);
        break;
    }
    if (f->evfd >= 0)
        rt_sys1(SYS_close, f->evfd);
    if (f->kind != TK_MAP || !f->map) {
        free(f);
        return;
    }
    f->reap_next = __atomic_load_n(&reap_list, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(&reap_list, &f->reap_next, f, true, __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
}

void file_put(struct tool_file *f)
{
    if (f && tool_fdt_put(f))
        file_destroy(f);
}

struct tool_file *get_kind(int fd, uint8_t kind)
{
    struct tool_file *f = tool_fdt_get(fd);
    if (f && f->kind != kind) {
        file_put(f);
        return NULL;
    }
    return f;
}

/* Gives the tool fd for f (its reference moves to the table). */
long file_install(int fd, struct tool_file *f)
{
    struct tool_file *old;
    int err = tool_fdt_install(fd, f, &old);
    if (err) {
        file_put(f);
        rt_sys1(SYS_close, fd);
        return err;
    }
    file_put(old); /* an fd that was closed behind our back */
    return fd;
}

/* A placeholder memfd for f (close-on-exec like every bpf fd). */
long file_placeholder(struct tool_file *f, const char *name, bool cloexec)
{
    int fd = memfd(name, cloexec);
    if (fd < 0) {
        file_put(f);
        return fd;
    }
    return file_install(fd, f);
}

/* ---- mmap ---- */

/* Map fds get the kernel's view (tool_bpf.c), perf ring fds are sized by
 * their first mmap (tool_perf.c). */
static bool do_mmap(const uint64_t a[6], long *ret)
{
    if ((a[3] & MAP_ANONYMOUS) || !tool_fdt_peek((int)a[4]))
        return false;
    struct tool_file *f = tool_fdt_get((int)a[4]);
    if (!f)
        return false;
    bool ours = true;
    if (f->kind == TK_PERF_RING)
        *ret = mmap_perf_ring(f, a);
    else if (f->kind == TK_MAP && f->map_type == BPF_MAP_TYPE_RINGBUF)
        *ret = mmap_ringbuf(f, a);
    else if (f->kind == TK_MAP && f->map_type == BPF_MAP_TYPE_ARRAY)
        *ret = mmap_array(f, a);
    else if (f->kind == TK_MAP)
        *ret = -ENOTSUPP;
    else
        ours = false;
    file_put(f);
    return ours;
}

/* ---- close and dup ---- */

static bool do_close(const uint64_t a[6], long *ret)
{
    int fd = (int)a[0];
    if (!tool_fdt_peek(fd))
        return false;
    struct tool_file *f = tool_fdt_remove(fd);
    file_put(f); /* the last fd: DETACH / RELEASE first */
    *ret = rt_sys1(SYS_close, fd);
    return true;
}

static bool do_close_range(const uint64_t a[6], long *ret)
{
    if ((unsigned)a[2] & CLOSE_RANGE_CLOEXEC_)
        return false;
    uint64_t first = (uint32_t)a[0], last = (uint32_t)a[1];
    *ret = rt_sys3(SYS_close_range, (long)a[0], (long)a[1], (long)a[2]);
    if (rt_is_err(*ret))
        return true;
    for (uint64_t fd = first; fd <= last && fd < TOOL_MAX_FDS; fd++)
        if (tool_fdt_peek((int)fd))
            file_put(tool_fdt_remove((int)fd));
    return true;
}

/* dup, dup2, dup3, fcntl(F_DUPFD[_CLOEXEC]): the new fd shares the file;
 * a file the new fd replaced loses one. */
static bool do_dup(long nr, const uint64_t a[6], long *ret)
{
    int oldfd = (int)a[0];
    bool to_fd = nr == SYS_dup2 || nr == SYS_dup3;
    int newfd = to_fd ? (int)a[1] : -1;
    if (!tool_fdt_peek(oldfd) && !(to_fd && tool_fdt_peek(newfd)))
        return false;
    long r = rt_sys3(nr, (long)a[0], (long)a[1], (long)a[2]);
    *ret = r;
    if (rt_is_err(r) || (int)r == oldfd)
        return true;
    struct tool_file *f = tool_fdt_get(oldfd), *old = NULL;
    if (tool_fdt_install((int)r, f, &old) && f) {
        file_put(f); /* beyond the table: the new fd is not tracked */
        say("fd %ld is beyond the %d fds bpfgraft tracks", r, TOOL_MAX_FDS);
    }
    file_put(old);
    return true;
}

/* ---- entry points ---- */

bool tool_syscall(long nr, const uint64_t a[6], long *ret)
{
    switch (nr) {
    case SYS_bpf: *ret = do_bpf(a); return true;
    case SYS_perf_event_open: *ret = do_perf_open(a); return true;
    case SYS_ioctl: return do_ioctl(a, ret);
    case SYS_mmap: return do_mmap(a, ret);
    case SYS_epoll_ctl: return do_epoll_ctl(a, ret);
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
    case SYS_epoll_pwait2: return do_epoll_wait(nr, a, ret);
    case SYS_poll:
    case SYS_ppoll: return do_poll(nr, a, ret);
    case SYS_openat: *ret = do_openat(a); return true;
    case SYS_close: return do_close(a, ret);
    case SYS_close_range: return do_close_range(a, ret);
    case SYS_dup:
    case SYS_dup2:
    case SYS_dup3: return do_dup(nr, a, ret);
    case SYS_fcntl:
        if (a[1] != F_DUPFD && a[1] != F_DUPFD_CLOEXEC)
            return false;
        return do_dup(nr, a, ret);
    default: return false;
    }
}

int tool_start(const struct bpfg_pmsg_tool_mode *tm, int chan_fd, char *err, size_t errlen)
{
    if (__atomic_load_n(&tool_on, __ATOMIC_ACQUIRE)) {
        snprintf(err, errlen, "tool mode is already on");
        return -EALREADY;
    }
    perf_set_pmu(tm);
    chan_open(chan_fd);
    __atomic_store_n(&self_pid, rt_sys0(SYS_getpid), __ATOMIC_RELAXED);
    int r = fault_install();
    if (r)
        say("no fault handler (%s): the tool's map calls copy through process_vm_readv", strerror(-r));
    __atomic_store_n(&tool_on, 1, __ATOMIC_RELEASE);
    return 0;
}

int tool_new_channel(int chan_fd, char *err, size_t errlen)
{
    if (!__atomic_load_n(&tool_on, __ATOMIC_ACQUIRE)) {
        snprintf(err, errlen, "TOOL_CHAN: this process is not in tool mode");
        return -EINVAL;
    }
    if (chan_fd < 0) {
        snprintf(err, errlen, "TOOL_CHAN carries no channel fd");
        return -EBADF;
    }
    long fd = rt_sys3(SYS_fcntl, chan_fd, F_DUPFD_CLOEXEC, 0);
    if (rt_is_err(fd)) {
        snprintf(err, errlen, "keeping the tool channel: %s", strerror((int)-fd));
        return (int)fd;
    }
    chan_replace((int)fd);
    return 0;
}
