/* Compute programs shared by the bpfgraft-bench suites (vm, jit): each an
 * eBPF program (assembler text, r1 = mem, r2 = MEM_SIZE) and the same
 * algorithm in C. Include from files compiled with -O2 (the native baseline).
 * Where the C calls glibc (memcpy, strcmp: SIMD no eBPF JIT can match),
 * native_loop does the same work the way the program does (byte and word
 * loops), so a JIT's ratio to it says what the JIT leaves on the table.
 */
#ifndef BPFGRAFT_BENCH_PROGRAMS_H
#define BPFGRAFT_BENCH_PROGRAMS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "bench.h"

#define MEM_SIZE 8192

struct vm_case {
    const char *name;
    const char *asm_text;
    uint64_t (*native)(uint8_t *mem, size_t len);
    void (*init)(uint8_t *mem);
    uint64_t (*native_loop)(uint8_t *mem, size_t len); /* NULL: native is the same way */
};

/* The loops below stay loops: not turned into glibc calls or vectorised. */
#define SAME_WAY __attribute__((noinline, optimize("no-tree-loop-distribute-patterns", "no-tree-vectorize")))

/* ---- sum: a tight arithmetic loop ---- */
static const char sum_asm[] = "mov %r0, 0\n"
                              "mov %r1, 0\n"
                              "loop:\n"
                              "add %r0, %r1\n"
                              "add %r1, 1\n"
                              "jlt %r1, 10000, loop\n"
                              "exit\n";

static volatile uint64_t sum_limit = 10000;

static __attribute__((noinline)) uint64_t sum_native(uint8_t *mem, size_t len)
{
    (void)mem, (void)len;
    uint64_t r = 0, n = sum_limit;
    for (uint64_t i = 0; i < n; i++) {
        r += i;
        bench_keep(r); /* keep the loop: no closed form, as in the VM */
    }
    return r;
}

/* ---- log2: floor(log2(x)) of 1024 64-bit ints by binary search ---- */
static const char log2_asm[] = "mov %r0, 0\n"
                               "mov %r6, %r1\n"
                               "mov %r7, %r1\n"
                               "add %r7, %r2\n"
                               "next:\n"
                               "ldxdw %r3, [%r6+0]\n"
                               "mov %r4, 0\n"
                               "mov %r5, %r3\n"
                               "rsh %r5, 32\n"
                               "jeq %r5, 0, l16\n"
                               "add %r4, 32\n"
                               "mov %r3, %r5\n"
                               "l16:\n"
                               "mov %r5, %r3\n"
                               "rsh %r5, 16\n"
                               "jeq %r5, 0, l8\n"
                               "add %r4, 16\n"
                               "mov %r3, %r5\n"
                               "l8:\n"
                               "mov %r5, %r3\n"
                               "rsh %r5, 8\n"
                               "jeq %r5, 0, l4\n"
                               "add %r4, 8\n"
                               "mov %r3, %r5\n"
                               "l4:\n"
                               "mov %r5, %r3\n"
                               "rsh %r5, 4\n"
                               "jeq %r5, 0, l2\n"
                               "add %r4, 4\n"
                               "mov %r3, %r5\n"
                               "l2:\n"
                               "mov %r5, %r3\n"
                               "rsh %r5, 2\n"
                               "jeq %r5, 0, l1\n"
                               "add %r4, 2\n"
                               "mov %r3, %r5\n"
                               "l1:\n"
                               "mov %r5, %r3\n"
                               "rsh %r5, 1\n"
                               "jeq %r5, 0, done\n"
                               "add %r4, 1\n"
                               "done:\n"
                               "add %r0, %r4\n"
                               "add %r6, 8\n"
                               "jlt %r6, %r7, next\n"
                               "exit\n";

