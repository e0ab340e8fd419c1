/* SPDX-License-Identifier: MIT */
/*
 * The seed corpus: real images, made by real operations.
 *
 *   fuzz-seeds OUTDIR
 *
 * formats small regions the way fuzz_format() does (fixed seed, so every
 * record verifies in every build), runs operations through the core --
 * creates of every file type, writes, truncation, holes, renames (replace,
 * exchange), links, unlinks, xattrs, orphans, room reserved ahead, sealed
 * slots, a lock left held, two hosts at once, a long log -- and damages
 * some copies as crashes and bad memory do (a torn tail, a record
 * published but torn, a flipped byte, a zeroed lr_seq, a bad primary
 * superblock, a bad control page).  Each state is written as inputs of
 * every target:
 *
 *   OUTDIR/image/NAME-*     fuzz_super, fuzz_fsck: the region up to the
 *                           end of what its log uses
 *   OUTDIR/log/NAME-*       fuzz_log: the log's bytes
 *   OUTDIR/records/NAME-*   fuzz_records: the log's records, re-encoded
 *
 * with several flag bytes each (raw, checksums fixed, write phase, reap).
 * Inputs that once broke something are built here too (regress-*), so
 * that every run of the fuzzers, and ctest -L fuzz, replays them.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "fuzz.h"
#include "shmfs/coord.h"
#include "shmfs/ns.h"
#include "shmfs/ops.h"
#include "shmfs/rec.h"
#include "shmfs/repair.h"
#include "shmfs/util.h"

static const char *outdir;
static unsigned written;
static uint8_t buf[SHMFS_LR_PAYLOAD_MAX];
static const struct shmfs_cred cred = { 0, 0 };

static void die(const char *what)
{
	fprintf(stderr, "fuzz-seeds: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void put(const char *kind, const char *name, const char *variant, uint8_t flags,
		uint8_t arg, const void *p, size_t n)
{
	char path[4096];
	uint8_t hdr[FUZZ_HDR] = { flags, arg };

	snprintf(path, sizeof(path), "%s/%s/%s-%s", outdir, kind, name, variant);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(hdr, 1, sizeof(hdr), f) != sizeof(hdr) || fwrite(p, 1, n, f) != n ||
	    fclose(f))
		die(path);
	written++;
}

/* Bytes up to the last nonzero one, rounded up to 8. */
static size_t used(const uint8_t *p, size_t n)
{
	while (n && !p[n - 1])
		n--;
	return (size_t)shmfs_round_up(n, 8);
}

/* The records of a log in fuzz_records' encoding (the root's left out). */
static size_t encode_records(const struct shmfs_log *log, uint8_t *out, size_t cap)
{
	static uint8_t payload[SHMFS_LR_PAYLOAD_MAX];
	struct shmfs_log_entry e;
	uint64_t pos = 0, seq = 1;
	size_t n = 0;

	for (;;) {
		enum shmfs_log_status st = shmfs_log_read(log, pos, seq, &e, payload);
		if (st == SHMFS_LOG_SEALED) {
			if (n + 5 > cap)
				break;
			memset(out + n, 0, 5);
			out[n] = 0xff;
			n += 5;
			pos = e.next_pos;
			continue;
		}
		if (st != SHMFS_LOG_REC)
			break;
		bool root = seq == 1 && e.hdr.lr_type == SHMFS_LR_CREATE &&
			    ((struct shmfs_lr_create *)payload)->cr_ino == SHMFS_ROOT_INO;
		if (!root && e.hdr.lr_len <= 0xffff && n + 5 + e.hdr.lr_len <= cap) {
			out[n++] = (uint8_t)e.hdr.lr_type;
			out[n++] = (uint8_t)e.hdr.lr_flags;
			out[n++] = (uint8_t)e.hdr.lr_host;
			out[n++] = (uint8_t)e.hdr.lr_len;
			out[n++] = (uint8_t)(e.hdr.lr_len >> 8);
			memcpy(out + n, payload, e.hdr.lr_len);
			n += e.hdr.lr_len;
		}
		pos = e.next_pos;
		seq++;
	}
	return n;
}

/* Write the state of r as inputs of every target.  what: which kinds. */
#define K_IMAGE   1u
#define K_LOG     2u
#define K_RECORDS 4u
#define K_ALL     7u

