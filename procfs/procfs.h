/* Readers of /proc/PID files, shared by the injector and the server:
 * the mappings (maps), named fields of status, the state and flags of
 * stat. They parse; every caller keeps its own criteria. Returns are 0 or
 * a negative errno (-ENOENT: no such process). */
#ifndef BPFGRAFT_PROCFS_H
#define BPFGRAFT_PROCFS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One line of /proc/PID/maps. */
struct bpfg_procfs_map {
    uint64_t start, end;
    char perms[5]; /* "r-xp" */
    uint64_t offset;
    unsigned dev_major, dev_minor;
    uint64_t inode;
    const char *path; /* as the kernel prints it ("/usr/lib/x.so", "[stack]",
                                * "/memfd:name (deleted)"), "" if none; valid during the call */
};

/* Called for each mapping in address order: 0 goes on, anything else stops
 * the walk and is what the walk returns. */
typedef int (*bpfg_procfs_map_fn)(const struct bpfg_procfs_map *m, void *arg);

/* Walks /proc/PID/maps. Returns fn's first non-zero result, 0 after the
 * last mapping, -errno if the file cannot be read, -EIO on a line that
 * does not parse. */
int bpfg_procfs_maps(pid_t pid, bpfg_procfs_map_fn fn, void *arg);
/* The same over a maps file at path. */
int bpfg_procfs_maps_file(const char *path, bpfg_procfs_map_fn fn, void *arg);

/* The text of field name ("Uid", "NSpid") in /proc/PID/status, or thread
 * tid's (tid > 0): what follows "name:", leading blanks skipped, without
 * the newline, truncated to len - 1 bytes. -ENODATA without the field. */
int bpfg_procfs_status(pid_t pid, pid_t tid, const char *name, char *value, size_t len);
/* The same over a status file at path. */
int bpfg_procfs_status_file(const char *path, const char *name, char *value, size_t len);
/* An integer field ("TracerPid", "PPid", "Seccomp"): -ENODATA without the
 * field or when it does not start with a number. */
int bpfg_procfs_status_int(pid_t pid, pid_t tid, const char *name, int *value);

/* The real, effective and saved uids of the Uid field. */
int bpfg_procfs_uids(pid_t pid, uid_t *real, uid_t *effective, uid_t *saved);

/* From /proc/PID/stat, or thread tid's (tid > 0): the state letter (R, S,
 * D, T, t, Z...) and the kernel's task flags (PF_KTHREAD...; flags may be
 * NULL). -EIO if it does not parse. */
int bpfg_procfs_stat(pid_t pid, pid_t tid, char *state, unsigned long *flags);

/* The process's name now (/proc/PID/comm, which prctl may have changed),
 * without the newline, truncated to len - 1 bytes; "" and -errno if it
 * cannot be read (the process is gone). */
int bpfg_procfs_comm(pid_t pid, char *buf, size_t len);

/* The process's cgroup v2 path (the "0::" line of /proc/PID/cgroup, e.g.
 * "/system.slice/app.service"); -ENODATA without a v2 hierarchy. */
int bpfg_procfs_cgroup2(pid_t pid, char *buf, size_t len);

#endif
