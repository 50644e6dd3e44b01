/* The glibc-ABI functions jit/vm.c and the maps library call, implemented on raw
 * syscalls, plus the runtime services of rt.h (vDSO clock, cpu number,
 * fault-safe copies). errno is one plain global: the payload has no TLS,
 * and only the payload thread does work that reads errno. */
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

struct bpfg_payload_params *rt_params;

static int errno_value;

int *__errno_location(void)
{
    return &errno_value;
}

long rt_ret(long r)
{
    if (rt_is_err(r)) {
        errno_value = (int)-r;
        return -1;
    }
    return r;
}

/* ---- strerror ---- */

static const struct {
    int code;
    const char *text;
} errtab[] = {
    {EPERM, "Operation not permitted"},
    {ENOENT, "No such file or directory"},
    {ESRCH, "No such process"},
    {EINTR, "Interrupted system call"},
    {EIO, "Input/output error"},
    {E2BIG, "Argument list too long"},
    {ENOEXEC, "Exec format error"},
    {EBADF, "Bad file descriptor"},
    {EAGAIN, "Resource temporarily unavailable"},
    {ENOMEM, "Cannot allocate memory"},
    {EACCES, "Permission denied"},
    {EFAULT, "Bad address"},
    {EBUSY, "Device or resource busy"},
    {EEXIST, "File exists"},
    {ENODEV, "No such device"},
    {EINVAL, "Invalid argument"},
    {ENFILE, "Too many open files in system"},
    {EMFILE, "Too many open files"},
    {ENOSPC, "No space left on device"},
    {ERANGE, "Numerical result out of range"},
    {EDEADLK, "Resource deadlock avoided"},
    {ENOSYS, "Function not implemented"},
    {ENOTSUP, "Operation not supported"},
    {EPROTONOSUPPORT, "Protocol not supported"},
    {EBADMSG, "Bad message"},
    {EOVERFLOW, "Value too large for defined data type"},
    {ECONNREFUSED, "Connection refused"},
    {ECONNRESET, "Connection reset by peer"},
    {ENOTCONN, "Transport endpoint is not connected"},
    {EPIPE, "Broken pipe"},
    {ETIMEDOUT, "Connection timed out"},
    {EOWNERDEAD, "Owner died"},
    {ENOTRECOVERABLE, "State not recoverable"},
    {EMSGSIZE, "Message too long"},
    {ENOTSOCK, "Socket operation on non-socket"},
    {524, "Operation not supported (ENOTSUPP)"},
};

char *strerror(int e)
{
    for (size_t i = 0; i < sizeof(errtab) / sizeof(errtab[0]); i++)
        if (errtab[i].code == e)
            return (char *)errtab[i].text;
    return (char *)"Unknown error";
}

/* ---- plain syscall wrappers ---- */

int close(int fd)
{
    return (int)rt_ret(rt_sys1(SYS_close, fd));
}
int fstat(int fd, struct stat *st)
{
    return (int)rt_ret(rt_sys2(SYS_fstat, fd, (long)st));
}
int ftruncate(int fd, off_t len)
{
    return (int)rt_ret(rt_sys2(SYS_ftruncate, fd, len));
}
pid_t getpid(void)
{
    return (pid_t)rt_sys0(SYS_getpid);
}
pid_t gettid(void)
{
    return (pid_t)rt_sys0(SYS_gettid);
}
int kill(pid_t pid, int sig)
{
    return (int)rt_ret(rt_sys2(SYS_kill, pid, sig));
}
int openat(int dirfd, const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    long mode = va_arg(ap, int);
    va_end(ap);
    return (int)rt_ret(rt_sys4(SYS_openat, dirfd, (long)path, flags, mode));
}
int unlinkat(int dirfd, const char *path, int flags)
{
    return (int)rt_ret(rt_sys3(SYS_unlinkat, dirfd, (long)path, flags));
}
int memfd_create(const char *name, unsigned flags)
{
    return (int)rt_ret(rt_sys2(SYS_memfd_create, (long)name, flags));
}

ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
    return rt_ret(rt_sys4(SYS_pread64, fd, (long)buf, (long)n, off));
}

ssize_t getrandom(void *buf, size_t n, unsigned flags)
{
    return rt_ret(rt_sys3(SYS_getrandom, (long)buf, (long)n, flags));
}

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    long r = rt_sys6(SYS_mmap, (long)addr, (long)len, prot, flags, fd, off);
    if (rt_is_err(r)) {
        errno_value = (int)-r;
        return MAP_FAILED;
    }
    return (void *)r;
}

