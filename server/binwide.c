/* Binary-wide attachments of the native CLI (binwide.h). */
#define _GNU_SOURCE
#include "binwide.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "execwatch.h"
#include "log.h"
#include "registry.h"
#include "rpc.h"
#include "server.h"
#include "symbols.h"
#include "targets.h"
#include "tool.h"

#define BINWIDE_MAX_PROGS 64

struct scope {
    char *path;
    char *target_spec;
    uint32_t obj_id;
    uint32_t ids[BINWIDE_MAX_PROGS];
    size_t nids;
    int engine;
    uint64_t cookie;
    uid_t uid;
    pid_t *pids; /* processes its programs went into */
    size_t npids;
    struct scope *next;
};

static struct scope *scopes;
static bool applying; /* attaching a scope: targets_attach calls back */

static struct scope *find(const char *path)
{
    for (struct scope *b = scopes; b; b = b->next)
        if (!strcmp(b->path, path))
            return b;
    return NULL;
}

static bool scope_has(const struct scope *b, pid_t pid)
{
    for (size_t i = 0; i < b->npids; i++)
        if (b->pids[i] == pid)
            return true;
    return false;
}

static void scope_free(struct scope *b)
{
    free(b->path);
    free(b->target_spec);
    free(b->pids);
    free(b);
}

/* Puts b's programs into pid (peer: the caller, 0 for a process caught
 * later). A process not managed before leaves with the scope. */
static int apply(struct server *s, struct scope *b, pid_t pid, pid_t peer, char *err, size_t errlen)
{
    pid_t *grown = realloc(b->pids, (b->npids + 1) * sizeof(*grown));
    if (!grown)
        return srv_efail(err, errlen, BPFG_RPC_E_INTERNAL, "out of memory");
    b->pids = grown;
    bool fresh = !targets_find(&s->targets, pid);
    applying = true;
    int code = targets_attach(s, pid, b->uid, peer, b->ids, b->nids, b->target_spec, b->engine, b->cookie, err, errlen);
    applying = false;
    if (code)
        return code;
    struct target *t = targets_find(&s->targets, pid);
    if (t && fresh)
        t->for_tools = true; /* not attached on its own: released once nothing runs there */
    b->pids[b->npids++] = pid;
    srv_log(SRV_INFO, "process %d: programs of %s's binary-wide scope attached", (int)pid, b->path);
    return 0;
}

/* Every running process that maps b->path (not the server, not a tool). */
static size_t apply_running(struct server *s, struct scope *b, pid_t peer)
{
    DIR *d = opendir("/proc");
    if (!d) {
        srv_log(SRV_WARN, "binary-wide %s: /proc: %s", b->path, strerror(errno));
        return 0;
    }
    size_t n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        pid_t pid = (pid_t)atoi(de->d_name);
        char err[512];
        if (pid <= 0 || pid == getpid() || tools_has_pid(pid) || !sym_maps_binary(pid, b->path))
            continue;
        if (apply(s, b, pid, peer, err, sizeof(err)) == 0)
            n++;
        else
            srv_log(SRV_WARN, "binary-wide %s: process %d skipped: %s", b->path, (int)pid, err);
    }
    closedir(d);
    return n;
}

static int scope_new(const struct binwide_req *req, struct scope **out, char *err, size_t errlen)
{
    struct stat st;
    if (req->path[0] != '/' || stat(req->path, &st) != 0 || !S_ISREG(st.st_mode))
        return srv_efail(err, errlen, BPFG_RPC_E_INVALID_PARAMS, "--path %s: not an absolute path to a file",
                         req->path);
    if (find(req->path))
        return srv_efail(err, errlen, BPFG_RPC_E_EXISTS,
                         "%s already has a binary-wide attachment (detach --path first)", req->path);
    if (req->nids == 0 || req->nids > BINWIDE_MAX_PROGS)
        return srv_efail(err, errlen, BPFG_RPC_E_INVALID_PARAMS, "a binary-wide attachment needs 1 to %d programs",
                         BINWIDE_MAX_PROGS);
    struct scope *b = calloc(1, sizeof(*b));
    if (!b || !(b->path = strdup(req->path)) || !(b->target_spec = strdup(req->target_spec ? req->target_spec : ""))) {
        if (b)
            scope_free(b);
        return srv_efail(err, errlen, BPFG_RPC_E_INTERNAL, "out of memory");
    }
    memcpy(b->ids, req->ids, req->nids * sizeof(*req->ids));
    b->nids = req->nids;
    b->engine = req->engine;
    b->cookie = req->cookie;
    b->uid = req->uid;
    *out = b;
    return 0;
}

