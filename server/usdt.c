/* USDT semaphores (usdt.h). */
#include "usdt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int usdt_sem_add(pid_t pid, uint64_t addr, int delta, char *err, size_t errlen)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(e));
        return -e;
    }
    uint16_t v;
    int r = 0;
    if (pread(fd, &v, sizeof(v), (off_t)addr) != (ssize_t)sizeof(v))
        r = -EFAULT;
    if (!r) {
        int next = (int)v + delta;
        v = (uint16_t)(next < 0 ? 0 : next > UINT16_MAX ? UINT16_MAX : next);
        if (pwrite(fd, &v, sizeof(v), (off_t)addr) != (ssize_t)sizeof(v))
            r = -EFAULT;
    }
    close(fd);
    if (r)
        snprintf(err, errlen, "cannot update the USDT semaphore at 0x%llx in process %d", (unsigned long long)addr,
                 (int)pid);
    return r;
}
