/* SPDX-License-Identifier: MIT */
/*
 * A record's payload as fields of shmfs-dump's output.
 *
 * The payload has been verified by shmfs_log_read() (its checksum), not by
 * replay: its shape may still be wrong.  The shared decoder (fs/rec.c)
 * copies the fixed part only if the payload holds it and clips names to
 * the payload; this file only says how each type's fields are printed.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "shmfs/format.h"
#include "shmfs/rec.h"
#include "shmfs/util.h"

#include "out.h"
#include "payload.h"

static void f_var(struct out *o, const char *key, const struct shmfs_rec_bytes *b)
{
	f_bytes(o, key, b->p, b->len);
}

static void f_stime(struct out *o, const char *key, const struct shmfs_time *t)
{
	f_time(o, key, (int64_t)t->t_sec, t->t_nsec);
}

static void print_create(struct out *o, const struct shmfs_rec *r)
{
	const struct shmfs_lr_create *c = &r->u.cr;

	f_u64(o, "ino", c->cr_ino);
	f_u64(o, "parent", c->cr_parent);
	f_octal(o, "mode", c->cr_mode);
	f_u64(o, "uid", c->cr_uid);
	f_u64(o, "gid", c->cr_gid);
	if (c->cr_rdev || (c->cr_mode & S_IFMT) == S_IFCHR || (c->cr_mode & S_IFMT) == S_IFBLK)
		f_u64(o, "rdev", c->cr_rdev);
	f_var(o, "name", &r->var[0]);
	if (c->cr_target_len)
		f_var(o, "target", &r->var[1]);
}

static void print_dirent(struct out *o, const struct shmfs_rec *r)
{
	if (r->type == SHMFS_LR_LINK) {
		f_u64(o, "ino", r->u.ln.ln_ino);
		f_u64(o, "dir", r->u.ln.ln_dir);
	} else {
		f_u64(o, "dir", r->u.ul.ul_dir);
		f_u64(o, "ino", r->u.ul.ul_ino);
	}
	f_var(o, "name", &r->var[0]);
}

static void print_rename(struct out *o, const struct shmfs_rec *r)
{
	const struct shmfs_lr_rename *rn = &r->u.rn;
	char flags[64];

	f_u64(o, "olddir", rn->rn_olddir);
	f_var(o, "oldname", &r->var[0]);
	f_u64(o, "newdir", rn->rn_newdir);
	f_var(o, "newname", &r->var[1]);
	f_u64(o, "ino", rn->rn_ino);
	f_u64(o, "target", rn->rn_target);
	snprintf(flags, sizeof(flags), "%s%s%s",
		 rn->rn_flags & SHMFS_RENAME_NOREPLACE ? "noreplace," : "",
		 rn->rn_flags & SHMFS_RENAME_EXCHANGE ? "exchange," : "",
		 rn->rn_flags & ~(SHMFS_RENAME_NOREPLACE | SHMFS_RENAME_EXCHANGE) ? "unknown," : "");
	if (flags[0])
		flags[strlen(flags) - 1] = 0;
	f_str(o, "rename_flags", flags[0] ? flags : "none");
}

static void print_setattr(struct out *o, const struct shmfs_rec *r)
{
	static const char *const names[] = { "mode", "uid", "gid", "size",
					     "atime", "mtime", "ctime" };
	const struct shmfs_lr_setattr *sa = &r->u.sa;
	char flags[64];
	size_t n = 0;

	flags[0] = 0;
	for (unsigned i = 0; i < SHMFS_ARRAY_SIZE(names); i++)
		if (sa->sa_valid & (1u << i))
			n += (size_t)snprintf(flags + n, sizeof(flags) - n, "%s%s", n ? "," : "",
					      names[i]);
	if (sa->sa_valid & ~SHMFS_SA_ALL)
		snprintf(flags + n, sizeof(flags) - n, "%sunknown", n ? "," : "");
	f_u64(o, "ino", sa->sa_ino);
	f_str(o, "valid", flags[0] ? flags : "none");
	if (sa->sa_valid & SHMFS_SA_MODE)
		f_octal(o, "mode", sa->sa_mode);
	if (sa->sa_valid & SHMFS_SA_UID)
		f_u64(o, "uid", sa->sa_uid);
	if (sa->sa_valid & SHMFS_SA_GID)
		f_u64(o, "gid", sa->sa_gid);
	if (sa->sa_valid & SHMFS_SA_SIZE)
		f_u64(o, "size", sa->sa_size);
	if (sa->sa_valid & SHMFS_SA_ATIME)
		f_stime(o, "atime", &sa->sa_atime);
	if (sa->sa_valid & SHMFS_SA_MTIME)
		f_stime(o, "mtime", &sa->sa_mtime);
	if (sa->sa_valid & SHMFS_SA_CTIME)
		f_stime(o, "ctime", &sa->sa_ctime);
}

static void print_extent(struct out *o, const struct shmfs_rec *r)
{
	bool map = r->type == SHMFS_LR_EXTENT_MAP;

	f_u64(o, "ino", r->u.ex.ex_ino);
	f_u64(o, "foff", r->u.ex.ex_foff);
	f_u64(o, "len", r->u.ex.ex_len);
	if (map)
		f_u64(o, "doff", r->u.ex.ex_doff);
	if (map && (r->flags & SHMFS_EXT_F_SIZE))
		f_u64(o, "size", r->u.ex.ex_size);
}

static void print_xattr(struct out *o, const struct shmfs_rec *r)
{
	const struct shmfs_lr_xattr *a = &r->u.xa;
	char flags[64];

	f_u64(o, "ino", a->xa_ino);
	f_var(o, "xattr", &r->var[0]);
	if (r->type != SHMFS_LR_XATTR_SET)
		return;
	f_u64(o, "value_len", a->xa_value_len);
	snprintf(flags, sizeof(flags), "%s%s%s", a->xa_flags & SHMFS_XATTR_CREATE ? "create" : "",
		 (a->xa_flags & SHMFS_XATTR_CREATE) && (a->xa_flags & SHMFS_XATTR_REPLACE) ? "," : "",
		 a->xa_flags & SHMFS_XATTR_REPLACE ? "replace" : "");
	f_str(o, "xattr_flags", flags[0] ? flags : "none");
}

static void print_release(struct out *o, const struct shmfs_rec *r)
{
	f_u64(o, "ino", r->u.rl.rl_ino);
}

/* Fields of each record type, in the order dump prints them. */
static void (*const printers[SHMFS_LR_TYPE_COUNT])(struct out *, const struct shmfs_rec *) = {
	[SHMFS_LR_CREATE] = print_create,
	[SHMFS_LR_LINK] = print_dirent,
	[SHMFS_LR_UNLINK] = print_dirent,
	[SHMFS_LR_RMDIR] = print_dirent,
	[SHMFS_LR_RENAME] = print_rename,
	[SHMFS_LR_SETATTR] = print_setattr,
	[SHMFS_LR_EXTENT_MAP] = print_extent,
	[SHMFS_LR_EXTENT_UNMAP] = print_extent,
	[SHMFS_LR_XATTR_SET] = print_xattr,
	[SHMFS_LR_XATTR_REMOVE] = print_xattr,
	[SHMFS_LR_RELEASE] = print_release,
};

/* A payload of any shape, through the shared decoder: nothing when it is
 * too short for its fixed part, names clipped to the payload. */
void print_payload(struct out *o, const struct shmfs_log_rec *h, const uint8_t *p)
{
	struct shmfs_rec r;

	if (h->lr_type >= SHMFS_LR_TYPE_COUNT || !printers[h->lr_type])
		return;
	shmfs_rec_decode(h, p, &r, NULL, 0);
	if (shmfs_rec_has_fixed(&r))
		printers[h->lr_type](o, &r);
}
