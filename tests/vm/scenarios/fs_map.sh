# shellcheck shell=sh disable=SC2034,SC3043 # GUESTS, EXPECT_*: read by run.sh; local: ash and bash have it
# Scenario "fs_map": a process in guest 1 and a process in guest 2 share a
# file through direct mappings (libshmfs), on /dev/dax0.0 (2 MiB mapping
# alignment) and on the ivshmem BAR; each guest mounts both.
#
#   format   guest 1: mkfs.shmfs on both, mounts them (-o host=g1); guest 2
#            waits for the UUIDs, mounts them (-o host=g2)
#   file     guest 1: fallocate -l 4M pp (allocated and sized, never
#            written), then pp.ready
#   map      each guest: map-driver maps pp read-write with shmfs_map():
#            the mapping must be backed by the region itself (/dev/dax0.0,
#            or the BAR's resource file: /proc/self/maps), not by the FUSE
#            mount, and on devdax start at a 2 MiB-aligned address
#   pingpong guest 1 stores 1, 2, ... into the first word, guest 2 waits for
#            each (spinning on memory, no system call) and answers in the
#            word at byte 64; 200 round trips, each within 60 s
#   store    guest 1 fills bytes 8192..12287 with 'Z' through its mapping;
#            guest 2 spins until the word at 8192 is "ZZZZZZZZ"; guest 1
#            then calls shmfs_sync() (user.shmfs.sync) and says so in
#            pp.synced; guest 2 then read()s the bytes through its mount:
#            all 'Z' (the other host's page cache was invalidated)
#   host     after poweroff: fsck.shmfs -n finds both clean (exit 0), and a
#            read-only host mount reads the 'Z's at 8192
#
# See scenarios/share.sh for the scenario contract.

GUESTS=2
FSS="dax ivshmem"
T0=60  # s, waiting for the other guest to boot (TCG boots take seconds)
T=30   # s, any later wait
ROUNDS=200
SIZE=4194304
ZWORD=6510615555426900570 # 0x5a5a5a5a5a5a5a5a: "ZZZZZZZZ"

each_fs() { # PATTERN: "%" replaced by each filesystem
	for fs in $FSS; do printf '%s ' "$(echo "$1" | sed "s/%/$fs/g")"; done
}
EXPECT_1="dax_mkfs ivshmem_mkfs $(each_fs "%_mount %_file %_map %_pingpong %_store %_sync %_umount")"
EXPECT_2="$(each_fs "%_mount %_map %_pingpong %_sees_store %_read_sees_store %_umount")"
EXPECT_HOST="$(each_fs "host_%_fsck host_%_mount host_%_data host_%_umount")"

fs_spec() { if [ "$1" = dax ]; then echo "$DAX"; else echo "pci:$IVSHMEM_BDF"; fi; }

# drive FS ROLE CMD...: run map-driver with one command per argument (and
# quit); its replies, one per command, in /tmp/FS.ROLE.out
drive() {
	local _o="/tmp/$1.$2.out"
	shift 2
	printf '%s\n' "$@" quit | map-driver >"$_o" 2>&1
}
reply() { sed -n "${2}p" "$1"; } # FILE N: the Nth reply

# check_map NAME FS OUT: replies 1..3 of OUT are map, addr and backing
check_map() {
	local _n="$1" _fs="$2" _o="$3" _m _a _b _want
	_m=$(reply "$_o" 1)
	_a=$(reply "$_o" 2)
	_b=$(reply "$_o" 3)
	case $_m in ok*) ;; *)
		fail "$_n" "shmfs_map of /mnt/$_fs/pp: $_m"
		return 1 ;;
	esac
	_a=${_a#ok }
	_b=${_b#ok }
	if [ "$_fs" = dax ]; then
		_want=/dev/dax0.0
		if [ $((_a % 2097152)) != 0 ]; then
			fail "$_n" "mapped at $_a, not 2 MiB aligned (devdax maps only whole 2 MiB pages)"
			return 1
		fi
	else
		_want="/sys/devices/*/$IVSHMEM_BDF/resource2"
	fi
	case $_b in
	$_want|$_want" "*) pass "$_n" "at $_a, backed by $_b" ;;
	*) fail "$_n" "at $_a, backed by '$_b', not by the region ($_want)"; return 1 ;;
	esac
}

