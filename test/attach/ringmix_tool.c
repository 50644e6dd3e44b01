/* A libbpf tool for test_kernel_tools.py, run under the kernel or
 * `bpfgraft run`:  ringmix-tool OBJ PID
 * loads ringmix.bpf.o for PID, attaches its uprobe to libc's connect in PID
 * and its tracepoint, prints "attached", then reads the ring buffer; each
 * line on stdin makes it print "user U kernel K bad B" (records of each
 * side so far, B: records naming another process or no task). Exits at
 * end of input. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LIBC "/lib/x86_64-linux-gnu/libc.so.6"

struct rec {
    uint32_t side, tgid;
    uint64_t task;
};

struct seen {
    uint32_t tgid;
    unsigned long user, kernel, bad;
};

static int on_rec(void *ctx, void *data, size_t size)
{
    struct seen *s = ctx;
    const struct rec *r = data;
    if (size < sizeof(*r) || r->tgid != s->tgid || (r->side == 2 && !r->task) || (r->side != 1 && r->side != 2))
        s->bad++;
    else if (r->side == 1)
        s->user++;
    else
        s->kernel++;
    return 0;
}

static int attach(struct bpf_object *obj, int pid)
{
    LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = "connect");
    struct bpf_program *u = bpf_object__find_program_by_name(obj, "user_side");
    struct bpf_program *k = bpf_object__find_program_by_name(obj, "kernel_side");
    if (!u || !k || !bpf_program__attach_uprobe_opts(u, pid, LIBC, 0, &uo) || !bpf_program__attach(k))
        return -errno;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ringmix-tool OBJ PID\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct seen s = {.tgid = (uint32_t)atoi(argv[2])};
    struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
    struct bpf_map *ro = obj ? bpf_object__find_map_by_name(obj, ".rodata") : NULL;
    size_t sz = 0;
    const void *init = ro ? bpf_map__initial_value(ro, &sz) : NULL; /* .rodata: target_tgid alone */
    int err = !init || sz != sizeof(s.tgid) || bpf_map__set_initial_value(ro, &s.tgid, sizeof(s.tgid)) ||
                      bpf_object__load(obj)
                  ? -EINVAL
                  : attach(obj, (int)s.tgid);
    struct ring_buffer *rb =
        err ? NULL : ring_buffer__new(bpf_map__fd(bpf_object__find_map_by_name(obj, "rb")), on_rec, &s, NULL);
    if (!rb) {
        fprintf(stderr, "ringmix-tool: cannot load, attach or read %s: %s\n", argv[1], strerror(err ? -err : errno));
        return 1;
    }
    printf("attached\n");
    for (;;) {
        ring_buffer__poll(rb, 50);
        struct pollfd in = {.fd = 0, .events = POLLIN};
        if (poll(&in, 1, 0) != 1)
            continue;
        char line[64];
        if (!fgets(line, sizeof(line), stdin))
            break;
        ring_buffer__poll(rb, 100);
        printf("user %lu kernel %lu bad %lu\n", s.user, s.kernel, s.bad);
    }
    ring_buffer__free(rb);
    bpf_object__close(obj);
    return 0;
}
