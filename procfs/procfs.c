/* /proc readers (procfs.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procfs.h"

/* /proc/PID/LEAF, or thread tid's (tid > 0). */
static void proc_path(char *path, size_t len, pid_t pid, pid_t tid, const char *leaf)
{
    if (tid > 0)
        snprintf(path, len, "/proc/%d/task/%d/%s", (int)pid, (int)tid, leaf);
    else
        snprintf(path, len, "/proc/%d/%s", (int)pid, leaf);
}

static void chomp(char *line)
{
    size_t n = strlen(line);
    if (n && line[n - 1] == '\n')
        line[n - 1] = 0;
}

/* "start-end perms offset major:minor inode   path" */
static int parse_map_line(char *line, struct bpfg_procfs_map *m)
{
    int path_at = 0;
    if (sscanf(line, "%" SCNx64 "-%" SCNx64 " %4s %" SCNx64 " %x:%x %" SCNu64 "%n", &m->start, &m->end, m->perms,
               &m->offset, &m->dev_major, &m->dev_minor, &m->inode, &path_at) != 7)
        return -EIO;
    char *path = line + path_at;
    path += strspn(path, " \t");
    chomp(path);
    m->path = path;
    return 0;
}

int bpfg_procfs_maps_file(const char *path, bpfg_procfs_map_fn fn, void *arg)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    char *line = NULL;
    size_t cap = 0;
    int r = 0;
    while (!r && getline(&line, &cap, f) > 0) {
        struct bpfg_procfs_map m;
        r = parse_map_line(line, &m);
        if (!r)
            r = fn(&m, arg);
    }
    free(line);
    fclose(f);
    return r;
}

int bpfg_procfs_maps(pid_t pid, bpfg_procfs_map_fn fn, void *arg)
{
    char path[64];
    proc_path(path, sizeof(path), pid, 0, "maps");
    return bpfg_procfs_maps_file(path, fn, arg);
}

int bpfg_procfs_status_file(const char *path, const char *name, char *value, size_t len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    size_t nlen = strlen(name);
    char *line = NULL;
    size_t cap = 0;
    int r = -ENODATA;
    while (r && getline(&line, &cap, f) > 0) {
        if (strncmp(line, name, nlen) != 0 || line[nlen] != ':')
            continue;
        char *text = line + nlen + 1;
        text += strspn(text, " \t");
        chomp(text);
        snprintf(value, len, "%s", text);
        r = 0;
    }
    free(line);
    fclose(f);
    return r;
}

int bpfg_procfs_status(pid_t pid, pid_t tid, const char *name, char *value, size_t len)
{
    char path[80];
    proc_path(path, sizeof(path), pid, tid, "status");
    return bpfg_procfs_status_file(path, name, value, len);
}

int bpfg_procfs_status_int(pid_t pid, pid_t tid, const char *name, int *value)
{
    char text[32];
    int r = bpfg_procfs_status(pid, tid, name, text, sizeof(text));
    if (r)
        return r;
    return sscanf(text, "%d", value) == 1 ? 0 : -ENODATA;
}

int bpfg_procfs_uids(pid_t pid, uid_t *real, uid_t *effective, uid_t *saved)
{
    char text[64];
    unsigned r = 0, e = 0, s = 0;
    int err = bpfg_procfs_status(pid, 0, "Uid", text, sizeof(text));
    if (err)
        return err;
    if (sscanf(text, "%u %u %u", &r, &e, &s) != 3)
        return -ENODATA;
    *real = r, *effective = e, *saved = s;
    return 0;
}

int bpfg_procfs_stat(pid_t pid, pid_t tid, char *state, unsigned long *flags)
{
    char path[80], buf[1024];
    proc_path(path, sizeof(path), pid, tid, "stat");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    int e = errno;
    close(fd);
    if (n <= 0)
        return n < 0 ? -e : -EIO;
    buf[n] = 0;
    /* the command name may hold anything, ')' too: fields follow the last */
    const char *paren = strrchr(buf, ')');
    unsigned long fl = 0;
    if (!paren || sscanf(paren + 1, " %c %*d %*d %*d %*d %*d %lu", state, &fl) != 2)
        return -EIO;
    if (flags)
        *flags = fl;
    return 0;
}

int bpfg_procfs_comm(pid_t pid, char *buf, size_t len)
{
    char path[80];
    proc_path(path, sizeof(path), pid, 0, "comm");
    buf[0] = 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    int r = fgets(buf, (int)len, f) ? 0 : -EIO;
    fclose(f);
    chomp(buf);
    return r;
}

int bpfg_procfs_cgroup2(pid_t pid, char *buf, size_t len)
{
    char path[80], line[4096];
    proc_path(path, sizeof(path), pid, 0, "cgroup");
    buf[0] = 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    int r = -ENODATA;
    while (r == -ENODATA && fgets(line, sizeof(line), f))
        if (strncmp(line, "0::", 3) == 0) {
            chomp(line);
            r = strlen(line + 3) < len ? 0 : -ENAMETOOLONG;
            if (!r)
                strcpy(buf, line + 3);
        }
    fclose(f);
    return r;
}
