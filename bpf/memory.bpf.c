/* SPDX-License-Identifier: Apache-2.0 */
/* Memory: page faults summarized per thread (fb_faults), direct reclaim with
 * its duration (fb_reclaim), OOM kills with the victim's size and memory
 * cgroup (fb_oom).
 *
 * Faults are far too frequent to stream one record each: a compile takes
 * hundreds of thousands a second. Each thread's are counted in a hash map and
 * written out once the count spans FB_SUMMARY_NS, when the thread exits, and
 * by fb_sweep_faults (run by user space) once it stopped faulting. Whether a
 * fault was major or minor is known only after it was handled; the kernel
 * accounts that in the task's maj_flt/min_flt, which the summary reports as
 * differences over its span. */
#include "flightbox.bpf.h"

#define E2BIG 7

struct fstate {
	__u64 first_ts, last_ts, user, kernel;
	__u64 maj0, min0, maj, min; /* the task's counters when the summary began, and lately */
	__u64 addr, ip;
	__u32 tgid, _pad;
	char comm[FB_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32); /* tid */
	__type(value, struct fstate);
} faults SEC(".maps");

/* A direct reclaim in progress, per task. */
struct rstate {
	__u64 ts;
	__u32 order, gfp;
	__u32 memcg, _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8192);
	__type(key, __u32);
	__type(value, struct rstate);
} reclaiming SEC(".maps");

static __always_inline void fill_faults(struct fb_faults *e, __u32 tid, struct fstate *v, __u64 now)
{
	fb_fill_header(&e->h, FB_EV_FAULTS, sizeof(*e), now, v->tgid, tid);
	e->first_ts = v->first_ts;
	e->user = v->user;
	e->kernel = v->kernel;
	e->major = v->maj - v->maj0;
	e->minor = v->min - v->min0;
	e->last_addr = v->addr;
	e->last_ip = v->ip;
	__builtin_memcpy(e->comm, v->comm, FB_COMM_LEN);
}

static __always_inline void emit_faults(__u32 tid, struct fstate *v, __u64 now)
{
	struct fb_faults e;

	fill_faults(&e, tid, v, now);
	fb_output(&e, sizeof(e), now);
}

static __always_inline void count_fault(unsigned long address, struct pt_regs *regs, bool user)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tid = task->pid;
	struct fstate *v;
	__u64 now;

	if (fb_skip(task->tgid))
		return;
	now = bpf_ktime_get_ns();
	v = bpf_map_lookup_elem(&faults, &tid);
	if (!v) {
		struct fstate init = {};

		init.first_ts = now;
		init.tgid = task->tgid;
		init.maj0 = init.maj = task->maj_flt;
		init.min0 = init.min = task->min_flt;
		bpf_get_current_comm(init.comm, sizeof(init.comm));
		if (bpf_map_update_elem(&faults, &tid, &init, BPF_NOEXIST) == -E2BIG) {
			fb_count_drop(now); /* no room for another thread's summary */
			return;
		}
		v = bpf_map_lookup_elem(&faults, &tid);
		if (!v)
			return;
	}
	if (user)
		v->user++;
	else
		v->kernel++;
	v->last_ts = now;
	v->maj = task->maj_flt;
	v->min = task->min_flt;
	v->addr = address;
	v->ip = regs ? BPF_CORE_READ(regs, ip) : 0;
	if (now - v->first_ts >= FB_SUMMARY_NS) {
		emit_faults(tid, v, now);
		v->first_ts = now;
		v->user = v->kernel = 0;
		v->maj0 = v->maj;
		v->min0 = v->min;
	}
}

SEC("tp_btf/page_fault_user")
int BPF_PROG(fb_fault_user, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	count_fault(address, regs, true);
	return 0;
}

SEC("tp_btf/page_fault_kernel")
int BPF_PROG(fb_fault_kernel, unsigned long address, struct pt_regs *regs, unsigned long error_code)
{
	count_fault(address, regs, false);
	return 0;
}

