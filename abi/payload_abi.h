/* The contract between the injector/server (outside the target) and the
 * payload (inside it): ABI version 3. See abi/README.md.
 * Version 2 (server restarts, server/README.md "Restarts"): the payload
 * outlives its server, reconnects and says HELLO again with
 * BPFG_HELLO_F_RECONNECT and its inventory; params gain the grace period.
 * Version 3 (statistics, section 9): HELLO's extension gains stats_table.
 *
 * The payload is a freestanding, position-independent ELF shared object
 * (no libc, no TLS, no DT_NEEDED, only R_X86_64_RELATIVE relocations),
 * compiled with -mgeneral-regs-only so that running it on a target thread
 * never disturbs that thread's FPU/SSE/AVX state. The injector maps it from
 * a memfd into the target with remote mmap calls, applies its relocations
 * through /proc/PID/mem, fills `bpfg_payload_params` and starts the payload
 * thread with a raw clone(): no libc code ever runs on a hijacked thread.
 *
 * The injector resolves a few of the target's libc symbols (struct
 * bpfg_libc_imports): the payload only reads them (which libc, where glibc
 * keeps a thread's tid); it never calls into the target's libc.
 *
 * Topics, in this order:
 *   1. loading and startup      params, exported symbols, the clone trampoline
 *   2. uprobe hooks             stubs, pt_regs, hook table, uretprobe shadow stacks
 *   3. messages                 framing, message types, HELLO, MAP, PROG, HOOK, ...
 *   4. native code              MAP replies with addresses, PROG_CODE
 *   5. syscall hooks            Syscall User Dispatch, SYSCALL_HOOK / _OFF / _UNHOOK, EXEC
 *   6. rewritten syscall sites  the fast path (SYS_SITES)
 *   7. tool mode                `bpfgraft run -- TOOL` and its tool channel
 *   8. user stacks              CFI unwind tables for bpf_get_stack (USTACK)
 *   9. statistics               run counts and times, hook hits (stats table)
 */
#ifndef BPFGRAFT_PAYLOAD_ABI_H
#define BPFGRAFT_PAYLOAD_ABI_H

#include <stddef.h>
#include <stdint.h>

/* ==== 1. loading and startup ==== */

#define BPFG_PAYLOAD_MAGIC 0x47465042u /* "BPFG" */
#define BPFG_PAYLOAD_ABI_VERSION 3

/* Symbols the injector looks up in the payload's .dynsym. */
#define BPFG_PAYLOAD_SYM_PARAMS "bpfg_payload_params"      /* struct bpfg_payload_params */
#define BPFG_PAYLOAD_SYM_START "bpfg_payload_start"        /* clone trampoline, see below */
#define BPFG_PAYLOAD_SYM_UPROBE "bpfg_uprobe_entry"        /* common uprobe entry (asm) */
#define BPFG_PAYLOAD_SYM_URETPROBE "bpfg_uretprobe_return" /* return trampoline (asm) */

/* The injector's rescue code (injector/remote.c): `syscall`, then at
 * offset BPFG_RESCUE_RESTORE the path that puts the thread back from a
 * frame on its stack. The payload carries a copy in its text: inside the
 * exempt region of Syscall User Dispatch, so a thread whose dispatch is on
 * runs injected syscalls there and never raises SIGSYS with every signal
 * blocked (fatal), whatever its selector says or becomes. The bytes, for
 * an initializer: `{BPFG_RESCUE_CODE}`. */
#define BPFG_RESCUE_CODE                                                        \
    0x0f, 0x05,                             /* syscall */                       \
        0xb8, 0x0e, 0x00, 0x00, 0x00,       /* mov $14,%eax (rt_sigprocmask) */ \
        0xbf, 0x02, 0x00, 0x00, 0x00,       /* mov $2,%edi (SIG_SETMASK) */     \
        0x48, 0x89, 0xe6,                   /* mov %rsp,%rsi */                 \
        0x31, 0xd2,                         /* xor %edx,%edx */                 \
        0x41, 0xba, 0x08, 0x00, 0x00, 0x00, /* mov $8,%r10d */                  \
        0x0f, 0x05,                         /* syscall */                       \
        0x48, 0x8d, 0x64, 0x24, 0x08,       /* lea 8(%rsp),%rsp */              \
        0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, /* pop r15 r14 r13 */               \
        0x41, 0x5c, 0x5d, 0x5b,             /* pop r12 rbp rbx */               \
        0x41, 0x5b, 0x41, 0x5a, 0x41, 0x59, /* pop r11 r10 r9 */                \
        0x41, 0x58, 0x58, 0x59, 0x5a,       /* pop r8 rax rcx rdx */            \
        0x5e, 0x5f, 0x9d,                   /* pop rsi rdi; popfq */            \
        0xc2, 0x80, 0x00                    /* ret $128 */
#define BPFG_RESCUE_RESTORE 2

/* Symbols of the target's glibc; pthread_mutex_* are not called (the maps
 * have their own locks): non-zero means "glibc, its TCB at %fs". */
struct bpfg_libc_imports {
    uint64_t pthread_mutex_lock;
    uint64_t pthread_mutex_trylock;
    uint64_t pthread_mutex_unlock;
    uint64_t pthread_mutex_consistent;
    uint64_t thread_db_pthread_tid; /* glibc's {bits, count, offset} of struct pthread's tid (0: unknown) */
};

enum bpfg_payload_state {
    BPFG_PAYLOAD_LOADED = 0,    /* written by the injector */
    BPFG_PAYLOAD_RUNNING = 1,   /* payload thread started */
    BPFG_PAYLOAD_CONNECTED = 2, /* talking to the server */
    BPFG_PAYLOAD_FAILED = 3,    /* see error[] */
    BPFG_PAYLOAD_EXITED = 4,    /* detached: the payload thread is gone */
    BPFG_PAYLOAD_ORPHAN = 5,    /* the server is gone: programs run, reconnecting */
    BPFG_PAYLOAD_INERT = 6,     /* orphaned longer than orphan_grace_ms: hooks
                                 * only resume, programs do not run; reconnecting */
};

/* The patch journal: a code patch of more than one byte is written
 * int3-first (as the kernel's text_poke_bp): an int3 over its first byte,
 * then the rest, then the first byte. Before the first write the server
 * records each write here (site, bytes before and after, where a thread
 * that meets the int3 continues) and sets step; after the last it sets
 * step back to 0. A thread that meets one of these int3s while step is
 * not 0 continues at resume (the hook's stub: as if the jmp were whole).
 * A server that finds step not 0 in a payload it adopts (its predecessor
 * was killed mid-patch) writes every entry's bytes to the end, the same
 * way. step counts the protocol's writes done (for the logs). */
#define BPFG_JOURNAL_WRITES 2 /* a hop: its slot and its site */
#define BPFG_JOURNAL_BYTES 16

struct bpfg_patch_write {
    uint64_t site;
    uint64_t resume; /* where a thread at the int3 continues */
    uint32_t len;
    uint32_t pad;
    uint8_t before[BPFG_JOURNAL_BYTES];
    uint8_t after[BPFG_JOURNAL_BYTES];
};

struct bpfg_patch_journal {
    volatile uint32_t step; /* 0: no patch under way */
    uint32_t nwrites;
    struct bpfg_patch_write w[BPFG_JOURNAL_WRITES];
};

