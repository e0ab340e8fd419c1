/* SPDX-License-Identifier: MIT */
/*
 * The metadata log: an append-only array of records in the region.
 *
 * Publication.  A record is written in two steps by the holder of the
 * metadata lock:
 *
 *   1. payload and header bytes 8..39 (everything but lr_seq), with the
 *      checksum computed as if lr_seq already held the new sequence number;
 *   2. one compare-and-exchange with release ordering of lr_seq from 0 to
 *      the sequence number.  This is the commit point.
 *
 * Readers acquire-load lr_seq; a zero means the log ends there.  Because
 * step 2 is a CAS and not a plain store, a holder whose lease was broken
 * (it stalled, another host took the lock and sealed the slot) cannot
 * publish over the seal: its CAS fails and it stops writing for good.  On
 * coherent memory a published record is therefore always complete; a
 * record that fails verification is corruption (a buggy or hostile peer, or
 * a torn copy of the region), and replay stops in front of it.
 *
 * Sealing.  A host that breaks a dead holder's lease cannot know how much
 * of the next slot the holder had written, nor whether it is truly dead.
 * It CASes the slot's lr_seq from 0 to SHMFS_LR_SEAL|seq, and the record
 * with that seq goes SHMFS_LOG_SEAL_SKIP bytes further on, beyond anything
 * the old holder could still write (a record is at most
 * SHMFS_LR_HDR_SIZE + SHMFS_LR_PAYLOAD_MAX bytes).
 *
 * Every read copies the record out of the region before checking it, so
 * what was verified is what is used.
 */
#include "shmfs/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shmfs/util.h"

static inline uint64_t *seq_word(const struct shmfs_log *log, uint64_t pos)
{
	return (uint64_t *)(log->base + pos);
}

static uint64_t rec_csum(const struct shmfs_log *log, const struct shmfs_log_rec *h,
			 uint64_t seq, const void *payload)
{
	struct shmfs_log_rec tmp = *h;

	tmp.lr_seq = seq;
	uint64_t pseed = shmfs_hash(payload, h->lr_len, log->seed);
	return shmfs_hash(&tmp, offsetof(struct shmfs_log_rec, lr_csum), pseed);
}

#define WHY(...) shmfs_errf(e->why, sizeof(e->why), __VA_ARGS__)

enum shmfs_log_status shmfs_log_read(const struct shmfs_log *log, uint64_t pos, uint64_t seq,
				     struct shmfs_log_entry *e, void *buf)
{
	uint64_t v, stride;

	e->pos = pos;
	e->next_pos = pos;
	e->payload = buf;
	e->why[0] = 0;
	if (pos % SHMFS_LOG_ALIGN || pos > log->size) {
		WHY("log position %" PRIu64 " is invalid", pos);
		return SHMFS_LOG_BAD;
	}
	if (log->size - pos < SHMFS_LR_HDR_SIZE)
		return SHMFS_LOG_END;

