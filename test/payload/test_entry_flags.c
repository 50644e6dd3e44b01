/* The flags a probe hands back to the probed code: every combination of
 * CF PF AF ZF SF OF and DF through the entry code's save and restore
 * (entry_flags.S), on both of its ways (sahf, and popfq where the CPU
 * lacks lahf/sahf in long mode or DF was set). */
#include <criterion/criterion.h>
#include <stdint.h>

uint64_t entry_flags_roundtrip(uint64_t flags);
extern uint8_t bpfg_entry_lahf;

#define CF 0x1ull
#define PF 0x4ull
#define AF 0x10ull
#define ZF 0x40ull
#define SF 0x80ull
#define DF 0x400ull
#define OF 0x800ull
#define RESERVED 0x2ull /* always set */

static void check_all(void)
{
    static const uint64_t bits[] = {CF, PF, AF, ZF, SF, OF, DF};
    const uint64_t mask = CF | PF | AF | ZF | SF | OF | DF;
    for (unsigned m = 0; m < 1u << 7; m++) {
        uint64_t in = RESERVED;
        for (unsigned b = 0; b < 7; b++)
            if (m >> b & 1)
                in |= bits[b];
        uint64_t out = entry_flags_roundtrip(in);
        cr_assert_eq(out & mask, in & mask, "flags %#llx came back as %#llx", (unsigned long long)in,
                     (unsigned long long)(out & mask));
    }
}

Test(entry_flags, restored_with_sahf)
{
    bpfg_entry_lahf = 1;
    check_all();
}

Test(entry_flags, restored_with_popfq)
{
    bpfg_entry_lahf = 0;
    check_all();
}
