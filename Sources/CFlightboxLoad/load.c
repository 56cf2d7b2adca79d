#define _GNU_SOURCE
/* Test workloads with exactly known behaviour, for flightbox-load (tests,
 * fixtures and benchmarks). Nothing the product links. */
#include "flightbox_load.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

long fb_getppid_raw(void)
{
	return syscall(SYS_getppid);
}
const int fb_o_direct = O_DIRECT;

#include <linux/capability.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

int fb_privilege_scenario(const char *dir)
{
	char file[512], mnt[512];
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct data[2];
	struct iovec local = { file, 1 }, remote = { 0, 1 };
	int fd, status;
	pid_t child;

	snprintf(file, sizeof(file), "%s/flightbox-priv", dir);
	snprintf(mnt, sizeof(mnt), "%s/flightbox-mnt", dir);
	fd = open(file, O_CREAT | O_WRONLY | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	close(fd);
	chmod(file, 0644);                         /* no exec bit: not reported */
	chmod(file, 0755);                         /* exec bits added: reported */
	fd = (int)syscall(SYS_memfd_create, "flightbox-memfd", 0);
	if (fd >= 0)
		close(fd);
	syscall(SYS_capget, &hdr, data);
	syscall(SYS_capset, &hdr, data);           /* the same capabilities again */
	ptrace(PTRACE_ATTACH, 999999999, 0, 0);    /* no such pid: -ESRCH */
	syscall(SYS_process_vm_writev, 999999999, &local, 1, &remote, 1, 0);
	syscall(SYS_finit_module, -1, "", 0);      /* bad fd: -EBADF */
	syscall(SYS_bpf, 0, NULL, 0);              /* BPF_MAP_CREATE without attr */
	mkdir(mnt, 0700);
	if (mount("flightbox-src", mnt, "tmpfs", MS_NOSUID, "size=64k") == 0)
		umount(mnt);
	rmdir(mnt);
	unlink(file);
	child = fork();
	if (child == 0) {
		int nul = open("/dev/null", O_WRONLY);
		dup2(nul, 2);                          /* onto stderr: reported */
		dup2(nul, 7);                          /* onto 7: not reported */
		_exit(setuid(65534) == 0 ? 0 : 1);     /* root drops to nobody */
	}
	if (child < 0 || waitpid(child, &status, 0) < 0)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#include <sched.h>

int fb_pin_to_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	return sched_setaffinity(0, sizeof(set), &set);
}

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>

/* A loopback port nobody listens on (bound, then closed). */
static int closed_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int s = socket(AF_INET, SOCK_STREAM, 0);

	if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) || getsockname(s, (struct sockaddr *)&a, &len))
		return -1;
	close(s);
	return ntohs(a.sin_port);
}