int munmap(void *addr, size_t len)
{
    return (int)rt_ret(rt_sys2(SYS_munmap, (long)addr, (long)len));
}

int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long); /* every command we see takes an int or nothing */
    va_end(ap);
    return (int)rt_ret(rt_sys3(SYS_fcntl, fd, cmd, arg));
}

long syscall(long nr, ...)
{
    va_list ap;
    va_start(ap, nr);
    long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
    long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
    va_end(ap);
    return rt_ret(rt_sys6(nr, a, b, c, d, e, f));
}

void rt_exit_thread(int code)
{
    for (;;)
        rt_sys1(SYS_exit, code);
}

/* ---- stdio: the maps library reads /sys/devices/system/cpu/possible with
 * fopen only when it creates a map, which the payload never does (the
 * server creates maps). fopen fails, and map creation falls back to
 * sysconf(), implemented below without stdio. ---- */

FILE *fopen(const char *path, const char *mode)
{
    (void)path;
    (void)mode;
    errno_value = ENOSYS;
    return NULL;
}

int fclose(FILE *f)
{
    (void)f;
    return EOF;
}
int fgetc(FILE *f)
{
    (void)f;
    return EOF;
}
int __isoc99_fscanf(FILE *f, const char *fmt, ...)
{
    (void)f;
    (void)fmt;
    return EOF;
}

/* ---- cpus ---- */

