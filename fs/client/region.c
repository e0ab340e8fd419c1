/* SPDX-License-Identifier: MIT */
/*
 * The region a mount names, opened for direct mappings.
 *
 * The daemon publishes its region in user.shmfs.region: path, kind,
 * offset, size and the filesystem's UUID.  Before anything is mapped from
 * it, the region is opened here through the core's region layer (the same
 * opener, kind probe and mapping alignment every shmfs program uses) and
 * must prove to be the mount's:
 *
 *   - the kind the mount opened, and one mappable by extent: a UIO device
 *     can only be mapped whole, so it is refused before it is opened;
 *   - at least as large as the mount's window, which starts at a multiple
 *     of the mapping alignment on this host;
 *   - a valid superblock (the core's check) carrying the mount's UUID: the
 *     path may have been reformatted or replaced since it was mounted.
 *
 * The whole path is opened, not the mount's window, so that a window that
 * does not fit is reported as the mount's problem rather than as a bad
 * region spec.  Read/write when the mapping writes, and also when the file
 * is open for reading and writing, so that mprotect(PROT_WRITE) works
 * later, as on a mapping of the file itself -- unless the region is
 * read-only to this user.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

#include "client.h"
#include "shmfs/format.h"
#include "shmfs/super.h"
#include "shmfs/util.h"

#define REGION_XATTR_MAX (sizeof(struct shmfs_region_info) + PATH_MAX + 256)

static const char *type_name(uint32_t t)
{
	switch (t) {
	case SHMFS_RT_FILE: return "file";
	case SHMFS_RT_DEVDAX: return "devdax";
	case SHMFS_RT_PCI: return "PCI resource";
	case SHMFS_RT_UIO: return "UIO";
	}
	return "unknown";
}

/* Read user.shmfs.region of fd into r: path, window, UUID and kind. */
static int read_info(int fd, struct mount_region *r)
{
	uint8_t buf[REGION_XATTR_MAX + 1];
	struct shmfs_region_info ri;
	ssize_t n;

	n = fgetxattr(fd, SHMFS_XATTR_REGION, buf, REGION_XATTR_MAX);
	if (n < 0) {
		if (errno == ENODATA)
			return fail(ENOTSUP, "the mount has no region to map (an anonymous memory region)");
		return fail(shmfs_client_not_shmfs_errno(errno) ? ENOTSUP : errno,
			    "cannot read %s: %s", SHMFS_XATTR_REGION, strerror(errno));
	}
	buf[n] = 0;
	if ((size_t)n < sizeof(ri))
		return fail(EIO, "%s is %zd bytes, too short", SHMFS_XATTR_REGION, n);
	memcpy(&ri, buf, sizeof(ri));
	if (ri.ri_magic != SHMFS_REGION_MAGIC || ri.ri_version != SHMFS_MAP_VERSION ||
	    ri.ri_hdr_size < sizeof(ri) || ri.ri_hdr_size >= (size_t)n)
		return fail(EIO, "%s: unknown format (magic %#x, version %u)", SHMFS_XATTR_REGION,
			    ri.ri_magic, ri.ri_version);
	const char *path = (const char *)buf + ri.ri_hdr_size;
	if (strlen(path) >= sizeof(r->path) || path[0] != '/')
		return fail(EIO, "%s: bad region path", SHMFS_XATTR_REGION);
	strcpy(r->path, path);
	memcpy(r->uuid, ri.ri_uuid, 16);
	r->type = ri.ri_type;
	r->offset = ri.ri_offset;
	r->size = ri.ri_size;
	if (ri.ri_type == SHMFS_RT_UIO)
		return fail(ENOTSUP,
			    "region %s is a UIO device, which can only be mapped whole: direct mapping of files needs a devdax device, a PCI resource file or a regular file",
			    r->path);
	if (ri.ri_type != SHMFS_RT_FILE && ri.ri_type != SHMFS_RT_DEVDAX &&
	    ri.ri_type != SHMFS_RT_PCI)
		return fail(ENOTSUP, "region %s: unknown region type %u", r->path, ri.ri_type);
	return 0;
}

/* The path is not a file or device of the kind the mount opened. */
static int fail_kind(const struct mount_region *r)
{
	return fail(ENODEV, "region %s is not the %s the mount opened", r->path, type_name(r->type));
}

static int fail_small(const struct mount_region *r)
{
	return fail(ENODEV, "region %s is smaller than the mount's (%" PRIu64 " bytes at %" PRIu64 ")",
		    r->path, r->size, r->offset);
}

/* Open r->path with the region layer (no create, no grow).  Its refusals
 * are told in the terms of a mount's region: one that is not the kind the
 * mount opened, or too small for it (a whole path fails the layer's window
 * checks only when it is empty). */
