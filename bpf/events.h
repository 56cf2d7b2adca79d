/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one definition of Flightbox's event wire layout.
 *
 * Compiled by clang -target bpf for the kernel side and imported by Swift
 * (through Sources/CFlightboxEvents) for the user side. Every record starts
 * with struct fb_header; `size` covers the whole record, so a reader can skip
 * a type it does not know. Variable-length data follows the fixed part and is
 * described by explicit lengths in the fixed part. All fields are little-endian
 * (the byte order of the machines that produce them), naturally aligned, and
 * every struct's size is a multiple of 8.
 *
 * Changing a struct: only append fields, bump nothing. The schema written
 * into every trace's metadata records the offsets, so older traces stay
 * readable (format/SPEC.md, "Schema").
 *
 * Everything else is generated from this file by `swift run flightbox-codegen`
 * (Sources/FlightboxCodegen): the Swift offsets, typed views and encoders, the
 * schema, the JSON field walk and the record tables of format/SPEC.md. It
 * reads these annotations in comments:
 *   @event NAME          before a struct: the struct is the wire record of the
 *                        event type whose enum fb_event_type entry is named in
 *                        the same line (@event FB_EV_SYSCALL syscall)
 *   @trailing NAME KIND  on a u16 length field: a variable part of that many
 *                        bytes follows the fixed part, in field order; KIND is
 *                        bytes or strings (each followed by one NUL)
 *   @was NAME            on a field renamed since traces were written with
 *                        NAME: readers map the old name onto the new one
 * Fields whose name starts with '_' are padding and not in the schema. The
 * comment after a field, and the comment before a struct, are its
 * documentation in SPEC.md. CONTRIBUTING.md has the checklist for changes.
 */
#ifndef FLIGHTBOX_EVENTS_H
#define FLIGHTBOX_EVENTS_H

#ifdef __bpf__
/* vmlinux.h provides the __u8..__u64 types on the BPF side. */
#else
#include <linux/types.h>
#endif

#define FB_COMM_LEN 16
#define FB_MAX_FILENAME 512
#define FB_MAX_ARGV 2048
#define FB_SYSCALL_ARGS 3
#define FB_PROBE_ARGS 4
#define FB_MAX_PROBE_STR 256

enum fb_event_type {
	FB_EV_SYSCALL = 1,
	FB_EV_FORK = 2,
	FB_EV_EXEC = 3,
	FB_EV_EXIT = 4,
	FB_EV_LOSS = 5, /* written by user space from the kernel's per-CPU drop counters */
	FB_EV_FILE = 6,
	FB_EV_SIGNAL = 7,
	FB_EV_BLOCK = 8,
	FB_EV_PRIV = 9,
	FB_EV_SCHED = 10,
	FB_EV_GAUGE = 11, /* sampled by user space */
	FB_EV_TCP = 12,
	FB_EV_WRITES = 13,  /* files family: writes to one file summarized */
	FB_EV_FAULTS = 14,  /* memory family: a thread's page faults summarized */
	FB_EV_RECLAIM = 15, /* memory family: one direct reclaim */
	FB_EV_OOM = 16,     /* memory family: an OOM kill */
	FB_EV_PROBE = 17,   /* probes family: a health check's uprobe, uretprobe or USDT probe fired */
	FB_EV_NETBYTES = 18, /* tcp family: bytes sent and received on one connection summarized */
};

/* Why a write summary was written. */
enum fb_writes_reason {
	FB_WRITES_CLOSE = 1,    /* the fd was closed (close, or dup2/dup3 onto it) */
	FB_WRITES_INTERVAL = 2, /* the summary spanned the summary interval: more follow */
	FB_WRITES_IDLE = 3,     /* no write for the summary interval (or the process is gone) */
};

