/* msgpack-rpc framing, message validation and fd passing over unix sockets. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc.h"

#define MAX_QUEUED_FDS 16
#define MAX_FDS_PER_RECV 8
#define READ_CHUNK 65536

struct out_chunk {
    struct out_chunk *next;
    char *data;
    size_t len;
    size_t off;
    int fd; /* sent with the first byte of this chunk, or -1 */
};

struct bpfg_rpc_conn {
    int fd;
    size_t max_msg;
    bool eof;
    uint8_t *in;
    size_t in_len;
    size_t in_cap;
    int fds[MAX_QUEUED_FDS];
    size_t nfds;
    struct out_chunk *out_head;
    struct out_chunk *out_tail;
    size_t pending;
    const struct bpfg_rpc_io *io; /* NULL: the socket itself */
    void *io_ctx;
    char err[192];
};

static const char *const error_names[] = {
    [BPFG_RPC_E_PARSE] = "parse_error",        [BPFG_RPC_E_INVALID_REQUEST] = "invalid_request",
    [BPFG_RPC_E_NO_METHOD] = "no_such_method", [BPFG_RPC_E_INVALID_PARAMS] = "invalid_params",
    [BPFG_RPC_E_TOO_LARGE] = "too_large",      [BPFG_RPC_E_PERMISSION] = "permission_denied",
    [BPFG_RPC_E_NOT_FOUND] = "not_found",      [BPFG_RPC_E_EXISTS] = "exists",
    [BPFG_RPC_E_BAD_OBJECT] = "bad_object",    [BPFG_RPC_E_VERIFIER] = "verifier_rejected",
    [BPFG_RPC_E_TARGET] = "target_error",      [BPFG_RPC_E_INTERNAL] = "internal_error",
    [BPFG_RPC_E_UNSUPPORTED] = "unsupported",  [BPFG_RPC_E_BUSY] = "busy",
    [BPFG_RPC_E_FORBIDDEN] = "forbidden",
};

const char *bpfg_rpc_error_name(int code)
{
    if (code <= 0 || (size_t)code >= sizeof(error_names) / sizeof(error_names[0]) || !error_names[code])
        return "unknown_error";
    return error_names[code];
}

