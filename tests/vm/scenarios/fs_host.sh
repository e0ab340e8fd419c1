# shellcheck shell=sh disable=SC2034,SC3043,SC2002,SC2012
# (GUESTS, EXPECT_*: read by run.sh; local: ash and bash have it; cat and ls
# in FAIL details: for their error messages)
# Scenario "fs_host": a host and two VMs share one filesystem.  The host
# mounts the backing files with its own shmfs while both guests have them
# mounted: the NVDIMM file at the offset where the guests' /dev/dax0.0
# begins (<file>,offset=2M), and the whole ivshmem file.
#
#   prepare  the host formats both (the devdax one with --alloc-unit 2M, as
#            the guests' 2 MiB alignment wants) and mounts them (-o
#            host=host) before the guests boot; the guests mount /dev/dax0.0
#            and pci:<bdf> (-o host=g1, g2)
#   data     each of the three machines writes a file of random bytes and
#            publishes its SHA-256 (renamed into place); each reads the two
#            others' files back: the same checksum
#   names    when all three have read everything (a barrier of marker
#            files), each renames its own file; each sees the two renames
#   concurrent  all three create 100 files in one directory at once (with
#            "NAME i" in each on ivshmem); each lists exactly the 300
#   host     after poweroff: shmfs-dump of both backing files is consistent
#            with no host left in the table
#
# The three machines meet only in the filesystem itself (marker files,
# polled with timeouts).  The host side is host_during, which run.sh runs
# beside the guests.  See scenarios/share.sh for the scenario contract.

GUESTS=2
FSS="dax ivshmem"
T0=60 # s, waiting for a guest to boot and mount (TCG)
T=20  # s, any later wait
N=100 # files each machine creates in the concurrent step

expect_party() { # ME OTHER OTHER: the RESULT names party prints
	for fs in $FSS; do
		printf '%s ' "${fs}_mount ${fs}_publish ${fs}_sees_$2_data ${fs}_sees_$3_data ${fs}_sees_$2_rename" \
			"${fs}_sees_$3_rename ${fs}_concurrent ${fs}_umount"
	done
	echo ivshmem_concurrent_data
}
EXPECT_1=$(expect_party g1 host g2)
EXPECT_2=$(expect_party g2 host g1)
EXPECT_HOST="host_mkfs_dax host_mkfs_ivshmem $(expect_party host g1 g2 | sed 's/[^ ][^ ]*/host_&/g') host_dax_dump
 host_ivshmem_dump"

fs_spec() {
	if [ -n "${BIN:-}" ]; then # on the host: the backing files
		if [ "$1" = dax ]; then echo "$NVIMG,offset=$DAX_FILE_OFFSET"; else echo "$IVIMG"; fi
	elif [ "$1" = dax ]; then echo "$DAX"
	else echo "pci:$IVSHMEM_BDF"; fi
}
renamed_to() { [ -e "$2" ] && [ ! -e "$1" ]; }

# party FS ME OTHER OTHER: what each machine does on one filesystem.
# RESULT names are prefixed with $PFX ("host_" on the host).
party() {
	local fs="$1" me="$2" m="$MNTROOT$1" o data=0
	shift 2
	# data
	publish "$PFX${fs}_publish" "$SCRATCH/$me.bin" "$m" "$me.bin"
	for o; do verify_published "$PFX${fs}_sees_${o}_data" "$m" "$o.bin" $T0; done
	# names, once everyone has read everything
	barrier "$m" seen "$me" $T "$@" || fail "$PFX${fs}_barrier" "no 'seen' marker from$BARRIER_MISSING"
	mv "$m/$me.bin" "$m/$me.moved"
	for o; do
		if poll $T renamed_to "$m/$o.bin" "$m/$o.moved"; then
			pass "$PFX${fs}_sees_${o}_rename" "$o.bin -> $o.moved after polling $POLL_MS ms"
		else
			fail "$PFX${fs}_sees_${o}_rename" "$o.bin -> $o.moved not seen after ${T}s: $(ls "$m" | tr '\n' ' ')"
		fi
	done
	# concurrent creates
	[ "$me" = host ] && mkdir "$m/conc"
	[ "$fs" = ivshmem ] && data=1
	if ! poll $T is_dir "$m/conc" || ! barrier "$m" go "$me" $T "$@"; then
		fail "$PFX${fs}_concurrent" "no conc/ or no 'go' marker from$BARRIER_MISSING"
	else
		make_files "$m/conc" "$me" $N $data
		barrier "$m" "done" "$me" $T "$@" || fail "$PFX${fs}_barrier" "no 'done' marker from$BARRIER_MISSING"
		want_files "$SCRATCH/want" $N g1 g2 host
		if [ "$MADE_ERRS" != 0 ]; then
			fail "$PFX${fs}_concurrent" "$MADE_ERRS of my $N creates failed"
		else
			check_names "$PFX${fs}_concurrent" "$m/conc" "$SCRATCH/want" \
				"$N of them made here in $MADE_MS ms while $1 and $2 made theirs"
		fi
		[ $data = 1 ] && check_contents "$PFX${fs}_concurrent_data" "$m/conc" "$SCRATCH/want"
	fi
	# everyone is done before anyone leaves
	barrier "$m" bye "$me" $T "$@" || fail "$PFX${fs}_barrier" "no 'bye' marker from$BARRIER_MISSING"
	fs_umount "$PFX${fs}_umount" "$m" "$(fs_spec "$fs")" "$me"
}

guest() { # ME OTHER
	PFX="" MNTROOT=/mnt/ SCRATCH=/tmp
	head -c 1048576 /dev/urandom >"/tmp/$1.bin"
	for fs in $FSS; do fs_mount "${fs}_mount" "$(fs_spec "$fs")" "/mnt/$fs" "$1"; done
	for fs in $FSS; do party "$fs" "$1" host "$2"; done
	fs_syslog
}
guest_1() { guest g1 g2; }
guest_2() {
	FS_FOREGROUND=1 # guest 1's daemons fork, as users run them; these keep libfuse's messages
	guest g2 g1
}

host_prepare() {
	# The guests' /dev/dax0.0 maps in 2 MiB pages: that allocation unit.
	expect_ok host_mkfs_dax "$BIN/mkfs.shmfs" -f -q --alloc-unit 2M -L "$LABEL-dax" -U "$UUID_A" \
		"$(fs_spec dax)"
	expect_ok host_mkfs_ivshmem "$BIN/mkfs.shmfs" -f -q -L "$LABEL-ivs" -U "$UUID_B" "$(fs_spec ivshmem)"
}

host_during() {
	PFX=host_ MNTROOT=$PWD/mnt- SCRATCH=$PWD
	MAKE_PACE=0.004 # the guests need ~4 ms a create: overlap with them
	head -c 2097152 /dev/urandom >host.bin
	for fs in $FSS; do fs_mount "host_${fs}_mount" "$(fs_spec "$fs")" "$PWD/mnt-$fs" host; done
	for fs in $FSS; do party "$fs" host g1 g2; done
}

host_check() {
	for fs in $FSS; do
		uuid=$UUID_A
		[ "$fs" = ivshmem ] && uuid=$UUID_B
		"$BIN/shmfs-dump" --json "$(fs_spec "$fs")" >"$fs.json" 2>"$fs.json.err"
		expect_json "host_${fs}_dump" "$fs.json" .superblock.uuid="$uuid" .consistent=true \
			'.errors|length'=0 '.hosts|length'=0
	done
}
