/* bpfgraft-bench uprobe: the per-call cost of a probed function in one
 * victim process, with no probe, with kernel uprobes/uretprobes (libbpf,
 * real kernel BPF) and with bpfgraft's uprobes/uretprobes running the same
 * programs; plus bpfgraft's attach latency, how long the victim's threads
 * stay stopped (also with 100 threads) and the payload's added RSS.
 * bpfgraft runs each program with the interpreter, the x86 JIT and the
 * LLVM engine (target.attach's engine).
 *
 * Every bpfgraft measurement with the counting program also checks that
 * the map saw exactly as many hits as the victim made calls. */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "bench_client.h"
#include "bench_victim.h"
#include "payload_abi.h"

struct victim {
    pid_t pid;
    FILE *in;         /* commands */
    FILE *out;        /* answers */
    const char *func; /* "short": bench_short (a hop's site), "mid": bench_mid+3 (a hop inside a leaf), "tight":
                       * bench_tight (a trap's), "deepD": bench_deep_target D frames deep, "usdt": the USDT
                       * probe usdt (default bpfgraft_bench:hit), NULL: bench_target */
    const char *bin;
    const char *usdt; /* "PROVIDER:NAME" of func "usdt"; NULL: bpfgraft_bench:hit */
};

/* Starts argv[0] (argv NULL-terminated) as victim v: commands on its stdin,
 * answers on its stdout, "ready" first. */
