/* bpfgraft: the command-line client of bpfgraftd.
 *
 * Every command is one or a few calls of the control protocol
 * (proto/PROTOCOL.md). Text output is for people; --json prints one JSON
 * document per command on stdout (JSON lines for trace/events). Server
 * errors exit 1 as "bpfgraft: <message> (<error name>)", usage errors 2.
 */
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "btf_fmt.h"
#include "client.h"
#include "out.h"
#include "rpc.h"
#include "transport.h"

#define EXIT_USAGE 2

static bool g_json;
static struct cli_conn g_conn;

/* Command arguments after the global options are taken out. Flags of a
 * command are only looked for before a "--". */
struct args {
    char **v;
    int n;
    int flag_end; /* index of the first argument after "--" */
};

static const char usage_text[] =
    "usage: bpfgraft [--socket PATH | --host ssh://[USER@]HOST[:PORT][/SOCKET] | --host tcps://HOST:PORT]\n"
    "                [--json] COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  status                          server version, uptime and counts\n"
    "  load OBJ [--name N] [--kernel=auto|never|always]\n"
    "                                  load a BPF object file (an executable: as run); kprobes, kernel\n"
    "                                  tracepoints and kernel-only helpers run in the kernel (auto)\n"
    "  unload ID                       unload an object with its programs and maps\n"
    "  prog list | show PROG | dump PROG   (show: run_time_ns and run_cnt, summed and per process)\n"
    "  map list | show MAP | dump MAP\n"
    "  map lookup MAP KEY | delete MAP KEY | pop MAP\n"
    "  map adopt /sys/fs/bpf/PATH --name N   a pinned kernel map, for objects loaded later\n"
    "  map update MAP KEY VALUE [--noexist|--exist]\n"
    "  attach PID [OBJ [PROG...]] [--target BIN:FUNC] [--engine llvm|x86|interp|tiered] [--cookie N]\n"
    "                                  attach an object's uprobe programs to a process\n"
    "                                  (no OBJ: the process joins bpfgraft; running tools reach it)\n"
    "  attach --path BINARY OBJ [PROG...] [--target ...] [--engine E] [--cookie N]\n"
    "                                  the same in every process running or mapping BINARY, now and\n"
    "                                  started later (caught at exec), until detach --path BINARY\n"
    "                                  (--target: for programs whose section names no function)\n"
    "                                  (--cookie: what bpf_get_attach_cookie returns there)\n"
    "  start [--target BIN:FUNC] [--engine E] OBJ [PROG...] -- CMD [ARGS]\n"
    "                                  run CMD with the programs attached before its main()\n"
    "  run [--attach PID[,PID]] [--engine E] -- TOOL [ARGS]\n"
    "                                  run an unmodified libbpf tool with its BPF side in bpfgraft:\n"
    "                                  its programs attach to processes bpfgraft manages\n"
    "  tools                           running tools and where their programs are attached\n"
    "  detach PID | detach --path BINARY\n"
    "  shutdown [--detach]             stop bpfgraftd: targets stay attached for the next server,\n"
    "                                  or (--detach) every target is detached and the state forgotten\n"
    "  ps                              processes bpfgraft manages: hooks, programs, engine, hits (while\n"
    "                                  stats are enabled), misses,\n"
    "                                  uretprobe frames dropped by exceptions, how long attached,\n"
    "                                  last stop, payload address, how the hooks are placed (jmp,\n"
    "                                  short jmp, trap)\n"
    "  trace                           print trace_printk lines until interrupted\n"
    "  events [--topic T]...           print events (trace, ringbuf, target)\n"
    "  api                             the server's methods and error codes\n"
    "  stats enable|disable|status     program statistics (run_cnt, run_time_ns, hook hits), off by\n"
    "                                  default, in every attached process\n"
    "  audit [--since TIME]            the audit log: one JSON line per state-changing call\n"
    "                                  (TIME: 30s, 10m, 2h, 7d ago, or unix seconds)\n"
    "  dial-stdio                      bridge stdin/stdout to the control socket (what --host runs\n"
    "                                  on the remote host through ssh)\n"
    "\n"
    "PROG, MAP and OBJ (in attach) are ids or names. KEY and VALUE follow the\n"
    "map's BTF types: integers, strings for char arrays; any type also takes\n"
    "hex:0a0b... or \"0x0a 0x0b ...\" (or one 0x.. argument per byte).\n"
    "\n"
    "options:\n"
    "  --socket PATH   control socket (default $BPFGRAFT_SOCKET or " BPFGRAFT_DEFAULT_SOCKET ")\n"
    "  --host URL      a remote bpfgraftd (default $BPFGRAFT_HOST): ssh://[USER@]HOST[:PORT][/SOCKET]\n"
    "                  runs `bpfgraft [--socket SOCKET] dial-stdio` there with ssh\n"
    "                  (or $BPFGRAFT_SSH_COMMAND, e.g. \"ssh -F FILE\"); tcps://HOST:PORT is\n"
    "                  mutual TLS 1.3 to a bpfgraftd --listen, with the three files below\n"
    "  --tls-cert FILE  this client's certificate (PEM; default $BPFGRAFT_TLS_CERT)\n"
    "  --tls-key FILE   its private key (PEM; default $BPFGRAFT_TLS_KEY)\n"
    "  --tls-ca FILE    the CA the server's certificate must be signed by ($BPFGRAFT_TLS_CA)\n"
    "  --json          machine-readable output\n";

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    fputs("bpfgraft: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see bpfgraft --help)\n", stderr);
    return EXIT_USAGE;
}

static bool take_flag(struct args *a, const char *flag)
{
    for (int i = 0; i < a->flag_end; i++) {
        if (strcmp(a->v[i], flag) == 0) {
            memmove(&a->v[i], &a->v[i + 1], (size_t)(a->n - i - 1) * sizeof(char *));
            a->n--;
            a->flag_end--;
            return true;
        }
    }
    return false;
}

/* --opt VALUE or --opt=VALUE. Returns 1 found, 0 absent, -1 value missing. */
static int take_opt(struct args *a, const char *opt, const char **val)
{
    size_t ol = strlen(opt);
    for (int i = 0; i < a->flag_end; i++) {
        int used;
        if (strcmp(a->v[i], opt) == 0) {
            if (i + 1 >= a->flag_end)
                return -1;
            *val = a->v[i + 1];
            used = 2;
        } else if (strncmp(a->v[i], opt, ol) == 0 && a->v[i][ol] == '=') {
            *val = a->v[i] + ol + 1;
            used = 1;
        } else {
            continue;
        }
        memmove(&a->v[i], &a->v[i + used], (size_t)(a->n - i - used) * sizeof(char *));
        a->n -= used;
        a->flag_end -= used;
        a->v[a->n] = NULL; /* the rest may be an argv for execvp (run) */
        return 1;
    }
    return 0;
}

/* Refuses "--something" left over after a command took its flags. */
static int check_no_flags(const struct args *a, const char *cmd)
{
    for (int i = 0; i < a->flag_end; i++)
        if (strncmp(a->v[i], "--", 2) == 0 && a->v[i][2])
            return usage_error("%s: unknown option %s", cmd, a->v[i]);
    return 0;
}

static bool is_uint(const char *s)
{
    if (!*s)
        return false;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

static bool parse_u64(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    if (!is_uint(s))
        return false;
    *v = strtoull(s, &end, 10);
    return !errno && !*end;
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    bpfg_pack_cstr(pk, k);
}

/* An id|name argument: all digits is an id. */
static void pack_ref(msgpack_packer *pk, const char *s)
{
    uint64_t v;
    if (parse_u64(s, &v))
        msgpack_pack_uint64(pk, v);
    else
        bpfg_pack_cstr(pk, s);
}

/* ---- calls and errors --------------------------------------------------- */

static int print_server_error(const struct cli_error *e)
{
    const char *name = bpfg_rpc_error_name(e->code);
    fprintf(stderr, "bpfgraft: %s (%s)\n", e->message, name ? name : "unknown_error");
    if (g_json) {
        struct sbuf sb = {0};
        sbuf_printf(&sb, "{\"error\": {\"code\": %d, \"name\": ", e->code);
        sbuf_json_str(&sb, name ? name : "unknown_error", strlen(name ? name : "unknown_error"));
        sbuf_puts(&sb, ", \"message\": ");
        sbuf_json_str(&sb, e->message, strlen(e->message));
        sbuf_puts(&sb, "}}\n");
        fputs(sb.s, stdout);
        sbuf_free(&sb);
    }
    return 1;
}

/* 0 with *resp holding the result, or the exit status (error printed). */
static int call(struct bpfg_rpc_out *out, struct bpfg_rpc_msg *resp)
{
    struct cli_error e;
    int r = cli_call(&g_conn, out, resp, &e);
    if (r == 1)
        return print_server_error(&e);
    return r < 0 ? 1 : 0;
}

/* Starts a call without arguments, or with one id|name argument. */
static void begin_ref(struct bpfg_rpc_out *out, const char *method, const char *param, const char *ref)
{
    cli_begin(&g_conn, out, method, param ? 1 : 0);
    if (param) {
        pack_key(&out->pk, param);
        pack_ref(&out->pk, ref);
    }
}

static int call_ref(const char *method, const char *param, const char *ref, struct bpfg_rpc_msg *resp)
{
    struct bpfg_rpc_out out;
    begin_ref(&out, method, param, ref);
    return call(&out, resp);
}

static void print_json(const msgpack_object *o)
{
    struct sbuf sb = {0};
    json_from_obj(&sb, o);
    puts(sb.s);
    sbuf_free(&sb);
}

/* Prints a result: JSON, or the generic text rendering. */
static int print_result(const msgpack_object *o)
{
    if (g_json)
        print_json(o);
    else if (o->type != MSGPACK_OBJECT_BOOLEAN) /* a bare "true" says nothing */
        text_print_obj(stdout, o, 0);
    return 0;
}

/* Calls and prints the result: 0, or the exit status. */
static int call_print(struct bpfg_rpc_out *out)
{
    struct bpfg_rpc_msg resp;
    int rc = call(out, &resp);
    if (rc)
        return rc;
    print_result(&resp.params);
    bpfg_rpc_msg_release(&resp);
    return 0;
}

static int simple(const char *method, const char *param, const char *ref)
{
    struct bpfg_rpc_out out;
    begin_ref(&out, method, param, ref);
    return call_print(&out);
}

/* A method with one unsigned parameter, its result printed. */
static int simple_uint(const char *method, const char *key, uint64_t value)
{
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, method, 1);
    pack_key(&out.pk, key);
    msgpack_pack_uint64(&out.pk, value);
    return call_print(&out);
}