/* A listener on a free loopback port; its address in *a. Returns the socket or -1. */
static int loopback_listener(struct sockaddr_in *a, int *port)
{
	socklen_t len = sizeof(*a);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	*a = (struct sockaddr_in){ .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	if (l < 0 || bind(l, (struct sockaddr *)a, sizeof(*a)) || listen(l, 64) || getsockname(l, (struct sockaddr *)a, &len)) {
		if (l >= 0)
			close(l);
		return -1;
	}
	*port = ntohs(a->sin_port);
	return l;
}

/* One connect to the listener l at a, accepted and closed: 1, or 0 if it failed. */
static int connect_accepted(int l, const struct sockaddr_in *a)
{
	int c = socket(AF_INET, SOCK_STREAM, 0), s, ok = 0;

	if (c >= 0 && connect(c, (const struct sockaddr *)a, sizeof(*a)) == 0 && (s = accept(l, NULL, NULL)) >= 0) {
		ok = 1;
		close(s);
	}
	if (c >= 0)
		close(c);
	return ok;
}

int fb_tcp_scenario(int n, int *listen_port, int *refused_port)
{
	struct sockaddr_in a;
	int l = loopback_listener(&a, listen_port), ok = 0;

	if (l < 0)
		return -1;
	for (int i = 0; i < n; i++)
		ok += connect_accepted(l, &a);
	close(l);
	*refused_port = closed_port();
	a.sin_port = htons(*refused_port);
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (c >= 0) {
		connect(c, (struct sockaddr *)&a, sizeof(a)); /* ECONNREFUSED: the peer answers with a reset */
		close(c);
	}
	return ok;
}

/* Bytes both ways on one loopback connection, exactly known. A forked
 * server peeks at the first 10 bytes (not counted: still queued), reads
 * everything until EOF, answers 1234 bytes and exits. The client writes
 * 10 x 100,000 bytes and sends one, then one byte every 100 ms, `trickle`
 * times (15: 1.5 s, so the kernel writes an interval summary), shuts down
 * its side and reads the answer. Returns the bytes the client sent
 * (1,000,001 + trickle), -1 on error; sets the port and the server's pid. */
long fb_netbytes_scenario(int trickle, int *listen_port, int *server_pid)
{
	struct sockaddr_in a;
	char buf[100000], peek[10];
	long sent = 0, got = 0, n;
	int l = loopback_listener(&a, listen_port), c, status;
	pid_t child;

	if (l < 0)
		return -1;
	child = fork();
	if (child == 0) {
		int s = accept(l, NULL, NULL);
		long total = 0;

		if (s < 0)
			_exit(1);
		recv(s, peek, sizeof(peek), MSG_PEEK | MSG_WAITALL);
		while ((n = read(s, buf, sizeof(buf))) > 0)
			total += n;
		memset(buf, 'r', 1234);
		_exit(total == 1000001 + trickle && write(s, buf, 1234) == 1234 ? 0 : 2);
	}
	if (child < 0)
		return -1;
	*server_pid = child;
	close(l);
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
		return -1;
	memset(buf, 's', sizeof(buf));
	for (int i = 0; i < 10; i++) {
		for (long off = 0; off < (long)sizeof(buf); off += n) {
			n = write(c, buf + off, sizeof(buf) - off);
			if (n <= 0)
				return -1;
			sent += n;
		}
	}
	sent += send(c, buf, 1, 0);
	for (int i = 0; i < trickle; i++) {
		usleep(100000);
		sent += send(c, buf, 1, 0);
	}
	shutdown(c, SHUT_WR);
	while ((n = read(c, buf, sizeof(buf))) > 0)
		got += n;
	close(c);
	if (waitpid(child, &status, 0) != child || status != 0 || got != 1234)
		return -1;
	return sent;
}

/* A send storm on one loopback connection: n sends of `size` bytes to a
 * forked reader that reads until EOF. Returns the ns the sends and the
 * reader's draining took (monotonic), -1 on error: what per-call byte
 * accounting costs shows here, on both sides. */
long fb_net_storm(long n, int size)
{
	struct sockaddr_in a;
	char *buf = calloc(1, size > 65536 ? size : 65536);
	int port, l = loopback_listener(&a, &port), c, status;
	struct timespec t0, t1;
	pid_t child;

	if (l < 0 || !buf)
		return -1;
	child = fork();
	if (child == 0) {
		int s = accept(l, NULL, NULL);

		while (s >= 0 && read(s, buf, 65536) > 0)
			;
		_exit(s < 0);
	}
	if (child < 0)
		return -1;
	close(l);
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) != 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++)
		if (send(c, buf, size, 0) != size)
			return -1;
	close(c);
	if (waitpid(child, &status, 0) != child || status != 0)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	free(buf);
	return (t1.tv_sec - t0.tv_sec) * 1000000000L + (t1.tv_nsec - t0.tv_nsec);
}

/* An outage: n connects to a loopback listener of its own (each accepted),
 * 10 ms apart; then the listener closes and the client keeps connecting,
 * 20 ms apart, for outage_ms (each refused with a reset). Returns the
 * connects accepted; sets the port and the refused count. */
int fb_tcp_outage(int n, int outage_ms, int *listen_port, int *refused)
{
	struct sockaddr_in a;
	int l, ok = 0;

	*refused = 0;
	l = loopback_listener(&a, listen_port);
	if (l < 0)
		return -1;
	for (int i = 0; i < n; i++) {
		ok += connect_accepted(l, &a);
		usleep(10000);
	}
	close(l);
	for (int t = 0; t < outage_ms; t += 20) {
		int c = socket(AF_INET, SOCK_STREAM, 0);

		if (c >= 0) {
			if (connect(c, (struct sockaddr *)&a, sizeof(a)) < 0 && errno == ECONNREFUSED)
				(*refused)++;
			close(c);
		}
		usleep(20000);
	}
	return ok;
}

