/* bpfgraft-exporter: serves bpfgraftd's statistics and the maps an
 * ebpf_exporter-style YAML config names as Prometheus metrics. */
#define _GNU_SOURCE /* accept4 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "attach.h"
#include "call.h"
#include "client.h"
#include "config.h"
#include "http.h"
#include "runtime.h"
#include "tables.h"

static const char usage_text[] =
    "usage: bpfgraft-exporter --config FILE [--listen HOST:PORT] [--socket PATH | --host URL]\n"
    "                         [--object FILE.bpf.o [--attach PID] [--target BINARY:FUNCTION]]\n"
    "  --config FILE     metrics: counters and histograms over maps (ebpf_exporter's YAML)\n"
    "  --listen ADDR     where /metrics is served (default :9435; port 0 picks one)\n"
    "  --socket PATH     bpfgraftd's control socket (default $BPFGRAFT_SOCKET or " BPFGRAFT_DEFAULT_SOCKET ")\n"
    "  --host URL        a remote bpfgraftd, as bpfgraft's --host (ssh://... or tcps://HOST:PORT;\n"
    "                    default $BPFGRAFT_HOST) with --tls-cert, --tls-key, --tls-ca for tcps://\n"
    "  --namespace NS    prefix of the config's metric names (default ebpf_exporter; \"\" for none)\n"
    "  --object FILE     load this object at start (unloaded at exit); the config's object: too\n"
    "  --attach PID      attach its programs to PID (detached at exit unless attached before)\n"
    "  --target T        where programs whose section names no function go (BINARY:FUNCTION)\n";

struct options {
    const char *config, *listen, *socket, *host, *ns, *object, *target;
    struct cli_tls_files tls;
    long long attach;
};

struct exporter {
    struct cli_conn conn;
    struct exp_config cfg;
    struct exp_tables *tables;
    struct exp_attachment own;
    char last_err[1024]; /* the last call failure reported */
};

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int usage_error(const char *what)
{
    fprintf(stderr, "bpfgraft-exporter: %s\n%s", what, usage_text);
    return 2;
}

static void default_options(struct options *o)
{
    memset(o, 0, sizeof(*o));
    o->listen = ":9435";
    o->ns = "ebpf_exporter";
    o->socket = getenv("BPFGRAFT_SOCKET");
    if (!o->socket || !*o->socket)
        o->socket = BPFGRAFT_DEFAULT_SOCKET;
    o->host = getenv("BPFGRAFT_HOST");
    if (o->host && !*o->host)
        o->host = NULL;
    o->tls = (struct cli_tls_files){getenv("BPFGRAFT_TLS_CERT"), getenv("BPFGRAFT_TLS_KEY"), getenv("BPFGRAFT_TLS_CA")};
}

