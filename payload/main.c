/* The payload thread: connects to bpfgraftd, receives maps and programs,
 * installs hooks, forwards trace lines, and leaves on DETACH. Everything
 * here runs on the payload's own thread; handlers on target threads only
 * read what it publishes (see hooks.c). */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "payload.h"
#include "trap.h"
#include "rt/rt.h"
#include "syscall.h"
#include "timer.h"
#include "tool.h"
#include "unwind.h"
#include "ustack.h"

#define EXPORT __attribute__((visibility("default"), used))

EXPORT struct bpfg_payload_params bpfg_payload_params;

extern char bpfg_uprobe_entry[], bpfg_uretprobe_return[];
uint64_t bpfg_uretprobe_handler(struct bpfg_pt_regs *regs, struct bpfg_thread_slot *t);

#define POLL_MS 50
#define QUIESCE_MS 5000

struct pmap {
    uint32_t id;
    struct bpfg_map *map;
};

static struct pmap maps[MAX_MAPS];
static struct prog *progs[MAX_PROGS]; /* read lock-free by tail calls */
static int sock = -1;
static char errbuf[256];
/* the body of a successful reply (MAP: its addresses), set by a handler */
static uint8_t okbody[64];
static size_t okbody_len;

/* The payload thread has no glibc thread descriptor; give it a fake TCB
 * of its own rather than sharing the fs base of the thread it was cloned
 * from (its fs:0 self pointer stays valid for anything that reads it). */
static uint64_t fake_tcb[128] __attribute__((aligned(64)));

struct prog *payload_prog_by_id(uint32_t id)
{
    for (int i = 0; i < MAX_PROGS; i++) {
        struct prog *p = __atomic_load_n(&progs[i], __ATOMIC_ACQUIRE);
        if (p && p->id == id)
            return p;
    }
    return NULL;
}

struct bpfg_map *payload_map_by_id(uint32_t id)
{
    for (int i = 0; i < MAX_MAPS; i++)
        if (maps[i].map && maps[i].id == id)
            return maps[i].map;
    return NULL;
}

static void fail_early(struct bpfg_payload_params *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail_early(struct bpfg_payload_params *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
    __atomic_store_n(&p->state, BPFG_PAYLOAD_FAILED, __ATOMIC_RELEASE);
}

/* ---- socket I/O ---- */

static int send_msg(uint16_t type, uint16_t flags, uint32_t seq, int32_t status, const void *body, size_t len)
{
    struct bpfg_pmsg_hdr h = {
        .len = (uint32_t)(sizeof(h) + len), .type = type, .flags = flags, .seq = seq, .status = status};
    int r = rt_send_all(sock, &h, sizeof(h));
    return r ? r : rt_send_all(sock, body, len);
}

static int reply(uint32_t seq, int status)
{
    if (!status)
        return send_msg(BPFG_PMSG_REPLY, 0, seq, 0, okbody, okbody_len);
    size_t len = strlen(errbuf) + 1;
    if (len == 1)
        len = (size_t)snprintf(errbuf, sizeof(errbuf), "%s", strerror(-status)) + 1;
    return send_msg(BPFG_PMSG_REPLY, 0, seq, status, errbuf, len);
}

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
    va_end(ap);
    return code;
}

/* Reads one message; *fd gets an attached descriptor or -1. */
static int recv_msg(struct bpfg_pmsg_hdr *h, uint8_t **body, int *fd)
{
    *fd = -1;
    *body = NULL;
    int r = rt_recv_all(sock, h, sizeof(*h), fd); /* only one fd per message */
    if (r)
        return r;
    if (h->len < sizeof(*h) || h->len > BPFG_PMSG_MAX)
        return -EBADMSG;
    size_t len = h->len - sizeof(*h);
    *body = malloc(len + 1);
    if (!*body)
        return -ENOMEM;
    r = rt_recv_all(sock, *body, len, NULL);
    if (!r)
        (*body)[len] = 0;
    return r;
}

static void drain_trace(void)
{
    struct trace_line line;
    uint8_t buf[sizeof(struct bpfg_pmsg_trace) + BPFG_TRACE_LINE];
    while (trace_ring_pop(&line)) {
        uint64_t dropped = trace_ring_take_dropped();
        struct bpfg_pmsg_trace t = {line.pid, line.tid};
        uint32_t len = line.len <= BPFG_TRACE_LINE ? line.len : BPFG_TRACE_LINE;
        memcpy(buf, &t, sizeof(t));
        memcpy(buf + sizeof(t), line.text, len);
        buf[sizeof(t) + len - 1] = 0;
        send_msg(BPFG_PMSG_TRACE, dropped > 0xffff ? 0xffff : (uint16_t)dropped, 0, 0, buf, sizeof(t) + len);
    }
}

