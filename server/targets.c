/* Attach and detach orchestration. All steps run synchronously inside the
 * RPC that asks for them, with timeouts: an attach blocks the event loop
 * for a few milliseconds, which keeps every state transition in one place.
 *
 * Attach: stop the process, map the payload, start its thread, resume;
 * the payload connects back and says HELLO with our token; it receives the
 * maps (memfds) and programs; each hook gets a stub near its function
 * (process stopped), the payload activates the hook slot, and the site is
 * patched in a second, short stop once no thread is inside the bytes.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "adopt.h"
#include "binwide.h"
#include "log.h"
#include "offload.h"
#include "procfs.h"
#include "progcheck.h"
#include "server.h"
#include "symbols.h"
#include "sites.h"
#include "syscalls.h"
#include "targets.h"
#include "tool.h"
#include "unwind.h"
#include "usdt.h"
#include "ustack.h"
#include "pmsg.h"
#include "progcompile.h"
#include "state.h"
#include "x86jit.h"

#define CONNECT_TIMEOUT_MS 5000
#define CONNECT_PATIENCE_MS 20000 /* in all, for a payload that is still coming up */
#define REPLY_TIMEOUT_MS 5000
#define PATCH_RETRIES 200

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- engines ---- */

static const char *const engine_names[] = {
    [BPFG_ENGINE_INTERP] = "interp",
    [BPFG_ENGINE_X86] = "x86",
    [BPFG_ENGINE_LLVM] = "llvm",
    [TARGET_ENGINE_TIERED] = "tiered",
};

static int default_engine = BPFG_ENGINE_LLVM;

int targets_engine_parse(const char *name)
{
    for (int i = 0; i < (int)(sizeof(engine_names) / sizeof(engine_names[0])); i++)
        if (strcmp(name, engine_names[i]) == 0)
            return i;
    return -EINVAL;
}

const char *targets_engine_name(int engine)
{
    if (engine < 0 || engine >= (int)(sizeof(engine_names) / sizeof(engine_names[0])))
        return "?";
    return engine_names[engine];
}

void targets_set_default_engine(int engine)
{
    default_engine = engine;
}

void targets_set_cache_dir(struct targets *t, const char *dir, const char *archive)
{
    snprintf(t->cache_dir, sizeof(t->cache_dir), "%s", dir ? dir : "");
    snprintf(t->jit_archive, sizeof(t->jit_archive), "%s", archive ? archive : "");
}

static int listen_abstract(const char *name);

void targets_listen_name(const char *control_socket, char *buf, size_t len)
{
    snprintf(buf, len, "@bpfgraft-payload:%s", control_socket);
}

int targets_init(struct targets *t, const char *control_socket, const char *payload_path, int inherited_fd)
{
    memset(t, 0, sizeof(*t));
    t->listen_fd = -1;
    snprintf(t->payload_path, sizeof(t->payload_path), "%s", payload_path);
    targets_listen_name(control_socket, t->listen_name, sizeof(t->listen_name));

    int fd = inherited_fd >= 0 ? inherited_fd : listen_abstract(t->listen_name);
    if (fd < 0)
        return fd;
    t->listen_fd = fd;
    return 0;
}

/* The payload socket. Abstract: reachable from targets of any uid without
 * opening the 0700 control directory; a payload proves itself with its
 * token and its pid (SO_PEERCRED), and checks our uid in turn. Abstract
 * names live in a network namespace: the one of the calling thread. */
static int listen_abstract(const char *name)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t n = strlen(name);
    memcpy(addr.sun_path, name, n);
    addr.sun_path[0] = 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (bind(fd, (struct sockaddr *)&addr, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) != 0 ||
        listen(fd, 64) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* Listeners made inside other network namespaces (containers), by the
 * namespace's inode; they live as long as the server. */
#define MAX_NETNS 64
static struct {
    ino_t ino;
    int fd;
} netns_listeners[MAX_NETNS];
static size_t n_netns_listeners;

static int netns_inode(const char *path, ino_t *ino)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -errno;
    *ino = st.st_ino;
    return 0;
}

/* The listener a payload in pid's network namespace can connect to: ours,
 * or one bound in its namespace (the thread enters it for the bind and
 * comes back). */
static int listener_for(struct server *s, pid_t pid, char *err, size_t errlen)
{
    char path[64];
    ino_t mine = 0, theirs = 0;
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)pid);
    if (netns_inode("/proc/thread-self/ns/net", &mine) != 0 || netns_inode(path, &theirs) != 0 || mine == theirs)
        return s->targets.listen_fd; /* same namespace (or no way to tell: try ours) */
    for (size_t i = 0; i < n_netns_listeners; i++)
        if (netns_listeners[i].ino == theirs)
            return netns_listeners[i].fd;
    if (n_netns_listeners == MAX_NETNS)
        return srv_efail(err, errlen, -ENOSPC, "payload listeners in %d network namespaces already", MAX_NETNS);
    int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    int target = open(path, O_RDONLY | O_CLOEXEC);
    int fd = -EBADF;
    if (own < 0 || target < 0) {
        fd = srv_efail(err, errlen, -errno, "network namespace of process %d: %s", (int)pid, strerror(errno));
    } else if (setns(target, CLONE_NEWNET) != 0) {
        fd = srv_efail(err, errlen, -errno, "entering the network namespace of process %d: %s", (int)pid,
                       strerror(errno));
    } else {
        fd = listen_abstract(s->targets.listen_name);
        if (setns(own, CLONE_NEWNET) != 0) {
            /* cannot happen short of a kernel bug; nothing else may run here */
            srv_log(SRV_ERROR, "cannot return to our network namespace: %s", strerror(errno));
            abort();
        }
        if (fd < 0)
            srv_efail(err, errlen, fd, "payload socket in the network namespace of process %d: %s", (int)pid,
                      strerror(-fd));
    }
    if (own >= 0)
        close(own);
    if (target >= 0)
        close(target);
    if (fd < 0)
        return fd;
    netns_listeners[n_netns_listeners].ino = theirs;
    netns_listeners[n_netns_listeners++].fd = fd;
    srv_log(SRV_INFO, "payload socket opened in network namespace %lu (process %d)", (unsigned long)theirs, (int)pid);
    return fd;
}

struct target *targets_find(struct targets *t, pid_t pid)
{
    for (struct target *x = t->list; x; x = x->next)
        if (x->pid == pid)
            return x;
    return NULL;
}

/* ---- payload messages ---- */

struct trace_event {
    pid_t pid, tid;
    const char *text;
};

static void pack_trace(msgpack_packer *pk, void *arg)
{
    const struct trace_event *ev = arg;
    msgpack_pack_map(pk, 4);
    bpfg_pack_cstr(pk, "topic");
    bpfg_pack_cstr(pk, "trace");
    bpfg_pack_cstr(pk, "pid");
    msgpack_pack_int(pk, ev->pid);
    bpfg_pack_cstr(pk, "tid");
    msgpack_pack_int(pk, ev->tid);
    bpfg_pack_cstr(pk, "line");
    bpfg_pack_cstr(pk, ev->text);
}

static void handle_async(struct server *s, struct target *t, const struct bpfg_pmsg_hdr *h, char *body)
{
    if (h->type == BPFG_PMSG_TRACE && h->len >= sizeof(*h) + sizeof(struct bpfg_pmsg_trace)) {
        const struct bpfg_pmsg_trace *tr = (const void *)body;
        struct trace_event ev = {(pid_t)tr->pid, (pid_t)tr->tid, body + sizeof(*tr)};
        t->trace_lines++;
        server_broadcast(s, SRV_TOPIC_TRACE, pack_trace, &ev);
    } else {
        if (h->type == BPFG_PMSG_USTACK_STALE)
            t->ustack_stale = true; /* targets_tick sends fresh tables */
        syscalls_async(s, t, h, body);
        if (h->type == BPFG_PMSG_SYS_SITES)
            state_save_target(s, t);
    }
}

/* The payload of a target as a pmsg peer; what it sends meanwhile goes to
 * handle_async. */
struct payload_peer {
    struct pmsg_peer p;
    struct server *s;
    struct target *t;
};

static void payload_async(void *arg, const struct bpfg_pmsg_hdr *h, char *body)
{
    struct payload_peer *pp = arg;
    handle_async(pp->s, pp->t, h, body);
}

int targets_payload_call(struct server *s, struct target *t, uint16_t type, const void *body, size_t len, void *out,
                         size_t outlen, size_t *outgot, char *err, size_t errlen)
{
    return targets_payload_call_fd(s, t, type, body, len, -1, out, outlen, outgot, err, errlen);
}

int targets_payload_call_fd(struct server *s, struct target *t, uint16_t type, const void *body, size_t len, int fd,
                            void *out, size_t outlen, size_t *outgot, char *err, size_t errlen)
{
    struct payload_peer pp = {{t->sock, t->pid, &t->seq, REPLY_TIMEOUT_MS, payload_async, &pp}, s, t};
    return pmsg_call(&pp.p, type, body, len, fd, out, outlen, outgot, err, errlen);
}

static int payload_call(struct server *s, struct target *t, uint16_t type, const void *body, size_t len, int fd,
                        char *err, size_t errlen)
{
    return targets_payload_call_fd(s, t, type, body, len, fd, NULL, 0, NULL, err, errlen);
}

/* ---- permissions ---- */

static bool has_cap_sys_ptrace(pid_t pid)
{
    char text[64];
    unsigned long long cap = 0;
    if (bpfg_procfs_status(pid, 0, "CapEff", text, sizeof(text)) != 0 || sscanf(text, "%llx", &cap) != 1)
        return false;
    return (cap >> 19) & 1; /* CAP_SYS_PTRACE */
}

/* The peer may attach if it could ptrace the process itself. */
static int check_permission(pid_t pid, uid_t peer_uid, pid_t peer_pid, uid_t *target_uid, char *err, size_t errlen)
{
    uid_t r, e, sv;
    if (bpfg_procfs_uids(pid, &r, &e, &sv) != 0)
        return srv_efail(err, errlen, -ESRCH, "no process with pid %d", (int)pid);
    *target_uid = r;
    if (peer_uid == 0 || has_cap_sys_ptrace(peer_pid))
        return 0;
    if (r == peer_uid && e == peer_uid && sv == peer_uid)
        return 0;
    return srv_efail(err, errlen, -EPERM, "permission denied: uid %u may not trace process %d (uid %u)",
                     (unsigned)peer_uid, (int)pid, (unsigned)r);
}

int targets_may_trace(pid_t pid, uid_t peer_uid, pid_t peer_pid, char *err, size_t errlen)
{
    uid_t uid;
    return check_permission(pid, peer_uid, peer_pid, &uid, err, errlen);
}

/* ---- lifecycle ---- */

static const char *state_dir(const struct server *s)
{
    return s->cfg.state_dir;
}

void targets_free_sent(struct target *t)
{
    free(t->maps_sent);
    free(t->map_addrs);
    free(t->progs_sent);
    free(t->progs_engine);
}

static void target_free(struct server *s, struct target *t)
{
    struct target **pp = &s->targets.list;
    while (*pp && *pp != t)
        pp = &(*pp)->next;
    if (*pp) {
        *pp = t->next;
        s->targets.count--;
    }
    sites_forget(t->pid);
    if (t->sock >= 0) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, t->sock, NULL);
        close(t->sock);
    }
    if (t->pidfd >= 0) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, t->pidfd, NULL);
        close(t->pidfd);
    }
    server_forget_events(s, t); /* a client's detach may free t mid-batch */
    targets_free_sent(t);
    tools_target_gone(s, t);
    binwide_target_gone(t);
    syscalls_forget(t);
    if (t->gdb_file) {
        char path[PATH_MAX];
        unwind_gdb_path(state_dir(s), t->pid, path, sizeof(path));
        unlink(path);
    }
    free(t);
}

struct target_event {
    pid_t pid;
    const char *state;
};

static void pack_target_event(msgpack_packer *pk, void *arg)
{
    const struct target_event *ev = arg;
    msgpack_pack_map(pk, 3);
    bpfg_pack_cstr(pk, "topic");
    bpfg_pack_cstr(pk, "target");
    bpfg_pack_cstr(pk, "pid");
    msgpack_pack_int(pk, ev->pid);
    bpfg_pack_cstr(pk, "state");
    bpfg_pack_cstr(pk, ev->state);
}

static void announce(struct server *s, pid_t pid, const char *state)
{
    struct target_event ev = {pid, state};
    server_broadcast(s, SRV_TOPIC_TARGET, pack_target_event, &ev);
}

/* BPFGRAFT_TEST_CONNECT_TIMEOUT_MS (tests only: a payload that connects
 * after its attach gave up), 0 if unset. */
static int test_connect_timeout_ms(void)
{
    const char *v = getenv("BPFGRAFT_TEST_CONNECT_TIMEOUT_MS");
    return v && atoi(v) > 0 ? atoi(v) : 0;
}

/* At the deadline, a payload still coming up (not failed: on a loaded
 * machine its thread may not have run yet) gets up to `patience` ms in
 * all: an attach that gives up leaves a payload that connects later, and
 * the attaches after it wait for its adoption. false: give up. */
static bool wait_longer(const struct target *t, uint32_t state, uint64_t start, uint64_t patience, uint64_t *deadline)
{
    if (*deadline >= start + patience ||
        (state != BPFG_PAYLOAD_LOADED && state != BPFG_PAYLOAD_RUNNING && state != BPFG_PAYLOAD_CONNECTED))
        return false;
    srv_log(SRV_WARN,
            "target %d: its payload has not connected in %d ms (state %u; a loaded machine?): waiting up to %d ms",
            (int)t->pid, (int)(*deadline - start), state, (int)patience);
    *deadline = start + patience;
    return true;
}

