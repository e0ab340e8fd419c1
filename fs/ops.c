/* SPDX-License-Identifier: MIT */
/*
 * Filesystem operations: POSIX semantics on top of records and region
 * memory.
 *
 * Metadata.  Each change takes the metadata lock (shmfs_fs_lock replays to
 * the tail, so the checks below see every host's latest state), builds one
 * record, and commits it.  A change is one record, so no host ever sees
 * half of it.
 *
 * Data.  File bytes live in the data area at the offsets the extent map
 * gives; reads and writes copy straight between the caller's buffer and
 * region memory.  Only allocation is logged: a write into space the file
 * already has costs no record.  The size a write reaches is kept in memory
 * (ip->wsize) and logged, with mtime, when the file is flushed (close,
 * fsync), so a streaming writer appends a record per allocated chunk, not
 * per write.  Appending writes allocate ahead (up to 64 MiB at a time) and
 * give back what they did not use at last close.  Freshly allocated units
 * are cleared before their extent record is published, so no host can read
 * another file's old bytes through them.
 */
#include "shmfs/ops.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include "shmfs/coord.h"
#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/region.h"
#include "shmfs/shmfs.h"
#include "shmfs/util.h"

#define PREALLOC_MAX (64ull << 20)
#define PREALLOC_MIN (64ull << 10) /* small files get no room ahead */

static __thread uint8_t rbuf[SHMFS_LR_PAYLOAD_MAX];

static uint8_t *data_ptr(struct shmfs_fs *fs, uint64_t doff)
{
	return fs->region->base + fs->sb.sb_data_off + doff;
}

/*
 * Store file bytes into the data area.  On a regular file (tmpfs) the
 * kernel's write path fills fresh pages much faster than page faults on
 * the mapping do (no fault per 4 KiB page), and the mapping sees the same
 * pages; elsewhere (devdax, BARs) copy through the mapping.
 */
static void data_store(struct shmfs_fs *fs, uint64_t doff, const void *src, size_t len)
{
	const struct shmfs_region *r = fs->region;

	if (r->kind == SHMFS_REGION_FILE && r->fd >= 0 && !r->readonly) {
		off_t at = (off_t)(r->offset + fs->sb.sb_data_off + doff);
		const uint8_t *p = src;
		while (len) {
			ssize_t n = pwrite(r->fd, p, len, at);
			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				break; /* fall back to the mapping for the rest */
			}
			p += n;
			at += n;
			len -= (size_t)n;
			doff += (uint64_t)n;
		}
		src = p;
		if (!len)
			return;
	}
	memcpy(data_ptr(fs, doff), src, len);
}

static struct shmfs_time now_time(void)
{
	uint64_t ns = shmfs_now_ns();

	return (struct shmfs_time){ .t_sec = ns / 1000000000ull, .t_nsec = (uint32_t)(ns % 1000000000ull) };
}

static uint64_t cur_size(const struct shmfs_inode *ip)
{
	uint64_t w = __atomic_load_n(&ip->wsize, __ATOMIC_ACQUIRE);

	return SHMFS_MAX(ip->attr->size, w);
}

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
	uint32_t len = shmfs_rec_create(rbuf, ino, dir, mode, cred->uid, gid,
					(S_ISCHR(mode) || S_ISBLK(mode)) ? rdev : 0, name,
					strlen(name), target, tlen);
	rc = shmfs_fs_commit(fs, SHMFS_LR_CREATE, 0, rbuf, len);
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
	rc = shmfs_fs_commit(fs, SHMFS_LR_LINK, 0, rbuf,
			     shmfs_rec_dirent(rbuf, dir, ino, name, strlen(name)));
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
				     !rmdir && keep ? SHMFS_LR_F_KEEP : 0, rbuf,
				     shmfs_rec_dirent(rbuf, dir, ino, name, strlen(name)));
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
				     rbuf, shmfs_rec_rename(rbuf, olddir, oldname, strlen(oldname),
							    newdir, newname, strlen(newname), ino,
							    target, flags));
	shmfs_fs_unlock(fs);
	return rc;
}

