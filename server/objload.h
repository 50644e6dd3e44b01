/* The BPF object loader behind `object.load`.
 *
 * Takes a clang-compiled BPF ELF (bytes or a path) and lets libbpf (linked
 * statically) do what it does for the kernel: parse the ELF and BTF, build
 * the maps (BTF `.maps`, global data `.data`/`.rodata`/`.bss`/`.kconfig`),
 * apply every relocation (map references, global data, bpf-to-bpf calls)
 * and CO-RE relocations against the running kernel's BTF
 * (/sys/kernel/btf/vmlinux). Its bpf() syscalls go to a userspace emulation
 * (bpf_emu.h), which captures the final instructions. Executables linking
 * bpfg_objload get -Wl,--wrap=syscall for that; without it loading fails
 * with ENOSYS instead of touching the kernel.
 *
 * Results:
 *  - maps, in libbpf's order. Each is created after the load succeeded
 *    through opts->create_map (the server's maps), which gets the
 *    definition and, for global data, the initial contents. Feature-probe
 *    maps libbpf makes never reach the callback.
 *  - programs, one per program section. Map references in the instructions
 *    use map indices (into maps[]), never fds:
 *      lddw src_reg=BPF_PSEUDO_MAP_IDX       imm=map index
 *      lddw src_reg=BPF_PSEUDO_MAP_IDX_VALUE imm=map index, next imm=offset
 *    so the server binds them per target with a bpfg_ld64_resolver.
 *    bpf-to-bpf calls are already resolved (subprograms appended, call imm
 *    relative), CO-RE offsets patched in.
 *  - programs whose section cannot run in userspace (kprobe/, xdp, fentry/,
 *    other tracepoints, unknown sections) are not loaded: they are listed
 *    with kind BPFG_ATTACH_UNSUPPORTED and `error` naming the section, or
 *    with opts->kernel marked `kernel` (the server loads them into the
 *    kernel). The load fails only if no program is usable either way.
 *  - the object's BTF (after libbpf's fix-ups), for printing keys/values.
 *
 * Legacy `maps` section (struct bpf_map_def) objects: libbpf 1.x dropped
 * them; the loader rewrites them into BTF-defined maps when the object has
 * BTF (-g), and refuses them with a clear error otherwise.
 *
 * Errors: constructors return NULL, set errno and write a message naming
 * the problem (with libbpf's own diagnostics) into err.
 */
#ifndef BPFGRAFT_OBJLOAD_H
#define BPFGRAFT_OBJLOAD_H

#include <linux/bpf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct btf;

enum bpfg_map_kind {
    BPFG_MAP_USER,    /* defined in .maps (or legacy maps) */
    BPFG_MAP_DATA,    /* .data, .data.* */
    BPFG_MAP_RODATA,  /* .rodata, .rodata.* */
    BPFG_MAP_BSS,     /* .bss */
    BPFG_MAP_KCONFIG, /* .kconfig externs, values filled by libbpf */
};

/* ARRAY_OF_MAPS / HASH_OF_MAPS: what inner maps must look like. */
struct bpfg_obj_inner_map {
    uint32_t type, key_size, value_size, max_entries, flags;
};

/* A map definition as handed to create_map. */
struct bpfg_map_def {
    const char *name;
    enum bpfg_map_kind kind;
    uint32_t type; /* BPF_MAP_TYPE_* */
    uint32_t key_size, value_size, max_entries, flags;
    uint32_t btf_key_type_id, btf_value_type_id; /* in bpfg_obj.btf, 0 if none */
    uint64_t map_extra;
    const void *init_data; /* global data maps: the whole value */
    size_t init_size;
    struct bpfg_obj_inner_map inner; /* map-in-map: the inner map template */
    /* map-in-map: slots libbpf filled at load (`.values`), key i -> the
     * index of an inner map of this object (-1 = none) */
    const int32_t *init_slots;
    uint32_t init_slots_cnt;
};

/* Creates the storage for a map: returns a new fd the object then owns
 * (closed by bpfg_obj_free), or a negative errno. */
typedef int (*bpfg_create_map_fn)(void *user, const struct bpfg_map_def *def);

/* Test/tool default: a memfd of round_up(value_size, 8) * max_entries
 * bytes (page-rounded, mmap-able) for arrays, holding init_data; an empty
 * memfd for other map types. */
int bpfg_obj_default_create_map(void *user, const struct bpfg_map_def *def);

