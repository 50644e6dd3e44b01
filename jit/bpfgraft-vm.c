/* bpfgraft-vm: assembles an eBPF program from text, prints its disassembly
 * and runs it in the interpreter. A developer's tool and the first demo.
 *
 *   bpfgraft-vm [--ctx-u64 N] [--quiet] FILE.s
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asm.h"
#include "vm.h"

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0)
            break;
        if (cap - len - 1 == 0) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    int err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        errno = err ? EIO : ENOMEM;
        return NULL;
    }
    buf[len] = 0;
    return buf;
}

int main(int argc, char **argv)
{
    uint64_t ctx = 0;
    bool quiet = false;
    const char *path = NULL;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ctx-u64") == 0 && i + 1 < argc)
            ctx = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--quiet") == 0)
            quiet = true;
        else if (argv[i][0] != '-' && !path)
            path = argv[i];
        else {
            fprintf(stderr, "usage: bpfgraft-vm [--ctx-u64 N] [--quiet] FILE.s\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: bpfgraft-vm [--ctx-u64 N] [--quiet] FILE.s\n");
        return 2;
    }

    char *text = read_file(path);
    if (!text) {
        fprintf(stderr, "bpfgraft-vm: %s: %s\n", path, strerror(errno));
        return 1;
    }
    char err[256];
    struct bpf_insn *insns = NULL;
    size_t n = 0;
    int ret = bpfg_asm(text, &insns, &n, err, sizeof(err));
    free(text);
    if (ret) {
        fprintf(stderr, "bpfgraft-vm: %s: %s\n", path, err);
        return 1;
    }

    struct bpfg_vm *vm = bpfg_vm_new();
    if (!vm) {
        free(insns);
        fprintf(stderr, "bpfgraft-vm: out of memory\n");
        return 1;
    }
    int status = 1;
    if (!quiet) {
        char *dis = bpfg_disasm(insns, n);
        if (dis) {
            printf("%s: %zu instructions\n%s", path, n, dis);
            free(dis);
        }
    }
    uint64_t r0;
    if (bpfg_vm_load(vm, insns, n) != 0 || bpfg_vm_exec(vm, &ctx, sizeof(ctx), &r0) != 0) {
        fprintf(stderr, "bpfgraft-vm: %s: %s\n", path, bpfg_vm_error(vm));
        goto out;
    }
    printf("r0 = %llu (0x%llx)\n", (unsigned long long)r0, (unsigned long long)r0);
    status = 0;
out:
    bpfg_vm_free(vm);
    free(insns);
    return status;
}