/* Waits for the injected payload to connect and say HELLO. */
static int accept_payload(struct target *t, uint64_t token, int listen_fd, char *err, size_t errlen)
{
    int test_ms = test_connect_timeout_ms(); /* tests: give up at once */
    uint64_t start = mono_ms(), deadline = start + (test_ms ? (uint64_t)test_ms : CONNECT_TIMEOUT_MS);
    uint64_t patience = test_ms ? 0 : CONNECT_PATIENCE_MS;
    for (;;) {
        uint32_t state = UINT32_MAX; /* unknown */
        char msg[128] = "";
        if (bpfg_payload_status(t->pid, &t->inj, &state, msg, sizeof(msg)) == 0 && state == BPFG_PAYLOAD_FAILED)
            return srv_efail(err, errlen, -EIO, "payload in process %d failed: %s", (int)t->pid, msg);
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
            struct ucred cred;
            socklen_t clen = sizeof(cred);
            struct bpfg_pmsg_hdr h;
            struct bpfg_pmsg_hello_ext hello;
            memset(&hello, 0, sizeof(hello));
            t->sock = fd;
            const char *why = NULL;
            size_t body = 0;
            if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) != 0 || cred.pid != t->pid)
                why = "the connection does not come from the target process";
            else if (pmsg_read_full(fd, &h, sizeof(h), 1000) != 0 || h.type != BPFG_PMSG_HELLO ||
                     h.len < sizeof(h) + sizeof(hello.base) || h.len > sizeof(h) + 4096)
                why = "no HELLO message";
            else if ((body = h.len - sizeof(h)),
                     pmsg_read_full(fd, &hello, body < sizeof(hello) ? body : sizeof(hello), 1000) != 0)
                why = "truncated HELLO";
            else if (hello.base.token != token)
                why = "wrong token";
            else if (hello.base.abi_version != adopt_payload_abi())
                why = "another payload ABI version";
            if (!why) {
                /* skip what a newer payload appended beyond what we know */
                char sink[256];
                for (size_t left = body > sizeof(hello) ? body - sizeof(hello) : 0; left;) {
                    size_t n = left < sizeof(sink) ? left : sizeof(sink);
                    if (pmsg_read_full(fd, sink, n, 1000) != 0)
                        break;
                    left -= n;
                }
                t->inj.uprobe_entry = hello.base.uprobe_entry;
                t->inj.uretprobe_return = hello.base.uretprobe_return;
                t->hook_table = hello.base.max_hooks >= TARGET_MAX_HOOKS ? hello.base.hook_table : 0;
                if (body >= BPFG_HELLO_EXT_SIZE_V2) { /* ABI 2's HELLO has no stats_table */
                    t->thread_table = hello.thread_table;
                    t->max_threads = hello.max_threads;
                    t->shadow_depth = hello.shadow_depth;
                    t->uret_trampolines = hello.uret_trampolines;
                    t->stats_table = body >= sizeof(hello) ? hello.stats_table : 0;
                }
                return 0;
            }
            srv_log(SRV_WARN, "refused a payload connection from pid %d: %s", (int)cred.pid, why);
            close(fd);
            t->sock = -1;
            continue;
        }
        if (errno != EAGAIN && errno != EINTR)
            return srv_efail(err, errlen, -errno, "accepting the payload: %s", strerror(errno));
        uint64_t now = mono_ms();
        if (now >= deadline && !wait_longer(t, state, start, patience, &deadline))
            return srv_efail(err, errlen, -ETIMEDOUT, "the payload in process %d did not connect within %d ms%s%s",
                             (int)t->pid, (int)(deadline - start), msg[0] ? ": " : "", msg);
        struct pollfd p = {listen_fd, POLLIN, 0};
        poll(&p, 1, deadline - now < 20 ? (int)(deadline - now) : 20);
    }
}

/* The "NSpid:" ids of a process or thread (tid > 0), outermost (ours)
 * first. Number of ids, 0 if unknown. */
static int nspids(pid_t pid, pid_t tid, uint32_t *ids, int max)
{
    char text[128];
    if (bpfg_procfs_status(pid, tid, "NSpid", text, sizeof(text)) != 0)
        return 0;
    int n = 0;
    char *p = text, *end;
    for (unsigned long v; n < max && (v = strtoul(p, &end, 10), end != p); p = end)
        ids[n++] = (uint32_t)v;
    return n;
}

#define PIDNS_MAX_THREADS 2048
#define PIDNS_REFRESH_MS 500
#define USTACK_REFRESH_MS 1000

/* A target in another pid namespace (a container) gets its ids in ours,
 * which the kernel's helpers report (BPFG_PMSG_PIDNS); sent again only
 * when its threads changed. */
static void send_pidns(struct server *s, struct target *t)
{
    char path[64];
    uint32_t ids[8];
    int n = nspids(t->pid, 0, ids, 8);
    t->pidns_sent_ms = mono_ms();
    t->pidns = n >= 2;
    if (!t->pidns)
        return;
    struct {
        struct bpfg_pmsg_pidns m;
        uint32_t pairs[PIDNS_MAX_THREADS][2];
    } *msg = calloc(1, sizeof(*msg));
    if (!msg)
        return;
    msg->m.host_pid = ids[0];
    msg->m.ns_pid = ids[n - 1];
    snprintf(path, sizeof(path), "/proc/%d/task", (int)t->pid);
    DIR *d = opendir(path);
    uint64_t hash = 1469598103934665603ull;
    for (struct dirent *de; d && (de = readdir(d)) && msg->m.ntids < PIDNS_MAX_THREADS;) {
        uint32_t tids[8];
        if (de->d_name[0] < '0' || de->d_name[0] > '9')
            continue;
        int k = nspids(t->pid, (pid_t)atoi(de->d_name), tids, 8);
        if (k != n)
            continue; /* exited meanwhile */
        msg->pairs[msg->m.ntids][0] = tids[k - 1];
        msg->pairs[msg->m.ntids][1] = tids[0];
        msg->m.ntids++;
        hash = (hash ^ ((uint64_t)tids[0] << 32 | tids[k - 1])) * 1099511628211ull;
    }
    if (d)
        closedir(d);
    if (hash != t->pidns_hash) {
        char err[BPFG_ERRLEN];
        size_t got;
        size_t len = sizeof(msg->m) + (size_t)msg->m.ntids * sizeof(msg->pairs[0]);
        if (targets_payload_call(s, t, BPFG_PMSG_PIDNS, msg, len, NULL, 0, &got, err, sizeof(err)) == 0)
            t->pidns_hash = hash;
        else
            srv_log(SRV_WARN, "target %d: its ids in our pid namespace: %s", (int)t->pid, err);
    }
    free(msg);
}

/* The user-stack tables of the target's mappings now (ustack.h); a
 * failure costs only stack depth (frame pointers), so it is logged. */
static void send_ustack(struct server *s, struct target *t)
{
    char err[256];
    int fd = -1;
    t->ustack_ms = mono_ms();
    t->ustack_stale = false;
    int r = ustack_build(t->pid, &fd, err, sizeof(err));
    if (!r) {
        r = payload_call(s, t, BPFG_PMSG_USTACK, NULL, 0, fd, err, sizeof(err));
        close(fd);
    }
    if (r)
        srv_log(SRV_WARN, "target %d: stack tables: %s (stacks by frame pointers)", (int)t->pid, err);
    else
        srv_log(t->ustack ? SRV_INFO : SRV_DEBUG, "target %d: stack tables %s", (int)t->pid,
                t->ustack ? "refreshed: a stack met code mapped since" : "sent");
    t->ustack = t->ustack || !r;
}

/* A program that takes user stacks needs the tables. */
static bool takes_stacks(const struct bpfg_obj_prog *op)
{
    for (size_t i = 0; i < op->insn_cnt; i++) {
        const struct bpf_insn *in = &op->insns[i];
        if (in->code == (BPF_JMP | BPF_CALL) && in->src_reg == 0 &&
            (in->imm == BPF_FUNC_get_stack || in->imm == BPF_FUNC_get_stackid))
            return true;
    }
    return false;
}

/* Stacks met code mapped since the tables were made (dlopen): fresh ones,
 * at most once a USTACK_REFRESH_MS. */
void targets_tick(struct server *s)
{
    bpfg_reap_abandoned();
    uint64_t now = mono_ms();
    for (struct target *t = s->targets.list; t; t = t->next) {
        if (t->pidns && now - t->pidns_sent_ms >= PIDNS_REFRESH_MS)
            send_pidns(s, t);
        if (t->ustack_stale && now - t->ustack_ms >= USTACK_REFRESH_MS)
            send_ustack(s, t);
    }
}

/* Wall-clock time (for clients), unix epoch milliseconds. */
static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Payloads an earlier attach left after their first connection failed
 * (injector.h): removed, so that this attach maps the only one. 0, or
 * -EBUSY/-EEXIST (err set) when the process carries a live payload no
 * target here owns: a second one beside it would take its thread for the
 * target's (dispatch turned on in it, two handlers) and kill the process. */
static int remove_failed_payloads(struct server *s, struct bpfg_stopped *st, char *err, size_t errlen)
{
    struct bpfg_payload_scan scan;
    char ierr[BPFG_ERRLEN];
    if (bpfg_remove_failed_payloads(st, s->targets.payload_path, &scan, ierr) != 0) {
        srv_log(SRV_WARN, "target %d: looking for payloads left by failed attaches: %s", (int)st->pid, ierr);
        return 0;
    }
    if (scan.removed)
        srv_log(SRV_INFO, "target %d: removed %u payload(s) whose first connection had failed", (int)st->pid,
                scan.removed);
    if (!scan.live)
        return 0;
    if (strcmp(scan.live_socket, s->targets.listen_name) != 0)
        return srv_efail(err, errlen, -EEXIST,
                         "process %d carries the payload of another bpfgraft server (socket %s): detach it there",
                         (int)st->pid, scan.live_socket);
    return srv_efail(err, errlen, -EBUSY,
                     "process %d carries a payload of this server that has not connected yet (an attach that gave "
                     "up waiting for it, or a previous server's): it is adopted when it connects; attach again",
                     (int)st->pid);
}

/* token: a re-injection's (reinject.c), whose record is held until it is
 * whole; 0: a new one. */
static int inject(struct server *s, pid_t pid, uid_t uid, uint64_t token, struct target **out, char *err, size_t errlen)
{
    struct target *t = calloc(1, sizeof(*t));
    if (!t)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    t->pid = pid;
    t->uid = uid;
    t->sock = -1;
    t->pidfd = -1;
    t->record_held = token != 0;

    if (!token && getrandom(&token, sizeof(token), 0) != sizeof(token)) {
        free(t);
        return srv_efail(err, errlen, -EIO, "getrandom: %s", strerror(errno));
    }
    int listen_fd = listener_for(s, pid, err, errlen);
    if (listen_fd < 0) {
        free(t);
        return listen_fd;
    }
    struct bpfg_stopped st;
    char ierr[BPFG_ERRLEN];
    int r = bpfg_stop_process(pid, &st, ierr);
    if (r) {
        free(t);
        return srv_efail(err, errlen, r, "%s", ierr);
    }
    struct bpfg_inject_opts opts = {
        .payload_path = s->targets.payload_path,
        .server_socket = s->targets.listen_name,
        .token = token,
        .server_uid = getuid(),
        .orphan_grace_ms = s->targets.orphan_grace_ms,
    };
    char warn[BPFG_ERRLEN];
    r = bpfg_seccomp_check(&st, warn, sizeof(warn), ierr);
    if (!r && (r = remove_failed_payloads(s, &st, ierr, sizeof(ierr))) && t->record_held)
        r = 0; /* a re-injection: the payload it replaces is of another ABI */
    if (!r)
        r = bpfg_inject_payload(&st, &opts, &t->inj, ierr);
    bpfg_resume_process(&st, &t->last_stop_ns);
    if (r) {
        free(t);
        return srv_efail(err, errlen, r, "%s", ierr);
    }
    if (warn[0])
        srv_log(SRV_WARN, "%s", warn);
    r = accept_payload(t, token, listen_fd, err, errlen);
    if (r) {
        /* A payload whose thread is gone goes now; one still coming up
         * connects later (adopted then) or fails and goes at the next
         * attach: no code a thread may be running is unmapped. */
        if (t->sock >= 0)
            close(t->sock);
        if (bpfg_stop_process(pid, &st, ierr) == 0) {
            (void)remove_failed_payloads(s, &st, ierr, sizeof(ierr));
            bpfg_resume_process(&st, NULL);
        }
        free(t);
        return r;
    }
    t->token = token;
    t->attached_at_ms = wall_ms();
    targets_add(s, t, "attached");
    srv_log(SRV_INFO, "target %d: payload loaded at 0x%llx, threads stopped %llu us", (int)pid,
            (unsigned long long)t->inj.base, (unsigned long long)t->last_stop_ns / 1000);
    *out = t;
    return 0;
}

void targets_save(struct server *s, const struct target *t)
{
    state_save_target(s, t);
}

void targets_add(struct server *s, struct target *t, const char *event)
{
    pid_t pid = t->pid;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = &t->magic};
    t->magic = TARGET_MAGIC;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, t->sock, &ev) != 0)
        srv_log(SRV_WARN, "target %d: epoll: %s", (int)pid, strerror(errno));
    /* The payload socket is inherited by forks, so its end does not say the
     * process exited while a fork lives (and the pid may be reused). */
    t->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    ev.events = EPOLLIN;
    if (t->pidfd < 0 || epoll_ctl(s->epfd, EPOLL_CTL_ADD, t->pidfd, &ev) != 0)
        srv_log(SRV_WARN, "target %d: no pidfd (%s): its exit is seen when the payload connection closes", (int)pid,
                strerror(errno));
    t->next = s->targets.list;
    s->targets.list = t;
    s->targets.count++;
    if (!t->foreign_abi) { /* another ABI: nothing is sent to it, no record */
        send_pidns(s, t);
        state_save_target(s, t);
        if (stats_push(s, t) != 0)
            srv_log(SRV_WARN, "target %d: its statistics switch could not be set", (int)pid);
    }
    announce(s, pid, event);
}

