/* SPDX-License-Identifier: Apache-2.0 */
/* TCP: state changes with addresses and ports (connects with their latency,
 * accepts, closes), retransmits and resets; bytes sent and received per
 * connection and process (sock_send_length, sock_recv_length), summarized
 * here (fb_netbytes) like the files family's writes: one record per
 * connection per interval, when idle and when the socket is destroyed, never
 * one per send. */
#include "flightbox.bpf.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define E2BIG 7

/* Who a socket belongs to: the task that connected it or made it listen,
 * kept until it closes. Retransmits, resets and the end of a handshake
 * happen in interrupt context, where the current task is whoever was
 * interrupted; they are attributed (and filtered) by this instead. */
struct owner {
	__u64 ts; /* connect(2) in progress since; 0 once the handshake ended */
	__u32 pid;
	__u32 tid;
	__u32 port; /* a listener's local port (it is gone by the time it closes) */
	__u32 direction; /* enum fb_net_direction */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

/* Owners of listening sockets by local port: a connection a listener
 * accepts (in interrupt context, SYN_RECV -> ESTABLISHED) belongs to it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct owner);
} listeners SEC(".maps");

/* Bytes moved on one connection by one process since its last summary, and
 * since the recording first saw it. Keyed by the socket; the process that
 * moves bytes owns the summary (a socket shared after fork changes hands
 * with a summary). Kept until the socket is destroyed, so totals survive the
 * idle summaries and a read after the state went to CLOSE (data queued
 * before the peer's FIN) still has its connection's addresses. */
struct nstate {
	__u64 first_ts, last_ts;
	__u64 sent, received, total_sent, total_received;
	__u32 tgid, tid, sends, receives;
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport, dport, family;
	__u8 direction;
	__u8 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct nstate);
} conns SEC(".maps");

static __always_inline void write_bytes(struct nstate *v, __u8 reason, __u64 now)
{
	struct fb_netbytes e;

	fb_fill_header(&e.h, FB_EV_NETBYTES, sizeof(e), now, v->tgid, v->tid);
	e.first_ts = v->first_ts;
	e.last_ts = v->last_ts;
	e.bytes_sent = v->sent;
	e.bytes_received = v->received;
	/* Totals grow here, once per summary, not with an atomic per call. */
	v->total_sent += v->sent;
	v->total_received += v->received;
	e.total_sent = v->total_sent;
	e.total_received = v->total_received;
	__builtin_memcpy(e.saddr, v->saddr, 16);
	__builtin_memcpy(e.daddr, v->daddr, 16);
	e.sends = v->sends;
	e.receives = v->receives;
	e.sport = v->sport;
	e.dport = v->dport;
	e.family = v->family;
	e.reason = reason;
	e.direction = v->direction;
	fb_output(&e, sizeof(e), now);
	v->sent = 0;
	v->received = 0;
	v->sends = 0;
	v->receives = 0;
}

/* Adds a send's or a read's bytes to the summary of `sk`, starting one on
 * the connection's first bytes; runs in the context of the task that moved
 * them (the socket tracepoints fire in the syscall). */
