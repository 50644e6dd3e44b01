/* Shared by the injector tests: how many threads a process has now. */
#ifndef BPFG_TEST_TASKS_UTIL_H
#define BPFG_TEST_TASKS_UTIL_H

#include <dirent.h>
#include <stdio.h>
#include <sys/types.h>

/* The entries of /proc/PID/task; -1 if the process is gone. */
static inline int tasks_of(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

#endif
