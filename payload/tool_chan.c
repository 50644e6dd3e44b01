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

static void notes_resend(void);

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
    notes_resend();
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

/* A reply's header and the fds that came with it: the first in rep->fd,
 * the others in rep->more. */
static int chan_recv_head(struct bpfg_pmsg_hdr *rh, struct reply *rep)
{
    int fds[RT_RECV_FDS_MAX], got = 0;
    int err = rt_recv_fds(chan, rh, sizeof(*rh), fds, RT_RECV_FDS_MAX, &got);
    if (got)
        rep->fd = fds[0];
    for (int i = 1; i < got; i++)
        rep->more[rep->nmore++] = fds[i];
    return err;
}

void reply_free(struct reply *r)
{
    free(r->body);
    if (r->fd >= 0)
        rt_sys1(SYS_close, r->fd);
    for (int i = 0; i < r->nmore; i++)
        rt_sys1(SYS_close, r->more[i]);
    r->body = NULL;
    r->fd = -1;
    r->nmore = 0;
}

/* ---- notes: requests without a reply (MAP_MADE) ---- */

/* Notes sent since the last reply: the server may not have taken them
 * (a reply says it took all before it), so a new server gets them again. */
#define NOTES_MAX 32
static struct bpfg_tool_map_made notes[NOTES_MAX];
static uint32_t nnotes;

static int note_send(const struct bpfg_tool_map_made *m)
{
    struct {
        struct bpfg_pmsg_hdr h;
        struct bpfg_tool_map_made m;
    } msg = {{.len = sizeof(msg), .type = BPFG_TOOL_MAP_MADE, .seq = ++chan_seq}, *m};
    return chan < 0 || chan_dead ? -ECONNRESET : rt_send_all(chan, &msg, sizeof(msg));
}

/* Lock held. */
static void notes_resend(void)
{
    for (uint32_t i = 0; i < nnotes && !chan_dead; i++)
        if (note_send(&notes[i]) != 0)
            chan_dead = true;
}

int chan_map_made(const struct bpfg_tool_map_made *m)
{
    chan_lock();
    int err = nnotes < NOTES_MAX ? note_send(m) : -ENOSPC;
    if (!err)
        notes[nnotes++] = *m;
    else if (err != -ENOSPC)
        chan_dead = true; /* no server: MAP_CREATE fails as it does without tickets */
    chan_unlock();
    return err;
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

/* chan_call with the lock held: 0, or the transport's -errno. */
static int call_locked(uint16_t type, const void *b1, size_t l1, const void *b2, size_t l2, struct reply *rep,
                       struct bpfg_pmsg_hdr *rhp)
{
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
        err = chan_recv_head(&rh, rep);
    if (!err && (rh.len < sizeof(rh) || rh.len > BPFG_PMSG_MAX || rh.seq != h.seq || rh.type != BPFG_PMSG_REPLY))
        err = -EPROTO;
    if (!err) {
        nnotes = 0; /* a reply: the server took every note sent before */
        rep->len = rh.len - sizeof(rh);
        rep->body = malloc(rep->len + 1);
        if (!rep->body)
            err = -ENOMEM; /* the stream is out of step now */
        else if (!(err = chan_recv(rep->body, rep->len, NULL)))
            rep->body[rep->len] = 0;
    }
    if (err && err != -E2BIG && err != -ENOMEM)
        chan_dead = true;
    *rhp = rh;
    return err;
}

/* The status of a transport result err and reply header rh, for type. */
static int call_status(uint16_t type, int err, const struct bpfg_pmsg_hdr *rh, struct reply *rep)
{
    if (err && err != -E2BIG && err != -ENOMEM) {
        err = -ENOTCONN; /* the server is gone (or went while we waited) */
        say_server_gone(type);
    }
    if (err) {
        reply_free(rep);
        rep->len = 0;
        return rep->status = err;
    }
    rep->status = rh->status > 0 ? -EPROTO : rh->status;
    return rep->status;
}

static void reply_init(struct reply *rep)
{
    memset(rep, 0, sizeof(*rep));
    rep->fd = -1;
}

/* One request (body b1 then b2) and its reply. Returns rep->status. */
int chan_call(uint16_t type, const void *b1, size_t l1, const void *b2, size_t l2, struct reply *rep)
{
    struct bpfg_pmsg_hdr rh;
    reply_init(rep);
    chan_lock();
    int err = call_locked(type, b1, l1, b2, l2, rep, &rh);
    chan_unlock();
    return call_status(type, err, &rh, rep);
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

/* ---- map tickets ---- */

_Static_assert(RT_RECV_FDS_MAX == BPFG_TOOL_TICKETS_MAX &&
                   sizeof(((struct reply *)0)->more) / sizeof(int) == BPFG_TOOL_TICKETS_MAX - 1,
               "a MAP_TICKETS reply's fds fit a reply");

static struct {
    uint32_t id;
    int fd;
} tickets[BPFG_TOOL_TICKETS_MAX];
static uint32_t ntickets;
static bool tickets_refused; /* an older server, or none left for this tool */

/* Lock held. A batch of tickets from the server into the pool. */
static void tickets_fetch(void)
{
    struct reply rep;
    struct bpfg_pmsg_hdr rh;
    struct bpfg_tool_tickets t;
    uint32_t want = BPFG_TOOL_TICKETS_MAX;
    reply_init(&rep);
    int err = call_locked(BPFG_TOOL_MAP_TICKETS, &want, sizeof(want), NULL, 0, &rep, &rh);
    if (!err && (rh.status || rep.len < sizeof(t)))
        err = -EPROTO;
    if (!err)
        memcpy(&t, rep.body, sizeof(t));
    if (!err && (!t.count || t.count > BPFG_TOOL_TICKETS_MAX || t.count != (uint32_t)(rep.fd >= 0) + rep.nmore))
        err = -EPROTO;
    for (uint32_t i = 0; !err && i < t.count; i++)
        tickets[ntickets++] = (typeof(tickets[0])){t.ids[i], i ? rep.more[i - 1] : rep.fd};
    if (!err) {
        rep.fd = -1;
        rep.nmore = 0;
    } else if (!chan_dead) {
        tickets_refused = true; /* the server said no: MAP_CREATE then */
    }
    reply_free(&rep);
}

int ticket_take(uint32_t *id, int *fd)
{
    chan_lock();
    if (!ntickets && !tickets_refused && !chan_dead && chan >= 0)
        tickets_fetch();
    int err = ntickets ? 0 : -EAGAIN;
    if (!err) { /* the lowest id first, as the kernel counts */
        *id = tickets[0].id;
        *fd = tickets[0].fd;
        memmove(&tickets[0], &tickets[1], --ntickets * sizeof(tickets[0]));
    }
    chan_unlock();
    return err;
}

void ticket_return(uint32_t id, int fd)
{
    chan_lock();
    if (ntickets < BPFG_TOOL_TICKETS_MAX && rt_sys2(SYS_ftruncate, fd, 0) == 0) {
        tickets[ntickets].id = id;
        tickets[ntickets++].fd = fd;
        fd = -1;
    }
    chan_unlock();
    if (fd >= 0)
        rt_sys1(SYS_close, fd); /* the server removes the unused file at the tool's end */
}
