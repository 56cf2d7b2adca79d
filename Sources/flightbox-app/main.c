/* A small application with functions of known latency, known error returns,
 * a heartbeat and a USDT probe: the test program of the health checks
 * (uprobes and USDT, bpf/uprobe.bpf.c). Tests drive it by its arguments, so
 * they know exactly how many calls to expect, how long each takes and what
 * it returns.
 *
 *   flightbox-app STEP...
 *
 * Steps run in order:
 *   work MS N           call fb_app_work(MS) N times: sleeps MS ms, returns 0
 *   fail CODE N         call fb_app_fail(CODE) N times: returns -CODE at once
 *   heartbeat MS N      call fb_app_heartbeat() N times, MS ms apart, then stop
 *   sleep MS            sleep MS ms (e.g. a heartbeat that has stopped)
 *   spin N              call fb_app_spin(k) N times in a tight loop (k from 1),
 *                       then print the loop's time in ns on stdout: what a
 *                       probe on a function called millions of times a second
 *                       costs (`flightbox bench uprobes`)
 *
 * Every fb_app_work and fb_app_fail call is also a USDT probe
 * flightbox_app:request(id, latency_us, status), id counting from 1 over the
 * whole run; every heartbeat fires flightbox_app:heartbeat(seq); every
 * fb_app_spin call fires flightbox_app:spin(k) (a nop until attached).
 *
 * The functions are noinline and the binary keeps its symbols, so a uprobe on
 * `flightbox-app:fb_app_work` sees every call (check with `nm`). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sdt.h>
#include <time.h>

#define FB_NOINLINE __attribute__((noinline, used, visibility("default")))

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
	}
}

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The asm barriers keep the compiler from folding these into their callers
 * or into each other (identical code folding would give two symbols one address). */
FB_NOINLINE int fb_app_work(long ms)
{
	sleep_ms(ms);
	__asm__ volatile("" ::: "memory");
	return 0;
}

FB_NOINLINE int fb_app_fail(long code)
{
	__asm__ volatile("" ::: "memory");
	return (int)-code;
}

FB_NOINLINE int fb_app_heartbeat(long seq)
{
	__asm__ volatile("" ::: "memory");
	return (int)seq;
}

/* Nearly empty: the cost of a call to it is the loop's, and a probe's shows. */
FB_NOINLINE int fb_app_spin(long k)
{
	DTRACE_PROBE1(flightbox_app, spin, k);
	__asm__ volatile("" ::: "memory");
	return (int)(k & 1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static long number(const char *s, const char *what)
{
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0) {
		fprintf(stderr, "flightbox-app: %s: not a non-negative number: %s\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	long request = 0;
	for (int i = 1; i < argc;) {
		const char *step = argv[i];
		int need = strcmp(step, "sleep") == 0 || strcmp(step, "spin") == 0 ? 1 : 2;
		if (i + need >= argc) {
			fprintf(stderr, "flightbox-app: %s needs %d argument(s)\n", step, need);
			return 2;
		}
		long a = number(argv[i + 1], step);
		long n = need == 2 ? number(argv[i + 2], step) : 0;
		i += need + 1;
		if (strcmp(step, "work") == 0 || strcmp(step, "fail") == 0) {
			int work = step[0] == 'w';
			for (long k = 0; k < n; k++) {
				uint64_t start = now_us();
				int status = work ? fb_app_work(a) : fb_app_fail(a);
				uint64_t latency = now_us() - start;
				request++;
				DTRACE_PROBE3(flightbox_app, request, request, latency, status);
			}
		} else if (strcmp(step, "heartbeat") == 0) {
			for (long k = 0; k < n; k++) {
				if (k > 0)
					sleep_ms(a);
				fb_app_heartbeat(k + 1);
				DTRACE_PROBE1(flightbox_app, heartbeat, k + 1);
			}
		} else if (strcmp(step, "spin") == 0) {
			long odd = 0;
			uint64_t start = now_ns();
			for (long k = 1; k <= a; k++)
				odd += fb_app_spin(k);
			printf("%llu %ld\n", (unsigned long long)(now_ns() - start), odd);
			fflush(stdout);
		} else if (strcmp(step, "sleep") == 0) {
			sleep_ms(a);
		} else {
			fprintf(stderr, "flightbox-app: unknown step: %s\n", step);
			return 2;
		}
	}
	return 0;
}
