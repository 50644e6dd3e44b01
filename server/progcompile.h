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

/* The code in a sealed memfd (caller owns the fd), or a negative errno. */
int progcompile_code_memfd(const struct bpfg_x86jit_code *code);

/* Closes the compiled-code cache. */
void progcompile_shutdown(struct server *s);

#endif
