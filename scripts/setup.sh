#!/bin/sh
# Installs what Flightbox needs on a Debian 12 machine (as root) and mounts
# tracefs and bpffs when they are missing. Safe to run again.
set -eu
need=""
# gcc, make and tar: the workload of `flightbox bench mixed` builds a C tree.
for pkg in libbpf-dev libelf-dev libzstd-dev liblz4-dev zlib1g-dev bpftool linux-perf util-linux gcc make tar; do
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
# An independent reader of `flightbox export --perfetto` for the tests: Perfetto's
# own trace proto (perfetto_trace_pb2 of its Python package) on the protobuf runtime,
# in a virtual environment of its own (Debian's Python is externally managed).
venv=/opt/flightbox/python
if ! "$venv/bin/python3" -c "import perfetto.protos.perfetto.trace.perfetto_trace_pb2" >/dev/null 2>&1; then
    echo "flightbox setup: installing Perfetto's Python package into $venv"
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "perfetto==0.59.1" "protobuf>=5" || echo "flightbox setup: could not install perfetto from PyPI (export tests will fail under FLIGHTBOX_REQUIRE_BPF=1)"
fi
