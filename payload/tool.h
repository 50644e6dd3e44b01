/* Tool mode (payload_abi.h, "tool mode"): an unmodified libbpf tool whose BPF
 * syscalls the payload serves. tool.c and its parts (tool_priv.h) are the
 * syscall side (they run in the SIGSYS handler on the tool's threads);
 * tool_core.c holds the parts that make no syscall (fd table, perf record
 * writer) so they can be tested outside a target. */
#ifndef BPFGRAFT_PAYLOAD_TOOL_H
#define BPFGRAFT_PAYLOAD_TOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/perf_event.h>

struct bpfg_map;
struct bpfg_pmsg_tool_mode;

/* ---- tool.c ---- */

/* Set once TOOL_MODE was handled: the SIGSYS paths call tool_syscall. */
extern volatile uint8_t tool_on;

/* Payload thread, TOOL_MODE: remembers the PMU types and takes ownership
 * of the tool channel fd. 0 or a negative errno. */
int tool_start(const struct bpfg_pmsg_tool_mode *tm, int chan_fd, char *err, size_t errlen);

/* Payload thread, TOOL_CHAN (a new server adopted the tool): chan_fd (a
 * dup is kept) replaces the lost channel. 0 or a negative errno. */
int tool_new_channel(int chan_fd, char *err, size_t errlen);

/* On a tool thread (SIGSYS handler or rewritten site): serves syscall nr
 * when it is one of ours (true, result in *ret); false means "not ours,
 * make the real syscall". Cheap when the fd involved is not ours. */
bool tool_syscall(long nr, const uint64_t a[6], long *ret);
/* On the payload thread: unmaps the regions of the maps the tool closed
 * (a munmap costs ~30 us on the bench VM, more than the kernel's whole
 * close; the kernel too frees a map in a work item, not in close). */
void tool_reap(void);
/* The payload thread polls this eventfd (-1: none) and, when it is
 * readable, calls tool_tickets_prepare: the tool's map tickets are made
 * ready ahead of its BPF_MAP_CREATEs (tool_chan.c). */
int tool_wake_fd(void);
void tool_tickets_prepare(void);

/* ---- tool_core.c: the tool's perf rings (kernel perf mmap layout) ---- */

struct tool_perf_ring {
    struct perf_event_mmap_page *page; /* NULL until the tool mmaps the fd */
    uint8_t *data;                     /* page + data_offset */
    uint64_t size;                     /* data_size, a power of two */
    uint64_t lost;                     /* records not written yet reported */
};

/* Sets up the ring over a mapping of len bytes (one header page plus a
 * power-of-two data area) and initialises its header page like the
 * kernel's. -EINVAL for a bad length. */
int tool_perf_ring_init(struct tool_perf_ring *r, void *base, uint64_t len, uint64_t page_size);

/* Appends one PERF_RECORD_SAMPLE as bpf_perf_event_output makes it (u32
 * raw size, raw data, padded to 8 bytes), publishing data_head with a
 * release store. A pending PERF_RECORD_LOST goes first. Returns 0, or
 * -ENOSPC when it did not fit (counted lost). */
int tool_perf_write_sample(struct tool_perf_ring *r, const void *raw, uint32_t size);

/* Moves the records of src, a ring the kernel writes (a perf event's
 * mmap), into dst: samples as they are, lost counts added to dst's. */
void tool_perf_copy(struct tool_perf_ring *dst, struct tool_perf_ring *src);

/* Writes the pending PERF_RECORD_LOST, if any and if it fits. True when
 * nothing is pending any more. */
bool tool_perf_flush_lost(struct tool_perf_ring *r);

/* data_head != data_tail: the tool has something to read. */
bool tool_perf_pending(const struct tool_perf_ring *r);

/* ---- tool_core.c: the fd table ---- */