static __attribute__((noinline)) uint64_t log2_native(uint8_t *mem, size_t len)
{
    uint64_t total = 0;
    for (size_t off = 0; off + 8 <= len; off += 8) {
        uint64_t x, r = 0;
        memcpy(&x, mem + off, 8);
        if (x >> 32) {
            r += 32;
            x >>= 32;
        }
        if (x >> 16) {
            r += 16;
            x >>= 16;
        }
        if (x >> 8) {
            r += 8;
            x >>= 8;
        }
        if (x >> 4) {
            r += 4;
            x >>= 4;
        }
        if (x >> 2) {
            r += 2;
            x >>= 2;
        }
        if (x >> 1) {
            r += 1;
        }
        total += r;
    }
    return total;
}

static void log2_init(uint8_t *mem)
{
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t off = 0; off < MEM_SIZE; off += 8) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        uint64_t v = x >> (x & 63);
        memcpy(mem + off, &v, 8);
    }
}

/* ---- prime: sieve of Eratosthenes over the buffer, count primes ---- */
static const char prime_asm[] = "mov %r3, 0\n"
                                "clear:\n"
                                "mov %r4, %r1\n"
                                "add %r4, %r3\n"
                                "stdw [%r4+0], 0\n"
                                "add %r3, 8\n"
                                "jlt %r3, %r2, clear\n"
                                "mov %r6, 2\n"
                                "mov %r0, 0\n"
                                "outer:\n"
                                "jge %r6, %r2, end\n"
                                "mov %r3, %r1\n"
                                "add %r3, %r6\n"
                                "ldxb %r4, [%r3+0]\n"
                                "jne %r4, 0, skip\n"
                                "add %r0, 1\n"
                                "mov %r5, %r6\n"
                                "mul %r5, %r6\n"
                                "inner:\n"
                                "jge %r5, %r2, skip\n"
                                "mov %r3, %r1\n"
                                "add %r3, %r5\n"
                                "stb [%r3+0], 1\n"
                                "add %r5, %r6\n"
                                "ja inner\n"
                                "skip:\n"
                                "add %r6, 1\n"
                                "ja outer\n"
                                "end:\n"
                                "exit\n";

static __attribute__((noinline)) uint64_t prime_native(uint8_t *mem, size_t len)
{
    uint64_t count = 0;
    memset(mem, 0, len);
    for (size_t i = 2; i < len; i++) {
        if (mem[i])
            continue;
        count++;
        for (size_t j = i * i; j < len; j += i)
            mem[j] = 1;
    }
    return count;
}

/* ---- memcpy: copy 4 KiB in 8-byte words ---- */
static const char memcpy_asm[] = "mov %r3, 0\n"
                                 "loop:\n"
                                 "mov %r4, %r1\n"
                                 "add %r4, %r3\n"
                                 "ldxdw %r5, [%r4+0]\n"
                                 "stxdw [%r4+4096], %r5\n"
                                 "add %r3, 8\n"
                                 "jlt %r3, 4096, loop\n"
                                 "mov %r0, %r5\n"
                                 "exit\n";

static __attribute__((noinline)) uint64_t memcpy_native(uint8_t *mem, size_t len)
{
    (void)len;
    uint64_t last;
    memcpy(mem + 4096, mem, 4096);
    memcpy(&last, mem + 4096 + 4088, 8);
    return last;
}

static SAME_WAY uint64_t memcpy_loop(uint8_t *mem, size_t len)
{
    (void)len;
    uint64_t w = 0;
    for (size_t off = 0; off < 4096; off += 8) {
        memcpy(&w, mem + off, 8);
        memcpy(mem + 4096 + off, &w, 8);
    }
    return w;
}

/* ---- strcmp: two equal 4095-character strings ---- */
static const char strcmp_asm[] = "mov %r3, %r1\n"
                                 "mov %r4, %r1\n"
                                 "add %r4, 4096\n"
                                 "loop:\n"
                                 "ldxb %r5, [%r3+0]\n"
                                 "ldxb %r6, [%r4+0]\n"
                                 "jne %r5, %r6, diff\n"
                                 "jeq %r5, 0, same\n"
                                 "add %r3, 1\n"
                                 "add %r4, 1\n"
                                 "ja loop\n"
                                 "diff:\n"
                                 "mov %r0, %r5\n"
                                 "sub %r0, %r6\n"
                                 "exit\n"
                                 "same:\n"
                                 "mov %r0, 0\n"
                                 "exit\n";

