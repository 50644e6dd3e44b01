/* The object loader: real clang-compiled objects (test/server/progs) loaded
 * through the bpf() emulation and run in the interpreter. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <bpf/btf.h>
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "criterion_facts.h"
#include "objload.h"
#include "vm.h"

#define OBJ(name) BPF_OBJ_DIR "/objload_" name ".bpf.o"

static char err[2048];

static const struct bpfg_obj_map *obj_map_by_name(const struct bpfg_obj *obj, const char *name)
{
    int i = bpfg_obj_map_index(obj, name);
    return i < 0 ? NULL : &obj->maps[i];
}

static const struct bpfg_obj_prog *obj_prog_by_name(const struct bpfg_obj *obj, const char *name)
{
    for (size_t i = 0; i < obj->prog_cnt; i++)
        if (strcmp(obj->progs[i].name, name) == 0)
            return &obj->progs[i];
    return NULL;
}

/* ---- a minimal runtime for the test programs ----------------------------- */

#define HASH_SLOTS 64
struct test_hash {
    uint32_t used;
    uint8_t keys[HASH_SLOTS][8];
    uint8_t vals[HASH_SLOTS][64];
};

struct rt {
    struct bpfg_obj *obj;
    void *mem[16]; /* array maps: the mmapped memfd */
    size_t memlen[16];
    struct test_hash hash[16];
    struct bpfg_vm *vm;
};

static void *map_lookup(struct rt *rt, size_t idx, const void *key)
{
    const struct bpfg_obj_map *m = &rt->obj->maps[idx];

    if (m->type == BPF_MAP_TYPE_ARRAY) {
        uint32_t k;
        memcpy(&k, key, 4);
        return k < m->max_entries ? (char *)rt->mem[idx] + k * ((m->value_size + 7) & ~7u) : NULL;
    }
    struct test_hash *h = &rt->hash[idx];
    for (uint32_t i = 0; i < h->used; i++)
        if (memcmp(h->keys[i], key, m->key_size) == 0)
            return h->vals[i];
    return NULL;
}

static size_t map_idx(struct rt *rt, uint64_t map_ptr)
{
    size_t idx = (size_t)((const struct bpfg_obj_map *)(uintptr_t)map_ptr - rt->obj->maps);
    cr_assert_lt(idx, rt->obj->map_cnt, "helper got a pointer that is no map");
    return idx;
}

static uint64_t h_lookup(uint64_t map, uint64_t key, uint64_t r3, uint64_t r4, uint64_t r5, void *user)
{
    (void)r3, (void)r4, (void)r5;
    struct rt *rt = user;
    return (uint64_t)(uintptr_t)map_lookup(rt, map_idx(rt, map), (void *)(uintptr_t)key);
}

static uint64_t h_update(uint64_t map, uint64_t key, uint64_t val, uint64_t flags, uint64_t r5, void *user)
{
    (void)flags, (void)r5;
    struct rt *rt = user;
    size_t idx = map_idx(rt, map);
    const struct bpfg_obj_map *m = &rt->obj->maps[idx];
    void *slot = map_lookup(rt, idx, (void *)(uintptr_t)key);

    if (!slot) {
        struct test_hash *h = &rt->hash[idx];
        if (m->type == BPF_MAP_TYPE_ARRAY || h->used == HASH_SLOTS)
            return (uint64_t)-E2BIG;
        memcpy(h->keys[h->used], (void *)(uintptr_t)key, m->key_size);
        slot = h->vals[h->used++];
    }
    memcpy(slot, (void *)(uintptr_t)val, m->value_size);
    return 0;
}

static uint64_t h_probe_read(uint64_t dst, uint64_t size, uint64_t src, uint64_t r4, uint64_t r5, void *user)
{
    (void)r4, (void)r5, (void)user;
    memcpy((void *)(uintptr_t)dst, (void *)(uintptr_t)src, size);
    return 0;
}

/* Map references are map indices (objload.h): a map is its descriptor,
 * a map value is the array's mmapped memory. */
