/* End to end: inject the payload into a victim process, act as the server
 * on a unix socket, send a map and a program, hook victim_add with a
 * hand-written stub, and check the program's effects against what the
 * victim itself counted; then detach and check the victim is untouched. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "injector.h"
#include "maps.h"
#include "payload_abi.h"
#include "victim.h"
#include "x86jit.h"

#define HOOK_INDEX 7
#define TIMEOUT_MS 30000 /* a loaded 2-CPU machine running ASan builds beside */

struct fixture {
    pid_t pid;
    struct victim_shared *sh;
    char dir[64], path[108];
    int listen_fd, conn;
    uint32_t seq;
    struct bpfg_injected inj;
    bool injected;
    struct bpfg_pmsg_hello_ext hello;
    uint64_t stub, site;
    uint8_t orig[VICTIM_PROLOGUE_LEN];
    bool patched;
    uint32_t orphan_grace_ms; /* the payload's, given at injection (0: never inert) */
    unsigned traces;
    char last_trace[BPFG_TRACE_LINE];
};

static struct fixture fx;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void start_victim(void)
{
    int fd = memfd_create("victim-shared", 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(ftruncate(fd, 4096), 0);
    fx.sh = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    cr_assert_neq(fx.sh, MAP_FAILED);
    fx.pid = fork();
    cr_assert_geq(fx.pid, 0);
    if (fx.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char arg[16];
        snprintf(arg, sizeof(arg), "%d", fd);
        execl(VICTIM_PATH, "payload-victim", arg, (char *)NULL);
        _exit(127);
    }
    close(fd);
    uint64_t t0 = now_ms();
    while (!fx.sh->func && now_ms() - t0 < TIMEOUT_MS)
        usleep(1000);
    cr_assert_neq(fx.sh->func, 0, "victim did not start");
}

static void setup(void)
{
    memset(&fx, 0, sizeof(fx));
    fx.listen_fd = fx.conn = -1;
    snprintf(fx.dir, sizeof(fx.dir), "/tmp/bpfg-payload-XXXXXX");
    cr_assert_not_null(mkdtemp(fx.dir));
    snprintf(fx.path, sizeof(fx.path), "%s/sock", fx.dir);
    fx.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx.path);
    cr_assert_eq(bind(fx.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(fx.listen_fd, 4), 0);
    start_victim();
}

static void teardown(void)
{
    if (fx.pid > 0) {
        kill(fx.pid, SIGKILL);
        waitpid(fx.pid, NULL, 0);
    }
    if (fx.conn >= 0)
        close(fx.conn);
    if (fx.listen_fd >= 0)
        close(fx.listen_fd);
    unlink(fx.path);
    rmdir(fx.dir);
    if (fx.sh)
        munmap(fx.sh, 4096);
}

/* ---- the server side of the payload protocol ---- */

static void send_pmsg(uint16_t type, const void *body, size_t len, int fd)
{
    struct bpfg_pmsg_hdr h = {.len = (uint32_t)(sizeof(h) + len), .type = type, .seq = ++fx.seq};
    struct iovec iov = {&h, sizeof(h)};
    union {
        struct cmsghdr c;
        char buf[CMSG_SPACE(sizeof(int))];
    } cm;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        mh.msg_control = cm.buf;
        mh.msg_controllen = sizeof(cm.buf);
        struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    cr_assert_eq(sendmsg(fx.conn, &mh, MSG_NOSIGNAL), (ssize_t)sizeof(h));
    if (len)
        cr_assert_eq(send(fx.conn, body, len, MSG_NOSIGNAL), (ssize_t)len);
}

static void read_full(void *buf, size_t len)
{
    uint8_t *b = buf;
    while (len) {
        struct pollfd p = {.fd = fx.conn, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, TIMEOUT_MS), 1, "payload did not answer");
        ssize_t n = recv(fx.conn, b, len, 0);
        cr_assert_gt(n, 0, "payload closed the connection");
        b += n;
        len -= (size_t)n;
    }
}

/* Next message; TRACE lines are counted and remembered. */
static uint16_t recv_pmsg(struct bpfg_pmsg_hdr *h, void *body, size_t cap)
{
    for (;;) {
        read_full(h, sizeof(*h));
        cr_assert_geq(h->len, sizeof(*h));
        size_t len = h->len - sizeof(*h);
        cr_assert_leq(len, cap);
        read_full(body, len);
        if (h->type != BPFG_PMSG_TRACE)
            return h->type;
        fx.traces++;
        snprintf(fx.last_trace, sizeof(fx.last_trace), "%s", (char *)body + sizeof(struct bpfg_pmsg_trace));
    }
}

static uint8_t last_reply[256]; /* body of the last reply */
static size_t last_reply_len;

/* Sends a request, returns the reply's status (reply text in err). */
static int request(uint16_t type, const void *body, size_t len, int fd, char *err, size_t errlen)
{
    send_pmsg(type, body, len, fd);
    struct bpfg_pmsg_hdr h;
    char buf[4096] = "";
    cr_assert_eq(recv_pmsg(&h, buf, sizeof(buf) - 1), BPFG_PMSG_REPLY);
    cr_assert_eq(h.seq, fx.seq, "reply to the wrong request");
    last_reply_len = h.len - sizeof(h) < sizeof(last_reply) ? h.len - sizeof(h) : sizeof(last_reply);
    memcpy(last_reply, buf, last_reply_len);
    if (err)
        snprintf(err, errlen, "%s", buf);
    return h.status;
}

