/* bpfgraft-bench rpc: map.lookup round trips through bpfgraftd's control
 * socket, from one client and from 8 concurrent clients (one connection
 * per thread), against the kernel's bpf(BPF_MAP_LOOKUP_ELEM) on a kernel
 * hash map of the same shape; and the same round trip over the remote
 * transports in the same run, beside the unix socket's: mutual TLS
 * (bpfgraftd --listen, certificates of a throwaway CA) and ssh (an sshd
 * the suite starts on 127.0.0.1, or BPFGRAFT_BENCH_SSH's host).
 *
 * Starts its own bpfgraftd (found next to this binary) on a socket in a
 * temporary directory and loads cli_maps.bpf.o (built by test/cli) for a
 * u32 -> u64 hash map. Every answer is checked, so a wrong server fails the
 * suite rather than looking fast. */
#include <bpf/bpf.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench_client.h"
#include "bench_remote.h"

#define NKEYS 1024
#define NTHREADS 8

/* Starts a request of nparams parameters whose first two are map and key;
 * the caller packs the rest. */
static void begin_map_request(struct rconn *r, struct bpfg_rpc_out *out, const char *method, uint32_t nparams,
                              uint64_t map, uint32_t key)
{
    begin(r, out, method, nparams);
    bpfg_pack_cstr(&out->pk, "map");
    msgpack_pack_uint64(&out->pk, map);
    bpfg_pack_cstr(&out->pk, "key");
    bpfg_pack_bin(&out->pk, &key, sizeof(key));
}

static int map_update(struct rconn *r, uint64_t map, uint32_t key, uint64_t val)
{
    struct bpfg_rpc_out out;
    begin_map_request(r, &out, "map.update", 3, map, key);
    bpfg_pack_cstr(&out.pk, "value");
    bpfg_pack_bin(&out.pk, &val, sizeof(val));
    return rcall_discard(r, &out);
}

static int map_lookup(struct rconn *r, uint64_t map, uint32_t key, uint64_t *val)
{
    struct bpfg_rpc_out out;
    struct bpfg_rpc_msg resp;
    begin_map_request(r, &out, "map.lookup", 2, map, key);
    int err = rcall(r, &out, &resp);
    if (err)
        return err;
    err = bench_resp_bin(&resp, "value", val, sizeof(*val));
    bpfg_rpc_msg_release(&resp);
    return err;
}

/* object.load by path; returns the id of its map named "counts". */
static int load_counts(struct rconn *r, const char *path, uint64_t *map_id)
{
    struct bpfg_rpc_out out;
    struct bpfg_rpc_msg resp;
    begin_object_load(r, &out, path, "bench");
    int err = rcall(r, &out, &resp);
    if (err)
        return err;
    err = -ENOENT;
    const msgpack_object *maps = bpfg_obj_map_get(&resp.params, "maps");
    for (uint32_t i = 0; maps && maps->type == MSGPACK_OBJECT_ARRAY && i < maps->via.array.size; i++) {
        const msgpack_object *m = &maps->via.array.ptr[i];
        const msgpack_object *name = bpfg_obj_map_get(m, "name"), *id = bpfg_obj_map_get(m, "id");
        if (name && id && bpfg_obj_str_eq(name, "counts") && bpfg_obj_u64(id, map_id) == 0)
            err = 0;
    }
    bpfg_rpc_msg_release(&resp);
    return err;
}

static uint64_t expect(uint32_t key)
{
    return (uint64_t)key * 0x9e3779b97f4a7c15ull;
}

/* ---- measurements ------------------------------------------------------- */

