/* test-needs: kernel facts (facts.h) for test scripts and ctest.
 *
 *   test-needs FACT... [-- COMMAND [ARG...]]
 *       when this machine lacks a FACT: prints "SKIP: needs FACT (...)" and
 *       exits 77 (ctest's SKIP_RETURN_CODE); else runs COMMAND, or exits 0
 *   test-needs --list
 *       every fact, whether this machine has it and, if not, why
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "facts.h"

static int usage(void)
{
    fprintf(stderr, "usage: test-needs FACT... [-- COMMAND [ARG...]]\n"
                    "       test-needs --list\n");
    return 2;
}

static int list(void)
{
    const char *name, *meaning;
    for (size_t i = 0; (name = test_fact_name(i, &meaning)); i++) {
        char why[512];
        int err = test_fact(name, why, sizeof(why));
        printf("%-20s %-4s %s%s%s\n", name, err ? "no" : "yes", meaning, err ? ": " : "", err ? why : "");
    }
    return 0;
}

static bool known_fact(const char *fact)
{
    const char *name;
    for (size_t i = 0; (name = test_fact_name(i, NULL)); i++)
        if (!strcmp(name, fact))
            return true;
    return false;
}

int main(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--list"))
        return list();
    int nfacts = 1;
    while (nfacts < argc && strcmp(argv[nfacts], "--"))
        nfacts++;
    if (nfacts == 1)
        return usage();
    for (int i = 1; i < nfacts; i++)
        if (!known_fact(argv[i])) {
            fprintf(stderr, "test-needs: no fact '%s' (test-needs --list)\n", argv[i]);
            return 2;
        }
    char why[512];
    const char *lacking = test_facts_missing((const char *const *)argv + 1, (size_t)nfacts - 1, why, sizeof(why));
    if (lacking) {
        printf("SKIP: needs %s (%s)\n", lacking, why);
        return TEST_SKIPPED;
    }
    if (nfacts + 1 >= argc)
        return 0;
    execvp(argv[nfacts + 1], argv + nfacts + 1);
    fprintf(stderr, "test-needs: %s: %s\n", argv[nfacts + 1], strerror(errno));
    return 127;
}
