/* Trap probes (trap.c): one-byte int3 sites whose SIGTRAP runs the hook,
 * for places a 5-byte jmp cannot safely go. */
#ifndef BPFGRAFT_PAYLOAD_TRAP_H
#define BPFGRAFT_PAYLOAD_TRAP_H

#include <stddef.h>
#include <stdint.h>

/* HOOK with BPFG_HOOK_F_TRAP (payload thread): the site `site` of hook slot
 * index traps. The first one installs the SIGTRAP handler. *saved gets the
 * address of the target's own SIGTRAP action kept aside (kernel struct
 * sigaction), which the server puts back before unloading the payload.
 * 0 or -errno with err set. */
/* The SIGTRAP handler installed (once), also for the int3s of a code
 * patch under way (the patch journal): before any hook's patch. *saved
 * as for trap_add. 0 or -errno with err set. */
int trap_install(uint64_t *saved, char *err, size_t errlen);

/* Where the target's own SIGTRAP action is kept, 0 before trap_install. */
uint64_t trap_saved(void);

int trap_add(uint32_t index, uint64_t site, uint64_t *saved, char *err, size_t errlen);

#endif
