/* SPDX-License-Identifier: Apache-2.0 */
/* Process lifecycle: fork/clone (thread or process), exec with filename and
 * argv, exit with status. Also maintains the tracked set for `record -- CMD`. */
#include "flightbox.bpf.h"

struct exec_buf {
	struct fb_exec e;
	char data[FB_MAX_FILENAME + FB_MAX_ARGV];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct exec_buf);
} exec_scratch SEC(".maps");

SEC("tp_btf/sched_process_fork")
int BPF_PROG(fb_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	bool thread = ptgid == ctgid;
	struct fb_fork *e;
	__u64 now;
	__u8 one = 1;

	if (fb_skip(ptgid))
		return 0;
	if (fb_cfg.filter_mode == FB_FILTER_TRACKED && !thread &&
	    bpf_map_update_elem(&tracked, &ctgid, &one, BPF_ANY)) {
		__u32 zero = 0;
		struct fb_drops *d = bpf_map_lookup_elem(&drops, &zero);

		if (d)
			__sync_fetch_and_add(&d->untracked, 1);
	}
	fb_batch_flush(); /* the parent's syscalls before its fork */
	now = bpf_ktime_get_ns();
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		fb_count_drop(now);
		return 0;
	}
	fb_fill_header(&e->h, FB_EV_FORK, sizeof(*e), now, ptgid, parent->pid);
	e->h.flags = thread ? FB_F_FORK_THREAD : 0;
	e->child_pid = ctgid;
	e->child_tid = child->pid;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), child->comm);
	bpf_ringbuf_submit(e, fb_submit_flags());
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(fb_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = p->tgid, zero = 0;
	struct exec_buf *b;
	unsigned long arg_start, arg_end, alen;
	long flen;
	__u64 now = bpf_ktime_get_ns();
	__u32 size;

	if (fb_skip(tgid))
		return 0;
	fb_batch_flush();
	b = bpf_map_lookup_elem(&exec_scratch, &zero);
	if (!b)
		return 0;
	b->e.old_tid = old_pid;
	b->e.ppid = BPF_CORE_READ(p, real_parent, tgid);
	b->e.uid = (__u32)bpf_get_current_uid_gid();
	b->e.argc = bprm->argc;
	{
		/* What stdin and stdout are in the new image: a shell whose stdio is a
		 * network socket is a reverse shell. */
		bool bad;
		struct file *in = fd_file(p, 0, &bad), *out = fd_file(p, 1, &bad);

		b->e.stdin_kind = in ? mode_kind(BPF_CORE_READ(in, f_inode, i_mode)) : 0;
		b->e.stdout_kind = out ? mode_kind(BPF_CORE_READ(out, f_inode, i_mode)) : 0;
		b->e.stdin_family = fb_sock_family(in);
		b->e.stdout_family = fb_sock_family(out);
	}
	bpf_probe_read_kernel_str(b->e.comm, sizeof(b->e.comm), p->comm);
	fb_fill_header(&b->e.h, FB_EV_EXEC, 0, now, tgid, p->pid);

	flen = bpf_probe_read_kernel_str(b->data, FB_MAX_FILENAME, bprm->filename);
	if (flen <= 0)
		flen = 1;
	flen -= 1; /* drop the NUL */
	if (flen == FB_MAX_FILENAME - 1)
		b->e.h.flags |= FB_F_EXEC_TRUNCATED;
	flen &= FB_MAX_FILENAME - 1;

	arg_start = BPF_CORE_READ(p, mm, arg_start);
	arg_end = BPF_CORE_READ(p, mm, arg_end);
	alen = arg_end > arg_start ? arg_end - arg_start : 0;
	if (alen > FB_MAX_ARGV) {
		alen = FB_MAX_ARGV;
		b->e.h.flags |= FB_F_EXEC_TRUNCATED;
	}
	alen &= (FB_MAX_ARGV - 1) | FB_MAX_ARGV;
	if (alen > FB_MAX_ARGV)
		alen = FB_MAX_ARGV;
	if (alen && bpf_probe_read_user(b->data + flen, alen, (void *)arg_start))
		alen = 0;
	b->e.filename_len = flen;
	b->e.argv_len = alen;
	size = sizeof(b->e) + flen + alen;
	b->e.h.size = size;
	if (size > sizeof(*b))
		return 0;
	if (bpf_ringbuf_output(&events, b, size, fb_submit_flags()))
		fb_count_drop(now);
	return 0;
}

static __always_inline int handle_exit(struct task_struct *p, bool group_dead)
{
	__u32 tgid = p->tgid;
	struct fb_exit *e;
	__u64 now;

	if (fb_skip(tgid))
		return 0;
	fb_batch_flush();
	now = bpf_ktime_get_ns();
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		fb_count_drop(now);
	} else {
		fb_fill_header(&e->h, FB_EV_EXIT, sizeof(*e), now, tgid, p->pid);
		e->h.flags = group_dead ? FB_F_EXIT_GROUP : 0;
		e->status = p->exit_code;
		e->ppid = BPF_CORE_READ(p, real_parent, tgid);
		e->lifetime_ns = now - p->start_time;
		bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), p->comm);
		bpf_ringbuf_submit(e, group_dead ? BPF_RB_FORCE_WAKEUP : fb_submit_flags());
	}
	if (group_dead && fb_cfg.filter_mode == FB_FILTER_TRACKED)
		bpf_map_delete_elem(&tracked, &tgid);
	return 0;
}

/* Kernels whose sched_process_exit passes group_dead (6.16 and later): the
 * kernel's own answer to "is this the last thread?". User space loads this
 * one or the next, depending on the kernel's BTF. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(fb_exit_group_dead, struct task_struct *p, bool group_dead)
{
	return handle_exit(p, group_dead);
}

/* Older kernels: signal->live has just been decremented for this thread. Two
 * threads exiting at once can both read 0, so both may be marked last. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(fb_exit, struct task_struct *p)
{
	return handle_exit(p, BPF_CORE_READ(p, signal, live.counter) == 0);
}