/* A thread's last summary goes out with it; attached ahead of the process
 * family's exit program, so it comes before the exit record. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(fb_fault_exit, struct task_struct *p)
{
	__u32 tid = p->pid;
	struct fstate *v = bpf_map_lookup_elem(&faults, &tid);

	if (!v)
		return 0;
	v->maj = p->maj_flt;
	v->min = p->min_flt;
	if (v->user || v->kernel)
		emit_faults(tid, v, bpf_ktime_get_ns());
	bpf_map_delete_elem(&faults, &tid);
	return 0;
}

static __always_inline void reclaim_begin(int order, gfp_t gfp, __u32 memcg)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct rstate r = { .ts = bpf_ktime_get_ns(), .order = order, .gfp = gfp, .memcg = memcg };
	__u32 tid = task->pid;

	if (fb_skip(task->tgid))
		return;
	if (bpf_map_update_elem(&reclaiming, &tid, &r, BPF_ANY))
		fb_count_drop(r.ts);
}

static __always_inline void reclaim_end(unsigned long reclaimed)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tid = task->pid;
	struct rstate *r = bpf_map_lookup_elem(&reclaiming, &tid);
	struct fb_reclaim e;
	__u64 now;

	if (!r)
		return;
	now = bpf_ktime_get_ns();
	fb_fill_header(&e.h, FB_EV_RECLAIM, sizeof(e), r->ts, task->tgid, tid);
	e.h.flags = r->memcg ? FB_F_RECLAIM_MEMCG : 0;
	e.duration_ns = now - r->ts;
	e.reclaimed = reclaimed;
	e.order = r->order;
	e.gfp_flags = r->gfp;
	bpf_map_delete_elem(&reclaiming, &tid);
	fb_output(&e, sizeof(e), now);
}

SEC("tp_btf/mm_vmscan_direct_reclaim_begin")
int BPF_PROG(fb_reclaim_begin, int order, gfp_t gfp)
{
	reclaim_begin(order, gfp, 0);
	return 0;
}

SEC("tp_btf/mm_vmscan_direct_reclaim_end")
int BPF_PROG(fb_reclaim_end, unsigned long reclaimed)
{
	reclaim_end(reclaimed);
	return 0;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_begin")
int BPF_PROG(fb_memcg_reclaim_begin, int order, gfp_t gfp)
{
	reclaim_begin(order, gfp, 1);
	return 0;
}

SEC("tp_btf/mm_vmscan_memcg_reclaim_end")
int BPF_PROG(fb_memcg_reclaim_end, unsigned long reclaimed)
{
	reclaim_end(reclaimed);
	return 0;
}

/* The record is too big for the stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fb_oom);
} oom_scratch SEC(".maps");

static __always_inline __u64 rss(struct mm_struct *mm, int i)
{
	/* What get_mm_counter() reports: the counter's shared part, without the per-CPU deltas. */
	long v = BPF_CORE_READ(mm, rss_stat[i].count);

	return v > 0 ? v : 0;
}

/* Linux 6.8 and later pass the victim's task (older kernels only its pid:
 * user space does not load this program there, and says so). */
SEC("tp_btf/mark_victim")
int BPF_PROG(fb_oom_victim, struct task_struct *victim, uid_t uid)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = victim->mm;
	__u32 zero = 0;
	struct fb_oom *e;
	__u64 now = bpf_ktime_get_ns();

	if (fb_skip_task(victim) && fb_skip(task->tgid))
		return 0;
	e = bpf_map_lookup_elem(&oom_scratch, &zero);
	if (!e)
		return 0;
	__builtin_memset(e, 0, sizeof(*e));
	fb_fill_header(&e->h, FB_EV_OOM, sizeof(*e), now, victim->tgid, victim->pid);
	if (mm) {
		e->total_vm = BPF_CORE_READ(mm, total_vm);
		e->file_rss = rss(mm, 0);  /* MM_FILEPAGES */
		e->anon_rss = rss(mm, 1);  /* MM_ANONPAGES */
		e->shmem_rss = rss(mm, 3); /* MM_SHMEMPAGES */
		e->pgtables_bytes = BPF_CORE_READ(mm, pgtables_bytes.counter);
	}
	e->uid = uid;
	e->oom_score_adj = BPF_CORE_READ(victim, signal, oom_score_adj);
	e->trigger_pid = task->tgid;
	e->trigger_tid = task->pid;
	bpf_probe_read_kernel_str(e->comm, sizeof(e->comm), victim->comm);
	bpf_probe_read_kernel_str(e->trigger_comm, sizeof(e->trigger_comm), task->comm);
	if (bpf_core_enum_value_exists(enum cgroup_subsys_id, memory_cgrp_id)) {
		int id = bpf_core_enum_value(enum cgroup_subsys_id, memory_cgrp_id);
		struct cgroup *cg = BPF_CORE_READ(victim, cgroups, subsys[id], cgroup);

		if (cg) {
			e->memcg_id = BPF_CORE_READ(cg, kn, id);
			bpf_probe_read_kernel_str(e->memcg, sizeof(e->memcg), BPF_CORE_READ(cg, kn, name));
		}
	}
	fb_output(e, sizeof(*e), now);
	return 0;
}

static long sweep_one(struct bpf_map *map, __u32 *tid, struct fstate *v, struct fb_sweep *c)
{
	if (!c->all && c->now < v->last_ts + FB_SUMMARY_NS)
		return 0;
	if (v->user || v->kernel)
		emit_faults(*tid, v, c->now);
	bpf_map_delete_elem(map, tid);
	return 0;
}

/* Run by user space once a second: writes out the summaries of threads that
 * stopped faulting. */
SEC("raw_tp")
int fb_sweep_faults(__u64 *ctx)
{
	struct fb_sweep c = fb_sweep_start(ctx);

	bpf_for_each_map_elem(&faults, sweep_one, &c, 0);
	return 0;
}
