/* SPDX-License-Identifier: Apache-2.0 */
/* The overhead floor for `flightbox bench`: count syscall entries and exits in
 * the kernel and do nothing else, on the same tracepoints the recorder uses. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void bump(__u32 key)
{
	__u64 *c = bpf_map_lookup_elem(&counts, &key);

	if (c)
		(*c)++;
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
