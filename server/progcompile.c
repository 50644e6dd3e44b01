#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "progcompile.h"
#include "server.h"
#ifdef BPFGRAFT_HAVE_LLVM
#include "jitcache.h"
#include "llvmjit.h"
#endif

/* ---- native code for one target ---- */

struct resolve_ctx {
    const struct target *t;
    const struct reg_object *o;
};

/* lddw map references, resolved to the addresses this target's payload
 * reported (the payload's own resolver, main.c, gives the interpreter the
 * same values). */
static int resolve_for_target(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    const struct resolve_ctx *rc = user;
    if (src_reg != BPF_PSEUDO_MAP_IDX && src_reg != BPF_PSEUDO_MAP_IDX_VALUE)
        return -EINVAL;
    if (imm0 < 0 || (size_t)imm0 >= rc->o->map_cnt)
        return -ENOENT;
    const struct target_map_addr *a = NULL;
    for (size_t i = 0; i < rc->t->nmaps_sent && !a; i++)
        if (rc->t->maps_sent[i] == rc->o->map_ids[imm0])
            a = &rc->t->map_addrs[i];
    if (!a || !a->known)
        return -ENOENT;
    if (src_reg == BPF_PSEUDO_MAP_IDX) {
        *value = a->handle;
        return 0;
    }
    if (!a->value_area || imm1 < 0 || (uint64_t)imm1 >= a->value_size)
        return -EINVAL;
    *value = a->value_area + (uint64_t)imm1;
    return 0;
}

/* Compiles op for t with the engine asked for, or the next one down
 * (reasons logged). Returns the engine that made *code, or
 * BPFG_ENGINE_INTERP with nothing in *code. */
/* Lookup inlining: an ARRAY map whose values this target's payload maps
 * contiguously (value_area known) becomes loads from that address. */
struct map_info_ctx {
    struct server *s;
    const struct target *t;
};

static int map_info_for_target(void *user, uint64_t value, struct bpfg_jit_map_info *info)
{
    const struct map_info_ctx *mc = user;
    for (size_t i = 0; i < mc->t->nmaps_sent; i++) {
        const struct target_map_addr *a = &mc->t->map_addrs[i];
        if (!a->known || a->handle != value || !a->value_area)
            continue;
        struct reg_map *m = registry_map(&mc->s->reg, mc->t->maps_sent[i]);
        if (!m)
            return -ENOENT;
        struct bpfg_map_info mi;
        bpfg_map_get_info(m->map, &mi);
        if (mi.type != BPF_MAP_TYPE_ARRAY || mi.key_size != 4)
            return -ENOENT;
        *info = (struct bpfg_jit_map_info){
            .type = mi.type,
            .key_size = mi.key_size,
            .value_size = mi.value_size,
            .max_entries = mi.max_entries,
            .value_base = a->value_area,
        };
        return 0;
    }
    return -ENOENT;
}

#ifdef BPFGRAFT_HAVE_LLVM
/* The on-disk cache, opened at the first LLVM compile (so a server that
 * never attaches creates nothing). NULL: compile without it. */
static struct bpfg_jitcache *jitcache(struct server *s)
{
    struct targets *ts = &s->targets;
    if (!ts->jitcache && !ts->jitcache_failed) {
        ts->jitcache = bpfg_jitcache_open(ts->cache_dir[0] ? ts->cache_dir : NULL);
        if (!ts->jitcache) {
            ts->jitcache_failed = true;
            srv_log(SRV_WARN, "compiled-code cache %s unusable (%s): compiling without it",
                    ts->cache_dir[0] ? ts->cache_dir : BPFG_JITCACHE_DEFAULT_DIR, strerror(errno));
        } else if (ts->jit_archive[0]) {
            int n = bpfg_jitcache_import(ts->jitcache, ts->jit_archive);
            if (n < 0)
                srv_log(SRV_WARN, "cannot import %s: %s", ts->jit_archive, strerror(-n));
            else
                srv_log(SRV_INFO, "imported %d precompiled programs from %s", n, ts->jit_archive);
        }
    }
    return ts->jitcache;
}

/* The server's LLVM options, map and symbol references resolved for the
 * target (rc and mc must outlive lo's use). */
