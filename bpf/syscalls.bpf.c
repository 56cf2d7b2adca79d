/* SPDX-License-Identifier: Apache-2.0 */
/* Syscalls, paired in the kernel: entry stashes number, time and arguments in
 * task-local storage; exit emits one fb_syscall with the duration. */
#include "flightbox.bpf.h"

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define S_IFLNK 0120000
#define S_IFREG 0100000
#define S_IFBLK 0060000
#define S_IFDIR 0040000
#define S_IFCHR 0020000
#define S_IFIFO 0010000

struct pending {
	__u64 ts;
	__u64 args[FB_SYSCALL_ARGS];
	__u32 nr;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct pending);
} pending SEC(".maps");

/* Syscalls whose first argument is a file descriptor worth classifying:
 * a read that blocks on a pipe is waiting by design, one on a disk file is
 * slow. Numbers are x86_64's. */
static __always_inline bool fd_syscall(__u32 nr)
{
	switch (nr) {
	case 0: case 1: case 16: case 17: case 18: case 19: case 20: /* read write ioctl pread pwrite readv writev */
	case 42: case 43: case 44: case 45: case 46: case 47: /* connect accept sendto recvfrom sendmsg recvmsg */
	case 73: case 74: case 75: case 77: case 217: /* flock fsync fdatasync ftruncate getdents64 */
	case 232: case 275: case 277: case 281: case 285: case 288: /* epoll_wait splice sync_file_range epoll_pwait fallocate accept4 */
	case 295: case 296: case 299: case 307: case 326: case 327: case 328: /* preadv pwritev recvmmsg sendmmsg copy_file_range preadv2 pwritev2 */
		return true;
	default:
		return false;
	}
}

static __always_inline __u8 fd_kind(struct task_struct *task, __u64 fd)
{
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds;
	struct file *f = NULL;
	unsigned int max;
	umode_t mode;

	if (!fdt)
		return FB_FD_UNRESOLVED;
	max = BPF_CORE_READ(fdt, max_fds);
	if (fd >= max)
		return FB_FD_BAD;
	fds = BPF_CORE_READ(fdt, fd);
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) || !f)
		return FB_FD_BAD;
	mode = BPF_CORE_READ(f, f_inode, i_mode);
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

SEC("tp_btf/sys_enter")
int BPF_PROG(fb_sys_enter, struct pt_regs *regs, long id)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct pending *p;

	if (fb_skip(tgid))
		return 0;
	p = bpf_task_storage_get(&pending, bpf_get_current_task_btf(), 0,
				 BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!p)
		return 0;
	p->nr = id;
	p->args[0] = regs->di;
	p->args[1] = regs->si;
	p->args[2] = regs->dx;
	p->ts = bpf_ktime_get_boot_ns();
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(fb_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct pending *p;
	struct fb_syscall *e;
	__u64 pid_tgid, now;

	p = bpf_task_storage_get(&pending, task, 0, 0);
	if (!p || !p->ts)
		return 0;
	now = bpf_ktime_get_boot_ns();
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		fb_count_drop(now);
		p->ts = 0;
		return 0;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	fb_fill_header(&e->h, FB_EV_SYSCALL, sizeof(*e), p->ts, pid_tgid >> 32, (__u32)pid_tgid);
	e->duration_ns = now - p->ts;
	e->ret = ret;
	e->args[0] = p->args[0];
	e->args[1] = p->args[1];
	e->args[2] = p->args[2];
	e->nr = p->nr;
	e->fd_kind = FB_FD_UNRESOLVED;
	e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;
	if (e->duration_ns >= fb_cfg.resolve_fd_after_ns && fd_syscall(p->nr))
		e->fd_kind = fd_kind(task, p->args[0]);
	p->ts = 0;
	bpf_ringbuf_submit(e, fb_submit_flags());
	return 0;
}