struct bpfg_payload_params {
    uint32_t magic;     /* BPFG_PAYLOAD_MAGIC */
    uint32_t version;   /* BPFG_PAYLOAD_ABI_VERSION */
    uint64_t load_base; /* where the payload image starts */
    uint64_t load_size;
    uint64_t stack_base; /* the payload thread's stack mapping */
    uint64_t stack_size;
    char server_socket[108]; /* unix socket of bpfgraftd */
    uint32_t server_uid;     /* the server's uid: checked with SO_PEERCRED */
    uint64_t token;          /* identifies this attach to the server */
    struct bpfg_libc_imports libc;
    uint64_t handler_stacks;      /* PROT_NONE reservation of BPFG_HANDLER_STACKS_SIZE bytes: */
    uint64_t handler_stacks_size; /* the per-thread handler stacks (below) */
    /* Written by the payload, read by the injector/server. */
    volatile uint32_t state; /* enum bpfg_payload_state */
    volatile int32_t payload_tid;
    char error[128];
    /* Version 2, written by the injector. When the server connection is
     * lost the payload keeps its hooks and programs running and tries to
     * reconnect every reconnect_ms (0: 100); after orphan_grace_ms without
     * a server (0: never) it goes inert (BPFG_PAYLOAD_INERT); a HOOK from
     * a server that adopted it re-arms it (no longer inert). */
    uint32_t reconnect_ms;
    uint32_t orphan_grace_ms;
    /* Version 3, written by the server (through /proc/PID/mem, every
     * thread stopped), read by the payload's SIGTRAP handler and by a
     * restarted server: the code patch under way (below). */
    struct bpfg_patch_journal journal;
};

/* Handlers never run on the target's stack (it may be an 8 KiB signal
 * stack, a goroutine's or a fiber's): thread slot i (BPFG_MAX_THREADS
 * below) owns the stack at handler_stacks + i * BPFG_HANDLER_STACK_STRIDE,
 * a guard page then BPFG_HANDLER_STACK_SIZE bytes, made writable by the
 * payload the first time a thread of that slot needs it. The injector
 * reserves the region and unmaps it with the payload. */
#define BPFG_HANDLER_STACK_SIZE (128u << 10)
#define BPFG_HANDLER_STACK_GUARD 4096u
#define BPFG_HANDLER_STACK_STRIDE (BPFG_HANDLER_STACK_SIZE + BPFG_HANDLER_STACK_GUARD)
#define BPFG_HANDLER_STACKS_SIZE ((uint64_t)BPFG_HANDLER_STACK_STRIDE * BPFG_MAX_THREADS)

/* bpfg_payload_start: entered by the injector on a hijacked thread with
 *   rax = SYS_clone, rdi = clone flags, rsi = new stack top,
 *   r13 = &bpfg_payload_params
 * It executes `syscall`; the parent then hits int3 (the injector takes it
 * back and restores its registers); the child calls bpfg_payload_main(r13)
 * (a direct call: r12 is not used) on the new stack with every signal
 * blocked, and exits the thread if that ever returns. */

/* ==== 2. uprobe hooks ==== */

/* Uprobe stubs (generated outside the target, placed within +-2 GiB of the
 * probed site):
 *     site:  jmp rel32 stub ; nop padding over the displaced bytes
 *     stub:  push imm32 hook_index ; jmp qword [rip+0] ; .quad bpfg_uprobe_entry
 *     resume: <displaced instructions, relocated> ; jmp qword [rip+0] ; .quad site+len
 * A site inside a function (not its entry) may be the code of a leaf
 * function using its red zone: its stub first steps over it and pushes
 * the index with BPFG_HOOK_INDEX_MID set, and the resume code steps back:
 *     stub:  lea -128(%rsp),%rsp ; push imm32 hook_index|MID ; jmp qword [rip+0] ; .quad entry
 *     resume: lea 128(%rsp),%rsp ; <displaced instructions> ; jmp qword [rip+0] ; .quad site+len
 * (pt_regs.sp is then the site's own; bpf_override_return is ignored).
 * bpfg_uprobe_entry builds a kernel-layout struct pt_regs on the stack
 * (orig_ax = hook index), runs the hook's programs, and either continues
 * at the hook's resume address or, after bpf_override_return, returns to
 * the caller with rax set. */

/* The context of uprobe programs: the kernel's x86-64 struct pt_regs
 * layout, so PT_REGS_PARM1(ctx) etc. of bpf_tracing.h work unchanged.
 * orig_ax is the hook index (uretprobe: -1); ip is the hook's site (for a
 * return program: the address the function returns to); sp is the stack
 * pointer the function saw (for a return program: after its ret). */
struct bpfg_pt_regs {
    uint64_t r15, r14, r13, r12, bp, bx, r11, r10, r9, r8;
    uint64_t ax, cx, dx, si, di, orig_ax, ip, cs, flags, sp, ss;
};

#define BPFG_MAX_HOOKS 512
#define BPFG_HOOK_MAX_PROGS 4 /* per kind and hook slot */
#define BPFG_MAX_THREADS 1024
#define BPFG_SHADOW_DEPTH 32

#define BPFG_HOOK_INDEX_MID 0x40000000u /* pushed with the index: the stub stepped over the red zone */

/* One slot of the hook table (hello.hook_table, BPFG_MAX_HOOKS slots).
 * Written only by the payload thread. A slot may carry up to
 * BPFG_HOOK_MAX_PROGS entry programs and as many return programs: one
 * HOOK message adds one program of its kind; UNHOOK removes all of them.
 * site and resume stay valid after UNHOOK, so a thread still inside the
 * stub continues correctly; a slot's site may only change once it has no
 * program (and the server has restored the site and freed the stub). */
struct bpfg_hook_slot {
    uint64_t site;
    uint64_t resume;
    uint64_t entry_progs[BPFG_HOOK_MAX_PROGS]; /* payload-internal pointers, 0 = none */
    uint64_t ret_progs[BPFG_HOOK_MAX_PROGS];
    uint64_t misses;  /* runs skipped: recursion, thread table or shadow stack full */
    uint64_t dropped; /* uretprobe frames left by an exception or longjmp
                       * (their programs did not run) */
    /* bpf_get_attach_cookie of the program at the same index; written
     * before the program pointer is published */
    uint64_t entry_cookies[BPFG_HOOK_MAX_PROGS];
    uint64_t ret_cookies[BPFG_HOOK_MAX_PROGS];
};

/* uretprobes: per-thread shadow stacks of replaced return addresses, in a
 * table (hello.thread_table) keyed by the thread pointer (the fs base,
 * glibc's TCB). An entry says: the return address at stack address `slot`
 * was `ret` and now is the return trampoline of its thread: every entry of
 * thread slot i's stack[] is replaced by BPFG_UNWIND_RET(ret0, i), ret0
 * being the word at hello.uret_trampolines (0 until the first uretprobe;
 * the unwind page, below). (Unwind pages of version 1 had one trampoline
 * per depth: entry k was BPFG_UNWIND_RET(ret0, k).)
 *
 * Detaching with uretprobes: after DETACH has been answered (the payload
 * thread is gone and no handler runs any more) and with the process
 * stopped, the server walks every slot with owner != 0 and, for its
 * entries from stack[depth-1] down to stack[0], writes `ret` back to
 * `slot` when the word at `slot` still equals the entry's trampoline, and
 * only for the first (topmost) entry of a given slot address. Entries whose
 * word no longer holds the trampoline belong to frames skipped by longjmp
 * or exceptions and are ignored. A thread whose rip is inside the payload
 * (bpfg_unload_payload says -EBUSY) must be let run a little and retried. */
