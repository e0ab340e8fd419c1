/* SPDX-License-Identifier: MIT */
/*
 * A record's payload as fields of shmfs-dump's output.
 *
 * The payload has been verified by shmfs_log_read() (its checksum), not by
 * replay: its shape may still be wrong, so every struct is copied out only
 * if the payload holds it, and names are clipped to the payload.  This
 * decoder stays whole and on its own until it moves to the shared one.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "shmfs/format.h"
#include "shmfs/util.h"

#include "out.h"
#include "payload.h"

/* Bytes [off, off+len) of a payload of plen bytes, clipped. */
static size_t clip(uint32_t plen, size_t off, size_t len)
{
	if (off >= plen)
		return 0;
	return SHMFS_MIN(len, plen - off);
}

static void f_name_at(struct out *o, const char *key, const uint8_t *p, uint32_t plen,
		      size_t off, size_t len)
{
	f_bytes(o, key, p + SHMFS_MIN(off, plen), clip(plen, off, len));
}

static void f_stime(struct out *o, const char *key, const struct shmfs_time *t)
{
	f_time(o, key, (int64_t)t->t_sec, t->t_nsec);
}

/* Decode a payload of any shape; never reads past plen.  One case per
 * record type, in one piece until the shared decoder replaces it: hence
 * its length. */
