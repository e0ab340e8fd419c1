/* SPDX-License-Identifier: MIT */
/*
 * Filesystem operations, the data half: reads, writes, flushes,
 * fallocate, copy_file_range, and the attributes that describe a file's
 * data to libshmfs for direct mapping.
 *
 * File bytes live in the data area at the offsets the extent map gives;
 * reads hand out pointers into region memory, writes copy into it through
 * the region layer's one store path (shmfs_region_store/_clear: nothing
 * here stores through a pointer).  Only allocation is logged: a write into
 * space the file already has costs no record.  The size a write reaches is
 * kept in memory (ip->wsize) and logged, with mtime, when the file is
 * flushed (close, fsync), so a streaming writer appends a record per
 * allocated chunk, not per write.  Appending writes allocate ahead (up to
 * 64 MiB at a time) and give back what they did not use at last close.
 * Freshly allocated units are cleared before their extent record is
 * published, so no host can read another file's old bytes through them.
 *
 * A write walks the file's extent map once, into a span: the pieces of the
 * range it touches, mapped or holes.  A write wholly mapped copies from the
 * span in the same RCU read section that walked it, and takes no lock.
 * One with holes takes the metadata lock, fills the holes the span lists
 * (walking again only if the map changed while it waited: layout_seq),
 * and puts what it allocated into the span, so that the copy finds its
 * places there instead of in the map.
 */
#include "shmfs/ops.h"

#include <errno.h>
#include <linux/falloc.h>
#include <string.h>

#include "shmfs/ns.h"
#include "shmfs/rec.h"
#include "shmfs/region.h"
#include "shmfs/shmfs.h"
#include "ops_int.h"

#define PREALLOC_MAX (64ull << 20)
#define PREALLOC_MIN (64ull << 10) /* small files get no room ahead */

/* ---- the data area, through the region layer -------------------------------- */

/* doff is an offset in the data area; these refuse anything outside it. */
static bool in_data(const struct shmfs_fs *fs, uint64_t doff, uint64_t len)
{
	return doff <= fs->sb.sb_data_size && len <= fs->sb.sb_data_size - doff;
}

static int data_store(struct shmfs_fs *fs, uint64_t doff, const void *src, size_t len)
{
	if (!in_data(fs, doff, len))
		return -EINVAL;
	return shmfs_region_store(fs->region, fs->sb.sb_data_off + doff, src, len);
}

static int data_clear(struct shmfs_fs *fs, uint64_t doff, uint64_t len)
{
	if (!in_data(fs, doff, len))
		return -EINVAL;
	return shmfs_region_clear(fs->region, fs->sb.sb_data_off + doff, len);
}

static const uint8_t *data_ptr(const struct shmfs_fs *fs, uint64_t doff, uint64_t len)
{
	if (!in_data(fs, doff, len))
		return NULL;
	return shmfs_region_ptr(fs->region, fs->sb.sb_data_off + doff, len);
}

/* ---- walking an extent map -------------------------------------------------- */

#define EXT_HOLE UINT64_MAX /* the doff of a piece that is a hole */

/* Index of the first extent of m that ends after pos (the map is sorted and
 * its extents do not overlap, so their ends ascend too). */
