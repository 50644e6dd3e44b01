/* USDT (statically defined tracepoints, <sys/sdt.h>): the probes of an
 * ELF file's .note.stapsdt with their argument specs in libbpf's format
 * (usdt.bpf.h), and the semaphores a process counts its probes' users
 * in. See server/README.md, "USDT". */
#ifndef BPFGRAFT_SERVER_USDT_H
#define BPFGRAFT_SERVER_USDT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Adds delta to the u16 semaphore at addr in pid, as the kernel's uprobe
 * ref_ctr does: the probe's code runs while it is not 0. A count that
 * would go below 0 stays 0. 0 or -errno with err set. */
int usdt_sem_add(pid_t pid, uint64_t addr, int delta, char *err, size_t errlen);

/* usdt.bpf.h's struct __bpf_usdt_spec, byte for byte. */
#define USDT_MAX_ARGS 12
struct usdt_arg_spec {
    uint64_t val_off;
    uint32_t arg_type; /* 0 constant, 1 register, 2 memory at register + val_off */
    int16_t reg_off;   /* in struct pt_regs */
    uint8_t arg_signed;
    int8_t arg_bitshift;
};
struct usdt_spec {
    struct usdt_arg_spec args[USDT_MAX_ARGS];
    uint64_t usdt_cookie;
    int16_t arg_cnt;
};

/* One probe site: file offsets of the probe and of its semaphore (0:
 * none), and its arguments. */
struct usdt_site {
    uint64_t loc_off, sem_off;
    uint64_t addr, sem; /* usdt_sites: where they are in the process (sem 0: none) */
    struct usdt_spec spec;
};

/* The sites of PROVIDER:NAME in the ELF file at path (a malloc'd array
 * in *out). -ENOENT when there is none, -EINVAL for an argument libbpf's
 * format cannot express; err says which. */
int usdt_find(const char *path, const char *provider, const char *name, struct usdt_site **out, size_t *n, char *err,
              size_t errlen);

/* usdt_find for probe "PROVIDER:NAME" of binary (an absolute path, or
 * "" for the executable) as pid maps it, with the runtime addresses.
 * -ESRCH: no process. */
int usdt_sites(pid_t pid, const char *binary, const char *probe, struct usdt_site **out, size_t *n, char *err,
               size_t errlen);

#endif