#include <pthread.h>
#include <time.h>

int fb_tcp_retransmit_scenario(int wait_ms, int *listen_port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), first, second;

	/* A backlog of 0 takes one connection; with it queued and never
	 * accepted, the listener drops the next SYN, which its sender must
	 * retransmit (after the initial 1 s timeout). */
	if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 0) || getsockname(l, (struct sockaddr *)&a, &len))
		return -1;
	*listen_port = ntohs(a.sin_port);
	first = socket(AF_INET, SOCK_STREAM, 0);
	if (first < 0 || connect(first, (struct sockaddr *)&a, sizeof(a)))
		return -1;
	second = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (second < 0)
		return -1;
	connect(second, (struct sockaddr *)&a, sizeof(a)); /* EINPROGRESS */
	usleep(wait_ms * 1000);
	close(second);
	close(first);
	close(l);
	return 0;
}

struct http_server {
	int listener;
	long served;
};

static const char http_reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nConnection: close\r\n\r\n";

static void *http_serve(void *arg)
{
	struct http_server *s = arg;
	char buf[2048], body[1024];

	memset(body, 'x', sizeof(body));
	for (;;) {
		int c = accept(s->listener, NULL, NULL);

		if (c < 0)
			return NULL; /* the listener was shut down */
		if (read(c, buf, sizeof(buf)) > 0) {
			struct iovec iov[2] = { { (void *)http_reply, sizeof(http_reply) - 1 }, { body, sizeof(body) } };

			if (writev(c, iov, 2) > 0)
				__atomic_fetch_add(&s->served, 1, __ATOMIC_RELAXED);
		}
		close(c);
	}
}

static volatile sig_atomic_t http_stop;

static void http_on_sigterm(int sig)
{
	(void)sig;
	http_stop = 1;
}

long fb_http_load(int duration_ms)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	struct http_server s = { .listener = socket(AF_INET, SOCK_STREAM, 0) };
	pthread_t server[2];
	struct timespec t0, t;
	static const char req[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	int one = 1;

	if (s.listener < 0)
		return -1;
	signal(SIGTERM, http_on_sigterm);
	setsockopt(s.listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s.listener, (struct sockaddr *)&a, sizeof(a)) || listen(s.listener, 256) ||
	    getsockname(s.listener, (struct sockaddr *)&a, &len))
		return -1;
	for (int i = 0; i < 2; i++)
		pthread_create(&server[i], NULL, http_serve, &s);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* The client: this thread, one connection per request. */
	for (;;) {
		char buf[2048];
		int c = socket(AF_INET, SOCK_STREAM, 0);

		if (c >= 0 && connect(c, (struct sockaddr *)&a, sizeof(a)) == 0 && write(c, req, sizeof(req) - 1) > 0)
			while (read(c, buf, sizeof(buf)) > 0)
				;
		if (c >= 0)
			close(c);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (http_stop || (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >= duration_ms)
			break;
	}
	shutdown(s.listener, SHUT_RDWR);
	for (int i = 0; i < 2; i++)
		pthread_join(server[i], NULL);
	close(s.listener);
	return s.served;
}

int fb_fault_scenario(const char *path, int pages)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t size = (size_t)pages * page;
	volatile char sum = 0;
	char *buf = malloc(page);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || !buf)
		return -1;
	memset(buf, 'f', page);
	for (int i = 0; i < pages; i++)
		if (write(fd, buf, page) != page)
			return -1;
	/* Out of the page cache, so reading it back through a mapping must go
	 * to the disk: major faults, one per page without readahead. */
	if (fsync(fd) || posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED))
		return -1;
	char *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED || madvise(m, size, MADV_RANDOM))
		return -1;
	for (int i = 0; i < pages; i++)
		sum += m[(size_t)i * page];
	munmap(m, size);
	close(fd);
	unlink(path);
	/* Fresh anonymous memory: one minor fault per page touched. */
	char *anon = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED)
		return -1;
	for (int i = 0; i < pages; i++)
		anon[(size_t)i * page] = 1;
	munmap(anon, size);
	free(buf);
	return 0;
}