/* Zero the bytes of the unit holding `from` that lie at or after it, if
 * that unit is mapped, so a later extension reads zeros there. */
static void zero_tail(struct shmfs_fs *fs, struct shmfs_inode *ip, uint64_t from)
{
	uint64_t unit = fs->sb.sb_alloc_unit, end = shmfs_round_up(from, unit);

	if (from == end)
		return;
	const struct shmfs_extmap *m = rcu_dereference(ip->ext);
	for (uint32_t i = 0; m && i < m->n; i++) {
		const struct shmfs_extent *e = &m->e[i];
		if (from >= e->foff && from < e->foff + e->len)
			memset(data_ptr(fs, e->doff + (from - e->foff)), 0, end - from);
	}
}

/* Store zeros over [p, p + len), page by page, where it is not zero yet. */
static void clear_nonzero(uint8_t *p, uint64_t len)
{
	static const uint8_t zeros[4096];

	while (len) {
		size_t n = (size_t)SHMFS_MIN(len, sizeof(zeros));
		if (memcmp(p, zeros, n))
			memset(p, 0, n);
		p += n;
		len -= n;
	}
}

/*
 * The file grows from `from` to `to`: make what it exposes read as zeros
 * where it is already mapped.  Units past EOF may hold bytes a writer
 * stored but never published (it died before its flush, or its size was
 * cut back), and growing the file must not reveal them.  Pages already
 * zero are only read.  RCU read lock held.
 */
static void zero_exposed(struct shmfs_fs *fs, struct shmfs_inode *ip, uint64_t from, uint64_t to)
{
	const struct shmfs_extmap *m = rcu_dereference(ip->ext);

	for (uint32_t i = 0; m && i < m->n && from < to; i++) {
		const struct shmfs_extent *e = &m->e[i];
		uint64_t a = SHMFS_MAX(from, e->foff), b = SHMFS_MIN(to, e->foff + e->len);
		if (a < b)
			clear_nonzero(data_ptr(fs, e->doff + (a - e->foff)), b - a);
	}
}

int shmfs_op_setattr(struct shmfs_fs *fs, uint64_t ino, const struct shmfs_lr_setattr *in,
		     struct stat *st)
{
	struct shmfs_lr_setattr sa = *in;
	int rc;

	sa.sa_ino = ino;
	sa.sa_valid |= SHMFS_SA_CTIME;
	sa.sa_ctime = now_time();
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
		if (ip->type == S_IFREG && sa.sa_size < cur_size(ip))
			zero_tail(fs, ip, sa.sa_size);
		else if (ip->type == S_IFREG)
			zero_exposed(fs, ip, cur_size(ip), sa.sa_size);
	}
	rcu_read_unlock();
	/* Unflushed writes beyond the new size are not in the logged size, so
	 * replay would not cut them: unmap them first. */
	if (!rc && (sa.sa_valid & SHMFS_SA_SIZE)) {
		uint64_t unit = fs->sb.sb_alloc_unit, logged, cur;
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
		logged = ip ? ip->attr->size : 0;
		cur = ip ? cur_size(ip) : 0;
		rcu_read_unlock();
		uint64_t from = shmfs_round_up(sa.sa_size, unit), to = shmfs_round_up(cur, unit);
		if (sa.sa_size >= logged && to > from)
			rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, 0, rbuf,
					     shmfs_rec_extent(rbuf, ino, from, 0, to - from, 0));
	}
	if (!rc) {
		memcpy(rbuf, &sa, sizeof(sa));
		rc = shmfs_fs_commit(fs, SHMFS_LR_SETATTR, 0, rbuf, sizeof(sa));
	}
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
	rc = shmfs_fs_commit(fs, SHMFS_LR_XATTR_SET, 0, rbuf,
			     shmfs_rec_xattr(rbuf, ino, f, name, nl, value, size));
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
	rc = shmfs_fs_commit(fs, SHMFS_LR_XATTR_REMOVE, 0, rbuf,
			     shmfs_rec_xattr(rbuf, ino, 0, name, nl, NULL, 0));
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

