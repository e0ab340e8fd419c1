/* SPDX-License-Identifier: MIT */
/*
 * A file's extent map, as the daemon publishes it in user.shmfs.map
 * (include/shmfs/shmfs.h): a header with the file's size, allocation unit
 * and layout generation, then its extents.
 *
 * The attribute is read into a private buffer and checked there before
 * anything is taken from it: extents that are not whole units, overlap or
 * wrap would map the wrong memory.  They come from our own daemon, but a
 * mistake here is a mapping of another file's bytes.
 *
 * The map can grow between asking for its size and reading it (a writer
 * elsewhere allocates); the read is retried a few times with room to
 * spare, then given up with ESTALE.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "client.h"
#include "shmfs/format.h"
#include "shmfs/util.h"

#define READ_TRIES 8            /* the map grew between sizing and reading */

bool shmfs_client_not_shmfs_errno(int e)
{
	return e == ENODATA || e == ENOTSUP || e == EOPNOTSUPP || e == ENOSYS;
}

void shmfs_fmap_free(struct fmap *m)
{
	free(m->buf);
	m->buf = NULL;
}

/* Check the map in buf[0..n) and take it into m (which then owns buf). */
static int fmap_check(uint8_t *buf, size_t n, struct fmap *m)
{
	struct shmfs_map_info mi;

	if (n < sizeof(mi))
		return fail(EIO, "%s is %zu bytes, too short", SHMFS_XATTR_MAP, n);
	memcpy(&mi, buf, sizeof(mi));
	if (mi.mi_magic != SHMFS_MAP_MAGIC || mi.mi_version != SHMFS_MAP_VERSION ||
	    mi.mi_hdr_size < sizeof(mi) || mi.mi_hdr_size > n ||
	    (n - mi.mi_hdr_size) / sizeof(struct shmfs_map_extent) < mi.mi_nextents ||
	    !shmfs_is_pow2(mi.mi_unit) || mi.mi_unit < SHMFS_PAGE)
		return fail(EIO, "%s: unknown format (magic %#x, version %u)", SHMFS_XATTR_MAP,
			    mi.mi_magic, mi.mi_version);
	/* Extents: unit multiples, sorted, disjoint. */
	const struct shmfs_map_extent *e = (const void *)(buf + mi.mi_hdr_size);
	uint64_t prev_end = 0;
	for (uint32_t i = 0; i < mi.mi_nextents; i++) {
		struct shmfs_map_extent x;
		memcpy(&x, &e[i], sizeof(x));
		if (!x.me_len || (x.me_foff | x.me_roff | x.me_len) % mi.mi_unit ||
		    x.me_foff < prev_end || x.me_foff + x.me_len < x.me_foff ||
		    x.me_roff + x.me_len < x.me_roff)
			return fail(EIO, "%s: extent %u is malformed", SHMFS_XATTR_MAP, i);
		prev_end = x.me_foff + x.me_len;
	}
	m->mi = mi;
	m->e = e;
	m->buf = buf;
	return 0;
}

int shmfs_fmap_read(int fd, struct fmap *m)
{
	memset(m, 0, sizeof(*m));
	for (int tries = 0; tries < READ_TRIES; tries++) {
		ssize_t n = fgetxattr(fd, SHMFS_XATTR_MAP, NULL, 0);
		if (n < 0) {
			int e = errno;
			if (shmfs_client_not_shmfs_errno(e))
				return fail(ENOTSUP, "not a file of a shmfs mount (it has no %s attribute)",
					    SHMFS_XATTR_MAP);
			if (e == E2BIG)
				return fail(E2BIG, "the file has too many extents to publish in %s (copy it to a new file, allocated with fallocate first)",
					    SHMFS_XATTR_MAP);
			return fail(e, "cannot read %s: %s", SHMFS_XATTR_MAP, strerror(e));
		}
		/* room for a few more extents than now: the map may grow */
		size_t cap = (size_t)n + 16 * sizeof(struct shmfs_map_extent);
		uint8_t *buf = malloc(cap);
		if (!buf)
			return fail(ENOMEM, "out of memory");
		n = fgetxattr(fd, SHMFS_XATTR_MAP, buf, cap);
		if (n < 0) {
			int e = errno;
			free(buf);
			if (e == ERANGE)
				continue;
			return fail(e, "cannot read %s: %s", SHMFS_XATTR_MAP, strerror(e));
		}
		int rc = fmap_check(buf, (size_t)n, m);
		if (rc)
			free(buf);
		return rc;
	}
	return fail(ESTALE, "the file's extent map kept growing while it was being read");
}

static struct shmfs_map_extent extent_at(const struct fmap *m, uint32_t i)
{
	struct shmfs_map_extent x;

	memcpy(&x, &m->e[i], sizeof(x)); /* may be unaligned for a future header size */
	return x;
}

int shmfs_fmap_pieces(const struct fmap *m, uint64_t a, uint64_t b, struct piece **out,
		      uint32_t *nout, uint64_t *hole)
{
	struct piece *v = malloc(((size_t)m->mi.mi_nextents + 1) * sizeof(*v));
	uint32_t k = 0;
	uint64_t pos = a;

	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->mi.mi_nextents && pos < b; i++) {
		struct shmfs_map_extent x = extent_at(m, i);
		if (x.me_foff + x.me_len <= pos)
			continue;
		if (x.me_foff > pos)
			break;
		uint64_t l = SHMFS_MIN(b, x.me_foff + x.me_len) - pos;
		uint64_t r = x.me_roff + (pos - x.me_foff);
		if (k && v[k - 1].roff + v[k - 1].len == r)
			v[k - 1].len += l;
		else
			v[k++] = (struct piece){ pos, r, l };
		pos += l;
	}
	if (pos < b) {
		free(v);
		*hole = pos;
		return 1;
	}
	*out = v;
	*nout = k;
	return 0;
}
