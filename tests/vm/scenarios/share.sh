# shellcheck shell=sh disable=SC2034 # GUESTS, EXPECT_*: read by run.sh
# Scenario "share": one machine formats, the other machine sees it, on
# /dev/dax0.0 and on the ivshmem BAR; then the other way round; then the
# host reads the backing files with its own shmfs-dump.
#
#   round 1  guest 1: mkfs.shmfs -f -L $LABEL-dax -U $UUID_A /dev/dax0.0
#                     mkfs.shmfs -f -L $LABEL-ivs -U $UUID_B pci:<bdf>
#            guest 2: polls shmfs-dump until each UUID appears, checks the
#                     dump (UUID, label, valid superblock, 2 MiB devdax
#                     alignment, 2 MiB default allocation unit), checks
#                     that mkfs without -f refuses the other machine's fs
#   round 2  guest 2: reformats both (UUID_C, UUID_D); guest 1 sees them
#   host     shmfs-dump on <nvdimm file>,offset=<where dax0.0 begins> and
#            on the ivshmem file shows round 2's UUIDs and labels
#
# Scenario contract (see docs/vm-tests.md): GUESTS, EXPECT_<role> and
# EXPECT_HOST list the RESULT names that must appear; guest_<role> runs in
# the guest, host_check on the host after the guests have powered off.

GUESTS=2
EXPECT_1="mkfs_dax mkfs_ivshmem ivshmem_enabled_by_mkfs dax_sees_g2 dax_dump_g2 ivshmem_sees_g2 ivshmem_dump_g2"
EXPECT_2="dax_sees_g1 dax_dump_g1 dax_dump_text dax_dump_full dax_mkfs_needs_force ivshmem_sees_g1 ivshmem_dump_g1
 ivshmem_dump_longform ivshmem_mkfs_needs_force mkfs_dax_g2 mkfs_ivshmem_g2"
EXPECT_HOST="dax_offset host_dax host_dax_full host_dax_needs_offset host_ivshmem host_ivshmem_full"

TWO_MIB=2097152
SEE_TIMEOUT=90 # s: the other guest may boot several seconds later under TCG

# see NAME SPEC UUID: wait for UUID in SPEC's superblock; leaves the dump
# in /tmp/NAME.json
see() {
	if wait_uuid "$2" "$3" $SEE_TIMEOUT "/tmp/$1.json"; then
		pass "$1" "uuid $3 on $2 after $WAITED_POLLS poll(s)"
	else
		fail "$1" "no valid primary superblock with uuid $3 on $2 after ${SEE_TIMEOUT}s;" \
			"last dump: uuid=$(jfields "/tmp/$1.json" .superblock.uuid) valid=$(jfields "/tmp/$1.json" .superblock.valid)"
		show "/tmp/$1.json.err"
		return 1
	fi
}

# Fields every dump of a devdax / ivshmem filesystem must show.
dax_fields() { # UUID LABEL
	echo .region.kind=devdax .region.offset=0 .region.size="$DAX_SIZE" .region.align=$TWO_MIB \
		.superblock.valid=true .superblock.copy=primary .superblock.other_copy=valid \
		.superblock.uuid="$1" .superblock.label="$2" .superblock.region_size="$DAX_SIZE" \
		.superblock.map_align=$TWO_MIB .superblock.alloc_unit=$TWO_MIB .consistent=true
}
ivs_fields() { # UUID LABEL
	echo .region.kind=pci .region.offset=0 .region.size="$IVSHMEM_SIZE" .region.align=4096 \
		.superblock.valid=true .superblock.copy=primary .superblock.other_copy=valid \
		.superblock.uuid="$1" .superblock.label="$2" .superblock.region_size="$IVSHMEM_SIZE" \
		.superblock.map_align=4096 .superblock.alloc_unit=4096 .consistent=true
}

guest_1() {
	IVS=pci:$IVSHMEM_BDF
	info dax_nvdimm_offset "$DAX_NVDIMM_OFFSET"
	info dax_size "$DAX_SIZE"
	info ivshmem_size "$IVSHMEM_SIZE"
	expect_ok mkfs_dax mkfs.shmfs -f -L "$LABEL-dax" -U "$UUID_A" "$DAX"
	# Nothing has enabled the device yet: the region layer must.
	en0=$(cat "/sys/bus/pci/devices/$IVSHMEM_BDF/enable")
	expect_ok mkfs_ivshmem mkfs.shmfs -f -L "$LABEL-ivs" -U "$UUID_B" "$IVS"
	en1=$(cat "/sys/bus/pci/devices/$IVSHMEM_BDF/enable")
	if [ "$en0" = 0 ] && [ "$en1" = 1 ]; then
		pass ivshmem_enabled_by_mkfs "enable $en0 -> $en1"
	else
		fail ivshmem_enabled_by_mkfs "enable was $en0 before mkfs and $en1 after (want 0 -> 1)"
	fi

	# round 2: guest 2 reformats both
	# shellcheck disable=SC2046 # the field list is split on purpose
	see dax_sees_g2 "$DAX" "$UUID_C" &&
		expect_json dax_dump_g2 /tmp/dax_sees_g2.json $(dax_fields "$UUID_C" "$LABEL-g2dax")
	# shellcheck disable=SC2046
	see ivshmem_sees_g2 "$IVS" "$UUID_D" &&
		expect_json ivshmem_dump_g2 /tmp/ivshmem_sees_g2.json $(ivs_fields "$UUID_D" "$LABEL-g2ivs")
}

