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
swift test --skip-build
