/* Hook planning and stub generation on known instruction sequences. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "hookgen.h"
#include "injector.h"

#define FUNC 0x7f0000100000ull
#define STUB 0x7f0000000000ull
#define ENTRY 0x7f1234560000ull

static struct bpfg_hook_plan plan;
static char err[BPFG_ERRLEN];

static int64_t rd32(const uint8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

Test(hookgen, plain_prologue)
{
    const uint8_t code[] = {0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10, 0x31, 0xc0, 0xc9, 0xc3};
    cr_assert_eq(bpfg_hook_plan(FUNC, code, sizeof(code), &plan, err), 0, "%s", err);
    cr_expect_eq(plan.site, FUNC);
    cr_expect_eq(plan.patch_len, 8, "push rbp; mov rbp,rsp; sub rsp,16 = 8 bytes");
    cr_expect(!plan.has_call, "no call among the displaced bytes");
    cr_assert_eq(bpfg_hook_build(&plan, STUB, 7, ENTRY, err), 0, "%s", err);
    /* stub: push 7; jmp [rip+0] -> entry */
    cr_expect_eq(plan.stub[0], 0x68);
    cr_expect_eq(rd32(plan.stub + 1), 7);
    cr_expect_eq(plan.stub[5], 0xff);
    cr_expect_eq(plan.stub[6], 0x25);
    cr_expect_eq(rd64(plan.stub + 11), ENTRY);
    /* resume: the 8 displaced bytes, then jmp back to site+8 */
    cr_expect_eq(memcmp(plan.stub + BPFG_HOOK_RESUME_OFF, code, 8), 0);
    cr_expect_eq(rd64(plan.stub + BPFG_HOOK_RESUME_OFF + 8 + 6), FUNC + 8);
    /* patch: jmp rel32 to the stub, nops after */
    cr_expect_eq(plan.patch[0], 0xe9);
    cr_expect_eq((uint64_t)(FUNC + 5 + rd32(plan.patch + 1)), STUB);
    cr_expect_eq(plan.patch[5], 0x90);
    cr_expect_eq(plan.patch[7], 0x90);
}

Test(hookgen, endbr64_stays_and_rip_relative_is_fixed)
{
    /* endbr64; mov rax, [rip+0x100]; push rbx; ret */
    const uint8_t code[] = {0xf3, 0x0f, 0x1e, 0xfa, 0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00, 0x53, 0xc3};
    cr_assert_eq(bpfg_hook_plan(FUNC, code, sizeof(code), &plan, err), 0, "%s", err);
    cr_expect_eq(plan.site, FUNC + 4, "the jmp goes after endbr64");
    cr_expect_eq(plan.patch_len, 7);
    cr_assert_eq(bpfg_hook_build(&plan, STUB, 1, ENTRY, err), 0, "%s", err);
    const uint8_t *r = plan.stub + BPFG_HOOK_RESUME_OFF;
    cr_expect_eq(r[0], 0x48);
    cr_expect_eq(r[2], 0x05);
    uint64_t target = STUB + BPFG_HOOK_RESUME_OFF + 7 + (uint64_t)rd32(r + 3);
    cr_expect_eq(target, FUNC + 4 + 7 + 0x100, "the operand still names the same memory");
}

