/* The payload's freestanding runtime: raw syscalls and the few services
 * (clock, cpu number, fault-safe memory access) the rest of the payload
 * uses directly. The glibc-ABI functions that jit/vm.c and the maps library call
 * (malloc, snprintf, mmap, ...) are defined in the
 * other rt/ files under their glibc names and are not declared here.
 */
#ifndef BPFGRAFT_PAYLOAD_RT_H
#define BPFGRAFT_PAYLOAD_RT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "payload_abi.h"

#define RT_HIDDEN __attribute__((visibility("hidden")))

static inline long rt_sys0(long n)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n) : "rcx", "r11", "memory");
    return r;
}

static inline long rt_sys1(long n, long a)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a) : "rcx", "r11", "memory");
    return r;
}

static inline long rt_sys2(long n, long a, long b)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return r;
}

static inline long rt_sys3(long n, long a, long b, long c)
{
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}

static inline long rt_sys4(long n, long a, long b, long c, long d)
{
    long r;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return r;
}

static inline long rt_sys5(long n, long a, long b, long c, long d, long e)
{
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8) : "rcx", "r11", "memory");
    return r;
}

static inline long rt_sys6(long n, long a, long b, long c, long d, long e, long f)
{
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(r)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return r;
}

/* A raw return value is an error when it lies in [-4095, -1]. */
static inline int rt_is_err(long r)
{
    return (unsigned long)r > -4096ul;
}

/* Converts a raw result to the libc convention (errno + -1). */
RT_HIDDEN long rt_ret(long r);

/* Set up once on the payload thread, before any hook can run. */
RT_HIDDEN int rt_init(struct bpfg_payload_params *p);
extern struct bpfg_payload_params *rt_params RT_HIDDEN;

/* True when running on the payload's own thread (its stack). */
RT_HIDDEN int rt_on_payload_thread(void);

extern uint64_t rt_hwcap2 RT_HIDDEN;       /* AT_HWCAP2 (bit 1: FSGSBASE) */
extern uint8_t rt_lahf RT_HIDDEN;          /* lahf/sahf work in long mode (start.S) */
RT_HIDDEN uint64_t rt_clock_ns(int clock); /* vDSO, syscall fallback */
RT_HIDDEN uint32_t rt_nr_possible_cpus(void);
RT_HIDDEN void rt_exit_thread(int code) __attribute__((noreturn));

/* Sends all len bytes on a stream socket (MSG_NOSIGNAL, EINTR retried):
 * 0 or -errno. */
RT_HIDDEN int rt_send_all(int fd, const void *buf, size_t len);
/* Receives exactly len bytes (EINTR retried; -ECONNRESET at end of
 * stream). A descriptor passed with them (SCM_RIGHTS) goes to *fd when fd
 * is given and *fd < 0; any other is closed. 0 or -errno. */
RT_HIDDEN int rt_recv_all(int sock, void *buf, size_t len, int *fd);
/* The same with up to max descriptors appended to fds[*got..] (the rest
 * closed; got NULL: as rt_recv_all). */
#define RT_RECV_FDS_MAX 32 /* a MAP_TICKETS reply's (BPFG_TOOL_TICKETS_MAX) */
RT_HIDDEN int rt_recv_fds(int sock, void *buf, size_t len, int *fds, int max, int *got);

/* Fault-safe copies through process_vm_readv/writev on our own pid: a bad
 * address gives -EFAULT, never a signal. */
RT_HIDDEN long rt_safe_read(void *dst, const void *src, size_t len);
RT_HIDDEN long rt_safe_write(void *dst, const void *src, size_t len);
/* Reads a NUL-terminated string of at most size bytes (NUL included);
 * returns its length with the NUL, or -EFAULT. */
RT_HIDDEN long rt_safe_read_str(char *dst, const void *src, size_t size);

/* Formatting core shared by vsnprintf, bpf_trace_printk and bpf_snprintf.
 * bpf mode: arguments come from a u64 array and %s arguments are unsafe
 * pointers read with rt_safe_read_str. Returns the would-be length, or
 * -EINVAL for a bad format or missing argument in bpf mode. */
struct rt_fmt_args {
    va_list *ap;
    const uint64_t *arr;
    uint32_t n, used;
};
RT_HIDDEN int rt_format(char *buf, size_t size, const char *fmt, struct rt_fmt_args *args);

#endif
