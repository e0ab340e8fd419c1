#!/bin/bash
# Install the Debian 12 packages shmfs needs to build, test and run
# (clang only for the libFuzzer targets in tests/fuzz).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Wait for the dpkg lock rather than fail: another installer (unattended-upgrades, a second
# checkout's setup) may hold it for a while.
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
  build-essential cmake pkg-config \
  libfuse3-dev fuse3 liburcu-dev libxxhash-dev libdaxctl-dev libndctl-dev \
  python3 python3-pytest util-linux \
  clang libclang-rt-14-dev >/dev/null
# FUSE needs the device node (present on a normal machine; containers may lack it)
[ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229