static int victim_spawn(struct victim *v, char *const argv[])
{
    int cmd, answer;
    v->pid = bench_fork_victim(&cmd, &answer);
    if (v->pid < 0)
        return v->pid;
    if (v->pid == 0) {
        dup2(cmd, 0);
        dup2(answer, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    v->bin = argv[0];
    v->in = fdopen(cmd, "w");
    v->out = fdopen(answer, "r");
    char line[64];
    if (!v->in || !v->out || !fgets(line, sizeof(line), v->out) || strncmp(line, "ready", 5) != 0)
        return -EIO;
    setvbuf(v->in, NULL, _IOLBF, 0);
    return 0;
}

static int victim_start(struct victim *v, const char *bin, int threads)
{
    char n[16];
    snprintf(n, sizeof(n), "%d", threads < 0 ? -threads : threads);
    char *argv[] = {(char *)bin, threads < 0 ? "--busy" : "--threads", n, NULL};
    if (!threads)
        argv[1] = NULL;
    return victim_spawn(v, argv);
}

/* Debian's python3.11 as a victim: "usdt N" calls an empty Python function
 * N times and answers the ns they took; its returns fire the USDT probe
 * python:function__return once each (Python 3.11 fires
 * function__entry only where a generator or coroutine resumes). */
#define PYTHON_BIN "/usr/bin/python3.11"
static int python_victim_start(struct victim *v)
{
    /* bytes in and out: a text stream's decoder is Python code (codecs.py),
     * whose returns would fire the probe too */
    static const char script[] = "import sys, time\n"
                                 "def f():\n"
                                 "    pass\n"
                                 "out = sys.stdout.buffer\n"
                                 "out.write(b'ready\\n'); out.flush()\n"
                                 "while True:\n"
                                 "    w = sys.stdin.buffer.readline().split()\n"
                                 "    if not w or w[0] == b'quit':\n"
                                 "        break\n"
                                 "    n = int(w[1])\n"
                                 "    t0 = time.perf_counter_ns()\n"
                                 "    for _ in range(n):\n"
                                 "        f()\n"
                                 "    out.write(b'%d\\n' % (time.perf_counter_ns() - t0)); out.flush()\n";
    char *argv[] = {PYTHON_BIN, "-c", (char *)script, NULL};
    v->func = "usdt";
    v->usdt = "python:function__return";
    return victim_spawn(v, argv);
}

static void victim_stop(struct victim *v)
{
    if (v->in) {
        fprintf(v->in, "quit\n");
        fclose(v->in);
    }
    if (v->out)
        fclose(v->out);
    if (v->pid > 0)
        bench_end_victim(v->pid, 2000);
    memset(v, 0, sizeof(*v));
}

/* ns per call of bench_target over one run of n calls in victim v. */
static int run_calls(void *victim, long n, double *per_call)
{
    struct victim *v = victim;
    char line[128];
    unsigned long long total;
    fprintf(v->in, "%s %ld\n", v->func ? v->func : "run", n);
    if (!fgets(line, sizeof(line), v->out) || sscanf(line, "%llu", &total) != 1)
        return -EIO;
    *per_call = (double)total / (double)n;
    return 0;
}

/* 3n calls as RUNS runs of 3n / RUNS: short runs, some of which no other
 * task interrupts on a loaded machine (3 runs of n found none: the same
 * probe read 13.7 and 26.7 ns in one run of the suite). The total stays
 * 3n, which the counters check. */
#define RUNS 30
static struct bench_timed_calls timed_calls(struct victim *v, long n)
{
    return (struct bench_timed_calls){run_calls, v, n * 3 / RUNS, RUNS};
}

/* ns per call of bench_target: the best of timed_calls(n)'s runs. */
static int victim_per_call(struct victim *v, long n, double *ns)
{
    struct bench_timed_calls t = timed_calls(v, n);
    return bench_best_run(&t, ns);
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* Where a probe goes in victim v, as target.attach names it. */
static const char *victim_target(const struct victim *v)
{
    static char usdt[PATH_MAX + 32];
    if (!v->func)
        return ":bench_target";
    if (strcmp(v->func, "usdt") == 0)
        return snprintf(usdt, sizeof(usdt), "%s:%s", v->bin, v->usdt ? v->usdt : "bpfgraft_bench:hit"), usdt;
    if (strncmp(v->func, "deep", 4) == 0)
        return ":bench_deep_target";
    return strcmp(v->func, "short") == 0 ? ":bench_short"
           : strcmp(v->func, "mid") == 0 ? ":bench_mid+3"
                                         : ":bench_tight";
}

/* ---- kernel side (libbpf) ---------------------------------------------- */

/* Where a kernel uprobe goes: the victim's bench_target (ret: uretprobe). */
struct probe_site {
    pid_t pid;
    const char *victim_bin;
    bool ret;
    const char *func; /* a uprobe's function, or a USDT probe's "PROVIDER:NAME" */
};

static struct bpf_link *attach_bench_target(struct bpf_program *prog, void *arg)
{
    const struct probe_site *site = arg;
    LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = site->func, .retprobe = site->ret);
    return bpf_program__attach_uprobe_opts(prog, site->pid, site->victim_bin, 0, &uo);
}

static struct bpf_link *attach_usdt_hit(struct bpf_program *prog, void *arg)
{
    const struct probe_site *site = arg;
    char provider[64];
    const char *colon = strchr(site->func, ':');
    snprintf(provider, sizeof(provider), "%.*s", colon ? (int)(colon - site->func) : 0, site->func);
    return bpf_program__attach_usdt(prog, site->pid, site->victim_bin, provider, colon ? colon + 1 : "", NULL);
}

static int kernel_cost(struct victim *v, const char *victim_bin, const char *obj_path, const char *prog_name, bool ret,
                       long n, double *ns)
{
    if (v->func && strcmp(v->func, "usdt") == 0) {
        struct probe_site site = {v->pid, victim_bin, false, v->usdt ? v->usdt : "bpfgraft_bench:hit"};
        struct bench_timed_calls t = timed_calls(v, n);
        return bench_kernel_cost(obj_path, prog_name, attach_usdt_hit, &site, "usdt", site.func, &t, ns);
    }
    struct probe_site site = {v->pid, victim_bin, ret, victim_target(v) + 1};
    struct bench_timed_calls t = timed_calls(v, n);
    return bench_kernel_cost(obj_path, prog_name, attach_bench_target, &site, "uprobe", site.func, &t, ns);
}

/* ---- bpfgraft side ----------------------------------------------------- */

/* engine: NULL for the server's default; target: where prog goes */
static int rpc_simple(struct rconn *r, const char *method, uint32_t pid, const char *prog, const char *engine,
                      const char *target, struct bpfg_rpc_msg *resp)
{
    struct bpfg_rpc_out out;
    begin(r, &out, method, prog ? (engine ? 5 : 4) : 1);
    bpfg_pack_cstr(&out.pk, "pid");
    msgpack_pack_uint32(&out.pk, pid);
    if (prog) {
        bpfg_pack_cstr(&out.pk, "object");
        bpfg_pack_cstr(&out.pk, "bench");
        bpfg_pack_cstr(&out.pk, "programs");
        msgpack_pack_array(&out.pk, 1);
        bpfg_pack_cstr(&out.pk, prog);
        bpfg_pack_cstr(&out.pk, "target");
        bpfg_pack_cstr(&out.pk, target);
        if (engine) {
            bpfg_pack_cstr(&out.pk, "engine");
            bpfg_pack_cstr(&out.pk, engine);
        }
    }
    return rcall(r, &out, resp);
}

/* target.list's first target in *t (NULL: none); the caller releases resp. */
static int first_target(struct rconn *r, struct bpfg_rpc_msg *resp, const msgpack_object **t)
{
    struct bpfg_rpc_out out;
    bpfg_rpc_out_init(&out);
    bpfg_rpc_begin_request(&out, r->next_id++, "target.list");
    msgpack_pack_array(&out.pk, 0);
    int err = rcall(r, &out, resp);
    if (err)
        return err;
    *t = resp->params.type == MSGPACK_OBJECT_ARRAY && resp->params.via.array.size > 0 ? &resp->params.via.array.ptr[0]
                                                                                      : NULL;
    return 0;
}

static int last_stop_us(struct rconn *r, uint64_t *us)
{
    struct bpfg_rpc_msg resp;
    const msgpack_object *t;
    int err = first_target(r, &resp, &t);
    if (err)
        return err;
    err = t && bpfg_obj_u64(bpfg_obj_map_get(t, "last_stop_us"), us) == 0 ? 0 : -ENOENT;
    bpfg_rpc_msg_release(&resp);
    return err;
}

struct graft_result {
    double per_call;
    double attach_ms;
    uint64_t stop_us;
};

static int graft_cost(struct rconn *r, struct victim *v, const char *prog, const char *engine, long n,
                      struct graft_result *res)
{
    struct bpfg_rpc_msg resp;
    uint64_t t0 = bench_now_ns();
    int err = rpc_simple(r, "target.attach", (uint32_t)v->pid, prog, engine, victim_target(v), &resp);
    if (err)
        return err;
    res->attach_ms = (double)(bench_now_ns() - t0) / 1e6;
    bpfg_rpc_msg_release(&resp);
    err = last_stop_us(r, &res->stop_us);
    if (!err)
        err = victim_per_call(v, n, &res->per_call);
    int derr = rpc_simple(r, "target.detach", (uint32_t)v->pid, NULL, NULL, NULL, &resp);
    if (!derr)
        bpfg_rpc_msg_release(&resp);
    return err ? err : derr;
}

/* The hooks array of the server's first target (NULL if none); resp
 * holds it until released. */
static int first_target_hooks(struct rconn *r, struct bpfg_rpc_msg *resp, const msgpack_object **hooks)
{
    const msgpack_object *t;
    int err = first_target(r, resp, &t);
    if (err)
        return err;
    const msgpack_object *h = t ? bpfg_obj_map_get(t, "hooks") : NULL;
    *hooks = h && h->type == MSGPACK_OBJECT_ARRAY ? h : NULL;
    return 0;
}

/* Whether every hook of the server's first target runs on engine. */
static int hooks_on_engine(struct rconn *r, const char *engine, bool *all)
{
    struct bpfg_rpc_msg resp;
    const msgpack_object *hooks;
    int err = first_target_hooks(r, &resp, &hooks);
    if (err)
        return err;
    *all = hooks && hooks->via.array.size > 0;
    for (uint32_t i = 0; *all && i < hooks->via.array.size; i++)
        *all = bpfg_obj_str_eq(bpfg_obj_map_get(&hooks->via.array.ptr[i], "engine"), engine);
    bpfg_rpc_msg_release(&resp);
    return 0;
}

/* The tiered engine: the attach's latency (x86 code) and the time from
 * the attach's start until target.list says the LLVM code runs (polled
 * every 0.2 ms: the figure is at most that late). */
static int tiered_latency(struct rconn *r, struct victim *v, const char *prog, double *attach_ms, double *llvm_ms)
{
    struct bpfg_rpc_msg resp;
    uint64_t t0 = bench_now_ns();
    int err = rpc_simple(r, "target.attach", (uint32_t)v->pid, prog, "tiered", victim_target(v), &resp);
    if (err)
        return err;
    *attach_ms = (double)(bench_now_ns() - t0) / 1e6;
    bpfg_rpc_msg_release(&resp);
    bool llvm = false;
    while (!err && !llvm && bench_now_ns() - t0 < 10000000000ull) {
        if (!(err = hooks_on_engine(r, "llvm", &llvm)) && !llvm)
            usleep(200);
    }
    *llvm_ms = (double)(bench_now_ns() - t0) / 1e6;
    err = err ? err : llvm ? 0 : -ETIMEDOUT;
    int derr = rpc_simple(r, "target.detach", (uint32_t)v->pid, NULL, NULL, NULL, &resp);
    if (!derr)
        bpfg_rpc_msg_release(&resp);
    return err ? err : derr;
}

/* ---- an offloaded kernel uprobe (bpfgraftd --offload-kernel-uprobes) ---- */

/* How many hooks the server's first target has. */
static int hooks_in_target(struct rconn *r, size_t *n)
{
    struct bpfg_rpc_msg resp;
    const msgpack_object *hooks;
    int err = first_target_hooks(r, &resp, &hooks);
    if (err)
        return err;
    *n = hooks ? hooks->via.array.size : 0;
    bpfg_rpc_msg_release(&resp);
    return 0;
}

/* A server that offloads kernel uprobes manages v; 0 once it serves the
 * kernel uprobe there (its scan runs twice a second). */
static int offload_start(struct server *srv, struct rconn *r, const char *server_bin, struct victim *v)
{
    static const char *const extra[] = {"--offload-kernel-uprobes", NULL};
    struct bpfg_rpc_msg resp;
    srv->extra = extra;
    int err = server_start(srv, server_bin);
    if (!err && !(err = rconnect(srv->sock, r)) &&
        !(err = rpc_simple(r, "target.attach", (uint32_t)v->pid, NULL, NULL, NULL, &resp)))
        bpfg_rpc_msg_release(&resp);
    for (int i = 0; !err && i < 100; i++) {
        size_t n = 0;
        if ((err = hooks_in_target(r, &n)) || n)
            return err;
        usleep(100000);
    }
    return err ? err : -ETIMEDOUT;
}

static uint64_t kernel_counter(int map_fd)
{
    uint32_t key = 0;
    uint64_t v = 0;
    return bpf_map_lookup_elem(map_fd, &key, &v) == 0 ? v : UINT64_MAX;
}

/* count_entry as a kernel uprobe of this process (the tool) over an
 * mmapable array: per hit under the kernel (*k), then served in the
 * victim by a bpfgraftd that offloads it (*o), the count checked exact. */
/* In a victim of its own: the offloading server's payload stays in it
 * when that server stops (no other server may attach there). */
static int offload_costs(const char *victim_bin, const char *obj_path, const char *server_bin, long n, long kn,
                         double *k, double *o)
{
    struct victim own = {0}, *v = &own;
    int verr = victim_start(v, victim_bin, 0);
    if (verr)
        return verr;
    struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
    if (!obj) {
        victim_stop(v);
        return -errno;
    }
    struct bpf_map *hits = bpf_object__find_map_by_name(obj, "hits");
    int err = hits ? bpf_map__set_map_flags(hits, bpf_map__map_flags(hits) | BPF_F_MMAPABLE) : -ENOENT;
    struct bpf_program *prog =
        err || (err = bpf_object__load(obj)) ? NULL : bpf_object__find_program_by_name(obj, "count_entry");
    struct probe_site site = {v->pid, v->bin, false, "bench_target"};
    struct bpf_link *link = prog ? attach_bench_target(prog, &site) : NULL;
    struct server srv = {.pid = -1};
    struct rconn r = {0};
    if (!link)
        err = err ? err : -errno;
    if (!err && !(err = victim_per_call(v, kn, k)) && !(err = offload_start(&srv, &r, server_bin, v))) {
        uint64_t before = kernel_counter(bpf_map__fd(hits));
        if (!(err = victim_per_call(v, n, o)) && kernel_counter(bpf_map__fd(hits)) - before != (uint64_t)(3 * n)) {
            fprintf(stderr, "bench uprobe: offloaded: the kernel map counted %llu hits for %ld calls\n",
                    (unsigned long long)(kernel_counter(bpf_map__fd(hits)) - before), 3 * n);
            err = -EDOM;
        }
    }
    if (r.c)
        rclose(&r);
    server_stop(&srv); /* hands the uprobe back */
    bpf_link__destroy(link);
    bpf_object__close(obj);
    victim_stop(v);
    return err;
}

/* The map counter: per-call cost, the count checked exact, and the
 * victim's RSS while attached (*rss_attached). */
static int counter_cost(struct rconn *r, struct victim *v, const char *engine, long n, double *per_call,
                        long *rss_attached)
{
    struct bpfg_rpc_msg resp;
    const char *prog = v->func && strcmp(v->func, "usdt") == 0 ? "count_usdt" : "count_entry";
    int err = rpc_simple(r, "target.attach", (uint32_t)v->pid, prog, engine, victim_target(v), &resp);
    if (err)
        return err;
    bpfg_rpc_msg_release(&resp);
    *rss_attached = rss_kb(v->pid);
    uint64_t hits = 0;
    if (!(err = bench_map_counter(r, "hits", NULL, true)) && !(err = victim_per_call(v, n, per_call)) &&
        !(err = bench_map_counter(r, "hits", &hits, false)) && hits != (uint64_t)(3 * n)) {
        fprintf(stderr, "bench uprobe: %s: the map counted %llu hits for %ld calls\n", engine, (unsigned long long)hits,
                3 * n);
        err = -EDOM;
    }
    int derr = rpc_simple(r, "target.detach", (uint32_t)v->pid, NULL, NULL, NULL, &resp);
    if (!derr)
        bpfg_rpc_msg_release(&resp);
    return err ? err : derr;
}

static int stats_set(struct rconn *r, bool enabled)
{
    struct bpfg_rpc_out out;
    struct bpfg_rpc_msg resp;
    begin(r, &out, "stats.set", 1);
    bpfg_pack_cstr(&out.pk, "enabled");
    enabled ? msgpack_pack_true(&out.pk) : msgpack_pack_false(&out.pk);
    int err = rcall(r, &out, &resp);
    if (!err)
        bpfg_rpc_msg_release(&resp);
    return err;
}

/* Statistics (stats.set): the empty uprobe and the map counter (llvm)
 * with stats off, then on (every run timed and counted), in one run. */
static int stats_costs(struct bench_ctx *ctx, struct rconn *r, struct victim *v, long n, double base)
{
    struct graft_result up[2];
    double cnt[2];
    long rss = 0;
    int err = 0;
    for (int on = 0; on < 2 && !err; on++)
        if (!(err = stats_set(r, on)) && !(err = graft_cost(r, v, "empty_entry", "llvm", n, &up[on])))
            err = counter_cost(r, v, "llvm", n, &cnt[on], &rss);
    int serr = stats_set(r, false);
    if (err || serr)
        return err ? err : serr;
    bench_report(ctx, "uprobe empty, stats", "bpfgraft llvm, stats off", up[0].per_call - base, "ns/hit", NULL, 0);
    bench_report(ctx, "uprobe empty, stats", "bpfgraft llvm, stats on", up[1].per_call - base, "ns/hit", "stats off",
                 up[0].per_call - base);
    bench_report(ctx, "uprobe map counter, stats", "bpfgraft llvm, stats off", cnt[0] - base, "ns/hit", NULL, 0);
    bench_report(ctx, "uprobe map counter, stats", "bpfgraft llvm, stats on", cnt[1] - base, "ns/hit", "stats off",
                 cnt[0] - base);
    return 0;
}

static void floor_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig, (void)si, (void)uc; /* an int3 leaves rip after it: nothing to do */
}

/* The least a trap probe can cost: an int3 in this process whose SIGTRAP
 * handler (SA_SIGINFO, as the payload's) returns at once; ns per hit,
 * best of 3 runs of n. */
static int trap_floor(long n, double *ns)
{
    struct sigaction sa = {.sa_sigaction = floor_handler, .sa_flags = SA_SIGINFO | SA_NODEFER}, old;
    if (sigaction(SIGTRAP, &sa, &old) != 0)
        return -errno;
    *ns = 1e18;
    for (int k = 0; k < 3; k++) {
        uint64_t t0 = bench_now_ns();
        for (long i = 0; i < n; i++)
            __asm__ volatile("int3" ::: "memory");
        double per = (double)(bench_now_ns() - t0) / (double)n;
        *ns = per < *ns ? per : *ns;
    }
    return sigaction(SIGTRAP, &old, NULL) != 0 ? -errno : 0;
}

/* Native replicas of the control flow of a jmp hook and of a uretprobe,
 * without any of the work between (no stack switch, no pt_regs, no
 * program): what the hardware charges for the shape alone.
 *  floor_site: the site's jmp to the stub, whose push and indirect jmp
 *    reach an entry that saves and restores the flags and four registers
 *    as SAVE_SCRATCH/RESTORE_SCRATCH do (sahf, not popfq), then jmps to
 *    the resume code, which runs the displaced instruction and jmps back.
 *  floor_swap: a function whose return address is replaced by a
 *    trampoline's that jmps to the original (the return mispredicts);
 *    floor_keep does the same work and returns normally. */
long floor_plain(long x);
long floor_site(long x);
long floor_swap(long x);
long floor_keep(long x);
void *floor_entry_ptr, *floor_back_ptr, *floor_saved_ret;
__asm__(".text\n"
        "floor_plain: mov %rdi, %rax\n add $1, %rax\n ret\n"
        "floor_site: jmp floor_stub\n"
        "floor_after: ret\n"
        "floor_stub: push $7\n jmp *floor_entry_ptr(%rip)\n"
        "floor_resume: mov %rdi, %rax\n add $1, %rax\n jmp *floor_back_ptr(%rip)\n"
        "floor_entry: pushfq\n push %rax\n push %rcx\n push %rdx\n push %rsi\n"
        "    lea floor_resume(%rip), %rax\n mov %rax, 40(%rsp)\n"
        "    pop %rsi\n pop %rdx\n pop %rcx\n movzwl 8(%rsp), %eax\n shr $3, %ah\n and $1, %ah\n"
        "    xchg %al, %ah\n add $0x7f, %al\n sahf\n pop %rax\n lea 8(%rsp), %rsp\n"
        "    lea 8(%rsp), %rsp\n jmp *-8(%rsp)\n"
        "floor_swap: mov (%rsp), %rax\n mov %rax, floor_saved_ret(%rip)\n lea floor_tramp(%rip), %rax\n"
        "    mov %rax, (%rsp)\n mov %rdi, %rax\n ret\n"
        "floor_tramp: push floor_saved_ret(%rip)\n lea 8(%rsp), %rsp\n jmp *-8(%rsp)\n"
        "floor_keep: mov (%rsp), %rax\n mov %rax, floor_saved_ret(%rip)\n lea floor_tramp(%rip), %rax\n"
        "    mov %rdi, %rax\n ret\n");
extern char floor_entry[], floor_after[];

/* ns per call of f, best of 3 runs of n. */
static double floor_per_call(long (*f)(long), long n)
{
    long (*volatile call)(long) = f;
    double best = 1e18;
    for (int k = 0; k < 3; k++) {
        uint64_t t0 = bench_now_ns();
        for (long i = 0; i < n; i++)
            bench_keep(call(i));
        double per = (double)(bench_now_ns() - t0) / (double)n;
        best = per < best ? per : best;
    }
    return best;
}

/* The shapes' added ns per call: *site over a plain call, *swap over
 * floor_keep. */
static void shape_floors(long n, double *site, double *swap)
{
    floor_entry_ptr = floor_entry;
    floor_back_ptr = floor_after;
    *site = floor_per_call(floor_site, n) - floor_per_call(floor_plain, n);
    *swap = floor_per_call(floor_swap, n) - floor_per_call(floor_keep, n);
}

/* ---- the payload's entry code in native replicas (bench_uprobe_replica.S) ---- */

long replica_switch(long x);
long replica_call(long x);
long replica_prog(long x);
long replica_ret(long x);
extern char replica_prog_resume[], replica_empty_prog[];
/* What entry.h reads, as payload/hooks.c defines them in the payload: the
 * bench's one thread gets its slot and a handler stack of its own. */
uint8_t bpfg_key_method, bpfg_entry_lahf, bpfg_ret_key_method;
uint64_t hooks_hstacks;
uint64_t replica_slot_index; /* what replica_ret's trampoline names */
struct bpfg_thread_slot bpfg_threads[BPFG_MAX_THREADS];
static _Alignas(16) char replica_stack[16384];
static long (*volatile replica_prog_code)(void *, size_t, void *, void *);

struct hooks_hstack {
    uint64_t sp;
    void *slot;
};

/* entry.h's slow path: never taken once replica_setup ran */
struct hooks_hstack bpfg_handler_stack(uint64_t sp);
struct hooks_hstack bpfg_handler_stack(uint64_t sp)
{
    (void)sp;
    abort();
}

void replica_miss(uint64_t *word);
void replica_miss(uint64_t *word)
{
    (void)word;
    abort();
}

/* As bpfg_uprobe_hit's run of one JIT program, without the hook table,
 * the thread's handler context or the run's state. */
long replica_handler_prog(void *regs, uint64_t *resume, uint64_t word, void *slot);
long replica_handler_prog(void *regs, uint64_t *resume, uint64_t word, void *slot)
{
    (void)word, (void)slot;
    *resume = (uint64_t)(uintptr_t)replica_prog_resume;
    replica_prog_code(regs, sizeof(struct bpfg_pt_regs), NULL, NULL);
    return 0;
}

/* The slot entry.h finds for this thread by its key (glibc's TCB: the fs
 * base, which %fs:0 holds too) and a stack top within replica_stack; key
 * method as payload/hooks.c picks it (1: rdfsbase, 2: %fs:0). The
 * syscall suite's replicas use it too (bench.h). */
void replica_setup(uint8_t key_method)
{
    uint64_t self;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(self));
    uint32_t i = (uint32_t)((self * 0x9e3779b97f4a7c15ull) >> 40) % BPFG_MAX_THREADS;
    unsigned a, b, c = 0, d;
    __asm__ volatile("cpuid" : "=a"(a), "=b"(b), "=c"(c), "=d"(d) : "a"(0x80000001u));
    bpfg_entry_lahf = c & 1; /* lahf/sahf in long mode */
    bpfg_key_method = key_method;
    bpfg_ret_key_method = 2; /* %fs:0, as the payload takes it at a return in a glibc process */
    replica_slot_index = i;
    bpfg_threads[i].owner = self;
    bpfg_threads[i].listed = 2; /* entry.h: T_HSTACK_READY */
    hooks_hstacks = (uint64_t)(uintptr_t)(replica_stack + sizeof(replica_stack)) -
                    (uint64_t)i * BPFG_HANDLER_STACK_STRIDE - BPFG_HANDLER_STACK_GUARD - BPFG_HANDLER_STACK_SIZE;
    replica_prog_code = (long (*)(void *, size_t, void *, void *))(void *)replica_empty_prog;
}

