/* msgpack-rpc framing, validation and fd passing over a socketpair. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "rpc.h"

static struct bpfg_rpc_conn *a, *b;

static void setup(void)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a = bpfg_rpc_conn_new(sv[0], 4096);
    b = bpfg_rpc_conn_new(sv[1], 4096);
    cr_assert(a && b);
}

static void teardown(void)
{
    bpfg_rpc_conn_free(a);
    bpfg_rpc_conn_free(b);
}

TestSuite(rpc, .init = setup, .fini = teardown);

static void send_raw(const void *bytes, size_t n)
{
    cr_assert_eq(write(bpfg_rpc_conn_fd(a), bytes, n), (ssize_t)n);
}

Test(rpc, request_roundtrip_with_named_params)
{
    struct bpfg_rpc_out out;
    bpfg_rpc_out_init(&out);
    bpfg_rpc_begin_request(&out, 77, "map.lookup");
    msgpack_pack_array(&out.pk, 1);
    msgpack_pack_map(&out.pk, 2);
    bpfg_pack_cstr(&out.pk, "map");
    bpfg_pack_cstr(&out.pk, "counts");
    bpfg_pack_cstr(&out.pk, "key");
    bpfg_pack_bin(&out.pk, "\x01\x00\x00\x00", 4);
    cr_assert_eq(bpfg_rpc_queue(a, &out, -1), 0);
    bpfg_rpc_out_destroy(&out);
    cr_assert_eq(bpfg_rpc_flush(a), 0);

    struct bpfg_rpc_msg msg;
    cr_assert_eq(bpfg_rpc_recv(b, &msg, true), 1, "%s", bpfg_rpc_conn_error(b));
    cr_expect_eq(msg.kind, BPFG_RPC_REQUEST);
    cr_expect_eq(msg.msgid, 77);
    cr_expect_eq(msg.method_len, strlen("map.lookup"));
    cr_expect_eq(memcmp(msg.method, "map.lookup", msg.method_len), 0);
    cr_assert_eq(msg.params.type, MSGPACK_OBJECT_ARRAY);
    const msgpack_object *named = &msg.params.via.array.ptr[0];
    char name[16];
    cr_expect_eq(bpfg_obj_strcpy(bpfg_obj_map_get(named, "map"), name, sizeof(name)), 0);
    cr_expect_str_eq(name, "counts");
    const msgpack_object *key = bpfg_obj_map_get(named, "key");
    cr_assert_not_null(key);
    cr_expect_eq(key->type, MSGPACK_OBJECT_BIN);
    cr_expect_eq(key->via.bin.size, 4);
    cr_expect_null(bpfg_obj_map_get(named, "value"));
    bpfg_rpc_msg_release(&msg);
}

Test(rpc, messages_split_and_coalesced)
{
    /* two requests [0,1,"a",[]] [0,2,"b",[]] delivered byte by byte */
    const uint8_t two[] = {0x94, 0x00, 0x01, 0xa1, 'a', 0x90, 0x94, 0x00, 0x02, 0xa1, 'b', 0x90};
    struct bpfg_rpc_msg msg;
    int fl = fcntl(bpfg_rpc_conn_fd(b), F_GETFL);
    cr_assert_eq(fcntl(bpfg_rpc_conn_fd(b), F_SETFL, fl | O_NONBLOCK), 0);
    for (size_t i = 0; i < 5; i++) {
        send_raw(&two[i], 1);
        cr_assert_eq(bpfg_rpc_recv(b, &msg, true), 0, "partial message must wait");
        bpfg_rpc_msg_release(&msg);
    }
    send_raw(&two[5], sizeof(two) - 5);
    cr_assert_eq(bpfg_rpc_recv(b, &msg, true), 1);
    cr_expect_eq(msg.msgid, 1);
    bpfg_rpc_msg_release(&msg);
    cr_assert_eq(bpfg_rpc_recv(b, &msg, false), 1, "second message was already buffered");
    cr_expect_eq(msg.msgid, 2);
    bpfg_rpc_msg_release(&msg);
    cr_assert_eq(bpfg_rpc_recv(b, &msg, true), 0);
    bpfg_rpc_msg_release(&msg);
}

Test(rpc, not_rpc_shapes_keep_stream_usable)
{
    struct bpfg_rpc_msg msg;
    const uint8_t bad_kind[] = {0x94, 0x07, 0x05, 0xa1, 'x', 0x90}; /* [7,5,"x",[]] */
    const uint8_t no_method[] = {0x94, 0x00, 0x06, 0x01, 0x90};     /* method not str */
    const uint8_t scalar[] = {0x2a};                                /* 42 */
    const uint8_t good[] = {0x94, 0x00, 0x09, 0xa1, 'y', 0x90};
    send_raw(bad_kind, sizeof(bad_kind));
    cr_expect_eq(bpfg_rpc_recv(b, &msg, true), -EPROTO);
    cr_expect(strstr(bpfg_rpc_conn_error(b), "first element"));
    bpfg_rpc_msg_release(&msg);
    send_raw(no_method, sizeof(no_method));
    cr_expect_eq(bpfg_rpc_recv(b, &msg, true), -EPROTO);
    cr_expect_eq(msg.msgid, 6, "msgid is reported so the error can be answered");
    bpfg_rpc_msg_release(&msg);
    send_raw(scalar, sizeof(scalar));
    cr_expect_eq(bpfg_rpc_recv(b, &msg, true), -EPROTO);
    bpfg_rpc_msg_release(&msg);
    send_raw(good, sizeof(good));
    cr_expect_eq(bpfg_rpc_recv(b, &msg, true), 1);
    cr_expect_eq(msg.msgid, 9);
    bpfg_rpc_msg_release(&msg);
}

