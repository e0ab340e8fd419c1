/* SPDX-License-Identifier: MIT */
/*
 * Superblock: layout computation at mkfs, sealing, and validation.
 *
 * A superblock read from a region is untrusted.  shmfs_super_check() is
 * the one gate: after it returns 0, every offset and size in the copy is
 * known to lie inside the region, areas do not overlap and are aligned, so
 * the layers above may compute addresses from it without further checks.
 * Validation always runs on a private copy, never on the region in place,
 * so a peer rewriting the superblock concurrently cannot race it.
 */
#include "shmfs/super.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "shmfs/region.h"
#include "shmfs/util.h"

#define SB_CSUM_LEN offsetof(struct shmfs_super, sb_checksum)

void shmfs_super_seal(struct shmfs_super *sb)
{
	sb->sb_checksum = shmfs_hash(sb, SB_CSUM_LEN, 0);
}

static uint64_t default_log_size(uint64_t region_size)
{
	uint64_t s = region_size / 16;

	s = SHMFS_MAX(s, 1 * SHMFS_MIB);
	s = SHMFS_MIN(s, 1 * SHMFS_GIB);
	return shmfs_round_down(s, SHMFS_PAGE);
}

int shmfs_super_layout(uint64_t region_size, uint64_t map_align,
		       const struct shmfs_mkfs_params *p, struct shmfs_super *sb,
		       char *err, size_t errlen)
{
	uint64_t unit = p->alloc_unit ? p->alloc_unit : map_align;
	uint32_t hosts = p->max_hosts ? p->max_hosts : SHMFS_DEFAULT_HOSTS;
	uint64_t log_size, hosts_end, log_end, data_off;
	char a[32], b[32];
	int rc;

	if (!shmfs_is_pow2(map_align) || map_align < SHMFS_PAGE) {
		shmfs_errf(err, errlen, "mapping alignment %" PRIu64 " is not a power of two >= 4096",
			   map_align);
		return -EINVAL;
	}
	if (!shmfs_is_pow2(unit) || unit < SHMFS_PAGE || unit > SHMFS_MAX_ALLOC_UNIT) {
		shmfs_errf(err, errlen,
			   "allocation unit %" PRIu64 " must be a power of two from 4 KiB to 1 GiB",
			   unit);
		return -EINVAL;
	}
	if (unit < map_align) {
		shmfs_errf(err, errlen,
			   "allocation unit %s is smaller than the region's mapping alignment %s",
			   shmfs_fmt_size(unit, a, sizeof(a)), shmfs_fmt_size(map_align, b, sizeof(b)));
		return -EINVAL;
	}
	if (hosts < 1 || hosts > SHMFS_MAX_HOSTS) {
		shmfs_errf(err, errlen, "max hosts %u must be between 1 and %u", hosts,
			   SHMFS_MAX_HOSTS);
		return -EINVAL;
	}
	if (region_size % SHMFS_PAGE) {
		shmfs_errf(err, errlen, "region size %" PRIu64 " is not a multiple of 4096",
			   region_size);
		return -EINVAL;
	}
	log_size = p->log_size ? p->log_size : default_log_size(region_size);
	if (log_size % SHMFS_PAGE || log_size < SHMFS_MIN_LOG || log_size > SHMFS_MAX_LOG) {
		shmfs_errf(err, errlen,
			   "log size %" PRIu64 " must be a multiple of 4 KiB between %s and %s",
			   log_size, shmfs_fmt_size(SHMFS_MIN_LOG, a, sizeof(a)),
			   shmfs_fmt_size(SHMFS_MAX_LOG, b, sizeof(b)));
		return -EINVAL;
	}

	hosts_end = shmfs_round_up(SHMFS_HOSTS_OFF + (uint64_t)hosts * SHMFS_HOST_SLOT_SIZE,
				   SHMFS_PAGE);
	log_end = hosts_end + log_size;
	data_off = shmfs_round_up(log_end, unit);
	if (data_off + unit > region_size) {
		shmfs_errf(err, errlen,
			   "region of %s is too small: metadata (log %s, %u hosts) needs %s plus "
			   "at least one %s allocation unit",
			   shmfs_fmt_size(region_size, a, sizeof(a)),
			   shmfs_fmt_size(log_size, b, sizeof(b)), hosts,
			   shmfs_fmt_size(data_off, (char[32]){0}, 32),
			   shmfs_fmt_size(unit, (char[32]){0}, 32));
		return -ENOSPC;
	}

	memset(sb, 0, sizeof(*sb));
	sb->sb_magic = SHMFS_SB_MAGIC;
	sb->sb_version = SHMFS_VERSION;
	if (p->have_uuid) {
		memcpy(sb->sb_uuid, p->uuid, 16);
	} else {
		rc = shmfs_random(sb->sb_uuid, 16);
		if (rc)
			return rc;
		sb->sb_uuid[6] = (uint8_t)((sb->sb_uuid[6] & 0x0f) | 0x40); /* v4 */
		sb->sb_uuid[8] = (uint8_t)((sb->sb_uuid[8] & 0x3f) | 0x80);
	}
	if (p->label) {
		if (strlen(p->label) >= SHMFS_LABEL_MAX) {
			shmfs_errf(err, errlen, "label is longer than %u bytes", SHMFS_LABEL_MAX - 1);
			return -EINVAL;
		}
		strncpy(sb->sb_label, p->label, SHMFS_LABEL_MAX - 1);
	}
	sb->sb_region_size = region_size;
	sb->sb_map_align = map_align;
	sb->sb_alloc_unit = unit;
	sb->sb_ctl_off = SHMFS_CTL_OFF;
	sb->sb_hosts_off = SHMFS_HOSTS_OFF;
	sb->sb_max_hosts = hosts;
	sb->sb_host_slot_size = SHMFS_HOST_SLOT_SIZE;
	sb->sb_log_off = hosts_end;
	sb->sb_log_size = log_size;
	sb->sb_backup_off = SHMFS_BACKUP_OFF;
	sb->sb_data_off = data_off;
	sb->sb_data_size = shmfs_round_down(region_size - data_off, unit);
	do {
		rc = shmfs_random(&sb->sb_log_seed, sizeof(sb->sb_log_seed));
		if (rc)
			return rc;
	} while (!sb->sb_log_seed);
	sb->sb_mkfs_time = shmfs_now_ns();
	sb->sb_lease_ms = p->lease_ms ? p->lease_ms : SHMFS_DEFAULT_LEASE_MS;
	sb->sb_heartbeat_ms = p->heartbeat_ms ? p->heartbeat_ms
					      : SHMFS_MIN(SHMFS_DEFAULT_HEARTBEAT_MS, sb->sb_lease_ms / 4);
	if (!sb->sb_heartbeat_ms)
		sb->sb_heartbeat_ms = 1;
	if (sb->sb_heartbeat_ms * 2 > sb->sb_lease_ms) {
		shmfs_errf(err, errlen, "lease %u ms must be at least twice the heartbeat %u ms",
			   sb->sb_lease_ms, sb->sb_heartbeat_ms);
		return -EINVAL;
	}
	sb->sb_root_ino = SHMFS_ROOT_INO;
	shmfs_super_seal(sb);
	return 0;
}