static void inject(uint32_t server_uid)
{
    struct bpfg_stopped st;
    char err[BPFG_ERRLEN];
    struct bpfg_inject_opts opts = {.payload_path = PAYLOAD_PATH,
                                    .server_socket = fx.path,
                                    .token = 0x1234abcd,
                                    .server_uid = server_uid,
                                    .orphan_grace_ms = fx.orphan_grace_ms};
    cr_assert_eq(bpfg_stop_process(fx.pid, &st, err), 0, "stop: %s", err);
    int r = bpfg_inject_payload(&st, &opts, &fx.inj, err);
    bpfg_resume_process(&st, NULL);
    cr_assert_eq(r, 0, "inject: %s", err);
    fx.injected = true;
}

static void attach_payload(void)
{
    inject(getuid());
    struct pollfd p = {.fd = fx.listen_fd, .events = POLLIN};
    if (poll(&p, 1, TIMEOUT_MS) != 1) {
        uint32_t state = 0;
        char msg[128] = "";
        bpfg_payload_status(fx.pid, &fx.inj, &state, msg, sizeof(msg));
        cr_assert_fail("payload did not connect (state %u: %s)", state, msg);
    }
    fx.conn = accept4(fx.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(fx.conn, 0);
    struct bpfg_pmsg_hdr h;
    cr_assert_eq(recv_pmsg(&h, &fx.hello, sizeof(fx.hello)), BPFG_PMSG_HELLO);
    cr_assert_eq(h.len, sizeof(h) + sizeof(fx.hello));
    cr_assert_eq(fx.hello.base.pid, (uint32_t)fx.pid);
    cr_assert_eq(fx.hello.base.token, 0x1234abcd);
    cr_assert_eq(fx.hello.base.abi_version, BPFG_PAYLOAD_ABI_VERSION);
    cr_assert_eq(fx.hello.base.uprobe_entry, fx.inj.uprobe_entry);
    cr_assert_eq(fx.hello.base.uretprobe_return, fx.inj.uretprobe_return);
    cr_assert_eq(fx.hello.base.max_hooks, BPFG_MAX_HOOKS);
    cr_assert_gt(fx.hello.base.nr_cpus, 0);
    uint32_t state;
    cr_assert_eq(bpfg_payload_status(fx.pid, &fx.inj, &state, NULL, 0), 0);
    cr_assert_eq(state, BPFG_PAYLOAD_CONNECTED);
}

static struct bpfg_map *send_counter_map(uint32_t id)
{
    struct bpfg_map_spec spec = {
        .type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 8, .max_entries = 8, .name = "counter"};
    struct bpfg_map *m;
    cr_assert_eq(bpfg_map_create(&spec, &m), 0);
    struct bpfg_pmsg_map body = {.map_id = id};
    char err[256];
    int st = request(BPFG_PMSG_MAP, &body, sizeof(body), bpfg_map_fd(m), err, sizeof(err));
    cr_assert_eq(st, 0, "MAP: %s", err);
    return m;
}

static uint64_t counter(struct bpfg_map *m, uint32_t key)
{
    uint64_t v = 0;
    cr_assert_eq(bpfg_map_lookup_copy(m, &key, &v), 0);
    return v;
}

#define INSN(c, d, s, o, i) ((struct bpf_insn){.code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i)})

/* r0 = map_lookup(map #idx, &key); if r0: lock *(u64 *)r0 += reg, or
 * *(u64 *)r0 = reg. Clobbers r0-r5. */
static size_t emit_map_op(struct bpf_insn *p, int map_idx, uint32_t key, int reg, bool add)
{
    size_t n = 0;
    p[n++] = INSN(BPF_LD | BPF_IMM | BPF_DW, BPF_REG_1, BPF_PSEUDO_MAP_IDX, 0, map_idx);
    p[n++] = INSN(0, 0, 0, 0, 0);
    p[n++] = INSN(BPF_ST | BPF_MEM | BPF_W, BPF_REG_10, 0, -4, (int32_t)key);
    p[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_2, BPF_REG_10, 0, 0);
    p[n++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_2, 0, 0, -4);
    p[n++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem);
    p[n++] = INSN(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 1, 0);
    if (add)
        p[n++] = INSN(BPF_STX | BPF_ATOMIC | BPF_DW, BPF_REG_0, reg, 0, BPF_ADD);
    else
        p[n++] = INSN(BPF_STX | BPF_MEM | BPF_DW, BPF_REG_0, reg, 0, 0);
    return n;
}

static size_t emit_add_to_map(struct bpf_insn *p, uint32_t key)
{
    return emit_map_op(p, 0, key, BPF_REG_6, true);
}

static size_t emit_exit0(struct bpf_insn *p)
{
    p[0] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
    p[1] = INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    return 2;
}

static uint32_t prog_flags; /* bpfg_pmsg_prog.flags of the next send_prog_maps */

static int send_prog_maps(uint32_t prog_id, const uint32_t *map_ids, uint32_t nmaps, const struct bpf_insn *insns,
                          size_t n, char *err, size_t errlen)
{
    size_t len = sizeof(struct bpfg_pmsg_prog) + 4 * nmaps + n * sizeof(*insns);
    uint8_t *buf = calloc(1, len);
    cr_assert_not_null(buf);
    struct bpfg_pmsg_prog hdr = {.prog_id = prog_id, .insn_cnt = (uint32_t)n, .map_cnt = nmaps, .flags = prog_flags};
    memcpy(buf, &hdr, sizeof(hdr));
    memcpy(buf + sizeof(hdr), map_ids, 4 * nmaps);
    memcpy(buf + sizeof(hdr) + 4 * nmaps, insns, n * sizeof(*insns));
    int st = request(BPFG_PMSG_PROG, buf, len, -1, err, errlen);
    free(buf);
    return st;
}

static int send_prog(uint32_t prog_id, uint32_t map_id, const struct bpf_insn *insns, size_t n, char *err,
                     size_t errlen)
{
    return send_prog_maps(prog_id, &map_id, 1, insns, n, err, errlen);
}

/* Writes the stub (push index; jmp entry / resume: nop5; jmp site+5) near
 * victim_add and patches a jmp over its 5-byte nop, with the victim
 * stopped. Returns the resume address. */
static uint64_t patch_site(uint64_t site)
{
    struct bpfg_stopped st;
    char err[BPFG_ERRLEN];
    fx.site = site;
    cr_assert_eq(bpfg_stop_process(fx.pid, &st, err), 0, "stop: %s", err);
    cr_assert_eq(bpfg_mem_read(&st, site, fx.orig, sizeof(fx.orig)), 0);
    static const uint8_t nop5[5] = {0x0f, 0x1f, 0x44, 0x00, 0x00};
    cr_assert_arr_eq(fx.orig, nop5, 5, "victim_add does not start with the expected nop");
    cr_assert_eq(bpfg_remote_alloc_near(&st, site, 4096, &fx.stub, err), 0, "alloc: %s", err);
    uint8_t code[64];
    memset(code, 0xcc, sizeof(code));
    uint32_t idx = HOOK_INDEX;
    code[0] = 0x68;
    memcpy(code + 1, &idx, 4);
    static const uint8_t jmp_rip[6] = {0xff, 0x25, 0, 0, 0, 0};
    memcpy(code + 5, jmp_rip, 6);
    memcpy(code + 11, &fx.inj.uprobe_entry, 8);
    memcpy(code + 32, nop5, 5);
    memcpy(code + 37, jmp_rip, 6);
    uint64_t back = site + 5;
    memcpy(code + 43, &back, 8);
    cr_assert_eq(bpfg_mem_write(&st, fx.stub, code, sizeof(code)), 0);
    uint8_t jmp[5] = {0xe9};
    int32_t rel = (int32_t)((int64_t)fx.stub - (int64_t)(site + 5));
    memcpy(jmp + 1, &rel, 4);
    cr_assert_eq(bpfg_mem_write(&st, site, jmp, sizeof(jmp)), 0);
    fx.patched = true;
    bpfg_resume_process(&st, NULL);
    return fx.stub + 32;
}

static void send_hook(uint32_t kind, uint32_t prog_id, uint64_t resume)
{
    struct bpfg_pmsg_hook h = {
        .hook_index = HOOK_INDEX, .kind = kind, .prog_id = prog_id, .site = fx.site, .resume = resume};
    char err[256];
    if (kind == BPFG_HOOK_URETPROBE) {
        /* the return trampolines first (no unwinder to register with) */
        struct bpfg_pmsg_unwind u = {0};
        cr_assert_eq(request(BPFG_PMSG_UNWIND, &u, sizeof(u), -1, err, sizeof(err)), 0, "UNWIND: %s", err);
    }
    cr_assert_eq(request(BPFG_PMSG_HOOK, &h, sizeof(h), -1, err, sizeof(err)), 0, "HOOK: %s", err);
}

/* Lets the victim make n more calls and waits for them. */
static void run_calls(uint64_t n)
{
    uint64_t want = fx.sh->calls + n;
    __atomic_store_n(&fx.sh->claimed, fx.sh->calls, __ATOMIC_RELEASE);
    __atomic_store_n(&fx.sh->target, want, __ATOMIC_RELEASE);
    uint64_t t0 = now_ms();
    while (__atomic_load_n(&fx.sh->calls, __ATOMIC_ACQUIRE) < want && now_ms() - t0 < TIMEOUT_MS)
        usleep(500);
    cr_assert_eq(fx.sh->calls, want, "victim stalled at %llu of %llu calls (alive: %d)",
                 (unsigned long long)fx.sh->calls, (unsigned long long)want, kill(fx.pid, 0) == 0);
}

/* Restores the site, detaches the payload, unloads it and frees the stub;
 * checks the text is as before and the victim runs on. */
static void restore_site(void)
{
    struct bpfg_stopped st;
    char err[BPFG_ERRLEN];
    if (!fx.patched)
        return;
    cr_assert_eq(bpfg_stop_process(fx.pid, &st, err), 0, "stop: %s", err);
    cr_assert_eq(bpfg_mem_write(&st, fx.site, fx.orig, sizeof(fx.orig)), 0);
    bpfg_resume_process(&st, NULL);
}

static uint32_t wait_state(uint32_t want, char *msg, size_t msglen)
{
    uint32_t state = 0;
    uint64_t t0 = now_ms();
    while (now_ms() - t0 < TIMEOUT_MS) {
        cr_assert_eq(bpfg_payload_status(fx.pid, &fx.inj, &state, msg, msglen), 0);
        if (state == want)
            break;
        usleep(1000);
    }
    return state;
}

/* Unloads the payload and the stub once its thread is gone; checks the
 * text is as before, nothing of the payload is left and the victim runs on. */
static void unload_and_check(void)
{
    struct bpfg_stopped st;
    char err[BPFG_ERRLEN] = "";
    int r = -EBUSY;
    /* EBUSY: a thread is still inside the payload; 1 s of tries was short under load */
    for (uint64_t t0 = now_ms(); r == -EBUSY && now_ms() - t0 < TIMEOUT_MS;) {
        cr_assert_eq(bpfg_stop_process(fx.pid, &st, err), 0, "stop: %s", err);
        r = bpfg_unload_payload(&st, &fx.inj, err);
        if (!r && fx.stub)
            r = bpfg_remote_free(&st, fx.stub, 4096, err);
        uint8_t now[VICTIM_PROLOGUE_LEN];
        if (fx.patched) {
            cr_assert_eq(bpfg_mem_read(&st, fx.site, now, sizeof(now)), 0);
            cr_assert_arr_eq(now, fx.orig, sizeof(now), "victim text not restored");
        }
        bpfg_resume_process(&st, NULL);
        if (r == -EBUSY)
            usleep(10000);
    }
    cr_assert_eq(r, 0, "unload: %s", err);
    /* the payload's pages are gone from the victim */
    char maps_path[64], line[512];
    snprintf(maps_path, sizeof(maps_path), "/proc/%d/maps", (int)fx.pid);
    FILE *f = fopen(maps_path, "re");
    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            cr_assert(hi <= fx.inj.base || lo >= fx.inj.base + fx.inj.size, "payload still mapped: %s", line);
    }
    fclose(f);
    uint64_t wrong = fx.sh->wrong;
    fx.sh->mode = VICTIM_ADD;
    run_calls(1000);
    cr_assert_eq(fx.sh->wrong, wrong, "victim_add misbehaves after detach");
}

