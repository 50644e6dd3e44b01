/* Statistics (server/README.md, "Statistics"): the switch every target's
 * payload reads (payload_abi.h section 9), and the counters the server
 * reads from their stats tables without stopping them: program run counts
 * and times, hook hits. Map counters are the maps library's
 * (bpfg_map_entries, bpfg_map_lost). */
#ifndef BPFGRAFT_SERVER_STATS_H
#define BPFGRAFT_SERVER_STATS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

struct server;
struct target;

/* Off by default, as the kernel's kernel.bpf_stats_enabled. */
struct stats {
    bool enabled;
    int kernel_fd; /* BPF_ENABLE_STATS while enabled (kernel programs), else -1 */
};

void stats_init(struct stats *st);
void stats_close(struct stats *st);
/* Switches statistics for every target (and the kernel's run time stats
 * while the server holds them on). Targets that fail to take it are
 * logged; it applies to them when they are next added. */
void stats_set(struct server *s, bool enabled);
/* At start, after the state directory: the switch a previous server left. */
void stats_restore(struct server *s);
/* Gives t the server's switch (targets_add: attaches and adoptions). 0 or
 * a negative errno. */
int stats_push(const struct server *s, const struct target *t);

/* A program's counters, summed. */
struct stats_run {
    uint64_t run_cnt, run_time_ns;
};

/* prog_id's counters in target t; false if t does not hold it (or its
 * table cannot be read). */
bool stats_prog_in(const struct target *t, uint32_t prog_id, struct stats_run *out);
/* prog_id's counters summed over every target. */
void stats_prog_total(struct server *s, uint32_t prog_id, struct stats_run *out);
/* [{pid, run_cnt, run_time_ns}] of every target holding prog_id. */
void stats_pack_prog_targets(struct server *s, uint32_t prog_id, msgpack_packer *pk);
/* Times hook slot index of t was entered while stats were on; 0 if
 * unreadable. */
uint64_t stats_hook_hits(const struct target *t, uint32_t index);

#endif
