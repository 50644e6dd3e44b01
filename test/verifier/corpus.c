#define _GNU_SOURCE
#include "corpus.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asm.h"

static const struct {
    const char *name;
    uint32_t type;
} map_types[] = {
    {"hash", BPF_MAP_TYPE_HASH},
    {"array", BPF_MAP_TYPE_ARRAY},
    {"percpu_array", BPF_MAP_TYPE_PERCPU_ARRAY},
    {"ringbuf", BPF_MAP_TYPE_RINGBUF},
    {"queue", BPF_MAP_TYPE_QUEUE},
    {"stack", BPF_MAP_TYPE_STACK},
    {"perf", BPF_MAP_TYPE_PERF_EVENT_ARRAY},
    {"prog_array", BPF_MAP_TYPE_PROG_ARRAY},
    {"stack_trace", BPF_MAP_TYPE_STACK_TRACE},
    {"lru_hash", BPF_MAP_TYPE_LRU_HASH},
};

static const struct {
    const char *name;
    enum bpfg_verify_kind kind;
} kinds[] = {
    {"uprobe", BPFG_VERIFY_UPROBE},
    {"uretprobe", BPFG_VERIFY_URETPROBE},
    {"syscall_enter", BPFG_VERIFY_SYSCALL_ENTER},
    {"syscall_exit", BPFG_VERIFY_SYSCALL_EXIT},
    {"raw_tp", BPFG_VERIFY_RAW_TP},
    {"perf_event", BPFG_VERIFY_PERF_EVENT},
};

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\n' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
    return s;
}

static int parse_header(struct corpus_prog *p, char *line, char *err, size_t errlen)
{
    char *colon = strchr(line, ':');
    if (!colon)
        return 0; /* an ordinary comment */
    *colon = 0;
    char *key = trim(line), *val = trim(colon + 1);
    if (!strcmp(key, "kind")) {
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
            if (!strcmp(kinds[i].name, val)) {
                p->env.kind = kinds[i].kind;
                return 0;
            }
        snprintf(err, errlen, "%s: unknown kind '%s'", p->name, val);
        return -EINVAL;
    }
    if (!strcmp(key, "map")) {
        char type[32], flag[32] = "";
        unsigned ks, vs, me;
        if (p->env.map_cnt == CORPUS_MAX_MAPS || sscanf(val, "%31s %u %u %u %31s", type, &ks, &vs, &me, flag) < 4) {
            snprintf(err, errlen, "%s: bad map line '%s'", p->name, val);
            return -EINVAL;
        }
        struct bpfg_verify_map *m = &p->maps[p->env.map_cnt];
        size_t i;
        for (i = 0; i < sizeof(map_types) / sizeof(map_types[0]); i++)
            if (!strcmp(map_types[i].name, type))
                break;
        if (i == sizeof(map_types) / sizeof(map_types[0])) {
            snprintf(err, errlen, "%s: unknown map type '%s'", p->name, type);
            return -EINVAL;
        }
        *m = (struct bpfg_verify_map){map_types[i].type, ks, vs, me, 0, NULL, 0, 0, 0};
        if (!strcmp(flag, "rdonly"))
            m->flags |= BPF_F_RDONLY_PROG;
        if (!strcmp(flag, "spinlock")) /* a struct bpf_spin_lock at value offset 0 */
            m->spin_lock = 1;
        p->env.map_cnt++;
        return 0;
    }
    if (!strcmp(key, "opts")) {
        p->env.allow_probe_write_user = strstr(val, "write_user") != NULL;
        p->env.allow_override_return = strstr(val, "override") != NULL;
        return 0;
    }
    if (!strcmp(key, "expect")) {
        snprintf(p->expect, sizeof(p->expect), "%s", val);
        return 0;
    }
    if (!strcmp(key, "kernel")) {
        snprintf(p->kernel_reason, sizeof(p->kernel_reason), "%s", val);
        return 0;
    }
    return 0;
}

int corpus_load(const char *path, struct corpus_prog *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    snprintf(p->path, sizeof(p->path), "%s", path);
    const char *slash = strrchr(path, '/');
    snprintf(p->name, sizeof(p->name), "%s", slash ? slash + 1 : path);
    p->env.maps = p->maps;
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) {
        fclose(f);
        return -ENOMEM;
    }
    char line[1024];
    int ret = 0;
    while (fgets(line, sizeof(line), f)) {
        fputs(line, mem);
        char *t = trim(line);
        if (t[0] == '#' && !ret)
            ret = parse_header(p, t + 1, err, errlen);
    }
    fclose(f);
    fclose(mem);
    if (!ret) {
        char aerr[256];
        ret = bpfg_asm(text, &p->insns, &p->n, aerr, sizeof(aerr));
        if (ret)
            snprintf(err, errlen, "%s: %s", p->name, aerr);
    }
    free(text);
    return ret;
}

void corpus_free(struct corpus_prog *p)
{
    free(p->insns);
    p->insns = NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char **corpus_list(const char *dir, size_t *count)
{
    *count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return NULL;
    size_t cap = 256, n = 0;
    char **list = malloc(cap * sizeof(char *));
    struct dirent *e;
    while (list && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 3 || strcmp(e->d_name + l - 2, ".s"))
            continue;
        if (n + 2 > cap) {
            char **nl = realloc(list, (cap *= 2) * sizeof(char *));
            if (!nl)
                break;
            list = nl;
        }
        if (asprintf(&list[n], "%s/%s", dir, e->d_name) < 0)
            break;
        n++;
    }
    closedir(d);
    if (!list)
        return NULL;
    list[n] = NULL;
    qsort(list, n, sizeof(char *), cmp_str);
    *count = n;
    return list;
}

void corpus_list_free(char **list)
{
    if (!list)
        return;
    for (char **p = list; *p; p++)
        free(*p);
    free(list);
}
