/* SPDX-License-Identifier: MIT */
/*
 * Reapers: what dead hosts (or this slot's earlier life) left behind --
 * orphans kept for handles that no longer exist, and room reserved ahead
 * of files whose last close never came.  Each finds its candidates under
 * RCU, judges the owning host's liveness with the coordination layer, and
 * gives them back through the ordinary operations (one record each), so
 * every host applies the same result.  The daemon's follower calls these
 * now and then and once at mount.
 */
#include <stdbool.h>
#include <stdint.h>

#include "shmfs/core.h"
#include "shmfs/ns.h"
#include "shmfs/ops.h"
#include "shmfs/util.h"

/* Release orphans this host kept whose last handle is gone, and orphans of
 * hosts that left or died. */
void shmfs_op_reap_orphans(struct shmfs_fs *fs, bool at_mount)
{
	uint64_t inos[64];
	size_t n = 0;
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct shmfs_inode *ip;
	uint32_t self = (uint32_t)shmfs_fs_slot(fs) + 1;

	/* Walking the table visits every bucket (sized from the log: 128k for
	 * a 128 MiB log), so look only when there is something to find. */
	if (!__atomic_load_n(&fs->ns->norphans, __ATOMIC_RELAXED))
		return;
	rcu_read_lock();
	/* Nodes, not cds_lfht_for_each_entry(): that one ends on container_of
	 * of NULL, arithmetic on a null pointer (UBSan). */
	cds_lfht_for_each(fs->ns->inodes, &it, node) {
		ip = caa_container_of(node, struct shmfs_inode, hnode);
		if (!ip->orphan_host || ip->gone || ip->attr->nlink || n == SHMFS_ARRAY_SIZE(inos))
			continue;
		uint32_t owner = ip->orphan_host;
		bool mine = owner == self;
		bool dead = owner > fs->sb.sb_max_hosts;
		if (!mine && !dead) {
			pthread_mutex_lock(&fs->replay_lock);
			dead = !shmfs_host_live_locked(&fs->coord, owner - 1);
			pthread_mutex_unlock(&fs->replay_lock);
		}
		if ((mine && (at_mount || __atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) == 0)) || dead)
			inos[n++] = ip->ino;
	}
	rcu_read_unlock();
	for (size_t i = 0; i < n; i++)
		shmfs_op_release_orphan(fs, inos[i]);
}

/* Give back room reserved ahead of the end of files by hosts that died
 * (their last close never came) or, at mount, by an earlier life of this
 * host's slot.  A daemon that has nothing open can be sure no write of its
 * own still wants it. */
void shmfs_op_reap_ahead(struct shmfs_fs *fs, bool at_mount)
{
	uint32_t self = (uint32_t)shmfs_fs_slot(fs) + 1, nhosts = fs->sb.sb_max_hosts;
	uint8_t dead[SHMFS_MAX_HOSTS];
	struct { uint64_t ino; uint32_t host; } todo[64];
	bool any = false;
	size_t n = 0;
	struct cds_lfht_iter it;
	struct cds_lfht_node *node;
	struct shmfs_inode *ip;

	if (nhosts > SHMFS_MAX_HOSTS)
		return;
	pthread_mutex_lock(&fs->replay_lock);
	for (uint32_t i = 0; i < nhosts; i++) {
		dead[i] = 0;
		if (!__atomic_load_n(&fs->ns->ahead_by[i], __ATOMIC_RELAXED))
			continue;
		dead[i] = i + 1 == self ? at_mount : !shmfs_host_live_locked(&fs->coord, i);
		any |= dead[i];
	}
	pthread_mutex_unlock(&fs->replay_lock);
	if (!any)
		return;
	rcu_read_lock();
	cds_lfht_for_each(fs->ns->inodes, &it, node) {
		ip = caa_container_of(node, struct shmfs_inode, hnode);
		uint32_t h = __atomic_load_n(&ip->ahead_host, __ATOMIC_RELAXED);
		if (h && h <= nhosts && dead[h - 1] && !ip->gone && n < SHMFS_ARRAY_SIZE(todo))
			todo[n++] = (typeof(todo[0])){ ip->ino, h };
	}
	rcu_read_unlock();
	for (size_t i = 0; i < n; i++)
		shmfs_op_trim_ahead(fs, todo[i].ino, todo[i].host);
}
