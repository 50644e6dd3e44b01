// libustack_d, which ustack-victim dlopen()s in its dlopen mode: a frame
// in code mapped after the stack tables were made.
extern "C" __attribute__((noinline)) int ustack_d_run(int (*fn)(int), int depth)
{
    int r = fn(depth + 1);
    asm volatile("" ::: "memory");
    return r + 1;
}