static long read_small_file(const char *path, char *buf, size_t size)
{
    long fd = rt_sys3(SYS_open, (long)path, O_RDONLY | O_CLOEXEC, 0);
    if (rt_is_err(fd))
        return fd;
    size_t got = 0;
    while (got + 1 < size) {
        long n = rt_sys3(SYS_read, fd, (long)(buf + got), (long)(size - 1 - got));
        if (n == -EINTR)
            continue;
        if (rt_is_err(n)) {
            rt_sys1(SYS_close, fd);
            return n;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    rt_sys1(SYS_close, fd);
    buf[got] = 0;
    return (long)got;
}

static uint32_t possible_cpus;

/* Parses "0-3,8-11": the highest cpu number + 1, as the kernel sizes
 * per-CPU maps. */
uint32_t rt_nr_possible_cpus(void)
{
    if (possible_cpus)
        return possible_cpus;
    char buf[256];
    uint32_t n = 0;
    if (read_small_file("/sys/devices/system/cpu/possible", buf, sizeof(buf)) > 0) {
        uint32_t cur = 0;
        for (char *p = buf;; p++) {
            if (*p >= '0' && *p <= '9') {
                cur = cur * 10 + (uint32_t)(*p - '0');
                continue;
            }
            if (cur + 1 > n && p > buf && p[-1] >= '0' && p[-1] <= '9')
                n = cur + 1;
            cur = 0;
            if (!*p)
                break;
        }
    }
    possible_cpus = n ? n : 1;
    return possible_cpus;
}

long sysconf(int name)
{
    switch (name) {
    case _SC_NPROCESSORS_CONF:
    case _SC_NPROCESSORS_ONLN: return rt_nr_possible_cpus();
    case _SC_PAGESIZE: return 4096;
    default: errno_value = EINVAL; return -1;
    }
}

enum { CPU_SYSCALL, CPU_RDPID, CPU_RDTSCP, CPU_VDSO };
static int cpu_method;
uint64_t rt_hwcap2;
uint8_t rt_lahf;
static long (*vdso_getcpu)(unsigned *cpu, unsigned *node, void *cache);
static int (*vdso_clock_gettime)(clockid_t, struct timespec *);

/* Linux puts cpu | node << 12 in TSC_AUX, which RDPID and RDTSCP read. */
int sched_getcpu(void)
{
    switch (cpu_method) {
    case CPU_RDPID: {
        uint64_t v;
        __asm__ volatile("rdpid %0" : "=r"(v));
        return (int)(v & 0xfff);
    }
    case CPU_RDTSCP: {
        uint32_t lo, hi, aux;
        __asm__ volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(aux));
        return (int)(aux & 0xfff);
    }
    case CPU_VDSO: {
        unsigned cpu = 0;
        if (vdso_getcpu(&cpu, NULL, NULL) == 0)
            return (int)cpu;
        break;
    }
    }
    unsigned cpu = 0;
    long r = rt_sys3(SYS_getcpu, (long)&cpu, 0, 0);
    return rt_is_err(r) ? (int)rt_ret(r) : (int)cpu;
}

/* ---- clocks ---- */

int clock_gettime(clockid_t clk, struct timespec *ts)
{
    if (vdso_clock_gettime) {
        int r = vdso_clock_gettime(clk, ts); /* its fallback returns -errno */
        return r < 0 ? (int)rt_ret(r) : r;
    }
    return (int)rt_ret(rt_sys2(SYS_clock_gettime, clk, (long)ts));
}

uint64_t rt_clock_ns(int clk)
{
    struct timespec ts;
    if (clock_gettime(clk, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Finds a symbol in the vDSO's dynamic symbol table (DT_HASH gives the
 * symbol count; the x86-64 vDSO is linked with both hash styles). */
static void *vdso_symbol(uint64_t base, const char *name)
{
    const Elf64_Ehdr *eh = (const Elf64_Ehdr *)base;
    const Elf64_Phdr *ph = (const Elf64_Phdr *)(base + eh->e_phoff);
    const Elf64_Dyn *dyn = NULL;
    uint64_t bias = 0;
    int have_load = 0;
    for (int i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && !have_load) {
            bias = base + ph[i].p_offset - ph[i].p_vaddr;
            have_load = 1;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn = (const Elf64_Dyn *)(base + ph[i].p_offset);
        }
    }
    if (!dyn || !have_load)
        return NULL;
    const Elf64_Sym *sym = NULL;
    const char *str = NULL;
    const uint32_t *hash = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        if (dyn->d_tag == DT_SYMTAB)
            sym = (const Elf64_Sym *)(bias + dyn->d_un.d_ptr);
        else if (dyn->d_tag == DT_STRTAB)
            str = (const char *)(bias + dyn->d_un.d_ptr);
        else if (dyn->d_tag == DT_HASH)
            hash = (const uint32_t *)(bias + dyn->d_un.d_ptr);
    }
    if (!sym || !str || !hash)
        return NULL;
    for (uint32_t i = 0; i < hash[1]; i++) {
        if (sym[i].st_shndx != SHN_UNDEF && ELF64_ST_TYPE(sym[i].st_info) == STT_FUNC &&
            strcmp(str + sym[i].st_name, name) == 0)
            return (void *)(bias + sym[i].st_value);
    }
    return NULL;
}

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

int rt_init(struct bpfg_payload_params *p)
{
    rt_params = p;
    uint64_t auxv[2 * 64];
    long n = read_small_file("/proc/self/auxv", (char *)auxv, sizeof(auxv));
    uint64_t vdso = 0;
    for (long i = 0; n > 0 && i + 1 < n / 8; i += 2) {
        if (auxv[i] == AT_SYSINFO_EHDR)
            vdso = auxv[i + 1];
        if (auxv[i] == AT_HWCAP2)
            rt_hwcap2 = auxv[i + 1];
        if (auxv[i] == AT_NULL)
            break;
    }
    if (vdso) {
        vdso_clock_gettime = (int (*)(clockid_t, struct timespec *))vdso_symbol(vdso, "__vdso_clock_gettime");
        vdso_getcpu = (long (*)(unsigned *, unsigned *, void *))vdso_symbol(vdso, "__vdso_getcpu");
    }
    uint32_t r[4];
    cpuid(0, 0, r);
    uint32_t max_leaf = r[0];
    cpu_method = CPU_SYSCALL;
    if (vdso_getcpu)
        cpu_method = CPU_VDSO;
    cpuid(0x80000000u, 0, r);
    if (r[0] >= 0x80000001u) {
        cpuid(0x80000001u, 0, r);
        if (r[3] & (1u << 27))
            cpu_method = CPU_RDTSCP;
        rt_lahf = r[2] & 1; /* LAHF-SAHF in 64-bit mode */
    }
    if (max_leaf >= 7) {
        cpuid(7, 0, r);
        if (r[2] & (1u << 22))
            cpu_method = CPU_RDPID;
    }
    /* Trust TSC_AUX only if it agrees with the kernel right now. */
    if (cpu_method == CPU_RDPID || cpu_method == CPU_RDTSCP) {
        unsigned real = 0;
        int ok = 0;
        for (int tries = 0; tries < 8 && !ok; tries++) {
            int mine = sched_getcpu();
            if (!rt_is_err(rt_sys3(SYS_getcpu, (long)&real, 0, 0)) && (unsigned)mine == real)
                ok = 1;
        }
        if (!ok)
            cpu_method = vdso_getcpu ? CPU_VDSO : CPU_SYSCALL;
    }
    rt_nr_possible_cpus();
    return 0;
}

int rt_on_payload_thread(void)
{
    uint64_t sp = (uint64_t)__builtin_frame_address(0);
    return rt_params && sp >= rt_params->stack_base && sp < rt_params->stack_base + rt_params->stack_size;
}

/* ---- sockets ---- */

int rt_send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *b = buf;
    while (len) {
        long n = rt_sys6(SYS_sendto, fd, (long)b, (long)len, MSG_NOSIGNAL, 0, 0);
        if (n == -EINTR)
            continue;
        if (rt_is_err(n))
            return (int)n;
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The descriptors of mh into fds[*got..max) (got NULL: one, into *fds if
 * it is < 0); the rest are closed. */
static void take_fds(struct msghdr *mh, int *fds, int max, int *got)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        int nfd = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < nfd; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (got && *got < max)
                fds[(*got)++] = fd;
            else if (!got && fds && *fds < 0)
                *fds = fd;
            else
                rt_sys1(SYS_close, fd);
        }
    }
}

