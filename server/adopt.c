/* Payloads that reconnect after a restart (adopt.h). The payload is the
 * truth for what it holds (maps, programs, active hook slots); the record
 * a previous server left (state.c) adds what only the server knew (stubs,
 * patches, syscall sites); a hook the record lacks (the server died right
 * after placing it, or there is no record: an orphan of a server whose
 * state is gone) is rebuilt from the slot and the mapped file's bytes. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "adopt.h"
#include "hookgen.h"
#include "injector.h"
#include "log.h"
#include "pmsg.h"
#include "procfs.h"
#include "reinject.h"
#include "server.h"
#include "state.h"
#include "targets.h"
#include "tool.h"

#define HELLO_MAX (64u << 10)
#define HELLO_TIMEOUT_MS 1000
#define MAX_RELEASED 64
#define PATCH_MAX 16 /* the longest run of bytes a patch changes */

static const char other_abi[] = "another payload ABI version";

/* Payloads of another ABI detached already: their reconnects are closed. */
static struct {
    pid_t pid;
    uint64_t base;
} released[MAX_RELEASED];
static size_t nreleased;

struct hello {
    struct bpfg_pmsg_hdr h;
    struct bpfg_pmsg_hello_ext ext;
    struct bpfg_hello_adopt a;
    const struct bpfg_hello_map *maps;
    const struct bpfg_hello_prog *progs;
    char *body;
};

/* Reads and checks a reconnect HELLO. Returns NULL-free why on refusal. */
static const char *read_hello(int fd, struct hello *hi)
{
    if (pmsg_read_full(fd, &hi->h, sizeof(hi->h), HELLO_TIMEOUT_MS) != 0 || hi->h.type != BPFG_PMSG_HELLO)
        return "no HELLO";
    size_t len = hi->h.len - sizeof(hi->h);
    if (hi->h.len < sizeof(hi->h) || len > HELLO_MAX || !(hi->body = malloc(len + 1)))
        return "HELLO of a bad size";
    if (pmsg_read_full(fd, hi->body, len, HELLO_TIMEOUT_MS) != 0)
        return "truncated HELLO";
    if (len < sizeof(hi->ext.base))
        return "short HELLO";
    memcpy(&hi->ext.base, hi->body, sizeof(hi->ext.base));
    if (hi->ext.base.abi_version != adopt_payload_abi())
        return other_abi;
    if (!(hi->h.flags & BPFG_HELLO_F_RECONNECT))
        return "not a reconnect (nobody is waiting for this payload)";
    /* ABI 2's HELLO lacks the last field of each struct: read as zero */
    bool v2 = hi->ext.base.abi_version == 2;
    size_t ext = v2 ? BPFG_HELLO_EXT_SIZE_V2 : sizeof(hi->ext), adopt = v2 ? BPFG_HELLO_ADOPT_SIZE_V2 : sizeof(hi->a);
    if (len < ext + adopt)
        return "HELLO without inventory";
    memcpy(&hi->ext, hi->body, ext);
    memcpy(&hi->a, hi->body + ext, adopt);
    size_t want = ext + adopt + hi->a.nmaps * sizeof(*hi->maps) + hi->a.nprogs * sizeof(*hi->progs);
    if (hi->a.nmaps > 4096 || hi->a.nprogs > 4096 || len != want)
        return "inventory does not fill the HELLO";
    hi->maps = (const void *)(hi->body + ext + adopt);
    hi->progs = (const void *)(hi->maps + hi->a.nmaps);
    return NULL;
}

static int read_mem(pid_t pid, uint64_t addr, void *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = pread(fd, buf, len, (off_t)addr);
    int err = n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
    close(fd);
    return err;
}

/* What the payload's parameters say about its memory (injector view). */
static int fill_injected(struct target *t, const struct hello *hi)
{
    struct bpfg_payload_params p;
    int err = read_mem(t->pid, hi->a.params, &p, sizeof(p));
    if (err)
        return err;
    if (p.magic != BPFG_PAYLOAD_MAGIC || p.load_base != hi->ext.base.load_base)
        return -EBADMSG;
    t->inj = (struct bpfg_injected){
        .base = p.load_base,
        .size = p.load_size,
        .stack_base = p.stack_base,
        .stack_size = p.stack_size,
        .hstacks_base = p.handler_stacks,
        .hstacks_size = p.handler_stacks_size,
        .params = hi->a.params,
        .uprobe_entry = hi->ext.base.uprobe_entry,
        .uretprobe_return = hi->ext.base.uretprobe_return,
    };
    t->token = p.token;
    t->payload_tid = (uint32_t)p.payload_tid;
    return 0;
}

