/* SPDX-License-Identifier: MIT */
/*
 * Hostile and broken regions: random bytes in the log, in the whole
 * region, and -- worst -- well-checksummed records with random contents
 * (a peer that knows the seed).  Replay must never crash, loop or apply
 * something impossible; run under ASan/UBSan in CI.
 *
 * Usage: test_garbage [iterations]
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "check.h"
#include "shmfs/core.h"
#include "shmfs/log.h"
#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

#define REGION (8ull << 20)
static uint64_t rng = 0x2545f4914f6cdd1dull;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

static struct shmfs_fs *open_ro(struct shmfs_region *r, int *rc)
{
	struct shmfs_fs_opts o = { .readonly = true };
	struct shmfs_fs *fs = NULL;
	char err[256];

	*rc = shmfs_fs_open(r, &o, &fs, err, sizeof(err));
	return fs;
}

/* Sanity that must hold whatever the log said. */
static void invariants(struct shmfs_fs *fs)
{
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	uint64_t used = 0;

	rcu_read_lock();
	/* (cds_lfht_for_each_entry ends on container_of(NULL): UBSan) */
	cds_lfht_for_each(fs->ns->inodes, &it, node) {
		struct shmfs_inode *ip = caa_container_of(node, struct shmfs_inode, hnode);
		for (uint32_t k = 0; ip->ext && k < ip->ext->n; k++) {
			struct shmfs_extent *e = &ip->ext->e[k];
			CHECK(e->doff + e->len <= fs->sb.sb_data_size, "extent outside data area");
			used += e->len / fs->sb.sb_alloc_unit;
		}
	}
	rcu_read_unlock();
	CHECK(used == fs->ns->alloc.nunits - fs->ns->alloc.nfree, "allocator agrees with extents");
}

int main(int argc, char **argv)
{
	unsigned iters = argc > 1 ? (unsigned)strtoul(argv[1], NULL, 0) : 300;
	struct shmfs_region r;
	struct shmfs_mkfs_params p = { .max_hosts = 4, .log_size = 1 << 20 };
	struct shmfs_super sb;
	static uint8_t payload[SHMFS_LR_PAYLOAD_MAX];
	char err[256];
	unsigned opened = 0, applied = 0, rejected = 0;
	int rc;

	rcu_register_thread();
	CHECK_RC(shmfs_region_open_mem(REGION, 4096, &r), 0);
	for (unsigned it = 0; it < iters; it++) {
		CHECK_RC(shmfs_fs_format(&r, &p, 0755, 0, 0, &sb, err, sizeof(err)), 0);
		struct shmfs_log log = { r.base + sb.sb_log_off, sb.sb_log_size, sb.sb_log_seed };
		uint64_t pos = shmfs_lr_stride(sizeof(struct shmfs_lr_create)), seq = 2, next;

		switch (it % 4) {
		case 0: /* random bytes over part of the log */
			fill(log.base + rnd() % 4096, 1 + rnd() % 8192);
			break;
		case 1: /* random bytes over the whole metadata area, superblocks spared */
			fill(r.base + SHMFS_CTL_OFF, 4096);
			fill(r.base + SHMFS_HOSTS_OFF, (size_t)(sb.sb_log_off + 65536 - SHMFS_HOSTS_OFF));
			break;
		case 2: /* hostile: records with valid checksums and random contents */
		case 3:
			for (int k = 0; k < 200; k++) {
				struct shmfs_log_rec h = { .lr_type = (uint16_t)(rnd() % 12),
							   .lr_flags = (uint16_t)(rnd() % 4 == 0 ? rnd() : 0),
							   .lr_time = rnd() };
				uint32_t len;
				if (it % 4 == 3) {
					/* plausible records with random numbers inside */
					uint64_t ino = 1 + rnd() % 12, dir = 1 + rnd() % 6;
					char name[4] = { (char)('a' + rnd() % 3), 0 };
					switch (h.lr_type) {
					case SHMFS_LR_CREATE:
						len = shmfs_rec_create(payload, ino, dir,
								       (rnd() % 2 ? S_IFDIR : S_IFREG) | 0644,
								       0, 0, 0, name, 1, NULL, 0);
						break;
					case SHMFS_LR_EXTENT_MAP: case SHMFS_LR_EXTENT_UNMAP:
						len = shmfs_rec_extent(payload, ino, (rnd() % 8) * 4096,
								       h.lr_type == SHMFS_LR_EXTENT_MAP ?
								       (rnd() % 2000) * 4096 : 0,
								       (1 + rnd() % 4) * 4096, rnd() % 65536);
						break;
					case SHMFS_LR_RENAME:
						len = shmfs_rec_rename(payload, dir, name, 1, 1 + rnd() % 6,
								       "b", 1, ino, rnd() % 3 ? 0 : 1 + rnd() % 12,
								       (uint32_t)(rnd() % 3));
						break;
					default:
						len = shmfs_rec_dirent(payload, dir, ino, name, 1);
					}
				} else {
					len = (uint32_t)(rnd() % 200);
					fill(payload, len);
				}
				h.lr_len = len;
				if (shmfs_log_append(&log, pos, seq, &h, payload, &next))
					break;
				pos = next;
				seq++;
			}
			break;
		}
		struct shmfs_fs *fs = open_ro(&r, &rc);
		if (fs) {
			opened++;
			applied += (unsigned)fs->stats.records;
			rejected += (unsigned)fs->stats.rejected;
			invariants(fs);
			shmfs_fs_close(fs);
		} else {
			CHECK(rc == -EUCLEAN || rc == -ENODATA, "open failed with %d", rc);
		}
	}
	/* Whole-region garbage: no superblock, a clean refusal. */
	for (int k = 0; k < 20; k++) {
		fill(r.base, 64 * 1024);
		struct shmfs_fs *fs = open_ro(&r, &rc);
		CHECK(!fs && rc == -ENODATA, "garbage region opened: %d", rc);
	}
	printf("%u iterations, %u opened, %u records applied, %u rejected\n", iters, opened,
	       applied, rejected);
	CHECK(applied > 0 && rejected > 0, "the hostile records exercised both paths");
	shmfs_region_close(&r);
	rcu_unregister_thread();
	return check_done("test_garbage");
}
