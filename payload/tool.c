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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/ioctl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>

#include "payload.h"
#include "rt/rt.h"
#include "tool.h"

#define PAGE 4096ul
#define MAX_INSNS 1000000u
#define MAX_WATCH 1024
#define MAX_PERF_MAPS 64
#define EPOLL_SLICE_MS 10
#define POLLIN_ 0x001
#define POLLRDNORM_ 0x040
#define ROUNDUP_PAGE(x) (((x) + PAGE - 1) & ~(PAGE - 1))

#define EPOLL_CTL_ADD_ 1
#define EPOLL_CTL_DEL_ 2
#define EPOLL_CTL_MOD_ 3
#define EFD_NONBLOCK_ O_NONBLOCK
#define EFD_CLOEXEC_ O_CLOEXEC
#define MFD_CLOEXEC_ 1u
#define PERF_FLAG_FD_CLOEXEC_ 8ul
#define CLOSE_RANGE_CLOEXEC_ 4u
#ifndef ENOTSUPP
#define ENOTSUPP 524
#endif

volatile uint8_t tool_on;

static struct bpfg_pmsg_tool_mode pmu;   /* PMU types from TOOL_MODE */
static uint64_t next_event_id = 1;

/* epoll watch list and PERF_EVENT_ARRAY maps: no references, entries are
 * removed (under the table lock) before a file is destroyed. */
static struct tool_file *watch[MAX_WATCH];
static uint32_t watch_n;
static struct tool_file *perf_maps[MAX_PERF_MAPS];
static uint32_t perf_maps_n;

/* ---- small helpers ---- */

/* The tool's pointers are read and written fault-safe (process_vm_*v:
 * EFAULT, never a crash). Only the tool's own threads come here (Syscall
 * User Dispatch is per thread and not inherited by fork), so its pid is
 * known once: a syscall less per copy than rt_safe_read. */
static long self_pid;

static long ucopy(void *local, const void *remote, size_t len, long nr)
{
    if (!len)
        return 0;
    struct iovec l = {local, len}, r = {(void *)remote, len};
    long pid = __atomic_load_n(&self_pid, __ATOMIC_RELAXED);
    if (!pid)
        return nr == SYS_process_vm_readv ? rt_safe_read(local, remote, len) : rt_safe_write((void *)remote, local, len);
    return rt_sys6(nr, pid, (long)&l, 1, (long)&r, 1, 0) == (long)len ? 0 : -EFAULT;
}

static long uread(void *dst, const void *src, size_t len)
{
    return ucopy(dst, src, len, SYS_process_vm_readv);
}

