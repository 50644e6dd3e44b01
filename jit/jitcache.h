/* The on-disk cache of LLVM JIT blobs, and archives of precompiled blobs
 * (`bpfgraft-compile OBJ -o FILE`) the server imports into its cache.
 *
 * An entry is keyed by bpfg_llvmjit_key() (program after map resolution,
 * or as in the object for relocatable blobs; code-changing options; host
 * CPU; LLVM version) and holds the blob and its slots. One file per entry,
 * DIR/<32 hex digits>.jit, written to a temporary file and renamed, so
 * readers never see half an entry and concurrent writers of the same key
 * are harmless. Each record carries its key, sizes and a checksum; a
 * damaged entry reads as a miss and is removed.
 *
 * The key is a 128-bit non-cryptographic hash (see bpfg_llvmjit_key):
 * accidental collisions are negligible, a crafted pair of programs could
 * share a key. Anyone who can write the cache directory can make the
 * server run their code, so the directory must be as trusted as the server
 * binary (created 0700; the default is root's /var/cache/bpfgraft).
 */
#ifndef BPFGRAFT_JITCACHE_H
#define BPFGRAFT_JITCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "llvmjit.h"

#define BPFG_JITCACHE_DEFAULT_DIR "/var/cache/bpfgraft"

struct bpfg_jitcache;

/* Opens (creating it, mode 0700, parents included) the cache directory;
 * NULL dir means BPFG_JITCACHE_DEFAULT_DIR. NULL and errno on failure. */
struct bpfg_jitcache *bpfg_jitcache_open(const char *dir);
void bpfg_jitcache_close(struct bpfg_jitcache *c);

/* 0 and the blob (free with bpfg_llvmjit_blob_free), -ENOENT on a miss. */
int bpfg_jitcache_get(struct bpfg_jitcache *c, const uint8_t key[16], struct bpfg_llvmjit_blob *out);
int bpfg_jitcache_put(struct bpfg_jitcache *c, const uint8_t key[16], const struct bpfg_llvmjit_blob *blob);

/* Compiles through the cache: a hit skips LLVM entirely. A relocatable
 * blob (opts->relocatable_maps) is bound to opts' resolver and map_info
 * before it is returned. *hit (may be NULL) says whether LLVM was spared.
 * c may be NULL: no cache, the program is compiled (and bound). */
int bpfg_jitcache_compile(struct bpfg_jitcache *c, const struct bpf_insn *insns, size_t n,
                          const struct bpfg_llvmjit_opts *opts, struct bpfg_llvmjit_blob *out, bool *hit, char *err,
                          size_t errlen);

/* Batches (bpfg_llvmjit_compile_batch) under the key bpfg_llvmjit_batch_key
 * of their programs' keys: one entry holds the shared blob and each
 * program's entry and slots. A batch entry never answers a single lookup
 * nor the other way round. Archives hold single programs only. */
int bpfg_jitcache_get_batch(struct bpfg_jitcache *c, const uint8_t key[16], struct bpfg_llvmjit_batch *out);
int bpfg_jitcache_put_batch(struct bpfg_jitcache *c, const uint8_t key[16], const struct bpfg_llvmjit_batch *batch);
/* The batch through the cache, bound as bpfg_jitcache_compile binds. */
int bpfg_jitcache_compile_batch(struct bpfg_jitcache *c, const struct bpfg_llvmjit_prog *progs, size_t n,
                                const struct bpfg_llvmjit_opts *opts, struct bpfg_llvmjit_batch *out, bool *hit,
                                char *err, size_t errlen);

/* Whether an entry of that key is there (a cheap probe: not read). */
bool bpfg_jitcache_contains(struct bpfg_jitcache *c, const uint8_t key[16]);

/* The options the server compiles attached programs with, and so the ones
 * `bpfgraft-compile` must use for its archives to hit: the payload's
 * calling convention (per-run user pointer, tail_call as the unwind
 * helper) and relocatable map references. The caller adds its resolver
 * and map_info; map_info should describe every ARRAY map with a non-zero
 * value_base (inlined lookups), the same rule on both sides. */
static inline void bpfg_jitcache_server_opts(struct bpfg_llvmjit_opts *o)
{
    *o = (struct bpfg_llvmjit_opts){
        .jit = {.has_unwind = true, .unwind_id = 12 /* BPF_FUNC_tail_call */, .per_run_user = true},
        .relocatable_maps = true,
    };
    for (size_t i = 0; i < BPFG_MAX_HELPERS / 64; i++)
        o->jit.helpers[i] = ~0ull;
}

/* Archives: a sequence of named entries in one file. */
struct bpfg_jitarchive;
struct bpfg_jitarchive *bpfg_jitarchive_create(const char *path);
int bpfg_jitarchive_add(struct bpfg_jitarchive *a, const char *name, const uint8_t key[16],
                        const struct bpfg_llvmjit_blob *blob);
/* Writes the entry count, fsyncs and closes; 0 or a negative errno. On any
 * error the partial file is removed. */
int bpfg_jitarchive_finish(struct bpfg_jitarchive *a);

/* Copies every entry of an archive into the cache. Returns the number of
 * entries imported, or a negative errno (-EBADMSG: not a valid archive). */
int bpfg_jitcache_import(struct bpfg_jitcache *c, const char *archive_path);

#endif