/* Syscall sites for the server to rewrite (see payload_abi.h). */
static void report_sites(void)
{
    uint64_t sites[64];
    size_t n;
    while ((n = syscall_take_sites(sites, 64)) != 0)
        if (send_msg(BPFG_PMSG_SYS_SITES, 0, 0, 0, sites, n * sizeof(sites[0])) != 0)
            break;
}

/* ---- programs and maps ---- */

static void prog_free(struct prog *p)
{
    if (!p)
        return;
    if (p->code_map)
        rt_sys2(SYS_munmap, (long)p->code_map, (long)p->code_map_len);
    while (p->code_old) {
        struct code_old *o = p->code_old;
        p->code_old = o->next;
        rt_sys2(SYS_munmap, (long)o->map, (long)o->len);
        free(o);
    }
    bpfg_vm_free(p->vm);
    free(p->maps);
    free(p);
}

/* The global-data area lddw BPF_PSEUDO_MAP_IDX_VALUE points into; NULL if
 * the map has none. The server gets the same answer (MAP reply) to
 * resolve the references of native code identically. */
static uint8_t *map_value_area(struct bpfg_map *m, size_t *size_out)
{
    size_t size = 0;
    uint8_t *area = bpfg_map_value_area(m, &size, NULL);
    if (!area) {
        struct bpfg_map_info info;
        uint32_t zero = 0;
        bpfg_map_get_info(m, &info);
        if (info.type != BPF_MAP_TYPE_ARRAY) {
            *size_out = 0;
            return NULL;
        }
        area = bpfg_map_lookup_elem(m, &zero);
        size = info.value_size;
    }
    *size_out = area ? size : 0;
    return area;
}

static int resolve_ld64(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    struct prog *p = user;
    if (src_reg != BPF_PSEUDO_MAP_IDX && src_reg != BPF_PSEUDO_MAP_IDX_VALUE)
        return -EINVAL;
    if (imm0 < 0 || (uint32_t)imm0 >= p->nmaps)
        return -ENOENT;
    struct bpfg_map *m = p->maps[imm0];
    if (src_reg == BPF_PSEUDO_MAP_IDX) {
        *value = (uint64_t)(uintptr_t)m;
        return 0;
    }
    size_t size;
    uint8_t *area = map_value_area(m, &size);
    if (!area || imm1 < 0 || (size_t)imm1 >= size)
        return -EINVAL;
    *value = (uint64_t)(uintptr_t)(area + imm1);
    return 0;
}

static int add_map_regions(struct bpfg_vm *vm, struct bpfg_map *m)
{
    int err = 0;
    size_t len;
    void *base;
    for (uint32_t i = 0; !err && (base = bpfg_map_mapping(m, i, &len)); i++)
        err = bpfg_vm_add_region(vm, base, len, true);
    return err;
}

/* Maps code_len bytes of the server's code memfd r-x (never writable
 * here: the server sealed it). The mapping's address, or a negative errno
 * with the reason set. */
