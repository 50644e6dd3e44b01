/* Roles from the access file: "ROLE PRINCIPAL..." lines. */
#define _GNU_SOURCE
#include "access.h"

#include <errno.h>
#include <inttypes.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procfs.h"
#include "rpc.h"

static const char *const role_names[] = {
    [ACCESS_NONE] = "none", [ACCESS_READ] = "read", [ACCESS_OPERATE] = "operate", [ACCESS_ADMIN] = "admin"};

/* Methods below admin; anything not listed (shutdown, configuration, and
 * methods added later until classed here) needs admin. */
static const struct {
    const char *method;
    enum access_role role;
} method_roles[] = {
    {"api.info", ACCESS_READ},         {"server.status", ACCESS_READ},    {"object.list", ACCESS_READ},
    {"object.btf", ACCESS_READ},       {"prog.list", ACCESS_READ},        {"prog.show", ACCESS_READ},
    {"prog.dump", ACCESS_READ},        {"map.list", ACCESS_READ},         {"map.show", ACCESS_READ},
    {"map.lookup", ACCESS_READ},       {"map.dump", ACCESS_READ},         {"target.list", ACCESS_READ},
    {"tool.list", ACCESS_READ},        {"events.subscribe", ACCESS_READ}, {"events.unsubscribe", ACCESS_READ},
    {"session.remote", ACCESS_READ},   {"object.load", ACCESS_OPERATE},   {"object.unload", ACCESS_OPERATE},
    {"map.update", ACCESS_OPERATE},    {"map.delete", ACCESS_OPERATE},    {"map.pop", ACCESS_OPERATE},
    {"map.push", ACCESS_OPERATE},      {"map.fd", ACCESS_OPERATE}, /* the region is writable */
    {"target.attach", ACCESS_OPERATE}, {"target.start", ACCESS_OPERATE},  {"target.detach", ACCESS_OPERATE},
    {"tool.start", ACCESS_OPERATE},    {"scope.attach", ACCESS_OPERATE},  {"scope.detach", ACCESS_OPERATE},
    {"scope.list", ACCESS_READ},
};

bool access_method_audited(const char *method)
{
    return access_method_role(method, strlen(method)) >= ACCESS_OPERATE && strcmp(method, "audit.read") != 0;
}

const char *access_role_name(enum access_role r)
{
    return r <= ACCESS_ADMIN ? role_names[r] : "?";
}

enum access_role access_method_role(const char *method, size_t len)
{
    for (size_t i = 0; i < sizeof(method_roles) / sizeof(method_roles[0]); i++)
        if (strlen(method_roles[i].method) == len && memcmp(method_roles[i].method, method, len) == 0)
            return method_roles[i].role;
    return ACCESS_ADMIN;
}

static int parse_role(const char *s, enum access_role *r)
{
    for (enum access_role k = ACCESS_READ; k <= ACCESS_ADMIN; k++)
        if (strcmp(s, role_names[k]) == 0) {
            *r = k;
            return 0;
        }
    return -EINVAL;
}

static int parse_number(const char *s, unsigned *v)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(s, &end, 10);
    if (!*s || *end || errno || n > 0xfffffffful)
        return -EINVAL;
    *v = (unsigned)n;
    return 0;
}

static int resolve_user(const char *name, unsigned *uid)
{
    char buf[4096];
    struct passwd pw, *res = NULL;
    if (getpwnam_r(name, &pw, buf, sizeof(buf), &res) || !res)
        return -ENOENT;
    *uid = res->pw_uid;
    return 0;
}

/* subject:DN, san:TYPE:VALUE (a TLS peer's certificate) */
static int parse_cert_principal(const char *s, struct access_rule *rule, const char **why)
{
    bool san = strncmp(s, "san:", 4) == 0;
    const char *v = s + (san ? 4 : 8);
    static const char *const san_kinds[] = {"DNS:", "IP:", "email:", "URI:"};
    bool kind_ok = !san;
    for (size_t i = 0; san && i < sizeof(san_kinds) / sizeof(san_kinds[0]); i++)
        kind_ok |= strncmp(v, san_kinds[i], strlen(san_kinds[i])) == 0 && v[strlen(san_kinds[i])];
    *why = san ? "want san:DNS:NAME, san:IP:ADDR, san:email:ADDR or san:URI:URI" : "empty subject";
    if (!*v || !kind_ok)
        return -EINVAL;
    rule->kind = san ? ACCESS_SAN : ACCESS_SUBJECT;
    rule->name = strdup(v);
    return rule->name ? 0 : -ENOMEM;
}

