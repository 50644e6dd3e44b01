/* Tool mode's fd table (payload/tool_core.c): files shared by dup'd fds,
 * reference counts, fds closed behind the table's back, bounds, and
 * concurrent users. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "tool.h"

static struct tool_file *new_file(uint8_t kind)
{
    struct tool_file *f = calloc(1, sizeof(*f));
    cr_assert_not_null(f);
    f->refs = 1;
    f->kind = kind;
    return f;
}

Test(tool_fdt, install_get_close)
{
    struct tool_file *f = new_file(TK_MAP), *old;
    cr_assert_null(tool_fdt_peek(5));
    cr_assert_eq(tool_fdt_install(5, f, &old), 0);
    cr_assert_null(old);
    cr_assert_eq(tool_fdt_peek(5), f);
    struct tool_file *g = tool_fdt_get(5);
    cr_assert_eq(g, f);
    cr_assert_eq(f->refs, 2);
    cr_assert_not(tool_fdt_put(g), "the fd still holds it");
    /* close */
    struct tool_file *r = tool_fdt_remove(5);
    cr_assert_eq(r, f);
    cr_assert_null(tool_fdt_peek(5));
    cr_assert_null(tool_fdt_get(5));
    cr_assert(tool_fdt_put(r), "last reference");
    free(f);
}

Test(tool_fdt, dup_shares_the_file)
{
    struct tool_file *f = new_file(TK_PROG), *old;
    cr_assert_eq(tool_fdt_install(3, f, &old), 0);
    /* dup(3) -> 9: the new fd takes a reference of the same file */
    struct tool_file *d = tool_fdt_get(3);
    cr_assert_eq(tool_fdt_install(9, d, &old), 0);
    cr_assert_null(old);
    cr_assert_eq(f->refs, 2);
    cr_assert_eq(tool_fdt_peek(9), f);
    /* close(3): not the last fd */
    cr_assert_not(tool_fdt_put(tool_fdt_remove(3)));
    cr_assert_eq(tool_fdt_peek(9), f);
    /* close(9): the last */
    cr_assert(tool_fdt_put(tool_fdt_remove(9)));
    free(f);
}

Test(tool_fdt, dup2_over_a_tracked_fd)
{
    struct tool_file *a = new_file(TK_MAP), *b = new_file(TK_LINK), *old;
    cr_assert_eq(tool_fdt_install(4, a, &old), 0);
    cr_assert_eq(tool_fdt_install(6, b, &old), 0);
    /* dup2(4, 6): 6 now is a; b's fd reference comes back to the caller */
    cr_assert_eq(tool_fdt_install(6, tool_fdt_get(4), &old), 0);
    cr_assert_eq(old, b);
    cr_assert(tool_fdt_put(old), "b had only that fd");
    cr_assert_eq(a->refs, 2);
    /* dup2(untracked, 4): 4 is forgotten */
    cr_assert_eq(tool_fdt_install(4, NULL, &old), 0);
    cr_assert_eq(old, a);
    cr_assert_not(tool_fdt_put(old));
    cr_assert_null(tool_fdt_peek(4));
    cr_assert(tool_fdt_put(tool_fdt_remove(6)));
    free(a);
    free(b);
}

Test(tool_fdt, bounds)
{
    struct tool_file *f = new_file(TK_BTF), *old = (void *)1;
    cr_assert_eq(tool_fdt_install(TOOL_MAX_FDS, f, &old), -EMFILE);
    cr_assert_null(old);
    cr_assert_eq(tool_fdt_install(-1, f, &old), -EMFILE);
    cr_assert_null(tool_fdt_peek(-1));
    cr_assert_null(tool_fdt_peek(TOOL_MAX_FDS));
    cr_assert_null(tool_fdt_get(-3));
    cr_assert_null(tool_fdt_remove(TOOL_MAX_FDS + 10));
    cr_assert_null(tool_fdt_remove(17), "never installed");
    cr_assert_not(tool_fdt_put(NULL));
    cr_assert_eq(tool_fdt_install(TOOL_MAX_FDS - 1, f, &old), 0);
    cr_assert_eq(tool_fdt_peek(TOOL_MAX_FDS - 1), f);
    cr_assert(tool_fdt_put(tool_fdt_remove(TOOL_MAX_FDS - 1)));
    free(f);
}

/* Threads get and put a shared file while others dup and close fds of
 * it: the count must come back to exactly the fds left. */
#define THREADS 4
#define ROUNDS 20000

static void *churn(void *arg)
{
    int base = 100 + (int)(intptr_t)arg * 10;
    for (int i = 0; i < ROUNDS; i++) {
        struct tool_file *f = tool_fdt_get(50), *old;
        cr_assert_not_null(f);
        tool_fdt_ref(f);
        cr_assert_eq(tool_fdt_install(base + i % 10, f, &old), 0); /* a dup */
        cr_assert_not(tool_fdt_put(old), "fd 50 keeps the file");
        cr_assert_not(tool_fdt_put(tool_fdt_remove(base + (i + 5) % 10)));
        cr_assert_not(tool_fdt_put(f));
    }
    for (int k = 0; k < 10; k++)
        tool_fdt_put(tool_fdt_remove(base + k));
    return NULL;
}

Test(tool_fdt, concurrent_refcounts)
{
    struct tool_file *f = new_file(TK_PERF_RING), *old;
    cr_assert_eq(tool_fdt_install(50, f, &old), 0);
    pthread_t t[THREADS];
    for (intptr_t i = 0; i < THREADS; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, churn, (void *)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(f->refs, 1, "only fd 50 is left");
    cr_assert(tool_fdt_put(tool_fdt_remove(50)));
    free(f);
}