static void emit(const char *name, struct shmfs_region *r, unsigned what)
{
	static uint8_t rec[FUZZ_LOG_SIZE * 2];
	struct shmfs_super sb;
	char err[256], other[256];
	const unsigned fix = FUZZ_F_SEAL_SB0 | FUZZ_F_SEAL_SB1 | FUZZ_F_CSUM_LOG | FUZZ_F_CSUM_HOSTS;

	if (shmfs_super_read(r, &sb, NULL, err, sizeof(err), other, sizeof(other))) {
		/* both copies made bad on purpose: fuzz_format()'s geometry */
		sb.sb_log_off = shmfs_round_up(SHMFS_HOSTS_OFF + FUZZ_HOSTS * SHMFS_HOST_SLOT_SIZE,
					       SHMFS_PAGE);
		sb.sb_log_size = FUZZ_LOG_SIZE;
		sb.sb_log_seed = FUZZ_LOG_SEED;
	}
	struct shmfs_log log = { r->base + sb.sb_log_off, sb.sb_log_size, sb.sb_log_seed };
	size_t lused = used(log.base, log.size);

	if (what & K_IMAGE) {
		size_t n = (size_t)sb.sb_log_off + lused;
		put("image", name, "raw", 0, 0, r->base, n);
		put("image", name, "fix", (uint8_t)fix, 0, r->base, n);
		put("image", name, "write", (uint8_t)(fix | FUZZ_F_WRITE), 0, r->base, n);
		put("image", name, "small", (uint8_t)fix, 4, r->base, n); /* a smaller region */
	}
	if (what & K_LOG) {
		put("log", name, "raw", 0, 0, log.base, lused);
		put("log", name, "fix", FUZZ_F_CSUM_LOG, 0, log.base, lused);
		put("log", name, "write", FUZZ_F_CSUM_LOG | FUZZ_F_WRITE, 0, log.base, lused);
		put("log", name, "reap", FUZZ_F_CSUM_LOG | FUZZ_F_REAP, 128, log.base, lused);
	}
	if (what & K_RECORDS) {
		size_t n = encode_records(&log, rec, sizeof(rec));
		put("records", name, "raw", 0, 0, rec, n);
		put("records", name, "write", FUZZ_F_WRITE, 0, rec, n);
		put("records", name, "reap", FUZZ_F_REAP, 100, rec, n);
	}
}

/* ---- building states ----------------------------------------------------------- */

static struct shmfs_region *fresh(struct shmfs_super *sb)
{
	struct shmfs_region *r = fuzz_region(FUZZ_REGION);

	memset(r->base, 0, r->size);
	fuzz_format(r, sb);
	return r;
}

static struct shmfs_fs *mount(struct shmfs_region *r, const char *host)
{
	struct shmfs_fs_opts o = { .join = true, .host_name = host };
	struct shmfs_fs *fs = NULL;
	char err[512];

	if (shmfs_fs_open(r, &o, &fs, err, sizeof(err))) {
		fprintf(stderr, "fuzz-seeds: mount: %s\n", err);
		exit(1);
	}
	return fs;
}

static uint64_t mk(struct shmfs_fs *fs, uint64_t dir, const char *name, uint32_t mode,
		   const char *target)
{
	struct stat st;
	int rc = shmfs_op_mknod(fs, dir, name, mode, S_ISCHR(mode) ? 0x0501 : 0, target, &cred, &st);

	if (rc) {
		errno = -rc;
		die(name);
	}
	return st.st_ino;
}

static void wr(struct shmfs_fs *fs, uint64_t ino, uint64_t off, size_t len, int c, bool last)
{
	static uint8_t data[256 << 10];

	memset(data, c, SHMFS_MIN(len, sizeof(data)));
	shmfs_fs_open_inode(fs, ino);
	ssize_t rc = shmfs_op_write(fs, ino, off, data, SHMFS_MIN(len, sizeof(data)));
	if (rc < 0) {
		errno = (int)-rc;
		die("write");
	}
	shmfs_op_flush(fs, ino, last);
	shmfs_fs_close_inode(fs, ino);
}

static void truncate_to(struct shmfs_fs *fs, uint64_t ino, uint64_t size)
{
	struct shmfs_lr_setattr sa = { .sa_valid = SHMFS_SA_SIZE, .sa_size = size };
	struct stat st;

	shmfs_op_setattr(fs, ino, &sa, &st);
}