/* Calls a list method and prints its result: JSON with --json, else a
 * table of header() and one row() per element. */
static int list_table(const char *method, void (*header)(void), void (*row)(const msgpack_object *))
{
    struct bpfg_rpc_msg resp;
    int rc = call_ref(method, NULL, NULL, &resp);
    if (rc)
        return rc;
    const msgpack_object *l = &resp.params;
    if (g_json) {
        print_json(l);
    } else if (l->type == MSGPACK_OBJECT_ARRAY) {
        header();
        for (uint32_t i = 0; i < l->via.array.size; i++)
            row(&l->via.array.ptr[i]);
    } else {
        text_print_obj(stdout, l, 0);
    }
    bpfg_rpc_msg_release(&resp);
    return 0;
}

/* ---- status, load, unload ----------------------------------------------- */

static int cmd_status(struct args *a)
{
    if (a->n)
        return usage_error("status takes no arguments");
    return simple("server.status", NULL, NULL);
}

static void print_object(const msgpack_object *obj)
{
    printf("object %s %s", obj_str(obj, "id"), obj_str(obj, "name"));
    if (obj_get(obj, "path"))
        printf("  %s", obj_str(obj, "path"));
    putchar('\n');
    const msgpack_object *progs = obj_get(obj, "programs");
    if (progs && progs->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < progs->via.array.size; i++) {
            const msgpack_object *p = &progs->via.array.ptr[i];
            printf("  prog %-4s %-20s %-18s %s\n", obj_str(p, "id"), obj_str(p, "name"), obj_str(p, "kind"),
                   obj_str(p, "target"));
        }
    const msgpack_object *maps = obj_get(obj, "maps");
    if (maps && maps->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < maps->via.array.size; i++) {
            const msgpack_object *m = &maps->via.array.ptr[i];
            printf("  map  %-4s %-20s %s\n", obj_str(m, "id"), obj_str(m, "name"), obj_str(m, "type"));
        }
}

static int read_file(const char *path, char **buf, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int err = fstat(fd, &st) < 0                             ? -errno
              : !S_ISREG(st.st_mode)                         ? -EINVAL
              : st.st_size > (off_t)BPFG_RPC_MAX_MSG_DEFAULT ? -EFBIG
                                                             : 0;
    if (err) {
        close(fd);
        return err;
    }
    char *b = malloc((size_t)st.st_size + 1);
    if (!b) {
        close(fd);
        return -ENOMEM;
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, b + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;
            free(b);
            close(fd);
            return err;
        }
        got += (size_t)n;
    }
    close(fd);
    *buf = b;
    *len = got;
    return 0;
}

static const char *g_kernel_mode; /* load --kernel=auto|never|always, NULL: the server's default */

static int load_call(const char *path, const char *data, size_t len, const char *name, struct bpfg_rpc_msg *resp,
                     struct cli_error *e)
{
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "object.load", 1 + (name != NULL) + (g_kernel_mode != NULL));
    if (path) {
        pack_key(&out.pk, "path");
        bpfg_pack_cstr(&out.pk, path);
    } else {
        pack_key(&out.pk, "data");
        bpfg_pack_bin(&out.pk, data, len);
    }
    if (name) {
        pack_key(&out.pk, "name");
        bpfg_pack_cstr(&out.pk, name);
    }
    if (g_kernel_mode) {
        pack_key(&out.pk, "kernel");
        bpfg_pack_cstr(&out.pk, g_kernel_mode);
    }
    return cli_call(&g_conn, &out, resp, e);
}

static int run_tool(char **cmd, const char *engine);
static bool is_executable_elf(const char *path);

static int cmd_load(struct args *a)
{
    if (a->n >= 1 && is_executable_elf(a->v[0]))
        return run_tool(a->v, NULL); /* `bpfgraft load ./tool ARGS` = run */
    const char *name = NULL;
    if (take_opt(a, "--name", &name) < 0)
        return usage_error("load: --name needs a value");
    if (take_opt(a, "--kernel", &g_kernel_mode) < 0)
        return usage_error("load: --kernel needs auto, never or always");
    int rc = check_no_flags(a, "load");
    if (rc)
        return rc;
    if (a->n != 1)
        return usage_error("usage: bpfgraft load OBJ [--name N] [--kernel=auto|never|always]");

    /* The server resolves paths in its own cwd: send an absolute one. */
    char abs[PATH_MAX];
    const char *obj = a->v[0];
    if (!realpath(obj, abs)) {
        if (obj[0] == '/') {
            snprintf(abs, sizeof(abs), "%s", obj);
        } else {
            char cwd[PATH_MAX];
            if (!getcwd(cwd, sizeof(cwd)) || snprintf(abs, sizeof(abs), "%s/%s", cwd, obj) >= (int)sizeof(abs))
                return usage_error("load: path too long: %s", obj);
        }
    }

    struct bpfg_rpc_msg resp;
    struct cli_error e = {.code = BPFG_RPC_E_NOT_FOUND};
    if (g_conn.host)
        snprintf(e.message, sizeof(e.message), "cannot read %.800s to send it to %.150s", abs, g_conn.host);
    /* A remote server sees another machine's files: send the bytes. */
    int r = g_conn.host ? 1 : load_call(abs, NULL, 0, name, &resp, &e);
    /* The server may not see our file (another mount namespace, no
     * permission): send the bytes if we can read them. */
    if (r == 1 && (e.code == BPFG_RPC_E_NOT_FOUND || e.code == BPFG_RPC_E_PERMISSION)) {
        char *data = NULL, fallback_name[64];
        size_t len = 0;
        if (!name) { /* what the server would have named it from the path */
            const char *base = strrchr(abs, '/') ? strrchr(abs, '/') + 1 : abs;
            snprintf(fallback_name, sizeof(fallback_name), "%.63s", base);
            char *dot = strstr(fallback_name, ".bpf.o");
            if (!dot)
                dot = strrchr(fallback_name, '.');
            if (dot && dot != fallback_name)
                *dot = 0;
            name = fallback_name;
        }
        if (read_file(abs, &data, &len) == 0) {
            r = load_call(NULL, data, len, name, &resp, &e);
            free(data);
        }
    }
    if (r == 1)
        return print_server_error(&e);
    if (r < 0)
        return 1;
    if (g_json)
        print_json(&resp.params);
    else
        print_object(&resp.params);
    bpfg_rpc_msg_release(&resp);
    return 0;
}

static int cmd_unload(struct args *a)
{
    uint64_t id;
    if (a->n != 1 || !parse_u64(a->v[0], &id))
        return usage_error("usage: bpfgraft unload ID");
    return simple_uint("object.unload", "id", id);
}

/* ---- prog --------------------------------------------------------------- */

static void prog_header(void)
{
    printf("%-4s %-20s %-18s %-9s %-6s %-6s %s\n", "ID", "NAME", "KIND", "RUNS", "OBJECT", "INSNS", "TARGET");
}

static void prog_row(const msgpack_object *p)
{
    printf("%-4s %-20s %-18s %-9s %-6s %-6s %s\n", obj_str(p, "id"), obj_str(p, "name"), obj_str(p, "kind"),
           obj_str(p, "runs"), obj_str(p, "object"), obj_str(p, "insns"), obj_str(p, "target"));
}

/* bpftool's "run_time_ns N run_cnt N", for the sum and each process. */
static void print_run_stats(const char *indent, const msgpack_object *o)
{
    printf("%srun_time_ns %s run_cnt %s\n", indent, obj_str(o, "run_time_ns"), obj_str(o, "run_cnt"));
}

static int prog_show(const char *ref)
{
    struct bpfg_rpc_msg resp;
    int rc = call_ref("prog.show", "prog", ref, &resp);
    if (rc)
        return rc;
    const msgpack_object *p = &resp.params, *targets = obj_get(p, "targets");
    static const char *const stats_keys[] = {"run_cnt", "run_time_ns", "targets", NULL};
    if (g_json) {
        print_json(p);
    } else {
        text_print_obj_except(stdout, p, 0, stats_keys);
        print_run_stats("", p);
        for (uint32_t i = 0; targets && targets->type == MSGPACK_OBJECT_ARRAY && i < targets->via.array.size; i++) {
            printf("  pid %s ", obj_str(&targets->via.array.ptr[i], "pid"));
            print_run_stats("", &targets->via.array.ptr[i]);
        }
    }
    bpfg_rpc_msg_release(&resp);
    return 0;
}

