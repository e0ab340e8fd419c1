#!/bin/bash
# The shmfs demo: install, build, format a region on /dev/shm, mount it
# twice as two "hosts", share a file through it, show it from both.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
tools/build.sh
BIN=$PWD/build/bin
REGION=${REGION:-/dev/shm/shmfs-demo.img}
HOSTA=$(mktemp -d /tmp/shmfs-hostA.XXXXXX)
HOSTB=$(mktemp -d /tmp/shmfs-hostB.XXXXXX)
cleanup() {
	fusermount3 -u -z "$HOSTA" 2>/dev/null || true
	fusermount3 -u -z "$HOSTB" 2>/dev/null || true
	rmdir "$HOSTA" "$HOSTB" 2>/dev/null || true
}
trap cleanup EXIT
step() { echo; echo "== $*"; }

step "mkfs.shmfs --size 1G $REGION"
"$BIN/mkfs.shmfs" -f -L demo --size 1G "$REGION"

step "mount it twice: host A on $HOSTA, host B on $HOSTB"
"$BIN/shmfs" "$REGION" "$HOSTA" -o host=hostA
"$BIN/shmfs" "$REGION" "$HOSTB" -o host=hostB
grep " fuse.shmfs " /proc/mounts

step "host A: copy a 64 MiB file in, make a directory, a symlink"
head -c 64M /dev/urandom > /tmp/shmfs-demo.bin
cp /tmp/shmfs-demo.bin "$HOSTA/payload.bin"
mkdir "$HOSTA/docs" && echo "written on host A" > "$HOSTA/docs/hello.txt"
ln -s docs/hello.txt "$HOSTA/hello"

step "host B: list and checksum (the bytes never left the region)"
ls -l "$HOSTB" "$HOSTB/docs"
sha256sum /tmp/shmfs-demo.bin "$HOSTA/payload.bin" "$HOSTB/payload.bin"
cat "$HOSTB/hello"

step "host B: rename and delete; host A sees it"
mv "$HOSTB/docs/hello.txt" "$HOSTB/docs/renamed.txt"
rm "$HOSTB/hello"
ls -l "$HOSTA" "$HOSTA/docs"
df -h "$HOSTA" "$HOSTB"

step "shmfs-dump --hosts-only $REGION (two hosts mounted)"
"$BIN/shmfs-dump" --hosts-only "$REGION" | tail -4

step "unmount both"
fusermount3 -u "$HOSTA"
fusermount3 -u "$HOSTB"
rm -f /tmp/shmfs-demo.bin
echo
echo "demo done: the region is left at $REGION"