/* ---- the attributes libshmfs reads (include/shmfs/shmfs.h) ----------------- */

bool shmfs_op_xattr_is_virtual(const char *name)
{
	return !strncmp(name, "user.shmfs.", 11);
}

static int map_info(struct shmfs_fs *fs, uint64_t ino, void *buf, size_t size)
{
	struct shmfs_map_info mi = { .mi_magic = SHMFS_MAP_MAGIC, .mi_version = SHMFS_MAP_VERSION,
				     .mi_hdr_size = sizeof(mi), .mi_ino = ino,
				     .mi_unit = fs->sb.sb_alloc_unit };
	int rc = 0;

	memcpy(mi.mi_uuid, fs->sb.sb_uuid, sizeof(mi.mi_uuid));
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	if (!ip || ip->type != S_IFREG) {
		rcu_read_unlock();
		return ip ? -ENODATA : -ENOENT;
	}
	mi.mi_gen = __atomic_load_n(&ip->layout_seq, __ATOMIC_ACQUIRE);
	mi.mi_size = cur_size(ip);
	const struct shmfs_extmap *m = rcu_dereference(ip->ext);
	mi.mi_nextents = m ? m->n : 0;
	size_t need = sizeof(mi) + (size_t)mi.mi_nextents * sizeof(struct shmfs_map_extent);
	if (need > SHMFS_XATTR_SIZE_MAX)
		rc = -E2BIG;
	else if (size && size < need)
		rc = -ERANGE;
	else if (size) {
		struct shmfs_map_extent *out = (void *)((uint8_t *)buf + sizeof(mi));
		memcpy(buf, &mi, sizeof(mi));
		for (uint32_t i = 0; i < mi.mi_nextents; i++) {
			struct shmfs_map_extent me = { m->e[i].foff,
						       fs->sb.sb_data_off + m->e[i].doff,
						       m->e[i].len };
			memcpy(&out[i], &me, sizeof(me));
		}
	}
	rcu_read_unlock();
	return rc ? rc : (int)need;
}

static int region_info(struct shmfs_fs *fs, void *buf, size_t size)
{
	const struct shmfs_region *r = fs->region;
	struct shmfs_region_info ri = { .ri_magic = SHMFS_REGION_MAGIC,
					.ri_version = SHMFS_MAP_VERSION,
					.ri_hdr_size = sizeof(ri), .ri_offset = r->offset,
					.ri_size = r->size, .ri_align = r->align };
	size_t pl = strlen(r->path) + 1, need = sizeof(ri) + pl;

	switch (r->kind) {
	case SHMFS_REGION_FILE:
	case SHMFS_REGION_HUGETLBFS:
		ri.ri_type = SHMFS_RT_FILE;
		break;
	case SHMFS_REGION_DEVDAX:
		ri.ri_type = SHMFS_RT_DEVDAX;
		break;
	case SHMFS_REGION_PCI:
		ri.ri_type = SHMFS_RT_PCI;
		break;
	case SHMFS_REGION_UIO:
		ri.ri_type = SHMFS_RT_UIO;
		break;
	default:
		return -ENODATA; /* anonymous memory: nothing to open */
	}
	memcpy(ri.ri_uuid, fs->sb.sb_uuid, sizeof(ri.ri_uuid));
	if (!size)
		return (int)need;
	if (size < need)
		return -ERANGE;
	memcpy(buf, &ri, sizeof(ri));
	memcpy((uint8_t *)buf + sizeof(ri), r->path, pl);
	return (int)need;
}

int shmfs_op_get_virtual(struct shmfs_fs *fs, uint64_t ino, const char *name, void *buf,
			 size_t size)
{
	if (!strcmp(name, SHMFS_XATTR_MAP))
		return map_info(fs, ino, buf, size);
	if (!strcmp(name, SHMFS_XATTR_REGION))
		return region_info(fs, buf, size);
	return -ENODATA;
}