static void set_err(struct bpfg_rpc_conn *conn, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void set_err(struct bpfg_rpc_conn *conn, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(conn->err, sizeof(conn->err), fmt, ap);
    va_end(ap);
}

/* ---- framing ------------------------------------------------------------ */

static uint64_t be_read(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

long bpfg_msgpack_frame_len(const uint8_t *b, size_t len, size_t max)
{
    uint64_t pending[BPFG_RPC_MAX_DEPTH + 1];
    int depth = 0;
    size_t pos = 0;

    pending[0] = 1;
    for (;;) {
        while (depth >= 0 && pending[depth] == 0)
            depth--;
        if (depth < 0)
            return pos <= len ? (long)pos : 0;
        if (pos >= len)
            return 0;
        pending[depth]--;

        uint8_t c = b[pos];
        size_t hdr = 1;      /* type byte + length field */
        size_t lenbytes = 0; /* size of the big-endian length field */
        uint64_t body = 0;   /* payload bytes after the header */
        int container = 0;   /* 1 array, 2 map */
        uint64_t count = 0;

        if (c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3) {
            /* fixint, nil, bool */
        } else if (c <= 0x8f) {
            container = 2, count = c & 0x0f;
        } else if (c <= 0x9f) {
            container = 1, count = c & 0x0f;
        } else if (c <= 0xbf) {
            body = c & 0x1f;
        } else {
            switch (c) {
            case 0xc4:
            case 0xd9: lenbytes = 1; break; /* bin8, str8 */
            case 0xc5:
            case 0xda: lenbytes = 2; break;
            case 0xc6:
            case 0xdb: lenbytes = 4; break;
            case 0xc7: lenbytes = 1, body = 1; break; /* ext: + type byte */
            case 0xc8: lenbytes = 2, body = 1; break;
            case 0xc9: lenbytes = 4, body = 1; break;
            case 0xca: body = 4; break;
            case 0xcb: body = 8; break;
            case 0xcc:
            case 0xd0: body = 1; break;
            case 0xcd:
            case 0xd1: body = 2; break;
            case 0xce:
            case 0xd2: body = 4; break;
            case 0xcf:
            case 0xd3: body = 8; break;
            case 0xd4: body = 2; break;
            case 0xd5: body = 3; break;
            case 0xd6: body = 5; break;
            case 0xd7: body = 9; break;
            case 0xd8: body = 17; break;
            case 0xdc: container = 1, lenbytes = 2; break;
            case 0xdd: container = 1, lenbytes = 4; break;
            case 0xde: container = 2, lenbytes = 2; break;
            case 0xdf: container = 2, lenbytes = 4; break;
            default: return -EBADMSG; /* 0xc1 is never used */
            }
        }
        hdr += lenbytes;
        if (pos + hdr > max)
            return -EMSGSIZE;
        if (pos + hdr > len)
            return 0;
        if (lenbytes) {
            uint64_t n = be_read(b + pos + 1, lenbytes);
            if (container)
                count = n;
            else
                body += n;
        }
        pos += hdr;
        if (container) {
            /* Every element takes at least one byte: a count that cannot fit
             * is refused before anything is allocated for it. */
            uint64_t items = container == 2 ? count * 2 : count;
            if (items > max - pos)
                return -EMSGSIZE;
            if (items) {
                if (depth + 1 > BPFG_RPC_MAX_DEPTH)
                    return -EMSGSIZE;
                pending[++depth] = items;
            }
        } else {
            if (body > max - pos)
                return -EMSGSIZE;
            pos += body;
        }
    }
}

/* ---- connection --------------------------------------------------------- */

struct bpfg_rpc_conn *bpfg_rpc_conn_new(int fd, size_t max_msg)
{
    struct bpfg_rpc_conn *conn = calloc(1, sizeof(*conn));
    if (!conn)
        return NULL;
    conn->fd = fd;
    conn->max_msg = max_msg ? max_msg : BPFG_RPC_MAX_MSG_DEFAULT;
    return conn;
}

void bpfg_rpc_conn_free(struct bpfg_rpc_conn *conn)
{
    if (!conn)
        return;
    for (size_t i = 0; i < conn->nfds; i++)
        close(conn->fds[i]);
    struct out_chunk *c = conn->out_head;
    while (c) {
        struct out_chunk *next = c->next;
        if (c->fd >= 0)
            close(c->fd);
        free(c->data);
        free(c);
        c = next;
    }
    if (conn->io && conn->io->free)
        conn->io->free(conn->io_ctx);
    if (conn->fd >= 0)
        close(conn->fd);
    free(conn->in);
    free(conn);
}

void bpfg_rpc_conn_set_io(struct bpfg_rpc_conn *conn, const struct bpfg_rpc_io *io, void *ctx)
{
    conn->io = io;
    conn->io_ctx = ctx;
}

int bpfg_rpc_conn_fd(const struct bpfg_rpc_conn *conn)
{
    return conn->fd;
}
const char *bpfg_rpc_conn_error(const struct bpfg_rpc_conn *conn)
{
    return conn->err;
}

int bpfg_rpc_take_fd(struct bpfg_rpc_conn *conn)
{
    if (!conn->nfds)
        return -ENOENT;
    int fd = conn->fds[0];
    memmove(conn->fds, conn->fds + 1, --conn->nfds * sizeof(int));
    return fd;
}

static void keep_fds(struct bpfg_rpc_conn *conn, struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *fds = (int *)CMSG_DATA(cm);
        for (size_t i = 0; i < n; i++) {
            if (conn->nfds < MAX_QUEUED_FDS)
                conn->fds[conn->nfds++] = fds[i];
            else
                close(fds[i]); /* a peer flooding us with fds gets them dropped */
        }
    }
}

static int grow_input(struct bpfg_rpc_conn *conn)
{
    if (conn->in_cap - conn->in_len >= READ_CHUNK)
        return 0;
    size_t cap = conn->in_cap ? conn->in_cap * 2 : READ_CHUNK * 2;
    uint8_t *in = realloc(conn->in, cap);
    if (!in)
        return -ENOMEM;
    conn->in = in;
    conn->in_cap = cap;
    return 0;
}

/* One read through conn->io (a TLS record or less: READ_CHUNK holds a
 * whole one, so nothing stays buffered out of epoll's sight). */
static int fill_io(struct bpfg_rpc_conn *conn)
{
    long n = conn->io->recv(conn->io_ctx, conn->in + conn->in_len, conn->in_cap - conn->in_len);
    if (n == -EAGAIN)
        return 0;
    if (n < 0)
        return (int)n;
    if (n == 0)
        conn->eof = true;
    conn->in_len += (size_t)n;
    return 0;
}

/* One recvmsg into the input buffer. 0 ok / would block, -errno on error. */
static int fill(struct bpfg_rpc_conn *conn)
{
    int err = grow_input(conn);
    if (err)
        return err;
    if (conn->io)
        return fill_io(conn);
    union {
        char buf[CMSG_SPACE(MAX_FDS_PER_RECV * sizeof(int))];
        struct cmsghdr align;
    } ctrl;
    struct iovec iov = {conn->in + conn->in_len, conn->in_cap - conn->in_len};
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctrl.buf, .msg_controllen = sizeof(ctrl.buf)};
    ssize_t n;
    do {
        n = recvmsg(conn->fd, &mh, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return -errno;
    }
    keep_fds(conn, &mh);
    if (n == 0)
        conn->eof = true;
    conn->in_len += (size_t)n;
    return 0;
}

static int invalid(struct bpfg_rpc_conn *conn, struct bpfg_rpc_msg *msg, const char *why)
{
    msg->kind = -1;
    set_err(conn, "not a msgpack-rpc message: %s", why);
    return -EPROTO;
}

static int check_shape(struct bpfg_rpc_conn *conn, struct bpfg_rpc_msg *msg)
{
    const msgpack_object *o = &msg->whole;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 3)
        return invalid(conn, msg, "expected an array [type, ...]");
    const msgpack_object *a = o->via.array.ptr;
    uint32_t size = o->via.array.size;
    if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > 2)
        return invalid(conn, msg, "first element must be 0, 1 or 2");
    int kind = (int)a[0].via.u64;

    if (kind != BPFG_RPC_NOTIFICATION) {
        if (a[1].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[1].via.u64 > UINT32_MAX)
            return invalid(conn, msg, "msgid must be an unsigned 32-bit integer");
        msg->msgid = (uint32_t)a[1].via.u64;
    }
    switch (kind) {
    case BPFG_RPC_REQUEST:
        if (size != 4)
            return invalid(conn, msg, "a request has 4 elements");
        if (a[2].type != MSGPACK_OBJECT_STR)
            return invalid(conn, msg, "method must be a string");
        if (a[3].type != MSGPACK_OBJECT_ARRAY)
            return invalid(conn, msg, "params must be an array");
        msg->method = a[2].via.str.ptr;
        msg->method_len = a[2].via.str.size;
        msg->params = a[3];
        break;
    case BPFG_RPC_RESPONSE:
        if (size != 4)
            return invalid(conn, msg, "a response has 4 elements");
        msg->error = a[2];
        msg->params = a[3];
        break;
    default:
        if (size != 3)
            return invalid(conn, msg, "a notification has 3 elements");
        if (a[1].type != MSGPACK_OBJECT_STR || a[2].type != MSGPACK_OBJECT_ARRAY)
            return invalid(conn, msg, "a notification is [2, method, params]");
        msg->method = a[1].via.str.ptr;
        msg->method_len = a[1].via.str.size;
        msg->params = a[2];
        break;
    }
    msg->kind = kind;
    return 1;
}