static int resolve(void *user, uint8_t src, int32_t imm0, int32_t imm1, uint64_t *value)
{
    struct rt *rt = user;

    if (imm0 < 0 || (size_t)imm0 >= rt->obj->map_cnt)
        return -ENOENT;
    if (src == BPF_PSEUDO_MAP_IDX) {
        *value = (uint64_t)(uintptr_t)&rt->obj->maps[imm0];
        return 0;
    }
    if (src == BPF_PSEUDO_MAP_IDX_VALUE && rt->mem[imm0] && (size_t)(uint32_t)imm1 < rt->memlen[imm0]) {
        *value = (uint64_t)(uintptr_t)rt->mem[imm0] + (uint32_t)imm1;
        return 0;
    }
    return -EINVAL;
}

/* objload_basic has CO-RE relocations, which need the kernel's BTF: a
 * test loading it is skipped, not failed, on a kernel without. */
static void skip_without_btf(const char *load_error)
{
    if (strstr(load_error, "kernel BTF"))
        test_needs("btf");
}

static struct bpfg_obj *load(const char *path)
{
    struct bpfg_obj *obj = bpfg_obj_open_file(path, NULL, err, sizeof(err));
    if (!obj)
        skip_without_btf(err);
    cr_assert_not_null(obj, "loading %s failed: %s", path, err);
    return obj;
}

static void rt_init(struct rt *rt, struct bpfg_obj *obj)
{
    memset(rt, 0, sizeof(*rt));
    rt->obj = obj;
    cr_assert_leq(obj->map_cnt, 16);
    rt->vm = bpfg_vm_new();
    cr_assert_not_null(rt->vm);
    for (size_t i = 0; i < obj->map_cnt; i++) {
        const struct bpfg_obj_map *m = &obj->maps[i];
        cr_assert_geq(m->fd, 0);
        if (m->type == BPF_MAP_TYPE_ARRAY) {
            struct stat st;
            cr_assert_eq(fstat(m->fd, &st), 0);
            rt->memlen[i] = (size_t)st.st_size;
            rt->mem[i] = mmap(NULL, rt->memlen[i], PROT_READ | PROT_WRITE, MAP_SHARED, m->fd, 0);
            cr_assert_neq(rt->mem[i], MAP_FAILED, "mmap of map '%s': %s", m->name, strerror(errno));
            bpfg_vm_add_region(rt->vm, rt->mem[i], rt->memlen[i], true);
        }
        bpfg_vm_add_region(rt->vm, &rt->hash[i], sizeof(rt->hash[i]), true);
    }
    bpfg_vm_register_helper(rt->vm, BPF_FUNC_map_lookup_elem, "map_lookup_elem", h_lookup, rt);
    bpfg_vm_register_helper(rt->vm, BPF_FUNC_map_update_elem, "map_update_elem", h_update, rt);
    bpfg_vm_register_helper(rt->vm, BPF_FUNC_probe_read_kernel, "probe_read_kernel", h_probe_read, rt);
    bpfg_vm_set_ld64_resolver(rt->vm, resolve, rt);
}

static void rt_fini(struct rt *rt)
{
    for (size_t i = 0; i < rt->obj->map_cnt; i++)
        if (rt->mem[i])
            munmap(rt->mem[i], rt->memlen[i]);
    bpfg_vm_free(rt->vm);
    bpfg_obj_free(rt->obj);
}

static void rt_prog(struct rt *rt, const char *name)
{
    const struct bpfg_obj_prog *p = obj_prog_by_name(rt->obj, name);
    cr_assert_not_null(p, "no program %s", name);
    cr_assert_not_null(p->insns, "program %s not loaded: %s", name, p->error ? p->error : "");
    int r = bpfg_vm_load(rt->vm, p->insns, p->insn_cnt);
    cr_assert_eq(r, 0, "vm load of %s: %s", name, bpfg_vm_error(rt->vm));
}

static uint64_t rt_run(struct rt *rt, void *ctx, size_t len)
{
    uint64_t r0 = 0xdeadbeef;
    int r = bpfg_vm_exec(rt->vm, ctx, len, &r0);
    cr_assert_eq(r, 0, "exec: %s", bpfg_vm_error(rt->vm));
    return r0;
}

/* x86-64 struct pt_regs is the first 21 words of user_regs_struct. Every
 * register gets a distinct value so a wrong offset shows. */
