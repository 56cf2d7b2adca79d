/* SPDX-License-Identifier: Apache-2.0 */
/* The overhead floor for `flightbox bench`: count events in the kernel and do
 * nothing else, on every tracepoint the default families use. Counters:
 * 0 syscall entries, 1 syscall exits, 2 everything else. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void bump(__u32 key)
{
	__u64 *c = bpf_map_lookup_elem(&counts, &key);

	if (c)
		(*c)++;
}

/* The count, and a clock read whose result is kept (so it is not optimized out). */
static __always_inline void bump_timed(__u32 key)
{
	__u64 *c = bpf_map_lookup_elem(&counts, &key);

	if (c)
		*c += 1 + (bpf_ktime_get_ns() & 0);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(fb_count_enter, struct pt_regs *regs, long id)
{
	bump(0);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(fb_count_exit, struct pt_regs *regs, long ret)
{
	bump(1);
	return 0;
}

/* The floor plus what a syscall's duration costs at the least: one clock
 * read at entry and one at exit (user space loads these instead of the two
 * above for that mode of the benchmark). */
SEC("tp_btf/sys_enter")
int BPF_PROG(fb_clock_enter, struct pt_regs *regs, long id)
{
	bump_timed(0);
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(fb_clock_exit, struct pt_regs *regs, long ret)
{
	bump_timed(1);
	return 0;
}

/* Each of these runs for every hit, like the recorder's programs; the count
 * is all it does. */
#define COUNT(tp) \
	SEC("tp_btf/" #tp) \
	int fb_count_##tp(void *ctx) \
	{ \
		bump(2); \
		return 0; \
	}

COUNT(sched_switch)
COUNT(sched_wakeup)
COUNT(sched_wakeup_new)
COUNT(sched_process_fork)
COUNT(sched_process_exec)
COUNT(sched_process_exit)
COUNT(signal_generate)
COUNT(signal_deliver)
COUNT(block_rq_issue)
COUNT(block_rq_complete)
COUNT(inet_sock_set_state)
COUNT(tcp_retransmit_skb)
COUNT(tcp_send_reset)
COUNT(tcp_receive_reset)
COUNT(page_fault_user)
COUNT(page_fault_kernel)
COUNT(mm_vmscan_direct_reclaim_begin)
COUNT(mm_vmscan_direct_reclaim_end)
COUNT(mm_vmscan_memcg_reclaim_begin)
COUNT(mm_vmscan_memcg_reclaim_end)
COUNT(mark_victim)
