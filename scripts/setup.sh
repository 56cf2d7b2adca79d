#!/bin/sh
# Installs what Flightbox needs on a Debian 12 machine (as root) and mounts
# tracefs and bpffs when they are missing. Safe to run again.
set -eu
need=""
# gcc, make and tar: the workload of `flightbox bench mixed` builds a C tree.
# libfuse3-dev and fuse3: flightbox-slowfs, the slow and failing disk of the block detector's tests;
# e2fsprogs: a file system on it.
for pkg in libbpf-dev libelf-dev libzstd-dev liblz4-dev zlib1g-dev bpftool linux-perf util-linux gcc make tar libfuse3-dev fuse3 e2fsprogs; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
    echo "flightbox setup: installing$need"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
# tp_btf and raw_tp probes do not need tracefs, but perf (for `flightbox bench`)
# and tracepoint/ probes do.
if [ -d /sys/kernel/tracing ] && ! mountpoint -q /sys/kernel/tracing; then
    mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || echo "flightbox setup: could not mount tracefs (perf comparisons will be skipped)"
fi
if [ -d /sys/fs/bpf ] && ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf 2>/dev/null || true
fi
# The flight recorder's metrics are checked with Prometheus' own text parser.
if ! python3 -c "import prometheus_client" >/dev/null 2>&1; then
    echo "flightbox setup: installing prometheus_client (pip)"
    python3 -m pip install -q prometheus_client 2>/dev/null || python3 -m pip install -q --break-system-packages prometheus_client
fi