int bpfg_rpc_recv(struct bpfg_rpc_conn *conn, struct bpfg_rpc_msg *msg, bool read)
{
    memset(msg, 0, sizeof(*msg));
    msg->kind = -1;
    msgpack_unpacked_init(&msg->unpacked);

    if (read && !conn->eof) {
        int err = fill(conn);
        if (err) {
            const char *why = conn->io ? conn->io->why(conn->io_ctx) : "";
            set_err(conn, "read: %s", *why ? why : strerror(-err));
            return err;
        }
    }
    long flen = bpfg_msgpack_frame_len(conn->in, conn->in_len, conn->max_msg);
    if (flen == -EMSGSIZE) {
        set_err(conn, "message larger than %zu bytes or nested deeper than %d", conn->max_msg, BPFG_RPC_MAX_DEPTH);
        return -EMSGSIZE;
    }
    if (flen < 0) {
        set_err(conn, "malformed msgpack (invalid type byte)");
        return -EBADMSG;
    }
    if (flen == 0) {
        if (conn->eof) {
            set_err(conn, conn->in_len ? "connection closed inside a message" : "connection closed");
            return -EPIPE;
        }
        return 0;
    }

    /* Unpack from a copy held in the message's own zone: str and bin
     * objects point into the bytes they were parsed from. */
    msgpack_zone *zone = msgpack_zone_new((size_t)flen + 4096);
    char *copy = zone ? msgpack_zone_malloc(zone, (size_t)flen) : NULL;
    if (!copy) {
        msgpack_zone_free(zone);
        set_err(conn, "out of memory");
        return -ENOMEM;
    }
    memcpy(copy, conn->in, (size_t)flen);
    memmove(conn->in, conn->in + flen, conn->in_len - (size_t)flen);
    conn->in_len -= (size_t)flen;

    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(copy, (size_t)flen, &off, zone, &msg->whole);
    msg->unpacked.zone = zone;
    msg->unpacked.data = msg->whole;
    if (ur != MSGPACK_UNPACK_SUCCESS) {
        set_err(conn, "malformed msgpack");
        return -EBADMSG;
    }
    return check_shape(conn, msg);
}