Test(hookgen, conditional_branch_and_call_are_relocated)
{
    /* test edi,edi; je +0x10; call +0x20; ... ret */
    const uint8_t code[] = {0x85, 0xff, 0x74, 0x10, 0xe8, 0x20, 0x00, 0x00, 0x00, 0x90, 0xc3};
    cr_assert_eq(bpfg_hook_plan(FUNC, code, sizeof(code), &plan, err), 0, "%s", err);
    cr_expect_eq(plan.patch_len, 9);
    cr_expect(plan.has_call, "a displaced call is flagged");
    cr_assert_eq(bpfg_hook_build(&plan, STUB, 2, ENTRY, err), 0, "%s", err);
    const uint8_t *r = plan.stub + BPFG_HOOK_RESUME_OFF;
    cr_expect_eq(memcmp(r, code, 2), 0);
    cr_expect_eq(r[2], 0x75, "je becomes jne over an absolute jmp");
    cr_expect_eq(r[3], 14);
    cr_expect_eq(rd64(r + 4 + 6), FUNC + 4 + 0x10, "je target");
    /* the call: push the original return address (two halves), jmp */
    const uint8_t *c = r + 4 + 14;
    uint64_t ret = ((uint64_t)rd32(c + 1) & 0xffffffffu) | (uint64_t)rd32(c + 9) << 32;
    cr_expect(c[0] == 0x68 && !memcmp(c + 5, "\xc7\x44\x24\x04", 4), "push imm32; movl imm32, 4(%%rsp)");
    cr_expect_eq(ret, FUNC + 9, "the return address is the function's, after the call");
    cr_expect(c[13] == 0xff && c[14] == 0x25, "jmp [rip]");
    cr_expect_eq(rd64(c + 13 + 6), FUNC + 9 + 0x20, "call target");
}

Test(hookgen, refuses_what_cannot_be_patched)
{
    const uint8_t short_fn[] = {0x31, 0xc0, 0xc3};
    cr_expect_eq(bpfg_hook_plan(FUNC, short_fn, sizeof(short_fn), &plan, err), -EINVAL);
    cr_expect(strstr(err, "too short"), "%s", err);

    /* push rbp; mov rbp,rsp; nop; nop; jne back to +1 (inside the patch) */
    const uint8_t loop_back[] = {0x55, 0x48, 0x89, 0xe5, 0x90, 0x90, 0x75, 0xf9, 0xc3};
    cr_expect_eq(bpfg_hook_plan(FUNC, loop_back, sizeof(loop_back), &plan, err), -EINVAL);
    cr_expect(strstr(err, "branches into the bytes"), "%s", err);

    /* jrcxz cannot be inverted: refused */
    const uint8_t jrcxz[] = {0xe3, 0x05, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3};
    cr_expect_eq(bpfg_hook_plan(FUNC, jrcxz, sizeof(jrcxz), &plan, err), -EINVAL);
    cr_expect(strstr(err, "cannot relocate"), "%s", err);
}

Test(hookgen, stub_out_of_reach)
{
    const uint8_t code[] = {0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10, 0xc3};
    cr_assert_eq(bpfg_hook_plan(FUNC, code, sizeof(code), &plan, err), 0);
    cr_expect_eq(bpfg_hook_build(&plan, FUNC + (3ull << 31), 1, ENTRY, err), -ERANGE);
}

Test(hookgen, hop_plan_and_build)
{
    /* push rbx; mov eax,edi; pop rbx; ret: a one-byte first instruction,
     * so the short jmp displaces two */
    const uint8_t code[] = {0x53, 0x89, 0xf8, 0x5b, 0xc3};
    const uint8_t pad[BPFG_HOP_SLOT_LEN] = {0x66, 0x0f, 0x1f, 0x44, 0x00};
    uint64_t slot = FUNC + 5;
    cr_assert_eq(bpfg_hook_plan_hop(FUNC, code, sizeof(code), slot, pad, &plan, err), 0, "%s", err);
    cr_expect(plan.hop && !plan.trap);
    cr_expect_eq(plan.patch_len, 2);
    cr_expect_eq(plan.insn_len, 3, "push rbx and mov run out of line");
    cr_expect_eq(memcmp(plan.slot_orig, pad, sizeof(pad)), 0);
    cr_assert_eq(bpfg_hook_build(&plan, STUB, 3, ENTRY, err), 0, "%s", err);
    cr_expect(plan.patch[0] == 0xeb && (int8_t)plan.patch[1] == 3, "jmp rel8 to the slot");
    cr_expect_eq(plan.slot_patch[0], 0xe9);
    cr_expect_eq((uint64_t)(slot + 5 + rd32(plan.slot_patch + 1)), STUB, "the slot jumps to the stub");
    cr_expect_eq(memcmp(plan.stub + BPFG_HOOK_RESUME_OFF, code, 3), 0);
    cr_expect_eq(rd64(plan.stub + BPFG_HOOK_RESUME_OFF + 3 + 6), FUNC + 3, "back after the displaced bytes");
}

