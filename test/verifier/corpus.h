/* The verifier corpus: assembler programs (jit/asm.h syntax) with a header
 * of '#' lines giving what the verifier needs to know:
 *
 *   # kind: uprobe | uretprobe | syscall_enter | syscall_exit | raw_tp
 *   # map: TYPE KEY_SIZE VALUE_SIZE MAX_ENTRIES [rdonly]   (index = order)
 *   # opts: write_user override                             (enable helpers)
 *   # expect: SUBSTRING        (rejects: part of the verifier's message)
 *   # kernel: REASON           (the kernel may decide otherwise, and why:
 *                               see kernel_diff.c)
 *
 * TYPE: hash array percpu_array ringbuf queue stack perf prog_array
 * stack_trace lru_hash.
 */
#ifndef BPFGRAFT_TEST_VERIFIER_CORPUS_H
#define BPFGRAFT_TEST_VERIFIER_CORPUS_H

#include <stddef.h>

#include "verifier.h"

#define CORPUS_MAX_MAPS 8

struct corpus_prog {
    char path[512];
    char name[128];
    struct bpf_insn *insns;
    size_t n;
    struct bpfg_verify_env env;
    struct bpfg_verify_map maps[CORPUS_MAX_MAPS];
    char expect[256];
    char kernel_reason[256];
};

/* Parses and assembles one corpus file. 0, or -errno with a message. */
int corpus_load(const char *path, struct corpus_prog *p, char *err, size_t errlen);
void corpus_free(struct corpus_prog *p);

/* Sorted list of "*.s" files in dir (malloc'd, NULL-terminated). */
char **corpus_list(const char *dir, size_t *count);
void corpus_list_free(char **list);

#endif
