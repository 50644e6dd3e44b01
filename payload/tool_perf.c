/* Tool mode: perf events. perf_event_open gives placeholder fds for
 * uprobe and tracepoint events (attached by SET_BPF or LINK_CREATE) and
 * local perf rings for BPF output; their ioctls and mmaps; tracepoint ids
 * for tools that find no tracefs. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "payload.h"
#include "rt/rt.h"
#include "tool_priv.h"

#define PERF_FLAG_FD_CLOEXEC_ 8ul

static struct bpfg_pmsg_tool_mode pmu; /* PMU types from TOOL_MODE */
static uint64_t next_event_id = 1;

void perf_set_pmu(const struct bpfg_pmsg_tool_mode *tm)
{
    pmu = *tm;
}

/* ---- perf_event_open ---- */

long do_perf_open(const uint64_t a[6])
{
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof(attr));
    const void *uattr = (const void *)(uintptr_t)a[0];
    int32_t pid = (int32_t)a[1], cpu = (int32_t)a[2];
    bool cloexec = a[4] & PERF_FLAG_FD_CLOEXEC_;
    if (uread(&attr, uattr, 8))
        return -EFAULT;
    uint32_t size = attr.size ? attr.size : PERF_ATTR_SIZE_VER0;
    if (size > sizeof(attr))
        size = sizeof(attr);
    if (uread(&attr, uattr, size))
        return -EFAULT;
    char name[64];
    struct tool_file *f = NULL;

    if (attr.type == PERF_TYPE_SOFTWARE && attr.config == PERF_COUNT_SW_BPF_OUTPUT) {
        if (!(f = file_new(TK_PERF_RING)))
            return -ENOMEM;
        snprintf(name, sizeof(name), "bpfgraft-perf-ring:%d", cpu);
    } else if (pmu.uprobe_type && attr.type == pmu.uprobe_type) {
        char *path = malloc(4096); /* PATH_MAX: not on the tool's stack */
        if (!path || !(f = file_new(TK_UPROBE))) {
            free(path);
            return -ENOMEM;
        }
        f->path = path;
        if (!attr.config1 || rt_safe_read_str(path, (const void *)(uintptr_t)attr.config1, 4096) < 0) {
            file_put(f);
            return -EFAULT;
        }
        f->offset = attr.config2;
        f->retprobe = pmu.retprobe_bit < 64 && (attr.config >> pmu.retprobe_bit) & 1;
        f->ref_ctr_offset = attr.config >> 32;
        snprintf(name, sizeof(name), "bpfgraft-uprobe");
    } else if (attr.type == PERF_TYPE_SOFTWARE &&
               (attr.config == PERF_COUNT_SW_CPU_CLOCK || attr.config == PERF_COUNT_SW_TASK_CLOCK)) {
        /* bpftrace's interval: one event on cpu 0, a timer; sampling on
         * every cpu (profile:) interrupts threads, which needs the kernel */
        uint64_t period = attr.freq ? (attr.sample_freq ? 1000000000ull / attr.sample_freq : 0) : attr.sample_period;
        if (cpu > 0 || pid > 0 || !period) {
            say("a cpu-clock event on cpu %d for pid %d samples running threads, which needs the kernel's timer "
                "interrupts: bpfgraft runs timers (one event, cpu 0, pid -1: bpftrace's interval:) only",
                cpu, pid);
            return -EOPNOTSUPP;
        }
        if (!(f = file_new(TK_TIMER)))
            return -ENOMEM;
        f->offset = period;
        snprintf(name, sizeof(name), "bpfgraft-timer");
    } else if (attr.type == PERF_TYPE_TRACEPOINT) {
        if (!(f = file_new(TK_TRACEPOINT)))
            return -ENOMEM;
        f->tp_id = (uint32_t)attr.config;
        snprintf(name, sizeof(name), "bpfgraft-tracepoint");
    } else if (pmu.kprobe_type && attr.type == pmu.kprobe_type) {
        char func[128] = "?";
        if (attr.config1 && rt_safe_read_str(func, (const void *)(uintptr_t)attr.config1, sizeof(func)) < 0)
            snprintf(func, sizeof(func), "?");
        if (!attr.config1)
            snprintf(func, sizeof(func), "%#llx", (unsigned long long)attr.config2);
        say("kprobe on '%s' cannot run in userspace (kernel functions are not reachable from a process)", func);
        return -EOPNOTSUPP;
    } else {
        say("perf event type %u config %#llx cannot run in userspace (only uprobes, tracepoints and "
            "BPF output are served)",
            attr.type, (unsigned long long)attr.config);
        return -EOPNOTSUPP;
    }
    f->pid = pid;
    f->cpu = cpu;
    f->event_id = __atomic_fetch_add(&next_event_id, 1, __ATOMIC_RELAXED);
    return file_placeholder(f, name, cloexec);
}

/* ---- ioctl on our perf event fds ---- */

