/* Kernel facts the tests depend on, probed at run time.
 *
 * A test that needs a fact this machine lacks does not fail and does not
 * pass: it is skipped with the reason (exit 77, ctest's SKIP_RETURN_CODE),
 * so ctest counts it apart. A test whose expectation depends on a fact
 * (say, whether the kernel accepts override_return) probes it and expects
 * accordingly. `test-needs --list` shows what this machine has.
 *
 *   root                 the tests run as root (euid 0)
 *   bpf-maps             the kernel creates BPF maps
 *   bpf-tracing          the kernel loads kprobe programs
 *   bpf-test-run         the kernel loads XDP programs and runs them
 *                        through BPF_PROG_TEST_RUN
 *   bpf-override-return  the kernel loads kprobe programs calling
 *                        bpf_override_return (CONFIG_BPF_KPROBE_OVERRIDE)
 *   bpf-jit              the kernel JIT-compiles BPF programs
 *   btf                  the kernel's BTF is at /sys/kernel/btf/vmlinux
 *   tracefs              tracefs is mounted at /sys/kernel/tracing, or the
 *                        kernel has it for the test to mount there
 */
#ifndef BPFGRAFT_TEST_FACTS_H
#define BPFGRAFT_TEST_FACTS_H

#include <stddef.h>

/* 0 when this machine has fact, else -errno with why it has not in why
 * (-EINVAL: no such fact). */
int test_fact(const char *fact, char *why, size_t len);

/* The first of the n facts this machine lacks (why it does in why), or
 * NULL when it has them all. */
const char *test_facts_missing(const char *const *facts, size_t n, char *why, size_t len);

/* The i-th fact's name and meaning (NULL past the last). */
const char *test_fact_name(size_t i, const char **meaning);

/* Exit status of a test that was skipped (ctest's SKIP_RETURN_CODE). */
#define TEST_SKIPPED 77

#endif
