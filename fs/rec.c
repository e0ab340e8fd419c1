/* SPDX-License-Identifier: MIT */
/*
 * Records: payload builders, the shape table and the decoder (see
 * include/shmfs/rec.h).
 *
 * Builders truncate nothing and check nothing: lengths are the caller's to
 * bound, and the shape check rejects what does not fit the format.  The
 * shape table is the one description of every payload; the decoder reads
 * a payload through it and never past its length, so the same code serves
 * replay (exact records only), fsck and dump (which describe damaged ones).
 */
#include "shmfs/rec.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "shmfs/util.h"

uint32_t shmfs_rec_create(void *buf, uint64_t ino, uint64_t parent, uint32_t mode,
			  uint32_t uid, uint32_t gid, uint64_t rdev, const char *name,
			  size_t name_len, const char *target, size_t target_len)
{
	struct shmfs_lr_create c = {
		.cr_ino = ino, .cr_parent = parent, .cr_mode = mode, .cr_uid = uid,
		.cr_gid = gid, .cr_rdev = rdev, .cr_name_len = (uint16_t)name_len,
		.cr_target_len = (uint16_t)target_len,
	};
	uint8_t *p = buf;

	memcpy(p, &c, sizeof(c));
	memcpy(p + sizeof(c), name, name_len);
	if (target_len)
		memcpy(p + sizeof(c) + name_len, target, target_len);
	return (uint32_t)(sizeof(c) + name_len + target_len);
}

uint32_t shmfs_rec_dirent(void *buf, uint64_t dir, uint64_t ino, const char *name,
			  size_t name_len)
{
	/* struct shmfs_lr_link and shmfs_lr_unlink differ only in field order */
	struct shmfs_lr_unlink u = { .ul_dir = dir, .ul_ino = ino, .ul_name_len = (uint16_t)name_len };
	uint8_t *p = buf;

	memcpy(p, &u, sizeof(u));
	memcpy(p + sizeof(u), name, name_len);
	return (uint32_t)(sizeof(u) + name_len);
}

uint32_t shmfs_rec_rename(void *buf, uint64_t olddir, const char *oldname, size_t oldlen,
			  uint64_t newdir, const char *newname, size_t newlen, uint64_t ino,
			  uint64_t target, uint32_t flags)
{
	struct shmfs_lr_rename r = {
		.rn_olddir = olddir, .rn_newdir = newdir, .rn_ino = ino, .rn_target = target,
		.rn_flags = flags, .rn_oldname_len = (uint16_t)oldlen,
		.rn_newname_len = (uint16_t)newlen,
	};
	uint8_t *p = buf;

	memcpy(p, &r, sizeof(r));
	memcpy(p + sizeof(r), oldname, oldlen);
	memcpy(p + sizeof(r) + oldlen, newname, newlen);
	return (uint32_t)(sizeof(r) + oldlen + newlen);
}

uint32_t shmfs_rec_extent(void *buf, uint64_t ino, uint64_t foff, uint64_t doff, uint64_t len,
			  uint64_t size)
{
	struct shmfs_lr_extent x = { ino, foff, doff, len, size };

	memcpy(buf, &x, sizeof(x));
	return sizeof(x);
}

uint32_t shmfs_rec_xattr(void *buf, uint64_t ino, uint32_t flags, const char *name,
			 size_t name_len, const void *value, size_t value_len)
{
	struct shmfs_lr_xattr x = { .xa_ino = ino, .xa_flags = flags,
				    .xa_value_len = (uint32_t)value_len,
				    .xa_name_len = (uint16_t)name_len };
	uint8_t *p = buf;

	memcpy(p, &x, sizeof(x));
	memcpy(p + sizeof(x), name, name_len);
	if (value_len)
		memcpy(p + sizeof(x) + name_len, value, value_len);
	return (uint32_t)(sizeof(x) + name_len + value_len);
}

