/* libFuzzer target for the request decoder: framing, msgpack parsing and
 * msgpack-rpc shape checks, fed through a real socket in random chunks. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc.h"

/* A signed integer (negative, or positive up to INT64_MAX). */
static int obj_i64(const msgpack_object *o, int64_t *v)
{
    if (!o)
        return -EINVAL;
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return 0;
    }
    return -EINVAL;
}

/* Walks a decoded value the way method handlers do. */
static void touch(const msgpack_object *o, int depth)
{
    if (depth > BPFG_RPC_MAX_DEPTH + 1)
        abort(); /* the framing must have refused this */
    char buf[64];
    uint64_t u;
    int64_t i;
    bpfg_obj_strcpy(o, buf, sizeof(buf));
    bpfg_obj_u64(o, &u);
    obj_i64(o, &i);
    if (o->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t k = 0; k < o->via.array.size; k++)
            touch(&o->via.array.ptr[k], depth + 1);
    if (o->type == MSGPACK_OBJECT_MAP) {
        bpfg_obj_map_get(o, "map");
        for (uint32_t k = 0; k < o->via.map.size; k++)
            touch(&o->via.map.ptr[k].val, depth + 1);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long flen = bpfg_msgpack_frame_len(data, size, 4096);
    if (flen > (long)size)
        abort();

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return 0;
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    struct bpfg_rpc_conn *conn = bpfg_rpc_conn_new(sv[1], 4096);
    if (!conn) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    /* the first byte picks the chunk size, so splits are exercised too */
    size_t chunk = size ? (size_t)data[0] % 17 + 1 : 1;
    for (size_t off = 0; off < size;) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (write(sv[0], data + off, n) != (ssize_t)n)
            break;
        off += n;
        bool fatal = false;
        for (int k = 0; k < 64 && !fatal; k++) {
            struct bpfg_rpc_msg msg;
            int r = bpfg_rpc_recv(conn, &msg, k == 0);
            if (r == 1) {
                if (msg.kind < 0 || msg.kind > 2)
                    abort();
                touch(&msg.whole, 0);
            }
            bpfg_rpc_msg_release(&msg);
            if (r == 0)
                break;
            fatal = r == -EBADMSG || r == -EMSGSIZE || r == -EPIPE;
        }
        if (fatal)
            break;
    }
    bpfg_rpc_conn_free(conn);
    close(sv[0]);
    return 0;
}
