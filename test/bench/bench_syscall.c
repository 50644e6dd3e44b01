/* bpfgraft-bench syscall: the cost of getppid() in a victim process
 * unhooked, under the kernel's sys_enter raw tracepoint running
 * an empty BPF program (libbpf, real kernel BPF: it runs for every
 * syscall of the machine) and under bpfgraft's syscall hooks with the same
 * empty program and with a counter, whose count is checked exact: on the
 * signal path (Syscall User Dispatch, a SIGSYS per syscall, measured at a
 * site of the victim's own that cannot be rewritten) and on the fast
 * path (glibc's getppid(), whose site the server rewrites after a warm-up);
 * beside them native replicas of the rewritten path built from the
 * payload's own entry code (bench_syscall_replica.S), the hardware's part. */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_client.h"
#include "bench_victim.h"
#include "payload_abi.h"

#define SUD_ON LONG_MIN
#define SUD_OFF (LONG_MIN + 1)

struct victim {
    pid_t pid;
    int to, from;
};

/* getppid with the number moved into rax from another register: neither
 * site form the server rewrites (payload_abi.h section 6: `mov $nr,%eax`
 * or glibc syscall()'s `mov 0x8(%rsp),%r9` before the `syscall`), so
 * every call is a SIGSYS while Syscall User Dispatch is on. */
static long sud_getppid(void)
{
    long nr = SYS_getppid, ret;
    __asm__ volatile("mov %1, %%rax\n\tsyscall" : "=&a"(ret) : "d"(nr) : "rcx", "r11", "memory");
    return ret;
}

/* The victim's side: answers "N" with the ns N getppid() calls took:
 * glibc's getppid() (its `mov $110,%eax; syscall` site can be rewritten)
 * for N > 0, sud_getppid() (a site that always stays on Syscall User
 * Dispatch) for -N. */
static __attribute__((noreturn)) void victim_serve(int cmd, int answer)
{
    long n;
    static volatile char allow = 0; /* SYSCALL_DISPATCH_FILTER_ALLOW */
    while (read(cmd, &n, sizeof(n)) == sizeof(n) && n != 0) {
        if (n == SUD_ON || n == SUD_OFF) {
            /* Syscall User Dispatch on, with all of user space as its
             * exempt region (like the payload's syscalls of the fast
             * path): what every syscall of a hooked thread pays in
             * the kernel without any signal */
            uint64_t r = (uint64_t)prctl(59 /* PR_SET_SYSCALL_USER_DISPATCH */, n == SUD_ON, 0,
                                         n == SUD_ON ? 1ul << 47 : 0, n == SUD_ON ? &allow : NULL);
            if (write(answer, &r, sizeof(r)) != sizeof(r))
                break;
            continue;
        }
        uint64_t t0 = bench_now_ns();
        if (n > 0)
            for (long i = 0; i < n; i++)
                getppid();
        else
            for (long i = 0; i < -n; i++)
                sud_getppid();
        uint64_t dt = bench_now_ns() - t0;
        if (write(answer, &dt, sizeof(dt)) != sizeof(dt))
            break;
    }
    _exit(0);
}

/* Both victims run on the last CPU this process may use: with each on a
 * CPU of its own, a pair's runs would compare two CPUs, and the rows
 * moved by 4x between runs of the suite with where the scheduler put
 * them. */
static int pin_to_one_cpu(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set))
        return -errno;
    int last = -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set))
            last = c;
    CPU_ZERO(&set);
    CPU_SET(last, &set);
    return sched_setaffinity(0, sizeof(set), &set) ? -errno : 0;
}

/* A forked child running victim_serve. */
static int victim_start(struct victim *v)
{
    int cmd, answer;
    v->pid = bench_fork_victim(&cmd, &answer);
    if (v->pid < 0)
        return v->pid;
    if (v->pid == 0) {
        if (pin_to_one_cpu())
            _exit(126);
        victim_serve(cmd, answer);
    }
    v->to = cmd;
    v->from = answer;
    return 0;
}

static void victim_stop(struct victim *v)
{
    if (v->pid > 0) {
        close(v->to);
        close(v->from);
        bench_end_victim(v->pid, 0);
    }
    memset(v, 0, sizeof(*v));
}