/* Restores the site, detaches the payload, unloads it and frees the stub. */
static void detach_all(void)
{
    char err[BPFG_ERRLEN];
    restore_site();
    cr_assert_eq(request(BPFG_PMSG_DETACH, NULL, 0, -1, err, sizeof(err)), 0, "DETACH: %s", err);
    cr_assert_eq(wait_state(BPFG_PAYLOAD_EXITED, NULL, 0), BPFG_PAYLOAD_EXITED);
    /* the payload closes its end */
    char c;
    struct pollfd p = {.fd = fx.conn, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, TIMEOUT_MS), 1);
    cr_assert_eq(recv(fx.conn, &c, 1, 0), 0);
    unload_and_check();
}

TestSuite(payload, .init = setup, .fini = teardown, .timeout = 60);

Test(payload, hello_ping_detach)
{
    attach_payload();
    char err[256];
    cr_assert_eq(request(BPFG_PMSG_PING, NULL, 0, -1, err, sizeof(err)), 0);
    /* errors come back as replies with a reason */
    struct bpfg_pmsg_unmap u = {.prog_id = 99};
    cr_assert_eq(request(BPFG_PMSG_UNMAP, &u, sizeof(u), -1, err, sizeof(err)), -ENOENT);
    cr_assert(strstr(err, "program 99") != NULL, "reason: %s", err);
    cr_assert_eq(request(77, NULL, 0, -1, err, sizeof(err)), -EOPNOTSUPP);
    run_calls(100);
    detach_all();
}

