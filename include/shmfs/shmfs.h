/* SPDX-License-Identifier: MIT */
/*
 * libshmfs: map a file of a shmfs mount straight from the shared region
 * (DAX style), so that processes on different hosts mapping the same file
 * share its memory, with no page cache copy and no system call per store.
 *
 *     size_t len = 0;                      // 0: the whole file
 *     void *p = shmfs_map("/mnt/shm/ring", PROT_READ | PROT_WRITE, 0, &len);
 *     if (!p)
 *             err(1, "shmfs_map: %s", shmfs_map_error());
 *     ...
 *     shmfs_sync(p, len);                  // make read() on every mount see it
 *     shmfs_unmap(p, len);
 *
 * How it works: the daemon publishes each regular file's extent map and the
 * region's identity as read-only extended attributes (below).  The library
 * opens the region itself (devdax device, PCI resource file or regular
 * file: the caller needs permission to open it, as for any raw device),
 * checks that the region's superblock UUID is the mount's, reserves one
 * range of address space and maps each extent into it with MAP_FIXED.  The
 * file stays open while it is mapped: its space is not reused before
 * shmfs_unmap(), even if another host truncates or deletes it.
 *
 * Link with -lshmfs (pkg-config shmfs).  Thread-safe.
 */
#ifndef SHMFS_SHMFS_H
#define SHMFS_SHMFS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the interface the daemon offers (every shmfs mount) -------------------- */

/* Read-only, on regular files: struct shmfs_map_info, then mi_nextents
 * struct shmfs_map_extent sorted by file offset. */
#define SHMFS_XATTR_MAP    "user.shmfs.map"
/* Read-only, on every inode: struct shmfs_region_info, then the region's
 * path (NUL-terminated). */
#define SHMFS_XATTR_REGION "user.shmfs.region"
/* Write-only, on regular files (any value, needs write permission):
 * stores made through a direct mapping are published -- mtime is set, and
 * every host drops the file's cached pages, so read() sees the stores. */
#define SHMFS_XATTR_SYNC   "user.shmfs.sync"

#define SHMFS_MAP_MAGIC    0x50414d53u  /* "SMAP" */
#define SHMFS_REGION_MAGIC 0x47455253u  /* "SREG" */
#define SHMFS_MAP_VERSION  1u

/* All fields little-endian (the host's order on every supported machine). */
struct shmfs_map_info {
	uint32_t mi_magic;              /* SHMFS_MAP_MAGIC */
	uint16_t mi_version;            /* SHMFS_MAP_VERSION */
	uint16_t mi_hdr_size;           /* sizeof(struct shmfs_map_info) */
	uint8_t  mi_uuid[16];           /* the filesystem's UUID */
	uint64_t mi_ino;
	uint64_t mi_gen;                /* layout generation: changes whenever
	                                 * the file's extents change */
	uint64_t mi_size;               /* file size */
	uint64_t mi_unit;               /* allocation unit (extents are
	                                 * multiples, at multiples) */
	uint32_t mi_nextents;
	uint32_t mi_reserved;           /* 0 */
};

struct shmfs_map_extent {
	uint64_t me_foff;               /* file offset */
	uint64_t me_roff;               /* offset from the region's first byte */
	uint64_t me_len;
};

enum shmfs_region_type {
	SHMFS_RT_FILE = 1,              /* regular file (tmpfs, hugetlbfs, ...) */
	SHMFS_RT_DEVDAX = 2,            /* /dev/daxX.Y */
	SHMFS_RT_PCI = 3,               /* sysfs PCI resource file */
	SHMFS_RT_UIO = 4,               /* /dev/uioN (not mappable by extent) */
};

struct shmfs_region_info {
	uint32_t ri_magic;              /* SHMFS_REGION_MAGIC */
	uint16_t ri_version;            /* SHMFS_MAP_VERSION */
	uint16_t ri_hdr_size;           /* sizeof(struct shmfs_region_info) */
	uint8_t  ri_uuid[16];           /* the filesystem's UUID */
	uint32_t ri_type;               /* enum shmfs_region_type */
	uint32_t ri_reserved;           /* 0 */
	uint64_t ri_offset;             /* mmap offset in the path of the
	                                 * region's first byte */
	uint64_t ri_size;               /* region bytes */
	uint64_t ri_align;              /* mapping alignment of the region as
	                                 * the daemon opened it */
	/* followed by the path, NUL-terminated */
};

/* ---- libshmfs --------------------------------------------------------------- */

/*
 * Map a file of a shmfs mount directly.  prot: PROT_READ and/or PROT_WRITE;
 * flags: 0 (MAP_SHARED semantics; MAP_PRIVATE is not offered).  *len: bytes
 * to map from offset 0 (0 = the file's size); on return, the length mapped.
 * Every byte of the range must be allocated: with PROT_WRITE, holes are
 * allocated first (fallocate, keeping the size); else a hole is an error.
 * Returns the address, or NULL with errno set and shmfs_map_error() saying
 * what was wrong:
 *   ENOTSUP  not a file of a shmfs mount, or a region that cannot be mapped
 *            by extent (UIO), or extents not aligned to the region's
 *            mapping alignment (reformat with a larger --alloc-unit)
 *   EACCES   the caller may not open the region (or the file)
 *   ENODEV   the region's UUID is not the mount's
 *   ESTALE   the file's layout kept changing while it was being mapped
 *   EINVAL   bad arguments, a hole in a read-only mapping, *len past EOF
 */
void *shmfs_map(const char *path, int prot, int flags, size_t *len);

/* The same for an open file (not closed by the library; it may be closed
 * by the caller after the call: the library keeps its own descriptor). */
void *shmfs_map_fd(int fd, int prot, int flags, size_t *len);

/* Unmap a mapping made by shmfs_map (whole: addr and len as returned). */
int shmfs_unmap(void *addr, size_t len);

/* Publish stores made through the mapping: read() on every mount (and
 * files' mtime) reflect them afterwards. */
int shmfs_sync(void *addr, size_t len);

/* What went wrong in the calling thread's last failed call (never NULL). */
const char *shmfs_map_error(void);

/* Is addr inside a mapping made by this library?  Then *base and *len (if
 * not NULL) describe that mapping. */
int shmfs_is_mapped(const void *addr, void **base, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* SHMFS_SHMFS_H */
