/* RPC client and server lifecycle for benchmark suites. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench_client.h"
#include "transport.h"

int rconnect(const char *path, struct rconn *r)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memset(r, 0, sizeof(*r));
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    r->c = bpfg_rpc_conn_new(fd, 0);
    if (!r->c) {
        int err = -errno;
        close(fd);
        return err;
    }
    r->next_id = 1;
    return 0;
}

/* tcps://: the connection's bytes through a TLS session. */
static int connect_tls(const struct cli_host *h, const struct cli_tls_files *tls, struct rconn *r)
{
    struct bpfg_tls *session;
    int fd = transport_tls_open(h, tls, &r->tls_ctx, &session);
    if (fd < 0)
        return fd;
    if (!(r->c = bpfg_rpc_conn_new(fd, 0))) {
        int err = -errno;
        bpfg_tls_io.free(session);
        close(fd);
        rclose(r);
        return err;
    }
    bpfg_rpc_conn_set_io(r->c, &bpfg_tls_io, session);
    r->next_id = 1;
    return 0;
}

int rconnect_remote(const char *url, const struct cli_tls_files *tls, struct rconn *r)
{
    struct cli_host h;
    char err[512];
    memset(r, 0, sizeof(*r));
    int fd = transport_parse(url, &h, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "bench: %s\n", err);
        return fd;
    }
    if (h.tls)
        return connect_tls(&h, tls, r);
    if ((fd = transport_ssh_open(&h, &r->ssh)) < 0)
        return fd;
    r->c = bpfg_rpc_conn_new(fd, 0);
    if (!r->c) {
        int err2 = -errno;
        close(fd);
        rclose(r);
        return err2;
    }
    r->next_id = 1;
    return 0;
}

void rclose(struct rconn *r)
{
    bpfg_rpc_conn_free(r->c);
    r->c = NULL;
    bpfg_tls_ctx_free(r->tls_ctx); /* after its session */
    r->tls_ctx = NULL;
    if (r->ssh > 0)
        transport_ssh_close(r->ssh);
    r->ssh = 0;
}

/* Sends out (destroyed) and waits for the answer: 0 with *resp, -EREMOTEIO
 * for an error answer (printed), or a transport errno. */
int rcall(struct rconn *r, struct bpfg_rpc_out *out, struct bpfg_rpc_msg *resp)
{
    uint32_t id = r->next_id - 1;
    int err = bpfg_rpc_queue(r->c, out, -1);
    bpfg_rpc_out_destroy(out);
    if (!err)
        err = bpfg_rpc_flush(r->c);
    if (err)
        return err < 0 ? err : -EIO;
    bool read = false;
    for (;;) {
        int n = bpfg_rpc_recv(r->c, resp, read);
        if (n < 0) {
            bpfg_rpc_msg_release(resp);
            return n;
        }
        if (n == 1 && resp->kind == BPFG_RPC_RESPONSE && resp->msgid == id)
            break;
        read = n == 0;
        bpfg_rpc_msg_release(resp);
    }
    if (resp->error.type != MSGPACK_OBJECT_NIL) {
        const msgpack_object *e = &resp->error;
        if (e->type == MSGPACK_OBJECT_ARRAY && e->via.array.size == 2 && e->via.array.ptr[1].type == MSGPACK_OBJECT_STR)
            fprintf(stderr, "bench: server error: %.*s\n", (int)e->via.array.ptr[1].via.str.size,
                    e->via.array.ptr[1].via.str.ptr);
        bpfg_rpc_msg_release(resp);
        return -EREMOTEIO;
    }
    return 0;
}

void begin(struct rconn *r, struct bpfg_rpc_out *out, const char *method, uint32_t nparams)
{
    bpfg_rpc_out_init(out);
    bpfg_rpc_begin_request(out, r->next_id++, method);
    msgpack_pack_array(&out->pk, 1);
    msgpack_pack_map(&out->pk, nparams);
}