/* A directory tree with every kind of inode. */
static void tree(struct shmfs_fs *fs)
{
	uint64_t a = mk(fs, SHMFS_ROOT_INO, "a", S_IFDIR | 0755, NULL);
	uint64_t b = mk(fs, a, "b", S_IFDIR | 02775, NULL);
	mk(fs, b, "c", S_IFDIR | 0700, NULL);
	uint64_t f = mk(fs, a, "file", S_IFREG | 0644, NULL);
	mk(fs, SHMFS_ROOT_INO, "link", S_IFLNK | 0777, "a/file");
	mk(fs, b, "fifo", S_IFIFO | 0600, NULL);
	mk(fs, b, "sock", S_IFSOCK | 0600, NULL);
	mk(fs, SHMFS_ROOT_INO, "tty", S_IFCHR | 0620, NULL);
	char longname[SHMFS_NAME_MAX + 1];
	memset(longname, 'n', SHMFS_NAME_MAX);
	longname[SHMFS_NAME_MAX] = 0;
	mk(fs, b, longname, S_IFREG | 0600, NULL);
	struct stat st;
	shmfs_op_link(fs, f, b, "hard", &st);
	shmfs_op_link(fs, f, SHMFS_ROOT_INO, "hard2", &st);
}

static void data_ops(struct shmfs_fs *fs)
{
	uint64_t f = mk(fs, SHMFS_ROOT_INO, "data", S_IFREG | 0644, NULL);
	uint64_t g = mk(fs, SHMFS_ROOT_INO, "sparse", S_IFREG | 0644, NULL);
	uint64_t h = mk(fs, SHMFS_ROOT_INO, "copy", S_IFREG | 0644, NULL);
	wr(fs, f, 0, 100, 'a', true);
	wr(fs, f, 100, 20000, 'b', true);
	wr(fs, g, 40000, 5000, 'c', true);
	truncate_to(fs, f, 9000);
	truncate_to(fs, g, 100000);
	shmfs_op_fallocate(fs, f, FALLOC_FL_KEEP_SIZE, 0, 40000);
	shmfs_op_fallocate(fs, f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 4096, 4096);
	shmfs_op_fallocate(fs, g, FALLOC_FL_ZERO_RANGE, 40960, 8192);
	shmfs_op_fallocate(fs, h, 0, 0, 12288);
	shmfs_op_copy_range(fs, f, 0, h, 8192, 6000);
	struct shmfs_lr_setattr sa = { .sa_valid = SHMFS_SA_MODE | SHMFS_SA_UID | SHMFS_SA_GID |
				       SHMFS_SA_ATIME | SHMFS_SA_MTIME,
				       .sa_mode = 04755, .sa_uid = 1000, .sa_gid = 100,
				       .sa_atime = { 1, 2, 0 }, .sa_mtime = { -5, 999999999, 0 } };
	struct stat st;
	shmfs_op_setattr(fs, h, &sa, &st);
}

static void rename_ops(struct shmfs_fs *fs)
{
	uint64_t d1 = mk(fs, SHMFS_ROOT_INO, "d1", S_IFDIR | 0755, NULL);
	uint64_t d2 = mk(fs, SHMFS_ROOT_INO, "d2", S_IFDIR | 0755, NULL);
	uint64_t sub = mk(fs, d1, "sub", S_IFDIR | 0755, NULL);
	mk(fs, d1, "x", S_IFREG | 0644, NULL);
	mk(fs, d2, "y", S_IFREG | 0644, NULL);
	mk(fs, sub, "z", S_IFLNK | 0777, "../x");
	mk(fs, d2, "empty", S_IFDIR | 0755, NULL);
	shmfs_op_rename(fs, d1, "x", d2, "x2", 0);
	shmfs_op_rename(fs, d2, "x2", d2, "y", 0);              /* replace */
	shmfs_op_rename(fs, d1, "sub", d2, "sub", 0);           /* a directory moves */
	shmfs_op_rename(fs, d2, "y", d2, "sub", SHMFS_RENAME_EXCHANGE);
	shmfs_op_rename(fs, d2, "sub", d1, "back", SHMFS_RENAME_NOREPLACE);
	mk(fs, d1, "dir2", S_IFDIR | 0755, NULL);
	shmfs_op_rename(fs, d2, "y", d1, "dir2", 0);            /* over an empty directory */
}