Test(rpc, garbage_and_oversized_are_refused)
{
    struct bpfg_rpc_msg msg;
    const uint8_t never_used[] = {0xc1};
    send_raw(never_used, 1);
    cr_expect_eq(bpfg_rpc_recv(b, &msg, true), -EBADMSG);
    bpfg_rpc_msg_release(&msg);
}

Test(rpc, huge_declared_counts_fail_before_allocation)
{
    /* array32 claiming 2^32-1 elements in a 4 KiB-limited connection */
    const uint8_t huge[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0x00};
    struct bpfg_rpc_msg msg;
    send_raw(huge, sizeof(huge));
    cr_expect_eq(bpfg_rpc_recv(b, &msg, true), -EMSGSIZE);
    bpfg_rpc_msg_release(&msg);
}

Test(rpc, frame_len_limits)
{
    uint8_t deep[BPFG_RPC_MAX_DEPTH + 2];
    memset(deep, 0x91, sizeof(deep)); /* [[[[...]]]] */
    deep[sizeof(deep) - 1] = 0x00;
    cr_expect_eq(bpfg_msgpack_frame_len(deep, sizeof(deep), 4096), -EMSGSIZE);
    cr_expect_eq(bpfg_msgpack_frame_len(deep + 2, sizeof(deep) - 2, 4096), (long)sizeof(deep) - 2);

    const uint8_t str8[] = {0xd9, 0x03, 'a', 'b', 'c', 0xff};
    cr_expect_eq(bpfg_msgpack_frame_len(str8, 5, 4096), 5);
    cr_expect_eq(bpfg_msgpack_frame_len(str8, 4, 4096), 0);
    cr_expect_eq(bpfg_msgpack_frame_len(str8, 5, 4), -EMSGSIZE);
    const uint8_t map16[] = {0xde, 0x00, 0x01, 0xa1, 'k', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0};
    cr_expect_eq(bpfg_msgpack_frame_len(map16, sizeof(map16), 4096), (long)sizeof(map16));
    cr_expect_eq(bpfg_msgpack_frame_len(map16, sizeof(map16) - 1, 4096), 0);
}

Test(rpc, eof_is_reported)
{
    const uint8_t half[] = {0x94, 0x00};
    struct bpfg_rpc_msg msg;
    send_raw(half, sizeof(half));
    shutdown(bpfg_rpc_conn_fd(a), SHUT_WR);
    int r;
    while ((r = bpfg_rpc_recv(b, &msg, true)) == 0)
        bpfg_rpc_msg_release(&msg);
    cr_expect_eq(r, -EPIPE);
    cr_expect(strstr(bpfg_rpc_conn_error(b), "inside a message"));
    bpfg_rpc_msg_release(&msg);
}

Test(rpc, fd_passing_with_error_and_result)
{
    int memfd = memfd_create("rpc-test", MFD_CLOEXEC);
    cr_assert_geq(memfd, 0);
    cr_assert_eq(ftruncate(memfd, 4096), 0);
    uint32_t *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    cr_assert_neq(p, MAP_FAILED);
    p[0] = 0xfeedface;

    struct bpfg_rpc_out out;
    bpfg_rpc_out_init(&out);
    bpfg_rpc_begin_result(&out, 5);
    msgpack_pack_true(&out.pk);
    cr_assert_eq(bpfg_rpc_queue(a, &out, memfd), 0);
    bpfg_rpc_out_destroy(&out);
    bpfg_rpc_out_init(&out);
    bpfg_rpc_pack_error(&out, 6, BPFG_RPC_E_NOT_FOUND, "no map named '%s'", "nope");
    cr_assert_eq(bpfg_rpc_queue(a, &out, -1), 0);
    bpfg_rpc_out_destroy(&out);
    cr_assert_eq(bpfg_rpc_flush(a), 0);
    cr_expect_eq(bpfg_rpc_pending(a), 0);

    struct bpfg_rpc_msg msg;
    cr_assert_eq(bpfg_rpc_recv(b, &msg, true), 1);
    cr_expect_eq(msg.kind, BPFG_RPC_RESPONSE);
    cr_expect_eq(msg.error.type, MSGPACK_OBJECT_NIL);
    bpfg_rpc_msg_release(&msg);
    int got = bpfg_rpc_take_fd(b);
    cr_assert_geq(got, 0);
    cr_expect_eq(bpfg_rpc_take_fd(b), -ENOENT);
    uint32_t *q = mmap(NULL, 4096, PROT_READ, MAP_SHARED, got, 0);
    cr_assert_neq(q, MAP_FAILED);
    cr_expect_eq(q[0], 0xfeedface, "the received fd maps the same memory");
    munmap(q, 4096);
    close(got);

    int r = bpfg_rpc_recv(b, &msg, false);
    if (r == 0) {
        bpfg_rpc_msg_release(&msg);
        r = bpfg_rpc_recv(b, &msg, true);
    }
    cr_assert_eq(r, 1);
    cr_assert_eq(msg.error.type, MSGPACK_OBJECT_ARRAY);
    cr_expect_eq(msg.error.via.array.ptr[0].via.u64, BPFG_RPC_E_NOT_FOUND);
    cr_expect(bpfg_obj_str_eq(&msg.error.via.array.ptr[1], "no map named 'nope'"));
    bpfg_rpc_msg_release(&msg);
    munmap(p, 4096);
    close(memfd);
    cr_expect_str_eq(bpfg_rpc_error_name(BPFG_RPC_E_NOT_FOUND), "not_found");
}