int shmfs_op_set_virtual(struct shmfs_fs *fs, uint64_t ino, const char *name)
{
	if (strcmp(name, SHMFS_XATTR_SYNC))
		return -EPERM;
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	int type = ip ? (int)ip->type : 0;
	rcu_read_unlock();
	if (type != S_IFREG)
		return ip ? -EINVAL : -ENOENT;
	/* Publish whatever the mapping stored: a new mtime, whose record makes
	 * every other host drop the file's cached pages. */
	struct shmfs_lr_setattr sa = { .sa_valid = SHMFS_SA_MTIME | SHMFS_SA_CTIME };
	sa.sa_mtime = sa.sa_ctime = now_time();
	struct stat st;
	return shmfs_op_setattr(fs, ino, &sa, &st);
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

/* ---- data ----------------------------------------------------------------- */

int shmfs_op_read_map(struct shmfs_fs *fs, uint64_t ino, uint64_t off, size_t len,
		      struct shmfs_piece *pieces, int max, size_t *total)
{
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	int n = 0;

	*total = 0;
	if (!ip)
		return -ENOENT;
	if (ip->type != S_IFREG)
		return -EISDIR;
	uint64_t size = cur_size(ip);
	if (off >= size)
		return 0;
	uint64_t end = SHMFS_MIN(size, off + len);
	const struct shmfs_extmap *m = rcu_dereference(ip->ext);
	uint32_t i = 0;
	while (m && i < m->n && m->e[i].foff + m->e[i].len <= off)
		i++;
	while (off < end && n < max) {
		const struct shmfs_extent *e = m && i < m->n ? &m->e[i] : NULL;
		if (e && e->foff <= off) {
			uint64_t l = SHMFS_MIN(end, e->foff + e->len) - off;
			pieces[n++] = (struct shmfs_piece){ data_ptr(fs, e->doff + (off - e->foff)), l };
			off += l;
			*total += l;
			i++;
		} else {
			uint64_t hole_end = e ? SHMFS_MIN(end, e->foff) : end;
			pieces[n++] = (struct shmfs_piece){ NULL, hole_end - off };
			*total += hole_end - off;
			off = hole_end;
		}
	}
	return n;
}

/* Is [off, end) of the file fully backed by extents? (RCU held) */
static bool backed(const struct shmfs_extmap *m, uint64_t off, uint64_t end)
{
	for (uint32_t i = 0; m && i < m->n && off < end; i++) {
		const struct shmfs_extent *e = &m->e[i];
		if (e->foff + e->len <= off)
			continue;
		if (e->foff > off)
			return false;
		off = e->foff + e->len;
	}
	return off >= end;
}

/*
 * Under the lock: give the file data for every unit of [from, to) it lacks
 * (unit-aligned).  New units are cleared before they are published.
 */
static int allocate_locked(struct shmfs_fs *fs, uint64_t ino, uint64_t from, uint64_t to,
			   uint16_t flags)
{
	uint64_t unit = fs->sb.sb_alloc_unit;

	while (from < to) {
		/* Find the next hole in [from, to). */
		uint64_t hs = to, he = to;
		rcu_read_lock();
		struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
		if (!ip || ip->gone) {
			rcu_read_unlock();
			return ip ? -ESTALE : -ENOENT;
		}
		const struct shmfs_extmap *m = rcu_dereference(ip->ext);
		uint64_t pos = from;
		for (uint32_t i = 0; m && i < m->n; i++) {
			const struct shmfs_extent *e = &m->e[i];
			if (e->foff + e->len <= pos)
				continue;
			if (e->foff > pos)
				break;
			pos = e->foff + e->len;
		}
		hs = SHMFS_MIN(pos, to);
		he = to;
		for (uint32_t i = 0; m && i < m->n; i++)
			if (m->e[i].foff >= hs && m->e[i].foff < he)
				he = m->e[i].foff;
		rcu_read_unlock();
		if (hs >= to)
			return 0;

		uint64_t first, got;
		int rc = shmfs_fs_alloc(fs, (he - hs) / unit, &first, &got);
		if (rc)
			return rc;
		/* Clear in place.  Punching a hole in a file-backed region hands
		 * the pages back to the kernel: the write that follows must get
		 * fresh pages (faults, or allocation in pwrite) and the next read
		 * faults them into our mapping again. */
		memset(data_ptr(fs, first * unit), 0, got * unit);
		rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_MAP, flags, rbuf,
				     shmfs_rec_extent(rbuf, ino, hs, first * unit, got * unit, 0));
		if (rc)
			return rc;
		from = hs + got * unit;
	}
	return 0;
}