Test(hookgen, hop_refusals)
{
    const uint8_t pad[BPFG_HOP_SLOT_LEN] = {0xcc, 0xcc, 0xcc, 0xcc, 0xcc};
    const uint8_t code[] = {0x31, 0xc0, 0xc3};
    cr_expect_eq(bpfg_hook_plan_hop(FUNC, code, sizeof(code), FUNC + 2 + 128, pad, &plan, err), -EINVAL);
    cr_expect(strstr(err, "reach"), "%s", err);
    cr_expect_eq(bpfg_hook_plan_hop(FUNC, code, sizeof(code), FUNC + 2 + 127, pad, &plan, err), 0, "%s", err);
    /* ret; ...: a one-byte instruction that leaves cannot be followed */
    const uint8_t ret_first[] = {0xc3, 0xcc, 0xcc};
    cr_expect_eq(bpfg_hook_plan_hop(FUNC, ret_first, sizeof(ret_first), FUNC + 8, pad, &plan, err), -EINVAL);
    cr_expect(strstr(err, "leaves"), "%s", err);
}

#define IMG_LEN 64

/* The branch index of an image of IMG_LEN bytes at FUNC that is all code:
 * bytes, then int3s (into img_bytes). */
static void index_image(const uint8_t *bytes, size_t len, uint8_t img_bytes[IMG_LEN], struct bpfg_branch_index *ix)
{
    memset(img_bytes, 0xcc, IMG_LEN);
    memcpy(img_bytes, bytes, len);
    struct bpfg_text_range rg = {FUNC, FUNC + IMG_LEN};
    struct bpfg_text_image img = {FUNC, img_bytes, IMG_LEN, &rg, 1};
    cr_assert_eq(bpfg_branch_index_build(&img, ix), 0);
}

/* A function [FUNC, FUNC+hi) then padding up to FUNC+next. */
static bool padding_ok(const uint8_t *bytes, size_t len, uint64_t hi, uint64_t next, char *why)
{
    uint8_t img_bytes[IMG_LEN];
    struct bpfg_branch_index ix;
    index_image(bytes, len, img_bytes, &ix);
    bool ok = bpfg_padding_unreachable(&ix, img_bytes, FUNC, FUNC + hi, FUNC + next, why, BPFG_ERRLEN);
    bpfg_branch_index_free(&ix);
    return ok;
}

Test(hookgen, padding_proofs)
{
    char why[BPFG_ERRLEN];
    /* xor eax,eax; ret; nopw 0(rax,rax) ; nop ; int3...: padding */
    const uint8_t good[] = {0x31, 0xc0, 0xc3, 0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0x90};
    cr_expect(padding_ok(good, sizeof(good), 3, 16, why), "%s", why);
    /* the function falls through (its last instruction is an add) */
    const uint8_t falls[] = {0x31, 0xc0, 0x83, 0xc0, 0x01, 0x90, 0x90, 0x90};
    cr_expect(!padding_ok(falls, sizeof(falls), 5, 16, why));
    cr_expect(strstr(why, "does not end"), "%s", why);
    /* something other than nop or int3 after the function */
    const uint8_t data[] = {0x31, 0xc0, 0xc3, 0x90, 0x31, 0xc0, 0x90};
    cr_expect(!padding_ok(data, sizeof(data), 3, 16, why));
    cr_expect(strstr(why, "not padding"), "%s", why);
    /* later code jumps into the padding (jmp to FUNC+4 from FUNC+16) */
    uint8_t entered[18] = {0x31, 0xc0, 0xc3, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90,
                           0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xeb, 0x00};
    entered[17] = (uint8_t)(int8_t)(4 - 18);
    cr_expect(!padding_ok(entered, sizeof(entered), 3, 16, why));
    cr_expect(strstr(why, "branches to"), "%s", why);
}

