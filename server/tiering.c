#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "progcompile.h"
#include "server.h"
#include "state.h"
#include "tiering.h"

static bool due(const struct target *t, size_t i)
{
    return t->sock >= 0 && !t->inert && (t->progs_engine[i] & TARGET_ENGINE_LLVM_DUE);
}

/* Stopping, or handing over: the state keeps the flags and the next
 * server does the swaps. */
static bool paused(const struct server *s)
{
    return s->stop || s->handover_ms;
}

bool tiering_pending(const struct server *s)
{
    if (paused(s))
        return false;
    for (const struct target *t = s->targets.list; t; t = t->next)
        for (size_t i = 0; i < t->nprogs_sent; i++)
            if (due(t, i))
                return true;
    return false;
}

/* Sends code to replace program id's in t; 0 or a negative errno (why). */
static int swap_code(struct server *s, struct target *t, uint32_t id, const struct bpfg_x86jit_code *code, char *why,
                     size_t whylen)
{
    struct bpfg_pmsg_prog_swap sw = {
        .prog_id = id, .engine = BPFG_ENGINE_LLVM, .code_len = (uint32_t)code->len, .entry_off = 0};
    int fd = progcompile_code_memfd(code);
    if (fd < 0) {
        snprintf(why, whylen, "code memfd: %s", strerror(-fd));
        return fd;
    }
    int r = targets_payload_call_fd(s, t, BPFG_PMSG_PROG_SWAP, &sw, sizeof(sw), fd, NULL, 0, NULL, why, whylen);
    close(fd);
    return r;
}

/* The engine id runs on now in t (its entry may have moved while the
 * payload was called: look it up again). */
static void set_engine(struct target *t, uint32_t id, int engine)
{
    for (size_t i = 0; i < t->nprogs_sent; i++)
        if (t->progs_sent[i] == id)
            t->progs_engine[i] = (uint8_t)engine;
}

static void tier_up(struct server *s, struct target *t, size_t i)
{
    uint32_t id = t->progs_sent[i];
    t->progs_engine[i] &= (uint8_t)~TARGET_ENGINE_LLVM_DUE; /* tried once, whatever happens */
    struct reg_prog *p = registry_prog(&s->reg, id);
    struct reg_object *o = p ? registry_object(&s->reg, p->obj_id) : NULL;
    if (!o)
        return;
    struct bpfg_x86jit_code code = {0};
    uint64_t t0 = server_now_ms();
    int used = progcompile_for_target(s, t, o, p, BPFG_ENGINE_LLVM, &code);
    char why[256] = "the llvm engine refused it";
    int r = used == BPFG_ENGINE_LLVM ? swap_code(s, t, id, &code, why, sizeof(why)) : -EINVAL;
    bpfg_x86jit_code_free(&code);
    if (r) {
        srv_log(SRV_WARN, "target %d: program %u '%s' stays on x86 (%s)", (int)t->pid, id, p->prog->name, why);
        state_save_target(s, t); /* the flag is gone: not tried again after a restart */
        return;
    }
    set_engine(t, id, BPFG_ENGINE_LLVM);
    state_save_target(s, t); /* a restarted server's record says llvm */
    srv_log(SRV_DEBUG, "target %d: program %u '%s' switched to llvm (%llu ms)", (int)t->pid, id, p->prog->name,
            (unsigned long long)(server_now_ms() - t0));
}

void tiering_step(struct server *s)
{
    if (paused(s)) /* the scan below finds what is due: no tiering_pending scan first */
        return;
    for (struct target *t = s->targets.list; t; t = t->next)
        for (size_t i = 0; i < t->nprogs_sent; i++)
            if (due(t, i)) {
                tier_up(s, t, i);
                return;
            }
}