static struct user_regs_struct fake_regs(void)
{
    struct user_regs_struct r;
    uint64_t *w = (uint64_t *)&r;
    for (size_t i = 0; i < sizeof(r) / 8; i++)
        w[i] = 0x1000 + i;
    return r;
}

static const struct bpfg_obj_map *map_of_kind(const struct bpfg_obj *obj, enum bpfg_map_kind kind)
{
    for (size_t i = 0; i < obj->map_cnt; i++)
        if (obj->maps[i].kind == kind)
            return &obj->maps[i];
    return NULL;
}

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc((size_t)n);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

#define EXPECT_FAIL(obj, needle)                                                    \
    do {                                                                            \
        cr_assert_null(obj, "load succeeded, expected an error with '%s'", needle); \
        cr_assert(strstr(err, needle), "error '%s' lacks '%s'", err, needle);       \
    } while (0)

/* ---- the object's shape ---------------------------------------------------- */

Test(objload, maps_of_basic_object)
{
    struct bpfg_obj *obj = load(OBJ("basic"));
    const struct bpfg_obj_map *m;

    m = obj_map_by_name(obj, "counts");
    cr_assert_not_null(m);
    cr_expect_eq(m->kind, BPFG_MAP_USER);
    cr_expect_eq(m->type, BPF_MAP_TYPE_HASH);
    cr_expect_eq(m->key_size, 4);
    cr_expect_eq(m->value_size, 8);
    cr_expect_eq(m->max_entries, 64);
    cr_assert_not_null(obj->btf);
    const struct btf_type *t = btf__type_by_id(obj->btf, m->btf_value_type_id);
    cr_assert_not_null(t, "value type id %u not in the object's BTF", m->btf_value_type_id);
    cr_expect_eq(btf__resolve_size(obj->btf, m->btf_value_type_id), 8);

    m = obj_map_by_name(obj, "slots");
    cr_assert_not_null(m);
    cr_expect_eq(m->type, BPF_MAP_TYPE_ARRAY);
    cr_expect_eq(m->max_entries, 4);

    long v;
    m = map_of_kind(obj, BPFG_MAP_DATA);
    cr_assert_not_null(m, "no .data map");
    cr_assert_eq(m->init_size, sizeof(long));
    memcpy(&v, m->init_data, sizeof(v));
    cr_expect_eq(v, 5);
    cr_expect_eq(pread(m->fd, &v, sizeof(v), 0), (ssize_t)sizeof(v));
    cr_expect_eq(v, 5, "create_map did not receive the initial .data");

    m = map_of_kind(obj, BPFG_MAP_RODATA);
    cr_assert_not_null(m, "no .rodata map");
    memcpy(&v, m->init_data, sizeof(v));
    cr_expect_eq(v, 3);
    cr_expect(m->flags & BPF_F_RDONLY_PROG);

    m = map_of_kind(obj, BPFG_MAP_BSS);
    cr_assert_not_null(m, "no .bss map");
    cr_expect_eq(m->value_size, sizeof(long));

    cr_assert_not_null(map_of_kind(obj, BPFG_MAP_KCONFIG), "no .kconfig map");
    bpfg_obj_free(obj);
}

Test(objload, programs_and_attach_kinds)
{
    struct bpfg_obj *obj = load(OBJ("basic"));
    const struct bpfg_obj_prog *p;

    p = obj_prog_by_name(obj, "double_arg");
    cr_assert_not_null(p);
    cr_expect_str_eq(p->section, "uprobe//bin/true:main+4");
    cr_expect_eq(p->kind, BPFG_ATTACH_UPROBE);
    cr_expect_str_eq(p->target_binary, "/bin/true");
    cr_expect_str_eq(p->target_func, "main");
    cr_expect_eq(p->target_offset, 4);
    cr_expect_eq(p->prog_type, BPF_PROG_TYPE_KPROBE);
    cr_expect_str_eq(p->license, "GPL");
    cr_expect_not(p->sleepable);

    p = obj_prog_by_name(obj, "ret_plus_one");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_URETPROBE);
    cr_expect_eq(p->target_offset, 0);

    p = obj_prog_by_name(obj, "globals");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_UPROBE);
    cr_expect(p->sleepable);

    p = obj_prog_by_name(obj, "call_sub");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_UPROBE);
    cr_expect_null(p->target_binary);

    p = obj_prog_by_name(obj, "enter_openat");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_SYSCALL_ENTER);
    cr_expect_str_eq(p->syscall, "openat");
    cr_expect_eq(p->prog_type, BPF_PROG_TYPE_TRACEPOINT);

    p = obj_prog_by_name(obj, "exit_openat");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_SYSCALL_EXIT);
    cr_expect_str_eq(p->syscall, "openat");

    p = obj_prog_by_name(obj, "raw_enter");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_RAW_SYSCALL_ENTER);
    cr_expect_eq(p->prog_type, BPF_PROG_TYPE_RAW_TRACEPOINT);
    p = obj_prog_by_name(obj, "raw_exit");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_RAW_SYSCALL_EXIT);
    p = obj_prog_by_name(obj, "tp_raw_enter");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_RAW_SYSCALL_ENTER);
    cr_expect_eq(p->prog_type, BPF_PROG_TYPE_TRACEPOINT);
    bpfg_obj_free(obj);
}

