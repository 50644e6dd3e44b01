/* A libbpf tool for test_tools.py, run under `bpfgraft run`:
 *   tool-pid-probe OBJ PID BINARY FUNC [UID|- [SECONDS]]
 * loads OBJ, drops to UID if given (setresuid: the tool's user is who may
 * or may not trace PID), attaches OBJ's program add_entry as a uprobe on
 * BINARY:FUNC in PID (-1: every process), prints "attached", waits
 * SECONDS (1) and prints "calls N" from the counts map; or "attach:
 * ERRNO-NAME" when the kernel's (here bpfgraft's) attach refuses. */
#define _GNU_SOURCE
#include <bpf/libbpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int report_calls(struct bpf_object *obj)
{
    struct bpf_map *counts = bpf_object__find_map_by_name(obj, "counts");
    unsigned key = 0;
    unsigned long long calls = 0;
    if (!counts || bpf_map__lookup_elem(counts, &key, sizeof(key), &calls, sizeof(calls), 0)) {
        printf("lookup: %s\n", strerrorname_np(errno));
        return 1;
    }
    printf("calls %llu\n", calls);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: tool-pid-probe OBJ PID BINARY FUNC [UID]\n");
        return 2;
    }
    struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
    if (!obj || bpf_object__load(obj)) {
        fprintf(stderr, "cannot load %s\n", argv[1]);
        return 1;
    }
    if (argc > 5 && strcmp(argv[5], "-")) {
        uid_t uid = (uid_t)atoi(argv[5]);
        if (setresgid(uid, uid, uid) || setresuid(uid, uid, uid)) {
            perror("setresuid");
            return 1;
        }
    }
    LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = argv[4]);
    struct bpf_program *prog = bpf_object__find_program_by_name(obj, "add_entry");
    struct bpf_link *link = prog ? bpf_program__attach_uprobe_opts(prog, atoi(argv[2]), argv[3], 0, &opts) : NULL;
    if (!link) {
        printf("attach: %s\n", strerrorname_np(errno));
        bpf_object__close(obj);
        return 0;
    }
    printf("attached\n");
    fflush(stdout);
    sleep(argc > 6 ? (unsigned)atoi(argv[6]) : 1);
    int rc = report_calls(obj);
    bpf_link__destroy(link);
    bpf_object__close(obj);
    return rc;
}
