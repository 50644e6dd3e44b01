/* bpfgraft-bench-tool: what a libbpf tool's own bpf() calls cost. Run
 * directly it measures the kernel; run under `bpfgraft run` (the tool
 * suite, bench_tool.c) it measures bpfgraft serving them. Prints one line:
 *   create_us=.. prog_load_us=.. array_lookup_ns=.. array_update_ns=..
 *   hash_lookup_ns=.. hash_update_ns=.. get_next_key_ns=..
 * Raw bpf() syscalls, as libbpf makes them: through glibc's syscall(),
 * with the attr size of the last field the command uses (libbpf 1.1's
 * bpf.c: offsetofend). argv[1]: iterations. Map create and program load:
 * the median of 50 calls, each with its close. */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define offsetofend(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

static long sys_bpf(int cmd, union bpf_attr *a, size_t size)
{
    return syscall(SYS_bpf, cmd, a, size);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int map_create(uint32_t type, uint32_t max)
{
    const size_t size = offsetofend(union bpf_attr, map_extra);
    union bpf_attr a;
    memset(&a, 0, size);
    a.map_type = type;
    a.key_size = 4;
    a.value_size = 8;
    a.max_entries = max;
    strcpy(a.map_name, "bench_tool");
    return (int)sys_bpf(BPF_MAP_CREATE, &a, size);
}

static int elem(int cmd, int fd, uint32_t *key, void *value_or_next)
{
    const size_t size =
        cmd == BPF_MAP_GET_NEXT_KEY ? offsetofend(union bpf_attr, next_key) : offsetofend(union bpf_attr, flags);
    union bpf_attr a;
    memset(&a, 0, size);
    a.map_fd = (uint32_t)fd;
    a.key = (uint64_t)(uintptr_t)key;
    a.value = (uint64_t)(uintptr_t)value_or_next; /* next_key shares the slot */
    return (int)sys_bpf(cmd, &a, size);
}

static int prog_load(void)
{
    struct bpf_insn insns[] = {
        {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = 0, .imm = 0},
        {.code = BPF_JMP | BPF_EXIT},
    };
    const size_t size = offsetofend(union bpf_attr, fd_array);
    union bpf_attr a;
    memset(&a, 0, size);
    a.prog_type = BPF_PROG_TYPE_TRACEPOINT;
    a.insns = (uint64_t)(uintptr_t)insns;
    a.insn_cnt = 2;
    a.license = (uint64_t)(uintptr_t) "GPL";
    return (int)sys_bpf(BPF_PROG_LOAD, &a, size);
}

static double per_op(uint64_t t0, long n)
{
    return (double)(now_ns() - t0) / (double)n;
}

/* ns per cmd over n operations on map fd, at keys i & mask; the failed
 * ones are added to *bad. */
static double time_elem_ops(int cmd, int fd, uint32_t mask, long n, uint64_t *value, long *bad)
{
    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        uint32_t k = (uint32_t)(i & mask);
        *bad += elem(cmd, fd, &k, value) != 0;
    }
    return per_op(t0, n);
}

#define CREATES 50

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Median us of CREATES calls of make() and the close of what it made: a
 * mean would be the machine's scheduling outliers (ms on a loaded one) as
 * much as the call. -1 if a call failed. */
static double median_create_close_us(int (*make)(void))
{
    uint64_t ns[CREATES];
    for (int i = 0; i < CREATES; i++) {
        uint64_t t0 = now_ns();
        int fd = make();
        if (fd < 0)
            return -1;
        close(fd);
        ns[i] = now_ns() - t0;
    }
    qsort(ns, CREATES, sizeof(ns[0]), cmp_u64);
    return (double)ns[CREATES / 2] / 1000;
}

static int array_create(void)
{
    return map_create(BPF_MAP_TYPE_ARRAY, 1024);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    double create_us = median_create_close_us(array_create);
    if (create_us < 0) {
        perror("BPF_MAP_CREATE");
        return 1;
    }
    double load_us = median_create_close_us(prog_load);
    if (load_us < 0) {
        perror("BPF_PROG_LOAD");
        return 1;
    }

    int arr = map_create(BPF_MAP_TYPE_ARRAY, 1024), hash = map_create(BPF_MAP_TYPE_HASH, 4096);
    if (arr < 0 || hash < 0) {
        perror("BPF_MAP_CREATE");
        return 1;
    }
    uint64_t v = 1;
    uint32_t k, next;
    long bad = 0;
    double au = time_elem_ops(BPF_MAP_UPDATE_ELEM, arr, 1023, n, &v, &bad);
    double al = time_elem_ops(BPF_MAP_LOOKUP_ELEM, arr, 1023, n, &v, &bad);
    double hu = time_elem_ops(BPF_MAP_UPDATE_ELEM, hash, 4095, n, &v, &bad);
    double hl = time_elem_ops(BPF_MAP_LOOKUP_ELEM, hash, 4095, n, &v, &bad);
    uint64_t t0 = now_ns();
    long walked = 0;
    for (long i = 0; i < n;) {
        int r = elem(BPF_MAP_GET_NEXT_KEY, hash, walked ? &k : NULL, &next);
        i++;
        if (r != 0) {
            walked = 0;
            continue;
        }
        k = next;
        walked++;
    }
    double gn = per_op(t0, n);
    if (bad) {
        fprintf(stderr, "%ld map operations failed\n", bad);
        return 1;
    }
    printf("create_us=%.2f prog_load_us=%.2f array_lookup_ns=%.1f array_update_ns=%.1f hash_lookup_ns=%.1f "
           "hash_update_ns=%.1f get_next_key_ns=%.1f\n",
           create_us, load_us, al, au, hl, hu, gn);
    return 0;
}
