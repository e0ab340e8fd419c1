# shellcheck shell=sh disable=SC2034 # GUESTS, EXPECT_*: read by run.sh
# Scenario "region_paths" (one guest): how the region layer names, opens
# and refuses real devices, on /dev/dax0.0 and on the ivshmem BAR.
#
#   devdax   offset=4096, length=3M and --alloc-unit 4K are refused with a
#            message naming the 2 MiB alignment, and leave the device as it
#            was; a 2 MiB-aligned window works; the device opens by every
#            name it has: /dev/dax0.0, a symlink to it and the name that
#            resolves to, /dev/char/MAJ:MIN (as udev makes it), and a second
#            device node with another name
#   ivshmem  pci: without the domain, an unaligned offset, a window past
#            the end, a device that does not exist, a malformed address
#
# See scenarios/share.sh for the scenario contract.

GUESTS=1
EXPECT_1="mkfs_dax dax_offset_4k dax_length_3m dax_alloc_unit_4k dax_unchanged dax_window dax_window_dump
 dax_still_whole dax_name_dev dax_name_symlink dax_name_resolved dax_name_devchar dax_name_mknod mkfs_dax_via_devchar
 dax_sees_mkfs_via_devchar ivshmem_short_form ivshmem_long_form ivshmem_offset_unaligned ivshmem_past_end
 ivshmem_window ivshmem_no_device ivshmem_bad_address"

ALIGN_MSG='alignment \(2 MiB\)|2 MiB.*alignment|alignment.*2 MiB'

guest_1() {
	TWO_MIB=2097152
	expect_ok mkfs_dax mkfs.shmfs -f -q -L "$LABEL" -U "$UUID_A" "$DAX"

	# Refusals, each with -f and a new UUID: nothing may be written.
	expect_refused dax_offset_4k "$ALIGN_MSG" mkfs.shmfs -f -U "$UUID_B" "$DAX,offset=4096"
	expect_refused dax_length_3m "$ALIGN_MSG" mkfs.shmfs -f -U "$UUID_B" "$DAX,length=3M"
	expect_refused dax_alloc_unit_4k "$ALIGN_MSG" mkfs.shmfs -f -U "$UUID_B" --alloc-unit 4K "$DAX"
	dump_json /tmp/d.json "$DAX"
	expect_json dax_unchanged /tmp/d.json .superblock.uuid="$UUID_A" .superblock.label="$LABEL" .consistent=true

	# A window on 2 MiB boundaries is fine, and does not touch the start.
	expect_ok dax_window mkfs.shmfs -f -q -U "$UUID_B" "$DAX,offset=64M,length=32M"
	dump_json /tmp/w.json "$DAX,offset=64M,length=32M"
	expect_json dax_window_dump /tmp/w.json .region.kind=devdax .region.offset=67108864 .region.size=33554432 \
		.superblock.uuid="$UUID_B" .superblock.region_size=33554432 .superblock.alloc_unit=$TWO_MIB .consistent=true
	dump_json /tmp/d.json "$DAX"
	expect_json dax_still_whole /tmp/d.json .superblock.uuid="$UUID_A" .region.size="$DAX_SIZE"

	# Every name of the device.
	majmin=$(cat /sys/bus/dax/devices/dax0.0/dev)
	ln -s "$DAX" /tmp/pool
	mkdir -p /dev/char
	ln -sf ../dax0.0 "/dev/char/$majmin"
	mknod /tmp/daxnode c "${majmin%%:*}" "${majmin##*:}"
	resolved=$(readlink -f /tmp/pool)
	for n in dev:$DAX symlink:/tmp/pool resolved:$resolved devchar:/dev/char/$majmin mknod:/tmp/daxnode; do
		dump_json /tmp/n.json "${n#*:}"
		expect_json "dax_name_${n%%:*}" /tmp/n.json .region.path="${n#*:}" .region.kind=devdax \
			.region.align=$TWO_MIB .region.size="$DAX_SIZE" .superblock.uuid="$UUID_A"
	done
	expect_ok mkfs_dax_via_devchar mkfs.shmfs -f -q -U "$UUID_C" "/dev/char/$majmin"
	dump_json /tmp/d.json "$DAX"
	expect_json dax_sees_mkfs_via_devchar /tmp/d.json .superblock.uuid="$UUID_C" .superblock.alloc_unit=$TWO_MIB

	# ivshmem
	bdf=$IVSHMEM_BDF
	expect_ok ivshmem_short_form mkfs.shmfs -f -q -U "$UUID_D" "pci:${bdf#0000:}"
	dump_json /tmp/i.json "/sys/bus/pci/devices/$bdf/resource2"
	expect_json ivshmem_long_form /tmp/i.json .region.kind=pci .superblock.uuid="$UUID_D" .region.size="$IVSHMEM_SIZE"
	expect_refused ivshmem_offset_unaligned 'page size \(4 KiB\)' mkfs.shmfs -f "pci:$bdf,offset=1000"
	expect_refused ivshmem_past_end 'past the end' mkfs.shmfs -f "pci:$bdf,offset=8M,length=16M"
	expect_ok ivshmem_window mkfs.shmfs -f -q "pci:$bdf,offset=8M"
	expect_refused ivshmem_no_device 'no such PCI device' mkfs.shmfs -f pci:0000:00:1f.7
	expect_refused ivshmem_bad_address 'not a PCI address' mkfs.shmfs -f pci:00:02
}
