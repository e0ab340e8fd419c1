#!/bin/bash
# tests/vm/run.sh [-b BIN_DIR] [-k] [SCENARIO...]
#
# Two-VM tests of shmfs on memory that really is shared between machines:
# each QEMU guest (TCG) gets an emulated NVDIMM, formatted once as devdax so
# that it appears as /dev/dax0.0, and an ivshmem-plain device, both backed
# by the same files in /dev/shm (share=on).  See docs/vm-tests.md and
# /work/shared/design/vm-testing.md for why every QEMU flag is what it is.
#
# For each scenario (tests/vm/scenarios/NAME.sh; all of them by default) it
# makes fresh backing files, boots the scenario's guests concurrently, runs
# the scenario's host_during beside them (it may mount the backing files on
# the host, or kill a guest) and its host_check on the backing files once
# they have exited, and checks that every expected RESULT line came out and
# said PASS.  A scenario with PHASES=2 then boots its guests once more on the
# same backing files (guest_<role>_phase2, host_during_phase2,
# host_check_phase2).
#
#   -b DIR, SHMFS_VM_BIN   the project's binaries (default <repo>/build/bin)
#   -k, SHMFS_VM_KEEP=1    keep the work directory (logs) even on success
#   SHMFS_VM_CACHE         kernel and devdax-header cache (/var/tmp/shmfs-vm)
#   SHMFS_VM_REFORMAT=1    do the devdax format boot even if a header is cached
#   SHMFS_VM_TIMEOUT       seconds before QEMU is killed, per boot (120)
#   SHMFS_VM_WAIT          seconds before a guest's watchdog gives up (90)
#   SHMFS_VM_NO_SETUP=1    do not run setup.sh (packages and kernel are there)
#   SHMFS_VM_KERNEL_DIR    an unpacked kernel package to use (implies NO_SETUP)
#
# Exit status: 0 all passed; 1 a FAIL, a missing RESULT, or a QEMU failure;
# 2 usage; 77 cannot run here (not root and setup.sh could not install).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${SHMFS_VM_BIN:-$REPO/build/bin}
KEEP=${SHMFS_VM_KEEP:-0}
CACHE=${SHMFS_VM_CACHE:-/var/tmp/shmfs-vm}
BOOT_TIMEOUT=${SHMFS_VM_TIMEOUT:-120}
GUEST_WAIT=${SHMFS_VM_WAIT:-90}
NVSIZE=256M # the NVDIMM; /dev/dax0.0 is this less the 2 MiB devdax header
IVSIZE=16M  # the ivshmem BAR (QEMU wants a power of two)

usage() { sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
while getopts "b:kh" o; do
	case $o in
	b) BIN=$OPTARG ;;
	k) KEEP=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
