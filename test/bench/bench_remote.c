/* Throwaway TLS certificates and sshd for the rpc suite's remote round trips. */
#define _GNU_SOURCE
#include "bench_remote.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { CA_CRT, SRV_CRT, SRV_KEY, CL_CRT, CL_KEY, SSH_CONFIG };

/* Runs a shell command built from fmt, its output discarded; 0 or -EIO. */
static int quiet(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int quiet(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    size_t n = strlen(cmd);
    snprintf(cmd + n, sizeof(cmd) - n, " >/dev/null 2>&1");
    return system(cmd) == 0 ? 0 : -EIO;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");
    if (!f)
        return -errno;
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    return bad ? -EIO : 0;
}

/* NAME.crt and NAME.key signed by the CA, with SAN san. */
static int issue(const struct bench_remote *r, const char *name, const char *cn, const char *san)
{
    char ext[128], text[160];
    snprintf(ext, sizeof(ext), "%s/%s.ext", r->dir, name);
    snprintf(text, sizeof(text), "subjectAltName=%s\n", san);
    int err = write_file(ext, text);
    if (!err)
        err = quiet("cd '%s' && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key "
                    "-out %s.csr -subj /CN=%s && openssl x509 -req -in %s.csr -CA ca.crt -CAkey ca.key "
                    "-set_serial %d -days 1 -out %s.crt -extfile %s.ext",
                    r->dir, name, name, cn, name, (int)getpid(), name, name);
    return err;
}

int bench_remote_pki(struct bench_remote *r)
{
    static const char *const names[] = {"ca.crt", "server.crt", "server.key", "client.crt", "client.key", "ssh_config"};
    memset(r, 0, sizeof(*r));
    r->sshd = -1;
    snprintf(r->dir, sizeof(r->dir), "/tmp/bpfgraft-bench-remote-XXXXXX");
    if (!mkdtemp(r->dir)) {
        int err = -errno;
        r->dir[0] = 0;
        return err;
    }
    for (int i = 0; i < 6; i++)
        snprintf(r->path[i], sizeof(r->path[i]), "%s/%s", r->dir, names[i]);
    r->files = (struct cli_tls_files){r->path[CL_CRT], r->path[CL_KEY], r->path[CA_CRT]};
    int err = quiet("cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                    "-keyout ca.key -out ca.crt -days 1 -subj /CN=bench-ca",
                    r->dir);
    if (!err)
        err = issue(r, "server", "bpfgraftd", "IP:127.0.0.1");
    if (!err)
        err = issue(r, "client", "bench", "DNS:bench.local");
    if (err)
        fprintf(stderr, "bench: the openssl CLI could not make test certificates in %s\n", r->dir);
    return err;
}

void bench_remote_listen_args(const struct bench_remote *r, int port, char *url, size_t len, const char **argv)
{
    snprintf(url, len, "tcp://127.0.0.1:%d", port);
    const char *args[] = {
        "--listen",      url, "--tls-cert", r->path[SRV_CRT], "--tls-key", r->path[SRV_KEY], "--tls-client-ca",
        r->path[CA_CRT], NULL};
    memcpy(argv, args, sizeof(args));
}

int bench_free_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int err =
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || getsockname(fd, (struct sockaddr *)&sa, &len) ? -errno : 0;
    close(fd);
    return err ? err : ntohs(sa.sin_port);
}

static int ssh_configs(struct bench_remote *r, const char *bindir)
{
    char path[128], text[1024];
    snprintf(path, sizeof(path), "%s/sshd_config", r->dir);
    snprintf(text, sizeof(text),
             "ListenAddress 127.0.0.1\nPort %d\nHostKey %s/host_key\nPidFile %s/sshd.pid\n"
             "AuthorizedKeysFile %s/client_key.pub\nPermitRootLogin prohibit-password\nPasswordAuthentication no\n"
             "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nSetEnv PATH=%s:/usr/sbin:/usr/bin:/bin\n",
             r->ssh_port, r->dir, r->dir, r->dir, bindir);
    int err = write_file(path, text);
    snprintf(text, sizeof(text),
             "Host *\n  IdentityFile %s/client_key\n  IdentitiesOnly yes\n  UserKnownHostsFile /dev/null\n"
             "  StrictHostKeyChecking no\n  BatchMode yes\n  LogLevel ERROR\n",
             r->dir);
    return err ? err : write_file(r->path[SSH_CONFIG], text);
}

static pid_t spawn_sshd(const struct bench_remote *r)
{
    char config[128];
    snprintf(config, sizeof(config), "%s/sshd_config", r->dir);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the bench */
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 1);
        dup2(null, 2);
    }
    /* argv[0] absolute: sshd re-executes itself by it */
    execl("/usr/sbin/sshd", "/usr/sbin/sshd", "-D", "-e", "-f", config, (char *)NULL);
    _exit(127);
}

/* Until sshd accepts on its port (10 s at most). */
static int wait_listening(const struct bench_remote *r)
{
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)r->ssh_port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < 1000; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        if (waitpid(r->sshd, NULL, WNOHANG) == r->sshd)
            return -ECHILD;
        usleep(10000);
    }
    return -ETIMEDOUT;
}

int bench_remote_sshd(struct bench_remote *r, const char *bindir, char *err, size_t errlen)
{
    if (getuid() != 0 || access("/usr/sbin/sshd", X_OK) != 0) {
        snprintf(err, errlen, "needs root and /usr/sbin/sshd (openssh-server)");
        return -ENOENT;
    }
    r->ssh_port = bench_free_port();
    int e = r->ssh_port < 0 ? r->ssh_port : 0;
    if (!e)
        e = quiet("cd '%s' && ssh-keygen -q -t ed25519 -N '' -f host_key && ssh-keygen -q -t ed25519 -N '' -f "
                  "client_key",
                  r->dir);
    if (!e)
        e = ssh_configs(r, bindir);
    if (!e && mkdir("/run/sshd", 0755) == 0) /* sshd's privilege separation directory */
        r->made_privsep = true;
    if (!e && (r->sshd = spawn_sshd(r)) < 0)
        e = -errno;
    if (!e)
        e = wait_listening(r);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "ssh -F %s", r->path[SSH_CONFIG]);
    if (!e)
        e = setenv("BPFGRAFT_SSH_COMMAND", cmd, 1) ? -errno : 0;
    if (e)
        snprintf(err, errlen, "sshd on 127.0.0.1: %s", strerror(-e));
    return e;
}

void bench_remote_end(struct bench_remote *r)
{
    if (r->sshd > 0) {
        kill(r->sshd, SIGTERM);
        waitpid(r->sshd, NULL, 0);
        r->sshd = -1;
    }
    if (r->made_privsep)
        rmdir("/run/sshd");
    r->made_privsep = false;
    if (r->dir[0] && quiet("rm -rf '%s'", r->dir) != 0)
        rmdir(r->dir);
    r->dir[0] = 0;
}
