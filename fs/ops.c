/* SPDX-License-Identifier: MIT */
/*
 * Filesystem operations, the namespace half: lookups, creation, links,
 * renames, attributes and extended attributes, as POSIX means them, in
 * records.  File data is fs/ops_data.c's; fs/ops_int.h is what the two
 * halves share.
 *
 * Reads take no lock: they look inodes and entries up under
 * rcu_read_lock(), and the ones that must see all of a record or none of
 * it (lookup, getattr) retry on the namespace's sequence count.
 *
 * Changes take the metadata lock (shmfs_fs_lock replays to the tail, so
 * the checks below see every host's latest state), build one record, and
 * commit it.  A change is one record, so no host ever sees half of it.
 */
#include "shmfs/ops.h"

#include <errno.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>

#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "ops_int.h"

__thread uint8_t op_recbuf[SHMFS_LR_PAYLOAD_MAX];

static void fill_stat(const struct shmfs_inode *ip, struct stat *st)
{
	const struct shmfs_attr *a = rcu_dereference(ip->attr);

	memset(st, 0, sizeof(*st));
	st->st_ino = ip->ino;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_rdev = a->rdev;
	st->st_size = (off_t)SHMFS_MAX(a->size, __atomic_load_n(&ip->wsize, __ATOMIC_ACQUIRE));
	st->st_blksize = 1 << 20;
	st->st_blocks = (blkcnt_t)(a->blocks_bytes / 512);
	st->st_atim = (struct timespec){ (time_t)a->atime.t_sec, a->atime.t_nsec };
	st->st_mtim = (struct timespec){ (time_t)a->mtime.t_sec, a->mtime.t_nsec };
	st->st_ctim = (struct timespec){ (time_t)a->ctime.t_sec, a->ctime.t_nsec };
}

int shmfs_op_getattr(struct shmfs_fs *fs, uint64_t ino, struct stat *st)
{
	uint64_t s;
	int rc;

	rcu_read_lock();
	do {
		s = shmfs_ns_read_begin(fs->ns);
		struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
		rc = ip ? 0 : -ENOENT;
		if (ip)
			fill_stat(ip, st);
	} while (shmfs_ns_read_retry(fs->ns, s));
	rcu_read_unlock();
	return rc;
}

static int check_name(const char *name)
{
	size_t n = strlen(name);

	if (n > SHMFS_NAME_MAX)
		return -ENAMETOOLONG;
	if (n == 0)
		return -ENOENT;
	return 0;
}

int shmfs_op_lookup(struct shmfs_fs *fs, uint64_t dir, const char *name, struct stat *st)
{
	struct shmfs_inode *ip;
	uint64_t s;
	int rc = check_name(name);

	if (rc)
		return rc;
	rcu_read_lock();
	do {
		s = shmfs_ns_read_begin(fs->ns);
		struct shmfs_inode *dp = shmfs_ns_iget(fs->ns, dir);
		struct shmfs_dentry *d = dp ? shmfs_ns_lookup(fs->ns, dir, name, strlen(name)) : NULL;
		ip = d ? shmfs_ns_iget(fs->ns, d->ino) : NULL;
		rc = !dp ? -ENOENT : dp->type != S_IFDIR ? -ENOTDIR : !ip ? -ENOENT : 0;
		if (!rc)
			fill_stat(ip, st);
	} while (shmfs_ns_read_retry(fs->ns, s));
	if (!rc)
		__atomic_fetch_add(&ip->nlookup, 1, __ATOMIC_RELAXED);
	rcu_read_unlock();
	return rc;
}

/* After a successful create-like commit: the new inode's attributes. */
static int stat_new(struct shmfs_fs *fs, uint64_t ino, struct stat *st)
{
	int rc = -EIO;

	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	if (ip) {
		fill_stat(ip, st);
		__atomic_fetch_add(&ip->nlookup, 1, __ATOMIC_RELAXED);
		rc = 0;
	}
	rcu_read_unlock();
	return rc;
}

