/* The audit log: one JSON line per state-changing call (time, who, method,
 * identifying parameters, target process, result) appended to a file and
 * sent to syslog before the call's reply (server/README.md, "Audit log"). */
#ifndef BPFGRAFT_SERVER_AUDIT_H
#define BPFGRAFT_SERVER_AUDIT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AUDIT_DEFAULT_FILE "/var/log/bpfgraft/audit.log"

struct audit {
    int fd; /* O_APPEND; -1 when closed */
    char path[4096];
};

/* Who made a call. */
struct audit_who {
    uid_t uid;
    pid_t pid;
    const char *remote;  /* "ssh 10.0.0.1:5000", "tls 10.0.0.1:5000" or NULL for a local peer */
    const char *subject; /* a TLS peer's certificate subject (then no uid and pid), else NULL */
};

/* Opens (creating, 0600, and its directory 0700) path for appending.
 * Returns 0 or a negative errno with the reason in err. */
int audit_open(struct audit *a, const char *path, char *err, size_t errlen);
void audit_close(struct audit *a);

/* The process a call names (its "pid" parameter), read before the call
 * runs: the process may be gone after it. */
struct audit_target {
    int64_t pid; /* -1: none */
    char comm[32];
};
void audit_target_of(const msgpack_object *params, struct audit_target *t);

/* Appends the line of one finished call (code 0: ok, else the error name
 * and message) and logs it to syslog. Returns 0 or a negative errno (the
 * file write failed). */
int audit_write(struct audit *a, const struct audit_who *who, const char *method, const msgpack_object *params,
                const struct audit_target *t, int code, const char *message);

/* Appends to out the lines written at or after since_ms (unix ms), at
 * most max bytes of the newest ones; *truncated if older ones were left
 * out. Packs an array of str. Returns 0 or a negative errno (nothing packed). */
int audit_read(const struct audit *a, uint64_t since_ms, size_t max, msgpack_packer *pk, bool *truncated);

#endif