/* Maps and programs as the payload holds them. */
static int take_inventory(struct target *t, const struct hello *hi)
{
    targets_free_sent(t);
    t->maps_sent = calloc(hi->a.nmaps + 1, sizeof(*t->maps_sent));
    t->map_addrs = calloc(hi->a.nmaps + 1, sizeof(*t->map_addrs));
    t->progs_sent = calloc(hi->a.nprogs + 1, sizeof(*t->progs_sent));
    t->progs_engine = calloc(hi->a.nprogs + 1, sizeof(*t->progs_engine));
    if (!t->maps_sent || !t->map_addrs || !t->progs_sent || !t->progs_engine)
        return -ENOMEM;
    for (uint32_t i = 0; i < hi->a.nmaps; i++) {
        t->maps_sent[i] = hi->maps[i].map_id;
        t->map_addrs[i] =
            (struct target_map_addr){true, hi->maps[i].handle, hi->maps[i].value_area, hi->maps[i].value_size};
    }
    for (uint32_t i = 0; i < hi->a.nprogs; i++) {
        t->progs_sent[i] = hi->progs[i].prog_id;
        t->progs_engine[i] = (uint8_t)hi->progs[i].engine;
    }
    t->nmaps_sent = hi->a.nmaps;
    t->nprogs_sent = hi->a.nprogs;
    return 0;
}

/* Tiered programs whose LLVM code the last server still owed when it
 * stopped (the payload's inventory knows no such flag): owed again if the
 * payload still runs them on x86, so this server's loop does the swap. */
static void keep_owed_llvm(struct target *t, const uint32_t *ids, const uint8_t *engines, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!(engines[i] & TARGET_ENGINE_LLVM_DUE))
            continue;
        for (size_t k = 0; k < t->nprogs_sent; k++)
            if (t->progs_sent[k] == ids[i] && t->progs_engine[k] == BPFG_ENGINE_X86)
                t->progs_engine[k] |= TARGET_ENGINE_LLVM_DUE;
    }
}

struct file_at {
    uint64_t addr, start, end, off;
};

static int find_mapping(const struct bpfg_procfs_map *m, void *arg)
{
    struct file_at *f = arg;
    if (f->addr < m->start || f->addr >= m->end)
        return 0;
    if (m->path[0] != '/')
        return 1;
    f->start = m->start;
    f->end = m->end;
    f->off = m->offset + (f->addr - m->start);
    return 2;
}

/* The bytes the mapped file has at addr (the code as it was before any
 * patch), read through /proc/PID/map_files: the very file mapped, even if
 * the path now names another. */
static int file_bytes(pid_t pid, uint64_t addr, uint8_t *buf, size_t len)
{
    struct file_at f = {.addr = addr};
    if (bpfg_procfs_maps(pid, find_mapping, &f) != 2)
        return -ENOENT;
    char path[96];
    snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", (int)pid, (unsigned long long)f.start,
             (unsigned long long)f.end);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = pread(fd, buf, len, (off_t)f.off);
    close(fd);
    return n == (ssize_t)len ? 0 : -EIO;
}

static uint32_t prog_id_at(const struct hello *hi, uint64_t addr)
{
    for (uint32_t i = 0; i < hi->a.nprogs; i++)
        if (hi->progs[i].addr == addr)
            return hi->progs[i].prog_id;
    return 0;
}

/* A short jmp (hop) found at a hook's site: its 2 bytes there, and the
 * 5-byte jmp at the slot it jumps to (file and memory); left a plain
 * patch when the slot holds no jmp. */