/* user:NAME, uid:N, group:NAME, gid:N, subject:DN, san:TYPE:VALUE */
static int parse_principal(const char *s, struct access_rule *rule, const char **why)
{
    char buf[4096];
    rule->name = NULL;
    if (strncmp(s, "subject:", 8) == 0 || strncmp(s, "san:", 4) == 0)
        return parse_cert_principal(s, rule, why);
    if (strncmp(s, "uid:", 4) == 0 || strncmp(s, "gid:", 4) == 0) {
        rule->kind = s[0] == 'g' ? ACCESS_GID : ACCESS_UID;
        *why = "not a number";
        return parse_number(s + 4, &rule->id);
    }
    if (strncmp(s, "user:", 5) == 0) {
        *why = "no such user";
        rule->kind = ACCESS_UID;
        return resolve_user(s + 5, &rule->id);
    }
    if (strncmp(s, "group:", 6) == 0) {
        struct group gr, *res = NULL;
        *why = "no such group";
        if (getgrnam_r(s + 6, &gr, buf, sizeof(buf), &res) || !res)
            return -ENOENT;
        rule->kind = ACCESS_GID;
        rule->id = res->gr_gid;
        return 0;
    }
    *why = "unknown principal (user:NAME, uid:N, group:NAME, gid:N, subject:DN, san:TYPE:VALUE)";
    return -EINVAL;
}

