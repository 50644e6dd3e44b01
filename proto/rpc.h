/* msgpack-rpc over a unix stream socket (msgpack-c), with fd passing.
 *
 * Messages are exactly msgpack-rpc:
 *   request      [0, msgid, method, params]
 *   response     [1, msgid, error, result]     error: nil or [code, message]
 *   notification [2, method, params]
 * bpfgraft's methods take params = [] or [{name: value, ...}] (one map of
 * named arguments), so methods can grow arguments without breaking clients.
 *
 * A file descriptor (a map's memfd) travels with SCM_RIGHTS alongside the
 * bytes of the message that announces it; receivers queue fds in arrival
 * order and bpfg_rpc_take_fd() hands out the oldest.
 */
#ifndef BPFGRAFT_RPC_H
#define BPFGRAFT_RPC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BPFG_RPC_MAX_MSG_DEFAULT (16u << 20) /* 16 MiB */
#define BPFG_RPC_MAX_DEPTH 64                /* nesting of arrays/maps */

enum bpfg_rpc_kind {
    BPFG_RPC_REQUEST = 0,
    BPFG_RPC_RESPONSE = 1,
    BPFG_RPC_NOTIFICATION = 2,
};

/* Stable error codes: the first element of a response's error array.
 * Listed in proto/PROTOCOL.md; never renumbered. */
enum bpfg_rpc_error {
    BPFG_RPC_E_PARSE = 1,           /* bytes are not valid msgpack */
    BPFG_RPC_E_INVALID_REQUEST = 2, /* valid msgpack, not a msgpack-rpc request */
    BPFG_RPC_E_NO_METHOD = 3,       /* unknown method */
    BPFG_RPC_E_INVALID_PARAMS = 4,  /* missing/unknown parameter or wrong type */
    BPFG_RPC_E_TOO_LARGE = 5,       /* message over the size or depth limit */
    BPFG_RPC_E_PERMISSION = 6,      /* the peer may not do this */
    BPFG_RPC_E_NOT_FOUND = 7,       /* no such object, program, map, key, target */
    BPFG_RPC_E_EXISTS = 8,          /* already exists / already attached */
    BPFG_RPC_E_BAD_OBJECT = 9,      /* malformed or unsupported BPF object */
    BPFG_RPC_E_VERIFIER = 10,       /* program rejected by the verifier */
    BPFG_RPC_E_TARGET = 11,         /* attach/detach to a process failed */
    BPFG_RPC_E_INTERNAL = 12,       /* server-side failure (out of memory, I/O) */
    BPFG_RPC_E_UNSUPPORTED = 13,    /* not available in userspace / not yet */
    BPFG_RPC_E_BUSY = 14,           /* temporarily unavailable, retry */
    BPFG_RPC_E_FORBIDDEN = 15,      /* the caller's role does not allow the method */
};
#define BPFG_RPC_E_LAST BPFG_RPC_E_FORBIDDEN

const char *bpfg_rpc_error_name(int code);

struct bpfg_rpc_conn;

/* One received message. Objects point into the message's own zone and live
 * until bpfg_rpc_msg_release(). */
struct bpfg_rpc_msg {
    int kind;           /* enum bpfg_rpc_kind */
    uint32_t msgid;     /* requests and responses */
    const char *method; /* requests and notifications; not NUL-terminated */
    uint32_t method_len;
    msgpack_object params; /* requests/notifications: params; responses: result */
    msgpack_object error;  /* responses: nil or [code, message] */
    msgpack_object whole;  /* the whole message */
    msgpack_unpacked unpacked;
};

/* Takes ownership of fd (a connected stream socket). max_msg 0 = default. */
struct bpfg_rpc_conn *bpfg_rpc_conn_new(int fd, size_t max_msg);

/* A byte stream other than the socket itself (TLS): recv and send return
 * bytes moved, 0 at end of stream (recv), -EAGAIN when they would block,
 * or a negative errno; why says what the last failure was ("" if none:
 * the errno says it); free releases ctx when the connection is freed
 * (before fd is closed). Such connections pass no fds (bpfg_rpc_queue
 * with an fd gives -EOPNOTSUPP). */