static void rebuild_hop(pid_t pid, struct target_hook *h, const uint8_t *mem)
{
    uint64_t slot = h->plan.site + 2 + (uint64_t)(int64_t)(int8_t)mem[1];
    if (read_mem(pid, slot, h->plan.slot_patch, BPFG_HOP_SLOT_LEN) != 0 ||
        file_bytes(pid, slot, h->plan.slot_orig, BPFG_HOP_SLOT_LEN) != 0 || h->plan.slot_patch[0] != 0xe9)
        return;
    h->plan.hop = true;
    h->plan.slot = slot;
    h->plan.patch_len = 2;
}

/* A hook the record does not know, from the payload's slot and the file:
 * the patch is where memory differs from the file, the stub the page the
 * slot resumes in. */
static void rebuild_hook(struct target *t, uint32_t index, const struct bpfg_hook_slot *slot, bool active)
{
    struct target_hook *h = &t->hooks[index];
    uint8_t mem[16], file[20];
    if (read_mem(t->pid, slot->site, mem, sizeof(mem)) != 0 || file_bytes(t->pid, slot->site - 4, file, 20) != 0) {
        srv_log(SRV_WARN, "target %d: hook slot %u at 0x%llx: cannot read its code; left as is", (int)t->pid, index,
                (unsigned long long)slot->site);
        return;
    }
    memset(h, 0, sizeof(*h));
    h->index = index;
    h->plan.site = slot->site;
    h->plan.func = memcmp(file, "\xf3\x0f\x1e\xfa", 4) == 0 ? slot->site - 4 : slot->site;
    for (size_t i = 0; i < sizeof(mem); i++)
        if (mem[i] != file[4 + i])
            h->plan.patch_len = i + 1;
    memcpy(h->plan.orig, file + 4, sizeof(h->plan.orig));
    memcpy(h->plan.patch, mem, sizeof(h->plan.patch));
    if (!h->plan.patch_len && !active) {
        memset(h, 0, sizeof(*h)); /* a removed hook whose site was put back */
        return;
    }
    h->plan.trap = h->plan.patch_len == 1 && mem[0] == 0xcc;
    if (mem[0] == 0xeb && file[4] != 0xeb)
        rebuild_hop(t->pid, h, mem);
    h->plan.has_call = true; /* unknown: free the stub only when no frame may return into it */
    h->plan.stub_addr = slot->resume & ~4095ull;
    h->stub_size = slot->resume ? 4096 : 0;
    h->used = true;
    t->nhooks++;
}

static void slot_progs(struct target_hook *h, const struct hello *hi, const struct bpfg_hook_slot *slot)
{
    h->nprogs = 0;
    for (int k = 0; k < BPFG_HOOK_MAX_PROGS * 2 && h->nprogs < TARGET_HOOK_PROGS; k++) {
        uint64_t addr = k < BPFG_HOOK_MAX_PROGS ? slot->entry_progs[k] : slot->ret_progs[k - BPFG_HOOK_MAX_PROGS];
        uint32_t id = addr ? prog_id_at(hi, addr) : 0;
        if (!id)
            continue;
        h->prog_ids[h->nprogs] = id;
        h->cookies[h->nprogs] =
            k < BPFG_HOOK_MAX_PROGS ? slot->entry_cookies[k] : slot->ret_cookies[k - BPFG_HOOK_MAX_PROGS];
        h->kinds[h->nprogs++] = k < BPFG_HOOK_MAX_PROGS ? BPFG_HOOK_UPROBE : BPFG_HOOK_URETPROBE;
    }
}

/* Active slots of the payload: the programs they run; slots the record
 * lacks are rebuilt, and so are inactive slots whose site is still
 * patched. An inert payload has no active slot: the record's hooks stay
 * (their sites are still patched) with their programs as recorded. */