struct bpfg_shadow_entry {
    uint64_t ret;
    uint64_t slot;
    uint32_t hook_index;
    uint32_t pad;
};

struct bpfg_thread_slot {
    uint64_t owner; /* thread pointer; 0 = free. Slots are never freed:
                               * an exited thread's slot is reused by the next
                               * thread glibc gives the same TCB */
    uint32_t seq;   /* odd while a handler runs on the thread */
    uint32_t depth; /* live entries in stack[] */
    uint64_t misses;
    uint64_t listed; /* payload-internal: bit 1 handler stack writable */
    struct bpfg_shadow_entry stack[BPFG_SHADOW_DEPTH];
};

/* The unwind page (payload/README.md, "Return trampolines and unwinders"):
 * pages of a memfd named BPFG_UNWIND_NAME, mapped private, that outlive
 * the payload (the target's unwinders keep pointers into them once
 * registered). The first, rw-, is struct bpfg_unwind_data; the rest, r-x,
 * holds BPFG_UNWIND_TRAMPS return trampolines of BPFG_UNWIND_ENTRY bytes,
 * one per thread slot (so the return path needs no lookup of its thread),
 * and their unwind tables (one FDE for them all, whose return-address
 * rule reads the thread slot from the word at the trampoline's sp - 8 and
 * searches that slot's shadow stack for the entry whose slot is sp - 8).
 * A later payload of the same layout (magic, version) adopts the page
 * instead of mapping another. */
#define BPFG_UNWIND_NAME "bpfgraft-unwind"
#define BPFG_UNWIND_MAGIC 0x646e776e75676662ull /* "bfgunwnd" */
#define BPFG_UNWIND_VERSION 2                   /* 1: a trampoline per shadow-stack depth */
#define BPFG_UNWIND_ENTRY 16
#define BPFG_UNWIND_TRAMPS BPFG_MAX_THREADS
#define BPFG_UNWIND_V1_TRAMPS BPFG_SHADOW_DEPTH /* a version 1 page's */
/* The r-x part (BPFG_UNWIND_TEXT bytes after the rw page): the trampolines
 * at 0, nongnu libunwind's table at _TABLE, the .eh_frame at _EH_FRAME, and
 * at _EH_FRAME_GCC the one given to libgcc, whose FDE puts the CFA 8 bytes
 * higher and the caller's rsp at CFA - 8 (libgcc identifies a frame by its
 * CFA; a trampoline frame of size 0 would share its caller's). */
#define BPFG_UNWIND_TEXT 0x6000
#define BPFG_UNWIND_TABLE 0x4000
#define BPFG_UNWIND_EH_FRAME 0x4400
#define BPFG_UNWIND_EH_FRAME_GCC 0x5000
#define BPFG_UNWIND_RET(ret0, i) ((ret0) + (uint64_t)(i)*BPFG_UNWIND_ENTRY)
#define BPFG_UNWIND_GCC_MAX 4 /* libgcc unwinders registered with (libgcc_s, static copies) */
#define BPFG_UNWIND_OTHER_MAX 2
#define BPFG_UNWIND_PATH_MAX 128

struct bpfg_unwind_data {
    uint64_t magic;
    uint32_t version;
    uint32_t page_size;
    uint64_t common;  /* where the trampolines jump: the payload's bpfg_uretprobe_return */
    uint64_t threads; /* the thread table the search reads (0: none, every search fails) */
    uint64_t zero;    /* what a failed search yields: return address 0, end of stack */
    /* The registration functions each unwinder was given the tables with
     * (0: free), and the storage it keeps for them. */
    uint64_t gcc_with[BPFG_UNWIND_GCC_MAX];
    uint64_t gcc_object[BPFG_UNWIND_GCC_MAX][8]; /* libgcc's struct object */
    uint64_t llvm_with[BPFG_UNWIND_OTHER_MAX];
    uint64_t unw_with[BPFG_UNWIND_OTHER_MAX];
    uint64_t unw_info[BPFG_UNWIND_OTHER_MAX][12]; /* libunwind's unw_dyn_info_t */
    /* For gdb: a namespace of its own at the end of glibc's r_debug chain
     * (struct r_debug_extended, glibc 2.35+) listing one struct link_map,
     * the ELF file the server writes (symbols, .eh_frame). r_map is 0 while
     * no payload uses the page (the server clears it at detach). */
    uint64_t gdb_head; /* the chain it was appended to (0: not appended) */
    uint64_t gdb_node[6];
    uint64_t gdb_map[5];
    char gdb_path[BPFG_UNWIND_PATH_MAX];
};
#define BPFG_UNWIND_GDB_R_MAP (offsetof(struct bpfg_unwind_data, gdb_node) + 8)

/* ==== 3. payload <-> server messages over the unix socket ====
 * Every message: struct bpfg_pmsg_hdr, then len - sizeof(hdr) body bytes.
 * Fds (map memfds) travel with SCM_RIGHTS on the header's bytes. All
 * integers are little endian; strings are NUL-terminated inside the body. */

struct bpfg_pmsg_hdr {
    uint32_t len;  /* whole message, header included */
    uint16_t type; /* enum bpfg_pmsg_type */
    uint16_t flags;
    uint32_t seq;   /* server requests: echoed in the reply */
    int32_t status; /* replies: 0 or a negative errno */
};

#define BPFG_PMSG_MAX (16u << 20)

/* Message types: the enum, then the later ones, defined as macros (the
 * tool channel's requests, 64 and up, are in section 7). */
enum bpfg_pmsg_type {
    /* payload -> server */
    BPFG_PMSG_HELLO = 1, /* struct bpfg_pmsg_hello(_ext) */
    BPFG_PMSG_REPLY = 2, /* status in header; body: text explaining a failure */
    BPFG_PMSG_TRACE = 3, /* struct bpfg_pmsg_trace + text */
    /* server -> payload */
    BPFG_PMSG_MAP = 16,       /* struct bpfg_pmsg_map, memfd attached */
    BPFG_PMSG_PROG = 17,      /* struct bpfg_pmsg_prog + insns */
    BPFG_PMSG_HOOK = 18,      /* struct bpfg_pmsg_hook: activate a hook slot */
    BPFG_PMSG_UNHOOK = 19,    /* struct bpfg_pmsg_unhook */
    BPFG_PMSG_UNMAP = 20,     /* struct bpfg_pmsg_unmap: forget a map/program */
    BPFG_PMSG_DETACH = 21,    /* no body: release everything, exit the thread */
    BPFG_PMSG_PING = 22,      /* no body */
    BPFG_PMSG_PROG_CODE = 23, /* struct bpfg_pmsg_prog_code + a PROG body, code memfd attached */
};
#define BPFG_PMSG_EXEC 8          /* payload -> server, async: struct bpfg_pmsg_exec + path */
#define BPFG_PMSG_SYS_SITES 9     /* payload -> server, async: uint64_t sites[] (section 6) */
#define BPFG_PMSG_USTACK_STALE 10 /* payload -> server, async, no body: a stack met code the tables lack (8) */
#define BPFG_PMSG_SYSCALL_HOOK 32 /* struct bpfg_pmsg_syscall_hook; reply: struct bpfg_pmsg_syscall_reply */
#define BPFG_PMSG_SYSCALL_OFF 33  /* no body; reply: struct bpfg_pmsg_syscall_off_reply */
#define BPFG_PMSG_TOOL_MODE \
    34 /* struct bpfg_pmsg_tool_mode, channel fd attached;
                                      * reply: struct bpfg_pmsg_syscall_reply */
