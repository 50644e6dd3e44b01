// The call chain of ustack-victim: main -> ustack_a::one (liba) ->
// ustack_b::two (libb) -> ustack_a::three (liba) -> ustack_b::four (libb)
// -> ustack_a::five (liba) -> ustack_b::leaf (libb, the probed function).
// Every function does work after its call, so none is a tail call.
#pragma once

namespace ustack_a
{
int one(int depth);
int three(int depth);
int five(int depth);
} // namespace ustack_a

namespace ustack_b
{
int two(int depth);
int four(int depth);
int leaf(int depth);
} // namespace ustack_b

extern volatile int ustack_sink;