Test(objload, section_parsing)
{
    static const struct {
        const char *sec;
        enum bpfg_attach_kind kind;
        const char *bin, *fn, *sys;
        uint64_t off;
    } cases[] = {
        {"uprobe", BPFG_ATTACH_UPROBE, NULL, NULL, NULL, 0},
        {"uprobe/libc.so.6:malloc", BPFG_ATTACH_UPROBE, "libc.so.6", "malloc", NULL, 0},
        {"uprobe//usr/bin/x:f+0x10", BPFG_ATTACH_UPROBE, "/usr/bin/x", "f", NULL, 16},
        {"uretprobe.s//lib/l.so:g", BPFG_ATTACH_URETPROBE, "/lib/l.so", "g", NULL, 0},
        {"uretprobe//lib/l.so:g+8", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
        {"uprobe//bin/true", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
        {"uprobe//bin/true:f+zz", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
        {"tp/syscalls/sys_enter_read", BPFG_ATTACH_SYSCALL_ENTER, NULL, NULL, "read", 0},
        {"tracepoint/syscalls/sys_exit_write", BPFG_ATTACH_SYSCALL_EXIT, NULL, NULL, "write", 0},
        {"tracepoint/raw_syscalls/sys_exit", BPFG_ATTACH_RAW_SYSCALL_EXIT, NULL, NULL, NULL, 0},
        {"raw_tp/sys_enter", BPFG_ATTACH_RAW_SYSCALL_ENTER, NULL, NULL, NULL, 0},
        {"tracepoint/sched/sched_switch", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
        {"raw_tracepoint/sched_switch", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
        {"kprobe/do_sys_open", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
        {"fentry/x", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
        {"uprobes/x:y", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
        {"usdt", BPFG_ATTACH_UPROBE, NULL, NULL, NULL, 0},
        {"usdt//usr/bin/python3.11:python:function__entry", BPFG_ATTACH_UPROBE, "/usr/bin/python3.11",
         "python:function__entry", NULL, 0},
        {"usdt//usr/bin/x:prov", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
        {"usdt//usr/bin/x::name", BPFG_ATTACH_UNSUPPORTED, NULL, NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct bpfg_obj_prog p = {0};
        cr_assert_eq(bpfg_obj_parse_section(cases[i].sec, &p), 0);
        cr_expect_eq(p.kind, cases[i].kind, "%s: kind %d", cases[i].sec, p.kind);
        cr_expect_eq(p.usdt, strncmp(cases[i].sec, "usdt", 4) == 0 && cases[i].kind != BPFG_ATTACH_UNSUPPORTED, "%s",
                     cases[i].sec);
        if (p.kind == BPFG_ATTACH_UNSUPPORTED) {
            cr_expect(p.error && strstr(p.error, cases[i].sec), "%s: error '%s'", cases[i].sec,
                      p.error ? p.error : "(null)");
        } else {
            cr_expect_null(p.error);
            if (cases[i].bin)
                cr_expect_str_eq(p.target_binary, cases[i].bin);
            else
                cr_expect_null(p.target_binary);
            if (cases[i].fn)
                cr_expect_str_eq(p.target_func, cases[i].fn);
            if (cases[i].sys)
                cr_expect_str_eq(p.syscall, cases[i].sys);
            cr_expect_eq(p.target_offset, cases[i].off, "%s", cases[i].sec);
        }
        free(p.error);
        free(p.target_binary);
        free(p.target_func);
        free(p.syscall);
    }
}

/* ---- running the programs --------------------------------------------------- */

Test(objload, uprobe_reads_first_argument)
{
    struct rt rt;
    rt_init(&rt, load(OBJ("basic")));
    struct user_regs_struct regs = fake_regs();
    regs.rdi = 21;
    rt_prog(&rt, "double_arg");
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 42);
    regs.rdi = 1000;
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 2000);
    rt_fini(&rt);
}

Test(objload, uretprobe_reads_return_value)
{
    struct rt rt;
    rt_init(&rt, load(OBJ("basic")));
    struct user_regs_struct regs = fake_regs();
    regs.rax = 41;
    rt_prog(&rt, "ret_plus_one");
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 42);
    rt_fini(&rt);
}

Test(objload, bpf_to_bpf_calls)
{
    struct rt rt;
    rt_init(&rt, load(OBJ("basic")));
    const struct bpfg_obj_prog *p = obj_prog_by_name(rt.obj, "call_sub");
    int calls = 0;
    for (size_t i = 0; i < p->insn_cnt; i++)
        if (p->insns[i].code == (BPF_JMP | BPF_CALL) && p->insns[i].src_reg == BPF_PSEUDO_CALL)
            calls++;
    cr_expect_geq(calls, 2, "subprograms were not kept as calls");
    struct user_regs_struct regs = fake_regs();
    regs.rdi = 6;
    regs.rsi = 7;
    rt_prog(&rt, "call_sub");
    /* mul_add(6, 7) + twice(7) = 43 + 14 */
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 57);
    rt_fini(&rt);
}

Test(objload, global_data_maps)
{
    struct rt rt;
    rt_init(&rt, load(OBJ("basic")));
    const struct bpfg_obj_map *bss = map_of_kind(rt.obj, BPFG_MAP_BSS);
    cr_assert_not_null(bss);
    size_t bss_idx = (size_t)(bss - rt.obj->maps);
    struct user_regs_struct regs = fake_regs();
    regs.rdi = 10;
    rt_prog(&rt, "globals");
    /* bss_total += a * rodata_mul(3) + data_bias(5) */
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 35);
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 70);
    long total;
    memcpy(&total, rt.mem[bss_idx], sizeof(total));
    cr_expect_eq(total, 70, ".bss in the map memory is %ld", total);
    cr_expect_eq(pread(bss->fd, &total, sizeof(total), 0), (ssize_t)sizeof(total));
    cr_expect_eq(total, 70);
    rt_fini(&rt);
}

Test(objload, array_and_hash_maps)
{
    struct rt rt;
    rt_init(&rt, load(OBJ("basic")));
    struct user_regs_struct regs = fake_regs();
    regs.rdi = 1;
    regs.rsi = 5;
    rt_prog(&rt, "array_add");
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 5);
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 10);
    regs.rdi = 4;
    cr_expect_eq((int32_t)rt_run(&rt, &regs, sizeof(regs)), -1);

    regs.rdi = 77;
    rt_prog(&rt, "hash_count");
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 1);
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 2);
    regs.rdi = 78;
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 1);
    rt_fini(&rt);
}

