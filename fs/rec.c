/* SPDX-License-Identifier: MIT */
/* Record payload builders (see include/shmfs/rec.h).  Lengths are the
 * caller's to bound; builders truncate nothing and check nothing, and the
 * shape check in fs/log.c rejects what does not fit the format. */
#include "shmfs/rec.h"

#include <string.h>

uint32_t shmfs_rec_create(void *buf, uint64_t ino, uint64_t parent, uint32_t mode,
			  uint32_t uid, uint32_t gid, uint64_t rdev, const char *name,
			  size_t name_len, const char *target, size_t target_len)
{
	struct shmfs_lr_create c = {
		.cr_ino = ino, .cr_parent = parent, .cr_mode = mode, .cr_uid = uid,
		.cr_gid = gid, .cr_rdev = rdev, .cr_name_len = (uint16_t)name_len,
		.cr_target_len = (uint16_t)target_len,
	};
	uint8_t *p = buf;

	memcpy(p, &c, sizeof(c));
	memcpy(p + sizeof(c), name, name_len);
	if (target_len)
		memcpy(p + sizeof(c) + name_len, target, target_len);
	return (uint32_t)(sizeof(c) + name_len + target_len);
}

uint32_t shmfs_rec_dirent(void *buf, uint64_t dir, uint64_t ino, const char *name,
			  size_t name_len)
{
	/* struct shmfs_lr_link and shmfs_lr_unlink differ only in field order */
	struct shmfs_lr_unlink u = { .ul_dir = dir, .ul_ino = ino, .ul_name_len = (uint16_t)name_len };
	uint8_t *p = buf;

	memcpy(p, &u, sizeof(u));
	memcpy(p + sizeof(u), name, name_len);
	return (uint32_t)(sizeof(u) + name_len);
}

uint32_t shmfs_rec_rename(void *buf, uint64_t olddir, const char *oldname, size_t oldlen,
			  uint64_t newdir, const char *newname, size_t newlen, uint64_t ino,
			  uint64_t target, uint32_t flags)
{
	struct shmfs_lr_rename r = {
		.rn_olddir = olddir, .rn_newdir = newdir, .rn_ino = ino, .rn_target = target,
		.rn_flags = flags, .rn_oldname_len = (uint16_t)oldlen,
		.rn_newname_len = (uint16_t)newlen,
	};
	uint8_t *p = buf;

	memcpy(p, &r, sizeof(r));
	memcpy(p + sizeof(r), oldname, oldlen);
	memcpy(p + sizeof(r) + oldlen, newname, newlen);
	return (uint32_t)(sizeof(r) + oldlen + newlen);
}

uint32_t shmfs_rec_extent(void *buf, uint64_t ino, uint64_t foff, uint64_t doff, uint64_t len,
			  uint64_t size)
{
	struct shmfs_lr_extent x = { ino, foff, doff, len, size };

	memcpy(buf, &x, sizeof(x));
	return sizeof(x);
}

uint32_t shmfs_rec_xattr(void *buf, uint64_t ino, uint32_t flags, const char *name,
			 size_t name_len, const void *value, size_t value_len)
{
	struct shmfs_lr_xattr x = { .xa_ino = ino, .xa_flags = flags,
				    .xa_value_len = (uint32_t)value_len,
				    .xa_name_len = (uint16_t)name_len };
	uint8_t *p = buf;

	memcpy(p, &x, sizeof(x));
	memcpy(p + sizeof(x), name, name_len);
	if (value_len)
		memcpy(p + sizeof(x) + name_len, value, value_len);
	return (uint32_t)(sizeof(x) + name_len + value_len);
}
