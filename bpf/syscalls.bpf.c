/* SPDX-License-Identifier: Apache-2.0 */
/* Syscalls, paired in the kernel: entry stashes number, time and arguments;
 * exit emits one fb_syscall with the duration (the syscalls family) and, for
 * open, unlink and rename, one fb_file with the paths (the files family).
 * Writes to files are summarized per process and fd (fb_writes) and written
 * out when the fd is closed, once a second while writes go on, and by
 * fb_sweep_writes (run by user space) when they stopped.
 *
 * The stash lives in a per-CPU slot while the task runs, and moves to
 * task-local storage only when the task is switched out in the middle of a
 * syscall (the only way it can change CPU before the exit). Most syscalls
 * never block, so most pay for a per-CPU lookup instead of two task-storage
 * lookups: about 75 ns less per syscall on these machines. */
#include "flightbox.bpf.h"
#include "syscall_table.h"

/* Where the sys_enter and sys_exit tracepoints' registers hold a syscall's
 * arguments, and whether a task is in a 32-bit syscall. */
#if defined(__TARGET_ARCH_x86)
#define TS_COMPAT 0x0002 /* x86 thread_info.status: in a 32-bit syscall */

static __always_inline __u32 in_compat_syscall(struct task_struct *task)
{
	return task->thread_info.status & TS_COMPAT;
}

static __always_inline void entry_args(struct pt_regs *regs, __u32 compat, __u64 *args)
{
	if (compat) {
		args[0] = (__u32)regs->bx;
		args[1] = (__u32)regs->cx;
		args[2] = (__u32)regs->dx;
	} else {
		args[0] = regs->di;
		args[1] = regs->si;
		args[2] = regs->dx;
	}
}

#define ARG3(regs) ((regs)->r10)
#define ARG4(regs) ((regs)->r8)
#elif defined(__TARGET_ARCH_arm64)
/* Not run yet: written from arm64's struct pt_regs and thread_info, never
 * compiled against an arm64 vmlinux.h (none is committed) nor loaded. */
#define TIF_32BIT 22 /* arm64 thread_info.flags: an AArch32 task */

static __always_inline __u32 in_compat_syscall(struct task_struct *task)
{
	return (task->thread_info.flags >> TIF_32BIT) & 1;
}

static __always_inline void entry_args(struct pt_regs *regs, __u32 compat, __u64 *args)
{
	args[0] = compat ? (__u32)regs->regs[0] : regs->regs[0];
	args[1] = compat ? (__u32)regs->regs[1] : regs->regs[1];
	args[2] = compat ? (__u32)regs->regs[2] : regs->regs[2];
}

#define ARG3(regs) ((regs)->regs[3])
#define ARG4(regs) ((regs)->regs[4])
#endif


struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct fb_pending);
} pending SEC(".maps");

/* What each syscall number is to the families (FB_SC_* bits; the classes
 * are bpf/syscalls/classes.txt, compiled into syscall_table.h): one bounded
 * load per syscall instead of a chain of comparisons on the hot path. */
const volatile __u8 nr_class[FB_SC_NR_MAX] = { FB_SC_CLASSES };

static __always_inline __u8 classify(__u32 nr)
{
	return nr < FB_SC_NR_MAX ? nr_class[nr] : 0;
}

/* Argument `i` (a constant, from syscall_table.h) of the syscall in `p`:
 * 0-2 were kept at its entry, 3-4 are still in the registers at its exit;
 * -1 (no such argument) gives 0. */
static __always_inline __u64 sc_arg(struct fb_pending *p, struct pt_regs *regs, int i)
{
	switch (i) {
	case 0: case 1: case 2: return p->args[i];
	case 3: return ARG3(regs);
	case 4: return ARG4(regs);
	default: return 0;
	}
}

#define FB_AT_FDCWD -100
#define E2BIG 7

/* What a syscall the privilege family looks at is (FB_PRIV_*), 0 for others. */
static __always_inline __u32 priv_op(__u32 nr)
{
	switch (nr) {
#define X(nr_, op_, str_, str2_, str3_, mode_, fd_) case nr_: return op_;
	FB_SC_PRIV_OPS(X)
#undef X
	default: return 0;
	}
}

static __always_inline long read_priv_str(void *dst, __u64 src)
{
	long n;

	if (!src)
		return 0;
	n = bpf_probe_read_user_str(dst, FB_MAX_PRIV_STR, (void *)src);
	n = n > 0 ? n - 1 : 0;
	return n & (FB_MAX_PRIV_STR - 1);
}

/* Appends an fb_priv for the syscall in `p`, when it is one the family
 * reports (chmod only when it adds an exec bit, dup only onto 0-2). */