enum bpfg_attach_kind {
    BPFG_ATTACH_UNSUPPORTED,
    BPFG_ATTACH_UPROBE,            /* uprobe[.s][/BINARY:FUNC[+OFF]] */
    BPFG_ATTACH_URETPROBE,         /* uretprobe[.s][/BINARY:FUNC] */
    BPFG_ATTACH_SYSCALL_ENTER,     /* tracepoint/syscalls/sys_enter_NAME */
    BPFG_ATTACH_SYSCALL_EXIT,      /* tracepoint/syscalls/sys_exit_NAME */
    BPFG_ATTACH_RAW_SYSCALL_ENTER, /* raw_tracepoint/sys_enter, tracepoint/raw_syscalls/sys_enter */
    BPFG_ATTACH_RAW_SYSCALL_EXIT,  /* raw_tracepoint/sys_exit, tracepoint/raw_syscalls/sys_exit */
    BPFG_ATTACH_TIMER,             /* perf_event on a cpu-clock event (tools: bpftrace's interval:) */
};

struct bpfg_obj_map {
    char *name;
    enum bpfg_map_kind kind;
    uint32_t type, key_size, value_size, max_entries, flags;
    uint32_t btf_key_type_id, btf_value_type_id;
    uint64_t map_extra;
    void *init_data; /* global data maps only, else NULL */
    size_t init_size;
    int fd;                          /* from create_map, owned */
    struct bpfg_obj_inner_map inner; /* map-in-map: the inner map template */
    int32_t *init_slots;             /* map-in-map: see bpfg_map_def */
    uint32_t init_slots_cnt;
};

struct bpfg_obj_prog {
    char *name;    /* the C function name */
    char *section; /* the ELF section, e.g. "uprobe//bin/true:main" */
    enum bpfg_attach_kind kind;
    char *error;    /* why it is unsupported, else NULL */
    bool sleepable; /* uprobe.s / uretprobe.s */
    /* Uprobes: "binary:function[+off]" split up; all NULL/0 for a bare
     * SEC("uprobe"), whose target is given at attach time. */
    char *target_binary, *target_func;
    uint64_t target_offset;
    bool target_file_offset;                  /* target_offset is a file offset in target_binary (no function) */
    char *syscall;                            /* SYSCALL_ENTER/EXIT: e.g. "openat" */
    uint32_t prog_type, expected_attach_type; /* as libbpf chose them */
    char *license;
    struct bpf_insn *insns; /* NULL when unsupported */
    size_t insn_cnt;
    /* with target_file_offset: file offset in target_binary of a USDT
     * semaphore counted while attached (0: none) */
    uint64_t ref_ctr_offset;
    /* SEC("usdt..."): target_func is "PROVIDER:NAME", attached at each of
     * its sites */
    bool usdt;
    /* runs in the kernel (bpfg_obj_opts.kernel; the server may set it for
     * a program calling a helper only the kernel has): not loaded here,
     * insns NULL unless it was */
    bool kernel;
};

struct bpfg_obj {
    char *name;
    struct bpfg_obj_map *maps;
    size_t map_cnt;
    struct bpfg_obj_prog *progs;
    size_t prog_cnt;
    struct btf *btf;       /* owned; NULL if the object has no BTF */
    uint32_t kern_version; /* LINUX_VERSION_CODE libbpf used */
};

struct bpfg_obj_opts {
    const char *name;              /* object name; default from path or "obj" */
    bpfg_create_map_fn create_map; /* default: bpfg_obj_default_create_map */
    void *user;
    const char *btf_custom_path; /* kernel BTF override (tests); default vmlinux */
    /* Programs userspace cannot run: NEVER lists them unsupported (the
     * default); AUTO marks them kernel (an object may then have no
     * userspace program); ALWAYS marks every program kernel. */
    enum bpfg_kernel_mode { BPFG_KERNEL_NEVER, BPFG_KERNEL_AUTO, BPFG_KERNEL_ALWAYS } kernel;
};

struct bpfg_obj *bpfg_obj_open_mem(const void *buf, size_t len, const struct bpfg_obj_opts *opts, char *err,
                                   size_t errlen);
struct bpfg_obj *bpfg_obj_open_file(const char *path, const struct bpfg_obj_opts *opts, char *err, size_t errlen);
void bpfg_obj_free(struct bpfg_obj *obj);

int bpfg_obj_map_index(const struct bpfg_obj *obj, const char *name); /* -ENOENT */

const char *bpfg_attach_kind_name(enum bpfg_attach_kind kind);

/* Classifies a libbpf section name. On BPFG_ATTACH_UNSUPPORTED, prog->error
 * says why. Fills kind, sleepable, target_*, syscall of prog (strings
 * allocated); returns 0, or -ENOMEM. Exposed for tests. */
int bpfg_obj_parse_section(const char *section, struct bpfg_obj_prog *prog);

#endif