int shmfs_op_mknod(struct shmfs_fs *fs, uint64_t dir, const char *name, uint32_t mode,
		   uint64_t rdev, const char *target, const struct shmfs_cred *cred,
		   struct stat *st)
{
	size_t tlen = target ? strlen(target) : 0;
	uint32_t gid = cred->gid;
	uint64_t ino;
	int rc = check_name(name);

	if (rc)
		return rc;
	if (tlen > SHMFS_SYMLINK_MAX)
		return -ENAMETOOLONG;
	if (target && !tlen)
		return -ENOENT;
	rc = shmfs_fs_lock(fs);
	if (rc)
		return rc;
	rcu_read_lock();
	struct shmfs_inode *dp = shmfs_ns_iget(fs->ns, dir);
	if (dp && dp->type == S_IFDIR && (dp->attr->mode & S_ISGID)) {
		gid = dp->attr->gid;
		if (S_ISDIR(mode))
			mode |= S_ISGID;
	}
	rcu_read_unlock();
	ino = fs->ns->next_ino;
	uint32_t len = shmfs_rec_create(op_recbuf, ino, dir, mode, cred->uid, gid,
					(S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0, name,
					strlen(name), target, tlen);
	rc = shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, op_recbuf, len);
	if (!rc)
		rc = stat_new(fs, ino, st);
	shmfs_fs_unlock(fs);
	return rc;
}

int shmfs_op_link(struct shmfs_fs *fs, uint64_t ino, uint64_t dir, const char *name,
		  struct stat *st)
{
	int rc = check_name(name);

	if (rc)
		return rc;
	rc = shmfs_fs_lock(fs);
	if (rc)
		return rc;
	rc = shmfs_fs_commit(fs, SHMFS_LR_LINK, 0, op_recbuf,
			     shmfs_rec_dirent(op_recbuf, dir, ino, name, strlen(name)));
	if (!rc)
		rc = stat_new(fs, ino, st);
	shmfs_fs_unlock(fs);
	return rc;
}

/* The inode name refers to in dir (0 if none), and whether removing that
 * name must keep it as an orphan because it is open here. */
static uint64_t resolve(struct shmfs_fs *fs, uint64_t dir, const char *name, bool *keep,
			int *err)
{
	uint64_t ino = 0;

	*err = 0;
	rcu_read_lock();
	struct shmfs_inode *dp = shmfs_ns_iget(fs->ns, dir);
	if (!dp)
		*err = -ENOENT;
	else if (dp->type != S_IFDIR)
		*err = -ENOTDIR;
	struct shmfs_dentry *d = *err ? NULL : shmfs_ns_lookup(fs->ns, dir, name, strlen(name));
	if (d) {
		ino = d->ino;
		struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
		if (keep)
			*keep = ip && ip->type != S_IFDIR && ip->attr->nlink <= 1 &&
				__atomic_load_n(&ip->nopen, __ATOMIC_ACQUIRE) > 0;
	}
	rcu_read_unlock();
	return ino;
}

int shmfs_op_unlink(struct shmfs_fs *fs, uint64_t dir, const char *name, bool rmdir)
{
	bool keep = false;
	int rc = check_name(name), err;

	if (rc)
		return rc;
	rc = shmfs_fs_lock(fs);
	if (rc)
		return rc;
	uint64_t ino = resolve(fs, dir, name, &keep, &err);
	if (err)
		rc = err;
	else if (!ino)
		rc = -ENOENT;
	else
		rc = shmfs_fs_commit(fs, rmdir ? SHMFS_LR_RMDIR : SHMFS_LR_UNLINK,
				     !rmdir && keep ? SHMFS_LR_F_KEEP : 0, op_recbuf,
				     shmfs_rec_dirent(op_recbuf, dir, ino, name, strlen(name)));
	shmfs_fs_unlock(fs);
	return rc;
}