/* Why a connection's byte summary was written. */
enum fb_net_reason {
	FB_NET_CLOSE = 1,    /* the socket was destroyed (closed, or its orphaned connection ended) */
	FB_NET_INTERVAL = 2, /* the summary spanned the summary interval: more follow */
	FB_NET_IDLE = 3,     /* no byte either way for the summary interval (or the recording ends) */
	FB_NET_HANDOFF = 4,  /* another process sent or received on the socket: its bytes start a new summary */
};

/* Who opened a connection, as the tcp family saw it. */
enum fb_net_direction {
	FB_NET_DIR_UNKNOWN = 0, /* opened before the recording started */
	FB_NET_DIR_OUT = 1,     /* connect(2) */
	FB_NET_DIR_IN = 2,      /* accepted from a listener */
};

enum fb_tcp_kind {
	FB_TCP_STATE = 1,      /* a state change (old, new); connects and accepts are among them */
	FB_TCP_RETRANSMIT = 2,
	FB_TCP_RESET_SENT = 3,
	FB_TCP_RESET_RECEIVED = 4,
	FB_TCP_REFUSED = 5,    /* a SYN refused for want of a listener (a reset without a socket): saddr/sport the local side, daddr/dport the client; pid: the port's last listener, else 0 */
};

enum fb_gauge_kind {
	FB_GAUGE_FS_BYTES = 1,      /* name: mount point; value: bytes available, limit: size */
	FB_GAUGE_FS_INODES = 2,     /* name: mount point; value: inodes free, limit: inodes */
	FB_GAUGE_PROC_FDS = 3,      /* header pid; value: open fds, limit: RLIMIT_NOFILE (soft) */
	FB_GAUGE_SYS_FDS = 4,       /* value: file handles allocated, limit: fs.file-max */
	FB_GAUGE_TASKS = 5,         /* value: tasks (threads) alive, limit: kernel.pid_max */
	FB_GAUGE_CGROUP_PIDS = 6,   /* name: cgroup path; value: pids.current, limit: pids.max (0: no limit) */
	FB_GAUGE_MEM_AVAILABLE = 7, /* value: MemAvailable bytes, limit: MemTotal */
	FB_GAUGE_SWAP_FREE = 8,     /* value: SwapFree bytes, limit: SwapTotal */
	FB_GAUGE_PSI_SOME = 9,      /* name: cpu, memory or io; value: avg10 in 1/100 %, limit 10000 */
	FB_GAUGE_PSI_FULL = 10,     /* as above, for "full" */
	FB_GAUGE_LOAD = 11,         /* value: 1-minute load average x 100, limit: CPUs online x 100 */
	FB_GAUGE_CGROUP_MEMORY = 12,/* name: cgroup path; value: memory charged (bytes), limit: its limit (memory.max or memory.limit_in_bytes); only cgroups with a limit */
	FB_GAUGE_PROC_RSS = 13,     /* header pid; value: resident bytes, limit: MemTotal */
	FB_GAUGE_THREADS = 14,      /* value: tasks (threads) alive, limit: kernel.threads-max */
	FB_GAUGE_PSI_SOME_AVG60 = 15, /* name: cpu, memory or io; value: avg60 in 1/100 %, limit 10000 */
	FB_GAUGE_PSI_FULL_AVG60 = 16, /* as above, for "full" */
	FB_GAUGE_FS_DEVICE = 17,    /* name: mount point; value: the file system's kernel dev_t (major << 20 | minor, as write summaries name it), limit 0: maps writes to the mount */
	FB_GAUGE_CGROUP_MEMORY_ANON = 18, /* name: cgroup path; value: anonymous + shmem bytes charged (memory.stat anon+shmem, v1 total_rss+total_shmem): what reclaim cannot drop without swap; limit: as cgroup_memory */
	FB_GAUGE_BLOCK_DEVICE = 19, /* name: a block device as in /sys/block (vda, nvme0n1, loop0); value: its kernel dev_t (major << 20 | minor), limit: its size in bytes; devices of size 0 are left out */
};

enum fb_sched_kind {
	FB_SCHED_RUNQ = 1,   /* runnable (woken or preempted) until it got a CPU */
	FB_SCHED_OFFCPU = 2, /* blocked (sleeping, waiting for I/O, ...) until it ran again */
};

