/* SPDX-License-Identifier: MIT */
/*
 * Inside the namespace: the object helpers fs/ns.c defines (tables,
 * copy-on-write attributes and extent maps, entries, inode lifetime) that
 * the record appliers in fs/ns_apply.c build on.  Nothing outside fs/ns*.c
 * includes this.  Every function here mutates only under the writer's lock
 * and retires what readers may still see through ns_retire().
 */
#ifndef SHMFS_NS_INT_H
#define SHMFS_NS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shmfs/ns.h"

/* Fail the check phase: why gets the reason, the caller returns code. */
#define REJECT(code, ...) do { shmfs_errf(why, whylen, __VA_ARGS__); return (code); } while (0)

unsigned long ns_ino_hash(uint64_t ino);
struct shmfs_inode *ns_live_iget(struct shmfs_ns *ns, uint64_t ino);
void ns_free_xattrs_cb(struct rcu_head *h);
void ns_retire(struct shmfs_ns *ns, struct rcu_head *h, void (*cb)(struct rcu_head *));
void ns_free_inode_now(struct shmfs_inode *ip);
struct shmfs_time ns_time(uint64_t ns_since_epoch);
struct shmfs_attr *ns_attr_copy(struct shmfs_ns *ns, const struct shmfs_inode *ip);
void ns_attr_swap(struct shmfs_ns *ns, struct shmfs_inode *ip, struct shmfs_attr *a);
void ns_attr_drop(struct shmfs_inode *ip, struct shmfs_attr *a);
int ns_touch(struct shmfs_ns *ns, struct shmfs_inode *ip, uint64_t t, bool mtime, int nlink_delta);
int ns_ext_release(struct shmfs_ns *ns, struct shmfs_inode *ip, uint64_t start, uint64_t end, uint64_t *freed);
bool ns_ext_overlaps(const struct shmfs_extmap *m, uint64_t foff, uint64_t len);
int ns_ext_insert(struct shmfs_ns *ns, struct shmfs_inode *ip, struct shmfs_extent x);
struct shmfs_inode *ns_inode_new(uint64_t ino, uint32_t mode, uint32_t uid, uint32_t gid, uint64_t rdev, uint64_t t);
struct shmfs_dentry *ns_dentry_new(uint64_t dir, uint64_t ino, uint32_t type, const char *name, size_t len);
void ns_dentry_add(struct shmfs_ns *ns, struct shmfs_inode *dir, struct shmfs_dentry *d);
void ns_dentry_del(struct shmfs_ns *ns, struct shmfs_inode *dir, struct shmfs_dentry *d);
void ns_ahead_owner(struct shmfs_ns *ns, struct shmfs_inode *ip, uint32_t host);
void ns_ahead_trimmed(struct shmfs_ns *ns, struct shmfs_inode *ip);
int ns_inode_drop(struct shmfs_ns *ns, struct shmfs_inode *ip);
int ns_inode_unlink(struct shmfs_ns *ns, struct shmfs_inode *ip, uint64_t t, bool keep);
struct shmfs_inode *ns_get_dir(struct shmfs_ns *ns, uint64_t ino, int *err);
bool ns_is_ancestor(struct shmfs_ns *ns, uint64_t anc, uint64_t ino);

#endif /* SHMFS_NS_INT_H */
