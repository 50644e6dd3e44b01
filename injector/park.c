/* Parking a process another tracer holds in its exec stop (injector.h,
 * bpfg_park_exec): a loop of pause() at its first instruction, so that it
 * sleeps there, having run nothing of its program, from the moment that
 * tracer lets go until we trace it. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <unistd.h>

#include "injector.h"
#include "internal.h"
#include "procfs.h"

/* mov $SYS_pause, %eax; syscall; jmp back to the mov */
static const uint8_t pause_loop[BPFG_PARK_LEN] = {0xb8, SYS_pause, 0, 0, 0, 0x0f, 0x05, 0xeb, 0xf7};

static int mem_io(pid_t pid, uint64_t addr, void *buf, size_t len, bool write_it)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
    int fd = open(path, (write_it ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write_it ? pwrite(fd, buf, len, (off_t)addr) : pread(fd, buf, len, (off_t)addr);
    int e = errno;
    close(fd);
    return n == (ssize_t)len ? 0 : n < 0 ? -e : -EFAULT;
}

/* The first instruction an exec sets up: the dynamic loader's entry
 * (AT_BASE plus its e_entry), or the program's for a static one. */
static uint64_t exec_start(pid_t pid)
{
    uint64_t base = bpfg_inj_auxv(pid, AT_BASE), e_entry = 0;
    if (!base)
        return bpfg_inj_auxv(pid, AT_ENTRY);
    if (mem_io(pid, base + offsetof(Elf64_Ehdr, e_entry), &e_entry, sizeof(e_entry), false) != 0)
        return 0;
    return base + e_entry;
}

/* True if pid sits in the ptrace stop at the end of execve, before its
 * first instruction at pc (/proc/PID/syscall: execve, the registers the
 * exec cleared, the start address). */
static bool in_exec_stop(pid_t pid, uint64_t pc)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/syscall", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, line, sizeof(line) - 1);
    close(fd);
    if (n <= 0)
        return false;
    line[n] = 0;
    long nr;
    unsigned long long a[6], sp, ip;
    char state;
    unsigned long flags;
    return sscanf(line, "%ld %llx %llx %llx %llx %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3], &a[4], &a[5],
                  &sp, &ip) == 9 &&
           nr == SYS_execve && ip == pc && !(a[0] | a[1] | a[2] | a[3] | a[4] | a[5]) &&
           bpfg_procfs_stat(pid, 0, &state, &flags) == 0 && state == 't';
}

int bpfg_park_exec(pid_t pid, struct bpfg_park *pk, char *err)
{
    uint64_t pc = exec_start(pid);
    if (!pc || !in_exec_stop(pid, pc))
        return bpfg_inj_fail(err, -EAGAIN, "process %d is not in the stop at the end of its execve", (int)pid);
    int r = mem_io(pid, pc, pk->saved, sizeof(pk->saved), false);
    if (!r)
        r = mem_io(pid, pc, (void *)pause_loop, sizeof(pause_loop), true);
    if (r)
        return bpfg_inj_fail(err, r, "process %d: writing at its first instruction 0x%llx: %s", (int)pid,
                             (unsigned long long)pc, strerror(-r));
    pk->pc = pc;
    return 0;
}

int bpfg_park_undo(pid_t pid, const struct bpfg_park *pk)
{
    if (!in_exec_stop(pid, pk->pc))
        return -EBUSY;
    return mem_io(pid, pk->pc, (void *)pk->saved, sizeof(pk->saved), true);
}

/* Traced and stopped by us: back to where the exec left it, the registers
 * the loop changed as the exec set them (zero), no syscall to restart. */
static int unwind_park(pid_t pid, const struct bpfg_park *pk, char *err)
{
    struct user_regs_struct regs;
    if (ptrace(PTRACE_GETREGS, pid, NULL, &regs) != 0)
        return bpfg_inj_fail(err, -errno, "process %d: registers: %s", (int)pid, strerror(errno));
    int r = mem_io(pid, pk->pc, (void *)pk->saved, sizeof(pk->saved), true);
    if (regs.rip < pk->pc || regs.rip >= pk->pc + BPFG_PARK_LEN) /* moved by its tracer: only the bytes to undo */
        return bpfg_inj_fail(err, -ESRCH, "process %d left its parking loop (at 0x%llx)", (int)pid,
                             (unsigned long long)regs.rip);
    if (r)
        return bpfg_inj_fail(err, r, "process %d: restoring 0x%llx: %s", (int)pid, (unsigned long long)pk->pc,
                             strerror(-r));
    regs.rip = pk->pc;
    regs.rax = regs.rcx = regs.r11 = 0;
    regs.orig_rax = (unsigned long long)-1;
    if (ptrace(PTRACE_SETREGS, pid, NULL, &regs) != 0)
        return bpfg_inj_fail(err, -errno, "process %d: setting registers: %s", (int)pid, strerror(errno));
    return 0;
}

int bpfg_unpark_to_entry(pid_t pid, const struct bpfg_park *pk, char *err)
{
    if (ptrace(PTRACE_SEIZE, pid, NULL, (void *)(long)PTRACE_O_TRACESYSGOOD) != 0)
        return bpfg_inj_fail(err, -errno, "cannot trace process %d: %s", (int)pid, strerror(errno));
    int status = ptrace(PTRACE_INTERRUPT, pid, NULL, NULL) == 0 ? bpfg_inj_wait_event(pid, -1) : -errno;
    if (status < 0) {
        if (status != -ECHILD)
            ptrace(PTRACE_DETACH, pid, NULL, NULL);
        return bpfg_inj_fail(err, status, "process %d: no stop: %s", (int)pid, strerror(-status));
    }
    int r = unwind_park(pid, pk, err);
    if (r) {
        ptrace(PTRACE_DETACH, pid, NULL, NULL);
        return r;
    }
    return bpfg_inj_run_to_entry(pid, err);
}
