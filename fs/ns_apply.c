/* SPDX-License-Identifier: MIT */
/*
 * The namespace's record appliers: what each record type does, in two
 * phases (check, then do; see fs/ns.c), and what it changed, reported to
 * the caller (struct shmfs_ns_changes) so that caches above never decode
 * payloads.  Records arrive decoded and shape-checked (fs/rec.c); the
 * table below maps each type to its applier.
 */
#include "shmfs/ns.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "shmfs/util.h"
#include "ns_int.h"

/* ---- record types --------------------------------------------------------- */

static int apply_create(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry,
			char *why, size_t whylen)
{
	const struct shmfs_lr_create c = r->u.cr;
	struct shmfs_inode *dir = NULL, *ip;
	const char *name = (const char *)r->var[0].p;
	int err;

	/* Inode numbers only grow, so a number below next_ino exists or did. */
	if (c.cr_ino < ns->next_ino)
		REJECT(ns_live_iget(ns, c.cr_ino) ? -EEXIST : -EINVAL,
		       "inode %" PRIu64 " was used before (next is %" PRIu64 ")", c.cr_ino,
		       ns->next_ino);
	if (c.cr_ino != SHMFS_ROOT_INO) {
		dir = ns_get_dir(ns, c.cr_parent, &err);
		if (!dir)
			REJECT(err, "create %.*s: parent %" PRIu64 " %s", c.cr_name_len, name,
			       c.cr_parent, err == -ENOENT ? "does not exist" : "is not a directory");
		if (shmfs_ns_lookup(ns, c.cr_parent, name, c.cr_name_len))
			REJECT(-EEXIST, "create: %.*s exists in %" PRIu64, c.cr_name_len, name,
			       c.cr_parent);
		if (S_ISDIR(c.cr_mode) && dir->attr->nlink >= UINT32_MAX - 1)
			REJECT(-EMLINK, "directory %" PRIu64 " has too many subdirectories",
			       c.cr_parent);
	}
	if (dry)
		return 0;

	ip = ns_inode_new(c.cr_ino, c.cr_mode, c.cr_uid, c.cr_gid, c.cr_rdev, r->time);
	if (!ip)
		return -ENOMEM;
	ip->attr->nlink = S_ISDIR(c.cr_mode) ? 2 : 1;
	ip->parent = c.cr_ino == SHMFS_ROOT_INO ? SHMFS_ROOT_INO : c.cr_parent;
	if (S_ISLNK(c.cr_mode)) {
		ip->target = malloc(c.cr_target_len + 1u);
		if (!ip->target) {
			ns_free_inode_now(ip);
			return -ENOMEM;
		}
		memcpy(ip->target, r->var[1].p, c.cr_target_len);
		ip->target[c.cr_target_len] = 0;
		ip->target_len = c.cr_target_len;
		ip->attr->size = c.cr_target_len;
	}
	struct shmfs_dentry *d = NULL;
	if (dir) {
		d = ns_dentry_new(dir->ino, ip->ino, ip->type, name, c.cr_name_len);
		if (!d || ns_touch(ns, dir, r->time, true, S_ISDIR(c.cr_mode) ? 1 : 0)) {
			free(d);
			ns_free_inode_now(ip);
			return -ENOMEM;
		}
	}
	cds_lfht_add(ns->inodes, ns_ino_hash(ip->ino), &ip->hnode);
	ns->ninodes++;
	ns->next_ino = c.cr_ino + 1;
	if (d)
		ns_dentry_add(ns, dir, d);
	return 0;
}

