/* SPDX-License-Identifier: MIT */
/*
 * What the two halves of the operations layer share: fs/ops.c (namespace,
 * attributes, extended attributes) and fs/ops_data.c (file data, its
 * allocation, and the attributes that describe it for direct mapping).
 * Private to those two files.
 */
#ifndef SHMFS_OPS_INT_H
#define SHMFS_OPS_INT_H

#include <stdint.h>

#include "shmfs/format.h"
#include "shmfs/ns.h"
#include "shmfs/ops.h"
#include "shmfs/util.h"

/*
 * The payload of the record an operation is building, one per thread, used
 * only between shmfs_fs_lock() and shmfs_fs_unlock().  Not fs->rbuf: that
 * one is the replayer's, under replay_lock, and a commit replays.
 */
extern __thread uint8_t op_recbuf[SHMFS_LR_PAYLOAD_MAX];

static inline struct shmfs_time shmfs_op_now(void)
{
	uint64_t ns = shmfs_now_ns();

	return (struct shmfs_time){ .t_sec = ns / 1000000000ull,
				    .t_nsec = (uint32_t)(ns % 1000000000ull) };
}

/* The size this host sees: the logged one, or what local writes reached
 * and have not flushed yet. */
static inline uint64_t shmfs_op_size(const struct shmfs_inode *ip)
{
	uint64_t w = __atomic_load_n(&ip->wsize, __ATOMIC_ACQUIRE);

	return SHMFS_MAX(ip->attr->size, w);
}

/*
 * setattr's part in the data (ops_data.c), RCU read lock held.  Shrinking
 * to `from` zeroes the rest of the unit holding it, so a later extension
 * reads zeros there; growing from `from` to `to` zeroes what it exposes of
 * units the file already maps.
 */
void shmfs_op_zero_tail(struct shmfs_fs *fs, struct shmfs_inode *ip, uint64_t from);
void shmfs_op_zero_exposed(struct shmfs_fs *fs, struct shmfs_inode *ip, uint64_t from,
			   uint64_t to);

#endif /* SHMFS_OPS_INT_H */