Test(objload, core_relocations_use_kernel_btf)
{
    struct rt rt;
    rt_init(&rt, load(OBJ("basic")));
    struct user_regs_struct regs = fake_regs();
    regs.rdi = 7;
    regs.rsi = 3;
    rt_prog(&rt, "core_read");
    /* di * 1000 + si * 10 + field_exists: the local struct has si at 0
     * and di at 8, which only CO-RE turns into the kernel's 104 and 112. */
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 7031);
    rt_fini(&rt);
}

Test(objload, kconfig_extern)
{
    struct rt rt;
    struct utsname u;
    unsigned a = 0, b = 0, c = 0;
    cr_assert_eq(uname(&u), 0);
    cr_assert_geq(sscanf(u.release, "%u.%u.%u", &a, &b, &c), 2);
    rt_init(&rt, load(OBJ("basic")));
    rt_prog(&rt, "kversion");
    struct user_regs_struct regs = fake_regs();
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), (a << 16) + (b << 8) + (c > 255 ? 255 : c));
    rt_fini(&rt);
}

Test(objload, syscall_tracepoints)
{
    struct rt rt;
    rt_init(&rt, load(OBJ("basic")));
    /* trace_event_raw_sys_enter: 8-byte header, long id, args[6] */
    uint64_t enter[8] = {0, 257, 11, 22, 0x241, 44, 55, 66};
    rt_prog(&rt, "enter_openat");
    cr_expect_eq(rt_run(&rt, enter, sizeof(enter)), 0x241);
    rt_prog(&rt, "tp_raw_enter");
    cr_expect_eq(rt_run(&rt, enter, sizeof(enter)), 257);
    /* trace_event_raw_sys_exit: header, long id, long ret */
    uint64_t exitc[3] = {0, 257, 9};
    rt_prog(&rt, "exit_openat");
    cr_expect_eq(rt_run(&rt, exitc, sizeof(exitc)), 9);
    /* bpf_raw_tracepoint_args: args[0] = regs, args[1] = id / ret */
    uint64_t raw[2] = {0, 59};
    rt_prog(&rt, "raw_enter");
    cr_expect_eq(rt_run(&rt, raw, sizeof(raw)), 59);
    rt_prog(&rt, "raw_exit");
    cr_expect_eq(rt_run(&rt, raw, sizeof(raw)), 59);
    rt_fini(&rt);
}