/*
 * Out of space, but space freed by other records is still pending: it is
 * reused only once every live host has applied the record that freed it,
 * and a host that has just mounted counts every slot in use as live until
 * it has watched it for a lease (a host killed long ago included).  Wait
 * for that, as ext4 waits for a journal commit before it reports ENOSPC:
 * true (after a short sleep) while it is worth trying again.  Space held
 * by a pin (a file still open on a live host) is not waited for.
 */
static bool wait_for_pending(struct shmfs_fs *fs, uint64_t *deadline)
{
	struct timespec ts = { 0, 5000000 };
	uint64_t now = shmfs_mono_ns(), applied;
	bool held = false;

	if (!*deadline)
		*deadline = now + fs->lease_ns + fs->lease_ns / 2;
	if (now >= *deadline)
		return false;
	pthread_mutex_lock(&fs->replay_lock);
	/* reusable since the allocator looked (a host just found dead, or
	 * the follower reaped): try again at once */
	uint64_t safe = shmfs_hosts_safe_seq(fs);
	shmfs_ns_reap(fs->ns, safe, fs->pins, fs->npins);
	bool ready = fs->ns->alloc.nfree > fs->ns->alloc.npend;
	applied = fs->seq;
	for (uint32_t i = 0; i < fs->sb.sb_max_hosts; i++) {
		if ((int)i == fs->slot || !shmfs_host_live_locked(fs, i))
			continue;
		struct shmfs_host *h = shmfs_host_slot(fs->region->base, &fs->sb, i);
		applied = SHMFS_MIN(applied, __atomic_load_n(&h->hs_applied_seq, __ATOMIC_ACQUIRE) + 1);
	}
	for (size_t k = 0; k < fs->ns->npending && !held; k++)
		held = fs->ns->pending[k].seq >= applied;
	pthread_mutex_unlock(&fs->replay_lock);
	if (ready)
		return true;
	if (!held)
		return false;
	nanosleep(&ts, NULL);
	return true;
}

