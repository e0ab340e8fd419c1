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
 * Stores through the mapping are visible at once to every other direct
 * mapping of the file, on every host: they are stores into the shared
 * memory itself.  Programs that cannot be changed get the same through
 * the LD_PRELOAD shim libshmfs-preload.so.  See docs/direct-mapping.md.
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
 * Map a file of a shmfs mount directly.  prot: PROT_READ and/or PROT_WRITE
 * (PROT_EXEC and PROT_NONE are passed on); flags: 0 or MAP_SHARED (the
 * semantics are always MAP_SHARED; MAP_PRIVATE is not offered), optionally
 * with MAP_POPULATE.  *len: bytes to map from offset 0 (0 = the file's
 * size); on return, the length mapped.  The range may end anywhere in the
 * file's last page, not beyond.
 * Every byte of the range must be allocated: with PROT_WRITE, holes are
 * allocated first (fallocate, keeping the size); else a hole is an error.
 * Returns the address, or NULL with errno set and shmfs_map_error() saying
 * what was wrong:
 *   ENOTSUP  not a file of a shmfs mount, or a region that cannot be mapped
 *            by extent (UIO), or extents not aligned to the region's
 *            mapping alignment (reformat with a larger --alloc-unit)
 *   EACCES   the caller may not open the region (or the file), or the file
 *            is not open for what prot asks (as mmap(2))
 *   ENODEV   the region's UUID is not the mount's (reformatted or replaced
 *            since the mount), or the region is missing on this host
 *   ESTALE   the file's layout kept changing while it was being mapped
 *   EINVAL   bad arguments, a hole in a read-only mapping, *len past EOF
 *   E2BIG    the file has too many extents to publish (over 2,700)
 *   ENOSPC   no space to allocate the holes of a writable mapping
 */
void *shmfs_map(const char *path, int prot, int flags, size_t *len);

/* The same for an open file (not closed by the library; it may be closed
 * by the caller after the call: the library keeps its own descriptor).
 * With PROT_WRITE the file must be open for reading and writing. */
void *shmfs_map_fd(int fd, int prot, int flags, size_t *len);

/*
 * The general form: map [offset, offset + *len) of an open file (*len 0:
 * to the end of the file).  offset is a multiple of the page size.  addr
 * is a hint, as for mmap(2), or with MAP_FIXED or MAP_FIXED_NOREPLACE in
 * flags the address to map at (page aligned; on a region whose mapping
 * alignment is larger than a page, such as devdax, addr and offset must be
 * multiples of it, and with MAP_FIXED so must *len).  MAP_FIXED replaces
 * whatever was mapped there, direct mappings included; if it fails, the
 * range may have been unmapped.  Errors as shmfs_map(), and EEXIST for
 * MAP_FIXED_NOREPLACE over a mapping.
 */
void *shmfs_map_fd_at(int fd, uint64_t offset, size_t *len, int prot, int flags,
		      void *addr);

/*
 * Unmap, like munmap(2): the whole of a mapping (addr and len as
 * returned) or any page-aligned part of one or of several; everything in
 * the range is unmapped.  The library closes its descriptor of the file
 * once no part of a mapping of it is left, which lets the filesystem reuse
 * the file's freed space.  EINVAL if the range holds no direct mapping (a
 * range that does is unmapped as munmap would, even where it also covers
 * other memory).  Do not unmap direct mappings with munmap(2) itself: the
 * library would keep the file open.
 */
int shmfs_unmap(void *addr, size_t len);

/*
 * Resize or move a direct mapping, like mremap(2).  flags: 0,
 * MREMAP_MAYMOVE, or MREMAP_MAYMOVE | MREMAP_FIXED (then new_addr is where
 * to).  Shrinking unmaps the tail.  Growing maps the file's next bytes
 * after the mapping if the addresses there are free, else (with
 * MREMAP_MAYMOVE) maps the whole new range elsewhere and unmaps the old;
 * without MREMAP_MAYMOVE that is ENOMEM.  The file must be long enough
 * (EINVAL), and with PROT_WRITE its holes are allocated as for shmfs_map().
 * [old_addr, old_addr + old_len) must lie within one direct mapping
 * (EFAULT).  Returns the new address, or NULL with errno set.
 */
void *shmfs_remap(void *old_addr, size_t old_len, size_t new_len, int flags, void *new_addr);

/*
 * Publish stores made through the direct mappings in [addr, addr + len):
 * read() on every mount (and the files' mtime) reflect them afterwards.
 * ENOMEM if the range holds no direct mapping; ESTALE if a file's layout
 * changed under the mapping since it was made (another host truncated it,
 * punched a hole, or deleted and recreated its space): stores made through
 * it then went to the file's old space, not to the file.
 */
int shmfs_sync(void *addr, size_t len);

/* What went wrong in the calling thread's last failed call (never NULL). */
const char *shmfs_map_error(void);

/* Is addr inside a mapping made by this library?  Then *base and *len (if
 * not NULL) describe that mapping (whole pages). */
int shmfs_is_mapped(const void *addr, void **base, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* SHMFS_SHMFS_H */