/* ns per getppid() over one run of n calls in victim v. */
static int run_calls(void *victim, long n, double *per_call)
{
    struct victim *v = victim;
    uint64_t dt;
    if (write(v->to, &n, sizeof(n)) != sizeof(n) || read(v->from, &dt, sizeof(dt)) != sizeof(dt))
        return -EIO;
    *per_call = (double)dt / (double)(n < 0 ? -n : n);
    return 0;
}

/* Calls per timed run: about 0.5 ms of getppid() where the kernel has
 * page-table isolation, shorter than a time slice. */
#define RUN_CALLS 500
#define MIN_RUNS 20
#define MAX_RUNS 2000

/* How many runs of RUN_CALLS stand for n calls. */
static long runs_for(long n)
{
    long calls = n < 0 ? -n : n;
    long runs = calls / RUN_CALLS > MIN_RUNS ? calls / RUN_CALLS : MIN_RUNS;
    return runs < MAX_RUNS ? runs : MAX_RUNS;
}

/* One row: what the hook (the kernel program, SUD) adds per call and the
 * least ns per call without it. Runs with and without it are made in
 * pairs, one right after the other, and the added cost is
 * the median of the pairs' differences: two minima taken minutes apart on
 * a shared machine differ by more than a hook costs, while a pair sees
 * the same machine, and the median ignores the pairs a preemption hit. */
struct pair {
    double added, base;
};

struct pairs {
    long n;
    double base;
    double diff[MAX_RUNS];
};