ssize_t shmfs_op_write(struct shmfs_fs *fs, uint64_t ino, uint64_t off, const void *buf,
		       size_t len)
{
	uint64_t unit = fs->sb.sb_alloc_unit, end = off + len;
	bool ok;
	int rc;

	if (!len)
		return 0;
	if (end < off || end > (uint64_t)INT64_MAX)
		return -EFBIG;
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	ok = ip && backed(rcu_dereference(ip->ext), off, end);
	uint64_t size = ip ? cur_size(ip) : 0;
	rcu_read_unlock();
	if (!ok) {
		uint64_t from = shmfs_round_down(off, unit), to = shmfs_round_up(end, unit);
		if (end >= size && end >= PREALLOC_MIN) {
			/* A stream: reserve as much again as the file has (capped),
			 * so it logs a record per doubling, not per write. */
			uint64_t ahead = SHMFS_MIN(SHMFS_MAX(size, len), PREALLOC_MAX);
			to = shmfs_round_up(end + ahead, unit);
		}
		uint64_t deadline = 0;
retry:
		rc = shmfs_fs_lock(fs);
		if (rc)
			return rc;
		uint64_t need = shmfs_round_up(end, unit);
		rc = allocate_locked(fs, ino, from, need, 0);
		if (!rc && to > need)
			allocate_locked(fs, ino, need, to, SHMFS_EXT_F_AHEAD); /* best effort */
		/* Whatever was allocated beyond what the write will fill -- room
		 * ahead, or the start of a range that ran out of space -- goes
		 * back at the last close if the file does not grow into it. */
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
		uint64_t reach = rc == -ENOSPC ? need : to;
		if (ip && ip->prealloc_end < reach)
			ip->prealloc_end = reach;
		rcu_read_unlock();
		shmfs_fs_unlock(fs);
		if (rc == -ENOSPC && wait_for_pending(fs, &deadline))
			goto retry;
		if (rc && rc != -ENOSPC)
			return rc;
		/* Out of space: write what fits (a short write), as POSIX wants. */
	}

	size_t done = 0;
	rcu_read_lock();
	ip = shmfs_ns_iget(fs->ns, ino);
	/* a write past EOF leaves a gap that must read as zeros */
	if (ip && off > size)
		zero_exposed(fs, ip, size, off);
	const struct shmfs_extmap *m = ip ? rcu_dereference(ip->ext) : NULL;
	for (uint32_t i = 0; m && i < m->n && done < len; i++) {
		const struct shmfs_extent *e = &m->e[i];
		uint64_t pos = off + done;
		if (e->foff + e->len <= pos || e->foff > pos)
			continue;
		size_t l = (size_t)SHMFS_MIN(e->foff + e->len - pos, len - done);
		data_store(fs, e->doff + (pos - e->foff), (const uint8_t *)buf + done, l);
		done += l;
	}
	if (ip && done) {
		uint64_t w = __atomic_load_n(&ip->wsize, __ATOMIC_ACQUIRE);
		uint64_t nw = off + done;
		while (nw > SHMFS_MAX(w, ip->attr->size) &&
		       !__atomic_compare_exchange_n(&ip->wsize, &w, nw, false, __ATOMIC_ACQ_REL,
						    __ATOMIC_ACQUIRE))
			;
		__atomic_fetch_add(&ip->wdirty, 1, __ATOMIC_ACQ_REL);
	}
	rcu_read_unlock();
	if (!done)
		return !ip ? -ENOENT : ok ? -EIO : -ENOSPC;
	return (ssize_t)done;
}

int shmfs_op_flush(struct shmfs_fs *fs, uint64_t ino, bool last_close)
{
	uint64_t unit = fs->sb.sb_alloc_unit;
	int rc;

	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	bool dirty = ip && __atomic_load_n(&ip->wdirty, __ATOMIC_ACQUIRE);
	bool trim = ip && last_close && ip->prealloc_end;
	rcu_read_unlock();
	if (!dirty && !trim)
		return 0;
	rc = shmfs_fs_lock(fs);
	if (rc)
		return rc;
	rcu_read_lock();
	ip = shmfs_ns_iget(fs->ns, ino);
	if (!ip || ip->gone) {
		rcu_read_unlock();
		shmfs_fs_unlock(fs);
		return 0;
	}
	uint64_t size = cur_size(ip), pend = ip->prealloc_end;
	/* Clear the write generation only once the record is out (below): a
	 * flush that finds it 0 must be able to trust that nothing written
	 * before is still unlogged -- also while another flush of this file
	 * (a late release) is between taking it and committing. */
	uint32_t gen = __atomic_load_n(&ip->wdirty, __ATOMIC_ACQUIRE);
	dirty = gen != 0;
	rcu_read_unlock();
	/* Give back the room reserved ahead first, so that a host that sees
	 * the new size has also seen the space come back. */
	if (last_close && pend > shmfs_round_up(size, unit)) {
		uint64_t from = shmfs_round_up(size, unit);
		rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, SHMFS_EXT_F_AHEAD, rbuf,
				     shmfs_rec_extent(rbuf, ino, from, 0, pend - from, 0));
		if (rc == -ENOENT || rc == -EINVAL)
			rc = 0;
	}
	if (!rc && dirty) {
		struct shmfs_lr_setattr sa = { .sa_ino = ino,
					       .sa_valid = SHMFS_SA_SIZE | SHMFS_SA_MTIME | SHMFS_SA_CTIME,
					       .sa_size = size };
		sa.sa_mtime = sa.sa_ctime = now_time();
		memcpy(rbuf, &sa, sizeof(sa));
		rc = shmfs_fs_commit(fs, SHMFS_LR_SETATTR, 0, rbuf, sizeof(sa));
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
		if (ip && !rc) {
			uint64_t w = size;
			__atomic_compare_exchange_n(&ip->wsize, &w, 0, false, __ATOMIC_ACQ_REL,
						    __ATOMIC_RELAXED);
			/* writes that came in meanwhile keep it dirty */
			__atomic_compare_exchange_n(&ip->wdirty, &gen, 0, false, __ATOMIC_ACQ_REL,
						    __ATOMIC_RELAXED);
		}
		rcu_read_unlock();
	}	/* on failure wdirty stays set: still to publish at the next flush */
	if (last_close) {
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
		if (ip)
			ip->prealloc_end = 0;
		rcu_read_unlock();
	}
	shmfs_fs_unlock(fs);
	return rc;
}