uint32_t shmfs_rec_root(void *buf, uint32_t mode, uint32_t uid, uint32_t gid)
{
	return shmfs_rec_create(buf, SHMFS_ROOT_INO, 0, S_IFDIR | (mode & 07777), uid, gid, 0,
				"", 0, NULL, 0);
}

uint32_t shmfs_rec_setattr(void *buf, const struct shmfs_lr_setattr *sa)
{
	memcpy(buf, sa, sizeof(*sa));
	return sizeof(*sa);
}

uint32_t shmfs_rec_release(void *buf, uint64_t ino)
{
	struct shmfs_lr_release rl = { ino };

	memcpy(buf, &rl, sizeof(rl));
	return sizeof(rl);
}

/* ---- validators: one per type, after the decoder checked lengths --------- */

#define SHAPE(...) do { shmfs_errf(why, whylen, __VA_ARGS__); return -EUCLEAN; } while (0)

/* A directory entry name: 1..NAME_MAX bytes, no '/' or NUL, not . or .. */
static bool good_name(const struct shmfs_rec_bytes *n)
{
	if (n->len < 1 || n->len > SHMFS_NAME_MAX)
		return false;
	if ((n->len == 1 && n->p[0] == '.') || (n->len == 2 && n->p[0] == '.' && n->p[1] == '.'))
		return false;
	for (size_t i = 0; i < n->len; i++)
		if (n->p[i] == '/' || n->p[i] == 0)
			return false;
	return true;
}

static bool good_time(const struct shmfs_time *t)
{
	return t->t_nsec < 1000000000u && t->t_pad == 0;
}

static bool good_type(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFIFO:
	case S_IFSOCK: case S_IFCHR: case S_IFBLK:
		return true;
	default:
		return false;
	}
}

static int check_noop(const struct shmfs_rec *r, uint64_t unit, char *why, size_t whylen)
{
	if (r->flags)
		SHAPE("noop with flags");
	return 0;
}

static int check_create(const struct shmfs_rec *r, uint64_t unit, char *why, size_t whylen)
{
	const struct shmfs_lr_create *c = &r->u.cr;

	if (r->flags || c->cr_pad || c->cr_pad2)
		SHAPE("create has flags or nonzero padding");
	if (!good_type(c->cr_mode) || (c->cr_mode & ~(uint32_t)(S_IFMT | 07777)))
		SHAPE("create mode 0%o is invalid", c->cr_mode);
	if (c->cr_ino == SHMFS_ROOT_INO) {
		if (c->cr_parent != 0 || c->cr_name_len != 0 || !S_ISDIR(c->cr_mode))
			SHAPE("root create must be a nameless directory without parent");
	} else {
		/* UINT64_MAX would wrap the next free inode number to 0 */
		if (c->cr_ino == 0 || c->cr_ino == UINT64_MAX || c->cr_parent == 0)
			SHAPE("create of inode %" PRIu64 " in %" PRIu64 " is invalid",
			      c->cr_ino, c->cr_parent);
		if (!good_name(&r->var[0]))
			SHAPE("create has an invalid name");
	}
	if (S_ISLNK(c->cr_mode)) {
		if (c->cr_target_len < 1 || c->cr_target_len > SHMFS_SYMLINK_MAX ||
		    memchr(r->var[1].p, 0, r->var[1].len))
			SHAPE("symlink target is invalid");
	} else if (c->cr_target_len) {
		SHAPE("non-symlink with a target");
	}
	if (c->cr_rdev && !S_ISCHR(c->cr_mode) && !S_ISBLK(c->cr_mode))
		SHAPE("rdev on a non-device inode");
	return 0;
}

/* link, unlink, rmdir: two inode numbers and a name */
static int check_dirent(const struct shmfs_rec *r, uint64_t unit, char *why, size_t whylen)
{
	const struct shmfs_lr_unlink *u = &r->u.ul;
	const char *name = shmfs_lr_type_name(r->type);

	if ((r->flags & ~(r->type == SHMFS_LR_UNLINK ? SHMFS_LR_F_KEEP : 0u)) ||
	    !shmfs_all_zero(u->ul_pad, sizeof(u->ul_pad)))
		SHAPE("%s has flags or nonzero padding", name);
	if (!u->ul_ino || !u->ul_dir || !good_name(&r->var[0]))
		SHAPE("%s names an invalid inode or name", name);
	return 0;
}