static void pairs_add(struct pairs *ps, double with, double without)
{
    if (ps->n < MAX_RUNS)
        ps->diff[ps->n++] = with - without;
    ps->base = ps->n == 1 || without < ps->base ? without : ps->base;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static struct pair pairs_result(struct pairs *ps)
{
    qsort(ps->diff, (size_t)ps->n, sizeof(ps->diff[0]), cmp_double);
    return (struct pair){ps->n ? ps->diff[ps->n / 2] : 0, ps->base};
}

static struct pairs pairs_buf; /* one row at a time */

/* runs_for(n) pairs: a run of m calls in `with`, then one in `without`. */
static int paired_cost(struct victim *with, long m, struct victim *without, long m0, long n, struct pair *p)
{
    pairs_buf.n = 0;
    int err = 0;
    for (long i = runs_for(n); i > 0 && !err; i--) {
        double h, b;
        if (!(err = run_calls(with, m, &h)) && !(err = run_calls(without, m0, &b)))
            pairs_add(&pairs_buf, h, b);
    }
    *p = pairs_result(&pairs_buf);
    return err;
}

/* The floor of the rewritten path: a syscall, then dependent loads each
 * on a page of its own, 2 MiB + 4 KiB apart (a page table each, as the
 * hook's mappings have). Where the kernel has page-table isolation
 * without PCID (`pti`, no `pcid` in /proc/cpuinfo), every syscall empties
 * the TLB and each of these loads is a page walk (two-dimensional in a
 * VM). A rewritten site's hook touches 11 pages the unhooked call does not
 * (payload/README.md, "Where a hooked syscall's time goes"), some of them
 * near each other and read in parallel, so the walks cost less than
 * this chase's; but a counter hook touches at least two (its stub, the
 * map value), already more than the goal of 20 ns there. Where the
 * TLB survives a syscall (PCID, or no PTI) these rows are ~1 ns. */
#define WALK_STRIDE ((2ul << 20) + 4096)
#define WALK_PAGES 8

struct walk {
    void **first; /* page k's word points at page k + 1's */
    size_t len;
};

static int walk_setup(struct walk *w, int pages)
{
    w->len = (size_t)pages * WALK_STRIDE;
    char *m = mmap(NULL, w->len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -errno;
    for (int k = 0; k < pages; k++) {
        void **word = (void **)(m + (size_t)k * WALK_STRIDE + (size_t)k * 64 % 4096);
        *word = k + 1 < pages ? m + (size_t)(k + 1) * WALK_STRIDE + (size_t)(k + 1) * 64 % 4096 : NULL;
    }
    w->first = (void **)m;
    return 0;
}

/* ns per getppid() followed by the chase of `pages` pages. */
static double walk_run(const struct walk *w, int pages)
{
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < RUN_CALLS; i++) {
        getppid();
        void **p = w->first;
        for (int k = 0; k < pages; k++)
            p = *p;
        __asm__ volatile("" : : "r"(p));
    }
    return (double)(bench_now_ns() - t0) / RUN_CALLS;
}

/* What `pages` page walks after each syscall add, by pairs of runs. */
static struct pair walk_cost(const struct walk *w, int pages, long n)
{
    pairs_buf.n = 0;
    for (long i = runs_for(n); i > 0; i--) {
        double with = walk_run(w, pages), without = walk_run(w, 0);
        pairs_add(&pairs_buf, with, without);
    }
    return pairs_result(&pairs_buf);
}

/* first: one page touched after each syscall; each: per page of 8. */
static int walk_floor(long n, struct pair *first, struct pair *each)
{
    struct walk w = {0};
    int err = walk_setup(&w, WALK_PAGES);
    if (err)
        return err;
    *first = walk_cost(&w, 1, n);
    *each = walk_cost(&w, WALK_PAGES, n);
    each->added /= WALK_PAGES;
    munmap(w.first, w.len);
    return 0;
}

static int sud_switch(struct victim *v, long what)
{
    uint64_t r = 1;
    if (write(v->to, &what, sizeof(what)) != sizeof(what) || read(v->from, &r, sizeof(r)) != sizeof(r))
        return -EIO;
    return r ? -EOPNOTSUPP : 0;
}

/* The kernel's cost of Syscall User Dispatch being on (no signal, no
 * program): every syscall takes the kernel's slow work path. */
static int sud_tax(struct victim *v, struct victim *ref, long n, struct pair *p)
{
    int err = sud_switch(v, SUD_ON);
    if (!err)
        err = paired_cost(v, RUN_CALLS, ref, RUN_CALLS, n, p);
    int off = sud_switch(v, SUD_OFF);
    return err ? err : off == -EOPNOTSUPP ? -EIO : off;
}

/* The kernel program prog_name on sys_enter: it runs for every process,
 * so each pair is a run of v with it attached, then one of ref with it
 * detached (a switch between the two victims, as for bpfgraft's rows). */
static int kernel_cost(struct victim *v, struct victim *ref, const char *obj_path, const char *prog_name, long n,
                       struct pair *p)
{
    struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
    if (!obj)
        return -errno;
    int err = bpf_object__load(obj);
    struct bpf_program *prog = err ? NULL : bpf_object__find_program_by_name(obj, prog_name);
    err = err ? err : prog ? 0 : -ENOENT;
    pairs_buf.n = 0;
    for (long i = runs_for(n); i > 0 && !err; i--) {
        double h, b;
        struct bpf_link *link = bpf_program__attach(prog);
        if (!link) {
            err = -errno;
            break;
        }
        err = run_calls(v, RUN_CALLS, &h);
        bpf_link__destroy(link);
        if (!err && !(err = run_calls(ref, RUN_CALLS, &b)))
            pairs_add(&pairs_buf, h, b);
    }
    *p = pairs_result(&pairs_buf);
    if (err)
        fprintf(stderr, "bench syscall: kernel %s on raw tracepoint sys_enter: %s\n", prog_name, strerror(-err));
    bpf_object__close(obj);
    return err;
}

static int rpc(struct rconn *r, const char *method, uint32_t pid, const char *prog)
{
    struct bpfg_rpc_out out;
    begin(r, &out, method, prog ? 3 : 1);
    bpfg_pack_cstr(&out.pk, "pid");
    msgpack_pack_uint32(&out.pk, pid);
    if (prog) {
        bpfg_pack_cstr(&out.pk, "object");
        bpfg_pack_cstr(&out.pk, "bench_syscall");
        bpfg_pack_cstr(&out.pk, "programs");
        msgpack_pack_array(&out.pk, 1);
        bpfg_pack_cstr(&out.pk, prog);
    }
    return rcall_discard(r, &out);
}

/* n > 0: through glibc's getppid(), whose site is rewritten after a
 * warm-up (the fast path); n < 0: sud_getppid(), SIGSYS every time.
 * ref makes the same calls unhooked, in turn with v's. */
static int graft_cost(struct rconn *r, struct victim *v, struct victim *ref, const char *prog, long n, struct pair *p,
                      bool count)
{
    int err = rpc(r, "target.attach", (uint32_t)v->pid, prog);
    if (err)
        return err;
    if (n > 0) {
        double ignored;
        struct timespec settle = {0, 300000000}; /* the payload reports every 50 ms */
        if ((err = run_calls(v, 100, &ignored)))
            return err;
        nanosleep(&settle, NULL);
    }
    long m = n < 0 ? -RUN_CALLS : RUN_CALLS;
    uint64_t hits = 0, want = (uint64_t)runs_for(n) * RUN_CALLS;
    if (count && !(err = bench_map_counter(r, "hits", NULL, true)) && !(err = paired_cost(v, m, ref, m, n, p)) &&
        !(err = bench_map_counter(r, "hits", &hits, false)) && hits != want) {
        fprintf(stderr, "bench syscall: the map counted %llu getppid() for %llu calls\n", (unsigned long long)hits,
                (unsigned long long)want);
        err = -EDOM;
    } else if (!count) {
        err = paired_cost(v, m, ref, m, n, p);
    }
    int derr = rpc(r, "target.detach", (uint32_t)v->pid, NULL);
    return err ? err : derr;
}

/* A row: what p's hook adds per syscall, beside the kernel's k. */
static void report_added(struct bench_ctx *ctx, const char *row, const char *who, double added, const struct pair *k)
{
    bench_report(ctx, row, who, added, "ns/syscall", k ? "kernel" : NULL, k ? k->added : 0);
}

/* ---- native replicas of the rewritten path (bench_syscall_replica.S) ----
 * A site and its stub as the server writes them (payload_abi.h section 6),
 * on a page of the bench's own, calling the payload's entry code
 * (entry.h: SYS_FAST_ENTRY) with handlers that do nothing but the row's
 * piece: the hardware's part of a hooked call, printed beside ours. */
void replica_sys_entry_nop(void);
void replica_sys_entry_prog(void);
extern char replica_empty_prog[], replica_count_prog[];
static long (*volatile replica_sys_prog)(void *, size_t, void *, void *);

/* The enter handler of replica_sys_entry_prog: one program through a
 * pointer, as a run calls JIT code (returns 0: make the call). */
long replica_sys_enter_prog(void *regs, void *slot);
long replica_sys_enter_prog(void *regs, void *slot)
{
    (void)slot;
    replica_sys_prog(regs, sizeof(struct bpfg_pt_regs), NULL, NULL);
    return 0;
}

#define REPLICA_PAGE 4096
enum { REPLICA_PLAIN = 0, REPLICA_NOP = 16, REPLICA_PROG = 32 }; /* sites; stubs at 64 * (1, 2) */

/* At b + site: `mov $110,%eax; syscall; ret` (glibc's getppid), rewritten
 * when stub: its 5 first bytes a jmp to the stub (server/syscalls.c:
 * build_stub's layout), which calls entry. */
static void replica_site(uint8_t *b, size_t site, size_t stub, void (*entry)(void))
{
    static const uint8_t call[] = {0xb8, 110, 0, 0, 0, 0x0f, 0x05, 0xc3};
    static const uint8_t head[] = {0x48, 0x8d, 0x64, 0x24, 0x80};          /* lea -0x80(%rsp),%rsp */
    static const uint8_t tail[] = {0x48, 0x8d, 0xa4, 0x24, 0x80, 0, 0, 0}; /* lea 0x80(%rsp),%rsp */
    memcpy(b + site, call, sizeof(call));
    if (!stub)
        return;
    uint8_t *s = b + stub;
    uint64_t site_addr = (uint64_t)(uintptr_t)(b + site), entry_addr = (uint64_t)(uintptr_t)entry;
    int32_t rel;
    memcpy(s, head, 5);
    memcpy(s + 5, call, 5); /* mov $110,%eax */
    s[10] = 0xff, s[11] = 0x15;
    rel = 32 - BPFG_SYS_STUB_RET_OFF; /* call *16(%rip) */
    memcpy(s + 12, &rel, 4);
    memcpy(s + BPFG_SYS_STUB_RET_OFF, tail, 8);
    s[24] = 0xe9;
    rel = (int32_t)((int64_t)(site + 7) - (int64_t)(stub + 29)); /* jmp site + 7 */
    memcpy(s + 25, &rel, 4);
    memcpy(s + 32, &entry_addr, 8);
    memcpy(s + BPFG_SYS_STUB_SITE_OFF, &site_addr, 8);
    b[site] = 0xe9; /* the site's jmp to its stub */
    rel = (int32_t)(stub - site - 5);
    memcpy(b + site + 1, &rel, 4);
}

static uint8_t *replica_page(void)
{
    uint8_t *b = mmap(NULL, REPLICA_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (b == MAP_FAILED)
        return NULL;
    memset(b, 0xcc, REPLICA_PAGE);
    replica_site(b, REPLICA_PLAIN, 0, NULL);
    replica_site(b, REPLICA_NOP, 64, replica_sys_entry_nop);
    replica_site(b, REPLICA_PROG, 128, replica_sys_entry_prog);
    if (mprotect(b, REPLICA_PAGE, PROT_READ | PROT_EXEC)) {
        munmap(b, REPLICA_PAGE);
        return NULL;
    }
    return b;
}

typedef long (*replica_fn)(void);

static double replica_run(replica_fn f)
{
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < RUN_CALLS; i++)
        bench_keep(f());
    return (double)(bench_now_ns() - t0) / RUN_CALLS;
}

/* What the site at b + site adds to the plain call, by pairs of runs. */
static double replica_cost(uint8_t *b, size_t site, long n)
{
    replica_fn f = (replica_fn)(void *)(b + site), plain = (replica_fn)(void *)(b + REPLICA_PLAIN);
    pairs_buf.n = 0;
    for (long i = runs_for(n); i > 0; i--) {
        double with = replica_run(f), without = replica_run(plain);
        pairs_add(&pairs_buf, with, without);
    }
    return pairs_result(&pairs_buf).added;
}

/* The rows, beside bpfgraft's rewritten figures f[0] (empty), f[1]
 * (counter); the slot by %fs:0 too where the CPU has rdfsbase (the payload
 * takes rdfsbase there: %fs:0 faults in a thread whose fs base is 0). */
static void report_replica(struct bench_ctx *ctx, const char *row, const char *what, double ns, double ours)
{
    bench_report(ctx, row, what, ns, "ns/syscall", "bpfgraft rewritten", ours);
}

static int replica_rows(struct bench_ctx *ctx, long n, const struct pair *f)
{
    uint8_t *b = replica_page();
    if (!b)
        return -errno;
    bool fsgsbase = getauxval(AT_HWCAP2) & 2; /* HWCAP2_FSGSBASE */
    if (fsgsbase) {
        replica_setup(2);
        report_replica(ctx, "sys_enter empty",
                       "native replica: site, stub, slot by %fs:0 (not rdfsbase), stack switch, pt_regs",
                       replica_cost(b, REPLICA_NOP, n), f[0].added);
    }
    replica_setup(fsgsbase ? 1 : 2);
    report_replica(ctx, "sys_enter empty", "native replica: site, stub, slot, stack switch, pt_regs",
                   replica_cost(b, REPLICA_NOP, n), f[0].added);
    replica_sys_prog = (long (*)(void *, size_t, void *, void *))(void *)replica_empty_prog;
    report_replica(ctx, "sys_enter empty", "native replica: + an empty program through a pointer",
                   replica_cost(b, REPLICA_PROG, n), f[0].added);
    replica_sys_prog = (long (*)(void *, size_t, void *, void *))(void *)replica_count_prog;
    report_replica(ctx, "sys_enter counter", "native replica: + a counter's locked add",
                   replica_cost(b, REPLICA_PROG, n), f[1].added);
    munmap(b, REPLICA_PAGE);
    bench_note(ctx,
               "native replica: a site and stub as the server writes them on a page of the bench's, "
               "calling the payload's own entry code (entry.h: SYS_FAST_ENTRY) in the bench process (no "
               "Syscall User Dispatch) with handlers that do only the row's piece; added ns over the same "
               "getppid() unrewritten, median of %ld pairs; its ratio is to bpfgraft's rewritten row",
               runs_for(n));
    return 0;
}

/* sys: sud_getppid() against getppid(), both unhooked. */
static void report(struct bench_ctx *ctx, long runs, const struct pair *sys, const struct pair *tax,
                   const struct pair *k, const struct pair *g, const struct pair *f, const struct pair *walk)
{
    bench_report(ctx, "getppid, unhooked", "native", sys->base, "ns/call", NULL, 0);
    bench_report(ctx, "getppid at a site never rewritten, unhooked", "native", sys->base + sys->added, "ns/call", NULL,
                 0);
    report_added(ctx, "sys_enter empty", "kernel", k[0].added, NULL);
    report_added(ctx, "sys_enter counter", "kernel", k[1].added, NULL);
    report_added(ctx, "sys_enter empty", "bpfgraft SUD", g[0].added, &k[0]);
    report_added(ctx, "sys_enter counter", "bpfgraft SUD", g[1].added, &k[1]);
    report_added(ctx, "sys_enter empty", "bpfgraft rewritten", f[0].added, &k[0]);
    report_added(ctx, "sys_enter counter", "bpfgraft rewritten", f[1].added, &k[1]);
    report_added(ctx, "SUD on, no signal (kernel work path)", "kernel", tax->added, NULL);
    report_added(ctx, "sys_enter counter, beyond SUD's cost", "bpfgraft rewritten", f[1].added - tax->added, &k[1]);
    report_added(ctx, "floor: 1 page touched after a syscall (a TLB walk)", "native", walk[0].added, NULL);
    report_added(ctx, "a page walk after a syscall, each of 8 chased", "native", walk[1].added, NULL);
    bench_note(ctx,
               "added cost = median over %ld pairs of runs of %d calls, one with the hook and one "
               "without right after it, of their ns/call "
               "difference (without: a second victim that is never hooked; for the kernel's rows the "
               "program is detached during its runs); bpfgraft "
               "SUD: getppid made by `mov %%rdx,%%rax; syscall`, a site no rewrite takes (a SIGSYS per "
               "syscall; glibc's syscall() is rewritten since its form is); bpfgraft "
               "rewritten: glibc getppid(), whose `mov $nr,%%eax; syscall` site the server rewrote after a "
               "warm-up (jmp to a stub, no signal); counters checked exact; goal (issue): <= 20 ns/syscall; "
               "'beyond SUD's cost' subtracts what the kernel "
               "charges every syscall of a thread with Syscall User Dispatch on (the safety net), measured "
               "with an exempt region covering all of user space; floor: getppid() then dependent loads on "
               "pages 2 MiB + 4 KiB apart, each a TLB walk where every syscall empties the TLB (pti without "
               "pcid), against the same calls without them",
               runs, RUN_CALLS);
}

static int run(struct bench_ctx *ctx)
{
    long n = bench_quick(ctx) ? 20000 : 1000000, gn = bench_quick(ctx) ? 5000 : 200000;
    char obj[PATH_MAX], server_bin[PATH_MAX];
    struct victim v = {0}, ref = {0};
    struct server srv = {.pid = -1};
    struct rconn r = {0};
    struct pair sys, tax, k[2], g[2], f[2], walk[2];
    int err;

    if ((err = bench_find_files(sizeof(obj), obj, "bench_syscall.bpf.o", server_bin, "bpfgraftd", NULL))) {
        fprintf(stderr, "bench syscall: object or bpfgraftd not built\n");
        return err;
    }
    if ((err = walk_floor(n, &walk[0], &walk[1])) || (err = victim_start(&v)) || (err = victim_start(&ref)) ||
        (err = paired_cost(&ref, -RUN_CALLS, &ref, RUN_CALLS, n, &sys)) || (err = sud_tax(&v, &ref, n, &tax)))
        goto out;
    libbpf_set_print(NULL);
    if ((err = kernel_cost(&v, &ref, obj, "empty_enter", n, &k[0])) ||
        (err = kernel_cost(&v, &ref, obj, "count_enter", n, &k[1])))
        goto out;
    if ((err = server_start(&srv, server_bin)) || (err = rconnect(srv.sock, &r)) ||
        (err = bench_load_object(&r, obj, "bench_syscall")) ||
        (err = graft_cost(&r, &v, &ref, "empty_enter", -gn, &g[0], false)) ||
        (err = graft_cost(&r, &v, &ref, "count_enter", -gn, &g[1], true)) ||
        (err = graft_cost(&r, &v, &ref, "empty_enter", n, &f[0], false)) ||
        (err = graft_cost(&r, &v, &ref, "count_enter", n, &f[1], true)))
        goto out;
    report(ctx, runs_for(n), &sys, &tax, k, g, f, walk);
    err = replica_rows(ctx, n, f);
out:
    if (r.c)
        rclose(&r);
    server_stop(&srv);
    victim_stop(&ref);
    victim_stop(&v);
    return err;
}

const struct bench_suite bench_suite_syscall = {
    "syscall",
    "getppid() cost: unhooked, kernel sys_enter raw tracepoint (libbpf), bpfgraft syscall hooks",
    run,
};