static int merge_hooks(struct target *t, const struct hello *hi)
{
    struct bpfg_hook_slot *slots = calloc(BPFG_MAX_HOOKS, sizeof(*slots));
    if (!slots)
        return -ENOMEM;
    int err = read_mem(t->pid, hi->ext.base.hook_table, slots, BPFG_MAX_HOOKS * sizeof(*slots));
    for (uint32_t i = 0; !err && i < BPFG_MAX_HOOKS && i < TARGET_MAX_HOOKS; i++) {
        const struct bpfg_hook_slot *sl = &slots[i];
        bool active = false;
        for (int k = 0; k < BPFG_HOOK_MAX_PROGS; k++)
            active |= sl->entry_progs[k] || sl->ret_progs[k];
        /* an inactive slot still patched: its programs were removed
         * (inert, or a server died between UNHOOK and putting the site
         * back) */
        if (!sl->site || (!active && t->hooks[i].used))
            continue;
        if (!t->hooks[i].used || t->hooks[i].plan.site != sl->site)
            rebuild_hook(t, i, sl, active);
        if (t->hooks[i].used)
            slot_progs(&t->hooks[i], hi, sl);
    }
    free(slots);
    return err;
}

static uid_t uid_of(pid_t pid)
{
    int uid = 0;
    bpfg_procfs_status_int(pid, 0, "Uid", &uid);
    return (uid_t)uid;
}

/* A patch its last server was killed in the middle of (the journal in the
 * payload's parameters says so): finished, every thread stopped, before
 * the hooks are read (a hook the record lacks is rebuilt from where
 * memory differs from the file). */
static void finish_patch(struct target *t)
{
    uint64_t journal = t->inj.params + offsetof(struct bpfg_payload_params, journal);
    uint32_t step = 0;
    if (read_mem(t->pid, journal, &step, sizeof(step)) != 0 || step == 0)
        return;
    struct bpfg_stopped st;
    char ierr[BPFG_ERRLEN];
    int err = bpfg_stop_process(t->pid, &st, ierr);
    if (err) {
        srv_log(SRV_WARN, "target %d: a code patch left at step %u is not finished: %s", (int)t->pid, step, ierr);
        return; /* its int3 still sends threads on: the next adoption tries again */
    }
    err = bpfg_text_poke_finish(&st, journal, &step);
    bpfg_resume_process(&st, NULL);
    if (err)
        srv_log(SRV_ERROR, "target %d: the code patch left at step %u cannot be finished: %s", (int)t->pid, step,
                err == -EBADMSG ? "its bytes are not those the journal names" : strerror(-err));
    else if (step)
        srv_log(SRV_INFO, "target %d: finished the code patch its last server was killed in (at step %u)", (int)t->pid,
                step);
}

static int build_target(struct server *s, struct target *t, const struct hello *hi)
{
    t->thread_table = hi->ext.thread_table;
    t->max_threads = hi->ext.max_threads;
    t->shadow_depth = hi->ext.shadow_depth;
    t->uret_trampolines = hi->ext.uret_trampolines;
    t->stats_table = hi->ext.stats_table;
    t->hook_table = hi->ext.base.max_hooks >= TARGET_MAX_HOOKS ? hi->ext.base.hook_table : 0;
    t->inert = hi->h.flags & BPFG_HELLO_F_INERT;
    int err = fill_injected(t, hi);
    if (err)
        return err;
    finish_patch(t);
    err = state_load_target(s, t, t->token);
    snprintf(t->adopted, sizeof(t->adopted), "%s", err ? "inventory" : "record");
    if (err && err != -ENOENT)
        srv_log(SRV_WARN, "target %d: its record is unusable (%s): rebuilt from the payload", (int)t->pid,
                strerror(-err));
    if (err)
        memset(t->hooks, 0, sizeof(t->hooks)), t->nhooks = 0;
    if (!t->trap_action) /* a record written before the first HOOK's reply, or none */
        t->trap_action = hi->a.trap_saved_action;
    uint32_t *rec_ids = t->progs_sent; /* the record's, for its owed LLVM code */
    uint8_t *rec_engines = t->progs_engine;
    size_t rec_n = t->nprogs_sent;
    t->progs_sent = NULL, t->progs_engine = NULL, t->nprogs_sent = 0;
    if ((err = take_inventory(t, hi)) == 0)
        err = merge_hooks(t, hi);
    if (!err)
        keep_owed_llvm(t, rec_ids, rec_engines, rec_n);
    free(rec_ids);
    free(rec_engines);
    return err;
}

static bool was_released(pid_t pid, uint64_t base)
{
    for (size_t i = 0; i < nreleased; i++)
        if (released[i].pid == pid && released[i].base == base)
            return true;
    return false;
}