/* What a privilege or integrity event is about. */
enum fb_priv_op {
	FB_PRIV_SETID = 1,     /* setuid, setgid, setreuid, setregid, setresuid, setresgid, setfsuid, setfsgid */
	FB_PRIV_CAPSET = 2,
	FB_PRIV_PTRACE = 3,    /* args: request, target pid */
	FB_PRIV_VM_WRITE = 4,  /* process_vm_writev; args: target pid */
	FB_PRIV_MODULE = 5,    /* init_module, finit_module */
	FB_PRIV_BPF = 6,       /* bpf(2); args: command */
	FB_PRIV_MEMFD = 7,     /* memfd_create; str: name */
	FB_PRIV_MOUNT = 8,     /* mount; str: source, str2: target, str3: type; args[3]: flags */
	FB_PRIV_CHMOD_EXEC = 9,/* chmod family adding an exec bit; str: path (none for fchmod) */
	FB_PRIV_DUP_STDIO = 10,/* dup2, dup3 onto fd 0, 1 or 2; args: old fd, new fd */
};

enum fb_signal_op {
	FB_SIGNAL_GENERATE = 1, /* a signal was sent (header: the sender) */
	FB_SIGNAL_DELIVER = 2,  /* a signal is being handled (header: the receiver) */
};

enum fb_file_op {
	FB_FILE_OPEN = 1,   /* open, openat, openat2, creat */
	FB_FILE_UNLINK = 2, /* unlink, unlinkat (rmdir with AT_REMOVEDIR) */
	FB_FILE_RENAME = 3, /* rename, renameat, renameat2: path2 is the new name */
};

/* Kind of the file behind a syscall's first argument, when it is an fd. */
enum fb_fd_kind {
	FB_FD_UNRESOLVED = 0, /* not an fd syscall, or too fast to be worth resolving */
	FB_FD_REGULAR = 1,
	FB_FD_DIRECTORY = 2,
	FB_FD_CHAR = 3,
	FB_FD_BLOCK = 4,
	FB_FD_FIFO = 5,
	FB_FD_SOCKET = 6,
	FB_FD_SYMLINK = 7,
	FB_FD_ANON = 8, /* eventfd, epoll, timerfd, signalfd, ...: no file type bits */
	FB_FD_BAD = 9,  /* the fd was not open */
};

struct fb_header {
	__u64 ts_ns; /* CLOCK_MONOTONIC, ns (bpf_ktime_get_ns) */
	__u16 type;  /* enum fb_event_type */
	__u16 size;  /* whole record, this header included */
	__u16 cpu;
	__u16 flags; /* per-type, see FB_F_* */
	__u32 pid;   /* thread-group id, what user space calls the pid */
	__u32 tid;
};

#define FB_F_SYSCALL_COMPAT 0x1 /* a 32-bit (ia32) syscall: nr and args in that ABI */

/* @event FB_EV_SYSCALL syscall
 * A syscall, paired in the kernel: header ts is the entry time. Flag 0x1: a
 * 32-bit (ia32) syscall, whose nr and args follow that ABI (args are ebx,
 * ecx, edx). */
struct fb_syscall {
	struct fb_header h;
	__u64 duration_ns; /* entry to exit */
	__s64 ret;         /* the return value: -errno on failure */
	__u64 args[FB_SYSCALL_ARGS]; /* the first three arguments */
	__u32 nr;          /* the syscall number, in the numbering of the trace's syscall_table */
	__u8 fd_kind;      /* enum fb_fd_kind: what the fd in args[0] is (0 unresolved, 1 regular, 2 directory, 3 char, 4 block, 5 fifo, 6 socket, 7 symlink, 8 anon, 9 bad fd); resolved only for fd syscalls slower than resolve_fd_after_ns */
	__u8 _pad[3];
};

#define FB_F_FORK_THREAD 0x1 /* clone(CLONE_THREAD): a new thread, not a process */

