/* SPDX-License-Identifier: MIT */
/* Superblock and record format: round trips, every bit flip detected,
 * version and feature gates, backup fallback, old-mkfs records rejected. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "shmfs/core.h"
#include "shmfs/log.h"
#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

#define REGION (64ull << 20)

static void test_layout(void)
{
	struct shmfs_mkfs_params p = { 0 };
	struct shmfs_super sb;
	char err[256];

	CHECK_RC(shmfs_super_layout(REGION, 4096, &p, &sb, err, sizeof(err)), 0);
	CHECK_RC(shmfs_super_check(&sb, REGION, err, sizeof(err)), 0);
	CHECK(sb.sb_alloc_unit == 4096, "default unit is the mapping alignment");
	CHECK(sb.sb_data_off % sb.sb_alloc_unit == 0, "data aligned");
	CHECK(sb.sb_log_off >= SHMFS_HOSTS_OFF + SHMFS_DEFAULT_HOSTS * SHMFS_HOST_SLOT_SIZE,
	      "log after hosts");
	CHECK(sb.sb_data_off + sb.sb_data_size <= REGION, "data inside region");

	/* 2 MiB mapping alignment: 2 MiB units by default. */
	CHECK_RC(shmfs_super_layout(REGION, 2 << 20, &p, &sb, err, sizeof(err)), 0);
	CHECK(sb.sb_alloc_unit == 2u << 20 && sb.sb_data_off % (2 << 20) == 0, "2M unit");

	/* Bad parameters are refused with a message. */
	p.alloc_unit = 3000;
	CHECK_RC(shmfs_super_layout(REGION, 4096, &p, &sb, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "power of two"), "message: %s", err);
	p.alloc_unit = 4096;
	CHECK_RC(shmfs_super_layout(REGION, 2 << 20, &p, &sb, err, sizeof(err)), -EINVAL);
	p.alloc_unit = 0;
	p.log_size = REGION;
	CHECK_RC(shmfs_super_layout(REGION, 4096, &p, &sb, err, sizeof(err)), -ENOSPC);
	CHECK(strstr(err, "too small"), "message: %s", err);
	p.log_size = 0;
	p.max_hosts = SHMFS_MAX_HOSTS + 1;
	CHECK_RC(shmfs_super_layout(REGION, 4096, &p, &sb, err, sizeof(err)), -EINVAL);
}