/* A payload of another ABI: its HELLO's first fields (pid, version,
 * token, load base; the same in every ABI) are all that is read. Nothing
 * is sent to it, but to a `bpfgraft run` tool's of an ABI whose tool
 * channel this server speaks: a new channel (tools_adopted). */
static void adopt_other_abi(struct server *s, int fd, pid_t pid, const struct hello *hi)
{
    struct target *t = was_released(pid, hi->ext.base.load_base) ? NULL : calloc(1, sizeof(*t));
    if (!t) {
        close(fd);
        return;
    }
    t->pid = pid;
    t->uid = uid_of(pid);
    t->sock = fd;
    t->pidfd = -1;
    t->foreign_abi = hi->ext.base.abi_version;
    t->inj.base = hi->ext.base.load_base;
    t->token = hi->ext.base.token;
    bool tool = tools_has_pid(pid), served = tool && tools_speak_abi(t->foreign_abi);
    if (served)
        snprintf(t->adopted, sizeof(t->adopted), "tool-abi-%u", t->foreign_abi % 100);
    else
        snprintf(t->adopted, sizeof(t->adopted), tool ? "tool-as-is" : "other-abi");
    if (served)
        srv_log(SRV_INFO,
                "tool %d: its payload (at 0x%llx) speaks payload ABI %u, this server %u: adopted as a `bpfgraft run` "
                "tool (this server speaks the tool channel of payload ABIs %u to %u): its bpf() calls are served "
                "over a new tool channel; nothing else is sent to it",
                (int)pid, (unsigned long long)t->inj.base, t->foreign_abi, adopt_payload_abi(), TOOLS_OLDEST_ABI,
                adopt_payload_abi());
    else
        srv_log(SRV_WARN,
                "target %d: its payload (at 0x%llx) speaks payload ABI %u, this server %u: listed, not adopted%s; "
                "detach it to restore its code",
                (int)pid, (unsigned long long)t->inj.base, t->foreign_abi, adopt_payload_abi(),
                tool ? " (a `bpfgraft run` tool's, whose tool channel this server does not speak)" : "");
    targets_add(s, t, "adopted");
    if (served)
        tools_adopted(s, t);
}

/* A payload of another ABI: a tool's is adopted as it is (its fd table
 * and map handles live in it: not re-injected); another is replaced by
 * re-injection when its record is here, else listed; closed when it was
 * released, or replaced already. */
static void adopt_foreign(struct server *s, int fd, pid_t pid, const struct hello *hi)
{
    const struct target *t = targets_find(&s->targets, pid);
    if (t && t->replaced_base != hi->ext.base.load_base)
        srv_log(SRV_WARN, "refused a payload reconnecting from pid %d: %s; the process is attached already", (int)pid,
                other_abi);
    if (t)
        close(fd);
    else if (tools_has_pid(pid) || reinject_other_abi(s, fd, pid, uid_of(pid), &hi->ext.base) != 0)
        adopt_other_abi(s, fd, pid, hi);
}

static void adopt_one(struct server *s, int fd)
{
    struct ucred cred;
    socklen_t clen = sizeof(cred);
    struct hello hi = {0};
    const char *why = NULL;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0)
        why = "no peer credentials";
    else if ((why = read_hello(fd, &hi)) == other_abi ||
             (!why && reinject_leftover(s, fd, cred.pid, hi.ext.base.token))) {
        if (why == other_abi)
            adopt_foreign(s, fd, cred.pid, &hi);
        free(hi.body);
        return;
    } else if (!why && targets_find(&s->targets, cred.pid))
        why = "the process is attached already";
    struct target *t = why ? NULL : calloc(1, sizeof(*t));
    int err = 0;
    if (t) {
        t->pid = cred.pid;
        t->uid = uid_of(cred.pid);
        t->sock = fd;
        t->pidfd = -1;
        err = build_target(s, t, &hi);
    }
    if (why || !t || err) {
        srv_log(SRV_WARN, "refused a payload reconnecting from pid %d: %s", (int)cred.pid,
                why  ? why
                : !t ? "out of memory"
                     : strerror(-err));
        if (t) {
            targets_free_sent(t);
            free(t);
        }
        close(fd);
    } else {
        srv_log(SRV_INFO, "target %d: adopted (payload ABI %u, from its %s): %zu hooks, %zu programs, %zu maps%s%s",
                (int)t->pid, hi.ext.base.abi_version, t->adopted, t->nhooks, t->nprogs_sent, t->nmaps_sent,
                t->inert ? "; inert: " : "", t->inert ? "its programs stopped after the grace period" : "");
        targets_add(s, t, "adopted");
        reinject_finish(s, t);
        if (t->inert && !strcmp(t->adopted, "record") && targets_rearm(s, t))
            targets_save(s, t);
        tools_adopted(s, t);
    }
    free(hi.body);
}