static bool id_in(const uint32_t *ids, size_t n, uint32_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static int add_id(uint32_t **ids, size_t *n, uint32_t id)
{
    uint32_t *grown = realloc(*ids, (*n + 1) * sizeof(uint32_t));
    if (!grown)
        return -ENOMEM;
    *ids = grown;
    grown[(*n)++] = id;
    return 0;
}

static int send_map(struct server *s, struct target *t, uint32_t id, char *err, size_t errlen)
{
    if (id_in(t->maps_sent, t->nmaps_sent, id))
        return 0;
    struct reg_map *m = registry_map(&s->reg, id);
    struct bpfg_pmsg_map body = {.map_id = id};
    struct bpfg_pmsg_map_reply mr;
    size_t got = 0;
    if (!m)
        return 0; /* an inner map id that is gone: lookups of it read NULL */
    int r = targets_payload_call_fd(s, t, BPFG_PMSG_MAP, &body, sizeof(body), bpfg_map_fd(m->map), &mr, sizeof(mr),
                                    &got, err, errlen);
    if (r)
        return r;
    struct target_map_addr *grown = realloc(t->map_addrs, (t->nmaps_sent + 1) * sizeof(*grown));
    if (!grown)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    t->map_addrs = grown;
    grown[t->nmaps_sent] = (struct target_map_addr){
        .known = got >= sizeof(mr), .handle = mr.handle, .value_area = mr.value_area, .value_size = mr.value_size};
    if ((r = add_id(&t->maps_sent, &t->nmaps_sent, id)))
        return srv_efail(err, errlen, r, "out of memory");
    return 0;
}

/* Inner maps stored (now) in the object's map-in-maps: programs reach them
 * through lookups, so the payload needs its handle on each. */
static int send_inner_maps(struct server *s, struct target *t, struct bpfg_map *outer, char *err, size_t errlen)
{
    uint8_t key[512], next[512];
    uint32_t id;
    int r = bpfg_map_get_next_key(outer, NULL, next);
    while (r == 0) {
        if (bpfg_map_lookup_copy(outer, next, &id) == 0 && id && (r = send_map(s, t, id, err, errlen)))
            return r;
        memcpy(key, next, sizeof(key));
        r = bpfg_map_get_next_key(outer, key, next);
    }
    return 0;
}

static int send_object_maps(struct server *s, struct target *t, const struct reg_object *o, char *err, size_t errlen)
{
    for (size_t i = 0; i < o->map_cnt; i++) {
        int r = send_map(s, t, o->map_ids[i], err, errlen);
        if (r)
            return r;
    }
    for (size_t i = 0; i < o->map_cnt; i++) {
        struct reg_map *m = registry_map(&s->reg, o->map_ids[i]);
        struct bpfg_map_info info;
        bpfg_map_get_info(m->map, &info);
        int r = bpfg_map_type_is_outer(info.type) ? send_inner_maps(s, t, m->map, err, errlen) : 0;
        if (r)
            return r;
    }
    return 0;
}

/* Native code for send_prog: a memfd of code_len bytes (not taken), the
 * program's entry at entry_off; or, fd < 0, code to put in one. */
struct prog_code {
    const struct bpfg_x86jit_code *code;
    int fd;
    uint32_t code_len, entry_off;
};

/* Sends a program with native code; 0, or a negative errno with the
 * reason logged (the caller falls back to the interpreter). */
static int send_prog_code(struct server *s, struct target *t, const struct reg_prog *p, const char *prog_body,
                          size_t prog_len, int engine, const struct prog_code *c)
{
    struct bpfg_pmsg_prog_code pc = {.engine = (uint32_t)engine,
                                     .code_len = c->fd >= 0 ? c->code_len : (uint32_t)c->code->len,
                                     .entry_off = c->fd >= 0 ? c->entry_off : 0};
    char why[256] = "";
    int r, fd = c->fd >= 0 ? c->fd : progcompile_code_memfd(c->code);
    char *body = fd >= 0 ? malloc(sizeof(pc) + prog_len) : NULL;
    if (fd < 0) {
        r = fd;
        snprintf(why, sizeof(why), "code memfd: %s", strerror(-r));
    } else if (!body) {
        r = -ENOMEM;
        snprintf(why, sizeof(why), "out of memory");
    } else {
        memcpy(body, &pc, sizeof(pc));
        memcpy(body + sizeof(pc), prog_body, prog_len);
        r = payload_call(s, t, BPFG_PMSG_PROG_CODE, body, sizeof(pc) + prog_len, fd, why, sizeof(why));
    }
    free(body);
    if (fd >= 0 && fd != c->fd)
        close(fd);
    if (r)
        srv_log(SRV_WARN,
                "target %d: program %u '%s': the payload did not take its %s code (%s); using the interpreter",
                (int)t->pid, p->id, p->prog->name, targets_engine_name(engine), why);
    return r;
}

/* batch (may be NULL): LLVM code compiled with other programs, used
 * when p is among them and its engine is llvm. */
static int send_prog_with(struct server *s, struct target *t, const struct reg_object *o, const struct reg_prog *p,
                          int engine, const struct progcompile_batch *batch, char *err, size_t errlen)
{
    if (id_in(t->progs_sent, t->nprogs_sent, p->id))
        return 0;
    const struct bpfg_obj_prog *op = p->prog;
    size_t len = sizeof(struct bpfg_pmsg_prog) + o->map_cnt * sizeof(uint32_t) + op->insn_cnt * sizeof(struct bpf_insn);
    uint8_t *engines = realloc(t->progs_engine, t->nprogs_sent + 1);
    if (!engines)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    t->progs_engine = engines;
    char *body = malloc(len);
    if (!body)
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    struct bpfg_pmsg_prog *hdr = (void *)body;
    hdr->prog_id = p->id;
    hdr->insn_cnt = (uint32_t)op->insn_cnt;
    hdr->map_cnt = (uint32_t)o->map_cnt;
    hdr->flags = 0;
    memcpy(body + sizeof(*hdr), o->map_ids, o->map_cnt * sizeof(uint32_t));
    memcpy(body + sizeof(*hdr) + o->map_cnt * sizeof(uint32_t), op->insns, op->insn_cnt * sizeof(struct bpf_insn));
    /* tiered: x86 now; the event loop owes the LLVM code (tiering.c) */
    bool tiered = engine == TARGET_ENGINE_TIERED || (engine >= 0 && (engine & TARGET_ENGINE_LLVM_DUE));
    struct bpfg_x86jit_code code = {0};
    struct prog_code pc = {.code = &code, .fd = -1};
    int used;
    if (engine == BPFG_ENGINE_LLVM && progcompile_batch_find(batch, p->id, &pc.entry_off)) {
        pc.fd = batch->fd;
        pc.code_len = batch->code_len;
        used = BPFG_ENGINE_LLVM;
    } else {
        used = progcompile_for_target(s, t, o, p, tiered ? BPFG_ENGINE_X86 : engine, &code);
    }
    int r = -1;
    if (used != BPFG_ENGINE_INTERP && send_prog_code(s, t, p, body, len, used, &pc) != 0)
        used = BPFG_ENGINE_INTERP;
    else if (used != BPFG_ENGINE_INTERP)
        r = 0;
    bpfg_x86jit_code_free(&code);
    if (used == BPFG_ENGINE_INTERP)
        r = payload_call(s, t, BPFG_PMSG_PROG, body, len, -1, err, errlen);
    free(body);
    if (r)
        return r;
    t->progs_engine[t->nprogs_sent] =
        (uint8_t)(used | (tiered && used == BPFG_ENGINE_X86 ? TARGET_ENGINE_LLVM_DUE : 0));
    if ((r = add_id(&t->progs_sent, &t->nprogs_sent, p->id)))
        return srv_efail(err, errlen, r, "out of memory");
    if (!t->ustack && takes_stacks(op))
        send_ustack(s, t);
    srv_log(SRV_DEBUG, "target %d: program %u '%s' runs on %s", (int)t->pid, p->id, op->name,
            targets_engine_name(used));
    return 0;
}

static int send_prog(struct server *s, struct target *t, const struct reg_object *o, const struct reg_prog *p,
                     int engine, char *err, size_t errlen)
{
    return send_prog_with(s, t, o, p, engine, NULL, err, errlen);
}

/* The programs of prog_ids with the LLVM engine, compiled per object as
 * batches (progcompile_batch_llvm): each object's maps go to t first, the
 * resolver needs their addresses. batches[i] for the object of
 * prog_ids[i]'s first program, empty elsewhere. */
#ifdef BPFGRAFT_HAVE_LLVM
/* The programs of ids[i]'s object among ids[i..n), each once and not yet
 * sent to t, into group: their count, or 0 where an earlier id is of the
 * same object (its group is made there). */
static size_t object_group(struct server *s, const struct target *t, const uint32_t *ids, size_t n, size_t i,
                           const struct reg_prog **group)
{
    struct reg_prog *p = registry_prog(&s->reg, ids[i]);
    for (size_t j = 0; p && j < i; j++) {
        struct reg_prog *q = registry_prog(&s->reg, ids[j]);
        if (q && q->obj_id == p->obj_id)
            return 0;
    }
    size_t k = 0;
    for (size_t j = i; p && j < n; j++) {
        struct reg_prog *q = registry_prog(&s->reg, ids[j]);
        if (!q || q->obj_id != p->obj_id || id_in(t->progs_sent, t->nprogs_sent, q->id) || id_in(ids + i, j - i, q->id))
            continue;
        group[k++] = q;
    }
    return k;
}
#endif

static void attach_batches(struct server *s, struct target *t, const uint32_t *prog_ids, size_t nprogs, int engine,
                           struct progcompile_batch *batches)
{
    for (size_t i = 0; i < nprogs; i++)
        batches[i] = (struct progcompile_batch){.fd = -1};
#ifdef BPFGRAFT_HAVE_LLVM
    const struct reg_prog **group = calloc(nprogs ? nprogs : 1, sizeof(*group));
    for (size_t i = 0; group && engine == BPFG_ENGINE_LLVM && i < nprogs; i++) {
        size_t k = object_group(s, t, prog_ids, nprogs, i, group);
        struct reg_object *o = k >= 2 ? registry_object(&s->reg, group[0]->obj_id) : NULL;
        char ignored[256];
        if (o && send_object_maps(s, t, o, ignored, sizeof(ignored)) == 0)
            progcompile_batch_llvm(s, t, o, group, k, &batches[i]);
    }
    free(group);
#else
    (void)s, (void)t, (void)prog_ids, (void)engine;
#endif
}

/* The batch holding prog_id's code, or NULL. */
static const struct progcompile_batch *batch_of(const struct progcompile_batch *batches, size_t n, uint32_t prog_id)
{
    uint32_t off;
    for (size_t i = 0; i < n; i++)
        if (progcompile_batch_find(&batches[i], prog_id, &off))
            return &batches[i];
    return NULL;
}

static int prog_engine(const struct target *t, uint32_t prog_id)
{
    for (size_t i = 0; i < t->nprogs_sent; i++)
        if (t->progs_sent[i] == prog_id)
            return t->progs_engine[i] & ~TARGET_ENGINE_LLVM_DUE;
    return BPFG_ENGINE_INTERP;
}

/* Round robin: a thread that passed a removed site just before it was
 * restored may still be on its way through the old stub into the payload
 * with that slot's index; reusing the slot at once would resume it in
 * another function's code. */
static int find_free_hook(struct target *t)
{
    for (int k = 0; k < TARGET_MAX_HOOKS; k++) {
        int i = (int)((t->next_hook + k) % TARGET_MAX_HOOKS);
        if (!t->hooks[i].used) {
            t->next_hook = (uint32_t)(i + 1) % TARGET_MAX_HOOKS;
            return i;
        }
    }
    return -1;
}

/* Stops the process until `clear` says the stopped threads allow what
 * comes next, resuming it for a millisecond between tries; returns it
 * stopped. -EBUSY (err left to the caller, *busy the thread in the way)
 * after PATCH_RETRIES tries. */
static int stop_when(pid_t pid, struct bpfg_stopped *st, bool (*clear)(struct bpfg_stopped *st, void *ctx, pid_t *busy),
                     void *ctx, pid_t *busy, char *err, size_t errlen)
{
    char ierr[BPFG_ERRLEN];
    for (int attempt = 0; attempt < PATCH_RETRIES; attempt++) {
        int r = bpfg_stop_process(pid, st, ierr);
        if (r)
            return srv_efail(err, errlen, r, "%s", ierr);
        if (clear(st, ctx, busy))
            return 0;
        bpfg_resume_process(st, NULL);
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return -EBUSY;
}

struct outside {
    struct bpfg_range range;
    bool unwind;
};

static bool no_thread_inside(struct bpfg_stopped *st, void *ctx, pid_t *busy)
{
    const struct outside *o = ctx;
    /* Unwinding costs ~50 us a thread: only when a displaced call means a
     * frame could return into the range. */
    return !bpfg_any_thread_in(st, o->range.lo, o->range.hi, busy) &&
           !(o->unwind && bpfg_any_return_into(st, &o->range, 1, busy));
}

/* Stops the process until no thread is inside [lo, hi) (nor, with unwind,
 * would return there), then returns it stopped. */
static int stop_outside(pid_t pid, struct bpfg_stopped *st, uint64_t lo, uint64_t hi, bool unwind, char *err,
                        size_t errlen)
{
    struct outside o = {{lo, hi}, unwind};
    pid_t busy = 0;
    int r = stop_when(pid, st, no_thread_inside, &o, &busy, err, errlen);
    return r == -EBUSY
               ? srv_efail(err, errlen, -EBUSY, "a thread of process %d stays inside the code to patch", (int)pid)
               : r;
}

/* HOOK for one program of slot h (planned, stub placed); the reply says
 * where the payload keeps the target's SIGTRAP action. */
static int send_hook(struct server *s, struct target *t, const struct target_hook *h, uint32_t kind, uint32_t prog_id,
                     uint64_t cookie, char *err, size_t errlen)
{
    struct bpfg_pmsg_hook body = {
        .hook_index = h->index,
        .kind = kind,
        .prog_id = prog_id,
        .flags = h->plan.trap ? BPFG_HOOK_F_TRAP : 0,
        .site = h->plan.func,
        .resume = h->plan.stub_addr + BPFG_HOOK_RESUME_OFF,
        .cookie = cookie,
    };
    struct bpfg_pmsg_hook_reply rep = {0};
    size_t got = 0;
    int r = targets_payload_call(s, t, BPFG_PMSG_HOOK, &body, sizeof(body), &rep, sizeof(rep), &got, err, errlen);
    bool known = t->trap_action != 0;
    if (!r && got >= sizeof(rep) && rep.trap_saved_action) /* any hook: the patch's int3 (bpfg_text_poke) */
        t->trap_action = rep.trap_saved_action;
    else if (!r && h->plan.trap)
        r = srv_efail(err, errlen, -EPROTO, "the payload of process %d does not take trap probes", (int)t->pid);
    if (!known && t->trap_action) /* recorded before the patch: put back at unload after a crash too */
        state_save_target(s, t);
    return r;
}

/* Programs of one hook back in its slot; false if one was refused. */
static bool rearm_hook(struct server *s, struct target *t, const struct target_hook *h, size_t *armed)
{
    char err[BPFG_ERRLEN];
    for (uint32_t k = 0; k < h->nprogs; k++) {
        if (send_hook(s, t, h, h->kinds[k], h->prog_ids[k], h->cookies[k], err, sizeof(err)) != 0) {
            srv_log(SRV_WARN, "target %d: program %u at 0x%llx stays off: %s", (int)t->pid, h->prog_ids[k],
                    (unsigned long long)h->plan.func, err);
            return false;
        }
        (*armed)++;
    }
    return true;
}

size_t targets_rearm(struct server *s, struct target *t)
{
    size_t armed = 0, off = 0;
    for (int i = 0; i < TARGET_MAX_HOOKS; i++) {
        const struct target_hook *h = &t->hooks[i];
        if (h->used && h->nprogs && !rearm_hook(s, t, h, &armed))
            off++;
    }
    size_t sys = syscalls_rearm(s, t);
    if (armed + sys)
        t->inert = false;
    srv_log(armed + sys ? SRV_INFO : SRV_WARN, "target %d: was inert; %zu programs run again (%zu at syscalls)%s",
            (int)t->pid, armed + sys, sys, off ? ", some were refused" : "");
    return armed + sys;
}

/* A thread that blocks SIGTRAP would be killed by the kernel at a trap
 * probe (a blocked synchronous signal takes its default action). */
static int refuse_trap_blocked(const struct target *t, const struct bpfg_stopped *st, char *ierr)
{
    struct bpfg_payload_params p = {0};
    bpfg_mem_read(st, t->inj.params, &p, sizeof(p)); /* its own thread blocks every signal and runs no probe */
    for (size_t i = 0; i < st->nthreads; i++)
        if ((st->threads[i].sigmask & (1ull << (SIGTRAP - 1))) && st->threads[i].tid != p.payload_tid)
            return snprintf(ierr, BPFG_ERRLEN,
                            "it needs a trap probe (no provably safe place for a jmp) and thread %d blocks SIGTRAP, "
                            "which a trap would kill",
                            (int)st->threads[i].tid),
                   -EINVAL;
    return 0;
}

/* The gdb file beside the unwind page (unwind.h); a failure costs only
 * gdb's view of the trampolines, so it is logged, not returned. */
static void write_gdb_file(struct server *s, struct target *t, const char *path)
{
    char err[256];
    if (t->gdb_file || !t->unwind_page)
        return;
    if (unwind_write_gdb_file(t->pid, t->unwind_page, path, err, sizeof(err)) == 0)
        t->gdb_file = true;
    else
        srv_log(SRV_WARN, "target %d: %s (gdb will not see through uretprobes)", (int)t->pid, err);
    (void)s;
}

/* Before a uretprobe at func: refused where a stack walker cannot be told
 * (unwind.h); else the payload's return trampolines are registered with
 * every unwinder the process has now (again for each uretprobe: a library
 * loaded since is added) and gdb's file is written. */
static int prepare_uretprobe(struct server *s, struct target *t, uint64_t func, char *err, size_t errlen)
{
    int r = unwind_check_function(t->pid, func, err, errlen);
    if (r)
        return r;
    char path[PATH_MAX];
    bool have_dir = mkdir(state_dir(s), 0755) == 0 || errno == EEXIST;
    unwind_remove_stale(state_dir(s));
    unwind_gdb_path(state_dir(s), t->pid, path, sizeof(path));
    struct bpfg_pmsg_unwind m;
    r = unwind_describe(t->pid, have_dir ? path : NULL, &m, err, errlen);
    if (t->unwind_page || t->replaced_base) /* its own: a replaced payload's frames return through the other one */
        m.page = t->unwind_page;
    uint64_t page = 0;
    size_t got = 0;
    if (!r)
        r = targets_payload_call_fd(s, t, BPFG_PMSG_UNWIND, &m, sizeof(m), -1, &page, sizeof(page), &got, err, errlen);
    if (r)
        return r;
    if (got == sizeof(page))
        t->unwind_page = page;
    if (m.r_debug)
        write_gdb_file(s, t, path);
    return 0;
}

/* One hook of a record into the new payload's slot of the same index:
 * its programs (a uretprobe's unwind page first). */
static int resend_hook(struct server *s, struct target *t, const struct target_hook *h, char *err, size_t errlen)
{
    bool unwound = false;
    for (uint32_t k = 0; k < h->nprogs; k++) {
        int r = 0;
        if (h->kinds[k] == BPFG_HOOK_URETPROBE && !unwound)
            r = prepare_uretprobe(s, t, h->plan.func, err, errlen), unwound = true;
        if (!r)
            r = send_hook(s, t, h, h->kinds[k], h->prog_ids[k], h->cookies[k], err, errlen);
        if (r)
            return r;
    }
    return 0;
}

/* The record's programs (each with its object's maps, on the engine it
 * ran on) and the maps it held besides. */
static int resend_progs(struct server *s, struct target *t, const struct target *rec, char *err, size_t errlen)
{
    /* the llvm programs batched as at their attach: the same batch key */
    size_t nllvm = 0;
    uint32_t *llvm_ids = calloc(rec->nprogs_sent + 1, sizeof(*llvm_ids));
    struct progcompile_batch *batches = calloc(rec->nprogs_sent + 1, sizeof(*batches));
    for (size_t i = 0; llvm_ids && batches && i < rec->nprogs_sent; i++)
        if (rec->progs_engine[i] == BPFG_ENGINE_LLVM)
            llvm_ids[nllvm++] = rec->progs_sent[i];
    if (llvm_ids && batches)
        attach_batches(s, t, llvm_ids, nllvm, BPFG_ENGINE_LLVM, batches);
    int r = 0;
    for (size_t i = 0; i < rec->nprogs_sent && !r; i++) {
        struct reg_prog *p = registry_prog(&s->reg, rec->progs_sent[i]);
        struct reg_object *o = p ? registry_object(&s->reg, p->obj_id) : NULL;
        if (!o) {
            r = srv_efail(err, errlen, -ENOENT, "program %u of its record is not loaded", rec->progs_sent[i]);
            break;
        }
        const struct progcompile_batch *b = batches ? batch_of(batches, nllvm, p->id) : NULL;
        r = send_object_maps(s, t, o, err, errlen);
        if (!r)
            r = send_prog_with(s, t, o, p, rec->progs_engine[i], b, err, errlen);
    }
    for (size_t i = 0; batches && i < nllvm; i++)
        progcompile_batch_free(&batches[i]);
    free(batches);
    free(llvm_ids);
    if (r)
        return r;
    for (size_t i = 0; i < rec->nmaps_sent; i++) {
        int r = send_map(s, t, rec->maps_sent[i], err, errlen);
        if (r)
            return r;
    }
    return 0;
}

int targets_reinject(struct server *s, const struct target *rec, uint64_t token, struct target **out, char *err,
                     size_t errlen)
{
    struct target *t = NULL;
    int r = inject(s, rec->pid, rec->uid, token, &t, err, errlen);
    *out = t;
    if (r)
        return r;
    t->replaced_base = rec->inj.base;
    t->replaced_entry = rec->inj.uprobe_entry;
    t->for_tools = rec->for_tools; /* it leaves with the last tool that wants it, as before */
    r = resend_progs(s, t, rec, err, errlen);
    if (!r)
        r = syscalls_reinject(s, t, rec, err, errlen);
    for (size_t i = 0; i < TARGET_MAX_HOOKS && !r; i++)
        if (rec->hooks[i].used)
            r = resend_hook(s, t, &rec->hooks[i], err, errlen);
    if (r)
        return r;
    memcpy(t->hooks, rec->hooks, sizeof(t->hooks));
    t->nhooks = rec->nhooks;
    t->next_hook = rec->next_hook;
    t->attached_at_ms = rec->attached_at_ms;
    return 0;
}

/* Where one attachment goes: the address, its cookie, and the USDT
 * semaphore it counts in (0: none). */
struct hook_site {
    uint64_t func, cookie, sem;
};

/* The sites one program of an attach goes to: one, or a USDT probe's. */
struct prog_sites {
    struct hook_site one;
    struct hook_site *list; /* &one or malloc'd */
    size_t n;
};

/* The attachment counts in its USDT semaphore while it lasts, as with the
 * kernel's ref_ctr. A failure is logged: the probe still works, only the
 * code the semaphore guards stays off. Returns what to release later. */
static uint64_t sem_take(const struct target *t, uint64_t sem)
{
    char err[256];
    if (!sem)
        return 0;
    if (usdt_sem_add(t->pid, sem, 1, err, sizeof(err)) == 0)
        return sem;
    srv_log(SRV_WARN, "target %d: %s", (int)t->pid, err);
    return 0;
}

static void sem_release(const struct target *t, uint64_t sem)
{
    char err[256];
    if (sem && usdt_sem_add(t->pid, sem, -1, err, sizeof(err)) != 0)
        srv_log(SRV_WARN, "target %d: %s", (int)t->pid, err);
}

/* A program joining a site that is already patched: the payload adds it
 * to the slot; nothing in the process changes. */
static int join_hook(struct server *s, struct target *t, struct target_hook *h, const struct reg_prog *p, uint32_t kind,
                     const struct hook_site *site, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < h->nprogs; i++) /* with another cookie it runs twice, as two kernel links */
        if (h->prog_ids[i] == p->id && h->cookies[i] == site->cookie)
            return srv_efail(err, errlen, -EEXIST,
                             "program %u is already attached at 0x%llx in process %d with cookie %llu", p->id,
                             (unsigned long long)h->plan.func, (int)t->pid, (unsigned long long)site->cookie);
    if (h->nprogs == TARGET_HOOK_PROGS)
        return srv_efail(err, errlen, -ENOSPC, "0x%llx in process %d has %d programs already",
                         (unsigned long long)h->plan.func, (int)t->pid, TARGET_HOOK_PROGS);
    int r = kind == BPFG_HOOK_URETPROBE ? prepare_uretprobe(s, t, h->plan.func, err, errlen) : 0;
    if (!r)
        r = send_hook(s, t, h, kind, p->id, site->cookie, err, errlen);
    if (r)
        return r;
    h->prog_ids[h->nprogs] = p->id;
    h->cookies[h->nprogs] = site->cookie;
    h->sems[h->nprogs] = sem_take(t, site->sem);
    h->kinds[h->nprogs++] = kind;
    return 0;
}

/* Remote syscalls run on threads[0]. A target thread may have Syscall User
 * Dispatch on (syscall hooks), where a syscall from its own text would
 * raise SIGSYS with every signal blocked and kill the process; the
 * payload's thread never has it: run remote code there when it exists. */
static void prefer_payload_thread(struct bpfg_stopped *st, const struct target *t)
{
    struct bpfg_payload_params p;
    if (bpfg_mem_read(st, t->inj.params, &p, sizeof(p)) != 0 || p.payload_tid <= 0)
        return;
    for (size_t i = 1; i < st->nthreads; i++) {
        if (st->threads[i].tid != p.payload_tid)
            continue;
        struct bpfg_thread first = st->threads[0];
        st->threads[0] = st->threads[i];
        st->threads[i] = first;
        return;
    }
}

/* Where the payload keeps the patch journal (bpfg_text_poke). */
static uint64_t journal_of(const struct target *t)
{
    return t->inj.params ? t->inj.params + offsetof(struct bpfg_payload_params, journal) : 0;
}

/* The bytes a hook displaces from its site. */
static uint64_t hook_cover(const struct bpfg_hook_plan *p)
{
    return p->trap ? 1 : p->hop ? p->insn_len : p->patch_len;
}

/* Another hook's patch must not cover the new site, nor the new patch
 * another site: a site inside a patch is refused, a patch that would
 * cover another site becomes a trap. */
static int refuse_overlap(const struct target *t, struct bpfg_hook_plan *plan, const uint8_t *code, size_t have,
                          char *ierr)
{
    for (size_t i = 0; i < TARGET_MAX_HOOKS; i++) {
        const struct bpfg_hook_plan *o = &t->hooks[i].plan;
        if (!t->hooks[i].used || o == plan || o->site <= plan->site || o->site >= plan->site + hook_cover(plan))
            continue;
        int r = bpfg_hook_plan_trap(plan->func, code, have, plan, ierr);
        if (r)
            return r;
    }
    for (size_t i = 0; i < TARGET_MAX_HOOKS; i++) {
        const struct bpfg_hook_plan *o = &t->hooks[i].plan;
        if (t->hooks[i].used && o != plan && plan->site > o->site && plan->site < o->site + hook_cover(o)) {
            snprintf(ierr, BPFG_ERRLEN, "0x%llx lies in the bytes the probe at 0x%llx displaces",
                     (unsigned long long)plan->site, (unsigned long long)o->site);
            return -EINVAL;
        }
    }
    return 0;
}

static int install_hook(struct server *s, struct target *t, const struct reg_prog *p, const struct hook_site *site,
                        char *err, size_t errlen)
{
    uint32_t kind = p->prog->kind == BPFG_ATTACH_URETPROBE ? BPFG_HOOK_URETPROBE : BPFG_HOOK_UPROBE;
    uint64_t func = site->func;
    for (size_t i = 0; i < TARGET_MAX_HOOKS; i++)
        if (t->hooks[i].used && t->hooks[i].plan.func == func)
            return join_hook(s, t, &t->hooks[i], p, kind, site, err, errlen);
    int idx = find_free_hook(t);
    if (idx < 0)
        return srv_efail(err, errlen, -ENOSPC, "process %d has %d hooks already", (int)t->pid, TARGET_MAX_HOOKS);
    int r = kind == BPFG_HOOK_URETPROBE ? prepare_uretprobe(s, t, func, err, errlen) : 0;
    if (r)
        return r;
    struct target_hook *h = &t->hooks[idx];
    struct target_hook old = *h; /* a removed hook's stub, freed below */
    memset(h, 0, sizeof(*h));
    h->index = (uint32_t)idx;

    /* Stop 1: read the code, plan, place the stub. */
    struct bpfg_stopped st;
    char ierr[BPFG_ERRLEN];
    uint8_t code[BPFG_HOOK_CODE_WINDOW];
    r = bpfg_stop_process(t->pid, &st, ierr);
    if (r) {
        *h = old;
        return srv_efail(err, errlen, r, "%s", ierr);
    }
    prefer_payload_thread(&st, t);
    if (old.stub_size) {
        struct bpfg_range stub = {old.plan.stub_addr, old.plan.stub_addr + old.stub_size};
        if (!bpfg_any_thread_in(&st, stub.lo, stub.hi, NULL) &&
            !(old.plan.has_call && bpfg_any_return_into(&st, &stub, 1, NULL)))
            bpfg_remote_free(&st, stub.lo, old.stub_size, NULL);
    }
    size_t have = sizeof(code);
    while (have && bpfg_mem_read(&st, func, code, have) != 0)
        have /= 2; /* near the end of a mapping */
    char why[256] = "";
    bool kernel_bp = offload_take_breakpoint(t->pid, func, code, have); /* the jmp must replace its int3 */
    r = have ? sites_plan(t->pid, func, code, have, &h->plan, why, sizeof(why), ierr)
             : (snprintf(ierr, sizeof(ierr), "cannot read code at 0x%llx", (unsigned long long)func), -EFAULT);
    if (!r)
        r = refuse_overlap(t, &h->plan, code, have, ierr);
    if (!r && kernel_bp && (h->plan.trap || h->plan.site != func))
        r = -EINVAL, snprintf(ierr, sizeof(ierr), "the hook would not replace the kernel uprobe's breakpoint");
    if (!r && h->plan.trap)
        r = refuse_trap_blocked(t, &st, ierr);
    uint64_t stub = 0;
    if (!r)
        r = bpfg_remote_alloc_near(&st, h->plan.site, 4096, &stub, ierr);
    if (!r && !(r = bpfg_hook_build(&h->plan, stub, h->index, t->inj.uprobe_entry, ierr)))
        r = bpfg_mem_write(&st, stub, h->plan.stub, h->plan.stub_len);
    if (r && stub)
        bpfg_remote_free(&st, stub, 4096, NULL);
    bpfg_resume_process(&st, NULL);
    if (r)
        return srv_efail(err, errlen, r == -EINVAL ? -EINVAL : r, "cannot probe 0x%llx in process %d: %s",
                         (unsigned long long)func, (int)t->pid, ierr);
    h->stub_size = 4096;

    if (h->plan.trap || h->plan.hop)
        srv_log(SRV_INFO, "target %d: 0x%llx gets a %s: %s", (int)t->pid, (unsigned long long)func,
                h->plan.trap ? "trap probe" : "short jmp (hop)", why);

    /* The payload activates the slot before any thread can reach it. */
    r = send_hook(s, t, h, kind, p->id, site->cookie, err, errlen);
    if (r)
        goto free_stub;

    /* Stop 2: patch once no thread executes the displaced bytes (a trap
     * replaces one byte at an instruction boundary: none to wait for). */
    r = stop_outside(t->pid, &st, h->plan.site + 1, h->plan.site + h->plan.patch_len, h->plan.has_call && !h->plan.trap,
                     err, errlen);
    if (r)
        goto unhook;
    r = bpfg_hook_patch(&st, &h->plan, journal_of(t));
    bpfg_resume_process(&st, &t->last_stop_ns);
    if (r) {
        srv_efail(err, errlen, r, "patching 0x%llx: %s", (unsigned long long)h->plan.site, strerror(-r));
        goto unhook;
    }
    h->used = true;
    h->prog_ids[0] = p->id;
    h->cookies[0] = site->cookie;
    h->sems[0] = sem_take(t, site->sem);
    h->kinds[0] = kind;
    h->nprogs = 1;
    t->nhooks++;
    state_save_target(s, t);
    return 0;

unhook:;
    struct bpfg_pmsg_unhook un = {h->index};
    char ignored[64];
    payload_call(s, t, BPFG_PMSG_UNHOOK, &un, sizeof(un), -1, ignored, sizeof(ignored));
free_stub:
    if (bpfg_stop_process(t->pid, &st, ierr) == 0) {
        prefer_payload_thread(&st, t);
        if (!bpfg_any_thread_in(&st, stub, stub + 4096, NULL) && bpfg_remote_free(&st, stub, 4096, NULL) == 0)
            h->stub_size = 0; /* else detach frees it */
        bpfg_resume_process(&st, NULL);
    }
    return r;
}

/* "binary:provider:name": binary up to the second-last ':' */
static void split_usdt_target(const char *spec, char *binary, size_t blen, char *probe, size_t plen)
{
    const char *last = strrchr(spec, ':');
    const char *mid = last && last > spec ? memrchr(spec, ':', (size_t)(last - spec)) : NULL;
    snprintf(binary, blen, "%.*s", mid ? (int)(mid - spec) : 0, spec);
    snprintf(probe, plen, "%s", mid ? mid + 1 : spec);
}

/* Every site of one program of an attach, logged; stops at the first
 * failure (the sites already hooked stay, as with several programs). */
static int install_sites(struct server *s, struct target *t, const struct reg_prog *p, const struct prog_sites *ps,
                         char *err, size_t errlen)
{
    for (size_t k = 0; k < ps->n; k++) {
        int r = install_hook(s, t, p, &ps->list[k], err, errlen);
        if (r)
            return r;
        srv_log(SRV_INFO, "target %d: program %u '%s' attached at 0x%llx on %s (threads stopped %llu us)", (int)t->pid,
                p->id, p->prog->name, (unsigned long long)ps->list[k].func, targets_engine_name(prog_engine(t, p->id)),
                (unsigned long long)t->last_stop_ns / 1000);
    }
    return 0;
}

static void split_target(const char *spec, char *binary, size_t blen, char *func, size_t flen, uint64_t *off)
{
    /* "binary:func+off" (binary may itself contain ':' only in odd paths) */
    const char *colon = strrchr(spec, ':');
    binary[0] = 0;
    if (colon) {
        snprintf(binary, blen, "%.*s", (int)(colon - spec), spec);
        spec = colon + 1;
    }
    snprintf(func, flen, "%s", spec);
    *off = 0;
    char *plus = strchr(func, '+');
    if (plus) {
        *off = strtoull(plus + 1, NULL, 0);
        *plus = 0;
    }
}

/* Processes that cannot take a payload, each refused with what it is:
 * bpfgraftd itself, a kernel thread, a zombie, and a process in a group
 * stop (SIGSTOP, ^Z; state T), which runs none of its threads, not even
 * the payload's (attach and detach need them). */
static int refuse_unrunnable(pid_t pid, const char *what, char *err, size_t errlen)
{
    if (pid == getpid())
        return srv_efail(err, errlen, BPFG_RPC_E_INVALID_PARAMS, "pid %d is bpfgraftd itself", (int)pid);
    char state;
    unsigned long flags;
    if (bpfg_procfs_stat(pid, 0, &state, &flags) != 0)
        return 0;           /* gone: the caller's next step says so */
    if (flags & 0x00200000) /* PF_KTHREAD */
        return srv_efail(err, errlen, BPFG_RPC_E_INVALID_PARAMS,
                         "pid %d is a kernel thread: only user processes can be attached", (int)pid);
    if (state == 'Z' || state == 'X')
        return srv_efail(err, errlen, BPFG_RPC_E_NOT_FOUND,
                         "process %d has exited (a zombie its parent has not reaped yet)", (int)pid);
    if (state == 'T')
        return srv_efail(err, errlen, BPFG_RPC_E_BUSY,
                         "process %d is stopped (SIGSTOP or a job-control stop): "
                         "resume it with kill -CONT %d, then %s again",
                         (int)pid, (int)pid, what);
    return 0;
}

/* Set while targets_start attaches: the tool decision waits for it. */
static bool start_pending;

static void prog_sites_free(struct prog_sites *ps, size_t n)
{
    for (size_t i = 0; ps && i < n; i++)
        if (ps[i].list != &ps[i].one)
            free(ps[i].list);
    free(ps);
}

static struct reg_map *object_map(struct server *s, const struct reg_object *o, const char *name)
{
    for (size_t k = 0; k < o->map_cnt && k < o->obj->map_cnt; k++) {
        struct reg_map *m = registry_map(&s->reg, o->map_ids[k]);
        if (m && m->map && o->obj->maps[k].name && strcmp(o->obj->maps[k].name, name) == 0)
            return m; /* the object's names are whole; the registry's are cut at 15 */
    }
    return NULL;
}

/* The spec's id in __bpf_usdt_specs (an array): the first slot holding
 * the same spec, else the first empty one, written. Equal sites share an
 * id; an empty slot and a spec of zeros are the same thing. */
static int usdt_spec_id(struct reg_map *specs, const struct usdt_spec *spec, uint32_t *id)
{
    struct bpfg_map_info info;
    bpfg_map_get_info(specs->map, &info);
    if (info.type != BPF_MAP_TYPE_ARRAY || info.key_size != 4 || info.value_size != sizeof(*spec))
        return -EINVAL;
    struct usdt_spec have, zero = {0};
    for (uint32_t k = 0; k < info.max_entries; k++) {
        if (bpfg_map_lookup_copy(specs->map, &k, &have))
            return -EIO;
        if (memcmp(&have, spec, sizeof(have)) == 0) {
            *id = k;
            return 0;
        }
        if (memcmp(&have, &zero, sizeof(have)) == 0) {
            *id = k;
            return bpfg_map_update_copy(specs->map, &k, spec, BPF_ANY);
        }
    }
    return -ENOSPC;
}

/* A SEC("usdt") program: every site of its probe, its spec stored in the
 * object's __bpf_usdt_specs as libbpf does (also the ip-to-id map that
 * kernels without cookies use); each site's cookie is its spec id, the
 * attach's cookie is the spec's usdt_cookie (bpf_usdt_cookie). */
static int usdt_prog_sites(struct server *s, pid_t pid, const struct reg_prog *p, const char *binary, const char *probe,
                           uint64_t cookie, struct prog_sites *ps, char *err, size_t errlen)
{
    struct reg_object *o = registry_object(&s->reg, p->obj_id);
    struct reg_map *specs = o ? object_map(s, o, "__bpf_usdt_specs") : NULL;
    struct reg_map *ips = o ? object_map(s, o, "__bpf_usdt_ip_to_spec_id") : NULL;
    if (!specs)
        return srv_efail(err, errlen, -EINVAL, "no __bpf_usdt_specs map (include <bpf/usdt.bpf.h>)");
    struct usdt_site *us = NULL;
    size_t n = 0;
    int r = usdt_sites(pid, binary, probe, &us, &n, err, errlen);
    if (r)
        return r;
    ps->list = calloc(n, sizeof(*ps->list));
    if (!ps->list) {
        free(us);
        return srv_efail(err, errlen, -ENOMEM, "out of memory");
    }
    ps->n = n;
    for (size_t i = 0; i < n && !r; i++) {
        uint32_t id = 0;
        us[i].spec.usdt_cookie = cookie;
        if ((r = usdt_spec_id(specs, &us[i].spec, &id)) != 0)
            srv_efail(err, errlen, r, "cannot store the spec of %s in __bpf_usdt_specs: %s", probe, strerror(-r));
        else if (ips)
            bpfg_map_update_copy(ips->map, &us[i].addr, &id, BPF_ANY); /* full: cookies still work */
        ps->list[i] = (struct hook_site){us[i].addr, id, us[i].sem};
    }
    free(us);
    return r;
}

int targets_attach(struct server *s, pid_t pid, uid_t peer_uid, pid_t peer_pid, const uint32_t *prog_ids, size_t nprogs,
                   const char *target_spec, int engine, uint64_t cookie, char *err, size_t errlen)
{
    if (engine == TARGET_ENGINE_DEFAULT)
        engine = default_engine;
    uid_t uid;
    int r = check_permission(pid, peer_uid, peer_pid, &uid, err, errlen);
    if (r)
        return r == -EPERM ? BPFG_RPC_E_PERMISSION : BPFG_RPC_E_NOT_FOUND;
    if ((r = refuse_unrunnable(pid, "attach", err, errlen)))
        return r;
    const struct target *other = targets_find(&s->targets, pid);
    if (other && other->foreign_abi)
        return srv_efail(err, errlen, BPFG_RPC_E_BUSY,
                         "process %d carries a payload of ABI %u (this server speaks %u): detach it first", (int)pid,
                         other->foreign_abi, adopt_payload_abi());

    /* Validate every program and resolve every address before touching the
     * process, so a bad request changes nothing. */
    struct prog_sites *sites = calloc(nprogs + 1, sizeof(*sites));
    if (!sites)
        return srv_efail(err, errlen, BPFG_RPC_E_INTERNAL, "out of memory");
    int code = 0;
    for (size_t i = 0; i < nprogs && !code; i++) {
        struct reg_prog *p = registry_prog(&s->reg, prog_ids[i]);
        const struct bpfg_obj_prog *op = p->prog;
        sites[i].list = &sites[i].one;
        sites[i].n = 1;
        if (syscalls_is_kind(op->kind)) {
            code = syscalls_check(op, err, errlen);
            continue;
        }
        if (op->kind != BPFG_ATTACH_UPROBE && op->kind != BPFG_ATTACH_URETPROBE) {
            code =
                srv_efail(err, errlen, BPFG_RPC_E_UNSUPPORTED, "program '%s' (%s): %s programs cannot be attached yet",
                          op->name, op->section, bpfg_attach_kind_name(op->kind));
            break;
        }
        char binary[512], func[256];
        uint64_t off = op->target_offset;
        sites[i].one.cookie = cookie;
        if (op->target_file_offset) {
            char why[256];
            r = sym_resolve_file_offset(pid, op->target_binary, off, &sites[i].one.func, why, sizeof(why));
            if (!r && op->ref_ctr_offset)
                r = sym_resolve_data_offset(pid, op->target_binary, op->ref_ctr_offset, &sites[i].one.sem, why,
                                            sizeof(why));
            if (r)
                code = srv_efail(err, errlen, r == -ESRCH ? BPFG_RPC_E_NOT_FOUND : BPFG_RPC_E_TARGET,
                                 "program '%s': %s", op->name, why);
            continue;
        }
        if (op->target_func) {
            snprintf(binary, sizeof(binary), "%s", op->target_binary ? op->target_binary : "");
            snprintf(func, sizeof(func), "%s", op->target_func);
        } else if (target_spec && target_spec[0] && op->usdt) {
            split_usdt_target(target_spec, binary, sizeof(binary), func, sizeof(func));
        } else if (target_spec && target_spec[0]) {
            split_target(target_spec, binary, sizeof(binary), func, sizeof(func), &off);
        } else {
            code = srv_efail(err, errlen, BPFG_RPC_E_INVALID_PARAMS,
                             "program '%s' (section '%s') names no %s: give a target \"%s\"", op->name, op->section,
                             op->usdt ? "probe" : "function", op->usdt ? "binary:provider:name" : "binary:function");
            break;
        }
        char why[256];
        if (op->usdt) {
            sites[i].list = NULL; /* freed as a list from here */
            r = usdt_prog_sites(s, pid, p, binary, func, cookie, &sites[i], why, sizeof(why));
            if (r)
                code = srv_efail(err, errlen, r == -ESRCH ? BPFG_RPC_E_NOT_FOUND : BPFG_RPC_E_TARGET,
                                 "program '%s': %s", op->name, why);
            continue;
        }
        r = sym_resolve(pid, binary, func, off, &sites[i].one.func, why, sizeof(why));
        if (r)
            code = srv_efail(err, errlen, r == -ESRCH ? BPFG_RPC_E_NOT_FOUND : BPFG_RPC_E_TARGET, "program '%s': %s",
                             op->name, why);
    }
    if (code) {
        prog_sites_free(sites, nprogs);
        return code;
    }

    struct target *t = targets_find(&s->targets, pid);
    bool fresh = !t;
    if (!t && (r = inject(s, pid, uid, 0, &t, err, errlen))) {
        prog_sites_free(sites, nprogs);
        return r == -ESRCH    ? BPFG_RPC_E_NOT_FOUND
               : r == -EPERM  ? BPFG_RPC_E_PERMISSION
               : r == -EBUSY  ? BPFG_RPC_E_BUSY
               : r == -EEXIST ? BPFG_RPC_E_EXISTS
                              : BPFG_RPC_E_TARGET;
    }
    /* programs of one object compiled together: one LLVM codegen run */
    struct progcompile_batch *batches = calloc(nprogs ? nprogs : 1, sizeof(*batches));
    if (batches)
        attach_batches(s, t, prog_ids, nprogs, engine, batches);
    for (size_t i = 0; i < nprogs && !code; i++) {
        struct reg_prog *p = registry_prog(&s->reg, prog_ids[i]);
        struct reg_object *o = registry_object(&s->reg, p->obj_id);
        const struct progcompile_batch *b = batches ? batch_of(batches, nprogs, p->id) : NULL;
        if ((r = send_object_maps(s, t, o, err, errlen)) || (r = send_prog_with(s, t, o, p, engine, b, err, errlen)) ||
            (r = syscalls_is_kind(p->prog->kind) ? syscalls_attach(s, t, p, err, errlen)
                                                 : install_sites(s, t, p, &sites[i], err, errlen)))
            code = r == -EEXIST ? BPFG_RPC_E_EXISTS : BPFG_RPC_E_TARGET;
    }
    for (size_t i = 0; batches && i < nprogs; i++)
        progcompile_batch_free(&batches[i]);
    free(batches);
    prog_sites_free(sites, nprogs);
    if (code && fresh && t->nhooks == 0 && syscalls_count(t) == 0) {
        char ignored[128];
        targets_detach(s, pid, 0, 0, ignored, sizeof(ignored));
        return code;
    }
    state_save_target(s, t);
    if (!code && !start_pending) {
        /* a process attached by itself joins the scope of running tools */
        tools_target_added(s, t);
        binwide_target_added(s, t);
    }
    return code;
}

static pid_t parent_of(pid_t pid)
{
    int ppid = -1;
    bpfg_procfs_status_int(pid, 0, "PPid", &ppid);
    return ppid;
}

int targets_start(struct server *s, pid_t pid, uid_t peer_uid, pid_t peer_pid, const uint32_t *prog_ids, size_t nprogs,
                  const char *target_spec, int engine, bool tool, char *err, size_t errlen)
{
    uid_t uid;
    int r = check_permission(pid, peer_uid, peer_pid, &uid, err, errlen);
    if (r)
        return r == -EPERM ? BPFG_RPC_E_PERMISSION : BPFG_RPC_E_NOT_FOUND;
    if (parent_of(pid) != peer_pid)
        return srv_efail(err, errlen, BPFG_RPC_E_PERMISSION, "process %d is not a child of the caller", (int)pid);
    if (targets_find(&s->targets, pid))
        return srv_efail(err, errlen, BPFG_RPC_E_EXISTS, "process %d is already attached", (int)pid);
    char ierr[BPFG_ERRLEN];
    r = bpfg_start_to_entry(pid, ierr);
    if (r)
        return srv_efail(err, errlen, BPFG_RPC_E_TARGET, "%s", ierr);
    /* Stopped at its entry point and traced by us: attaching adopts that
     * thread, and the hooks are in place before any code of main runs. */
    start_pending = true;
    int code = targets_attach(s, pid, peer_uid, peer_pid, prog_ids, nprogs, target_spec, engine, 0, err, errlen);
    start_pending = false;
    struct target *t = code ? NULL : targets_find(&s->targets, pid);
    if (t && tool) {
        /* its bpf() is served by us from its first instruction on */
        r = tools_begin(s, t, engine, err, errlen);
        if (r) {
            code = BPFG_RPC_E_TARGET;
            char ignored[128];
            targets_detach(s, pid, 0, 0, ignored, sizeof(ignored));
            t = NULL;
        }
    } else if (t) {
        tools_target_added(s, t);
        binwide_target_added(s, t);
    }
    r = bpfg_release_started(pid);
    if (!code && r)
        code = srv_efail(err, errlen, BPFG_RPC_E_TARGET, "releasing process %d: %s", (int)pid, strerror(-r));
    if (!code)
        srv_log(SRV_INFO, "target %d: started with %zu programs before main", (int)pid, nprogs);
    return code;
}

int targets_add_timer(struct server *s, struct target *t, uint32_t prog_id, uint64_t period_ns, int engine, char *err,
                      size_t errlen)
{
    struct reg_prog *p = registry_prog(&s->reg, prog_id);
    struct reg_object *o = p ? registry_object(&s->reg, p->obj_id) : NULL;
    if (!o)
        return srv_efail(err, errlen, -ENOENT, "program %u is not loaded", prog_id);
    if (engine == TARGET_ENGINE_DEFAULT)
        engine = default_engine;
    struct bpfg_pmsg_timer m = {.prog_id = prog_id, .period_ns = period_ns};
    int r = send_object_maps(s, t, o, err, errlen);
    if (!r)
        r = send_prog(s, t, o, p, engine, err, errlen);
    if (!r)
        r = payload_call(s, t, BPFG_PMSG_TIMER, &m, sizeof(m), -1, err, errlen);
    if (!r)
        srv_log(SRV_INFO, "target %d: program %u '%s' runs every %llu ns", (int)t->pid, prog_id, p->prog->name,
                (unsigned long long)period_ns);
    return r;
}

int targets_attach_caught(struct server *s, pid_t pid, char *err, size_t errlen)
{
    start_pending = true;
    int code = targets_attach(s, pid, 0, 0, NULL, 0, NULL, TARGET_ENGINE_DEFAULT, 0, err, errlen);
    start_pending = false;
    struct target *t = code ? NULL : targets_find(&s->targets, pid);
    if (t) {
        t->for_tools = true;
        tools_target_added(s, t);
        binwide_target_added(s, t);
    }
    /* detached before it runs if nothing could attach there after all (a
     * Go program's syscalls) */
    char why[256];
    if (t && !t->nhooks && !syscalls_count(t) && !tools_want_pid(pid) && targets_detach(s, pid, 0, 0, why, sizeof(why)))
        srv_log(SRV_WARN, "process %d, caught at exec: detach failed: %s", (int)pid, why);
    bool kept = !code && targets_find(&s->targets, pid);
    int r = bpfg_release_started(pid); /* fails if the detach let it go already */
    if (kept && r)
        code = srv_efail(err, errlen, BPFG_RPC_E_TARGET, "releasing process %d: %s", (int)pid, strerror(-r));
    if (kept && !code)
        srv_log(SRV_INFO, "target %d: caught at exec, attached for the tools before its first instruction", (int)pid);
    else if (!code)
        srv_log(SRV_INFO, "process %d: caught at exec, nothing could attach there: let go", (int)pid);
    return code;
}

/* Puts back every patched site; the payload deactivates its slots. */
static int remove_hooks(struct server *s, struct target *t, char *err, size_t errlen)
{
    struct bpfg_stopped st;
    char ierr[BPFG_ERRLEN];
    int r = bpfg_stop_process(t->pid, &st, ierr);
    if (r)
        return srv_efail(err, errlen, r, "%s", ierr);
    for (int i = 0; i < TARGET_MAX_HOOKS; i++) {
        struct target_hook *h = &t->hooks[i];
        if (h->used && (r = bpfg_hook_unpatch(&st, &h->plan, journal_of(t))))
            srv_log(SRV_ERROR, "target %d: cannot restore 0x%llx: %s", (int)t->pid, (unsigned long long)h->plan.site,
                    strerror(-r));
    }
    bpfg_resume_process(&st, &t->last_stop_ns);
    for (int i = 0; i < TARGET_MAX_HOOKS; i++) {
        struct target_hook *h = &t->hooks[i];
        if (!h->used)
            continue;
        for (uint32_t k = 0; k < h->nprogs; k++)
            sem_release(t, h->sems[k]);
        struct bpfg_pmsg_unhook un = {h->index};
        payload_call(s, t, BPFG_PMSG_UNHOOK, &un, sizeof(un), -1, ierr, sizeof(ierr));
    }
    return 0;
}

/* The unwind page's layout version (payload_abi.h): 1 had a trampoline
 * per shadow-stack depth, 2 one per thread slot; an unreadable page is
 * taken as this build's. */
static uint32_t unwind_version(struct bpfg_stopped *st, const struct target *t)
{
    uint32_t v = 0;
    if (!t->unwind_page ||
        bpfg_mem_read(st, t->unwind_page + offsetof(struct bpfg_unwind_data, version), &v, sizeof(v)) != 0 || !v)
        return BPFG_UNWIND_VERSION;
    return v;
}

/* Return addresses replaced by uretprobes point at the unwind page's
 * trampolines: put the original ones back on every stack before the
 * payload goes (payload_abi.h: topmost entry per stack slot, only where
 * its trampoline, the thread slot's (the depth's in a version 1 page), is
 * still there; others belong to frames already skipped by longjmp or an
 * exception). gdb's entry for the page is emptied (the page stays:
 * unwinders keep pointers into it). */
static void restore_return_addresses(struct bpfg_stopped *st, const struct target *t)
{
    bool by_depth = unwind_version(st, t) == 1;
    uint64_t ret0 = 0, none = 0;
    if (t->unwind_page)
        bpfg_mem_write(st, t->unwind_page + BPFG_UNWIND_GDB_R_MAP, &none, sizeof(none));
    if (!t->thread_table || !t->max_threads || !t->shadow_depth || t->shadow_depth > 4096 || !t->uret_trampolines ||
        bpfg_mem_read(st, t->uret_trampolines, &ret0, sizeof(ret0)) != 0 || !ret0)
        return;
    size_t slot_size = sizeof(struct bpfg_thread_slot);
    if (t->shadow_depth != BPFG_SHADOW_DEPTH)
        return; /* a payload with another layout: leave its stacks alone */
    struct bpfg_thread_slot ts;
    unsigned fixed = 0;
    for (uint32_t i = 0; i < t->max_threads; i++) {
        if (bpfg_mem_read(st, t->thread_table + i * slot_size, &ts, sizeof(ts)) != 0)
            break;
        if (!ts.owner || !ts.depth)
            continue;
        uint32_t depth = ts.depth < BPFG_SHADOW_DEPTH ? ts.depth : BPFG_SHADOW_DEPTH;
        for (uint32_t k = depth; k-- > 0;) {
            const struct bpfg_shadow_entry *e = &ts.stack[k];
            bool seen = false;
            for (uint32_t j = k + 1; j < depth; j++)
                seen |= ts.stack[j].slot == e->slot;
            uint64_t word;
            uint64_t tramp = BPFG_UNWIND_RET(ret0, by_depth ? k : i);
            if (seen || bpfg_mem_read(st, e->slot, &word, sizeof(word)) != 0 || word != tramp)
                continue;
            if (bpfg_mem_write(st, e->slot, &e->ret, sizeof(e->ret)) == 0)
                fixed++;
        }
    }
    if (fixed)
        srv_log(SRV_INFO, "target %d: restored %u return addresses replaced by uretprobes", (int)t->pid, fixed);
}

/* The first HOOK installed the payload's SIGTRAP handler: the target's own
 * action goes back before the payload's memory does (in a stop where no
 * thread has a SIGTRAP pending: nothing_in_payload). */
static void restore_trap_action(struct bpfg_stopped *st, struct target *t)
{
    if (!t->trap_action)
        return;
    char ierr[BPFG_ERRLEN];
    uint64_t args[6] = {SIGTRAP, t->trap_action, 0, 8, 0, 0};
    int64_t ret = 0;
    int r = bpfg_remote_syscall_on(st, 0, SYS_rt_sigaction, args, &ret, ierr);
    if (r || ret < 0)
        srv_log(SRV_WARN, "target %d: restoring the SIGTRAP action: %s", (int)t->pid, r ? ierr : strerror((int)-ret));
    else
        t->trap_action = 0;
}

static bool thread_alive(pid_t pid, pid_t tid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/task/%d", (int)pid, (int)tid);
    return access(path, F_OK) == 0;
}

struct unload {
    struct target *t;
    struct bpfg_range ranges[1 + TARGET_MAX_HOOKS];
    size_t n;
};

/* A thread that returned into a uretprobe's return trampoline (in the
 * unwind page, which stays) and was preempted there, before its jmp into
 * the payload: under load it may sit there past the unpatching. */
static bool in_trampolines(struct bpfg_stopped *st, const struct target *t, pid_t *busy)
{
    uint64_t ret0 = 0;
    if (!t->uret_trampolines || bpfg_mem_read(st, t->uret_trampolines, &ret0, sizeof(ret0)) != 0 || !ret0)
        return false;
    uint64_t lo = ret0 - 1; /* a return address is one byte into its entry (payload_abi.h) */
    uint64_t n = unwind_version(st, t) == 1 ? BPFG_UNWIND_V1_TRAMPS : BPFG_UNWIND_TRAMPS;
    return bpfg_any_thread_in(st, lo, lo + n * BPFG_UNWIND_ENTRY, busy);
}

static bool nothing_in_payload(struct bpfg_stopped *st, void *ctx, pid_t *busy)
{
    struct unload *u = ctx;
    restore_return_addresses(st, u->t);
    if (in_trampolines(st, u->t, busy))
        return false;
    if (u->t->trap_action && bpfg_any_signal_queued(st, SIGTRAP, busy)) /* a trap taken before its byte went back */
        return false;
    if (bpfg_any_thread_in(st, u->ranges[0].lo, u->ranges[0].hi, busy))
        return false;
    for (int i = 0; i < TARGET_MAX_HOOKS; i++) {
        const struct target_hook *h = &u->t->hooks[i];
        if (h->stub_size && bpfg_any_thread_in(st, h->plan.stub_addr, h->plan.stub_addr + h->stub_size, busy))
            return false;
    }
    return !bpfg_any_return_into(st, u->ranges, u->n, busy);
}

/* Stops the process for unloading the payload: once the return addresses
 * uretprobes replaced are back, no thread may run in the payload or in a
 * stub (on its way into the payload), nor return there: a signal handler
 * that interrupted a probe returns into it. Retries with the process
 * running in between, like stop_outside. */
static int stop_for_unload(struct target *t, struct bpfg_stopped *st, char *err, size_t errlen)
{
    struct unload u = {.t = t};
    u.ranges[u.n++] = (struct bpfg_range){t->inj.base, t->inj.base + t->inj.size};
    for (int i = 0; i < TARGET_MAX_HOOKS; i++)
        if (t->hooks[i].stub_size) /* (also of removed hooks) the part before the jump into the payload */
            u.ranges[u.n++] =
                (struct bpfg_range){t->hooks[i].plan.stub_addr, t->hooks[i].plan.stub_addr + BPFG_HOOK_RESUME_OFF};
    pid_t busy = 0;
    int r = stop_when(t->pid, st, nothing_in_payload, &u, &busy, err, errlen);
    return r == -EBUSY ? srv_efail(err, errlen, -EBUSY,
                                   "thread %d keeps running in (or returning into) bpfgraft's "
                                   "code, e.g. a signal handler that interrupted a probe",
                                   (int)busy)
                       : r;
}

static int payload_mapping_at(const struct bpfg_procfs_map *m, void *arg)
{
    return m->start == *(const uint64_t *)arg && strstr(m->path, "bpfgraft-payload");
}

/* True if pid maps a bpfgraft payload at base (a fork of a target made
 * after the payload was loaded carries a copy at the same address). */
static bool maps_payload_at(pid_t pid, uint64_t base)
{
    return bpfg_procfs_maps(pid, payload_mapping_at, &base) == 1;
}

static int exe_of(pid_t pid, struct stat *st)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/exe", (int)pid);
    return stat(path, st) == 0 ? 0 : -errno;
}