enum tool_kind {
    TK_MAP = 1,
    TK_PROG,
    TK_BTF,
    TK_LINK,
    TK_UPROBE,     /* perf_event_open of the uprobe PMU */
    TK_TRACEPOINT, /* perf_event_open PERF_TYPE_TRACEPOINT */
    TK_PERF_RING,  /* perf_event_open SW_BPF_OUTPUT */
    TK_TIMER,      /* perf_event_open SW_CPU_CLOCK on cpu 0: a timer (offset: period, ns) */
};

/* What one of the tool's fds stands for. Like a kernel struct file: dup'd
 * fds share it; it goes (TOOL_RELEASE / TOOL_DETACH) with the last one. */
struct tool_file {
    uint32_t refs;  /* fds + calls in flight; under the table lock */
    uint8_t kind;   /* enum tool_kind */
    bool watched;   /* in the epoll watch list */
    uint32_t id;    /* map / prog / btf / link id of the server */
    int evfd;       /* eventfd standing in for it in epoll, -1 none */
    bool signalled; /* evfd is readable (only we read or write it) */

    /* TK_MAP: the tool's view (what it asked for) and our handle */
    struct bpfg_map *map;
    uint32_t map_type, key_size, value_size, max_entries, map_flags;
    uint32_t btf_id, btf_key_type_id, btf_value_type_id;
    uint32_t value_copy; /* bytes of one value in bpf(2) calls */
    uint64_t map_extra;
    char name[16];
    struct tool_file **rings;               /* PERF_EVENT_ARRAY: the tool's perf ring per index */
    const unsigned long *rb_cons, *rb_prod; /* RINGBUF positions */
    int kfd;                                /* a kernel map now (a kernel program uses it), -1 none */
    void *krb_cons, *krb_prod;              /* RINGBUF kfd's pages: what kernel programs write */
    void *mapped;                           /* the tool's last mmap of it, to move onto kfd */
    struct tool_file *reap_next;            /* closed: on the list tool_reap empties */
    uint64_t mapped_len, mapped_off;
    long mapped_prot, mapped_flags;

    /* TK_PROG */
    uint32_t prog_type, attach_type, insn_cnt;
    bool gpl;

    /* TK_BTF */
    uint32_t btf_size;

    /* TK_LINK */
    uint32_t link_type, prog_id;
    struct tool_file *perf; /* BPF_PERF_EVENT links: the event (a reference) */

    /* perf events */
    int32_t cpu, pid;
    uint32_t tp_id;
    bool retprobe;
    uint64_t offset, ref_ctr_offset;
    char *path;       /* uprobe binary (malloc'd) */
    uint32_t link_id; /* set by SET_BPF: this fd owns the link */
    bool attached;
    uint64_t event_id;          /* PERF_EVENT_IOC_ID */
    struct tool_perf_ring ring; /* TK_PERF_RING */
    void *ring_map;             /* our own mapping of the ring memfd */
    size_t ring_len;
    int kevent;                  /* in a kernel PERF_EVENT_ARRAY: the kernel's event, -1 none */
    struct tool_perf_ring kring; /* its ring, which tool_perf_copy empties into ring */
    void *kring_map;
    size_t kring_len;
};

#define TOOL_MAX_FDS 4096

void tool_fdt_lock(void);
void tool_fdt_unlock(void);
/* No reference taken: only for the cheap "is it ours" test. */
struct tool_file *tool_fdt_peek(int fd);
/* A reference to fd's file, or NULL. */
struct tool_file *tool_fdt_get(int fd);
/* Takes one more reference (the caller holds one already). */
void tool_fdt_ref(struct tool_file *f);
/* Drops a reference; true when it was the last (the caller destroys f). */
bool tool_fdt_put(struct tool_file *f);
/* fd now refers to f, which the caller passes one reference of. A file
 * already at fd (an fd closed behind our back) is returned in *old with
 * its reference. -EMFILE when fd is beyond the table. */
int tool_fdt_install(int fd, struct tool_file *f, struct tool_file **old);
/* Forgets fd; its reference goes to the caller. NULL if not ours. */
struct tool_file *tool_fdt_remove(int fd);

#endif