static int cmd_prog(struct args *a)
{
    if (a->n < 1)
        return usage_error("usage: bpfgraft prog list|show PROG|dump PROG");
    const char *sub = a->v[0];
    struct bpfg_rpc_msg resp;
    int rc;

    if (strcmp(sub, "list") == 0) {
        if (a->n != 1)
            return usage_error("usage: bpfgraft prog list");
        return list_table("prog.list", prog_header, prog_row);
    }
    if (a->n != 2)
        return usage_error("usage: bpfgraft prog %s PROG", sub);
    if (strcmp(sub, "show") == 0)
        return prog_show(a->v[1]);
    if (strcmp(sub, "dump") == 0) {
        if ((rc = call_ref("prog.dump", "prog", a->v[1], &resp)))
            return rc;
        const msgpack_object *text = obj_get(&resp.params, "text");
        if (g_json)
            print_json(&resp.params);
        else if (text && text->type == MSGPACK_OBJECT_STR)
            printf("%.*s%s", (int)text->via.str.size, text->via.str.ptr,
                   text->via.str.size && text->via.str.ptr[text->via.str.size - 1] == '\n' ? "" : "\n");
        else
            text_print_obj(stdout, &resp.params, 0);
        bpfg_rpc_msg_release(&resp);
        return 0;
    }
    return usage_error("prog: unknown subcommand %s", sub);
}

/* ---- map ---------------------------------------------------------------- */

/* What printing and parsing a map's keys and values needs. */
struct map_meta {
    uint64_t id;
    uint32_t key_size, value_size;
    uint32_t key_type, value_type; /* BTF ids, 0 = none */
    uint32_t slots;                /* per-CPU values, 0 for other maps */
    char type[32];
    struct btf *btf;
};

static void map_meta_free(struct map_meta *m)
{
    btf__free(m->btf);
    m->btf = NULL;
}

static bool is_percpu(const char *type)
{
    return strstr(type, "percpu") != NULL;
}

/* map.show, then object.btf when the map has BTF types. */
static int map_meta_get(const char *ref, struct map_meta *m)
{
    memset(m, 0, sizeof(*m));
    struct bpfg_rpc_msg resp;
    int rc = call_ref("map.show", "map", ref, &resp);
    if (rc)
        return rc;
    const msgpack_object *r = &resp.params;
    uint64_t ks = 0, vs = 0, kt = 0, vt = 0, slots = 0, obj = 0;
    bool have_obj = obj_u64(r, "object", &obj);
    if (!have_obj) { /* tolerate an embedded object description */
        const msgpack_object *o = obj_get(r, "object");
        have_obj = o && obj_u64(o, "id", &obj);
    }
    if (!obj_u64(r, "id", &m->id) || !obj_u64(r, "key_size", &ks) || !obj_u64(r, "value_size", &vs)) {
        bpfg_rpc_msg_release(&resp);
        fprintf(stderr, "bpfgraft: map.show answer lacks id/key_size/value_size\n");
        return 1;
    }
    obj_u64(r, "btf_key_type_id", &kt);
    obj_u64(r, "btf_value_type_id", &vt);
    obj_u64(r, "percpu_slots", &slots);
    snprintf(m->type, sizeof(m->type), "%s", obj_str(r, "type"));
    m->key_size = (uint32_t)ks;
    m->value_size = (uint32_t)vs;
    m->key_type = (uint32_t)kt;
    m->value_type = (uint32_t)vt;
    m->slots = is_percpu(m->type) ? (uint32_t)(slots ? slots : 1) : 0;
    bpfg_rpc_msg_release(&resp);
    if ((!kt && !vt) || !have_obj)
        return 0;

    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "object.btf", 1);
    pack_key(&out.pk, "id");
    msgpack_pack_uint64(&out.pk, obj);
    if ((rc = call(&out, &resp)))
        return rc;
    const msgpack_object *b = obj_get(&resp.params, "btf");
    if (b && b->type == MSGPACK_OBJECT_BIN && b->via.bin.size) {
        m->btf = btf__new(b->via.bin.ptr, b->via.bin.size);
        if (libbpf_get_error(m->btf)) {
            m->btf = NULL; /* printed as hex then */
            fprintf(stderr, "bpfgraft: warning: the object's BTF does not parse; showing hex\n");
        }
    }
    bpfg_rpc_msg_release(&resp);
    return 0;
}

/* One key or value: typed JSON when BTF describes it, else hex. */
static void fmt_bytes(struct sbuf *sb, const struct map_meta *m, uint32_t type, const void *data, size_t size,
                      bool *typed)
{
    if (m->btf && type && btf_fmt_json(sb, m->btf, type, data, size) == 0) {
        *typed = true;
        return;
    }
    *typed = false;
    if (g_json) {
        sbuf_putc(sb, '"');
        sbuf_hex(sb, data, size, 0);
        sbuf_putc(sb, '"');
    } else {
        sbuf_hex(sb, data, size, ' ');
    }
}

/* One entry (lookup, dump, pop answer) as a text line or a JSON object. */
static void print_entry(struct sbuf *sb, const struct map_meta *m, const msgpack_object *e)
{
    const msgpack_object *k = obj_get(e, "key"), *v = obj_get(e, "value"), *vals = obj_get(e, "values");
    const msgpack_object *frames = obj_get(e, "frames"); /* stack maps: symbolized */
    struct sbuf fk = {0}, fv = {0};
    bool tk = false, tv = false;

    if (k && k->type == MSGPACK_OBJECT_BIN)
        fmt_bytes(&fk, m, m->key_type, k->via.bin.ptr, k->via.bin.size, &tk);
    if (vals && vals->type == MSGPACK_OBJECT_ARRAY) {
        if (g_json)
            sbuf_putc(&fv, '[');
        for (uint32_t i = 0; i < vals->via.array.size; i++) {
            const msgpack_object *x = &vals->via.array.ptr[i];
            bool t = false;
            if (g_json && i)
                sbuf_puts(&fv, ", ");
            if (!g_json)
                sbuf_printf(&fv, "\n  cpu%u: ", i);
            if (x->type == MSGPACK_OBJECT_BIN)
                fmt_bytes(&fv, m, m->value_type, x->via.bin.ptr,
                          x->via.bin.size > m->value_size ? m->value_size : x->via.bin.size, &t);
            tv = tv || t;
        }
        if (g_json)
            sbuf_putc(&fv, ']');
    } else if (v && v->type == MSGPACK_OBJECT_BIN) {
        fmt_bytes(&fv, m, m->value_type, v->via.bin.ptr, v->via.bin.size, &tv);
    }

    if (g_json) {
        /* Raw bytes always, typed values under "formatted" like bpftool. */
        /* Queue/stack pops have no key. */
        const char *sep = "";
        sbuf_putc(sb, '{');
        if (k) {
            sbuf_puts(sb, "\"key\": ");
            json_from_obj(sb, k);
            sep = ", ";
        }
        if (vals || v) {
            sbuf_printf(sb, "%s\"%s\": ", sep, vals ? "values" : "value");
            json_from_obj(sb, vals ? vals : v);
        }
        if (tk || tv) {
            sbuf_puts(sb, ", \"formatted\": {");
            if (k)
                sbuf_printf(sb, "\"key\": %s, ", fk.s ? fk.s : "null");
            sbuf_printf(sb, "\"%s\": %s}", vals ? "values" : "value", fv.s ? fv.s : "null");
        }
        if (frames) {
            sbuf_puts(sb, ", \"frames\": ");
            json_from_obj(sb, frames);
        }
        sbuf_putc(sb, '}');
    } else if (frames && frames->type == MSGPACK_OBJECT_ARRAY) {
        sbuf_printf(sb, "key: %s  frames: %u", fk.s ? fk.s : "", frames->via.array.size);
        for (uint32_t i = 0; i < frames->via.array.size; i++) {
            const msgpack_object *f = &frames->via.array.ptr[i];
            if (f->type == MSGPACK_OBJECT_STR)
                sbuf_printf(sb, "\n    %.*s", (int)f->via.str.size, f->via.str.ptr);
        }
    } else if (vals) {
        sbuf_printf(sb, "key: %s%s", fk.s ? fk.s : "", fv.s ? fv.s : "");
    } else if (k) {
        sbuf_printf(sb, "key: %s  value: %s", fk.s ? fk.s : "", fv.s ? fv.s : "");
    } else {
        sbuf_printf(sb, "value: %s", fv.s ? fv.s : "");
    }
    sbuf_free(&fk);
    sbuf_free(&fv);
}

static int parse_kv(const struct map_meta *m, bool value, struct args *a, int *pos, int min_rest, uint8_t **out,
                    size_t *size)
{
    size_t sz = value ? m->value_size : m->key_size;
    uint32_t type = value ? m->value_type : m->key_type;
    char err[256];
    uint8_t *buf = calloc(1, sz ? sz : 1);
    if (!buf) {
        fprintf(stderr, "bpfgraft: out of memory\n");
        return 1;
    }
    if (*pos >= a->n) {
        free(buf);
        return usage_error("missing %s", value ? "VALUE" : "KEY");
    }
    int used = btf_parse_arg(m->btf, type, sz, a->v + *pos, a->n - *pos, min_rest, buf, err, sizeof(err));
    if (used < 0) {
        free(buf);
        return usage_error("%s: %s", value ? "VALUE" : "KEY", err);
    }
    *pos += used;
    *out = buf;
    *size = sz;
    return 0;
}

