#!/bin/sh
# Coverage-guided fuzzing of the trace reader with libFuzzer.
#   sh scripts/fuzz.sh [SECONDS]     (default 600)
# Seeds come from format/ and fixtures/; new interesting inputs are kept in
# .fuzz/corpus, crashes in .fuzz/ (replay one with
# `swift run flightbox-fuzz .fuzz/crash-...`).
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-600}
swift build --product flightbox-fuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library -Xswiftc -D -Xswiftc FUZZING \
    -Xlinker --allow-multiple-definition >/dev/null
mkdir -p .fuzz/corpus .fuzz/seeds
find format fixtures -name '*.fbt' -size -2M -exec cp {} .fuzz/seeds/ \;
# scripts/lsan.supp says why one allocation site is not a leak.
LSAN_OPTIONS="suppressions=$(pwd)/scripts/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}" \
exec .build-fuzz/debug/flightbox-fuzz .fuzz/corpus .fuzz/seeds \
    -max_total_time="$seconds" -max_len=262144 -rss_limit_mb=2048 -artifact_prefix=.fuzz/ -print_final_stats=1