int shmfs_op_fallocate(struct shmfs_fs *fs, uint64_t ino, int mode, uint64_t off, uint64_t len)
{
	uint64_t unit = fs->sb.sb_alloc_unit, end = off + len;
	bool keep = mode & FALLOC_FL_KEEP_SIZE;
	int rc;

	if (!len || end < off || end > (uint64_t)INT64_MAX)
		return len ? -EFBIG : -EINVAL;
	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))
		return -EOPNOTSUPP;
	if ((mode & FALLOC_FL_PUNCH_HOLE) && !keep)
		return -EOPNOTSUPP;
	rc = shmfs_fs_lock(fs);
	if (rc)
		return rc;
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	uint64_t size = ip ? cur_size(ip) : 0;
	if (!ip || ip->gone)
		rc = ip ? -ESTALE : -ENOENT;
	else if (ip->type != S_IFREG)
		rc = ip->type == S_IFDIR ? -EISDIR : -ENODEV;
	else if (!keep && end > size)
		zero_exposed(fs, ip, size, end);
	rcu_read_unlock();

	if (!rc && (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
		/* Whole units in the range become holes; partial edges are zeroed. */
		uint64_t us = shmfs_round_up(off, unit), ue = shmfs_round_down(end, unit);
		if (mode & FALLOC_FL_PUNCH_HOLE)
			end = SHMFS_MIN(end, size);
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
		const struct shmfs_extmap *m = ip ? rcu_dereference(ip->ext) : NULL;
		for (uint32_t i = 0; m && i < m->n; i++) {
			const struct shmfs_extent *e = &m->e[i];
			uint64_t a = SHMFS_MAX(off, e->foff), b = SHMFS_MIN(end, e->foff + e->len);
			if (a >= b)
				continue;
			/* only the parts outside [us, ue) need clearing */
			if (a < us)
				memset(data_ptr(fs, e->doff + (a - e->foff)), 0, SHMFS_MIN(b, us) - a);
			/* (a range inside one unit was cleared by the memset above) */
			if (b > ue && ue >= us)
				memset(data_ptr(fs, e->doff + (SHMFS_MAX(a, ue) - e->foff)), 0,
				       b - SHMFS_MAX(a, ue));
		}
		rcu_read_unlock();
		if (ue > us)
			rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, 0, rbuf,
					     shmfs_rec_extent(rbuf, ino, us, 0, ue - us, 0));
	} else if (!rc) {
		/* Extents come whole units at unit offsets of the data area, itself
		 * unit aligned, and the unit is a multiple of the region's mapping
		 * alignment: what fallocate allocates can be mapped directly. */
		rc = allocate_locked(fs, ino, shmfs_round_down(off, unit), shmfs_round_up(end, unit), 0);
		/* Room a write stream reserved ahead goes back at the last close
		 * (or when its host dies, or from fsck), from EOF on; what the
		 * caller asks for here is to stay.  So this host's close stops
		 * short of it, and for every host the reservation ends: an unmap
		 * with SHMFS_EXT_F_AHEAD of the unit past the end of the map
		 * (nothing: under the lock the map cannot grow). */
		uint64_t map_end = 0;
		bool ends = false;
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
		if (!rc && keep && ip && ip->prealloc_end > shmfs_round_down(off, unit))
			ip->prealloc_end = shmfs_round_down(off, unit);
		if (!rc && keep && ip && ip->ahead_from &&
		    ip->ahead_from < shmfs_round_up(end, unit)) {
			const struct shmfs_extmap *m = rcu_dereference(ip->ext);
			if (m && m->n)
				map_end = m->e[m->n - 1].foff + m->e[m->n - 1].len;
			ends = true;
		}
		rcu_read_unlock();
		if (ends && map_end + unit <= (uint64_t)INT64_MAX)
			rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, SHMFS_EXT_F_AHEAD, rbuf,
					     shmfs_rec_extent(rbuf, ino, map_end, 0, unit, 0));
	}
	if (!rc && !keep && end > size) {
		struct shmfs_lr_setattr sa = { .sa_ino = ino, .sa_valid = SHMFS_SA_SIZE |
					       SHMFS_SA_CTIME, .sa_size = end };
		sa.sa_ctime = now_time();
		memcpy(rbuf, &sa, sizeof(sa));
		rc = shmfs_fs_commit(fs, SHMFS_LR_SETATTR, 0, rbuf, sizeof(sa));
	}
	shmfs_fs_unlock(fs);
	return rc;
}