static __attribute__((noinline)) uint64_t strcmp_native(uint8_t *mem, size_t len)
{
    (void)len;
    return (uint64_t)(int64_t)strcmp((const char *)mem, (const char *)mem + 4096);
}

static SAME_WAY uint64_t strcmp_loop(uint8_t *mem, size_t len)
{
    (void)len;
    const uint8_t *a = mem, *b = mem + 4096;
    for (;; a++, b++) {
        if (*a != *b)
            return (uint64_t)((int64_t)*a - (int64_t)*b);
        if (!*a)
            return 0;
    }
}

static void strings_init(uint8_t *mem)
{
    for (size_t i = 0; i < 4095; i++)
        mem[i] = mem[4096 + i] = (uint8_t)('a' + i % 26);
    mem[4095] = mem[8191] = 0;
}

/* ---- switch: an 8-way switch on each byte (a jeq chain in eBPF) ---- */
static const char switch_asm[] = "mov %r0, 0\n"
                                 "mov %r3, 0\n"
                                 "loop:\n"
                                 "mov %r4, %r1\n"
                                 "add %r4, %r3\n"
                                 "ldxb %r5, [%r4+0]\n"
                                 "mov %r6, %r5\n"
                                 "and %r6, 7\n"
                                 "jeq %r6, 0, c0\n"
                                 "jeq %r6, 1, c1\n"
                                 "jeq %r6, 2, c2\n"
                                 "jeq %r6, 3, c3\n"
                                 "jeq %r6, 4, c4\n"
                                 "jeq %r6, 5, c5\n"
                                 "jeq %r6, 6, c6\n"
                                 "add %r0, 7\n"
                                 "ja next\n"
                                 "c0:\n"
                                 "add %r0, 1\n"
                                 "ja next\n"
                                 "c1:\n"
                                 "xor %r0, %r3\n"
                                 "ja next\n"
                                 "c2:\n"
                                 "mul %r0, 3\n"
                                 "ja next\n"
                                 "c3:\n"
                                 "sub %r0, %r5\n"
                                 "ja next\n"
                                 "c4:\n"
                                 "mov %r7, %r3\n"
                                 "lsh %r7, 1\n"
                                 "add %r0, %r7\n"
                                 "ja next\n"
                                 "c5:\n"
                                 "rsh %r0, 1\n"
                                 "ja next\n"
                                 "c6:\n"
                                 "add %r0, %r5\n"
                                 "add %r0, %r3\n"
                                 "next:\n"
                                 "add %r3, 1\n"
                                 "jlt %r3, %r2, loop\n"
                                 "exit\n";

static __attribute__((noinline)) uint64_t switch_native(uint8_t *mem, size_t len)
{
    uint64_t r = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t b = mem[i];
        switch (b & 7) {
        case 0: r += 1; break;
        case 1: r ^= i; break;
        case 2: r *= 3; break;
        case 3: r -= b; break;
        case 4: r += i << 1; break;
        case 5: r >>= 1; break;
        case 6: r += b + i; break;
        default: r += 7; break;
        }
    }
    return r;
}

static const struct vm_case cases[] = {
    {"sum_loop_10k", sum_asm, sum_native, NULL, NULL},
    {"log2_1k_ints", log2_asm, log2_native, log2_init, NULL},
    {"prime_sieve_8k", prime_asm, prime_native, NULL, NULL},
    {"memcpy_4k", memcpy_asm, memcpy_native, log2_init, memcpy_loop},
    {"strcmp_4k", strcmp_asm, strcmp_native, strings_init, strcmp_loop},
    {"switch_8k", switch_asm, switch_native, log2_init, NULL},
};

#endif