void bpfg_rpc_msg_release(struct bpfg_rpc_msg *msg)
{
    msgpack_unpacked_destroy(&msg->unpacked);
    memset(msg, 0, sizeof(*msg));
}

/* ---- sending ------------------------------------------------------------ */

void bpfg_rpc_out_init(struct bpfg_rpc_out *out)
{
    msgpack_sbuffer_init(&out->buf);
    msgpack_packer_init(&out->pk, &out->buf, msgpack_sbuffer_write);
}

void bpfg_rpc_out_destroy(struct bpfg_rpc_out *out)
{
    msgpack_sbuffer_destroy(&out->buf);
}

void bpfg_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void bpfg_pack_cstr(msgpack_packer *pk, const char *s)
{
    if (!s) {
        msgpack_pack_nil(pk);
        return;
    }
    bpfg_pack_strn(pk, s, strlen(s));
}

void bpfg_pack_bin(msgpack_packer *pk, const void *data, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, data, n);
}

void bpfg_rpc_begin_request(struct bpfg_rpc_out *out, uint32_t msgid, const char *method)
{
    msgpack_pack_array(&out->pk, 4);
    msgpack_pack_uint8(&out->pk, BPFG_RPC_REQUEST);
    msgpack_pack_uint32(&out->pk, msgid);
    bpfg_pack_cstr(&out->pk, method);
}

void bpfg_rpc_begin_result(struct bpfg_rpc_out *out, uint32_t msgid)
{
    msgpack_pack_array(&out->pk, 4);
    msgpack_pack_uint8(&out->pk, BPFG_RPC_RESPONSE);
    msgpack_pack_uint32(&out->pk, msgid);
    msgpack_pack_nil(&out->pk);
}