static int apply_link(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry,
			char *why, size_t whylen)
{
	const struct shmfs_lr_link l = r->u.ln;
	struct shmfs_inode *dir, *ip;
	const char *name = (const char *)r->var[0].p;
	int err;

	dir = ns_get_dir(ns, l.ln_dir, &err);
	if (!dir)
		REJECT(err, "link: directory %" PRIu64 " is missing or not a directory", l.ln_dir);
	ip = ns_live_iget(ns, l.ln_ino);
	if (!ip)
		REJECT(-ENOENT, "link: inode %" PRIu64 " does not exist", l.ln_ino);
	if (ip->type == S_IFDIR)
		REJECT(-EPERM, "link: inode %" PRIu64 " is a directory", l.ln_ino);
	if (ip->attr->nlink >= UINT32_MAX - 1)
		REJECT(-EMLINK, "link: inode %" PRIu64 " has too many links", l.ln_ino);
	if (shmfs_ns_lookup(ns, l.ln_dir, name, l.ln_name_len))
		REJECT(-EEXIST, "link: %.*s exists", l.ln_name_len, name);
	if (dry)
		return 0;
	struct shmfs_dentry *d = ns_dentry_new(dir->ino, ip->ino, ip->type, name, l.ln_name_len);
	if (!d || ns_touch(ns, ip, r->time, false, 1) || ns_touch(ns, dir, r->time, true, 0)) {
		free(d);
		return -ENOMEM;
	}
	ns_dentry_add(ns, dir, d);
	return 0;
}

static int apply_unlink(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry,
			char *why, size_t whylen)
{
	const struct shmfs_lr_unlink u = r->u.ul;
	struct shmfs_inode *dir, *ip;
	struct shmfs_dentry *d;
	const char *name = (const char *)r->var[0].p;
	bool rmdir = r->type == SHMFS_LR_RMDIR;
	int err;

	dir = ns_get_dir(ns, u.ul_dir, &err);
	if (!dir)
		REJECT(err, "%s: directory %" PRIu64 " is missing or not a directory",
		       rmdir ? "rmdir" : "unlink", u.ul_dir);
	d = shmfs_ns_lookup(ns, u.ul_dir, name, u.ul_name_len);
	if (!d)
		REJECT(-ENOENT, "%s: no %.*s in %" PRIu64, rmdir ? "rmdir" : "unlink",
		       u.ul_name_len, name, u.ul_dir);
	if (d->ino != u.ul_ino)
		REJECT(-ESTALE, "%s: %.*s is inode %" PRIu64 ", not %" PRIu64,
		       rmdir ? "rmdir" : "unlink", u.ul_name_len, name, d->ino, u.ul_ino);
	ip = ns_live_iget(ns, d->ino);
	if (!ip)
		REJECT(-EUCLEAN, "entry %.*s names missing inode %" PRIu64, u.ul_name_len, name,
		       d->ino);
	if (rmdir && ip->type != S_IFDIR)
		REJECT(-ENOTDIR, "rmdir: %.*s is not a directory", u.ul_name_len, name);
	if (!rmdir && ip->type == S_IFDIR)
		REJECT(-EISDIR, "unlink: %.*s is a directory", u.ul_name_len, name);
	if (rmdir && ip->nchildren)
		REJECT(-ENOTEMPTY, "rmdir: %.*s is not empty", u.ul_name_len, name);
	if (dry)
		return 0;
	if (ns_touch(ns, dir, r->time, true, rmdir ? -1 : 0))
		return -ENOMEM;
	ns_dentry_del(ns, dir, d);
	return ns_inode_unlink(ns, ip, r->time, r->flags & SHMFS_LR_F_KEEP);
}