Test(payload, uprobe_counts_calls)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(1);
    struct bpf_insn prog[32];
    size_t n = 0;
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1);
    n += emit_add_to_map(prog + n, 0);
    n += emit_exit0(prog + n);
    char err[256];
    cr_assert_eq(send_prog(10, 1, prog, n, err, sizeof(err)), 0, "PROG: %s", err);

    run_calls(100);
    uint64_t resume = patch_site(fx.sh->func);
    cr_assert_eq(counter(m, 0), 0);
    send_hook(BPFG_HOOK_UPROBE, 10, resume);
    for (int round = 1; round <= 3; round++) {
        run_calls(5000);
        cr_assert_eq(counter(m, 0), 5000ull * (uint64_t)round, "round %d", round);
    }
    cr_assert_eq(fx.sh->wrong, 0, "hooked victim_add returned wrong results");

    /* unhook: programs stop, the patched site still works */
    struct bpfg_pmsg_unhook uh = {.hook_index = HOOK_INDEX};
    cr_assert_eq(request(BPFG_PMSG_UNHOOK, &uh, sizeof(uh), -1, err, sizeof(err)), 0);
    run_calls(1000);
    cr_assert_eq(counter(m, 0), 15000);
    /* a map used by a loaded program cannot go */
    struct bpfg_pmsg_unmap um = {.map_id = 1};
    cr_assert_eq(request(BPFG_PMSG_UNMAP, &um, sizeof(um), -1, err, sizeof(err)), -EBUSY);
    send_hook(BPFG_HOOK_UPROBE, 10, resume);
    run_calls(10);
    cr_assert_eq(counter(m, 0), 15010);
    detach_all();
    cr_assert_eq(counter(m, 0), 15010, "program still runs after detach");
    bpfg_map_close(m);
}

Test(payload, uretprobe_sees_return_value)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(2);
    struct bpf_insn prog[32];
    size_t n = 0;
    /* r6 = PT_REGS_RC(ctx) */
    prog[n++] = INSN(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_6, BPF_REG_1, 0, offsetof(struct bpfg_pt_regs, ax));
    prog[n - 1].off = offsetof(struct bpfg_pt_regs, ax);
    prog[n - 1].imm = 0;
    n += emit_add_to_map(prog + n, 1);
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1);
    n += emit_add_to_map(prog + n, 2);
    n += emit_exit0(prog + n);
    char err[256];
    cr_assert_eq(send_prog(20, 2, prog, n, err, sizeof(err)), 0, "PROG: %s", err);

    run_calls(10);
    uint64_t resume = patch_site(fx.sh->func);
    send_hook(BPFG_HOOK_URETPROBE, 20, resume);
    uint64_t sum0 = fx.sh->sum_ret;
    run_calls(3000);
    cr_assert_eq(counter(m, 2), 3000);
    cr_assert_eq(counter(m, 1), fx.sh->sum_ret - sum0, "return values seen by the program differ: %llu vs %llu",
                 (unsigned long long)counter(m, 1), (unsigned long long)(fx.sh->sum_ret - sum0));
    cr_assert_eq(fx.sh->wrong, 0);
    /* every return went through the trampoline and its entry is gone */
    detach_all();
    bpfg_map_close(m);
}