struct calls {
    int n;
    uint32_t kinds;
};

/* Counts its calls and defers to the default. */
static int count_create(void *user, const struct bpfg_map_def *def)
{
    struct calls *c = user;
    c->n++;
    c->kinds |= 1u << def->kind;
    return bpfg_obj_default_create_map(NULL, def);
}

static int fail_create(void *user, const struct bpfg_map_def *def)
{
    (void)user;
    return strcmp(def->name, "slots") == 0 ? -ENOSPC : bpfg_obj_default_create_map(NULL, def);
}

Test(objload, load_from_memory_with_callback)
{
    size_t len;
    void *buf = read_file(OBJ("basic"), &len);
    struct calls calls = {0};
    struct bpfg_obj_opts opts = {.name = "mem", .user = &calls, .create_map = count_create};
    struct bpfg_obj *obj = bpfg_obj_open_mem(buf, len, &opts, err, sizeof(err));
    free(buf);
    if (!obj)
        skip_without_btf(err);
    cr_assert_not_null(obj, "%s", err);
    cr_expect_eq((size_t)calls.n, obj->map_cnt, "probe maps must not reach create_map");
    cr_expect_eq(calls.kinds, 0x1f);
    cr_expect_str_eq(obj->name, "mem");
    bpfg_obj_free(obj);
}

Test(objload, failing_create_map_is_reported)
{
    struct bpfg_obj_opts opts = {.create_map = fail_create};
    int before = count_fds();
    struct bpfg_obj *obj = bpfg_obj_open_file(OBJ("basic"), &opts, err, sizeof(err));
    if (!obj)
        skip_without_btf(err);
    EXPECT_FAIL(obj, "slots");
    cr_expect_eq(errno, ENOSPC);
    cr_expect_eq(count_fds(), before, "fds leaked");
}

/* ---- unsupported programs and bad input --------------------------------------- */

Test(objload, kernel_only_programs_are_marked)
{
    struct rt rt;
    rt_init(&rt, load(OBJ("mixed")));
    const struct bpfg_obj_prog *p = obj_prog_by_name(rt.obj, "kernel_probe");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_UNSUPPORTED);
    cr_expect_null(p->insns);
    cr_expect(strstr(p->error, "kprobe/do_sys_openat2") && strstr(p->error, "not available in userspace"), "%s",
              p->error);
    p = obj_prog_by_name(rt.obj, "pass_all");
    cr_assert_not_null(p);
    cr_expect_eq(p->kind, BPFG_ATTACH_UNSUPPORTED);
    cr_expect(strstr(p->error, "'xdp'"), "%s", p->error);
    struct user_regs_struct regs = fake_regs();
    regs.rdi = 35;
    rt_prog(&rt, "user_probe");
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 42);
    rt_fini(&rt);
}