static int apply_rename(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry,
			char *why, size_t whylen)
{
	const struct shmfs_lr_rename rn = r->u.rn;
	struct shmfs_inode *od, *nd, *src, *dst = NULL;
	struct shmfs_dentry *sd, *td;
	int err;

	const char *oname = (const char *)r->var[0].p;
	const char *nname = (const char *)r->var[1].p;
	bool exchange = rn.rn_flags & SHMFS_RENAME_EXCHANGE;

	od = ns_get_dir(ns, rn.rn_olddir, &err);
	if (!od)
		REJECT(err, "rename: source directory %" PRIu64 " is invalid", rn.rn_olddir);
	nd = ns_get_dir(ns, rn.rn_newdir, &err);
	if (!nd)
		REJECT(err, "rename: target directory %" PRIu64 " is invalid", rn.rn_newdir);
	sd = shmfs_ns_lookup(ns, rn.rn_olddir, oname, rn.rn_oldname_len);
	if (!sd)
		REJECT(-ENOENT, "rename: no %.*s in %" PRIu64, rn.rn_oldname_len, oname,
		       rn.rn_olddir);
	if (sd->ino != rn.rn_ino)
		REJECT(-ESTALE, "rename: %.*s is not inode %" PRIu64, rn.rn_oldname_len, oname,
		       rn.rn_ino);
	td = shmfs_ns_lookup(ns, rn.rn_newdir, nname, rn.rn_newname_len);
	if ((td ? td->ino : 0) != rn.rn_target) {
		if (td && (rn.rn_flags & SHMFS_RENAME_NOREPLACE))
			REJECT(-EEXIST, "rename: %.*s exists", rn.rn_newname_len, nname);
		REJECT(td ? -ESTALE : -ENOENT, "rename: target %.*s is not inode %" PRIu64,
		       rn.rn_newname_len, nname, rn.rn_target);
	}
	src = ns_live_iget(ns, rn.rn_ino);
	if (!src)
		REJECT(-EUCLEAN, "rename: inode %" PRIu64 " is missing", rn.rn_ino);
	if (td) {
		dst = ns_live_iget(ns, td->ino);
		if (!dst)
			REJECT(-EUCLEAN, "rename: inode %" PRIu64 " is missing", td->ino);
	}
	/* Neither directory may move below itself. */
	if (src->type == S_IFDIR && rn.rn_olddir != rn.rn_newdir &&
	    ns_is_ancestor(ns, src->ino, rn.rn_newdir))
		REJECT(-EINVAL, "rename: directory %" PRIu64 " would move into itself", src->ino);
	if (exchange && dst->type == S_IFDIR && rn.rn_olddir != rn.rn_newdir &&
	    ns_is_ancestor(ns, dst->ino, rn.rn_olddir))
		REJECT(-EINVAL, "rename: directory %" PRIu64 " would move into itself", dst->ino);
	if (dst && !exchange) {
		if (src->type == S_IFDIR && dst->type != S_IFDIR)
			REJECT(-ENOTDIR, "rename: %.*s is not a directory", rn.rn_newname_len, nname);
		if (src->type != S_IFDIR && dst->type == S_IFDIR)
			REJECT(-EISDIR, "rename: %.*s is a directory", rn.rn_newname_len, nname);
		if (dst->type == S_IFDIR && dst->nchildren)
			REJECT(-ENOTEMPTY, "rename: %.*s is not empty", rn.rn_newname_len, nname);
	}
	if (dry)
		return 0;

	uint64_t t = r->time;
	int sdir = src->type == S_IFDIR, ddir = dst && dst->type == S_IFDIR;
	struct shmfs_dentry *ns_d = ns_dentry_new(nd->ino, src->ino, src->type, nname,
					       rn.rn_newname_len);
	struct shmfs_dentry *os_d = exchange ? ns_dentry_new(od->ino, dst->ino, dst->type, oname,
							  rn.rn_oldname_len) : NULL;
	if (!ns_d || (exchange && !os_d)) {
		free(ns_d);
		free(os_d);
		return -ENOMEM;
	}
	if (exchange) {
		ns_dentry_del(ns, od, sd);
		ns_dentry_del(ns, nd, td);
		ns_dentry_add(ns, nd, ns_d);
		ns_dentry_add(ns, od, os_d);
		if (od != nd) {
			if (ns_touch(ns, od, t, true, ddir - sdir) || ns_touch(ns, nd, t, true, sdir - ddir))
				return -ENOMEM;
		} else if (ns_touch(ns, od, t, true, 0)) {
			return -ENOMEM;
		}
		src->parent = sdir ? nd->ino : src->parent;
		dst->parent = ddir ? od->ino : dst->parent;
		if (ns_touch(ns, src, t, false, 0) || ns_touch(ns, dst, t, false, 0))
			return -ENOMEM;
		return 0;
	}
	ns_dentry_del(ns, od, sd);
	if (td)
		ns_dentry_del(ns, nd, td);
	ns_dentry_add(ns, nd, ns_d);
	if (sdir)
		src->parent = nd->ino;
	if (od != nd) {
		if (ns_touch(ns, od, t, true, -sdir) || ns_touch(ns, nd, t, true, sdir - ddir))
			return -ENOMEM;
	} else if (ns_touch(ns, od, t, true, -ddir)) {
		return -ENOMEM;
	}
	if (ns_touch(ns, src, t, false, 0))
		return -ENOMEM;
	/* The replaced inode loses a name (an empty directory: its last). */
	return dst ? ns_inode_unlink(ns, dst, t, r->flags & SHMFS_LR_F_KEEP) : 0;
}