Test(payload, override_return_skips_function)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(3);
    struct bpf_insn prog[32];
    size_t n = 0;
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1);
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_7, BPF_REG_1, 0, 0);
    n += emit_add_to_map(prog + n, 0);
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_7, 0, 0);
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_2, 0, 0, 4242);
    prog[n++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_override_return);
    n += emit_exit0(prog + n);
    char err[256];
    cr_assert_eq(send_prog(30, 3, prog, n, err, sizeof(err)), 0, "PROG: %s", err);
    run_calls(10);
    uint64_t resume = patch_site(fx.sh->func);
    send_hook(BPFG_HOOK_UPROBE, 30, resume);
    run_calls(500);
    cr_assert_eq(counter(m, 0), 500);
    cr_assert_eq(fx.sh->wrong, 500, "override_return did not replace the result");
    cr_assert_eq(fx.sh->last_ret, 4242);
    detach_all();
    bpfg_map_close(m);
}

Test(payload, bad_program_is_refused_with_reason)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(4);
    struct bpf_insn prog[4];
    prog[0] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, 200); /* no such helper */
    size_t n = 1 + emit_exit0(prog + 1);
    char err[256];
    cr_assert_eq(send_prog(40, 4, prog, n, err, sizeof(err)), -EINVAL);
    cr_assert(strstr(err, "unknown helper") != NULL, "reason: %s", err);
    /* a map id that was never sent */
    prog[0] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0);
    cr_assert_eq(send_prog(41, 99, prog, n, err, sizeof(err)), -ENOENT);
    cr_assert(strstr(err, "map 99") != NULL, "reason: %s", err);
    detach_all();
    bpfg_map_close(m);
}

/* uretprobe program: key 1 += PT_REGS_RC(ctx), key 2 += 1 */
static void load_return_counter(uint32_t prog_id, uint32_t map_id)
{
    struct bpf_insn prog[32];
    size_t n = 0;
    prog[n++] = INSN(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_6, BPF_REG_1, offsetof(struct bpfg_pt_regs, ax), 0);
    n += emit_add_to_map(prog + n, 1);
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1);
    n += emit_add_to_map(prog + n, 2);
    n += emit_exit0(prog + n);
    char err[256];
    cr_assert_eq(send_prog(prog_id, map_id, prog, n, err, sizeof(err)), 0, "PROG: %s", err);
}

Test(payload, uretprobe_on_many_threads)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(5);
    load_return_counter(50, 5);
    uint64_t resume = patch_site(fx.sh->func);
    send_hook(BPFG_HOOK_URETPROBE, 50, resume);
    fx.sh->mode = VICTIM_THREADS;
    uint64_t sum0 = fx.sh->sum_ret;
    run_calls(20000);
    cr_assert_eq(counter(m, 2), 20000);
    cr_assert_eq(counter(m, 1), fx.sh->sum_ret - sum0);
    cr_assert_eq(fx.sh->wrong, 0);
    detach_all();
    bpfg_map_close(m);
}

Test(payload, uretprobe_recursion_longjmp_and_overflow)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(6);
    load_return_counter(60, 6);
    uint64_t resume = patch_site(fx.sh->rec_func);
    send_hook(BPFG_HOOK_URETPROBE, 60, resume);

    /* depth 20: 21 nested frames return k = 0..20 each */
    fx.sh->depth = 20;
    fx.sh->mode = VICTIM_REC;
    run_calls(200);
    cr_assert_eq(counter(m, 2), 200 * 21);
    cr_assert_eq(counter(m, 1), 200 * 210);
    cr_assert_eq(fx.sh->wrong, 0);

    /* every other call leaves all 21 frames by longjmp: their shadow
     * entries go stale and are dropped, the other calls return normally */
    fx.sh->mode = VICTIM_REC_LONGJMP;
    run_calls(200);
    cr_assert_eq(fx.sh->longjmps, 100);
    cr_assert_eq(counter(m, 2), 200 * 21 + 100 * 21);
    cr_assert_eq(counter(m, 1), 200 * 210 + 100 * 210);
    cr_assert_eq(fx.sh->wrong, 0);

    /* deeper than the shadow stack: the outer BPFG_SHADOW_DEPTH frames are
     * probed (returning 40 down to 9), the rest run unprobed */
    uint64_t returns = counter(m, 2), sum = counter(m, 1);
    fx.sh->depth = 40;
    fx.sh->mode = VICTIM_REC;
    run_calls(100);
    cr_assert_eq(BPFG_SHADOW_DEPTH, 32);
    cr_assert_eq(counter(m, 2) - returns, 100 * 32);
    cr_assert_eq(counter(m, 1) - sum, 100 * (40 + 9) * 32 / 2);
    cr_assert_eq(fx.sh->wrong, 0);
    detach_all();
    bpfg_map_close(m);
}

/* A word of the victim's memory, read while it runs. */
static uint64_t victim_word(uint64_t addr)
{
    uint64_t v = 0;
    struct iovec local = {&v, sizeof(v)}, remote = {(void *)(uintptr_t)addr, sizeof(v)};
    cr_assert_eq(process_vm_readv(fx.pid, &local, 1, &remote, 1, 0), (ssize_t)sizeof(v), "read 0x%llx: %s",
                 (unsigned long long)addr, strerror(errno));
    return v;
}

/* Every thread returns through the trampoline of its own thread slot
 * (payload_abi.h: BPFG_UNWIND_RET), the return path taking the slot from
 * it: rounds of 8 threads alive at once, the later rounds on the TCBs (so
 * the thread slots and trampolines) glibc hands on from the first. */
