#ifndef ATTACH_VICTIM_LIB_H
#define ATTACH_VICTIM_LIB_H
long lib_probed_mul(long a, long b);
#endif
