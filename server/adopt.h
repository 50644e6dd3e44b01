/* Re-adoption of payloads after a server restart (server/README.md,
 * "Restarts"): a payload that lost its server reconnects to the payload
 * socket and says HELLO with BPFG_HELLO_F_RECONNECT and its inventory; the
 * server rebuilds the target from its record (state.c), the inventory and
 * the payload's hook table, and the target is attached again. */
#ifndef BPFGRAFT_SERVER_ADOPT_H
#define BPFGRAFT_SERVER_ADOPT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct server;
struct target;

/* The payload socket is readable: adopts every payload waiting there. A
 * payload of another ABI becomes a target with foreign_abi set: listed,
 * never sent anything, refused for attaches; detach restores its
 * patches (adopt_restore_text) and leaves it, threadless work aside, as is. */
void adopt_accept(struct server *s);

/* Puts back the file's bytes wherever a stopped pid's executable file
 * mappings differ from their files by a patch (a run of at most 16 bytes
 * starting with a jmp, short jmp or int3 where the file has none) and no
 * thread is inside it. Returns how many, or a negative errno with err. */
int adopt_restore_text(pid_t pid, char *err, size_t errlen);

/* The payload ABI this server speaks: BPFG_PAYLOAD_ABI_VERSION, or
 * BPFGRAFT_TEST_PAYLOAD_ABI (tests only: with --payload naming the test
 * build payload-abi-prev, a server of an older ABI, whose payloads the
 * next server re-injects). */
uint32_t adopt_payload_abi(void);

/* Whether t, a payload of another ABI, is a `bpfgraft run` tool's whose
 * tool channel this server serves (listed attached, adopted tool-abi-N). */
bool adopt_tool_served(const struct target *t);

/* A target of another ABI, or one that replaced such a payload, was
 * detached: its payload's reconnects are
 * closed from now on (it keeps trying). */
void adopt_release(const struct target *t);

#endif