if [ $# -gt 0 ]; then
	SCENARIOS=("$@")
else
	SCENARIOS=()
	for f in "$HERE"/scenarios/*.sh; do SCENARIOS+=("$(basename "$f" .sh)"); done
fi
for s in "${SCENARIOS[@]}"; do
	[ -f "$HERE/scenarios/$s.sh" ] || { echo "run.sh: no scenario $HERE/scenarios/$s.sh" >&2; exit 2; }
done
[ "$BOOT_TIMEOUT" -gt "$GUEST_WAIT" ] || { echo "run.sh: SHMFS_VM_TIMEOUT must exceed SHMFS_VM_WAIT" >&2; exit 2; }

T0=$EPOCHREALTIME
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
say() { echo "$*"; }

# ---- setup: packages, kernel, binaries ---------------------------------
T=$EPOCHREALTIME
SETUP_HOW="SHMFS_VM_KERNEL_DIR"
if [ -n "${SHMFS_VM_KERNEL_DIR:-}" ]; then
	KDIR=$SHMFS_VM_KERNEL_DIR
elif [ "${SHMFS_VM_NO_SETUP:-0}" = 1 ]; then
	SETUP_HOW="no setup (SHMFS_VM_NO_SETUP=1)"
	KDIR=""
	for k in "$CACHE"/linux-image-*; do [ -d "$k" ] && KDIR=$k; done
	[ -n "$KDIR" ] || { echo "run.sh: no kernel in $CACHE; run tests/vm/setup.sh" >&2; exit 1; }
else
	setup_out=$(SHMFS_VM_CACHE=$CACHE bash "$HERE/setup.sh" 2>&1)
	rc=$?
	SETUP_HOW="tests/vm/setup.sh"
	KDIR=$(sed -n 's/^KERNEL_DIR=//p' <<<"$setup_out")
	if [ $rc != 0 ] || [ -z "$KDIR" ]; then
		sed 's/^/  | /' <<<"$setup_out" >&2
		if [ "$(id -u)" != 0 ]; then
			echo "run.sh: SKIP: tests/vm/setup.sh failed and this is not root" >&2
			exit 77
		fi
		echo "run.sh: tests/vm/setup.sh failed" >&2
		exit 1
	fi
fi
VMLINUZ="" KVER=""
for f in "$KDIR"/boot/vmlinuz-*; do [ -f "$f" ] && VMLINUZ=$f; done
for f in "$KDIR"/lib/modules/*; do [ -d "$f" ] && KVER=${f##*/}; done
if [ ! -f "$VMLINUZ" ] || [ -z "$KVER" ]; then echo "run.sh: no kernel in $KDIR" >&2; exit 1; fi
BIN=$(cd "$BIN" 2>/dev/null && pwd) || { echo "run.sh: no bin directory ${BIN}" >&2; exit 1; }
for b in mkfs.shmfs shmfs-dump; do
	[ -x "$BIN/$b" ] || { echo "run.sh: $BIN/$b missing; build first (tools/build.sh)" >&2; exit 1; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "run.sh: qemu-system-x86_64 missing (tests/vm/setup.sh)" >&2; exit 1; }

