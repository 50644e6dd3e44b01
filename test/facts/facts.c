/* Kernel fact probes (facts.h): each asks the running kernel the smallest
 * question that answers it, and closes what it created. */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "facts.h"

#define TRACEFS "/sys/kernel/tracing"
#define VMLINUX_BTF "/sys/kernel/btf/vmlinux"
#define XDP_PASS_RET 2

static const struct bpf_insn ret0[] = {
    {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
    {.code = BPF_JMP | BPF_EXIT},
};
static const struct bpf_insn xdp_pass[] = {
    {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = XDP_PASS_RET},
    {.code = BPF_JMP | BPF_EXIT},
};
/* bpf_override_return(ctx, 0): r1 already holds ctx */
static const struct bpf_insn override[] = {
    {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_2, .imm = 0},
    {.code = BPF_JMP | BPF_CALL, .imm = BPF_FUNC_override_return},
    {.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0},
    {.code = BPF_JMP | BPF_EXIT},
};

/* why = "what: strerror(err)"; returns -err */
static int missing(char *why, size_t len, const char *what, int err)
{
    snprintf(why, len, "%s: %s", what, strerror(err));
    return -err;
}

/* 0 when the kernel loads the program, else -errno with why. */
static int loads(enum bpf_prog_type type, const struct bpf_insn *insns, size_t n, const char *what, char *why,
                 size_t len)
{
    int fd = bpf_prog_load(type, NULL, "GPL", insns, n, NULL);
    if (fd < 0)
        return missing(why, len, what, -fd);
    close(fd);
    return 0;
}

static int probe_root(char *why, size_t len)
{
    if (geteuid() == 0)
        return 0;
    snprintf(why, len, "runs as uid %u, not root", (unsigned)geteuid());
    return -EPERM;
}

static int probe_maps(char *why, size_t len)
{
    int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, NULL, 4, 8, 1, NULL);
    if (fd < 0)
        return missing(why, len, "BPF_MAP_CREATE (array)", -fd);
    close(fd);
    return 0;
}

static int probe_tracing(char *why, size_t len)
{
    return loads(BPF_PROG_TYPE_KPROBE, ret0, 2, "BPF_PROG_LOAD (kprobe)", why, len);
}

static int probe_override(char *why, size_t len)
{
    return loads(BPF_PROG_TYPE_KPROBE, override, 4, "BPF_PROG_LOAD (kprobe calling bpf_override_return)", why, len);
}

static int probe_test_run(char *why, size_t len)
{
    int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, NULL, "GPL", xdp_pass, 2, NULL);
    if (fd < 0)
        return missing(why, len, "BPF_PROG_LOAD (xdp)", -fd);
    uint8_t pkt[64] = {0};
    LIBBPF_OPTS(bpf_test_run_opts, run, .data_in = pkt, .data_size_in = sizeof(pkt), .repeat = 1);
    int err = bpf_prog_test_run_opts(fd, &run);
    close(fd);
    if (err)
        return missing(why, len, "BPF_PROG_TEST_RUN (xdp)", -err);
    if (run.retval != XDP_PASS_RET)
        return missing(why, len, "BPF_PROG_TEST_RUN (xdp) returns another value", EPROTO);
    return 0;
}

static int probe_jit(char *why, size_t len)
{
    const char *knob = "/proc/sys/net/core/bpf_jit_enable";
    char v = '0';
    int fd = open(knob, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return missing(why, len, knob, errno);
    ssize_t got = read(fd, &v, 1);
    close(fd);
    if (got == 1 && v != '0')
        return 0;
    snprintf(why, len, "%s is 0: the kernel interprets BPF programs", knob);
    return -ENOTSUP;
}

static int probe_btf(char *why, size_t len)
{
    uint16_t magic = 0;
    int fd = open(VMLINUX_BTF, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return missing(why, len, VMLINUX_BTF, errno);
    ssize_t got = read(fd, &magic, sizeof(magic));
    close(fd);
    if (got == sizeof(magic) && magic == 0xeB9F /* BTF_MAGIC */)
        return 0;
    snprintf(why, len, "%s is not BTF", VMLINUX_BTF);
    return -ENOEXEC;
}

/* Whether /proc/filesystems lists name. */
static bool kernel_has_fs(const char *name)
{
    FILE *f = fopen("/proc/filesystems", "re");
    char line[128], fs[64];
    bool found = false;
    while (f && !found && fgets(line, sizeof(line), f))
        found = sscanf(line, "nodev %63s", fs) == 1 && !strcmp(fs, name);
    if (f)
        fclose(f);
    return found;
}

static int probe_tracefs(char *why, size_t len)
{
    struct stat st;
    if (!stat(TRACEFS "/events", &st))
        return 0; /* mounted */
    if (!kernel_has_fs("tracefs")) {
        snprintf(why, len, "the kernel has no tracefs (not in /proc/filesystems)");
        return -ENODEV;
    }
    if (stat(TRACEFS, &st) || !S_ISDIR(st.st_mode))
        return missing(why, len, TRACEFS " (to mount tracefs on)", ENOENT);
    return 0; /* the test mounts it (and unmounts what it mounted) */
}

static const struct fact {
    const char *name, *meaning;
    int (*probe)(char *why, size_t len);
} facts[] = {
    {"root", "the tests run as root (euid 0)", probe_root},
    {"bpf-maps", "the kernel creates BPF maps", probe_maps},
    {"bpf-tracing", "the kernel loads kprobe programs", probe_tracing},
    {"bpf-test-run", "the kernel loads XDP programs and runs them (BPF_PROG_TEST_RUN)", probe_test_run},
    {"bpf-override-return", "the kernel loads kprobe programs calling bpf_override_return", probe_override},
    {"bpf-jit", "the kernel JIT-compiles BPF programs", probe_jit},
    {"btf", "the kernel's BTF is at " VMLINUX_BTF, probe_btf},
    {"tracefs", "tracefs is mounted at " TRACEFS ", or can be mounted there", probe_tracefs},
};

int test_fact(const char *fact, char *why, size_t len)
{
    for (size_t i = 0; i < sizeof(facts) / sizeof(facts[0]); i++)
        if (!strcmp(facts[i].name, fact)) {
            if (len)
                why[0] = 0;
            return facts[i].probe(why, len);
        }
    snprintf(why, len, "no fact '%s' (test-needs --list)", fact);
    return -EINVAL;
}

const char *test_facts_missing(const char *const *facts, size_t n, char *why, size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (test_fact(facts[i], why, len))
            return facts[i];
    return NULL;
}

const char *test_fact_name(size_t i, const char **meaning)
{
    if (i >= sizeof(facts) / sizeof(facts[0]))
        return NULL;
    if (meaning)
        *meaning = facts[i].meaning;
    return facts[i].name;
}