static void unlink_ops(struct shmfs_fs *fs)
{
	uint64_t d = mk(fs, SHMFS_ROOT_INO, "gone", S_IFDIR | 0755, NULL);
	uint64_t f = mk(fs, d, "f", S_IFREG | 0644, NULL);
	struct stat st;
	wr(fs, f, 0, 10000, 'u', true);
	shmfs_op_link(fs, f, SHMFS_ROOT_INO, "keep", &st);
	shmfs_op_unlink(fs, d, "f", false);
	mk(fs, d, "sub", S_IFDIR | 0755, NULL);
	shmfs_op_unlink(fs, d, "sub", true);
	shmfs_op_unlink(fs, SHMFS_ROOT_INO, "gone", true);
	shmfs_op_unlink(fs, SHMFS_ROOT_INO, "keep", false);
}

static void xattr_ops(struct shmfs_fs *fs)
{
	static char big[8192];
	uint64_t f = mk(fs, SHMFS_ROOT_INO, "attrs", S_IFREG | 0644, NULL);

	memset(big, 'v', sizeof(big));
	shmfs_op_setxattr(fs, f, "user.a", "1", 1, XATTR_CREATE);
	shmfs_op_setxattr(fs, f, "user.b", big, sizeof(big), 0);
	shmfs_op_setxattr(fs, f, "user.a", "22", 2, XATTR_REPLACE);
	shmfs_op_setxattr(fs, f, "trusted.c", "", 0, 0);
	shmfs_op_setxattr(fs, SHMFS_ROOT_INO, "user.root", "r", 1, 0);
	shmfs_op_removexattr(fs, f, "user.b");
}

/* A file unlinked while open here, and the host gone without releasing it. */
static uint64_t orphan(struct shmfs_fs *fs, const char *name)
{
	uint64_t f = mk(fs, SHMFS_ROOT_INO, name, S_IFREG | 0644, NULL);

	wr(fs, f, 0, 9000, 'o', false);
	shmfs_fs_open_inode(fs, f);
	shmfs_op_unlink(fs, SHMFS_ROOT_INO, name, false);
	return f;
}

static void many(struct shmfs_fs *fs, int n)
{
	char name[32];

	for (int i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "m%d", i);
		uint64_t ino = mk(fs, SHMFS_ROOT_INO, name, i % 5 ? S_IFREG | 0644 : S_IFDIR | 0755,
				  NULL);
		if (i % 3 == 0)
			shmfs_op_unlink(fs, SHMFS_ROOT_INO, name, i % 5 == 0);
		else if (i % 7 == 0 && i % 5)
			wr(fs, ino, 0, 5000, 'm', true);
	}
}

/* Where the last record starts, where the log ends, the next sequence. */
static void tail(struct shmfs_region *r, const struct shmfs_super *sb, uint64_t *last,
		 uint64_t *end, uint64_t *next_seq)
{
	static uint8_t payload[SHMFS_LR_PAYLOAD_MAX];
	struct shmfs_log log = { r->base + sb->sb_log_off, sb->sb_log_size, sb->sb_log_seed };
	struct shmfs_log_entry e;
	uint64_t pos = 0, seq = 1;

	*last = 0;
	for (;;) {
		enum shmfs_log_status st = shmfs_log_read(&log, pos, seq, &e, payload);
		if (st == SHMFS_LOG_REC) {
			*last = pos;
			seq++;
		} else if (st != SHMFS_LOG_SEALED) {
			break;
		}
		pos = e.next_pos;
	}
	*end = pos;
	*next_seq = seq;
}