/* Processes forked from t after its hooks were placed run copies of them
 * (their programs follow forks, as pid_tgid does). When hooks leave t
 * (every: all of them, at detach and exit; else the removed ones, after a
 * tool ended) their code goes back in the forks too, so that no probe is
 * left anywhere; their copy of the payload (threadless) stays mapped, as
 * do rewritten syscall sites. */
static void detach_forks(struct server *s, struct target *t, bool every)
{
    bool any = false;
    for (int i = 0; i < TARGET_MAX_HOOKS && !any; i++)
        any = (every && t->hooks[i].used) || (!t->hooks[i].used && t->hooks[i].stub_size);
    if (!any)
        return;
    struct stat exe;
    bool by_exe = exe_of(t->pid, &exe) == 0; /* t may have exited: then every process is looked at */
    DIR *d = opendir("/proc");
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d));) {
        pid_t pid = (pid_t)atoi(de->d_name);
        struct stat other;
        /* a fork runs t's executable (an exec drops the payload): one stat
         * rules out the other processes, not a read of their maps each */
        if (pid <= 0 || pid == t->pid || pid == getpid() ||
            (by_exe && (exe_of(pid, &other) != 0 || other.st_ino != exe.st_ino || other.st_dev != exe.st_dev)) ||
            targets_find(&s->targets, pid) || !maps_payload_at(pid, t->inj.base))
            continue;
        struct bpfg_stopped st;
        char ierr[BPFG_ERRLEN];
        if (bpfg_stop_process(pid, &st, ierr) != 0) {
            srv_log(SRV_WARN, "target %d: its fork %d keeps its probes: %s", (int)t->pid, (int)pid, ierr);
            continue;
        }
        unsigned restored = 0;
        for (int i = 0; i < TARGET_MAX_HOOKS; i++) {
            const struct target_hook *h = &t->hooks[i];
            bool gone = !h->used && h->stub_size; /* removed, still remembered */
            if (!((every && h->used) || gone) || !bpfg_hook_in_place(&st, &h->plan))
                continue; /* not our bytes there (it exec'd, or never had them) */
            if (bpfg_hook_unpatch(&st, &h->plan, journal_of(t)) == 0)
                restored++;
        }
        bpfg_resume_process(&st, NULL);
        srv_log(SRV_INFO, "target %d: its fork %d: %u probe(s) removed", (int)t->pid, (int)pid, restored);
    }
    closedir(d);
}

