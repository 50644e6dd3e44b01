/* Loading and attaching the exporter's own object (see attach.h). */
#include "attach.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "out.h"

static int read_file(const char *path, char **data, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        *data = malloc(n ? (size_t)n : 1);
        if (*data && fread(*data, 1, (size_t)n, f) == (size_t)n) {
            *len = (size_t)n;
            fclose(f);
            return 0;
        }
        free(*data);
    }
    snprintf(err, errlen, "--object %s: %s", path, strerror(errno ? errno : EIO));
    if (f)
        fclose(f);
    return -1;
}

/* The object's name: the file's, without .bpf.o or .o. */
static void object_name(const char *path, char *name, size_t len)
{
    const char *base = strrchr(path, '/');
    snprintf(name, len, "%s", base ? base + 1 : path);
    char *dot = strstr(name, ".bpf.o");
    if (!dot)
        dot = strrchr(name, '.');
    if (dot && dot != name)
        *dot = 0;
}

static int load(struct cli_conn *c, const char *path, uint64_t *id, char *err, size_t errlen)
{
    char *data, name[256], why[1024];
    size_t len;
    if (read_file(path, &data, &len, err, errlen))
        return -1;
    object_name(path, name, sizeof(name));
    struct bpfg_rpc_out out;
    struct bpfg_rpc_msg resp;
    cli_begin(c, &out, "object.load", 2);
    bpfg_pack_cstr(&out.pk, "data");
    bpfg_pack_bin(&out.pk, data, len);
    bpfg_pack_cstr(&out.pk, "name");
    bpfg_pack_cstr(&out.pk, name);
    free(data);
    if (exp_call_out(c, &out, &resp, why, sizeof(why))) {
        snprintf(err, errlen, "loading %s: %s", path, why);
        return -1;
    }
    bool ok = obj_u64(&resp.params, "id", id);
    bpfg_rpc_msg_release(&resp);
    if (!ok)
        snprintf(err, errlen, "loading %s: object.load answered no id", path);
    return ok ? 0 : -1;
}

/* Whether bpfgraftd already has pid attached (then it stays at the end). */
static bool attached_before(struct cli_conn *c, int64_t pid)
{
    struct bpfg_rpc_msg resp;
    char why[512];
    uint64_t p;
    bool found = false;
    if (exp_call(c, "target.list", NULL, 0, &resp, why, sizeof(why)))
        return false;
    for (uint32_t i = 0; resp.params.type == MSGPACK_OBJECT_ARRAY && i < resp.params.via.array.size; i++)
        found |= obj_u64(&resp.params.via.array.ptr[i], "pid", &p) && p == (uint64_t)pid;
    bpfg_rpc_msg_release(&resp);
    return found;
}

static int attach(struct cli_conn *c, struct exp_attachment *a, int64_t pid, const char *target, char *err,
                  size_t errlen)
{
    char why[1024];
    struct bpfg_rpc_out out;
    struct bpfg_rpc_msg resp;
    bool before = attached_before(c, pid);
    cli_begin(c, &out, "target.attach", target ? 3 : 2);
    bpfg_pack_cstr(&out.pk, "pid");
    msgpack_pack_uint64(&out.pk, (uint64_t)pid);
    bpfg_pack_cstr(&out.pk, "object");
    msgpack_pack_uint64(&out.pk, a->object);
    if (target) {
        bpfg_pack_cstr(&out.pk, "target");
        bpfg_pack_cstr(&out.pk, target);
    }
    if (exp_call_out(c, &out, &resp, why, sizeof(why))) {
        snprintf(err, errlen, "attaching to process %lld: %s", (long long)pid, why);
        return -1;
    }
    bpfg_rpc_msg_release(&resp);
    a->pid = pid;
    a->detach = !before;
    return 0;
}

int exp_attach_setup(struct cli_conn *c, const char *path, int64_t pid, const char *target, struct exp_attachment *a,
                     char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    if (load(c, path, &a->object, err, errlen))
        return -1;
    if (pid && attach(c, a, pid, target, err, errlen)) {
        exp_attach_teardown(c, a);
        return -1;
    }
    return 0;
}

void exp_attach_teardown(struct cli_conn *c, struct exp_attachment *a)
{
    struct bpfg_rpc_msg resp;
    char why[1024];
    if (a->pid && a->detach) {
        if (exp_call(c, "target.detach", "pid", (uint64_t)a->pid, &resp, why, sizeof(why)))
            fprintf(stderr, "bpfgraft-exporter: detaching process %lld: %s\n", (long long)a->pid, why);
        else
            bpfg_rpc_msg_release(&resp);
    }
    if (a->object) {
        if (exp_call(c, "object.unload", "id", a->object, &resp, why, sizeof(why)))
            fprintf(stderr, "bpfgraft-exporter: unloading object %llu: %s\n", (unsigned long long)a->object, why);
        else
            bpfg_rpc_msg_release(&resp);
    }
    memset(a, 0, sizeof(*a));
}