static uint32_t ext_after(const struct shmfs_extmap *m, uint64_t pos)
{
	uint32_t lo = 0, hi = m ? m->n : 0;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (m->e[mid].foff + m->e[mid].len <= pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * The piece of [pos, to) that starts at pos: mapped (its data offset) to
 * the end of its extent, or a hole (EXT_HOLE) to the next extent.  *i is
 * the first extent ending after pos (ext_after), and moves past an extent
 * the piece reaches the end of.
 */
static struct shmfs_extent ext_piece(const struct shmfs_extmap *m, uint32_t *i, uint64_t pos,
				     uint64_t to)
{
	const struct shmfs_extent *e = m && *i < m->n ? &m->e[*i] : NULL;

	if (e && e->foff <= pos) {
		uint64_t end = e->foff + e->len;
		if (end <= to)
			(*i)++;
		return (struct shmfs_extent){ pos, e->doff + (pos - e->foff),
					      SHMFS_MIN(to, end) - pos };
	}
	return (struct shmfs_extent){ pos, EXT_HOLE, (e ? SHMFS_MIN(to, e->foff) : to) - pos };
}

/* ---- zeros over what a size change exposes ---------------------------------- */

void shmfs_op_zero_tail(struct shmfs_fs *fs, struct shmfs_inode *ip, uint64_t from)
{
	uint64_t unit = fs->sb.sb_alloc_unit, end = shmfs_round_up(from, unit);

	if (from == end)
		return;
	const struct shmfs_extmap *m = rcu_dereference(ip->ext);
	uint32_t i = ext_after(m, from);
	struct shmfs_extent x = ext_piece(m, &i, from, end);
	if (x.doff != EXT_HOLE)
		data_clear(fs, x.doff, x.len);
}

/* Store zeros over [doff, doff + len), page by page, where it is not zero
 * yet: pages already zero are only read. */
static void clear_nonzero(struct shmfs_fs *fs, uint64_t doff, uint64_t len)
{
	static const uint8_t zeros[4096];

	while (len) {
		size_t n = (size_t)SHMFS_MIN(len, sizeof(zeros));
		const uint8_t *p = data_ptr(fs, doff, n);
		if (!p)
			return;
		if (memcmp(p, zeros, n))
			data_clear(fs, doff, n);
		doff += n;
		len -= n;
	}
}

/*
 * Units past EOF may hold bytes a writer stored but never published (it
 * died before its flush, or its size was cut back), and growing the file
 * must not reveal them.
 */
void shmfs_op_zero_exposed(struct shmfs_fs *fs, struct shmfs_inode *ip, uint64_t from,
			   uint64_t to)
{
	const struct shmfs_extmap *m = rcu_dereference(ip->ext);

	for (uint32_t i = ext_after(m, from); from < to;) {
		struct shmfs_extent x = ext_piece(m, &i, from, to);
		if (x.doff != EXT_HOLE)
			clear_nonzero(fs, x.doff, x.len);
		from += x.len;
	}
}

/* ---- reads ------------------------------------------------------------------ */

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
	uint64_t size = shmfs_op_size(ip);
	if (off >= size)
		return 0;
	uint64_t end = SHMFS_MIN(size, off + len);
	const struct shmfs_extmap *m = rcu_dereference(ip->ext);
	for (uint32_t i = ext_after(m, off); off < end && n < max;) {
		struct shmfs_extent x = ext_piece(m, &i, off, end);
		const uint8_t *mem = NULL;
		/* (replay keeps extents inside the data area) */
		if (x.doff != EXT_HOLE && !(mem = data_ptr(fs, x.doff, x.len)))
			return -EIO;
		pieces[n++] = (struct shmfs_piece){ mem, x.len };
		*total += x.len;
		off += x.len;
	}
	return n;
}

/* ---- the write path ----------------------------------------------------------- */

/*
 * One walk of a file's extent map over part of [from, to), as pieces in
 * file order.  The allocation unit aligns every extent, so with from and to
 * unit-aligned every piece is too.
 */
#define SPAN_MAX 64

struct span {
	uint64_t seq;                   /* ip->layout_seq of the map walked */
	uint64_t end;                   /* the pieces cover [p[0].foff, end) */
	bool hole;                      /* a piece is a hole (as walked) */
	bool valid;                     /* the pieces describe the map at seq */
	uint32_t n;
	struct shmfs_extent p[SPAN_MAX];
};

/*
 * Walk ip's map from `from` towards `to`, into at most SPAN_MAX pieces; a
 * walk that has met no hole by `stop` ends there (a write that finds all it
 * covers mapped needs nothing further).  RCU read lock or metadata lock
 * held.  layout_seq is read before the map: replay stores the map first,
 * so a map newer than seq can only make a later comparison fail, which
 * walks again -- never the other way round.
 */
static void span_walk(const struct shmfs_inode *ip, uint64_t from, uint64_t stop, uint64_t to,
		      struct span *s)
{
	s->seq = __atomic_load_n(&ip->layout_seq, __ATOMIC_ACQUIRE);
	const struct shmfs_extmap *m = rcu_dereference(ip->ext);
	uint32_t i = ext_after(m, from);

	s->n = 0;
	s->hole = false;
	s->valid = true;
	while (from < to && s->n < SPAN_MAX && (s->hole || from < stop)) {
		struct shmfs_extent x = ext_piece(m, &i, from, to);
		s->hole |= x.doff == EXT_HOLE;
		s->p[s->n++] = x;
		from += x.len;
	}
	s->end = from;
}

/* Does the span still describe ip's map (nobody changed it since)? */
static bool span_current(const struct span *s, const struct shmfs_inode *ip)
{
	return s->valid && s->seq == __atomic_load_n(&ip->layout_seq, __ATOMIC_ACQUIRE);
}

/* Is [s->p[0].foff, end) wholly mapped?  Only a write over more pieces than
 * a span holds walks on to learn it (and its copy walks again). */
static bool span_backed(const struct shmfs_inode *ip, struct span *s, uint64_t end,
			uint64_t to)
{
	while (!s->hole && s->end < end)
		span_walk(ip, s->end, end, to, s);
	return !s->hole;
}

/*
 * The hole s->p[k] got [doff, doff + len) at its start: a mapped piece
 * before what is left of it, or the whole of it.  When the span is full
 * only the hole shrinks, and the span no longer lists every mapped piece
 * (the copy will walk the map instead).  Returns true once it is filled.
 */
static bool span_mapped(struct span *s, uint32_t *k, uint64_t doff, uint64_t len)
{
	struct shmfs_extent *h = &s->p[*k];

	if (len >= h->len) {
		h->doff = doff;
		return true;
	}
	if (s->n < SPAN_MAX) {
		memmove(h + 1, h, (s->n - *k) * sizeof(*h));
		s->n++;
		*h = (struct shmfs_extent){ h->foff, doff, len };
		h = &s->p[++*k];
	} else {
		s->valid = false;
	}
	h->foff += len;
	h->len -= len;
	return false;
}

/*
 * Under the metadata lock: map the hole s->p[*k], in as many runs as the
 * allocator finds; the part at or past `need` is room reserved ahead
 * (SHMFS_EXT_F_AHEAD).  New units are cleared in place before their
 * record is published (a punched hole would hand the pages back to the
 * kernel, and the write that follows would fault them in again).
 */
static int hole_fill_locked(struct shmfs_fs *fs, uint64_t ino, struct span *s, uint32_t *k,
			    uint64_t need)
{
	uint64_t unit = fs->sb.sb_alloc_unit;

	for (;;) {
		const struct shmfs_extent *h = &s->p[*k];
		bool ahead = h->foff >= need;
		uint64_t lim = ahead ? h->foff + h->len : SHMFS_MIN(need, h->foff + h->len);
		uint64_t first, got;
		int rc = shmfs_fs_alloc(fs, (lim - h->foff) / unit, &first, &got);
		if (!rc)
			rc = data_clear(fs, first * unit, got * unit);
		if (!rc)
			rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_MAP, ahead ? SHMFS_EXT_F_AHEAD : 0,
					     op_recbuf, shmfs_rec_extent(op_recbuf, ino, h->foff,
									 first * unit,
									 got * unit, 0));
		if (rc)
			return rc;
		if (span_mapped(s, k, first * unit, got * unit))
			return 0;
	}
}