struct bpfg_rpc_io {
    long (*recv)(void *ctx, void *buf, size_t len);
    long (*send)(void *ctx, const void *buf, size_t len);
    const char *(*why)(const void *ctx);
    void (*free)(void *ctx);
};
/* Routes the connection's bytes through io (which keeps ctx until freed). */
void bpfg_rpc_conn_set_io(struct bpfg_rpc_conn *conn, const struct bpfg_rpc_io *io, void *ctx);
void bpfg_rpc_conn_free(struct bpfg_rpc_conn *conn);
int bpfg_rpc_conn_fd(const struct bpfg_rpc_conn *conn);

/* Reads whatever the socket has (one recvmsg), then tries to extract one
 * message. Returns 1 and fills *msg, 0 if a complete message is not there
 * yet (nonblocking socket drained), -EPIPE at end of stream, -EMSGSIZE for
 * a message over the limit, -EBADMSG for bytes that are not msgpack; the
 * last two leave the stream unframed, so the caller should answer and
 * close. A well-formed msgpack value that is not a msgpack-rpc message
 * returns -EPROTO with *msg filled (msgid if one could be read) and the
 * stream stays usable. Call again with read=false to drain buffered
 * messages without touching the socket. */
int bpfg_rpc_recv(struct bpfg_rpc_conn *conn, struct bpfg_rpc_msg *msg, bool read);
void bpfg_rpc_msg_release(struct bpfg_rpc_msg *msg);
/* Describes why the last bpfg_rpc_recv failed. */
const char *bpfg_rpc_conn_error(const struct bpfg_rpc_conn *conn);

/* Oldest fd received with SCM_RIGHTS, or -ENOENT. Caller owns it. */
int bpfg_rpc_take_fd(struct bpfg_rpc_conn *conn);

/* Sending: build a message with the packer, then queue it. Queued bytes
 * go out with bpfg_rpc_flush(); on a blocking socket queue+flush is a
 * plain write. fd >= 0 is sent with the message (dup'd; caller keeps its). */
struct bpfg_rpc_out {
    msgpack_sbuffer buf;
    msgpack_packer pk;
};
void bpfg_rpc_out_init(struct bpfg_rpc_out *out);
void bpfg_rpc_out_destroy(struct bpfg_rpc_out *out);
/* Starts [0, msgid, method, params...]: the caller packs the params array. */
void bpfg_rpc_begin_request(struct bpfg_rpc_out *out, uint32_t msgid, const char *method);
/* Starts [1, msgid, nil, result...]: the caller packs exactly one result. */
void bpfg_rpc_begin_result(struct bpfg_rpc_out *out, uint32_t msgid);
/* A whole error response [1, msgid, [code, message], nil]. */
void bpfg_rpc_pack_error(struct bpfg_rpc_out *out, uint32_t msgid, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Starts [2, method, params...]: the caller packs the params array. */
void bpfg_rpc_begin_notification(struct bpfg_rpc_out *out, const char *method);

int bpfg_rpc_queue(struct bpfg_rpc_conn *conn, struct bpfg_rpc_out *out, int fd);
/* Writes queued bytes. Returns 0 when all is written, 1 when the socket
 * would block with bytes left, or a negative errno. */
int bpfg_rpc_flush(struct bpfg_rpc_conn *conn);
size_t bpfg_rpc_pending(const struct bpfg_rpc_conn *conn);
/* True when nothing of a message is buffered either way (no partial
 * request read, no fd received, nothing to send): the socket alone holds
 * the connection's state, so another process may take it over. */
bool bpfg_rpc_at_rest(const struct bpfg_rpc_conn *conn);

/* Packing helpers. */
void bpfg_pack_cstr(msgpack_packer *pk, const char *s);
void bpfg_pack_strn(msgpack_packer *pk, const char *s, size_t n);
void bpfg_pack_bin(msgpack_packer *pk, const void *data, size_t n);

/* Reading helpers: look a key up in a msgpack map object. */
const msgpack_object *bpfg_obj_map_get(const msgpack_object *map, const char *key);
bool bpfg_obj_str_eq(const msgpack_object *o, const char *s);
/* Copies a str object into buf as a C string; -EINVAL if not a str, -E2BIG if too long. */
int bpfg_obj_strcpy(const msgpack_object *o, char *buf, size_t len);
int bpfg_obj_u64(const msgpack_object *o, uint64_t *v);

/* Length of the msgpack value at the start of buf: >0 complete, 0 needs
 * more bytes, -EBADMSG invalid, -EMSGSIZE over max or deeper than
 * BPFG_RPC_MAX_DEPTH. Used for framing before any allocation happens. */
long bpfg_msgpack_frame_len(const uint8_t *buf, size_t len, size_t max);

#endif
