/* Stack checks of stopped threads with libunwind-ptrace. */
#include <libunwind-ptrace.h>

#include "injector.h"

#define MAX_FRAMES 64

static bool in_ranges(uint64_t ip, const struct bpfg_range *r, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (ip >= r[k].lo && ip < r[k].hi)
            return true;
    return false;
}

bool bpfg_any_return_into(const struct bpfg_stopped *st, const struct bpfg_range *ranges, size_t nranges, pid_t *tid)
{
    unw_addr_space_t as = unw_create_addr_space(&_UPT_accessors, 0);
    if (!as)
        return false;
    bool found = false;
    for (size_t i = 0; i < st->nthreads && !found; i++) {
        void *upt = _UPT_create(st->threads[i].tid);
        if (!upt)
            continue;
        unw_cursor_t cur;
        if (unw_init_remote(&cur, as, upt) == 0) {
            /* frame 0 is the thread's own pc (checked separately); the
             * return addresses are the pcs of the frames above it, and a
             * signal frame gives the pc its handler returns to */
            for (int depth = 0; depth < MAX_FRAMES && unw_step(&cur) > 0; depth++) {
                unw_word_t ip;
                if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0)
                    break;
                if (in_ranges(ip, ranges, nranges)) {
                    found = true;
                    if (tid)
                        *tid = st->threads[i].tid;
                    break;
                }
            }
        }
        _UPT_destroy(upt);
    }
    unw_destroy_addr_space(as);
    return found;
}