/*
 * Under the metadata lock: give the file data for every hole in the span
 * and on to `to` (unit-aligned), the span's pieces becoming what was
 * allocated.  The room ahead (from `need`) is best effort: its errors end
 * it quietly.  Returns 0 or the first error before `need`.
 */
static int span_alloc_locked(struct shmfs_fs *fs, const struct shmfs_inode *ip, struct span *s,
			     uint64_t need, uint64_t to)
{
	for (uint32_t k = 0;; k++) {
		if (k == s->n) {
			if (s->end >= to)
				return 0;
			span_walk(ip, s->end, to, to, s); /* more pieces than a span holds */
			k = 0;
		}
		if (s->p[k].doff != EXT_HOLE)
			continue;
		int rc = hole_fill_locked(fs, ip->ino, s, &k, need);
		if (rc)
			return s->p[k].foff >= need ? 0 : rc;
	}
}

/*
 * Under the metadata lock: map every unit of [from, to) the file lacks
 * (unit-aligned).  Under the lock this thread is the namespace's only
 * writer (replay and forget need replay_lock), so the inode found here
 * stays valid across the commits without an RCU read section around them.
 */
static int allocate_locked(struct shmfs_fs *fs, uint64_t ino, uint64_t from, uint64_t to)
{
	struct span s;

	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	rcu_read_unlock();
	if (!ip || ip->gone)
		return ip ? -ESTALE : -ENOENT;
	span_walk(ip, from, to, to, &s);
	return span_alloc_locked(fs, ip, &s, to, to);
}

