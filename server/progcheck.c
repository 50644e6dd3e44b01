#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "progcheck.h"
#include "objload.h"
#include "verifier.h"
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
    {BPF_FUNC_get_attach_cookie, "get_attach_cookie"},
    {BPF_FUNC_send_signal, "send_signal"},
    {BPF_FUNC_send_signal_thread, "send_signal_thread"},
    {BPF_FUNC_ktime_get_coarse_ns, "ktime_get_coarse_ns"},
    {BPF_FUNC_strncmp, "strncmp"},
    {BPF_FUNC_get_func_arg, "get_func_arg"},
    {BPF_FUNC_get_func_ret, "get_func_ret"},
    {BPF_FUNC_spin_lock, "spin_lock"},
    {BPF_FUNC_spin_unlock, "spin_unlock"},
    /* run as bytecode stubs (jit/callbacks.h) */
    {BPF_FUNC_loop, "loop"},
    {BPF_FUNC_for_each_map_elem, "for_each_map_elem"},
};

const char *progcheck_helper_name(uint32_t id)
{
    for (size_t i = 0; i < sizeof(helpers) / sizeof(helpers[0]); i++)
        if (helpers[i].id == id)
            return helpers[i].name;
    return NULL;
}

static struct progcheck_options options = {
    /* bpfgraft runs programs inside the traced process itself: writing its
     * memory and overriding a uprobed function's return are features
     * (samples/errinject), not escapes; --verifier=kernel adds the kernel's
     * verdict. */
    .allow_probe_write_user = true,
    .allow_override_return = true,
    .kernel_check = false,
};

void progcheck_set_options(const struct progcheck_options *o)
{
    options = *o;
}

void progcheck_get_options(struct progcheck_options *o)
{
    *o = options;
}

/* Every loadable program of the object must pass the verifier. */
int progcheck_object(const struct registry *r, const struct reg_object *o, char *err, size_t errlen)
{
    (void)r;
    int ret = 0;
    struct bpfg_verify_result *res = malloc(sizeof(*res));
    if (!res) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < o->obj->prog_cnt && !ret; i++) {
        const struct bpfg_obj_prog *p = &o->obj->progs[i];
        if (!p->insns || p->kernel)
            continue; /* unsupported section or a kernel program (the kernel's verifier checks it) */
        struct bpfg_verify_env env;
        struct bpfg_verify_map *maps;
        int e = bpfg_verify_env_for_prog(o->obj, p, &env, &maps);
        if (e == -EOPNOTSUPP) {
            free(maps);
            continue;
        }
        if (e) {
            free(maps);
            snprintf(err, errlen, "out of memory");
            ret = e;
            break;
        }
        env.allow_probe_write_user = options.allow_probe_write_user;
        env.allow_override_return = options.allow_override_return;
        env.kernel_check = options.kernel_check;
        e = bpfg_verify(p->insns, p->insn_cnt, &env, res);
        free(maps);
        if (e == -ENOMEM) {
            snprintf(err, errlen, "out of memory");
            ret = e;
        } else if (e) {
            snprintf(err, errlen, "program '%s' (%s): %s", p->name, p->section, res->msg);
            ret = -ENOEXEC;
        }
    }
    free(res);
    return ret;
}