static int set_option(struct options *o, int opt, const char *arg)
{
    char *end;
    switch (opt) {
    case 'c': o->config = arg; return 0;
    case 'l': o->listen = arg; return 0;
    case 's': o->socket = arg; return 0;
    case 'H': o->host = arg; return 0;
    case 'n': o->ns = arg; return 0;
    case 'o': o->object = arg; return 0;
    case 't': o->target = arg; return 0;
    case 'C': o->tls.cert = arg; return 0;
    case 'K': o->tls.key = arg; return 0;
    case 'A': o->tls.ca = arg; return 0;
    case 'p':
        o->attach = strtoll(arg, &end, 10);
        return *end || o->attach <= 0 ? usage_error("--attach needs a process id") : 0;
    case 'h': fputs(usage_text, stdout); return 1;
    default: return 2; /* getopt said why */
    }
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longs[] = {
        {"config", 1, NULL, 'c'},    {"listen", 1, NULL, 'l'},  {"socket", 1, NULL, 's'}, {"host", 1, NULL, 'H'},
        {"namespace", 1, NULL, 'n'}, {"object", 1, NULL, 'o'},  {"attach", 1, NULL, 'p'}, {"target", 1, NULL, 't'},
        {"tls-cert", 1, NULL, 'C'},  {"tls-key", 1, NULL, 'K'}, {"tls-ca", 1, NULL, 'A'}, {"help", 0, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    default_options(o);
    int opt, r;
    while ((opt = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        if ((r = set_option(o, opt, optarg)))
            return r;
    }
    if (optind < argc)
        return usage_error("unexpected arguments");
    if (!o->config)
        return usage_error("--config FILE is required");
    return 0;
}

/* One call of a scrape; a failure is reported when it differs from the last. */
static const msgpack_object *scrape_call(struct exporter *ex, const char *method, struct bpfg_rpc_msg *resp)
{
    char why[1024];
    if (exp_call(&ex->conn, method, NULL, 0, resp, why, sizeof(why)) == 0)
        return &resp->params;
    if (strcmp(why, ex->last_err))
        fprintf(stderr, "bpfgraft-exporter: %s: %s\n", method, why);
    snprintf(ex->last_err, sizeof(ex->last_err), "%s", why);
    memset(resp, 0, sizeof(*resp));
    return NULL;
}

static void render(void *ctx, struct sbuf *body)
{
    struct exporter *ex = ctx;
    struct bpfg_rpc_msg r[4];
    struct exp_runtime_state s;
    s.status = scrape_call(ex, "server.status", &r[0]);
    s.progs = s.status ? scrape_call(ex, "prog.list", &r[1]) : NULL;
    s.targets = s.status ? scrape_call(ex, "target.list", &r[2]) : NULL;
    s.maps = s.status ? scrape_call(ex, "map.list", &r[3]) : NULL;
    if (s.status && s.progs && s.targets && s.maps && ex->last_err[0]) {
        fprintf(stderr, "bpfgraft-exporter: bpfgraftd answers again\n");
        ex->last_err[0] = 0;
    }
    exp_runtime_write(&s, body);
    if (s.maps) /* else bpfgraft_up 0 says why they are missing */
        exp_tables_write(ex->tables, &ex->conn, s.maps, ex->own.object, body);
    const msgpack_object *got[4] = {s.status, s.progs, s.targets, s.maps};
    for (int i = 0; i < 4; i++) {
        if (got[i])
            bpfg_rpc_msg_release(&r[i]);
    }
}

static void install_signals(void)
{
    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: accept() returns */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void serve(int lfd, struct exporter *ex)
{
    while (!g_stop) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            exp_http_serve(fd, render, ex);
        } else if (errno != EINTR && errno != ECONNABORTED) {
            perror("bpfgraft-exporter: accept");
            break;
        }
    }
}

/* The object to load: --object, else the config's (then its attach/target). */
static int own_object(struct exporter *ex, const struct options *o)
{
    const char *path = o->object ? o->object : ex->cfg.object;
    int64_t pid = o->attach ? o->attach : ex->cfg.attach_pid;
    const char *target = o->target ? o->target : ex->cfg.target;
    char err[2048];
    if (!path) {
        if (pid)
            fprintf(stderr, "bpfgraft-exporter: --attach needs --object (or object: in the config)\n");
        return pid ? -1 : 0;
    }
    if (exp_attach_setup(&ex->conn, path, pid, target, &ex->own, err, sizeof(err)) == 0)
        return 0;
    fprintf(stderr, "bpfgraft-exporter: %s\n", err);
    return -1;
}

static int run(const struct options *o, struct exporter *ex)
{
    char err[1024], where[300];
    int lfd = exp_http_listen(o->listen, err, sizeof(err));
    if (lfd < 0) {
        fprintf(stderr, "bpfgraft-exporter: %s\n", err);
        return 1;
    }
    cli_init(&ex->conn, o->socket, o->host, &o->tls);
    int rc = 1;
    if (!(ex->tables = exp_tables_new(&ex->cfg, o->ns)))
        fprintf(stderr, "bpfgraft-exporter: out of memory\n");
    else if (own_object(ex, o) == 0) {
        exp_http_bound(lfd, where, sizeof(where));
        fprintf(stderr, "bpfgraft-exporter: serving http://%s/metrics\n", where);
        serve(lfd, ex);
        rc = 0;
    }
    exp_attach_teardown(&ex->conn, &ex->own);
    exp_tables_free(ex->tables);
    cli_close(&ex->conn);
    close(lfd);
    return rc;
}

int main(int argc, char **argv)
{
    struct options o;
    struct exporter ex = {0};
    char err[1024];
    int r = parse_options(argc, argv, &o);
    if (r)
        return r == 1 ? 0 : 2;
    if (exp_config_load(o.config, &ex.cfg, err, sizeof(err))) {
        fprintf(stderr, "bpfgraft-exporter: %s\n", err);
        return 2;
    }
    install_signals();
    r = run(&o, &ex);
    exp_config_free(&ex.cfg);
    return r;
}