int shmfs_op_rename(struct shmfs_fs *fs, uint64_t olddir, const char *oldname, uint64_t newdir,
		    const char *newname, uint32_t flags)
{
	bool keep = false;
	int rc, err;

	if ((rc = check_name(oldname)) || (rc = check_name(newname)))
		return rc;
	if (flags & ~(SHMFS_RENAME_NOREPLACE | SHMFS_RENAME_EXCHANGE))
		return -EINVAL;
	rc = shmfs_fs_lock(fs);
	if (rc)
		return rc;
	uint64_t ino = resolve(fs, olddir, oldname, NULL, &err);
	uint64_t target = err ? 0 : resolve(fs, newdir, newname, &keep, &err);
	if (err)
		rc = err;
	else if (!ino)
		rc = -ENOENT;
	else if (target && (flags & SHMFS_RENAME_NOREPLACE))
		rc = -EEXIST;
	else if (!target && (flags & SHMFS_RENAME_EXCHANGE))
		rc = -ENOENT;
	else if (target == ino)
		rc = 0; /* two names of one inode: POSIX says do nothing */
	else
		rc = shmfs_fs_commit(fs, SHMFS_LR_RENAME,
				     keep && !(flags & SHMFS_RENAME_EXCHANGE) ? SHMFS_LR_F_KEEP : 0,
				     op_recbuf,
				     shmfs_rec_rename(op_recbuf, olddir, oldname, strlen(oldname),
						      newdir, newname, strlen(newname), ino, target,
						      flags));
	shmfs_fs_unlock(fs);
	return rc;
}

int shmfs_op_setattr(struct shmfs_fs *fs, uint64_t ino, const struct shmfs_lr_setattr *in,
		     struct stat *st)
{
	struct shmfs_lr_setattr sa = *in;
	int rc;

	sa.sa_ino = ino;
	sa.sa_valid |= SHMFS_SA_CTIME;
	sa.sa_ctime = shmfs_op_now();
	if ((sa.sa_valid & SHMFS_SA_SIZE) && sa.sa_size > (uint64_t)INT64_MAX)
		return -EFBIG;
	rc = shmfs_fs_lock(fs);
	if (rc)
		return rc;
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	if (!ip || ip->gone) {
		rc = ip ? -ESTALE : -ENOENT;
	} else if (sa.sa_valid & SHMFS_SA_SIZE) {
		if (!(sa.sa_valid & SHMFS_SA_MTIME)) {
			sa.sa_valid |= SHMFS_SA_MTIME;
			sa.sa_mtime = sa.sa_ctime;
		}
		if (ip->type == S_IFREG && sa.sa_size < shmfs_op_size(ip))
			shmfs_op_zero_tail(fs, ip, sa.sa_size);
		else if (ip->type == S_IFREG)
			shmfs_op_zero_exposed(fs, ip, shmfs_op_size(ip), sa.sa_size);
	}
	rcu_read_unlock();
	/* Unflushed writes beyond the new size are not in the logged size, so
	 * replay would not cut them: unmap them first. */
	if (!rc && (sa.sa_valid & SHMFS_SA_SIZE)) {
		uint64_t unit = fs->sb.sb_alloc_unit, logged, cur;
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
		logged = ip ? ip->attr->size : 0;
		cur = ip ? shmfs_op_size(ip) : 0;
		rcu_read_unlock();
		uint64_t from = shmfs_round_up(sa.sa_size, unit), to = shmfs_round_up(cur, unit);
		if (sa.sa_size >= logged && to > from)
			rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, 0, op_recbuf,
					     shmfs_rec_extent(op_recbuf, ino, from, 0, to - from,
							      0));
	}
	if (!rc)
		rc = shmfs_fs_commit(fs, SHMFS_LR_SETATTR, 0, op_recbuf,
				     shmfs_rec_setattr(op_recbuf, &sa));
	if (!rc && (sa.sa_valid & SHMFS_SA_SIZE)) {
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
		if (ip) /* the logged size is now the truth */
			__atomic_store_n(&ip->wsize, 0, __ATOMIC_RELEASE);
		rcu_read_unlock();
	}
	if (!rc)
		rc = shmfs_op_getattr(fs, ino, st);
	shmfs_fs_unlock(fs);
	return rc;
}