static int apply_setattr(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry,
			char *why, size_t whylen)
{
	const struct shmfs_lr_setattr s = r->u.sa;
	struct shmfs_inode *ip;
	struct shmfs_attr *a;
	uint64_t freed = 0;

	ip = ns_live_iget(ns, s.sa_ino);
	if (!ip)
		REJECT(-ENOENT, "setattr: inode %" PRIu64 " does not exist", s.sa_ino);
	if ((s.sa_valid & SHMFS_SA_SIZE) && ip->type != S_IFREG)
		REJECT(ip->type == S_IFDIR ? -EISDIR : -EINVAL,
		       "setattr: size of non-regular inode %" PRIu64, s.sa_ino);
	if (dry)
		return 0;
	if ((s.sa_valid & SHMFS_SA_SIZE) && s.sa_size < ip->attr->size) {
		int rc = ns_ext_release(ns, ip, shmfs_round_up(s.sa_size, ns->unit), UINT64_MAX, &freed);
		if (rc)
			return rc;
		ns_ahead_trimmed(ns, ip);
	}
	a = ns_attr_copy(ns, ip);
	if (!a)
		return -ENOMEM;
	if (s.sa_valid & SHMFS_SA_MODE)
		a->mode = (a->mode & S_IFMT) | s.sa_mode;
	if (s.sa_valid & SHMFS_SA_UID)
		a->uid = s.sa_uid;
	if (s.sa_valid & SHMFS_SA_GID)
		a->gid = s.sa_gid;
	if (s.sa_valid & SHMFS_SA_SIZE)
		a->size = s.sa_size;
	if (s.sa_valid & SHMFS_SA_ATIME)
		a->atime = s.sa_atime;
	if (s.sa_valid & SHMFS_SA_MTIME)
		a->mtime = s.sa_mtime;
	if (s.sa_valid & SHMFS_SA_CTIME)
		a->ctime = s.sa_ctime;
	a->blocks_bytes -= freed;
	ns_attr_swap(ns, ip, a);
	return 0;
}

