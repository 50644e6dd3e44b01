/* Roles: which peers may call which methods (`bpfgraftd --access FILE`,
 * default /etc/bpfgraft/access.conf; format in server/README.md, "Access
 * control"). Without a file every peer that can open the socket is admin,
 * as before roles existed. */
#ifndef BPFGRAFT_SERVER_ACCESS_H
#define BPFGRAFT_SERVER_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define ACCESS_DEFAULT_FILE "/etc/bpfgraft/access.conf"

/* Ordered: each role may do everything the ones below it may. */
enum access_role { ACCESS_NONE, ACCESS_READ, ACCESS_OPERATE, ACCESS_ADMIN };

enum access_principal { ACCESS_UID, ACCESS_GID, ACCESS_SUBJECT, ACCESS_SAN };

/* The processes an operate line's peers may act on ("targets:" tokens):
 * one whose real, effective and saved uids are all in uids, or whose
 * cgroup v2 path is one of cgroups or below one. */
struct access_targets {
    unsigned *uids;
    size_t nuids;
    char **cgroups; /* absolute, without a trailing '/' (owned) */
    size_t ncgroups;
};

struct access_rule {
    enum access_principal kind;
    unsigned id; /* ACCESS_UID, ACCESS_GID */
    char *name;  /* ACCESS_SUBJECT: an RFC 2253 subject; ACCESS_SAN: "DNS:host" etc. (owned) */
    enum access_role role;
    int targets; /* index in access.targets; -1: any process */
};

struct access {
    bool enabled; /* a file was read: peers get only the roles it grants */
    struct access_rule *rules;
    size_t nrules;
    struct access_targets *targets;
    size_t ntargets;
};

/* The unix identity of a peer (SO_PEERCRED, SO_PEERGROUPS), or for a TLS
 * peer (cert) its certificate's subject and SANs (tls.h, bpfg_tls_peer). */
struct access_peer {
    uid_t uid;
    gid_t gid;
    const gid_t *groups;
    size_t ngroups;
    bool cert;
    const char *subject;
    const char *sans; /* '\n'-separated */
};

/* Reads path into *a (replaced only on success). path NULL: the default
 * file if it exists, else access control off. Returns 0 or a negative
 * errno with the problem (file, line) in err. */
int access_load(struct access *a, const char *path, char *err, size_t errlen);
void access_free(struct access *a);

/* The highest role the file grants the peer; a local uid 0 is always
 * admin, and without a file every peer is (TLS peers: the CA is the gate). */
enum access_role access_role_of(const struct access *a, const struct access_peer *p);
/* The role a method needs (unknown methods: admin). */
enum access_role access_method_role(const char *method, size_t len);
const char *access_role_name(enum access_role r);
/* Whether calls of method change state (operate and admin methods but the
 * audit log's reader): they get an audit line (audit.h). */
bool access_method_audited(const char *method);

/* 0 if the peer may call method, else BPFG_RPC_E_FORBIDDEN with err
 * naming the role it needs and the one it has. */
int access_check(const struct access *a, const struct access_peer *p, const char *method, char *err, size_t errlen);

/* Whether the peer's role reaches every process: admin, or operate from a
 * line without "targets:". Restricted peers cannot reach the kernel
 * (object.load runs no kernel program for them). */
bool access_unrestricted(const struct access *a, const struct access_peer *p);
/* 0 if the peer may call method on process pid (target.attach, start and
 * detach, tool.start; other methods: 0), else BPFG_RPC_E_FORBIDDEN with err
 * naming the process. scope.attach/detach reach every process mapping a
 * binary: only an unrestricted peer may call them. A pid that names no
 * process passes (the method reports it). */
int access_check_process(const struct access *a, const struct access_peer *p, const char *method, int64_t pid,
                         char *err, size_t errlen);

#endif