#define BPFG_PMSG_SYSCALL_UNHOOK \
    35                      /* struct bpfg_pmsg_syscall_unhook: remove one syscall
                                      * program (all its kinds/numbers); reply: empty */
#define BPFG_PMSG_PIDNS 36  /* struct bpfg_pmsg_pidns + tid pairs; reply: empty */
#define BPFG_PMSG_UNWIND 37 /* struct bpfg_pmsg_unwind; reply: uint64_t unwind page (before a uretprobe's HOOK) */
#define BPFG_PMSG_TIMER 45  /* struct bpfg_pmsg_timer; reply: empty */

/* TIMER: run program prog_id on the payload thread every period_ns (a
 * perf_event program on a cpu-clock event: bpftrace's interval:), with
 * struct bpfg_perf_event_ctx as its context; period_ns 0 stops it.
 * Unloading the program (UNMAP) stops it too. */
struct bpfg_pmsg_timer {
    uint32_t prog_id;
    uint32_t pad;
    uint64_t period_ns;
};

/* The context of such a run, laid out as the kernel's struct
 * bpf_perf_event_data (no registers: no thread was interrupted). */
struct bpfg_perf_event_ctx {
    struct bpfg_pt_regs regs;
    uint64_t sample_period;
    uint64_t addr;
};
/* A server that adopted a tool (after a restart) gives it a new tool
 * channel: no body, the channel fd attached; the payload drops the old
 * channel and serves the tool's requests on the new one; reply: empty. */
#define BPFG_PMSG_TOOL_CHAN 38
#define BPFG_PMSG_USTACK 39 /* no body, unwind tables memfd attached (section 8); reply: empty */

/* HELLO: the first message of the payload. Its body is struct
 * bpfg_pmsg_hello_ext, which starts with struct bpfg_pmsg_hello and adds
 * the uretprobe tables (a server reading an older payload sees a shorter
 * hello, only struct bpfg_pmsg_hello: check hdr.len):
 *     uint64_t thread_table;      address of struct bpfg_thread_slot[max_threads]
 *     uint32_t max_threads;       BPFG_MAX_THREADS
 *     uint32_t shadow_depth;      BPFG_SHADOW_DEPTH
 *     uint64_t uretprobe_handler; unused by the server, diagnostics only
 *     uint64_t uret_trampolines;  address of the payload's word holding the
 *                                 return address of thread slot 0's trampoline
 *     uint64_t stats_table;       address of struct bpfg_stats_table (9.) */
struct bpfg_pmsg_hello {
    uint32_t pid;
    uint32_t abi_version;
    uint64_t token;
    uint64_t load_base;
    uint64_t uprobe_entry;     /* address of bpfg_uprobe_entry */
    uint64_t uretprobe_return; /* address of bpfg_uretprobe_return */
    uint64_t hook_table;       /* address of the hook slot table */
    uint32_t max_hooks;
    uint32_t nr_cpus;
};

struct bpfg_pmsg_hello_ext {
    struct bpfg_pmsg_hello base;
    uint64_t thread_table;
    uint32_t max_threads;
    uint32_t shadow_depth;
    uint64_t uretprobe_handler;
    uint64_t uret_trampolines;
    uint64_t stats_table; /* version 3 */
};

/* HELLO of a payload that lost its server and connected to a new one
 * (hdr.flags BPFG_HELLO_F_RECONNECT): token is the one of the original
 * attach; the body is struct bpfg_pmsg_hello_ext, then this struct, then
 * nmaps struct bpfg_hello_map and nprogs struct bpfg_hello_prog: what the
 * payload holds, for a server that has no record of it. The server
 * answers nothing; its first request follows when it has adopted the
 * payload (or DETACH, if it will not). */
#define BPFG_HELLO_F_RECONNECT 1u
#define BPFG_HELLO_F_INERT 2u /* the grace period ran out: no program is hooked any more */

struct bpfg_hello_adopt {
    uint64_t params;    /* address of struct bpfg_payload_params (its sizes, stacks) */
    uint64_t orphan_ms; /* how long the payload has been without a server */
    uint32_t nmaps, nprogs;
    uint64_t trap_saved_action; /* as in struct bpfg_pmsg_hook_reply; 0: SIGTRAP not taken (ABI 3) */
};

/* ABI 2's HELLO: struct bpfg_pmsg_hello_ext without stats_table, and (on a
 * reconnect) struct bpfg_hello_adopt without trap_saved_action; the map
 * and program entries are the same. A server converts it by these sizes. */
#define BPFG_HELLO_EXT_SIZE_V2 offsetof(struct bpfg_pmsg_hello_ext, stats_table)
#define BPFG_HELLO_ADOPT_SIZE_V2 offsetof(struct bpfg_hello_adopt, trap_saved_action)

struct bpfg_hello_map {
    uint32_t map_id, pad;
    uint64_t handle, value_area, value_size; /* as in struct bpfg_pmsg_map_reply */
};

struct bpfg_hello_prog {
    uint32_t prog_id;
    uint32_t engine; /* enum bpfg_engine */
    uint64_t addr;   /* the payload's pointer in the hook table's entry_progs/ret_progs */
};

/* MAP; its successful REPLY carries struct bpfg_pmsg_map_reply (section 4). */
struct bpfg_pmsg_map {
    uint32_t map_id; /* the server's map id */
};

/* bpfg_pmsg_prog.flags */
#define BPFG_PROG_F_CHECKED 1u /* run in the VM's checked mode (bounds-checked memory) */

struct bpfg_pmsg_prog {
    uint32_t prog_id;
    uint32_t insn_cnt;
    uint32_t map_cnt; /* then map_cnt uint32_t map ids (BPF_PSEUDO_MAP_IDX i -> ids[i]) */
    uint32_t flags;
    /* uint32_t map_ids[map_cnt]; struct bpf_insn insns[insn_cnt]; */
};

enum bpfg_hook_kind {
    BPFG_HOOK_UPROBE = 1,
    BPFG_HOOK_URETPROBE = 2,
};

struct bpfg_pmsg_hook {
    uint32_t hook_index; /* slot in the payload's hook table */
    uint32_t kind;       /* enum bpfg_hook_kind */
    uint32_t prog_id;
    uint32_t flags;  /* BPFG_HOOK_F_*; was padding (0) */
    uint64_t site;   /* probed address */
    uint64_t resume; /* where displaced instructions continue */
    uint64_t cookie; /* bpf_get_attach_cookie of this attachment (a shorter
                      * message, from an older server: 0) */
};

/* Trap probes: the site is a one-byte int3 (the server found no provably
 * safe place for a 5-byte jmp), not a jmp. The payload's SIGTRAP handler
 * finds the slot by the trapping address (site), runs the hook as the
 * stub would, and continues at resume: the stub's relocated copy of the
 * instruction the int3 replaced, then a jmp back. The first such HOOK
 * installs the handler; the REPLY then carries struct
 * bpfg_pmsg_hook_reply. Before unloading the payload the server puts the
 * target's SIGTRAP action back (rt_sigaction(SIGTRAP, trap_saved_action,
 * NULL, 8)) in a stop where no thread has a SIGTRAP pending. */
