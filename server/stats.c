/* Statistics: the switch and the counters in every payload's stats table
 * (payload_abi.h section 9), read and written with process_vm_readv /
 * process_vm_writev: the target is never stopped. */
#define _GNU_SOURCE
#include "stats.h"

#include <errno.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log.h"
#include "payload_abi.h"
#include "rpc.h"
#include "server.h"
#include "state.h"

void stats_init(struct stats *st)
{
    st->enabled = false;
    st->kernel_fd = -1;
}

void stats_close(struct stats *st)
{
    if (st->kernel_fd >= 0)
        close(st->kernel_fd);
    st->kernel_fd = -1;
}

static int target_mem(const struct target *t, uint64_t addr, void *buf, size_t len, bool write)
{
    if (!t->stats_table || t->foreign_abi)
        return -ENOENT;
    struct iovec local = {buf, len};
    struct iovec remote = {(void *)(uintptr_t)addr, len};
    ssize_t n = write ? process_vm_writev(t->pid, &local, 1, &remote, 1, 0)
                      : process_vm_readv(t->pid, &local, 1, &remote, 1, 0);
    return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EIO;
}

int stats_push(const struct server *s, const struct target *t)
{
    if (!t->stats_table && !t->foreign_abi)
        return 0; /* a payload of ABI 2 (HELLO without stats_table): none to switch */
    uint32_t on = s->stats.enabled;
    return target_mem(t, t->stats_table + offsetof(struct bpfg_stats_table, enabled), &on, sizeof(on), true);
}

/* The kernel counts its programs' run time only while someone holds a
 * BPF_ENABLE_STATS fd (or the sysctl is set). */
static void kernel_stats(struct stats *st, bool enabled)
{
    if (!enabled) {
        stats_close(st);
        return;
    }
    if (st->kernel_fd >= 0)
        return;
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.enable_stats.type = BPF_STATS_RUN_TIME;
    st->kernel_fd = (int)syscall(SYS_bpf, BPF_ENABLE_STATS, &a, sizeof(a));
    if (st->kernel_fd < 0)
        srv_log(SRV_INFO, "stats: the kernel's run time stats stay as they are (BPF_ENABLE_STATS: %s)",
                strerror(errno));
}

/* The switch outlives the server (STATE_DIR/restart/settings/stats): a
 * restarted one counts as its predecessor did. */
static void stats_save(struct server *s)
{
    int err = state_write(s, "settings", "stats", s->stats.enabled ? "1\n" : "0\n", 2);
    if (err && err != -EBADF)
        srv_log(SRV_WARN, "stats: the switch is not kept for a restart: %s", strerror(-err));
}

void stats_restore(struct server *s)
{
    char *buf;
    size_t len;
    if (state_read(s, "settings", "stats", &buf, &len) != 0)
        return;
    if (len > 0 && buf[0] == '1') {
        s->stats.enabled = true;
        kernel_stats(&s->stats, true);
        srv_log(SRV_INFO, "stats enabled, as the previous server left them");
    }
    free(buf);
}

void stats_set(struct server *s, bool enabled)
{
    s->stats.enabled = enabled;
    stats_save(s);
    kernel_stats(&s->stats, enabled);
    for (struct target *t = s->targets.list; t; t = t->next) {
        int err = stats_push(s, t);
        if (err && err != -ENOENT)
            srv_log(SRV_WARN, "target %d: stats %s: %s", (int)t->pid, enabled ? "on" : "off", strerror(-err));
    }
    srv_log(SRV_INFO, "stats %s", enabled ? "enabled" : "disabled");
}

bool stats_prog_in(const struct target *t, uint32_t prog_id, struct stats_run *out)
{
    static struct bpfg_prog_stats progs[BPFG_STATS_MAX_PROGS]; /* the server is single-threaded */
    if (!prog_id ||
        target_mem(t, t->stats_table + offsetof(struct bpfg_stats_table, progs), progs, sizeof(progs), false) != 0)
        return false;
    for (size_t i = 0; i < BPFG_STATS_MAX_PROGS; i++)
        if (progs[i].prog_id == prog_id) {
            *out = (struct stats_run){progs[i].run_cnt, progs[i].run_time_ns};
            return true;
        }
    return false;
}

void stats_prog_total(struct server *s, uint32_t prog_id, struct stats_run *out)
{
    *out = (struct stats_run){0, 0};
    struct stats_run one;
    for (struct target *t = s->targets.list; t; t = t->next)
        if (stats_prog_in(t, prog_id, &one)) {
            out->run_cnt += one.run_cnt;
            out->run_time_ns += one.run_time_ns;
        }
}

void stats_pack_prog_targets(struct server *s, uint32_t prog_id, msgpack_packer *pk)
{
    struct {
        pid_t pid;
        struct stats_run run;
    } *rows = calloc(s->targets.count ? s->targets.count : 1, sizeof(*rows));
    size_t n = 0;
    for (struct target *t = s->targets.list; rows && t && n < s->targets.count; t = t->next)
        if (stats_prog_in(t, prog_id, &rows[n].run))
            rows[n++].pid = t->pid;
    msgpack_pack_array(pk, n);
    for (size_t i = 0; i < n; i++) {
        msgpack_pack_map(pk, 3);
        bpfg_pack_cstr(pk, "pid");
        msgpack_pack_int(pk, rows[i].pid);
        bpfg_pack_cstr(pk, "run_cnt");
        msgpack_pack_uint64(pk, rows[i].run.run_cnt);
        bpfg_pack_cstr(pk, "run_time_ns");
        msgpack_pack_uint64(pk, rows[i].run.run_time_ns);
    }
    free(rows);
}

uint64_t stats_hook_hits(const struct target *t, uint32_t index)
{
    uint64_t hits = 0;
    if (index >= BPFG_MAX_HOOKS ||
        target_mem(t, t->stats_table + offsetof(struct bpfg_stats_table, hook_hits) + index * sizeof(hits), &hits,
                   sizeof(hits), false) != 0)
        return 0;
    return hits;
}