int shmfs_op_readlink(struct shmfs_fs *fs, uint64_t ino, char *buf, size_t len)
{
	int rc;

	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	if (!ip)
		rc = -ENOENT;
	else if (ip->type != S_IFLNK || !ip->target)
		rc = -EINVAL;
	else if (len <= ip->target_len)
		rc = -ENAMETOOLONG;
	else {
		memcpy(buf, ip->target, ip->target_len + 1);
		rc = (int)ip->target_len;
	}
	rcu_read_unlock();
	return rc;
}

/* ---- xattrs -------------------------------------------------------------- */

int shmfs_op_setxattr(struct shmfs_fs *fs, uint64_t ino, const char *name, const void *value,
		      size_t size, int flags)
{
	size_t nl = strlen(name);
	uint32_t f = 0;
	int rc;

	if (nl < 1 || nl > SHMFS_XATTR_NAME_MAX)
		return -ERANGE;
	if (size > SHMFS_XATTR_SIZE_MAX)
		return -E2BIG;
	if (flags & XATTR_CREATE)
		f |= SHMFS_XATTR_CREATE;
	if (flags & XATTR_REPLACE)
		f |= SHMFS_XATTR_REPLACE;
	rc = shmfs_fs_lock(fs);
	if (rc)
		return rc;
	rc = shmfs_fs_commit(fs, SHMFS_LR_XATTR_SET, 0, op_recbuf,
			     shmfs_rec_xattr(op_recbuf, ino, f, name, nl, value, size));
	shmfs_fs_unlock(fs);
	return rc;
}

int shmfs_op_removexattr(struct shmfs_fs *fs, uint64_t ino, const char *name)
{
	size_t nl = strlen(name);
	int rc;

	if (nl < 1 || nl > SHMFS_XATTR_NAME_MAX)
		return -ENODATA;
	rc = shmfs_fs_lock(fs);
	if (rc)
		return rc;
	rc = shmfs_fs_commit(fs, SHMFS_LR_XATTR_REMOVE, 0, op_recbuf,
			     shmfs_rec_xattr(op_recbuf, ino, 0, name, nl, NULL, 0));
	shmfs_fs_unlock(fs);
	return rc;
}

int shmfs_op_getxattr(struct shmfs_fs *fs, uint64_t ino, const char *name, void *buf,
		      size_t size)
{
	size_t nl = strlen(name);
	int rc = -ENODATA;

	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	const struct shmfs_xattrs *xs = ip ? rcu_dereference(ip->xattrs) : NULL;
	if (!ip)
		rc = -ENOENT;
	for (uint32_t i = 0; xs && i < xs->n; i++) {
		if (xs->x[i].name_len != nl || memcmp(xs->x[i].name, name, nl))
			continue;
		rc = (int)xs->x[i].value_len;
		if (size && size < xs->x[i].value_len)
			rc = -ERANGE;
		else if (size)
			memcpy(buf, xs->x[i].value, xs->x[i].value_len);
	}
	rcu_read_unlock();
	return rc;
}

int shmfs_op_listxattr(struct shmfs_fs *fs, uint64_t ino, char *buf, size_t size)
{
	size_t need = 0;
	int rc = 0;

	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	const struct shmfs_xattrs *xs = ip ? rcu_dereference(ip->xattrs) : NULL;
	if (!ip)
		rc = -ENOENT;
	for (uint32_t i = 0; xs && i < xs->n; i++)
		need += xs->x[i].name_len + 1u;
	if (!rc && size && size < need)
		rc = -ERANGE;
	if (!rc && size) {
		char *p = buf;
		for (uint32_t i = 0; xs && i < xs->n; i++) {
			memcpy(p, xs->x[i].name, xs->x[i].name_len);
			p[xs->x[i].name_len] = 0;
			p += xs->x[i].name_len + 1;
		}
	}
	rcu_read_unlock();
	return rc ? rc : (int)need;
}
