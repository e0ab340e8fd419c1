#!/bin/bash
# The whole test suite: install, build, run ctest; then the unit, crash,
# direct-mapping and fuzz-label tests again under AddressSanitizer and
# UBSan (the crash suite runs only there: once is enough, and that build
# checks more); then a short libFuzzer run of every fuzz target.
# Extra arguments go to the first ctest, e.g. tests/run.sh -L unit.
# FUZZ_TIME=0 skips the libFuzzer run.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
(cd build && ctest --output-on-failure -j2 -LE crash "$@")

BUILD=build-asan BUILD_TYPE=Debug tools/build.sh -DSHMFS_SANITIZE=address,undefined
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j2 -L 'unit|crash|map|fuzz')

# libFuzzer (clang), time-boxed: FUZZ_TIME seconds per target.
if [ "${FUZZ_TIME:-30}" != 0 ]; then
  CC=clang BUILD=build-fuzz BUILD_TYPE=Debug tools/build.sh -DSHMFS_FUZZ=ON \
    -DSHMFS_SANITIZE=address,undefined
  FUZZ_TIME=${FUZZ_TIME:-30} tests/fuzz/run.sh build-fuzz
fi
