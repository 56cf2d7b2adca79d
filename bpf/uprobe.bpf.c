/* SPDX-License-Identifier: Apache-2.0 */
/* Health checks on applications: one generic set of programs that user space
 * attaches at run time, once per check, with libbpf
 * (bpf_program__attach_uprobe_opts with func_name, bpf_program__attach_usdt):
 * nothing is compiled per check. Each attachment carries its check in the BPF
 * cookie (FB_PROBE_COOKIE below), so one program serves every check.
 *
 *   fb_probe_entry   uprobe at a function's entry: keeps ts and arguments per
 *                    (thread, check) until the return
 *   fb_probe_return  uretprobe: one fb_probe with the latency and return value
 *   fb_probe_usdt    USDT probe: one fb_probe with its arguments */
#include "flightbox.bpf.h"
#include <bpf/usdt.bpf.h>

/* The cookie of an attachment: bits 0-31 the probe id, 32-35 how many
 * arguments to capture (0-4), bit 36 the return value is a C int (sign-extend
 * its low 32 bits; rax's upper half is garbage for an int function). */
#define FB_PROBE_ID(c) ((__u32)(c))
#define FB_PROBE_NARGS(c) ((__u32)((c) >> 32) & 0xf)
#define FB_PROBE_RET32(c) (((c) >> 36) & 1)

struct fb_probe_key {
	__u32 tid;
	__u32 probe_id;
};

struct fb_probe_entry {
	__u64 ts;
	__u64 args[FB_PROBE_ARGS];
};

/* Calls in progress. LRU: a thread that dies inside a probed function (or a
 * function that never returns, like one that longjmps out) must not pin an
 * entry forever. A recursive function's inner calls overwrite the outer one's
 * entry: its outer returns then come without entry (FB_F_PROBE_NO_ENTRY). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fb_probe_key);
	__type(value, struct fb_probe_entry);
} probe_calls SEC(".maps");

SEC("uprobe")
int BPF_KPROBE(fb_probe_entry)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u32 nargs = FB_PROBE_NARGS(cookie);
	struct fb_probe_key key = { .tid = (__u32)id, .probe_id = FB_PROBE_ID(cookie) };
	struct fb_probe_entry e = { .ts = bpf_ktime_get_ns() };

	if (fb_skip(id >> 32))
		return 0;
	if (nargs > 0) e.args[0] = PT_REGS_PARM1(ctx);
	if (nargs > 1) e.args[1] = PT_REGS_PARM2(ctx);
	if (nargs > 2) e.args[2] = PT_REGS_PARM3(ctx);
	if (nargs > 3) e.args[3] = PT_REGS_PARM4(ctx);
	bpf_map_update_elem(&probe_calls, &key, &e, BPF_ANY);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(fb_probe_return)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	__u64 cookie = bpf_get_attach_cookie(ctx);
	struct fb_probe_key key = { .tid = (__u32)id, .probe_id = FB_PROBE_ID(cookie) };
	struct fb_probe_entry *entry;
	struct fb_probe e = {};
	__u64 rc = PT_REGS_RC(ctx);

	if (fb_skip(id >> 32))
		return 0;
	fb_fill_header(&e.h, FB_EV_PROBE, sizeof(e), now, id >> 32, (__u32)id);
	e.h.flags = FB_F_PROBE_RETURN;
	e.probe_id = key.probe_id;
	e.nargs = FB_PROBE_NARGS(cookie);
	if (e.nargs > FB_PROBE_ARGS)
		e.nargs = FB_PROBE_ARGS;
	e.ret = FB_PROBE_RET32(cookie) ? (__s64)(__s32)rc : (__s64)rc;
	entry = bpf_map_lookup_elem(&probe_calls, &key);
	if (entry && entry->ts <= now) {
		e.h.ts_ns = entry->ts;
		e.latency_ns = now - entry->ts;
		__builtin_memcpy(e.args, entry->args, sizeof(e.args));
		bpf_map_delete_elem(&probe_calls, &key);
	} else {
		e.h.flags |= FB_F_PROBE_NO_ENTRY;
		e.nargs = 0;
	}
	fb_output(&e, sizeof(e), now);
	return 0;
}

SEC("usdt")
int fb_probe_usdt(struct pt_regs *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	__u64 cookie = bpf_usdt_cookie(ctx);
	struct fb_probe e = {};
	int cnt = bpf_usdt_arg_cnt(ctx);
	long v;

	if (fb_skip(id >> 32))
		return 0;
	fb_fill_header(&e.h, FB_EV_PROBE, sizeof(e), now, id >> 32, (__u32)id);
	e.h.flags = FB_F_PROBE_USDT;
	e.probe_id = FB_PROBE_ID(cookie);
	e.nargs = FB_PROBE_NARGS(cookie);
	if (cnt < 0)
		cnt = 0;
	if (e.nargs > (__u32)cnt)
		e.nargs = cnt;
	if (e.nargs > FB_PROBE_ARGS)
		e.nargs = FB_PROBE_ARGS;
	for (__u32 i = 0; i < FB_PROBE_ARGS; i++) {
		if (i >= e.nargs)
			break;
		if (bpf_usdt_arg(ctx, i, &v) == 0)
			e.args[i] = v;
	}
	fb_output(&e, sizeof(e), now);
	return 0;
}