int rt_recv_fds(int sock, void *buf, size_t len, int *fds, int max, int *got)
{
    uint8_t *b = buf;
    while (len) {
        union {
            struct cmsghdr c;
            char buf[CMSG_SPACE(sizeof(int) * RT_RECV_FDS_MAX)];
        } cm;
        struct iovec iov = {b, len};
        struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof(cm.buf)};
        long n = rt_sys3(SYS_recvmsg, sock, (long)&mh, MSG_CMSG_CLOEXEC);
        if (n == -EINTR)
            continue;
        if (rt_is_err(n))
            return (int)n;
        if (n == 0)
            return -ECONNRESET;
        take_fds(&mh, fds, max, got);
        b += n;
        len -= (size_t)n;
    }
    return 0;
}

int rt_recv_all(int sock, void *buf, size_t len, int *fd)
{
    return rt_recv_fds(sock, buf, len, fd, 1, NULL);
}

/* ---- fault-safe memory access ---- */

long rt_safe_read(void *dst, const void *src, size_t len)
{
    if (!len)
        return 0;
    struct iovec local = {dst, len}, remote = {(void *)src, len};
    long r = rt_sys6(SYS_process_vm_readv, rt_sys0(SYS_getpid), (long)&local, 1, (long)&remote, 1, 0);
    return r == (long)len ? 0 : -EFAULT;
}

long rt_safe_write(void *dst, const void *src, size_t len)
{
    if (!len)
        return 0;
    struct iovec local = {(void *)src, len}, remote = {dst, len};
    long r = rt_sys6(SYS_process_vm_writev, rt_sys0(SYS_getpid), (long)&local, 1, (long)&remote, 1, 0);
    return r == (long)len ? 0 : -EFAULT;
}

#define STR_BOUNCE 256 /* bytes read at a time: dst past the NUL stays as it was */

long rt_safe_read_str(char *dst, const void *src, size_t size)
{
    if (!size)
        return -EINVAL;
    size_t done = 0;
    long pid = rt_sys0(SYS_getpid);
    char bounce[STR_BOUNCE];
    /* within a page at a time: process_vm_readv stops at the first
     * unreadable page; through a bounce buffer, as the kernel writes
     * nothing of dst past the string */
    while (done < size) {
        uintptr_t at = (uintptr_t)src + done;
        size_t chunk = 4096 - (at & 4095);
        if (chunk > size - done)
            chunk = size - done;
        if (chunk > STR_BOUNCE)
            chunk = STR_BOUNCE;
        struct iovec local = {bounce, chunk}, remote = {(void *)at, chunk};
        long r = rt_sys6(SYS_process_vm_readv, pid, (long)&local, 1, (long)&remote, 1, 0);
        if (r != (long)chunk)
            return -EFAULT;
        const char *nul = memchr(bounce, 0, chunk);
        size_t n = nul ? (size_t)(nul - bounce) + 1 : chunk;
        memcpy(dst + done, bounce, n);
        if (nul)
            return (long)(done + n);
        done += chunk;
    }
    dst[size - 1] = 0;
    return (long)size;
}