static __always_inline void emit_priv(struct fb_batch *b, struct fb_pending *p, struct task_struct *task,
				      struct pt_regs *regs, __u64 ts, long ret)
{
	__u32 op;
	__u64 a3 = sc_arg(p, regs, 3), s1, s2, s3, mode, fd;
	struct fb_priv *e;
	long n1, n2 = 0, n3 = 0;

	switch (p->nr) {
#define X(nr_, op_, str_, str2_, str3_, mode_, fd_) \
	case nr_: \
		op = op_; \
		s1 = sc_arg(p, regs, str_); \
		s2 = sc_arg(p, regs, str2_); \
		s3 = sc_arg(p, regs, str3_); \
		mode = sc_arg(p, regs, mode_); \
		fd = sc_arg(p, regs, fd_); \
		break;
	FB_SC_PRIV_OPS(X)
#undef X
	default:
		return;
	}
	if (op == FB_PRIV_CHMOD_EXEC && !(mode & 0111))
		return;
	if (op == FB_PRIV_DUP_STDIO && fd > 2)
		return;
	e = fb_batch_room(b, sizeof(*e) + 3 * FB_MAX_PRIV_STR);
	if (!e)
		return;
	fb_fill_header(&e->h, FB_EV_PRIV, 0, ts, task->tgid, task->pid);
	e->ret = ret;
	e->nr = p->nr;
	e->op = op;
	e->args[0] = p->args[0];
	e->args[1] = p->args[1];
	e->args[2] = p->args[2];
	e->args[3] = a3;
	e->uid = task->cred->uid.val;
	e->euid = task->cred->euid.val;
	e->old_uid = p->old_uid;
	e->old_euid = p->old_euid;
	if (op <= FB_PRIV_CAPSET) {
		const struct cred *c = task->cred;

		e->cap_effective = c->cap_effective.val;
		e->cap_permitted = c->cap_permitted.val;
		e->cap_inheritable = c->cap_inheritable.val;
		e->old_cap_effective = p->old_cap_effective;
		e->old_cap_permitted = p->old_cap_permitted;
		e->old_cap_inheritable = p->old_cap_inheritable;
	} else {
		e->cap_effective = e->cap_permitted = e->cap_inheritable = 0;
		e->old_cap_effective = e->old_cap_permitted = e->old_cap_inheritable = 0;
	}
	e->fd_kind = 0;
	e->_pad = 0;
	e->sock_family = 0;
	__builtin_memset(e->_pad1, 0, sizeof(e->_pad1));
	if (op == FB_PRIV_DUP_STDIO && ret >= 0) {
		/* After the call the new fd is the duplicated file: what now sits on stdio. */
		bool bad;
		struct file *f = fd_file(task, fd, &bad);

		e->fd_kind = f ? mode_kind(BPF_CORE_READ(f, f_inode, i_mode)) : (bad ? FB_FD_BAD : FB_FD_UNRESOLVED);
		e->sock_family = fb_sock_family(f);
	}
	n1 = read_priv_str((void *)e + sizeof(*e), s1);
	if (s2)
		n2 = read_priv_str((void *)e + sizeof(*e) + n1, s2);
	if (s3)
		n3 = read_priv_str((void *)e + sizeof(*e) + n1 + n2, s3);
	e->str_len = n1;
	e->str2_len = n2;
	e->str3_len = n3;
	e->h.size = sizeof(*e) + n1 + n2 + n3;
	b->used += sizeof(*e) + n1 + n2 + n3;
	b->count++;
}

/* Appends an fb_file for the syscall in `p` to the batch; paths are read from
 * the caller's memory now, at exit. The caller holds b->busy. */
static __always_inline void emit_file(struct fb_batch *b, struct fb_pending *p, struct task_struct *task,
				      struct pt_regs *regs, __u64 ts, long ret)
{
	const char *path = 0, *path2 = 0;
	struct fb_file *e;
	__u32 op, flags = 0, mode = 0;
	__s32 dirfd = FB_AT_FDCWD;
	long n1, n2 = 0;

