/* SPDX-License-Identifier: MIT */
/*
 * fuzz_super: superblock parsing and the whole open path.
 *
 * Input: flags, a region size code, then the first bytes of a region: the
 * superblock, control page, backup superblock, host table and, as far as
 * the input goes, the log.  The region is FUZZ_REGION - code * 4 KiB bytes
 * (zero beyond the input) and ends at a guard page.
 *
 * What it runs: shmfs_super_check() on both copies and shmfs_super_read(),
 * asserting that a superblock they accept describes areas that lie in
 * order inside the region; then the read-only open (replay), the namespace
 * invariants and every read; with FUZZ_F_WRITE, a read-write mount (host
 * table join, the metadata lock, commits) that must agree with replay.
 */
#include <inttypes.h>
#include <string.h>

#include "fuzz.h"
#include "shmfs/util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_setup();
	return 0;
}

/* The promise of shmfs_super_check(): offsets may be used without further
 * checks. */
static void check_geometry(const struct shmfs_super *sb, uint64_t region_size)
{
	uint64_t unit = sb->sb_alloc_unit;
	uint64_t hosts_end = SHMFS_HOSTS_OFF + (uint64_t)sb->sb_max_hosts * SHMFS_HOST_SLOT_SIZE;

	FUZZ_ASSERT(sb->sb_region_size <= region_size, "filesystem larger than the region");
	FUZZ_ASSERT(shmfs_is_pow2(unit) && unit >= SHMFS_PAGE, "unit %" PRIu64, unit);
	FUZZ_ASSERT(sb->sb_max_hosts >= 1 && sb->sb_max_hosts <= SHMFS_MAX_HOSTS, "max hosts");
	FUZZ_ASSERT(hosts_end <= sb->sb_log_off, "host table overlaps the log");
	FUZZ_ASSERT(sb->sb_log_off < sb->sb_region_size &&
		    sb->sb_log_size <= sb->sb_region_size - sb->sb_log_off,
		    "log [%" PRIu64 ", +%" PRIu64 ") outside a region of %" PRIu64, sb->sb_log_off,
		    sb->sb_log_size, sb->sb_region_size);
	FUZZ_ASSERT(sb->sb_log_off + sb->sb_log_size <= sb->sb_data_off, "log overlaps data");
	FUZZ_ASSERT(sb->sb_data_off <= sb->sb_region_size && sb->sb_data_size &&
		    sb->sb_data_size <= sb->sb_region_size - sb->sb_data_off,
		    "data area [%" PRIu64 ", +%" PRIu64 ") outside the region", sb->sb_data_off,
		    sb->sb_data_size);
	FUZZ_ASSERT(sb->sb_data_off % unit == 0 && sb->sb_data_size % unit == 0, "data alignment");
	FUZZ_ASSERT(sb->sb_heartbeat_ms && (uint64_t)sb->sb_lease_ms >= 2ull * sb->sb_heartbeat_ms,
		    "lease %u ms, heartbeat %u ms", sb->sb_lease_ms, sb->sb_heartbeat_ms);
}

static void one_input(const uint8_t *data, size_t size)
{
	struct shmfs_super sb;
	char err[256], other[256];
	int rc, rc_sb, used;

	if (size < FUZZ_HDR)
		return;
	unsigned flags = data[0];
	uint64_t rsize = FUZZ_REGION - (uint64_t)data[1] * SHMFS_PAGE;
	uint64_t seed = fuzz_hash(data, size);
	data += FUZZ_HDR;
	size -= FUZZ_HDR;

	struct shmfs_region *r = fuzz_region(rsize);
	memset(r->base, 0, rsize);
	memcpy(r->base, data, SHMFS_MIN(size, rsize));
	if (flags & FUZZ_F_SEAL_SB0)
		fuzz_seal_super(r, 0);
	if (flags & FUZZ_F_SEAL_SB1)
		fuzz_seal_super(r, 1);

	/* Each copy on its own, as fsck looks at them. */
	for (unsigned i = 0; i < 2; i++) {
		uint64_t off = i ? SHMFS_BACKUP_OFF : SHMFS_SB_OFF;
		if (rsize < off + sizeof(sb))
			continue;
		memcpy(&sb, r->base + off, sizeof(sb));
		if (shmfs_super_check(&sb, rsize, err, sizeof(err)) == 0)
			check_geometry(&sb, rsize);
	}
	rc_sb = shmfs_super_read(r, &sb, &used, err, sizeof(err), other, sizeof(other));
	if (rc_sb == 0) {
		check_geometry(&sb, rsize);
		if (flags & FUZZ_F_CSUM_HOSTS)
			fuzz_fix_hosts(r, &sb);
		if (flags & FUZZ_F_CSUM_LOG) {
			struct shmfs_log log = { r->base + sb.sb_log_off, sb.sb_log_size,
						 sb.sb_log_seed };
			fuzz_fix_log(&log);
		}
	}

	struct shmfs_fs *fs = fuzz_open(r, false, &rc);
	FUZZ_ASSERT(!fs || rc_sb == 0, "opened a region whose superblocks are bad: %s", err);
	if (fs) {
		fuzz_after_open(r, fs, flags, (uint8_t)(seed >> 8), seed);
		shmfs_fs_close(fs);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one_input(data, size);
	rcu_barrier(); /* what the input left to free, freed now */
	return 0;
}