int targets_detach(struct server *s, pid_t pid, uid_t peer_uid, pid_t peer_pid, char *err, size_t errlen)
{
    struct target *t = targets_find(&s->targets, pid);
    if (!t)
        return srv_efail(err, errlen, BPFG_RPC_E_NOT_FOUND, "process %d is not attached", (int)pid);
    uid_t uid;
    if (peer_pid && check_permission(pid, peer_uid, peer_pid, &uid, err, errlen) == -EPERM)
        return BPFG_RPC_E_PERMISSION;
    int stopped = peer_pid ? refuse_unrunnable(pid, "detach", err, errlen) : 0;
    if (stopped)
        return stopped;
    if (t->foreign_abi) { /* its hooks are unknown: its patches, from the files */
        int n = adopt_restore_text(pid, err, errlen);
        if (n < 0)
            return BPFG_RPC_E_TARGET;
        srv_log(SRV_INFO, "target %d: %d patch(es) of its payload of ABI %u restored; the payload stays mapped",
                (int)pid, n, t->foreign_abi);
        adopt_release(t);
    }
    if (t->replaced_base) /* re-injected: the payload it replaced stays mapped */
        adopt_release(t);

    detach_forks(s, t, true);
    bool keep_payload = false;
    syscalls_detach(s, t, &keep_payload);
    int r = remove_hooks(s, t, err, errlen);
    if (r && r != -ESRCH)
        return BPFG_RPC_E_TARGET;
    uint32_t state = 0;
    char msg[128];
    if (r != -ESRCH && bpfg_payload_status(pid, &t->inj, &state, msg, sizeof(msg)) == 0) {
        /* Ask the payload to go, wait for its thread to end, then free its
         * memory and the stubs once no thread runs there. */
        pid_t tid = 0;
        struct bpfg_payload_params p;
        payload_call(s, t, BPFG_PMSG_DETACH, NULL, 0, -1, msg, sizeof(msg));
        uint64_t deadline = mono_ms() + 2000;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
        int memfd = open(path, O_RDONLY | O_CLOEXEC);
        if (memfd >= 0 && pread(memfd, &p, sizeof(p), (off_t)t->inj.params) == (ssize_t)sizeof(p))
            tid = p.payload_tid;
        if (memfd >= 0)
            close(memfd);
        while (tid > 0 && thread_alive(pid, tid) && mono_ms() < deadline) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
        if (tid > 0 && thread_alive(pid, tid)) {
            srv_log(SRV_WARN, "target %d: payload thread %d did not exit; leaving its memory mapped", (int)pid,
                    (int)tid);
        } else if (keep_payload) {
            srv_log(SRV_INFO, "target %d: the payload stays mapped (its SIGSYS handler may still be on a stack)",
                    (int)pid);
        } else {
            struct bpfg_stopped st;
            char ierr[BPFG_ERRLEN];
            if (stop_for_unload(t, &st, ierr, sizeof(ierr)) == 0) {
                for (int i = 0; i < TARGET_MAX_HOOKS; i++) {
                    const struct target_hook *h = &t->hooks[i];
                    struct bpfg_range stub = {h->plan.stub_addr, h->plan.stub_addr + h->stub_size};
                    /* a stub stays mapped while any thread runs in it or, after a
                     * relocated call, would return into it */
                    if (h->stub_size && !bpfg_any_thread_in(&st, stub.lo, stub.hi, NULL) &&
                        !(h->plan.has_call && bpfg_any_return_into(&st, &stub, 1, NULL)))
                        bpfg_remote_free(&st, stub.lo, h->stub_size, NULL);
                }
                restore_trap_action(&st, t);
                if (bpfg_unload_payload(&st, &t->inj, ierr) != 0)
                    srv_log(SRV_WARN, "target %d: %s", (int)pid, ierr);
                bpfg_resume_process(&st, NULL);
            } else {
                srv_log(SRV_WARN, "target %d: leaving the payload mapped: %s", (int)pid, ierr);
            }
        }
    }
    srv_log(SRV_INFO, "target %d: detached", (int)pid);
    state_forget_target(s, pid);
    announce(s, pid, "detached");
    target_free(s, t);
    return 0;
}

