/* SPDX-License-Identifier: MIT */
/*
 * fsck-test-helper: build regions for the fsck tests through the core's
 * normal write path (shmfs_fs_lock / shmfs_fs_commit), much faster than
 * creating files through a mount.
 *
 *   fsck-test-helper create REGION NFILES [PER_DIR]
 *       NFILES empty regular files, PER_DIR to a directory (d00000, ...),
 *       or all in the root when PER_DIR is 0 (default 1000).
 *   fsck-test-helper write REGION NAME BYTES
 *       a file in the root holding BYTES bytes of a pattern, flushed and
 *       closed (its size and extents logged).
 *   fsck-test-helper prealloc REGION NAME BYTES
 *       like write, but the process never flushes or closes: the file
 *       keeps speculative preallocation beyond its logged size, and the
 *       host slot stays claimed (as after kill -9).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/ops.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

static struct shmfs_region r;
static struct shmfs_fs *fs;

static void die(const char *what, int rc)
{
	fprintf(stderr, "fsck-test-helper: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
	exit(1);
}

static void open_fs(const char *spec)
{
	struct shmfs_region_opts ro = { 0 };
	struct shmfs_fs_opts o = { .join = true, .host_name = "helper" };
	char err[512];
	int rc;

	rc = shmfs_region_open(spec, &ro, &r, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "fsck-test-helper: %s\n", err);
		exit(1);
	}
	rc = shmfs_fs_open(&r, &o, &fs, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "fsck-test-helper: %s\n", err);
		exit(1);
	}
}

static int create(uint64_t nfiles, uint64_t per_dir)
{
	static uint8_t buf[SHMFS_LR_PAYLOAD_MAX];
	uint64_t dir = SHMFS_ROOT_INO;
	char name[64];
	int rc;

	rc = shmfs_fs_lock(fs);
	if (rc)
		die("lock", rc);
	for (uint64_t i = 0; i < nfiles; i++) {
		if (per_dir && i % per_dir == 0) {
			int n = snprintf(name, sizeof(name), "d%05" PRIu64, i / per_dir);
			dir = fs->ns->next_ino;
			rc = shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, buf,
					     shmfs_rec_create(buf, dir, SHMFS_ROOT_INO, S_IFDIR | 0755,
							      0, 0, 0, name, (size_t)n, NULL, 0));
			if (rc)
				die("create directory", rc);
		}
		int n = snprintf(name, sizeof(name), "f%07" PRIu64, i);
		rc = shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, buf,
				     shmfs_rec_create(buf, fs->ns->next_ino, dir, S_IFREG | 0644, 0, 0,
						      0, name, (size_t)n, NULL, 0));
		if (rc)
			die("create file", rc);
	}
	shmfs_fs_unlock(fs);
	return 0;
}

static uint64_t write_file(const char *name, uint64_t bytes)
{
	struct shmfs_cred cred = { 0, 0 };
	static uint8_t buf[1 << 16];
	struct stat st;
	int rc;

	rc = shmfs_op_mknod(fs, SHMFS_ROOT_INO, name, S_IFREG | 0644, 0, NULL, &cred, &st);
	if (rc)
		die("mknod", rc);
	shmfs_fs_open_inode(fs, st.st_ino);
	for (uint64_t off = 0; off < bytes; off += sizeof(buf)) {
		size_t len = (size_t)SHMFS_MIN(sizeof(buf), bytes - off);
		for (size_t i = 0; i < len; i++)
			buf[i] = (uint8_t)((off + i) * 7 + 1);
		ssize_t w = shmfs_op_write(fs, st.st_ino, off, buf, len);
		if (w != (ssize_t)len)
			die("write", w < 0 ? (int)w : EIO);
	}
	return st.st_ino;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: fsck-test-helper create|write|prealloc REGION ...\n");
		return 2;
	}
	rcu_register_thread();
	open_fs(argv[2]);
	if (!strcmp(argv[1], "create") && argc >= 4) {
		create(strtoull(argv[3], NULL, 0), argc > 4 ? strtoull(argv[4], NULL, 0) : 1000);
	} else if (!strcmp(argv[1], "write") && argc == 5) {
		uint64_t ino = write_file(argv[3], strtoull(argv[4], NULL, 0));
		int rc = shmfs_op_flush(fs, ino, true);
		if (rc)
			die("flush", rc);
		shmfs_fs_close_inode(fs, ino);
	} else if (!strcmp(argv[1], "prealloc") && argc == 5) {
		uint64_t ino = write_file(argv[3], strtoull(argv[4], NULL, 0));
		printf("%" PRIu64 "\n", ino);
		fflush(stdout);
		_exit(0); /* like kill -9: no flush, no close, the slot stays */
	} else {
		fprintf(stderr, "fsck-test-helper: bad command\n");
		return 2;
	}
	shmfs_fs_close(fs);
	shmfs_region_close(&r);
	rcu_unregister_thread();
	return 0;
}
