#!/bin/sh
# The main job on a built-in default: install what is needed, build, record
# five seconds of this machine with the detectors live while a small known
# workload runs (one slow 64 MiB write among fast ones, pipe waits, sleeps,
# a few commands), then show the trace and replay it.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
swift build -c release >/dev/null
bin=.build/release
out=${1:-/tmp/flightbox-demo.fbt}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== recording 5s of this machine to $out"
"$bin/flightbox" record -o "$out" --duration 5s --detect --findings "$out.findings.jsonl" &
rec=$!
sleep 1
"$bin/flightbox-load" latency "$work"
ls -la /usr/bin > /dev/null
"$bin/flightbox-load" threads 4 1000
wait $rec
echo "== inspect"
"$bin/flightbox" inspect "$out"
echo "== replay"
"$bin/flightbox" replay "$out"