static void map_header(void)
{
    printf("%-4s %-16s %-14s %-5s %-6s %-8s %-6s %s\n", "ID", "NAME", "TYPE", "KEY", "VALUE", "ENTRIES", "FLAGS",
           "OBJECT");
}

static void map_row(const msgpack_object *m)
{
    printf("%-4s %-16s %-14s %-5s %-6s %-8s %-6s %s\n", obj_str(m, "id"), obj_str(m, "name"), obj_str(m, "type"),
           obj_str(m, "key_size"), obj_str(m, "value_size"), obj_str(m, "max_entries"), obj_str(m, "flags"),
           obj_str(m, "object"));
}

static int map_list(void)
{
    return list_table("map.list", map_header, map_row);
}

static int map_dump(struct map_meta *m)
{
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "map.dump", 1);
    pack_key(&out.pk, "map");
    msgpack_pack_uint64(&out.pk, m->id);
    struct bpfg_rpc_msg resp;
    int rc = call(&out, &resp);
    if (rc)
        return rc;
    const msgpack_object *entries = obj_get(&resp.params, "entries");
    const msgpack_object *trunc = obj_get(&resp.params, "truncated");
    bool truncated = trunc && trunc->type == MSGPACK_OBJECT_BOOLEAN && trunc->via.boolean;
    uint32_t n = entries && entries->type == MSGPACK_OBJECT_ARRAY ? entries->via.array.size : 0;
    struct sbuf sb = {0};
    if (g_json)
        sbuf_puts(&sb, "{\"entries\": [");
    for (uint32_t i = 0; i < n; i++) {
        if (g_json && i)
            sbuf_puts(&sb, ", ");
        print_entry(&sb, m, &entries->via.array.ptr[i]);
        if (!g_json)
            sbuf_putc(&sb, '\n');
    }
    if (g_json)
        sbuf_printf(&sb, "], \"truncated\": %s}\n", truncated ? "true" : "false");
    else
        sbuf_printf(&sb, "Found %u element%s%s\n", n, n == 1 ? "" : "s", truncated ? " (truncated)" : "");
    fputs(sb.s, stdout);
    sbuf_free(&sb);
    bpfg_rpc_msg_release(&resp);
    return 0;
}

/* map.lookup / map.delete / map.update / map.pop with typed arguments. */
static int map_op(const char *sub, struct map_meta *m, struct args *a, uint64_t flags)
{
    uint8_t *key = NULL, *val = NULL;
    size_t ksz = 0, vsz = 0;
    int pos = 2, rc;
    bool upd = strcmp(sub, "update") == 0, pop = strcmp(sub, "pop") == 0;

    if (!pop && (rc = parse_kv(m, false, a, &pos, upd ? 1 : 0, &key, &ksz)))
        return rc;
    if (upd && (rc = parse_kv(m, true, a, &pos, 0, &val, &vsz))) {
        free(key);
        return rc;
    }
    if (pos != a->n) {
        free(key);
        free(val);
        return usage_error("map %s: unexpected argument %s", sub, a->v[pos]);
    }
    /* Per-CPU maps take every CPU's value, each padded to 8 bytes like
     * bpf(2): the one given value is stored for all of them. */
    if (upd && m->slots) {
        size_t stride = (vsz + 7) & ~(size_t)7;
        uint8_t *all = calloc(m->slots, stride);
        if (!all) {
            free(key);
            free(val);
            return 1;
        }
        for (uint32_t i = 0; i < m->slots; i++)
            memcpy(all + (size_t)i * stride, val, vsz);
        free(val);
        val = all;
        vsz = stride * m->slots;
    }

    char method[32];
    snprintf(method, sizeof(method), "map.%s", sub);
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, method, 1 + !pop + upd + (upd && flags));
    pack_key(&out.pk, "map");
    msgpack_pack_uint64(&out.pk, m->id);
    if (!pop) {
        pack_key(&out.pk, "key");
        bpfg_pack_bin(&out.pk, key, ksz);
    }
    if (upd) {
        pack_key(&out.pk, "value");
        bpfg_pack_bin(&out.pk, val, vsz);
        if (flags) {
            pack_key(&out.pk, "flags");
            msgpack_pack_uint64(&out.pk, flags);
        }
    }
    free(key);
    free(val);
    struct bpfg_rpc_msg resp;
    if ((rc = call(&out, &resp)))
        return rc;
    if (strcmp(sub, "lookup") == 0 || pop) {
        struct sbuf sb = {0};
        print_entry(&sb, m, &resp.params);
        puts(sb.s ? sb.s : "");
        sbuf_free(&sb);
    } else {
        print_result(&resp.params);
    }
    bpfg_rpc_msg_release(&resp);
    return 0;
}

/* map adopt /sys/fs/bpf/PATH --name N: a pinned kernel map */
static int map_adopt(struct args *a)
{
    const char *name = NULL;
    if (take_opt(a, "--name", &name) <= 0 || a->n != 2)
        return usage_error("usage: bpfgraft map adopt /sys/fs/bpf/PATH --name N");
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "map.adopt", 2);
    pack_key(&out.pk, "path");
    bpfg_pack_cstr(&out.pk, a->v[1]);
    pack_key(&out.pk, "name");
    bpfg_pack_cstr(&out.pk, name);
    return call_print(&out);
}

static int cmd_map(struct args *a)
{
    if (a->n < 1)
        return usage_error("usage: bpfgraft map list|show|dump|lookup|update|delete|pop|adopt ...");
    const char *sub = a->v[0];
    if (strcmp(sub, "adopt") == 0)
        return map_adopt(a);
    uint64_t flags = 0;
    bool noexist = take_flag(a, "--noexist"), exist = take_flag(a, "--exist");
    if (noexist && exist)
        return usage_error("map update: --noexist and --exist exclude each other");
    if ((noexist || exist) && strcmp(sub, "update") != 0)
        return usage_error("--noexist/--exist go with map update");
    flags = noexist ? BPF_NOEXIST : exist ? BPF_EXIST : BPF_ANY;
    int rc = check_no_flags(a, "map");
    if (rc)
        return rc;

    if (strcmp(sub, "list") == 0) {
        if (a->n != 1)
            return usage_error("usage: bpfgraft map list");
        return map_list();
    }
    static const struct {
        const char *name;
        int nargs; /* after MAP; -1 = at least 2 (update) */
    } subs[] = {{"show", 0}, {"dump", 0}, {"pop", 0}, {"lookup", 1}, {"delete", 1}, {"update", -1}};
    int nargs = -2;
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++)
        if (strcmp(sub, subs[i].name) == 0)
            nargs = subs[i].nargs;
    if (nargs == -2)
        return usage_error("map: unknown subcommand %s", sub);
    if (a->n < 2)
        return usage_error("usage: bpfgraft map %s MAP%s", sub, nargs == 1 ? " KEY" : nargs < 0 ? " KEY VALUE" : "");
    if (strcmp(sub, "show") == 0) {
        if (a->n != 2)
            return usage_error("usage: bpfgraft map show MAP");
        return simple("map.show", "map", a->v[1]);
    }
    if ((nargs == 0 && a->n != 2) || (nargs == 1 && a->n < 3) || (nargs < 0 && a->n < 4))
        return usage_error("usage: bpfgraft map %s MAP%s", sub,
                           nargs == 1  ? " KEY"
                           : nargs < 0 ? " KEY VALUE [--noexist|--exist]"
                                       : "");

    struct map_meta m;
    if ((rc = map_meta_get(a->v[1], &m)))
        return rc;
    rc = strcmp(sub, "dump") == 0 ? map_dump(&m) : map_op(sub, &m, a, flags);
    map_meta_free(&m);
    return rc;
}

/* ---- targets ------------------------------------------------------------ */

struct attach_req {
    const char *target, *engine, *cookie_arg, *path;
    uint64_t pid, cookie;
    char **objargs; /* OBJ [PROG...] */
    int nobjargs;
    bool quiet; /* no result printed */
};

static void pack_attach(struct bpfg_rpc_out *out, const struct attach_req *q)
{
    cli_begin(&g_conn, out, q->path ? "scope.attach" : "target.attach",
              1 + (q->nobjargs > 0) + (q->nobjargs > 1) + !!q->target + !!q->engine + !!q->cookie_arg);
    if (q->cookie_arg) {
        pack_key(&out->pk, "cookie");
        msgpack_pack_uint64(&out->pk, q->cookie);
    }
    if (q->target) {
        pack_key(&out->pk, "target");
        bpfg_pack_cstr(&out->pk, q->target);
    }
    if (q->engine) {
        pack_key(&out->pk, "engine");
        bpfg_pack_cstr(&out->pk, q->engine);
    }
    pack_key(&out->pk, q->path ? "path" : "pid");
    if (q->path)
        bpfg_pack_cstr(&out->pk, q->path);
    else
        msgpack_pack_uint64(&out->pk, q->pid);
    if (q->nobjargs > 0) {
        pack_key(&out->pk, "object");
        pack_ref(&out->pk, q->objargs[0]);
    }
    if (q->nobjargs > 1) {
        pack_key(&out->pk, "programs");
        msgpack_pack_array(&out->pk, (uint32_t)(q->nobjargs - 1));
        for (int i = 1; i < q->nobjargs; i++)
            pack_ref(&out->pk, q->objargs[i]);
    }
}

