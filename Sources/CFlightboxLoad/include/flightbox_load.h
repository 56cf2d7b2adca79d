#ifndef FLIGHTBOX_LOAD_H
#define FLIGHTBOX_LOAD_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Makes, with known arguments, every call the privilege family reports
 * (see Tests/EndToEndTests): chmod +x, memfd_create, capset, ptrace,
 * process_vm_writev, finit_module, bpf, mount, dup2 onto 2, setuid. */
int fb_privilege_scenario(const char *dir);

/* Pins the calling thread to one CPU (sched_setaffinity). */
int fb_pin_to_cpu(int cpu);

/* N loopback TCP connections to a listener of its own, then one to a
 * closed port. Returns the connections made; sets the two ports. */
int fb_tcp_scenario(int n, int *listen_port, int *refused_port);
long fb_netbytes_scenario(int trickle, int *listen_port, int *server_pid);
long fb_net_storm(long n, int size);

/* n accepted loopback connects, 10 ms apart, then the listener closes and
 * the client keeps connecting (refused), 20 ms apart, for outage_ms.
 * Returns the connects accepted; sets the port and the refused count. */
int fb_tcp_outage(int n, int outage_ms, int *listen_port, int *refused);

/* Provokes a TCP retransmit: a listener whose accept queue is full drops a
 * second connection's SYN, which is retransmitted after 1 s. Waits wait_ms
 * before giving up the connection. Sets the listener's port. */
int fb_tcp_retransmit_scenario(int wait_ms, int *listen_port);

/* A loopback HTTP/1.1 server (two threads) under load from a client (the
 * calling thread) that opens a connection per request, for duration_ms or
 * until SIGTERM. Returns the requests served. */
long fb_http_load(int duration_ms);

/* Writes `pages` pages to path, evicts them from the page cache and reads
 * them back through a mapping without readahead (major faults), then touches
 * as many fresh anonymous pages (minor faults). */
int fb_fault_scenario(const char *path, int pages);

/* O_DIRECT, which glibc hides from Swift behind _GNU_SOURCE. */
extern const int fb_o_direct;

/* One syscall, no libc wrapper caching: used by the load generator. */
long fb_getppid_raw(void);
/* A loopback server (a child process) accepting every connection for
 * serve_ms while the caller connects every 50 ms (each connect given 1.2 s),
 * then by mode: "close" closes the listener, the client goes on for
 * after_ms (refused); "stall" stops calling accept with a backlog of 1 for
 * after_ms (queue full: SYNs dropped, connects unanswered); "restart" closes
 * it, listens again on the same port after after_ms, and serves serve_ms
 * more; "idle" keeps it open after_ms while the client has stopped.
 * counts: accepted, refused, unanswered, other. Returns the port, -1 on error. */
int fb_accept_stop(const char *mode, int serve_ms, int after_ms, long counts[4]);

#endif