	v = __atomic_load_n(seq_word(log, pos), __ATOMIC_ACQUIRE);
	if (v == 0)
		return SHMFS_LOG_END;
	if (v & SHMFS_LR_SEAL) {
		uint64_t s = v & ~SHMFS_LR_SEAL;
		if (s == 0 || s > SHMFS_LR_SEQ_MAX || (seq && s != seq)) {
			WHY("seal at %" PRIu64 " names record %" PRIu64 ", expected %" PRIu64, pos, s,
			    seq);
			return SHMFS_LOG_BAD;
		}
		memset(&e->hdr, 0, sizeof(e->hdr));
		e->hdr.lr_seq = v;
		e->next_pos = SHMFS_MIN(pos + SHMFS_LOG_SEAL_SKIP, log->size);
		return SHMFS_LOG_SEALED;
	}
	if (v > SHMFS_LR_SEQ_MAX || (seq && v != seq)) {
		WHY("record at %" PRIu64 " has sequence %" PRIu64 ", expected %" PRIu64, pos, v, seq);
		return SHMFS_LOG_BAD;
	}
	memcpy(&e->hdr, log->base + pos, sizeof(e->hdr));
	e->hdr.lr_seq = v;
	if (e->hdr.lr_len > SHMFS_LR_PAYLOAD_MAX) {
		WHY("record %" PRIu64 " at %" PRIu64 " claims %u payload bytes", v, pos,
		    e->hdr.lr_len);
		return SHMFS_LOG_BAD;
	}
	stride = shmfs_lr_stride(e->hdr.lr_len);
	if (stride > log->size - pos) {
		WHY("record %" PRIu64 " at %" PRIu64 " runs past the end of the log", v, pos);
		return SHMFS_LOG_BAD;
	}
	memcpy(buf, log->base + pos + SHMFS_LR_HDR_SIZE, e->hdr.lr_len);
	if (rec_csum(log, &e->hdr, v, buf) != e->hdr.lr_csum) {
		WHY("record %" PRIu64 " at %" PRIu64 " fails its checksum", v, pos);
		return SHMFS_LOG_BAD;
	}
	e->next_pos = pos + stride;
	return SHMFS_LOG_REC;
}

int shmfs_log_append(const struct shmfs_log *log, uint64_t pos, uint64_t seq,
		     struct shmfs_log_rec *hdr, const void *payload, uint64_t *next_pos)
{
	uint64_t stride, expected = 0;

	if (hdr->lr_len > SHMFS_LR_PAYLOAD_MAX || seq == 0 || seq > SHMFS_LR_SEQ_MAX ||
	    pos % SHMFS_LOG_ALIGN || pos > log->size)
		return -EINVAL;
	stride = shmfs_lr_stride(hdr->lr_len);
	if (stride > log->size - pos)
		return -ENOSPC;
	if (__atomic_load_n(seq_word(log, pos), __ATOMIC_ACQUIRE) != 0)
		return -ESTALE;

	hdr->lr_csum = rec_csum(log, hdr, seq, payload);
	memcpy(log->base + pos + SHMFS_LR_HDR_SIZE, payload, hdr->lr_len);
	/* Header bytes after lr_seq; lr_seq itself is only ever CASed. */
	memcpy(log->base + pos + sizeof(hdr->lr_seq), (const uint8_t *)hdr + sizeof(hdr->lr_seq),
	       sizeof(*hdr) - sizeof(hdr->lr_seq));
	if (!__atomic_compare_exchange_n(seq_word(log, pos), &expected, seq, false,
					 __ATOMIC_RELEASE, __ATOMIC_RELAXED))
		return -ESTALE;
	hdr->lr_seq = seq;
	*next_pos = pos + stride;
	return 0;
}