/* Store the write's bytes [pos, end) into the pieces of s, in order, up to
 * the first hole; buf holds the bytes from off.  Returns how far it got. */
static uint64_t span_store(struct shmfs_fs *fs, const struct span *s, uint64_t off,
			   uint64_t pos, uint64_t end, const uint8_t *buf)
{
	for (uint32_t k = 0; k < s->n && pos < end; k++) {
		const struct shmfs_extent *p = &s->p[k];
		if (p->foff + p->len <= pos)
			continue;
		if (p->foff > pos || p->doff == EXT_HOLE)
			break;
		size_t l = (size_t)(SHMFS_MIN(end, p->foff + p->len) - pos);
		if (data_store(fs, p->doff + (pos - p->foff), buf + (pos - off), l))
			break;
		pos += l;
	}
	return pos;
}

/*
 * Copy the write into what the file maps: from the span while it still
 * describes the map, else (another host or thread changed the layout since
 * it was taken, or the write covers more pieces than a span holds) from a
 * fresh walk.  Stops at the first hole: out of space, a short write.  RCU
 * read lock held.
 */
static size_t write_copy(struct shmfs_fs *fs, const struct shmfs_inode *ip, struct span *s,
			 uint64_t off, const uint8_t *buf, size_t len)
{
	uint64_t end = off + len, pos = off;

	s->valid = span_current(s, ip);
	for (;;) {
		if (!s->valid || !s->n || s->p[0].foff > pos || s->end <= pos)
			span_walk(ip, pos, end, end, s);
		pos = span_store(fs, s, off, pos, end, buf);
		if (pos >= end || pos < s->end)
			break;
	}
	return (size_t)(pos - off);
}

/*
 * The part of a write that allocates, under the metadata lock: [from,
 * need) for the write itself, [need, to) room ahead.  The span the
 * unlocked walk made is used if the map has not changed since; if it has
 * (a record of another host or of another thread of ours came in while we
 * waited for the lock), the inode is read again and walked again here.
 * The inode is looked up once under the lock (see allocate_locked), and
 * the span comes out describing the map with what was allocated.
 */
static int write_alloc_locked(struct shmfs_fs *fs, uint64_t ino, struct span *s, uint64_t from,
			      uint64_t need, uint64_t to)
{
	int rc;

	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	rcu_read_unlock();
	if (!ip || ip->gone) {
		rc = ip ? -ESTALE : -ENOENT;
	} else {
		if (!span_current(s, ip) || !s->n || s->p[0].foff > from)
			span_walk(ip, from, to, to, s);
		rc = span_alloc_locked(fs, ip, s, need, to);
		s->seq = __atomic_load_n(&ip->layout_seq, __ATOMIC_ACQUIRE);
	}
	/* Whatever was allocated beyond what the write will fill -- room
	 * ahead, or the start of a range that ran out of space -- goes back at
	 * the last close if the file does not grow into it.  prealloc_end is
	 * only written under the lock, which orders it: relaxed. */
	uint64_t reach = rc == -ENOSPC ? need : to;
	if (ip && __atomic_load_n(&ip->prealloc_end, __ATOMIC_RELAXED) < reach)
		__atomic_store_n(&ip->prealloc_end, reach, __ATOMIC_RELAXED);
	return rc;
}

/* The allocating part of a write: under the lock, and again while space
 * another host freed is still on its way back. */
static int write_alloc(struct shmfs_fs *fs, uint64_t ino, struct span *s, uint64_t from,
		       uint64_t need, uint64_t to)
{
	uint64_t deadline = 0;
	int rc;

	do {
		rc = shmfs_fs_lock(fs);
		if (rc)
			return rc;
		rc = write_alloc_locked(fs, ino, s, from, need, to);
		shmfs_fs_unlock(fs);
	} while (rc == -ENOSPC && shmfs_fs_wait_pending(fs, &deadline));
	return rc;
}