guest_2() {
	IVS=pci:$IVSHMEM_BDF
	# shellcheck disable=SC2046
	see dax_sees_g1 "$DAX" "$UUID_A" &&
		expect_json dax_dump_g1 /tmp/dax_sees_g1.json $(dax_fields "$UUID_A" "$LABEL-dax")
	# The human-readable dump says 2 MiB too, and the full dump (host
	# table, log) is consistent.
	expect_match dax_dump_text '^  align +2 MiB \(2097152 bytes\)' shmfs-dump --super-only "$DAX"
	expect_ok dax_dump_full shmfs-dump "$DAX"
	expect_refused dax_mkfs_needs_force 'use -f' mkfs.shmfs -L other "$DAX"

	# shellcheck disable=SC2046
	see ivshmem_sees_g1 "$IVS" "$UUID_B" &&
		expect_json ivshmem_dump_g1 /tmp/ivshmem_sees_g1.json $(ivs_fields "$UUID_B" "$LABEL-ivs")
	dump_json /tmp/ivs_long.json "/sys/bus/pci/devices/$IVSHMEM_BDF/resource2"
	expect_json ivshmem_dump_longform /tmp/ivs_long.json .region.kind=pci .superblock.uuid="$UUID_B" \
		.superblock.label="$LABEL-ivs" .consistent=true
	expect_refused ivshmem_mkfs_needs_force 'use -f' mkfs.shmfs -L other "$IVS"

	# round 2: now this machine formats and guest 1 looks
	expect_ok mkfs_dax_g2 mkfs.shmfs -f -q -L "$LABEL-g2dax" -U "$UUID_C" "$DAX"
	expect_ok mkfs_ivshmem_g2 mkfs.shmfs -f -q -L "$LABEL-g2ivs" -U "$UUID_D" "$IVS"
}

host_check() {
	# Where does the guests' /dev/dax0.0 begin in the NVDIMM backing file?
	# run.sh read it from the devdax info block; the guest read it from
	# sysfs (dax0.0 resource - region0 resource).  They must agree.
	g=$(ginfo 1 dax_nvdimm_offset)
	if [ "$g" = "$DAX_FILE_OFFSET" ] && [ $((g % TWO_MIB)) = 0 ]; then
		pass dax_offset "dax0.0 starts at $g in the NVDIMM (info block and guest sysfs agree)"
	else
		fail dax_offset "info block says $DAX_FILE_OFFSET, guest sysfs says '${g}'"
	fi
	size=$(ginfo 1 dax_size)
	dump_json host_dax.json "$NVIMG,offset=$DAX_FILE_OFFSET"
	expect_json host_dax host_dax.json .region.kind=file .region.offset="$DAX_FILE_OFFSET" \
		.region.size="$size" .superblock.valid=true .superblock.copy=primary \
		.superblock.uuid="$UUID_C" .superblock.label="$LABEL-g2dax" .superblock.region_size="$size" \
		.superblock.map_align=$TWO_MIB .superblock.alloc_unit=$TWO_MIB .consistent=true
	expect_ok host_dax_full "$BIN/shmfs-dump" "$NVIMG,offset=$DAX_FILE_OFFSET"
	# ... and not at offset 0, where the devdax header is.
	expect_refused host_dax_needs_offset 'no shmfs superblock' "$BIN/shmfs-dump" --super-only "$NVIMG"

	dump_json host_ivs.json "$IVIMG"
	expect_json host_ivshmem host_ivs.json .region.kind=file .region.size="$(ginfo 1 ivshmem_size)" \
		.superblock.valid=true .superblock.copy=primary .superblock.uuid="$UUID_D" \
		.superblock.label="$LABEL-g2ivs" .superblock.map_align=4096 .consistent=true
	expect_ok host_ivshmem_full "$BIN/shmfs-dump" "$IVIMG"
}
