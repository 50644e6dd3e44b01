/* The tiered engine: a program attached with engine "tiered" starts on
 * the x86 JIT's code, sent with the attach; after the attach's reply the
 * event loop compiles it with LLVM (the jit cache first) and swaps the
 * code in the payload (BPFG_PMSG_PROG_SWAP). */
#ifndef BPFGRAFT_SERVER_TIERING_H
#define BPFGRAFT_SERVER_TIERING_H

#include <stdbool.h>

struct server;

/* A program of a connected target still runs x86 code that LLVM code is
 * owed for (progs_engine flag TARGET_ENGINE_LLVM_DUE). */
bool tiering_pending(const struct server *s);
/* Compiles and swaps in one owed program; one that LLVM refuses, or whose
 * swap fails, stays on x86 (logged). Called by the event loop between
 * batches, so an attach is answered before its programs are compiled. */
void tiering_step(struct server *s);

#endif
