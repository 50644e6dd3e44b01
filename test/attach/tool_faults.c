/* A "tool" for test_tools.py: run under `bpfgraft run`, its bpf() calls
 * hand the server bad pointers, and it keeps its own SIGSEGV handler.
 * The tool's map calls are served inside it with plain copies that a
 * fault handler guards (payload/fault.c): a bad pointer must give EFAULT
 * as under the kernel, the tool's own handler must still see its own
 * faults, and `tool-faults crash` must die of SIGSEGV as without us.
 * `tool-faults site` says whether glibc's syscall() is rewritten yet. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/bpf.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static sigjmp_buf back;
static volatile uintptr_t unmapped = 8; /* an address no mapping holds (below mmap_min_addr) */
static volatile int own_faults;

static long sys_bpf(int cmd, void *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof(union bpf_attr));
}

static void own_handler(int sig)
{
    own_faults++;
    siglongjmp(back, sig);
}

static int elem(int cmd, int fd, const void *key, void *value)
{
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_fd = (uint32_t)fd;
    a.key = (uint64_t)(uintptr_t)key;
    a.value = (uint64_t)(uintptr_t)value;
    return (int)sys_bpf(cmd, &a);
}

static int report(const char *what, int ok)
{
    printf("%s %s\n", ok ? "ok" : "FAIL", what);
    return ok ? 0 : 1;
}

static int bad_pointers(int fd)
{
    uint32_t k = 3;
    uint64_t v = 0x1122334455667788ull, got = 0;
    int bad = report("update with good pointers", elem(BPF_MAP_UPDATE_ELEM, fd, &k, &v) == 0);
    bad += report("lookup gives the value back", elem(BPF_MAP_LOOKUP_ELEM, fd, &k, &got) == 0 && got == v);
    errno = 0;
    bad += report("lookup into an unmapped value: EFAULT",
                  elem(BPF_MAP_LOOKUP_ELEM, fd, &k, (void *)16) == -1 && errno == EFAULT);
    errno = 0;
    bad += report("update from an unmapped key: EFAULT",
                  elem(BPF_MAP_UPDATE_ELEM, fd, (void *)8, &v) == -1 && errno == EFAULT);
    errno = 0;
    bad += report("lookup into read-only memory: EFAULT",
                  elem(BPF_MAP_LOOKUP_ELEM, fd, &k, (void *)(uintptr_t)own_handler) == -1 && errno == EFAULT);
    errno = 0;
    bad += report("an unmapped attr: EFAULT", sys_bpf(BPF_MAP_LOOKUP_ELEM, (void *)24) == -1 && errno == EFAULT);
    return bad;
}

static int own_handler_runs(void)
{
    struct sigaction sa = {.sa_handler = own_handler}, old;
    int bad = report("sigaction(SIGSEGV) installs", sigaction(SIGSEGV, &sa, NULL) == 0);
    bad += report("sigaction(SIGSEGV) reads back the tool's own handler",
                  sigaction(SIGSEGV, NULL, &old) == 0 && old.sa_handler == own_handler);
    if (sigsetjmp(back, 1) == 0)
        *(volatile int *)unmapped = 1;
    bad += report("the tool's own handler saw its own fault", own_faults == 1);
    return bad;
}

/* "site": how glibc's syscall(), through which libbpf makes every bpf()
 * call, reaches its `syscall` instruction as main starts, before any call
 * of it: its own `mov 0x8(%rsp),%r9; syscall`, or a jmp where the mov was
 * (the rewritten site, payload_abi.h). */
static int site_state(void)
{
    static const uint8_t orig[7] = {0x4c, 0x8b, 0x4c, 0x24, 0x08, 0x0f, 0x05};
    const uint8_t *p = (const uint8_t *)(uintptr_t)&syscall;
    for (int i = 0; i + 7 <= 64; i++) {
        if (memcmp(p + i, orig, sizeof(orig)) == 0)
            return puts("syscall() site: original"), 0;
        if (p[i] == 0xe9 && p[i + 5] == 0x0f && p[i + 6] == 0x05)
            return puts("syscall() site: rewritten"), 0;
    }
    return puts("syscall() site: not found"), 1;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "site") == 0)
        return site_state();
    if (argc > 1 && strcmp(argv[1], "crash") == 0) {
        signal(SIGSEGV, SIG_DFL);
        fflush(stdout);
        *(volatile int *)unmapped = 1;
        return 0;
    }
    union bpf_attr a;
    memset(&a, 0, sizeof(a));
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 8;
    a.max_entries = 16;
    int fd = (int)sys_bpf(BPF_MAP_CREATE, &a);
    if (fd < 0) {
        perror("BPF_MAP_CREATE");
        return 2;
    }
    int bad = bad_pointers(fd) + own_handler_runs();
    printf("%d failed\n", bad);
    return bad ? 1 : 0;
}
