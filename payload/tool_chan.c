/* Tool mode: the tool channel, a stream socket to the server (TOOL_MODE
 * brought it), on which tool threads make one request at a time
 * (payload_abi.h, "Tool channel"). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "payload.h"
#include "rt/rt.h"
#include "tool_priv.h"

/* ---- the tool channel ---- */

static int chan = -1;
static bool chan_dead;
static bool chan_said; /* the tool was told the server is gone */
static uint32_t chan_seq;
static uint32_t chan_word; /* futex mutex: 0 free, 1 locked, 2 contended */

static void chan_lock(void)
{
    uint32_t c = 0;
    if (__atomic_compare_exchange_n(&chan_word, &c, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return;
    if (c != 2)
        c = __atomic_exchange_n(&chan_word, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        rt_sys4(SYS_futex, (long)&chan_word, FUTEX_WAIT_PRIVATE, 2, 0);
        c = __atomic_exchange_n(&chan_word, 2, __ATOMIC_ACQUIRE);
    }
}

static void chan_unlock(void)
{
    if (__atomic_exchange_n(&chan_word, 0, __ATOMIC_RELEASE) == 2)
        rt_sys3(SYS_futex, (long)&chan_word, FUTEX_WAKE_PRIVATE, 1);
}

void chan_open(int fd)
{
    chan = fd;
    chan_dead = false;
}

/* A new server adopted the tool: its channel replaces the lost one (a
 * request in flight on the old one finishes first: it holds the lock). */
void chan_replace(int fd)
{
    chan_lock();
    int old = chan;
    chan = fd;
    chan_dead = false;
    chan_said = false;
    chan_unlock();
    if (old >= 0)
        rt_sys1(SYS_close, old);
}

/* Said once per outage on the tool's stderr: what fails and until when. */
static void say_server_gone(uint16_t type)
{
    static const char *const what[] = {"creating a map",      "loading a program",   "loading BTF",
                                       "attaching a program", "detaching a program", "a tracepoint id",
                                       "releasing an object"};
    const char *w =
        type >= BPFG_TOOL_MAP_CREATE && type <= BPFG_TOOL_RELEASE ? what[type - BPFG_TOOL_MAP_CREATE] : "a request";
    if (type == BPFG_TOOL_RELEASE || __atomic_exchange_n(&chan_said, true, __ATOMIC_RELAXED))
        return; /* RELEASE is a no-op for the server */
    say("bpfgraftd is not running: %s needs it and fails (ENOTCONN) until a new bpfgraftd adopts this tool; "
        "maps, ring buffers and attached programs keep working",
        w);
}

/* Reads len bytes; the first read may carry an fd (SCM_RIGHTS). */
static int chan_recv(void *buf, size_t len, int *fd)
{
    return rt_recv_all(chan, buf, len, fd);
}

void reply_free(struct reply *r)
{
    free(r->body);
    if (r->fd >= 0)
        rt_sys1(SYS_close, r->fd);
    r->body = NULL;
    r->fd = -1;
}

/* Text explaining a failed reply. */
const char *reply_text(const struct reply *r)
{
    return r->body && r->body[0] ? r->body : strerror(-r->status);
}

int reply_id(const struct reply *r, uint32_t *id)
{
    struct bpfg_tool_id_reply idr;
    if (r->len < sizeof(idr))
        return -EPROTO;
    memcpy(&idr, r->body, sizeof(idr));
    *id = idr.id;
    return 0;
}

/* One request (body b1 then b2) and its reply. Returns rep->status. */
int chan_call(uint16_t type, const void *b1, size_t l1, const void *b2, size_t l2, struct reply *rep)
{
    memset(rep, 0, sizeof(*rep));
    rep->fd = -1;
    chan_lock();
    int err = chan < 0 || chan_dead ? -ECONNRESET : 0;
    struct bpfg_pmsg_hdr h = {.len = (uint32_t)(sizeof(h) + l1 + l2), .type = type, .seq = ++chan_seq};
    if (!err && sizeof(h) + l1 + l2 > BPFG_PMSG_MAX)
        err = -E2BIG;
    if (!err)
        err = rt_send_all(chan, &h, sizeof(h));
    if (!err && l1)
        err = rt_send_all(chan, b1, l1);
    if (!err && l2)
        err = rt_send_all(chan, b2, l2);
    struct bpfg_pmsg_hdr rh;
    if (!err)
        err = chan_recv(&rh, sizeof(rh), &rep->fd);
    if (!err && (rh.len < sizeof(rh) || rh.len > BPFG_PMSG_MAX || rh.seq != h.seq || rh.type != BPFG_PMSG_REPLY))
        err = -EPROTO;
    if (!err) {
        rep->len = rh.len - sizeof(rh);
        rep->body = malloc(rep->len + 1);
        if (!rep->body)
            err = -ENOMEM; /* the stream is out of step now */
        else if (!(err = chan_recv(rep->body, rep->len, NULL)))
            rep->body[rep->len] = 0;
    }
    if (err && err != -E2BIG && err != -ENOMEM)
        chan_dead = true;
    chan_unlock();
    if (err && err != -E2BIG && err != -ENOMEM) {
        err = -ENOTCONN; /* the server is gone (or went while we waited) */
        say_server_gone(type);
    }
    if (err) {
        reply_free(rep);
        rep->len = 0;
        return rep->status = err;
    }
    rep->status = rh.status > 0 ? -EPROTO : rh.status;
    return rep->status;
}

/* RELEASE / DETACH: nothing to do about a failure. */
void chan_release(uint16_t type, uint32_t kind, uint32_t id)
{
    struct bpfg_tool_release rel = {kind, id};
    struct reply rep;
    if (id) {
        chan_call(type, &rel, sizeof(rel), NULL, 0, &rep);
        reply_free(&rep);
    }
}
