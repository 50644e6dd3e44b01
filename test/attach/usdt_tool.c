/* A libbpf tool for test_usdt.py, run under the kernel or `bpfgraft run`:
 *   usdt-tool OBJ PID BINARY
 * loads usdt.bpf.o, attaches its tick and tock programs to usdtv:tick and
 * usdtv:tock of BINARY in PID with bpf_program__attach_usdt (libbpf reads
 * the notes, fills its spec maps, creates the uprobes with their
 * semaphores and cookies), prints "attached", then takes commands on
 * stdin: "dump" prints "results R0 ... R8"; "detach" destroys the links
 * and prints "detached". Exits at end of input. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int dump(struct bpf_object *obj)
{
    struct bpf_map *m = bpf_object__find_map_by_name(obj, "results");
    if (!m)
        return -ENOENT;
    printf("results");
    for (uint32_t k = 0; k < 9; k++) {
        uint64_t v = 0;
        int r = bpf_map__lookup_elem(m, &k, sizeof(k), &v, sizeof(v), 0);
        if (r)
            return r;
        printf(" %llu", (unsigned long long)v);
    }
    printf("\n");
    return 0;
}

static struct bpf_link *attach(struct bpf_object *obj, const char *prog, int pid, const char *binary)
{
    struct bpf_program *p = bpf_object__find_program_by_name(obj, prog);
    struct bpf_link *l = p ? bpf_program__attach_usdt(p, pid, binary, "usdtv", prog, NULL) : NULL;
    if (!l)
        fprintf(stderr, "usdt-tool: attaching %s: %s\n", prog, strerror(errno));
    return l;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: usdt-tool OBJ PID BINARY\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
    if (!obj || bpf_object__load(obj)) {
        fprintf(stderr, "usdt-tool: loading %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    /* only the USDT programs: count_cookie is for the native loader */
    struct bpf_link *tick = attach(obj, "tick", atoi(argv[2]), argv[3]);
    struct bpf_link *tock = tick ? attach(obj, "tock", atoi(argv[2]), argv[3]) : NULL;
    int rc = tock ? 0 : 1;
    if (!rc)
        printf("attached\n");
    char line[64];
    while (!rc && fgets(line, sizeof(line), stdin)) {
        if (strncmp(line, "dump", 4) == 0) {
            rc = dump(obj) ? 1 : 0;
        } else if (strncmp(line, "detach", 6) == 0) {
            bpf_link__destroy(tick);
            bpf_link__destroy(tock);
            tick = tock = NULL;
            printf("detached\n");
        }
    }
    bpf_link__destroy(tick);
    bpf_link__destroy(tock);
    bpf_object__close(obj);
    return rc;
}
