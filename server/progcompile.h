/* Programs compiled for one target: map references resolved to the
 * addresses its payload reported, with the LLVM engine (through the
 * on-disk cache) or the x86 JIT, falling back with a logged reason. */
#ifndef BPFGRAFT_SERVER_PROGCOMPILE_H
#define BPFGRAFT_SERVER_PROGCOMPILE_H

#include "registry.h"
#include "targets.h"
#include "x86jit.h"

struct server;

/* Compiles p for t with engine (enum bpfg_engine) or the next one down;
 * returns the engine that filled *code (BPFG_ENGINE_INTERP: no code). */
int progcompile_for_target(struct server *s, const struct target *t, const struct reg_object *o,
                           const struct reg_prog *p, int engine, struct bpfg_x86jit_code *code);

/* Programs of one object compiled for one target as one LLVM batch (one
 * module, one codegen run: jit/README.md, "LLVM compile time"): their code
 * in one sealed memfd, each program at its entry. Every program's
 * PROG_CODE carries the same fd and the payload maps it once per program,
 * so unloading one unmaps only its own view (no shared mapping to count). */
struct progcompile_batch {
    uint32_t *prog_ids;
    uint32_t *entry_off; /* parallel to prog_ids */
    size_t n;            /* 0: no batch */
    int fd;              /* the code, -1 without a batch */
    uint32_t code_len;
};

/* Compiles, as one batch, those of progs[0..n) (all of object o, their maps
 * already sent to t) that the jit cache does not hold alone; *b stays
 * empty (n 0, fd -1) when fewer than two are left or the batch fails
 * (logged; each then compiles alone, as without batches). */
void progcompile_batch_llvm(struct server *s, const struct target *t, const struct reg_object *o,
                            const struct reg_prog *const *progs, size_t n, struct progcompile_batch *b);
/* Whether prog_id is in b, and its entry. */
bool progcompile_batch_find(const struct progcompile_batch *b, uint32_t prog_id, uint32_t *entry_off);
void progcompile_batch_free(struct progcompile_batch *b);

/* The code in a sealed memfd (caller owns the fd), or a negative errno. */
int progcompile_code_memfd(const struct bpfg_x86jit_code *code);

/* Closes the compiled-code cache. */
void progcompile_shutdown(struct server *s);

#endif
