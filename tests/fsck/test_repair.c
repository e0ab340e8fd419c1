/* SPDX-License-Identifier: MIT */
/*
 * The repair primitives of fs/repair.c, one by one, over a memory region:
 * each fixes exactly what it is for, refuses what it must, and leaves a
 * region that shmfs_fs_open replays without complaint.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "../unit/check.h"
#include "shmfs/coord.h"
#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/repair.h"
#include "shmfs/util.h"

static struct shmfs_region r;
static struct shmfs_super sb;
static struct shmfs_log lg;
static uint8_t buf[SHMFS_LR_PAYLOAD_MAX];

static void format(void)
{
	struct shmfs_mkfs_params p = { .log_size = 1 << 20, .max_hosts = 8, .lease_ms = 100,
				       .heartbeat_ms = 20 };
	char err[256];

	if (r.base)
		shmfs_region_close(&r);
	CHECK_RC(shmfs_region_open_mem(16 << 20, 4096, &r), 0);
	CHECK_RC(shmfs_fs_format(&r, &p, 0755, 0, 0, &sb, err, sizeof(err)), 0);
	lg = (struct shmfs_log){ r.base + sb.sb_log_off, sb.sb_log_size, sb.sb_log_seed };
}

static struct shmfs_fs *open_fs(bool join)
{
	struct shmfs_fs_opts o = { .join = join, .readonly = !join, .host_name = "t" };
	struct shmfs_fs *fs = NULL;
	char err[256];

	CHECK_RC(shmfs_fs_open(&r, &o, &fs, err, sizeof(err)), 0);
	return fs;
}

/* Files f0..f(n-1) in the root; returns the log position of each record. */
static void make_files(int n, uint64_t *pos)
{
	struct shmfs_fs *fs = open_fs(true);
	char name[16];

	CHECK_RC(shmfs_fs_lock(fs), 0);
	for (int i = 0; i < n; i++) {
		int l = snprintf(name, sizeof(name), "f%d", i);
		if (pos)
			pos[i] = fs->pos;
		CHECK_RC(shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, buf,
					 shmfs_rec_create(buf, fs->ns->next_ino, SHMFS_ROOT_INO,
							  S_IFREG | 0644, 0, 0, 0, name, (size_t)l,
							  NULL, 0)), 0);
	}
	shmfs_fs_unlock(fs);
	shmfs_fs_close(fs);
}

static bool exists(struct shmfs_fs *fs, const char *name)
{
	rcu_read_lock();
	bool found = shmfs_ns_lookup(fs->ns, SHMFS_ROOT_INO, name, strlen(name)) != NULL;
	rcu_read_unlock();
	return found;
}

static void test_noop(void)
{
	uint64_t pos[4];
	struct shmfs_log_entry e;

	format();
	make_files(4, pos);
	/* Record 3 (f1) becomes a NOOP of the same length: f1 is gone, the
	 * records after it still apply. */
	CHECK(shmfs_log_read(&lg, pos[1], 3, &e, buf) == SHMFS_LOG_REC, "read");
	uint64_t stride = e.next_pos - pos[1];
	CHECK_RC(shmfs_repair_noop(&lg, pos[1], 3, stride, &e.hdr, false), 0);
	CHECK(shmfs_log_read(&lg, pos[1], 3, &e, buf) == SHMFS_LOG_REC &&
	      e.hdr.lr_type == SHMFS_LR_NOOP && e.next_pos - pos[1] == stride, "noop in place");
	struct shmfs_fs *fs = open_fs(false);
	CHECK(!fs->stats.stuck && fs->stats.rejected == 0, "replays cleanly");
	CHECK(exists(fs, "f0") && !exists(fs, "f1") && exists(fs, "f2") && exists(fs, "f3"),
	      "only f1 is gone");
	shmfs_fs_close(fs);
	/* Lengths that cannot be a record are refused. */
	CHECK_RC(shmfs_repair_noop(&lg, pos[1], 3, 36, NULL, true), -EINVAL);
	CHECK_RC(shmfs_repair_noop(&lg, pos[1], 3, 44, NULL, true), -EINVAL);
	CHECK_RC(shmfs_repair_noop(&lg, 4, 3, 40, NULL, true), -EINVAL);
	CHECK_RC(shmfs_repair_noop(&lg, lg.size - 32, 3, 40, NULL, true), -EINVAL);
}

static void test_seq(void)
{
	uint64_t pos[3];
	struct shmfs_log_entry e;

	format();
	make_files(3, pos);
	/* A flipped bit in record 3's lr_seq: replay stops there. */
	*(uint64_t *)(lg.base + pos[1]) ^= 1ull << 20;
	CHECK(shmfs_log_read(&lg, pos[1], 3, &e, buf) == SHMFS_LOG_BAD, "bad");
	CHECK_RC(shmfs_repair_probe_seq(&lg, pos[1], 4, &e, buf), -EUCLEAN);
	CHECK_RC(shmfs_repair_probe_seq(&lg, pos[1], 3, &e, buf), 0);
	CHECK(e.next_pos == pos[2], "probe finds the stride");
	CHECK_RC(shmfs_repair_set_seq(&lg, pos[1], 3), 0);
	struct shmfs_fs *fs = open_fs(false);
	CHECK(!fs->stats.stuck && exists(fs, "f2"), "replays to the end");
	shmfs_fs_close(fs);
	CHECK_RC(shmfs_repair_set_seq(&lg, 12, 3), -EINVAL);
}

