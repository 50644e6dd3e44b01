/* bpfgraft-compile: ahead-of-time LLVM compilation of a BPF object.
 *
 *   bpfgraft-compile OBJ -o FILE [--cache-dir DIR] [-O LEVEL] [-q]
 *
 * Loads OBJ with the server's object loader, compiles every usable program
 * with the LLVM JIT in the server's options (bpfg_jitcache_server_opts:
 * relocatable map references, so the code fits any target) and writes an
 * archive FILE that bpfgraftd imports into its cache
 * (bpfg_jitcache_import); attaching then skips LLVM. With --cache-dir the
 * entries also go straight into that cache directory.
 * Prints one line per program (name, instructions, code bytes, compile
 * time). Exit status 0, 1 on errors, 2 on bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "objload.h"
#include "jitcache.h"

/* Placeholder values for map references: the slot is bound per target. */
#define PH_TAG 0x0bf9000000000000ull

static int resolve_placeholder(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    const struct bpfg_obj *obj = user;
    if ((src_reg != BPF_PSEUDO_MAP_IDX && src_reg != BPF_PSEUDO_MAP_IDX_VALUE) || imm0 < 0 ||
        (size_t)imm0 >= obj->map_cnt)
        return -EINVAL;
    *value = PH_TAG | (uint64_t)imm0 << 32 | (src_reg == BPF_PSEUDO_MAP_IDX_VALUE ? (uint32_t)imm1 + 1u : 0);
    return 0;
}

static int describe_placeholder(void *user, uint64_t value, struct bpfg_jit_map_info *info)
{
    const struct bpfg_obj *obj = user;
    uint64_t idx = (value >> 32) & 0xffff;
    if ((value & 0xffff000000000000ull) != PH_TAG || (uint32_t)value || idx >= obj->map_cnt)
        return -ENOENT;
    const struct bpfg_obj_map *m = &obj->maps[idx];
    /* the server's rule (server/targets.c map_info_for_target): plain
     * arrays with 4-byte keys, whose values every payload reports */
    if (m->type != BPF_MAP_TYPE_ARRAY || m->key_size != 4)
        return -ENOENT;
    *info = (struct bpfg_jit_map_info){
        .type = m->type,
        .key_size = m->key_size,
        .value_size = m->value_size,
        .max_entries = m->max_entries,
        .value_base = m->type == BPF_MAP_TYPE_ARRAY ? 1 : 0, /* known in every target */
    };
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bpfgraft-compile OBJ -o FILE [--cache-dir DIR] [-O LEVEL] [-q]\n");
}

int main(int argc, char **argv)
{
    const char *obj_path = NULL, *out_path = NULL, *cache_dir = NULL;
    int opt_level = 0; /* 0: the engine's default, as the server uses */
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (!strcmp(argv[i], "--cache-dir") && i + 1 < argc) {
            cache_dir = argv[++i];
        } else if (!strcmp(argv[i], "-O") && i + 1 < argc) {
            opt_level = atoi(argv[++i]);
            if (opt_level < 1 || opt_level > 3) {
                fprintf(stderr, "bpfgraft-compile: -O takes 1, 2 or 3\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "-q")) {
            quiet = true;
        } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] != '-' && !obj_path) {
            obj_path = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!obj_path || !out_path) {
        usage(stderr);
        return 2;
    }

    char err[1024];
    struct bpfg_obj *obj = bpfg_obj_open_file(obj_path, NULL, err, sizeof(err));
    if (!obj) {
        fprintf(stderr, "bpfgraft-compile: %s: %s\n", obj_path, err);
        return 1;
    }
    struct bpfg_jitcache *cache = NULL;
    if (cache_dir && !(cache = bpfg_jitcache_open(cache_dir))) {
        fprintf(stderr, "bpfgraft-compile: cache %s: %s\n", cache_dir, strerror(errno));
        bpfg_obj_free(obj);
        return 1;
    }
    struct bpfg_jitarchive *ar = bpfg_jitarchive_create(out_path);
    if (!ar) {
        fprintf(stderr, "bpfgraft-compile: %s: %s\n", out_path, strerror(errno));
        bpfg_jitcache_close(cache);
        bpfg_obj_free(obj);
        return 1;
    }

    struct bpfg_llvmjit_opts opts;
    bpfg_jitcache_server_opts(&opts);
    opts.jit.resolver = resolve_placeholder;
    opts.jit.resolver_user = obj;
    opts.jit.map_info = describe_placeholder;
    opts.jit.map_info_user = obj;
    opts.opt_level = opt_level;

    int status = 0;
    size_t compiled = 0;
    for (size_t i = 0; i < obj->prog_cnt && !status; i++) {
        const struct bpfg_obj_prog *p = &obj->progs[i];
        if (!p->insns) {
            if (!quiet)
                printf("%-24s skipped: %s\n", p->name, p->error ? p->error : "not loadable");
            continue;
        }
        uint8_t key[16];
        struct bpfg_llvmjit_blob blob;
        struct bpfg_llvmjit_stats st;
        double t0 = now_ms();
        int ret = bpfg_llvmjit_key(p->insns, p->insn_cnt, &opts, key, err, sizeof(err));
        if (!ret)
            ret = bpfg_llvmjit_compile_blob(p->insns, p->insn_cnt, &opts, &blob, &st, err, sizeof(err));
        if (ret) {
            fprintf(stderr, "bpfgraft-compile: %s: %s\n", p->name, err);
            status = 1;
            break;
        }
        double ms = now_ms() - t0;
        char name[512];
        snprintf(name, sizeof(name), "%s/%s", obj->name, p->name);
        ret = bpfg_jitarchive_add(ar, name, key, &blob);
        if (!ret && cache)
            ret = bpfg_jitcache_put(cache, key, &blob);
        if (ret) {
            fprintf(stderr, "bpfgraft-compile: writing %s: %s\n", name, strerror(-ret));
            status = 1;
        } else if (!quiet) {
            printf("%-24s %5zu insns -> %6zu bytes, %zu slots, %u inlined lookups, %.1f ms\n", p->name, p->insn_cnt,
                   blob.code.len, blob.nrelocs, st.inlined_lookups, ms);
        }
        compiled++;
        bpfg_llvmjit_blob_free(&blob);
    }
    int ret = bpfg_jitarchive_finish(ar);
    if (ret && !status) {
        fprintf(stderr, "bpfgraft-compile: %s: %s\n", out_path, strerror(-ret));
        status = 1;
    }
    if (!status && !compiled) {
        fprintf(stderr, "bpfgraft-compile: %s: no program to compile\n", obj_path);
        status = 1;
    }
    if (status)
        unlink(out_path); /* never leave a partial archive behind */
    bpfg_jitcache_close(cache);
    bpfg_obj_free(obj);
    return status;
}
