/* bpfgraft-conformance: runs bpf_conformance *.data vectors on the engines.
 *
 *   bpfgraft-conformance [--engine NAME]... [-v] [--no-fork] [--timeout SEC] DIR|FILE...
 *
 * A vector file has "-- NAME" sections (see the upstream bpf_conformance
 * test parser): "asm" (program text), "raw" (64-bit instruction words in
 * hex; authoritative when present, and the asm must assemble to the same),
 * "mem" (hex bytes; r1 points at a fresh copy, r2 holds the length),
 * "result" (expected r0) and "error" (expected load or run failure). Other
 * sections ("c", "no register offset", ...) are ignored.
 *
 * Helper 5 is upstream's "unwind" helper: it returns its first argument and
 * the program stops, returning 0, when that is 0 (as in the uBPF plugin).
 *
 * An expected error matches when the engine refuses or aborts the program
 * and its message contains the expected text, ignoring case; the vectors'
 * texts come from other runtimes, so exact equality would be meaningless.
 *
 * Each vector runs in a child process with a timeout, so an engine that
 * crashes or hangs fails that vector only (--no-fork for debugging).
 * Prints one line per failing vector (every vector with -v) and, per engine,
 * "ENGINE: N passed, N failed". Exits 1 if anything failed, 2 on bad usage.
 */
#define _GNU_SOURCE /* asprintf */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "asm.h"
#include "vm.h"
#include "x86jit.h"
#include "jit_run.h" /* test/helpers: running the code here */
#ifdef BPFGRAFT_HAVE_LLVM
#include "llvmjit.h"
#endif

#define MSG_LEN 512
#define UNWIND_HELPER 5

/* ---- engines ---------------------------------------------------------- */

/* Loads and runs a program with r1 = mem, r2 = len. Returns 0 and r0, or a
 * negative errno and a message saying whether loading or running failed. */
typedef int (*engine_run_fn)(const struct bpf_insn *insns, size_t n, void *mem, size_t len, uint64_t *r0, char *msg,
                             size_t msglen);

struct engine {
    const char *name;
    engine_run_fn run;
};

static uint64_t unwind_helper(uint64_t r1, uint64_t r2, uint64_t r3, uint64_t r4, uint64_t r5, void *user)
{
    (void)r2, (void)r3, (void)r4, (void)r5, (void)user;
    return r1;
}

static int run_interp(const struct bpf_insn *insns, size_t n, void *mem, size_t len, uint64_t *r0, char *msg,
                      size_t msglen)
{
    struct bpfg_vm *vm = bpfg_vm_new();
    if (!vm) {
        int err = -errno;
        snprintf(msg, msglen, "bpfg_vm_new: %s", strerror(errno));
        return err;
    }
    int err = bpfg_vm_register_helper(vm, UNWIND_HELPER, "unwind", unwind_helper, NULL);
    if (!err)
        err = bpfg_vm_set_unwind_helper(vm, UNWIND_HELPER);
    if (err) {
        snprintf(msg, msglen, "helper setup: %s", strerror(-err));
    } else {
        bpfg_vm_set_checked(vm, true);
        err = bpfg_vm_load(vm, insns, n);
        if (err) {
            snprintf(msg, msglen, "load: %s", bpfg_vm_error(vm));
        } else {
            err = bpfg_vm_exec(vm, mem, len, r0);
            if (err)
                snprintf(msg, msglen, "run: %s", bpfg_vm_error(vm));
        }
    }
    bpfg_vm_free(vm);
    return err;
}

/* The x86-64 JIT: compile, map executable, run with a one-entry table. */
static int run_x86(const struct bpf_insn *insns, size_t n, void *mem, size_t len, uint64_t *r0, char *msg,
                   size_t msglen)
{
    struct bpfg_x86jit_opts opts = {.has_unwind = true, .unwind_id = UNWIND_HELPER};
    struct bpfg_x86jit_helper table[BPFG_MAX_HELPERS] = {{0}};
    struct bpfg_x86jit_code code;
    struct bpfg_x86jit_image img;
    char err[256];
    uint32_t insn;

    bpfg_x86jit_allow_helper(&opts, UNWIND_HELPER);
    table[UNWIND_HELPER].fn = unwind_helper;
    int ret = bpfg_x86jit_compile(insns, n, &opts, &code, err, sizeof(err));
    if (ret) {
        snprintf(msg, msglen, "load: %s", err);
        return ret;
    }
    ret = bpfg_x86jit_map_exec(&code, &img);
    bpfg_x86jit_code_free(&code);
    if (ret) {
        snprintf(msg, msglen, "load: mapping code: %s", strerror(-ret));
        return ret;
    }
    ret = bpfg_x86jit_run(&img, mem, len, table, NULL, r0, &insn);
    if (ret)
        snprintf(msg, msglen, "run: instruction %u: %s", insn, strerror(-ret));
    bpfg_x86jit_unmap(&img);
    return ret;
}

