/* SPDX-License-Identifier: Apache-2.0 */
/* Scheduler: run-queue latency and off-CPU time per task, computed in the
 * kernel from wakeups and switches; only waits over a threshold are emitted,
 * so the stream does not carry every context switch. */
#include "flightbox.bpf.h"

#define TASK_RUNNING 0

struct fb_wait_state {
	__u64 runnable_since; /* woken, or preempted while runnable */
	__u64 blocked_since;  /* switched out while not runnable */
	__u32 blocked_state;
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct fb_wait_state);
} wait_state SEC(".maps");

static __always_inline void mark_runnable(struct task_struct *p)
{
	struct fb_wait_state *s;

	if (fb_skip_task(p))
		return;
	s = bpf_task_storage_get(&wait_state, p, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (s && !s->runnable_since)
		s->runnable_since = bpf_ktime_get_ns();
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(fb_sched_wakeup, struct task_struct *p)
{
	mark_runnable(p);
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(fb_sched_wakeup_new, struct task_struct *p)
{
	mark_runnable(p);
	return 0;
}

static __always_inline void emit(struct task_struct *t, __u32 kind, __u64 since, __u64 now, __u32 state)
{
	struct fb_sched *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		fb_count_drop(now);
		return;
	}
	/* Scheduler context: straight to the ring, never through the batch. */
	fb_fill_header(&e->h, FB_EV_SCHED, sizeof(*e), since, t->tgid, t->pid);
	e->wait_ns = now - since;
	e->kind = kind;
	e->prev_state = state;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), t->comm);
	bpf_ringbuf_submit(e, fb_submit_flags());
}

SEC("tp_btf/sched_switch")
int BPF_PROG(fb_sched_switch, bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
{
	__u64 now = bpf_ktime_get_ns();
	struct fb_wait_state *s;

	/* The task leaving: back on the run queue, or blocked. */
	if (prev->pid && !fb_skip_task(prev)) {
		s = bpf_task_storage_get(&wait_state, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (s) {
			if (prev_state == TASK_RUNNING) {
				s->runnable_since = now;
			} else {
				s->blocked_since = now;
				s->blocked_state = prev_state;
				s->runnable_since = 0;
			}
		}
	}
	/* The task arriving: how long it waited for the CPU, and how long it was away. */
	if (!next->pid)
		return 0;
	s = bpf_task_storage_get(&wait_state, next, 0, 0);
	if (!s)
		return 0;
	if (s->runnable_since && now - s->runnable_since >= fb_cfg.sched_runq_min_ns)
		emit(next, FB_SCHED_RUNQ, s->runnable_since, now, 0);
	if (s->blocked_since && now - s->blocked_since >= fb_cfg.sched_offcpu_min_ns)
		emit(next, FB_SCHED_OFFCPU, s->blocked_since, now, s->blocked_state);
	s->runnable_since = 0;
	s->blocked_since = 0;
	return 0;
}