#define ATTACH_BUSY_TRIES 50 /* 100 ms apart: a payload reconnects every 100 ms */

/* Sends the attach; while the server answers busy (a payload of its own
 * in the process has not connected yet) says why once and tries again. */
static int attach_call(const struct attach_req *q)
{
    for (int tries = 0;; tries++) {
        struct bpfg_rpc_out out;
        struct bpfg_rpc_msg resp;
        struct cli_error e;
        pack_attach(&out, q);
        int r = cli_call(&g_conn, &out, &resp, &e);
        if (r < 0)
            return 1;
        if (r == 1 && e.code == BPFG_RPC_E_BUSY && tries < ATTACH_BUSY_TRIES) {
            if (!tries)
                fprintf(stderr, "bpfgraft: %s (retrying)\n", e.message);
            usleep(100000);
            continue;
        }
        if (r == 1)
            return print_server_error(&e);
        if (!q->quiet)
            print_result(&resp.params);
        bpfg_rpc_msg_release(&resp);
        return 0;
    }
}

static int cmd_attach(struct args *a)
{
    struct attach_req q = {0};
    if (take_opt(a, "--target", &q.target) < 0)
        return usage_error("attach: --target needs BINARY:FUNCTION");
    if (take_opt(a, "--engine", &q.engine) < 0)
        return usage_error("attach: --engine needs llvm, x86, interp or tiered");
    if (take_opt(a, "--cookie", &q.cookie_arg) < 0 || (q.cookie_arg && !parse_u64(q.cookie_arg, &q.cookie)))
        return usage_error("attach: --cookie needs an unsigned 64-bit number");
    if (take_opt(a, "--path", &q.path) < 0)
        return usage_error("attach: --path needs the absolute path of a binary");
    int rc0 = check_no_flags(a, "attach");
    if (rc0)
        return rc0;
    int first = q.path ? 0 : 1; /* where OBJ is */
    if (q.path ? a->n < 1 : a->n < 1 || !parse_u64(a->v[0], &q.pid))
        return usage_error("usage: bpfgraft attach PID [OBJ [PROG...]] [--target BIN:FUNC] [--engine E] [--cookie N]\n"
                           "       bpfgraft attach --path BINARY OBJ [PROG...] [--target BIN:FUNC] [--engine E] "
                           "[--cookie N]");
    q.objargs = a->v + first;
    q.nobjargs = a->n - first;
    return attach_call(&q);
}

/* Forks CMD stopped just before its execve (the server takes it from
 * there). Returns the child's pid, or -1 with a message printed. */
static pid_t spawn_stopped(char **cmd)
{
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        fprintf(stderr, "bpfgraft: fork: %s\n", strerror(errno));
        return -1;
    }
    if (child == 0) {
        raise(SIGSTOP);
        execvp(cmd[0], cmd);
        fprintf(stderr, "bpfgraft: cannot run %s: %s\n", cmd[0], strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(child, &status, WUNTRACED) < 0 && errno == EINTR)
        ;
    if (!WIFSTOPPED(status)) {
        fprintf(stderr, "bpfgraft: %s did not start\n", cmd[0]);
        return -1;
    }
    return child;
}

static volatile pid_t g_child;

static void forward_signal(int sig)
{
    if (g_child > 0)
        kill(g_child, sig);
}

/* Waits for the child, passing on SIGINT/SIGTERM sent to us (a terminal's
 * Ctrl-C reaches both anyway). Returns its exit status like a shell. */
static int wait_child(pid_t child)
{
    g_child = child;
    struct sigaction sa = {.sa_handler = forward_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int status;
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    g_child = 0;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

/* bpfgraft start [--target BIN:FUNC] OBJ [PROG...] -- CMD [ARGS]: runs CMD
 * as our child with the programs attached before its main(). The child
 * stops itself just before execve; the server takes it from there. */
static int refuse_remote(const char *cmd);

static int cmd_start(struct args *a)
{
    if (refuse_remote("start"))
        return EXIT_USAGE;
    const char *target = NULL, *engine = NULL;
    if (take_opt(a, "--target", &target) < 0)
        return usage_error("start: --target needs BINARY:FUNCTION");
    if (take_opt(a, "--engine", &engine) < 0)
        return usage_error("start: --engine needs llvm, x86, interp or tiered");
    int rc0 = check_no_flags(a, "start");
    if (rc0)
        return rc0;
    int nprogs = a->flag_end - 1;
    if (a->flag_end < 1 || a->flag_end >= a->n)
        return usage_error("usage: bpfgraft start [--target BIN:FUNC] [--engine E] OBJ [PROG...] -- CMD [ARGS]");
    char **cmd = &a->v[a->flag_end]; /* the rest of argv, NULL-terminated */
    pid_t child = spawn_stopped(cmd);
    if (child < 0)
        return 1;

    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "target.start", (nprogs ? 3 : 2) + (target ? 1 : 0) + (engine ? 1 : 0));
    pack_key(&out.pk, "pid");
    msgpack_pack_uint64(&out.pk, (uint64_t)child);
    pack_key(&out.pk, "object");
    pack_ref(&out.pk, a->v[0]);
    if (nprogs) {
        pack_key(&out.pk, "programs");
        msgpack_pack_array(&out.pk, (uint32_t)nprogs);
        for (int i = 1; i <= nprogs; i++)
            pack_ref(&out.pk, a->v[i]);
    }
    if (target) {
        pack_key(&out.pk, "target");
        bpfg_pack_cstr(&out.pk, target);
    }
    if (engine) {
        pack_key(&out.pk, "engine");
        bpfg_pack_cstr(&out.pk, engine);
    }
    struct bpfg_rpc_msg resp;
    int rc = call(&out, &resp);
    if (rc) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return rc;
    }
    bpfg_rpc_msg_release(&resp);
    if (!g_json)
        fprintf(stderr, "bpfgraft: %s started as pid %d with programs attached\n", cmd[0], (int)child);
    cli_close(&g_conn); /* the program may run for long: do not hold the server */
    return wait_child(child);
}

/* bpfgraft run [--engine E] [--] TOOL [ARGS]: a libbpf tool whose BPF side
 * bpfgraft serves (server/tool.h). */
/* `run --attach PID[,PID...]`: the processes join bpfgraft first, so the
 * tool's programs reach them from its first attach on. */
static int attach_list(const char *list)
{
    char *copy = strdup(list), *save = NULL;
    if (!copy)
        return 1;
    int rc = 0;
    for (char *tok = strtok_r(copy, ",", &save); tok && !rc; tok = strtok_r(NULL, ",", &save)) {
        uint64_t pid;
        if (!parse_u64(tok, &pid) || !pid) {
            rc = usage_error("run: --attach takes PID[,PID...], not '%s'", tok);
            break;
        }
        struct attach_req q = {.pid = pid, .quiet = true};
        rc = attach_call(&q);
    }
    free(copy);
    return rc;
}

/* Says so when no process is there for a tool's programs to attach to. */
static void hint_if_no_targets(void)
{
    struct bpfg_rpc_out out;
    struct bpfg_rpc_msg resp;
    struct cli_error e;
    cli_begin(&g_conn, &out, "target.list", 0);
    if (cli_call(&g_conn, &out, &resp, &e) != 0)
        return;
    if (resp.params.type == MSGPACK_OBJECT_ARRAY && resp.params.via.array.size == 0 && !g_json)
        fputs("bpfgraft: no process is attached to bpfgraft yet: a probe the tool opens for a PID attaches that "
              "process; uprobes with pid -1 reach every process of their file, and system-wide syscall tracepoints the "
              "processes bpfgraft manages (bpfgraft attach PID, bpfgraft start, or run --attach PID) and those "
              "started later\n",
              stderr);
    bpfg_rpc_msg_release(&resp);
}

/* run and start make a local child the server ptraces: not across hosts. */
static int refuse_remote(const char *cmd)
{
    if (!g_conn.host)
        return 0;
    fprintf(stderr,
            "bpfgraft: %s starts a process on this machine, which the server at %s cannot trace: "
            "run it on that host\n",
            cmd, g_conn.host);
    return EXIT_USAGE;
}

static int run_tool(char **cmd, const char *engine)
{
    int rc0 = refuse_remote("run");
    if (rc0)
        return rc0;
    hint_if_no_targets();
    pid_t child = spawn_stopped(cmd);
    if (child < 0)
        return 1;
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "tool.start", engine ? 2 : 1);
    pack_key(&out.pk, "pid");
    msgpack_pack_uint64(&out.pk, (uint64_t)child);
    if (engine) {
        pack_key(&out.pk, "engine");
        bpfg_pack_cstr(&out.pk, engine);
    }
    struct bpfg_rpc_msg resp;
    int rc = call(&out, &resp);
    if (rc) {
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return rc;
    }
    bpfg_rpc_msg_release(&resp);
    cli_close(&g_conn);
    return wait_child(child);
}