/* @event FB_EV_FORK fork
 * fork/clone: header pid/tid are the parent's. Flag 0x1: a thread (clone
 * with CLONE_THREAD), not a process. */
struct fb_fork {
	struct fb_header h;
	__u32 child_pid;
	__u32 child_tid;
	char comm[FB_COMM_LEN]; /* the child's command name */
};

#define FB_F_EXEC_TRUNCATED 0x1 /* filename or argv was longer than captured */

/* @event FB_EV_EXEC exec
 * exec: followed by filename_len bytes of filename (no NUL), then argv_len
 * bytes of argv, each argument followed by one NUL (a truncated last argument
 * may lack its NUL). Flag 0x1: filename or argv was longer than captured
 * (511 and 2048 bytes). */
struct fb_exec {
	struct fb_header h;
	__u32 old_tid; /* tid that called exec (a non-leader thread becomes the leader) */
	__u32 ppid;
	__u32 uid;
	__u16 filename_len; /* @trailing filename bytes */
	__u16 argv_len;     /* @trailing argv strings */
	__u16 argc; /* arguments captured in argv */
	__u8 stdin_kind;     /* enum fb_fd_kind of fd 0 in the new image (0: none open) */
	__u8 stdout_kind;    /* enum fb_fd_kind of fd 1 in the new image (0: none open) */
	__u16 stdin_family;  /* socket address family of fd 0 (1 AF_UNIX, 2 AF_INET, 10 AF_INET6), 0 if not a socket */
	__u16 stdout_family; /* socket address family of fd 1, 0 if not a socket */
	char comm[FB_COMM_LEN]; /* the command name after the exec */
};

#define FB_F_EXIT_GROUP 0x1 /* the last thread: the process is gone */

/* @event FB_EV_EXIT exit
 * A task exited. Flag 0x1: the last thread, the process is gone; otherwise
 * one thread exited. */
struct fb_exit {
	struct fb_header h;
	__s32 status; /* as from wait(2): exit code << 8 | terminating signal */
	__u32 ppid;
	__u64 lifetime_ns; /* since the task started */
	char comm[FB_COMM_LEN];
};

#define FB_MAX_PATH 256
#define FB_F_FILE_TRUNCATED 0x1 /* a path was longer than captured */

/* @event FB_EV_FILE file
 * A file operation, from its syscall: header ts is the entry time. Followed
 * by path_len bytes of path (as the caller gave it, no NUL), then path2_len
 * bytes of the second path. Paths are read from the caller's memory when the
 * syscall returns. Flag 0x1: a path was longer than the 255 bytes captured. */
struct fb_file {
	struct fb_header h;
	__s64 ret;   /* fd, 0, or -errno */
	__u32 op;    /* enum fb_file_op: 1 open, 2 unlink, 3 rename */
	__s32 dirfd; /* AT_FDCWD (-100) for paths relative to the working directory */
	__u32 open_flags; /* @was flags; open(2) flags, unlinkat/renameat2 flags */
	__u32 mode;  /* open(2) mode */
	__u16 path_len;  /* @trailing path bytes */
	__u16 path2_len; /* @trailing path2 bytes; the new name of a rename */
	__u32 _pad;
};

/* @event FB_EV_SIGNAL signal
 * A signal sent or delivered. For generate, the header's pid/tid are the
 * task that sent it (the kernel itself for faults and SIGCHLD: then the task
 * that caused it) and target_* the receiver; for deliver both are the receiver. */
struct fb_signal {
	struct fb_header h;
	__s32 sig;
	__s32 code;   /* si_code: 0 SI_USER (kill), -6 SI_TKILL, 128 SI_KERNEL, ... */
	__u32 op;     /* enum fb_signal_op: 1 generate, 2 deliver */
	__s32 result; /* generate: 0 delivered, 1 ignored, 2 already pending, 3 overflow, 4 info lost */
	__u32 target_pid;
	__u32 target_tid;
	__u32 sender_uid; /* generate: the sender's uid as the signal carries it (kill) */
	__u32 group;      /* generate: sent to the whole thread group */
	char target_comm[FB_COMM_LEN];
};