static int check_rename(const struct shmfs_rec *r, uint64_t unit, char *why, size_t whylen)
{
	const struct shmfs_lr_rename *rn = &r->u.rn;

	if ((r->flags & ~SHMFS_LR_F_KEEP) ||
	    (rn->rn_flags & ~(SHMFS_RENAME_NOREPLACE | SHMFS_RENAME_EXCHANGE)) ||
	    rn->rn_flags == (SHMFS_RENAME_NOREPLACE | SHMFS_RENAME_EXCHANGE))
		SHAPE("rename flags 0x%x are invalid", rn->rn_flags);
	if ((rn->rn_flags & SHMFS_RENAME_EXCHANGE) && !rn->rn_target)
		SHAPE("exchange without a target");
	if ((rn->rn_flags & SHMFS_RENAME_NOREPLACE) && rn->rn_target)
		SHAPE("noreplace rename with a target");
	if (!rn->rn_olddir || !rn->rn_newdir || !rn->rn_ino || rn->rn_ino == rn->rn_target)
		SHAPE("rename names invalid inodes");
	if (!good_name(&r->var[0]) || !good_name(&r->var[1]))
		SHAPE("rename has an invalid name");
	return 0;
}

static int check_setattr(const struct shmfs_rec *r, uint64_t unit, char *why, size_t whylen)
{
	const struct shmfs_lr_setattr *s = &r->u.sa;

	if (r->flags || !s->sa_valid || (s->sa_valid & ~SHMFS_SA_ALL) || !s->sa_ino)
		SHAPE("setattr valid mask 0x%x is invalid", s->sa_valid);
	if (s->sa_mode & ~07777u)
		SHAPE("setattr mode 0%o has type bits", s->sa_mode);
	if (!good_time(&s->sa_atime) || !good_time(&s->sa_mtime) || !good_time(&s->sa_ctime))
		SHAPE("setattr has an invalid time");
	if (s->sa_size > (uint64_t)INT64_MAX)
		SHAPE("setattr size %" PRIu64 " is too large", s->sa_size);
	return 0;
}

static int check_extent(const struct shmfs_rec *r, uint64_t unit, char *why, size_t whylen)
{
	const struct shmfs_lr_extent *x = &r->u.ex;
	bool map = r->type == SHMFS_LR_EXTENT_MAP;

	if (!x->ex_ino || !x->ex_len || x->ex_foff % unit || x->ex_doff % unit ||
	    x->ex_len % unit || x->ex_foff + x->ex_len < x->ex_foff ||
	    x->ex_foff + x->ex_len > (uint64_t)INT64_MAX)
		SHAPE("extent [%" PRIu64 ", +%" PRIu64 ") of inode %" PRIu64
		      " is not aligned to the unit or overflows", x->ex_foff, x->ex_len, x->ex_ino);
	if (map ? (r->flags & ~(SHMFS_EXT_F_SIZE | SHMFS_EXT_F_AHEAD))
		: ((r->flags & ~SHMFS_EXT_F_AHEAD) || x->ex_doff || x->ex_size))
		SHAPE("extent record has invalid flags or fields");
	if (x->ex_size > (uint64_t)INT64_MAX)
		SHAPE("extent size %" PRIu64 " is too large", x->ex_size);
	return 0;
}

