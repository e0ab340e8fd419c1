/* SPDX-License-Identifier: MIT */
/*
 * Pass 1: the superblocks.
 *
 * Both copies go through shmfs_super_check(), on private copies.  A bad
 * copy is restored from the good one (FIX_SUPER); two valid copies that
 * differ are made equal from the primary; the rest of each superblock
 * page must be zero.  With both copies bad there is nothing to check
 * against: the geometry is unknown, and fsck gives up (exit 8) rather
 * than guess one.  So does it for a copy of a newer format.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shmfs/super.h"
#include "shmfs/util.h"

#include "fsck.h"

/* The format.h field a shmfs_super_check() complaint is about. */
static const char *sb_code(int rc, const char *why)
{
	static const struct { const char *text, *code; } map[] = {
		{ "checksum", "sb_checksum" },
		{ "format version", "sb_version" },
		{ "incompatible features", "sb_feature_incompat" },
		{ "superblock flags", "sb_flags" },
		{ "label", "sb_label" },
		{ "reserved", "sb_reserved" },
		{ "mapping alignment", "sb_map_align" },
		{ "allocation unit", "sb_alloc_unit" },
		{ "region size", "sb_region_size" },
		{ "fixed area offsets", "sb_ctl_off" },
		{ "host table geometry", "sb_max_hosts" },
		{ "log offset", "sb_log_off" },
		{ "log size", "sb_log_size" },
		{ "data area offset", "sb_data_off" },
		{ "data area size", "sb_data_size" },
		{ "log seed", "sb_log_seed" },
		{ "lease", "sb_lease_ms" },
		{ "root inode", "sb_root_ino" },
		{ "needs", "sb_region_size" },
	};

	if (rc == -ENODATA)
		return "sb_magic";
	for (size_t i = 0; i < SHMFS_ARRAY_SIZE(map); i++)
		if (strstr(why, map[i].text))
			return map[i].code;
	return "sb_checksum";
}

static const char *const copy_name[2] = { "primary superblock", "backup superblock" };

/* format.md: the rest of each superblock page is zero (a copy that is
 * rewritten anyway gets its page cleared then). */
static void check_pages(struct fsck *ck, const int rc[2], bool differ)
{
	for (int i = 0; i < 2; i++) {
		const uint8_t *pg = ck->r.base + (i ? SHMFS_BACKUP_OFF : SHMFS_SB_OFF);
		if (rc[i] || (i == 1 && differ))
			continue;
		for (size_t k = sizeof(struct shmfs_super); k < SHMFS_PAGE; k++) {
			if (pg[k]) {
				fsck_problem(ck, "sb_reserved", FIX_SUPER, true, copy_name[i],
					     "bytes after the superblock in its page are not zero, "
					     "at +%zu (repair: zero them)", k)->a = (uint64_t)i;
				break;
			}
		}
	}
}

/* Returns 0 with ck->c->sb set, or an exit status. */
int fsck_pass_super(struct fsck *ck)
{
	struct shmfs_super copy[2];
	char why[2][256];
	int rc[2];

	fsck_verbose(ck, "Pass 1: superblocks");
	if (ck->r.size < SHMFS_HOSTS_OFF + SHMFS_PAGE) {
		fprintf(stderr, PROG ": %s: region of %" PRIu64 " bytes is too small for shmfs\n",
			ck->spec, ck->r.size);
		return FSCK_ERROR;
	}
	for (int i = 0; i < 2; i++) {
		memcpy(&copy[i], ck->r.base + (i ? SHMFS_BACKUP_OFF : SHMFS_SB_OFF),
		       sizeof(copy[i]));
		why[i][0] = 0;
		rc[i] = shmfs_super_check(&copy[i], ck->r.size, why[i], sizeof(why[i]));
	}
	if (rc[0] && rc[1]) {
		if (rc[0] == -ENODATA && rc[1] == -ENODATA)
			fprintf(stderr, PROG ": %s: no shmfs superblock (no magic in the primary "
				"copy at 0 nor in the backup at 8 KiB)\n", ck->spec);
		else
			fprintf(stderr, PROG ": %s: both superblocks are unusable, so the geometry of "
				"the filesystem is unknown and nothing can be checked:\n"
				"  primary: %s\n  backup:  %s\n", ck->spec, why[0], why[1]);
		return FSCK_ERROR;
	}
	for (int i = 0; i < 2; i++) {
		if (rc[i] == 0)
			continue;
		if (rc[i] == -EPROTONOSUPPORT || rc[i] == -EOPNOTSUPP) {
			fprintf(stderr, PROG ": %s: the %s is of a newer format (%s); use a newer "
				"fsck.shmfs\n", ck->spec, copy_name[i], why[i]);
			return FSCK_ERROR;
		}
		fsck_problem(ck, sb_code(rc[i], why[i]), FIX_SUPER, true, copy_name[i],
			     "%s (repair: rewrite it from the %s)", why[i], copy_name[!i])->a =
			(uint64_t)i;
	}
	int good = rc[0] == 0 ? 0 : 1;
	ck->c->sb = copy[good];
	ck->c->have_sb = true;
	bool differ = rc[0] == 0 && rc[1] == 0 && memcmp(&copy[0], &copy[1], sizeof(copy[0]));
	if (differ)
		fsck_problem(ck, "sb_checksum", FIX_SUPER, true, copy_name[1], "differs from the "
			     "primary; both are valid (repair: rewrite it from the primary)")->a = 1;
	check_pages(ck, rc, differ);
	return 0;
}