Test(objload, no_usable_program)
{
    struct bpfg_obj *obj = bpfg_obj_open_file(OBJ("kernel_only"), NULL, err, sizeof(err));
    EXPECT_FAIL(obj, "kprobe/do_sys_openat2");
    cr_expect(strstr(err, "not available in userspace"), "%s", err);
    cr_expect_eq(errno, EOPNOTSUPP);
}

Test(objload, unknown_section)
{
    struct bpfg_obj *obj = bpfg_obj_open_file(OBJ("unknown"), NULL, err, sizeof(err));
    EXPECT_FAIL(obj, "frobnicate/now");
}

Test(objload, undefined_symbol)
{
    struct bpfg_obj *obj = bpfg_obj_open_file(OBJ("extern"), NULL, err, sizeof(err));
    EXPECT_FAIL(obj, "missing_counter");
}

Test(objload, empty_and_missing_input)
{
    struct bpfg_obj *obj = bpfg_obj_open_mem("", 0, NULL, err, sizeof(err));
    EXPECT_FAIL(obj, "empty");
    cr_expect_eq(errno, EINVAL);
    obj = bpfg_obj_open_mem(NULL, 10, NULL, err, sizeof(err));
    EXPECT_FAIL(obj, "empty");
    obj = bpfg_obj_open_file("/nonexistent/x.bpf.o", NULL, err, sizeof(err));
    EXPECT_FAIL(obj, "/nonexistent/x.bpf.o");
    cr_expect_eq(errno, ENOENT);
    obj = bpfg_obj_open_file("/tmp", NULL, err, sizeof(err));
    EXPECT_FAIL(obj, "not a regular file");
    obj = bpfg_obj_open_mem("hello world, not an elf", 23, NULL, err, sizeof(err));
    EXPECT_FAIL(obj, "not an ELF");
}

Test(objload, not_a_bpf_elf)
{
    struct bpfg_obj *obj = bpfg_obj_open_file("/bin/true", NULL, err, sizeof(err));
    EXPECT_FAIL(obj, "not a BPF object");
    cr_expect(strstr(err, "machine 62"), "%s", err);
}

Test(objload, truncated_elf)
{
    size_t len;
    unsigned char *buf = read_file(OBJ("basic"), &len);
    int before = count_fds();
    /* Cut everywhere from the header to just short of the end. */
    size_t cuts[] = {16, sizeof(Elf64_Ehdr), 200, len / 4, len / 2, len - 64, len - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        struct bpfg_obj *obj = bpfg_obj_open_mem(buf, cuts[i], NULL, err, sizeof(err));
        cr_expect_null(obj, "truncated to %zu bytes but loaded", cuts[i]);
        cr_expect_neq(err[0], '\0');
        bpfg_obj_free(obj);
    }
    free(buf);
    cr_expect_eq(count_fds(), before, "fds leaked");
}

/* A relocation whose symbol index points past the symbol table. */
Test(objload, relocation_to_missing_symbol)
{
    size_t len;
    unsigned char *buf = read_file(OBJ("basic"), &len);
    Elf64_Ehdr eh;
    memcpy(&eh, buf, sizeof(eh));
    int patched = 0;
    for (unsigned i = 0; i < eh.e_shnum && !patched; i++) {
        Elf64_Shdr sh;
        memcpy(&sh, buf + eh.e_shoff + i * sizeof(sh), sizeof(sh));
        if (sh.sh_type != SHT_REL || sh.sh_size < sizeof(Elf64_Rel))
            continue;
        Elf64_Rel rel;
        memcpy(&rel, buf + sh.sh_offset, sizeof(rel));
        rel.r_info = ELF64_R_INFO(0xfffff, ELF64_R_TYPE(rel.r_info));
        memcpy(buf + sh.sh_offset, &rel, sizeof(rel));
        patched = 1;
    }
    cr_assert(patched, "no relocation section found");
    struct bpfg_obj *obj = bpfg_obj_open_mem(buf, len, NULL, err, sizeof(err));
    free(buf);
    EXPECT_FAIL(obj, "symbol");
}