static int apply_extent(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry,
			char *why, size_t whylen)
{
	const struct shmfs_lr_extent x = r->u.ex;
	struct shmfs_inode *ip;
	struct shmfs_attr *a;
	bool map = r->type == SHMFS_LR_EXTENT_MAP;
	uint64_t freed = 0;

	ip = ns_live_iget(ns, x.ex_ino);
	if (!ip)
		REJECT(-ENOENT, "extent: inode %" PRIu64 " does not exist", x.ex_ino);
	if (ip->type != S_IFREG)
		REJECT(-EINVAL, "extent: inode %" PRIu64 " is not a regular file", x.ex_ino);
	if (map) {
		if (x.ex_doff >= ns->data_size || x.ex_len > ns->data_size - x.ex_doff)
			REJECT(-EUCLEAN, "extent: data [%" PRIu64 ", +%" PRIu64
			       ") is outside the data area", x.ex_doff, x.ex_len);
		if (!shmfs_alloc_is_free(&ns->alloc, x.ex_doff / ns->unit, x.ex_len / ns->unit))
			REJECT(-EUCLEAN, "extent: data [%" PRIu64 ", +%" PRIu64
			       ") overlaps space in use", x.ex_doff, x.ex_len);
		if (ns_ext_overlaps(ip->ext, x.ex_foff, x.ex_len))
			REJECT(-EEXIST, "extent: file range [%" PRIu64 ", +%" PRIu64
			       ") of inode %" PRIu64 " is already mapped", x.ex_foff, x.ex_len,
			       x.ex_ino);
	}
	if (dry)
		return 0;
	a = ns_attr_copy(ns, ip);
	if (!a)
		return -ENOMEM;
	if (map) {
		if (ns_ext_insert(ns, ip, (struct shmfs_extent){ x.ex_foff, x.ex_doff, x.ex_len })) {
			ns_attr_drop(ip, a);
			return -ENOMEM;
		}
		shmfs_alloc_mark(&ns->alloc, x.ex_doff / ns->unit, x.ex_len / ns->unit, true);
		shmfs_alloc_pend(&ns->alloc, x.ex_doff / ns->unit, x.ex_len / ns->unit, false);
		if (r->flags & SHMFS_EXT_F_AHEAD) {
			if (!ip->ahead_from || x.ex_foff < ip->ahead_from)
				ip->ahead_from = x.ex_foff ? x.ex_foff : 1;
			ns_ahead_owner(ns, ip, (uint32_t)ns->cur_host + 1);
		}
		a->blocks_bytes += x.ex_len;
		if (r->flags & SHMFS_EXT_F_SIZE) {
			a->size = x.ex_size;
			a->mtime = ns_time(r->time);
		}
	} else {
		if (ns_ext_release(ns, ip, x.ex_foff, x.ex_foff + x.ex_len, &freed)) {
			ns_attr_drop(ip, a);
			return -ENOMEM;
		}
		a->blocks_bytes -= freed;
		a->mtime = ns_time(r->time);
		if (r->flags & SHMFS_EXT_F_AHEAD) { /* the reservation ends */
			ip->ahead_from = 0;
			ns_ahead_owner(ns, ip, 0);
		}
		ns_ahead_trimmed(ns, ip);
	}
	a->ctime = ns_time(r->time);
	ns_attr_swap(ns, ip, a);
	return 0;
}

static int apply_xattr(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry,
			char *why, size_t whylen)
{
	const struct shmfs_lr_xattr x = r->u.xa;
	struct shmfs_inode *ip;
	bool set = r->type == SHMFS_LR_XATTR_SET;
	const uint8_t *name = r->var[0].p, *value = r->var[1].p;
	int found = -1;

	ip = ns_live_iget(ns, x.xa_ino);
	if (!ip)
		REJECT(-ENOENT, "xattr: inode %" PRIu64 " does not exist", x.xa_ino);
	const struct shmfs_xattrs *xs = ip->xattrs;
	for (uint32_t i = 0; xs && i < xs->n; i++)
		if (xs->x[i].name_len == x.xa_name_len &&
		    !memcmp(xs->x[i].name, name, x.xa_name_len))
			found = (int)i;
	if (found >= 0 && set && (x.xa_flags & SHMFS_XATTR_CREATE))
		REJECT(-EEXIST, "xattr: %.*s exists", x.xa_name_len, name);
	if (found < 0 && (!set || (x.xa_flags & SHMFS_XATTR_REPLACE)))
		REJECT(-ENODATA, "xattr: no %.*s", x.xa_name_len, name);
	if (dry)
		return 0;

	/* Build the new set: every other attribute, plus the new one. */
	uint32_t n = 0;
	size_t bytes = 0;
	for (uint32_t i = 0; xs && i < xs->n; i++)
		if ((int)i != found) {
			n++;
			bytes += xs->x[i].name_len + (size_t)xs->x[i].value_len;
		}
	if (set) {
		n++;
		bytes += x.xa_name_len + (size_t)x.xa_value_len;
	}
	struct shmfs_xattrs *nx = NULL;
	if (n) {
		nx = malloc(sizeof(*nx) + n * sizeof(nx->x[0]) + bytes);
		if (!nx)
			return -ENOMEM;
		uint8_t *store = (uint8_t *)&nx->x[n];
		uint32_t k = 0;
		/* Old attributes in order, the changed one in its place, a new one last. */
		for (uint32_t i = 0; i <= (xs ? xs->n : 0); i++) {
			bool here = (xs && i < xs->n) ? (int)i == found : found < 0;
			const uint8_t *nm, *val;
			uint16_t nl;
			uint32_t vl;
			if (here && !set)
				continue;
			if (here) {
				nm = name; nl = x.xa_name_len; val = value; vl = x.xa_value_len;
			} else if (xs && i < xs->n) {
				nm = xs->x[i].name; nl = xs->x[i].name_len;
				val = xs->x[i].value; vl = xs->x[i].value_len;
			} else {
				continue;
			}
			nx->x[k] = (struct shmfs_xattr){ nl, vl, store, store + nl };
			memcpy(store, nm, nl);
			memcpy(store + nl, val, vl);
			store += nl + (size_t)vl;
			k++;
		}
		nx->n = k;
	}
	if (ns_touch(ns, ip, r->time, false, 0)) {
		free(nx);
		return -ENOMEM;
	}
	struct shmfs_xattrs *old = ip->xattrs;
	rcu_assign_pointer(ip->xattrs, nx);
	if (old)
		ns_retire(ns, &old->rcu, ns_free_xattrs_cb);
	return 0;
}

