#!/bin/bash
# The whole test suite: install, build (plain and with ASan/UBSan), run ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
(cd build && ctest --output-on-failure -j2 "$@")
# The core library's unit tests again under AddressSanitizer and UBSan.
BUILD=build-asan BUILD_TYPE=Debug tools/build.sh -DSHMFS_SANITIZE=address,undefined
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j2 -L unit)