/* One row per replica: ns per call over a plain call (the return's over
 * floor_keep), beside the probe's own figure. They take the thread's key
 * as the payload does (rdfsbase where the CPU has FSGSBASE); the first row
 * is also given the other way, %fs:0 (where the CPU has rdfsbase), which
 * costs ~4 ns less on some CPUs but would fault in a thread whose fs base
 * is 0 (ld.so before it sets up TLS). */
static void replica_rows(struct bench_ctx *ctx, long n, double up, double ret)
{
    static const struct {
        long (*f)(long);
        const char *row, *what;
    } rows[] = {
        {replica_switch, "uprobe empty", "native replica: + slot by the thread key, stack switch, pt_regs"},
        {replica_call, "uprobe empty", "native replica: + call of an empty handler"},
        {replica_prog, "uprobe empty", "native replica: + an empty program through a pointer"},
        {replica_ret, "uretprobe empty", "native replica: return swap + the entry code at the return"},
    };
    bool fsgsbase = getauxval(AT_HWCAP2) & 2; /* HWCAP2_FSGSBASE */
    double plain = floor_per_call(floor_plain, n), keep = floor_per_call(floor_keep, n);
    if (fsgsbase) {
        replica_setup(2);
        bench_report(ctx, "uprobe empty", "native replica: + slot by %fs:0 (not rdfsbase), stack switch, pt_regs",
                     floor_per_call(replica_switch, n) - plain, "ns/hit", "bpfgraft llvm", up);
    }
    replica_setup(fsgsbase ? 1 : 2);
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        bool is_ret = rows[i].f == replica_ret;
        double ns = floor_per_call(rows[i].f, n) - (is_ret ? keep : plain);
        bench_report(ctx, rows[i].row, rows[i].what, ns, "ns/hit", "bpfgraft llvm", is_ret ? ret : up);
    }
}