	switch (p->nr) {
#define X(nr_, op_, dirfd_, path_, path2_, flags_, mode_, how_, implied_) \
	case nr_: \
		op = op_; \
		if ((dirfd_) >= 0) \
			dirfd = sc_arg(p, regs, dirfd_); \
		path = (const char *)sc_arg(p, regs, path_); \
		path2 = (const char *)sc_arg(p, regs, path2_); \
		flags = (flags_) >= 0 ? sc_arg(p, regs, flags_) : (implied_); \
		mode = sc_arg(p, regs, mode_); \
		if ((how_) >= 0) { /* openat2's struct open_how: flags, mode */ \
			__u64 how[2] = {}; \
			bpf_probe_read_user(how, sizeof(how), (void *)sc_arg(p, regs, how_)); \
			flags = how[0]; \
			mode = how[1]; \
		} \
		break;
	FB_SC_FILE_OPS(X)
#undef X
	default:
		return;
	}
	e = fb_batch_room(b, sizeof(*e) + 2 * FB_MAX_PATH);
	if (!e)
		return;
	fb_fill_header(&e->h, FB_EV_FILE, 0, ts, task->tgid, task->pid);
	e->ret = ret;
	e->op = op;
	e->dirfd = dirfd;
	e->open_flags = flags;
	e->mode = mode;
	e->_pad = 0;
	n1 = bpf_probe_read_user_str((void *)e + sizeof(*e), FB_MAX_PATH, path);
	n1 = n1 > 0 ? n1 - 1 : 0; /* without the NUL */
	if (n1 >= FB_MAX_PATH - 1)
		e->h.flags |= FB_F_FILE_TRUNCATED;
	n1 &= FB_MAX_PATH - 1;
	if (path2) {
		n2 = bpf_probe_read_user_str((void *)e + sizeof(*e) + n1, FB_MAX_PATH, path2);
		n2 = n2 > 0 ? n2 - 1 : 0;
		if (n2 >= FB_MAX_PATH - 1)
			e->h.flags |= FB_F_FILE_TRUNCATED;
		n2 &= FB_MAX_PATH - 1;
	}
	e->path_len = n1;
	e->path2_len = n2;
	e->h.size = sizeof(*e) + n1 + n2;
	b->used += sizeof(*e) + n1 + n2;
	b->count++;
}

/* A write summary in progress, per process and fd. fd_kind 0 marks an fd
 * whose writes are not summarized (sockets, pipes, ...), so they cost one
 * lookup and no second look at the fd table. */
struct wkey {
	__u32 tgid;
	__s32 fd;
};

struct wstate {
	__u64 first_ts, last_ts, bytes, time_ns, ino;
	__u32 dev, calls, errors, tid;
	__u8 fd_kind;
	__u8 _pad[7];
	char name[FB_NAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct wkey);
	__type(value, struct wstate);
} writes SEC(".maps");

static __always_inline void fill_writes(struct fb_writes *e, const struct wkey *k, struct wstate *v, __u32 reason, __u64 now)
{
	fb_fill_header(&e->h, FB_EV_WRITES, sizeof(*e), now, k->tgid, v->tid);
	e->first_ts = v->first_ts;
	e->last_ts = v->last_ts;
	e->bytes = v->bytes;
	e->time_ns = v->time_ns;
	e->ino = v->ino;
	e->dev = v->dev;
	e->fd = k->fd;
	e->calls = v->calls;
	e->errors = v->errors;
	e->reason = reason;
	e->fd_kind = v->fd_kind;
	e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;
	__builtin_memcpy(e->name, v->name, FB_NAME_LEN);
}

/* Appends the summary of `k` to the batch (the caller holds b->busy). */
static __always_inline void emit_writes(struct fb_batch *b, const struct wkey *k, struct wstate *v, __u32 reason, __u64 now)
{
	struct fb_writes *e = fb_batch_room(b, sizeof(*e));

	if (!e) {
		fb_count_drop(now);
		return;
	}
	fill_writes(e, k, v, reason, now);
	b->used += sizeof(*e);
	b->count++;
}

/* Adds one write's result to its fd's summary, starting one (and looking at
 * what the fd is) on the first write. */