Test(payload, uretprobe_trampoline_per_thread_slot)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(11);
    load_return_counter(110, 11);
    uint64_t resume = patch_site(fx.sh->ra_func);
    send_hook(BPFG_HOOK_URETPROBE, 110, resume);
    fx.sh->mode = VICTIM_SLOTS;
    run_calls(VICTIM_SLOT_ROUNDS);
    uint64_t per_round = (uint64_t)VICTIM_SLOT_THREADS * VICTIM_SLOT_CALLS;
    cr_assert_eq(counter(m, 2), VICTIM_SLOT_ROUNDS * per_round, "the uretprobe counted every return");
    cr_assert_eq(counter(m, 1), fx.sh->ra_sum, "the programs saw the values victim_ra returned");

    uint64_t ret0 = victim_word(fx.hello.uret_trampolines);
    cr_assert_neq(ret0, 0);
    unsigned reused = 0;
    for (int r = 0; r < VICTIM_SLOT_ROUNDS; r++) {
        for (int k = 0; k < VICTIM_SLOT_THREADS; k++) {
            const volatile struct victim_slot_rec *rec = &fx.sh->slots[r][k];
            cr_assert_eq(rec->changed, 0, "round %d thread %d: one trampoline for all its calls", r, k);
            uint64_t d = rec->ra - ret0;
            cr_assert(d % BPFG_UNWIND_ENTRY == 0 && d / BPFG_UNWIND_ENTRY < BPFG_MAX_THREADS,
                      "round %d thread %d returned through 0x%llx, no trampoline", r, k, (unsigned long long)rec->ra);
            uint64_t slot = d / BPFG_UNWIND_ENTRY;
            uint64_t owner = victim_word(fx.hello.thread_table + slot * sizeof(struct bpfg_thread_slot));
            cr_assert_eq(owner, rec->tp, "round %d thread %d: trampoline %llu names thread slot %llu, its own", r, k,
                         (unsigned long long)slot, (unsigned long long)slot);
            for (int j = 0; j < k; j++)
                cr_assert_neq(fx.sh->slots[r][j].ra, rec->ra, "round %d: threads %d and %d share a trampoline", r, j,
                              k);
            for (int j = 0; r > 0 && j < VICTIM_SLOT_THREADS; j++)
                if (fx.sh->slots[0][j].tp == rec->tp) {
                    cr_assert_eq(fx.sh->slots[0][j].ra, rec->ra, "a reused TCB keeps its slot's trampoline");
                    reused++;
                }
        }
    }
    cr_assert_gt(reused, 0, "no later thread got a first-round TCB: the slot reuse was not exercised");
    detach_all();
    bpfg_map_close(m);
}

/* Program A: stores pid_tgid (key 1) and the result of a probe_read of a
 * bad address (key 3), prints "hit %d" with the first argument, then tail
 * calls program B through a PROG_ARRAY; its fallback adds 1000 to key 4.
 * Program B: key 2 += 1. */
Test(payload, helpers_tail_call_trace_and_fault_safe_reads)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(7);
    struct bpfg_map_spec spec = {.type = BPF_MAP_TYPE_PROG_ARRAY, .key_size = 4, .value_size = 4, .max_entries = 4};
    struct bpfg_map *pa;
    cr_assert_eq(bpfg_map_create(&spec, &pa), 0);
    struct bpfg_pmsg_map mb = {.map_id = 8};
    char err[256];
    cr_assert_eq(request(BPFG_PMSG_MAP, &mb, sizeof(mb), bpfg_map_fd(pa), err, sizeof(err)), 0, "%s", err);

    struct bpf_insn b[16];
    size_t nb = 0;
    b[nb++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1);
    nb += emit_add_to_map(b + nb, 2);
    nb += emit_exit0(b + nb);
    cr_assert_eq(send_prog(71, 7, b, nb, err, sizeof(err)), 0, "PROG B: %s", err);
    uint32_t k0 = 0, idb = 71;
    cr_assert_eq(bpfg_map_update_copy(pa, &k0, &idb, 0), 0);

    struct bpf_insn a[64];
    size_t n = 0;
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_6, BPF_REG_1, 0, 0);
    a[n++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_current_pid_tgid);
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_7, BPF_REG_0, 0, 0);
    n += emit_map_op(a + n, 0, 1, BPF_REG_7, false);
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_10, 0, 0);
    a[n++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, -16);
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_2, 0, 0, 8);
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_3, 0, 0, 16); /* unmapped */
    a[n++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_probe_read_user);
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_7, BPF_REG_0, 0, 0);
    n += emit_map_op(a + n, 0, 3, BPF_REG_7, false);
    /* "hit %d\0" on the stack */
    a[n++] = INSN(BPF_LD | BPF_IMM | BPF_DW, BPF_REG_1, 0, 0, 0x20746968);
    a[n++] = INSN(0, 0, 0, 0, 0x00006425);
    a[n++] = INSN(BPF_STX | BPF_MEM | BPF_DW, BPF_REG_10, BPF_REG_1, -24, 0);
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_10, 0, 0);
    a[n++] = INSN(BPF_ALU64 | BPF_ADD | BPF_K, BPF_REG_1, 0, 0, -24);
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_2, 0, 0, 8);
    a[n++] = INSN(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_3, BPF_REG_6, offsetof(struct bpfg_pt_regs, di), 0);
    a[n++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_trace_printk);
    /* tail call */
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_X, BPF_REG_1, BPF_REG_6, 0, 0);
    a[n++] = INSN(BPF_LD | BPF_IMM | BPF_DW, BPF_REG_2, BPF_PSEUDO_MAP_IDX, 0, 1);
    a[n++] = INSN(0, 0, 0, 0, 0);
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_3, 0, 0, 0);
    a[n++] = INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_tail_call);
    a[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1000);
    n += emit_add_to_map(a + n, 4);
    n += emit_exit0(a + n);
    uint32_t ids[2] = {7, 8};
    cr_assert_eq(send_prog_maps(70, ids, 2, a, n, err, sizeof(err)), 0, "PROG A: %s", err);

    uint64_t resume = patch_site(fx.sh->func);
    send_hook(BPFG_HOOK_UPROBE, 70, resume);
    run_calls(50);
    uint64_t last_arg = fx.sh->calls - 1;
    cr_assert_eq(counter(m, 2), 50, "tail-called program did not run");
    cr_assert_eq(counter(m, 4), 0, "the fallback after a successful tail call ran");
    cr_assert_eq(counter(m, 1), ((uint64_t)fx.pid << 32) | (uint64_t)fx.pid);
    cr_assert_eq((int64_t)counter(m, 3), -EFAULT);
    cr_assert_eq(fx.sh->wrong, 0);

    /* an empty prog array slot: the tail call fails and the fallback runs */
    cr_assert_eq(bpfg_map_delete_copy(pa, &k0), 0);
    run_calls(5);
    cr_assert_eq(counter(m, 2), 50);
    cr_assert_eq(counter(m, 4), 5000);

    /* trace lines arrive as TRACE messages; a PING flushes them */
    uint64_t t0 = now_ms();
    char want[64];
    snprintf(want, sizeof(want), "hit %llu", (unsigned long long)(last_arg + 5));
    while (now_ms() - t0 < TIMEOUT_MS && (fx.traces < 55 || strcmp(fx.last_trace, want) != 0)) {
        cr_assert_eq(request(BPFG_PMSG_PING, NULL, 0, -1, err, sizeof(err)), 0);
        usleep(10000);
    }
    cr_assert_eq(fx.traces, 55);
    cr_assert_str_eq(fx.last_trace, want);
    detach_all();
    bpfg_map_close(pa);
    bpfg_map_close(m);
}