static __always_inline void account_bytes(const struct sock *sk, __u64 sent, __u64 received)
{
	__u64 key = (__u64)sk, now, id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct nstate *v;

	if (fb_skip(tgid))
		return;
	now = bpf_ktime_get_ns();
	v = bpf_map_lookup_elem(&conns, &key);
	if (!v) {
		__u16 family = sk->__sk_common.skc_family;
		struct nstate init = { .tgid = tgid };
		struct owner *o = bpf_map_lookup_elem(&owners, &key);

		if (family != AF_INET && family != AF_INET6)
			return;
		if (family == AF_INET) {
			__builtin_memcpy(init.saddr, &sk->__sk_common.skc_rcv_saddr, 4);
			__builtin_memcpy(init.daddr, &sk->__sk_common.skc_daddr, 4);
		} else {
			bpf_probe_read_kernel(init.saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
			bpf_probe_read_kernel(init.daddr, 16, &sk->__sk_common.skc_v6_daddr);
		}
		init.sport = sk->__sk_common.skc_num;
		init.dport = __builtin_bswap16(sk->__sk_common.skc_dport);
		init.family = family;
		init.direction = o ? o->direction : FB_NET_DIR_UNKNOWN;
		if (bpf_map_update_elem(&conns, &key, &init, BPF_NOEXIST) == -E2BIG) {
			fb_count_drop(now); /* no room for another connection: these bytes are not counted */
			return;
		}
		v = bpf_map_lookup_elem(&conns, &key);
		if (!v)
			return;
	} else if (v->tgid != tgid) {
		/* Another process took over the socket: what the last one moved is its. */
		if (v->sends || v->receives)
			write_bytes(v, FB_NET_HANDOFF, now);
		v->tgid = tgid;
		v->total_sent = 0;
		v->total_received = 0;
	}
	if (!v->sends && !v->receives)
		v->first_ts = now;
	v->last_ts = now;
	v->tid = (__u32)id;
	/* Atomic: the tracepoints fire outside the socket lock, so two threads
	 * of one process can count on one socket at once. */
	if (sent) {
		__sync_fetch_and_add(&v->sends, 1);
		__sync_fetch_and_add(&v->sent, sent);
	}
	if (received) {
		__sync_fetch_and_add(&v->receives, 1);
		__sync_fetch_and_add(&v->received, received);
	}
	if (now - v->first_ts >= FB_SUMMARY_NS)
		write_bytes(v, FB_NET_INTERVAL, now);
}

/* Owners of listeners that closed, by port, until the port listens again:
 * a SYN the kernel refuses for want of a listener (no socket) is
 * attributed to the last process that listened there. LRU: ports that never
 * listen again age out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct owner);
} closed_listeners SEC(".maps");

static __always_inline void emit(const struct sock *sk, __u8 kind, int oldstate, int newstate, __u32 pid, __u32 tid,
				 __u64 latency, __u16 port)
{
	__u64 now = bpf_ktime_get_ns();
	__u16 family = sk->__sk_common.skc_family;
	struct fb_tcp *e;

	if (family != AF_INET && family != AF_INET6)
		return;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		fb_count_drop(now);
		return;
	}
	/* Often interrupt context: straight to the ring, never through the batch. */
	fb_fill_header(&e->h, FB_EV_TCP, sizeof(*e), now, pid, tid);
	e->latency_ns = latency;
	__builtin_memset(e->saddr, 0, sizeof(e->saddr));
	__builtin_memset(e->daddr, 0, sizeof(e->daddr));
	/* sk is a trusted tracepoint argument: read it directly. */
	if (family == AF_INET) {
		__builtin_memcpy(e->saddr, &sk->__sk_common.skc_rcv_saddr, 4);
		__builtin_memcpy(e->daddr, &sk->__sk_common.skc_daddr, 4);
	} else {
		bpf_probe_read_kernel(e->saddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(e->daddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
	/* A closing listener has released its port: the caller passes the one kept from its listen. */
	e->sport = port ? port : sk->__sk_common.skc_num;
	e->dport = __builtin_bswap16(sk->__sk_common.skc_dport);
	e->family = family;
	e->kind = kind;
	e->oldstate = oldstate;
	e->newstate = newstate;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	bpf_ringbuf_submit(e, fb_submit_flags());
}

/* The task an event belongs to, and whether it is recorded: the socket's
 * owner `o` when it has one, else the current task. */
static __always_inline bool attribute(const struct owner *o, __u32 *pid, __u32 *tid)
{
	__u64 id;

	if (o) {
		*pid = o->pid;
		*tid = o->tid;
		return true;
	}
	id = bpf_get_current_pid_tgid();
	*pid = id >> 32;
	*tid = (__u32)id;
	return !fb_skip(*pid);
}

static __always_inline bool who(const struct sock *sk, __u32 *pid, __u32 *tid)
{
	__u64 key = (__u64)sk;

	return attribute(bpf_map_lookup_elem(&owners, &key), pid, tid);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(fb_tcp_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u64 key = (__u64)sk, latency = 0, id;
	struct owner *o = NULL;
	__u32 pid, tid;
	bool wanted;

	if (sk->sk_protocol != IPPROTO_TCP)
		return 0;
	if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) {
		/* connect(2) or listen(2), in the owner's context. */
		struct owner v = { .ts = newstate == TCP_SYN_SENT ? bpf_ktime_get_ns() : 0,
				   .direction = newstate == TCP_SYN_SENT ? FB_NET_DIR_OUT : 0 };

		id = bpf_get_current_pid_tgid();
		v.pid = id >> 32;
		v.tid = (__u32)id;
		if (fb_skip(v.pid))
			return 0;
		v.port = newstate == TCP_LISTEN ? sk->__sk_common.skc_num : 0;
		if (bpf_map_update_elem(&owners, &key, &v, BPF_ANY))
			fb_count_drop(bpf_ktime_get_ns());
		if (v.port) {
			bpf_map_update_elem(&listeners, &v.port, &v, BPF_ANY);
			bpf_map_delete_elem(&closed_listeners, &v.port);
		}
		pid = v.pid;
		tid = v.tid;
		wanted = true;
	} else {
		o = bpf_map_lookup_elem(&owners, &key);
		if (!o && oldstate == TCP_SYN_RECV) {
			/* Accepted: the listener's owner is this connection's. */
			__u32 port = sk->__sk_common.skc_num;

			o = bpf_map_lookup_elem(&listeners, &port);
			if (o) {
				struct owner v = { .pid = o->pid, .tid = o->tid, .direction = FB_NET_DIR_IN };

				bpf_map_update_elem(&owners, &key, &v, BPF_ANY);
			}
		}
		if (o && oldstate == TCP_SYN_SENT && o->ts) {
			/* The handshake ended: the connect's latency. */
			latency = bpf_ktime_get_ns() - o->ts;
			o->ts = 0;
		}
		wanted = attribute(o, &pid, &tid);
	}
	if (wanted)
		emit(sk, FB_TCP_STATE, oldstate, newstate, pid, tid, latency,
		     oldstate == TCP_LISTEN && newstate == TCP_CLOSE && o ? (__u16)o->port : 0);
	if (newstate == TCP_CLOSE) {
		if (oldstate == TCP_LISTEN && o && o->port) {
			__u32 port = o->port;

			bpf_map_delete_elem(&listeners, &port);
			bpf_map_update_elem(&closed_listeners, &port, o, BPF_ANY);
		}
		bpf_map_delete_elem(&owners, &key);
	}
	return 0;
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(fb_tcp_retransmit, const struct sock *sk)
{
	__u32 pid, tid;

	if (who(sk, &pid, &tid))
		emit(sk, FB_TCP_RETRANSMIT, 0, 0, pid, tid, 0, 0);
	return 0;
}

/* A SYN refused for want of a listener: the kernel answers it with a reset
 * that has no socket, so the segment itself says who asked for what. From
 * the server's side, this is a refused connect whatever host the client is on. */
static __always_inline void refused_syn(const struct sk_buff *skb)
{
	/* skb is a trusted tracepoint argument: read it directly; the packet through probe reads. */
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header, th = skb->transport_header;
	__u8 tcp[14], version, local[16] = {}, remote[16] = {};
	__u16 family;
	__u32 port, pid = 0, tid = 0;
	struct owner *o;
	struct fb_tcp *e;
	__u64 now;

	if (!head || bpf_probe_read_kernel(&version, 1, head + nh) || bpf_probe_read_kernel(tcp, sizeof(tcp), head + th))
		return;
	/* A SYN without ACK: a connection attempt (resets to stray segments are not refusals). */
	if ((tcp[13] & 0x12) != 0x02)
		return;
	version >>= 4;
	if (version == 4) {
		family = AF_INET;
		if (bpf_probe_read_kernel(remote, 4, head + nh + 12) || bpf_probe_read_kernel(local, 4, head + nh + 16))
			return;
	} else if (version == 6) {
		family = AF_INET6;
		if (bpf_probe_read_kernel(remote, 16, head + nh + 8) || bpf_probe_read_kernel(local, 16, head + nh + 24))
			return;
	} else {
		return;
	}
	port = (__u32)tcp[2] << 8 | tcp[3];
	o = bpf_map_lookup_elem(&closed_listeners, &port);
	if (o) {
		pid = o->pid;
		tid = o->tid;
	} else if (fb_skip(0)) {
		/* Nobody of ours listened there: recorded only when recording everything. */
		return;
	}
	now = bpf_ktime_get_ns();
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		fb_count_drop(now);
		return;
	}
	fb_fill_header(&e->h, FB_EV_TCP, sizeof(*e), now, pid, tid);
	e->latency_ns = 0;
	__builtin_memcpy(e->saddr, local, sizeof(local));
	__builtin_memcpy(e->daddr, remote, sizeof(remote));
	e->sport = port;
	e->dport = (__u16)tcp[0] << 8 | tcp[1];
	e->family = family;
	e->kind = FB_TCP_REFUSED;
	e->oldstate = 0;
	e->newstate = 0;
	__builtin_memset(e->_pad, 0, sizeof(e->_pad));
	bpf_ringbuf_submit(e, fb_submit_flags());
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(fb_tcp_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	__u32 pid, tid;

	if (!sk) {
		if (skb)
			refused_syn(skb);
		return 0;
	}
	if (who(sk, &pid, &tid))
		emit(sk, FB_TCP_RESET_SENT, 0, 0, pid, tid, 0, 0);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(fb_tcp_receive_reset, struct sock *sk)
{
	__u32 pid, tid;

	if (who(sk, &pid, &tid))
		emit(sk, FB_TCP_RESET_RECEIVED, 0, 0, pid, tid, 0, 0);
	return 0;
}

#define MSG_PEEK 2

/* A TCP socket of the families the tcp events describe. */
static __always_inline bool tcp_inet(const struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;

	return sk->sk_protocol == IPPROTO_TCP && (family == AF_INET || family == AF_INET6);
}

/* Bytes sent: what a send returned (write, send, sendmsg, sendfile and
 * splice onto a socket all end in sock_sendmsg; Linux 6.2 or later). */
SEC("tp_btf/sock_send_length")
int BPF_PROG(fb_sock_send, struct sock *sk, int ret, int flags)
{
	if (ret > 0 && sk && tcp_inet(sk))
		account_bytes(sk, ret, 0);
	return 0;
}

/* Bytes received: what a read copied to the reader (read, recv, recvmsg);
 * a peek leaves them queued and is not counted. */
SEC("tp_btf/sock_recv_length")
int BPF_PROG(fb_sock_recv, struct sock *sk, int ret, int flags)
{
	if (ret > 0 && !(flags & MSG_PEEK) && sk && tcp_inet(sk))
		account_bytes(sk, 0, ret);
	return 0;
}

/* The socket is destroyed (after close(2), or when an orphaned connection
 * finished closing, possibly in a timer): no byte moves on it any more, its
 * last summary goes out and its state is forgotten. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(fb_tcp_destroy, struct sock *sk)
{
	__u64 key = (__u64)sk;
	struct nstate *v = bpf_map_lookup_elem(&conns, &key);

	if (!v)
		return 0;
	if (v->sends || v->receives)
		write_bytes(v, FB_NET_CLOSE, bpf_ktime_get_ns());
	bpf_map_delete_elem(&conns, &key);
	return 0;
}

static long sweep_conn(struct bpf_map *map, __u64 *k, struct nstate *v, struct fb_sweep *c)
{
	if (!v->sends && !v->receives)
		return 0;
	if (c->all || c->now >= v->last_ts + FB_SUMMARY_NS)
		write_bytes(v, FB_NET_IDLE, c->now);
	return 0;
}

/* Run by user space once a second: writes out the summaries of connections
 * that moved no byte for the summary interval (all of them as the recording
 * ends). The state stays until the socket is destroyed, for its totals. */
SEC("raw_tp")
int fb_sweep_net(__u64 *ctx)
{
	struct fb_sweep c = fb_sweep_start(ctx);

	bpf_for_each_map_elem(&conns, sweep_conn, &c, 0);
	return 0;
}