/* bpf_get_stackid(BPF_F_USER_STACK) at bench_deep_target, 8 and 32 frames
 * deep in a victim without frame pointers: bpfgraft (CFI) beside the
 * kernel (frame pointers, so it sees fewer frames) on the same uprobe. */
static int stackid_costs(struct bench_ctx *ctx, struct rconn *r, struct victim *v, const char *victim_bin,
                         const char *obj, long n, long kn)
{
    static const char *const depths[] = {"deep8", "deep32"};
    int err = 0;
    for (int d = 0; d < 2 && !err; d++) {
        struct graft_result g;
        double base, k;
        char what[64];
        v->func = depths[d];
        if (!(err = victim_per_call(v, kn, &base)) &&
            !(err = kernel_cost(v, victim_bin, obj, "stackid_entry", false, kn, &k)) &&
            !(err = graft_cost(r, v, "stackid_entry", "llvm", n / 4, &g))) {
            snprintf(what, sizeof(what), "uprobe get_stackid, user stack %s frames", depths[d] + 4);
            bench_report(ctx, what, "bpfgraft llvm", g.per_call - base, "ns/hit", "kernel", k - base);
        }
    }
    v->func = NULL;
    if (!err)
        bench_note(ctx, "get_stackid: the victim has no frame pointers; bpfgraft unwinds every frame with CFI, "
                        "the kernel follows rbp and stops early (goal: depth 32 < 500 ns/hit)");
    return err;
}

