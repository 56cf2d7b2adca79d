/* SPDX-License-Identifier: Apache-2.0 */
/* Maps and helpers every Flightbox probe family shares. Each family is its own
 * BPF object; user space loads the first one and hands its maps (events,
 * drops, tracked) to the others with bpf_map__reuse_fd, so all families feed
 * one ordered ring buffer. */
#ifndef FLIGHTBOX_BPF_H
#define FLIGHTBOX_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "events.h"

char LICENSE[] SEC("license") = "GPL";

const volatile struct fb_config fb_cfg = {};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20); /* resized by user space before load */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fb_drops);
} drops SEC(".maps");

/* Thread groups followed in FB_FILTER_TRACKED mode. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} tracked SEC(".maps");

/* Per-CPU batch of records, written to the ring buffer as one record: one
 * reservation per batch instead of per event. Flushed when full, when older
 * than FB_BATCH_MAX_AGE_NS, at every context switch, before any event that
 * goes to the ring directly, and by user space (fb_flush, run on each CPU).
 * Together these keep every task's events in the order they happened. */
#define FB_BATCH_BYTES 4096
#define FB_BATCH_MAX_AGE_NS 50000000ULL

/* A syscall's entry, kept until its exit (see syscalls.bpf.c). */
struct fb_pending {
	__u64 ts; /* 0: empty */
	__u64 args[FB_SYSCALL_ARGS];
	__u64 task; /* owner: its tid can change (exec from a non-leader thread) */
	__u32 nr;
	__u32 compat;
	__u32 old_uid, old_euid; /* credentials at entry, for the privilege family */
	__u64 old_cap_effective, old_cap_permitted, old_cap_inheritable;
};

/* Everything a CPU keeps between events, in one per-CPU value so the hot
 * path does one map lookup. */
struct fb_batch {
	__u32 used;
	__u32 count;
	__u64 first_ts;
	__u32 busy; /* a program on this CPU is inside the batch */
	__u32 _pad;
	struct fb_pending pending; /* the running task's syscall in progress */
	__u8 data[FB_BATCH_BYTES];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fb_batch);
} batch SEC(".maps");

static __always_inline bool fb_comm_is_target(const char *comm)
{
#pragma unroll
	for (int i = 0; i < FB_COMM_LEN; i++) {
		if (comm[i] != fb_cfg.comm[i])
			return false;
		if (comm[i] == 0)
			return true;
	}
	return true;
}

/* Deepest a task may be below the filter's cgroup and still be seen in it;
 * systemd and container runtimes nest a few levels. */
#define FB_CGROUP_MAX_BELOW 32

/* True when task `t` is in the filter's cgroup or one below it, in the
 * filter's hierarchy: the unified one (css_set->dfl_cgrp) or, on cgroup v1,
 * the hierarchy of controller fb_cfg.cgroup_ssid. `t` is a BTF pointer
 * (every caller is a tp_btf program), so the walk is plain loads the verifier
 * guards, not a helper call per step: this runs for every event of every
 * task, the filtered-out ones included. It climbs from the task's cgroup to
 * the filter's depth (css->parent; cgroup->ancestors[] is a flexible array,
 * which BTF loads cannot index) and compares that cgroup's id: no climb for a
 * task in the cgroup itself, none for one less deep. Both fb_cfg values are
 * read-only constants, so the index is known to the verifier. */
static __always_inline bool fb_in_cgroup(struct task_struct *t)
{
	struct css_set *cs = t->cgroups;
	struct cgroup_subsys_state *css;
	struct cgroup *cg;
	int up;

	if (fb_cfg.cgroup_ssid < 0)
		cg = cs->dfl_cgrp;
	else
		cg = cs->subsys[fb_cfg.cgroup_ssid & 31]->cgroup;
	if (!cg)
		return false;
	up = cg->level - (int)fb_cfg.cgroup_level;
	if (up < 0 || up > FB_CGROUP_MAX_BELOW)
		return false;
	css = &cg->self;
	for (int i = 0; i < FB_CGROUP_MAX_BELOW && i < up; i++)
		css = css->parent;
	return css->cgroup->kn->id == fb_cfg.cgroup_id;
}

/* True when events of task `t` (NULL: the current task) in thread group
 * `tgid` are not wanted. The comm is read only in FB_FILTER_COMM mode. */
static __always_inline bool fb_skip_tgid(__u32 tgid, struct task_struct *t)
{
	char comm[FB_COMM_LEN];

	if (tgid == fb_cfg.self_pid)
		return true;
	switch (fb_cfg.filter_mode) {
	case FB_FILTER_PID:
		return tgid != fb_cfg.target_pid;
	case FB_FILTER_COMM:
		if (t)
			bpf_probe_read_kernel_str(comm, sizeof(comm), t->comm);
		else
			bpf_get_current_comm(comm, sizeof(comm));
		return !fb_comm_is_target(comm);
	case FB_FILTER_TRACKED:
		return !bpf_map_lookup_elem(&tracked, &tgid);
	case FB_FILTER_CGROUP:
		return !fb_in_cgroup(t ? t : bpf_get_current_task_btf());
	default:
		return false;
	}
}

/* For the current task, in thread group `tgid`. */
static __always_inline bool fb_skip(__u32 tgid)
{
	return fb_skip_tgid(tgid, NULL);
}

/* For a task other than the current one. */
static __always_inline bool fb_skip_task(struct task_struct *t)
{
	return fb_skip_tgid(BPF_CORE_READ(t, tgid), t);
}

