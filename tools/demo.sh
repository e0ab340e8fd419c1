#!/bin/bash
# The shmfs demo: install, build, format a region on /dev/shm, show it.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
REGION=${REGION:-/dev/shm/shmfs-demo.img}
echo
echo "== mkfs.shmfs --size 256M $REGION"
build/bin/mkfs.shmfs -f -L demo --size 256M "$REGION"
echo
echo "== shmfs-dump $REGION"
build/bin/shmfs-dump "$REGION"
echo
echo "== the same filesystem seen 2 MiB into a larger file (region offset syntax)"
truncate -s 0 /dev/shm/shmfs-demo-off.img
build/bin/mkfs.shmfs -q -f -L offset --size 130M "/dev/shm/shmfs-demo-off.img,offset=2M"
build/bin/shmfs-dump --super-only "/dev/shm/shmfs-demo-off.img,offset=2M" | head -8
rm -f /dev/shm/shmfs-demo-off.img
echo
echo "demo done: region left at $REGION"