struct worker {
    pthread_t th;
    const char *sock;
    const char *url;                 /* set: a --host URL instead of sock (bpfgraft --host) */
    const struct cli_tls_files *tls; /* its files when it is tcps:// */
    uint64_t map_id;
    int kernel_fd; /* >= 0: kernel syscall lookups instead of RPC */
    uint32_t iters, seed;
    pthread_barrier_t *start;
    uint64_t ns;
    int err;
};

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct rconn r = {0};
    if (w->kernel_fd < 0 && (w->err = w->url ? rconnect_remote(w->url, w->tls, &r) : rconnect(w->sock, &r)) != 0) {
        pthread_barrier_wait(w->start);
        return NULL;
    }
    /* Warm up (connection, server buffers, caches) outside the timing. */
    for (uint32_t i = 0; i < 200 && !w->err; i++) {
        uint32_t key = i % NKEYS;
        uint64_t v;
        w->err = w->kernel_fd >= 0 ? (bpf_map_lookup_elem(w->kernel_fd, &key, &v) ? -errno : 0)
                                   : map_lookup(&r, w->map_id, key, &v);
    }
    pthread_barrier_wait(w->start);
    uint64_t t0 = bench_now_ns();
    for (uint32_t i = 0; i < w->iters && !w->err; i++) {
        uint32_t key = (w->seed + i * 7) % NKEYS;
        uint64_t v = 0;
        if (w->kernel_fd >= 0)
            w->err = bpf_map_lookup_elem(w->kernel_fd, &key, &v) ? -errno : 0;
        else
            w->err = map_lookup(&r, w->map_id, key, &v);
        if (!w->err && v != expect(key))
            w->err = -EBADMSG;
    }
    w->ns = bench_now_ns() - t0;
    if (r.c)
        rclose(&r);
    return NULL;
}

/* Runs n workers; returns 0 and the aggregate ops/s, or the first error. */
static int run_workers(int n, const char *sock, uint64_t map_id, int kernel_fd, uint32_t iters, double *ops_per_s)
{
    struct worker w[NTHREADS];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    int started = 0, err = 0;
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){.sock = sock,
                               .map_id = map_id,
                               .kernel_fd = kernel_fd,
                               .iters = iters,
                               .seed = (uint32_t)i * 131,
                               .start = &start};
        if (pthread_create(&w[i].th, NULL, worker_run, &w[i]) != 0) {
            err = -EAGAIN;
            break;
        }
        started++;
    }
    if (err) { /* the barrier would never open: not worth recovering */
        fprintf(stderr, "bench rpc: cannot start threads\n");
        exit(1);
    }
    uint64_t max_ns = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(w[i].th, NULL);
        if (w[i].err && !err)
            err = w[i].err;
        if (w[i].ns > max_ns)
            max_ns = w[i].ns;
    }
    pthread_barrier_destroy(&start);
    if (!err)
        *ops_per_s = (double)n * iters / ((double)max_ns / 1e9);
    return err;
}

/* One client's round trip through url (bpfgraft --host), reported beside
 * the unix socket's. */
static void remote_round_trip(struct bench_ctx *ctx, const char *url, const struct cli_tls_files *tls,
                              const char *variant, uint64_t map_id, uint32_t iters, double unix_ns)
{
    struct worker w = {.url = url, .tls = tls, .map_id = map_id, .kernel_fd = -1, .iters = iters};
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 1);
    w.start = &start;
    worker_run(&w);
    pthread_barrier_destroy(&start);
    if (w.err) {
        bench_note(ctx, "%s: failed (%s)", variant, strerror(-w.err));
        return;
    }
    bench_report(ctx, "map.lookup round trip", variant, (double)w.ns / iters, "ns/op", "the unix socket, 1 client",
                 unix_ns);
}

/* ssh: BPFGRAFT_BENCH_SSH's host (ssh://[USER@]127.0.0.1[:PORT], with
 * BPFGRAFT_SSH_COMMAND as for the CLI), else an sshd of our own. */
static void ssh_round_trip(struct bench_ctx *ctx, struct bench_remote *rem, const char *bin, const char *sock,
                           uint64_t map_id, uint32_t iters, double unix_ns)
{
    const char *host = getenv("BPFGRAFT_BENCH_SSH");
    char url[512], own[64], err[256], bindir[PATH_MAX];
    if (!host || !*host) {
        snprintf(bindir, sizeof(bindir), "%s", bin);
        if (bench_remote_sshd(rem, dirname(bindir), err, sizeof(err))) {
            bench_note(ctx, "over ssh: not measured (%s; or set BPFGRAFT_BENCH_SSH=ssh://[USER@]127.0.0.1[:PORT])",
                       err);
            return;
        }
        snprintf(own, sizeof(own), "ssh://root@127.0.0.1:%d", rem->ssh_port);
        host = own;
    }
    snprintf(url, sizeof(url), "%s%s", host, sock);
    remote_round_trip(ctx, url, NULL, "1 client over ssh", map_id, iters, unix_ns);
}