static int apply_release(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry,
			char *why, size_t whylen)
{
	const struct shmfs_lr_release rl = r->u.rl;

	struct shmfs_inode *ip = ns_live_iget(ns, rl.rl_ino);
	if (!ip)
		REJECT(-ENOENT, "release: inode %" PRIu64 " does not exist", rl.rl_ino);
	if (!ip->orphan_host || ip->attr->nlink)
		REJECT(-EINVAL, "release: inode %" PRIu64 " is not an orphan", rl.rl_ino);
	if (dry)
		return 0;
	return ns_inode_drop(ns, ip);
}

/* The appliers, by record type (the shape table in fs/rec.c decodes). */
typedef int (*applier)(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry, char *why,
		       size_t whylen);
static const applier appliers[SHMFS_LR_TYPE_COUNT] = {
	[SHMFS_LR_CREATE] = apply_create,
	[SHMFS_LR_LINK] = apply_link,
	[SHMFS_LR_UNLINK] = apply_unlink,
	[SHMFS_LR_RMDIR] = apply_unlink,
	[SHMFS_LR_RENAME] = apply_rename,
	[SHMFS_LR_SETATTR] = apply_setattr,
	[SHMFS_LR_EXTENT_MAP] = apply_extent,
	[SHMFS_LR_EXTENT_UNMAP] = apply_extent,
	[SHMFS_LR_XATTR_SET] = apply_xattr,
	[SHMFS_LR_XATTR_REMOVE] = apply_xattr,
	[SHMFS_LR_RELEASE] = apply_release,
};

static void change(struct shmfs_ns_changes *ch, enum shmfs_ns_change_kind kind, uint64_t dir,
		   uint64_t ino, const struct shmfs_rec_bytes *name)
{
	if (ch->n == SHMFS_ARRAY_SIZE(ch->c))
		return;
	ch->c[ch->n++] = (struct shmfs_ns_change){
		.kind = kind, .dir = dir, .ino = ino,
		.name = name ? (const char *)name->p : NULL,
		.name_len = name ? (uint16_t)name->len : 0,
	};
}

/* What an applied record changed, in the order a cache should forget it:
 * names first, then the inodes whose attributes they touched. */