/* libbpf 1.x refuses SEC("maps"); the loader converts it to BTF maps. */
Test(objload, legacy_maps_section)
{
    struct rt rt;
    rt_init(&rt, load(OBJ("legacy")));
    const struct bpfg_obj_map *m = obj_map_by_name(rt.obj, "legacy_slots");
    cr_assert_not_null(m);
    cr_expect_eq(m->type, BPF_MAP_TYPE_ARRAY);
    cr_expect_eq(m->key_size, 4);
    cr_expect_eq(m->value_size, 8);
    cr_expect_eq(m->max_entries, 8);
    struct user_regs_struct regs = fake_regs();
    regs.rdi = 7;
    regs.rsi = 20;
    rt_prog(&rt, "legacy_add");
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 20);
    cr_expect_eq(rt_run(&rt, &regs, sizeof(regs)), 40);
    regs.rdi = 8;
    cr_expect_eq((int32_t)rt_run(&rt, &regs, sizeof(regs)), -1);
    rt_fini(&rt);
}

/* Without BTF a legacy map cannot be described to libbpf: a clear error. */
Test(objload, legacy_maps_without_btf)
{
    size_t len;
    unsigned char *buf = read_file(OBJ("legacy"), &len);
    Elf64_Ehdr eh;
    memcpy(&eh, buf, sizeof(eh));
    Elf64_Shdr str;
    memcpy(&str, buf + eh.e_shoff + eh.e_shstrndx * sizeof(str), sizeof(str));
    int hidden = 0;
    for (unsigned i = 0; i < eh.e_shnum; i++) {
        Elf64_Shdr sh;
        memcpy(&sh, buf + eh.e_shoff + i * sizeof(sh), sizeof(sh));
        char *name = (char *)buf + str.sh_offset + sh.sh_name;
        if (strcmp(name, ".BTF") == 0 || strcmp(name, ".BTF.ext") == 0) {
            name[1] = 'X'; /* ".XTF": no longer BTF */
            hidden++;
        }
    }
    cr_assert_eq(hidden, 2);
    struct bpfg_obj *obj = bpfg_obj_open_mem(buf, len, NULL, err, sizeof(err));
    free(buf);
    EXPECT_FAIL(obj, "legacy 'maps' section");
    cr_expect(strstr(err, "-g"), "%s", err);
}

/* ---- scope of the emulation ------------------------------------------------- */

Test(objload, no_fd_leaks)
{
    struct bpfg_obj *obj = load(OBJ("basic"));
    bpfg_obj_free(obj);
    int before = count_fds();
    for (int i = 0; i < 3; i++) {
        obj = load(OBJ("basic"));
        bpfg_obj_free(obj);
        obj = bpfg_obj_open_file(OBJ("extern"), NULL, err, sizeof(err));
        cr_assert_null(obj);
        obj = bpfg_obj_open_file(OBJ("kernel_only"), NULL, err, sizeof(err));
        cr_assert_null(obj);
    }
    cr_expect_eq(count_fds(), before, "fds leaked");
}

/* Outside a load, bpf() is the kernel's: a real map, with fdinfo to show. */
Test(objload, bpf_outside_load_reaches_kernel)
{
    test_needs("bpf-maps");
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 8;
    a.max_entries = 1;
    int fd = (int)syscall(__NR_bpf, BPF_MAP_CREATE, &a, sizeof(a));
    cr_assert_geq(fd, 0, "kernel bpf(BPF_MAP_CREATE): %s", strerror(errno));
    char path[64], buf[512] = {0};
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    int ifd = open(path, O_RDONLY);
    cr_assert_geq(ifd, 0);
    cr_assert_gt(read(ifd, buf, sizeof(buf) - 1), 0);
    close(ifd);
    close(fd);
    cr_expect(strstr(buf, "map_type:\t2"), "not a kernel map: %s", buf);
}

static void *load_thread(void *arg)
{
    char e[512];
    (void)arg;
    for (int i = 0; i < 3; i++) {
        struct bpfg_obj *obj = bpfg_obj_open_file(OBJ("basic"), NULL, e, sizeof(e));
        if (!obj)
            return strdup(e);
        bpfg_obj_free(obj);
    }
    return NULL;
}

Test(objload, concurrent_loads, .init = test_needs_btf) /* loads objload_basic */
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, load_thread, NULL), 0);
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(t[i], &r);
        cr_expect_null(r, "thread %d: %s", i, r ? (char *)r : "");
        free(r);
    }
}
