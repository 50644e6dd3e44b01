/* Unit tests of procfs/: /proc/PID/maps entries (this process's, and a
 * crafted file with the awkward cases), status fields, stat. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "procfs.h"

#define MAX_ENTRIES 16

struct collected {
    size_t n;
    struct bpfg_procfs_map m[MAX_ENTRIES];
    char path[MAX_ENTRIES][128];
};

static int collect(const struct bpfg_procfs_map *m, void *arg)
{
    struct collected *c = arg;
    if (c->n == MAX_ENTRIES)
        return 0;
    c->m[c->n] = *m;
    snprintf(c->path[c->n], sizeof(c->path[0]), "%s", m->path);
    c->m[c->n].path = c->path[c->n];
    c->n++;
    return 0;
}

/* A temporary file holding text; the caller unlinks it. */
static void write_file(char *path, size_t len, const char *text)
{
    snprintf(path, len, "/tmp/bpfgraft-procfs-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

/* ---- maps ---- */

struct lookup {
    uintptr_t addr;
    struct bpfg_procfs_map found;
    char path[4096];
    uint64_t prev_end;
    int unordered;
};

static int find_addr(const struct bpfg_procfs_map *m, void *arg)
{
    struct lookup *l = arg;
    if (m->start < l->prev_end || m->end <= m->start)
        l->unordered++;
    l->prev_end = m->end;
    if (l->addr >= m->start && l->addr < m->end) {
        l->found = *m;
        snprintf(l->path, sizeof(l->path), "%s", m->path);
    }
    return 0;
}

Test(procfs_maps, self)
{
    struct lookup l = {.addr = (uintptr_t)&find_addr};
    cr_assert_eq(bpfg_procfs_maps(getpid(), find_addr, &l), 0);
    cr_expect_eq(l.unordered, 0, "mappings in address order, none empty");
    cr_assert_neq(l.found.end, 0, "the mapping holding our own code");
    cr_expect_eq(l.found.perms[0], 'r');
    cr_expect_eq(l.found.perms[2], 'x');
    cr_expect_neq(l.found.inode, 0);

    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    cr_assert_gt(n, 0);
    exe[n] = 0;
    cr_expect_str_eq(l.path, exe, "the executable's path, in full");
}

Test(procfs_maps, crafted)
{
    char path[64];
    write_file(path, sizeof(path),
               "00400000-00452000 r-xp 00000000 08:02 173521      /usr/bin/a program\n"
               "7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n"
               "7f0000100000-7f0000101000 r-xs 00002000 fd:01 42   /memfd:bpfgraft-payload (deleted)\n"
               "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]\n"
               "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]\n");
    struct collected c = {0};
    int r = bpfg_procfs_maps_file(path, collect, &c);
    unlink(path);
    cr_assert_eq(r, 0);
    cr_assert_eq(c.n, 5);

    cr_expect_eq(c.m[0].start, 0x400000);
    cr_expect_eq(c.m[0].end, 0x452000);
    cr_expect_str_eq(c.m[0].perms, "r-xp");
    cr_expect_eq(c.m[0].offset, 0);
    cr_expect_eq(c.m[0].dev_major, 8);
    cr_expect_eq(c.m[0].dev_minor, 2);
    cr_expect_eq(c.m[0].inode, 173521);
    cr_expect_str_eq(c.m[0].path, "/usr/bin/a program", "a path with a space is whole");

    cr_expect_str_eq(c.m[1].path, "", "anonymous: no path");
    cr_expect_eq(c.m[2].offset, 0x2000);
    cr_expect_eq(c.m[2].dev_major, 0xfd);
    cr_expect_str_eq(c.m[2].perms, "r-xs");
    cr_expect_str_eq(c.m[2].path, "/memfd:bpfgraft-payload (deleted)", "as the kernel prints it");
    cr_expect_str_eq(c.m[3].path, "[stack]");
    cr_expect_eq(c.m[4].start, 0xffffffffff600000ull);
    cr_expect_str_eq(c.m[4].path, "[vsyscall]");
}

static int stop_at_second(const struct bpfg_procfs_map *m, void *arg)
{
    (void)m;
    return ++*(int *)arg == 2 ? 7 : 0;
}

Test(procfs_maps, callback_stops_the_walk)
{
    int calls = 0;
    cr_expect_eq(bpfg_procfs_maps(getpid(), stop_at_second, &calls), 7);
    cr_expect_eq(calls, 2);
}

Test(procfs_maps, errors)
{
    char path[64];
    write_file(path, sizeof(path), "00400000-00452000 r-xp 00000000 08:02 1 /bin/x\nnot a mapping\n");
    struct collected c = {0};
    int r = bpfg_procfs_maps_file(path, collect, &c);
    unlink(path);
    cr_expect_eq(r, -EIO);
    cr_expect_eq(c.n, 1, "lines before the bad one were seen");

    cr_expect_eq(bpfg_procfs_maps_file("/nonexistent/maps", collect, &c), -ENOENT);
    cr_expect_eq(bpfg_procfs_maps(0x3ffffff0, collect, &c), -ENOENT, "no such process");
}

/* ---- status ---- */

Test(procfs_status, crafted)
{
    char path[64], v[64];
    write_file(path, sizeof(path),
               "Name:\tsome name\n"
               "PPid:\t41\n"
               "TracerPid:\t0\n"
               "Pid:\t42\n"
               "Uid:\t1000\t1001\t1002\t1003\n"
               "NSpid:\t4242\t7\n");
    cr_expect_eq(bpfg_procfs_status_file(path, "Name", v, sizeof(v)), 0);
    cr_expect_str_eq(v, "some name");
    cr_expect_eq(bpfg_procfs_status_file(path, "Pid", v, sizeof(v)), 0);
    cr_expect_str_eq(v, "42", "not PPid's nor TracerPid's");
    cr_expect_eq(bpfg_procfs_status_file(path, "Uid", v, sizeof(v)), 0);
    cr_expect_str_eq(v, "1000\t1001\t1002\t1003");
    cr_expect_eq(bpfg_procfs_status_file(path, "NSpid", v, 4), 0);
    cr_expect_str_eq(v, "424", "truncated to the buffer");
    cr_expect_eq(bpfg_procfs_status_file(path, "Seccomp", v, sizeof(v)), -ENODATA);
    cr_expect_eq(bpfg_procfs_status_file(path, "Ui", v, sizeof(v)), -ENODATA, "whole names only");
    unlink(path);
    cr_expect_eq(bpfg_procfs_status_file(path, "Pid", v, sizeof(v)), -ENOENT);
}

Test(procfs_status, self)
{
    int v = 0;
    cr_expect_eq(bpfg_procfs_status_int(getpid(), 0, "Pid", &v), 0);
    cr_expect_eq(v, getpid());
    cr_expect_eq(bpfg_procfs_status_int(getpid(), 0, "PPid", &v), 0);
    cr_expect_eq(v, getppid());
    cr_expect_eq(bpfg_procfs_status_int(getpid(), gettid(), "Pid", &v), 0);
    cr_expect_eq(v, gettid(), "a thread's own status");
    cr_expect_eq(bpfg_procfs_status_int(getpid(), 0, "Name", &v), -ENODATA, "not a number");
    cr_expect_eq(bpfg_procfs_status_int(0x3ffffff0, 0, "Pid", &v), -ENOENT);
}

/* ---- stat ---- */

Test(procfs_stat, self)
{
    char state = 0;
    unsigned long flags = 0;
    cr_assert_eq(bpfg_procfs_stat(getpid(), gettid(), &state, &flags), 0);
    cr_expect_eq(state, 'R', "running: it is reading its own stat");
    cr_expect_eq(flags & 0x00200000, 0, "not a kernel thread (PF_KTHREAD)");
    cr_expect_eq(bpfg_procfs_stat(getpid(), 0, &state, NULL), 0);
    cr_expect_eq(bpfg_procfs_stat(0x3ffffff0, 0, &state, NULL), -ENOENT);
}

Test(procfs_comm, self_and_gone)
{
    char want[16], got[32], small[4];
    cr_assert_eq(prctl(PR_SET_NAME, "procfs-comm"), 0);
    cr_assert_eq(prctl(PR_GET_NAME, want), 0);
    cr_assert_eq(bpfg_procfs_comm(getpid(), got, sizeof(got)), 0);
    cr_expect_str_eq(got, want, "the name prctl set, without the newline");
    cr_assert_eq(bpfg_procfs_comm(getpid(), small, sizeof(small)), 0);
    cr_expect_str_eq(small, "pro", "truncated to the buffer");
    cr_expect_eq(bpfg_procfs_comm(0x3ffffff0, got, sizeof(got)), -ENOENT);
    cr_expect_str_eq(got, "", "empty when the process is gone");
}
