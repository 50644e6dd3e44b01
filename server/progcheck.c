#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>

#include "progcheck.h"
#include "vm.h"

/* Helpers available to programs inside targets (kernel helper ids). */
static const struct {
    uint32_t id;
    const char *name;
} helpers[] = {
    {BPF_FUNC_map_lookup_elem, "map_lookup_elem"},
    {BPF_FUNC_map_update_elem, "map_update_elem"},
    {BPF_FUNC_map_delete_elem, "map_delete_elem"},
    {BPF_FUNC_probe_read, "probe_read"},
    {BPF_FUNC_ktime_get_ns, "ktime_get_ns"},
    {BPF_FUNC_trace_printk, "trace_printk"},
    {BPF_FUNC_get_prandom_u32, "get_prandom_u32"},
    {BPF_FUNC_get_smp_processor_id, "get_smp_processor_id"},
    {BPF_FUNC_tail_call, "tail_call"},
    {BPF_FUNC_get_current_pid_tgid, "get_current_pid_tgid"},
    {BPF_FUNC_get_current_uid_gid, "get_current_uid_gid"},
    {BPF_FUNC_get_current_comm, "get_current_comm"},
    {BPF_FUNC_perf_event_output, "perf_event_output"},
    {BPF_FUNC_get_stackid, "get_stackid"},
    {BPF_FUNC_probe_write_user, "probe_write_user"},
    {BPF_FUNC_probe_read_str, "probe_read_str"},
    {BPF_FUNC_override_return, "override_return"},
    {BPF_FUNC_get_stack, "get_stack"},
    {BPF_FUNC_map_push_elem, "map_push_elem"},
    {BPF_FUNC_map_pop_elem, "map_pop_elem"},
    {BPF_FUNC_map_peek_elem, "map_peek_elem"},
    {BPF_FUNC_probe_read_user, "probe_read_user"},
    {BPF_FUNC_probe_read_user_str, "probe_read_user_str"},
    /* CO-RE reads (BPF_CORE_READ) use the kernel variants; in a target
     * every address is a user address, read the same fault-safe way. */
    {BPF_FUNC_probe_read_kernel, "probe_read_kernel"},
    {BPF_FUNC_probe_read_kernel_str, "probe_read_kernel_str"},
    {BPF_FUNC_ktime_get_boot_ns, "ktime_get_boot_ns"},
    {BPF_FUNC_ringbuf_output, "ringbuf_output"},
    {BPF_FUNC_ringbuf_reserve, "ringbuf_reserve"},
    {BPF_FUNC_ringbuf_submit, "ringbuf_submit"},
    {BPF_FUNC_ringbuf_discard, "ringbuf_discard"},
    {BPF_FUNC_ringbuf_query, "ringbuf_query"},
    {BPF_FUNC_snprintf, "snprintf"},
    {BPF_FUNC_get_func_ip, "get_func_ip"},
};

const char *progcheck_helper_name(uint32_t id)
{
    for (size_t i = 0; i < sizeof(helpers) / sizeof(helpers[0]); i++)
        if (helpers[i].id == id)
            return helpers[i].name;
    return NULL;
}

static uint64_t never_called(uint64_t a, uint64_t b, uint64_t c, uint64_t d, uint64_t e, void *user)
{
    (void)a, (void)b, (void)c, (void)d, (void)e, (void)user;
    return 0;
}

/* Map references must name one of the object's maps. */
static int resolve_map(void *user, uint8_t src_reg, int32_t imm0, int32_t imm1, uint64_t *value)
{
    const struct reg_object *o = user;
    (void)imm1;
    if (src_reg != BPF_PSEUDO_MAP_IDX && src_reg != BPF_PSEUDO_MAP_IDX_VALUE)
        return -EOPNOTSUPP;
    if (imm0 < 0 || (size_t)imm0 >= o->map_cnt)
        return -ENOENT;
    *value = 0x1000 + (uint64_t)imm0;   /* any value: nothing runs here */
    return 0;
}

int progcheck_object(const struct registry *r, const struct reg_object *o, char *err, size_t errlen)
{
    (void)r;
    struct bpfg_vm *vm = bpfg_vm_new();
    if (!vm) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < sizeof(helpers) / sizeof(helpers[0]); i++)
        bpfg_vm_register_helper(vm, helpers[i].id, helpers[i].name, never_called, NULL);
    bpfg_vm_set_ld64_resolver(vm, resolve_map, (void *)o);

    int ret = 0;
    for (size_t i = 0; i < o->obj->prog_cnt && !ret; i++) {
        const struct bpfg_obj_prog *p = &o->obj->progs[i];
        if (!p->insns)
            continue;   /* unsupported section: listed with its reason, never attachable */
        ret = bpfg_vm_load(vm, p->insns, p->insn_cnt);
        if (ret) {
            snprintf(err, errlen, "program '%s' (%s): %s", p->name, p->section, bpfg_vm_error(vm));
            ret = -ENOEXEC;
        }
    }
    bpfg_vm_free(vm);
    return ret;
}
