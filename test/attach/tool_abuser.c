/* A hostile "tool" for test_tools.py: run under `bpfgraft run`, it writes
 * garbage into every socket it holds (the tool channel among them), then
 * makes a bpf() call and exits. bpfgraftd must refuse it and go on. */
#define _GNU_SOURCE
#include <linux/bpf.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    /* header: len, type, flags, seq, status (abi/payload_abi.h bpfg_pmsg_hdr) */
    struct {
        uint32_t len;
        uint16_t type, flags;
        uint32_t seq;
        int32_t status;
    } bad[] = {
        {0xffffffffu, 64, 0, 1, 0}, /* longer than any message may be */
        {3, 65, 0, 2, 0},           /* shorter than its own header */
        {16 + 4, 67, 0, 3, 0},      /* ATTACH with a 4-byte body */
        {16, 999, 0, 4, 0},         /* unknown request */
    };
    int hit = 0;
    signal(SIGPIPE, SIG_IGN); /* the server hangs up on it, as it should */
    for (int fd = 3; fd < 256; fd++) {
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
            continue;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
            if (write(fd, &bad[i], sizeof(bad[i])) > 0)
                hit++;
        char junk[64];
        memset(junk, 0xa5, sizeof(junk));
        if (write(fd, junk, sizeof(junk)) > 0)
            hit++;
    }
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 8;
    a.max_entries = 4;
    long r = syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof(a));
    printf("garbage writes %d, map create after: %ld\n", hit, r);
    return 0;
}