int server_start(struct server *s, const char *bin)
{
    snprintf(s->dir, sizeof(s->dir), "%s/bpfgraft-bench-XXXXXX", s->parent ? s->parent : "/tmp");
    if (!mkdtemp(s->dir))
        return -errno;
    snprintf(s->sock, sizeof(s->sock), "%s/control.sock", s->dir);
    s->pid = fork();
    if (s->pid < 0) {
        int err = -errno;
        rmdir(s->dir);
        return err;
    }
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the bench */
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        char cache[160];
        snprintf(cache, sizeof(cache), "%s/jitcache", s->dir);
        const char *argv[32] = {bin, "--socket", s->sock, "--foreground", "--cache-dir", cache, "--state-dir", s->dir};
        for (size_t i = 0, n = 8; s->extra && s->extra[i] && n < 31; i++)
            argv[n++] = s->extra[i];
        execv(bin, (char **)argv);
        _exit(127);
    }
    /* Wait until it accepts connections. */
    for (int i = 0; i < 1000; i++) {
        struct rconn r;
        if (rconnect(s->sock, &r) == 0) {
            rclose(&r);
            return 0;
        }
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = -1;
            fprintf(stderr, "bench: %s exited at start (status %d)\n", bin, st);
            rmdir(s->dir);
            return -ECHILD;
        }
        usleep(10000);
    }
    return -ETIMEDOUT;
}

void server_stop(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        for (int i = 0; i < 500 && waitpid(s->pid, NULL, WNOHANG) == 0; i++)
            usleep(10000);
        if (waitpid(s->pid, NULL, WNOHANG) == 0) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
        }
    }
    unlink(s->sock);
    /* the server's compiled-code cache lives in our directory */
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", s->dir);
    if (system(cmd) != 0)
        rmdir(s->dir);
}

/* Beside us (bin/ holds the daemon and CLI, and in the build tree the
 * victims), the installed layout (from CMake), then the build tree's bpf/. */
static const char *const bench_dirs[] = {".", BENCH_LIBEXEC_REL, BENCH_DATA_REL, BENCH_SAMPLES_REL, "../bpf"};

int bench_find_file(char *out, size_t len, const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n < 0)
        return -errno;
    self[n] = 0;
    const char *dir = dirname(self);
    for (size_t i = 0; i < sizeof(bench_dirs) / sizeof(bench_dirs[0]); i++) {
        if (snprintf(out, len, "%s/%s/%s", dir, bench_dirs[i], name) >= (int)len)
            return -ENAMETOOLONG;
        if (access(out, R_OK) == 0)
            return 0;
    }
    return -ENOENT;
}

int bench_map_counter(struct rconn *r, const char *map, uint64_t *value, bool reset)
{
    struct bpfg_rpc_out out;
    struct bpfg_rpc_msg resp;
    uint32_t key = 0;
    uint64_t zero = 0;
    begin(r, &out, reset ? "map.update" : "map.lookup", reset ? 3 : 2);
    bpfg_pack_cstr(&out.pk, "map");
    bpfg_pack_cstr(&out.pk, map);
    bpfg_pack_cstr(&out.pk, "key");
    bpfg_pack_bin(&out.pk, &key, sizeof(key));
    if (reset) {
        bpfg_pack_cstr(&out.pk, "value");
        bpfg_pack_bin(&out.pk, &zero, sizeof(zero));
    }
    int err = rcall(r, &out, &resp);
    if (err)
        return err;
    if (!reset)
        err = bench_resp_bin(&resp, "value", value, sizeof(*value));
    bpfg_rpc_msg_release(&resp);
    return err;
}

int rcall_discard(struct rconn *r, struct bpfg_rpc_out *out)
{
    struct bpfg_rpc_msg resp;
    int err = rcall(r, out, &resp);
    if (!err)
        bpfg_rpc_msg_release(&resp);
    return err;
}

int bench_resp_bin(const struct bpfg_rpc_msg *resp, const char *key, void *buf, size_t len)
{
    const msgpack_object *v = bpfg_obj_map_get(&resp->params, key);
    if (!v || v->type != MSGPACK_OBJECT_BIN || v->via.bin.size != len)
        return -EBADMSG;
    memcpy(buf, v->via.bin.ptr, len);
    return 0;
}

void begin_object_load(struct rconn *r, struct bpfg_rpc_out *out, const char *path, const char *name)
{
    begin(r, out, "object.load", 2);
    bpfg_pack_cstr(&out->pk, "path");
    bpfg_pack_cstr(&out->pk, path);
    bpfg_pack_cstr(&out->pk, "name");
    bpfg_pack_cstr(&out->pk, name);
}

int bench_load_object(struct rconn *r, const char *path, const char *name)
{
    struct bpfg_rpc_out out;
    begin_object_load(r, &out, path, name);
    return rcall_discard(r, &out);
}

int bench_find_files(size_t len, ...)
{
    va_list ap;
    char *out;
    int err = 0;
    va_start(ap, len);
    while (!err && (out = va_arg(ap, char *)))
        err = bench_find_file(out, len, va_arg(ap, const char *));
    va_end(ap);
    return err;
}
