/* The CLI's connection to bpfgraftd. */
#include "client.h"
#include "transport.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

void cli_init(struct cli_conn *c, const char *path, const char *host, const struct cli_tls_files *tls)
{
    memset(c, 0, sizeof(*c));
    c->path = host ? host : path;
    c->host = host;
    if (tls)
        c->tls = *tls;
    c->next_id = 1;
}

/* c->rpc on fd; on failure says why and returns -errno (fd stays the caller's). */
static int new_rpc(struct cli_conn *c, int fd)
{
    c->rpc = bpfg_rpc_conn_new(fd, 0);
    if (c->rpc)
        return 0;
    int r = -errno;
    fprintf(stderr, "bpfgraft: %s\n", strerror(errno));
    return r;
}

static int connect_tls(struct cli_conn *c, const struct cli_host *h)
{
    struct bpfg_tls *session;
    int fd = transport_tls_open(h, &c->tls, &c->tls_ctx, &session);
    if (fd < 0)
        return fd;
    int r = new_rpc(c, fd);
    if (r) {
        bpfg_tls_io.free(session);
        close(fd);
        return r;
    }
    bpfg_rpc_conn_set_io(c->rpc, &bpfg_tls_io, session);
    return 0;
}

static int connect_remote(struct cli_conn *c)
{
    struct cli_host h;
    char err[512];
    int fd = transport_parse(c->host, &h, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "bpfgraft: %s\n", err);
        return fd;
    }
    if (h.tls)
        return connect_tls(c, &h);
    fd = transport_ssh_open(&h, &c->ssh);
    if (fd < 0)
        return fd;
    int r = new_rpc(c, fd);
    if (r) {
        close(fd);
        transport_ssh_close(c->ssh);
        c->ssh = 0;
        return r;
    }
    return 0;
}

int cli_connect(struct cli_conn *c)
{
    const char *path = c->path;
    if (c->rpc)
        return 0;
    if (c->host)
        return connect_remote(c);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "bpfgraft: socket path too long: %s\n", path);
        return -ENAMETOOLONG;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int err = -errno;
        fprintf(stderr, "bpfgraft: socket: %s\n", strerror(errno));
        return err;
    }
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int err = -errno;
        const char *hint = err == -ENOENT || err == -ECONNREFUSED ? " (is bpfgraftd running?)"
                           : err == -EACCES                       ? " (bpfgraftd's socket is root-only)"
                                                                  : "";
        fprintf(stderr, "bpfgraft: cannot connect to %s: %s%s\n", path, strerror(-err), hint);
        close(fd);
        return err;
    }
    c->rpc = bpfg_rpc_conn_new(fd, 0);
    if (!c->rpc) {
        int err = -errno;
        fprintf(stderr, "bpfgraft: %s\n", strerror(errno));
        close(fd);
        return err;
    }
    return 0;
}

void cli_close(struct cli_conn *c)
{
    bpfg_rpc_conn_free(c->rpc);
    c->rpc = NULL;
    bpfg_tls_ctx_free(c->tls_ctx); /* after its session */
    c->tls_ctx = NULL;
    if (c->ssh > 0)
        transport_ssh_close(c->ssh);
    c->ssh = 0;
}

void cli_begin(struct cli_conn *c, struct bpfg_rpc_out *out, const char *method, uint32_t nparams)
{
    bpfg_rpc_out_init(out);
    bpfg_rpc_begin_request(out, c->next_id++, method);
    if (nparams) {
        msgpack_pack_array(&out->pk, 1);
        msgpack_pack_map(&out->pk, nparams);
    } else {
        msgpack_pack_array(&out->pk, 0);
    }
}

int cli_recv(struct cli_conn *c, struct bpfg_rpc_msg *msg)
{
    /* Drain what is buffered before blocking in recvmsg for more. */
    bool read = false;
    for (;;) {
        int r = bpfg_rpc_recv(c->rpc, msg, read);
        if (r == 1)
            return 1;
        if (r < 0) {
            if (r == -EPIPE)
                fprintf(stderr, "bpfgraft: %s closed the connection\n", c->path);
            else
                fprintf(stderr, "bpfgraft: bad answer from %s: %s\n", c->path, bpfg_rpc_conn_error(c->rpc));
            bpfg_rpc_msg_release(msg);
            return r < 0 ? r : -EPROTO;
        }
        bpfg_rpc_msg_release(msg);
        read = true;
    }
}

int cli_call(struct cli_conn *c, struct bpfg_rpc_out *out, struct bpfg_rpc_msg *resp, struct cli_error *err)
{
    /* The id cli_begin used is the one before next_id. */
    uint32_t id = c->next_id - 1;
    int r = cli_connect(c);
    if (r < 0) {
        bpfg_rpc_out_destroy(out);
        return r;
    }
    r = bpfg_rpc_queue(c->rpc, out, -1);
    bpfg_rpc_out_destroy(out);
    if (!r)
        r = bpfg_rpc_flush(c->rpc);
    if (r) {
        fprintf(stderr, "bpfgraft: sending to %s: %s\n", c->path, strerror(r < 0 ? -r : EIO));
        return r < 0 ? r : -EIO;
    }
    for (;;) {
        r = cli_recv(c, resp);
        if (r < 0)
            return r;
        if (resp->kind == BPFG_RPC_RESPONSE && resp->msgid == id)
            break;
        bpfg_rpc_msg_release(resp); /* a notification, or a stray answer */
    }
    if (resp->error.type == MSGPACK_OBJECT_NIL)
        return 0;

    err->code = 0;
    snprintf(err->message, sizeof(err->message), "malformed error from server");
    const msgpack_object *e = &resp->error;
    if (e->type == MSGPACK_OBJECT_ARRAY && e->via.array.size >= 2) {
        uint64_t code;
        if (bpfg_obj_u64(&e->via.array.ptr[0], &code) == 0 && code <= 1000)
            err->code = (int)code;
        const msgpack_object *m = &e->via.array.ptr[1];
        if (m->type == MSGPACK_OBJECT_STR)
            snprintf(err->message, sizeof(err->message), "%.*s", (int)m->via.str.size, m->via.str.ptr);
    }
    bpfg_rpc_msg_release(resp);
    return 1;
}
