/* SPDX-License-Identifier: MIT */
/*
 * Record builders: encode a log record payload into buf (which must hold
 * SHMFS_LR_PAYLOAD_MAX bytes) and return its length.  Used by every writer
 * (the daemon, mkfs, tests, benchmarks) so payloads are built one way.
 */
#ifndef SHMFS_REC_H
#define SHMFS_REC_H

#include <stddef.h>
#include <stdint.h>

#include "shmfs/format.h"

uint32_t shmfs_rec_create(void *buf, uint64_t ino, uint64_t parent, uint32_t mode,
			  uint32_t uid, uint32_t gid, uint64_t rdev, const char *name,
			  size_t name_len, const char *target, size_t target_len);
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

#endif /* SHMFS_REC_H */
