/* The malloc sample as is: skel-malloc attaches count_malloc itself (to one
 * pid and a resolved libc), so the section's auto-attach target is unused. */
#include "../malloc/malloc.bpf.c"