Test(hookgen, mid_function_stub_steps_over_the_red_zone)
{
    /* add esi,eax; add eax,1; ret: a jmp at a site inside a function */
    const uint8_t code[] = {0x01, 0xf0, 0x83, 0xc0, 0x01, 0xc3};
    cr_assert_eq(bpfg_hook_plan(FUNC, code, sizeof(code), &plan, err), 0, "%s", err);
    plan.mid = true;
    cr_assert_eq(bpfg_hook_build(&plan, STUB, 7, ENTRY, err), 0, "%s", err);
    const uint8_t down[] = {0x48, 0x8d, 0x64, 0x24, 0x80}, up[] = {0x48, 0x8d, 0xa4, 0x24, 0x80, 0, 0, 0};
    cr_expect_eq(memcmp(plan.stub, down, sizeof(down)), 0, "lea -128(%%rsp),%%rsp first");
    cr_expect_eq(plan.stub[5], 0x68);
    cr_expect_eq(rd32(plan.stub + 6), 7 | BPFG_HOOK_INDEX_MID, "the index says the red zone was skipped");
    cr_expect_eq(rd64(plan.stub + 10 + 6), ENTRY);
    cr_expect_eq(memcmp(plan.stub + BPFG_HOOK_RESUME_OFF, up, sizeof(up)), 0, "the resume code steps back first");
    cr_expect_eq(memcmp(plan.stub + BPFG_HOOK_RESUME_OFF + sizeof(up), code, 5), 0);
}

/* The dead runs of a function of len bytes at FUNC. */
static size_t dead_runs(const uint8_t *bytes, size_t len, struct bpfg_text_range *out, size_t max)
{
    uint8_t img_bytes[IMG_LEN];
    struct bpfg_branch_index ix;
    index_image(bytes, len, img_bytes, &ix);
    size_t n = bpfg_dead_runs(&ix, img_bytes, FUNC, FUNC + len, out, max);
    bpfg_branch_index_free(&ix);
    return n;
}

Test(hookgen, dead_runs)
{
    struct bpfg_text_range r[4];
    /* test edi,edi; jg +9; ret; 8 nops; mov eax,1; ret: the nops after ret
     * up to the jg's target */
    const uint8_t after_ret[] = {0x85, 0xff, 0x7f, 0x09, 0xc3, 0x90, 0x90, 0x90, 0x90, 0x90,
                                 0x90, 0x90, 0x90, 0xb8, 0x01, 0,    0,    0,    0xc3};
    cr_assert_eq(dead_runs(after_ret, sizeof(after_ret), r, 4), 1);
    cr_expect(r[0].lo == FUNC + 5 && r[0].hi == FUNC + 13, "[0x%llx, 0x%llx)", (unsigned long long)r[0].lo,
              (unsigned long long)r[0].hi);
    /* the jg lands inside the nops (FUNC+9): only the 4 before it are dead, too few */
    uint8_t cut[sizeof(after_ret)];
    memcpy(cut, after_ret, sizeof(cut));
    cut[3] = 0x05;
    cr_expect_eq(dead_runs(cut, sizeof(cut), r, 4), 0);
    /* nops after an add are reached by falling through */
    uint8_t falls[sizeof(after_ret)];
    memcpy(falls, after_ret, sizeof(falls));
    falls[4] = 0x90;
    cr_expect_eq(dead_runs(falls, sizeof(falls), r, 4), 0);
    /* jmp *%rax: where it goes is unknown, so nothing is dead */
    const uint8_t indirect[] = {0xff, 0xe0, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0xc3};
    cr_expect_eq(dead_runs(indirect, sizeof(indirect), r, 4), 0);
}

/* ---- syscall sites without dispatch (Go's forms, bytes from go1.19) ---- */

static struct bpfg_sys_site_plan sys[8];
static size_t nsys;

