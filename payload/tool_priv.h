/* Tool mode's parts (tool.c, tool_chan.c, tool_bpf.c, tool_perf.c,
 * tool_events.c): what they share. Private to them; the rest of the
 * payload sees tool.h. Everything here runs on the tool's threads, in the
 * SIGSYS handler or a rewritten syscall site. */
#ifndef BPFGRAFT_PAYLOAD_TOOL_PRIV_H
#define BPFGRAFT_PAYLOAD_TOOL_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tool.h"

#define PAGE 4096ul
#ifndef ENOTSUPP
#define ENOTSUPP 524
#endif

struct bpfg_pmsg_tool_mode;
struct bpfg_tool_map_made;

/* The do_* functions serve one syscall with arguments a[]. Those that
 * return bool follow tool_syscall: true with the result in *ret, false
 * for "not ours, make the real syscall". */

/* ---- tool.c: the tool's memory and stderr, files ---- */

/* Fault-safe copies from and to the tool's memory: 0 or -EFAULT. */
long uread(void *dst, const void *src, size_t len);
long uwrite(void *dst, const void *src, size_t len);
/* One line on the tool's stderr, "bpfgraft: " first. */
void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int memfd(const char *name, bool cloexec);

/* A new file of kind with one reference, or NULL. */
struct tool_file *file_new(uint8_t kind);
/* Drops a reference; the last one tells the server and frees f. NULL is fine. */
void file_put(struct tool_file *f);
/* A reference to fd's file if it is of kind, else NULL. */
struct tool_file *get_kind(int fd, uint8_t kind);
/* Gives the tool fd for f (its reference moves to the table): fd, or a
 * negative errno with f put and fd closed. */
long file_install(int fd, struct tool_file *f);
/* A placeholder memfd named name for f, installed as above. */
long file_placeholder(struct tool_file *f, const char *name, bool cloexec);

/* ---- tool_chan.c: the tool channel ---- */

struct reply {
    int status;
    char *body; /* NUL-terminated; NULL after a transport failure */
    size_t len;
    int fd;       /* attached fd (close-on-exec), -1 none */
    int more[31]; /* the others, when several came (MAP_TICKETS: BPFG_TOOL_TICKETS_MAX) */
    int nmore;
};

/* TOOL_MODE: the channel is fd from now on. */
void chan_open(int fd);
/* Swaps in a new server's channel (TOOL_CHAN). */
void chan_replace(int fd);
void reply_free(struct reply *r);
/* Text explaining a failed reply. */
const char *reply_text(const struct reply *r);
/* The id of a bpfg_tool_id_reply body: 0 or -EPROTO. */
int reply_id(const struct reply *r, uint32_t *id);
/* One request (body b1 then b2) and its reply. Returns rep->status. */
int chan_call(uint16_t type, const void *b1, size_t l1, const void *b2, size_t l2, struct reply *rep);
/* RELEASE / DETACH of object id (0: none); a failure is not reported. */
void chan_release(uint16_t type, uint32_t kind, uint32_t id);
/* MAP_MADE: sent without waiting (and again to a new server until a
 * reply shows it was taken). 0, -ENOSPC with too many unanswered, or the
 * send's -errno (no server). */
int chan_map_made(const struct bpfg_tool_map_made *m);
/* A map ticket (payload_abi.h): its id and its region file's fd; base
 * NULL: the file is empty; else prepared by the payload thread: len bytes
 * of zeros (sparse), mapped shared at base, and seed a hash seed. */
struct map_ticket {
    uint32_t id;
    int fd;
    void *base;
    size_t len;
    uint32_t seed;
    bool sized; /* raw, its file TICKET_PREPARED_SIZE long (the server's) */
};
/* A prepared ticket's size: a map whose region fits needs no ftruncate
 * (the file stays this long: readers go by the header's region_size). The
 * server sizes a ticket so (BPFG_TOOL_TICKETS_SIZED). */
#define TICKET_PREPARED_SIZE ((size_t)BPFG_TOOL_TICKET_SIZE)
/* The caller's ticket; -EAGAIN when the server gives none (MAP_CREATE
 * then). */
int ticket_take(struct map_ticket *t);
/* A ticket not used after all: emptied and kept (or closed). */
void ticket_return(uint32_t id, int fd);
/* Prepares a raw ticket in the caller (the payload thread has not come to
 * it): sized (a no-op for one the server sized), mapped, its header page
 * touched, its seed drawn. 0 or -errno (t left raw). */
int ticket_prepare(struct map_ticket *t);

/* ---- tool_bpf.c: bpf() and the mmap of map fds ---- */

long do_bpf(const uint64_t a[6]);
/* TOOL_ATTACH of prog to the uprobe or tracepoint event ev: the link id
 * or a negative errno. */
long attach_perf(const struct tool_file *prog, const struct tool_file *ev, uint64_t cookie);
long mmap_array(struct tool_file *f, const uint64_t a[6]);
long mmap_ringbuf(struct tool_file *f, const uint64_t a[6]);

/* ---- tool_kernel.c: maps that became kernel maps ---- */

/* Asks the server which of the tool's maps are kernel maps now and moves
 * each onto its kernel fd (after a PROG_LOAD or ATTACH that said so). */
void kernel_maps_sync(void);
/* bpf() command cmd (map element, or batch) on kernel map f: at goes to
 * the kernel with f's kernel fd. */
long kernel_map_cmd(struct tool_file *f, int cmd, bool batch, union bpf_attr *at, void *uattr, uint64_t size);
/* Slot idx of kernel perf array f gets perf ring ring's kernel event. */
long kernel_perf_slot(struct tool_file *f, struct tool_file *ring, uint32_t idx);
void kernel_perf_clear(struct tool_file *f, uint32_t idx);
/* Table lock held. Kernel RINGBUF f: its records into f's region. */
void kernel_ring_drain(struct tool_file *f);

/* ---- tool_perf.c: perf events ---- */

/* TOOL_MODE: the PMU types perf_event_open recognises. */
void perf_set_pmu(const struct bpfg_pmsg_tool_mode *tm);
long do_perf_open(const uint64_t a[6]);
bool do_ioctl(const uint64_t a[6], long *ret);
long mmap_perf_ring(struct tool_file *f, const uint64_t a[6]);
long do_openat(const uint64_t a[6]);

/* ---- tool_events.c: the perf bridge, epoll and poll ---- */

/* Table lock held. A PERF_EVENT_ARRAY map joins the bridge (false: too
 * many); a file about to be destroyed leaves the bridge and epoll. */
bool events_add_perf_map(struct tool_file *f);
void events_forget(struct tool_file *f);
bool do_epoll_ctl(const uint64_t a[6], long *ret);
bool do_epoll_wait(long nr, const uint64_t a[6], long *ret);
bool do_poll(long nr, const uint64_t a[6], long *ret);

#endif