static int run(struct bench_ctx *ctx)
{
    long n = bench_quick(ctx) ? 20000 : 1000000, kn = bench_quick(ctx) ? 2000 : 50000;
    char victim_bin[PATH_MAX], obj[PATH_MAX], server_bin[PATH_MAX];
    struct victim v = {0};
    struct server srv = {.pid = -1};
    struct rconn r = {0};
    double base, k_up, k_ret, k_cnt, k_pid;
    int err;

    if ((err = bench_find_files(sizeof(victim_bin), victim_bin, "bpfgraft-bench-victim", obj, "bench_uprobe.bpf.o",
                                server_bin, "bpfgraftd", NULL))) {
        fprintf(stderr, "bench uprobe: victim, object or bpfgraftd not built\n");
        return err;
    }
    if ((err = victim_start(&v, victim_bin, 0)) || (err = victim_per_call(&v, n, &base)))
        goto out;
    libbpf_set_print(NULL);
    if ((err = kernel_cost(&v, victim_bin, obj, "empty_entry", false, kn, &k_up)) ||
        (err = kernel_cost(&v, victim_bin, obj, "empty_return", true, kn, &k_ret)) ||
        (err = kernel_cost(&v, victim_bin, obj, "count_entry", false, kn, &k_cnt)) ||
        (err = kernel_cost(&v, victim_bin, obj, "pid_entry", false, kn, &k_pid)))
        goto out;
    bench_report(ctx, "call, no probe", "native", base, "ns/call", NULL, 0);
    bench_report(ctx, "uprobe empty", "kernel", k_up - base, "ns/hit", NULL, 0);
    bench_report(ctx, "uretprobe empty", "kernel", k_ret - base, "ns/hit", NULL, 0);
    bench_report(ctx, "uprobe map counter", "kernel", k_cnt - base, "ns/hit", NULL, 0);
    bench_report(ctx, "uprobe get_current_pid_tgid", "kernel", k_pid - base, "ns/hit", NULL, 0);

    if ((err = server_start(&srv, server_bin)) || (err = rconnect(srv.sock, &r)) ||
        (err = bench_load_object(&r, obj, "bench")))
        goto out;
    static const char *const engines[] = {"interp", "x86", "llvm"};
    enum { NENG = sizeof(engines) / sizeof(engines[0]) };
    struct graft_result up[NENG], ret[NENG];
    double cnt[NENG];
    long rss_before = rss_kb(v.pid), rss_attached = 0;
    for (int e = 0; e < NENG; e++)
        if ((err = graft_cost(&r, &v, "empty_entry", engines[e], n, &up[e])) ||
            (err = counter_cost(&r, &v, engines[e], n, &cnt[e], &rss_attached)) ||
            (err = graft_cost(&r, &v, "empty_return", engines[e], n, &ret[e])))
            goto out;
    for (int e = 0; e < NENG; e++) {
        char variant[32];
        snprintf(variant, sizeof(variant), "bpfgraft %s", engines[e]);
        bench_report(ctx, "uprobe empty", variant, up[e].per_call - base, "ns/hit", "kernel", k_up - base);
        bench_report(ctx, "uretprobe empty", variant, ret[e].per_call - base, "ns/hit", "kernel", k_ret - base);
        bench_report(ctx, "uprobe map counter", variant, cnt[e] - base, "ns/hit", "kernel", k_cnt - base);
    }
    /* tiered, warm as the engines' rows above, on a program no LLVM compile
     * has cached yet (pid_entry's llvm run below then hits the cache: it
     * measures hits, not attaches) */
    double tier_attach_ms, tier_llvm_ms;
    if ((err = tiered_latency(&r, &v, "pid_entry", &tier_attach_ms, &tier_llvm_ms)))
        goto out;
    /* glibc's tid read from the thread, the pid cached: no syscall per hit */
    struct graft_result pid_hit;
    if ((err = graft_cost(&r, &v, "pid_entry", "llvm", n, &pid_hit)))
        goto out;
    bench_report(ctx, "uprobe get_current_pid_tgid", "bpfgraft llvm", pid_hit.per_call - base, "ns/hit", "kernel",
                 k_pid - base);
    if ((err = stats_costs(ctx, &r, &v, n, base)))
        goto out;
    /* the fallbacks (issue 22): a short jmp to the padding after a 5-byte
     * function or inside a leaf, and a trap where neither fits; their cost
     * per hit beside the kernel's and the jmp's, and the trap's floor */
    static const char *const fallbacks[][2] = {{"short", "bpfgraft llvm, short jmp"},
                                               {"mid", "bpfgraft llvm, short jmp in a leaf"},
                                               {"tight", "bpfgraft llvm, trap"}};
    for (int f = 0; f < 3; f++) {
        struct graft_result fb_up;
        double fb_cnt, fb_base;
        v.func = fallbacks[f][0];
        if ((err = victim_per_call(&v, kn, &fb_base)) ||
            (err = graft_cost(&r, &v, "empty_entry", "llvm", kn, &fb_up)) ||
            (err = counter_cost(&r, &v, "llvm", kn, &fb_cnt, &rss_attached)))
            goto out;
        v.func = NULL;
        bench_report(ctx, "uprobe empty", fallbacks[f][1], fb_up.per_call - fb_base, "ns/hit", "kernel", k_up - base);
        bench_report(ctx, "uprobe empty", fallbacks[f][1], fb_up.per_call - fb_base, "ns/hit", "jmp",
                     up[2].per_call - base);
        bench_report(ctx, "uprobe map counter", fallbacks[f][1], fb_cnt - fb_base, "ns/hit", "kernel", k_cnt - base);
    }
    double floor_ns = 0, k_off = 0, off = 0;
    if ((err = trap_floor(kn, &floor_ns)) || (err = offload_costs(victim_bin, obj, server_bin, n, kn, &k_off, &off)))
        goto out;
    bench_report(ctx, "uprobe map counter, a tool's kernel uprobe", "offloaded", off - base, "ns/hit", "kernel",
                 k_off - base);
    bench_report(ctx, "uprobe empty", "int3 + empty SIGTRAP handler (the trap's floor)", floor_ns, "ns/hit", "kernel",
                 k_up - base);
    double site_floor, swap_floor;
    shape_floors(n, &site_floor, &swap_floor);
    bench_report(ctx, "uprobe empty", "native replica of the jmp hook's control flow (its floor)", site_floor, "ns/hit",
                 "bpfgraft llvm", up[2].per_call - base);
    bench_report(ctx, "uretprobe empty", "native return-address swap alone (its floor beyond the entry's)", swap_floor,
                 "ns/hit", "bpfgraft llvm", ret[2].per_call - base);
    replica_rows(ctx, n, up[2].per_call - base, ret[2].per_call - base);
    if ((err = stackid_costs(ctx, &r, &v, victim_bin, obj, n, kn)))
        goto out;
    bench_report(ctx, "attach latency (interp)", "bpfgraft", up[0].attach_ms, "ms", NULL, 0);
    bench_report(ctx, "attach latency (x86 JIT)", "bpfgraft", up[1].attach_ms, "ms", NULL, 0);
    bench_report(ctx, "attach latency (llvm, compile)", "bpfgraft", up[2].attach_ms, "ms", NULL, 0);
    bench_report(ctx, "attach latency (tiered)", "bpfgraft", tier_attach_ms, "ms", NULL, 0);
    bench_report(ctx, "attach to llvm code running (tiered)", "bpfgraft", tier_llvm_ms, "ms", NULL, 0);
    bench_report(ctx, "threads stopped (1 thread)", "bpfgraft", (double)up[0].stop_us, "us", NULL, 0);
    bench_report(ctx, "payload added RSS", "bpfgraft", (double)(rss_attached - rss_before), "KiB", NULL, 0);
    bench_note(ctx, "goals with the LLVM JIT (issue 20): <= 8 ns/hit empty uprobe, <= 10 ns/hit map counter, "
                    "<= 15 ns/hit uretprobe (the native replicas above are the hardware's part); fallback where a jmp "
                    "is not safe (issue 22): >= 10x cheaper than "
                    "the kernel's uprobe (short jmp where unreachable bytes are in reach, else trap; the trap "
                    "cannot go below its floor, a bare int3 and signal); an offloaded kernel uprobe (issue 17): "
                    ">= 50x cheaper than the kernel's for a program using an mmapable array");
    victim_stop(&v);

    /* a 100-thread victim: how long does the patch stop keep them all? */
    struct graft_result many;
    if ((err = victim_start(&v, victim_bin, 100)) || (err = graft_cost(&r, &v, "empty_entry", NULL, kn, &many)))
        goto out;
    bench_report(ctx, "threads stopped (100 threads)", "bpfgraft", (double)many.stop_us, "us", NULL, 0);
    bench_report(ctx, "attach latency (100 threads)", "bpfgraft", many.attach_ms, "ms", NULL, 0);
    victim_stop(&v);

    /* 8 spinning threads on fewer CPUs: each is caught only when it runs,
     * so stopping them one after the other would cost a time slice each */
    struct graft_result busy;
    if ((err = victim_start(&v, victim_bin, -8)) || (err = graft_cost(&r, &v, "empty_entry", NULL, kn, &busy)))
        goto out;
    bench_report(ctx, "threads stopped (8 busy threads)", "bpfgraft", (double)busy.stop_us, "us", NULL, 0);
    bench_report(ctx, "attach latency (8 busy threads)", "bpfgraft", busy.attach_ms, "ms", NULL, 0);
    bench_note(ctx,
               "per-hit cost = probed ns/call - unprobed ns/call, best of %d runs of %ld calls; "
               "kernel: libbpf uprobes with the same BPF programs; map counter checked exact",
               RUNS, n * 3 / RUNS);
out:
    if (r.c)
        rclose(&r);
    server_stop(&srv);
    victim_stop(&v);
    return err;
}

