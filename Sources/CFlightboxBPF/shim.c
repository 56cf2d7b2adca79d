#include "flightbox_bpf.h"
#include <bpf/btf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int fb_bpf_set_config(struct bpf_object *obj, const struct fb_config *cfg)
{
	struct bpf_map *map;
	struct btf *btf = bpf_object__btf(obj);

	if (!btf)
		return -ENOENT;
	bpf_object__for_each_map(map, obj) {
		const char *name = bpf_map__name(map);
		size_t len = strlen(name), size = 0;
		const void *init;
		const struct btf_type *sec;
		const struct btf_var_secinfo *vs;
		int id;

		if (len < 7 || strcmp(name + len - 7, ".rodata") != 0)
			continue;
		init = bpf_map__initial_value(map, &size);
		id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
		if (!init || id < 0)
			return -ENOENT;
		sec = btf__type_by_id(btf, id);
		vs = btf_var_secinfos(sec);
		for (int i = 0; i < btf_vlen(sec); i++, vs++) {
			const struct btf_type *var = btf__type_by_id(btf, vs->type);
			void *copy;
			int err;

			if (strcmp(btf__name_by_offset(btf, var->name_off), "fb_cfg") != 0)
				continue;
			if (vs->size != sizeof(*cfg) || vs->offset + vs->size > size)
				return -EINVAL;
			copy = malloc(size);
			if (!copy)
				return -ENOMEM;
			memcpy(copy, init, size);
			memcpy((char *)copy + vs->offset, cfg, sizeof(*cfg));
			err = bpf_map__set_initial_value(map, copy, size);
			free(copy);
			return err;
		}
		return -ENOENT;
	}
	return -ENOENT;
}

int fb_bpf_tracepoint_args(const char *btf_path, const char *name)
{
	char typedef_name[128];
	struct btf *btf = btf_path ? btf__parse(btf_path, NULL) : btf__load_vmlinux_btf();
	const struct btf_type *t;
	int id, n;

	if (!btf)
		return -errno;
	snprintf(typedef_name, sizeof(typedef_name), "btf_trace_%s", name);
	id = btf__find_by_name_kind(btf, typedef_name, BTF_KIND_TYPEDEF);
	if (id < 0) {
		btf__free(btf);
		return -ENOENT;
	}
	t = btf__type_by_id(btf, id);          /* typedef -> pointer */
	t = btf__type_by_id(btf, t->type);     /* pointer -> func proto */
	if (t && btf_is_ptr(t))
		t = btf__type_by_id(btf, t->type);
	n = t && btf_is_func_proto(t) ? btf_vlen(t) - 1 : -EINVAL;
	btf__free(btf);
	return n;
}

int fb_bpf_enum_value(const char *btf_path, const char *name, long long *value)
{
	struct btf *btf = btf_path ? btf__parse(btf_path, NULL) : btf__load_vmlinux_btf();
	int n, err = -ENOENT;

	if (!btf)
		return -errno;
	n = btf__type_cnt(btf);
	for (int id = 1; id < n && err; id++) {
		const struct btf_type *t = btf__type_by_id(btf, id);

		if (btf_is_enum(t)) {
			const struct btf_enum *e = btf_enum(t);

			for (int i = 0; i < btf_vlen(t); i++, e++) {
				if (strcmp(btf__name_by_offset(btf, e->name_off), name) == 0) {
					*value = e->val;
					err = 0;
					break;
				}
			}
		} else if (btf_is_enum64(t)) {
			const struct btf_enum64 *e = btf_enum64(t);

			for (int i = 0; i < btf_vlen(t); i++, e++) {
				if (strcmp(btf__name_by_offset(btf, e->name_off), name) == 0) {
					*value = (long long)btf_enum64_value(e);
					err = 0;
					break;
				}
			}
		}
	}
	btf__free(btf);
	return err;
}

#define LOG_CAP 16384
static char log_buf[LOG_CAP];
static size_t log_len;
static int log_echo;

static int log_cb(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	char small[1024], *line = small;
	int n;
	va_list copy;

	va_copy(copy, ap);
	n = vsnprintf(small, sizeof(small), fmt, copy);
	va_end(copy);
	if (n < 0)
		return 0;
	/* A verifier log is one message, its complaint at the very end: keep it whole. */
	if ((size_t)n >= sizeof(small)) {
		line = malloc((size_t)n + 1);
		if (line) {
			va_copy(copy, ap);
			vsnprintf(line, (size_t)n + 1, fmt, copy);
			va_end(copy);
		} else {
			line = small;
			n = sizeof(small) - 1;
		}
	}
	if (log_echo)
		fputs(line, stderr);
	if (level == LIBBPF_DEBUG && !log_echo)
		goto out;
	/* Keep the tail: verifier complaints come last. */
	{
		const char *src = line;
		size_t len = (size_t)n;

		if (len >= LOG_CAP) {
			src += len - (LOG_CAP - 1);
			len = LOG_CAP - 1;
		}
		if (log_len + len >= LOG_CAP) {
			size_t drop = log_len + len - LOG_CAP + 1;

			if (drop > log_len)
				drop = log_len;
			memmove(log_buf, log_buf + drop, log_len - drop);
			log_len -= drop;
		}
		memcpy(log_buf + log_len, src, len);
		log_len += len;
		log_buf[log_len] = 0;
	}
out:
	if (line != small)
		free(line);
	return n;
}

void fb_bpf_capture_log(int echo)
{
	log_echo = echo;
	libbpf_set_print(log_cb);
}

const char *fb_bpf_log_tail(void)
{
	return log_buf;
}

void fb_bpf_log_clear(void)
{
	log_len = 0;
	log_buf[0] = 0;
}
