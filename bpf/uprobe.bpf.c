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
 * its low 32 bits; rax's upper half is garbage for an int function), bits
 * 37-39 the argument (1-4) that points to a string to capture, 0 for none. */
#define FB_PROBE_ID(c) ((__u32)(c))
#define FB_PROBE_NARGS(c) ((__u32)((c) >> 32) & 0xf)
#define FB_PROBE_RET32(c) (((c) >> 36) & 1)
#define FB_PROBE_STR(c) ((__u32)((c) >> 37) & 0x7)

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

/* An event with its string: too big for the stack, one per CPU. */
struct fb_probe_buf {
	struct fb_probe e;
	char str[FB_MAX_PROBE_STR];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fb_probe_buf);
} probe_buf SEC(".maps");

/* Reads the string argument the cookie names (when captured) after the
 * event and writes the event out. */
static __always_inline void fb_probe_emit(struct fb_probe_buf *b, __u64 cookie, __u64 now)
{
	__u32 which = FB_PROBE_STR(cookie);
	__u32 n = 0;
	long r;

	b->e.str_len = 0;
	b->e.str_arg = 0;
	b->e._pad = 0;
	if (which >= 1 && which <= FB_PROBE_ARGS && which <= b->e.nargs) {
		r = bpf_probe_read_user_str(b->str, sizeof(b->str), (void *)b->e.args[(which - 1) & (FB_PROBE_ARGS - 1)]);
		n = r > 0 ? r - 1 : 0; /* without the NUL */
		n &= FB_MAX_PROBE_STR - 1;
		b->e.str_len = n;
		b->e.str_arg = which;
	}
	b->e.h.size = sizeof(b->e) + n;
	fb_output(b, sizeof(b->e) + n, now);
}

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
	struct fb_probe_buf *b;
	__u32 zero = 0;
	__u64 rc = PT_REGS_RC(ctx);

	if (fb_skip(id >> 32))
		return 0;
	b = bpf_map_lookup_elem(&probe_buf, &zero);
	if (!b)
		return 0;
	__builtin_memset(&b->e, 0, sizeof(b->e));
	fb_fill_header(&b->e.h, FB_EV_PROBE, sizeof(b->e), now, id >> 32, (__u32)id);
	b->e.h.flags = FB_F_PROBE_RETURN;
	b->e.probe_id = key.probe_id;
	b->e.nargs = FB_PROBE_NARGS(cookie);
	if (b->e.nargs > FB_PROBE_ARGS)
		b->e.nargs = FB_PROBE_ARGS;
	b->e.ret = FB_PROBE_RET32(cookie) ? (__s64)(__s32)rc : (__s64)rc;
	entry = bpf_map_lookup_elem(&probe_calls, &key);
	if (entry && entry->ts <= now) {
		b->e.h.ts_ns = entry->ts;
		b->e.latency_ns = now - entry->ts;
		__builtin_memcpy(b->e.args, entry->args, sizeof(b->e.args));
		bpf_map_delete_elem(&probe_calls, &key);
	} else {
		b->e.h.flags |= FB_F_PROBE_NO_ENTRY;
		b->e.nargs = 0;
	}
	fb_probe_emit(b, cookie, now);
	return 0;
}

SEC("usdt")
int fb_probe_usdt(struct pt_regs *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 id = bpf_get_current_pid_tgid();
	__u64 cookie = bpf_usdt_cookie(ctx);
	struct fb_probe_buf *b;
	__u32 zero = 0;
	int cnt = bpf_usdt_arg_cnt(ctx);
	long v;

	if (fb_skip(id >> 32))
		return 0;
	b = bpf_map_lookup_elem(&probe_buf, &zero);
	if (!b)
		return 0;
	__builtin_memset(&b->e, 0, sizeof(b->e));
	fb_fill_header(&b->e.h, FB_EV_PROBE, sizeof(b->e), now, id >> 32, (__u32)id);
	b->e.h.flags = FB_F_PROBE_USDT;
	b->e.probe_id = FB_PROBE_ID(cookie);
	b->e.nargs = FB_PROBE_NARGS(cookie);
	if (cnt < 0)
		cnt = 0;
	if (b->e.nargs > (__u32)cnt)
		b->e.nargs = cnt;
	if (b->e.nargs > FB_PROBE_ARGS)
		b->e.nargs = FB_PROBE_ARGS;
	for (__u32 i = 0; i < FB_PROBE_ARGS; i++) {
		if (i >= b->e.nargs)
			break;
		v = 0;
		if (bpf_usdt_arg(ctx, i, &v) == 0)
			b->e.args[i] = v;
	}
	fb_probe_emit(b, cookie, now);
	return 0;
}
