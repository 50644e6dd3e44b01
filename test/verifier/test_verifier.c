/* The verifier against its corpus (test/verifier/accept, reject), the
 * clang-built objects of the samples and tests, and through progcheck. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asm.h"
#include "corpus.h"
#include "criterion_facts.h"
#include "objload.h"
#include "progcheck.h"
#include "registry.h"
#include "verifier.h"

static void run_dir(const char *sub, bool want_ok, size_t min_count)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", VERIFIER_CORPUS_DIR, sub);
    size_t count;
    char **list = corpus_list(dir, &count);
    cr_assert(list, "cannot list %s", dir);
    size_t passed = 0;
    struct bpfg_verify_result *res = malloc(sizeof(*res));
    cr_assert(res);
    for (size_t i = 0; i < count; i++) {
        struct corpus_prog p;
        char err[512];
        int e = corpus_load(list[i], &p, err, sizeof(err));
        cr_expect_eq(e, 0, "%s", err);
        if (e)
            continue;
        e = bpfg_verify(p.insns, p.n, &p.env, res);
        if (want_ok) {
            cr_expect_eq(e, 0, "%s: rejected: %s", p.name, res->msg);
            cr_expect(res->ok);
            cr_expect_gt(res->insns_processed, 0);
            passed += e == 0;
        } else {
            cr_expect_neq(e, 0, "%s: accepted, should be rejected (%s)", p.name, p.expect);
            cr_expect(p.expect[0], "%s: no '# expect:' line", p.name);
            bool match = e && p.expect[0] && strstr(res->msg, p.expect);
            cr_expect(match, "%s: message '%s' lacks '%s'", p.name, res->msg, p.expect);
            passed += match;
        }
        corpus_free(&p);
    }
    free(res);
    corpus_list_free(list);
    cr_expect_geq(count, min_count, "%s: only %zu programs", sub, count);
    cr_expect_eq(passed, count, "%s: %zu of %zu as expected", sub, passed, count);
}

Test(corpus, accepted)
{
    run_dir("accept", true, 100);
}

Test(corpus, rejected)
{
    run_dir("reject", false, 100);
}

/* Every object built from C for the samples and the loader/CLI tests.
 * objload_extern (unresolved extern), objload_kernel_only and
 * objload_unknown (no program runnable in userspace) never load, so they
 * never reach the verifier; every program of the others is ordinary
 * clang output and must be accepted. */
static const char *const objects[] = {
    "malloc",   "funclatency",   "bashreadline",  "errinject",      "opensnoop", "syscount",
    "denyopen", "objload_basic", "objload_mixed", "objload_legacy", "cli_maps",
};

Test(objects, clang_programs_pass, .init = test_needs_btf)
{
    size_t progs = 0;
    struct bpfg_verify_result *res = malloc(sizeof(*res));
    cr_assert(res);
    for (size_t k = 0; k < sizeof(objects) / sizeof(objects[0]); k++) {
        char path[512], err[1024];
        snprintf(path, sizeof(path), "%s/%s.bpf.o", BPF_OBJ_DIR, objects[k]);
        struct bpfg_obj *obj = bpfg_obj_open_file(path, NULL, err, sizeof(err));
        cr_assert(obj, "%s: %s", path, err);
        for (size_t i = 0; i < obj->prog_cnt; i++) {
            const struct bpfg_obj_prog *p = &obj->progs[i];
            struct bpfg_verify_env env;
            struct bpfg_verify_map *maps;
            int e = bpfg_verify_env_for_prog(obj, p, &env, &maps);
            if (e == -EOPNOTSUPP) {
                cr_expect_null(p->insns);
                free(maps);
                continue;
            }
            cr_assert_eq(e, 0);
            env.allow_override_return = true;
            e = bpfg_verify(p->insns, p->insn_cnt, &env, res);
            cr_expect_eq(e, 0, "%s/%s (%s): %s", objects[k], p->name, p->section, res->msg);
            progs++;
            free(maps);
        }
        bpfg_obj_free(obj);
    }
    free(res);
    cr_expect_geq(progs, 24, "only %zu programs verified", progs);
}

static int verify_text(const char *text, enum bpfg_verify_kind kind, bool override, struct bpfg_verify_result *res)
{
    struct bpf_insn *insns;
    size_t n;
    char err[256];
    int e = bpfg_asm(text, &insns, &n, err, sizeof(err));
    cr_assert_eq(e, 0, "%s", err);
    struct bpfg_verify_env env = {.kind = kind, .allow_override_return = override};
    e = bpfg_verify(insns, n, &env, res);
    free(insns);
    return e;
}

/* The helpers progcheck lists (the ones targets provide) are exactly the
 * ones with a prototype in the verifier. */
Test(helpers, prototypes_match_progcheck_list)
{
    struct bpfg_verify_result res;
    for (int id = 0; id < 220; id++) {
        char text[128];
        snprintf(text, sizeof(text), "call %d\nmov %%r0, 0\nexit\n", id);
        int e = verify_text(text, BPFG_VERIFY_UPROBE, true, &res);
        bool unknown = e && strstr(res.msg, "invalid func unknown#") != NULL;
        if (progcheck_helper_name((uint32_t)id))
            cr_expect(!unknown, "helper %d: %s", id, res.msg);
        else
            cr_expect(unknown, "helper %d has no progcheck entry but: %s", id, res.msg);
    }
}