void print_payload(struct out *o, const struct shmfs_log_rec *h, const uint8_t *p)
{
	uint32_t plen = h->lr_len;
	char flags[64];

	switch (h->lr_type) {
	case SHMFS_LR_CREATE: {
		struct shmfs_lr_create c;
		if (plen < sizeof(c))
			return;
		memcpy(&c, p, sizeof(c));
		f_u64(o, "ino", c.cr_ino);
		f_u64(o, "parent", c.cr_parent);
		f_octal(o, "mode", c.cr_mode);
		f_u64(o, "uid", c.cr_uid);
		f_u64(o, "gid", c.cr_gid);
		if (c.cr_rdev || (c.cr_mode & S_IFMT) == S_IFCHR || (c.cr_mode & S_IFMT) == S_IFBLK)
			f_u64(o, "rdev", c.cr_rdev);
		f_name_at(o, "name", p, plen, sizeof(c), c.cr_name_len);
		if (c.cr_target_len)
			f_name_at(o, "target", p, plen, sizeof(c) + c.cr_name_len, c.cr_target_len);
		return;
	}
	case SHMFS_LR_LINK: {
		struct shmfs_lr_link l;
		if (plen < sizeof(l))
			return;
		memcpy(&l, p, sizeof(l));
		f_u64(o, "ino", l.ln_ino);
		f_u64(o, "dir", l.ln_dir);
		f_name_at(o, "name", p, plen, sizeof(l), l.ln_name_len);
		return;
	}
	case SHMFS_LR_UNLINK:
	case SHMFS_LR_RMDIR: {
		struct shmfs_lr_unlink u;
		if (plen < sizeof(u))
			return;
		memcpy(&u, p, sizeof(u));
		f_u64(o, "dir", u.ul_dir);
		f_u64(o, "ino", u.ul_ino);
		f_name_at(o, "name", p, plen, sizeof(u), u.ul_name_len);
		return;
	}
	case SHMFS_LR_RENAME: {
		struct shmfs_lr_rename r;
		if (plen < sizeof(r))
			return;
		memcpy(&r, p, sizeof(r));
		f_u64(o, "olddir", r.rn_olddir);
		f_name_at(o, "oldname", p, plen, sizeof(r), r.rn_oldname_len);
		f_u64(o, "newdir", r.rn_newdir);
		f_name_at(o, "newname", p, plen, sizeof(r) + r.rn_oldname_len, r.rn_newname_len);
		f_u64(o, "ino", r.rn_ino);
		f_u64(o, "target", r.rn_target);
		snprintf(flags, sizeof(flags), "%s%s%s",
			 r.rn_flags & SHMFS_RENAME_NOREPLACE ? "noreplace," : "",
			 r.rn_flags & SHMFS_RENAME_EXCHANGE ? "exchange," : "",
			 r.rn_flags & ~(SHMFS_RENAME_NOREPLACE | SHMFS_RENAME_EXCHANGE) ?
			 "unknown," : "");
		if (flags[0])
			flags[strlen(flags) - 1] = 0;
		f_str(o, "rename_flags", flags[0] ? flags : "none");
		return;
	}
	case SHMFS_LR_SETATTR: {
		static const char *const names[] = { "mode", "uid", "gid", "size",
						     "atime", "mtime", "ctime" };
		struct shmfs_lr_setattr s;
		size_t n = 0;

		if (plen < sizeof(s))
			return;
		memcpy(&s, p, sizeof(s));
		flags[0] = 0;
		for (unsigned i = 0; i < SHMFS_ARRAY_SIZE(names); i++)
			if (s.sa_valid & (1u << i))
				n += (size_t)snprintf(flags + n, sizeof(flags) - n, "%s%s",
						      n ? "," : "", names[i]);
		if (s.sa_valid & ~SHMFS_SA_ALL)
			snprintf(flags + n, sizeof(flags) - n, "%sunknown", n ? "," : "");
		f_u64(o, "ino", s.sa_ino);
		f_str(o, "valid", flags[0] ? flags : "none");
		if (s.sa_valid & SHMFS_SA_MODE)
			f_octal(o, "mode", s.sa_mode);
		if (s.sa_valid & SHMFS_SA_UID)
			f_u64(o, "uid", s.sa_uid);
		if (s.sa_valid & SHMFS_SA_GID)
			f_u64(o, "gid", s.sa_gid);
		if (s.sa_valid & SHMFS_SA_SIZE)
			f_u64(o, "size", s.sa_size);
		if (s.sa_valid & SHMFS_SA_ATIME)
			f_stime(o, "atime", &s.sa_atime);
		if (s.sa_valid & SHMFS_SA_MTIME)
			f_stime(o, "mtime", &s.sa_mtime);
		if (s.sa_valid & SHMFS_SA_CTIME)
			f_stime(o, "ctime", &s.sa_ctime);
		return;
	}
	case SHMFS_LR_EXTENT_MAP:
	case SHMFS_LR_EXTENT_UNMAP: {
		struct shmfs_lr_extent x;
		if (plen < sizeof(x))
			return;
		memcpy(&x, p, sizeof(x));
		f_u64(o, "ino", x.ex_ino);
		f_u64(o, "foff", x.ex_foff);
		f_u64(o, "len", x.ex_len);
		if (h->lr_type == SHMFS_LR_EXTENT_MAP)
			f_u64(o, "doff", x.ex_doff);
		if (h->lr_type == SHMFS_LR_EXTENT_MAP && (h->lr_flags & SHMFS_EXT_F_SIZE))
			f_u64(o, "size", x.ex_size);
		return;
	}
	case SHMFS_LR_XATTR_SET:
	case SHMFS_LR_XATTR_REMOVE: {
		struct shmfs_lr_xattr a;
		if (plen < sizeof(a))
			return;
		memcpy(&a, p, sizeof(a));
		f_u64(o, "ino", a.xa_ino);
		f_name_at(o, "xattr", p, plen, sizeof(a), a.xa_name_len);
		if (h->lr_type == SHMFS_LR_XATTR_SET) {
			f_u64(o, "value_len", a.xa_value_len);
			snprintf(flags, sizeof(flags), "%s%s%s",
				 a.xa_flags & SHMFS_XATTR_CREATE ? "create" : "",
				 (a.xa_flags & SHMFS_XATTR_CREATE) && (a.xa_flags & SHMFS_XATTR_REPLACE)
				 ? "," : "",
				 a.xa_flags & SHMFS_XATTR_REPLACE ? "replace" : "");
			f_str(o, "xattr_flags", flags[0] ? flags : "none");
		}
		return;
	}
	case SHMFS_LR_RELEASE: {
		struct shmfs_lr_release rl;
		if (plen < sizeof(rl))
			return;
		memcpy(&rl, p, sizeof(rl));
		f_u64(o, "ino", rl.rl_ino);
		return;
	}
	default:
		return;
	}
}