Test(payload, wrong_server_uid_is_refused)
{
    inject(getuid() + 1);
    char msg[128] = "", want[128];
    cr_assert_eq(wait_state(BPFG_PAYLOAD_FAILED, msg, sizeof(msg)), BPFG_PAYLOAD_FAILED, "state: %s", msg);
    snprintf(want, sizeof(want), "server socket owned by uid %u, expected %u", getuid(), getuid() + 1);
    cr_assert_str_eq(msg, want);
    /* the connection was made and dropped without a word */
    int c = accept4(fx.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c >= 0) {
        char b;
        struct pollfd p = {.fd = c, .events = POLLIN};
        cr_assert_eq(poll(&p, 1, TIMEOUT_MS), 1);
        cr_assert_eq(recv(c, &b, 1, 0), 0, "payload talked to an untrusted server");
        close(c);
    }
    unload_and_check();
}

/* A server again on the socket path (the first one was unlinked): accepts
 * the payload's reconnection and reads its HELLO (BPFG_HELLO_F_RECONNECT). */
static void serve_again(void)
{
    fx.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fx.path);
    cr_assert_eq(bind(fx.listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(listen(fx.listen_fd, 4), 0);
    struct pollfd p = {.fd = fx.listen_fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, TIMEOUT_MS), 1, "the orphaned payload reconnects");
    fx.conn = accept4(fx.listen_fd, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(fx.conn, 0);
    uint8_t body[4096];
    struct bpfg_pmsg_hdr h;
    cr_assert_eq(recv_pmsg(&h, body, sizeof(body)), BPFG_PMSG_HELLO);
    cr_assert(h.flags & BPFG_HELLO_F_RECONNECT, "a reconnection says so");
    cr_assert(h.flags & BPFG_HELLO_F_INERT, "and that its programs stopped");
}

/* The server goes (no process on the socket path): programs keep running,
 * then stop once the grace period ran out (hooks only resume); a server
 * that comes back gets the payload's reconnection and can detach it. */
Test(payload, losing_the_server_keeps_programs_for_the_grace_period)
{
    fx.orphan_grace_ms = 500;
    attach_payload();
    struct bpfg_map *m = send_counter_map(9);
    struct bpf_insn prog[32];
    size_t n = 0;
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1);
    n += emit_add_to_map(prog + n, 0);
    n += emit_exit0(prog + n);
    char err[256];
    cr_assert_eq(send_prog(90, 9, prog, n, err, sizeof(err)), 0, "PROG: %s", err);
    uint64_t resume = patch_site(fx.sh->func);
    send_hook(BPFG_HOOK_UPROBE, 90, resume);
    run_calls(100);
    cr_assert_eq(counter(m, 0), 100);
    unlink(fx.path);
    close(fx.listen_fd);
    close(fx.conn);
    fx.listen_fd = fx.conn = -1;
    cr_assert_eq(wait_state(BPFG_PAYLOAD_ORPHAN, NULL, 0), BPFG_PAYLOAD_ORPHAN);
    run_calls(100);
    cr_assert_eq(counter(m, 0), 200, "programs run while the server is away");
    cr_assert_eq(wait_state(BPFG_PAYLOAD_INERT, NULL, 0), BPFG_PAYLOAD_INERT);
    run_calls(1000);
    cr_assert_eq(counter(m, 0), 200, "inert: the site resumes, no program runs");
    cr_assert_eq(fx.sh->wrong, 0);
    serve_again();
    detach_all();
    bpfg_map_close(m);
}

/* Checked mode: the map value (a registered region) is writable, a wild
 * store stops the program instead of crashing the target. */
Test(payload, checked_mode_stops_wild_stores)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(10);
    struct bpf_insn prog[32];
    size_t n = 0;
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1);
    n += emit_add_to_map(prog + n, 0);
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_1, 0, 0, 16);
    prog[n++] = INSN(BPF_ST | BPF_MEM | BPF_DW, BPF_REG_1, 0, 0, 1); /* *(u64 *)16 = 1 */
    prog[n++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1);
    n += emit_add_to_map(prog + n, 1); /* never reached */
    n += emit_exit0(prog + n);
    char err[256];
    prog_flags = BPFG_PROG_F_CHECKED;
    int st = send_prog(100, 10, prog, n, err, sizeof(err));
    prog_flags = 0;
    cr_assert_eq(st, 0, "PROG: %s", err);
    uint64_t resume = patch_site(fx.sh->func);
    send_hook(BPFG_HOOK_UPROBE, 100, resume);
    run_calls(300);
    cr_assert_eq(counter(m, 0), 300);
    cr_assert_eq(counter(m, 1), 0, "the program went on after a wild store");
    cr_assert_eq(fx.sh->wrong, 0);
    detach_all();
    bpfg_map_close(m);
}

