/* Handles on kernel map fds (maps/map_kernel.c): what a userspace program
 * sharing a map with kernel programs sees, checked against the kernel's
 * own view of the same map through libbpf. */
#define _GNU_SOURCE
#include <bpf/bpf.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "criterion_facts.h"
#include "maps.h"

static void needs_kernel_maps(void)
{
    test_needs("bpf-maps");
}

TestSuite(maps_kernelfd, .init = needs_kernel_maps);

static int kcreate(uint32_t type, uint32_t vs, uint32_t n, uint32_t flags)
{
    LIBBPF_OPTS(bpf_map_create_opts, o, .map_flags = flags);
    int fd = bpf_map_create(type, "kfd", 4, vs, n, &o);
    cr_assert_geq(fd, 0, "kernel map create type %u: %s", type, strerror(errno));
    return fd;
}

Test(maps_kernelfd, hash_through_bpf)
{
    int kfd = kcreate(BPF_MAP_TYPE_HASH, 8, 64, 0);
    struct bpfg_map *m;
    cr_assert_eq(bpfg_map_open_fd(kfd, &m), 0, "%s", bpfg_map_last_error());
    cr_assert(bpfg_map_is_kernel(m));
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    cr_assert_eq(info.type, BPF_MAP_TYPE_HASH);
    cr_assert_eq(info.max_entries, 64);
    cr_assert_str_eq(info.name, "kfd");

    uint32_t k = 7;
    uint64_t v = 1234, got = 0;
    cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_NOEXIST), 0);
    cr_assert_eq(bpf_map_lookup_elem(kfd, &k, &got), 0, "the kernel sees the program's update");
    cr_assert_eq(got, 1234);
    cr_assert_eq(bpfg_map_update_elem(m, &k, &v, BPF_NOEXIST), -EEXIST, "the kernel's errno");
    v = 99;
    cr_assert_eq(bpf_map_update_elem(kfd, &k, &v, BPF_ANY), 0);
    uint64_t *p = bpfg_map_lookup_elem(m, &k);
    cr_assert_not_null(p);
    cr_assert_eq(*p, 99, "the program sees the kernel's update");
    *p = 5; /* a copy: documented, the kernel keeps 99 */
    cr_assert_eq(bpf_map_lookup_elem(kfd, &k, &got), 0);
    cr_assert_eq(got, 99);

    uint32_t k2 = 8, next, seen = 0;
    cr_assert_eq(bpfg_map_update_elem(m, &k2, &v, BPF_ANY), 0);
    for (const uint32_t *prev = NULL; bpfg_map_get_next_key(m, prev, &next) == 0; prev = &k, k = next)
        seen |= 1u << (next - 7);
    cr_assert_eq(seen, 3, "get_next_key walks both keys");
    cr_assert_eq(bpfg_map_delete_elem(m, &k2), 0);
    cr_assert_eq(bpf_map_lookup_elem(kfd, &k2, &got), -ENOENT, "deleted in the kernel too");
    cr_assert_null(bpfg_map_lookup_elem(m, &k2));
    bpfg_map_close(m);
    close(kfd);
}

Test(maps_kernelfd, mmapable_array_in_place)
{
    int kfd = kcreate(BPF_MAP_TYPE_ARRAY, 8, 16, BPF_F_MMAPABLE);
    struct bpfg_map *m;
    cr_assert_eq(bpfg_map_open_fd(kfd, &m), 0, "%s", bpfg_map_last_error());
    uint32_t k = 3;
    uint64_t *p = bpfg_map_lookup_elem(m, &k), got = 0;
    cr_assert_not_null(p);
    __atomic_fetch_add(p, 41, __ATOMIC_RELAXED);
    cr_assert_eq(bpf_map_lookup_elem(kfd, &k, &got), 0);
    cr_assert_eq(got, 41, "a write through the pointer is the kernel's value");
    uint64_t v = 7;
    cr_assert_eq(bpf_map_update_elem(kfd, &k, &v, BPF_ANY), 0);
    cr_assert_eq(*p, 7);
    size_t size;
    cr_assert_eq(bpfg_map_value_area(m, &size, NULL), (void *)(p - 3), "the value area is the kernel's pages");
    cr_assert_eq(size, 16 * 8);
    k = 16;
    cr_assert_null(bpfg_map_lookup_elem(m, &k), "out of range");
    bpfg_map_close(m);
    close(kfd);
}

Test(maps_kernelfd, refused_types_say_why)
{
    uint32_t types[] = {BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_PERCPU_HASH};
    for (size_t i = 0; i < 2; i++) {
        int kfd = kcreate(types[i], 8, 4, 0);
        struct bpfg_map *m = NULL;
        cr_assert_eq(bpfg_map_open_fd(kfd, &m), -EOPNOTSUPP);
        cr_assert(strstr(bpfg_map_last_error(), bpfg_map_type_name(types[i])), "%s", bpfg_map_last_error());
        close(kfd);
    }
    struct bpfg_map_spec s = {.type = BPF_MAP_TYPE_HASH, .key_size = 4, .value_size = 8, .max_entries = 4};
    struct bpfg_map *ours;
    cr_assert_eq(bpfg_map_create(&s, &ours), 0);
    cr_assert_not(bpfg_map_is_kernel(ours), "a region is not a kernel map");
    bpfg_map_close(ours);
}
