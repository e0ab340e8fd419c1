#!/bin/bash
# SPDX-License-Identifier: MIT
#
# FUSE benchmark: shmfs side by side with tmpfs and libfuse's passthrough_ll
# (over tmpfs), in the same run.  See docs/benchmarks.md, "FUSE benchmark".
#
#   bash bench/fuse_bench.sh [--quick] [--reps N] [--results FILE]
#
#   --quick         small sizes, a smoke run of about a minute
#   --reps N        repetitions of every measurement (default 3; median reported)
#   --results FILE  also keep the raw measurements (TSV: metric fs rep value)
#
# Environment: BUILD (shmfs build dir, default /tmp/build-bench; the script
# (re)builds it), KEEP_LOGS=1 (print the daemons' logs at exit),
# COLD_REGION=1 (skip the untimed fill of the shmfs region, see below).
#
# Needs root (FUSE mounts, /proc/sys/vm/drop_caches).  Installs fio and the
# build dependencies with apt-get if they are missing.  Everything it makes
# lives in one directory under /tmp and one under /dev/shm; both are removed,
# and every mount it made is unmounted, on exit -- also on failure or ^C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
QUICK=0
REPS=3
RESULTS_OUT=
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--reps) REPS=$2; shift ;;
	--results) RESULTS_OUT=$2; shift ;;
	-h|--help) sed -n '3,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "fuse_bench: unknown argument $1 (try --help)" >&2; exit 2 ;;
	esac
	shift
done

if [ "$QUICK" = 1 ]; then
	SEQ_MB=128        # sequential file
	RAND_FILE_MB=64   # random I/O file
	RAND_IO_MB=8      # random I/O per run (2,048 x 4 KiB)
	NFILES=1000       # metadata
	VIS_TRIALS=30
	IMG_SIZE=1G
else
	SEQ_MB=1024
	RAND_FILE_MB=256
	RAND_IO_MB=128    # 32,768 x 4 KiB: half the file, every block at most once
	NFILES=10000
	VIS_TRIALS=200
	IMG_SIZE=2G       # 1 GiB file + room reserved ahead + 256 MiB file, never at once
fi
BUILD=${BUILD:-/tmp/build-bench}
FSLIST=(tmpfs passthrough_ll shmfs)