static void test_cut(void)
{
	uint64_t pos[3];

	format();
	make_files(3, pos);
	/* Garbage over the last record and beyond: cut the log there. */
	memset(lg.base + pos[2], 0x5a, 5000);
	struct shmfs_fs *fs = open_fs(false);
	CHECK(fs->stats.stuck, "stuck on garbage");
	shmfs_fs_close(fs);
	CHECK_RC(shmfs_repair_log_cut(&r, &sb, pos[2], sb.sb_log_size), 0);
	for (uint64_t i = pos[2]; i < pos[2] + 5000; i++)
		if (lg.base[i]) {
			CHECK(0, "byte %" PRIu64 " not zero", i);
			break;
		}
	fs = open_fs(true);
	CHECK(!fs->stats.stuck && exists(fs, "f1") && !exists(fs, "f2"), "ends before f2");
	CHECK(fs->pos == pos[2], "appends go where the cut was");
	shmfs_fs_close(fs);
	/* And the log takes new records there. */
	fs = open_fs(true);
	CHECK_RC(shmfs_fs_lock(fs), 0);
	CHECK_RC(shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, buf,
				 shmfs_rec_create(buf, fs->ns->next_ino, SHMFS_ROOT_INO,
						  S_IFREG | 0644, 0, 0, 0, "g", 1, NULL, 0)), 0);
	shmfs_fs_unlock(fs);
	shmfs_fs_close(fs);
	CHECK_RC(shmfs_repair_log_cut(&r, &sb, 3, sb.sb_log_size), -EINVAL);
	CHECK_RC(shmfs_repair_log_cut(&r, &sb, 8, sb.sb_log_size + 8), -EINVAL);
}

static void test_super_ctl_lock(void)
{
	struct shmfs_super copy;
	char why[200];

	format();
	memset(r.base + 100, 0xff, 8);
	memcpy(&copy, r.base, sizeof(copy));
	CHECK(shmfs_super_check(&copy, r.size, why, sizeof(why)) == -EUCLEAN, "primary bad");
	memcpy(&copy, r.base + SHMFS_BACKUP_OFF, sizeof(copy));
	r.base[SHMFS_SB_OFF + 3000] = 1;
	CHECK_RC(shmfs_repair_super(&r, 0, &copy), 0);
	CHECK(!memcmp(r.base, r.base + SHMFS_BACKUP_OFF, SHMFS_PAGE), "both pages equal");
	copy.sb_log_seed ^= 1; /* no longer valid: refused */
	CHECK_RC(shmfs_repair_super(&r, 1, &copy), -EINVAL);

	struct shmfs_ctl *ctl = (struct shmfs_ctl *)(r.base + SHMFS_CTL_OFF);
	ctl->ctl_magic = 0;
	ctl->ctl_reserved[7] = 9;
	ctl->ctl_lock = (3ull << SHMFS_LOCK_OWNER_SHIFT) | 7;
	CHECK_RC(shmfs_repair_ctl(&r, &sb), 0);
	CHECK(ctl->ctl_magic == SHMFS_CTL_MAGIC && ctl->ctl_reserved[7] == 0, "ctl rewritten");
	CHECK(ctl->ctl_lock == ((3ull << SHMFS_LOCK_OWNER_SHIFT) | 7), "lock untouched");
	CHECK_RC(shmfs_repair_lock_release(&r, &sb, (2ull << SHMFS_LOCK_OWNER_SHIFT) | 7), -EAGAIN);
	CHECK_RC(shmfs_repair_lock_release(&r, &sb, (3ull << SHMFS_LOCK_OWNER_SHIFT) | 7), 0);
	CHECK(ctl->ctl_lock == 7, "free, generation kept");
	/* The next holder takes it without breaking anything. */
	struct shmfs_fs *fs = open_fs(true);
	CHECK_RC(shmfs_fs_lock(fs), 0);
	CHECK(fs->stats.seals == 0 && shmfs_lock_gen(fs->coord.lock_word) == 8, "clean takeover");
	shmfs_fs_unlock(fs);
	shmfs_fs_close(fs);
}

static void test_host_free(void)
{
	format();
	struct shmfs_host *h = shmfs_host_slot(r.base, &sb, 2);
	h->hs_token = 0x1234;
	h->hs_heartbeat = 77;
	h->hs_state = SHMFS_HOST_ACTIVE;
	snprintf(h->hs_name, sizeof(h->hs_name), "dead");
	h->hs_ident_csum = shmfs_host_ident_csum(h);
	CHECK_RC(shmfs_repair_host_free(&r, &sb, 2, 0x9999, 77), -EAGAIN);
	CHECK_RC(shmfs_repair_host_free(&r, &sb, 2, 0x1234, 76), -EBUSY);
	CHECK(h->hs_token == 0x1234 && h->hs_state == SHMFS_HOST_ACTIVE, "given back untouched");
	CHECK_RC(shmfs_repair_host_free(&r, &sb, 2, 0x1234, 77), 0);
	static const uint8_t zeros[SHMFS_HOST_SLOT_SIZE];
	CHECK(!memcmp(h, zeros, sizeof(zeros)), "slot zeroed");
	CHECK_RC(shmfs_repair_host_free(&r, &sb, 8, 0, 0), -EINVAL);
}

static void test_readonly(void)
{
	format();
	r.readonly = true;
	CHECK_RC(shmfs_repair_ctl(&r, &sb), -EROFS);
	CHECK_RC(shmfs_repair_log_cut(&r, &sb, 8, 16), -EROFS);
	CHECK_RC(shmfs_repair_lock_release(&r, &sb, 0), -EROFS);
	CHECK_RC(shmfs_repair_host_free(&r, &sb, 0, 0, 0), -EROFS);
	r.readonly = false;
}

int main(void)
{
	rcu_register_thread();
	test_noop();
	test_seq();
	test_cut();
	test_super_ctl_lock();
	test_host_free();
	test_readonly();
	shmfs_region_close(&r);
	rcu_unregister_thread();
	return check_done("test_repair");
}