/* @event FB_EV_BLOCK block
 * A block I/O request, at completion. Header ts is the issue time and
 * pid/tid/comm the task that issued it (often a kernel worker for buffered
 * writes); cpu is where it completed. */
struct fb_block {
	struct fb_header h;
	__u64 latency_ns; /* issue to completion */
	__u64 sector;
	__u32 dev;   /* kernel dev_t: major << 20 | minor */
	__u32 bytes; /* completed */
	__u32 op;    /* REQ_OP_*: 0 read, 1 write, 2 flush, 3 discard, 5 secure erase, 9 write zeroes */
	__s32 error; /* blk_status_t: 0 ok */
	char comm[FB_COMM_LEN]; /* the issuing task's command name */
};

#define FB_MAX_PRIV_STR 128

/* @event FB_EV_PRIV privilege
 * A syscall that changes privileges or the integrity of the system, at its
 * exit. Followed by str_len, str2_len and str3_len bytes of strings (see
 * enum fb_priv_op), read from the caller's memory at exit, each at most 127
 * bytes. */
struct fb_priv {
	struct fb_header h;
	__s64 ret;
	__u32 nr; /* the syscall, in the numbering of the trace's syscall_table */
	__u32 op; /* enum fb_priv_op: 1 setid, 2 capset, 3 ptrace, 4 process_vm_writev, 5 module, 6 bpf, 7 memfd_create, 8 mount, 9 chmod adding an exec bit, 10 dup onto fd 0-2 */
	__u64 args[4];
	__u32 uid, euid;         /* after the call */
	__u32 old_uid, old_euid; /* before it (set at entry, for setid and capset) */
	__u16 str_len;  /* @trailing str bytes; memfd name, mount source, chmod path */
	__u16 str2_len; /* @trailing str2 bytes; mount target */
	__u16 str3_len; /* @trailing str3 bytes; mount file system type */
	__u8 fd_kind;   /* dup onto fd 0-2: enum fb_fd_kind of the file now on that fd (0 otherwise) */
	__u8 _pad;
	__u16 sock_family; /* dup onto fd 0-2 of a socket: its address family (1 AF_UNIX, 2 AF_INET, 10 AF_INET6) */
	__u8 _pad1[6];
	__u64 cap_effective;       /* setid and capset: the capability sets after the call (bit n: capability n, as capget(2)) */
	__u64 cap_permitted;
	__u64 cap_inheritable;
	__u64 old_cap_effective;   /* setid and capset: the sets before it (read at entry) */
	__u64 old_cap_permitted;
	__u64 old_cap_inheritable;
};

/* @event FB_EV_SCHED sched
 * A task waited: on the run queue, or blocked off the CPU, longer than the
 * configured threshold. Computed in the kernel at the switch that ends the
 * wait; header ts is when the wait began, pid/tid the task, cpu where it ran. */
struct fb_sched {
	struct fb_header h;
	__u64 wait_ns;
	__u32 kind;       /* enum fb_sched_kind: 1 run queue, 2 off-CPU */
	__u32 prev_state; /* off-CPU: the task state it blocked in (1 interruptible, 2 uninterruptible, ...) */
	char comm[FB_COMM_LEN];
};

/* @event FB_EV_GAUGE gauge
 * A resource level sampled by the recorder at a fixed interval and written
 * into the stream, so replay sees the values live detection saw. Header ts
 * is the sampling time, pid the process for per-process gauges (else 0).
 * Followed by name_len bytes of name. */
struct fb_gauge {
	struct fb_header h;
	__u64 value;
	__u64 limit; /* 0: none */
	__u32 kind;  /* enum fb_gauge_kind */
	__u16 name_len; /* @trailing name bytes; mount point, cgroup path or PSI resource */
	__u16 _pad;
};

