# shellcheck shell=sh disable=SC2034 # GUESTS, EXPECT_*: read by run.sh
# Scenario "dax_modes" (one guest): a devdax device that is not usable as
# devdax is refused with the daxctl command that fixes it, and the
# filesystem on it survives the round trip.
#
#   daxctl disable-device                      -> "disabled; run: daxctl enable-device"
#   daxctl reconfigure-device --mode=system-ram --no-online
#                                              -> "system-ram mode ... offline but owned by kmem"
#   back to devdax                             -> the same filesystem again
#
# The memory is never onlined: as system RAM the guest kernel would put
# its own data into the shared region.
#
# See scenarios/share.sh for the scenario contract.

GUESTS=1
EXPECT_1="mkfs_dax daxctl_disable dax_disabled_refused daxctl_enable dax_after_enable daxctl_system_ram
 dax_system_ram_refused dump_system_ram_refused daxctl_devdax dax_after_devdax"

guest_1() {
	expect_ok mkfs_dax mkfs.shmfs -f -q -L "$LABEL" -U "$UUID_A" "$DAX"

	expect_ok daxctl_disable daxctl disable-device dax0.0
	expect_refused dax_disabled_refused 'dax0.0 is disabled; run: daxctl enable-device dax0.0' \
		mkfs.shmfs -f -U "$UUID_B" "$DAX"
	expect_ok daxctl_enable daxctl enable-device dax0.0
	dump_json /tmp/d.json "$DAX"
	expect_json dax_after_enable /tmp/d.json .region.kind=devdax .superblock.uuid="$UUID_A" .consistent=true

	expect_ok daxctl_system_ram daxctl reconfigure-device --mode=system-ram --no-online dax0.0
	expect_refused dax_system_ram_refused 'system-ram mode.*reconfigure-device --mode=devdax' \
		mkfs.shmfs -f -U "$UUID_B" "$DAX"
	expect_refused dump_system_ram_refused 'system-ram mode' shmfs-dump --super-only "$DAX"
	expect_ok daxctl_devdax daxctl reconfigure-device --mode=devdax dax0.0
	dump_json /tmp/d.json "$DAX"
	expect_json dax_after_devdax /tmp/d.json .region.kind=devdax .region.align=2097152 \
		.superblock.uuid="$UUID_A" .superblock.label="$LABEL" .consistent=true
}
