/* Creates maps with C, dumps them with scripts/mapdump.py (through an
 * inherited fd and through /proc/PID/fd/N) and compares every element.
 *
 *   mapdump_check PATH/TO/mapdump.py      exit 0 when everything matches
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "maps.h"

static int fail(const char *what)
{
    fprintf(stderr, "mapdump_check: %s\n", what);
    return 1;
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", p[i]);
    out[2 * n] = 0;
}

/* Runs the script and checks each line against the map; returns lines seen
 * or -1 on a mismatch. */
static int check(const char *script, struct bpfg_map *m, bool by_path)
{
    struct bpfg_map_info info;
    bpfg_map_get_info(m, &info);
    int fd = dup(bpfg_map_fd(m)); /* dup() clears FD_CLOEXEC: inherited */
    char cmd[512];
    if (by_path)
        snprintf(cmd, sizeof(cmd), "python3 %s /proc/%d/fd/%d", script, getpid(), fd);
    else
        snprintf(cmd, sizeof(cmd), "python3 %s --fd %d", script, fd);
    FILE *f = popen(cmd, "r");
    if (!f) {
        close(fd);
        return -1;
    }
    char line[8192], khex[1100], vhex[8192];
    uint8_t key[512], val[4096];
    int n = 0, bad = 0;
    while (fgets(line, sizeof(line), f)) {
        char *sp = strchr(line, ' ');
        if (!sp || (size_t)(sp - line) != 2 * info.key_size) {
            bad++;
            continue;
        }
        for (uint32_t i = 0; i < info.key_size; i++)
            sscanf(line + 2 * i, "%2hhx", &key[i]);
        if (bpfg_map_lookup_copy(m, key, val) != 0) {
            bad++;
            continue;
        }
        hex(key, info.key_size, khex);
        hex(val, info.value_copy_size, vhex);
        char expect[9300];
        snprintf(expect, sizeof(expect), "%s %s\n", khex, vhex);
        if (strcmp(line, expect) != 0) {
            fprintf(stderr, "got      %sexpected %s", line, expect);
            bad++;
        }
        n++;
    }
    int st = pclose(f);
    close(fd);
    return bad || st != 0 ? -1 : n;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return fail("usage: mapdump_check mapdump.py");
    struct bpfg_map *arr, *hash, *pc, *old4;
    struct bpfg_map_spec sa = {
        .type = BPF_MAP_TYPE_ARRAY, .key_size = 4, .value_size = 12, .max_entries = 8, .name = "arr"};
    struct bpfg_map_spec sh = {
        .type = BPF_MAP_TYPE_HASH, .key_size = 6, .value_size = 10, .max_entries = 50, .name = "hash"};
    struct bpfg_map_spec sp = {
        .type = BPF_MAP_TYPE_PERCPU_HASH, .key_size = 4, .value_size = 4, .max_entries = 10, .name = "pc"};
    if (bpfg_map_create(&sa, &arr) || bpfg_map_create(&sh, &hash) || bpfg_map_create(&sp, &pc) ||
        bpfg_map_create_layout(&sh, 4, &old4)) /* an older server's hash region */
        return fail(bpfg_map_last_error());
    for (uint32_t i = 0; i < 8; i++) {
        uint8_t v[12];
        for (int j = 0; j < 12; j++)
            v[j] = (uint8_t)(i * 16 + j);
        bpfg_map_update_elem(arr, &i, v, BPF_ANY);
    }
    for (uint32_t i = 0; i < 37; i++) {
        uint8_t k[6] = {(uint8_t)i, 1, 2, 3, 4, (uint8_t)(i * 3)}, v[10];
        for (int j = 0; j < 10; j++)
            v[j] = (uint8_t)(i + j * 7);
        bpfg_map_update_elem(hash, k, v, BPF_NOEXIST);
        bpfg_map_update_elem(old4, k, v, BPF_NOEXIST);
    }
    uint8_t k[6] = {5, 1, 2, 3, 4, 15};
    bpfg_map_delete_elem(hash, k); /* 36 left */
    bpfg_map_delete_elem(old4, k);
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t v = 1000 + i;
        bpfg_map_update_elem(pc, &i, &v, BPF_ANY);
    }
    int n;
    if ((n = check(argv[1], arr, false)) != 8)
        return fail("array through --fd");
    if ((n = check(argv[1], hash, false)) != 36)
        return fail("hash through --fd");
    if ((n = check(argv[1], hash, true)) != 36)
        return fail("hash through /proc/PID/fd");
    if ((n = check(argv[1], pc, false)) != 4)
        return fail("percpu hash");
    if ((n = check(argv[1], old4, false)) != 36)
        return fail("hash of layout 4");
    struct bpfg_map *lpm;
    struct bpfg_map_spec sl = {.type = BPF_MAP_TYPE_LPM_TRIE,
                               .key_size = 8,
                               .value_size = 6,
                               .max_entries = 32,
                               .map_flags = BPF_F_NO_PREALLOC,
                               .name = "lpm"};
    if (bpfg_map_create(&sl, &lpm))
        return fail(bpfg_map_last_error());
    for (uint32_t i = 0; i < 20; i++) { /* nested and sibling prefixes */
        uint8_t key[8] = {(uint8_t)(8 + i), 0, 0, 0, 10, (uint8_t)(i * 37), (uint8_t)i, 0}, v[6] = {1, 2, 3, 4, 5, 0};
        v[5] = (uint8_t)i;
        bpfg_map_update_elem(lpm, key, v, BPF_NOEXIST);
    }
    uint8_t dk[8] = {8, 0, 0, 0, 10, 0, 0, 0};
    bpfg_map_delete_elem(lpm, dk); /* 19 left, /8 becomes an intermediate node */
    if ((n = check(argv[1], lpm, false)) != 19)
        return fail("lpm trie");
    bpfg_map_close(arr);
    bpfg_map_close(hash);
    bpfg_map_close(pc);
    bpfg_map_close(old4);
    bpfg_map_close(lpm);
    printf("mapdump_check: array 8, hash 36 (and of layout 4), percpu hash 4, lpm trie 19 elements match\n");
    return 0;
}
