# shellcheck shell=sh disable=SC2034 # GUESTS, EXPECT_*: read by run.sh
# Scenario "host_format" (one guest): the host formats, the guest reads.
#
#   host     mkfs.shmfs --alloc-unit 2M on <nvdimm file>,offset=<where
#            dax0.0 begins>, and mkfs.shmfs on the ivshmem file, before boot
#   guest    shmfs-dump on /dev/dax0.0 and pci:<bdf> shows the host's UUID
#            and label, a valid superblock, the same sizes, and the devdax
#            mapping alignment of 2 MiB in the region info
#
# See scenarios/share.sh for the scenario contract.

GUESTS=1
EXPECT_1="dax_sees_host dax_dump ivshmem_sees_host ivshmem_dump"
EXPECT_HOST="host_mkfs_dax host_mkfs_ivshmem"

host_prepare() {
	# The guest's /dev/dax0.0 has a 2 MiB alignment: give the filesystem
	# that allocation unit, as mkfs in the guest would by default.
	expect_ok host_mkfs_dax "$BIN/mkfs.shmfs" -f -q --alloc-unit 2M -L "$LABEL-hdax" -U "$UUID_A" \
		"$NVIMG,offset=$DAX_FILE_OFFSET"
	expect_ok host_mkfs_ivshmem "$BIN/mkfs.shmfs" -f -q -L "$LABEL-hivs" -U "$UUID_B" "$IVIMG"
}

guest_1() {
	# The host wrote before this guest booted: no waiting needed, but
	# wait_uuid also gives a clear "never appeared" failure.
	if wait_uuid "$DAX" "$UUID_A" 5 /tmp/d.json; then pass dax_sees_host "uuid $UUID_A"
	else fail dax_sees_host "uuid $UUID_A not on $DAX"; show /tmp/d.json.err; fi
	expect_json dax_dump /tmp/d.json .region.kind=devdax .region.align=2097152 .region.size="$DAX_SIZE" \
		.superblock.valid=true .superblock.uuid="$UUID_A" .superblock.label="$LABEL-hdax" \
		.superblock.region_size="$DAX_SIZE" .superblock.map_align=4096 .superblock.alloc_unit=2097152 \
		.consistent=true
	if wait_uuid "pci:$IVSHMEM_BDF" "$UUID_B" 5 /tmp/i.json; then pass ivshmem_sees_host "uuid $UUID_B"
	else fail ivshmem_sees_host "uuid $UUID_B not on pci:$IVSHMEM_BDF"; show /tmp/i.json.err; fi
	expect_json ivshmem_dump /tmp/i.json .region.kind=pci .region.size="$IVSHMEM_SIZE" \
		.superblock.valid=true .superblock.uuid="$UUID_B" .superblock.label="$LABEL-hivs" \
		.superblock.alloc_unit=4096 .consistent=true
}