Test(syscall_sites, number_set_right_before)
{
    /* runtime.getpid: mov $0x27,%eax; syscall; mov %rax,0x8(%rsp); ret,
     * then runtime.settls's mov $0x9e,%rax; syscall; int3 padding */
    const uint8_t code[] = {0xb8, 0x27, 0,    0,    0,    0x0f, 0x05, 0x48, 0x89, 0x44, 0x24, 0x08,
                            0xc3, 0x48, 0xc7, 0xc0, 0x9e, 0,    0,    0,    0x0f, 0x05, 0xcc, 0xcc};
    cr_assert_eq(bpfg_sys_sites_scan(code, sizeof(code), FUNC, sys, 8, &nsys, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(nsys, 2);
    cr_expect_eq(sys[0].patch, FUNC);
    cr_expect_eq(sys[0].syscall, FUNC + 5);
    cr_expect_eq(sys[0].nr, 0x27);
    cr_expect_eq(sys[1].patch, FUNC + 13, "the 7-byte mov $nr,%%rax is the patch");
    cr_expect_eq(sys[1].syscall, FUNC + 20);
    cr_expect_eq(sys[1].nr, 0x9e);
}

Test(syscall_sites, number_in_rax_displaced)
{
    /* runtime/internal/syscall.Syscall6: mov %rsi,%r10; mov %rdi,%rdx;
     * mov %rcx,%rsi; mov %rbx,%rdi; syscall; then rawSyscallNoError's
     * mov 0x8(%rsp),%rax; syscall */
    const uint8_t code[] = {0x49, 0x89, 0xf2, 0x48, 0x89, 0xfa, 0x48, 0x89, 0xce, 0x48, 0x89, 0xdf,
                            0x0f, 0x05, 0xc3, 0x48, 0x8b, 0x44, 0x24, 0x08, 0x0f, 0x05, 0xc3};
    cr_assert_eq(bpfg_sys_sites_scan(code, sizeof(code), FUNC, sys, 8, &nsys, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(nsys, 2);
    cr_expect_eq(sys[0].nr, -1);
    cr_expect_eq(sys[0].patch, FUNC + 6, "two 3-byte movs: the fewest whole instructions of 5 bytes or more");
    cr_expect_eq(sys[0].ndisplaced, 6);
    cr_expect_eq(memcmp(sys[0].displaced, code + 6, 6), 0);
    cr_expect_eq(sys[1].patch, FUNC + 15);
    cr_expect_eq(sys[1].ndisplaced, 5);
    cr_expect_eq(sys[1].syscall, FUNC + 20);
}

Test(syscall_sites, refused)
{
    /* a jmp right before the syscall cannot run from a stub */
    const uint8_t jmp[] = {0x90, 0x90, 0x90, 0xeb, 0x00, 0x0f, 0x05, 0xc3};
    cr_expect_eq(bpfg_sys_sites_scan(jmp, sizeof(jmp), FUNC, sys, 8, &nsys, err, sizeof(err)), -EINVAL);
    cr_expect(strstr(err, "0x7f0000100005") != NULL, "names the syscall: %s", err);
    /* nor a rip-relative load */
    const uint8_t rip[] = {0x48, 0x8b, 0x05, 0x10, 0, 0, 0, 0x0f, 0x05};
    cr_expect_eq(bpfg_sys_sites_scan(rip, sizeof(rip), FUNC, sys, 8, &nsys, err, sizeof(err)), -EINVAL);
    /* fewer than 5 bytes of code before it */
    const uint8_t short_[] = {0x48, 0x89, 0xdf, 0x0f, 0x05};
    cr_expect_eq(bpfg_sys_sites_scan(short_, sizeof(short_), FUNC, sys, 8, &nsys, err, sizeof(err)), -EINVAL);
    /* bytes that do not decode (push %es is not in 64-bit mode), a syscall's
     * bytes after them */
    const uint8_t bad[] = {0xb8, 1, 0, 0, 0, 0x0f, 0x05, 0x06, 0x0f, 0x05};
    cr_expect_eq(bpfg_sys_sites_scan(bad, sizeof(bad), FUNC, sys, 8, &nsys, err, sizeof(err)), -EINVAL);
    cr_expect(strstr(err, "does not decode") != NULL, "%s", err);
    /* ... and none after them: nothing to miss */
    const uint8_t tail[] = {0xb8, 1, 0, 0, 0, 0x0f, 0x05, 0x06};
    cr_expect_eq(bpfg_sys_sites_scan(tail, sizeof(tail), FUNC, sys, 8, &nsys, err, sizeof(err)), 0, "%s", err);
    cr_expect_eq(nsys, 1);
}