/* Plausible hostile records with valid checksums (as test_garbage makes). */
static void hostile(struct shmfs_region *r, const struct shmfs_super *sb, uint64_t seed)
{
	struct shmfs_log log = { r->base + sb->sb_log_off, sb->sb_log_size, sb->sb_log_seed };
	uint64_t pos, seq, next, x = seed, last;

	tail(r, sb, &last, &pos, &seq);
	for (int k = 0; k < 60; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		struct shmfs_log_rec h = { .lr_type = (uint16_t)(x % 12), .lr_time = FUZZ_TIME + x % 1000,
					   .lr_host = (uint16_t)(x >> 60) };
		uint64_t ino = 1 + (x >> 8) % 12, dir = 1 + (x >> 16) % 6;
		char name[2] = { (char)('a' + (x >> 24) % 3), 0 };
		switch (h.lr_type) {
		case SHMFS_LR_CREATE:
			h.lr_len = shmfs_rec_create(buf, ino, dir, (x >> 30) % 2 ? S_IFDIR | 0755 : S_IFREG | 0644,
						    0, 0, 0, name, 1, NULL, 0);
			break;
		case SHMFS_LR_EXTENT_MAP:
		case SHMFS_LR_EXTENT_UNMAP:
			h.lr_len = shmfs_rec_extent(buf, ino, (x >> 32) % 8 * 4096,
						    h.lr_type == SHMFS_LR_EXTENT_MAP ? (x >> 36) % 180 * 4096 : 0,
						    (1 + (x >> 44) % 4) * 4096, 0);
			h.lr_flags = (uint16_t)((x >> 50) % 4 & (h.lr_type == SHMFS_LR_EXTENT_MAP ? 3 : 0));
			break;
		case SHMFS_LR_RENAME:
			h.lr_len = shmfs_rec_rename(buf, dir, name, 1, 1 + (x >> 32) % 6, "b", 1, ino,
						    (x >> 40) % 3 ? 0 : 1 + (x >> 44) % 12, (uint32_t)((x >> 50) % 3));
			break;
		case SHMFS_LR_XATTR_SET:
		case SHMFS_LR_XATTR_REMOVE:
			h.lr_len = shmfs_rec_xattr(buf, ino, 0, "user.x", 6, "val",
						   h.lr_type == SHMFS_LR_XATTR_SET ? 3 : 0);
			break;
		case SHMFS_LR_SETATTR: {
			struct shmfs_lr_setattr sa = { .sa_ino = ino, .sa_valid = SHMFS_SA_SIZE,
						       .sa_size = (x >> 32) % 40000 };
			memcpy(buf, &sa, sizeof(sa));
			h.lr_len = sizeof(sa);
			break;
		}
		case SHMFS_LR_RELEASE: {
			struct shmfs_lr_release rl = { ino };
			memcpy(buf, &rl, sizeof(rl));
			h.lr_len = sizeof(rl);
			break;
		}
		default:
			h.lr_len = shmfs_rec_dirent(buf, dir, ino, name, 1);
			h.lr_flags = (uint16_t)(h.lr_type == SHMFS_LR_UNLINK ? (x >> 40) % 2 : 0);
		}
		if (shmfs_log_append(&log, pos, seq, &h, buf, &next))
			break;
		pos = next;
		seq++;
	}
}

/* ---- damage ------------------------------------------------------------------------ */

static uint8_t *log_at(struct shmfs_region *r, const struct shmfs_super *sb, uint64_t pos)
{
	return r->base + sb->sb_log_off + pos;
}

/* ---- regressions: inputs that once broke something ----------------------------- */

/* A superblock changed after the format, sealed: both copies. */
static struct shmfs_region *bad_super(void (*change)(struct shmfs_super *))
{
	struct shmfs_super sb;
	struct shmfs_region *r = fresh(&sb);

	change(&sb);
	shmfs_super_seal(&sb);
	shmfs_super_write(r, &sb);
	return r;
}

/* shmfs_super_check() added sb_log_off and sb_log_size without looking:
 * an offset near 2^64 wrapped around, passed, and replay read from a wild
 * address. */
static void log_off_wraps(struct shmfs_super *sb)
{
	sb->sb_log_off = UINT64_MAX - SHMFS_PAGE + 1;
}

/* 2 * sb_heartbeat_ms overflowed 32 bits: a heartbeat of 2^31 ms passed
 * for a lease of 100 ms. */
static void heartbeat_wraps(struct shmfs_super *sb)
{
	sb->sb_heartbeat_ms = 0x80000001u;
}

/* fuzz_records input: the harness's flags and argument, then records. */
static size_t rec_put(uint8_t *out, size_t n, uint8_t type, uint8_t host, const void *p,
		      uint32_t len)
{
	out[n++] = type;
	out[n++] = 0;
	out[n++] = host;
	out[n++] = (uint8_t)len;
	out[n++] = (uint8_t)(len >> 8);
	memcpy(out + n, p, len);
	return n + len;
}

/* shmfs_ns_reap() released a unit by the older of two pending entries (it
 * was freed, reused by another host, freed again) and so made it reusable
 * while the newer freeing record was still unsafe. */