ssize_t shmfs_op_write(struct shmfs_fs *fs, uint64_t ino, uint64_t off, const void *buf,
		       size_t len)
{
	uint64_t unit = fs->sb.sb_alloc_unit, end = off + len, size = 0;
	struct span s; /* ~1.6 KiB: only what says it is empty is set */
	bool ok = false;
	size_t done = 0;

	if (!len)
		return 0;
	if (end < off || end > (uint64_t)INT64_MAX)
		return -EFBIG;
	uint64_t from = shmfs_round_down(off, unit), need = shmfs_round_up(end, unit), to = need;
	s.n = 0;
	s.valid = false;
	rcu_read_lock();
	struct shmfs_inode *ip = shmfs_ns_iget(fs->ns, ino);
	if (ip)
		size = shmfs_op_size(ip);
	if (end >= size && end >= PREALLOC_MIN) {
		/* A stream: reserve as much again as the file has (capped), so
		 * it logs a record per doubling, not per write. */
		uint64_t ahead = SHMFS_MIN(SHMFS_MAX(size, len), PREALLOC_MAX);
		to = shmfs_round_up(end + ahead, unit);
	}
	if (ip) {
		span_walk(ip, from, end, to, &s);
		ok = span_backed(ip, &s, end, to);
	}
	if (!ok) {
		/* The lock may wait, and RCU cannot be held across it: the
		 * inode is looked up again under it, and after it for the copy
		 * (write_copy then checks the span against the map). */
		rcu_read_unlock();
		int rc = write_alloc(fs, ino, &s, from, need, to);
		if (rc && rc != -ENOSPC)
			return rc;
		/* Out of space: write what fits (a short write), as POSIX wants. */
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
	}
	/* a write past EOF leaves a gap that must read as zeros */
	if (ip && off > size)
		shmfs_op_zero_exposed(fs, ip, size, off);
	if (ip)
		done = write_copy(fs, ip, &s, off, buf, len);
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
	/* a hint, read again under the lock: relaxed */
	bool trim = ip && last_close && __atomic_load_n(&ip->prealloc_end, __ATOMIC_RELAXED);
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
	uint64_t size = shmfs_op_size(ip);
	uint64_t pend = __atomic_load_n(&ip->prealloc_end, __ATOMIC_RELAXED);
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
		rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, SHMFS_EXT_F_AHEAD, op_recbuf,
				     shmfs_rec_extent(op_recbuf, ino, from, 0, pend - from, 0));
		if (rc == -ENOENT || rc == -EINVAL)
			rc = 0;
	}
	if (!rc && dirty) {
		struct shmfs_lr_setattr sa = { .sa_ino = ino,
					       .sa_valid = SHMFS_SA_SIZE | SHMFS_SA_MTIME | SHMFS_SA_CTIME,
					       .sa_size = size };
		sa.sa_mtime = sa.sa_ctime = shmfs_op_now();
		rc = shmfs_fs_commit(fs, SHMFS_LR_SETATTR, 0, op_recbuf,
				     shmfs_rec_setattr(op_recbuf, &sa));
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
		if (ip) /* under the lock, which orders it: relaxed */
			__atomic_store_n(&ip->prealloc_end, 0, __ATOMIC_RELAXED);
		rcu_read_unlock();
	}
	shmfs_fs_unlock(fs);
	return rc;
}

/*
 * fallocate's punch and zero-range: whole units in [off, end) become holes
 * by record; the parts of it outside [us, ue) (the partial units at the
 * edges) are cleared in place.  RCU read lock held.
 */