static int cmd_run(struct args *a)
{
    if (refuse_remote("run"))
        return EXIT_USAGE;
    const char *engine = NULL, *attach = NULL;
    if (take_opt(a, "--engine", &engine) < 0)
        return usage_error("run: --engine needs llvm, x86, interp or tiered");
    if (take_opt(a, "--attach", &attach) < 0)
        return usage_error("run: --attach needs PID[,PID...]");
    int rc0 = check_no_flags(a, "run");
    if (rc0)
        return rc0;
    /* "run -- TOOL ARGS", or "run TOOL ARGS" when no option of TOOL looks like ours */
    char **cmd = a->flag_end < a->n ? &a->v[a->flag_end] : a->v;
    if (a->flag_end < a->n && a->flag_end > 0)
        return usage_error("run: unexpected %s before --", a->v[0]);
    if (!cmd[0])
        return usage_error("usage: bpfgraft run [--attach PID[,PID...]] [--engine E] -- TOOL [ARGS]");
    int rc = attach ? attach_list(attach) : 0;
    return rc ? rc : run_tool(cmd, engine);
}

/* An executable (not a BPF object): `bpfgraft load ./tool` runs it. */
static bool is_executable_elf(const char *path)
{
    unsigned char h[20];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, h, sizeof(h));
    close(fd);
    if (n != (ssize_t)sizeof(h) || memcmp(h,
                                          "\x7f"
                                          "ELF",
                                          4) != 0)
        return false;
    uint16_t type = (uint16_t)(h[16] | h[17] << 8), machine = (uint16_t)(h[18] | h[19] << 8);
    return machine == 62 /* EM_X86_64 */ && (type == 2 || type == 3) && access(path, X_OK) == 0;
}

/* bpfgraft compile OBJ -o FILE ...: ahead-of-time compilation is done by
 * bpfgraft-compile (it links LLVM; the CLI does not), found beside us. */
static int cmd_compile(struct args *a)
{
    char self[4096], tool[4200];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return usage_error("compile: cannot find my own path");
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(tool, sizeof(tool), "%s/bpfgraft-compile", self);
    char **argv = calloc((size_t)a->n + 2, sizeof(char *));
    if (!argv)
        return 1;
    argv[0] = tool;
    for (int i = 0; i < a->n; i++)
        argv[i + 1] = a->v[i];
    fflush(stdout);
    execv(tool, argv);
    fprintf(stderr, "bpfgraft: compile needs %s (built with LLVM): %s\n", tool, strerror(errno));
    free(argv);
    return 1;
}

static int cmd_detach(struct args *a)
{
    uint64_t pid;
    const char *path = NULL;
    if (take_opt(a, "--path", &path) < 0)
        return usage_error("detach: --path needs the binary given to attach --path");
    int rc0 = check_no_flags(a, "detach");
    if (rc0)
        return rc0;
    if (path && a->n == 0) {
        struct bpfg_rpc_out out;
        cli_begin(&g_conn, &out, "scope.detach", 1);
        pack_key(&out.pk, "path");
        bpfg_pack_cstr(&out.pk, path);
        return call_print(&out);
    }
    if (path || a->n != 1 || !parse_u64(a->v[0], &pid))
        return usage_error("usage: bpfgraft detach PID | detach --path BINARY");
    return simple_uint("target.detach", "pid", pid);
}

/* bpfgraft shutdown [--detach]: stops the server; targets stay attached for
 * the next one (a restart), or with --detach are all detached (for good). */
static int cmd_shutdown(struct args *a)
{
    bool detach = take_flag(a, "--detach");
    int rc0 = check_no_flags(a, "shutdown");
    if (rc0)
        return rc0;
    if (a->n != 0)
        return usage_error("usage: bpfgraft shutdown [--detach]");
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "server.shutdown", 1);
    pack_key(&out.pk, "detach");
    if (detach)
        msgpack_pack_true(&out.pk);
    else
        msgpack_pack_false(&out.pk);
    return call_print(&out);
}

/* ---- ps, tools ---------------------------------------------------------- */

/* What a target's hooks (one per program at an address) add up to. */
struct hook_sum {
    uint32_t places;     /* distinct addresses */
    uint64_t hits;       /* counted per address, while stats are on */
    uint64_t misses;     /* counted per address */
    uint64_t dropped;    /* uretprobe frames left by exceptions, per address */
    struct sbuf engines; /* distinct, comma-separated */
    struct sbuf kinds;   /* how hooks are placed: jmp, short, trap; distinct, comma-separated */
};

/* Whether one of the first n hooks is at addr (and has the field key). */
static bool seen_address(const msgpack_object *hooks, uint32_t n, uint64_t addr, const char *key)
{
    uint64_t a, v;
    for (uint32_t i = 0; i < n; i++)
        if (obj_u64(&hooks->via.array.ptr[i], "address", &a) && a == addr &&
            (!key || obj_u64(&hooks->via.array.ptr[i], key, &v)))
            return true;
    return false;
}

static bool in_list(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, word, n) && (p[n] == ',' || !p[n]))
            return true;
    return false;
}

static void add_distinct(struct sbuf *list, const char *word)
{
    if (in_list(list->s, word))
        return;
    if (list->len)
        sbuf_putc(list, ',');
    sbuf_puts(list, word);
}

/* "uprobe (short jmp)" -> "short", "uretprobe (trap)" -> "trap", else "jmp" */
static const char *placement(const char *kind)
{
    return strstr(kind, "(short jmp)") ? "short" : strstr(kind, "(trap)") ? "trap" : "jmp";
}

static void sum_hooks(const msgpack_object *hooks, struct hook_sum *sum)
{
    for (uint32_t i = 0; hooks && hooks->type == MSGPACK_OBJECT_ARRAY && i < hooks->via.array.size; i++) {
        const msgpack_object *h = &hooks->via.array.ptr[i];
        uint64_t addr = 0, hits = 0, misses = 0, dropped = 0;
        obj_u64(h, "address", &addr);
        if (!seen_address(hooks, i, addr, NULL)) {
            sum->places++;
            sum->hits += obj_u64(h, "hits", &hits) ? hits : 0;
            sum->misses += obj_u64(h, "misses", &misses) ? misses : 0;
        }
        if (obj_u64(h, "dropped", &dropped) && !seen_address(hooks, i, addr, "dropped"))
            sum->dropped += dropped;
        add_distinct(&sum->engines, obj_str(h, "engine"));
        add_distinct(&sum->kinds, placement(obj_str(h, "kind")));
    }
}

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void target_header(void)
{
    printf("%-8s %-16s %-5s %-5s %-12s %-8s %-6s %-7s %-9s %-9s %-14s %s\n", "PID", "COMM", "HOOKS", "PROGS", "ENGINE",
           "HITS", "MISSES", "DROPPED", "ATTACHED", "LAST-STOP", "PAYLOAD", "PLACED");
}

static void target_row(const msgpack_object *t)
{
    const msgpack_object *hooks = obj_get(t, "hooks");
    struct hook_sum sum = {0};
    sum_hooks(hooks, &sum);
    uint64_t sys = 0, at = 0, stop = 0, payload = 0, now = wall_ms();
    obj_u64(t, "syscall_programs", &sys);
    obj_u64(t, "last_stop_us", &stop);
    obj_u64(t, "payload", &payload);
    struct sbuf since = {0}, stopped = {0};
    if (obj_u64(t, "attached_at_ms", &at))
        sbuf_duration(&since, (now > at ? now - at : 0) * 1000);
    sbuf_duration(&stopped, stop);
    uint64_t progs = (hooks && hooks->type == MSGPACK_OBJECT_ARRAY ? hooks->via.array.size : 0) + sys;
    /* a state other than attached (inert, other-abi-N) says more than how the hooks are placed */
    const char *state = obj_str(t, "state"), *placed = sum.kinds.len ? sum.kinds.s : "-";
    /* a payload of another ABI replaced by this server's (server/README.md, "Versions") */
    /* also a run tool's payload of another ABI: served (tool-abi-N) or left as it is (tool-as-is) */
    const char *adopted = obj_str(t, "adopted");
    bool reinjected = !strcmp(adopted, "reinjected") || !strncmp(adopted, "tool-", 5);
    printf("%-8s %-16s %-5u %-5llu %-12s %-8llu %-6llu %-7llu %-9s %-9s 0x%-12llx %s%s%s%s\n", obj_str(t, "pid"),
           obj_str(t, "comm"), sum.places, (unsigned long long)progs, sum.engines.len ? sum.engines.s : "-",
           (unsigned long long)sum.hits, (unsigned long long)sum.misses, (unsigned long long)sum.dropped,
           since.len ? since.s : "-", stopped.s, (unsigned long long)payload,
           strcmp(state, "attached") && strcmp(state, "-") ? state : placed, reinjected ? " (" : "",
           reinjected ? adopted : "", reinjected ? ")" : "");
    sbuf_free(&sum.engines);
    sbuf_free(&sum.kinds);
    sbuf_free(&since);
    sbuf_free(&stopped);
}

static int cmd_ps(struct args *a)
{
    if (a->n)
        return usage_error("ps takes no arguments");
    return list_table("target.list", target_header, target_row);
}

static void tool_header(void)
{
    printf("%-8s %-24s %-6s %-4s %-5s %-17s %-6s %-12s %s\n", "PID", "NAME", "OBJECT", "LINK", "PROG", "KIND", "SCOPE",
           "IN", "TARGET");
}