const struct bench_suite bench_suite_uprobe = {
    "uprobe",
    "uprobe/uretprobe cost per hit: bpfgraft vs kernel, attach latency, stop time, RSS",
    run,
};

/* The same probes on python3.11's python:function__return (a Python
 * function's return) in one python3 process, bpfgraft vs the kernel. */
static int python_costs(struct bench_ctx *ctx, struct rconn *r, const char *obj, long n, long kn)
{
    struct victim v = {0};
    double base, k_empty, k_cnt, g_cnt;
    struct graft_result g_empty;
    long rss = 0;
    if (access(PYTHON_BIN, X_OK) != 0) {
        bench_note(ctx, "python3 rows: no %s", PYTHON_BIN);
        return 0;
    }
    int err;
    if (!(err = python_victim_start(&v)) && !(err = victim_per_call(&v, n, &base)) &&
        !(err = kernel_cost(&v, PYTHON_BIN, obj, "empty_usdt", false, kn, &k_empty)) &&
        !(err = kernel_cost(&v, PYTHON_BIN, obj, "count_usdt", false, kn, &k_cnt)) &&
        !(err = graft_cost(r, &v, "empty_usdt", "llvm", n, &g_empty)) &&
        !(err = counter_cost(r, &v, "llvm", n, &g_cnt, &rss))) {
        bench_report(ctx, "python3 call, no probe", "native", base, "ns/call", NULL, 0);
        bench_report(ctx, "python3 function__return empty", "bpfgraft llvm", g_empty.per_call - base, "ns/hit",
                     "kernel", k_empty - base);
        bench_report(ctx, "python3 function__return arg + map counter", "bpfgraft llvm", g_cnt - base, "ns/hit",
                     "kernel", k_cnt - base);
        bench_note(ctx, "python3: Debian's python3.11 calling an empty function in a loop; its function__return "
                        "(with a semaphore) fires once a call, function__entry only where a generator resumes");
    }
    victim_stop(&v);
    return err;
}