static void test_sb_bitflips(void)
{
	struct shmfs_mkfs_params p = { .label = "flip" };
	struct shmfs_super sb, t;
	char err[256];
	int undetected = 0;

	CHECK_RC(shmfs_super_layout(REGION, 4096, &p, &sb, err, sizeof(err)), 0);
	for (unsigned bit = 0; bit < sizeof(sb) * 8; bit++) {
		t = sb;
		((uint8_t *)&t)[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (shmfs_super_check(&t, REGION, err, sizeof(err)) == 0)
			undetected++;
	}
	CHECK(undetected == 0, "%d superblock bit flips were not detected", undetected);

	/* Gates: newer version, unknown incompatible feature, region too small. */
	t = sb;
	t.sb_version = SHMFS_VERSION + 1;
	shmfs_super_seal(&t);
	CHECK_RC(shmfs_super_check(&t, REGION, err, sizeof(err)), -EPROTONOSUPPORT);
	CHECK(strstr(err, "newer"), "message: %s", err);
	t = sb;
	t.sb_feature_incompat = 1ull << 40;
	shmfs_super_seal(&t);
	CHECK_RC(shmfs_super_check(&t, REGION, err, sizeof(err)), -EOPNOTSUPP);
	CHECK_RC(shmfs_super_check(&sb, REGION / 2, err, sizeof(err)), -EFBIG);
	/* A geometry that lies, even with a valid checksum, is refused. */
	t = sb;
	t.sb_data_size = REGION;
	shmfs_super_seal(&t);
	CHECK_RC(shmfs_super_check(&t, REGION, err, sizeof(err)), -EUCLEAN);
	t = sb;
	t.sb_log_off = SHMFS_HOSTS_OFF;
	shmfs_super_seal(&t);
	CHECK_RC(shmfs_super_check(&t, REGION, err, sizeof(err)), -EUCLEAN);
	memset(&t, 0, sizeof(t));
	CHECK_RC(shmfs_super_check(&t, REGION, err, sizeof(err)), -ENODATA);
}

static void test_format_open(void)
{
	struct shmfs_region r;
	struct shmfs_mkfs_params p = { .label = "unit" };
	struct shmfs_super sb, got;
	struct shmfs_fs_opts o = { .readonly = true };
	struct shmfs_fs *fs = NULL;
	char err[256], other[256];
	int used = -1;

	CHECK_RC(shmfs_region_open_mem(REGION, 4096, &r), 0);
	CHECK_RC(shmfs_fs_format(&r, &p, 0755, 1000, 1000, &sb, err, sizeof(err)), 0);
	CHECK_RC(shmfs_super_read(&r, &got, &used, err, sizeof(err), other, sizeof(other)), 0);
	CHECK(used == 0 && !memcmp(&got, &sb, sizeof(sb)), "primary read back");

	CHECK_RC(shmfs_fs_open(&r, &o, &fs, err, sizeof(err)), 0);
	if (fs) {
		rcu_read_lock();
		struct shmfs_inode *root = shmfs_ns_iget(fs->ns, SHMFS_ROOT_INO);
		CHECK(root && S_ISDIR(root->attr->mode) && (root->attr->mode & 07777) == 0755 &&
		      root->attr->uid == 1000 && root->attr->nlink == 2, "root attributes");
		rcu_read_unlock();
		CHECK(fs->stats.records == 1 && fs->seq == 2, "one record replayed");
		shmfs_fs_close(fs);
	}

	/* Damage the primary: the backup is used and the primary's fault named. */
	r.base[100] ^= 0x10;
	CHECK_RC(shmfs_super_read(&r, &got, &used, err, sizeof(err), other, sizeof(other)), 0);
	CHECK(used == 1 && strstr(other, "primary") && strstr(other, "checksum"), "backup: %s",
	      other);
	/* Both damaged: a clear error. */
	r.base[SHMFS_BACKUP_OFF + 100] ^= 0x10;
	CHECK_RC(shmfs_super_read(&r, &got, &used, err, sizeof(err), other, sizeof(other)),
		 -EUCLEAN);
	o.readonly = false;
	CHECK(shmfs_fs_open(&r, &o, &fs, err, sizeof(err)) == -EUCLEAN, "open refuses");

	/* Records of an earlier mkfs with the same UUID never validate. */
	uint8_t old_log[4096];
	p.have_uuid = true;
	memcpy(p.uuid, sb.sb_uuid, 16);
	CHECK_RC(shmfs_fs_format(&r, &p, 0755, 0, 0, &sb, err, sizeof(err)), 0);
	memcpy(old_log, r.base + sb.sb_log_off, sizeof(old_log));
	CHECK_RC(shmfs_fs_format(&r, &p, 0755, 0, 0, &got, err, sizeof(err)), 0);
	CHECK(!memcmp(sb.sb_uuid, got.sb_uuid, 16) && sb.sb_log_seed != got.sb_log_seed,
	      "same uuid, new seed");
	memcpy(r.base + got.sb_log_off, old_log, sizeof(old_log));
	struct shmfs_log log = { r.base + got.sb_log_off, got.sb_log_size, got.sb_log_seed };
	struct shmfs_log_entry e;
	static uint8_t buf[SHMFS_LR_PAYLOAD_MAX];
	CHECK(shmfs_log_read(&log, 0, 1, &e, buf) == SHMFS_LOG_BAD, "old record rejected");
	shmfs_region_close(&r);
}

static void test_record_bitflips(void)
{
	struct shmfs_region r;
	struct shmfs_mkfs_params p = { 0 };
	struct shmfs_super sb;
	static uint8_t payload[SHMFS_LR_PAYLOAD_MAX], buf[SHMFS_LR_PAYLOAD_MAX];
	char err[256];
	int accepted_changed = 0;

	CHECK_RC(shmfs_region_open_mem(REGION, 4096, &r), 0);
	CHECK_RC(shmfs_fs_format(&r, &p, 0755, 0, 0, &sb, err, sizeof(err)), 0);
	struct shmfs_log log = { r.base + sb.sb_log_off, sb.sb_log_size, sb.sb_log_seed };
	struct shmfs_log_entry e;

	/* Append a symlink create after the root record. */
	CHECK(shmfs_log_read(&log, 0, 1, &e, buf) == SHMFS_LOG_REC, "root record");
	uint64_t pos = e.next_pos, next;
	uint32_t len = shmfs_rec_create(payload, 2, 1, S_IFLNK | 0777, 0, 0, 0, "link", 4,
					"/some/target", 12);
	struct shmfs_log_rec h = { .lr_type = SHMFS_LR_CREATE, .lr_len = len, .lr_time = 42 };
	CHECK_RC(shmfs_log_append(&log, pos, 2, &h, payload, &next), 0);
	CHECK(shmfs_log_read(&log, pos, 2, &e, buf) == SHMFS_LOG_REC, "appended record reads");
	CHECK(!memcmp(buf, payload, len) && e.hdr.lr_time == 42, "payload round trip");
	CHECK_RC(shmfs_lr_check_shape(&e.hdr, buf, 4096, err, sizeof(err)), 0);
	CHECK(shmfs_log_read(&log, next, 3, &e, buf) == SHMFS_LOG_END, "end after it");
	/* Appending at a published slot fails: a second writer cannot overwrite. */
	CHECK_RC(shmfs_log_append(&log, pos, 2, &h, payload, &next), -ESTALE);

	uint8_t *rec = log.base + pos;
	size_t bytes = SHMFS_LR_HDR_SIZE + len;
	for (size_t bit = 0; bit < bytes * 8; bit++) {
		rec[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		enum shmfs_log_status st = shmfs_log_read(&log, pos, 2, &e, buf);
		if (st == SHMFS_LOG_REC)
			accepted_changed++;
		rec[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
	CHECK(accepted_changed == 0, "%d record bit flips accepted", accepted_changed);
	CHECK(shmfs_log_read(&log, pos, 2, &e, buf) == SHMFS_LOG_REC, "restored");

	/* An unpublished record (payload written, seq still 0) is the end. */
	memset(rec, 0, 8);
	CHECK(shmfs_log_read(&log, pos, 2, &e, buf) == SHMFS_LOG_END, "torn tail is the end");
	/* A seal steps over the slot; the next record lives SEAL_SKIP later. */
	CHECK_RC(shmfs_log_seal(&log, pos, 2, &next), 0);
	CHECK(next == pos + SHMFS_LOG_SEAL_SKIP, "seal skip");
	CHECK(shmfs_log_read(&log, pos, 2, &e, buf) == SHMFS_LOG_SEALED && e.next_pos == next,
	      "sealed slot");
	CHECK_RC(shmfs_log_append(&log, pos, 2, &h, payload, &next), -ESTALE);
	/* Shape checks catch semantic nonsense with valid checksums. */
	struct shmfs_log_rec bad = { .lr_type = SHMFS_LR_CREATE, .lr_len = len };
	shmfs_rec_create(payload, 2, 1, S_IFREG | 0644, 0, 0, 0, "a/b", 3, NULL, 0);
	bad.lr_len = sizeof(struct shmfs_lr_create) + 3;
	CHECK_RC(shmfs_lr_check_shape(&bad, payload, 4096, err, sizeof(err)), -EUCLEAN);
	shmfs_rec_create(payload, 2, 1, S_IFREG | 0644, 0, 0, 0, "..", 2, NULL, 0);
	bad.lr_len = sizeof(struct shmfs_lr_create) + 2;
	CHECK_RC(shmfs_lr_check_shape(&bad, payload, 4096, err, sizeof(err)), -EUCLEAN);
	bad.lr_type = 99;
	CHECK_RC(shmfs_lr_check_shape(&bad, payload, 4096, err, sizeof(err)), -EUCLEAN);
	shmfs_region_close(&r);
}

int main(void)
{
	rcu_register_thread();
	test_layout();
	test_sb_bitflips();
	test_format_open();
	test_record_bitflips();
	rcu_unregister_thread();
	return check_done("test_format");
}
