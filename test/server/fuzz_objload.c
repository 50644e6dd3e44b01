/* libFuzzer target: arbitrary bytes into the object loader. It must return
 * an object or an error, never crash, leak or touch the kernel. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "objload.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    struct bpfg_obj *obj = bpfg_obj_open_mem(data, size, NULL, err, sizeof(err));

    if (!obj && !err[0])
        __builtin_trap(); /* every failure must say why */
    bpfg_obj_free(obj);
    return 0;
}