int binwide_attach(struct server *s, const struct binwide_req *req, size_t *nproc, char *err, size_t errlen)
{
    struct scope *b = NULL;
    int code = scope_new(req, &b, err, errlen);
    if (code)
        return code;
    struct reg_prog *p = registry_prog(&s->reg, req->ids[0]);
    b->obj_id = p ? p->obj_id : 0;
    int r = execwatch_add(s, b->path, err, errlen);
    if (r) {
        scope_free(b);
        return r == -EACCES || r == -EPERM ? BPFG_RPC_E_PERMISSION : BPFG_RPC_E_TARGET;
    }
    b->next = scopes;
    scopes = b;
    *nproc = apply_running(s, b, req->peer);
    srv_log(SRV_INFO, "binary-wide %s: %zu program(s) in %zu running process(es), new ones caught at exec", b->path,
            b->nids, *nproc);
    return 0;
}

int binwide_detach(struct server *s, const char *path, uid_t uid, size_t *nproc, char *err, size_t errlen)
{
    struct scope **pp = &scopes;
    while (*pp && strcmp((*pp)->path, path))
        pp = &(*pp)->next;
    struct scope *b = *pp;
    if (!b)
        return srv_efail(err, errlen, BPFG_RPC_E_NOT_FOUND, "%s has no binary-wide attachment", path);
    if (uid != 0 && uid != b->uid)
        return srv_efail(err, errlen, BPFG_RPC_E_PERMISSION, "the binary-wide attachment of %s is uid %u's", path,
                         (unsigned)b->uid);
    *pp = b->next;
    execwatch_remove(s, b->path);
    *nproc = 0;
    for (size_t i = 0; i < b->npids; i++) {
        struct target *t = targets_find(&s->targets, b->pids[i]);
        if (t && targets_remove_progs(s, t, b->ids, b->nids, NULL, 0) == 0)
            (*nproc)++;
    }
    srv_log(SRV_INFO, "binary-wide %s: ended, its programs left %zu process(es)", b->path, *nproc);
    scope_free(b);
    tools_release_targets(s);
    return 0;
}

void binwide_target_added(struct server *s, struct target *t)
{
    if (applying)
        return;
    for (struct scope *b = scopes; b; b = b->next) {
        char err[512];
        if (scope_has(b, t->pid) || tools_has_pid(t->pid) || !sym_maps_binary(t->pid, b->path))
            continue;
        if (apply(s, b, t->pid, 0, err, sizeof(err)) != 0)
            srv_log(SRV_WARN, "binary-wide %s: process %d: %s", b->path, (int)t->pid, err);
    }
}

bool binwide_wants(pid_t pid)
{
    for (struct scope *b = scopes; b; b = b->next)
        if (sym_maps_binary(pid, b->path))
            return true;
    return false;
}

void binwide_target_gone(const struct target *t)
{
    for (struct scope *b = scopes; b; b = b->next)
        for (size_t i = 0; i < b->npids; i++)
            if (b->pids[i] == t->pid)
                b->pids[i--] = b->pids[--b->npids];
}

bool binwide_uses_object(uint32_t obj_id)
{
    for (struct scope *b = scopes; b; b = b->next)
        if (b->obj_id == obj_id)
            return true;
    return false;
}

void binwide_pack_list(msgpack_packer *pk)
{
    size_t n = 0;
    for (struct scope *b = scopes; b; b = b->next)
        n++;
    msgpack_pack_array(pk, n);
    for (struct scope *b = scopes; b; b = b->next) {
        msgpack_pack_map(pk, 4);
        bpfg_pack_cstr(pk, "path");
        bpfg_pack_cstr(pk, b->path);
        bpfg_pack_cstr(pk, "object");
        msgpack_pack_uint32(pk, b->obj_id);
        bpfg_pack_cstr(pk, "programs");
        msgpack_pack_array(pk, b->nids);
        for (size_t i = 0; i < b->nids; i++)
            msgpack_pack_uint32(pk, b->ids[i]);
        bpfg_pack_cstr(pk, "processes");
        msgpack_pack_array(pk, b->npids);
        for (size_t i = 0; i < b->npids; i++)
            msgpack_pack_int32(pk, b->pids[i]);
    }
}

void binwide_destroy(void)
{
    while (scopes) {
        struct scope *b = scopes;
        scopes = b->next;
        scope_free(b);
    }
}