#define BPFG_HOOK_F_TRAP 1u

struct bpfg_pmsg_hook_reply {
    uint64_t trap_saved_action; /* the target's own SIGTRAP action (kernel struct sigaction) */
};

struct bpfg_pmsg_unhook {
    uint32_t hook_index;
};

struct bpfg_pmsg_unmap {
    uint32_t map_id;  /* 0: none */
    uint32_t prog_id; /* 0: none */
};

/* BPFG_PMSG_TRACE: one bpf_trace_printk line. Lines are queued by the
 * programs in a ring of 256 lines of up to BPFG_TRACE_LINE bytes; when it
 * is full lines are dropped, and the next TRACE message carries the count
 * of lines dropped since the previous one in hdr.flags (saturating). */
#define BPFG_TRACE_LINE 240

struct bpfg_pmsg_trace {
    uint32_t pid, tid;
    /* char text[]; */
};

/* BPFG_PMSG_PIDNS: a target in another pid namespace (a container): the
 * kernel's helpers report the ids of the initial namespace, which
 * getpid/gettid inside the target do not give. Sent after HELLO and again
 * when its threads change; ntids pairs {ns_tid, host_tid} follow. Reply:
 * empty. */
struct bpfg_pmsg_pidns {
    uint32_t host_pid; /* the process's pid in the initial namespace */
    uint32_t ns_pid;   /* ... and as getpid() returns it inside */
    uint32_t ntids;
    uint32_t reserved;
};

/* BPFG_PMSG_UNWIND: the unwinders of the target, found by the server in
 * its mappings, that the return trampolines' unwind tables are to be
 * registered with (once each: the unwind page remembers), and the unwind
 * page an earlier payload left (0: none; it is adopted when its magic and
 * version match, else a new one is mapped). Addresses are the target's. */
struct bpfg_pmsg_unwind {
    uint64_t page;                             /* an existing unwind page's rw page */
    uint64_t gcc[BPFG_UNWIND_GCC_MAX];         /* libgcc's __register_frame_info(begin, object) */
    uint64_t llvm[BPFG_UNWIND_OTHER_MAX];      /* LLVM libunwind's __unw_add_dynamic_fde(fde) */
    uint64_t libunwind[BPFG_UNWIND_OTHER_MAX]; /* nongnu libunwind's _U_dyn_register(info) */
    uint64_t r_debug;                          /* glibc's first struct r_debug_extended (0: no gdb file) */
    char gdb_path[BPFG_UNWIND_PATH_MAX];       /* the file the server writes for gdb */
};

/* ==== 4. native code ====
 *
 * The REPLY to a successful MAP carries struct bpfg_pmsg_map_reply (an
 * older payload replies with an empty body: the server then knows no
 * addresses and keeps that target's programs in the interpreter). With
 * them the server resolves lddw map references of a program for this
 * target (BPF_PSEUDO_MAP_IDX -> handle, BPF_PSEUDO_MAP_IDX_VALUE -> value
 * area + offset, offset < value_size) and compiles it there. */
struct bpfg_pmsg_map_reply {
    uint64_t handle;     /* struct bpfg_map * inside the payload */
    uint64_t value_area; /* global data (array value 0); 0 = none */
    uint64_t value_size; /* bytes an offset into value_area may reach */
};

/* bpfg_pmsg_prog_code.engine: which compiler made the code (diagnostics;
 * the payload runs every engine's code the same way). */
enum bpfg_engine {
    BPFG_ENGINE_INTERP = 0, /* no code: the interpreter */
    BPFG_ENGINE_X86 = 1,    /* jit/x86jit.c */
    BPFG_ENGINE_LLVM = 2,   /* jit/llvmjit.c */
};

/* BPFG_PMSG_PROG_CODE: a program with native code. The body is this
 * struct followed by exactly the body of a PROG message (the instructions
 * stay: the payload validates and keeps them). The attached memfd holds
 * code_len bytes of position-independent code (sealed by the server),
 * which the payload maps PROT_READ|PROT_EXEC. Its entry, at entry_off, has
 * jit/x86jit.h's calling convention:
 *     struct { uint64_t r0, fault; } fn(void *ctx, size_t ctx_len,
 *         const struct bpfg_x86jit_helper table[256], void *run_user)
 * where table is the payload's own helper table (indexed by helper id,
 * {fn, user}) and run_user the per-run context every helper receives as
 * its 6th argument (the code is compiled with per_run_user). BPF_FUNC_
 * tail_call is the unwind helper. Programs flagged BPFG_PROG_F_CHECKED
 * cannot carry code (the JIT does not bounds-check): -EINVAL. */
struct bpfg_pmsg_prog_code {
    uint32_t engine; /* enum bpfg_engine, not INTERP */
    uint32_t code_len;
    uint32_t entry_off;
    uint32_t pad;
    /* struct bpfg_pmsg_prog prog; uint32_t map_ids[]; struct bpf_insn insns[]; */
};

/* BPFG_PMSG_PROG_SWAP (server -> payload): new native code for a loaded
 * program, the code memfd attached as with PROG_CODE (same convention).
 * The server's tiered engine sends it when its LLVM compile of a program
 * that started on x86 code ends. The payload maps the code r-x and stores
 * the entry pointer atomically: each run executes the old code or the new
 * one whole; the old mapping is kept until the program is unloaded (a
 * thread may still be in it). The payload's HELLO reports the new engine.
 * Reply: empty; -ENOENT for an unknown program, -EINVAL for checked ones. */
#define BPFG_PMSG_PROG_SWAP 140
struct bpfg_pmsg_prog_swap {
    uint32_t prog_id;
    uint32_t engine; /* enum bpfg_engine, not INTERP */
    uint32_t code_len;
    uint32_t entry_off;
};

/* ==== 5. syscall hooks ====
 *
 * Programs of the syscall tracepoints run inside the target on Syscall
 * User Dispatch (prctl PR_SET_SYSCALL_USER_DISPATCH): every thread has
 * the payload image as its exempt region and bpfg_pmsg_syscall_reply.selector
 * as its switch; each syscall made outside the payload raises SIGSYS and
 * the payload's handler runs the programs around the real syscall, which it
 * makes from its own (exempt) text. See payload/syscall.c. Messages:
 * SYSCALL_HOOK, SYSCALL_UNHOOK, SYSCALL_OFF and, from the payload, EXEC. */

enum bpfg_sys_kind {
    BPFG_SYS_ENTER = 1,       /* tracepoint/syscalls/sys_enter_NAME: record context */
    BPFG_SYS_EXIT = 2,        /* tracepoint/syscalls/sys_exit_NAME */
    BPFG_SYS_RAW_ENTER = 3,   /* tracepoint/raw_syscalls/sys_enter: record, every nr */
    BPFG_SYS_RAW_EXIT = 4,    /* tracepoint/raw_syscalls/sys_exit */
    BPFG_SYS_RAWTP_ENTER = 5, /* raw_tracepoint/sys_enter: u64 args[2] = {struct pt_regs *, id} */
    BPFG_SYS_RAWTP_EXIT = 6,  /* raw_tracepoint/sys_exit: {struct pt_regs *, ret} */
};

#define BPFG_SYS_MAX_NR 512  /* syscall numbers the per-number tables cover */
#define BPFG_SYS_MAX_PROGS 4 /* per kind and syscall number */