static long uwrite(void *dst, const void *src, size_t len)
{
    return ucopy((void *)src, dst, len, SYS_process_vm_writev);
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One line on the tool's stderr. */
static void say(const char *fmt, ...)
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

/* A small buffer on the stack, a big one from the heap. */
struct xbuf {
    uint8_t *p;
    uint8_t stack[256] __attribute__((aligned(8)));
};

static void *xbuf_get(struct xbuf *b, size_t n)
{
    b->p = n <= sizeof(b->stack) ? b->stack : calloc(1, n);
    return b->p;
}

static void xbuf_free(struct xbuf *b)
{
    if (b->p && b->p != b->stack)
        free(b->p);
    b->p = NULL;
}

static int memfd(const char *name, bool cloexec)
{
    return (int)rt_sys2(SYS_memfd_create, (long)name, cloexec ? MFD_CLOEXEC_ : 0);
}

/* ---- the tool channel ---- */

static int chan = -1;
static bool chan_dead;
static uint32_t chan_seq;
static uint32_t chan_word;   /* futex mutex: 0 free, 1 locked, 2 contended */

static void chan_lock(void)
{
    uint32_t c = 0;
    if (__atomic_compare_exchange_n(&chan_word, &c, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return;
    if (c != 2)
        c = __atomic_exchange_n(&chan_word, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        rt_sys4(SYS_futex, (long)&chan_word, FUTEX_WAIT_PRIVATE, 2, 0);
        c = __atomic_exchange_n(&chan_word, 2, __ATOMIC_ACQUIRE);
    }
}

static void chan_unlock(void)
{
    if (__atomic_exchange_n(&chan_word, 0, __ATOMIC_RELEASE) == 2)
        rt_sys3(SYS_futex, (long)&chan_word, FUTEX_WAKE_PRIVATE, 1);
}


/* Reads len bytes; the first read may carry an fd (SCM_RIGHTS). */
static int chan_recv(void *buf, size_t len, int *fd)
{
    uint8_t *b = buf;
    while (len) {
        union {
            struct cmsghdr c;
            char buf[CMSG_SPACE(sizeof(int) * 4)];
        } cm;
        struct iovec iov = {b, len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                            .msg_controllen = sizeof(cm.buf)};
        long n = rt_sys3(SYS_recvmsg, chan, (long)&mh, MSG_CMSG_CLOEXEC);
        if (n == -EINTR)
            continue;
        if (rt_is_err(n))
            return (int)n;
        if (n == 0)
            return -ECONNRESET;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            int nfd = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (int i = 0; i < nfd; i++) {
                int got;
                memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (fd && *fd < 0)
                    *fd = got;
                else
                    rt_sys1(SYS_close, got);
            }
        }
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

struct reply {
    int status;
    char *body;       /* NUL-terminated; NULL after a transport failure */
    size_t len;
    int fd;           /* attached fd (close-on-exec), -1 none */
};

static void reply_free(struct reply *r)
{
    free(r->body);
    if (r->fd >= 0)
        rt_sys1(SYS_close, r->fd);
    r->body = NULL;
    r->fd = -1;
}

/* Text explaining a failed reply. */
static const char *reply_text(const struct reply *r)
{
    return r->body && r->body[0] ? r->body : strerror(-r->status);
}

static int reply_id(const struct reply *r, uint32_t *id)
{
    struct bpfg_tool_id_reply idr;
    if (r->len < sizeof(idr))
        return -EPROTO;
    memcpy(&idr, r->body, sizeof(idr));
    *id = idr.id;
    return 0;
}

/* One request (body b1 then b2) and its reply. Returns rep->status. */
static int chan_call(uint16_t type, const void *b1, size_t l1, const void *b2, size_t l2, struct reply *rep)
{
    memset(rep, 0, sizeof(*rep));
    rep->fd = -1;
    chan_lock();
    int err = chan < 0 || chan_dead ? -ECONNRESET : 0;
    struct bpfg_pmsg_hdr h = {.len = (uint32_t)(sizeof(h) + l1 + l2), .type = type, .seq = ++chan_seq};
    if (!err && sizeof(h) + l1 + l2 > BPFG_PMSG_MAX)
        err = -E2BIG;
    if (!err)
        err = rt_send_all(chan, &h, sizeof(h));
    if (!err && l1)
        err = rt_send_all(chan, b1, l1);
    if (!err && l2)
        err = rt_send_all(chan, b2, l2);
    struct bpfg_pmsg_hdr rh;
    if (!err)
        err = chan_recv(&rh, sizeof(rh), &rep->fd);
    if (!err && (rh.len < sizeof(rh) || rh.len > BPFG_PMSG_MAX || rh.seq != h.seq || rh.type != BPFG_PMSG_REPLY))
        err = -EPROTO;
    if (!err) {
        rep->len = rh.len - sizeof(rh);
        rep->body = malloc(rep->len + 1);
        if (!rep->body)
            err = -ENOMEM;   /* the stream is out of step now */
        else if (!(err = chan_recv(rep->body, rep->len, NULL)))
            rep->body[rep->len] = 0;
    }
    if (err && err != -E2BIG)
        chan_dead = true;
    chan_unlock();
    if (err) {
        reply_free(rep);
        rep->len = 0;
        return rep->status = err;
    }
    rep->status = rh.status > 0 ? -EPROTO : rh.status;
    return rep->status;
}

/* RELEASE / DETACH: nothing to do about a failure. */
static void chan_release(uint16_t type, uint32_t kind, uint32_t id)
{
    struct bpfg_tool_release rel = {kind, id};
    struct reply rep;
    if (id) {
        chan_call(type, &rel, sizeof(rel), NULL, 0, &rep);
        reply_free(&rep);
    }
}

/* ---- files ---- */

static struct tool_file *file_new(uint8_t kind)
{
    struct tool_file *f = calloc(1, sizeof(*f));
    if (!f)
        return NULL;
    f->refs = 1;
    f->kind = kind;
    f->evfd = -1;
    f->cpu = -1;
    f->pid = -1;
    return f;
}

static void file_put(struct tool_file *f);

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

/* The last reference is gone: tell the server, free what we hold. */
static void file_destroy(struct tool_file *f)
{
    struct tool_file **rings = NULL;
    tool_fdt_lock();
    if (f->watched)
        list_del(watch, MAX_WATCH, &watch_n, f);
    if (f->kind == TK_MAP && f->map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY)
        list_del(perf_maps, MAX_PERF_MAPS, &perf_maps_n, f);
    rings = f->rings;
    f->rings = NULL;
    tool_fdt_unlock();
    switch (f->kind) {
    case TK_MAP:
        chan_release(BPFG_TOOL_RELEASE, BPFG_TOOL_OBJ_MAP, f->id);
        for (uint32_t i = 0; rings && i < f->max_entries; i++)
            file_put(rings[i]);
        free(rings);
        bpfg_map_close(f->map);
        break;
    case TK_PROG:
        chan_release(BPFG_TOOL_RELEASE, BPFG_TOOL_OBJ_PROG, f->id);
        break;
    case TK_BTF:
        chan_release(BPFG_TOOL_RELEASE, BPFG_TOOL_OBJ_BTF, f->id);
        break;
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
        break;
    }
    if (f->evfd >= 0)
        rt_sys1(SYS_close, f->evfd);
    free(f);
}

static void file_put(struct tool_file *f)
{
    if (f && tool_fdt_put(f))
        file_destroy(f);
}

static struct tool_file *get_kind(int fd, uint8_t kind)
{
    struct tool_file *f = tool_fdt_get(fd);
    if (f && f->kind != kind) {
        file_put(f);
        return NULL;
    }
    return f;
}

/* Gives the tool fd for f (its reference moves to the table). */
static long file_install(int fd, struct tool_file *f)
{
    struct tool_file *old;
    int err = tool_fdt_install(fd, f, &old);
    if (err) {
        file_put(f);
        rt_sys1(SYS_close, fd);
        return err;
    }
    file_put(old);   /* an fd that was closed behind our back */
    return fd;
}

/* A placeholder memfd for f (close-on-exec like every bpf fd). */
static long file_placeholder(struct tool_file *f, const char *name, bool cloexec)
{
    int fd = memfd(name, cloexec);
    if (fd < 0) {
        file_put(f);
        return fd;
    }
    return file_install(fd, f);
}

/* ---- bpf(): objects created by the server ---- */

static long bpf_map_create(const union bpf_attr *at)
{
    struct bpfg_tool_map_create req;
    memset(&req, 0, sizeof(req));
    req.map_type = at->map_type;
    req.key_size = at->key_size;
    req.value_size = at->value_size;
    req.max_entries = at->max_entries;
    req.map_flags = at->map_flags;
    req.btf_key_type_id = at->btf_key_type_id;
    req.btf_value_type_id = at->btf_value_type_id;
    req.map_extra = at->map_extra;
    memcpy(req.name, at->map_name, sizeof(req.name));
    req.name[sizeof(req.name) - 1] = 0;
    if (at->btf_key_type_id || at->btf_value_type_id || at->btf_vmlinux_value_type_id) {
        struct tool_file *b = get_kind((int)at->btf_fd, TK_BTF);
        if (!b)
            return -EBADF;
        req.btf_id = b->id;
        file_put(b);
    }
    if (at->map_type == BPF_MAP_TYPE_ARRAY_OF_MAPS || at->map_type == BPF_MAP_TYPE_HASH_OF_MAPS) {
        struct tool_file *in = get_kind((int)at->inner_map_fd, TK_MAP);
        if (!in)
            return -EBADF;
        req.inner_map_id = in->id;
        file_put(in);
    }
    struct reply rep;
    uint32_t id = 0;
    int err = chan_call(BPFG_TOOL_MAP_CREATE, &req, sizeof(req), NULL, 0, &rep);
    /* a map the tool needs (not one of libbpf's probes) that bpfgraft lacks */
    if (err && err != -ECONNRESET && rep.body && req.name[0] && strncmp(req.name, "libbpf_", 7) != 0)
        say("%s", rep.body);
    if (!err)
        err = reply_id(&rep, &id);
    if (!err && rep.fd < 0)
        err = -EPROTO;
    struct tool_file *f = err ? NULL : file_new(TK_MAP);
    if (!err && !f)
        err = -ENOMEM;
    if (!err && (err = bpfg_map_open_fd(rep.fd, &f->map)) != 0)
        say("map '%s': %s", req.name, bpfg_map_last_error());
    if (err) {
        if (id)
            chan_release(BPFG_TOOL_RELEASE, BPFG_TOOL_OBJ_MAP, id);
        free(f);
        reply_free(&rep);
        return err;
    }
    int fd = rep.fd;
    rep.fd = -1;
    reply_free(&rep);

    struct bpfg_map_info info;
    bpfg_map_get_info(f->map, &info);
    f->id = id;
    f->map_type = at->map_type;
    f->key_size = at->key_size;
    f->value_size = at->value_size;
    f->max_entries = info.max_entries;
    f->map_flags = at->map_flags;
    f->map_extra = at->map_extra;
    f->btf_id = req.btf_id;
    f->btf_key_type_id = at->btf_key_type_id;
    f->btf_value_type_id = at->btf_value_type_id;
    f->value_copy = info.value_copy_size;
    memcpy(f->name, req.name, sizeof(f->name));
    if (info.type == BPF_MAP_TYPE_RINGBUF) {
        struct bpfg_ringbuf_view v;
        if (bpfg_ringbuf_get_view(f->map, &v) == 0) {
            f->rb_cons = v.consumer_pos;
            f->rb_prod = v.producer_pos;
        }
    }
    if (info.type == BPF_MAP_TYPE_PERF_EVENT_ARRAY) {
        f->rings = calloc(f->max_entries ? f->max_entries : 1, sizeof(*f->rings));
        tool_fdt_lock();
        bool listed = f->rings && list_add(perf_maps, MAX_PERF_MAPS, &perf_maps_n, f);
        tool_fdt_unlock();
        if (!listed) {
            file_put(f);   /* releases the map */
            rt_sys1(SYS_close, fd);
            return -ENOMEM;
        }
    }
    return file_install(fd, f);
}

static bool gpl_compatible(const char *l)
{
    static const char *const ok[] = {"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
                                     "Dual MIT/GPL", "Dual MPL/GPL"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (!strcmp(l, ok[i]))
            return true;
    return false;
}

/* Copies a server message into the tool's log buffer, like the kernel's
 * verifier log (always NUL-terminated, truncated to log_size). */
static void copy_log(uint64_t ubuf, uint32_t size, const struct reply *rep)
{
    if (!ubuf || !size)
        return;
    const char *text = reply_text(rep);
    size_t n = strlen(text);
    if (n > size - 1)
        n = size - 1;
    char nul = 0;
    if (!uwrite((void *)(uintptr_t)ubuf, text, n))
        uwrite((void *)(uintptr_t)(ubuf + n), &nul, 1);
}

/* lddw map references: the tool's fds become the server's map ids. */
static int translate_insns(struct bpf_insn *insns, uint32_t cnt, uint64_t fd_array)
{
    for (uint32_t i = 0; i < cnt; i++) {
        struct bpf_insn *in = &insns[i];
        if (in->code != (BPF_LD | BPF_IMM | BPF_DW))
            continue;
        if (i + 1 >= cnt)
            return -EINVAL;
        int fd = in->imm;
        if (in->src_reg == BPF_PSEUDO_MAP_IDX || in->src_reg == BPF_PSEUDO_MAP_IDX_VALUE) {
            if (!fd_array)
                return -EINVAL;
            if (uread(&fd, (const void *)(uintptr_t)(fd_array + (uint64_t)(uint32_t)in->imm * 4), 4))
                return -EFAULT;
            in->src_reg = in->src_reg == BPF_PSEUDO_MAP_IDX ? BPF_PSEUDO_MAP_FD : BPF_PSEUDO_MAP_VALUE;
        }
        if (in->src_reg == BPF_PSEUDO_MAP_FD || in->src_reg == BPF_PSEUDO_MAP_VALUE) {
            struct tool_file *m = get_kind(fd, TK_MAP);
            if (!m)
                return -EBADF;
            in->imm = (int32_t)m->id;
            file_put(m);
        }
        i++;
    }
    return 0;
}

static long bpf_prog_load(const union bpf_attr *at)
{
    uint32_t cnt = at->insn_cnt;
    if (!cnt)
        return -EINVAL;
    if (cnt > MAX_INSNS)
        return -E2BIG;
    struct bpfg_tool_prog_load req;
    memset(&req, 0, sizeof(req));
    req.prog_type = at->prog_type;
    req.expected_attach_type = at->expected_attach_type;
    req.prog_flags = at->prog_flags;
    req.insn_cnt = cnt;
    req.kern_version = at->kern_version;
    req.attach_btf_id = at->attach_btf_id;
    req.log_level = at->log_level;
    memcpy(req.name, at->prog_name, sizeof(req.name));
    req.name[sizeof(req.name) - 1] = 0;
    if (at->license && rt_safe_read_str(req.license, (const void *)(uintptr_t)at->license,
                                        sizeof(req.license)) < 0)
        return -EFAULT;
    struct bpf_insn *insns = malloc((size_t)cnt * sizeof(*insns));
    if (!insns)
        return -ENOMEM;
    int err = uread(insns, (const void *)(uintptr_t)at->insns, (size_t)cnt * sizeof(*insns)) ? -EFAULT : 0;
    if (!err)
        err = translate_insns(insns, cnt, at->fd_array);
    struct reply rep = {.fd = -1};
    uint32_t id = 0;
    if (!err) {
        err = chan_call(BPFG_TOOL_PROG_LOAD, &req, sizeof(req), insns, (size_t)cnt * sizeof(*insns), &rep);
        if (err) {
            copy_log(at->log_buf, at->log_size, &rep);
        } else {
            err = reply_id(&rep, &id);
            /* no verifier log here: an empty one rather than stale bytes */
            char nul = 0;
            if (at->log_buf && at->log_size)
                uwrite((void *)(uintptr_t)at->log_buf, &nul, 1);
        }
    }
    free(insns);
    reply_free(&rep);
    if (err)
        return err;
    struct tool_file *f = file_new(TK_PROG);
    if (!f) {
        chan_release(BPFG_TOOL_RELEASE, BPFG_TOOL_OBJ_PROG, id);
        return -ENOMEM;
    }
    f->id = id;
    f->prog_type = at->prog_type;
    f->attach_type = at->expected_attach_type;
    f->insn_cnt = cnt;
    f->gpl = gpl_compatible(req.license);
    memcpy(f->name, req.name, sizeof(f->name));
    char name[40];
    snprintf(name, sizeof(name), "bpfgraft-prog:%s", req.name);
    return file_placeholder(f, name, true);
}

static long bpf_btf_load(const union bpf_attr *at)
{
    uint32_t size = at->btf_size;
    if (!size)
        return -EINVAL;
    if (size > BPFG_PMSG_MAX - 64)
        return -E2BIG;
    void *buf = malloc(size);
    if (!buf)
        return -ENOMEM;
    int err = uread(buf, (const void *)(uintptr_t)at->btf, size) ? -EFAULT : 0;
    struct reply rep = {.fd = -1};
    uint32_t id = 0;
    if (!err) {
        err = chan_call(BPFG_TOOL_BTF_LOAD, buf, size, NULL, 0, &rep);
        if (err)
            copy_log(at->btf_log_buf, at->btf_log_size, &rep);
        else
            err = reply_id(&rep, &id);
    }
    free(buf);
    reply_free(&rep);
    if (err)
        return err;
    struct tool_file *f = file_new(TK_BTF);
    if (!f) {
        chan_release(BPFG_TOOL_RELEASE, BPFG_TOOL_OBJ_BTF, id);
        return -ENOMEM;
    }
    f->id = id;
    f->btf_size = size;
    return file_placeholder(f, "bpfgraft-btf", true);
}

/* ---- attaching ---- */

/* TOOL_ATTACH; returns the link id or the server's errno (with its
 * message on the tool's stderr). */
static long attach(const struct tool_file *prog, uint32_t kind, int32_t pid, uint32_t tp_id, uint64_t offset,
                   uint64_t ref_ctr, const char *name)
{
    struct bpfg_tool_attach req = {
        .prog_id = prog->id, .kind = kind, .pid = pid, .tp_id = tp_id, .offset = offset, .ref_ctr_offset = ref_ctr};
    struct reply rep;
    uint32_t id = 0;
    int err = chan_call(BPFG_TOOL_ATTACH, &req, sizeof(req), name, strlen(name) + 1, &rep);
    if (err)
        say("%s", reply_text(&rep));
    else if ((err = reply_id(&rep, &id)) != 0)
        say("attach: malformed reply");
    reply_free(&rep);
    return err ? err : (long)id;
}

static long attach_perf(const struct tool_file *prog, const struct tool_file *ev)
{
    if (ev->kind == TK_UPROBE)
        return attach(prog, ev->retprobe ? BPFG_TOOL_URETPROBE : BPFG_TOOL_UPROBE, ev->pid, 0, ev->offset,
                      ev->ref_ctr_offset, ev->path ? ev->path : "");
    return attach(prog, BPFG_TOOL_TRACEPOINT, ev->pid, ev->tp_id, 0, 0, "");
}

static long new_link(uint32_t link_id, uint32_t type, const struct tool_file *prog, struct tool_file *perf)
{
    struct tool_file *l = file_new(TK_LINK);
    if (!l) {
        chan_release(BPFG_TOOL_DETACH, BPFG_TOOL_OBJ_LINK, link_id);
        file_put(perf);
        return -ENOMEM;
    }
    l->id = link_id;
    l->link_type = type;
    l->prog_id = prog->id;
    l->perf = perf;
    return file_placeholder(l, "bpfgraft-link", true);
}

static long bpf_link_create(const union bpf_attr *at)
{
    struct tool_file *prog = get_kind((int)at->link_create.prog_fd, TK_PROG);
    if (!prog)
        return -EBADF;
    long r;
    if (at->link_create.attach_type != BPF_PERF_EVENT) {
        r = -EINVAL;
        goto out;
    }
    struct tool_file *ev = tool_fdt_get((int)at->link_create.target_fd);
    if (!ev || (ev->kind != TK_UPROBE && ev->kind != TK_TRACEPOINT && ev->kind != TK_PERF_RING)) {
        file_put(ev);
        r = -EBADF;   /* libbpf's perf-link probe counts on EBADF */
        goto out;
    }
    if (ev->kind == TK_PERF_RING || ev->attached) {
        r = ev->attached ? -EEXIST : -EINVAL;
        file_put(ev);
        goto out;
    }
    r = attach_perf(prog, ev);
    if (r < 0) {
        file_put(ev);
        goto out;
    }
    ev->attached = true;
    r = new_link((uint32_t)r, BPF_LINK_TYPE_PERF_EVENT, prog, ev);   /* keeps our reference of ev */
out:
    file_put(prog);
    return r;
}

static long bpf_raw_tp_open(const union bpf_attr *at)
{
    char name[128];
    if (!at->raw_tracepoint.name) {
        say("BTF-typed tracing programs (tp_btf, fentry, fexit) cannot run in userspace");
        return -EOPNOTSUPP;
    }
    if (rt_safe_read_str(name, (const void *)(uintptr_t)at->raw_tracepoint.name, sizeof(name)) < 0)
        return -EFAULT;
    struct tool_file *prog = get_kind((int)at->raw_tracepoint.prog_fd, TK_PROG);
    if (!prog)
        return -EBADF;
    long r = attach(prog, BPFG_TOOL_RAW_TRACEPOINT, -1, 0, 0, 0, name);
    if (r >= 0)
        r = new_link((uint32_t)r, BPF_LINK_TYPE_RAW_TRACEPOINT, prog, NULL);
    file_put(prog);
    return r;
}

static long bpf_link_detach(const union bpf_attr *at)
{
    struct tool_file *l = get_kind((int)at->link_detach.link_fd, TK_LINK);
    if (!l)
        return -EINVAL;
    tool_fdt_lock();
    uint32_t id = l->id;
    struct tool_file *perf = l->perf;
    l->id = 0;
    l->perf = NULL;
    tool_fdt_unlock();
    chan_release(BPFG_TOOL_DETACH, BPFG_TOOL_OBJ_LINK, id);
    if (perf) {
        perf->attached = false;
        file_put(perf);
    }
    file_put(l);
    return 0;
}

/* ---- bpf(): map elements, on the region ---- */

static bool is_hash(uint32_t t)
{
    return t == BPF_MAP_TYPE_HASH || t == BPF_MAP_TYPE_PERCPU_HASH || t == BPF_MAP_TYPE_LRU_HASH ||
           t == BPF_MAP_TYPE_LRU_PERCPU_HASH;
}

static long map_arg(int fd, struct tool_file **out)
{
    struct tool_file *f = tool_fdt_get(fd);
    if (!f)
        return -EBADF;
    if (f->kind != TK_MAP) {
        file_put(f);
        return -EINVAL;
    }
    *out = f;
    return 0;
}

/* Reads a key (NULL when the map has none) into b. */
static long read_key(struct tool_file *f, uint64_t ukey, struct xbuf *b, void **key)
{
    *key = NULL;
    if (!f->key_size)
        return 0;
    if (!xbuf_get(b, f->key_size))
        return -ENOMEM;
    if (uread(b->p, (const void *)(uintptr_t)ukey, f->key_size))
        return -EFAULT;
    *key = b->p;
    return 0;
}

/* PERF_EVENT_ARRAY slots hold the tool's perf rings, locally. */
static long perf_array_update(struct tool_file *f, const void *key, const void *value, uint64_t flags)
{
    uint32_t idx, fd;
    memcpy(&idx, key, 4);
    memcpy(&fd, value, 4);
    if (flags != BPF_ANY)
        return -EINVAL;
    if (idx >= f->max_entries)
        return -E2BIG;
    struct tool_file *ring = tool_fdt_get((int)fd);
    if (!ring)
        return -EBADF;
    if (ring->kind != TK_PERF_RING) {
        file_put(ring);
        return -EINVAL;
    }
    tool_fdt_lock();
    struct tool_file *old = f->rings[idx];
    f->rings[idx] = ring;   /* our reference moves into the slot */
    tool_fdt_unlock();
    file_put(old);
    return 0;
}

static long perf_array_delete(struct tool_file *f, const void *key)
{
    uint32_t idx;
    memcpy(&idx, key, 4);
    if (idx >= f->max_entries)
        return -E2BIG;
    tool_fdt_lock();
    struct tool_file *old = f->rings[idx];
    f->rings[idx] = NULL;
    tool_fdt_unlock();
    if (!old)
        return -ENOENT;
    file_put(old);
    return 0;
}

/* One element update, with fd values turned into ids. */
static long elem_update(struct tool_file *f, const void *key, const void *value, uint64_t flags)
{
    uint32_t fd, id;
    switch (f->map_type) {
    case BPF_MAP_TYPE_PERF_EVENT_ARRAY:
        return perf_array_update(f, key, value, flags);
    case BPF_MAP_TYPE_PROG_ARRAY:
    case BPF_MAP_TYPE_ARRAY_OF_MAPS:
    case BPF_MAP_TYPE_HASH_OF_MAPS: {
        memcpy(&fd, value, 4);
        uint8_t kind = f->map_type == BPF_MAP_TYPE_PROG_ARRAY ? TK_PROG : TK_MAP;
        if (f->map_type == BPF_MAP_TYPE_PROG_ARRAY && flags != BPF_ANY)
            return -EINVAL;
        struct tool_file *o = tool_fdt_get((int)fd);
        if (!o)
            return -EBADF;
        id = o->id;
        bool ok = o->kind == kind;
        file_put(o);
        if (!ok)
            return -EINVAL;
        return bpfg_map_update_copy(f->map, key, &id, flags);
    }
    default:
        return bpfg_map_update_copy(f->map, key, value, flags);
    }
}

static long elem_delete(struct tool_file *f, const void *key)
{
    if (f->map_type == BPF_MAP_TYPE_PERF_EVENT_ARRAY)
        return perf_array_delete(f, key);
    return bpfg_map_delete_copy(f->map, key);
}

static long elem_next_key(struct tool_file *f, const void *key, void *next)
{
    if (f->map_type != BPF_MAP_TYPE_PERF_EVENT_ARRAY)
        return bpfg_map_get_next_key(f->map, key, next);
    /* the kernel's array order */
    uint32_t idx = 0, n;
    if (key)
        memcpy(&idx, key, 4);
    if (!key || idx >= f->max_entries)
        n = 0;
    else if (idx + 1 == f->max_entries)
        return -ENOENT;
    else
        n = idx + 1;
    memcpy(next, &n, 4);
    return 0;
}

static long bpf_map_elem(int cmd, const union bpf_attr *at)
{
    struct tool_file *f;
    long r = map_arg((int)at->map_fd, &f);
    if (r)
        return r;
    struct xbuf kb = {0}, vb = {0};
    void *key = NULL;
    uint64_t uval = at->value;   /* next_key shares the slot */
    /* FREEZE has no key; GET_NEXT_KEY's NULL key asks for the first one */
    if (cmd != BPF_MAP_FREEZE && !(cmd == BPF_MAP_GET_NEXT_KEY && !at->key))
        r = read_key(f, at->key, &kb, &key);
    if (r)
        goto out;
    switch (cmd) {
    case BPF_MAP_LOOKUP_ELEM:
    case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
        if (at->flags & ~(uint64_t)BPF_F_LOCK) {
            r = -EINVAL;
            break;
        }
        if (!xbuf_get(&vb, f->value_copy ? f->value_copy : 1)) {
            r = -ENOMEM;
            break;
        }
        r = cmd == BPF_MAP_LOOKUP_ELEM ? bpfg_map_lookup_copy(f->map, key, vb.p)
                                       : bpfg_map_lookup_and_delete_copy(f->map, key, vb.p);
        if (!r && uwrite((void *)(uintptr_t)uval, vb.p, f->value_copy))
            r = -EFAULT;
        break;
    case BPF_MAP_UPDATE_ELEM:
        if (!xbuf_get(&vb, f->value_copy ? f->value_copy : 1)) {
            r = -ENOMEM;
            break;
        }
        if (uread(vb.p, (const void *)(uintptr_t)uval, f->value_copy)) {
            r = -EFAULT;
            break;
        }
        r = elem_update(f, key, vb.p, at->flags);
        break;
    case BPF_MAP_DELETE_ELEM:
        r = elem_delete(f, key);
        break;
    case BPF_MAP_GET_NEXT_KEY:
        if (!xbuf_get(&vb, f->key_size ? f->key_size : 1)) {
            r = -ENOMEM;
            break;
        }
        r = elem_next_key(f, at->key ? key : NULL, vb.p);
        if (!r && uwrite((void *)(uintptr_t)at->next_key, vb.p, f->key_size))
            r = -EFAULT;
        break;
    case BPF_MAP_FREEZE:
        r = bpfg_map_freeze(f->map);
        break;
    }
out:
    xbuf_free(&kb);
    xbuf_free(&vb);
    file_put(f);
    return r;
}

static int write_count(void *uattr, uint32_t n)
{
    return uwrite((uint8_t *)uattr + offsetof(union bpf_attr, batch.count), &n, 4) ? -EFAULT : 0;
}

/* LOOKUP_BATCH / LOOKUP_AND_DELETE_BATCH. Arrays: the batch token is the
 * last key returned (the kernel's generic code). Hash maps: a u32 like the
 * kernel's bucket index, here the number of keys already returned (0 for
 * the deleting variant, whose returned keys are gone). */
static long lookup_batch(struct tool_file *f, const union bpf_attr *at, void *uattr, bool del)
{
    uint32_t max = at->batch.count, cp = 0, skip = 0;
    bool hash = is_hash(f->map_type);
    if (del && !hash)
        return -ENOTSUPP;
    if (!hash && f->map_type != BPF_MAP_TYPE_ARRAY && f->map_type != BPF_MAP_TYPE_PERCPU_ARRAY)
        return -ENOTSUPP;
    if (!max)
        return 0;
    if (write_count(uattr, 0))
        return -EFAULT;
    uint32_t ks = f->key_size, vs = f->value_copy;
    struct xbuf b = {0};
    uint8_t *prev = xbuf_get(&b, 2 * (size_t)ks + vs);
    if (!prev)
        return -ENOMEM;
    uint8_t *key = prev + ks, *val = key + ks;
    bool have_prev = false;
    long r = 0;
    if (at->batch.in_batch) {
        if (hash)
            r = uread(&skip, (const void *)(uintptr_t)at->batch.in_batch, 4) ? -EFAULT : 0;
        else
            r = uread(prev, (const void *)(uintptr_t)at->batch.in_batch, ks) ? -EFAULT : 0;
        have_prev = !hash;
        if (del)
            skip = 0;
    }
    for (uint32_t i = 0; !r && i < skip; i++) {
        r = bpfg_map_get_next_key(f->map, have_prev ? prev : NULL, key);
        memcpy(prev, key, ks);
        have_prev = true;
    }
    while (!r && cp < max) {
        r = bpfg_map_get_next_key(f->map, have_prev ? prev : NULL, key);
        if (r)
            break;
        r = del ? bpfg_map_lookup_and_delete_copy(f->map, key, val) : bpfg_map_lookup_copy(f->map, key, val);
        memcpy(prev, key, ks);
        have_prev = true;
        if (r == -ENOENT) {   /* deleted meanwhile: go on after it */
            r = 0;
            continue;
        }
        if (r)
            break;
        if (uwrite((uint8_t *)(uintptr_t)at->batch.keys + (uint64_t)cp * ks, key, ks) ||
            uwrite((uint8_t *)(uintptr_t)at->batch.values + (uint64_t)cp * vs, val, vs))
            r = -EFAULT;
        else
            cp++;
    }
    if (r != -EFAULT) {
        uint32_t token = del ? 0 : skip + cp;
        if (write_count(uattr, cp) ||
            (cp && uwrite((void *)(uintptr_t)at->batch.out_batch, hash ? (void *)&token : (void *)prev,
                                 hash ? 4 : ks)))
            r = -EFAULT;
    }
    xbuf_free(&b);
    return r;
}

static long bpf_map_batch(int cmd, const union bpf_attr *at, void *uattr)
{
    struct tool_file *f;
    long r = map_arg((int)at->batch.map_fd, &f);
    if (r)
        return r;
    if (at->batch.flags || (at->batch.elem_flags & ~(uint64_t)BPF_F_LOCK &&
                            cmd != BPF_MAP_UPDATE_BATCH)) {
        file_put(f);
        return -EINVAL;
    }
    if (cmd == BPF_MAP_LOOKUP_BATCH || cmd == BPF_MAP_LOOKUP_AND_DELETE_BATCH) {
        r = lookup_batch(f, at, uattr, cmd == BPF_MAP_LOOKUP_AND_DELETE_BATCH);
        file_put(f);
        return r;
    }
    uint32_t max = at->batch.count, cp = 0, ks = f->key_size, vs = f->value_copy;
    struct xbuf b = {0};
    uint8_t *key = xbuf_get(&b, (size_t)ks + vs + 8);
    if (!key) {
        file_put(f);
        return -ENOMEM;
    }
    uint8_t *val = key + ks;
    for (; !r && cp < max; cp++) {
        if (uread(key, (const uint8_t *)(uintptr_t)at->batch.keys + (uint64_t)cp * ks, ks)) {
            r = -EFAULT;
            break;
        }
        if (cmd == BPF_MAP_DELETE_BATCH) {
            r = elem_delete(f, key);
        } else if (uread(val, (const uint8_t *)(uintptr_t)at->batch.values + (uint64_t)cp * vs, vs)) {
            r = -EFAULT;
        } else {
            r = elem_update(f, key, val, at->batch.elem_flags);
        }
        if (r)
            break;
    }
    if (write_count(uattr, cp))
        r = -EFAULT;
    xbuf_free(&b);
    file_put(f);
    return r;
}

/* ---- bpf(): OBJ_GET_INFO_BY_FD ---- */

static long bpf_obj_info(const union bpf_attr *at, void *uattr)
{
    struct tool_file *f = tool_fdt_get((int)at->info.bpf_fd);
    if (!f)
        return -EBADF;
    union {
        struct bpf_map_info map;
        struct bpf_prog_info prog;
        struct bpf_btf_info btf;
        struct bpf_link_info link;
    } info;
    memset(&info, 0, sizeof(info));
    size_t ksize = 0;
    switch (f->kind) {
    case TK_MAP:
        ksize = sizeof(info.map);
        info.map.type = f->map_type;
        info.map.id = f->id;
        info.map.key_size = f->key_size;
        info.map.value_size = f->value_size;
        info.map.max_entries = f->max_entries;
        info.map.map_flags = f->map_flags;
        memcpy(info.map.name, f->name, sizeof(info.map.name));
        info.map.btf_id = f->btf_id;
        info.map.btf_key_type_id = f->btf_key_type_id;
        info.map.btf_value_type_id = f->btf_value_type_id;
        info.map.map_extra = f->map_extra;
        break;
    case TK_PROG:
        ksize = sizeof(info.prog);
        info.prog.type = f->prog_type;
        info.prog.id = f->id;
        memcpy(info.prog.name, f->name, sizeof(info.prog.name));
        info.prog.created_by_uid = (uint32_t)rt_sys0(SYS_getuid);
        info.prog.gpl_compatible = f->gpl;
        break;
    case TK_BTF:
        ksize = sizeof(info.btf);
        info.btf.id = f->id;
        info.btf.btf_size = f->btf_size;   /* the bytes themselves are not kept */
        break;
    case TK_LINK:
        ksize = sizeof(info.link);
        info.link.type = f->link_type;
        info.link.id = f->id;
        info.link.prog_id = f->prog_id;
        break;
    default:
        file_put(f);
        return -EINVAL;
    }
    file_put(f);
    uint32_t len = at->info.info_len;
    if (len > ksize) {
        /* the kernel wants the part it does not know to be zero */
        uint8_t tail[64];
        for (uint64_t off = ksize; off < len; off += sizeof(tail)) {
            size_t n = len - off < sizeof(tail) ? len - off : sizeof(tail);
            if (uread(tail, (const uint8_t *)(uintptr_t)at->info.info + off, n))
                return -EFAULT;
            for (size_t i = 0; i < n; i++)
                if (tail[i])
                    return -E2BIG;
        }
        len = (uint32_t)ksize;
    }
    if (uwrite((void *)(uintptr_t)at->info.info, &info, len) ||
        uwrite((uint8_t *)uattr + offsetof(union bpf_attr, info.info_len), &len, 4))
        return -EFAULT;
    return 0;
}

/* ---- bpf() ---- */

static long do_bpf(const uint64_t a[6])
{
    int cmd = (int)a[0];
    void *uattr = (void *)(uintptr_t)a[1];
    uint64_t size = (uint32_t)a[2];
    union bpf_attr at;
    memset(&at, 0, sizeof(at));
    if (size > PAGE)
        return -E2BIG;
    /* the kernel wants the part of attr it does not know to be zero */
    for (uint64_t off = sizeof(at); off < size; off += 64) {
        uint8_t tail[64];
        size_t n = size - off < sizeof(tail) ? size - off : sizeof(tail);
        if (uread(tail, (uint8_t *)uattr + off, n))
            return -EFAULT;
        for (size_t i = 0; i < n; i++)
            if (tail[i])
                return -E2BIG;
    }
    if (size > sizeof(at))
        size = sizeof(at);
    if (uread(&at, uattr, size))
        return -EFAULT;
    switch (cmd) {
    case BPF_MAP_CREATE: return bpf_map_create(&at);
    case BPF_PROG_LOAD: return bpf_prog_load(&at);
    case BPF_BTF_LOAD: return bpf_btf_load(&at);
    case BPF_LINK_CREATE: return bpf_link_create(&at);
    case BPF_RAW_TRACEPOINT_OPEN: return bpf_raw_tp_open(&at);
    case BPF_LINK_DETACH: return bpf_link_detach(&at);
    case BPF_MAP_LOOKUP_ELEM:
    case BPF_MAP_UPDATE_ELEM:
    case BPF_MAP_DELETE_ELEM:
    case BPF_MAP_GET_NEXT_KEY:
    case BPF_MAP_LOOKUP_AND_DELETE_ELEM:
        return bpf_map_elem(cmd, &at);
    case BPF_MAP_FREEZE:
        return bpf_map_elem(cmd, &at);
    case BPF_MAP_LOOKUP_BATCH:
    case BPF_MAP_LOOKUP_AND_DELETE_BATCH:
    case BPF_MAP_UPDATE_BATCH:
    case BPF_MAP_DELETE_BATCH:
        return bpf_map_batch(cmd, &at, uattr);
    case BPF_OBJ_GET_INFO_BY_FD: return bpf_obj_info(&at, uattr);
    case BPF_PROG_BIND_MAP: return 0;   /* the server keeps what a program uses */
    default: return -EINVAL;
    }
}

/* ---- perf_event_open ---- */

static long do_perf_open(const uint64_t a[6])
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
        char *path = malloc(4096);   /* PATH_MAX: not on the tool's stack */
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
            "BPF output are served)", attr.type, (unsigned long long)attr.config);
        return -EOPNOTSUPP;
    }
    f->pid = pid;
    f->cpu = cpu;
    f->event_id = __atomic_fetch_add(&next_event_id, 1, __ATOMIC_RELAXED);
    return file_placeholder(f, name, cloexec);
}

/* ---- ioctl on our perf event fds ---- */

static bool do_ioctl(const uint64_t a[6], long *ret)
{
    struct tool_file *f = tool_fdt_peek((int)a[0]);
    unsigned cmd = (unsigned)a[1];
    if (!f || _IOC_TYPE(cmd) != '$')
        return false;
    if (!(f = tool_fdt_get((int)a[0])))
        return false;
    if (f->kind != TK_UPROBE && f->kind != TK_TRACEPOINT && f->kind != TK_PERF_RING) {
        file_put(f);
        return false;
    }
    long r;
    switch (cmd) {
    case PERF_EVENT_IOC_ENABLE:
    case PERF_EVENT_IOC_DISABLE:
    case PERF_EVENT_IOC_RESET:
    case PERF_EVENT_IOC_REFRESH:
        r = 0;
        break;
    case PERF_EVENT_IOC_ID:
        r = uwrite((void *)(uintptr_t)a[2], &f->event_id, 8) ? -EFAULT : 0;
        break;
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
            r = attach_perf(prog, f);
        if (r >= 0) {
            f->link_id = (uint32_t)r;   /* this perf fd owns the link */
            f->attached = true;
            r = 0;
        }
        file_put(prog);
        break;
    }
    default:
        r = -ENOTTY;
        break;
    }
    file_put(f);
    *ret = r;
    return true;
}

/* ---- mmap ---- */

/* Global data / BPF_F_MMAPABLE arrays: the values start at offset 0 of
 * the kernel's view. */
static long mmap_array(struct tool_file *f, const uint64_t a[6])
{
    size_t size;
    uint64_t file_off;
    if (!bpfg_map_value_area(f->map, &size, &file_off))
        return -EINVAL;
    uint64_t off = a[5], len = a[1];
    if (off % PAGE || !len || off + len < off || off + len > ROUNDUP_PAGE(size))
        return -EINVAL;
    struct bpfg_map_info info;
    bpfg_map_get_info(f->map, &info);
    if (info.frozen && (a[2] & PROT_WRITE) && (a[3] & MAP_SHARED))
        return -EPERM;
    return rt_sys6(SYS_mmap, (long)a[0], (long)len, (long)a[2], (long)a[3], (long)a[4], (long)(file_off + off));
}

/* RINGBUF, kernel view: consumer page, producer page, data, data again.
 * In the region the first three are contiguous from aux_off (the
 * consumer page); the second data copy maps data_off again. Only the
 * consumer page may be writable. */
static long mmap_ringbuf(struct tool_file *f, const uint64_t a[6])
{
    struct bpfg_ringbuf_file rf;
    if (bpfg_ringbuf_get_file_layout(f->map, &rf))
        return -EINVAL;
    uint64_t size = rf.size, aux_off = rf.consumer_off, data_off = rf.data_off;
    uint64_t off = a[5], len = ROUNDUP_PAGE(a[1]), end = off + len, first_end = 2 * PAGE + size;
    long prot = (long)a[2], flags = (long)a[3], fd = (long)a[4];
    if (off % PAGE || !a[1] || end < off || end > 2 * PAGE + 2 * size)
        return -EINVAL;
    if ((prot & PROT_WRITE) && (off != 0 || len != PAGE))
        return -EPERM;
    long fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE);
    long base = rt_sys6(SYS_mmap, (long)a[0], (long)len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | fixed, -1, 0);
    if (rt_is_err(base))
        return base;
    long sflags = (flags & ~MAP_FIXED_NOREPLACE) | MAP_FIXED;
    long r = 0;
    if (off < first_end) {
        uint64_t n = (end < first_end ? end : first_end) - off;
        r = rt_sys6(SYS_mmap, base, (long)n, prot, sflags, fd, (long)(aux_off + off));
    }
    if (!rt_is_err(r) && end > first_end) {
        uint64_t from = off > first_end ? off : first_end;
        r = rt_sys6(SYS_mmap, base + (long)(from - off), (long)(end - from), prot, sflags, fd,
                    (long)(data_off + (from - first_end)));
    }
    if (rt_is_err(r)) {
        if (!fixed)
            rt_sys2(SYS_munmap, base, (long)len);
        return r;
    }
    return base;
}