static int open_path(int fd, int prot, struct mount_region *r)
{
	bool want_write = prot & PROT_WRITE;
	int fl = fcntl(fd, F_GETFL);
	bool may_write = want_write || (fl >= 0 && (fl & O_ACCMODE) == O_RDWR);
	struct shmfs_region_opts opts = { .readonly = !may_write };
	char why[sizeof(shmfs_client_errbuf)];
	size_t pl = strlen(r->path);
	int rc;

	rc = shmfs_region_open(r->path, &opts, &r->core, why, sizeof(why));
	if (rc && may_write && !want_write && (rc == -EACCES || rc == -EPERM || rc == -EROFS)) {
		opts.readonly = true;
		rc = shmfs_region_open(r->path, &opts, &r->core, why, sizeof(why));
	}
	if (!rc)
		return 0;
	if (rc == -EACCES || rc == -EPERM)
		return fail(EACCES,
			    "cannot open the region %s: %s; a direct mapping reads%s the filesystem's memory itself and needs %s access to the region, as the daemon has (run as root, or grant this user access to it)",
			    r->path, strerror(-rc), want_write ? " and writes" : "",
			    want_write ? "read/write" : "read");
	if (rc == -ENOENT)
		return fail(ENODEV, "the region %s that the mount names does not exist here", r->path);
	if (rc == -EISDIR || rc == -ENODEV)
		return fail_kind(r);
	if (rc == -EINVAL)
		return fail_small(r);
	/* The layer's line starts with the path, which ours names already. */
	const char *detail = why;
	if (!strncmp(why, r->path, pl) && !strncmp(why + pl, ": ", 2))
		detail = why + pl + 2;
	return fail(-rc, "cannot open the region %s: %s", r->path, detail);
}

/* Check the region's superblock: a valid shmfs one with the mount's UUID. */
static int check_super(const struct mount_region *r)
{
	size_t len = (size_t)shmfs_round_up(SHMFS_HOSTS_OFF, r->align);
	struct shmfs_region view;
	struct shmfs_super sb;
	char why[200], other[200], a[37], b[37];

	if (len > r->size)
		return fail(ENODEV, "region %s: %" PRIu64 " bytes, too small for shmfs", r->path,
			    r->size);
	memset(&view, 0, sizeof(view));
	view.base = r->core.base + r->offset;
	view.size = r->size;
	if (shmfs_super_read(&view, &sb, NULL, why, sizeof(why), other, sizeof(other)))
		return fail(ENODEV, "region %s: no valid shmfs superblock: %s", r->path, why);
	if (memcmp(sb.sb_uuid, r->uuid, 16)) {
		shmfs_uuid_format(sb.sb_uuid, a);
		shmfs_uuid_format(r->uuid, b);
		return fail(ENODEV,
			    "region %s holds filesystem %s, but the mount is filesystem %s: the region was reformatted or replaced since it was mounted",
			    r->path, a, b);
	}
	return 0;
}

int shmfs_mount_region_open(int fd, int prot, struct mount_region *r)
{
	enum shmfs_region_kind k;
	int rc;

	memset(r, 0, sizeof(*r));
	r->core.fd = -1;
	rc = read_info(fd, r);
	if (!rc)
		rc = open_path(fd, prot, r);
	if (rc)
		return rc;
	k = r->core.kind;
	if (strcmp(r->core.path, r->path) ||
	    (r->type == SHMFS_RT_DEVDAX ? k != SHMFS_REGION_DEVDAX :
	     k != SHMFS_REGION_FILE && k != SHMFS_REGION_HUGETLBFS && k != SHMFS_REGION_PCI))
		return fail_kind(r);
	/* The mapping alignment on this host: what the kernel will demand. */
	r->align = SHMFS_MAX(shmfs_client_page_size(), r->core.align);
	if (r->offset % r->align)
		return fail(ENOTSUP,
			    "region %s starts at offset %" PRIu64 ", not a multiple of its mapping alignment %" PRIu64,
			    r->path, r->offset, r->align);
	if (r->core.size < r->offset || r->core.size - r->offset < r->size)
		return fail_small(r);
	return check_super(r);
}

/* The region layer unmaps with munmap(3), which the LD_PRELOAD shim hands
 * to shmfs_unmap() first: the message of a failing call must survive it. */
void shmfs_mount_region_close(struct mount_region *r)
{
	char keep[sizeof(shmfs_client_errbuf)];
	int e = errno;

	memcpy(keep, shmfs_client_errbuf, sizeof(keep));
	shmfs_region_close(&r->core);
	memcpy(shmfs_client_errbuf, keep, sizeof(keep));
	errno = e;
}