/* SYSCALL_HOOK adds one program. The first one installs the SIGSYS
 * handler (the target's own SIGSYS action is kept and chained to); the
 * server then turns dispatch on in every thread with the reply's region
 * and selector. */
struct bpfg_pmsg_syscall_hook {
    uint32_t prog_id;
    uint32_t kind;  /* enum bpfg_sys_kind */
    int32_t nr;     /* BPFG_SYS_ENTER/EXIT: the syscall; else -1 */
    uint32_t flags; /* BPFG_SYS_F_*; was padding (0) */
};

/* The server will rewrite syscall sites: the payload reports candidates
 * (BPFG_PMSG_SYS_SITES, section 6). */
#define BPFG_SYS_F_REWRITE 1u
/* A pure Go process (section 6, "without dispatch"): no SIGSYS handler,
 * no dispatch; the server rewrites every syscall site of the binary. */
#define BPFG_SYS_F_NO_DISPATCH 2u

struct bpfg_pmsg_syscall_reply {
    uint64_t exempt_base, exempt_len; /* the prctl's offset and length */
    uint64_t selector;                /* the prctl's switch (one byte, shared by all threads) */
    uint64_t fast_entry;              /* bpfg_sys_fast_entry; 0 (or a shorter reply): no fast path */
};

struct bpfg_pmsg_syscall_unhook {
    uint32_t prog_id;
};

/* SYSCALL_OFF: every syscall program is removed (after a grace period)
 * and the selector set to ALLOW. The server then turns dispatch off in
 * every thread and, in a later stop in which no thread has a SIGSYS
 * pending, puts back the target's SIGSYS action: the kernel struct
 * sigaction at saved_action (rt_sigaction(SIGSYS, saved_action, NULL, 8)).
 * The payload stays mapped: a thread may still be inside the handler. */
struct bpfg_pmsg_syscall_off_reply {
    uint64_t saved_action; /* address in the target, 0: no handler was installed */
    uint64_t misses;       /* syscalls made while a program ran on the same thread */
    uint64_t dispatched;   /* SIGSYS taken */
};

/* SYSCALL_TAKEOVER (re-injection, server/README.md "Re-injection"): this
 * payload is to replace the syscall hooks of the payload whose image is
 * [old_base, +old_len) and dispatch selector old_selector. Sent before its
 * first SYSCALL_HOOK: the handler is made ready but not installed (the
 * process's SIGSYS action, the old payload's handler, is kept as the one
 * chained to); from then on a dispatched syscall made from the old
 * image's code (a thread that was in its handler or fast entry) is made
 * as it is, without programs (the old payload runs them), and one made
 * from this payload's own code (a thread whose dispatch is still the old
 * payload's: one its clone stub started) first moves the thread's dispatch
 * to this payload (the old selector allows while it does). The server
 * installs the action at reply.action itself, with every thread stopped
 * (rt_sigaction(SIGSYS, action, NULL, 8)), and moves each thread's
 * dispatch to reply.sys. Sent again (old_len 0 or not), it changes
 * nothing and replies the same. */
#define BPFG_PMSG_SYSCALL_TAKEOVER 104 /* struct bpfg_pmsg_syscall_takeover; reply: ..._takeover_reply */
struct bpfg_pmsg_syscall_takeover {
    uint64_t old_base, old_len, old_selector;
};
struct bpfg_pmsg_syscall_takeover_reply {
    struct bpfg_pmsg_syscall_reply sys; /* this payload's region, selector, fast entry */
    uint64_t action;                    /* the kernel struct sigaction to install for SIGSYS */
    uint64_t old_base, old_len;         /* the old image, as first sent */
};

struct bpfg_pmsg_exec {
    uint32_t pid, tid;
    /* char path[]; NUL-terminated, may be truncated */
};

/* ==== 6. rewritten syscall sites (the fast path) ====
 *
 * Syscall User Dispatch stays on as the exhaustive net; sites it catches
 * that have the 7-byte form `mov $nr,%eax` (b8 imm32) + `syscall` (0f 05)
 * are reported by the payload thread (BPFG_PMSG_SYS_SITES, async, body: an
 * array of uint64_t site addresses, each reported once) when the hooks
 * were added with BPFG_SYS_F_REWRITE. Numbers whose handling needs the
 * signal path (bpfg_sys_slow_only) are never reported. The server
 * rewrites a site with all threads stopped, only in a file-backed
 * executable mapping, only if no thread is inside it and no direct branch
 * near it lands inside it:
 *     site:  jmp rel32 stub ; (the original 0f 05 stays, never reached
 *            except by a kernel restart of a syscall made there before)
 *     stub:  lea -128(%rsp),%rsp      ; skip the red zone
 *            mov $nr,%eax
 *            call *[rip+16]           ; .quad fast_entry at stub+32
 *            lea 128(%rsp),%rsp
 *            jmp site+7
 *            .quad fast_entry ; .quad site   (stub+32, stub+40)
 * bpfg_sys_fast_entry keeps every register but rax, rcx and r11 (like the
 * kernel: rcx = site+7, r11 = rflags), and rflags itself. Detach writes the
 * original 5 bytes back; stubs stay mapped (a thread may still return
 * into one from a blocking syscall).
 *
 * The second form is glibc's syscall(): the number already in rax,
 * `mov 0x8(%rsp),%r9` (BPFG_SYS_SITE_R9_LOAD) + `syscall`. Its stub runs
 * the displaced load first, then as above without the `mov $nr,%eax`:
 *     stub:  mov 0x8(%rsp),%r9 ; lea -128(%rsp),%rsp ; call *[rip+16] ...
 * Such a site can bring any number: for a bpfg_sys_slow_only one the
 * entry code goes back to the site's own `syscall` (site+5) with the
 * target's registers, where Syscall User Dispatch traps it.
 *
 * Without dispatch (BPFG_SYS_F_NO_DISPATCH: pure Go processes, whose
 * signal handlers SUD cannot live with), the server finds every `syscall`
 * of the binary's code and rewrites each one up front; a site it cannot
 * rewrite refuses the attach. The stub always has the second shape, its
 * first 5 bytes being `mov $nr,%eax` (for `mov $nr,%eax` or `mov
 * $nr,%rax` before the syscall), the 5 bytes of instructions displaced by
 * the jmp, or a 5-byte nop when a pre-stub (one more 48-byte slot: the
 * displaced instructions, then jmp stub) runs them; `site` in the stub is
 * the syscall's address - 5 wherever the jmp is. rt_sigreturn, clone,
 * clone3, fork and vfork depend on the stack they are made on: the
 * payload runs their sys_enter programs, then the entry code makes the
 * call at the site's own `syscall` (no sys_exit programs); the other
 * bpfg_sys_slow_only numbers are served like any other. */
#define BPFG_SYS_SITE_R9_LOAD "\x4c\x8b\x4c\x24\x08"
#define BPFG_SYS_STUB_SIZE 48
#define BPFG_SYS_STUB_RET_OFF 16 /* the call's return address in the stub */
#define BPFG_SYS_STUB_SITE_OFF 40

/* Syscalls that must stay on the signal path (they use or change the
 * signal frame, the stack or the thread: see payload/syscall.c). */
