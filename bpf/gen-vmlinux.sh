#!/bin/sh
# Regenerate bpf/vmlinux/$(uname -m)/vmlinux.h from the running kernel's BTF.
# The committed header only needs to be new enough to name the fields the
# programs use: CO-RE relocates every access against the target kernel's own
# BTF at load time, so one header serves every kernel with BTF.
set -eu
here=$(dirname "$0")
arch=$(uname -m)
mkdir -p "$here/vmlinux/$arch"
bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$here/vmlinux/$arch/vmlinux.h"
echo "wrote $here/vmlinux/$arch/vmlinux.h"
