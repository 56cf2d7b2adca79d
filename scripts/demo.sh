#!/bin/sh
# The main job on a built-in default: install what is needed, build, record
# five seconds of this machine with the detectors live, then replay the trace.
set -eu
cd "$(dirname "$0")/.."
sh scripts/setup.sh
swift build -c release --product flightbox >/dev/null
out=${1:-/tmp/flightbox-demo.fbt}
echo "== recording 5s of this machine to $out"
.build/release/flightbox record -o "$out" --duration 5s --detect --findings "$out.findings.jsonl"
echo "== inspect"
.build/release/flightbox inspect "$out"
echo "== replay"
.build/release/flightbox replay "$out"