/* Perf ring fds: sized by the first mmap, which also sets up our own
 * mapping and the header page. */
static long mmap_perf_ring(struct tool_file *f, const uint64_t a[6])
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

/* Moves the records of the PERF_EVENT_ARRAY maps into the tool's perf
 * rings (table lock held: rings and maps stay while we write). A map none
 * of whose slots has a mapped ring keeps its records. */
static void bridge(void)
{
    for (uint32_t i = 0; i < MAX_PERF_MAPS; i++) {
        struct tool_file *m = perf_maps[i];
        if (m && m->rings && ring_for(m, 0))
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

static bool do_epoll_ctl(const uint64_t a[6], long *ret)
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

/* epoll_wait / epoll_pwait / epoll_pwait2 while rings are watched: the
 * wait is cut into slices of at most 10 ms, refreshing the rings' eventfds
 * (and moving perf records) before each. */
static bool do_epoll_wait(long nr, const uint64_t a[6], long *ret)
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
        r = rt_sys6(SYS_epoll_pwait, (long)a[0], (long)a[1], (long)a[2], slice, sigmask, sigsize);
        if (r != 0 || slice == 0)
            break;
        if (timeout_ns >= 0 && (int64_t)(rt_clock_ns(CLOCK_MONOTONIC) - start) >= timeout_ns)
            break;
    }
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

static bool do_poll(long nr, const uint64_t a[6], long *ret)
{
    uint64_t nfds = a[1];
    struct pollfd_ user[POLL_MAX], kern[POLL_MAX];
    bool ours[POLL_MAX];
    if (!nfds || nfds > POLL_MAX || uread(user, (const void *)(uintptr_t)a[0], nfds * sizeof(user[0])))
        return false;   /* the kernel gives the answer (or EFAULT) */
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
            kern[i].fd = -1;   /* the kernel skips it */
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
        r = rt_sys5(SYS_ppoll, (long)kern, (long)nfds, (long)&ts, sigmask, sigsize);
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
    if (r >= 0 && uwrite((void *)(uintptr_t)a[0], user, nfds * sizeof(user[0])))
        r = -EFAULT;
    *ret = r;
    return true;
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

static long do_openat(const uint64_t a[6])
{
    char path[256], tp[200];
    bool have_path = rt_safe_read_str(path, (const void *)(uintptr_t)a[1], sizeof(path)) >= 0;
    /* libbpf's legacy kprobes (no kprobe PMU) write tracefs kprobe_events */
    if (have_path && (ends_with(path, "tracing/kprobe_events") || ends_with(path, "tracing/kprobe_profile"))) {
        say("kprobes cannot run in userspace (kernel functions are not reachable from a process): %s refused",
            path);
        return -EOPNOTSUPP;
    }
    long r = rt_sys4(SYS_openat, (long)a[0], (long)a[1], (long)a[2], (long)a[3]);
    if (r != -ENOENT || !have_path || !tp_id_path(path, tp, sizeof(tp)))
        return r;
    struct reply rep;
    uint32_t id;
    int err = chan_call(BPFG_TOOL_TP_ID, tp, strlen(tp) + 1, NULL, 0, &rep);
    if (err && err != -ECONNRESET && rep.body)
        say("%s", rep.body);   /* e.g. a kernel tracepoint */
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

/* ---- close and dup ---- */

static bool do_close(const uint64_t a[6], long *ret)
{
    int fd = (int)a[0];
    if (!tool_fdt_peek(fd))
        return false;
    struct tool_file *f = tool_fdt_remove(fd);
    file_put(f);   /* the last fd: DETACH / RELEASE first */
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
        file_put(f);   /* beyond the table: the new fd is not tracked */
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
    case SYS_epoll_pwait2:
        return do_epoll_wait(nr, a, ret);
    case SYS_poll:
    case SYS_ppoll:
        return do_poll(nr, a, ret);
    case SYS_openat: *ret = do_openat(a); return true;
    case SYS_close: return do_close(a, ret);
    case SYS_close_range: return do_close_range(a, ret);
    case SYS_dup:
    case SYS_dup2:
    case SYS_dup3:
        return do_dup(nr, a, ret);
    case SYS_fcntl:
        if (a[1] != F_DUPFD && a[1] != F_DUPFD_CLOEXEC)
            return false;
        return do_dup(nr, a, ret);
    default:
        return false;
    }
}

int tool_start(const struct bpfg_pmsg_tool_mode *tm, int chan_fd, char *err, size_t errlen)
{
    if (__atomic_load_n(&tool_on, __ATOMIC_ACQUIRE)) {
        snprintf(err, errlen, "tool mode is already on");
        return -EALREADY;
    }
    pmu = *tm;
    chan = chan_fd;
    __atomic_store_n(&self_pid, rt_sys0(SYS_getpid), __ATOMIC_RELAXED);
    chan_dead = false;
    __atomic_store_n(&tool_on, 1, __ATOMIC_RELEASE);
    return 0;
}
