#!/bin/sh
# The test suite. BPF tests need root; with FLIGHTBOX_REQUIRE_BPF=1 they fail
# instead of skipping when they cannot run.
set -eu
cd "$(dirname "$0")/.."
swift build --build-tests
swift test --skip-build
