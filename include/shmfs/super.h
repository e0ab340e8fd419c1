/* SPDX-License-Identifier: MIT */
/*
 * Superblock layer: compute a layout for a region, seal (checksum) a
 * superblock, and validate one read from an untrusted region.
 */
#ifndef SHMFS_SUPER_H
#define SHMFS_SUPER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmfs/format.h"

struct shmfs_region;

/* What mkfs asks for; zero fields take defaults. */
struct shmfs_mkfs_params {
	uint64_t alloc_unit;    /* 0: the region's mapping alignment */
	uint64_t log_size;      /* 0: region/16, clamped to [1 MiB, 1 GiB] */
	uint32_t max_hosts;     /* 0: SHMFS_DEFAULT_HOSTS */
	uint32_t lease_ms;      /* 0: SHMFS_DEFAULT_LEASE_MS */
	uint32_t heartbeat_ms;  /* 0: SHMFS_DEFAULT_HEARTBEAT_MS */
	const char *label;      /* NULL: empty */
	bool have_uuid;
	uint8_t uuid[16];       /* used if have_uuid, else random */
};

/* Fill sb with a complete, sealed superblock for a region of region_size
 * bytes whose mapping alignment is map_align.  Returns 0, or -EINVAL /
 * -ENOSPC with one line in err. */
int shmfs_super_layout(uint64_t region_size, uint64_t map_align,
		       const struct shmfs_mkfs_params *p, struct shmfs_super *sb,
		       char *err, size_t errlen);

/* Compute and store sb_checksum. */
void shmfs_super_seal(struct shmfs_super *sb);

/*
 * Validate a superblock copy (never the region in place).  region_size is
 * the size of the region it was read from.  Returns:
 *   0                  valid
 *   -ENODATA           no shmfs magic: not a shmfs region
 *   -EUCLEAN           magic present but checksum or geometry is wrong
 *   -EPROTONOSUPPORT   a newer format version
 *   -EOPNOTSUPP        unknown incompatible feature bits
 *   -EFBIG             the region is smaller than the filesystem
 * with one line in err.
 */
int shmfs_super_check(const struct shmfs_super *sb, uint64_t region_size,
		      char *err, size_t errlen);

/*
 * Read the superblock of a region: the primary if it validates, else the
 * backup.  *used is 0 (primary) or 1 (backup).  Errors as for
 * shmfs_super_check (the primary's error when both are bad, unless the
 * backup got further).  bad_copy_err, if given, receives why the other copy
 * was rejected ("" when both are good).
 */
int shmfs_super_read(const struct shmfs_region *r, struct shmfs_super *sb, int *used,
		     char *err, size_t errlen, char *other_err, size_t other_errlen);

/* Write sb to both the primary and the backup location. */
void shmfs_super_write(struct shmfs_region *r, const struct shmfs_super *sb);

/* Host slot i of a validated superblock's host table. */
static inline struct shmfs_host *shmfs_host_slot(uint8_t *base, const struct shmfs_super *sb,
						 uint32_t i)
{
	return (struct shmfs_host *)(base + sb->sb_hosts_off + (uint64_t)i * SHMFS_HOST_SLOT_SIZE);
}

#endif /* SHMFS_SUPER_H */
