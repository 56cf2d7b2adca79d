#ifndef FLIGHTBOX_BPF_SHIM_H
#define FLIGHTBOX_BPF_SHIM_H
#include <stddef.h>
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include "flightbox_events.h"

/* Write `cfg` into the object's `const volatile struct fb_config fb_cfg`
 * (its .rodata) before load. Returns 0 or -errno. */
int fb_bpf_set_config(struct bpf_object *obj, const struct fb_config *cfg);

/* Number of arguments the kernel passes to raw tracepoint `name` (the
 * btf_trace_<name> typedef in the kernel's BTF, its context pointer not
 * counted), or -errno. `btf_path` NULL means the running kernel's. */
int fb_bpf_tracepoint_args(const char *btf_path, const char *name);

/* The value of enumerator `name` in the kernel's BTF (`btf_path` NULL: the
 * running kernel's), in *value. Returns 0 or -errno (-ENOENT: no such name). */
int fb_bpf_enum_value(const char *btf_path, const char *name, long long *value);

/* Route libbpf's messages into a buffer instead of stderr; with `echo` set,
 * also print them (for --verbose). */
void fb_bpf_capture_log(int echo);

/* The last messages libbpf printed (verifier log tail included), for errors. */
const char *fb_bpf_log_tail(void);
void fb_bpf_log_clear(void);
#endif