static inline int bpfg_sys_slow_only(long nr)
{
    switch (nr) {
    case 13:  /* rt_sigaction */
    case 14:  /* rt_sigprocmask */
    case 15:  /* rt_sigreturn */
    case 56:  /* clone */
    case 57:  /* fork */
    case 58:  /* vfork */
    case 59:  /* execve */
    case 60:  /* exit */
    case 157: /* prctl */
    case 231: /* exit_group */
    case 322: /* execveat */
    case 435: /* clone3 */ return 1;
    default: return nr < 0 || nr >= 512;
    }
}

/* ==== 7. tool mode (`bpfgraft run -- TOOL`) ====
 *
 * An unmodified libbpf tool runs with the payload injected (bpfgraft
 * start) and its BPF syscalls served by bpfgraft instead of the kernel.
 * The server sends TOOL_MODE on the payload socket with one end of a new
 * SOCK_STREAM socketpair attached: the tool channel. The payload installs
 * its SIGSYS handler (as for syscall hooks, same exemption and selector),
 * replies with struct bpfg_pmsg_syscall_reply, and the server turns
 * Syscall User Dispatch on in every thread. From then on the handler, on
 * the tool's own threads, serves:
 *   bpf()            map commands locally on the mapped map regions
 *                    (the map fd IS the map's memfd); MAP_CREATE in a map
 *                    ticket (below) or via the tool channel; PROG_LOAD,
 *                    BTF_LOAD, LINK_CREATE, RAW_TRACEPOINT_OPEN via the
 *                    tool channel; feature probes and info queries locally.
 *   perf_event_open  SW_BPF_OUTPUT: a local perf ring (memfd, kernel perf
 *                    mmap layout, filled from the PERF_EVENT_ARRAY map's
 *                    rings); uprobe / tracepoint events: a placeholder fd
 *                    remembered until SET_BPF / LINK_CREATE attaches it;
 *                    kprobe and other PMUs: -EOPNOTSUPP plus a message on
 *                    the tool's stderr naming the missing feature.
 *   ioctl            PERF_EVENT_IOC_* on those fds; everything else passes.
 *   mmap             map fds: offsets translated to the kernel's view
 *                    (array values at 0, ringbuf consumer page / producer
 *                    page + data mapped twice); perf ring fds sized first.
 *   epoll_ctl        ringbuf / perf ring fds are replaced by an eventfd per
 *                    fd, made readable while the ring holds data.
 *   epoll_wait etc.  refreshes those eventfds (and copies perf array
 *                    records into the tool's perf rings) around the wait.
 *   openat           tracefs ".../events/CAT/NAME/id" that do not exist (no
 *                    tracefs mounted): a memfd holding the id TP_ID gave.
 *   close, dup*      keep the payload's fd table right; closing a link or
 *                    an attached perf event detaches it (TOOL_DETACH).
 * Placeholder fds (programs, BTF, links, perf events) are memfds named
 * "bpfgraft-prog:NAME" etc., so /proc/PID/fd says what they are. */

struct bpfg_pmsg_tool_mode {
    uint32_t uprobe_type;  /* /sys/bus/event_source/devices/uprobe/type, 0 unknown */
    uint32_t kprobe_type;  /* .../kprobe/type, 0 unknown */
    uint32_t retprobe_bit; /* .../uprobe/format/retprobe "config:N" */
    uint32_t nr_cpus;      /* possible CPUs (perf rings, per-CPU values) */
};

/* Tool channel: requests from a tool thread (one at a time: the payload
 * serialises them), each answered by one BPFG_PMSG_REPLY with the same
 * seq: status 0 with the reply struct as body (and an fd for MAP_CREATE),
 * or a negative errno with a NUL-terminated message as body (PROG_LOAD:
 * the verifier log). Framing as on the payload socket (bpfg_pmsg_hdr). */
#define BPFG_TOOL_MAP_CREATE 64 /* bpfg_tool_map_create -> bpfg_tool_id_reply + map memfd */
#define BPFG_TOOL_PROG_LOAD 65  /* bpfg_tool_prog_load + insns -> bpfg_tool_id_reply */
#define BPFG_TOOL_BTF_LOAD 66   /* raw BTF bytes -> bpfg_tool_id_reply */
#define BPFG_TOOL_ATTACH 67     /* bpfg_tool_attach + name -> bpfg_tool_id_reply (link id) */
#define BPFG_TOOL_DETACH 68     /* bpfg_tool_release (kind LINK) -> empty */
#define BPFG_TOOL_TP_ID 69      /* "CATEGORY/NAME" -> bpfg_tool_id_reply (tracepoint id) */
#define BPFG_TOOL_RELEASE 70    /* bpfg_tool_release: a no-op, sent by older payloads only */
/* Requests 64-70 are the whole tool channel of payload ABI 2 (with
 * BPFG_PMSG_TOOL_CHAN; bpfg_tool_id_reply.flags was padding, always 0):
 * a server serves a tool whose payload is of ABI 2 those only (the ones
 * below are refused, MAP_MADE ignored), and never makes its maps kernel
 * maps (server/README.md, "`bpfgraft run` tools of another ABI"). */
/* Kernel parts (server/README.md, "Kernel programs of run tools"): a
 * PROG_LOAD or ATTACH reply with BPFG_TOOL_F_KERNEL_MAPS says some of the
 * tool's maps became kernel maps; the payload then asks which, and for
 * each its kernel fd, and serves them through the kernel from then on. */
#define BPFG_TOOL_KERNEL_MAPS 86 /* no body -> uint32_t ids[] of the tool's maps that are kernel maps */
#define BPFG_TOOL_MAP_FD 87      /* bpfg_tool_release (kind MAP) -> bpfg_tool_id_reply + the kernel map fd */
/* Map tickets (server/README.md, "Map tickets of run tools"): the server
 * hands out map ids ahead of need, each with its empty region file (its
 * fds ride the reply in order); the payload lays a map out in one itself
 * and says so with MAP_MADE, which has no reply (a later reply on the
 * channel says it was taken). Unanswered MAP_MADEs are sent again on a
 * new server's channel; one for a map the server has is a no-op. */
#define BPFG_TOOL_MAP_TICKETS 106 /* uint32_t wanted -> bpfg_tool_tickets + count fds */
#define BPFG_TOOL_MAP_MADE 107    /* bpfg_tool_map_made, no reply */
#define BPFG_TOOL_TICKETS_MAX 32  /* 8 before: a reply of an older server has room for 8 ids */
/* In `wanted`: each file sized to BPFG_TOOL_TICKET_SIZE (sparse) with its
 * first page written, so a create maps it without allocating; an older
 * server caps `wanted` and gives empty files, which the payload sizes. In
 * the reply's count: every file was sized so. */
#define BPFG_TOOL_TICKETS_SIZED (1u << 31)
#define BPFG_TOOL_TICKET_SIZE (1u << 20)

struct bpfg_tool_tickets {
    uint32_t count; /* <= BPFG_TOOL_TICKETS_MAX; 0: none left for this tool */
    /* count of them are sent (an older server: 8, its body 36 bytes) */
    uint32_t ids[BPFG_TOOL_TICKETS_MAX];
};

struct bpfg_tool_map_made {
    uint32_t id;     /* a ticket's; the map's shape is its region's header */
    uint32_t btf_id; /* from BTF_LOAD, 0 none */
};

#define BPFG_TOOL_F_KERNEL_MAPS 1u /* bpfg_tool_id_reply.flags */

struct bpfg_tool_id_reply {
    uint32_t id;
    uint32_t flags; /* BPFG_TOOL_F_* */
};