/* Wake the consumer only once enough is pending: one wake-up per batch
 * instead of one per event is most of the difference between 0.84 s and
 * 1.44 s in ARCHITECTURE.md's overhead figures. */
static __always_inline __u64 fb_submit_flags(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= fb_cfg.wakeup_bytes
		? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void fb_count_drops(__u64 now, __u32 n)
{
	__u32 zero = 0;
	struct fb_drops *d = bpf_map_lookup_elem(&drops, &zero);

	if (!d)
		return;
	if (d->count == 0)
		d->first_ts = now;
	/* Atomic: a flush run from an IPI can count drops in the middle of this. */
	__sync_fetch_and_add(&d->count, n);
	d->last_ts = now;
}

static __always_inline void fb_count_drop(__u64 now)
{
	fb_count_drops(now, 1);
}

static __always_inline struct fb_batch *fb_batch_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&batch, &zero);
}

/* Writes out this CPU's batch. The caller has set b->busy. */
static __always_inline void fb_batch_write(struct fb_batch *b)
{
	__u32 n = b->used;

	if (n == 0)
		return;
	if (n > FB_BATCH_BYTES)
		n = FB_BATCH_BYTES;
	if (bpf_ringbuf_output(&events, b->data, n, fb_submit_flags()))
		fb_count_drops(bpf_ktime_get_ns(), b->count);
	b->used = 0;
	b->count = 0;
	b->first_ts = 0;
}

/* Room for `room` bytes at the end of this CPU's batch, writing the batch
 * out first if it is too full; NULL if there cannot be. The caller holds
 * b->busy, fills the record, then advances b->used and b->count. */
static __always_inline void *fb_batch_room(struct fb_batch *b, __u32 room)
{
	__u32 off;

	if (b->used > FB_BATCH_BYTES - room)
		fb_batch_write(b);
	off = b->used;
	if (off > FB_BATCH_BYTES - room)
		return NULL;
	return (void *)b->data + off;
}

/* Flushes this CPU's batch unless a program it interrupted is inside it. */
static __always_inline void fb_batch_flush(void)
{
	struct fb_batch *b = fb_batch_get();

	if (!b || b->busy || b->used == 0)
		return;
	b->busy = 1;
	fb_batch_write(b);
	b->busy = 0;
}

/* Writes one record straight to the ring, after this CPU's batch so the
 * current task's earlier events stay ahead of it. For records built outside
 * the batch (summaries, events from contexts that may nest in a batch user). */
static __always_inline void fb_output(void *data, __u32 size, __u64 now)
{
	fb_batch_flush();
	if (bpf_ringbuf_output(&events, data, size, fb_submit_flags()))
		fb_count_drop(now);
}

/* Longest span of a kernel-side summary (writes per file, faults per thread),
 * and how long one waits for more before the sweep writes it out. */
#define FB_SUMMARY_NS 1000000000ULL

/* What a sweep program (fb_sweep_*, run by user space once a second over a
 * map of summaries) hands its bpf_for_each_map_elem callback. */
struct fb_sweep {
	__u64 now;
	__u64 all; /* write out every summary, not only quiet ones: the recording ends */
};

/* The sweep's state from its raw_tp test-run arguments (ctx[0]: all). */
static __always_inline struct fb_sweep fb_sweep_start(__u64 *ctx)
{
	struct fb_sweep c = { .now = bpf_ktime_get_ns(), .all = ctx[0] };

	return c;
}

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFLNK 0120000
#define S_IFREG 0100000
#define S_IFBLK 0060000
#define S_IFDIR 0040000
#define S_IFCHR 0020000
#define S_IFIFO 0010000

/* The file open on `fd` in `task`, NULL if none. */
static __always_inline struct file *fd_file(struct task_struct *task, __u64 fd, bool *bad)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;

	*bad = false;
	if (!fdt)
		return NULL;
	*bad = true;
	if (fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]))
		return NULL;
	return f;
}

static __always_inline __u8 mode_kind(umode_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: return FB_FD_REGULAR;
	case S_IFDIR: return FB_FD_DIRECTORY;
	case S_IFCHR: return FB_FD_CHAR;
	case S_IFBLK: return FB_FD_BLOCK;
	case S_IFIFO: return FB_FD_FIFO;
	case S_IFSOCK: return FB_FD_SOCKET;
	case S_IFLNK: return FB_FD_SYMLINK;
	default: return FB_FD_ANON;
	}
}

static __always_inline __u8 fd_kind(struct task_struct *task, __u64 fd)
{
	bool bad;
	struct file *f = fd_file(task, fd, &bad);

	if (!f)
		return bad ? FB_FD_BAD : FB_FD_UNRESOLVED;
	return mode_kind(BPF_CORE_READ(f, f_inode, i_mode));
}

/* The address family of the socket open on `file` (AF_UNIX 1, AF_INET 2,
 * AF_INET6 10), 0 if it is not a socket. */
static __always_inline __u16 fb_sock_family(struct file *f)
{
	struct socket *sock;

	if (!f || (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(f, private_data);
	if (!sock)
		return 0;
	return BPF_CORE_READ(sock, sk, __sk_common.skc_family);
}

static __always_inline void fb_fill_header(struct fb_header *h, __u16 type, __u16 size,
					   __u64 ts, __u32 pid, __u32 tid)
{
	h->ts_ns = ts;
	h->type = type;
	h->size = size;
	h->cpu = bpf_get_smp_processor_id();
	h->flags = 0;
	h->pid = pid;
	h->tid = tid;
}

#endif
