#ifndef FLIGHTBOX_SYS_H
#define FLIGHTBOX_SYS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2. */
uint32_t fb_crc32c(uint32_t crc, const void *data, size_t length);

/* Fork a child that waits on a pipe before exec'ing argv[0] (PATH searched).
 * The caller attaches probes and tracks the pid, then calls fb_spawn_release.
 * Returns the pid, or -errno. *gate receives the pipe's write end. If exec
 * fails the child exits with 127. The child gets SIGKILL when the calling
 * thread ends (PR_SET_PDEATHSIG), so call it from the thread that lives as
 * long as the recording (the main thread); exec of a set-user-ID or
 * file-capability program clears that signal. */
pid_t fb_spawn_gated(char *const argv[], int *gate);

/* Let the gated child exec. Closes the gate. */
int fb_spawn_release(int gate);

/* An unnamed file in dir (O_TMPFILE, write-only, close-on-exec): nothing is
 * visible until fb_link_fd names it. Returns the fd or -errno (-EOPNOTSUPP
 * or -EISDIR where the filesystem or kernel has no O_TMPFILE). */
int fb_open_tmpfile(const char *dir, mode_t mode);

/* Gives an O_TMPFILE fd a name; fails with -EEXIST if path exists. */
int fb_link_fd(int fd, const char *path);

/* rename(2) that fails with -EEXIST instead of replacing an existing path. */
int fb_rename_noreplace(const char *from, const char *to);

/* flock(LOCK_EX | LOCK_NB): 0, or -EWOULDBLOCK when another open file holds it. */
int fb_flock_try(int fd);

/* Counts SIGINT and SIGTERM (SA_RESTART) instead of dying of them, ignores
 * SIGPIPE, and sets SIGCHLD to its default so a command can be reaped. */
void fb_stop_signals_install(void);
/* Stop signals received so far, and the last one's number. */
int fb_stop_signals_count(void);
int fb_stop_signal_last(void);

/* Counts SIGUSR1 (a flight recorder's dump request) instead of dying of it. */
void fb_dump_signals_install(void);
int fb_dump_signals_count(void);

/* Listening sockets for the flight recorder, non-blocking, close-on-exec:
 * a unix socket at path (a stale one is replaced, mode 0600), and TCP on a
 * loopback address only (-EADDRNOTAVAIL otherwise). fd or -errno. */
int fb_unix_listen(const char *path);
int fb_unix_connect(const char *path);
int fb_tcp_listen(const char *address, int port);
/* accept4 with SOCK_CLOEXEC; the fd or -errno (-EAGAIN: nobody waiting). */
int fb_accept(int fd);
#endif