/* An io that scrambles every byte on the wire (as TLS would change them)
 * and can be told to fail: the connection's messages must go through it. */
struct xor_io {
    int fd;
    bool fail;
    int freed;
};

static long xor_recv(void *ctx, void *buf, size_t len)
{
    struct xor_io *x = ctx;
    if (x->fail)
        return -ECONNABORTED;
    ssize_t n = read(x->fd, buf, len);
    if (n < 0)
        return errno == EAGAIN ? -EAGAIN : -errno;
    for (ssize_t i = 0; i < n; i++)
        ((unsigned char *)buf)[i] ^= 0x5a;
    return n;
}

static long xor_send(void *ctx, const void *buf, size_t len)
{
    struct xor_io *x = ctx;
    unsigned char tmp[8192];
    len = len < sizeof(tmp) ? len : sizeof(tmp);
    for (size_t i = 0; i < len; i++)
        tmp[i] = ((const unsigned char *)buf)[i] ^ 0x5a;
    ssize_t n = write(x->fd, tmp, len);
    return n < 0 ? -errno : n;
}

static const char *xor_why(const void *ctx)
{
    return ((const struct xor_io *)ctx)->fail ? "scrambler: told to fail" : "";
}

static void xor_free(void *ctx)
{
    ((struct xor_io *)ctx)->freed++;
}

static const struct bpfg_rpc_io xor_ops = {xor_recv, xor_send, xor_why, xor_free};

/* A notification "event" from c, whose io must refuse to pass an fd with it. */
static void send_event_without_fd(struct bpfg_rpc_conn *c)
{
    struct bpfg_rpc_out out;
    bpfg_rpc_out_init(&out);
    bpfg_rpc_begin_notification(&out, "event");
    msgpack_pack_array(&out.pk, 0);
    int fd = memfd_create("rpc-io", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_expect_eq(bpfg_rpc_queue(c, &out, fd), -EOPNOTSUPP, "an io connection passes no fds");
    close(fd);
    cr_assert_eq(bpfg_rpc_queue(c, &out, -1), 0);
    bpfg_rpc_out_destroy(&out);
    cr_assert_eq(bpfg_rpc_flush(c), 0);
}

Test(rpc, io_stream_carries_messages_refuses_fds_and_says_why)
{
    struct xor_io xa = {.fd = bpfg_rpc_conn_fd(a)}, xb = {.fd = bpfg_rpc_conn_fd(b)};
    bpfg_rpc_conn_set_io(a, &xor_ops, &xa);
    bpfg_rpc_conn_set_io(b, &xor_ops, &xb);

    send_event_without_fd(a);

    /* on the socket itself the bytes are scrambled: only the io reads them */
    struct bpfg_rpc_msg msg;
    cr_assert_eq(bpfg_rpc_recv(b, &msg, true), 1, "%s", bpfg_rpc_conn_error(b));
    cr_expect_eq(msg.kind, BPFG_RPC_NOTIFICATION);
    cr_expect_eq(msg.method_len, 5);
    cr_expect_eq(memcmp(msg.method, "event", 5), 0);
    bpfg_rpc_msg_release(&msg);

    xb.fail = true;
    cr_expect_eq(bpfg_rpc_recv(b, &msg, true), -ECONNABORTED);
    bpfg_rpc_msg_release(&msg);
    cr_expect(strstr(bpfg_rpc_conn_error(b), "scrambler: told to fail"), "%s", bpfg_rpc_conn_error(b));

    bpfg_rpc_conn_free(a); /* here: teardown would free them after xa and xb are gone */
    bpfg_rpc_conn_free(b);
    a = b = NULL;
    cr_expect_eq(xa.freed, 1, "the io is freed with its connection");
    cr_expect_eq(xb.freed, 1);
}