guest_1() {
	ME=g1
	expect_ok dax_mkfs mkfs.shmfs -f -q -L "$LABEL-dax" -U "$UUID_A" "$DAX"
	expect_ok ivshmem_mkfs mkfs.shmfs -f -q -L "$LABEL-ivs" -U "$UUID_B" "pci:$IVSHMEM_BDF"
	for fs in $FSS; do fs_mount "${fs}_mount" "$(fs_spec "$fs")" "/mnt/$fs" g1; done
	for fs in $FSS; do
		m=/mnt/$fs
		if fallocate -l $SIZE "$m/pp" && [ "$(stat -c %s "$m/pp")" = $SIZE ] && true >"$m/pp.ready"; then
			pass "${fs}_file" "fallocate -l $SIZE pp: $(stat -c '%s bytes, %b blocks' "$m/pp")"
		else
			fail "${fs}_file" "fallocate -l $SIZE $m/pp failed: $(ls -l "$m" 2>&1 | tr '\n' ' ')"
			continue
		fi
		drive "$fs" lead "map 0 $m/pp rw" "addr 0" "backing 0 0" \
			"pingpong 0 lead $ROUNDS $((T0 * 1000))" "fill 0 8192 4096 90" "sync 0"
		o=/tmp/$fs.lead.out
		check_map "${fs}_map" "$fs" "$o" || { show "$o"; continue; }
		r=$(reply "$o" 4)
		case $r in
		"ok $ROUNDS "*) pass "${fs}_pingpong" "$ROUNDS round trips through memory, median ${r##* } ns" ;;
		*) fail "${fs}_pingpong" "$r"; continue ;;
		esac
		r=$(reply "$o" 5)
		[ "$r" = ok ] && pass "${fs}_store" "4096 bytes of 'Z' at 8192 stored through the mapping" ||
			fail "${fs}_store" "$r"
		r=$(reply "$o" 6)
		if [ "$r" = ok ] && true >"$m/pp.synced"; then
			pass "${fs}_sync" "shmfs_sync: published"
		else
			fail "${fs}_sync" "$r"
		fi
	done
	for fs in $FSS; do
		barrier "/mnt/$fs" done g1 $T0 g2 || info "${fs}_barrier" "g2 never finished:$BARRIER_MISSING"
		fs_umount "${fs}_umount" "/mnt/$fs" "$(fs_spec "$fs")" "$ME"
	done
	fs_syslog
}

guest_2() {
	ME=g2
	for fs in $FSS; do
		uuid=$UUID_A
		[ "$fs" = ivshmem ] && uuid=$UUID_B
		if wait_uuid "$(fs_spec "$fs")" "$uuid" $T0 "/tmp/$fs.json"; then
			fs_mount "${fs}_mount" "$(fs_spec "$fs")" "/mnt/$fs" g2
		else
			fail "${fs}_mount" "guest 1 never formatted $(fs_spec "$fs") (uuid $uuid) in ${T0}s"
		fi
	done
	for fs in $FSS; do
		m=/mnt/$fs
		if ! poll $T0 exists "$m/pp.ready"; then
			fail "${fs}_map" "no $m/pp.ready after ${T0}s"
			continue
		fi
		drive "$fs" follow "map 0 $m/pp rw" "addr 0" "backing 0 0" \
			"pingpong 0 follow $ROUNDS $((T0 * 1000))" "spin 0 8192 $ZWORD $((T * 1000))"
		o=/tmp/$fs.follow.out
		if check_map "${fs}_map" "$fs" "$o"; then
			r=$(reply "$o" 4)
			case $r in
			"ok $ROUNDS "*) pass "${fs}_pingpong" "answered $ROUNDS stores, median round ${r##* } ns" ;;
			*) fail "${fs}_pingpong" "$r" ;;
			esac
			r=$(reply "$o" 5)
			case $r in
			ok*) pass "${fs}_sees_store" "the word at 8192 became ZZZZZZZZ after ${r#ok } ns of spinning" ;;
			*) fail "${fs}_sees_store" "$r" ;;
			esac
		else
			show "$o"
		fi
		if ! poll $T exists "$m/pp.synced"; then
			fail "${fs}_read_sees_store" "no $m/pp.synced after ${T}s"
		else
			# read() through this host's mount: 4096 'Z's, nothing else
			z=$(dd if="$m/pp" bs=4096 skip=2 count=1 2>/dev/null | tr -d Z | wc -c)
			n=$(dd if="$m/pp" bs=4096 skip=2 count=1 2>/dev/null | wc -c)
			if [ "$n" = 4096 ] && [ "$z" = 0 ]; then
				pass "${fs}_read_sees_store" "read() of bytes 8192..12287: all 'Z'"
			else
				fail "${fs}_read_sees_store" "read() of bytes 8192..12287: $n bytes, $z not 'Z':" \
					"$(dd if="$m/pp" bs=4096 skip=2 count=1 2>/dev/null | od -An -c | head -n 2 | tr '\n' ' ')"
			fi
		fi
		true >"$m/done.g2"
	done
	for fs in $FSS; do fs_umount "${fs}_umount" "/mnt/$fs" "$(fs_spec "$fs")" "$ME"; done
	fs_syslog
}

# ---- the host, after poweroff ----------------------------------------------
host_check() {
	for fs in $FSS; do
		if [ "$fs" = dax ]; then spec="$NVIMG,offset=$DAX_FILE_OFFSET"; else spec=$IVIMG; fi
		"$BIN/fsck.shmfs" -n "$spec" >"$fs.fsck" 2>&1
		rc=$?
		if [ $rc = 0 ]; then
			pass "host_${fs}_fsck" "fsck.shmfs -n: clean"
		else
			fail "host_${fs}_fsck" "fsck.shmfs -n exit $rc: $(tail -n 3 "$fs.fsck" | tr '\n' ' ')"
		fi
		m=$PWD/mnt-$fs
		fs_mount "host_${fs}_mount" "$spec" "$m" host ro || continue
		z=$(dd if="$m/pp" bs=4096 skip=2 count=1 2>/dev/null | tr -d Z | wc -c)
		n=$(dd if="$m/pp" bs=4096 skip=2 count=1 2>/dev/null | wc -c)
		if [ "$n" = 4096 ] && [ "$z" = 0 ]; then
			pass "host_${fs}_data" "pp holds the guests' 'Z's at 8192"
		else
			fail "host_${fs}_data" "bytes 8192..12287 of pp: $n bytes, $z not 'Z'"
		fi
		fs_umount "host_${fs}_umount" "$m"
	done
}