static void target_llvm_opts(struct bpfg_llvmjit_opts *lo, struct resolve_ctx *rc, struct map_info_ctx *mc)
{
    bpfg_jitcache_server_opts(lo);
    lo->jit.resolver = resolve_for_target;
    lo->jit.resolver_user = rc;
    lo->jit.map_info = map_info_for_target;
    lo->jit.map_info_user = mc;
}

static int compile_llvm(struct server *s, const struct target *t, const struct reg_object *o, const struct reg_prog *p,
                        struct bpfg_x86jit_code *code)
{
    const struct bpfg_obj_prog *op = p->prog;
    struct resolve_ctx rc = {t, o};
    struct map_info_ctx mc = {s, t};
    struct bpfg_llvmjit_opts lo;
    target_llvm_opts(&lo, &rc, &mc);
    struct bpfg_llvmjit_blob blob = {0};
    char why[512];
    bool hit = false;
    struct bpfg_jitcache *cache = jitcache(s);
    /* without a cache (NULL) it compiles and binds all the same */
    int r = bpfg_jitcache_compile(cache, op->insns, op->insn_cnt, &lo, &blob, &hit, why, sizeof(why));
    if (r) {
        bpfg_llvmjit_blob_free(&blob);
        srv_log(SRV_WARN, "target %d: program %u '%s': the llvm engine refused it (%s); using x86", (int)t->pid, p->id,
                op->name, why);
        return r;
    }
    *code = blob.code; /* the code changes hands */
    blob.code = (struct bpfg_x86jit_code){0};
    bpfg_llvmjit_blob_free(&blob);
    srv_log(SRV_DEBUG, "target %d: program %u '%s': llvm code %s", (int)t->pid, p->id, op->name,
            hit ? "from the cache" : "compiled");
    return 0;
}

/* Whether p's code is in the cache on its own (a single hit is cheaper
 * than any compile, and an archive holds single programs). */
static bool cached_alone(struct bpfg_jitcache *cache, const struct bpfg_obj_prog *op,
                         const struct bpfg_llvmjit_opts *lo)
{
    uint8_t key[16];
    char why[256];
    return cache && bpfg_llvmjit_key(op->insns, op->insn_cnt, lo, key, why, sizeof(why)) == 0 &&
           bpfg_jitcache_contains(cache, key);
}

/* The compiled batch into b: its code in a memfd. */
static int batch_ship(const struct bpfg_llvmjit_batch *lb, const struct reg_prog *const *in, size_t n,
                      struct progcompile_batch *b)
{
    b->prog_ids = malloc(n * sizeof(*b->prog_ids));
    b->entry_off = malloc(n * sizeof(*b->entry_off));
    if (!b->prog_ids || !b->entry_off)
        return -ENOMEM;
    int fd = progcompile_code_memfd(&lb->blob.code);
    if (fd < 0)
        return fd;
    for (size_t i = 0; i < n; i++) {
        b->prog_ids[i] = in[i]->id;
        b->entry_off[i] = lb->entry_off[i];
    }
    b->fd = fd;
    b->n = n;
    b->code_len = (uint32_t)lb->blob.code.len;
    return 0;
}

/* The k programs lp (in: their records) compiled as one batch into b; a
 * failure leaves b empty (they compile one by one), logged. */
static void batch_compile(struct bpfg_jitcache *cache, const struct bpfg_llvmjit_prog *lp,
                          const struct reg_prog *const *in, size_t k, const struct bpfg_llvmjit_opts *lo,
                          struct progcompile_batch *b, const struct target *t, const struct reg_object *o)
{
    struct bpfg_llvmjit_batch lb;
    char why[512];
    bool hit = false;
    int r = bpfg_jitcache_compile_batch(cache, lp, k, lo, &lb, &hit, why, sizeof(why));
    if (!r && (r = batch_ship(&lb, in, k, b)))
        snprintf(why, sizeof(why), "%s", strerror(-r));
    if (!r)
        srv_log(SRV_DEBUG, "target %d: %zu programs of '%s': llvm code %s as one batch", (int)t->pid, k,
                o->name ? o->name : "?", hit ? "from the cache" : "compiled");
    else
        srv_log(SRV_INFO, "target %d: %zu programs of '%s' do not compile as one batch (%s): one by one", (int)t->pid,
                k, o->name ? o->name : "?", why);
    if (r)
        progcompile_batch_free(b);
    bpfg_llvmjit_batch_free(&lb);
}