#ifdef BPFGRAFT_HAVE_LLVM
/* The LLVM JIT: its flat blob, mapped and run exactly like x86's code. */
static int run_llvm(const struct bpf_insn *insns, size_t n, void *mem, size_t len, uint64_t *r0, char *msg,
                    size_t msglen)
{
    struct bpfg_llvmjit_opts opts = {.jit = {.has_unwind = true, .unwind_id = UNWIND_HELPER}};
    struct bpfg_x86jit_helper table[BPFG_MAX_HELPERS] = {{0}};
    struct bpfg_x86jit_code code;
    struct bpfg_x86jit_image img;
    char err[256];
    uint32_t insn;

    bpfg_x86jit_allow_helper(&opts.jit, UNWIND_HELPER);
    table[UNWIND_HELPER].fn = unwind_helper;
    int ret = bpfg_llvmjit_compile(insns, n, &opts, &code, NULL, err, sizeof(err));
    if (ret) {
        snprintf(msg, msglen, "load: %s", err);
        return ret;
    }
    ret = bpfg_x86jit_map_exec(&code, &img);
    bpfg_x86jit_code_free(&code);
    if (ret) {
        snprintf(msg, msglen, "load: mapping code: %s", strerror(-ret));
        return ret;
    }
    ret = bpfg_x86jit_run(&img, mem, len, table, NULL, r0, &insn);
    if (ret)
        snprintf(msg, msglen, "run: instruction %u: %s", insn, strerror(-ret));
    bpfg_x86jit_unmap(&img);
    return ret;
}
#endif

/* One entry per engine; the JITs join here. */
static const struct engine engines[] = {
    {"interp", run_interp},
    {"x86", run_x86},
#ifdef BPFGRAFT_HAVE_LLVM
    {"llvm", run_llvm},
#endif
};

#define NENGINES (sizeof(engines) / sizeof(engines[0]))

/* ---- vector files ----------------------------------------------------- */

struct vector {
    const char *path;
    struct bpf_insn *insns;
    size_t n;
    uint8_t *mem;
    size_t mem_len;
    bool has_result;
    uint64_t result;
    char *error;           /* expected error text, NULL if none */
    char problem[MSG_LEN]; /* why the vector cannot run, "" if it can */
};

enum section { SEC_NONE, SEC_ASM, SEC_RAW, SEC_MEM, SEC_RESULT, SEC_ERROR };

struct strbuf {
    char *s;
    size_t len, cap;
};

static int sb_add(struct strbuf *b, const char *s, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns)
            return -ENOMEM;
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, len);
    b->len += len;
    b->s[b->len] = '\0';
    return 0;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

/* "0x..." is hex, anything else decimal, as upstream reads results. */
static int parse_u64(const char *s, uint64_t *v)
{
    bool hex = strstr(s, "0x") || strstr(s, "0X");
    if (!*s || *s == '-')
        return -EINVAL;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, hex ? 16 : 10);
    if (errno || *end)
        return -EINVAL;
    *v = x;
    return 0;
}

