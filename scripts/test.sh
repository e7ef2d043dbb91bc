#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root), builds jigdofs and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
bash scripts/install-deps.sh
swift build
# The one release build of the suite: the .deb (static Swift runtime), which PackageTests
# checks, installs into a scratch root and runs with /opt/swift hidden.
JIGDOFS_DEB=$(bash scripts/build-deb.sh)
export JIGDOFS_DEB
# Tests run in parallel by default; mount and server tests pick their own ports and dirs.
swift test 2>&1 | tee /tmp/jigdofs-test.log
# A short fuzz run of every libFuzzer target (scripts/fuzz.sh; longer runs are for the bench).
bash scripts/fuzz.sh "${JIGDOFS_FUZZ_SECONDS:-20}"