void adopt_accept(struct server *s)
{
    for (;;) {
        int fd = accept4(s->targets.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        adopt_one(s, fd);
    }
}

struct text_scan {
    struct bpfg_stopped *st;
    unsigned restored, busy;
    int err;
};

static bool patch_opcode(uint8_t b)
{
    return b == 0xe9 || b == 0xeb || b == 0xcc;
}

/* Restores the run [i, j) of a mapping at start if it looks like a patch
 * and no thread is inside it (past its first byte). */
static void restore_run(struct text_scan *ts, uint64_t start, const uint8_t *mem, const uint8_t *file, size_t i,
                        size_t j)
{
    if (j - i > PATCH_MAX || !patch_opcode(mem[i]) || patch_opcode(file[i]))
        return;
    if (bpfg_any_thread_in(ts->st, start + i + 1, start + j, NULL)) {
        ts->busy++;
        return;
    }
    int r = bpfg_mem_write(ts->st, start + i, file + i, j - i);
    if (r)
        ts->err = r;
    else
        ts->restored++;
}

static int restore_mapping(const struct bpfg_procfs_map *m, void *arg)
{
    struct text_scan *ts = arg;
    if (m->perms[2] != 'x' || m->path[0] != '/' || !strncmp(m->path, "/memfd:", 7))
        return 0;
    size_t len = m->end - m->start;
    uint8_t *mem = malloc(len), *file = malloc(len);
    int r = mem && file ? bpfg_mem_read(ts->st, m->start, mem, len) : -ENOMEM;
    if (!r)
        r = file_bytes(ts->st->pid, m->start, file, len);
    for (size_t i = 0; !r && i < len;) {
        if (mem[i] == file[i]) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < len && j - i <= PATCH_MAX && mem[j] != file[j])
            j++;
        restore_run(ts, m->start, mem, file, i, j);
        i = j;
    }
    free(mem);
    free(file);
    return 0; /* a mapping that cannot be read (a file shorter than it) is left as is */
}

int adopt_restore_text(pid_t pid, char *err, size_t errlen)
{
    struct bpfg_stopped st;
    char ierr[BPFG_ERRLEN];
    int r = bpfg_stop_process(pid, &st, ierr);
    if (r)
        return snprintf(err, errlen, "%s", ierr), r;
    struct text_scan ts = {.st = &st};
    r = bpfg_procfs_maps(pid, restore_mapping, &ts);
    bpfg_resume_process(&st, NULL);
    if (r < 0 || ts.err)
        return snprintf(err, errlen, "restoring the code of process %d: %s", (int)pid, strerror(-(r < 0 ? r : ts.err))),
               r < 0 ? r : ts.err;
    if (ts.busy)
        srv_log(SRV_WARN, "target %d: %u patch(es) left: a thread was inside them", (int)pid, ts.busy);
    return (int)ts.restored;
}

bool adopt_tool_served(const struct target *t)
{
    return t->foreign_abi && !strncmp(t->adopted, "tool-abi-", 9);
}

void adopt_release(const struct target *t)
{
    if (nreleased < MAX_RELEASED)
        released[nreleased++] = (typeof(released[0])){t->pid, t->replaced_base ? t->replaced_base : t->inj.base};
}

uint32_t adopt_payload_abi(void)
{
    static uint32_t abi;
    if (!abi) {
        const char *v = getenv("BPFGRAFT_TEST_PAYLOAD_ABI");
        abi = v && atoi(v) > 0 ? (uint32_t)atoi(v) : BPFG_PAYLOAD_ABI_VERSION;
    }
    return abi;
}
