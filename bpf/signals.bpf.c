/* SPDX-License-Identifier: Apache-2.0 */
/* Signals: generation (who sent what to whom, and what became of it) and
 * delivery. A signal is recorded when its sender or its receiver is. */
#include "flightbox.bpf.h"

static __always_inline int emit(__u32 op, int sig, struct kernel_siginfo *info, struct task_struct *target,
				int group, int result)
{
	struct task_struct *cur = bpf_get_current_task_btf();
	struct fb_signal *e;
	__u64 now;
	int code = 0;
	__u32 uid = 0;

	/* The sender is the current task; for delivery it is the receiver. */
	if (fb_skip(cur->tgid) && (op == FB_SIGNAL_DELIVER || fb_skip_task(target)))
		return 0;
	/* info may be SEND_SIG_NOINFO (0) or SEND_SIG_PRIV (1), not a pointer. */
	if ((unsigned long)info > 1) {
		code = BPF_CORE_READ(info, si_code);
		if (code == 0 || code == -6) /* SI_USER, SI_TKILL: kill(2)-style, carries the uid */
			uid = BPF_CORE_READ(info, _sifields._kill._uid);
	} else if ((unsigned long)info == 1) {
		code = 128; /* SI_KERNEL */
	}
	fb_batch_flush();
	now = bpf_ktime_get_ns();
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		fb_count_drop(now);
		return 0;
	}
	fb_fill_header(&e->h, FB_EV_SIGNAL, sizeof(*e), now, cur->tgid, cur->pid);
	e->sig = sig;
	e->code = code;
	e->op = op;
	e->result = result;
	e->target_pid = BPF_CORE_READ(target, tgid);
	e->target_tid = BPF_CORE_READ(target, pid);
	e->sender_uid = uid;
	e->group = group;
	bpf_probe_read_kernel_str(e->target_comm, sizeof(e->target_comm), target->comm);
	bpf_ringbuf_submit(e, fb_submit_flags());
	return 0;
}

SEC("tp_btf/signal_generate")
int BPF_PROG(fb_signal_generate, int sig, struct kernel_siginfo *info, struct task_struct *task, int group, int result)
{
	return emit(FB_SIGNAL_GENERATE, sig, info, task, group, result);
}

SEC("tp_btf/signal_deliver")
int BPF_PROG(fb_signal_deliver, int sig, struct kernel_siginfo *info, struct k_sigaction *ka)
{
	return emit(FB_SIGNAL_DELIVER, sig, info, bpf_get_current_task_btf(), 0, 0);
}
