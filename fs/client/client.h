/* SPDX-License-Identifier: MIT */
/*
 * libshmfs's private header: what its files share and nothing exports.
 *
 *   libshmfs.c   the public calls (include/shmfs/shmfs.h) and the error
 *                message they leave for shmfs_map_error();
 *   registry.c   the mappings the library has made, and the descriptors
 *                that pin their files;
 *   extmap.c     a file's extent map (user.shmfs.map), read and checked;
 *   region.c     the region a mount names (user.shmfs.region), opened
 *                through the core's region layer and checked to be the
 *                mount's.
 *
 * Every function here returns 0 or -errno; those that fail for a reason a
 * caller of the library should read record it with shmfs_client_fail().
 */
#ifndef SHMFS_CLIENT_H
#define SHMFS_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "shmfs/region.h"
#include "shmfs/shmfs.h"

/* ---- errors (libshmfs.c) ------------------------------------------------------ */

/* Why the calling thread's last call failed; "" when it did not. */
extern __thread char shmfs_client_errbuf[512];

/* Record why the call fails and return -e. */
int shmfs_client_fail(int e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define fail shmfs_client_fail  /* short: it opens most error paths */

uint64_t shmfs_client_page_size(void);

/* ---- system calls the LD_PRELOAD shim must not see ----------------------------- */

static inline void *shmfs_sys_mmap(void *addr, size_t len, int prot, int flags, int fd,
				   uint64_t off)
{
	long r = syscall(SYS_mmap, addr, len, prot, flags, fd, (long)off);

	return r == -1 ? MAP_FAILED : (void *)r;
}

static inline int shmfs_sys_munmap(uintptr_t addr, size_t len)
{
	return (int)syscall(SYS_munmap, addr, len);
}

/* ---- the registry (registry.c) ------------------------------------------------- */

struct piece {
	uint64_t foff;          /* file offset */
	uint64_t roff;          /* offset from the region's first byte */
	uint64_t len;
};

struct fref {                   /* the library's descriptor of a mapped file */
	int fd;
	unsigned refs;          /* entries, and calls in flight; under the registry lock */
};

struct entry {
	uintptr_t start, end;   /* mapped: [start, end), slack included */
	uintptr_t ustart, uend; /* the caller's part, whole pages */
	uint64_t foff;          /* file offset mapped at start */
	int prot;
	struct fref *f;
	struct piece *pc;       /* what [start, end) maps, by file offset */
	uint32_t npc;
};

/* A file's part of a range being synced: a reference on the file, and the
 * pieces the mapping showed when it was made. */
struct sync_item {
	struct fref *f;
	struct piece *pc;
	uint32_t npc;
};

static inline uint64_t shmfs_entry_foff(const struct entry *e, uintptr_t va)
{
	return e->foff + (va - e->start);
}

/* How many entries there are, without the lock: 0 lets calls on addresses
 * that cannot be direct mappings (the shim's every munmap) return early. */
size_t shmfs_reg_count(void);

/* Add an entry (its reference on ne->f already taken); see registry.c. */
int shmfs_reg_add(struct entry *ne);

/* Take [a, b) out of the registry, munmapping it (and slack no longer
 * needed) with do_unmap.  Returns how many entries it touched, or -errno
 * with nothing changed. */
int shmfs_reg_cut(uintptr_t a, uintptr_t b, bool do_unmap);

/* The entry whose caller's part holds [a, b) (a == b: holds a), copied to
 * *e, with a new reference on its file if ref.  Returns false if none. */
bool shmfs_reg_lookup(uintptr_t a, uintptr_t b, bool ref, struct entry *e);

/* The files mapped in the caller's parts of [a, b), each item with a
 * reference, and the pieces of the part.  Returns 0 (*n may be 0) or
 * -ENOMEM. */
int shmfs_reg_collect(uintptr_t a, uintptr_t b, struct sync_item **items, size_t *n);

/* Drop the references and pieces of shmfs_reg_collect's items, and them. */
void shmfs_reg_release(struct sync_item *it, size_t n);

void shmfs_fref_get(struct fref *f);
void shmfs_fref_put(struct fref *f);

/* The pieces of pc[0..n) that map file offsets [fa, fb). */
int shmfs_pieces_sub(const struct piece *pc, uint32_t n, uint64_t fa, uint64_t fb,
		     struct piece **out, uint32_t *nout);

/* ---- the extent map (extmap.c) ------------------------------------------------- */

struct fmap {
	struct shmfs_map_info mi;
	const struct shmfs_map_extent *e;       /* into buf */
	void *buf;
};

/* Not a file of a shmfs mount: the attribute is not there. */
bool shmfs_client_not_shmfs_errno(int e);

/* Read and check fd's user.shmfs.map into m (shmfs_fmap_free it). */
int shmfs_fmap_read(int fd, struct fmap *m);
void shmfs_fmap_free(struct fmap *m);

/* The pieces that map file bytes [a, b), merged where the region bytes are
 * contiguous too.  Returns 0, 1 with *hole = the first unallocated offset,
 * or -ENOMEM. */
int shmfs_fmap_pieces(const struct fmap *m, uint64_t a, uint64_t b, struct piece **out,
		      uint32_t *nout, uint64_t *hole);

/* ---- the mount's region (region.c) --------------------------------------------- */

struct mount_region {
	struct shmfs_region core; /* the whole of path, by the region layer; fd -1: closed */
	uint32_t type;          /* enum shmfs_region_type */
	uint64_t offset;        /* of the region's first byte in path */
	uint64_t size;
	uint64_t align;         /* mapping alignment here */
	uint8_t uuid[16];
	char path[4096];
};

/* Open the region the mount of fd names, for mappings with prot, and check
 * that it is the mount's. */
int shmfs_mount_region_open(int fd, int prot, struct mount_region *r);
void shmfs_mount_region_close(struct mount_region *r);

#endif /* SHMFS_CLIENT_H */