#define BAD(...) do { shmfs_errf(err, errlen, __VA_ARGS__); return -EUCLEAN; } while (0)

int shmfs_super_check(const struct shmfs_super *sb, uint64_t region_size,
		      char *err, size_t errlen)
{
	uint64_t unit = sb->sb_alloc_unit, hosts_end, log_end;

	if (sb->sb_magic != SHMFS_SB_MAGIC) {
		shmfs_errf(err, errlen, "no shmfs superblock (bad magic)");
		return -ENODATA;
	}
	if (shmfs_hash(sb, SB_CSUM_LEN, 0) != sb->sb_checksum)
		BAD("superblock checksum mismatch");
	if (sb->sb_version > SHMFS_VERSION) {
		shmfs_errf(err, errlen,
			   "format version %u is newer than this shmfs supports (%u): upgrade shmfs",
			   sb->sb_version, SHMFS_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (sb->sb_version < 1)
		BAD("format version 0 is invalid");
	if (sb->sb_feature_incompat & ~SHMFS_FEATURE_INCOMPAT_SUPP) {
		shmfs_errf(err, errlen, "unknown incompatible features 0x%" PRIx64,
			   sb->sb_feature_incompat & ~SHMFS_FEATURE_INCOMPAT_SUPP);
		return -EOPNOTSUPP;
	}
	if (sb->sb_flags)
		BAD("unknown superblock flags 0x%x", sb->sb_flags);
	if (sb->sb_label[SHMFS_LABEL_MAX - 1])
		BAD("label is not NUL-terminated");
	if (!shmfs_all_zero(sb->sb_reserved, sizeof(sb->sb_reserved)))
		BAD("reserved superblock fields are not zero");
	if (!shmfs_is_pow2(sb->sb_map_align) || sb->sb_map_align < SHMFS_PAGE)
		BAD("mapping alignment %" PRIu64 " is not a power of two >= 4096", sb->sb_map_align);
	if (!shmfs_is_pow2(unit) || unit < sb->sb_map_align || unit > SHMFS_MAX_ALLOC_UNIT)
		BAD("allocation unit %" PRIu64 " is invalid", unit);
	if (sb->sb_region_size % SHMFS_PAGE || sb->sb_region_size < SHMFS_HOSTS_OFF)
		BAD("region size %" PRIu64 " is invalid", sb->sb_region_size);
	if (sb->sb_ctl_off != SHMFS_CTL_OFF || sb->sb_hosts_off != SHMFS_HOSTS_OFF ||
	    sb->sb_backup_off != SHMFS_BACKUP_OFF)
		BAD("fixed area offsets are wrong");
	if (sb->sb_host_slot_size != SHMFS_HOST_SLOT_SIZE || sb->sb_max_hosts < 1 ||
	    sb->sb_max_hosts > SHMFS_MAX_HOSTS)
		BAD("host table geometry is invalid (%u slots of %u bytes)", sb->sb_max_hosts,
		    sb->sb_host_slot_size);
	hosts_end = SHMFS_HOSTS_OFF + (uint64_t)sb->sb_max_hosts * SHMFS_HOST_SLOT_SIZE;
	if (sb->sb_log_off % SHMFS_PAGE || sb->sb_log_off < hosts_end)
		BAD("log offset %" PRIu64 " overlaps the host table", sb->sb_log_off);
	if (sb->sb_log_size % SHMFS_PAGE || sb->sb_log_size < SHMFS_MIN_LOG ||
	    sb->sb_log_size > SHMFS_MAX_LOG)
		BAD("log size %" PRIu64 " is invalid", sb->sb_log_size);
	/* Before adding them up: an offset near 2^64 would wrap around. */
	if (sb->sb_log_off > sb->sb_region_size ||
	    sb->sb_log_size > sb->sb_region_size - sb->sb_log_off)
		BAD("log offset %" PRIu64 " and size %" PRIu64 " do not fit the region",
		    sb->sb_log_off, sb->sb_log_size);
	log_end = sb->sb_log_off + sb->sb_log_size;
	if (sb->sb_data_off % unit || sb->sb_data_off < log_end)
		BAD("data area offset %" PRIu64 " overlaps the log or is unaligned", sb->sb_data_off);
	if (sb->sb_data_size % unit || sb->sb_data_size == 0 ||
	    sb->sb_data_off > sb->sb_region_size ||
	    sb->sb_data_size > sb->sb_region_size - sb->sb_data_off)
		BAD("data area size %" PRIu64 " does not fit the region", sb->sb_data_size);
	if (!sb->sb_log_seed)
		BAD("log seed is zero");
	if (sb->sb_lease_ms < 2ull * sb->sb_heartbeat_ms || sb->sb_heartbeat_ms == 0 ||
	    sb->sb_lease_ms > 3600 * 1000)
		BAD("lease %u ms / heartbeat %u ms are invalid", sb->sb_lease_ms,
		    sb->sb_heartbeat_ms);
	if (sb->sb_root_ino != SHMFS_ROOT_INO)
		BAD("root inode %" PRIu64 " is not %u", sb->sb_root_ino, SHMFS_ROOT_INO);
	if (sb->sb_region_size > region_size) {
		char a[32], b[32];
		shmfs_errf(err, errlen, "the filesystem needs %s but the region has only %s",
			   shmfs_fmt_size(sb->sb_region_size, a, sizeof(a)),
			   shmfs_fmt_size(region_size, b, sizeof(b)));
		return -EFBIG;
	}
	return 0;
}

/* How far a check got: a backup that fails later is the better report. */
static int severity(int rc)
{
	switch (rc) {
	case 0: return 0;
	case -EFBIG: return 1;
	case -EOPNOTSUPP: return 2;
	case -EPROTONOSUPPORT: return 3;
	case -EUCLEAN: return 4;
	default: return 5;
	}
}

int shmfs_super_read(const struct shmfs_region *r, struct shmfs_super *sb, int *used,
		     char *err, size_t errlen, char *other_err, size_t other_errlen)
{
	struct shmfs_super copy[2];
	char why[2][200];
	int rc[2];

	if (other_err && other_errlen)
		other_err[0] = 0;
	if (r->size < SHMFS_HOSTS_OFF) {
		shmfs_errf(err, errlen, "region of %" PRIu64 " bytes is too small for shmfs", r->size);
		return -ENODATA;
	}
	memcpy(&copy[0], r->base + SHMFS_SB_OFF, sizeof(copy[0]));
	memcpy(&copy[1], r->base + SHMFS_BACKUP_OFF, sizeof(copy[1]));
	for (int i = 0; i < 2; i++) {
		why[i][0] = 0;
		rc[i] = shmfs_super_check(&copy[i], r->size, why[i], sizeof(why[i]));
	}
	for (int i = 0; i < 2; i++) {
		if (rc[i] == 0) {
			*sb = copy[i];
			if (used)
				*used = i;
			if (rc[!i] && other_err)
				shmfs_errf(other_err, other_errlen, "%s superblock: %s",
					   i ? "primary" : "backup", why[!i]);
			return 0;
		}
	}
	/* Both bad: report the copy that got further. */
	int best = severity(rc[1]) < severity(rc[0]) ? 1 : 0;
	shmfs_errf(err, errlen, "%s", why[best]);
	if (other_err)
		shmfs_errf(other_err, other_errlen, "%s superblock: %s", best ? "primary" : "backup",
			   why[!best]);
	if (used)
		*used = best;
	return rc[best];
}

void shmfs_super_write(struct shmfs_region *r, const struct shmfs_super *sb)
{
	/* Backup first: a crash in between leaves one valid copy. */
	memcpy(r->base + SHMFS_BACKUP_OFF, sb, sizeof(*sb));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	memcpy(r->base + SHMFS_SB_OFF, sb, sizeof(*sb));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}