static enum section section_of(const char *name)
{
    static const struct {
        const char *name;
        enum section sec;
    } names[] = {
        {"asm", SEC_ASM}, {"raw", SEC_RAW}, {"mem", SEC_MEM}, {"result", SEC_RESULT}, {"error", SEC_ERROR},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (!strcmp(name, names[i].name))
            return names[i].sec;
    return SEC_NONE;
}

static int decode_raw(struct vector *v, char *raw)
{
    size_t cap = 0;
    for (char *tok = strtok(raw, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
        uint64_t w;
        if (parse_u64(tok, &w)) {
            snprintf(v->problem, sizeof(v->problem), "bad raw word '%s'", tok);
            return -EINVAL;
        }
        if (v->n == cap) {
            cap = cap ? cap * 2 : 16;
            struct bpf_insn *ni = realloc(v->insns, cap * sizeof(*ni));
            if (!ni)
                return -ENOMEM;
            v->insns = ni;
        }
        /* the little-endian layout of a bpf_insn read as one 64-bit word */
        v->insns[v->n++] = (struct bpf_insn){
            .code = (uint8_t)w,
            .dst_reg = (w >> 8) & 0xf,
            .src_reg = (w >> 12) & 0xf,
            .off = (int16_t)(uint16_t)(w >> 16),
            .imm = (int32_t)(uint32_t)(w >> 32),
        };
    }
    return 0;
}

static int decode_mem(struct vector *v, char *mem)
{
    size_t cap = 0;
    for (char *tok = strtok(mem, " \t\r\n"); tok; tok = strtok(NULL, " \t\r\n")) {
        char *end;
        errno = 0;
        unsigned long b = strtoul(tok, &end, 16);
        if (errno || *end || b > 0xff || *tok == '-') {
            snprintf(v->problem, sizeof(v->problem), "bad mem byte '%s'", tok);
            return -EINVAL;
        }
        if (v->mem_len == cap) {
            cap = cap ? cap * 2 : 64;
            uint8_t *nm = realloc(v->mem, cap);
            if (!nm)
                return -ENOMEM;
            v->mem = nm;
        }
        v->mem[v->mem_len++] = (uint8_t)b;
    }
    return 0;
}

/* Fills v from its file. Returns 0 (v->problem set if the vector cannot be
 * run) or -ENOMEM. */
static int load_vector(struct vector *v, const char *path)
{
    memset(v, 0, sizeof(*v));
    v->path = path;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(v->problem, sizeof(v->problem), "cannot read: %s", strerror(errno));
        return 0;
    }
    /* asm keeps one line per file line, so assembler errors name file lines */
    struct strbuf asm_text = {0}, raw = {0}, mem = {0};
    char *result = NULL;
    bool has_asm = false, has_raw = false;
    enum section sec = SEC_NONE;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int err = 0;

    while (!err && (len = getline(&line, &cap, f)) >= 0) {
        if (!strncmp(line, "--", 2)) {
            sec = section_of(trim(line + 2));
            has_asm |= sec == SEC_ASM;
            has_raw |= sec == SEC_RAW;
            err = sb_add(&asm_text, "\n", 1);
            continue;
        }
        if (sec == SEC_ASM) {
            err = sb_add(&asm_text, line, (size_t)len);
            if (!err && (len == 0 || line[len - 1] != '\n'))
                err = sb_add(&asm_text, "\n", 1);
            continue;
        }
        err = sb_add(&asm_text, "\n", 1);
        char *t = trim(line);
        if (err || !*t)
            continue;
        switch (sec) {
        case SEC_RAW: err = sb_add(&raw, " ", 1) ?: sb_add(&raw, t, strlen(t)); break;
        case SEC_MEM: err = sb_add(&mem, " ", 1) ?: sb_add(&mem, t, strlen(t)); break;
        case SEC_RESULT: /* the last line counts, as upstream */
        case SEC_ERROR: {
            char *copy = strdup(t);
            if (!copy) {
                err = -ENOMEM;
                break;
            }
            char **slot = sec == SEC_RESULT ? &result : &v->error;
            free(*slot);
            *slot = copy;
            break;
        }
        default: break;
        }
    }
    if (!err && ferror(f))
        snprintf(v->problem, sizeof(v->problem), "cannot read: %s", strerror(errno));
    free(line);
    fclose(f);
    if (err || v->problem[0])
        goto out;

    if (result) {
        v->has_result = true;
        if (parse_u64(result, &v->result)) {
            snprintf(v->problem, sizeof(v->problem), "bad result '%s'", result);
            goto out;
        }
    }
    if (!v->has_result && !v->error) {
        snprintf(v->problem, sizeof(v->problem), "no result or error section");
        goto out;
    }
    if (mem.s && (err = decode_mem(v, mem.s)))
        goto out;
    if (has_raw && (err = decode_raw(v, raw.s ? raw.s : (char[]){""})))
        goto out;
    if (has_asm) {
        struct bpf_insn *insns;
        size_t n;
        char msg[256];
        int r = bpfg_asm(asm_text.s ? asm_text.s : "", &insns, &n, msg, sizeof(msg));
        if (r == -ENOMEM) {
            err = r;
            goto out;
        }
        if (r) {
            snprintf(v->problem, sizeof(v->problem), "cannot assemble: %s", msg);
            goto out;
        }
        if (has_raw) {
            size_t i = 0;
            while (i < n && i < v->n && !memcmp(&insns[i], &v->insns[i], sizeof(*insns)))
                i++;
            if (i < n || i < v->n)
                snprintf(v->problem, sizeof(v->problem), "asm and raw differ at instruction %zu", i);
            free(insns);
        } else {
            v->insns = insns;
            v->n = n;
        }
    }
    if (!v->problem[0] && !v->n)
        snprintf(v->problem, sizeof(v->problem), "no instructions");
out:
    free(asm_text.s);
    free(raw.s);
    free(mem.s);
    free(result);
    return err;
}

static void free_vector(struct vector *v)
{
    free(v->insns);
    free(v->mem);
    free(v->error);
}

/* ---- running ---------------------------------------------------------- */

struct outcome {
    int rc;
    uint64_t r0;
    char msg[MSG_LEN];
};

static void run_direct(const struct engine *e, const struct vector *v, struct outcome *o)
{
    /* a fresh copy per run: programs may write to their memory */
    void *mem = NULL;
    if (v->mem_len) {
        mem = malloc(v->mem_len);
        if (!mem) {
            o->rc = -ENOMEM;
            snprintf(o->msg, sizeof(o->msg), "out of memory");
            return;
        }
        memcpy(mem, v->mem, v->mem_len);
    }
    o->rc = e->run(v->insns, v->n, mem, v->mem_len, &o->r0, o->msg, sizeof(o->msg));
    free(mem);
}

static void run_forked(const struct engine *e, const struct vector *v, struct outcome *o, unsigned timeout)
{
    int fds[2];
    if (pipe(fds)) {
        o->rc = -errno;
        snprintf(o->msg, sizeof(o->msg), "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        o->rc = -errno;
        snprintf(o->msg, sizeof(o->msg), "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return;
    }
    if (pid == 0) {
        close(fds[0]);
        alarm(timeout); /* SIGALRM's default action ends a hung run */
        run_direct(e, v, o);
        ssize_t w = write(fds[1], o, sizeof(*o));
        _exit(w == (ssize_t)sizeof(*o) ? 0 : 1);
    }
    close(fds[1]);
    size_t got = 0;
    while (got < sizeof(*o)) {
        ssize_t r = read(fds[0], (char *)o + got, sizeof(*o) - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        o->rc = -EINTR;
        if (sig == SIGALRM)
            snprintf(o->msg, sizeof(o->msg), "timed out after %us", timeout);
        else
            snprintf(o->msg, sizeof(o->msg), "crashed: %s", strsignal(sig));
    } else if (got != sizeof(*o)) {
        o->rc = -EIO;
        snprintf(o->msg, sizeof(o->msg), "engine process exited without a result");
    }
}

static bool contains_nocase(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (!strncasecmp(hay, needle, n))
            return true;
    return n == 0;
}

/* Returns true if the vector passed; otherwise fills why. */
static bool judge(const struct vector *v, const struct outcome *o, char *why, size_t len)
{
    if (o->rc == 0) {
        if (v->has_result && o->r0 == v->result)
            return true;
        if (v->error && !v->has_result)
            snprintf(why, len, "returned r0 = 0x%" PRIx64 ", expected error '%s'", o->r0, v->error);
        else
            snprintf(why, len, "r0 = 0x%" PRIx64 ", expected 0x%" PRIx64, o->r0, v->result);
        return false;
    }
    if (v->error && contains_nocase(o->msg, v->error))
        return true;
    if (v->error)
        snprintf(why, len, "%s; expected error '%s'", o->msg, v->error);
    else
        snprintf(why, len, "%s", o->msg);
    return false;
}

/* ---- command line ----------------------------------------------------- */

struct paths {
    char **v;
    size_t n, cap;
};

static int add_path(struct paths *p, char *path)
{
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        char **nv = realloc(p->v, cap * sizeof(*nv));
        if (!nv)
            return -ENOMEM;
        p->v = nv;
        p->cap = cap;
    }
    p->v[p->n++] = path;
    return 0;
}

static int is_vector(const struct dirent *d)
{
    size_t len = strlen(d->d_name);
    return len > 5 && !strcmp(d->d_name + len - 5, ".data");
}

/* Expands a directory into its *.data files (sorted); a file stays as is. */
static int collect(struct paths *out, const char *arg)
{
    struct stat st;
    if (stat(arg, &st)) {
        fprintf(stderr, "bpfgraft-conformance: cannot read %s: %s\n", arg, strerror(errno));
        return -errno;
    }
    if (!S_ISDIR(st.st_mode)) {
        char *p = strdup(arg);
        if (!p || add_path(out, p)) {
            free(p);
            return -ENOMEM;
        }
        return 0;
    }
    struct dirent **list;
    int n = scandir(arg, &list, is_vector, alphasort);
    if (n < 0) {
        fprintf(stderr, "bpfgraft-conformance: cannot read %s: %s\n", arg, strerror(errno));
        return -errno;
    }
    int err = 0;
    for (int i = 0; i < n; i++) {
        char *p = NULL;
        if (!err && (asprintf(&p, "%s/%s", arg, list[i]->d_name) < 0 || add_path(out, p))) {
            free(p);
            err = -ENOMEM;
        }
        free(list[i]);
    }
    free(list);
    if (!err && n == 0)
        fprintf(stderr, "bpfgraft-conformance: no *.data files in %s\n", arg);
    return err ? err : n == 0 ? -ENOENT : 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bpfgraft-conformance [--engine NAME]... [-v] [--no-fork] "
               "[--timeout SEC] DIR|FILE...\nengines:");
    for (size_t i = 0; i < NENGINES; i++)
        fprintf(f, " %s", engines[i].name);
    fprintf(f, " (default: all)\n");
}

int main(int argc, char **argv)
{
    bool selected[NENGINES] = {false};
    bool any_selected = false, verbose = false, use_fork = true;
    unsigned timeout = 10;
    struct paths paths = {0};
    bool read_error = false;
    int status = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--engine") || !strncmp(a, "--engine=", 9)) {
            const char *name = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            size_t k = 0;
            while (name && k < NENGINES && strcmp(engines[k].name, name))
                k++;
            if (!name || k == NENGINES) {
                fprintf(stderr, "bpfgraft-conformance: unknown engine '%s'\n", name ? name : "");
                usage(stderr);
                status = 2;
                goto out;
            }
            selected[k] = any_selected = true;
        } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
            verbose = true;
        } else if (!strcmp(a, "--no-fork")) {
            use_fork = false;
        } else if (!strcmp(a, "--timeout") && i + 1 < argc) {
            char *end;
            unsigned long t = strtoul(argv[++i], &end, 10);
            if (*end || t == 0 || t > 3600) {
                fprintf(stderr, "bpfgraft-conformance: bad timeout '%s'\n", argv[i]);
                status = 2;
                goto out;
            }
            timeout = (unsigned)t;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            goto out;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "bpfgraft-conformance: unknown option '%s'\n", a);
            usage(stderr);
            status = 2;
            goto out;
        } else {
            int err = collect(&paths, a);
            if (err == -ENOMEM) {
                fprintf(stderr, "bpfgraft-conformance: out of memory\n");
                status = 1;
                goto out;
            }
            read_error |= err != 0;
        }
    }
    if (!paths.n && !read_error) {
        usage(stderr);
        status = 2;
        goto out;
    }
    if (!any_selected)
        for (size_t k = 0; k < NENGINES; k++)
            selected[k] = true;

    size_t passed[NENGINES] = {0}, failed[NENGINES] = {0};
    for (size_t i = 0; i < paths.n; i++) {
        struct vector v;
        if (load_vector(&v, paths.v[i])) {
            fprintf(stderr, "bpfgraft-conformance: out of memory\n");
            free_vector(&v);
            status = 1;
            goto out;
        }
        for (size_t k = 0; k < NENGINES; k++) {
            if (!selected[k])
                continue;
            char why[2 * MSG_LEN];
            bool ok = false;
            if (v.problem[0]) {
                snprintf(why, sizeof(why), "%s", v.problem);
            } else {
                struct outcome o = {0};
                if (use_fork)
                    run_forked(&engines[k], &v, &o, timeout);
                else
                    run_direct(&engines[k], &v, &o);
                ok = judge(&v, &o, why, sizeof(why));
            }
            if (ok) {
                passed[k]++;
                if (verbose)
                    printf("PASS [%s] %s\n", engines[k].name, v.path);
            } else {
                failed[k]++;
                printf("FAIL [%s] %s: %s\n", engines[k].name, v.path, why);
            }
        }
        free_vector(&v);
    }
    for (size_t k = 0; k < NENGINES; k++) {
        if (!selected[k])
            continue;
        printf("%s: %zu passed, %zu failed\n", engines[k].name, passed[k], failed[k]);
        if (failed[k])
            status = 1;
    }
    if (read_error)
        status = 1;
out:
    for (size_t i = 0; i < paths.n; i++)
        free(paths.v[i]);
    free(paths.v);
    return status;
}
