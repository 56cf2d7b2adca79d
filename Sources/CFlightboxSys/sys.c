#define _GNU_SOURCE
#include "flightbox_sys.h"
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint32_t crc_table[8][256];
static int crc_ready;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
	__atomic_store_n(&crc_ready, 1, __ATOMIC_RELEASE);
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t n)
{
	uint64_t c = crc;
	while (n >= 8) {
		uint64_t v;
		__builtin_memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		n -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (n--)
		c32 = __builtin_ia32_crc32qi(c32, *p++);
	return c32;
}
#endif

uint32_t fb_crc32c(uint32_t crc, const void *data, size_t length)
{
	const unsigned char *p = data;
	crc = ~crc;
#if defined(__x86_64__)
	if (__builtin_cpu_supports("sse4.2"))
		return ~crc_hw(crc, p, length);
#endif
	if (!__atomic_load_n(&crc_ready, __ATOMIC_ACQUIRE))
		crc_init();
	while (length--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

pid_t fb_spawn_gated(char *const argv[], int *gate)
{
	int fds[2];
	pid_t pid, parent = getpid();

	if (pipe2(fds, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0) {
		int e = errno;
		close(fds[0]);
		close(fds[1]);
		return -e;
	}
	if (pid == 0) {
		/* Only async-signal-safe calls from here to exec. */
		char c = 0;
		ssize_t n;
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		signal(SIGPIPE, SIG_DFL);
		signal(SIGCHLD, SIG_DFL); /* an inherited "ignore" would survive exec */
		/* The command never runs unrecorded: when the recorder dies, even
		 * by SIGKILL, the kernel kills the command. If the recorder died
		 * before this line, we were already reparented and no signal will
		 * come: getppid() tells. */
		if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
			_exit(127);
		close(fds[1]);
		while ((n = read(fds[0], &c, 1)) < 0 && errno == EINTR)
			;
		close(fds[0]);
		/* The recorder went away without releasing us: never run untraced. */
		if (n != 1)
			_exit(127);
		execvp(argv[0], argv);
		_exit(127);
	}
	close(fds[0]);
	*gate = fds[1];
	return pid;
}

int fb_spawn_release(int gate)
{
	char c = 1;
	ssize_t n = write(gate, &c, 1);
	close(gate);
	return n == 1 ? 0 : -1;
}

int fb_open_tmpfile(const char *dir, mode_t mode)
{
	int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, mode);

	return fd < 0 ? -errno : fd;
}

int fb_link_fd(int fd, const char *path)
{
	char proc[64];

	if (linkat(fd, "", AT_FDCWD, path, AT_EMPTY_PATH) == 0)
		return 0;
	/* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; /proc/self/fd does not. */
	if (errno != ENOENT && errno != EPERM)
		return -errno;
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0 ? 0 : -errno;
}

int fb_rename_noreplace(const char *from, const char *to)
{
	if (syscall(SYS_renameat2, AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* A filesystem without RENAME_NOREPLACE: link(2) fails on an existing
	 * name just as atomically. */
	if (link(from, to) != 0)
		return -errno;
	unlink(from);
	return 0;
}

int fb_flock_try(int fd)
{
	while (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* Stop requests, counted by an async-signal-safe handler into C globals:
 * Swift globals may be initialised lazily and are checked for exclusive
 * access, neither of which a signal handler may meet. */
static volatile sig_atomic_t stop_count;
static volatile sig_atomic_t stop_last = SIGTERM;

static void on_stop_signal(int sig)
{
	stop_last = sig;
	stop_count++;
}

/* A counting handler, restarting the calls it interrupts. */
static void install_counting(int sig, void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(sig, &sa, NULL);
}

void fb_stop_signals_install(void)
{
	install_counting(SIGINT, on_stop_signal);
	install_counting(SIGTERM, on_stop_signal);
	signal(SIGPIPE, SIG_IGN);
	/* A recorder started with SIGCHLD ignored would never see its command
	 * exit (the kernel reaps it and waitpid fails with ECHILD). */
	signal(SIGCHLD, SIG_DFL);
}

int fb_stop_signals_count(void) { return stop_count; }

/* Dump requests (SIGUSR1) for the flight recorder, counted the same way. */
static volatile sig_atomic_t dump_count;

static void on_dump_signal(int sig)
{
	(void)sig;
	dump_count++;
}

void fb_dump_signals_install(void)
{
	install_counting(SIGUSR1, on_dump_signal);
}

int fb_dump_signals_count(void) { return dump_count; }
int fb_stop_signal_last(void) { return stop_last; }

/* The flight recorder's control socket (a unix stream socket in its
 * directory) and its metrics listener (TCP on a loopback address): both
 * non-blocking and close-on-exec, polled from the recorder's loop. */
int fb_unix_listen(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	/* A socket a killed recorder left behind is only a name. */
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(path, 0600) != 0 || listen(fd, 8) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int fb_unix_connect(const char *path)
{
	struct sockaddr_un sa;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int fb_tcp_listen(const char *address, int port)
{
	struct sockaddr_in6 sa6;
	struct sockaddr_in sa4;
	struct sockaddr *sa;
	socklen_t len;
	int fd, one = 1, family;

	memset(&sa6, 0, sizeof(sa6));
	memset(&sa4, 0, sizeof(sa4));
	if (inet_pton(AF_INET, address, &sa4.sin_addr) == 1) {
		/* Loopback only: metrics say what runs on the host. */
		if ((ntohl(sa4.sin_addr.s_addr) >> 24) != 127)
			return -EADDRNOTAVAIL;
		sa4.sin_family = AF_INET;
		sa4.sin_port = htons((uint16_t)port);
		sa = (struct sockaddr *)&sa4;
		len = sizeof(sa4);
		family = AF_INET;
	} else if (inet_pton(AF_INET6, address, &sa6.sin6_addr) == 1) {
		if (!IN6_IS_ADDR_LOOPBACK(&sa6.sin6_addr))
			return -EADDRNOTAVAIL;
		sa6.sin6_family = AF_INET6;
		sa6.sin6_port = htons((uint16_t)port);
		sa = (struct sockaddr *)&sa6;
		len = sizeof(sa6);
		family = AF_INET6;
	} else {
		return -EINVAL;
	}
	fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, sa, len) != 0 || listen(fd, 16) != 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

int fb_accept(int fd)
{
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	return c < 0 ? -errno : c;
}