int shmfs_log_seal(const struct shmfs_log *log, uint64_t pos, uint64_t seq, uint64_t *next_pos)
{
	uint64_t expected = 0;

	if (pos % SHMFS_LOG_ALIGN || pos > log->size || seq == 0 || seq > SHMFS_LR_SEQ_MAX)
		return -EINVAL;
	if (log->size - pos < SHMFS_LR_HDR_SIZE) {
		*next_pos = log->size;  /* the log is full: nothing to seal */
		return 0;
	}
	if (!__atomic_compare_exchange_n(seq_word(log, pos), &expected, SHMFS_LR_SEAL | seq, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return -EEXIST;
	*next_pos = SHMFS_MIN(pos + SHMFS_LOG_SEAL_SKIP, log->size);
	return 0;
}

static const char *const type_names[SHMFS_LR_TYPE_COUNT] = {
	[SHMFS_LR_NOOP] = "noop",
	[SHMFS_LR_CREATE] = "create",
	[SHMFS_LR_LINK] = "link",
	[SHMFS_LR_UNLINK] = "unlink",
	[SHMFS_LR_RMDIR] = "rmdir",
	[SHMFS_LR_RENAME] = "rename",
	[SHMFS_LR_SETATTR] = "setattr",
	[SHMFS_LR_EXTENT_MAP] = "extent-map",
	[SHMFS_LR_EXTENT_UNMAP] = "extent-unmap",
	[SHMFS_LR_XATTR_SET] = "xattr-set",
	[SHMFS_LR_XATTR_REMOVE] = "xattr-remove",
	[SHMFS_LR_RELEASE] = "release",
};

const char *shmfs_lr_type_name(unsigned type)
{
	return type < SHMFS_LR_TYPE_COUNT ? type_names[type] : "unknown";
}

/* ---- shape checks --------------------------------------------------- */

#define SHAPE(...) do { shmfs_errf(why, whylen, __VA_ARGS__); return -EUCLEAN; } while (0)

static bool zero_bytes(const void *p, size_t n)
{
	const uint8_t *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* A directory entry name: 1..NAME_MAX bytes, no '/' or NUL, not . or .. */
static bool good_name(const uint8_t *n, size_t len)
{
	if (len < 1 || len > SHMFS_NAME_MAX)
		return false;
	if ((len == 1 && n[0] == '.') || (len == 2 && n[0] == '.' && n[1] == '.'))
		return false;
	for (size_t i = 0; i < len; i++)
		if (n[i] == '/' || n[i] == 0)
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

int shmfs_lr_check_shape(const struct shmfs_log_rec *h, const void *payload, uint64_t unit,
			 char *why, size_t whylen)
{
	const uint8_t *p = payload;
	uint32_t len = h->lr_len;

	if (h->lr_pad0)
		SHAPE("header padding is not zero");
	switch (h->lr_type) {
	case SHMFS_LR_NOOP:
		if (h->lr_flags)
			SHAPE("noop with flags");
		return 0;
	case SHMFS_LR_CREATE: {
		struct shmfs_lr_create c;
		if (len < sizeof(c))
			SHAPE("create payload too short");
		memcpy(&c, p, sizeof(c));
		if (len != sizeof(c) + (uint32_t)c.cr_name_len + c.cr_target_len)
			SHAPE("create payload length %u does not match its names", len);
		if (h->lr_flags || c.cr_pad || c.cr_pad2)
			SHAPE("create has flags or nonzero padding");
		if (!good_type(c.cr_mode) || (c.cr_mode & ~(uint32_t)(S_IFMT | 07777)))
			SHAPE("create mode 0%o is invalid", c.cr_mode);
		if (c.cr_ino == SHMFS_ROOT_INO) {
			if (c.cr_parent != 0 || c.cr_name_len != 0 || !S_ISDIR(c.cr_mode))
				SHAPE("root create must be a nameless directory without parent");
		} else {
			/* UINT64_MAX would wrap the next free inode number to 0 */
			if (c.cr_ino == 0 || c.cr_ino == UINT64_MAX || c.cr_parent == 0)
				SHAPE("create of inode %" PRIu64 " in %" PRIu64 " is invalid",
				      c.cr_ino, c.cr_parent);
			if (!good_name(p + sizeof(c), c.cr_name_len))
				SHAPE("create has an invalid name");
		}
		if (S_ISLNK(c.cr_mode)) {
			if (c.cr_target_len < 1 || c.cr_target_len > SHMFS_SYMLINK_MAX ||
			    memchr(p + sizeof(c) + c.cr_name_len, 0, c.cr_target_len))
				SHAPE("symlink target is invalid");
		} else if (c.cr_target_len) {
			SHAPE("non-symlink with a target");
		}
		if (c.cr_rdev && !S_ISCHR(c.cr_mode) && !S_ISBLK(c.cr_mode))
			SHAPE("rdev on a non-device inode");
		return 0;
	}
	case SHMFS_LR_LINK:
	case SHMFS_LR_UNLINK:
	case SHMFS_LR_RMDIR: {
		/* Same shape: two inode numbers, a name. */
		struct shmfs_lr_link l;
		static_assert(sizeof(struct shmfs_lr_link) == sizeof(struct shmfs_lr_unlink),
			      "link/unlink shapes");
		if (len < sizeof(l))
			SHAPE("%s payload too short", shmfs_lr_type_name(h->lr_type));
		memcpy(&l, p, sizeof(l));
		if (len != sizeof(l) + (uint32_t)l.ln_name_len)
			SHAPE("%s payload length does not match its name",
			      shmfs_lr_type_name(h->lr_type));
		if ((h->lr_flags & ~(h->lr_type == SHMFS_LR_UNLINK ? SHMFS_LR_F_KEEP : 0u)) ||
		    !zero_bytes(l.ln_pad, sizeof(l.ln_pad)))
			SHAPE("%s has flags or nonzero padding", shmfs_lr_type_name(h->lr_type));
		if (!l.ln_ino || !l.ln_dir || !good_name(p + sizeof(l), l.ln_name_len))
			SHAPE("%s names an invalid inode or name", shmfs_lr_type_name(h->lr_type));
		return 0;
	}
	case SHMFS_LR_RENAME: {
		struct shmfs_lr_rename r;
		if (len < sizeof(r))
			SHAPE("rename payload too short");
		memcpy(&r, p, sizeof(r));
		if (len != sizeof(r) + (uint32_t)r.rn_oldname_len + r.rn_newname_len)
			SHAPE("rename payload length does not match its names");
		if ((h->lr_flags & ~SHMFS_LR_F_KEEP) ||
		    (r.rn_flags & ~(SHMFS_RENAME_NOREPLACE | SHMFS_RENAME_EXCHANGE)) ||
		    r.rn_flags == (SHMFS_RENAME_NOREPLACE | SHMFS_RENAME_EXCHANGE))
			SHAPE("rename flags 0x%x are invalid", r.rn_flags);
		if ((r.rn_flags & SHMFS_RENAME_EXCHANGE) && !r.rn_target)
			SHAPE("exchange without a target");
		if ((r.rn_flags & SHMFS_RENAME_NOREPLACE) && r.rn_target)
			SHAPE("noreplace rename with a target");
		if (!r.rn_olddir || !r.rn_newdir || !r.rn_ino || r.rn_ino == r.rn_target)
			SHAPE("rename names invalid inodes");
		if (!good_name(p + sizeof(r), r.rn_oldname_len) ||
		    !good_name(p + sizeof(r) + r.rn_oldname_len, r.rn_newname_len))
			SHAPE("rename has an invalid name");
		return 0;
	}
	case SHMFS_LR_SETATTR: {
		struct shmfs_lr_setattr s;
		if (len != sizeof(s))
			SHAPE("setattr payload is %u bytes", len);
		memcpy(&s, p, sizeof(s));
		if (h->lr_flags || !s.sa_valid || (s.sa_valid & ~SHMFS_SA_ALL) || !s.sa_ino)
			SHAPE("setattr valid mask 0x%x is invalid", s.sa_valid);
		if (s.sa_mode & ~07777u)
			SHAPE("setattr mode 0%o has type bits", s.sa_mode);
		if (!good_time(&s.sa_atime) || !good_time(&s.sa_mtime) || !good_time(&s.sa_ctime))
			SHAPE("setattr has an invalid time");
		if (s.sa_size > (uint64_t)INT64_MAX)
			SHAPE("setattr size %" PRIu64 " is too large", s.sa_size);
		return 0;
	}
	case SHMFS_LR_EXTENT_MAP:
	case SHMFS_LR_EXTENT_UNMAP: {
		struct shmfs_lr_extent x;
		bool map = h->lr_type == SHMFS_LR_EXTENT_MAP;
		if (len != sizeof(x))
			SHAPE("extent payload is %u bytes", len);
		memcpy(&x, p, sizeof(x));
		if (!x.ex_ino || !x.ex_len || x.ex_foff % unit || x.ex_doff % unit ||
		    x.ex_len % unit || x.ex_foff + x.ex_len < x.ex_foff ||
		    x.ex_foff + x.ex_len > (uint64_t)INT64_MAX)
			SHAPE("extent [%" PRIu64 ", +%" PRIu64 ") of inode %" PRIu64
			      " is not aligned to the unit or overflows", x.ex_foff, x.ex_len, x.ex_ino);
		if (map ? (h->lr_flags & ~(SHMFS_EXT_F_SIZE | SHMFS_EXT_F_AHEAD))
			: ((h->lr_flags & ~SHMFS_EXT_F_AHEAD) || x.ex_doff || x.ex_size))
			SHAPE("extent record has invalid flags or fields");
		if (x.ex_size > (uint64_t)INT64_MAX)
			SHAPE("extent size %" PRIu64 " is too large", x.ex_size);
		return 0;
	}
	case SHMFS_LR_XATTR_SET:
	case SHMFS_LR_XATTR_REMOVE: {
		struct shmfs_lr_xattr a;
		bool set = h->lr_type == SHMFS_LR_XATTR_SET;
		if (len < sizeof(a))
			SHAPE("xattr payload too short");
		memcpy(&a, p, sizeof(a));
		if (len != sizeof(a) + (uint32_t)a.xa_name_len + a.xa_value_len)
			SHAPE("xattr payload length does not match");
		if (h->lr_flags || !zero_bytes(a.xa_pad, sizeof(a.xa_pad)) || !a.xa_ino)
			SHAPE("xattr record has flags, padding or no inode");
		if (a.xa_name_len < 1 || a.xa_name_len > SHMFS_XATTR_NAME_MAX ||
		    memchr(p + sizeof(a), 0, a.xa_name_len))
			SHAPE("xattr name is invalid");
		if (a.xa_value_len > SHMFS_XATTR_SIZE_MAX)
			SHAPE("xattr value of %u bytes is too large", a.xa_value_len);
		if (set ? ((a.xa_flags & ~(SHMFS_XATTR_CREATE | SHMFS_XATTR_REPLACE)) ||
			   a.xa_flags == (SHMFS_XATTR_CREATE | SHMFS_XATTR_REPLACE))
			: (a.xa_flags || a.xa_value_len))
			SHAPE("xattr flags 0x%x are invalid", a.xa_flags);
		return 0;
	}
	case SHMFS_LR_RELEASE: {
		struct shmfs_lr_release rl;
		if (len != sizeof(rl))
			SHAPE("release payload is %u bytes", len);
		memcpy(&rl, p, sizeof(rl));
		if (h->lr_flags || rl.rl_ino <= SHMFS_ROOT_INO)
			SHAPE("release of inode %" PRIu64 " is invalid", rl.rl_ino);
		return 0;
	}
	default:
		SHAPE("unknown record type %u", h->lr_type);
	}
}

/* ---- resynchronising scans (tools) ----------------------------------------- */

int shmfs_log_scan_init(struct shmfs_log_scan *s, const struct shmfs_log *log, int fd,
			uint64_t fd_base)
{
	*s = (struct shmfs_log_scan){ .log = log, .fd = fd, .fd_base = fd_base };
	s->chunk = malloc(SHMFS_LOG_SCAN_CHUNK + SHMFS_LR_HDR_SIZE);
	s->buf = malloc(SHMFS_LR_PAYLOAD_MAX);
	if (!s->chunk || !s->buf) {
		shmfs_log_scan_fini(s);
		return -ENOMEM;
	}
	return 0;
}

void shmfs_log_scan_fini(struct shmfs_log_scan *s)
{
	free(s->chunk);
	free(s->buf);
	s->chunk = s->buf = NULL;
}

void shmfs_log_scan_copy(struct shmfs_log_scan *s, uint64_t pos, void *dst, size_t n)
{
	if (s->fd >= 0) {
		if (pread(s->fd, dst, n, (off_t)(s->fd_base + pos)) == (ssize_t)n)
			return;
		s->fd = -1; /* not readable that way: use the mapping from now on */
	}
	memcpy(dst, s->log->base + pos, n);
}

/* Checksum a candidate, within the budget. */
static bool scan_afford(struct shmfs_log_scan *s, uint64_t bytes)
{
	if (s->hashed > SHMFS_LOG_SCAN_BUDGET) {
		s->gave_up = true;
		return false;
	}
	s->hashed += bytes;
	return true;
}

bool shmfs_log_scan_next(struct shmfs_log_scan *s, uint64_t from, uint64_t min_seq, bool seals,
			 struct shmfs_log_anchor *a, struct shmfs_log_entry *e,
			 uint64_t *first_nz)
{
	const struct shmfs_log *log = s->log;
	uint64_t p = shmfs_round_up(from, SHMFS_LOG_ALIGN);

	s->gave_up = false;
	if (first_nz)
		*first_nz = UINT64_MAX;
	while (p < log->size) {
		if (s->fd >= 0) {
			off_t at = (off_t)(s->fd_base + p);
			off_t data = lseek(s->fd, at, SEEK_DATA);
			if (data < 0 && errno == ENXIO)
				return false; /* holes to the end of the file */
			if (data > at) {
				p = shmfs_round_up((uint64_t)data - s->fd_base, SHMFS_LOG_ALIGN);
				continue;
			}
		}
		uint64_t n = SHMFS_MIN((uint64_t)SHMFS_LOG_SCAN_CHUNK, log->size - p);
		uint64_t rd = SHMFS_MIN(n + SHMFS_LR_HDR_SIZE, log->size - p);
		shmfs_log_scan_copy(s, p, s->chunk, rd);
		for (uint64_t i = 0; i + 8 <= n; i += SHMFS_LOG_ALIGN) {
			uint64_t w, at = p + i;
			uint32_t len;

			memcpy(&w, s->chunk + i, sizeof(w));
			if (!w)
				continue;
			if (first_nz && *first_nz == UINT64_MAX)
				*first_nz = at;
			if (log->size - at < SHMFS_LR_HDR_SIZE || i + SHMFS_LR_HDR_SIZE > rd)
				continue;
			if (w & SHMFS_LR_SEAL) {
				uint64_t sq = w & ~SHMFS_LR_SEAL;
				if (!seals || sq < min_seq || sq == 0 || sq > SHMFS_LR_SEQ_MAX ||
				    at + SHMFS_LOG_SEAL_SKIP > log->size - SHMFS_LR_HDR_SIZE)
					continue;
				if (!scan_afford(s, SHMFS_LR_HDR_SIZE))
					return false;
				enum shmfs_log_status st = shmfs_log_read(log, at + SHMFS_LOG_SEAL_SKIP,
									 sq, e, s->buf);
				if (st == SHMFS_LOG_REC || st == SHMFS_LOG_SEALED) {
					*a = (struct shmfs_log_anchor){ at, sq, true };
					return true;
				}
				continue;
			}
			if (w < min_seq || w > SHMFS_LR_SEQ_MAX)
				continue;
			memcpy(&len, s->chunk + i + offsetof(struct shmfs_log_rec, lr_len), sizeof(len));
			if (len > SHMFS_LR_PAYLOAD_MAX)
				continue;
			if (!scan_afford(s, SHMFS_LR_HDR_SIZE + len))
				return false;
			if (shmfs_log_read(log, at, 0, e, s->buf) == SHMFS_LOG_REC &&
			    e->hdr.lr_seq >= min_seq) {
				*a = (struct shmfs_log_anchor){ at, e->hdr.lr_seq, false };
				return true;
			}
		}
		p += n;
	}
	return false;
}