/* ---- native code (PROG_CODE): compiled here for this victim ---- */

static struct bpfg_pmsg_map_reply code_map_addr;

static int resolve_victim(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    (void)user, (void)imm1;
    if (src_reg != BPF_PSEUDO_MAP_IDX || imm0 != 0)
        return -EINVAL;
    *value = code_map_addr.handle;
    return 0;
}

/* Compiles insns with the x86 JIT against the victim's map address and
 * sends them as PROG_CODE (memfd). fd_override >= -1 replaces the fd. */
static int send_prog_code(uint32_t prog_id, uint32_t map_id, const struct bpf_insn *insns, size_t n, int fd_override,
                          char *err, size_t errlen)
{
    struct bpfg_x86jit_opts opts = {
        .resolver = resolve_victim, .has_unwind = true, .unwind_id = BPF_FUNC_tail_call, .per_run_user = true};
    memset(opts.helpers, 0xff, sizeof(opts.helpers));
    struct bpfg_x86jit_code code;
    char why[256];
    cr_assert_eq(bpfg_x86jit_compile(insns, n, &opts, &code, why, sizeof(why)), 0, "compile: %s", why);
    int fd = memfd_create("code", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, code.buf, code.len), (ssize_t)code.len);
    struct bpfg_pmsg_prog_code pc = {.engine = BPFG_ENGINE_X86, .code_len = (uint32_t)code.len};
    size_t len = sizeof(pc) + sizeof(struct bpfg_pmsg_prog) + 4 + n * sizeof(*insns);
    uint8_t *buf = calloc(1, len);
    cr_assert_not_null(buf);
    struct bpfg_pmsg_prog hdr = {.prog_id = prog_id, .insn_cnt = (uint32_t)n, .map_cnt = 1, .flags = prog_flags};
    memcpy(buf, &pc, sizeof(pc));
    memcpy(buf + sizeof(pc), &hdr, sizeof(hdr));
    memcpy(buf + sizeof(pc) + sizeof(hdr), &map_id, 4);
    memcpy(buf + sizeof(pc) + sizeof(hdr) + 4, insns, n * sizeof(*insns));
    int st = request(BPFG_PMSG_PROG_CODE, buf, len, fd_override >= -1 ? fd_override : fd, err, errlen);
    free(buf);
    close(fd);
    bpfg_x86jit_code_free(&code);
    return st;
}

Test(payload, native_code_runs_on_hooks)
{
    attach_payload();
    struct bpfg_map *m = send_counter_map(5);
    cr_assert_eq(last_reply_len, sizeof(struct bpfg_pmsg_map_reply), "MAP reply carries the map's addresses");
    memcpy(&code_map_addr, last_reply, sizeof(code_map_addr));
    cr_assert_neq(code_map_addr.handle, 0);
    cr_assert_neq(code_map_addr.value_area, 0, "an array's value area");
    cr_assert_eq(code_map_addr.value_size, 8);

    /* entry: counts[0] += 1; return: counts[1] += PT_REGS_RC */
    struct bpf_insn entry[32], ret[32];
    size_t ne = 0, nr = 0;
    entry[ne++] = INSN(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_6, 0, 0, 1);
    ne += emit_add_to_map(entry + ne, 0);
    ne += emit_exit0(entry + ne);
    ret[nr++] = INSN(BPF_LDX | BPF_MEM | BPF_DW, BPF_REG_6, BPF_REG_1, offsetof(struct bpfg_pt_regs, ax), 0);
    nr += emit_add_to_map(ret + nr, 1);
    nr += emit_exit0(ret + nr);
    char err[256];
    /* refused: no code fd, or a checked-mode program */
    cr_assert_eq(send_prog_code(50, 5, entry, ne, -1, err, sizeof(err)), -EBADF, "no fd: %s", err);
    prog_flags = BPFG_PROG_F_CHECKED;
    cr_assert_eq(send_prog_code(50, 5, entry, ne, -2, err, sizeof(err)), -EINVAL, "checked: %s", err);
    cr_assert(strstr(err, "interpreter") != NULL, "%s", err);
    prog_flags = 0;
    cr_assert_eq(send_prog_code(50, 5, entry, ne, -2, err, sizeof(err)), 0, "PROG_CODE: %s", err);
    cr_assert_eq(send_prog_code(51, 5, ret, nr, -2, err, sizeof(err)), 0, "PROG_CODE: %s", err);
    /* the code is mapped r-x (never writable) in the victim, once per program */
    char maps_path[64], line[512];
    int rx = 0;
    snprintf(maps_path, sizeof(maps_path), "/proc/%d/maps", (int)fx.pid);
    FILE *f = fopen(maps_path, "re");
    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f))
        if (strstr(line, "memfd:code")) {
            cr_assert(strstr(line, " r-xp ") != NULL, "code mapping: %s", line);
            rx++;
        }
    fclose(f);
    cr_assert_eq(rx, 2, "two code mappings");

    run_calls(10);
    uint64_t resume = patch_site(fx.sh->func);
    send_hook(BPFG_HOOK_UPROBE, 50, resume);
    send_hook(BPFG_HOOK_URETPROBE, 51, resume);
    uint64_t sum0 = fx.sh->sum_ret;
    run_calls(4000);
    cr_assert_eq(counter(m, 0), 4000, "native entry program counts every call");
    cr_assert_eq(counter(m, 1), fx.sh->sum_ret - sum0, "native return program sees the return values");
    cr_assert_eq(fx.sh->wrong, 0);
    detach_all();
    bpfg_map_close(m);
}