/* A link's processes: "4242,4243", "-" for none. */
static void pids_of(struct sbuf *sb, const msgpack_object *l)
{
    const msgpack_object *in = obj_get(l, "attached");
    for (uint32_t i = 0; in && in->type == MSGPACK_OBJECT_ARRAY && i < in->via.array.size; i++) {
        if (i)
            sbuf_putc(sb, ',');
        text_inline_obj(sb, &in->via.array.ptr[i], false);
    }
    if (!sb->len)
        sbuf_putc(sb, '-');
}

/* One row per link (a tool without links: one row, link columns "-"). */
static void tool_row(const msgpack_object *tl)
{
    const msgpack_object *links = obj_get(tl, "links");
    uint32_t n = links && links->type == MSGPACK_OBJECT_ARRAY ? links->via.array.size : 0;
    static const msgpack_object none = {.type = MSGPACK_OBJECT_NIL};
    for (uint32_t i = 0; i < (n ? n : 1); i++) {
        const msgpack_object *l = n ? &links->via.array.ptr[i] : &none;
        struct sbuf in = {0};
        pids_of(&in, l);
        const char *scope = obj_str(l, "pid");
        printf("%-8s %-24s %-6s %-4s %-5s %-17s %-6s %-12s %s\n", obj_str(tl, "pid"), obj_str(tl, "name"),
               obj_str(tl, "object"), obj_str(l, "id"), obj_str(l, "prog"), obj_str(l, "kind"),
               strcmp(scope, "-1") ? scope : "all", in.s, obj_str(l, "target"));
        sbuf_free(&in);
    }
}

static int cmd_tools(struct args *a)
{
    if (a->n)
        return usage_error("tools takes no arguments");
    return list_table("tool.list", tool_header, tool_row);
}

/* ---- events ------------------------------------------------------------- */

static volatile sig_atomic_t g_stop;
static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* A record's symbolized stacks ("stacks": {field: [frames]}), one frame a
 * line under the field's name, as map dump prints a stack map's. */
static void print_record_stacks(struct sbuf *sb, const msgpack_object *stacks)
{
    for (uint32_t i = 0; stacks->type == MSGPACK_OBJECT_MAP && i < stacks->via.map.size; i++) {
        const msgpack_object_kv *kv = &stacks->via.map.ptr[i];
        if (kv->key.type != MSGPACK_OBJECT_STR || kv->val.type != MSGPACK_OBJECT_ARRAY)
            continue;
        sbuf_printf(sb, "\n  %.*s: frames: %u", (int)kv->key.via.str.size, kv->key.via.str.ptr, kv->val.via.array.size);
        for (uint32_t k = 0; k < kv->val.via.array.size; k++) {
            const msgpack_object *f = &kv->val.via.array.ptr[k];
            if (f->type == MSGPACK_OBJECT_STR)
                sbuf_printf(sb, "\n    %.*s", (int)f->via.str.size, f->via.str.ptr);
        }
    }
}

static void print_event(const msgpack_object *ev, bool trace_only)
{
    struct sbuf sb = {0};
    if (g_json) {
        json_from_obj(&sb, ev);
    } else if (trace_only) {
        const msgpack_object *line = obj_get(ev, "line");
        sbuf_printf(&sb, "[%s] ", obj_str(ev, "pid"));
        if (line && line->type == MSGPACK_OBJECT_STR)
            sbuf_putn(&sb, line->via.str.ptr, line->via.str.size);
    } else {
        sbuf_printf(&sb, "%s:", obj_str(ev, "topic"));
        for (uint32_t i = 0; ev->type == MSGPACK_OBJECT_MAP && i < ev->via.map.size; i++) {
            const msgpack_object_kv *kv = &ev->via.map.ptr[i];
            if (bpfg_obj_str_eq(&kv->key, "topic") || bpfg_obj_str_eq(&kv->key, "stacks"))
                continue;
            sbuf_putc(&sb, ' ');
            text_inline_obj(&sb, &kv->key, false);
            sbuf_putc(&sb, '=');
            text_inline_obj(&sb, &kv->val, kv->val.type == MSGPACK_OBJECT_STR);
        }
        const msgpack_object *stacks = obj_get(ev, "stacks");
        if (stacks)
            print_record_stacks(&sb, stacks);
    }
    while (sb.len && sb.s[sb.len - 1] == '\n') /* trace lines may end in \n */
        sb.s[--sb.len] = 0;
    puts(sb.s ? sb.s : "");
    fflush(stdout);
    sbuf_free(&sb);
}

static int event_loop(const char **topics, int ntopics, bool trace_only)
{
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "events.subscribe", ntopics ? 1 : 0);
    if (ntopics) {
        pack_key(&out.pk, "topics");
        msgpack_pack_array(&out.pk, (uint32_t)ntopics);
        for (int i = 0; i < ntopics; i++)
            bpfg_pack_cstr(&out.pk, topics[i]);
    }
    struct bpfg_rpc_msg msg;
    int rc = call(&out, &msg);
    if (rc)
        return rc;
    bpfg_rpc_msg_release(&msg);

    /* No SA_RESTART: poll returns EINTR and the loop ends cleanly. */
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    int fd = bpfg_rpc_conn_fd(g_conn.rpc);
    bool read = false;
    while (!g_stop) {
        int r = bpfg_rpc_recv(g_conn.rpc, &msg, read);
        if (r == 1) {
            if (msg.kind == BPFG_RPC_NOTIFICATION && msg.params.type == MSGPACK_OBJECT_ARRAY)
                for (uint32_t i = 0; i < msg.params.via.array.size; i++)
                    print_event(&msg.params.via.array.ptr[i], trace_only);
            bpfg_rpc_msg_release(&msg);
            read = false;
            continue;
        }
        bpfg_rpc_msg_release(&msg);
        if (r < 0) {
            if (r == -EPIPE)
                fprintf(stderr, "bpfgraft: %s closed the connection\n", g_conn.path);
            else
                fprintf(stderr, "bpfgraft: %s\n", bpfg_rpc_conn_error(g_conn.rpc));
            return 1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR) {
            fprintf(stderr, "bpfgraft: poll: %s\n", strerror(errno));
            return 1;
        }
        read = p.revents != 0;
    }
    return 0;
}

static int cmd_trace(struct args *a)
{
    if (a->n)
        return usage_error("trace takes no arguments");
    const char *topics[] = {"trace"};
    return event_loop(topics, 1, true);
}

static int cmd_events(struct args *a)
{
    const char *topics[16];
    int n = 0, r;
    while ((r = take_opt(a, "--topic", &topics[n])) == 1)
        if (++n == 16)
            return usage_error("events: at most 16 topics");
    if (r < 0)
        return usage_error("events: --topic needs a value");
    int rc = check_no_flags(a, "events");
    if (rc)
        return rc;
    if (a->n)
        return usage_error("usage: bpfgraft events [--topic T]...");
    return event_loop(topics, n, false);
}

/* ---- api ---------------------------------------------------------------- */

static int cmd_api(struct args *a)
{
    if (a->n)
        return usage_error("api takes no arguments");
    struct bpfg_rpc_msg resp;
    int rc = call_ref("api.info", NULL, NULL, &resp);
    if (rc)
        return rc;
    const msgpack_object *r = &resp.params;
    if (g_json) {
        print_json(r);
        bpfg_rpc_msg_release(&resp);
        return 0;
    }
    printf("bpfgraftd %s, api level %s\n\nmethods:\n", obj_str(r, "version"), obj_str(r, "api_level"));
    const msgpack_object *ms = obj_get(r, "methods");
    for (uint32_t i = 0; ms && ms->type == MSGPACK_OBJECT_ARRAY && i < ms->via.array.size; i++) {
        const msgpack_object *m = &ms->via.array.ptr[i];
        const msgpack_object *ps = obj_get(m, "params");
        printf("  %s {", obj_str(m, "name"));
        for (uint32_t j = 0; ps && ps->type == MSGPACK_OBJECT_ARRAY && j < ps->via.array.size; j++) {
            const msgpack_object *p = &ps->via.array.ptr[j];
            const msgpack_object *req = obj_get(p, "required");
            bool optional = req && req->type == MSGPACK_OBJECT_BOOLEAN && !req->via.boolean;
            printf("%s%s%s: %s", j ? ", " : "", obj_str(p, "name"), optional ? "?" : "", obj_str(p, "type"));
        }
        printf("} -> %s  (since %s)\n", obj_str(m, "result"), obj_str(m, "since"));
        const msgpack_object *doc = obj_get(m, "doc");
        if (doc && doc->type == MSGPACK_OBJECT_STR && doc->via.str.size)
            printf("      %.*s\n", (int)doc->via.str.size, doc->via.str.ptr);
    }
    printf("\nerrors:\n");
    const msgpack_object *es = obj_get(r, "errors");
    for (uint32_t i = 0; es && es->type == MSGPACK_OBJECT_ARRAY && i < es->via.array.size; i++)
        printf("  %3s %s\n", obj_str(&es->via.array.ptr[i], "code"), obj_str(&es->via.array.ptr[i], "name"));
    bpfg_rpc_msg_release(&resp);
    return 0;
}

/* ---- audit -------------------------------------------------------------- */

/* --since: 30s, 10m, 2h, 7d ago, or unix seconds; unix ms into *ms. */
static bool parse_since(const char *s, uint64_t *ms)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || errno)
        return false;
    static const struct {
        char unit;
        uint64_t secs;
    } units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
    if (!*end)
        return v >= 1000000000ull && (*ms = v * 1000, true); /* unix seconds, not a small number */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (end[0] == units[i].unit && !end[1] && v * units[i].secs * 1000 <= now_ms) {
            *ms = now_ms - v * units[i].secs * 1000;
            return true;
        }
    return false;
}

