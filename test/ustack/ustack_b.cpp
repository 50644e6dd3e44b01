// libb of ustack-victim (ustack_lib.h), built -O2 -fomit-frame-pointer.
#include "ustack_lib.h"

namespace ustack_b
{
__attribute__((noinline)) int two(int depth)
{
    int r = ustack_a::three(depth + 1);
    ustack_sink = ustack_sink + r;
    return r + 2;
}

__attribute__((noinline)) int four(int depth)
{
    int r = ustack_a::five(depth + 1);
    ustack_sink = ustack_sink + r;
    return r + 4;
}

// The probed function; rbp holds garbage here, so a frame-pointer walk
// cannot get past it.
__attribute__((noinline)) int leaf(int depth)
{
    ustack_sink = ustack_sink + depth;
    return depth * 2;
}
} // namespace ustack_b