/* @event FB_EV_TCP tcp
 * A TCP connection event. Addresses are in network byte order (IPv4 in the
 * first 4 bytes), ports in host order. States are the kernel's TCP_* numbers
 * (1 ESTABLISHED, 2 SYN_SENT, 3 SYN_RECV, 4 FIN_WAIT1, 5 FIN_WAIT2,
 * 6 TIME_WAIT, 7 CLOSE, 8 CLOSE_WAIT, 9 LAST_ACK, 10 LISTEN, 11 CLOSING).
 * pid/tid: the task that opened the connection when known (connect), else
 * the task in whose context it happened (0 in interrupt context). */
struct fb_tcp {
	struct fb_header h;
	__u64 latency_ns; /* SYN_SENT -> ESTABLISHED or CLOSE: the connect's duration */
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;  /* local port; a listener's LISTEN -> CLOSE: the port it listened on (0 in older traces) */
	__u16 dport;
	__u16 family; /* 2 AF_INET, 10 AF_INET6 */
	__u8 kind;    /* enum fb_tcp_kind */
	__u8 oldstate;
	__u8 newstate;
	__u8 _pad[7];
};

#define FB_NAME_LEN 64

/* @event FB_EV_WRITES writes
 * Writes (write, pwrite64, writev, pwritev, pwritev2) by one process to one
 * fd open on a regular file or block device, summarized in the kernel instead
 * of one record per call. Header ts is when the summary was written, pid the
 * process, tid the thread that wrote last. A summary covers at most the
 * summary interval (1 s); a file written for longer gets one per interval. */
struct fb_writes {
	struct fb_header h;
	__u64 first_ts; /* entry of the first write summarized */
	__u64 last_ts;  /* return of the last */
	__u64 bytes;    /* written: the sum of the calls' positive results */
	__u64 time_ns;  /* spent inside the calls */
	__u64 ino;
	__u32 dev;      /* kernel dev_t of the file system: major << 20 | minor */
	__s32 fd;
	__u32 calls;
	__u32 errors;   /* calls that returned an error */
	__u32 reason;   /* enum fb_writes_reason */
	__u8 fd_kind;   /* enum fb_fd_kind: regular or block */
	__u8 _pad[3];
	char name[FB_NAME_LEN]; /* the file's name in its directory, NUL-padded */
};

/* @event FB_EV_FAULTS faults
 * A thread's page faults, summarized in the kernel. Header ts is when the
 * summary was written, pid/tid the thread. Written once the summary spans
 * the summary interval (1 s) and at the next fault, when the thread exits,
 * or when it stopped faulting for the interval. */
struct fb_faults {
	struct fb_header h;
	__u64 first_ts;  /* the first fault counted */
	__u64 user;      /* faults taken in user mode (exceptions:page_fault_user) */
	__u64 kernel;    /* taken in kernel mode, e.g. copying to an untouched user buffer */
	__u64 major;     /* as the kernel accounted them to the thread (task min_flt/maj_flt) */
	__u64 minor;     /*   over the same interval */
	__u64 last_addr; /* address of the last fault */
	__u64 last_ip;   /* instruction that took it */
	char comm[FB_COMM_LEN];
};

#define FB_F_RECLAIM_MEMCG 0x1 /* a memory cgroup over its limit reclaimed, not the whole system */

/* @event FB_EV_RECLAIM reclaim
 * One direct reclaim: a task that had to free memory before its allocation
 * could go on. Header ts is when it began, pid/tid the task. */
struct fb_reclaim {
	struct fb_header h;
	__u64 duration_ns;
	__u64 reclaimed; /* pages */
	__u32 order;     /* of the allocation: 2^order pages */
	__u32 gfp_flags;
};

/* @event FB_EV_OOM oom
 * An OOM kill (oom:mark_victim). Header ts is the time, pid/tid the victim.
 * Sizes are in pages except page tables. */
