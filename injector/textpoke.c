/* Crash-consistent code patches (hookgen.h, bpfg_text_poke): the
 * int3-first protocol of the kernel's text_poke_bp, journaled in the
 * payload's parameters (abi/payload_abi.h, struct bpfg_patch_journal).
 *
 * Every thread is ptrace-stopped while the bytes are written, so no CPU
 * runs the target's code during a write and each thread refetches what it
 * runs when it resumes: no core needs a separate sync between the steps.
 * What the protocol adds is that a server killed between any two writes
 * (the two pages of a jmp that crosses a page boundary, the slot and the
 * site of a hop) leaves no torn instruction: the threads then run on, and
 * the only instruction they can meet half-written starts with an int3 the
 * payload's SIGTRAP handler resolves from the journal. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "hookgen.h"
#include "injector.h"
#include "internal.h"
#include "payload_abi.h"

#define PAGE_SIZE_ 4096u
#define INT3 0xcc

/* BPFGRAFT_TEST_PATCH_STOP=N: the process kills itself (SIGKILL) right
 * after the Nth code write it makes here (a protocol step or a plain
 * write), for tests of a server killed at every step. Counted over the
 * process's life. */
static void test_stop_point(void)
{
    static struct bpfg_test_stop patch_stop = {"BPFGRAFT_TEST_PATCH_STOP", -1, 0};
    bpfg_inj_test_stop(&patch_stop);
}

static int set_step(const struct bpfg_stopped *st, uint64_t journal, uint32_t step)
{
    int r = bpfg_mem_write(st, journal + offsetof(struct bpfg_patch_journal, step), &step, sizeof(step));
    if (!r)
        test_stop_point();
    return r;
}

/* One write of the protocol, then the journal's step after it. */
static int poke_step(const struct bpfg_stopped *st, uint64_t journal, uint32_t *step, uint64_t addr,
                     const uint8_t *bytes, size_t len)
{
    int r = bpfg_mem_write(st, addr, bytes, len);
    return r ? r : set_step(st, journal, ++*step);
}

/* int3 on the first byte, the rest page by page, then the first byte. */
static int poke_one(const struct bpfg_stopped *st, uint64_t journal, uint32_t *step, const struct bpfg_patch_write *w)
{
    static const uint8_t int3 = INT3;
    int r = poke_step(st, journal, step, w->site, &int3, 1);
    for (size_t off = 1; !r && off < w->len;) {
        uint64_t at = w->site + off;
        size_t n = PAGE_SIZE_ - (at % PAGE_SIZE_);
        n = n < w->len - off ? n : w->len - off;
        r = poke_step(st, journal, step, at, w->after + off, n);
        off += n;
    }
    return r ? r : poke_step(st, journal, step, w->site, w->after, 1);
}

static int poke_all(const struct bpfg_stopped *st, uint64_t journal, const struct bpfg_patch_journal *j, uint32_t step)
{
    int r = 0;
    for (uint32_t i = 0; !r && i < j->nwrites; i++)
        r = poke_one(st, journal, &step, &j->w[i]);
    return r ? r : set_step(st, journal, 0);
}

static bool journaled(uint64_t journal, const struct bpfg_text_write *w, size_t n)
{
    bool multi = false;
    for (size_t i = 0; i < n; i++)
        multi |= w[i].len > 1;
    return journal && multi;
}

int bpfg_text_poke(const struct bpfg_stopped *st, uint64_t journal, const struct bpfg_text_write *w, size_t n)
{
    if (n > BPFG_JOURNAL_WRITES)
        return -E2BIG;
    int r = 0;
    if (!journaled(journal, w, n)) { /* one byte each: every write is whole */
        for (size_t i = 0; !r && i < n; i++)
            if (!(r = bpfg_mem_write(st, w[i].site, w[i].after, w[i].len)))
                test_stop_point();
        return r;
    }
    struct bpfg_patch_journal j = {.step = 0, .nwrites = (uint32_t)n};
    for (size_t i = 0; i < n; i++) {
        if (w[i].len == 0 || w[i].len > BPFG_JOURNAL_BYTES)
            return -EINVAL;
        j.w[i] = (struct bpfg_patch_write){.site = w[i].site, .resume = w[i].resume, .len = (uint32_t)w[i].len};
        memcpy(j.w[i].before, w[i].before, w[i].len);
        memcpy(j.w[i].after, w[i].after, w[i].len);
    }
    if ((r = bpfg_mem_write(st, journal, &j, sizeof(j))) || (r = set_step(st, journal, 1)))
        return r;
    return poke_all(st, journal, &j, 1);
}

/* Each byte is the one before, the one after, or (the first) the int3. */
static bool plausible(const struct bpfg_patch_write *w, const uint8_t *now)
{
    for (uint32_t i = 0; i < w->len; i++)
        if (now[i] != w->before[i] && now[i] != w->after[i] && !(i == 0 && now[i] == INT3))
            return false;
    return true;
}

int bpfg_text_poke_finish(const struct bpfg_stopped *st, uint64_t journal, uint32_t *step)
{
    struct bpfg_patch_journal j;
    int r = bpfg_mem_read(st, journal, &j, sizeof(j));
    *step = r ? 0 : j.step;
    if (r || j.step == 0)
        return r;
    if (j.nwrites > BPFG_JOURNAL_WRITES)
        return -EBADMSG;
    for (uint32_t i = 0; i < j.nwrites; i++) {
        uint8_t now[BPFG_JOURNAL_BYTES];
        if (j.w[i].len == 0 || j.w[i].len > BPFG_JOURNAL_BYTES)
            return -EBADMSG;
        if ((r = bpfg_mem_read(st, j.w[i].site, now, j.w[i].len)))
            return r;
        if (!plausible(&j.w[i], now))
            return -EBADMSG; /* not the code the journal was written for */
    }
    return poke_all(st, journal, &j, j.step);
}