void bpfg_rpc_pack_error(struct bpfg_rpc_out *out, uint32_t msgid, int code, const char *fmt, ...)
{
    char text[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    msgpack_pack_array(&out->pk, 4);
    msgpack_pack_uint8(&out->pk, BPFG_RPC_RESPONSE);
    msgpack_pack_uint32(&out->pk, msgid);
    msgpack_pack_array(&out->pk, 2);
    msgpack_pack_int(&out->pk, code);
    bpfg_pack_cstr(&out->pk, text);
    msgpack_pack_nil(&out->pk);
}

void bpfg_rpc_begin_notification(struct bpfg_rpc_out *out, const char *method)
{
    msgpack_pack_array(&out->pk, 3);
    msgpack_pack_uint8(&out->pk, BPFG_RPC_NOTIFICATION);
    bpfg_pack_cstr(&out->pk, method);
}

int bpfg_rpc_queue(struct bpfg_rpc_conn *conn, struct bpfg_rpc_out *out, int fd)
{
    if (!out->buf.size)
        return -EINVAL;
    struct out_chunk *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->fd = -1;
    if (fd >= 0 && conn->io) {
        free(c);
        return -EOPNOTSUPP;
    }
    if (fd >= 0) {
        c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (c->fd < 0) {
            int err = -errno;
            free(c);
            return err;
        }
    }
    c->len = out->buf.size;
    c->data = msgpack_sbuffer_release(&out->buf);
    if (conn->out_tail)
        conn->out_tail->next = c;
    else
        conn->out_head = c;
    conn->out_tail = c;
    conn->pending += c->len;
    return 0;
}

size_t bpfg_rpc_pending(const struct bpfg_rpc_conn *conn)
{
    return conn->pending;
}

bool bpfg_rpc_at_rest(const struct bpfg_rpc_conn *conn)
{
    return !conn->in_len && !conn->nfds && !conn->out_head;
}

static ssize_t send_chunk(int sock, struct out_chunk *c)
{
    struct iovec iov = {c->data + c->off, c->len - c->off};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctrl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (c->fd >= 0) {
        mh.msg_control = ctrl.buf;
        mh.msg_controllen = sizeof(ctrl.buf);
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &c->fd, sizeof(int));
    }
    return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

/* Like sendmsg: bytes written, or -1 with errno. */
static ssize_t send_some(struct bpfg_rpc_conn *conn, struct out_chunk *c)
{
    if (!conn->io)
        return send_chunk(conn->fd, c);
    long n = conn->io->send(conn->io_ctx, c->data + c->off, c->len - c->off);
    if (n >= 0)
        return n;
    errno = (int)-n;
    return -1;
}

int bpfg_rpc_flush(struct bpfg_rpc_conn *conn)
{
    while (conn->out_head) {
        struct out_chunk *c = conn->out_head;
        ssize_t n = send_some(conn, c);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 1;
            return -errno;
        }
        if (c->fd >= 0) { /* the fd went out with these bytes */
            close(c->fd);
            c->fd = -1;
        }
        c->off += (size_t)n;
        conn->pending -= (size_t)n;
        if (c->off < c->len)
            continue;
        conn->out_head = c->next;
        if (!conn->out_head)
            conn->out_tail = NULL;
        free(c->data);
        free(c);
    }
    return 0;
}

/* ---- reading helpers ---------------------------------------------------- */

bool bpfg_obj_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == n && (n == 0 || memcmp(o->via.str.ptr, s, n) == 0);
}

const msgpack_object *bpfg_obj_map_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (bpfg_obj_str_eq(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

int bpfg_obj_strcpy(const msgpack_object *o, char *buf, size_t len)
{
    if (!o || o->type != MSGPACK_OBJECT_STR)
        return -EINVAL;
    if (o->via.str.size >= len)
        return -E2BIG;
    /* an empty string may come with a NULL pointer */
    if (o->via.str.size && memchr(o->via.str.ptr, 0, o->via.str.size))
        return -EINVAL; /* embedded NUL: not a usable C string */
    if (o->via.str.size)
        memcpy(buf, o->via.str.ptr, o->via.str.size);
    buf[o->via.str.size] = 0;
    return 0;
}

int bpfg_obj_u64(const msgpack_object *o, uint64_t *v)
{
    if (!o || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -EINVAL;
    *v = o->via.u64;
    return 0;
}
