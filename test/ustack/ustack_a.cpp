// liba of ustack-victim (ustack_lib.h), built -O2 -fomit-frame-pointer.
#include "ustack_lib.h"

volatile int ustack_sink;

namespace ustack_a
{
__attribute__((noinline)) int one(int depth)
{
    int r = ustack_b::two(depth + 1);
    ustack_sink = ustack_sink + r;
    return r + 1;
}

__attribute__((noinline)) int three(int depth)
{
    int r = ustack_b::four(depth + 1);
    ustack_sink = ustack_sink + r;
    return r + 3;
}

__attribute__((noinline)) int five(int depth)
{
    int r = ustack_b::leaf(depth + 1);
    ustack_sink = ustack_sink + r;
    return r + 5;
}
} // namespace ustack_a
