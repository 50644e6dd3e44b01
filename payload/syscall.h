/* Syscall hooks inside the target (syscall.c, syscall_entry.S): the
 * SIGSYS handler of Syscall User Dispatch and the payload thread's side of
 * the SYSCALL_HOOK / SYSCALL_OFF messages. */
#ifndef BPFGRAFT_PAYLOAD_SYSCALL_H
#define BPFGRAFT_PAYLOAD_SYSCALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "payload.h"

/* The payload's connection, for EXEC notices sent from target threads. */
void syscall_set_socket(int fd);

/* SYSCALL_HOOK / SYSCALL_OFF / SYSCALL_TAKEOVER (payload thread). A successful call fills
 * out (at most outsize bytes) with the reply body and *outlen. */
int syscall_msg(uint16_t type, const uint8_t *body, size_t len, char *err, size_t errlen, uint8_t *out, size_t outsize,
                size_t *outlen);

/* TOOL_MODE (fd: the tool channel, which the caller keeps and closes) and
 * SYSCALL_UNHOOK (payload thread). Same conventions as syscall_msg. */
int syscall_tool_mode(const uint8_t *body, size_t len, int fd, char *err, size_t errlen, uint8_t *out, size_t outsize,
                      size_t *outlen);
int syscall_unhook(const uint8_t *body, size_t len, char *err, size_t errlen);

/* Payload thread: up to max newly noted syscall sites to report to the
 * server (BPFG_PMSG_SYS_SITES); each is returned once. */
size_t syscall_take_sites(uint64_t *out, size_t max);

/* A server adopted us: dispatch is blocking again if anything needs it
 * (a server killed while turning dispatch on leaves it allowing:
 * server/syscalls.c, set_dispatch). */
void syscall_reconnected(void);

/* Drops every syscall program (the caller waits for a grace period). */
void syscall_remove_all(void);
bool syscall_use_prog(const struct prog *p);

#endif
