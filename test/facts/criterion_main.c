/* main() of every Criterion test executable: Criterion's own, except that
 * a run where tests were skipped (test_needs: a kernel fact missing) and
 * none failed exits 77, which ctest counts as skipped, not passed. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <stdio.h>

#include "facts.h"

static size_t skipped;

/* Counted per test run: the global count includes the tests --filter left
 * out. Report hooks run in the runner process. */
ReportHook(POST_TEST)(struct criterion_test_stats *stats)
{
    if (stats->test_status == CR_STATUS_SKIPPED)
        skipped++;
}

int main(int argc, char **argv)
{
    struct criterion_test_set *tests = criterion_initialize();
    int failed = 0;
    if (criterion_handle_args(argc, argv, true))
        failed = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    if (failed || !skipped)
        return failed;
    printf("%zu test(s) skipped: see the SKIP lines for what this machine lacks\n", skipped);
    return TEST_SKIPPED;
}