static int check_xattr(const struct shmfs_rec *r, uint64_t unit, char *why, size_t whylen)
{
	const struct shmfs_lr_xattr *a = &r->u.xa;
	bool set = r->type == SHMFS_LR_XATTR_SET;

	if (r->flags || !shmfs_all_zero(a->xa_pad, sizeof(a->xa_pad)) || !a->xa_ino)
		SHAPE("xattr record has flags, padding or no inode");
	if (a->xa_name_len < 1 || a->xa_name_len > SHMFS_XATTR_NAME_MAX ||
	    memchr(r->var[0].p, 0, r->var[0].len))
		SHAPE("xattr name is invalid");
	if (a->xa_value_len > SHMFS_XATTR_SIZE_MAX)
		SHAPE("xattr value of %u bytes is too large", a->xa_value_len);
	if (set ? ((a->xa_flags & ~(SHMFS_XATTR_CREATE | SHMFS_XATTR_REPLACE)) ||
		   a->xa_flags == (SHMFS_XATTR_CREATE | SHMFS_XATTR_REPLACE))
		: (a->xa_flags || a->xa_value_len))
		SHAPE("xattr flags 0x%x are invalid", a->xa_flags);
	return 0;
}

static int check_release(const struct shmfs_rec *r, uint64_t unit, char *why, size_t whylen)
{
	if (r->flags || r->u.rl.rl_ino <= SHMFS_ROOT_INO)
		SHAPE("release of inode %" PRIu64 " is invalid", r->u.rl.rl_ino);
	return 0;
}

/* ---- the shape table ----------------------------------------------------- */

#define NOVAR { -1, -1 }, { 0, 0 }
#define VAR1(s, f) { offsetof(s, f), -1 }, { sizeof(((s *)0)->f), 0 }
#define VAR2(s, f, g) { offsetof(s, f), offsetof(s, g) }, \
		      { sizeof(((s *)0)->f), sizeof(((s *)0)->g) }

static const struct shmfs_rec_shape shapes[SHMFS_LR_TYPE_COUNT] = {
	[SHMFS_LR_NOOP] = { "noop", "lr_type", 0, -1, NOVAR, true, check_noop },
	[SHMFS_LR_CREATE] = { "create", "lr_create", sizeof(struct shmfs_lr_create),
		offsetof(struct shmfs_lr_create, cr_ino),
		VAR2(struct shmfs_lr_create, cr_name_len, cr_target_len), false, check_create },
	[SHMFS_LR_LINK] = { "link", "lr_link", sizeof(struct shmfs_lr_link),
		offsetof(struct shmfs_lr_link, ln_ino),
		VAR1(struct shmfs_lr_link, ln_name_len), false, check_dirent },
	[SHMFS_LR_UNLINK] = { "unlink", "lr_unlink", sizeof(struct shmfs_lr_unlink),
		offsetof(struct shmfs_lr_unlink, ul_ino),
		VAR1(struct shmfs_lr_unlink, ul_name_len), false, check_dirent },
	[SHMFS_LR_RMDIR] = { "rmdir", "lr_unlink", sizeof(struct shmfs_lr_unlink),
		offsetof(struct shmfs_lr_unlink, ul_ino),
		VAR1(struct shmfs_lr_unlink, ul_name_len), false, check_dirent },
	[SHMFS_LR_RENAME] = { "rename", "lr_rename", sizeof(struct shmfs_lr_rename),
		offsetof(struct shmfs_lr_rename, rn_ino),
		VAR2(struct shmfs_lr_rename, rn_oldname_len, rn_newname_len), false, check_rename },
	[SHMFS_LR_SETATTR] = { "setattr", "lr_setattr", sizeof(struct shmfs_lr_setattr),
		offsetof(struct shmfs_lr_setattr, sa_ino), NOVAR, false, check_setattr },
	[SHMFS_LR_EXTENT_MAP] = { "extent-map", "lr_extent", sizeof(struct shmfs_lr_extent),
		offsetof(struct shmfs_lr_extent, ex_ino), NOVAR, false, check_extent },
	[SHMFS_LR_EXTENT_UNMAP] = { "extent-unmap", "lr_extent", sizeof(struct shmfs_lr_extent),
		offsetof(struct shmfs_lr_extent, ex_ino), NOVAR, false, check_extent },
	[SHMFS_LR_XATTR_SET] = { "xattr-set", "lr_xattr", sizeof(struct shmfs_lr_xattr),
		offsetof(struct shmfs_lr_xattr, xa_ino),
		VAR2(struct shmfs_lr_xattr, xa_name_len, xa_value_len), false, check_xattr },
	[SHMFS_LR_XATTR_REMOVE] = { "xattr-remove", "lr_xattr", sizeof(struct shmfs_lr_xattr),
		offsetof(struct shmfs_lr_xattr, xa_ino),
		VAR2(struct shmfs_lr_xattr, xa_name_len, xa_value_len), false, check_xattr },
	[SHMFS_LR_RELEASE] = { "release", "lr_release", sizeof(struct shmfs_lr_release),
		offsetof(struct shmfs_lr_release, rl_ino), NOVAR, false, check_release },
};