static void reap_twice(void)
{
	static uint8_t in[1024];
	size_t n = 0;
	uint32_t len;

	len = shmfs_rec_create(buf, 2, SHMFS_ROOT_INO, S_IFREG | 0644, 0, 0, 0, "f", 1, NULL, 0);
	n = rec_put(in, n, SHMFS_LR_CREATE, 0, buf, len);
	for (uint8_t host = 0; host < 2; host++) {
		len = shmfs_rec_extent(buf, 2, 0, 0, SHMFS_PAGE, 0);
		n = rec_put(in, n, SHMFS_LR_EXTENT_MAP, host, buf, len);
		len = shmfs_rec_extent(buf, 2, 0, 0, SHMFS_PAGE, 0);
		n = rec_put(in, n, SHMFS_LR_EXTENT_UNMAP, host, buf, len);
	}
	/* Records 1..6; reap with safe sequence 7 * 200 / 255 = 5. */
	put("records", "regress-reap-twice", "reap", FUZZ_F_REAP, 200, in, n);
}

static void regressions(void)
{
	reap_twice();
	emit("regress-log-off-wraps", bad_super(log_off_wraps), K_IMAGE);
	emit("regress-heartbeat-wraps", bad_super(heartbeat_wraps), K_IMAGE);
}

int main(int argc, char **argv)
{
	struct shmfs_super sb;
	struct shmfs_region *r;
	struct shmfs_fs *fs, *fs2;
	uint64_t last, end, nseq;
	char path[4096];

	if (argc != 2) {
		fprintf(stderr, "usage: fuzz-seeds OUTDIR\n");
		return 2;
	}
	outdir = argv[1];
	static const char *const kinds[] = { "", "/image", "/log", "/records" };
	for (size_t i = 0; i < SHMFS_ARRAY_SIZE(kinds); i++) {
		snprintf(path, sizeof(path), "%s%s", outdir, kinds[i]);
		if (mkdir(path, 0755) && errno != EEXIST)
			die(path);
	}
	fuzz_setup();

	r = fresh(&sb);
	emit("empty", r, K_ALL);

	r = fresh(&sb);
	fs = mount(r, "a");
	tree(fs);
	shmfs_fs_close(fs);
	emit("tree", r, K_ALL);

	r = fresh(&sb);
	fs = mount(r, "a");
	data_ops(fs);
	shmfs_fs_close(fs);
	emit("data", r, K_ALL);

	r = fresh(&sb);
	fs = mount(r, "a");
	rename_ops(fs);
	shmfs_fs_close(fs);
	emit("rename", r, K_ALL);

	r = fresh(&sb);
	fs = mount(r, "a");
	unlink_ops(fs);
	xattr_ops(fs);
	shmfs_fs_close(fs);
	emit("unlink-xattr", r, K_ALL);

	/* Orphans: one of a host that left without releasing it, and one
	 * whose host is still in the table. */
	r = fresh(&sb);
	fs = mount(r, "a");
	tree(fs);
	orphan(fs, "o1");
	shmfs_fs_close(fs);
	fs = mount(r, "b");
	orphan(fs, "o2");
	emit("orphans", r, K_ALL);
	shmfs_fs_close(fs);

	/* A stream writer that reserved room ahead and died before its
	 * last close. */
	r = fresh(&sb);
	fs = mount(r, "a");
	uint64_t s = mk(fs, SHMFS_ROOT_INO, "stream", S_IFREG | 0644, NULL);
	wr(fs, s, 0, 70000, 's', false);
	wr(fs, s, 70000, 70000, 's', false);
	emit("ahead", r, K_ALL);
	shmfs_fs_close(fs);

	/* A lease broken: the tail sealed, records after the seal. */
	r = fresh(&sb);
	fs = mount(r, "a");
	mk(fs, SHMFS_ROOT_INO, "before", S_IFREG | 0644, NULL);
	if (shmfs_fs_lock(fs))
		die("lock");
	uint64_t next;
	if (shmfs_log_seal(&fs->log, fs->pos, fs->seq, &next))
		die("seal");
	fs->pos = next;
	shmfs_fs_unlock(fs);
	mk(fs, SHMFS_ROOT_INO, "after", S_IFDIR | 0755, NULL);
	shmfs_fs_close(fs);
	emit("sealed", r, K_ALL);
	{
		/* The seal word lost: fsck finds the record a seal skip later. */
		uint64_t seal_at, seal_end, seal_seq;
		struct shmfs_log log = { r->base + sb.sb_log_off, sb.sb_log_size, sb.sb_log_seed };
		tail(r, &sb, &seal_at, &seal_end, &seal_seq);
		for (uint64_t p = 0; p + 8 <= log.size; p += 8) {
			uint64_t w;
			memcpy(&w, log.base + p, 8);
			if (w & SHMFS_LR_SEAL) {
				memset(log.base + p, 0, 8);
				break;
			}
		}
		emit("seal-lost", r, K_IMAGE | K_LOG);
	}

	/* Two hosts mounted at once, one holding the lock. */
	r = fresh(&sb);
	fs = mount(r, "a");
	fs2 = mount(r, "b");
	mk(fs, SHMFS_ROOT_INO, "from-a", S_IFDIR | 0755, NULL);
	shmfs_fs_replay(fs2);
	mk(fs2, SHMFS_ROOT_INO, "from-b", S_IFREG | 0644, NULL);
	shmfs_fs_replay(fs);
	shmfs_op_rename(fs, SHMFS_ROOT_INO, "from-b", SHMFS_ROOT_INO, "moved", 0);
	emit("twohosts", r, K_ALL);
	if (shmfs_fs_lock(fs2))
		die("lock");
	emit("lockheld", r, K_IMAGE);
	shmfs_fs_unlock(fs2);
	shmfs_fs_close(fs2);
	shmfs_fs_close(fs);

	/* A longer log. */
	r = fresh(&sb);
	fs = mount(r, "a");
	many(fs, 300);
	shmfs_fs_close(fs);
	emit("many", r, K_ALL);

	/* Damage, on copies of one state. */
	static uint8_t base[FUZZ_REGION];
	r = fresh(&sb);
	fs = mount(r, "a");
	tree(fs);
	data_ops(fs);
	shmfs_fs_close(fs);
	memcpy(base, r->base, r->size);
	tail(r, &sb, &last, &end, &nseq);

	/* Crash mid-append: a header and part of a payload, never published. */
	memcpy(log_at(r, &sb, end), log_at(r, &sb, last), 40 + 20);
	memset(log_at(r, &sb, end), 0, 8);
	emit("torn-tail", r, K_IMAGE | K_LOG);

	/* Published, then torn (a torn copy of the region). */
	memcpy(r->base, base, r->size);
	memset(log_at(r, &sb, last) + 44, 0x5a, 8);
	emit("torn-published", r, K_IMAGE | K_LOG);

	/* A flipped byte in a record in the middle. */
	memcpy(r->base, base, r->size);
	uint64_t mid = 0;
	{
		struct shmfs_log log = { log_at(r, &sb, 0), sb.sb_log_size, sb.sb_log_seed };
		struct shmfs_log_entry e;
		static uint8_t payload[SHMFS_LR_PAYLOAD_MAX];
		for (uint64_t p = 0, k = 0; p < last && k < 6; k++) {
			if (shmfs_log_read(&log, p, 0, &e, payload) != SHMFS_LOG_REC)
				break;
			mid = p;
			p = e.next_pos;
		}
	}
	log_at(r, &sb, mid)[45] ^= 0x10;
	emit("flipped", r, K_IMAGE | K_LOG);

	/* A zeroed lr_seq in the middle. */
	memcpy(r->base, base, r->size);
	memset(log_at(r, &sb, mid), 0, 8);
	emit("seq-zeroed", r, K_IMAGE | K_LOG);

	/* Bad primary superblock, bad control page, garbage in a free slot. */
	memcpy(r->base, base, r->size);
	r->base[100] ^= 1;
	r->base[SHMFS_CTL_OFF] ^= 1;
	r->base[SHMFS_HOSTS_OFF + 3 * SHMFS_HOST_SLOT_SIZE + 210] = 7;
	emit("bad-meta", r, K_IMAGE);

	/* Hostile records with valid checksums. */
	for (unsigned k = 0; k < 4; k++) {
		char name[32];
		r = fresh(&sb);
		fs = mount(r, "a");
		tree(fs);
		shmfs_fs_close(fs);
		hostile(r, &sb, 0x1234567 + k * 7919);
		snprintf(name, sizeof(name), "hostile%u", k);
		emit(name, r, K_ALL);
	}

	regressions();
	printf("fuzz-seeds: %u inputs in %s\n", written, outdir);
	return 0;
}
