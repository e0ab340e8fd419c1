/* SPDX-License-Identifier: MIT */
/*
 * Records in words, for fsck's messages: what a record does, as far as its
 * payload can be read, and the format.h name of its payload struct.
 *
 * The payload is read through the shared decoder (fs/rec.c), which reads
 * only within plen bytes, names and all, and decodes damaged records as
 * far as they go: the records described here are often the damaged ones.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "shmfs/rec.h"
#include "shmfs/util.h"

#include "fsck.h"

/* What a record does, in words, as far as its payload can be read; sets
 * *ino and *dir to the inodes it names (0 if none). */
void fsck_describe(const struct shmfs_log_rec *h, const uint8_t *p, uint32_t plen, char *buf,
		   size_t len, uint64_t *ino, uint64_t *dir)
{
	struct shmfs_log_rec hc = *h;
	struct shmfs_rec r;
	char n1[300], n2[300];

	*ino = *dir = 0;
	hc.lr_len = plen;
	shmfs_rec_decode(&hc, p, &r, NULL, 0); /* damaged ones too, as far as they go */
	if (!shmfs_rec_shape_of(h->lr_type)) {
		snprintf(buf, len, "record of unknown type %u", h->lr_type);
		return;
	}
	if (!shmfs_rec_has_fixed(&r)) {
		snprintf(buf, len, "%s with a short payload", shmfs_lr_type_name(h->lr_type));
		return;
	}
#define NAME(out, i) fsck_esc(r.var[i].p, r.var[i].len, out, sizeof(out))
	*ino = r.ino;
	switch (h->lr_type) {
	case SHMFS_LR_CREATE:
		*dir = r.u.cr.cr_parent;
		snprintf(buf, len, "create %s (inode %" PRIu64 ", mode 0%o) in directory %" PRIu64,
			 NAME(n1, 0), r.ino, r.u.cr.cr_mode, r.u.cr.cr_parent);
		break;
	case SHMFS_LR_LINK:
	case SHMFS_LR_UNLINK:
	case SHMFS_LR_RMDIR:
		*dir = r.u.ul.ul_dir;
		snprintf(buf, len, "%s %s (inode %" PRIu64 ") %s directory %" PRIu64,
			 shmfs_lr_type_name(h->lr_type), NAME(n1, 0), r.ino,
			 h->lr_type == SHMFS_LR_LINK ? "in" : "from", r.u.ul.ul_dir);
		break;
	case SHMFS_LR_RENAME:
		*dir = r.u.rn.rn_olddir;
		snprintf(buf, len, "rename %s in directory %" PRIu64 " to %s in directory %" PRIu64
			 " (inode %" PRIu64 ")", NAME(n1, 0), r.u.rn.rn_olddir, NAME(n2, 1),
			 r.u.rn.rn_newdir, r.ino);
		break;
	case SHMFS_LR_SETATTR:
		snprintf(buf, len, "setattr of inode %" PRIu64 " (valid 0x%x%s)", r.ino,
			 r.u.sa.sa_valid, r.u.sa.sa_valid & SHMFS_SA_SIZE ? ", size" : "");
		break;
	case SHMFS_LR_EXTENT_MAP:
		snprintf(buf, len, "extent-map of inode %" PRIu64 ": file [%" PRIu64 ", +%" PRIu64
			 ") at data %" PRIu64, r.ino, r.u.ex.ex_foff, r.u.ex.ex_len, r.u.ex.ex_doff);
		break;
	case SHMFS_LR_EXTENT_UNMAP:
		snprintf(buf, len, "extent-unmap of inode %" PRIu64 ": file [%" PRIu64 ", +%" PRIu64
			 ")", r.ino, r.u.ex.ex_foff, r.u.ex.ex_len);
		break;
	case SHMFS_LR_XATTR_SET:
	case SHMFS_LR_XATTR_REMOVE:
		snprintf(buf, len, "%s %s of inode %" PRIu64, shmfs_lr_type_name(h->lr_type),
			 NAME(n1, 0), r.ino);
		break;
	case SHMFS_LR_RELEASE:
		snprintf(buf, len, "release of orphan inode %" PRIu64, r.ino);
		break;
	default:
		snprintf(buf, len, "noop");
		break;
	}
#undef NAME
}

/* The payload struct of a record type, as format.h names it. */
const char *fsck_rec_code(unsigned type)
{
	const struct shmfs_rec_shape *s = shmfs_rec_shape_of(type);

	return s && type != SHMFS_LR_NOOP ? s->code : "lr_type";
}