const struct shmfs_rec_shape *shmfs_rec_shape_of(unsigned type)
{
	return type < SHMFS_LR_TYPE_COUNT && shapes[type].check ? &shapes[type] : NULL;
}

const char *shmfs_lr_type_name(unsigned type)
{
	const struct shmfs_rec_shape *s = shmfs_rec_shape_of(type);

	return s ? s->name : "unknown";
}

bool shmfs_rec_has_fixed(const struct shmfs_rec *r)
{
	const struct shmfs_rec_shape *s = shmfs_rec_shape_of(r->type);

	return s && r->len >= s->fixed;
}

static uint32_t field(const void *fixed, int off, unsigned size)
{
	uint16_t v16;
	uint32_t v32;

	if (size == 2) {
		memcpy(&v16, (const uint8_t *)fixed + off, 2);
		return v16;
	}
	memcpy(&v32, (const uint8_t *)fixed + off, 4);
	return v32;
}

int shmfs_rec_decode(const struct shmfs_log_rec *h, const void *payload, struct shmfs_rec *r,
		     char *why, size_t whylen)
{
	const struct shmfs_rec_shape *s = shmfs_rec_shape_of(h->lr_type);
	const uint8_t *p = payload;
	uint64_t at;

	memset(r, 0, sizeof(*r));
	r->type = h->lr_type;
	r->flags = h->lr_flags;
	r->len = h->lr_len;
	r->host = h->lr_host;
	r->seq = h->lr_seq;
	r->time = h->lr_time;
	if (!s)
		SHAPE("unknown record type %u", h->lr_type);
	static_assert(sizeof(r->u) >= sizeof(struct shmfs_lr_setattr), "fixed parts fit");
	if (r->len < s->fixed)
		SHAPE("%s payload too short", s->name);
	memcpy(&r->u, p, s->fixed);
	if (s->ino_off >= 0)
		memcpy(&r->ino, r->u.raw + s->ino_off, sizeof(r->ino));
	at = s->fixed;
	for (int i = 0; i < 2; i++) {
		if (s->var_len_off[i] < 0)
			continue;
		uint32_t want = field(&r->u, s->var_len_off[i], s->var_len_size[i]);
		uint64_t from = SHMFS_MIN(at, (uint64_t)r->len);
		r->var[i].p = p + from;
		r->var[i].len = (uint32_t)SHMFS_MIN((uint64_t)want, r->len - from);
		at += want;
	}
	if (at != r->len && !s->any_tail)
		SHAPE("%s payload length %u does not match its fixed part and names", s->name,
		      r->len);
	return 0;
}

int shmfs_rec_check(const struct shmfs_log_rec *h, const void *payload, uint64_t unit,
		    struct shmfs_rec *r, char *why, size_t whylen)
{
	struct shmfs_rec local;
	int rc;

	if (!r)
		r = &local;
	if (h->lr_pad0)
		SHAPE("header padding is not zero");
	rc = shmfs_rec_decode(h, payload, r, why, whylen);
	if (rc)
		return rc;
	return shmfs_rec_shape_of(h->lr_type)->check(r, unit, why, whylen);
}

int shmfs_lr_check_shape(const struct shmfs_log_rec *h, const void *payload, uint64_t unit,
			 char *why, size_t whylen)
{
	return shmfs_rec_check(h, payload, unit, NULL, why, whylen);
}