static __always_inline void account_write(struct fb_batch *b, struct fb_pending *p, struct task_struct *task,
					  __u64 ts, __u64 now, long ret)
{
	struct wkey k = { .tgid = task->tgid, .fd = (__s32)p->args[0] };
	struct wstate *v = bpf_map_lookup_elem(&writes, &k);

	if (!v) {
		struct wstate init = {};
		struct inode *inode;
		struct file *f;
		bool bad;

		f = fd_file(task, k.fd, &bad);
		if (!f)
			return;
		inode = BPF_CORE_READ(f, f_inode);
		init.fd_kind = mode_kind(BPF_CORE_READ(inode, i_mode));
		if (init.fd_kind == FB_FD_REGULAR || init.fd_kind == FB_FD_BLOCK) {
			/* f_path is const: BPF_CORE_READ would declare a const temporary. */
			struct dentry *d = NULL;
			const unsigned char *name = NULL;

			bpf_core_read(&d, sizeof(d), &f->f_path.dentry);
			if (d)
				bpf_core_read(&name, sizeof(name), &d->d_name.name);
			init.ino = BPF_CORE_READ(inode, i_ino);
			init.dev = BPF_CORE_READ(inode, i_sb, s_dev);
			bpf_probe_read_kernel_str(init.name, sizeof(init.name), name);
		} else {
			init.fd_kind = 0;
		}
		init.last_ts = now;
		if (bpf_map_update_elem(&writes, &k, &init, BPF_NOEXIST) == -E2BIG) {
			if (init.fd_kind)
				fb_count_drop(now); /* no room for another summary: this write is not counted */
			return;
		}
		v = bpf_map_lookup_elem(&writes, &k);
		if (!v)
			return;
	}
	v->last_ts = now;
	if (!v->fd_kind)
		return;
	if (!v->calls)
		v->first_ts = ts;
	/* Threads of one process can write to one fd at once, on two CPUs. */
	__sync_fetch_and_add(&v->calls, 1);
	if (ret < 0)
		__sync_fetch_and_add(&v->errors, 1);
	else
		__sync_fetch_and_add(&v->bytes, ret);
	__sync_fetch_and_add(&v->time_ns, now - ts);
	v->tid = task->pid;
	if (now - v->first_ts >= FB_SUMMARY_NS) {
		emit_writes(b, &k, v, FB_WRITES_INTERVAL, now);
		v->calls = 0;
		v->errors = 0;
		v->bytes = 0;
		v->time_ns = 0;
	}
}

/* close(fd), or dup2/dup3 onto it: the summary of what was written to the
 * file it referred to ends here. */
static __always_inline void end_writes(struct fb_batch *b, struct fb_pending *p, struct task_struct *task,
				       struct pt_regs *regs, __u64 now, long ret)
{
	struct wkey k = { .tgid = task->tgid };
	struct wstate *v;
	__u64 fd, oldfd;
	bool dup;

