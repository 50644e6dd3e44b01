/* Timer programs on the payload thread (timer.h). */
#include "timer.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "payload.h"
#include "rt/rt.h"

#define MAX_TIMERS 16

struct timer {
    uint32_t prog_id; /* 0: free */
    uint64_t period_ns;
    uint64_t due_ns;
};

static struct timer timers[MAX_TIMERS]; /* payload thread only */

static uint64_t now_ns(void)
{
    return rt_clock_ns(CLOCK_MONOTONIC);
}

static struct timer *find(uint32_t prog_id)
{
    for (int i = 0; i < MAX_TIMERS; i++)
        if (timers[i].prog_id == prog_id)
            return &timers[i];
    return NULL;
}

int timer_set(const void *body, size_t len, char *err, size_t errlen)
{
    struct bpfg_pmsg_timer m;
    if (len < sizeof(m)) {
        snprintf(err, errlen, "TIMER message too short");
        return -EBADMSG;
    }
    memcpy(&m, body, sizeof(m));
    struct timer *t = find(m.prog_id);
    if (!m.period_ns) {
        if (t)
            t->prog_id = 0;
        return 0;
    }
    if (!payload_prog_by_id(m.prog_id)) {
        snprintf(err, errlen, "program %u is not loaded", m.prog_id);
        return -ENOENT;
    }
    if (!t && !(t = find(0))) {
        snprintf(err, errlen, "no room for another timer (%d)", MAX_TIMERS);
        return -ENOSPC;
    }
    t->prog_id = m.prog_id;
    t->period_ns = m.period_ns;
    t->due_ns = now_ns() + m.period_ns;
    return 0;
}

void timer_forget_prog(uint32_t prog_id)
{
    struct timer *t = find(prog_id);
    if (t && prog_id)
        t->prog_id = 0;
}

int timer_wait_ms(int max_ms)
{
    uint64_t now = now_ns(), wait = (uint64_t)max_ms * 1000000u;
    for (int i = 0; i < MAX_TIMERS; i++)
        if (timers[i].prog_id)
            wait = timers[i].due_ns <= now ? 0 : timers[i].due_ns - now < wait ? timers[i].due_ns - now : wait;
    return (int)((wait + 999999u) / 1000000u);
}

static void run(struct timer *t)
{
    struct prog *p = payload_prog_by_id(t->prog_id);
    if (!p)
        return;
    struct bpfg_perf_event_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.sample_period = t->period_ns;
    struct bpfg_exec ex;
    memset(&ex, 0, sizeof(ex));
    ex.regs = &ctx.regs;
    ex.ctx = &ctx;
    ex.ctx_len = sizeof(ctx);
    helpers_run(p, &ex);
}

void timer_run_due(void)
{
    uint64_t now = now_ns();
    for (int i = 0; i < MAX_TIMERS; i++) {
        struct timer *t = &timers[i];
        if (!t->prog_id || t->due_ns > now)
            continue;
        /* late (the thread was busy): run once, keep the period's phase */
        t->due_ns += (now - t->due_ns) / t->period_ns * t->period_ns + t->period_ns;
        run(t);
    }
}