#include <poll.h>

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A loopback listener on `port` (0: any), SO_REUSEADDR so a restart can take it back at once. */
static int listener_on(int port, int backlog, int *bound)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port) };
	socklen_t len = sizeof(a);
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);

	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) || bind(l, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(l, backlog) || getsockname(l, (struct sockaddr *)&a, &len)) {
		if (l >= 0)
			close(l);
		return -1;
	}
	*bound = ntohs(a.sin_port);
	return l;
}

/* Accepts (and closes) every connection on l for ms. Returns how many. */
static long serve_for(int l, int ms)
{
	uint64_t end = mono_ms() + (uint64_t)ms;
	long n = 0;

	for (uint64_t now = mono_ms(); now < end; now = mono_ms()) {
		struct pollfd p = { .fd = l, .events = POLLIN };

		if (poll(&p, 1, (int)(end - now)) == 1) {
			int s = accept(l, NULL, NULL);

			if (s >= 0) {
				n++;
				close(s);
			}
		}
	}
	return n;
}

/* One connect to 127.0.0.1:port that gives up after timeout_ms: 0 accepted,
 * 1 refused, 2 unanswered, 3 another error. */
static int connect_once(int port, int timeout_ms)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port) };
	int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), r = 3, err = 0;
	socklen_t len = sizeof(err);

	if (c < 0)
		return 3;
	if (connect(c, (struct sockaddr *)&a, sizeof(a)) == 0) {
		r = 0;
	} else if (errno == ECONNREFUSED) {
		r = 1;
	} else if (errno == EINPROGRESS) {
		struct pollfd p = { .fd = c, .events = POLLOUT };

		if (poll(&p, 1, timeout_ms) == 0)
			r = 2;
		else if (getsockopt(c, SOL_SOCKET, SO_ERROR, &err, &len) == 0)
			r = err == 0 ? 0 : err == ECONNREFUSED ? 1 : 3;
	}
	close(c);
	return r;
}

int fb_accept_stop(const char *mode, int serve_ms, int after_ms, long counts[4])
{
	int stall = strcmp(mode, "stall") == 0, restart = strcmp(mode, "restart") == 0, idle = strcmp(mode, "idle") == 0;
	int port = 0, sync[2];
	pid_t server;

	if (!stall && !restart && !idle && strcmp(mode, "close") != 0)
		return -1;
	if (pipe(sync))
		return -1;
	server = fork();
	if (server < 0)
		return -1;
	if (server == 0) {
		/* The server: its own process, so the listener has its own pid. */
		int l = listener_on(0, stall ? 1 : 64, &port);

		if (l < 0)
			_exit(1);
		if (write(sync[1], &port, sizeof(port)) != sizeof(port))
			_exit(1);
		serve_for(l, serve_ms);
		if (stall) {
			/* Stops calling accept: the queue (backlog 1) fills, then SYNs are dropped. */
			usleep((useconds_t)after_ms * 1000);
			close(l);
		} else if (restart) {
			close(l);
			usleep((useconds_t)after_ms * 1000);
			l = listener_on(port, 64, &port);
			if (l < 0)
				_exit(1);
			serve_for(l, serve_ms);
			close(l);
		} else if (idle) {
			/* Nobody comes any more: the listener stays open and quiet. */
			usleep((useconds_t)after_ms * 1000);
			close(l);
		} else {
			close(l);
			usleep((useconds_t)after_ms * 1000);
		}
		_exit(0);
	}
	close(sync[1]);
	if (read(sync[0], &port, sizeof(port)) != sizeof(port))
		return -1;
	close(sync[0]);
	/* The client: a connect every 50 ms, each given 1.2 s, for as long as the
	 * scenario lasts (idle: only while the server accepts). */
	uint64_t end = mono_ms() + (uint64_t)serve_ms + (idle ? 0 : (uint64_t)after_ms + (restart ? (uint64_t)serve_ms : 0));
	counts[0] = counts[1] = counts[2] = counts[3] = 0;
	while (mono_ms() < end) {
		counts[connect_once(port, 1200)]++;
		usleep(50000);
	}
	int st;
	waitpid(server, &st, 0);
	return port;
}
