/* SPDX-License-Identifier: MIT */
/*
 * Records in words, for fsck's messages: what a record does, as far as its
 * payload can be read, and the format.h name of its payload struct.
 *
 * The payload is read only within plen bytes, names and all, because the
 * records described here are often the damaged ones.  This decoder is a
 * copy of what replay and shmfs-dump know of each payload; it stays whole
 * here until they share one.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shmfs/util.h"

#include "fsck.h"

/* What a record does, in words, as far as its payload can be read; sets
 * *ino and *dir to the inodes it names (0 if none). */
void fsck_describe(const struct shmfs_log_rec *h, const uint8_t *p, uint32_t plen, char *buf,
		   size_t len, uint64_t *ino, uint64_t *dir)
{
	char n1[300], n2[300];

	*ino = *dir = 0;
#define NAME(out, off, l) \
	fsck_esc(p + SHMFS_MIN((size_t)(off), (size_t)plen), \
		 (off) >= plen ? 0 : SHMFS_MIN((size_t)(l), (size_t)plen - (off)), out, sizeof(out))
	switch (h->lr_type) {
	case SHMFS_LR_CREATE: {
		struct shmfs_lr_create c;
		if (plen < sizeof(c))
			break;
		memcpy(&c, p, sizeof(c));
		*ino = c.cr_ino;
		*dir = c.cr_parent;
		snprintf(buf, len, "create %s (inode %" PRIu64 ", mode 0%o) in directory %" PRIu64,
			 NAME(n1, sizeof(c), c.cr_name_len), c.cr_ino, c.cr_mode, c.cr_parent);
		return;
	}
	case SHMFS_LR_LINK:
	case SHMFS_LR_UNLINK:
	case SHMFS_LR_RMDIR: {
		struct shmfs_lr_link l;
		if (plen < sizeof(l))
			break;
		memcpy(&l, p, sizeof(l));
		*ino = l.ln_ino;
		*dir = l.ln_dir;
		snprintf(buf, len, "%s %s (inode %" PRIu64 ") %s directory %" PRIu64,
			 shmfs_lr_type_name(h->lr_type), NAME(n1, sizeof(l), l.ln_name_len), l.ln_ino,
			 h->lr_type == SHMFS_LR_LINK ? "in" : "from", l.ln_dir);
		return;
	}
	case SHMFS_LR_RENAME: {
		struct shmfs_lr_rename r;
		if (plen < sizeof(r))
			break;
		memcpy(&r, p, sizeof(r));
		*ino = r.rn_ino;
		*dir = r.rn_olddir;
		snprintf(buf, len, "rename %s in directory %" PRIu64 " to %s in directory %" PRIu64
			 " (inode %" PRIu64 ")", NAME(n1, sizeof(r), r.rn_oldname_len), r.rn_olddir,
			 NAME(n2, sizeof(r) + r.rn_oldname_len, r.rn_newname_len), r.rn_newdir,
			 r.rn_ino);
		return;
	}
	case SHMFS_LR_SETATTR: {
		struct shmfs_lr_setattr s;
		if (plen < sizeof(s))
			break;
		memcpy(&s, p, sizeof(s));
		*ino = s.sa_ino;
		snprintf(buf, len, "setattr of inode %" PRIu64 " (valid 0x%x%s)", s.sa_ino, s.sa_valid,
			 s.sa_valid & SHMFS_SA_SIZE ? ", size" : "");
		return;
	}
	case SHMFS_LR_EXTENT_MAP:
	case SHMFS_LR_EXTENT_UNMAP: {
		struct shmfs_lr_extent x;
		if (plen < sizeof(x))
			break;
		memcpy(&x, p, sizeof(x));
		*ino = x.ex_ino;
		if (h->lr_type == SHMFS_LR_EXTENT_MAP)
			snprintf(buf, len, "extent-map of inode %" PRIu64 ": file [%" PRIu64 ", +%" PRIu64
				 ") at data %" PRIu64, x.ex_ino, x.ex_foff, x.ex_len, x.ex_doff);
		else
			snprintf(buf, len, "extent-unmap of inode %" PRIu64 ": file [%" PRIu64 ", +%"
				 PRIu64 ")", x.ex_ino, x.ex_foff, x.ex_len);
		return;
	}
	case SHMFS_LR_XATTR_SET:
	case SHMFS_LR_XATTR_REMOVE: {
		struct shmfs_lr_xattr a;
		if (plen < sizeof(a))
			break;
		memcpy(&a, p, sizeof(a));
		*ino = a.xa_ino;
		snprintf(buf, len, "%s %s of inode %" PRIu64, shmfs_lr_type_name(h->lr_type),
			 NAME(n1, sizeof(a), a.xa_name_len), a.xa_ino);
		return;
	}
	case SHMFS_LR_RELEASE: {
		struct shmfs_lr_release rl;
		if (plen < sizeof(rl))
			break;
		memcpy(&rl, p, sizeof(rl));
		*ino = rl.rl_ino;
		snprintf(buf, len, "release of orphan inode %" PRIu64, rl.rl_ino);
		return;
	}
	case SHMFS_LR_NOOP:
		snprintf(buf, len, "noop");
		return;
	default:
		snprintf(buf, len, "record of unknown type %u", h->lr_type);
		return;
	}
#undef NAME
	snprintf(buf, len, "%s with a short payload", shmfs_lr_type_name(h->lr_type));
}

/* The payload struct of a record type, as format.h names it. */
const char *fsck_rec_code(unsigned type)
{
	switch (type) {
	case SHMFS_LR_CREATE: return "lr_create";
	case SHMFS_LR_LINK: return "lr_link";
	case SHMFS_LR_UNLINK: case SHMFS_LR_RMDIR: return "lr_unlink";
	case SHMFS_LR_RENAME: return "lr_rename";
	case SHMFS_LR_SETATTR: return "lr_setattr";
	case SHMFS_LR_EXTENT_MAP: case SHMFS_LR_EXTENT_UNMAP: return "lr_extent";
	case SHMFS_LR_XATTR_SET: case SHMFS_LR_XATTR_REMOVE: return "lr_xattr";
	case SHMFS_LR_RELEASE: return "lr_release";
	default: return "lr_type";
	}
}