Test(helpers, no_arg_helpers_accepted)
{
    struct bpfg_verify_result res;
    cr_expect_eq(verify_text("call 5\nexit\n", BPFG_VERIFY_UPROBE, false, &res), 0, "%s", res.msg);
    cr_expect_eq(verify_text("call 14\nexit\n", BPFG_VERIFY_RAW_TP, false, &res), 0, "%s", res.msg);
}

Test(helpers, override_return_needs_entry_kind_and_option)
{
    struct bpfg_verify_result res;
    const char *prog = "mov %r2, -12\ncall 58\nmov %r0, 0\nexit\n";
    cr_expect_eq(verify_text(prog, BPFG_VERIFY_UPROBE, true, &res), 0, "%s", res.msg);
    cr_expect_eq(verify_text(prog, BPFG_VERIFY_SYSCALL_ENTER, true, &res), 0, "%s", res.msg);
    cr_expect_neq(verify_text(prog, BPFG_VERIFY_UPROBE, false, &res), 0);
    cr_expect(strstr(res.msg, "cannot use helper bpf_override_return"), "%s", res.msg);
    /* too late to skip anything: return probes and sys_exit */
    cr_expect_neq(verify_text(prog, BPFG_VERIFY_URETPROBE, true, &res), 0);
    cr_expect_neq(verify_text(prog, BPFG_VERIFY_SYSCALL_EXIT, true, &res), 0);
}

Test(messages, kernel_like_format)
{
    struct bpfg_verify_result res;
    const char *prog = "mov %r2, 7\nldxdw %r0, [%r10-8]\nexit\n";
    cr_assert_neq(verify_text(prog, BPFG_VERIFY_UPROBE, false, &res), 0);
    cr_expect(strstr(res.msg, "insn 1: ldxdw %r0, [%r10-8]: invalid read from stack off -8+0 size 8"), "%s", res.msg);
    cr_expect(strstr(res.msg, "R1=ctx(off=0)"), "%s", res.msg);
    cr_expect(strstr(res.msg, "R2=7"), "%s", res.msg);
    cr_expect(strstr(res.msg, "R10=fp0"), "%s", res.msg);
    cr_expect_eq(res.err, -EINVAL);
}

Test(limits, complexity_limit_reports_too_large)
{
    /* a loop with an unknown bound: every iteration is a new state */
    struct bpfg_verify_result res;
    const char *prog = "call 7\nmov %r1, 0\n"
                       "loop:\nadd %r1, 1\njlt %r1, %r0, loop\n"
                       "mov %r0, 0\nexit\n";
    cr_assert_neq(verify_text(prog, BPFG_VERIFY_UPROBE, false, &res), 0);
    cr_expect(strstr(res.msg, "too large") || strstr(res.msg, "too complex"), "%s", res.msg);
    cr_expect_eq(res.err, -E2BIG);
}

/* progcheck_object runs the verifier on every program and names the
 * program and section in its error. */
Test(progcheck, object_programs_verified, .init = test_needs_btf)
{
    char path[512], err[1024];
    snprintf(path, sizeof(path), "%s/objload_basic.bpf.o", BPF_OBJ_DIR);
    struct bpfg_obj *obj = bpfg_obj_open_file(path, NULL, err, sizeof(err));
    cr_assert(obj, "%s", err);
    struct reg_object o = {.id = 1, .name = "basic", .obj = obj};
    cr_expect_eq(progcheck_object(NULL, &o, err, sizeof(err)), 0, "%s", err);

    /* swap in an unsafe body for one program */
    struct bpfg_obj_prog *p = NULL;
    for (size_t i = 0; i < obj->prog_cnt; i++)
        if (!strcmp(obj->progs[i].name, "array_add"))
            p = &obj->progs[i];
    cr_assert(p);
    struct bpf_insn *bad;
    size_t n;
    char aerr[256];
    cr_assert_eq(bpfg_asm("stw [%r10-4], 0\nmov %r2, %r10\nadd %r2, -4\n"
                          "lddw %r1, map_idx 1\ncall 1\nldxdw %r0, [%r0+0]\nexit\n",
                          &bad, &n, aerr, sizeof(aerr)),
                 0, "%s", aerr);
    int slots = bpfg_obj_map_index(obj, "slots");
    cr_assert_eq(slots, 1, "map order changed: slots is %d", slots);
    struct bpf_insn *saved = p->insns;
    size_t saved_n = p->insn_cnt;
    p->insns = bad;
    p->insn_cnt = n;
    cr_expect_eq(progcheck_object(NULL, &o, err, sizeof(err)), -ENOEXEC);
    cr_expect(strstr(err, "program 'array_add' (uprobe//bin/true:main): insn 6: ldxdw %r0, [%r0+0]: "
                          "R0 invalid mem access 'map_value_or_null'"),
              "%s", err);
    p->insns = saved;
    p->insn_cnt = saved_n;
    free(bad);
    bpfg_obj_free(obj);
}