static void report(const struct shmfs_rec *r, struct shmfs_ns_changes *ch)
{
	ch->n = 0;
	switch (r->type) {
	case SHMFS_LR_CREATE:
		if (r->u.cr.cr_parent) {
			change(ch, SHMFS_NS_ENTRY, r->u.cr.cr_parent, r->ino, &r->var[0]);
			change(ch, SHMFS_NS_ATTR, 0, r->u.cr.cr_parent, NULL);
		}
		break;
	case SHMFS_LR_LINK:
	case SHMFS_LR_UNLINK:
	case SHMFS_LR_RMDIR:
		change(ch, r->type == SHMFS_LR_LINK ? SHMFS_NS_ENTRY : SHMFS_NS_ENTRY_GONE,
		       r->u.ul.ul_dir, r->u.ul.ul_ino, &r->var[0]);
		change(ch, SHMFS_NS_ATTR, 0, r->u.ul.ul_ino, NULL);
		change(ch, SHMFS_NS_ATTR, 0, r->u.ul.ul_dir, NULL);
		break;
	case SHMFS_LR_RENAME:
		change(ch, SHMFS_NS_ENTRY, r->u.rn.rn_olddir, 0, &r->var[0]);
		change(ch, SHMFS_NS_ENTRY, r->u.rn.rn_newdir, 0, &r->var[1]);
		change(ch, SHMFS_NS_ATTR, 0, r->u.rn.rn_olddir, NULL);
		if (r->u.rn.rn_newdir != r->u.rn.rn_olddir)
			change(ch, SHMFS_NS_ATTR, 0, r->u.rn.rn_newdir, NULL);
		change(ch, SHMFS_NS_ATTR, 0, r->u.rn.rn_ino, NULL);
		if (r->u.rn.rn_target)
			change(ch, SHMFS_NS_ATTR, 0, r->u.rn.rn_target, NULL);
		break;
	case SHMFS_LR_SETATTR:
	case SHMFS_LR_EXTENT_MAP:
	case SHMFS_LR_EXTENT_UNMAP:
	case SHMFS_LR_XATTR_SET:
	case SHMFS_LR_XATTR_REMOVE:
		change(ch, SHMFS_NS_CONTENT, 0, r->ino, NULL);
		break;
	default:
		break;
	}
}

int shmfs_ns_apply_rec(struct shmfs_ns *ns, const struct shmfs_rec *r, bool dry_run,
		       struct shmfs_ns_changes *changes, char *why, size_t whylen)
{
	int rc;

	if (why && whylen)
		why[0] = 0;
	if (changes)
		changes->n = 0;
	ns->cur_seq = r->seq;
	ns->cur_host = r->host;
	rcu_read_lock();
	/* Only the root may come first, and nothing else before it. */
	if (r->type != SHMFS_LR_NOOP && ns->next_ino == SHMFS_ROOT_INO &&
	    !(r->type == SHMFS_LR_CREATE && r->u.cr.cr_ino == SHMFS_ROOT_INO)) {
		rcu_read_unlock();
		REJECT(-ENOENT, "%s before the root directory exists", "record");
	}
	if (r->type >= SHMFS_LR_TYPE_COUNT || (r->type != SHMFS_LR_NOOP && !appliers[r->type])) {
		rcu_read_unlock();
		REJECT(-EUCLEAN, "unknown record type %u", r->type);
	}
	if (!dry_run) {
		__atomic_fetch_add(&ns->wseq, 1, __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_RELEASE);
	}
	rc = r->type == SHMFS_LR_NOOP ? 0 : appliers[r->type](ns, r, dry_run, why, whylen);
	if (!dry_run)
		__atomic_fetch_add(&ns->wseq, 1, __ATOMIC_RELEASE);
	rcu_read_unlock();
	if (!rc && !dry_run && changes)
		report(r, changes);
	return rc;
}

int shmfs_ns_apply(struct shmfs_ns *ns, const struct shmfs_log_rec *h, const void *payload,
		   bool dry_run, char *why, size_t whylen)
{
	struct shmfs_rec r;
	int rc = shmfs_rec_decode(h, payload, &r, why, whylen);

	return rc ? rc : shmfs_ns_apply_rec(ns, &r, dry_run, NULL, why, whylen);
}