bool do_ioctl(const uint64_t a[6], long *ret)
{
    struct tool_file *f = tool_fdt_peek((int)a[0]);
    unsigned cmd = (unsigned)a[1];
    if (!f || _IOC_TYPE(cmd) != '$')
        return false;
    if (!(f = tool_fdt_get((int)a[0])))
        return false;
    if (f->kind != TK_UPROBE && f->kind != TK_TRACEPOINT && f->kind != TK_PERF_RING && f->kind != TK_TIMER) {
        file_put(f);
        return false;
    }
    long r;
    switch (cmd) {
    case PERF_EVENT_IOC_ENABLE:
    case PERF_EVENT_IOC_DISABLE:
    case PERF_EVENT_IOC_RESET:
    case PERF_EVENT_IOC_REFRESH: r = 0; break;
    case PERF_EVENT_IOC_ID: r = uwrite((void *)(uintptr_t)a[2], &f->event_id, 8) ? -EFAULT : 0; break;
    case PERF_EVENT_IOC_SET_BPF: {
        struct tool_file *prog = get_kind((int)a[2], TK_PROG);
        if (!prog) {
            r = -EBADF;
            break;
        }
        if (f->kind == TK_PERF_RING)
            r = -EINVAL;
        else if (f->attached)
            r = -EEXIST;
        else
            r = attach_perf(prog, f, 0);
        if (r >= 0) {
            f->link_id = (uint32_t)r; /* this perf fd owns the link */
            f->attached = true;
            r = 0;
        }
        file_put(prog);
        break;
    }
    default: r = -ENOTTY; break;
    }
    file_put(f);
    *ret = r;
    return true;
}

/* ---- mmap of perf ring fds ---- */

/* Perf ring fds: sized by the first mmap, which also sets up our own
 * mapping and the header page. */
long mmap_perf_ring(struct tool_file *f, const uint64_t a[6])
{
    uint64_t len = a[1];
    uint64_t data = len - PAGE;
    if (a[5] != 0 || len <= PAGE || (data & (data - 1)) || data % PAGE)
        return -EINVAL;
    tool_fdt_lock();
    bool have = f->ring_map != NULL;
    size_t have_len = f->ring_len;
    tool_fdt_unlock();
    if (have && have_len != len)
        return -EINVAL;
    if (!have) {
        long r = rt_sys2(SYS_ftruncate, (long)a[4], (long)len);
        if (rt_is_err(r))
            return r;
        long own = rt_sys6(SYS_mmap, 0, (long)len, PROT_READ | PROT_WRITE, MAP_SHARED, (long)a[4], 0);
        if (rt_is_err(own))
            return own;
        struct tool_perf_ring ring;
        tool_perf_ring_init(&ring, (void *)own, len, PAGE);
        tool_fdt_lock();
        if (!f->ring_map) {
            f->ring = ring;
            f->ring_map = (void *)own;
            f->ring_len = len;
            own = 0;
        }
        tool_fdt_unlock();
        if (own)
            rt_sys2(SYS_munmap, own, (long)len);
    }
    return rt_sys6(SYS_mmap, (long)a[0], (long)len, (long)a[2], (long)a[3], (long)a[4], 0);
}

/* ---- openat: tracepoint ids without tracefs ---- */

static bool tp_id_path(const char *p, char *out, size_t outsize)
{
    static const char *const roots[] = {"/sys/kernel/tracing/events/", "/sys/kernel/debug/tracing/events/"};
    for (size_t i = 0; i < 2; i++) {
        size_t n = strlen(roots[i]);
        if (strncmp(p, roots[i], n))
            continue;
        const char *cat = p + n, *slash = strchr(cat, '/');
        if (!slash || slash == cat)
            return false;
        const char *name = slash + 1, *end = strchr(name, '/');
        if (!end || end == name || strcmp(end, "/id"))
            return false;
        size_t len = (size_t)(end - cat);
        if (len >= outsize)
            return false;
        memcpy(out, cat, len);
        out[len] = 0;
        return true;
    }
    return false;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

long do_openat(const uint64_t a[6])
{
    char path[256], tp[200];
    bool have_path = rt_safe_read_str(path, (const void *)(uintptr_t)a[1], sizeof(path)) >= 0;
    /* libbpf's legacy kprobes (no kprobe PMU) write tracefs kprobe_events */
    if (have_path && (ends_with(path, "tracing/kprobe_events") || ends_with(path, "tracing/kprobe_profile"))) {
        say("kprobes cannot run in userspace (kernel functions are not reachable from a process): %s refused", path);
        return -EOPNOTSUPP;
    }
    long r = rt_sys4(SYS_openat, (long)a[0], (long)a[1], (long)a[2], (long)a[3]);
    if (r != -ENOENT || !have_path || !tp_id_path(path, tp, sizeof(tp)))
        return r;
    struct reply rep;
    uint32_t id;
    int err = chan_call(BPFG_TOOL_TP_ID, tp, strlen(tp) + 1, NULL, 0, &rep);
    if (err && err != -ECONNRESET && rep.body)
        say("%s", rep.body); /* e.g. a kernel tracepoint */
    if (!err)
        err = reply_id(&rep, &id);
    reply_free(&rep);
    if (err)
        return r;
    int fd = memfd("bpfgraft-tracepoint-id", a[2] & O_CLOEXEC);
    if (fd < 0)
        return fd;
    char text[16];
    int n = snprintf(text, sizeof(text), "%u\n", id);
    if (rt_sys4(SYS_pwrite64, fd, (long)text, n, 0) != n) {
        rt_sys1(SYS_close, fd);
        return -EIO;
    }
    return fd;
}
