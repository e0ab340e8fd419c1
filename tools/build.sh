#!/bin/bash
# Configure and build into build/ (binaries in build/bin/).  Extra
# arguments go to cmake, e.g. tools/build.sh -DSHMFS_SANITIZE=address,undefined
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