/* bpfgraft-bench usdt: a USDT probe hit (usdt.bpf.h programs: empty, and
 * a counter reading the argument), bpfgraft vs the kernel's USDT uprobe
 * (libbpf's bpf_program__attach_usdt) in the same process. */
static int run_usdt(struct bench_ctx *ctx)
{
    long n = bench_quick(ctx) ? 2000 : 100000, kn = bench_quick(ctx) ? 2000 : 50000;
    char victim_bin[PATH_MAX], obj[PATH_MAX], server_bin[PATH_MAX];
    struct victim v = {0};
    struct server srv = {.pid = -1};
    struct rconn r = {0};
    double base, k_empty, k_cnt, g_cnt;
    struct graft_result g_empty;
    long rss = 0;
    int err = bench_find_files(sizeof(victim_bin), victim_bin, "bpfgraft-bench-victim", obj, "bench_uprobe.bpf.o",
                               server_bin, "bpfgraftd", NULL);
    if (err) {
        fprintf(stderr, "bench usdt: victim, object or bpfgraftd not built\n");
        return err;
    }
    if ((err = victim_start(&v, victim_bin, 0)))
        goto out;
    v.func = "usdt";
    libbpf_set_print(NULL);
    if ((err = victim_per_call(&v, n, &base)) ||
        (err = kernel_cost(&v, victim_bin, obj, "empty_usdt", false, kn, &k_empty)) ||
        (err = kernel_cost(&v, victim_bin, obj, "count_usdt", false, kn, &k_cnt)) ||
        (err = server_start(&srv, server_bin)) || (err = rconnect(srv.sock, &r)) ||
        (err = bench_load_object(&r, obj, "bench")) || (err = graft_cost(&r, &v, "empty_usdt", "llvm", n, &g_empty)) ||
        (err = counter_cost(&r, &v, "llvm", n, &g_cnt, &rss)))
        goto out;
    bench_report(ctx, "USDT site, no probe", "native", base, "ns/hit", NULL, 0);
    bench_report(ctx, "USDT empty", "kernel", k_empty - base, "ns/hit", NULL, 0);
    bench_report(ctx, "USDT arg + map counter", "kernel", k_cnt - base, "ns/hit", NULL, 0);
    bench_report(ctx, "USDT empty", "bpfgraft llvm", g_empty.per_call - base, "ns/hit", "kernel", k_empty - base);
    bench_report(ctx, "USDT arg + map counter", "bpfgraft llvm", g_cnt - base, "ns/hit", "kernel", k_cnt - base);
    bench_note(ctx, "goal (issue 14): >= 100x cheaper than the kernel's USDT uprobe; a C victim's "
                    "STAP_PROBE1 in a loop, the best of many short runs; map counter checked exact");
    victim_stop(&v);
    err = python_costs(ctx, &r, obj, n, kn);
out:
    if (r.c)
        rclose(&r);
    server_stop(&srv);
    victim_stop(&v);
    return err;
}

const struct bench_suite bench_suite_usdt = {
    "usdt",
    "USDT probe cost per hit: bpfgraft vs the kernel's USDT uprobe",
    run_usdt,
};
