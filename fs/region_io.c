/* SPDX-License-Identifier: MIT */
/*
 * Region access: the one path by which the data area is stored into (file
 * bytes, and the zeros that hide stale bytes) and read by copy or by
 * reference.  fs/region.c maps the region; this file is what happens to
 * the mapping afterwards.
 *
 * Keeping every store here is what later work hooks into: fencing (a host
 * never stores into memory it might no longer own, so its standing is
 * checked before a batch of stores) and memory without cache coherence
 * (the lines a store touched are written back, the lines a read needs are
 * invalidated first).  Callers above the region layer never write through
 * r->base into the data area.
 *
 * Every call is bounds-checked against r->size with wrap-safe arithmetic:
 * an offset that a damaged or hostile extent map produced can at worst be
 * refused, never stored through.
 */
#include "shmfs/region.h"

#include <errno.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

/* [off, off + len) lies inside the region. */
static bool in_region(const struct shmfs_region *r, uint64_t off, uint64_t len)
{
	return r->base && off <= r->size && len <= r->size - off;
}

int shmfs_region_store(struct shmfs_region *r, uint64_t off, const void *src, size_t len)
{
	const uint8_t *p = src;

	if (!in_region(r, off, len))
		return -EINVAL;
	if (r->readonly)
		return -EROFS;
	/* On a regular file (tmpfs) the kernel's write path fills fresh pages
	 * much faster than page faults on the mapping do (no fault per 4 KiB
	 * page), and the mapping sees the same pages.  hugetlbfs has no
	 * write(2); devdax, BARs and memory are stored through the mapping. */
	if (r->kind == SHMFS_REGION_FILE && r->fd >= 0) {
		off_t at = (off_t)(r->offset + off);

		while (len) {
			ssize_t n = pwrite(r->fd, p, len, at);

			if (n <= 0) {
				if (n < 0 && errno == EINTR)
					continue;
				break; /* the mapping takes the rest */
			}
			p += n;
			at += n;
			off += (uint64_t)n;
			len -= (size_t)n;
		}
	}
	memcpy(r->base + off, p, len);
	return 0;
}

int shmfs_region_clear(struct shmfs_region *r, uint64_t off, uint64_t len)
{
	if (!in_region(r, off, len))
		return -EINVAL;
	if (r->readonly)
		return -EROFS;
	/* In place: a punched hole would hand the pages back to the kernel,
	 * and the write that follows would fault them in again. */
	memset(r->base + off, 0, (size_t)len);
	return 0;
}

int shmfs_region_load(const struct shmfs_region *r, uint64_t off, void *dst, size_t len)
{
	if (!in_region(r, off, len))
		return -EINVAL;
	memcpy(dst, r->base + off, len);
	return 0;
}

const uint8_t *shmfs_region_ptr(const struct shmfs_region *r, uint64_t off, uint64_t len)
{
	return in_region(r, off, len) ? r->base + off : NULL;
}
