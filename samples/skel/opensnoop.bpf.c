/* opensnoop for the skeleton loader: the sample itself, whose .rodata
 * filters (targ_pid, targ_failed) the loader sets before load. */
#include "../opensnoop/opensnoop.bpf.c"
