/* SPDX-License-Identifier: Apache-2.0 */
/* Block I/O: a request's issue is remembered by its address; its completion
 * emits one fb_block with device, sector, bytes, operation and latency. */
#include "flightbox.bpf.h"

#define REQ_OP_MASK 0xff
#define MINORBITS 20

struct issued {
	__u64 ts;
	__u32 pid;
	__u32 tid;
	char comm[FB_COMM_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct issued);
} inflight SEC(".maps");

SEC("tp_btf/block_rq_issue")
int BPF_PROG(fb_block_issue, struct request *rq)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct issued v = {};
	__u64 key = (__u64)rq;

	if (fb_skip(task->tgid))
		return 0;
	v.ts = bpf_ktime_get_ns();
	v.pid = task->tgid;
	v.tid = task->pid;
	bpf_get_current_comm(v.comm, sizeof(v.comm));
	/* No room to remember the request: its completion event will be
	 * missing, so count it as lost now. */
	if (bpf_map_update_elem(&inflight, &key, &v, BPF_ANY))
		fb_count_drop(v.ts);
	return 0;
}

SEC("tp_btf/block_rq_complete")
int BPF_PROG(fb_block_complete, struct request *rq, blk_status_t error, unsigned int nr_bytes)
{
	__u64 key = (__u64)rq, now;
	struct issued *v = bpf_map_lookup_elem(&inflight, &key);
	struct gendisk *disk;
	struct fb_block *e;

	if (!v)
		return 0;
	now = bpf_ktime_get_ns();
	/* Completions run in interrupt context: straight to the ring, never
	 * through the per-CPU batch a task on this CPU may be filling. */
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		fb_count_drop(now);
		bpf_map_delete_elem(&inflight, &key);
		return 0;
	}
	fb_fill_header(&e->h, FB_EV_BLOCK, sizeof(*e), v->ts, v->pid, v->tid);
	e->latency_ns = now - v->ts;
	e->sector = BPF_CORE_READ(rq, __sector);
	disk = BPF_CORE_READ(rq, q, disk);
	e->dev = disk ? (BPF_CORE_READ(disk, major) << MINORBITS) | BPF_CORE_READ(disk, first_minor) : 0;
	e->bytes = nr_bytes;
	e->op = BPF_CORE_READ(rq, cmd_flags) & REQ_OP_MASK;
	e->error = error;
	__builtin_memcpy(e->comm, v->comm, sizeof(e->comm));
	bpf_ringbuf_submit(e, fb_submit_flags());
	/* A request completed in parts stays in flight until its last part. */
	if (BPF_CORE_READ(rq, __data_len) <= nr_bytes)
		bpf_map_delete_elem(&inflight, &key);
	return 0;
}
