/* A shared library function to probe. */
#include "victim_lib.h"

volatile long lib_sink;

long lib_probed_mul(long a, long b)
{
    lib_sink = b;
    return a * b;
}