/* The process went away for the server: its record and its target. */
static void target_gone(struct server *s, struct target *t, const char *state)
{
    state_forget_target(s, t->pid);
    announce(s, t->pid, state);
    target_free(s, t);
}

void targets_forget_exec(struct server *s, struct target *t)
{
    srv_log(SRV_INFO, "target %d: exec'd a new program: its payload went with the old one", (int)t->pid);
    target_gone(s, t, "exited");
}

bool targets_readable(struct server *s, struct target *t)
{
    struct pollfd exited = {t->pidfd, POLLIN, 0};
    if (t->pidfd >= 0 && poll(&exited, 1, 0) == 1) {
        srv_log(SRV_INFO, "target %d: exited", (int)t->pid);
        detach_forks(s, t, true); /* the attachment ends with the process */
        target_gone(s, t, "exited");
        return false;
    }
    for (;;) {
        struct bpfg_pmsg_hdr h;
        char *body;
        ssize_t n = recv(t->sock, &h, sizeof(h), MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return true;
        if (n <= 0) {
            srv_log(SRV_INFO, "target %d: payload connection closed: process exited", (int)t->pid);
            target_gone(s, t, "exited");
            return false;
        }
        if (n < (ssize_t)sizeof(h))
            return true;
        if (pmsg_recv(t->sock, &h, &body, REPLY_TIMEOUT_MS) != 0) {
            srv_log(SRV_WARN, "target %d: bad message from the payload; dropping the target", (int)t->pid);
            announce(s, t->pid, "exited");
            target_free(s, t);
            return false;
        }
        handle_async(s, t, &h, body);
        free(body);
    }
}

/* A counter of a hook's slot in the payload (misses: runs skipped for
 * recursion, thread table or shadow stack full; dropped: uretprobe frames
 * left by an exception or longjmp); 0 if unreadable. */
static uint64_t hook_counter(const struct target *t, const struct target_hook *h, size_t field)
{
    uint64_t value = 0;
    if (!t->hook_table)
        return 0;
    struct iovec local = {&value, sizeof(value)};
    struct iovec remote = {
        (void *)(uintptr_t)(t->hook_table + (uint64_t)h->index * sizeof(struct bpfg_hook_slot) + field), sizeof(value)};
    if (process_vm_readv(t->pid, &local, 1, &remote, 1, 0) != (ssize_t)sizeof(value))
        return 0;
    return value;
}

/* "uprobe", "uretprobe", with " (trap)" for trap probes and " (short
 * jmp)" for hops. */
static const char *hook_kind_name(const struct target_hook *h, uint32_t k)
{
    if (h->kinds[k] == BPFG_HOOK_URETPROBE)
        return h->plan.trap ? "uretprobe (trap)" : h->plan.hop ? "uretprobe (short jmp)" : "uretprobe";
    return h->plan.trap ? "uprobe (trap)" : h->plan.hop ? "uprobe (short jmp)" : "uprobe";
}

/* The process's name now (prctl may have changed it since the attach);
 * "" once it is gone. */
static void pack_comm(msgpack_packer *pk, pid_t pid)
{
    char comm[32];
    bpfg_procfs_comm(pid, comm, sizeof(comm));
    bpfg_pack_cstr(pk, comm);
}

void targets_pack_list(struct server *s, msgpack_packer *pk)
{
    msgpack_pack_array(pk, s->targets.count);
    for (struct target *t = s->targets.list; t; t = t->next) {
        msgpack_pack_map(pk, 11);
        bpfg_pack_cstr(pk, "pid");
        msgpack_pack_int(pk, t->pid);
        /* inert: orphaned past the grace period, programs do not run;
         * other-abi-N: a payload of ABI N, listed, only detach works */
        char other[32];
        snprintf(other, sizeof(other), "other-abi-%u", t->foreign_abi);
        bpfg_pack_cstr(pk, "state");
        bpfg_pack_cstr(pk, t->foreign_abi && !adopt_tool_served(t) ? other : t->inert ? "inert" : "attached");
        /* "" attached by this server, "record", "inventory", "reinjected",
         * "tool-abi-N" (a run tool's payload of ABI N, served), "tool-as-is",
         * "other-abi" (restarts) */
        bpfg_pack_cstr(pk, "adopted");
        bpfg_pack_cstr(pk, t->adopted);
        bpfg_pack_cstr(pk, "comm");
        pack_comm(pk, t->pid);
        bpfg_pack_cstr(pk, "syscall_sites");
        msgpack_pack_uint64(pk, syscalls_sites(t));
        bpfg_pack_cstr(pk, "syscall_programs");
        msgpack_pack_uint64(pk, syscalls_count(t));
        bpfg_pack_cstr(pk, "uid");
        msgpack_pack_uint32(pk, t->uid);
        size_t nprogs = 0;
        for (int i = 0; i < TARGET_MAX_HOOKS; i++)
            if (t->hooks[i].used)
                nprogs += t->hooks[i].nprogs;
        bpfg_pack_cstr(pk, "hooks");
        msgpack_pack_array(pk, nprogs);
        for (int i = 0; i < TARGET_MAX_HOOKS; i++) {
            const struct target_hook *h = &t->hooks[i];
            bool live = h->used && h->nprogs;
            uint64_t misses = live ? hook_counter(t, h, offsetof(struct bpfg_hook_slot, misses)) : 0;
            uint64_t dropped = live ? hook_counter(t, h, offsetof(struct bpfg_hook_slot, dropped)) : 0;
            uint64_t hits = live ? stats_hook_hits(t, h->index) : 0;
            for (uint32_t k = 0; h->used && k < h->nprogs; k++) {
                bool ret = h->kinds[k] == BPFG_HOOK_URETPROBE;
                msgpack_pack_map(pk, ret ? 8 : 7);
                bpfg_pack_cstr(pk, "cookie");
                msgpack_pack_uint64(pk, h->cookies[k]);
                bpfg_pack_cstr(pk, "hits"); /* entries while stats were on */
                msgpack_pack_uint64(pk, hits);
                bpfg_pack_cstr(pk, "misses");
                msgpack_pack_uint64(pk, misses);
                if (ret) {
                    bpfg_pack_cstr(pk, "dropped");
                    msgpack_pack_uint64(pk, dropped);
                }
                bpfg_pack_cstr(pk, "engine");
                bpfg_pack_cstr(pk, targets_engine_name(prog_engine(t, h->prog_ids[k])));
                bpfg_pack_cstr(pk, "prog");
                msgpack_pack_uint32(pk, h->prog_ids[k]);
                bpfg_pack_cstr(pk, "address");
                msgpack_pack_uint64(pk, h->plan.func);
                bpfg_pack_cstr(pk, "kind");
                bpfg_pack_cstr(pk, hook_kind_name(h, k));
            }
        }
        bpfg_pack_cstr(pk, "payload");
        msgpack_pack_uint64(pk, t->inj.base);
        bpfg_pack_cstr(pk, "attached_at_ms");
        msgpack_pack_uint64(pk, t->attached_at_ms);
        bpfg_pack_cstr(pk, "last_stop_us");
        msgpack_pack_uint64(pk, t->last_stop_ns / 1000);
    }
}

void targets_destroy(struct server *s, bool detach)
{
    progcompile_shutdown(s);
    char err[256];
    while (s->targets.list && !detach) {
        /* a restart: the record stays, the payload keeps running and
         * reconnects to the next server */
        state_save_target(s, s->targets.list);
        target_free(s, s->targets.list);
    }
    while (s->targets.list) {
        pid_t pid = s->targets.list->pid;
        if (targets_detach(s, pid, 0, 0, err, sizeof(err)) != 0) {
            srv_log(SRV_WARN, "target %d: %s", (int)pid, err);
            target_free(s, s->targets.list);
        }
    }
    if (s->targets.listen_fd >= 0)
        close(s->targets.listen_fd);
    s->targets.listen_fd = -1;
    for (size_t i = 0; i < n_netns_listeners; i++)
        close(netns_listeners[i].fd);
    n_netns_listeners = 0;
}

/* One hook slot loses some of its programs: the payload empties the slot
 * and takes the others back; the last one gone puts the site back. */
static int shrink_hook(struct server *s, struct target *t, struct target_hook *h, const uint32_t *ids, size_t n)
{
    uint32_t keep_ids[TARGET_HOOK_PROGS], keep_kinds[TARGET_HOOK_PROGS];
    uint64_t keep_cookies[TARGET_HOOK_PROGS], keep_sems[TARGET_HOOK_PROGS];
    uint32_t nkeep = 0;
    for (uint32_t k = 0; k < h->nprogs; k++)
        if (!id_in(ids, n, h->prog_ids[k])) {
            keep_ids[nkeep] = h->prog_ids[k];
            keep_cookies[nkeep] = h->cookies[k];
            keep_sems[nkeep] = h->sems[k];
            keep_kinds[nkeep++] = h->kinds[k];
        } else {
            sem_release(t, h->sems[k]);
        }
    if (nkeep == h->nprogs)
        return 0;
    char ierr[BPFG_ERRLEN];
    if (nkeep == 0) {
        struct bpfg_stopped st;
        int r = bpfg_stop_process(t->pid, &st, ierr);
        if (r) {
            srv_log(SRV_WARN, "target %d: %s", (int)t->pid, ierr);
            return r;
        }
        if ((r = bpfg_hook_unpatch(&st, &h->plan, journal_of(t))))
            srv_log(SRV_ERROR, "target %d: cannot restore 0x%llx: %s", (int)t->pid, (unsigned long long)h->plan.site,
                    strerror(-r));
        bpfg_resume_process(&st, &t->last_stop_ns);
        if (r)
            return r;
    }
    struct bpfg_pmsg_unhook un = {h->index};
    int r = payload_call(s, t, BPFG_PMSG_UNHOOK, &un, sizeof(un), -1, ierr, sizeof(ierr));
    if (r)
        srv_log(SRV_WARN, "target %d: UNHOOK %u: %s", (int)t->pid, h->index, ierr);
    h->nprogs = 0;
    for (uint32_t k = 0; k < nkeep; k++) {
        struct bpfg_pmsg_hook body = {
            .hook_index = h->index,
            .kind = keep_kinds[k],
            .prog_id = keep_ids[k],
            .site = h->plan.func,
            .resume = h->plan.stub_addr + BPFG_HOOK_RESUME_OFF,
            .cookie = keep_cookies[k],
        };
        if (payload_call(s, t, BPFG_PMSG_HOOK, &body, sizeof(body), -1, ierr, sizeof(ierr)) != 0) {
            srv_log(SRV_WARN, "target %d: re-adding program %u at 0x%llx: %s", (int)t->pid, keep_ids[k],
                    (unsigned long long)h->plan.func, ierr);
            sem_release(t, keep_sems[k]);
            continue;
        }
        h->prog_ids[h->nprogs] = keep_ids[k];
        h->cookies[h->nprogs] = keep_cookies[k];
        h->sems[h->nprogs] = keep_sems[k];
        h->kinds[h->nprogs++] = keep_kinds[k];
    }
    if (h->nprogs == 0 && nkeep == 0) {
        /* the stub stays mapped (a thread may still be inside it) until
         * the slot is reused or the payload goes */
        h->used = false;
        t->nhooks--;
    }
    return 0;
}

int targets_remove_progs(struct server *s, struct target *t, const uint32_t *ids, size_t n, const uint32_t *map_ids,
                         size_t nmaps)
{
    int ret = 0;
    bool removed = false;
    for (int i = 0; i < TARGET_MAX_HOOKS; i++)
        if (t->hooks[i].used) {
            int r = shrink_hook(s, t, &t->hooks[i], ids, n);
            if (r && !ret)
                ret = r;
            removed |= !t->hooks[i].used;
        }
    if (removed)
        detach_forks(s, t, false);
    char ierr[BPFG_ERRLEN];
    for (size_t k = 0; k < n; k++)
        syscalls_remove_prog(s, t, ids[k]);
    /* forget the programs, then the maps nothing uses any more */
    for (size_t i = t->nprogs_sent; i-- > 0;) {
        if (!id_in(ids, n, t->progs_sent[i]))
            continue;
        struct bpfg_pmsg_unmap u = {.prog_id = t->progs_sent[i]};
        if (payload_call(s, t, BPFG_PMSG_UNMAP, &u, sizeof(u), -1, ierr, sizeof(ierr)) != 0) {
            srv_log(SRV_WARN, "target %d: forgetting program %u: %s", (int)t->pid, u.prog_id, ierr);
            continue;
        }
        memmove(&t->progs_sent[i], &t->progs_sent[i + 1], (t->nprogs_sent - i - 1) * sizeof(uint32_t));
        memmove(&t->progs_engine[i], &t->progs_engine[i + 1], t->nprogs_sent - i - 1);
        t->nprogs_sent--;
    }
    for (size_t i = t->nmaps_sent; i-- > 0;) {
        if (!id_in(map_ids, nmaps, t->maps_sent[i]))
            continue;
        struct bpfg_pmsg_unmap u = {.map_id = t->maps_sent[i]};
        if (payload_call(s, t, BPFG_PMSG_UNMAP, &u, sizeof(u), -1, ierr, sizeof(ierr)) != 0) {
            srv_log(SRV_DEBUG, "target %d: map %u stays mapped: %s", (int)t->pid, u.map_id, ierr);
            continue;
        }
        memmove(&t->maps_sent[i], &t->maps_sent[i + 1], (t->nmaps_sent - i - 1) * sizeof(uint32_t));
        memmove(&t->map_addrs[i], &t->map_addrs[i + 1], (t->nmaps_sent - i - 1) * sizeof(t->map_addrs[0]));
        t->nmaps_sent--;
    }
    state_save_target(s, t);
    return ret;
}
