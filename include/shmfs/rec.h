/* SPDX-License-Identifier: MIT */
/*
 * Records: what a log record's payload means, in one place.
 *
 *  - builders encode a payload into buf (which must hold
 *    SHMFS_LR_PAYLOAD_MAX bytes) and return its length; every writer (the
 *    daemon, mkfs, fsck, tests, benchmarks) builds payloads through them;
 *  - one shape table (fs/rec.c), one entry per record type: its name, the
 *    size of its fixed part, where its variable parts' lengths live, the
 *    flags it may carry, where its inode number lives, and its validator;
 *  - one decoder, driven by the table, used by the shape check, by replay
 *    (fs/ns.c), by fsck and by shmfs-dump.
 *
 * Adding a record type: its struct and number in include/shmfs/format.h,
 * an entry in the shape table (and a builder) in fs/rec.c, an applier in
 * fs/ns.c's table, and a test (tests/unit/test_format.c for the shape,
 * tests/unit/test_model.c for what it does).
 */
#ifndef SHMFS_REC_H
#define SHMFS_REC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmfs/format.h"

uint32_t shmfs_rec_create(void *buf, uint64_t ino, uint64_t parent, uint32_t mode,
			  uint32_t uid, uint32_t gid, uint64_t rdev, const char *name,
			  size_t name_len, const char *target, size_t target_len);
/* The root directory's create record (inode 1, no parent, no name): mkfs
 * writes it first; fsck rebuilds it. */
uint32_t shmfs_rec_root(void *buf, uint32_t mode, uint32_t uid, uint32_t gid);
/* The root's permissions as mkfs writes them (and fsck rebuilds them). */
#define SHMFS_ROOT_MODE 0755u
/* SHMFS_LR_LINK, SHMFS_LR_UNLINK and SHMFS_LR_RMDIR share one shape. */
uint32_t shmfs_rec_dirent(void *buf, uint64_t dir, uint64_t ino, const char *name,
			  size_t name_len);
uint32_t shmfs_rec_rename(void *buf, uint64_t olddir, const char *oldname, size_t oldlen,
			  uint64_t newdir, const char *newname, size_t newlen, uint64_t ino,
			  uint64_t target, uint32_t flags);
uint32_t shmfs_rec_extent(void *buf, uint64_t ino, uint64_t foff, uint64_t doff, uint64_t len,
			  uint64_t size);
uint32_t shmfs_rec_xattr(void *buf, uint64_t ino, uint32_t flags, const char *name,
			 size_t name_len, const void *value, size_t value_len);
uint32_t shmfs_rec_setattr(void *buf, const struct shmfs_lr_setattr *sa);
uint32_t shmfs_rec_release(void *buf, uint64_t ino);

/* A variable-length part of a payload: pointer into the payload copy. */
struct shmfs_rec_bytes {
	const uint8_t *p;
	uint32_t len;
};

/*
 * A decoded record.  The fixed part is copied (aligned, so fields are read
 * in place); the variable parts point into the caller's payload copy, which
 * must outlive this.
 *
 *   var[0]: create, link, unlink, rmdir: the entry name; rename: the old
 *           name; xattr-set, xattr-remove: the attribute name
 *   var[1]: create: the symlink target; rename: the new name; xattr-set:
 *           the value
 */
struct shmfs_rec {
	uint16_t type, flags;
	uint32_t len;                   /* payload bytes */
	uint16_t host;                  /* writer's slot */
	uint64_t seq, time;
	union {
		struct shmfs_lr_create cr;
		struct shmfs_lr_link ln;        /* link */
		struct shmfs_lr_unlink ul;      /* unlink, rmdir */
		struct shmfs_lr_rename rn;
		struct shmfs_lr_setattr sa;
		struct shmfs_lr_extent ex;      /* extent-map, extent-unmap */
		struct shmfs_lr_xattr xa;       /* xattr-set, xattr-remove */
		struct shmfs_lr_release rl;
		uint8_t raw[80];
	} u;
	struct shmfs_rec_bytes var[2];
	uint64_t ino;                   /* the inode the record is about (create:
	                                 * the new one; rename: the one moved);
	                                 * 0 for noop */
};

/* One entry of the shape table. */
struct shmfs_rec_shape {
	const char *name;               /* "create", "extent-map", ... */
	const char *code;               /* its payload struct in format.h,
	                                 * "lr_create", ... (tools' reports) */
	uint32_t fixed;                 /* bytes of the fixed part */
	int8_t ino_off;                 /* offset of the inode number, -1: none */
	int8_t var_len_off[2];          /* offsets of the variable parts' lengths
	                                 * in the fixed part, -1: none */
	uint8_t var_len_size[2];        /* their widths: 2 or 4 bytes */
	bool any_tail;                  /* any bytes may follow the fixed part
	                                 * (noop: padding for tests) */
	/* Everything the type needs beyond the lengths (flags, padding,
	 * names, ranges); 0 or -EUCLEAN with why. */
	int (*check)(const struct shmfs_rec *r, uint64_t unit, char *why, size_t whylen);
};

/* The table entry of a type, NULL for an unknown type. */
const struct shmfs_rec_shape *shmfs_rec_shape_of(unsigned type);
const char *shmfs_lr_type_name(unsigned type);

/*
 * Decode a verified record (header h, payload copy p of h->lr_len bytes).
 * Returns 0 when the payload is exactly the fixed part plus its variable
 * parts; otherwise -EUCLEAN with why, and r still holds what could be
 * decoded: the fixed part when the payload is long enough for it (else
 * zeros), variable parts clipped to the payload (tools describe damaged
 * records with it).  Never reads past h->lr_len.
 */
/* Is the payload long enough for its type's fixed part?  (After
 * shmfs_rec_decode: its fields are zeros when not.) */
bool shmfs_rec_has_fixed(const struct shmfs_rec *r);
int shmfs_rec_decode(const struct shmfs_log_rec *h, const void *p, struct shmfs_rec *r,
		     char *why, size_t whylen);

/*
 * Check that a verified record is well formed for its type: decoded with
 * its exact length, names 1..NAME_MAX bytes without '/' or NUL and not "."
 * or "..", zero pad fields, flags known, extents aligned to unit.  Returns
 * 0 or -EUCLEAN with a reason in why; r (may be NULL) gets the decoding.
 */
int shmfs_rec_check(const struct shmfs_log_rec *h, const void *p, uint64_t unit,
		    struct shmfs_rec *r, char *why, size_t whylen);
int shmfs_lr_check_shape(const struct shmfs_log_rec *h, const void *payload, uint64_t unit,
			 char *why, size_t whylen);

#endif /* SHMFS_REC_H */