/* TLS: bpfgraftd --listen with the throwaway CA's certificates. */
static void tls_round_trip(struct bench_ctx *ctx, const struct bench_remote *rem, int port, uint64_t map_id,
                           uint32_t iters, double unix_ns)
{
    char url[64];
    if (port <= 0) {
        bench_note(ctx, "over TLS: not measured (no test certificates: the openssl CLI is needed)");
        return;
    }
    snprintf(url, sizeof(url), "tcps://127.0.0.1:%d", port);
    remote_round_trip(ctx, url, &rem->files, "1 client over TLS", map_id, iters, unix_ns);
}

static int run(struct bench_ctx *ctx)
{
    bool quick = bench_quick(ctx);
    uint32_t iters1 = quick ? 2000 : 50000, itersn = quick ? 500 : 20000;
    uint32_t kiters = quick ? 20000 : 1000000;
    char bin[PATH_MAX], obj[PATH_MAX];
    int err;

    if ((err = bench_find_file(bin, sizeof(bin), "bpfgraftd"))) {
        fprintf(stderr, "bench rpc: bpfgraftd not found next to bpfgraft-bench (%s)\n", bin);
        return err;
    }
    if ((err = bench_find_file(obj, sizeof(obj), "cli_maps.bpf.o"))) {
        fprintf(stderr, "bench rpc: %s not built (target cli_test_prog)\n", obj);
        return err;
    }

    /* Kernel baseline: the same shape of map, lookups by syscall. */
    int kfd = bpf_map_create(BPF_MAP_TYPE_HASH, "bench_rpc", 4, 8, 4096, NULL);
    if (kfd < 0) {
        fprintf(stderr, "bench rpc: kernel map: %s\n", strerror(errno));
        return -errno;
    }
    for (uint32_t k = 0; k < NKEYS; k++) {
        uint64_t v = expect(k);
        if (bpf_map_update_elem(kfd, &k, &v, BPF_ANY)) {
            err = -errno;
            close(kfd);
            return err;
        }
    }

    /* One server for every transport: the TLS listener beside the socket. */
    struct bench_remote rem;
    const char *listen_args[9];
    char listen_url[64];
    int tls_port = bench_remote_pki(&rem) == 0 ? bench_free_port() : -1;
    struct server srv = {.pid = -1, .extra = tls_port > 0 ? listen_args : NULL};
    if (tls_port > 0)
        bench_remote_listen_args(&rem, tls_port, listen_url, sizeof(listen_url), listen_args);
    if ((err = server_start(&srv, bin))) {
        bench_remote_end(&rem);
        close(kfd);
        return err;
    }
    struct rconn r;
    uint64_t map_id = 0;
    if ((err = rconnect(srv.sock, &r)))
        goto out;
    err = load_counts(&r, obj, &map_id);
    for (uint32_t k = 0; !err && k < NKEYS; k++)
        err = map_update(&r, map_id, k, expect(k));
    rclose(&r);
    if (err)
        goto out;

    double rpc1, rpc8, k1, k8;
    if ((err = run_workers(1, srv.sock, map_id, -1, iters1, &rpc1)) ||
        (err = run_workers(NTHREADS, srv.sock, map_id, -1, itersn, &rpc8)) ||
        (err = run_workers(1, NULL, 0, kfd, kiters, &k1)) ||
        (err = run_workers(NTHREADS, NULL, 0, kfd, kiters / 4, &k8)))
        goto out;

    bench_report(ctx, "map.lookup round trip", "1 client", 1e9 / rpc1, "ns/op", "kernel bpf(MAP_LOOKUP_ELEM)",
                 1e9 / k1);
    bench_report(ctx, "map.lookup throughput", "1 client", rpc1, "ops/s", "kernel syscall, 1 thread", k1);
    bench_report(ctx, "map.lookup throughput", "8 clients", rpc8, "ops/s", "kernel syscall, 8 threads", k8);
    tls_round_trip(ctx, &rem, tls_port, map_id, quick ? 200 : 5000, 1e9 / rpc1);
    ssh_round_trip(ctx, &rem, bin, srv.sock, map_id, quick ? 200 : 5000, 1e9 / rpc1);
    bench_note(ctx,
               "u32->u64 hash, %d keys; one unix socket connection per client; "
               "every answer checked; %ld CPUs",
               NKEYS, sysconf(_SC_NPROCESSORS_ONLN));
out:
    server_stop(&srv);
    bench_remote_end(&rem);
    close(kfd);
    return err;
}

const struct bench_suite bench_suite_rpc = {
    "rpc",
    "map.lookup over the control socket vs the bpf() syscall",
    run,
};
