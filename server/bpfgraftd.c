/* bpfgraftd: the bpfgraft server. Owns every loaded object, program and
 * map and serves the control socket.
 *
 *   bpfgraftd [--foreground | --daemon] [--socket PATH] [--socket-mode MODE]
 *             [--socket-group GROUP] [--log FILE] [--debug] [--engine llvm|x86|interp|tiered]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "execwatch.h"
#include "log.h"
#include "offload.h"
#include "progcheck.h"
#include "server.h"
#include "syscalls.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: bpfgraftd [options]\n"
            "  -f, --foreground        stay in the foreground, log to stderr (default)\n"
            "  -d, --daemon            detach and run in the background\n"
            "  -s, --socket PATH       control socket (default %s)\n"
            "  -m, --socket-mode MODE  socket permissions, octal (default 0600)\n"
            "  -g, --socket-group GRP  group owning the socket\n"
            "  -l, --log FILE          log file (default: stderr; /dev/null with --daemon)\n"
            "  -p, --payload FILE      the payload injected into targets (default: $BPFGRAFT_PAYLOAD,\n"
            "                          else " BPFGRAFT_PAYLOAD_REL " or, in the build\n"
            "                          tree, ../lib/bpfgraft-payload.so, from this binary's directory)\n"
            "  -c, --cache-dir DIR     compiled-code cache (default /var/cache/bpfgraft)\n"
            "  -a, --jit-archive FILE  import code compiled ahead of time (bpfgraft compile)\n"
            "      --state-dir DIR     files kept for attached processes, e.g. the uretprobe\n"
            "                          trampolines' symbols gdb reads (default: the socket's directory,\n"
            "                          " SRV_DEFAULT_STATE_DIR " for the default socket),\n"
            "                          and in DIR/restart what a restarted server needs\n"
            "      --orphan-grace SECS  payloads whose server is gone this long go inert: their\n"
            "                          hooks only resume (default 600; 0: never)\n"
            "      --takeover          replace the daemon running on --socket (an upgrade): take its\n"
            "                          sockets, let it exit leaving every target attached, adopt them;\n"
            "                          give the same --state-dir\n"
            "      --access FILE       roles of peers: read, operate, admin (default " ACCESS_DEFAULT_FILE "\n"
            "                          if it exists; without one every peer is admin); reread on SIGHUP\n"
            "      --audit-log FILE    one JSON line per state-changing call, also to syslog (default\n"
            "                          " AUDIT_DEFAULT_FILE " for the default socket, else\n"
            "                          STATE_DIR/audit.log)\n"
            "      --listen tcp://ADDR:PORT  also serve TLS 1.3 clients with a certificate signed by\n"
            "                          --tls-client-ca (no plaintext TCP); needs the next three\n"
            "      --tls-cert FILE     the server's certificate (PEM, chain); reread on SIGHUP\n"
            "      --tls-key FILE      its private key (PEM); reread on SIGHUP\n"
            "      --tls-client-ca FILE  the CA clients' certificates must be signed by; reread on SIGHUP\n"
            "  -v, --debug             log every request error too\n"
            "      --verifier=kernel   also require the kernel's verifier to accept each program (root)\n"
            "      --engine ENGINE     how programs run in targets by default: llvm (default), x86,\n"
            "                          interp, or tiered (x86 at once, llvm swapped in after);\n"
            "                          unavailable engines fall back (llvm, x86, interp)\n"
            "      --syscall-rewrite=off  keep syscall hooks on the signal path (Syscall User\n"
            "                          Dispatch only); default on: hot sites are rewritten\n"
            "      --offload-kernel-uprobes  serve kernel uprobes that tools attach to managed\n"
            "                          processes in those processes (server/README.md); off by default\n"
            "      --catch-new-processes=off  tools' system-wide syscall tracepoints reach only\n"
            "                          managed processes; default on: also every process started\n"
            "                          later in bpfgraftd's mount namespace, caught at exec\n"
            "  -h, --help\n",
            SRV_DEFAULT_SOCKET);
}

/* The payload when no --payload: $BPFGRAFT_PAYLOAD, else the installed one
 * (BPFGRAFT_PAYLOAD_REL, relative to bindir), else the build tree's; the
 * installed path if there is none (attach will say so). */
static const char *default_payload(char *buf, size_t len)
{
    const char *env = getenv("BPFGRAFT_PAYLOAD");
    if (env && *env)
        return env;
    static const char *const rel[] = {BPFGRAFT_PAYLOAD_REL, "../lib/bpfgraft-payload.so"};
    char self[4000];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    self[n > 0 ? n : 0] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        snprintf(buf, len, "%s/%s", self, rel[i]);
        if (access(buf, R_OK) == 0)
            return buf;
    }
    snprintf(buf, len, "%s/%s", self, rel[0]);
    return buf;
}