ssize_t shmfs_op_copy_range(struct shmfs_fs *fs, uint64_t in, uint64_t off_in, uint64_t out,
			    uint64_t off_out, size_t len)
{
	static __thread uint8_t chunk[1 << 20];
	size_t done = 0;

	while (done < len) {
		struct shmfs_piece p[64];
		size_t total, want = SHMFS_MIN(len - done, sizeof(chunk)), got = 0;
		rcu_read_lock();
		int n = shmfs_op_read_map(fs, in, off_in + done, want, p, 64, &total);
		for (int i = 0; i < n; i++) {
			if (p[i].mem)
				memcpy(chunk + got, p[i].mem, p[i].len);
			else
				memset(chunk + got, 0, p[i].len);
			got += p[i].len;
		}
		rcu_read_unlock();
		if (n < 0)
			return done ? (ssize_t)done : n;
		if (!got)
			break;
		ssize_t w = shmfs_op_write(fs, out, off_out + done, chunk, got);
		if (w < 0)
			return done ? (ssize_t)done : w;
		done += (size_t)w;
		if ((size_t)w < got)
			break;
	}
	return (ssize_t)done;
}

int shmfs_op_trim_ahead(struct shmfs_fs *fs, uint64_t ino, uint32_t host)
{
	uint64_t unit = fs->sb.sb_alloc_unit, from = 0, end = 0;
	int rc = shmfs_fs_lock(fs);

	if (rc)
		return rc;
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	if (ip && !ip->gone && ip->ahead_from && ip->ahead_host == host) {
		const struct shmfs_extmap *m = rcu_dereference(ip->ext);
		from = SHMFS_MAX(shmfs_round_up(cur_size(ip), unit),
				 shmfs_round_down(ip->ahead_from, unit));
		if (m && m->n)
			end = m->e[m->n - 1].foff + m->e[m->n - 1].len;
	}
	rcu_read_unlock();
	if (end > from)
		rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, SHMFS_EXT_F_AHEAD, rbuf,
				     shmfs_rec_extent(rbuf, ino, from, 0, end - from, 0));
	shmfs_fs_unlock(fs);
	return rc;
}

int shmfs_op_release_orphan(struct shmfs_fs *fs, uint64_t ino)
{
	struct shmfs_lr_release rl = { ino };
	int rc = shmfs_fs_lock(fs);

	if (rc)
		return rc;
	memcpy(rbuf, &rl, sizeof(rl));
	rc = shmfs_fs_commit(fs, SHMFS_LR_RELEASE, 0, rbuf, sizeof(rl));
	shmfs_fs_unlock(fs);
	return rc;
}
