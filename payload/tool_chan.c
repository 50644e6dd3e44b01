/* Tool mode: the tool channel, a stream socket to the server (TOOL_MODE
 * brought it), on which tool threads make one request at a time
 * (payload_abi.h, "Tool channel"). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>

#include "payload.h"
#include "rt/rt.h"
#include "tool_priv.h"

/* ---- the tool channel ---- */

static int chan = -1;
static bool chan_dead;
static bool chan_said; /* the tool was told the server is gone */
static uint32_t chan_seq;
static uint32_t chan_word; /* mtx_lock */
static int wake_fd = -1;   /* eventfd: the payload thread has map tickets to prepare */

static void notes_resend(void);

/* A futex mutex word: 0 free, 1 locked, 2 contended. */
static void mtx_lock(uint32_t *w)
{
    uint32_t c = 0;
    if (__atomic_compare_exchange_n(w, &c, 1, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
        return;
    if (c != 2)
        c = __atomic_exchange_n(w, 2, __ATOMIC_ACQUIRE);
    while (c != 0) {
        rt_sys4(SYS_futex, (long)w, FUTEX_WAIT_PRIVATE, 2, 0);
        c = __atomic_exchange_n(w, 2, __ATOMIC_ACQUIRE);
    }
}

static void mtx_unlock(uint32_t *w)
{
    if (__atomic_exchange_n(w, 0, __ATOMIC_RELEASE) == 2)
        rt_sys3(SYS_futex, (long)w, FUTEX_WAKE_PRIVATE, 1);
}

static void chan_lock(void)
{
    mtx_lock(&chan_word);
}

static void chan_unlock(void)
{
    mtx_unlock(&chan_word);
}

void chan_open(int fd)
{
    chan = fd;
    chan_dead = false;
    if (wake_fd < 0) /* none: every ticket is laid out as it comes */
        wake_fd = (int)rt_sys2(SYS_eventfd2, 0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd < 0)
        wake_fd = -1;
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
        if (r->more[i] >= 0) /* -1: taken (MAP_TICKETS) */
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

/* The pool has its own lock: the payload thread, which prepares tickets,
 * must never wait for the channel (a tool's ATTACH waits for it). */
static uint32_t pool_word;                               /* mtx_lock */
static struct map_ticket tickets[BPFG_TOOL_TICKETS_MAX]; /* ascending ids */
static uint32_t ntickets;
static uint32_t inflight_id; /* the ticket out of the pool being prepared (one payload thread), 0: none */
static bool tickets_refused; /* chan lock; an older server, or none left for this tool */
static bool wake_sent;       /* wake_fd written; the payload thread has not yet found no raw ticket */

/* Pool lock held. Into the pool, in id order. */
static void pool_put(const struct map_ticket *t)
{
    uint32_t i = ntickets;
    while (i && tickets[i - 1].id > t->id) {
        tickets[i] = tickets[i - 1];
        i--;
    }
    tickets[i] = *t;
    ntickets++;
}

/* Batches grow while a tool creates maps quickly (a tight loop of creates
 * otherwise waits for a round trip every 8: server/README.md, "What a
 * create costs"); most tools make fewer than the first. */
#define TICKETS_FIRST 8
#define TICKETS_QUICK_NS 50000000ull   /* a batch used up within this: the next is twice as big */
static uint32_t batch = TICKETS_FIRST; /* chan lock */
static uint64_t batch_ns;              /* chan lock; when the last batch was asked for */

/* Chan lock held. The size of the next batch. */
static uint32_t batch_next(void)
{
    uint64_t now = rt_clock_ns(CLOCK_MONOTONIC);
    bool quick = batch_ns && now - batch_ns < TICKETS_QUICK_NS;
    batch = !quick ? TICKETS_FIRST : batch < BPFG_TOOL_TICKETS_MAX ? batch * 2 : batch;
    batch_ns = now;
    return batch;
}

/* Chan lock held. A batch of tickets from the server into the pool. */
static void tickets_fetch(void)
{
    struct reply rep;
    struct bpfg_pmsg_hdr rh;
    struct bpfg_tool_tickets t = {0};
    mtx_lock(&pool_word);
    uint32_t want = ntickets ? 0 : BPFG_TOOL_TICKETS_MAX - (inflight_id != 0);
    mtx_unlock(&pool_word);
    if (!want)
        return; /* another thread has just fetched */
    uint32_t n = batch_next();
    want = want < n ? want : n;
    reply_init(&rep);
    uint32_t ask = want | BPFG_TOOL_TICKETS_SIZED;
    int err = call_locked(BPFG_TOOL_MAP_TICKETS, &ask, sizeof(ask), NULL, 0, &rep, &rh);
    if (!err && (rh.status || rep.len < sizeof(t.count)))
        err = -EPROTO;
    if (!err) /* an older server's is shorter (8 ids) */
        memcpy(&t, rep.body, rep.len < sizeof(t) ? rep.len : sizeof(t));
    bool sized = !err && (t.count & BPFG_TOOL_TICKETS_SIZED);
    t.count &= ~BPFG_TOOL_TICKETS_SIZED;
    if (!err && (!t.count || t.count > want || t.count != (uint32_t)(rep.fd >= 0) + rep.nmore ||
                 rep.len < sizeof(t.count) + t.count * sizeof(t.ids[0])))
        err = -EPROTO;
    mtx_lock(&pool_word);
    for (uint32_t i = 0; !err && i < t.count; i++) {
        int *fd = i ? &rep.more[i - 1] : &rep.fd;
        if (ntickets + (inflight_id != 0) >= BPFG_TOOL_TICKETS_MAX)
            continue; /* a ticket given back meanwhile took the room: reply_free closes this one */
        pool_put(&(struct map_ticket){.id = t.ids[i], .fd = *fd, .sized = sized});
        *fd = -1;
    }
    mtx_unlock(&pool_word);
    if (err && !chan_dead)
        tickets_refused = true; /* the server said no: MAP_CREATE then */
    reply_free(&rep);
}

/* Pool lock held. Has the payload thread prepare the pool's raw tickets. */
static void tickets_wake(void)
{
    bool raw = false;
    for (uint32_t i = 0; i < ntickets; i++)
        raw |= !tickets[i].base;
    if (!raw || wake_sent || wake_fd < 0)
        return;
    uint64_t one = 1;
    wake_sent = rt_sys3(SYS_write, wake_fd, (long)&one, sizeof(one)) == sizeof(one);
}

/* Pool lock held. The payload thread prepares the next id (the lowest):
 * taking a higher one now would hand ids out of order. */
static bool next_inflight(void)
{
    return inflight_id && (!ntickets || inflight_id < tickets[0].id);
}

#define INFLIGHT_WAIT_NS 50000000ull /* a prepare is a few us; a stopped payload thread is not waited for long */

/* Pool lock held, dropped while waiting. Waits for the next id's prepare. */
static void inflight_wait(void)
{
    uint64_t until = 0;
    while (next_inflight()) {
        uint64_t now = rt_clock_ns(CLOCK_MONOTONIC);
        if (!until)
            until = now + INFLIGHT_WAIT_NS;
        else if (now > until)
            return; /* the map still works; only its id is out of order */
        mtx_unlock(&pool_word);
        rt_sys0(SYS_sched_yield);
        mtx_lock(&pool_word);
    }
}

int ticket_take(struct map_ticket *t)
{
    mtx_lock(&pool_word);
    inflight_wait();
    /* empty: a batch (fetching earlier, with some left for the payload
     * thread to prepare the new ones meanwhile, made round trips of 300-550
     * us under load more frequent: server/README.md) */
    bool empty = !ntickets;
    mtx_unlock(&pool_word);
    if (empty) {
        chan_lock();
        if (!tickets_refused && !chan_dead && chan >= 0)
            tickets_fetch();
        chan_unlock();
    }
    mtx_lock(&pool_word);
    inflight_wait();
    int err = ntickets ? 0 : -EAGAIN;
    if (!err) { /* the lowest id first, as the kernel counts */
        *t = tickets[0];
        memmove(&tickets[0], &tickets[1], --ntickets * sizeof(tickets[0]));
        tickets_wake();
    }
    mtx_unlock(&pool_word);
    return err;
}

void ticket_return(uint32_t id, int fd)
{
    mtx_lock(&pool_word);
    if (ntickets + (inflight_id != 0) < BPFG_TOOL_TICKETS_MAX && rt_sys2(SYS_ftruncate, fd, 0) == 0) {
        pool_put(&(struct map_ticket){.id = id, .fd = fd});
        fd = -1;
    }
    mtx_unlock(&pool_word);
    if (fd >= 0)
        rt_sys1(SYS_close, fd); /* the server removes the unused file at the tool's end */
}

/* ---- tickets prepared ahead (server/README.md, "What a create costs") ---- */

int tool_wake_fd(void)
{
    return wake_fd;
}

/* Sized, mapped, its header page faulted in and its hash seed drawn: a
 * create then only writes the header. 0 or -errno (t left raw). */
int ticket_prepare(struct map_ticket *t)
{
    long r = t->sized ? 0 : rt_sys2(SYS_ftruncate, t->fd, TICKET_PREPARED_SIZE); /* 0.8 us, even a no-op */
    if (rt_is_err(r))
        return (int)r;
    long p = rt_sys6(SYS_mmap, 0, TICKET_PREPARED_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd, 0);
    if (rt_is_err(p)) {
        t->sized = rt_sys2(SYS_ftruncate, t->fd, 0) != 0 && t->sized;
        return (int)p;
    }
    *(volatile uint64_t *)p = 0; /* the page allocated now, not in the create */
    if (rt_sys3(SYS_getrandom, (long)&t->seed, sizeof(t->seed), GRND_NONBLOCK) != sizeof(t->seed))
        t->seed = (uint32_t)p ^ (uint32_t)rt_sys0(SYS_getpid);
    t->base = (void *)p;
    t->len = TICKET_PREPARED_SIZE;
    return 0;
}

/* Pool lock held. Takes a raw ticket out of the pool (false: none;
 * then a later take wakes us again). */
static bool raw_take(struct map_ticket *t)
{
    for (uint32_t i = ntickets; i--;) /* the highest first: the tool takes the lowest */
        if (!tickets[i].base) {
            *t = tickets[i];
            memmove(&tickets[i], &tickets[i + 1], (--ntickets - i) * sizeof(tickets[0]));
            inflight_id = t->id;
            return true;
        }
    wake_sent = false;
    return false;
}

void tool_tickets_prepare(void)
{
    uint64_t n;
    if (wake_fd < 0 || rt_sys3(SYS_read, wake_fd, (long)&n, sizeof(n)) != sizeof(n))
        return;
    for (;;) {
        struct map_ticket t;
        mtx_lock(&pool_word);
        bool got = raw_take(&t);
        mtx_unlock(&pool_word);
        if (!got)
            return;
        int err = ticket_prepare(&t);
        mtx_lock(&pool_word);
        inflight_id = 0;
        pool_put(&t); /* raw after a failure: taken and laid out as before */
        if (err)
            wake_sent = false;
        mtx_unlock(&pool_word);
        if (err)
            return;
    }
}