log() { printf '%s\n' "$*" >&2; }
die() { log "fuse_bench: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (FUSE mounts, drop_caches)"
[ "$REPS" -ge 1 ] 2>/dev/null || die "--reps wants a positive number"

# ---- dependencies ------------------------------------------------------------
EXAMPLES=/usr/share/doc/libfuse3-dev/examples
need_install=0
for c in fio gcc cmake pkg-config fusermount3 mountpoint /usr/bin/python3; do
	command -v "$c" >/dev/null 2>&1 || need_install=1
done
[ -f "$EXAMPLES/passthrough_ll.c" ] || need_install=1
if [ "$need_install" = 1 ]; then
	log "fuse_bench: installing dependencies (apt-get)"
	bash "$ROOT/tools/install-deps.sh"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
fi
[ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229

# ---- work area and cleanup -----------------------------------------------------
W=$(mktemp -d /tmp/fuse-bench.XXXXXX)      # binaries, mount points, logs
S=$(mktemp -d /dev/shm/fuse-bench.XXXXXX)  # tmpfs: the tmpfs subject, passthrough source, region
mkdir -p "$W/bin" "$W/mnt/pt" "$W/mnt/a" "$W/mnt/b" "$W/logs" "$S/tmpfs" "$S/ptsrc"
RESULTS=$W/results.tsv
: >"$RESULTS"
declare -A PID=()   # mount name -> daemon pid
declare -A MNT=([pt]=$W/mnt/pt [a]=$W/mnt/a [b]=$W/mnt/b)
declare -A CONN=()  # mount name -> FUSE connection number (the mount's minor device)

# A daemon that died while a request to its own mount was in flight can
# hang in D state with the mount stuck: abort the connection (fusectl).
abort_conn() {
	local c=$1 ours=0
	[ -n "$c" ] || return 0
	if [ ! -e /sys/fs/fuse/connections/"$c" ]; then
		mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null && ours=1
	fi
	[ -e /sys/fs/fuse/connections/"$c"/abort ] &&
		echo 1 >/sys/fs/fuse/connections/"$c"/abort 2>/dev/null
	[ "$ours" = 1 ] && umount /sys/fs/fuse/connections
	return 0
}

cleanup() {
	local rc=$? k pid _
	set +e
	trap - EXIT INT TERM
	for k in b a pt; do
		if mountpoint -q "${MNT[$k]}" 2>/dev/null; then
			fusermount3 -u "${MNT[$k]}" 2>/dev/null || fusermount3 -uz "${MNT[$k]}" 2>/dev/null
		fi
	done
	for k in "${!PID[@]}"; do
		pid=${PID[$k]}
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			kill "$pid" 2>/dev/null; sleep 0.5
			kill -9 "$pid" 2>/dev/null; sleep 1
		fi
		if kill -0 "$pid" 2>/dev/null; then
			log "fuse_bench: daemon $pid for ${MNT[$k]} hangs; aborting its FUSE connection"
			abort_conn "${CONN[$k]:-}"
			sleep 1
		fi
		wait "$pid" 2>/dev/null
	done
	for k in b a pt; do # whatever is still there, detach it
		grep -q " ${MNT[$k]} " /proc/mounts && { fusermount3 -uz "${MNT[$k]}" 2>/dev/null || umount -l "${MNT[$k]}"; }
	done
	if [ "$rc" != 0 ] || [ "${KEEP_LOGS:-0}" = 1 ]; then
		for f in "$W"/logs/*; do
			[ -s "$f" ] || continue
			log "---- $(basename "$f") (last lines)"
			tail -n 20 "$f" >&2
		done
	fi
	if grep -q "$W/mnt" /proc/mounts; then
		log "fuse_bench: WARNING: still mounted:"; grep "$W/mnt" /proc/mounts >&2
	else
		rm -rf "$W"
	fi
	rm -rf "$S"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build -----------------------------------------------------------------------
log "fuse_bench: building shmfs into $BUILD"
BUILD=$BUILD bash "$ROOT/tools/build.sh" >"$W/logs/build.log" 2>&1 ||
	{ tail -n 30 "$W/logs/build.log" >&2; die "shmfs build failed"; }
SHMFS=$BUILD/bin/shmfs
MKFS=$BUILD/bin/mkfs.shmfs
cp "$EXAMPLES/passthrough_ll.c" "$EXAMPLES/passthrough_helpers.h" "$W/bin/"
# shellcheck disable=SC2046
gcc -O2 -o "$W/bin/passthrough_ll" "$W/bin/passthrough_ll.c" $(pkg-config --cflags --libs fuse3)
gcc -O2 -Wall -o "$W/bin/metabench" "$ROOT/bench/metabench.c"
gcc -O2 -Wall -o "$W/bin/visibility" "$ROOT/bench/visibility.c"

# ---- mounts ----------------------------------------------------------------------
wait_mounted() { # name
	local _
	for _ in $(seq 100); do
		if mountpoint -q "${MNT[$1]}"; then
			CONN[$1]=$(awk -v m="${MNT[$1]}" '$5 == m { split($3, d, ":"); print d[2] }' \
				/proc/self/mountinfo)
			return 0
		fi
		kill -0 "${PID[$1]}" 2>/dev/null || die "daemon for ${MNT[$1]} exited (see log above)"
		sleep 0.1
	done
	die "${MNT[$1]} not mounted after 10 s"
}

mount_one() { # pt | a | b
	case "$1" in
	pt) "$W/bin/passthrough_ll" -f -o source="$S/ptsrc" "${MNT[pt]}" \
		>>"$W/logs/passthrough_ll.log" 2>&1 &
	    ;;
	a|b) "$SHMFS" -f "$S/shmfs.img" "${MNT[$1]}" -o host="bench-$1" \
		>>"$W/logs/shmfs-$1.log" 2>&1 &
	    ;;
	esac
	PID[$1]=$!
	wait_mounted "$1"
}

umount_one() {
	local tries=100 pid=${PID[$1]:-}
	[ -n "$pid" ] || return 0
	fusermount3 -u "${MNT[$1]}"
	while [ $tries -gt 0 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.1; tries=$((tries - 1)); done
	kill -0 "$pid" 2>/dev/null && die "daemon for ${MNT[$1]} did not exit after unmount"
	wait "$pid" || true
	unset "PID[$1]"
}

# Bytes a FUSE daemon has written (its replies to /dev/fuse): tells whether
# reads really reached the daemon or were served from the page cache.
daemon_wchar() { # fs
	local k
	case "$1" in passthrough_ll) k=pt ;; shmfs) k=a ;; *) echo 0; return ;; esac
	awk '/^wchar:/ { print $2 }' /proc/"${PID[$k]}"/io
}
check_served() { # fs before_wchar bytes
	[ "$1" = tmpfs ] && return 0
	local got=$(( $(daemon_wchar "$1") - $2 ))
	if [ "$got" -lt $(( $3 * 9 / 10 )) ]; then
		log "fuse_bench: WARNING: $1 daemon replied only $got bytes for a $3-byte read:" \
			"the page cache served the rest"
		CACHE_WARN=1
	fi
}
CACHE_WARN=0

DROP_WARNED=0
drop_caches() {
	sync
	if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null && [ "$DROP_WARNED" = 0 ]; then
		log "fuse_bench: WARNING: cannot write /proc/sys/vm/drop_caches"
		DROP_WARNED=1
	fi
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
"$MKFS" -q -f --size "$IMG_SIZE" "$S/shmfs.img"
mount_one pt
mount_one a
mkdir "${MNT[a]}/bench"

# Fill the region's data area once (untimed), as a mount in use for a while
# would have: the first touch of each page of the daemon's mapping of the
# region is a page fault (~15 us on these VMs for memory the host has taken
# back), which tmpfs and passthrough_ll never pay in user space -- the kernel
# writes their pages through its own mapping.
REGION_STATE=filled
if [ "${COLD_REGION:-0}" = 1 ]; then
	REGION_STATE=cold
else
	avail_mb=$(( $(stat -f -c '%a * %S' "${MNT[a]}") / 1048576 - 64 ))
	if [ "$avail_mb" -gt 0 ]; then
		log "fuse_bench: filling the shmfs region once ($avail_mb MiB, untimed)"
		dd if=/dev/zero of="${MNT[a]}/bench/fill" bs=1M count="$avail_mb" conv=fsync status=none
		rm -f "${MNT[a]}/bench/fill"
	fi
fi

dir_of() { # fs -> the directory the benchmark works in
	case "$1" in
	tmpfs) echo "$S/tmpfs" ;;
	passthrough_ll) echo "${MNT[pt]}" ;;
	shmfs) echo "${MNT[a]}/bench" ;;
	esac
}

# Filesystem order for repetition $1 (rotated so none always goes first).
order() {
	local r=$(( ($1 - 1) % 3 ))
	echo "${FSLIST[@]:$r}" "${FSLIST[@]:0:$r}"
}

record() { # metric fs rep value unit
	printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
	printf '  %-10s rep %s  %-15s %12.1f %s\n' "$1" "$3" "$2" "$4" "$5" >&2
}

# fio, one job; prints MiB/s (bw) or IOPS (iops) of the read or write side.
FIO_COMMON=(--ioengine=psync --direct=0 --numjobs=1 --thread=0 --randrepeat=1
	    --fallocate=none --output-format=json)
fio_job() { # what(bw|iops) side(read|write) file args...
	local what=$1 side=$2 file=$3
	shift 3
	fio --name=job --filename="$file" "${FIO_COMMON[@]}" "$@" >"$W/fio.json" 2>"$W/fio.err" ||
		{ cat "$W/fio.err" >&2; die "fio failed on $file"; }
	/usr/bin/python3 - "$W/fio.json" "$what" "$side" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0][sys.argv[3]]
print(j["bw_bytes"] / 2**20 if sys.argv[2] == "bw" else j["iops"])
EOF
}

# ---- cross-mount visibility (shmfs) ----------------------------------------------------
# First, while the log is short: mount B joins by replaying the whole log, and
# B must not be mounted during the other measurements (its follower would
# take CPU from A on this 2-core machine).
log "fuse_bench: cross-mount visibility, $VIS_TRIALS trials, mounts A and B of one region"
mount_one b
for rep in $(seq "$REPS"); do
	mkdir "${MNT[a]}/vis.$rep"
	out=$("$W/bin/visibility" "${MNT[a]}/vis.$rep" "${MNT[b]}/vis.$rep" "$VIS_TRIALS") ||
		die "visibility test failed"
	read -r _ nsp50 nsp99 nsmax _ <<<"$(sed -n 1p <<<"$out")"
	read -r _ dp50 dp99 dmax _ dfirst <<<"$(sed -n 2p <<<"$out")"
	record vis_ns_p50 shmfs "$rep" "$nsp50" us
	record vis_ns_p99 shmfs "$rep" "$nsp99" us
	record vis_ns_max shmfs "$rep" "$nsmax" us
	record vis_data_p50 shmfs "$rep" "$dp50" us
	record vis_data_p99 shmfs "$rep" "$dp99" us
	record vis_data_max shmfs "$rep" "$dmax" us
	record vis_data_firstopen shmfs "$rep" "$dfirst" "of $VIS_TRIALS"
	rm -rf "${MNT[a]}/vis.$rep"
done
umount_one b

# ---- sequential write and read ---------------------------------------------------
log "fuse_bench: sequential write/read of ${SEQ_MB} MiB in 1 MiB requests"
# One untimed round first: on these VMs the first touch of memory the guest
# has handed back to the host costs ~15 us a page, which would otherwise
# land on whichever filesystem happens to go first.
for fs in "${FSLIST[@]}"; do
	f=$(dir_of "$fs")/seq.dat
	fio_job bw write "$f" --rw=write --bs=1M --size="${SEQ_MB}M" --end_fsync=1 >/dev/null
	rm -f "$f"
done
for rep in $(seq "$REPS"); do
	for fs in $(order "$rep"); do
		f=$(dir_of "$fs")/seq.dat
		rm -f "$f"
		v=$(fio_job bw write "$f" --rw=write --bs=1M --size="${SEQ_MB}M" --end_fsync=1)
		record seqwrite "$fs" "$rep" "$v" MiB/s
	done
	for fs in $(order "$rep"); do
		drop_caches
		w0=$(daemon_wchar "$fs")
		v=$(fio_job bw read "$(dir_of "$fs")/seq.dat" --rw=read --bs=1M --size="${SEQ_MB}M" \
			--invalidate=1)
		check_served "$fs" "$w0" $((SEQ_MB << 20))
		record seqread "$fs" "$rep" "$v" MiB/s
	done
	for fs in "${FSLIST[@]}"; do rm -f "$(dir_of "$fs")/seq.dat"; done
done

# ---- 4 KiB random read and write ---------------------------------------------------
log "fuse_bench: 4 KiB random read/write, ${RAND_IO_MB} MiB of I/O over a ${RAND_FILE_MB} MiB file"
for fs in "${FSLIST[@]}"; do
	fio_job bw write "$(dir_of "$fs")/rand.dat" --rw=write --bs=1M --size="${RAND_FILE_MB}M" \
		--end_fsync=1 >/dev/null
done
for rep in $(seq "$REPS"); do
	for fs in $(order "$rep"); do
		drop_caches
		w0=$(daemon_wchar "$fs")
		v=$(fio_job iops read "$(dir_of "$fs")/rand.dat" --rw=randread --bs=4k \
			--size="${RAND_FILE_MB}M" --io_size="${RAND_IO_MB}M" --invalidate=1)
		check_served "$fs" "$w0" $((RAND_IO_MB << 20))
		record randread "$fs" "$rep" "$v" IOPS
	done
done
for rep in $(seq "$REPS"); do
	for fs in $(order "$rep"); do
		v=$(fio_job iops write "$(dir_of "$fs")/rand.dat" --rw=randwrite --bs=4k \
			--size="${RAND_FILE_MB}M" --io_size="${RAND_IO_MB}M" --end_fsync=1)
		record randwrite "$fs" "$rep" "$v" IOPS
	done
done
for fs in "${FSLIST[@]}"; do rm -f "$(dir_of "$fs")/rand.dat"; done

# ---- create / stat / unlink ---------------------------------------------------------
log "fuse_bench: create/stat/unlink of $NFILES files in one directory"
meta() { # dir mode -> ops/s
	local out
	out=$("$W/bin/metabench" "$1" "$NFILES" "$2") || die "metabench $2 failed in $1"
	echo "${out%% *}"
}
for rep in $(seq "$REPS"); do
	for fs in $(order "$rep"); do
		d=$(dir_of "$fs")/meta.$rep
		mkdir "$d"
		record create "$fs" "$rep" "$(meta "$d" create)" files/s
		sleep 2 # past passthrough_ll's default 1 s timeouts: each fs with the caching it ships
		record stat "$fs" "$rep" "$(meta "$d" stat)" files/s
		drop_caches
		record statcold "$fs" "$rep" "$(meta "$d" stat)" files/s
		record unlink "$fs" "$rep" "$(meta "$d" unlink)" files/s
		rmdir "$d"
	done
done

# ---- report ---------------------------------------------------------------------------
[ -n "$RESULTS_OUT" ] && cp "$RESULTS" "$RESULTS_OUT"
echo
echo "FUSE benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) CPUs," \
	"libfuse $(pkg-config --modversion fuse3), shmfs $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" \
	"$( [ -n "$(git -C "$ROOT" status --porcelain -- fs include 2>/dev/null)" ] && echo '(fs/ or include/ modified)')"
echo "load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews figures)"
echo "sizes: seq ${SEQ_MB} MiB; random ${RAND_IO_MB} MiB of 4 KiB I/O over ${RAND_FILE_MB} MiB;" \
	"${NFILES} files; ${VIS_TRIALS} visibility trials; median of ${REPS} runs;" \
	"shmfs region of $IMG_SIZE, $REGION_STATE before the measurements"
echo
/usr/bin/python3 "$ROOT/bench/fuse_bench_report.py" "$RESULTS" "$VIS_TRIALS"
[ "$CACHE_WARN" = 0 ] || echo "WARNING: some FUSE reads were served from the page cache (see the log)"
