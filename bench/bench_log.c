/* SPDX-License-Identifier: MIT */
/*
 * Metadata log benchmark: append and replay rates.
 *
 *   bench-log [records] [files]
 *
 * 1. raw append: shmfs_log_append() of create-sized records (publication
 *    cost only);
 * 2. commit: shmfs_fs_commit() of a realistic mix -- creates spread over
 *    1,000 directories, setattrs, extent maps -- checked, appended and
 *    applied, under the metadata lock;
 * 3. replay: a second host opens the region and replays that whole log
 *    (what every other host does to follow the writer);
 * 4. mount: shmfs_fs_open() of a region holding `files` files.
 * It prints records/s for each; the regions are anonymous shared memory,
 * the same pages a /dev/shm file gives.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

static uint8_t buf[SHMFS_LR_PAYLOAD_MAX];

static void die(const char *what, int rc, const char *err)
{
	fprintf(stderr, "bench-log: %s: %s %s\n", what, strerror(-rc), err ? err : "");
	exit(1);
}

static double secs(uint64_t t0) { return (double)(shmfs_mono_ns() - t0) / 1e9; }

static void format(struct shmfs_region *r, uint64_t size, uint64_t log_size)
{
	struct shmfs_mkfs_params p = { .log_size = log_size };
	struct shmfs_super sb;
	char err[256];
	int rc = shmfs_region_open_mem(size, 4096, r);

	if (rc)
		die("region", rc, NULL);
	rc = shmfs_fs_format(r, &p, 0755, 0, 0, &sb, err, sizeof(err));
	if (rc)
		die("format", rc, err);
}

static struct shmfs_fs *open_fs(struct shmfs_region *r, bool join)
{
	struct shmfs_fs_opts o = { .join = join, .readonly = !join };
	struct shmfs_fs *fs = NULL;
	char err[256];
	int rc = shmfs_fs_open(r, &o, &fs, err, sizeof(err));

	if (rc)
		die("open", rc, err);
	return fs;
}

/* One record of the mix; returns its type and fills len. */
static uint16_t mix(struct shmfs_fs *fs, uint64_t i, uint32_t *len)
{
	char name[32];
	uint64_t ino = fs->ns->next_ino;

	if (i < 1000 || i % 10 < 4) {
		bool dir = i < 1000;
		uint64_t parent = dir ? SHMFS_ROOT_INO : 2 + i % 1000;
		int n = snprintf(name, sizeof(name), "%s%" PRIu64, dir ? "d" : "file-", i);
		*len = shmfs_rec_create(buf, ino, parent, (dir ? S_IFDIR : S_IFREG) | 0644, 1000,
					1000, 0, name, (size_t)n, NULL, 0);
		return SHMFS_LR_CREATE;
	}
	uint64_t target = SHMFS_MAX(ino - 1 - (i % 7), 1002); /* a recent file */
	if (i % 10 < 7) {
		struct shmfs_lr_setattr s = { .sa_ino = target, .sa_valid = SHMFS_SA_MODE |
					      SHMFS_SA_MTIME | SHMFS_SA_CTIME, .sa_mode = 0600 };
		memcpy(buf, &s, sizeof(s));
		*len = sizeof(s);
		return SHMFS_LR_SETATTR;
	}
	uint64_t first, got;
	if (shmfs_fs_alloc(fs, 1, &first, &got))
		die("alloc", -ENOSPC, NULL);
	static uint64_t foff;
	foff += 4096;
	*len = shmfs_rec_extent(buf, target, foff, first * 4096, 4096, foff + 4096);
	return SHMFS_LR_EXTENT_MAP;
}

