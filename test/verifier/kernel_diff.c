/* Differential run of the bpfgraft verifier against the kernel's: every
 * corpus program and every clang-built program is verified by both (the
 * kernel through BPF_PROG_LOAD, as root). Writes agreement figures and
 * every disagreement, with its reason, to the file named on the command
 * line. A disagreement must be announced by the program's "# kernel:"
 * header with one of the reasons below; an unannounced disagreement, an
 * announced one that no longer happens, or an unknown reason fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corpus.h"
#include "objload.h"
#include "verifier.h"

/* The fixed set of reasons the two verifiers may differ for. */
static const char *const reasons[] = {
    /* the kernel verifies tracepoint/raw_tp ctx reads against 2048 / 96
     * bytes and checks the real record size when attaching */
    "kernel checks tracepoint context bounds at attach",
    /* kernel: kprobes on ALLOW_ERROR_INJECTION functions, and only with
     * CONFIG_BPF_KPROBE_OVERRIDE; bpfgraft: any uprobed function */
    "userspace allows override_return on uprobes",
    "userspace allows override_return on sys_enter",
    /* kernel: refused under lockdown; bpfgraft writes the traced process */
    "userspace allows probe_write_user when enabled",
    /* root kernels read uninitialised stack (allow_uninit_stack) */
    "userspace stricter on uninitialised stack",
    /* root kernels allow bounded variable stack offsets */
    "userspace stricter on variable stack access",
    /* root kernels turn pointers into numbers (allow_ptr_leaks) */
    "userspace stricter on pointer leaks",
    /* root kernels read struct bpf_map fields through a map pointer */
    "kernel-only map pointer access",
    /* 6.x tracing programs get private per-subprogram stacks */
    "kernel private stacks lift the combined stack limit",
    /* bpfgraft keeps bounds through more ALU ops than the kernel */
    "userspace bounds more ALU results",
};

static bool known_reason(const char *r)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (!strncmp(r, reasons[i], strlen(reasons[i])))
            return true;
    return false;
}

struct tally {
    int total, agree, disagree, explained, failures;
};

static void compare(FILE *out, struct tally *t, const char *name, const struct bpf_insn *insns, size_t n,
                    const struct bpfg_verify_env *env, const char *announced)
{
    struct bpfg_verify_result *res = malloc(sizeof(*res));
    char kmsg[1024];
    if (!res) {
        t->failures++;
        return;
    }
    int ours = bpfg_verify(insns, n, env, res);
    int kern = bpfg_verify_kernel(insns, n, env, kmsg, sizeof(kmsg));
    t->total++;
    bool same = (ours == 0) == (kern == 0);
    if (same) {
        t->agree++;
        if (announced && announced[0]) {
            fprintf(out, "STALE %s: announced '%s' but both %s\n", name, announced, ours ? "reject" : "accept");
            t->failures++;
        }
    } else {
        t->disagree++;
        const char *why = announced && announced[0] ? announced : NULL;
        fprintf(out, "DISAGREE %s: bpfgraft %s, kernel %s; reason: %s\n  bpfgraft: %s\n  kernel: %s\n", name,
                ours ? "rejects" : "accepts", kern ? "rejects" : "accepts", why ? why : "UNEXPLAINED",
                ours ? res->msg : "ok", kern ? kmsg : "ok");
        if (why && known_reason(why)) {
            t->explained++;
        } else {
            t->failures++;
            if (why)
                fprintf(out, "  (reason not in the fixed set)\n");
        }
    }
    free(res);
}

static void run_dir(FILE *out, struct tally *t, const char *sub)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", VERIFIER_CORPUS_DIR, sub);
    size_t count;
    char **list = corpus_list(dir, &count);
    if (!list) {
        fprintf(out, "ERROR cannot list %s\n", dir);
        t->failures++;
        return;
    }
    for (size_t i = 0; i < count; i++) {
        struct corpus_prog p;
        char err[512], name[600];
        if (corpus_load(list[i], &p, err, sizeof(err))) {
            fprintf(out, "ERROR %s\n", err);
            t->failures++;
            continue;
        }
        snprintf(name, sizeof(name), "%s/%s", sub, p.name);
        compare(out, t, name, p.insns, p.n, &p.env, p.kernel_reason);
        corpus_free(&p);
    }
    corpus_list_free(list);
}

/* Announcements for clang-built programs (no header to carry them). */
static const struct {
    const char *prog;
    const char *reason;
} obj_reasons[] = {
    {"errinject/inject", "userspace allows override_return on uprobes"},
    {"denyopen/deny_openat", "userspace allows override_return on sys_enter"},
    {"denyopen/deny_open", "userspace allows override_return on sys_enter"},
};

static void run_objects(FILE *out, struct tally *t)
{
    static const char *const objects[] = {
        "malloc", "funclatency", "bashreadline", "errinject", "opensnoop", "syscount", "denyopen",
        "objload_basic", "objload_mixed", "objload_legacy", "cli_maps",
    };
    for (size_t k = 0; k < sizeof(objects) / sizeof(objects[0]); k++) {
        char path[512], err[1024];
        snprintf(path, sizeof(path), "%s/%s.bpf.o", BPF_OBJ_DIR, objects[k]);
        struct bpfg_obj *obj = bpfg_obj_open_file(path, NULL, err, sizeof(err));
        if (!obj) {
            fprintf(out, "ERROR %s: %s\n", path, err);
            t->failures++;
            continue;
        }
        for (size_t i = 0; i < obj->prog_cnt; i++) {
            const struct bpfg_obj_prog *p = &obj->progs[i];
            struct bpfg_verify_env env;
            struct bpfg_verify_map *maps;
            if (bpfg_verify_env_for_prog(obj, p, &env, &maps)) {
                free(maps);
                continue;
            }
            env.allow_override_return = true;
            env.allow_probe_write_user = true;
            char name[300];
            snprintf(name, sizeof(name), "%s/%s", objects[k], p->name);
            const char *why = NULL;
            for (size_t r = 0; r < sizeof(obj_reasons) / sizeof(obj_reasons[0]); r++)
                if (!strcmp(obj_reasons[r].prog, name))
                    why = obj_reasons[r].reason;
            compare(out, t, name, p->insns, p->insn_cnt, &env, why);
            free(maps);
        }
        bpfg_obj_free(obj);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s REPORT-FILE\n", argv[0]);
        return 2;
    }
    if (geteuid() != 0) {
        fprintf(stderr, "verifier_kernel_diff needs root (BPF_PROG_LOAD of tracing programs)\n");
        return 1;
    }
    FILE *out = fopen(argv[1], "we");
    if (!out) {
        fprintf(stderr, "%s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    struct tally t = {0};
    run_dir(out, &t, "accept");
    run_dir(out, &t, "reject");
    run_objects(out, &t);
    fprintf(out, "SUMMARY programs=%d agree=%d disagree=%d explained=%d failures=%d agreement=%.1f%%\n", t.total,
            t.agree, t.disagree, t.explained, t.failures, t.total ? 100.0 * t.agree / t.total : 0.0);
    fclose(out);
    /* echo the report for the ctest log */
    FILE *in = fopen(argv[1], "re");
    if (in) {
        char line[2048];
        while (fgets(line, sizeof(line), in))
            fputs(line, stdout);
        fclose(in);
    }
    return t.failures || t.total < 200 ? 1 : 0;
}