static long map_code_fd(const struct prog *p, uint32_t engine, uint32_t code_len, uint32_t entry_off, int fd)
{
    struct stat st;
    if (fd < 0)
        return fail(-EBADF, "program %u: the message carries no code fd", p->id);
    if (engine == BPFG_ENGINE_INTERP || !code_len || entry_off >= code_len)
        return fail(-EINVAL, "program %u: bad code (engine %u, %u bytes, entry at %u)", p->id, engine, code_len,
                    entry_off);
    if (p->flags & BPFG_PROG_F_CHECKED)
        return fail(-EINVAL, "program %u: checked mode needs the interpreter", p->id);
    long r = rt_sys2(SYS_fstat, fd, (long)&st);
    if (rt_is_err(r))
        return fail((int)r, "program %u: fstat of the code: %s", p->id, strerror((int)-r));
    if ((uint64_t)st.st_size < code_len)
        return fail(-EINVAL, "program %u: the code memfd has %lld bytes, not %u", p->id, (long long)st.st_size,
                    code_len);
    long addr = rt_sys6(SYS_mmap, 0, (long)code_len, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (rt_is_err(addr))
        return fail((int)addr, "program %u: mapping its code r-x: %s", p->id, strerror((int)-addr));
    return addr;
}

/* Points p at its code (PROG_CODE). */
static int map_code(struct prog *p, const struct bpfg_pmsg_prog_code *pc, int fd)
{
    long addr = map_code_fd(p, pc->engine, pc->code_len, pc->entry_off, fd);
    if (rt_is_err(addr))
        return (int)addr;
    p->code_map = (void *)addr;
    p->code_map_len = pc->code_len;
    p->code = (bpfg_x86jit_fn)(uintptr_t)(addr + pc->entry_off);
    p->engine = pc->engine;
    return 0;
}

/* PROG_SWAP: new code for a loaded program (tiering: x86, then LLVM).
 * One pointer store switches it; a run loads p->code once (payload.h),
 * so every run is wholly old code or wholly new, and hook slots, tail
 * calls and timers keep the same struct prog. The old mapping stays until
 * the program is freed (a thread may be inside it; no grace period is
 * waited for here): the server swaps a program once, so that costs one
 * x86 code mapping (a few pages) per tiered program. */
static int do_prog_swap(const uint8_t *body, size_t len, int fd)
{
    struct bpfg_pmsg_prog_swap sw;
    if (len < sizeof(sw))
        return fail(-EBADMSG, "PROG_SWAP message too short");
    memcpy(&sw, body, sizeof(sw));
    struct prog *p = payload_prog_by_id(sw.prog_id);
    if (!p)
        return fail(-ENOENT, "program %u is not loaded", sw.prog_id);
    struct code_old *old = NULL;
    if (p->code_map && !(old = malloc(sizeof(*old))))
        return fail(-ENOMEM, "out of memory");
    long addr = map_code_fd(p, sw.engine, sw.code_len, sw.entry_off, fd);
    if (rt_is_err(addr)) {
        free(old);
        return (int)addr;
    }
    if (old) {
        *old = (struct code_old){p->code_map, p->code_map_len, p->code_old};
        p->code_old = old;
    }
    p->code_map = (void *)addr;
    p->code_map_len = sw.code_len;
    __atomic_store_n(&p->code, (bpfg_x86jit_fn)(uintptr_t)(addr + sw.entry_off), __ATOMIC_RELEASE);
    __atomic_store_n(&p->engine, sw.engine, __ATOMIC_RELAXED);
    return 0;
}

/* PROG, or PROG_CODE when pc is not NULL (fd: its code). */
static int do_prog(const uint8_t *body, size_t len, const struct bpfg_pmsg_prog_code *pc, int fd)
{
    struct bpfg_pmsg_prog hdr;
    if (len < sizeof(hdr))
        return fail(-EBADMSG, "PROG message too short");
    memcpy(&hdr, body, sizeof(hdr));
    uint64_t need = sizeof(hdr) + (uint64_t)hdr.map_cnt * 4 + (uint64_t)hdr.insn_cnt * 8;
    if (hdr.map_cnt > MAX_MAPS || need != len)
        return fail(-EBADMSG, "PROG message: %u maps and %u instructions do not fill %zu bytes", hdr.map_cnt,
                    hdr.insn_cnt, len);
    if (!hdr.prog_id)
        return fail(-EINVAL, "program id 0 is reserved");
    if (payload_prog_by_id(hdr.prog_id))
        return fail(-EEXIST, "program %u is already loaded", hdr.prog_id);
    int slot = -1;
    for (int i = 0; i < MAX_PROGS && slot < 0; i++)
        if (!progs[i])
            slot = i;
    if (slot < 0)
        return fail(-ENOSPC, "too many programs (limit %d)", MAX_PROGS);

    struct prog *p = calloc(1, sizeof(*p));
    if (!p)
        return fail(-ENOMEM, "out of memory");
    p->id = hdr.prog_id;
    p->flags = hdr.flags;
    p->nmaps = hdr.map_cnt;
    p->maps = calloc(hdr.map_cnt ? hdr.map_cnt : 1, sizeof(*p->maps));
    p->vm = bpfg_vm_new();
    int err = 0;
    if (!p->maps || !p->vm) {
        err = fail(-ENOMEM, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < hdr.map_cnt; i++) {
        uint32_t id;
        memcpy(&id, body + sizeof(hdr) + i * 4, 4);
        p->maps[i] = payload_map_by_id(id);
        if (!p->maps[i]) {
            err = fail(-ENOENT, "program %u uses map %u, which was not sent", p->id, id);
            goto out;
        }
    }
    if ((err = helpers_register(p->vm))) {
        err = fail(err, "registering helpers: %s", strerror(-err));
        goto out;
    }
    bool checked = hdr.flags & BPFG_PROG_F_CHECKED;
    bpfg_vm_set_checked(p->vm, checked);
    for (uint32_t i = 0; checked && i < p->nmaps && !err; i++)
        err = add_map_regions(p->vm, p->maps[i]);
    if (err) {
        err = fail(err, "registering map regions: %s", strerror(-err));
        goto out;
    }
    bpfg_vm_set_ld64_resolver(p->vm, resolve_ld64, p);
    const struct bpf_insn *insns = (const struct bpf_insn *)(body + sizeof(hdr) + (size_t)hdr.map_cnt * 4);
    if ((err = bpfg_vm_load(p->vm, insns, hdr.insn_cnt))) {
        err = fail(err, "program %u: %s", p->id, bpfg_vm_error(p->vm));
        goto out;
    }
    if (pc && (err = map_code(p, pc, fd)))
        goto out;
    p->stats = &bpfg_stats.progs[slot];
    p->stats->run_cnt = 0;
    p->stats->run_time_ns = 0;
    __atomic_store_n(&p->stats->prog_id, p->id, __ATOMIC_RELEASE);
    __atomic_store_n(&progs[slot], p, __ATOMIC_RELEASE);
    return 0;
out:
    prog_free(p);
    return err;
}

static int do_map(const uint8_t *body, size_t len, int fd)
{
    struct bpfg_pmsg_map m;
    if (len < sizeof(m))
        return fail(-EBADMSG, "MAP message too short");
    memcpy(&m, body, sizeof(m));
    if (fd < 0)
        return fail(-EBADF, "MAP message for map %u carries no fd", m.map_id);
    if (!m.map_id)
        return fail(-EINVAL, "map id 0 is reserved");
    if (payload_map_by_id(m.map_id))
        return fail(-EEXIST, "map %u is already mapped", m.map_id);
    int slot = -1;
    for (int i = 0; i < MAX_MAPS && slot < 0; i++)
        if (!maps[i].map)
            slot = i;
    if (slot < 0)
        return fail(-ENOSPC, "too many maps (limit %d)", MAX_MAPS);
    struct bpfg_map *map;
    int err = bpfg_map_open_fd(fd, &map);
    if (err)
        return fail(err, "map %u: %s", m.map_id, bpfg_map_last_error());
    maps[slot].id = m.map_id;
    maps[slot].map = map;
    size_t size;
    uint8_t *area = map_value_area(map, &size);
    struct bpfg_pmsg_map_reply mr = {
        .handle = (uint64_t)(uintptr_t)map, .value_area = (uint64_t)(uintptr_t)area, .value_size = size};
    memcpy(okbody, &mr, sizeof(mr));
    okbody_len = sizeof(mr);
    return 0;
}

/* Past the grace period without a server: programs removed from the
 * hooks (go_inert); a HOOK from a server that adopted us re-arms. */
static bool inert;

static int do_hook(const uint8_t *body, size_t len)
{
    struct bpfg_pmsg_hook h = {0};
    if (len < offsetof(struct bpfg_pmsg_hook, cookie))
        return fail(-EBADMSG, "HOOK message too short");
    memcpy(&h, body, len < sizeof(h) ? len : sizeof(h));
    struct prog *p = payload_prog_by_id(h.prog_id);
    if (!p)
        return fail(-ENOENT, "program %u is not loaded", h.prog_id);
    if (h.kind == BPFG_HOOK_URETPROBE && !__atomic_load_n(&unwind_ret0, __ATOMIC_ACQUIRE))
        return fail(-EPROTO, "uretprobe before UNWIND: the return trampolines are not set up");
    /* every patch's int3 may meet a thread if the server dies mid-patch */
    struct bpfg_pmsg_hook_reply rep = {0};
    int r = trap_install(&rep.trap_saved_action, errbuf, sizeof(errbuf));
    if (r)
        return r;
    r = hooks_add(h.hook_index, h.kind, p, h.site, h.resume, h.cookie, errbuf, sizeof(errbuf));
    inert &= r != 0;
    if (r)
        return r;
    if ((h.flags & BPFG_HOOK_F_TRAP) &&
        (r = trap_add(h.hook_index, h.site, &rep.trap_saved_action, errbuf, sizeof(errbuf)))) {
        hooks_remove(h.hook_index);
        return r;
    }
    memcpy(okbody, &rep, sizeof(rep));
    okbody_len = sizeof(rep);
    return 0;
}

static int do_unmap(const uint8_t *body, size_t len)
{
    struct bpfg_pmsg_unmap u;
    if (len < sizeof(u))
        return fail(-EBADMSG, "UNMAP message too short");
    memcpy(&u, body, sizeof(u));
    if (u.prog_id) {
        int slot = -1;
        for (int i = 0; i < MAX_PROGS && slot < 0; i++)
            if (progs[i] && progs[i]->id == u.prog_id)
                slot = i;
        if (slot < 0)
            return fail(-ENOENT, "program %u is not loaded", u.prog_id);
        struct prog *p = progs[slot];
        if (hooks_use_prog(p) || syscall_use_prog(p))
            return fail(-EBUSY, "program %u is still attached to a hook", u.prog_id);
        timer_forget_prog(u.prog_id);
        __atomic_store_n(&progs[slot], NULL, __ATOMIC_SEQ_CST);
        __atomic_store_n(&bpfg_stats.progs[slot].prog_id, 0, __ATOMIC_RELEASE);
        /* a tail call may be about to run it: free after a grace period,
         * or never if some handler does not finish */
        if (hooks_quiesce(QUIESCE_MS))
            prog_free(p);
    }
    if (u.map_id) {
        int slot = -1;
        for (int i = 0; i < MAX_MAPS && slot < 0; i++)
            if (maps[i].map && maps[i].id == u.map_id)
                slot = i;
        if (slot < 0)
            return fail(-ENOENT, "map %u is not mapped", u.map_id);
        for (int i = 0; i < MAX_PROGS; i++)
            for (uint32_t k = 0; progs[i] && k < progs[i]->nmaps; k++)
                if (progs[i]->maps[k] == maps[slot].map)
                    return fail(-EBUSY, "map %u is used by program %u", u.map_id, progs[i]->id);
        bpfg_map_close(maps[slot].map);
        maps[slot].map = NULL;
        maps[slot].id = 0;
    }
    return 0;
}

/* Returns 1 when the thread must exit after replying. */
static int do_detach(int *status)
{
    hooks_remove_all();
    syscall_remove_all();
    if (!hooks_quiesce(QUIESCE_MS)) {
        *status = fail(-EBUSY, "a handler is still running on some thread; retry");
        return 0;
    }
    for (int i = 0; i < MAX_PROGS; i++) {
        prog_free(progs[i]);
        progs[i] = NULL;
    }
    for (int i = 0; i < MAX_MAPS; i++) {
        bpfg_map_close(maps[i].map);
        maps[i].map = NULL;
    }
    ustack_release();
    *status = 0;
    return 1;
}

static int handle(const struct bpfg_pmsg_hdr *h, const uint8_t *body, int fd, bool *exit_after)
{
    size_t len = h->len - sizeof(*h);
    errbuf[0] = 0;
    okbody_len = 0;
    switch (h->type) {
    case BPFG_PMSG_MAP: return do_map(body, len, fd);
    case BPFG_PMSG_PROG: return do_prog(body, len, NULL, -1);
    case BPFG_PMSG_PROG_CODE: {
        struct bpfg_pmsg_prog_code pc;
        if (len < sizeof(pc))
            return fail(-EBADMSG, "PROG_CODE message too short");
        memcpy(&pc, body, sizeof(pc));
        return do_prog(body + sizeof(pc), len - sizeof(pc), &pc, fd);
    }
    case BPFG_PMSG_PROG_SWAP: return do_prog_swap(body, len, fd);
    case BPFG_PMSG_HOOK: return do_hook(body, len);
    case BPFG_PMSG_UNHOOK: {
        struct bpfg_pmsg_unhook u;
        if (len < sizeof(u))
            return fail(-EBADMSG, "UNHOOK message too short");
        memcpy(&u, body, sizeof(u));
        if (u.hook_index >= BPFG_MAX_HOOKS)
            return fail(-EINVAL, "hook index %u out of range", u.hook_index);
        hooks_remove(u.hook_index);
        return 0;
    }
    case BPFG_PMSG_UNMAP: return do_unmap(body, len);
    case BPFG_PMSG_PING: return 0;
    case BPFG_PMSG_SYSCALL_HOOK: {
        int r = syscall_msg(h->type, body, len, errbuf, sizeof(errbuf), okbody, sizeof(okbody), &okbody_len);
        inert &= r != 0; /* re-armed (server/syscalls.c, syscalls_rearm): may go inert again */
        return r;
    }
    case BPFG_PMSG_SYSCALL_OFF:
    case BPFG_PMSG_SYSCALL_TAKEOVER:
        return syscall_msg(h->type, body, len, errbuf, sizeof(errbuf), okbody, sizeof(okbody), &okbody_len);
    case BPFG_PMSG_TOOL_MODE:
        return syscall_tool_mode(body, len, fd, errbuf, sizeof(errbuf), okbody, sizeof(okbody), &okbody_len);
    case BPFG_PMSG_TOOL_CHAN: return tool_new_channel(fd, errbuf, sizeof(errbuf));
    case BPFG_PMSG_SYSCALL_UNHOOK: return syscall_unhook(body, len, errbuf, sizeof(errbuf));
    case BPFG_PMSG_PIDNS: return helpers_set_pidns(body, len, errbuf, sizeof(errbuf));
    case BPFG_PMSG_TIMER: return timer_set(body, len, errbuf, sizeof(errbuf));
    case BPFG_PMSG_UNWIND: {
        struct bpfg_pmsg_unwind u;
        if (len < sizeof(u))
            return fail(-EBADMSG, "UNWIND message too short");
        memcpy(&u, body, sizeof(u));
        uint64_t page = 0;
        int r = unwind_setup(&u, errbuf, sizeof(errbuf), &page);
        memcpy(okbody, &page, sizeof(page)); /* the reply: the page's address */
        okbody_len = sizeof(page);
        return r;
    }
    case BPFG_PMSG_USTACK:
        if (fd < 0)
            return fail(-EBADF, "USTACK message carries no fd");
        return ustack_install(fd, errbuf, sizeof(errbuf));
    case BPFG_PMSG_DETACH: {
        int status;
        *exit_after = do_detach(&status);
        return status;
    }
    default: return fail(-EOPNOTSUPP, "unknown message type %u", h->type);
    }
}

/* quiet: a reconnect attempt, whose failure is expected (no server yet)
 * and must not mark the payload failed. */
#define CONN_FAIL(...)                  \
    do {                                \
        if (!quiet)                     \
            fail_early(p, __VA_ARGS__); \
    } while (0)

static int connect_server(struct bpfg_payload_params *p, bool quiet)
{
    long fd = rt_sys3(SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (rt_is_err(fd)) {
        CONN_FAIL("socket: %s", strerror((int)-fd));
        return -1;
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t n = strnlen(p->server_socket, sizeof(p->server_socket));
    if (n == 0 || n >= sizeof(sa.sun_path)) {
        CONN_FAIL("bad server socket path");
        rt_sys1(SYS_close, fd);
        return -1;
    }
    memcpy(sa.sun_path, p->server_socket, n);
    /* "@name" is an abstract socket (what bpfgraftd uses): no trailing NUL */
    size_t len = offsetof(struct sockaddr_un, sun_path) + n + 1;
    if (sa.sun_path[0] == '@') {
        sa.sun_path[0] = 0;
        len--;
    }
    long r = rt_sys3(SYS_connect, fd, (long)&sa, (long)len);
    if (rt_is_err(r)) {
        CONN_FAIL("connect to %.80s: %s", p->server_socket, strerror((int)-r));
        rt_sys1(SYS_close, fd);
        return -1;
    }
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    r = rt_sys5(SYS_getsockopt, fd, SOL_SOCKET, SO_PEERCRED, (long)&cred, (long)&clen);
    if (rt_is_err(r)) {
        CONN_FAIL("SO_PEERCRED: %s", strerror((int)-r));
        rt_sys1(SYS_close, fd);
        return -1;
    }
    if (cred.uid != p->server_uid) {
        CONN_FAIL("server socket owned by uid %u, expected %u", (unsigned)cred.uid, (unsigned)p->server_uid);
        rt_sys1(SYS_close, fd);
        return -1;
    }
    return (int)fd;
}

/* The monotonic clock in ms (the payload has no vDSO of its own). */
static uint64_t now_ms(void)
{
    struct timespec ts;
    rt_sys2(SYS_clock_gettime, CLOCK_MONOTONIC, (long)&ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t orphan_since; /* now_ms() when the server was lost; 0: connected */

/* The ABI the HELLO names: a test build (payload-abi-prev, test/restart)
 * says an older one to play a payload a previous server left, and lays
 * its HELLO out as that ABI did (abi/payload_abi.h, BPFG_HELLO_*_V2). */
#ifdef BPFG_PAYLOAD_ABI_OVERRIDE
#define HELLO_ABI BPFG_PAYLOAD_ABI_OVERRIDE
#else
#define HELLO_ABI BPFG_PAYLOAD_ABI_VERSION
#endif
#if HELLO_ABI == 2
#define HELLO_EXT_SIZE BPFG_HELLO_EXT_SIZE_V2
#define HELLO_ADOPT_SIZE BPFG_HELLO_ADOPT_SIZE_V2
#else
#define HELLO_EXT_SIZE sizeof(struct bpfg_pmsg_hello_ext)
#define HELLO_ADOPT_SIZE sizeof(struct bpfg_hello_adopt)
#endif

/* The HELLO body's inventory (BPFG_HELLO_F_RECONNECT): maps and programs
 * as this payload holds them. Returns the bytes written after `at`. */
static size_t pack_inventory(struct bpfg_payload_params *p, uint8_t *at)
{
    struct bpfg_hello_adopt a = {
        .params = (uint64_t)(uintptr_t)p, .orphan_ms = now_ms() - orphan_since, .trap_saved_action = trap_saved()};
    uint8_t *w = at + HELLO_ADOPT_SIZE;
    for (int i = 0; i < MAX_MAPS; i++) {
        if (!maps[i].map)
            continue;
        size_t size;
        uint8_t *area = map_value_area(maps[i].map, &size);
        struct bpfg_hello_map m = {.map_id = maps[i].id,
                                   .handle = (uint64_t)(uintptr_t)maps[i].map,
                                   .value_area = (uint64_t)(uintptr_t)area,
                                   .value_size = size};
        memcpy(w, &m, sizeof(m));
        w += sizeof(m);
        a.nmaps++;
    }
    for (int i = 0; i < MAX_PROGS; i++) {
        if (!progs[i])
            continue;
        struct bpfg_hello_prog hp = {progs[i]->id, progs[i]->engine, (uint64_t)(uintptr_t)progs[i]};
        memcpy(w, &hp, sizeof(hp));
        w += sizeof(hp);
        a.nprogs++;
    }
    memcpy(at, &a, HELLO_ADOPT_SIZE);
    return (size_t)(w - at);
}

static int send_hello(struct bpfg_payload_params *p, bool reconnect)
{
    struct bpfg_pmsg_hello_ext hello = {
        .base =
            {
                .pid = (uint32_t)rt_sys0(SYS_getpid),
                .abi_version = HELLO_ABI,
                .token = p->token,
                .load_base = p->load_base,
                .uprobe_entry = (uint64_t)(uintptr_t)bpfg_uprobe_entry,
                .uretprobe_return = (uint64_t)(uintptr_t)bpfg_uretprobe_return,
                .hook_table = (uint64_t)(uintptr_t)bpfg_hooks,
                .max_hooks = BPFG_MAX_HOOKS,
                .nr_cpus = rt_nr_possible_cpus(),
            },
        .thread_table = (uint64_t)(uintptr_t)bpfg_threads,
        .max_threads = BPFG_MAX_THREADS,
        .shadow_depth = BPFG_SHADOW_DEPTH,
        .uretprobe_handler = (uint64_t)(uintptr_t)bpfg_uretprobe_handler,
        .uret_trampolines = (uint64_t)(uintptr_t)&unwind_ret0,
        .stats_table = (uint64_t)(uintptr_t)&bpfg_stats,
    };
    if (!reconnect)
        return send_msg(BPFG_PMSG_HELLO, 0, 0, 0, &hello, HELLO_EXT_SIZE);
    size_t cap = sizeof(hello) + sizeof(struct bpfg_hello_adopt) + MAX_MAPS * sizeof(struct bpfg_hello_map) +
                 MAX_PROGS * sizeof(struct bpfg_hello_prog);
    uint8_t *buf = malloc(cap);
    if (!buf)
        return -ENOMEM;
    memcpy(buf, &hello, HELLO_EXT_SIZE);
    size_t len = HELLO_EXT_SIZE + pack_inventory(p, buf + HELLO_EXT_SIZE);
    uint16_t flags = BPFG_HELLO_F_RECONNECT | (inert ? BPFG_HELLO_F_INERT : 0);
    int r = send_msg(BPFG_PMSG_HELLO, flags, 0, 0, buf, len);
    free(buf);
    return r;
}

/* Serves one server connection until DETACH (the thread exits) or until
 * the connection is lost (returns). */
static void serve(struct bpfg_payload_params *p)
{
    for (;;) {
        struct pollfd pfd[2] = {{.fd = sock, .events = POLLIN}, {.fd = tool_wake_fd(), .events = POLLIN}};
        long r = rt_sys3(SYS_poll, (long)pfd, 2, timer_wait_ms(POLL_MS));
        if (pfd[1].revents & POLLIN)
            tool_tickets_prepare();
        timer_run_due();
        drain_trace();
        report_sites();
        tool_reap();
        if (ustack_take_stale())
            send_msg(BPFG_PMSG_USTACK_STALE, 0, 0, 0, NULL, 0);
        if (r == 0 || r == -EINTR || (!rt_is_err(r) && !pfd[0].revents))
            continue;
        if (rt_is_err(r))
            return;
        struct bpfg_pmsg_hdr h;
        uint8_t *body;
        int fd;
        int err = recv_msg(&h, &body, &fd);
        if (err) {
            free(body);
            if (fd >= 0)
                rt_sys1(SYS_close, fd);
            return;
        }
        bool exit_after = false;
        int status = handle(&h, body, fd, &exit_after);
        free(body);
        if (fd >= 0)
            rt_sys1(SYS_close, fd);
        drain_trace();
        if (reply(h.seq, status) != 0 && !exit_after)
            return;
        if (exit_after) {
            rt_sys1(SYS_close, sock);
            __atomic_store_n(&p->state, BPFG_PAYLOAD_EXITED, __ATOMIC_RELEASE);
            rt_exit_thread(0);
        }
    }
}

/* The grace period ran out: programs stop running (the hook slots keep
 * their sites and resume addresses, so threads in a stub and patched
 * sites just go on). Maps and programs stay for a server to adopt. */
static void go_inert(struct bpfg_payload_params *p)
{
    hooks_remove_all();
    syscall_remove_all();
    inert = true;
    __atomic_store_n(&p->state, BPFG_PAYLOAD_INERT, __ATOMIC_RELEASE);
}

/* Sleeps ms, running timer programs (interval:) as they fall due unless
 * inert: they tick on without a server, like the hooks. */
static void orphan_sleep(int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    for (uint64_t now = now_ms(); now < end; now = now_ms()) {
        int wait = inert ? (int)(end - now) : timer_wait_ms((int)(end - now));
        struct timespec ts = {wait / 1000, (long)(wait % 1000) * 1000000};
        rt_sys2(SYS_nanosleep, (long)&ts, 0);
        if (!inert)
            timer_run_due();
    }
}

/* Without a server: trace lines and syscall sites have nowhere to go. */
static void orphan_wait(struct bpfg_payload_params *p)
{
    orphan_sleep(p->reconnect_ms ? (int)p->reconnect_ms : 100);
    struct trace_line line;
    while (trace_ring_pop(&line))
        ;
    uint64_t sites[64];
    while (syscall_take_sites(sites, 64) != 0)
        ;
    if (!inert && p->orphan_grace_ms && now_ms() - orphan_since >= p->orphan_grace_ms)
        go_inert(p);
}

/* Connects and says HELLO; -1 when no server answers. */
static int open_session(struct bpfg_payload_params *p, bool reconnect)
{
    sock = connect_server(p, reconnect);
    if (sock < 0)
        return -1;
    syscall_set_socket(sock);
    /* CONNECTED before HELLO: a server that has the HELLO sees it */
    uint32_t prev = __atomic_exchange_n(&p->state, BPFG_PAYLOAD_CONNECTED, __ATOMIC_ACQ_REL);
    if (send_hello(p, reconnect) != 0) {
        syscall_set_socket(-1);
        rt_sys1(SYS_close, sock);
        sock = -1;
        __atomic_store_n(&p->state, reconnect ? prev : BPFG_PAYLOAD_FAILED, __ATOMIC_RELEASE);
        return -1;
    }
    return 0;
}

/* The thread's tid where glibc keeps it in the TCB. The payload thread
 * calls glibc-using code of the target (the unwinders' registration
 * functions), and glibc's rwlocks compare their writer field with that
 * tid: with 0 there, an unlocked rwlock looks write-locked by this thread,
 * so pthread_rwlock_wrlock fails with EDEADLK and the unlock after it
 * flips the lock into write-locked for good (LLVM libunwind's FDE cache
 * after an odd number of __unw_add_dynamic_fde calls: every later
 * exception in the process hangs). */
static void set_fake_tid(int32_t tid)
{
    uint32_t off = helpers_tcb_tid_offset();
    if (off && off + sizeof(tid) <= sizeof(fake_tcb))
        memcpy((char *)fake_tcb + off, &tid, sizeof(tid));
}

void bpfg_payload_main(struct bpfg_payload_params *p)
{
    fake_tcb[0] = (uint64_t)(uintptr_t)fake_tcb;
    rt_sys2(SYS_arch_prctl, 0x1002 /* ARCH_SET_FS */, (long)fake_tcb);
    p->payload_tid = (int32_t)rt_sys0(SYS_gettid);
    __atomic_store_n(&p->state, BPFG_PAYLOAD_RUNNING, __ATOMIC_RELEASE);
    if (p->magic != BPFG_PAYLOAD_MAGIC || p->version != BPFG_PAYLOAD_ABI_VERSION) {
        fail_early(p, "parameter block magic %#x version %u, expected %#x version %u", p->magic, p->version,
                   BPFG_PAYLOAD_MAGIC, BPFG_PAYLOAD_ABI_VERSION);
        return;
    }
    rt_init(p);
    hooks_init();
    helpers_init();
    set_fake_tid(p->payload_tid);
    if (open_session(p, false) != 0)
        return;
    for (;;) {
        serve(p);
        /* The server is gone (crashed, restarting): hooks and programs
         * keep running; wait for a server to adopt us (server/README.md,
         * "Restarts"). */
        syscall_set_socket(-1);
        rt_sys1(SYS_close, sock);
        sock = -1;
        orphan_since = now_ms();
        __atomic_store_n(&p->state, inert ? BPFG_PAYLOAD_INERT : BPFG_PAYLOAD_ORPHAN, __ATOMIC_RELEASE);
        do
            orphan_wait(p);
        while (open_session(p, true) != 0);
        syscall_reconnected();
    }
}
