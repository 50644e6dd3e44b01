/* Differential run of the bpfgraft verifier against the kernel's: every
 * corpus program and every clang-built program is verified by both (the
 * kernel through BPF_PROG_LOAD, as root). Writes agreement figures and
 * every disagreement, with its reason, to the file named on the command
 * line.
 *
 * A disagreement must be announced by the program's "# kernel:" header
 * with one of the reasons below, each of which says which way bpfgraft
 * decides. Fails on: an unannounced disagreement, a reason outside the
 * set or one announcing the other way, and a STALE announcement, where
 * bpfgraft no longer decides as announced. Kernels differ (versions,
 * config, lockdown), so an announced difference this kernel does not make
 * (it decides as bpfgraft does) is reported as NOT ON THIS KERNEL and
 * counted apart, not failed: a different kernel changes the numbers, not
 * the verdict. Without root or kernel BPF the run is skipped (exit 77).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "corpus.h"
#include "facts.h"
#include "objload.h"
#include "verifier.h"

/* The fixed set of reasons the two verifiers may differ for, with the
 * verdict each announces for bpfgraft (the kernel's is the other). */
static const struct reason {
    const char *text;
    bool ours_rejects;
} reasons[] = {
    /* the kernel verifies tracepoint/raw_tp ctx reads against 2048 / 96
     * bytes and checks the real record size when attaching */
    {"kernel checks tracepoint context bounds at attach", true},
    /* kernel: kprobes on ALLOW_ERROR_INJECTION functions, and only with
     * CONFIG_BPF_KPROBE_OVERRIDE; bpfgraft: any uprobed function */
    {"userspace allows override_return on uprobes", false},
    {"userspace allows override_return on sys_enter", false},
    /* kernel: refused under lockdown; bpfgraft writes the traced process */
    {"userspace allows probe_write_user when enabled", false},
    /* root kernels read uninitialised stack (allow_uninit_stack) */
    {"userspace stricter on uninitialised stack", true},
    /* root kernels allow bounded variable stack offsets */
    {"userspace stricter on variable stack access", true},
    /* root kernels turn pointers into numbers (allow_ptr_leaks) */
    {"userspace stricter on pointer leaks", true},
    /* root kernels read struct bpf_map fields through a map pointer */
    {"kernel-only map pointer access", true},
    /* 6.x tracing programs get private per-subprogram stacks (x86-64 JIT) */
    {"kernel private stacks lift the combined stack limit", true},
    /* bpfgraft keeps bounds through more ALU ops than the kernel */
    {"userspace bounds more ALU results", false},
    /* kernel: get_func_arg/ret for fentry/fexit only, ktime_get_coarse_ns
     * not in tracing programs; bpfgraft: a uprobe's argument registers, a
     * uretprobe's return value, a coarse clock (no NMI context here) */
    {"userspace offers helpers the kernel keeps from tracing programs", false},
    /* the kernel wants BTF func_info for a program that passes a callback;
     * the assembler corpus has no BTF (clang-built programs do) */
    {"kernel needs BTF func_info for callbacks", false},
    /* likewise the value's BTF to find a bpf_spin_lock */
    {"kernel needs BTF for bpf_spin_lock", false},
    {"kernel needs BTF to protect a bpf_spin_lock", true},
    /* bpfgraft checks a callback once and forgets the types of the frame
     * its ctx points into; the kernel iterates to a fixpoint */
    {"userspace stricter on the frame a callback's ctx points into", true},
};

static const struct reason *find_reason(const char *r)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (!strncmp(r, reasons[i].text, strlen(reasons[i].text)))
            return &reasons[i];
    return NULL;
}

struct tally {
    int total, agree, disagree, explained, not_here, failures;
    bool skipped; /* a part could not run on this machine */
};

static const char *verdict(int err)
{
    return err ? "rejects" : "accepts";
}

static void disagreement(FILE *out, struct tally *t, const char *name, const char *announced, const struct reason *r,
                         int ours, int kern, const char *ours_msg, const char *kmsg)
{
    t->disagree++;
    fprintf(out, "DISAGREE %s: bpfgraft %s, kernel %s; reason: %s\n  bpfgraft: %s\n  kernel: %s\n", name, verdict(ours),
            verdict(kern), announced ? announced : "UNEXPLAINED", ours ? ours_msg : "ok", kern ? kmsg : "ok");
    if (r && r->ours_rejects == (ours != 0)) {
        t->explained++;
        return;
    }
    t->failures++;
    if (announced)
        fprintf(out, "  (%s)\n", r ? "the reason announces the other way" : "reason not in the fixed set");
}

/* Both decide alike although a difference was announced: the kernel does
 * not make it (reported), or bpfgraft changed (STALE, a failure). */
static void announced_agreement(FILE *out, struct tally *t, const char *name, const char *announced,
                                const struct reason *r, int ours, const char *kmsg)
{
    if (r && r->ours_rejects == (ours != 0)) {
        t->not_here++;
        fprintf(out, "NOT ON THIS KERNEL %s: announced '%s' but this kernel %s it too%s%s\n", name, announced,
                verdict(ours), ours ? "\n  kernel: " : "", ours ? kmsg : "");
        return;
    }
    t->failures++;
    if (r)
        fprintf(out, "STALE %s: announced '%s' but bpfgraft now %s it, as the kernel does\n", name, announced,
                verdict(ours));
    else
        fprintf(out, "UNKNOWN REASON %s: '%s' is not in the fixed set\n", name, announced);
}

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
    if (announced && !announced[0])
        announced = NULL;
    const struct reason *r = announced ? find_reason(announced) : NULL;
    t->total++;
    if ((ours == 0) != (kern == 0)) {
        disagreement(out, t, name, announced, r, ours, kern, res->msg, kmsg);
    } else {
        t->agree++;
        if (announced)
            announced_agreement(out, t, name, announced, r, ours, kmsg);
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
        "malloc",   "funclatency",   "bashreadline",  "errinject",      "opensnoop", "syscount",
        "denyopen", "objload_basic", "objload_mixed", "objload_legacy", "cli_maps",
    };
    char why[512];
    if (test_fact("btf", why, sizeof(why))) { /* CO-RE objects */
        fprintf(out, "SKIP clang-built objects: needs btf (%s)\n", why);
        t->skipped = true;
        return;
    }
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
    static const char *const needed[] = {"root", "bpf-maps", "bpf-tracing"};
    char why[512];
    const char *lacking = test_facts_missing(needed, sizeof(needed) / sizeof(needed[0]), why, sizeof(why));
    if (lacking) {
        printf("SKIP: needs %s (%s)\n", lacking, why);
        return TEST_SKIPPED;
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
    fprintf(out,
            "SUMMARY programs=%d agree=%d disagree=%d explained=%d not_on_this_kernel=%d failures=%d "
            "agreement=%.1f%%\n",
            t.total, t.agree, t.disagree, t.explained, t.not_here, t.failures,
            t.total ? 100.0 * t.agree / t.total : 0.0);
    fclose(out);
    /* echo the report for the ctest log */
    FILE *in = fopen(argv[1], "re");
    if (in) {
        char line[2048];
        while (fgets(line, sizeof(line), in))
            fputs(line, stdout);
        fclose(in);
    }
    if (t.failures || t.total < 200)
        return 1;
    return t.skipped ? TEST_SKIPPED : 0;
}
