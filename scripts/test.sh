#!/bin/sh
# The test suite. As root it first installs what is needed (scripts/setup.sh),
# so it works on a fresh machine. BPF tests need root; with
# FLIGHTBOX_REQUIRE_BPF=1 they fail instead of skipping when they cannot run.
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
    sh scripts/setup.sh
fi
swift build --build-tests
log=$(mktemp)
# XCTest only (the suite has no swift-testing tests); end on a plain count.
# The status of swift test itself, not tee's: a crashed test process must fail the run.
rc=$(mktemp)
trap 'rm -f "$log" "$rc"' EXIT
# (set +e: under -e a failing swift test would end the group before its status is written.)
{ set +e; swift test --skip-build --disable-swift-testing; echo $? >"$rc"; } 2>&1 | tee "$log"
status=$(cat "$rc")
# "Executed 67 tests, with 0 failures" or "..., with 20 tests skipped and 0 failures"
summary=$(grep -E "Executed [0-9]+ tests?, with " "$log" | tail -1)
if [ -z "$summary" ]; then
    echo "0 passed, 1 failed"
    exit 1
fi
executed=$(echo "$summary" | sed -E 's/.*Executed ([0-9]+) tests?.*/\1/')
failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) failures?.*/\1/')
skipped=$(echo "$summary" | sed -nE 's/.*with ([0-9]+) tests? skipped.*/\1/p')
skipped=${skipped:-0}
if [ "$status" -ne 0 ] && grep -q "exited with unexpected signal" "$log"; then
    # No overall summary after a crash: count the test cases that ended.
    passed=$(grep -cE "^Test Case '.*' passed" "$log" || true)
    failed=$(grep -cE "^Test Case '.*' failed" "$log" || true)
    echo "$passed passed, $((failed + 1)) failed, 0 skipped (the test process crashed; see above)"
    exit 1
fi
echo "$((executed - failed - skipped)) passed, $failed failed, $skipped skipped"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ]; then exit 1; fi