/* bpfgraft audit [--since S]: the server's audit log, one JSON line each. */
static int cmd_audit(struct args *a)
{
    const char *since = NULL;
    uint64_t since_ms = 0;
    if (take_opt(a, "--since", &since) < 0 || (since && !parse_since(since, &since_ms)))
        return usage_error("audit: --since needs a time: 30s, 10m, 2h, 7d ago, or unix seconds");
    int rc = check_no_flags(a, "audit");
    if (rc)
        return rc;
    if (a->n)
        return usage_error("usage: bpfgraft audit [--since TIME]");
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "audit.read", since ? 1 : 0);
    if (since) {
        pack_key(&out.pk, "since");
        msgpack_pack_uint64(&out.pk, since_ms);
    }
    struct bpfg_rpc_msg resp;
    if ((rc = call(&out, &resp)))
        return rc;
    const msgpack_object *lines = obj_get(&resp.params, "lines");
    for (uint32_t i = 0; lines && lines->type == MSGPACK_OBJECT_ARRAY && i < lines->via.array.size; i++) {
        const msgpack_object *l = &lines->via.array.ptr[i];
        if (l->type == MSGPACK_OBJECT_STR)
            printf("%.*s\n", (int)l->via.str.size, l->via.str.ptr);
    }
    const msgpack_object *tr = obj_get(&resp.params, "truncated");
    if (tr && tr->type == MSGPACK_OBJECT_BOOLEAN && tr->via.boolean)
        fprintf(stderr, "bpfgraft: older lines left out (8 MiB at most): narrow --since\n");
    bpfg_rpc_msg_release(&resp);
    return 0;
}

/* ---- dial-stdio ---------------------------------------------------------- */

/* The remote end of --host: marks the connection remote (session.remote,
 * with ssh's client address), then bridges stdio to it. */
static int cmd_dial_stdio(struct args *a)
{
    if (a->n)
        return usage_error("dial-stdio takes no arguments");
    char addr[80] = "";
    const char *conn = getenv("SSH_CONNECTION"); /* "CLIENT_IP CLIENT_PORT SERVER_IP SERVER_PORT" */
    char ip[64];
    unsigned port;
    if (conn && sscanf(conn, "%63s %u", ip, &port) == 2)
        snprintf(addr, sizeof(addr), strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "session.remote", addr[0] ? 2 : 1);
    pack_key(&out.pk, "transport");
    bpfg_pack_cstr(&out.pk, "ssh");
    if (addr[0]) {
        pack_key(&out.pk, "address");
        bpfg_pack_cstr(&out.pk, addr);
    }
    struct bpfg_rpc_msg resp;
    int rc = call(&out, &resp);
    if (rc)
        return rc;
    bpfg_rpc_msg_release(&resp);
    /* Nothing more is buffered: the server speaks only when asked. */
    return transport_bridge_stdio(bpfg_rpc_conn_fd(g_conn.rpc)) ? 1 : 0;
}

/* ---- stats -------------------------------------------------------------- */

static int cmd_stats(struct args *a)
{
    const char *sub = a->n == 1 ? a->v[0] : "";
    if (strcmp(sub, "status") == 0) {
        struct bpfg_rpc_msg resp;
        int rc = call_ref("server.status", NULL, NULL, &resp);
        if (rc)
            return rc;
        const msgpack_object *on = obj_get(&resp.params, "stats_enabled");
        bool enabled = on && on->type == MSGPACK_OBJECT_BOOLEAN && on->via.boolean;
        if (g_json)
            printf("{\"enabled\": %s}\n", enabled ? "true" : "false");
        else
            printf("stats %s\n", enabled ? "enabled" : "disabled");
        bpfg_rpc_msg_release(&resp);
        return 0;
    }
    if (strcmp(sub, "enable") && strcmp(sub, "disable"))
        return usage_error("usage: bpfgraft stats enable|disable|status");
    struct bpfg_rpc_out out;
    cli_begin(&g_conn, &out, "stats.set", 1);
    pack_key(&out.pk, "enabled");
    strcmp(sub, "enable") == 0 ? msgpack_pack_true(&out.pk) : msgpack_pack_false(&out.pk);
    return call_print(&out);
}

/* ---- main --------------------------------------------------------------- */

static const struct command {
    const char *name;
    int (*run)(struct args *a);
} commands[] = {
    {"status", cmd_status},
    {"load", cmd_load},
    {"unload", cmd_unload},
    {"prog", cmd_prog},
    {"map", cmd_map},
    {"attach", cmd_attach},
    {"start", cmd_start},
    {"run", cmd_run},
    {"tools", cmd_tools},
    {"compile", cmd_compile},
    {"detach", cmd_detach},
    {"ps", cmd_ps},
    {"trace", cmd_trace},
    {"events", cmd_events},
    {"api", cmd_api},
    {"shutdown", cmd_shutdown},
    {"dial-stdio", cmd_dial_stdio},
    {"audit", cmd_audit},
    {"stats", cmd_stats},
};

/* --tls-cert, --tls-key, --tls-ca FILE (or =FILE) at argv[*i]: 1 taken,
 * 0 not one of them, -1 without its file. */
static int tls_option(int argc, char **argv, int *i, struct cli_tls_files *tls)
{
    static const char *const names[] = {"--tls-cert", "--tls-key", "--tls-ca"};
    const char **slots[] = {&tls->cert, &tls->key, &tls->ca};
    for (size_t k = 0; k < 3; k++) {
        size_t n = strlen(names[k]);
        if (strncmp(argv[*i], names[k], n) != 0 || (argv[*i][n] && argv[*i][n] != '='))
            continue;
        if (argv[*i][n] == '=') {
            *slots[k] = argv[*i] + n + 1;
            return 1;
        }
        if (*i + 1 >= argc)
            return -1;
        *slots[k] = argv[++*i];
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *socket_path = getenv("BPFGRAFT_SOCKET");
    if (!socket_path || !*socket_path)
        socket_path = BPFGRAFT_DEFAULT_SOCKET;
    const char *host = getenv("BPFGRAFT_HOST");
    if (host && !*host)
        host = NULL;
    struct cli_tls_files tls = {getenv("BPFGRAFT_TLS_CERT"), getenv("BPFGRAFT_TLS_KEY"), getenv("BPFGRAFT_TLS_CA")};

    /* Global options may appear anywhere before "--". */
    struct args a = {.v = calloc((size_t)argc + 1, sizeof(char *))};
    if (!a.v) {
        fputs("bpfgraft: out of memory\n", stderr);
        return 1;
    }
    bool dashdash = false;
    a.flag_end = -1;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!dashdash) {
            if (strcmp(s, "--") == 0) {
                dashdash = true;
                a.flag_end = a.n;
                continue;
            }
            if (strcmp(s, "--json") == 0 || strcmp(s, "-j") == 0) {
                g_json = true;
                continue;
            }
            if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
                fputs(usage_text, stdout);
                free(a.v);
                return 0;
            }
            if (strcmp(s, "--socket") == 0) {
                if (i + 1 >= argc) {
                    free(a.v);
                    return usage_error("--socket needs a path");
                }
                socket_path = argv[++i];
                continue;
            }
            if (strncmp(s, "--socket=", 9) == 0) {
                socket_path = s + 9;
                continue;
            }
            if (strcmp(s, "--host") == 0 || strncmp(s, "--host=", 7) == 0) {
                if (s[6] == 0 && i + 1 >= argc) {
                    free(a.v);
                    return usage_error("--host needs ssh://[USER@]HOST[:PORT][/SOCKET] or tcps://HOST:PORT");
                }
                host = s[6] ? s + 7 : argv[++i];
                continue;
            }
            int t = tls_option(argc, argv, &i, &tls);
            if (t < 0) {
                free(a.v);
                return usage_error("%s needs a file", s);
            }
            if (t)
                continue;
        }
        a.v[a.n++] = argv[i];
    }
    if (a.flag_end < 0)
        a.flag_end = a.n;
    if (a.n == 0) {
        fputs(usage_text, stderr);
        free(a.v);
        return EXIT_USAGE;
    }

    const struct command *cmd = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(a.v[0], commands[i].name) == 0)
            cmd = &commands[i];
    if (!cmd) {
        int rc = usage_error("unknown command %s", a.v[0]);
        free(a.v);
        return rc;
    }
    struct cli_host parsed;
    char herr[512];
    if (host && strcmp(cmd->name, "dial-stdio") != 0 && transport_parse(host, &parsed, herr, sizeof(herr)) < 0) {
        free(a.v);
        return usage_error("%s", herr);
    }
    if (strcmp(cmd->name, "dial-stdio") == 0)
        host = NULL; /* the bridge always dials the local socket */
    /* Drop the command word. */
    struct args rest = {.v = a.v + 1, .n = a.n - 1, .flag_end = a.flag_end - 1};

    /* The first call connects: usage errors come out without a server. */
    cli_init(&g_conn, socket_path, host, &tls);
    int rc = cmd->run(&rest);
    cli_close(&g_conn);
    free(a.v);
    if (fflush(stdout) != 0 && rc == 0)
        rc = 1;
    return rc;
}