struct fb_oom {
	struct fb_header h;
	__u64 total_vm;
	__u64 anon_rss;
	__u64 file_rss;
	__u64 shmem_rss;
	__u64 pgtables_bytes;
	__u64 memcg_id; /* the victim's memory cgroup (kernfs id); 0 when unknown */
	__u32 uid;
	__s32 oom_score_adj;
	__u32 trigger_pid; /* the task whose allocation could not be satisfied */
	__u32 trigger_tid;
	char comm[FB_COMM_LEN];         /* the victim's */
	char trigger_comm[FB_COMM_LEN];
	char memcg[FB_NAME_LEN];        /* the victim's memory cgroup: last path component */
};

/* @event FB_EV_LOSS loss
 * Events the kernel could not put in the ring buffer on one CPU, written by
 * the recorder from the kernel's per-CPU drop counters at the point in the
 * stream where it noticed them. Header ts is the time of the last such drop,
 * cpu the CPU, pid/tid 0. The sum of lost over a file is the exact number of
 * events the kernel could not deliver. */
struct fb_loss {
	struct fb_header h;
	__u64 lost;     /* since the previous loss record for this CPU */
	__u64 first_ts; /* the drops counted here happened in [first_ts, ts_ns]: for a CPU's first loss record the time of its first drop, after that the previous record's ts_ns */
};

#define FB_F_PROBE_RETURN 0x1   /* a function returned: latency_ns and ret are set, args are the entry's */
#define FB_F_PROBE_USDT 0x2     /* a USDT probe fired: args are its arguments, no latency or return value */
#define FB_F_PROBE_NO_ENTRY 0x4 /* a return whose entry was not seen (attached mid-call, or the entry table was full): ts is the return, latency and args 0 */

/* @event FB_EV_PROBE probe
 * A health check's probe on an application fired: a function's return (its
 * entry and return paired in the kernel, per thread) or a USDT probe. Header
 * ts is the function's entry time (for a USDT probe, when it fired), pid/tid
 * the caller. probe_id numbers the check in the trace's probe definitions,
 * which say what it is attached to and what its args mean. Followed by
 * str_len bytes of str: the string argument str_arg points to (no NUL, at
 * most 255 bytes), read from the caller's memory when the probe fires (for a
 * function, at its return, through the pointer it was given at entry). */
struct fb_probe {
	struct fb_header h;
	__u64 latency_ns;          /* entry to return; 0 for a USDT probe */
	__s64 ret;                 /* the return value (rax), sign-extended from int when the check says so */
	__u64 args[FB_PROBE_ARGS]; /* the first integer arguments (function: at entry; USDT: its arguments); unused ones 0 */
	__u32 probe_id;            /* the check, as numbered in the trace's probe definitions */
	__u32 nargs;               /* how many of args are meaningful */
	__u16 str_len;             /* @trailing str bytes; the string argument's bytes */
	__u16 str_arg;             /* which argument (1-4) str was read from; 0: none */
	__u32 _pad;
};

/* @event FB_EV_NETBYTES netbytes
 * Bytes sent and received on one TCP connection by one process, summarized
 * in the kernel (tcp_sendmsg's result, tcp_cleanup_rbuf's bytes copied to
 * the reader) instead of one record per call. Header ts is when the summary
 * was written, pid the process, tid the thread that moved bytes last. A
 * summary covers at most the summary interval (1 s); one is written when the
 * socket is destroyed, when it was idle for the interval, and when another
 * process takes over the socket. Addresses and ports as in the tcp event,
 * read at the connection's first byte. Linux 6.2 or later. */
struct fb_netbytes {
	struct fb_header h;
	__u64 first_ts;       /* the first send or receive summarized */
	__u64 last_ts;        /* the last */
	__u64 bytes_sent;     /* in this summary: the sum of tcp_sendmsg's positive results */
	__u64 bytes_received; /* in this summary: bytes copied to the reader */
	__u64 total_sent;     /* on this connection by this process since the recording first saw it, this summary included */
	__u64 total_received; /* likewise, received */
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 sends;          /* tcp_sendmsg calls */
	__u32 receives;       /* reads that copied bytes */
	__u16 sport;
	__u16 dport;
	__u16 family;         /* 2 AF_INET, 10 AF_INET6 */
	__u8 reason;          /* enum fb_net_reason: 1 close, 2 interval, 3 idle, 4 another process */
	__u8 direction;       /* enum fb_net_direction: 0 unknown (opened before the recording), 1 connected out, 2 accepted */
};

