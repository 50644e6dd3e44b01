/* bpfgraft-inject: the injector on its own, for debugging a target.
 *
 *   bpfgraft-inject PID                 stop every thread, report, resume
 *   bpfgraft-inject PID --payload FILE --socket @NAME|PATH
 *                                       also map the payload and start its
 *                                       thread, then report what it says
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "injector.h"

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bpfgraft-inject PID [--payload FILE --socket @NAME|PATH]\n");
        return 2;
    }
    pid_t pid = (pid_t)atoi(argv[1]);
    const char *payload = NULL, *sock = NULL;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--payload") == 0)
            payload = argv[i + 1];
        else if (strcmp(argv[i], "--socket") == 0)
            sock = argv[i + 1];
        else {
            fprintf(stderr, "bpfgraft-inject: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (payload && !sock) {
        fprintf(stderr, "bpfgraft-inject: --payload needs --socket\n");
        return 2;
    }

    char err[BPFG_ERRLEN];
    struct bpfg_stopped st;
    int r = bpfg_stop_process(pid, &st, err);
    if (r) {
        fprintf(stderr, "bpfgraft-inject: %s\n", err);
        return 1;
    }
    size_t n = st.nthreads;
    struct bpfg_injected inj;
    int ir = 0;
    if (payload) {
        struct bpfg_inject_opts opts = {
            .payload_path = payload, .server_socket = sock, .token = 0, .server_uid = getuid()};
        ir = bpfg_inject_payload(&st, &opts, &inj, err);
    }
    uint64_t stopped_ns = 0;
    bpfg_resume_process(&st, &stopped_ns);
    printf("process %d: %zu threads stopped for %llu us and resumed\n", (int)pid, n,
           (unsigned long long)stopped_ns / 1000);
    if (!payload)
        return 0;
    if (ir) {
        fprintf(stderr, "bpfgraft-inject: %s\n", err);
        return 1;
    }
    printf("payload mapped at 0x%llx (%llu bytes), params at 0x%llx\n", (unsigned long long)inj.base,
           (unsigned long long)inj.size, (unsigned long long)inj.params);
    /* the payload reports its progress in its parameter block */
    for (int i = 0; i < 50; i++) {
        uint32_t state;
        char msg[128];
        if (bpfg_payload_status(pid, &inj, &state, msg, sizeof(msg)) == 0 && state >= BPFG_PAYLOAD_CONNECTED) {
            printf("payload state %u%s%s\n", state, msg[0] ? ": " : "", msg);
            return state == BPFG_PAYLOAD_CONNECTED ? 0 : 1;
        }
        struct timespec ms = {0, 20000000};
        nanosleep(&ms, NULL);
    }
    printf("payload did not report within 1 s\n");
    return 1;
}