int main(int argc, char **argv)
{
	uint64_t nrec = argc > 1 ? strtoull(argv[1], NULL, 0) : 1000000;
	uint64_t nfiles = argc > 2 ? strtoull(argv[2], NULL, 0) : 100000;
	struct shmfs_region r;
	uint64_t t0, pos, next;
	double t;
	int rc;

	rcu_register_thread();
	printf("shmfs log benchmark: %" PRIu64 " records, %" PRIu64 " files\n", nrec, nfiles);

	/* 1. raw append */
	format(&r, 1ull << 30, 512ull << 20);
	{
		struct shmfs_fs *fs = open_fs(&r, true);
		struct shmfs_log_rec h = { .lr_type = SHMFS_LR_NOOP, .lr_len = 64 };
		memset(buf, 0x5a, 64);
		pos = fs->pos;
		t0 = shmfs_mono_ns();
		for (uint64_t i = 0; i < nrec; i++) {
			rc = shmfs_log_append(&fs->log, pos, fs->seq + i, &h, buf, &next);
			if (rc)
				die("append", rc, NULL);
			pos = next;
		}
		t = secs(t0);
		printf("  raw append      %10.0f records/s  (%.3f s, 64-byte payloads)\n",
		       (double)nrec / t, t);
		shmfs_fs_close(fs);
	}
	shmfs_region_close(&r);

	/* 2. commit of the mix, 3. replay of it */
	format(&r, 4ull << 30, 512ull << 20);
	{
		struct shmfs_fs *fs = open_fs(&r, true);
		uint32_t len;
		if ((rc = shmfs_fs_lock(fs)))
			die("lock", rc, NULL);
		t0 = shmfs_mono_ns();
		for (uint64_t i = 0; i < nrec; i++) {
			uint16_t type = mix(fs, i, &len);
			rc = shmfs_fs_commit(fs, type, type == SHMFS_LR_EXTENT_MAP ? SHMFS_EXT_F_SIZE : 0,
					     buf, len);
			if (rc)
				die("commit", rc, shmfs_lr_type_name(type));
		}
		t = secs(t0);
		shmfs_fs_unlock(fs);
		printf("  commit (mix)    %10.0f records/s  (%.3f s; 40%% create, 30%% setattr, "
		       "30%% extent)\n", (double)nrec / t, t);
		uint64_t used = fs->pos;
		shmfs_fs_close(fs);

		t0 = shmfs_mono_ns();
		fs = open_fs(&r, false);
		t = secs(t0);
		printf("  replay (mix)    %10.0f records/s  (%.3f s, %" PRIu64 " records, %.1f MiB "
		       "of log, %" PRIu64 " inodes)\n", (double)fs->stats.records / t, t,
		       fs->stats.records, (double)used / (1 << 20), fs->ns->ninodes);
		if (fs->stats.records != nrec + 1 || fs->stats.rejected)
			die("replay", -EIO, "record count mismatch");
		shmfs_fs_close(fs);
	}
	shmfs_region_close(&r);

	/* 4. mount-time replay of a filesystem with nfiles files */
	format(&r, 1ull << 30, 256ull << 20);
	{
		struct shmfs_fs *fs = open_fs(&r, true);
		char name[32];
		if ((rc = shmfs_fs_lock(fs)))
			die("lock", rc, NULL);
		for (uint64_t i = 0; i < nfiles; i++) {
			uint64_t dir = SHMFS_ROOT_INO;
			if (i < 100) {
				int n = snprintf(name, sizeof(name), "dir%" PRIu64, i);
				uint32_t len = shmfs_rec_create(buf, fs->ns->next_ino, dir,
								S_IFDIR | 0755, 0, 0, 0, name,
								(size_t)n, NULL, 0);
				rc = shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, buf, len);
			} else {
				dir = 2 + i % 100;
				int n = snprintf(name, sizeof(name), "f%07" PRIu64, i);
				uint32_t len = shmfs_rec_create(buf, fs->ns->next_ino, dir,
								S_IFREG | 0644, 0, 0, 0, name,
								(size_t)n, NULL, 0);
				rc = shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, buf, len);
			}
			if (rc)
				die("commit", rc, NULL);
		}
		shmfs_fs_unlock(fs);
		shmfs_fs_close(fs);
		t0 = shmfs_mono_ns();
		fs = open_fs(&r, true);
		t = secs(t0);
		printf("  mount           %10.3f s for %" PRIu64 " files (%.0f records/s)\n", t,
		       fs->ns->ninodes - 1, (double)fs->stats.records / t);
		shmfs_fs_close(fs);
	}
	shmfs_region_close(&r);

	/* 5. lookups in directories of 10 to 1,000,000 entries, one namespace */
	format(&r, 2ull << 30, 512ull << 20);
	{
		struct shmfs_fs *fs = open_fs(&r, true);
		static const uint64_t sizes[] = { 10, 1000, 100000, 1000000 };
		const uint64_t probes = 1000000;
		char name[32];
		if ((rc = shmfs_fs_lock(fs)))
			die("lock", rc, NULL);
		for (int d = 0; d < 4; d++) {
			int n = snprintf(name, sizeof(name), "dir%d", d);
			uint32_t len = shmfs_rec_create(buf, fs->ns->next_ino, SHMFS_ROOT_INO,
							S_IFDIR | 0755, 0, 0, 0, name, (size_t)n,
							NULL, 0);
			if ((rc = shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, buf, len)))
				die("commit", rc, NULL);
		}
		for (int d = 0; d < 4; d++)
			for (uint64_t i = 0; i < sizes[d]; i++) {
				int n = snprintf(name, sizeof(name), "entry-%" PRIu64, i);
				uint32_t len = shmfs_rec_create(buf, fs->ns->next_ino, 2 + (uint64_t)d,
								S_IFREG | 0644, 0, 0, 0, name,
								(size_t)n, NULL, 0);
				if ((rc = shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, buf, len)))
					die("commit", rc, NULL);
			}
		shmfs_fs_unlock(fs);
		printf("  lookup         ");
		for (int d = 0; d < 4; d++) {
			uint64_t found = 0, x = 12345;
			t0 = shmfs_mono_ns();
			rcu_read_lock();
			for (uint64_t i = 0; i < probes; i++) {
				x = x * 6364136223846793005ull + 1442695040888963407ull;
				int n = snprintf(name, sizeof(name), "entry-%" PRIu64, (x >> 20) % sizes[d]);
				found += shmfs_ns_lookup(fs->ns, 2 + (uint64_t)d, name, (size_t)n) != NULL;
			}
			rcu_read_unlock();
			if (found != probes)
				die("lookup", -ENOENT, "entries missing");
			printf(" %" PRIu64 " entries: %.0f ns%s", sizes[d],
			       (double)(shmfs_mono_ns() - t0) / (double)probes, d < 3 ? "," : "\n");
		}
		printf("                  (random names; small directories stay in the CPU cache, "
		       "large ones cost memory latency, not a longer search)\n");
		shmfs_fs_close(fs);
	}
	shmfs_region_close(&r);
	rcu_unregister_thread();
	return 0;
}