static int add_rule(struct access *a, const struct access_rule *r)
{
    struct access_rule *n = realloc(a->rules, (a->nrules + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    a->rules = n;
    a->rules[a->nrules++] = *r;
    return 0;
}

static int add_target_uid(struct access_targets *t, unsigned uid)
{
    unsigned *n = realloc(t->uids, (t->nuids + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    t->uids = n;
    t->uids[t->nuids++] = uid;
    return 0;
}

static int add_target_cgroup(struct access_targets *t, const char *path)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    char **n = realloc(t->cgroups, (t->ncgroups + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    t->cgroups = n;
    return (t->cgroups[t->ncgroups] = strndup(path, len)) ? (t->ncgroups++, 0) : -ENOMEM;
}

/* targets:user:NAME, targets:uid:N, targets:cgroup:/PATH */
static int parse_target(const char *s, struct access_targets *t, const char **why)
{
    unsigned uid;
    if (strncmp(s, "uid:", 4) == 0) {
        *why = "not a number";
        return parse_number(s + 4, &uid) ?: add_target_uid(t, uid);
    }
    if (strncmp(s, "user:", 5) == 0) {
        *why = "no such user";
        return resolve_user(s + 5, &uid) ?: add_target_uid(t, uid);
    }
    *why = "want targets:user:NAME, targets:uid:N or targets:cgroup:/PATH (cgroup v2)";
    if (strncmp(s, "cgroup:/", 8) == 0)
        return add_target_cgroup(t, s + 7);
    return -EINVAL;
}

static void free_targets(struct access_targets *t)
{
    for (size_t i = 0; i < t->ncgroups; i++)
        free(t->cgroups[i]);
    free(t->cgroups);
    free(t->uids);
    memset(t, 0, sizeof(*t));
}

/* Gives the rules from index first the line's targets (none: any process). */
static int bind_targets(struct access *a, size_t first, struct access_targets *t)
{
    int idx = -1;
    if (t->nuids || t->ncgroups) {
        struct access_targets *n = realloc(a->targets, (a->ntargets + 1) * sizeof(*n));
        if (!n)
            return -ENOMEM;
        a->targets = n;
        a->targets[a->ntargets] = *t;
        memset(t, 0, sizeof(*t));
        idx = (int)a->ntargets++;
    }
    for (size_t i = first; i < a->nrules; i++)
        a->rules[i].targets = idx;
    return 0;
}

/* One token of a line: a principal (a new rule) or a targets: restriction. */
static int parse_token(struct access *a, const char *tok, struct access_rule *rule, struct access_targets *t,
                       const char **why)
{
    if (strncmp(tok, "targets:", 8) == 0)
        return parse_target(tok + 8, t, why);
    int r = parse_principal(tok, rule, why);
    if (!r && (r = add_rule(a, rule)))
        free(rule->name);
    return r;
}

/* One line: ROLE PRINCIPAL... [targets:...] (# starts a comment). */
static int parse_line(struct access *a, char *line, const char *path, int lineno, char *err, size_t errlen)
{
    char *hash = strchr(line, '#'), *save = NULL;
    if (hash)
        *hash = 0;
    char *tok = strtok_r(line, " \t\r\n", &save);
    if (!tok)
        return 0;
    struct access_rule rule = {0};
    if (parse_role(tok, &rule.role)) {
        snprintf(err, errlen, "%s:%d: unknown role '%s' (read, operate, admin)", path, lineno, tok);
        return -EINVAL;
    }
    size_t first = a->nrules;
    struct access_targets t = {0};
    int r = 0;
    while (!r && (tok = strtok_r(NULL, " \t\r\n", &save))) {
        const char *why = "";
        if ((r = parse_token(a, tok, &rule, &t, &why)))
            snprintf(err, errlen, "%s:%d: '%s': %s", path, lineno, tok, r == -ENOMEM ? strerror(ENOMEM) : why);
    }
    if (!r && a->nrules == first) {
        snprintf(err, errlen, "%s:%d: role %s names nobody", path, lineno, access_role_name(rule.role));
        r = -EINVAL;
    }
    if (!r && (t.nuids || t.ncgroups) && rule.role != ACCESS_OPERATE) {
        snprintf(err, errlen, "%s:%d: targets: restricts operate lines only", path, lineno);
        r = -EINVAL;
    }
    if (!r)
        r = bind_targets(a, first, &t);
    free_targets(&t);
    return r;
}

static int parse_file(struct access *a, FILE *f, const char *path, char *err, size_t errlen)
{
    char *line = NULL;
    size_t cap = 0;
    int r = 0, lineno = 0;
    while (!r && getline(&line, &cap, f) >= 0)
        r = parse_line(a, line, path, ++lineno, err, errlen);
    if (!r && ferror(f)) {
        r = -EIO;
        snprintf(err, errlen, "%s: read error", path);
    }
    free(line);
    return r;
}

int access_load(struct access *a, const char *path, char *err, size_t errlen)
{
    struct access next = {.enabled = true};
    const char *file = path ? path : ACCESS_DEFAULT_FILE;
    FILE *f = fopen(file, "re");
    if (!f) {
        int r = -errno;
        if (!path && r == -ENOENT) { /* no default file: access control off */
            access_free(a);
            return 0;
        }
        snprintf(err, errlen, "%s: %s", file, strerror(-r));
        return r;
    }
    int r = parse_file(&next, f, file, err, errlen);
    fclose(f);
    if (r) {
        access_free(&next);
        return r;
    }
    access_free(a);
    *a = next;
    return 0;
}

void access_free(struct access *a)
{
    for (size_t i = 0; i < a->nrules; i++)
        free(a->rules[i].name);
    free(a->rules);
    for (size_t i = 0; i < a->ntargets; i++)
        free_targets(&a->targets[i]);
    free(a->targets);
    memset(a, 0, sizeof(*a));
}

static bool in_groups(const struct access_peer *p, unsigned gid)
{
    if (p->gid == gid)
        return true;
    for (size_t i = 0; i < p->ngroups; i++)
        if (p->groups[i] == gid)
            return true;
    return false;
}

/* Whether list (lines separated by '\n') holds name as a whole line. */
static bool in_lines(const char *list, const char *name)
{
    size_t n = strlen(name);
    while (list && *list) {
        if (strncmp(list, name, n) == 0 && (list[n] == '\n' || !list[n]))
            return true;
        list = strchr(list, '\n');
        list = list ? list + 1 : NULL;
    }
    return false;
}

static bool rule_matches(const struct access_rule *r, const struct access_peer *p)
{
    switch (r->kind) {
    case ACCESS_UID: return !p->cert && p->uid == r->id;
    case ACCESS_GID: return !p->cert && in_groups(p, r->id);
    case ACCESS_SUBJECT: return p->cert && p->subject && strcmp(p->subject, r->name) == 0;
    case ACCESS_SAN: return p->cert && in_lines(p->sans, r->name);
    }
    return false;
}

enum access_role access_role_of(const struct access *a, const struct access_peer *p)
{
    if (!a->enabled || (!p->cert && p->uid == 0))
        return ACCESS_ADMIN;
    enum access_role best = ACCESS_NONE;
    for (size_t i = 0; i < a->nrules; i++) {
        const struct access_rule *r = &a->rules[i];
        bool match = rule_matches(r, p);
        if (match && r->role > best)
            best = r->role;
    }
    return best;
}

static void describe_peer(const struct access_peer *p, char *who, size_t len)
{
    if (p->cert)
        snprintf(who, len, "certificate \"%s\"", p->subject ? p->subject : "");
    else
        snprintf(who, len, "uid %u", (unsigned)p->uid);
}

int access_check(const struct access *a, const struct access_peer *p, const char *method, char *err, size_t errlen)
{
    enum access_role need = access_method_role(method, strlen(method));
    enum access_role have = access_role_of(a, p);
    if (have >= need)
        return 0;
    char who[300];
    describe_peer(p, who, sizeof(who));
    snprintf(err, errlen, "%s needs role %s; %s has %s", method, access_role_name(need), who,
             have == ACCESS_NONE ? "no role" : access_role_name(have));
    return BPFG_RPC_E_FORBIDDEN;
}

bool access_unrestricted(const struct access *a, const struct access_peer *p)
{
    if (!a->enabled || (!p->cert && p->uid == 0))
        return true;
    for (size_t i = 0; i < a->nrules; i++) {
        const struct access_rule *r = &a->rules[i];
        if (rule_matches(r, p) && (r->role == ACCESS_ADMIN || (r->role == ACCESS_OPERATE && r->targets < 0)))
            return true;
    }
    return false;
}

struct process_id {
    uid_t uids[3]; /* real, effective, saved */
    char cgroup[4096];
};

static bool uid_listed(const struct access_targets *t, uid_t uid)
{
    for (size_t i = 0; i < t->nuids; i++)
        if (t->uids[i] == uid)
            return true;
    return false;
}

static bool cgroup_below(const char *path, const char *top)
{
    size_t n = strlen(top);
    return strcmp(top, "/") == 0 || (strncmp(path, top, n) == 0 && (path[n] == '/' || !path[n]));
}

static bool targets_reach(const struct access_targets *t, const struct process_id *id)
{
    if (uid_listed(t, id->uids[0]) && uid_listed(t, id->uids[1]) && uid_listed(t, id->uids[2]))
        return true;
    for (size_t i = 0; id->cgroup[0] && i < t->ncgroups; i++)
        if (cgroup_below(id->cgroup, t->cgroups[i]))
            return true;
    return false;
}

static bool is_process_method(const char *method)
{
    static const char *const names[] = {"target.attach", "target.start", "target.detach", "tool.start"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(method, names[i]) == 0)
            return true;
    return false;
}

static int forbid_scope(const struct access_peer *p, const char *method, char *err, size_t errlen)
{
    char who[300];
    describe_peer(p, who, sizeof(who));
    snprintf(err, errlen,
             "%s reaches every process mapping the binary; %s may operate only on the processes its "
             "access file line's targets: name",
             method, who);
    return BPFG_RPC_E_FORBIDDEN;
}

int access_check_process(const struct access *a, const struct access_peer *p, const char *method, int64_t pid,
                         char *err, size_t errlen)
{
    bool scope = strcmp(method, "scope.attach") == 0 || strcmp(method, "scope.detach") == 0;
    if ((!scope && (!is_process_method(method) || pid < 0)) || access_unrestricted(a, p))
        return 0;
    if (scope)
        return forbid_scope(p, method, err, errlen);
    struct process_id id;
    int r = bpfg_procfs_uids((pid_t)pid, &id.uids[0], &id.uids[1], &id.uids[2]);
    if (r == -ENOENT || r == -ESRCH)
        return 0;
    if (r || bpfg_procfs_cgroup2((pid_t)pid, id.cgroup, sizeof(id.cgroup)))
        id.cgroup[0] = 0;
    for (size_t i = 0; !r && i < a->nrules; i++) {
        const struct access_rule *rule = &a->rules[i];
        if (rule->role == ACCESS_OPERATE && rule->targets >= 0 && rule_matches(rule, p) &&
            targets_reach(&a->targets[rule->targets], &id))
            return 0;
    }
    char who[300], uid[16] = "?";
    describe_peer(p, who, sizeof(who));
    if (!r)
        snprintf(uid, sizeof(uid), "%u", (unsigned)id.uids[0]);
    snprintf(err, errlen,
             "%s on process %" PRId64 " (uid %s, cgroup %s): outside the processes %s may operate on "
             "(its access file line's targets:)",
             method, pid, uid, id.cgroup[0] ? id.cgroup : "?", who);
    return BPFG_RPC_E_FORBIDDEN;
}