struct bpfg_tool_map_create {
    uint32_t map_type, key_size, value_size, max_entries, map_flags;
    uint32_t btf_id; /* from BTF_LOAD, 0 none */
    uint32_t btf_key_type_id, btf_value_type_id;
    uint32_t inner_map_id; /* map-in-map template, 0 none */
    uint32_t pad;
    uint64_t map_extra;
    char name[16];
};

/* The instructions follow. lddw map references carry server map ids, the
 * payload having translated the tool's fds: src_reg BPF_PSEUDO_MAP_FD
 * imm = map id; BPF_PSEUDO_MAP_VALUE imm = map id, next imm = offset. */
struct bpfg_tool_prog_load {
    uint32_t prog_type, expected_attach_type, prog_flags, insn_cnt;
    uint32_t kern_version, attach_btf_id, log_level, pad;
    char name[16];
    char license[64];
    /* struct bpf_insn insns[insn_cnt]; */
};

enum bpfg_tool_attach_kind {
    BPFG_TOOL_UPROBE = 1, /* name: binary path; offset: file offset */
    BPFG_TOOL_URETPROBE = 2,
    BPFG_TOOL_TRACEPOINT = 3,     /* tp_id (the tracefs id or one TP_ID gave) */
    BPFG_TOOL_RAW_TRACEPOINT = 4, /* name: "sys_enter" / "sys_exit" */
    BPFG_TOOL_TIMER = 5,          /* a cpu-clock event: offset is its period in ns */
};

struct bpfg_tool_attach {
    uint32_t prog_id;
    uint32_t kind; /* enum bpfg_tool_attach_kind */
    int32_t pid;   /* perf_event_open's pid; -1: every process in scope */
    uint32_t tp_id;
    uint64_t offset;
    uint64_t ref_ctr_offset; /* uprobes: file offset of a USDT semaphore (0: none) */
    uint64_t cookie;         /* BPF_LINK_CREATE's perf_event.bpf_cookie */
    /* char name[]; NUL-terminated */
};

enum bpfg_tool_obj_kind {
    BPFG_TOOL_OBJ_MAP = 1,
    BPFG_TOOL_OBJ_PROG = 2,
    BPFG_TOOL_OBJ_BTF = 3,
    BPFG_TOOL_OBJ_LINK = 4,
};

struct bpfg_tool_release {
    uint32_t kind; /* enum bpfg_tool_obj_kind */
    uint32_t id;
};

/* ==== 8. user stacks ====
 *
 * bpf_get_stack(BPF_F_USER_STACK) unwinds with the CFI (.eh_frame,
 * .debug_frame) of the target's mapped files, which the server compiles
 * into one sealed memfd (BPFG_PMSG_USTACK, mapped read-only; a newer one
 * replaces it) in this layout: the header, nmods modules sorted by start,
 * nranges readable ranges (the process's rw mappings, where stacks are)
 * sorted by start, the rows of every module, each module's sorted by pc,
 * then the block index: for block k of a module's rows (vaddr >>
 * BPFG_USTACK_BLOCK_SHIFT = first_page + k), the module-relative index of
 * the last row at or below the block's start (0 if none): a lookup
 * searches only that block's rows (one to three, mostly). A pc's row is the last one at or below it; rows are cut where the
 * CFA or rbp rule changes (an sframe-like table: only what an x86-64 stack
 * walk needs; the return address is always at CFA - 8).
 * When a walk meets a pc in no module, the payload sends USTACK_STALE
 * once per table; the server then sends fresh tables (dlopen). */
#define BPFG_USTACK_MAGIC 0x6b63617473756662ull /* "bfustack" */
#define BPFG_USTACK_VERSION 2                   /* 2: modules carry their build id (BPF_F_USER_BUILD_ID) */
#define BPFG_USTACK_BLOCK_SHIFT 8               /* 256-byte blocks of code per index entry */

struct bpfg_ustack_hdr {
    uint64_t magic;
    uint32_t version;
    uint32_t nmods;
    uint32_t nranges;
    uint32_t nrows;
    uint64_t size;   /* of the whole table, bytes */
    uint32_t nindex; /* u32 block index entries, after the rows */
    uint32_t pad;
};

struct bpfg_ustack_mod {
    uint64_t start, end; /* the executable mapping */
    uint64_t bias;       /* runtime address - ELF vaddr */
    uint32_t first_row, nrows;
    uint32_t first_index, npages; /* the module's block index entries */
    uint32_t first_page;          /* vaddr >> BPFG_USTACK_BLOCK_SHIFT of its first row */
    uint32_t build_id_len;        /* bytes of build_id; 0: the file has none */
    uint64_t file_off;            /* file offset of start (a build-id frame's offset) */
    uint8_t build_id[20];         /* NT_GNU_BUILD_ID, as the kernel's bpf_stack_build_id */
    uint32_t pad;
};

struct bpfg_ustack_range {
    uint64_t start, end;
};

enum bpfg_ustack_cfa {
    BPFG_USTACK_CFA_NONE = 0,  /* no CFI covers the pc: frame pointers */
    BPFG_USTACK_CFA_RSP = 1,   /* CFA = rsp + cfa_off */
    BPFG_USTACK_CFA_RBP = 2,   /* CFA = rbp + cfa_off */
    BPFG_USTACK_CFA_PLT = 3,   /* PLT entries: rsp + 8, + 8 more from byte 11 of the 16 */
    BPFG_USTACK_CFA_END = 4,   /* return address undefined: the outermost frame */
    BPFG_USTACK_CFA_SIGNAL = 5 /* __restore_rt: rsp points at the kernel's ucontext */
};

struct bpfg_ustack_row {
    uint32_t pc; /* ELF vaddr */
    int32_t cfa_off;
    int16_t rbp_off;  /* rbp saved at CFA + rbp_off when rbp_saved */
    uint8_t cfa_rule; /* enum bpfg_ustack_cfa */
    uint8_t rbp_saved;
};

/* ==== 9. statistics ====
 *
 * The payload's stats table (hello.stats_table) lives in its own memory;
 * the server reads it with process_vm_readv and writes `enabled` with
 * process_vm_writev, never stopping the target. While enabled is 0 a hit
 * pays one load and one predictable branch on it; while it is not, every
 * program run is timed (the vDSO's CLOCK_MONOTONIC around the run, tail
 * calls included) and counted in the slot of the program, and every entry
 * of a hook slot counts a hit, with atomic adds. Program slot i belongs to
 * the payload's program table slot i: prog_id is written, counters zeroed,
 * before the program can run; a slot whose prog_id is 0 is free. */
#define BPFG_STATS_MAX_PROGS 256

struct bpfg_prog_stats {
    uint32_t prog_id; /* 0: free */
    uint32_t pad;
    uint64_t run_cnt;     /* runs while enabled (the kernel's run_cnt) */
    uint64_t run_time_ns; /* their total time (the kernel's run_time_ns) */
};

struct bpfg_stats_table {
    volatile uint32_t enabled;          /* the server's switch (kernel.bpf_stats_enabled) */
    uint32_t max_progs;                 /* BPFG_STATS_MAX_PROGS */
    uint64_t pad[7];                    /* counters off enabled's cache line */
    uint64_t hook_hits[BPFG_MAX_HOOKS]; /* hook slot i entered, while enabled */
    struct bpfg_prog_stats progs[BPFG_STATS_MAX_PROGS];
};

#endif
