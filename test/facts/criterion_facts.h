/* Kernel facts in Criterion tests. test_needs(FACT) at the top of a test,
 * or in a suite's .init, skips the test with the reason when this machine
 * lacks FACT (facts.h); criterion_main.c, linked into every Criterion test
 * executable, then exits 77 (skipped) unless a test failed. */
#ifndef BPFGRAFT_TEST_CRITERION_FACTS_H
#define BPFGRAFT_TEST_CRITERION_FACTS_H

#include <criterion/criterion.h>
#include <stdio.h>

#include "facts.h"

static inline void test_needs(const char *fact)
{
    char why[512];
    if (!test_fact(fact, why, sizeof(why)))
        return;
    fprintf(stderr, "SKIP %s::%s: needs %s (%s)\n", criterion_current_test->category, criterion_current_test->name,
            fact, why);
    cr_skip_test("needs %s (%s)", fact, why);
}

/* As a test's .init: clang-built objects have CO-RE relocations, and
 * loading them needs the kernel's BTF. */
static inline void test_needs_btf(void)
{
    test_needs("btf");
}

#endif