/* An on|off option's value: 1, 0, or -1 (said on stderr). */
static int on_off(const char *option, const char *arg)
{
    if (!strcmp(arg, "on") || !strcmp(arg, "off"))
        return !strcmp(arg, "on");
    fprintf(stderr, "bpfgraftd: --%s takes 'on' or 'off'\n", option);
    return -1;
}

/* Classic double fork; the parent returns only once the child is serving,
 * so `bpfgraftd --daemon && bpfgraft status` works. */
static int daemonize(int *ready_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0) {
        char ok = 0;
        close(p[1]);
        ssize_t n = read(p[0], &ok, 1);
        if (n != 1 || ok != 1)
            fprintf(stderr, "bpfgraftd: the daemon failed to start (run with --foreground or see --log)\n");
        _exit(n == 1 && ok == 1 ? 0 : 1);
    }
    close(p[0]);
    if (setsid() < 0)
        return -errno;
    pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0)
        _exit(0);
    if (chdir("/") != 0)
        return -errno;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return -errno;
    dup2(null, STDIN_FILENO);
    dup2(null, STDOUT_FILENO);
    close(null);
    *ready_fd = p[1];
    return 0;
}

/* --takeover: the running daemon's sockets, once it has gone. */
static int take_over(struct srv_config *cfg, struct takeover *tk)
{
    char name[256], err[256];
    targets_listen_name(cfg->socket_path, name, sizeof(name));
    uint64_t t0 = server_now_ms();
    int r = takeover_run(cfg->socket_path, name, tk, err);
    if (r) {
        srv_log(SRV_ERROR, "--takeover: %s", err);
        fprintf(stderr, "bpfgraftd: --takeover: %s\n", err);
        return r;
    }
    srv_log(SRV_INFO, "took over from pid %d (it exited after %llu ms)", (int)tk->old_pid,
            (unsigned long long)(server_now_ms() - t0));
    cfg->takeover = tk;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"foreground", no_argument, NULL, 'f'},
        {"daemon", no_argument, NULL, 'd'},
        {"socket", required_argument, NULL, 's'},
        {"socket-mode", required_argument, NULL, 'm'},
        {"socket-group", required_argument, NULL, 'g'},
        {"log", required_argument, NULL, 'l'},
        {"debug", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"payload", required_argument, NULL, 'p'},
        {"cache-dir", required_argument, NULL, 'c'},
        {"jit-archive", required_argument, NULL, 'a'},
        {"verifier", required_argument, NULL, 'V'},
        {"engine", required_argument, NULL, 'E'},
        {"syscall-rewrite", required_argument, NULL, 'R'},
        {"state-dir", required_argument, NULL, 'S'},
        {"orphan-grace", required_argument, NULL, 'G'},
        {"takeover", no_argument, NULL, 'T'},
        {"access", required_argument, NULL, 'A'},
        {"audit-log", required_argument, NULL, 'L'},
        {"listen", required_argument, NULL, 'N'},
        {"tls-cert", required_argument, NULL, 'C'},
        {"tls-key", required_argument, NULL, 'K'},
        {"tls-client-ca", required_argument, NULL, 'U'},
        {"offload-kernel-uprobes", no_argument, NULL, 'O'},
        {"catch-new-processes", required_argument, NULL, 'W'},
        {0},
    };
    struct srv_config cfg = {
        .socket_path = SRV_DEFAULT_SOCKET, .socket_mode = 0600, .socket_gid = (gid_t)-1, .orphan_grace_ms = 600 * 1000};
    const char *log_path = NULL;
    bool daemon_mode = false, takeover = false;
    int c;

    while ((c = getopt_long(argc, argv, "fds:m:g:l:vhp:c:a:", opts, NULL)) != -1) {
        switch (c) {
        case 'f': daemon_mode = false; break;
        case 'd': daemon_mode = true; break;
        case 's': cfg.socket_path = optarg; break;
        case 'm': {
            char *end;
            unsigned long mode = strtoul(optarg, &end, 8);
            if (*end || mode > 0777) {
                fprintf(stderr, "bpfgraftd: bad socket mode '%s' (octal, e.g. 0660)\n", optarg);
                return 2;
            }
            cfg.socket_mode = (mode_t)mode;
            break;
        }
        case 'g': {
            struct group *g = getgrnam(optarg);
            if (!g) {
                fprintf(stderr, "bpfgraftd: no group named '%s'\n", optarg);
                return 2;
            }
            cfg.socket_gid = g->gr_gid;
            break;
        }
        case 'l': log_path = optarg; break;
        case 'p': cfg.payload_path = optarg; break;
        case 'c': cfg.cache_dir = optarg; break;
        case 'a': cfg.jit_archive = optarg; break;
        case 'S': cfg.state_dir = optarg; break;
        case 'G': {
            char *end;
            double secs = strtod(optarg, &end);
            if (*end || secs < 0 || secs > 4000000) {
                fprintf(stderr, "bpfgraftd: --orphan-grace takes seconds (e.g. 600, 0.5; 0: never)\n");
                return 2;
            }
            cfg.orphan_grace_ms = (uint32_t)(secs * 1000);
            break;
        }
        case 'v': srv_log_set_level(SRV_DEBUG); break;
        case 'T': takeover = true; break;
        case 'A': cfg.access_path = optarg; break;
        case 'L': cfg.audit_path = optarg; break;
        case 'N': cfg.listen_url = optarg; break;
        case 'C': cfg.tls_cert = optarg; break;
        case 'K': cfg.tls_key = optarg; break;
        case 'U': cfg.tls_client_ca = optarg; break;
        case 'O': offload_enable(true); break;
        case 'W': {
            int on = on_off("catch-new-processes", optarg);
            if (on < 0)
                return 2;
            execwatch_set_catch_all(on);
            break;
        }
        case 'V': {
            struct progcheck_options po;
            progcheck_get_options(&po);
            if (strcmp(optarg, "kernel") && strcmp(optarg, "builtin")) {
                fprintf(stderr, "bpfgraftd: --verifier takes 'kernel' or 'builtin'\n");
                return 2;
            }
            po.kernel_check = !strcmp(optarg, "kernel");
            progcheck_set_options(&po);
            break;
        }
        case 'R': {
            int on = on_off("syscall-rewrite", optarg);
            if (on < 0)
                return 2;
            syscalls_set_rewrite(on);
            break;
        }
        case 'E': {
            int engine = targets_engine_parse(optarg);
            if (engine < 0) {
                fprintf(stderr, "bpfgraftd: --engine takes 'llvm', 'x86', 'interp' or 'tiered'\n");
                return 2;
            }
            targets_set_default_engine(engine);
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "bpfgraftd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (!cfg.listen_url && (cfg.tls_cert || cfg.tls_key || cfg.tls_client_ca)) {
        fprintf(stderr, "bpfgraftd: --tls-cert, --tls-key and --tls-client-ca go with --listen tcp://ADDR:PORT\n");
        return 2;
    }
    if (cfg.socket_path[0] != '/') {
        fprintf(stderr, "bpfgraftd: the socket path must be absolute\n");
        return 2;
    }

    char payload[4096];
    if (!cfg.payload_path)
        cfg.payload_path = default_payload(payload, sizeof(payload));
    if (access(cfg.payload_path, R_OK) != 0)
        fprintf(stderr, "bpfgraftd: warning: payload %s: %s (attach will fail)\n", cfg.payload_path, strerror(errno));

    FILE *log = NULL;
    if (log_path) {
        log = fopen(log_path, "ae");
        if (!log) {
            fprintf(stderr, "bpfgraftd: cannot open log %s: %s\n", log_path, strerror(errno));
            return 1;
        }
        srv_log_set_file(log);
    }
    int ready_fd = -1;
    if (daemon_mode) {
        int err = daemonize(&ready_fd);
        if (err) {
            fprintf(stderr, "bpfgraftd: cannot daemonize: %s\n", strerror(-err));
            return 1;
        }
        /* Detached: nothing may keep the caller's terminal or pipes open;
         * log lines go to --log (or nowhere). */
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDERR_FILENO);
            close(null);
        }
    }
    signal(SIGPIPE, SIG_IGN);

    struct takeover tk;
    if (takeover && take_over(&cfg, &tk) != 0) {
        if (log)
            fclose(log);
        return 1;
    }
    struct server s;
    int err = server_init(&s, &cfg);
    if (takeover)
        free(tk.clients), tk.clients = NULL, tk.nclients = 0; /* their fds are the server's now */
    if (err) {
        if (!daemon_mode)
            fprintf(stderr, "bpfgraftd: cannot start on %s: %s\n", cfg.socket_path, strerror(-err));
        if (log)
            fclose(log);
        return 1;
    }
    if (ready_fd >= 0) {
        char ok = 1;
        if (write(ready_fd, &ok, 1) != 1)
            srv_log(SRV_WARN, "cannot signal readiness to the parent: %s", strerror(errno));
        close(ready_fd);
    }
    err = server_run(&s);
    server_destroy(&s);
    srv_log(SRV_INFO, "bpfgraftd exits");
    if (log)
        fclose(log);
    return err ? 1 : 0;
}