	switch (p->nr) {
#define X(nr_, fd_, oldfd_) \
	case nr_: \
		fd = sc_arg(p, regs, fd_); \
		oldfd = sc_arg(p, regs, oldfd_); \
		dup = (oldfd_) >= 0; \
		break;
	FB_SC_CLOSE_OPS(X)
#undef X
	default:
		return;
	}
	/* A failed dup, or one onto its own fd, closed nothing (a failed close
	 * still released the fd). */
	if (dup && (ret < 0 || oldfd == fd))
		return;
	k.fd = (__s32)fd;
	v = bpf_map_lookup_elem(&writes, &k);
	if (!v)
		return;
	if (v->fd_kind && v->calls)
		emit_writes(b, &k, v, FB_WRITES_CLOSE, now);
	bpf_map_delete_elem(&writes, &k);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(fb_sys_enter, struct pt_regs *regs, long id)
{
	/* The task pointer gives tgid and pid without another helper call. */
	struct task_struct *task = bpf_get_current_task_btf();
	struct fb_batch *b;
	struct fb_pending *p;

	if (fb_skip(task->tgid))
		return 0;
#if defined(__TARGET_ARCH_x86)
	/* x86-64's uretprobe syscall (Linux 6.11+) is the kernel's own return
	 * trampoline of a uretprobe, not the application's: its return value is
	 * the probed function's (a health check's -5 would read as EIO). */
	if (id == 335 && !in_compat_syscall(task))
		return 0;
#endif
	/* Without the syscalls family, stash only what the others report. */
	if (!fb_cfg.emit_syscalls &&
	    !(classify(id) & ((fb_cfg.emit_files ? FB_SC_FILE | FB_SC_WRITE | FB_SC_CLOSE : 0) |
			      (fb_cfg.emit_priv ? FB_SC_PRIV : 0))))
		return 0;
	b = fb_batch_get();
	if (!b)
		return 0;
	p = &b->pending;
	p->nr = id;
	p->task = (__u64)task;
	p->compat = in_compat_syscall(task);
	entry_args(regs, p->compat, p->args);
	if (fb_cfg.emit_priv && (classify(id) & FB_SC_PRIV) && priv_op(id) <= FB_PRIV_CAPSET) {
		const struct cred *c = task->cred;

		p->old_uid = c->uid.val;
		p->old_euid = c->euid.val;
		/* What capset (or a setid call) is judged against: the sets it started from. */
		p->old_cap_effective = c->cap_effective.val;
		p->old_cap_permitted = c->cap_permitted.val;
		p->old_cap_inheritable = c->cap_inheritable.val;
	}
	p->ts = bpf_ktime_get_ns();
	return 0;
}

/* A task leaving the CPU inside a syscall takes its stash along; the CPU's
 * batch goes out so the task's events stay in order wherever it runs next. */
SEC("tp_btf/sched_switch")
int BPF_PROG(fb_sys_spill, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	struct fb_batch *b = fb_batch_get();
	struct fb_pending *slot, *p;

	if (!b)
		return 0;
	if (b->used && !b->busy) {
		b->busy = 1;
		fb_batch_write(b);
		b->busy = 0;
	}
	slot = &b->pending;
	if (!slot->ts)
		return 0;
	if (slot->task == (__u64)prev) {
		p = bpf_task_storage_get(&pending, prev, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
		if (p)
			*p = *slot;
		else
			fb_count_drop(slot->ts); /* no memory for the stash: this syscall is lost */
	}
	slot->ts = 0;
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(fb_sys_exit, struct pt_regs *regs, long ret)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 now, ts;
	__u32 nr;
	struct fb_pending *p;
	struct fb_batch *b = fb_batch_get();
	struct fb_syscall *e;

	if (!b)
		return 0;
	p = &b->pending;
	if (!p->ts || p->task != (__u64)task) {
		p = bpf_task_storage_get(&pending, task, 0, 0);
		if (!p || !p->ts)
			return 0;
	}
	ts = p->ts;
	p->ts = 0;
	now = bpf_ktime_get_ns();
	if (b->busy) {
		fb_count_drop(now);
		return 0;
	}
	b->busy = 1;
	if (!fb_cfg.emit_syscalls)
		goto files;
	e = fb_batch_room(b, sizeof(*e));
	if (!e) {
		b->busy = 0;
		return 0;
	}
	nr = p->nr;
	fb_fill_header(&e->h, FB_EV_SYSCALL, sizeof(*e), ts, task->tgid, task->pid);
	if (p->compat)
		e->h.flags = FB_F_SYSCALL_COMPAT;
	e->duration_ns = now - ts;
	e->ret = ret;
	e->args[0] = p->args[0];
	e->args[1] = p->args[1];
	e->args[2] = p->args[2];
	e->nr = nr;
	e->fd_kind = FB_FD_UNRESOLVED;
	e->_pad[0] = e->_pad[1] = e->_pad[2] = 0;
	if (e->duration_ns >= fb_cfg.resolve_fd_after_ns && !p->compat && (classify(nr) & FB_SC_FD))
		e->fd_kind = fd_kind(task, e->args[0]);
	b->used += sizeof(*e);
	b->count++;
files:
	if ((fb_cfg.emit_files || fb_cfg.emit_priv) && !p->compat) {
		__u8 cls = classify(p->nr);

		if (fb_cfg.emit_files && (cls & (FB_SC_FILE | FB_SC_WRITE | FB_SC_CLOSE))) {
			if (cls & FB_SC_FILE)
				emit_file(b, p, task, regs, ts, ret);
			else if (cls & FB_SC_WRITE)
				account_write(b, p, task, ts, now, ret);
			else
				end_writes(b, p, task, regs, now, ret);
		}
		if (fb_cfg.emit_priv && (cls & FB_SC_PRIV))
			emit_priv(b, p, task, regs, ts, ret);
	}
	if (!b->first_ts)
		b->first_ts = now;
	else if (now - b->first_ts > FB_BATCH_MAX_AGE_NS)
		fb_batch_write(b);
	b->busy = 0;
	return 0;
}

/* Run by user space on each CPU (BPF_F_TEST_RUN_ON_CPU) to push out batches
 * of CPUs that went quiet, and once more before the recorder stops. */
SEC("raw_tp")
int fb_flush(void *ctx)
{
	fb_batch_flush();
	return 0;
}

static long sweep_one(struct bpf_map *map, struct wkey *k, struct wstate *v, struct fb_sweep *c)
{
	struct fb_writes e;

	if (!c->all && c->now < v->last_ts + FB_SUMMARY_NS)
		return 0;
	if (v->fd_kind && v->calls) {
		fill_writes(&e, k, v, FB_WRITES_IDLE, c->now);
		fb_output(&e, sizeof(e), c->now);
	}
	bpf_map_delete_elem(map, k);
	return 0;
}

/* Run by user space once a second: writes out the summaries of fds nobody
 * wrote to for the summary interval (processes that stopped writing, exited
 * or closed the fd without close(2)), and forgets fds not written to. */
SEC("raw_tp")
int fb_sweep_writes(__u64 *ctx)
{
	struct fb_sweep c = fb_sweep_start(ctx);

	bpf_for_each_map_elem(&writes, sweep_one, &c, 0);
	return 0;
}
