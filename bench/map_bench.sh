#!/bin/bash
# SPDX-License-Identifier: MIT
#
# Direct-mapping benchmark: a file of a shmfs mount read and written
# through libshmfs's direct mapping, next to a plain mmap of the region file
# at the same offsets (the physical limit), an mmap through the FUSE mount,
# and pread/pwrite through the mount.  See docs/benchmarks.md, "Direct
# mapping".
#
#   bash bench/map_bench.sh [--quick] [--reps N] [--size MIB]
#
#   --quick     a 128 MiB file and 16,384 random operations (smoke run)
#   --reps N    repetitions of every measurement (default 5; median shown)
#   --size MIB  the file (default 512)
#
# Environment: BUILD (build directory, default /tmp/build-map-bench; the
# script (re)builds it), KEEP_LOGS=1 (print the daemon's log at exit).
#
# Needs root (a FUSE mount).  Everything it makes lives in one directory
# under /tmp and one under /dev/shm; both are removed and the mount is
# unmounted on exit -- also on failure or ^C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
REPS=5
SIZE=512
OPS=65536
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) SIZE=128; OPS=16384 ;;
	--reps) REPS=$2; shift ;;
	--size) SIZE=$2; shift ;;
	-h|--help) sed -n '3,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "map_bench: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done
BUILD=${BUILD:-/tmp/build-map-bench}

log() { printf '%s\n' "$*" >&2; }
die() { log "map_bench: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (a FUSE mount)"
[ "$REPS" -ge 1 ] 2>/dev/null || die "--reps wants a positive number"
[ "$SIZE" -ge 8 ] 2>/dev/null || die "--size wants at least 8 (MiB)"
for c in gcc cmake pkg-config fusermount3 mountpoint; do
	command -v "$c" >/dev/null 2>&1 || { log "map_bench: installing dependencies"; bash "$ROOT/tools/install-deps.sh"; break; }
done
[ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229

W=$(mktemp -d /tmp/map-bench.XXXXXX)      # mount point, log
S=$(mktemp -d /dev/shm/map-bench.XXXXXX)  # the region
MNT=$W/mnt
mkdir -p "$MNT"
PID=

cleanup() {
	local rc=$? _
	set +e
	trap - EXIT INT TERM
	if mountpoint -q "$MNT" 2>/dev/null; then
		fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT" 2>/dev/null
	fi
	if [ -n "$PID" ]; then
		for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	grep -q " $MNT " /proc/mounts && umount -l "$MNT"
	if [ "$rc" != 0 ] || [ "${KEEP_LOGS:-0}" = 1 ]; then
		[ -s "$W/shmfs.log" ] && { log "---- daemon log (last lines)"; tail -n 20 "$W/shmfs.log" >&2; }
	fi
	grep -q "$W" /proc/mounts || rm -rf "$W"
	rm -rf "$S"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "map_bench: building into $BUILD"
BUILD=$BUILD "$ROOT/tools/build.sh" >/dev/null

# A fresh region twice the file (the log takes 1/16): the file gets one extent.
REGION=$S/region.img
"$BUILD/bin/mkfs.shmfs" -q -f --size "$((SIZE * 2 + 64))M" "$REGION"
"$BUILD/bin/shmfs" "$REGION" "$MNT" -f -o host=bench >"$W/shmfs.log" 2>&1 &
PID=$!
for _ in $(seq 100); do mountpoint -q "$MNT" && stat "$MNT" >/dev/null 2>&1 && break; sleep 0.05; done
mountpoint -q "$MNT" || die "the mount did not come up"

log "map_bench: kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg)"
"$BUILD/bin/bench-map" --size "$SIZE" --ops "$OPS" --reps "$REPS" "$MNT"
log "map_bench: load afterwards $(cut -d' ' -f1-3 /proc/loadavg)"