void progcompile_batch_llvm(struct server *s, const struct target *t, const struct reg_object *o,
                            const struct reg_prog *const *progs, size_t n, struct progcompile_batch *b)
{
    *b = (struct progcompile_batch){.fd = -1};
    struct resolve_ctx rc = {t, o};
    struct map_info_ctx mc = {s, t};
    struct bpfg_llvmjit_opts lo;
    target_llvm_opts(&lo, &rc, &mc);
    struct bpfg_jitcache *cache = jitcache(s);
    struct bpfg_llvmjit_prog *lp = calloc(n ? n : 1, sizeof(*lp));
    const struct reg_prog **in = calloc(n ? n : 1, sizeof(*in));
    size_t k = 0;
    for (size_t i = 0; lp && in && i < n && k < BPFG_LLVMJIT_MAX_BATCH; i++)
        if (!cached_alone(cache, progs[i]->prog, &lo)) {
            in[k] = progs[i];
            lp[k++] = (struct bpfg_llvmjit_prog){progs[i]->prog->insns, progs[i]->prog->insn_cnt};
        }
    if (k >= 2)
        batch_compile(cache, lp, in, k, &lo, b, t, o);
    free(lp);
    free(in);
}
#endif

bool progcompile_batch_find(const struct progcompile_batch *b, uint32_t prog_id, uint32_t *entry_off)
{
    for (size_t i = 0; b && i < b->n; i++)
        if (b->prog_ids[i] == prog_id) {
            *entry_off = b->entry_off[i];
            return true;
        }
    return false;
}

void progcompile_batch_free(struct progcompile_batch *b)
{
    if (b->fd >= 0)
        close(b->fd);
    free(b->prog_ids);
    free(b->entry_off);
    *b = (struct progcompile_batch){.fd = -1};
}

int progcompile_for_target(struct server *s, const struct target *t, const struct reg_object *o,
                           const struct reg_prog *p, int engine, struct bpfg_x86jit_code *code)
{
    const struct bpfg_obj_prog *op = p->prog;
    if (engine == BPFG_ENGINE_LLVM) {
#ifdef BPFGRAFT_HAVE_LLVM
        if (compile_llvm(s, t, o, p, code) == 0)
            return BPFG_ENGINE_LLVM;
#else
        (void)s;
        srv_log(SRV_INFO, "target %d: program %u '%s': llvm engine not built; using x86", (int)t->pid, p->id, op->name);
#endif
        engine = BPFG_ENGINE_X86;
    }
    if (engine != BPFG_ENGINE_X86)
        return BPFG_ENGINE_INTERP;
    struct resolve_ctx rc = {t, o};
    struct map_info_ctx mc = {s, t};
    struct bpfg_x86jit_opts opts = {
        .resolver = resolve_for_target,
        .resolver_user = &rc,
        .map_info = map_info_for_target,
        .map_info_user = &mc,
        .has_unwind = true,
        .unwind_id = BPF_FUNC_tail_call,
        .per_run_user = true,
    };
    /* Every id: the payload's own load refuses helpers it lacks, and the
     * code stops a run that reaches an empty table entry. */
    memset(opts.helpers, 0xff, sizeof(opts.helpers));
    char why[256];
    int r = bpfg_x86jit_compile(op->insns, op->insn_cnt, &opts, code, why, sizeof(why));
    if (r) {
        srv_log(SRV_WARN, "target %d: program %u '%s': the x86 JIT refused it (%s); using the interpreter", (int)t->pid,
                p->id, op->name, why);
        return BPFG_ENGINE_INTERP;
    }
    return BPFG_ENGINE_X86;
}

/* The code in a sealed memfd: the payload can map it but nobody can change
 * it any more. */
int progcompile_code_memfd(const struct bpfg_x86jit_code *code)
{
    int fd = memfd_create("bpfgraft-code", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    for (size_t off = 0; off < code->len;) {
        ssize_t n = write(fd, code->buf + off, code->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int err = n < 0 ? -errno : -EIO;
            close(fd);
            return err;
        }
        off += (size_t)n;
    }
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

void progcompile_shutdown(struct server *s)
{
#ifdef BPFGRAFT_HAVE_LLVM
    bpfg_jitcache_close(s->targets.jitcache);
    s->targets.jitcache = NULL;
#else
    (void)s;
#endif
}