static void clear_edges(struct shmfs_fs *fs, const struct shmfs_inode *ip, uint64_t off,
			uint64_t end, uint64_t us, uint64_t ue)
{
	const struct shmfs_extmap *m = rcu_dereference(ip->ext);

	for (uint32_t i = ext_after(m, off); off < end;) {
		struct shmfs_extent x = ext_piece(m, &i, off, end);
		uint64_t a = x.foff, b = x.foff + x.len;
		off = b;
		if (x.doff == EXT_HOLE)
			continue;
		if (a < us)
			data_clear(fs, x.doff, SHMFS_MIN(b, us) - a);
		/* (a range inside one unit was cleared just above) */
		if (b > ue && ue >= us)
			data_clear(fs, x.doff + (SHMFS_MAX(a, ue) - a), b - SHMFS_MAX(a, ue));
	}
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
	uint64_t size = ip ? shmfs_op_size(ip) : 0;
	if (!ip || ip->gone)
		rc = ip ? -ESTALE : -ENOENT;
	else if (ip->type != S_IFREG)
		rc = ip->type == S_IFDIR ? -EISDIR : -ENODEV;
	else if (!keep && end > size)
		shmfs_op_zero_exposed(fs, ip, size, end);
	rcu_read_unlock();

	if (!rc && (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE))) {
		/* Whole units in the range become holes; partial edges are zeroed. */
		uint64_t us = shmfs_round_up(off, unit), ue = shmfs_round_down(end, unit);
		if (mode & FALLOC_FL_PUNCH_HOLE)
			end = SHMFS_MIN(end, size);
		rcu_read_lock();
		ip = shmfs_ns_iget(fs->ns, ino);
		if (ip)
			clear_edges(fs, ip, off, end, us, ue);
		rcu_read_unlock();
		if (ue > us)
			rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, 0, op_recbuf,
					     shmfs_rec_extent(op_recbuf, ino, us, 0, ue - us, 0));
	} else if (!rc) {
		/* Extents come whole units at unit offsets of the data area, itself
		 * unit aligned, and the unit is a multiple of the region's mapping
		 * alignment: what fallocate allocates can be mapped directly. */
		rc = allocate_locked(fs, ino, shmfs_round_down(off, unit),
				     shmfs_round_up(end, unit));
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
		uint64_t at = shmfs_round_down(off, unit);
		if (!rc && keep && ip && __atomic_load_n(&ip->prealloc_end, __ATOMIC_RELAXED) > at)
			__atomic_store_n(&ip->prealloc_end, at, __ATOMIC_RELAXED);
		if (!rc && keep && ip && ip->ahead_from &&
		    ip->ahead_from < shmfs_round_up(end, unit)) {
			const struct shmfs_extmap *m = rcu_dereference(ip->ext);
			if (m && m->n)
				map_end = m->e[m->n - 1].foff + m->e[m->n - 1].len;
			ends = true;
		}
		rcu_read_unlock();
		if (ends && map_end + unit <= (uint64_t)INT64_MAX)
			rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, SHMFS_EXT_F_AHEAD,
					     op_recbuf,
					     shmfs_rec_extent(op_recbuf, ino, map_end, 0, unit, 0));
	}
	if (!rc && !keep && end > size) {
		struct shmfs_lr_setattr sa = { .sa_ino = ino, .sa_valid = SHMFS_SA_SIZE |
					       SHMFS_SA_CTIME, .sa_size = end };
		sa.sa_ctime = shmfs_op_now();
		rc = shmfs_fs_commit(fs, SHMFS_LR_SETATTR, 0, op_recbuf,
				     shmfs_rec_setattr(op_recbuf, &sa));
	}
	shmfs_fs_unlock(fs);
	return rc;
}

size_t shmfs_op_gather(const struct shmfs_piece *p, int n, void *dst)
{
	uint8_t *d = dst;
	size_t at = 0;

	for (int i = 0; i < n; i++) {
		if (p[i].mem)
			memcpy(d + at, p[i].mem, p[i].len);
		else
			memset(d + at, 0, p[i].len);
		at += p[i].len;
	}
	return at;
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
		if (n > 0)
			got = shmfs_op_gather(p, n, chunk);
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
		from = SHMFS_MAX(shmfs_round_up(shmfs_op_size(ip), unit),
				 shmfs_round_down(ip->ahead_from, unit));
		if (m && m->n)
			end = m->e[m->n - 1].foff + m->e[m->n - 1].len;
	}
	rcu_read_unlock();
	if (end > from)
		rc = shmfs_fs_commit(fs, SHMFS_LR_EXTENT_UNMAP, SHMFS_EXT_F_AHEAD, op_recbuf,
				     shmfs_rec_extent(op_recbuf, ino, from, 0, end - from, 0));
	shmfs_fs_unlock(fs);
	return rc;
}

int shmfs_op_release_orphan(struct shmfs_fs *fs, uint64_t ino)
{
	int rc = shmfs_fs_lock(fs);

	if (rc)
		return rc;
	rc = shmfs_fs_commit(fs, SHMFS_LR_RELEASE, 0, op_recbuf, shmfs_rec_release(op_recbuf, ino));
	shmfs_fs_unlock(fs);
	return rc;
}

/* ---- the attributes libshmfs reads (include/shmfs/shmfs.h) ------------------ */

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
	mi.mi_size = shmfs_op_size(ip);
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
	sa.sa_mtime = sa.sa_ctime = shmfs_op_now();
	struct stat st;
	return shmfs_op_setattr(fs, ino, &sa, &st);
}