# ---- work directory, and cleanup whatever happens ------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/shmfs-vm-run.XXXXXX")
SHM_FILES=()
BOOT_PIDS=()
FAILED=0
cleanup() {
	local p q
	trap - EXIT INT TERM
	for p in "${BOOT_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	# timeout passes the TERM on to QEMU; make sure, by QEMU's own pid
	# file, and only if that pid is still one of our QEMUs.
	for q in "$WORK"/*/*.pid; do
		[ -f "$q" ] || continue
		p=$(cat "$q" 2>/dev/null)
		[ -n "$p" ] && tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF -- "-pidfile $q" &&
			kill -9 "$p" 2>/dev/null
	done
	for p in "${BOOT_PIDS[@]}"; do wait "$p" 2>/dev/null; done
	# Host mounts a scenario left behind (its shmfs daemons exit with them).
	awk -v w="$WORK/" 'index($2, w) == 1 { print $2 }' /proc/mounts 2>/dev/null |
		while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
	rm -f "${SHM_FILES[@]}"
	if [ "$KEEP" = 1 ] || [ "$FAILED" != 0 ]; then
		echo "logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; FAILED=1; exit 130' INT
trap 'echo "run.sh: terminated" >&2; FAILED=1; exit 143' TERM

new_shm() { # VAR KIND SIZE: VAR=a fresh sparse file of SIZE in /dev/shm
	local f
	f=$(mktemp "/dev/shm/shmfs-vm-$2.XXXXXXXX") || return 1
	SHM_FILES+=("$f") # not in $(...): the cleanup must see it
	printf -v "$1" '%s' "$f"
	truncate -s "$3" "$f"
}

# boot DIR NAME NVIMG IVIMG KERNEL_ARGS: one guest, in the foreground.
# Serial console to DIR/NAME.log, QEMU's own output to DIR/NAME.qemu,
# exit status to DIR/NAME.rc.  -smp 1,maxcpus=2: TCG then emulates locked
# instructions atomically against the other QEMU process (with plain
# -smp 1 it does not).  share=on: both guests see one memory.
boot() {
	local d=$1 n=$2 nv=$3 iv=$4 args=$5 rc
	# (braces: bash's "Killed" notice, when a scenario kills this QEMU,
	# goes to the log too)
	{ timeout -k 5 "$BOOT_TIMEOUT" qemu-system-x86_64 -accel tcg -machine pc,nvdimm=on \
		-smp 1,maxcpus=2 -m 512M,slots=2,maxmem=4G \
		-display none -vga none -net none -monitor none -no-reboot \
		-serial "file:$d/$n.log" -pidfile "$d/$n.pid" \
		-kernel "$VMLINUZ" -initrd "$WORK/initramfs.cpio.gz" \
		-append "console=ttyS0 quiet panic=-1 $args" \
		-object "memory-backend-file,id=nv0,share=on,mem-path=$nv,size=$NVSIZE" \
		-device nvdimm,id=nvdimm0,memdev=nv0 \
		-object "memory-backend-file,id=ivs,share=on,mem-path=$iv,size=$IVSIZE" \
		-device ivshmem-plain,memdev=ivs \
		</dev/null >"$d/$n.qemu" 2>&1; } 2>>"$d/$n.qemu"
	rc=$?
	echo $rc >"$d/$n.rc"
	return $rc
}

qemu_status() { # DIR NAME -> "" when fine, else why not
	local rc
	rc=$(cat "$1/$2.rc" 2>/dev/null || echo none)
	case $rc in
	0) ;;
	124 | 137) echo "QEMU killed after ${BOOT_TIMEOUT}s (timeout)" ;;
	*) echo "QEMU exited with $rc: $(tail -n 1 "$1/$2.qemu" 2>/dev/null)" ;;
	esac
}

show_tail() { # FILE TITLE
	[ -s "$1" ] || return 0
	echo "   --- $2 (last 40 lines of $1) ---"
	tail -n 40 "$1" | tr -d '\r' | sed 's/^/   | /'
}

say "== shmfs VM tests: kernel $KVER, binaries $BIN, TCG, work dir $WORK"
say "-- setup: $SETUP_HOW, kernel in $KDIR ($(elapsed "$T") s)"
# Backing files of runs that were killed outright (SIGKILL skips the trap).
# No run lives longer than a few boot timeouts, so two hours is stale.
find /dev/shm -maxdepth 1 -name 'shmfs-vm-*' -mmin +120 -delete 2>/dev/null

# ---- the guests' initramfs -------------------------------------------------
T=$EPOCHREALTIME
if ! bash "$HERE/build-initramfs.sh" "$KDIR" "$BIN" "$WORK/initramfs.cpio.gz" 2>"$WORK/initramfs.log"; then
	FAILED=1
	echo "FAIL: building the initramfs"
	sed 's/^/   | /' "$WORK/initramfs.log"
	exit 1
fi
say "-- initramfs built ($(du -h "$WORK/initramfs.cpio.gz" | cut -f1), $(elapsed "$T") s)"

# ---- the devdax header -------------------------------------------------
# A labelless NVDIMM comes up as a raw namespace; one boot runs ndctl
# create-namespace --mode=devdax --map=mem on it.  The result is an info
# block at 4 KiB in the backing file and nothing else, so its first 8 KiB
# are saved and stamped into every fresh backing file: each guest then finds
# /dev/dax0.0 at boot.  (Never let two guests format at once.)
info_block_ok() { [ "$(dd if="$1" bs=1 skip=4096 count=15 status=none)" = NVDIMM_DAX_INFO ]; }
le() { # FILE OFFSET BYTES: a little-endian unsigned number
	od -An -t u"$3" -j "$2" -N "$3" --endian=little "$1" | tr -d ' '
}
HDR=$CACHE/devdax-hdr-$NVSIZE-$KVER-ndctl$(ndctl --version 2>/dev/null || echo x).bin
T=$EPOCHREALTIME
if [ "${SHMFS_VM_REFORMAT:-0}" != 1 ] && [ -s "$HDR" ] && info_block_ok "$HDR"; then
	say "-- devdax header: cached $HDR"
else
	mkdir -p "$WORK/format"
	if ! new_shm nv nvdimm $NVSIZE || ! new_shm iv ivshmem $IVSIZE; then FAILED=1; exit 1; fi
	boot "$WORK/format" g1 "$nv" "$iv" "shmfs.fmt=1 shmfs.wait=$GUEST_WAIT" &
	BOOT_PIDS+=($!)
	wait $!
	BOOT_PIDS=()
	why=$(qemu_status "$WORK/format" g1)
	if [ -n "$why" ] || ! tr -d '\r' <"$WORK/format/g1.log" | grep -q '^RESULT format PASS' || ! info_block_ok "$nv"; then
		FAILED=1
		echo "FAIL: devdax format boot: ${why:-no RESULT format PASS or no NVDIMM_DAX_INFO at 4 KiB}"
		show_tail "$WORK/format/g1.log" "format guest"
		show_tail "$WORK/format/g1.qemu" "QEMU"
		exit 1
	fi
	mkdir -p "$CACHE"
	dd if="$nv" of="$HDR.$$" bs=4096 count=2 status=none && mv "$HDR.$$" "$HDR"
	rm -f "$nv" "$iv"
	say "-- devdax header: format boot ($(elapsed "$T") s), saved as $HDR"
fi
# Where /dev/dax0.0 starts in the backing file, from the info block
# (struct nd_pfn_sb: dataoff at 56, start_pad at 76): data begins at
# namespace start + start_pad + dataoff.  Scenarios compare it with what
# the guest's sysfs says.
HDR_DATAOFF=$(le "$HDR" $((4096 + 56)) 8)
HDR_START_PAD=$(le "$HDR" $((4096 + 76)) 4)
DAX_FILE_OFFSET=$((HDR_DATAOFF + HDR_START_PAD))
if [ "$DAX_FILE_OFFSET" -le 0 ] || [ $((DAX_FILE_OFFSET % 4096)) != 0 ] || [ "$DAX_FILE_OFFSET" -ge $((256 << 20)) ]; then
	FAILED=1
	echo "FAIL: devdax info block in $HDR gives data offset $DAX_FILE_OFFSET; rerun with SHMFS_VM_REFORMAT=1"
	exit 1
fi
say "-- devdax info block: dataoff=$HDR_DATAOFF start_pad=$HDR_START_PAD -> /dev/dax0.0 at backing-file offset $DAX_FILE_OFFSET"

# ---- scenarios -------------------------------------------------------------
NPASS=0 NFAIL=0 NSKIP=0
declare -a SUMMARY=()

# Scenario metadata, read in a subshell so scenarios cannot disturb us.
# HOST_FUNCS: the host_* functions it defines.  Then one line "P:R:NAME ..."
# per source of RESULT lines, in the order they are reported: for each phase
# P, each guest R's boot and the host (R=host), with the RESULT names it
# must print (EXPECT_R; EXPECT_R_PHASEP from phase 2 on).  The host is a
# source in a phase when the scenario expects RESULTs from it there or has
# a host function for that phase.
scenario_meta() { # NAME -> HOST_FUNCS|GUESTS|PHASES, then the sources
	(
		# shellcheck disable=SC2030 # this subshell's own
		GUESTS=2 PHASES=1
		# shellcheck disable=SC1090
		. "$HERE/scenarios/$1.sh" >/dev/null 2>&1
		funcs=""
		for f in $(declare -F | awk '$3 ~ /^host_(prepare|during|check)(_phase[0-9]+)?$/ { print $3 }'); do funcs+="$f "; done
		echo "$funcs|$GUESTS|$PHASES"
		for ((p = 1; p <= PHASES; p++)); do
			sfx=""
			[ $p = 1 ] || sfx=_PHASE$p
			for r in $(seq 1 "$GUESTS") host; do
				v=EXPECT_${r^^}$sfx
				v=${!v:-}
				if [ "$r" = host ] && [ -z "${v// /}" ]; then
					hf=0
					for f in $funcs; do
						case $f in
						host_*_phase$p) hf=1 ;;
						host_*_phase*) ;;
						*) [ $p = 1 ] && hf=1 ;;
						esac
					done
					[ $hf = 1 ] || continue
				fi
				echo "$p:$r:$v" | tr '\n\t' '  '
				echo
			done
		done
	)
}

# gname ROLE PHASE: the name of a boot's files (DIR/NAME.log, .pid, .rc,
# .qemu, .killed): g1, g2 in phase 1; g1.p2, g2.p2 in phase 2.  For ROLE
# "host", the host side's log (host.log, host.p2.log).
gname() {
	local n=$1
	[ "$1" = host ] || n=g$1
	if [ "$2" = 1 ]; then echo "$n"; else echo "$n.p$2"; fi
}

# host_side NAME DIR NVIMG IVIMG FUNCTION PHASE: run the scenario's
# host_prepare (before the guests boot), host_during (beside them) or
# host_check (after they are gone), or in phase 2 host_during_phase2 or
# host_check_phase2, if it has one, in a subshell, with the scenario's
# values and the host's binaries.
host_side() {
	local name=$1 d=$2
	(
		export NVIMG=$3 IVIMG=$4 BIN DAX_FILE_OFFSET NONCE UUID_A UUID_B UUID_C UUID_D LABEL
		export PHASE=$6 LOG_1 LOG_2 NVSIZE IVSIZE
		LOG_1=$d/$(gname 1 "$6").log LOG_2=$d/$(gname 2 "$6").log
		# ginfo ROLE KEY: what guest ROLE last said as INFO KEY=..., in any
		# phase so far
		# shellcheck disable=SC2317 # used by the scenario's functions
		ginfo() {
			local p
			for ((p = 1; p <= PHASE; p++)); do
				tr -d '\r' <"$d/$(gname "$1" "$p").log" 2>/dev/null
			done | sed -n "s/^INFO $2=//p" | tail -n 1
		}
		# ginfo_wait ROLE KEY SECONDS: wait for guest ROLE to say INFO KEY=...
		# in this phase, print its value; 1 on timeout (or when that QEMU
		# has exited).
		# shellcheck disable=SC2317
		ginfo_wait() {
			local end=$((SECONDS + $3)) v g
			g=$d/$(gname "$1" "$PHASE")
			while :; do
				v=$(tr -d '\r' <"$g.log" 2>/dev/null | sed -n "s/^INFO $2=//p" | tail -n 1)
				[ -n "$v" ] && { echo "$v"; return 0; }
				[ "$SECONDS" -ge "$end" ] || [ -f "$g.rc" ] && return 1
				sleep 0.1
			done
		}
		# qemu_pid ROLE: the pid of guest ROLE's QEMU (this phase's), if it
		# still runs
		# shellcheck disable=SC2317
		qemu_pid() {
			local p g
			g=$d/$(gname "$1" "$PHASE")
			p=$(cat "$g.pid" 2>/dev/null) || return 1
			tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF -- "-pidfile $g.pid" || return 1
			echo "$p"
		}
		# signal_guest ROLE SIG: send SIG (STOP, CONT, KILL) to guest ROLE's
		# QEMU.  KILL is recorded, so the verdict expects that QEMU to die.
		# shellcheck disable=SC2317
		signal_guest() {
			local p
			p=$(qemu_pid "$1") || return 1
			[ "$2" = KILL ] && date +%s.%N >"$d/$(gname "$1" "$PHASE").killed"
			kill -"$2" "$p"
		}
		cd "$d" || exit 1
		. "$HERE/lib.sh"
		# shellcheck disable=SC1090
		. "$HERE/scenarios/$name.sh"
		if declare -F "$5" >/dev/null; then "$5"; fi
	)
}

# has_func FUNC: the scenario being run defines FUNC (one of HOST_FUNCS)
has_func() { [[ " $HOST_FUNCS " == *" $1 "* ]]; }

# run_phase NAME DIR PHASE NVIMG IVIMG ARGS: boot run_scenario's $guests
# guests for PHASE, the scenario's host_during beside them, and its
# host_check after they are gone (host_during_phaseP and host_check_phaseP
# from phase 2 on).
run_phase() {
	local name=$1 d=$2 ph=$3 nv=$4 iv=$5 args=$6 sfx="" i p hpid="" hlog
	local -a pids=()
	[ "$ph" = 1 ] || sfx=_phase$ph
	hlog=$d/$(gname host "$ph").log
	for ((i = 1; i <= guests; i++)); do
		boot "$d" "$(gname $i "$ph")" "$nv" "$iv" "$args shmfs.role=$i shmfs.phase=$ph" &
		pids+=($!)
		BOOT_PIDS+=($!)
	done
	if has_func "host_during$sfx"; then
		host_side "$name" "$d" "$nv" "$iv" "host_during$sfx" "$ph" >>"$hlog" 2>&1 &
		hpid=$!
		BOOT_PIDS+=("$hpid")
	fi
	for p in "${pids[@]}"; do wait "$p"; done
	if [ -n "$hpid" ]; then
		# host_during has its own timeouts; this is the backstop.
		for ((i = 0; i < 300; i++)); do
			kill -0 "$hpid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$hpid" 2>/dev/null; then
			echo "RESULT host_during$sfx FAIL still running 30 s after the guests exited; killed" >>"$hlog"
			pkill -P "$hpid" 2>/dev/null
			kill "$hpid" 2>/dev/null
		fi
		wait "$hpid" 2>/dev/null
		# its mounts, if it left any
		awk -v w="$d/" 'index($2, w) == 1 { print $2 }' /proc/mounts |
			while read -r m; do
				echo "RESULT host_left_mounted FAIL $m (unmounted by run.sh)"
				umount "$m" 2>/dev/null || umount -l "$m"
			done >>"$hlog" 2>&1
	fi
	BOOT_PIDS=() # all exited: never signal those pids again
	# Host side: the scenario's host_check, on the files the guests used.
	if has_func "host_check$sfx"; then
		host_side "$name" "$d" "$nv" "$iv" "host_check$sfx" "$ph" >>"$hlog" 2>&1
	fi
}

run_scenario() {
	local name=$1 d=$WORK/$1 meta expects nv iv i ph args t tb boots="" HOST_FUNCS guests phases
	local -a problems=() tails=()
	t=$EPOCHREALTIME
	mkdir -p "$d"
	meta=$(scenario_meta "$name")
	IFS='|' read -r HOST_FUNCS guests phases <<<"$(head -n 1 <<<"$meta")"
	expects=$(tail -n +2 <<<"$meta")

	if ! new_shm nv nvdimm $NVSIZE || ! new_shm iv ivshmem $IVSIZE; then
		FAILED=1
		echo "FAIL: cannot create backing files in /dev/shm"
		exit 1
	fi
	dd if="$HDR" of="$nv" conv=notrunc status=none
	# Per-scenario values, the same for the guests and the host check.
	local NONCE UUID_A UUID_B UUID_C UUID_D LABEL
	NONCE=$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
	UUID_A=$(cat /proc/sys/kernel/random/uuid) UUID_B=$(cat /proc/sys/kernel/random/uuid)
	UUID_C=$(cat /proc/sys/kernel/random/uuid) UUID_D=$(cat /proc/sys/kernel/random/uuid)
	LABEL=vm-$NONCE
	args="shmfs.scenario=$name shmfs.wait=$GUEST_WAIT"
	for v in NONCE UUID_A UUID_B UUID_C UUID_D LABEL; do args+=" shmfs.v.$v=${!v}"; done
	has_func host_prepare && host_side "$name" "$d" "$nv" "$iv" host_prepare 1 >"$d/host.log" 2>&1

	for ((ph = 1; ph <= phases; ph++)); do
		tb=$EPOCHREALTIME
		run_phase "$name" "$d" "$ph" "$nv" "$iv" "$args"
		boots+="${boots:++}$(elapsed "$tb")"
	done
	rm -f "$nv" "$iv"

	# Verdict: every expected RESULT present, none FAIL, QEMU exited 0.
	# Sources, phase by phase: each boot (g1, g2; g1p2, g2p2 in phase 2),
	# then the host.
	local src log exp who n st detail verdict lines g r nprob what
	local -a srcs=()
	while IFS=: read -r ph r exp; do
		[ -n "$ph" ] && srcs+=("$ph:$r:$exp")
	done <<<"$expects"
	for src in "${srcs[@]}"; do
		IFS=: read -r ph r exp <<<"$src"
		g=$(gname "$r" "$ph")
		log=$d/$g.log who=g$r nprob=${#problems[@]}
		[ "$r" = host ] && who=host
		[ "$ph" = 1 ] || [ "$r" = host ] || who+=p$ph
		lines=$(tr -d '\r' <"$log" 2>/dev/null | grep '^RESULT ')
		while read -r _ n st detail; do
			[ -n "$n" ] || continue
			if [ "$st" = PASS ]; then
				NPASS=$((NPASS + 1))
				printf '   %-4s PASS  %-26s %s\n' "$who" "$n" "$detail"
			elif [ "$st" = SKIP ]; then
				NSKIP=$((NSKIP + 1))
				printf '   %-4s SKIP  %-26s %s\n' "$who" "$n" "$detail"
			else
				NFAIL=$((NFAIL + 1))
				printf '   %-4s FAIL  %-26s %s\n' "$who" "$n" "$detail"
				problems+=("$who: $n failed")
			fi
		done <<<"$lines"
		for n in $exp; do
			if ! grep -q "^RESULT $n " <<<"$lines"; then
				NFAIL=$((NFAIL + 1))
				printf '   %-4s MISS  %-26s %s\n' "$who" "$n" "(expected, never reported)"
				problems+=("$who: $n missing")
			fi
		done
		verdict=""
		if [ "$r" = host ]; then
			:
		elif [ -f "$d/$g.killed" ]; then
			printf '   %-4s ----  %-26s %s\n' "$who" qemu "killed by the scenario (SIGKILL), exit $(cat "$d/$g.rc" 2>/dev/null)"
		else
			verdict=$(qemu_status "$d" "$g")
			if [ -n "$verdict" ]; then
				NFAIL=$((NFAIL + 1))
				printf '   %-4s FAIL  %-26s %s\n' "$who" qemu "$verdict"
				problems+=("$who: $verdict")
			fi
		fi
		# What to show under the verdict: this source's log, if it failed
		[ "${#problems[@]}" = "$nprob" ] && continue
		what="guest $r serial console"
		[ "$r" = host ] && what="host side"
		[ "$ph" = 1 ] || what+=", phase $ph"
		tails+=("$log|$what")
		[ -n "$verdict" ] && tails+=("$d/$g.qemu|guest $r QEMU output")
	done

	if [ ${#problems[@]} = 0 ]; then
		say "-- scenario $name: ok ($guests guest(s)$([ "$phases" = 1 ] || echo ", $phases phases"), boots ${boots} s, total $(elapsed "$t") s)"
		SUMMARY+=("ok    $name")
	else
		FAILED=1
		local plist
		plist=$(printf '%s; ' "${problems[@]}")
		plist=${plist%; }
		say "-- scenario $name: FAILED ($guests guest(s), $(elapsed "$t") s): $plist"
		SUMMARY+=("FAIL  $name: $plist")
		for src in "${tails[@]}"; do show_tail "${src%%|*}" "${src#*|}"; done
	fi
}

for s in "${SCENARIOS[@]}"; do
	say "-- scenario $s"
	run_scenario "$s"
done

say "== summary (wall $(elapsed "$T0") s)"
for l in "${SUMMARY[@]}"; do say "   $l"; done
say "vm: $NPASS passed, $NFAIL failed$([ $NSKIP = 0 ] || echo ", $NSKIP skipped")"
[ "$FAILED" = 0 ] && [ "$NFAIL" = 0 ]
