/* SPDX-License-Identifier: MIT */
/*
 * Filesystem operations over the core: what a POSIX filesystem call means
 * in records and region bytes.  No FUSE types here; the daemon decodes
 * requests, calls these, and replies.  Every function returns 0 (or a
 * byte count) or -errno, and takes the metadata lock itself when it must
 * change metadata.
 */
#ifndef SHMFS_OPS_H
#define SHMFS_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "shmfs/core.h"

struct shmfs_cred {
	uint32_t uid, gid;
};

/* Attributes of ino as a struct stat (size includes unflushed writes). */
int shmfs_op_getattr(struct shmfs_fs *fs, uint64_t ino, struct stat *st);
/* Look name up in dir; fills st. */
int shmfs_op_lookup(struct shmfs_fs *fs, uint64_t dir, const char *name, struct stat *st);

/* Create a regular file, directory, symlink (target != NULL), FIFO,
 * socket or device node; owner from cred, group from a setgid parent. */
int shmfs_op_mknod(struct shmfs_fs *fs, uint64_t dir, const char *name, uint32_t mode,
		   uint64_t rdev, const char *target, const struct shmfs_cred *cred,
		   struct stat *st);
int shmfs_op_link(struct shmfs_fs *fs, uint64_t ino, uint64_t dir, const char *name,
		  struct stat *st);
int shmfs_op_unlink(struct shmfs_fs *fs, uint64_t dir, const char *name, bool rmdir);
/* flags: SHMFS_RENAME_NOREPLACE, SHMFS_RENAME_EXCHANGE */
int shmfs_op_rename(struct shmfs_fs *fs, uint64_t olddir, const char *oldname, uint64_t newdir,
		    const char *newname, uint32_t flags);
/* valid: SHMFS_SA_* (times given explicitly, ctime always set to now). */
int shmfs_op_setattr(struct shmfs_fs *fs, uint64_t ino, const struct shmfs_lr_setattr *sa,
		     struct stat *st);
/* Copy the symlink target into buf (NUL-terminated); returns its length. */
int shmfs_op_readlink(struct shmfs_fs *fs, uint64_t ino, char *buf, size_t len);

/* Extended attributes; get/list return the size, or the needed size when
 * size is 0, or -ERANGE. */
int shmfs_op_setxattr(struct shmfs_fs *fs, uint64_t ino, const char *name, const void *value,
		      size_t size, int flags);
int shmfs_op_getxattr(struct shmfs_fs *fs, uint64_t ino, const char *name, void *buf,
		      size_t size);
int shmfs_op_listxattr(struct shmfs_fs *fs, uint64_t ino, char *buf, size_t size);
int shmfs_op_removexattr(struct shmfs_fs *fs, uint64_t ino, const char *name);

/* The attributes libshmfs reads and writes (names "user.shmfs.*", see
 * include/shmfs/shmfs.h): computed, never stored, not listed.  set: only
 * SHMFS_XATTR_SYNC (publishes an mtime); others are -EPERM. */
bool shmfs_op_xattr_is_virtual(const char *name);
int shmfs_op_get_virtual(struct shmfs_fs *fs, uint64_t ino, const char *name, void *buf,
			 size_t size);
int shmfs_op_set_virtual(struct shmfs_fs *fs, uint64_t ino, const char *name);

/* Data.  A piece of a file's bytes: region memory, or a hole (NULL). */
struct shmfs_piece {
	const uint8_t *mem;     /* NULL for a hole: reads as zeros */
	size_t len;
};
/*
 * Map [off, off+len) of ino for reading, clipped at the file size, into at
 * most max pieces; returns the number of pieces, *total the bytes.  Call
 * under rcu_read_lock() and use the memory before unlocking.
 */
int shmfs_op_read_map(struct shmfs_fs *fs, uint64_t ino, uint64_t off, size_t len,
		      struct shmfs_piece *pieces, int max, size_t *total);
/* Copy n pieces (shmfs_op_read_map's) into dst, holes as zeros; returns
 * the bytes copied.  Under the same rcu_read_lock() as the map. */
size_t shmfs_op_gather(const struct shmfs_piece *p, int n, void *dst);
/* Write buf at off: allocates what is missing (with room to grow for
 * appends), copies, and records the new size in memory until flush. */
ssize_t shmfs_op_write(struct shmfs_fs *fs, uint64_t ino, uint64_t off, const void *buf,
		       size_t len);
/* Publish size and mtime of a written file (close, fsync); on last close,
 * also give back speculative preallocation. */
int shmfs_op_flush(struct shmfs_fs *fs, uint64_t ino, bool last_close);
/* fallocate modes as in fallocate(2): 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE,
 * ZERO_RANGE[|KEEP_SIZE]. */
int shmfs_op_fallocate(struct shmfs_fs *fs, uint64_t ino, int mode, uint64_t off, uint64_t len);
ssize_t shmfs_op_copy_range(struct shmfs_fs *fs, uint64_t in, uint64_t off_in, uint64_t out,
			    uint64_t off_out, size_t len);

/* Give back the room a host reserved ahead of the end of ino (host: slot +
 * 1, as in ahead_host) when it still holds it: for a host that died or a
 * previous life of this host's slot. */
int shmfs_op_trim_ahead(struct shmfs_fs *fs, uint64_t ino, uint32_t host);

/* Release the orphans this host kept whose last handle is gone (all of
 * them at_mount: an earlier life of the slot kept them), and the orphans
 * of hosts that left or died. */
void shmfs_op_reap_orphans(struct shmfs_fs *fs, bool at_mount);
/* Give back room reserved ahead of the end of files by hosts that died
 * (their last close never came) or, at_mount, by an earlier life of this
 * host's slot. */
void shmfs_op_reap_ahead(struct shmfs_fs *fs, bool at_mount);
/* Release orphans left by this host (last close) or by dead hosts. */
int shmfs_op_release_orphan(struct shmfs_fs *fs, uint64_t ino);

#endif /* SHMFS_OPS_H */