/* Per-CPU drop counter kept by the kernel side. */
struct fb_drops {
	__u64 count;
	__u64 first_ts;
	__u64 last_ts;
	__u64 untracked; /* children of a recorded command that could not be followed */
};

enum fb_filter_mode {
	FB_FILTER_NONE = 0,
	FB_FILTER_PID = 1,     /* one thread group */
	FB_FILTER_COMM = 2,    /* task comm equals config comm */
	FB_FILTER_TRACKED = 3, /* thread groups in the tracked map, children followed */
	FB_FILTER_CGROUP = 4,  /* tasks in cgroup cgroup_id or one below it */
};

/* Set in each program's .rodata before load. */
struct fb_config {
	__u32 self_pid; /* the recorder: never traced */
	__u32 filter_mode;
	__u32 target_pid;
	__u32 wakeup_bytes; /* wake the consumer once this much is pending */
	char comm[FB_COMM_LEN];
	__u64 resolve_fd_after_ns; /* fd kind is looked up only for calls slower than this */
	__u32 emit_syscalls; /* the syscalls family: one fb_syscall per call */
	__u32 emit_files;    /* the files family: fb_file for open, unlink, rename */
	__u32 emit_priv;     /* the privilege family: fb_priv */
	__u32 _pad;
	__u64 sched_runq_min_ns;   /* shortest run-queue wait reported */
	__u64 sched_offcpu_min_ns; /* shortest off-CPU wait reported */
	__u64 cgroup_id;    /* FB_FILTER_CGROUP: the cgroup's id (its kernfs node id) */
	__u32 cgroup_level; /* its depth in its hierarchy, the root being 0 */
	__s32 cgroup_ssid;  /* the v1 hierarchy of this controller (enum cgroup_subsys_id); -1: the unified (v2) one */
};

#ifndef __bpf__
_Static_assert(sizeof(struct fb_header) == 24, "fb_header wire size");
_Static_assert(sizeof(struct fb_syscall) == 72, "fb_syscall wire size");
_Static_assert(sizeof(struct fb_fork) == 48, "fb_fork wire size");
_Static_assert(sizeof(struct fb_exec) == 64, "fb_exec wire size");
_Static_assert(sizeof(struct fb_exit) == 56, "fb_exit wire size");
_Static_assert(sizeof(struct fb_loss) == 40, "fb_loss wire size");
_Static_assert(sizeof(struct fb_config) == 88, "fb_config size");
_Static_assert(sizeof(struct fb_sched) == 56, "fb_sched wire size");
_Static_assert(sizeof(struct fb_gauge) == 48, "fb_gauge wire size");
_Static_assert(sizeof(struct fb_tcp) == 80, "fb_tcp wire size");
_Static_assert(sizeof(struct fb_priv) == 152, "fb_priv wire size");
_Static_assert(sizeof(struct fb_file) == 56, "fb_file wire size");
_Static_assert(sizeof(struct fb_signal) == 72, "fb_signal wire size");
_Static_assert(sizeof(struct fb_block) == 72, "fb_block wire size");
_Static_assert(sizeof(struct fb_writes) == 152, "fb_writes wire size");
_Static_assert(sizeof(struct fb_faults) == 96, "fb_faults wire size");
_Static_assert(sizeof(struct fb_reclaim) == 48, "fb_reclaim wire size");
_Static_assert(sizeof(struct fb_oom) == 184, "fb_oom wire size");
_Static_assert(sizeof(struct fb_probe) == 88, "fb_probe wire size");
_Static_assert(sizeof(struct fb_netbytes) == 120, "fb_netbytes wire size");
#endif

#endif
